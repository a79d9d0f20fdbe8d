//! The relay, the subscriber and tail against a real nats-server, one behaviour at a time.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use futures::StreamExt;
use keyledger_bus::{Relay, StartAt, Subscriber, TailOptions};

use crate::support::*;

/// What the relay relies on in nats-server 2.9.10: a duplicate `Nats-Msg-Id` is answered as a
/// duplicate before `Nats-Expected-Last-Sequence` is checked, a wrong expected sequence is
/// refused, and an expected sequence of 0 on an empty stream is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dedupes_before_checking_the_expected_sequence() {
    let nats = nats();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "T".to_owned(),
        subjects: vec!["t.>".to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .expect("create stream");
    let publish = |id: &str, expected: u64| {
        PublishMessage::build()
            .payload(id.to_owned().into())
            .message_id(id)
            .expected_last_sequence(expected)
    };
    let first = js
        .send_publish("t.a", publish("a", 0))
        .await
        .expect("send")
        .await
        .expect("ack");
    assert_eq!((first.sequence, first.duplicate), (1, false));
    let second = js
        .send_publish("t.a", publish("b", 1))
        .await
        .expect("send")
        .await
        .expect("ack");
    assert_eq!((second.sequence, second.duplicate), (2, false));
    let refused = js
        .send_publish("t.a", publish("c", 1))
        .await
        .expect("send")
        .await;
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(PublishErrorKind::WrongLastSequence)
    );
    let duplicate = js
        .send_publish("t.a", publish("a", 7))
        .await
        .expect("send")
        .await
        .expect("ack");
    assert_eq!((duplicate.sequence, duplicate.duplicate), (1, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_event_in_order_and_records_its_checkpoint() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    create_keys(&vault, 20, 4).await;
    let head = vault.log().head().0;
    let config = bus_config(&nats);

    let caught_up = Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    assert_eq!(
        (caught_up.published_seq, caught_up.published_events),
        (head, head)
    );
    assert_eq!(
        Relay::checkpoint(vault.log(), &config).expect("checkpoint"),
        head
    );
    // A second run finds everything published already.
    let again = Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    assert_eq!((again.published_seq, again.published_events), (head, 0));

    let subscriber = Subscriber::connect(&config).await.expect("subscriber");
    let mut replay = subscriber
        .replay(StartAt::Beginning, None)
        .await
        .expect("replay");
    assert_eq!(replay.pending_at_start, head);
    let mut seqs = Vec::new();
    while let Some(received) = replay.next().await {
        let received = received.expect("event");
        assert_eq!(
            received.nats_subject,
            config.public_subject(expected_suffix(&received.envelope))
        );
        seqs.push(received.envelope.seq);
        if received.pending == 0 {
            break;
        }
    }
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
}

fn expected_suffix(envelope: &keyledger_bus::PublicEnvelope) -> &'static str {
    match envelope.event.type_name() {
        "UserCreated" => "user.created",
        "RoleGranted" => "user.role_granted",
        "ApiKeyCreated" => "api_key.created",
        other => panic!("unexpected event type {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_a_log_seq_survives_a_purged_stream() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    create_keys(&vault, 30, 4).await;
    let config = bus_config(&nats);
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    // Purge the first 10 messages: stream sequences no longer start at 1, log seqs still do.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    let stream = js.get_stream(&config.stream).await.expect("stream");
    stream.purge().sequence(11).await.expect("purge");
    create_keys(&vault, 5, 1).await;
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");

    let subscriber = Subscriber::connect(&config).await.expect("subscriber");
    for wanted in [12, 20, 33] {
        let mut replay = subscriber
            .replay(StartAt::Seq(wanted), None)
            .await
            .expect("replay");
        let first = replay.next().await.expect("an event").expect("decodable");
        assert_eq!(first.envelope.seq, wanted);
    }
    // Before the first retained event: starts at the first one there.
    let mut replay = subscriber
        .replay(StartAt::Seq(3), None)
        .await
        .expect("replay");
    assert_eq!(
        replay
            .next()
            .await
            .expect("an event")
            .expect("decodable")
            .envelope
            .seq,
        11
    );
    // After the last: only new events.
    let head = vault.log().head().0;
    assert_eq!(
        subscriber.stream_seq_of(head + 1).await.expect("lookup"),
        head + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_gets_the_whole_log_again() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    create_keys(&vault, 10, 2).await;
    let config = bus_config(&nats);
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    js.delete_stream(&config.replication_stream)
        .await
        .expect("delete");
    let head = vault.log().head().0;
    let run = Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    assert_eq!(run.published_events, head);
    let mut replication = js
        .get_stream(&config.replication_stream)
        .await
        .expect("stream");
    assert_eq!(replication.info().await.expect("info").state.messages, head);
    let mut public = js.get_stream(&config.stream).await.expect("stream");
    assert_eq!(
        public.info().await.expect("info").state.messages,
        head,
        "the public stream got no duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_another_log_is_refused() {
    let nats = nats();
    let config = bus_config(&nats);
    let first = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(first.path());
    bootstrap(&vault).await;
    create_keys(&vault, 3, 1).await;
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");

    let second = tempfile::tempdir().expect("tempdir");
    let other = open_vault(second.path());
    bootstrap(&other).await;
    create_keys(&other, 5, 1).await;
    let refused = Relay::new(other.clone(), config.clone())
        .run_until_caught_up()
        .await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("holds events of another log"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_one_line_per_event_or_the_json() {
    let nats = nats();
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    bootstrap(&vault).await;
    create_keys(&vault, 4, 1).await;
    let config = bus_config(&nats);
    Relay::new(vault.clone(), config.clone())
        .run_until_caught_up()
        .await
        .expect("relay");
    let head = vault.log().head().0;

    let mut out = Vec::new();
    let printed = keyledger_bus::tail(&config, &TailOptions::default(), &mut out)
        .await
        .expect("tail");
    assert_eq!(printed, head);
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(text.lines().count() as u64, head);
    assert!(
        text.lines()
            .last()
            .is_some_and(|line| line.contains("ApiKeyCreated")),
        "{text}"
    );

    let options = TailOptions {
        from: StartAt::Seq(head - 1),
        subject: Some("api_key.*".to_owned()),
        json: true,
        ..TailOptions::default()
    };
    let mut out = Vec::new();
    assert_eq!(
        keyledger_bus::tail(&config, &options, &mut out)
            .await
            .expect("tail"),
        2
    );
    for line in String::from_utf8(out).expect("utf-8").lines() {
        let envelope = keyledger_bus::decode_public(line.as_bytes()).expect("JSON of an event");
        assert_eq!(envelope.event.type_name(), "ApiKeyCreated");
    }

    let since_epoch = TailOptions {
        from: StartAt::Time(keyledger_domain::Timestamp::from_millis(0)),
        ..TailOptions::default()
    };
    assert_eq!(
        keyledger_bus::tail(&config, &since_epoch, &mut Vec::new())
            .await
            .expect("tail"),
        head
    );
    let tomorrow = TailOptions {
        from: StartAt::Time(vault.now().plus_days(1)),
        ..TailOptions::default()
    };
    assert_eq!(
        keyledger_bus::tail(&config, &tomorrow, &mut Vec::new())
            .await
            .expect("tail"),
        0
    );

    let nothing = TailOptions {
        subject: Some("ingestion.>".to_owned()),
        ..TailOptions::default()
    };
    assert_eq!(
        keyledger_bus::tail(&config, &nothing, &mut Vec::new())
            .await
            .expect("tail"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_keeps_serving_while_nats_is_down_and_the_relay_catches_up() {
    let mut nats = nats();
    let config = bus_config(&nats);
    nats.stop().expect("stop nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let relay = Relay::spawn(vault.clone(), config.clone());
    bootstrap(&vault).await;
    create_keys(&vault, 20, 4).await;
    let head = vault.log().head().0;

    let telemetry = vault.telemetry();
    let reported = eventually(Duration::from_secs(10), async || {
        let down = telemetry
            .components()
            .get("relay")
            .is_some_and(|h| !h.ready && h.detail.contains("cannot connect"));
        down && telemetry.value("keyledger_relay_lag_events", "") == Some(head as f64)
            && telemetry
                .value("keyledger_relay_errors_total", "")
                .is_some_and(|errors| errors >= 1.0)
    })
    .await;
    assert!(
        reported,
        "{:?} {}",
        telemetry.components(),
        telemetry.render()
    );
    assert!(!relay.status().ready && relay.status().published_seq == 0);

    nats.restart().expect("restart nats-server");
    let status = tokio::time::timeout(Duration::from_secs(30), relay.published_through(head))
        .await
        .expect("caught up");
    assert_eq!(status.published_seq, head);
    assert!(eventually(Duration::from_secs(5), async || relay.status().ready).await);
    assert_eq!(telemetry.value("keyledger_relay_lag_events", ""), Some(0.0));
    assert_eq!(
        telemetry.value("keyledger_relay_published_seq", ""),
        Some(head as f64)
    );
    assert_eq!(
        telemetry.value("keyledger_relay_published_events_total", ""),
        Some(head as f64)
    );
    relay.shutdown().await;
    assert!(relay_stopped(&vault));
}

fn relay_stopped(vault: &keyledger_vault::Vault) -> bool {
    vault
        .telemetry()
        .components()
        .get("relay")
        .is_some_and(|h| !h.ready && h.detail == "stopped")
}
