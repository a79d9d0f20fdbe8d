//! Integration tests of keyledger-log against real sled databases in temporary directories.

mod basics;
mod crash;
mod group_commit;
mod reopen;
mod storage_failure;
mod stores;
mod support;
mod tamper;
