//! A nats-server that comes back without the tail of its streams: Debian's nats-server 2.9.10
//! fsyncs JetStream only every 60 s, so a crash or power loss can forget messages it had
//! acknowledged. Simulated exactly: the store is copied while the server is stopped, more
//! events are published, and the server restarts on the earlier copy. The relay must publish
//! the lost tail again (while it keeps running, and after a restart whose checkpoint is ahead
//! of the stream), so that both streams end with every event once, in order; the replica
//! following them must stay consistent and keep up.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use keyledger_bus::replica::{LagLimits, Replica, ReplicaConfig};
use keyledger_bus::{BusConfig, Relay, RelayHandle};
use keyledger_domain::public::hex;
use keyledger_log::{Envelope, Seq};
use keyledger_testkit::nats::NatsServer;
use keyledger_vault::Vault;

use crate::support::*;

const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_lost_their_tail_are_refilled_with_nothing_lost_or_duplicated() {
    let mut nats = nats();
    let config = BusConfig {
        stream_check_interval: Duration::from_millis(100),
        ..bus_config(&nats)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    create_keys(&vault, 200, 16).await;
    let relay = Relay::spawn(vault.clone(), config.clone());
    let replica = Replica::start(ReplicaConfig {
        bus: config.clone(),
        master_key: master_key(),
        limits: LagLimits::default(),
    })
    .await
    .expect("start the replica");
    everything_published(&vault, &relay).await;

    // (a) The running relay: the server restarts from a copy that lacks the last 150 events.
    let kept = copy_store_while_stopped(&mut nats, saved.path(), &config).await;
    assert_eq!(kept, vault.log().head().0);
    let lost_tail = create_keys(&vault, 150, 16).await;
    let head = everything_published(&vault, &relay).await;
    applied_by(&replica, head).await;
    restart_from_copy(&mut nats, saved.path());
    let refilled = eventually(PATIENCE, async || {
        relay.status().lost_events_total == 150 && stream_last_seq(&nats, &config).await == head
    })
    .await;
    assert!(
        refilled,
        "the lost tail was not refilled: {:?}",
        relay.status()
    );
    assert_streams_hold_the_log(&nats, &config, &vault).await;

    // (b) A restarted relay whose checkpoint is ahead of the stream.
    let kept = copy_store_while_stopped(&mut nats, saved.path(), &config).await;
    assert_eq!(kept, head);
    let second_tail = create_keys(&vault, 100, 16).await;
    let head = everything_published(&vault, &relay).await;
    applied_by(&replica, head).await;
    relay.shutdown().await;
    assert_eq!(
        Relay::checkpoint(vault.log(), &config).expect("checkpoint"),
        head
    );
    restart_from_copy(&mut nats, saved.path());
    assert_eq!(
        stream_last_seq(&nats, &config).await,
        kept,
        "the restored store still holds the tail: the test would prove nothing"
    );
    let relay = Relay::spawn(vault.clone(), config.clone());
    everything_published(&vault, &relay).await;
    assert_eq!(relay.status().lost_events_total, 100);
    assert_streams_hold_the_log(&nats, &config, &vault).await;

    // The replica rode through both losses: consistent, and following new events.
    let after = create_keys(&vault, 5, 5).await;
    let head = everything_published(&vault, &relay).await;
    applied_by(&replica, head).await;
    let status = replica.status();
    assert!(status.consistent, "{status:?}");
    for key in lost_tail.iter().chain(&second_tail).chain(&after) {
        assert!(
            replica
                .verify(key.secret.expose())
                .is_some_and(|v| v.is_valid()),
            "{} does not verify on the replica",
            key.id
        );
    }
    assert_streams_hold_the_log(&nats, &config, &vault).await;
    replica.shutdown().await;
    relay.shutdown().await;
}

/// Waits until the relay acknowledged the vault's head; returns it.
async fn everything_published(vault: &Vault, relay: &RelayHandle) -> Seq {
    let head = vault.log().head().0;
    let status = tokio::time::timeout(PATIENCE, relay.published_through(head))
        .await
        .expect("the relay published through the head");
    assert!(status.published_seq >= head, "{status:?}");
    head
}

async fn applied_by(replica: &Replica, seq: Seq) {
    assert!(
        eventually(PATIENCE, async || replica.status().applied_seq >= seq).await,
        "the replica did not apply through {seq}: {:?}",
        replica.status()
    );
}

/// Stops the server (a clean stop writes the whole store), copies its store to `copy`, and
/// starts it again; returns the stream's last sequence in the copy.
async fn copy_store_while_stopped(nats: &mut NatsServer, copy: &Path, config: &BusConfig) -> u64 {
    nats.stop().expect("stop nats-server");
    replace_dir(&nats.store_dir(), copy);
    nats.restart().expect("restart nats-server");
    stream_last_seq(nats, config).await
}

/// Stops the server and restarts it on the earlier copy of its store: the tail is gone.
fn restart_from_copy(nats: &mut NatsServer, copy: &Path) {
    nats.stop().expect("stop nats-server");
    replace_dir(copy, &nats.store_dir());
    nats.restart()
        .expect("restart nats-server on the earlier store");
}

fn replace_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).expect("remove the old copy");
    }
    copy_dir(from, to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a store file");
        }
    }
}

async fn stream_last_seq(nats: &NatsServer, config: &BusConfig) -> u64 {
    let Ok(client) = async_nats::connect(nats.url()).await else {
        return 0;
    };
    let js = jetstream::new(client);
    let Ok(mut stream) = js.get_stream(&config.stream).await else {
        return 0;
    };
    stream
        .info()
        .await
        .map(|info| info.state.last_sequence)
        .unwrap_or_default()
}

/// Both streams hold exactly the log: message `n` is event `n` (by its `Nats-Msg-Id`, its
/// JSON `seq` or envelope), nothing missing, nothing twice.
async fn assert_streams_hold_the_log(nats: &NatsServer, config: &BusConfig, vault: &Vault) {
    let head = vault.log().head().0;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    for name in [&config.stream, &config.replication_stream] {
        let mut stream = js.get_stream(name).await.expect("stream");
        let state = stream.info().await.expect("info").state.clone();
        assert_eq!(
            (state.first_sequence, state.last_sequence, state.messages),
            (1, head, head),
            "{name} holds a different set of messages than the log"
        );
        for seq in 1..=head {
            let message = stream.get_raw_message(seq).await.expect("message");
            let event = vault.log().get(seq).expect("read").expect("event");
            let id = hex(&event.event_id);
            let msg_id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|value| value.as_str().to_owned());
            assert_eq!(msg_id.as_deref(), Some(id.as_str()), "{name} message {seq}");
            let logged_seq = if name == &config.stream {
                keyledger_bus::decode_public(&message.payload)
                    .expect("an event")
                    .seq
            } else {
                Envelope::from_bytes(&message.payload)
                    .expect("an envelope")
                    .seq
            };
            assert_eq!(logged_seq, seq, "{name} message {seq}");
        }
    }
}
