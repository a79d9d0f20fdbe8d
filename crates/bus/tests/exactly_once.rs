//! Exactly-once, in-order delivery to a durable consumer while the relay crashes between
//! publishing and checkpointing, nats-server goes away while events are appended, and the vault
//! restarts.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use keyledger_bus::{BusConfig, Relay, StartAt, Subscriber};
use keyledger_log::Seq;

use crate::support::*;

const EVENTS: usize = 10_000;

/// What the consumer handled: the log seq of every event, in arrival order. An event comes
/// again only if its ack could not be confirmed (the server was going away); anything else
/// seen twice is a duplicate.
#[derive(Debug, Default)]
struct Consumed {
    seqs: Vec<Seq>,
    unconfirmed: HashSet<Seq>,
    redelivered_after_failed_ack: usize,
    duplicates: Vec<Seq>,
}

async fn consume(config: BusConfig, until: Seq) -> Consumed {
    let mut consumed = Consumed::default();
    let mut subscribed = None;
    for _ in 0..600 {
        if let Ok(subscriber) = Subscriber::connect(&config).await
            && let Ok(deliveries) = subscriber
                .subscribe_durable("exactly-once", StartAt::Beginning)
                .await
        {
            subscribed = Some(deliveries);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut deliveries = subscribed.expect("subscribed within 600 attempts");
    while let Some(delivery) = deliveries.next().await {
        // Errors are the server going away; the subscription recovers on the next poll.
        let Ok(delivery) = delivery else { continue };
        let seq = delivery.envelope.seq;
        if consumed.seqs.last().is_some_and(|last| seq <= *last) {
            if consumed.unconfirmed.remove(&seq) {
                consumed.redelivered_after_failed_ack += 1;
            } else {
                consumed.duplicates.push(seq);
            }
        } else {
            consumed.seqs.push(seq);
        }
        if delivery.ack().await.is_err() {
            consumed.unconfirmed.insert(seq);
            continue;
        }
        if seq >= until {
            break;
        }
    }
    consumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_a_durable_consumer_once_in_order_through_crash_outage_and_restart() {
    let mut nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut vault = open_vault(dir.path());
    bootstrap(&vault).await;
    let bootstrapped = vault.log().head().0;
    let last = bootstrapped + EVENTS as Seq;
    // The first run creates the streams the consumer binds to.
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("first relay run");
    let consumer = tokio::spawn(consume(config.clone(), last));

    // (a) The relay dies after NATS acknowledged events and before it recorded them.
    create_keys(&vault, 2_500, 64).await;
    let crash_at = bootstrapped + 1_500;
    let crashed = Relay::new(vault.clone(), config.clone())
        .crash_after_publishing(crash_at)
        .start();
    assert!(
        eventually(Duration::from_secs(30), async || crashed.is_finished()).await,
        "the relay did not crash"
    );
    let checkpoint = Relay::checkpoint(vault.log(), &config).expect("checkpoint");
    let stream_last = last_log_seq_in_stream(&nats, &config).await;
    assert!(
        checkpoint < crash_at && crash_at <= stream_last,
        "checkpoint {checkpoint}, crash at {crash_at}, stream at {stream_last}"
    );

    // (b) nats-server goes away while the vault keeps appending.
    let relay = Relay::spawn(vault.clone(), config.clone());
    let appending = {
        let vault = vault.clone();
        tokio::spawn(async move { create_keys(&vault, 2_500, 16).await })
    };
    // NATS goes away while appends are under way (at least 100 more events after the start).
    let head_at_start = vault.log().head().0;
    assert!(
        eventually(Duration::from_secs(60), async || vault.log().head().0
            >= head_at_start + 100
            || appending.is_finished())
        .await
    );
    nats.stop().expect("stop nats-server");
    let head_when_stopped = vault.log().head().0;
    // The vault keeps appending, and the relay notices the outage (a publish or its idle stream
    // check fails) and says it is not ready, while NATS is down.
    assert!(
        eventually(Duration::from_secs(60), async || vault.log().head().0
            > head_when_stopped
            || appending.is_finished())
        .await,
        "appends stalled without NATS"
    );
    let relay_down = || {
        vault
            .telemetry()
            .components()
            .get("relay")
            .is_some_and(|health| !health.ready)
            && !relay.status().ready
            && relay.status().errors_total > 0
    };
    assert!(
        eventually(Duration::from_secs(60), async || relay_down()).await,
        "relay reported ready without NATS: {:?}",
        vault.telemetry().components().get("relay")
    );
    nats.restart()
        .expect("restart nats-server on the same store");
    appending.await.expect("appending task");
    let head = vault.log().head().0;
    let status = tokio::time::timeout(Duration::from_secs(60), relay.published_through(head))
        .await
        .expect("relay caught up");
    assert!(status.errors_total > 0, "the outage was not noticed");
    assert!(
        vault
            .telemetry()
            .components()
            .get("relay")
            .is_some_and(|h| h.ready)
    );
    assert_eq!(
        vault.telemetry().value("keyledger_relay_lag_events", ""),
        Some(0.0)
    );

    // (c) The vault restarts on the same data directory.
    relay.shutdown().await;
    assert_eq!(
        Relay::checkpoint(vault.log(), &config).expect("checkpoint"),
        head
    );
    drop(vault);
    vault = open_vault(dir.path());
    let relay = Relay::spawn(vault.clone(), config.clone());
    create_keys(&vault, EVENTS - 5_000, 64).await;
    assert_eq!(vault.log().head().0, last);
    tokio::time::timeout(Duration::from_secs(60), relay.published_through(last))
        .await
        .expect("relay caught up");

    let consumed = tokio::time::timeout(Duration::from_secs(60), consumer)
        .await
        .expect("consumer done")
        .expect("consumer");
    relay.shutdown().await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    for stream in [&config.stream, &config.replication_stream] {
        let mut stream = js.get_stream(stream).await.expect("stream");
        assert_eq!(
            stream.info().await.expect("info").state.messages,
            last,
            "no duplicate stored"
        );
    }
    assert!(
        consumed.duplicates.is_empty(),
        "duplicates: {:?}",
        consumed.duplicates
    );
    assert_eq!(consumed.seqs.len() as Seq, last, "{consumed:?}");
    assert_eq!(
        consumed.seqs,
        (1..=last).collect::<Vec<_>>(),
        "every event once, in order"
    );
}

async fn last_log_seq_in_stream(
    nats: &keyledger_testkit::nats::NatsServer,
    config: &BusConfig,
) -> Seq {
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let mut stream = js.get_stream(&config.stream).await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let message = stream.get_raw_message(last).await.expect("last message");
    keyledger_bus::decode_public(&message.payload)
        .expect("an event")
        .seq
}
