//! Relay throughput vs a plain async-nats loop, and append-to-subscriber latency, against a
//! private nats-server. `cargo run --release -p keyledger-bus --example bench_relay -- [EVENTS]
//! [--no-replication]`

use keyledger_bus::bench::{RelayBenchOptions, bench_relay};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events = args
        .iter()
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    let replicate = !args.iter().any(|arg| arg == "--no-replication");
    let nats = keyledger_testkit::nats::NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let options = RelayBenchOptions {
        events,
        replicate,
        ..RelayBenchOptions::new(nats.url(), dir.path())
    };
    let report = bench_relay(&options).await?;
    println!(
        "events {} ({} message(s) each): relay {:.0} events/s, baseline {:.0} events/s, ratio {:.2} (rounds {:.2?}); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} samples",
        report.events,
        report.messages_per_event,
        report.relay_events_per_sec,
        report.baseline_events_per_sec,
        report.ratio,
        report.round_ratios,
        report.latency_p50_ms,
        report.latency_p99_ms,
        report.latency_max_ms,
        report.latency_samples
    );
    Ok(())
}
