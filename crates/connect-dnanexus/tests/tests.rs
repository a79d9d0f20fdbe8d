//! The connector against the DNAnexus emulator (keyledger-testkit), in one binary.

mod common;
mod fetching;
mod listing;
mod unreachable;
