//! End-to-end tests of the real `keyledger` binary: each test starts `keyledger serve` on a
//! temporary data directory and a free port, and drives it over HTTP and through the CLI.

mod audit_remote;
mod aws_kinds;
mod bad_input;
mod canary;
mod cli;
mod cli_frame;
mod cli_ingest;
mod cli_keys;
mod console;
mod golden;
mod hardening_core;
mod hardening_disk;
mod hardening_http;
mod hardening_schema;
mod ingestion;
mod least_privilege;
mod lineage;
mod operations;
mod permissions;
mod preview;
mod provider_errors;
mod readme;
mod roles;
mod rotation;
mod s3_integrity;
mod snapshots;
mod support;
mod sync;
mod workflow;
