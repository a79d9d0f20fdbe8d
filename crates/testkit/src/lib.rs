//! Real servers for tests: a private nats-server, an in-process S3 server with SigV4
//! checking, an STS endpoint whose temporary credentials that S3 server accepts, a
//! fault-injecting proxy, and the DNAnexus emulator. Dev-only.

pub mod awscli;
pub mod dnanexus;
pub mod fault_proxy;
pub mod iam;
pub mod nats;
pub mod s3;
mod s3_access;
pub mod s3_checksums;
pub(crate) mod s3_edge;
pub mod small_disk;
pub mod sts;
