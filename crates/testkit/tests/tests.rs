//! Integration tests of the testkit servers, in one binary.

mod dnanexus_dx;
mod dnanexus_protocol;
mod fault_proxy;
mod lab;
mod sts_awscli;
mod sts_sdk;
mod sts_wire;
