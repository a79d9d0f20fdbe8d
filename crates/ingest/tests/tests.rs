//! Integration tests of keyledger-ingest: real vault, real S3 server, DNAnexus emulator.

mod dnanexus;
mod lifecycle;
mod memory;
mod preview;
mod object_store;
mod s3;
mod support;
mod view;
