//! Integration tests of keyledger-audit against real vaults in temporary directories.

mod checkpoints;
mod in_use;
mod independent;
mod replay;
mod restore;
mod rotation;
mod shredding;
mod snapshot;
mod support;
mod tamper;
