//! Measurements for `make bench`: relay throughput against a plain async-nats publishing loop
//! on the same server, payloads and window, and append-to-subscriber latency.
//!
//! The caller provides the NATS server (the bench harness starts a private one with
//! `keyledger_testkit::nats`) and a scratch directory for the vault. Events enter the log the
//! way the service appends them: commands decided by the vault (`Vault::run_all`,
//! `Vault::create_api_key`), never raw appends.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::StreamExt;
use keyledger_bus::testing::{Channel, ensure_stream};
use keyledger_bus::{BusConfig, BusError, Relay, StartAt, Subscriber};
use keyledger_crypto::MasterKey;
use keyledger_domain::public::hex;
use keyledger_domain::{
    Action, Actor, FromTrusted, KeyDuration, KeyHint, KeyId, KeyName, NewApiKey, SecretHash, UserId,
};
use keyledger_log::Durability;
use keyledger_vault::{SystemClock, Vault, VaultConfig, decode_event};

/// What to measure.
#[derive(Clone, Debug)]
pub struct RelayBenchOptions {
    pub nats_url: String,
    /// A scratch directory; the vault is created in it.
    pub work_dir: PathBuf,
    /// Events published by the relay and by the baseline loop.
    pub events: u64,
    /// Appends timed one at a time to the subscriber.
    pub latency_samples: usize,
    /// Publish the replication stream too (two messages per event), as deployed with replicas.
    pub replicate: bool,
    /// Publishes in flight, for the relay and the baseline alike.
    pub max_in_flight: usize,
    /// Relay and baseline runs alternate this many times (fresh streams each time); the
    /// medians are reported, which evens out a busy machine.
    pub rounds: usize,
}

impl RelayBenchOptions {
    pub fn new(nats_url: impl Into<String>, work_dir: impl Into<PathBuf>) -> RelayBenchOptions {
        RelayBenchOptions {
            nats_url: nats_url.into(),
            work_dir: work_dir.into(),
            events: 100_000,
            latency_samples: 1_000,
            replicate: true,
            max_in_flight: BusConfig::default().max_in_flight,
            rounds: 3,
        }
    }
}

/// The figures.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayBenchReport {
    pub events: u64,
    /// 2 with replication, 1 without.
    pub messages_per_event: u64,
    /// Events from the log to an acknowledged JetStream publish, per second.
    pub relay_events_per_sec: f64,
    /// The same payloads, prepared in memory, published by a plain loop with the same window.
    pub baseline_events_per_sec: f64,
    /// `relay / baseline` of the medians; the goal is at least 0.8.
    pub ratio: f64,
    /// `relay / baseline` of each round.
    pub round_ratios: Vec<f64>,
    /// From the start of an append until a subscriber of the public stream receives the event.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub latency_samples: usize,
}

