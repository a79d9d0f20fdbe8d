//! Given events, when a command, then events or an error.

mod decide;
mod fixtures;
mod governance;
mod replay;
mod role;
mod snapshots;
mod sources;
mod workers;
