//! Integration tests of keyledger-ingest: real vault, real S3 server, DNAnexus emulator.

mod dnanexus;
mod lifecycle;
mod memory;
mod object_store;
mod preview;
mod s3;
mod sources;
mod support;
mod view;
