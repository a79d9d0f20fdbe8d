//! Integration tests against a real S3 server (s3s-fs with SigV4) and the fault proxy.

mod access;
mod faults;
mod fetch;
mod integrity;
mod list;
mod role;
mod support;
mod unreachable;
