//! `make bench`: every figure is a ratio against a baseline measured in the same run.
//!
//! `keyledger-bench [core|verify|appends|replay|http|relay|s3|dnanexus|audit|workers|all] [--quick]`
//! (`core` is verify + appends + replay; `workers` runs the release `keyledger` binary beside
//! this one). Writes the report to
//! stdout and to `bench-report.md` in the target directory (`CARGO_TARGET_DIR`, else `target/`).

mod audit;
mod core;
mod http;
mod ingest;
mod ingestion;
mod relay;
mod relay_figures;
mod report;
mod workers;

use std::time::Instant;

use report::Report;

/// The allocator of the shipped `keyledger` binary (decision 0009), for both sides of every ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("replay-child") {
        return core::replay_child(&args[1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sections: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted =
        |name: &str| sections.is_empty() || sections.contains(&"all") || sections.contains(&name);

    let mut report = Report::new(quick);
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if wanted("core") || wanted("verify") {
        core::verification(&mut report, &runtime)?;
    }
    if wanted("core") || wanted("appends") {
        core::appends(&mut report, &runtime)?;
    }
    if wanted("core") || wanted("replay") {
        core::replay(&mut report)?;
    }
    if wanted("http") {
        http::run(&mut report, &runtime)?;
    }
    if wanted("relay") {
        relay::run(&mut report, &runtime)?;
    }
    if wanted("s3") {
        ingest::run_s3(&mut report, &runtime)?;
    }
    if wanted("dnanexus") {
        ingest::run_dnanexus(&mut report, &runtime)?;
    }
    if wanted("audit") {
        ingest::run_audit(&mut report)?;
    }
    if wanted("workers") {
        workers::run(&mut report, &runtime)?;
    }
    report.finish(started.elapsed())?;
    Ok(())
}
