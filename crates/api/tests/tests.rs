//! In-process tests of the router (`tower::ServiceExt::oneshot`) against a real vault in a
//! temporary directory, with a manual clock; and the server over real TCP (`connections`).

mod connections;
mod in_process;
mod secret_scanning;
