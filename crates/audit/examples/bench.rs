//! Prints the audit figures: `cargo run --release -p keyledger-audit --example bench -- [EVENTS]`.

fn main() -> Result<(), keyledger_audit::AuditError> {
    let events = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000u64);
    let verify = keyledger_audit::bench::bench_verify(events)?;
    println!(
        "verify: {} events, {} checkpoints, export {:.1} MiB written in {:.2} s",
        verify.events,
        verify.checkpoints,
        verify.export_bytes as f64 / (1 << 20) as f64,
        verify.export.as_secs_f64()
    );
    println!(
        "verify export: {:.2} s = {:.0} events/s; data dir: open {:.2} s, verify {:.2} s = {:.0} events/s",
        verify.verify_export.as_secs_f64(),
        verify.export_events_per_second(),
        verify.open_data_dir.as_secs_f64(),
        verify.verify_data_dir.as_secs_f64(),
        verify.data_dir_events_per_second()
    );
    let startup = keyledger_audit::bench::bench_startup(events)?;
    println!(
        "start-up: full replay {:.2} s (projection {:.2} s), with snapshot {:.2} s (projection {:.2} s); snapshot {:.1} MiB written in {:.2} s (encoding under the read lock {:.2} s)",
        startup.full_replay.as_secs_f64(),
        startup.full_replay_projection.as_secs_f64(),
        startup.with_snapshot.as_secs_f64(),
        startup.with_snapshot_projection.as_secs_f64(),
        startup.snapshot_bytes as f64 / (1 << 20) as f64,
        startup.snapshot_write.as_secs_f64(),
        startup.snapshot_encode.as_secs_f64()
    );
    Ok(())
}
