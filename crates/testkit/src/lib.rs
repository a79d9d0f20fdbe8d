//! Real servers for tests: a private nats-server, an in-process S3 server with SigV4
//! checking, a fault-injecting proxy, and the DNAnexus emulator. Dev-only.

pub mod awscli;
pub mod dnanexus;
pub mod fault_proxy;
pub mod nats;
pub mod s3;
pub mod s3_checksums;
pub mod small_disk;
