//! Expiry warnings on NATS: the primary announces a key once per horizon, across a restart of
//! the vault and its relay; a read replica following the stream folds the warnings but never
//! writes one, so the public stream holds exactly the primary's log.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keyledger_bus::replica::{LagLimits, Replica, ReplicaConfig};
use keyledger_bus::{Relay, StartAt, Subscriber};
use keyledger_domain::{FromTrusted, KeyDuration, KeyName, MILLIS_PER_DAY, Timestamp};
use keyledger_vault::{ManualClock, Vault};

use crate::support::*;

const PATIENCE: Duration = Duration::from_secs(60);

/// Every public event on the stream, as `(seq, type, actor)`, once the stream holds `count`.
async fn published(subscriber: &Subscriber, count: usize) -> Vec<(u64, String, String)> {
    let mut replay = subscriber
        .replay(StartAt::Beginning, None)
        .await
        .expect("replay");
    let mut events = Vec::new();
    while events.len() < count {
        let received = tokio::time::timeout(PATIENCE, replay.next())
            .await
            .expect("the stream holds every event")
            .expect("an event")
            .expect("a readable event");
        let envelope = received.envelope;
        events.push((
            envelope.seq,
            envelope.event.type_name().to_owned(),
            envelope.actor,
        ));
    }
    events
}

async fn replica_applied(vault: &Vault, replica: &Replica) {
    let head = vault.log().head().0;
    assert!(
        eventually(PATIENCE, async || replica.status().applied_seq >= head).await,
        "the replica did not apply through {head}: {:?}",
        replica.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_published_once_and_never_come_from_a_replica() {
    let nats = nats();
    let config = bus_config(&nats);
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_790_000_000_000)));
    let vault = open_vault_with_clock(dir.path(), clock.clone());
    bootstrap(&vault).await;
    let key = vault
        .create_api_key(
            admin(),
            KeyName::from_trusted("nightly".to_owned()),
            KeyDuration::Days(10),
            None,
        )
        .await
        .expect("create a key");
    let relay = Relay::spawn(vault.clone(), config.clone());
    let replica = Replica::start(ReplicaConfig {
        bus: config.clone(),
        master_key: master_key(),
        limits: LagLimits::default(),
    })
    .await
    .expect("start the replica");

    // Day 0: inside the 30-day horizon. The replica follows; it has been given every event.
    assert_eq!(vault.sweep_expiring().await.expect("sweep"), 1);
    replica_applied(&vault, &replica).await;

    // A restart of the vault and its relay between horizons: nothing is announced again.
    relay.shutdown().await;
    drop(vault);
    let vault = open_vault_with_clock(dir.path(), clock.clone());
    let relay = Relay::spawn(vault.clone(), config.clone());
    assert_eq!(vault.sweep_expiring().await.expect("sweep"), 0);
    clock.advance_millis(3 * MILLIS_PER_DAY + 1);
    assert_eq!(vault.sweep_expiring().await.expect("sweep"), 1);
    assert_eq!(vault.sweep_expiring().await.expect("sweep"), 0);
    let head = vault.log().head().0;
    tokio::time::timeout(PATIENCE, relay.published_through(head))
        .await
        .expect("the relay published through the head");
    replica_applied(&vault, &replica).await;
    assert!(replica.status().consistent, "{:?}", replica.status());

    // The public stream holds exactly the primary's log, in order: one warning per horizon,
    // both from the primary's sweeper (`system`), none added by the replica.
    let subscriber = Subscriber::connect(&config).await.expect("connect");
    let events = published(&subscriber, head as usize).await;
    let seqs: Vec<u64> = events.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
    let warnings: Vec<&(u64, String, String)> = events
        .iter()
        .filter(|(_, kind, _)| kind == "ApiKeyExpiring")
        .collect();
    assert_eq!(warnings.len(), 2, "{events:?}");
    assert!(warnings.iter().all(|(_, _, actor)| actor == "system"));
    let pending = subscriber
        .replay(StartAt::Beginning, None)
        .await
        .expect("replay")
        .pending_at_start;
    assert_eq!(pending, head, "nothing but the primary's events");
    // The primary's state, folded from its log, holds the nearest horizon announced.
    assert_eq!(
        vault.read(|s| s.api_key_warned_at(&key.id)),
        Some(7),
        "the nearest horizon announced"
    );

    replica.shutdown().await;
    relay.shutdown().await;
}
