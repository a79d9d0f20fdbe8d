//! docs/examples/nats-permissions.conf, run for real: subscribers read the public stream and
//! nothing of the replication streams; replicas read those; the relay writes everything.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use keyledger_bus::replica::{Replica, ReplicaConfig};
use keyledger_bus::{BusConfig, Relay, StartAt, Subscriber};
use keyledger_testkit::nats::NatsServer;

use crate::support::*;

fn as_user(config: &BusConfig, nats: &NatsServer, user: &str) -> BusConfig {
    BusConfig {
        url: format!("nats://{user}:{user}-password@127.0.0.1:{}", nats.port()),
        ..config.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_keep_subscribers_off_the_replication_stream() {
    let conf =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/nats-permissions.conf");
    let nats = NatsServer::start_with_args(&["-c", conf.to_str().expect("a UTF-8 path")])
        .expect("nats-server with the example permissions");
    let base = bus_config(&nats);
    let (relay_config, replica_config, subscriber_config) = (
        as_user(&base, &nats, "relay"),
        as_user(&base, &nats, "replica"),
        as_user(&base, &nats, "subscriber"),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let vault = open_vault(dir.path());
    let admin_key = bootstrap(&vault).await;
    create_keys(&vault, 5, 1).await;
    Relay::new(vault.clone(), relay_config.clone())
        .run_until_caught_up()
        .await
        .expect("the relay may publish");
    let head = vault.log().head().0;

    // The replica reads the replication streams and verifies.
    let replica = Replica::start(ReplicaConfig {
        bus: replica_config,
        master_key: master_key(),
        limits: keyledger_bus::replica::LagLimits::default(),
    })
    .await
    .expect("replica");
    assert!(
        eventually(Duration::from_secs(30), async || replica
            .status()
            .applied_seq
            == head)
        .await,
        "{:?}",
        replica.status()
    );
    assert!(
        replica
            .verify(admin_key.secret.expose())
            .is_some_and(|v| v.is_valid())
    );
    replica.shutdown().await;

    // A subscriber reads the public events...
    let subscriber = Subscriber::connect(&subscriber_config)
        .await
        .expect("subscriber");
    let mut replay = subscriber
        .replay(StartAt::Beginning, None)
        .await
        .expect("public replay");
    assert_eq!(
        replay
            .next()
            .await
            .expect("an event")
            .expect("decodable")
            .envelope
            .seq,
        1
    );
    let mut durable = subscriber
        .subscribe_durable("public-reader", StartAt::Beginning)
        .await
        .expect("durable");
    let first = durable.next().await.expect("an event").expect("decodable");
    first.ack().await.expect("ack");

    // ...and can neither consume the replication streams nor see their messages live.
    let client = subscriber.client().clone();
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_millis(500))
        .build(client.clone());
    for stream in [
        &base.replication_stream,
        &format!("{}_KEYS", base.replication_stream),
    ] {
        assert!(
            js.get_stream(stream).await.is_err(),
            "subscriber could look at {stream}"
        );
    }
    let refused = async_nats::jetstream::consumer::pull::OrderedConfig::default();
    let consumer = js
        .create_consumer_on_stream(refused, base.replication_stream.as_str())
        .await;
    assert!(
        consumer.is_err(),
        "subscriber could create a consumer on the replication stream"
    );
    let mut spying = client
        .subscribe("keyledger.replication.>")
        .await
        .expect("subscribe call");
    let relay_client = relay_config
        .connect("relay-spy")
        .await
        .expect("relay connection");
    let mut allowed = relay_client
        .subscribe("keyledger.replication.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    relay_client.flush().await.expect("flush");
    create_keys(&vault, 2, 1).await;
    Relay::new(vault.clone(), relay_config)
        .run_until_caught_up()
        .await
        .expect("relay");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), allowed.next())
            .await
            .is_ok(),
        "the relay user saw no replication message: the test proves nothing"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), spying.next())
            .await
            .is_err(),
        "a subscriber received a replication message"
    );
}

/// The worker user of the example takes jobs from the work queue and can do nothing else; a
/// subscriber cannot see the jobs (their messages carry the tickets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_take_jobs_and_subscribers_cannot_see_them() {
    use async_nats::jetstream::message::PublishMessage;
    use keyledger_bus::jobs::{JobQueueConfig, bind_job_consumer, context, ensure_job_queue};

    let conf =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/nats-permissions.conf");
    let nats = NatsServer::start_with_args(&["-c", conf.to_str().expect("a UTF-8 path")])
        .expect("nats-server with the example permissions");
    let base = BusConfig {
        ack_timeout: Duration::from_millis(500),
        ..bus_config(&nats)
    };
    let queue = JobQueueConfig::default();
    // The vault (the relay's user) creates the queue and publishes a job.
    let vault_side = context(
        as_user(&base, &nats, "relay")
            .connect("vault")
            .await
            .expect("vault connection"),
        &base,
    );
    ensure_job_queue(&vault_side, &base, &queue)
        .await
        .expect("the vault creates the queue");
    vault_side
        .send_publish(
            queue.subject("aws"),
            PublishMessage::build()
                .payload("{}".into())
                .message_id("ing_0000000000000001"),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");

    // A worker binds the consumer, takes the job and acknowledges it...
    let worker_side = context(
        as_user(&base, &nats, "worker")
            .connect("worker")
            .await
            .expect("worker connection"),
        &base,
    );
    let consumer = bind_job_consumer(&worker_side, &queue)
        .await
        .expect("a worker binds the shared consumer");
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("pull");
    let job = batch.next().await.expect("a job").expect("a message");
    job.double_ack()
        .await
        .expect("a worker acknowledges its job");
    // ...and can neither look at the stream nor publish a job.
    assert!(worker_side.get_stream(&queue.stream).await.is_err());
    let forged = worker_side
        .send_publish(
            queue.subject("aws"),
            PublishMessage::build().payload("{}".into()),
        )
        .await;
    let landed = match forged {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!landed, "a worker published a job");

    // A subscriber sees nothing of the queue.
    let subscriber = context(
        as_user(&base, &nats, "subscriber")
            .connect("subscriber")
            .await
            .expect("subscriber connection"),
        &base,
    );
    assert!(subscriber.get_stream(&queue.stream).await.is_err());
    assert!(
        subscriber
            .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
                &queue.consumer,
                &queue.stream
            )
            .await
            .is_err(),
        "a subscriber bound the workers' consumer"
    );
}
