//! The outbox relay: events from the log to acknowledged JetStream publishes, against a raw
//! async-nats loop publishing the same payloads with the same window, on a private nats-server.

use crate::relay_figures::{RelayBenchOptions, bench_relay};
use keyledger_testkit::nats::NatsServer;

use crate::report::{Report, human};

pub fn run(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    runtime.block_on(async {
        let server = NatsServer::start()?;
        let work = tempfile::tempdir()?;
        let mut options = RelayBenchOptions::new(server.url(), work.path());
        if report.quick {
            options.events = 20_000;
            options.latency_samples = 200;
        }
        let figures = bench_relay(&options).await?;
        report.section(
            &format!("Outbox relay to NATS JetStream ({} events, nats-server 2.9 on loopback, median of {} rounds)", figures.events, options.rounds),
            &["what", "events/s", "ratio vs raw async-nats loop", "goal"],
        );
        report.row(&["raw async-nats publishes with acks, same payloads and window".into(), human(figures.baseline_events_per_sec), "1.00".into(), String::new()]);
        report.row(&[
            format!("relay: log → JetStream, acks in order, checkpoint ({} messages per event)", figures.messages_per_event),
            human(figures.relay_events_per_sec),
            format!("{:.2}", figures.ratio),
            "≥ 0.8".into(),
        ]);
        report.note(&format!(
            "Append-to-subscriber latency ({} samples, durable append then delivery to a subscriber of the public stream): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms.",
            figures.latency_samples, figures.latency_p50_ms, figures.latency_p99_ms, figures.latency_max_ms
        ));
        anyhow::Ok(())
    })
}
