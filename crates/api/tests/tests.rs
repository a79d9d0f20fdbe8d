//! In-process tests of the router (`tower::ServiceExt::oneshot`) against a real vault in a
//! temporary directory, with a manual clock.

mod in_process;