/// Runs the measurements. Streams get unique names and are deleted afterwards, so a server can
/// be reused.
pub async fn bench_relay(options: &RelayBenchOptions) -> Result<RelayBenchReport, BusError> {
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let vault = open_vault(options).await?;
    fill(&vault, options.events).await?;

    let mut relay_rates = Vec::new();
    let mut baseline_rates = Vec::new();
    let mut events = 0;
    for round in 0..options.rounds.max(1) {
        // The relay, from the log's first event, to fresh streams.
        let config = bench_config(options, &format!("{run}r{round}"));
        let caught_up = Relay::new(vault.clone(), config.clone())
            .run_until_caught_up()
            .await?;
        events = caught_up.published_events;
        relay_rates.push(caught_up.published_events as f64 / caught_up.elapsed.as_secs_f64());
        cleanup(&[config]).await;
        // The same messages, prepared beforehand, published by a plain loop.
        let config = bench_config(options, &format!("{run}b{round}"));
        baseline_rates.push(baseline(&vault, &config, options).await?);
        cleanup(&[config]).await;
    }
    let round_ratios = relay_rates
        .iter()
        .zip(&baseline_rates)
        .map(|(relay, baseline)| relay / baseline)
        .collect();
    let (relay_rate, baseline_rate) = (median(&mut relay_rates), median(&mut baseline_rates));

    let config = bench_config(options, &format!("{run}latency"));
    let latencies = latency(&vault, &config, options.latency_samples).await?;
    cleanup(&[config]).await;
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    Ok(RelayBenchReport {
        events,
        messages_per_event: if options.replicate { 2 } else { 1 },
        relay_events_per_sec: relay_rate,
        baseline_events_per_sec: baseline_rate,
        ratio: relay_rate / baseline_rate,
        round_ratios,
        latency_p50_ms: percentile(0.50),
        latency_p99_ms: percentile(0.99),
        latency_max_ms: percentile(1.0),
        latency_samples: latencies.len(),
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn bench_config(options: &RelayBenchOptions, suffix: &str) -> BusConfig {
    BusConfig {
        stream: format!("BENCH_{suffix}"),
        subject_prefix: format!("bench{suffix}.events"),
        replication_stream: format!("BENCH_{suffix}_REPLICATION"),
        replication_prefix: format!("bench{suffix}.replication"),
        replicate: options.replicate,
        max_in_flight: options.max_in_flight,
        ..BusConfig::from_url(options.nats_url.clone())
    }
}

/// A fresh vault with the user `bench` (an admin) who owns every benchmark key.
async fn open_vault(options: &RelayBenchOptions) -> Result<Vault, BusError> {
    let master =
        MasterKey::parse(&"5e".repeat(32)).map_err(|error| BusError::Config(error.to_string()))?;
    let config = VaultConfig {
        data_dir: options.work_dir.join("vault"),
        durability: Durability::Full,
        ..VaultConfig::default()
    };
    let vault = Vault::open(config, &master, Arc::new(SystemClock))
        .map_err(|error| BusError::Config(error.to_string()))?;
    vault
        .bootstrap(bench_user())
        .await
        .map_err(|error| BusError::Config(error.to_string()))?;
    Ok(vault)
}

fn bench_user() -> UserId {
    UserId::from_trusted("bench".to_owned())
}

fn bench_actor() -> Actor {
    Actor::User {
        user: bench_user(),
        key: None,
    }
}

/// One key of `bench`'s as the vault records it (a hint, a 32-byte hash): an `ApiKeyCreated`
/// of ~200 bytes encoded, decided like any other.
fn new_key(index: u64) -> Action {
    Action::CreateApiKey(NewApiKey {
        key: KeyId::from_trusted(format!("key_bench{index:011}")),
        name: KeyName::from_trusted(format!("bench key {index}")),
        duration: KeyDuration::Days(30),
        hint: KeyHint::from_trusted("kl_AbCd…wXyZ".to_owned()),
        secret_hash: SecretHash([(index % 251) as u8; 32]),
        scope: keyledger_domain::KeyScope::default(),
    })
}

/// Creates `events` keys in commands of 1,000 (one atomic append each).
async fn fill(vault: &Vault, events: u64) -> Result<(), BusError> {
    let mut index = 0;
    while index < events {
        let batch_end = (index + 1_000).min(events);
        vault
            .run_all(bench_actor(), (index..batch_end).map(new_key).collect())
            .await
            .map_err(|error| BusError::Log(error.to_string()))?;
        index = batch_end;
    }
    Ok(())
}

/// Publishes every event of the log with the relay's payloads, headers and window, from
/// memory, and returns events per second.
async fn baseline(
    vault: &Vault,
    config: &BusConfig,
    options: &RelayBenchOptions,
) -> Result<f64, BusError> {
    let mut channels = vec![Channel::Public];
    if options.replicate {
        channels.push(Channel::Replication);
    }
    let mut messages: Vec<Vec<(String, Bytes, String)>> = Vec::new();
    for envelope in vault.log().read_from(1) {
        let envelope = envelope?;
        let event = decode_event(&envelope.body).map_err(|reason| BusError::Decode {
            seq: envelope.seq,
            reason,
        })?;
        let id = hex(&envelope.event_id);
        messages.push(
            channels
                .iter()
                .map(|channel| {
                    (
                        channel.subject(config, &event),
                        channel.payload(&envelope, &event),
                        id.clone(),
                    )
                })
                .collect(),
        );
    }
    let client = config.connect("keyledger-bench-baseline").await?;
    let js = ContextBuilder::new()
        .timeout(config.ack_timeout)
        .max_ack_inflight(config.max_in_flight * 2 + 16)
        .backpressure_on_inflight(true)
        .build(client);
    for channel in &channels {
        ensure_stream(&js, config, *channel).await?;
    }
    let publish_error = |reason: String| BusError::Publish {
        stream: config.stream.clone(),
        seq: 0,
        reason,
    };
    let started = Instant::now();
    let mut in_flight = VecDeque::with_capacity(config.max_in_flight);
    let mut last_stream_seq = vec![0u64; channels.len()];
    for per_event in messages {
        if in_flight.len() >= config.max_in_flight
            && let Some(acks) = in_flight.pop_front()
        {
            await_all(acks).await.map_err(publish_error)?;
        }
        let mut acks = Vec::with_capacity(per_event.len());
        for (index, (subject, payload, id)) in per_event.into_iter().enumerate() {
            let message = PublishMessage::build()
                .payload(payload)
                .message_id(&id)
                .expected_last_sequence(last_stream_seq[index]);
            last_stream_seq[index] += 1;
            let ack = js
                .send_publish(subject, message)
                .await
                .map_err(|e| publish_error(e.to_string()))?;
            acks.push(ack.into_future());
        }
        in_flight.push_back(acks);
    }
    while let Some(acks) = in_flight.pop_front() {
        await_all(acks).await.map_err(publish_error)?;
    }
    let elapsed = started.elapsed();
    Ok(options.events.max(1) as f64 / elapsed.as_secs_f64())
}

type AckFuture = <async_nats::jetstream::context::PublishAckFuture as IntoFuture>::IntoFuture;

async fn await_all(acks: Vec<AckFuture>) -> Result<(), String> {
    for ack in acks {
        ack.await.map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// Appends one event at a time with the relay running and times its arrival at a subscriber.
async fn latency(
    vault: &Vault,
    config: &BusConfig,
    samples: usize,
) -> Result<Vec<Duration>, BusError> {
    let relay = Relay::spawn(vault.clone(), config.clone());
    // Samples start once the relay has published the backlog (and so created the streams).
    let head = vault.log().head().0;
    let caught_up =
        tokio::time::timeout(Duration::from_secs(120), relay.published_through(head)).await;
    if !caught_up.is_ok_and(|status| status.published_seq >= head) {
        relay.shutdown().await;
        return Err(BusError::Config(
            "the relay did not publish the backlog within 120 s".to_owned(),
        ));
    }
    let subscriber = Subscriber::connect(config).await?;
    let mut replay = subscriber.replay(StartAt::New, None).await?;
    let mut latencies = Vec::with_capacity(samples);
    let mut index = 1_000_000_000;
    let mut failure = None;
    for _ in 0..samples {
        index += 1;
        let name = KeyName::from_trusted(format!("bench key {index}"));
        let started = Instant::now();
        if let Err(error) = vault
            .create_api_key(bench_actor(), name, KeyDuration::Days(30), None)
            .await
        {
            failure = Some(BusError::Log(error.to_string()));
            break;
        }
        // Nothing else appends: the head is the event just created.
        let committed_seq = vault.log().head().0;
        let received = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(item) = replay.next().await {
                if item?.envelope.seq >= committed_seq {
                    return Ok(());
                }
            }
            Err(BusError::Config("the subscription ended".to_owned()))
        })
        .await;
        match received {
            Ok(Ok(())) => latencies.push(started.elapsed()),
            Ok(Err(error)) => {
                failure = Some(error);
                break;
            }
            Err(_) => {
                failure = Some(BusError::Config(format!(
                    "event {committed_seq} took over 10 s to arrive"
                )));
                break;
            }
        }
    }
    relay.shutdown().await;
    if let Some(error) = failure {
        return Err(error);
    }
    latencies.sort();
    Ok(latencies)
}

async fn cleanup(configs: &[BusConfig]) {
    let Some(first) = configs.first() else { return };
    let Ok(client) = first.connect("keyledger-bench-cleanup").await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    for config in configs {
        for stream in [
            &config.stream,
            &config.replication_stream,
            &format!("{}_KEYS", config.replication_stream),
        ] {
            let _ = js.delete_stream(stream).await;
        }
    }
}
