//! Integration tests of keyledger-audit against real vaults in temporary directories.

mod checkpoints;
mod cli;
mod independent;
mod remote;
mod replay;
mod restore;
mod rotation;
mod shredding;
mod snapshot;
mod support;
mod tamper;
