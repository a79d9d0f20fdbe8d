//! Honeytokens end to end: the real binary publishing to a private nats-server. A request with
//! a honeytoken is refused exactly as one with an unknown key, and a subscriber receives
//! `HoneytokenUsed` with the client's address, its user agent and the route.

use std::time::Duration;

use futures::StreamExt;
use keyledger_bus::BusConfig;
use keyledger_bus::{DurableOptions, StartAt, Subscriber};
use keyledger_testkit::nats::NatsServer;
use serde_json::json;

use crate::support::{Server, runtime};

#[test]
fn a_honeytoken_use_is_refused_as_unknown_and_published_at_once() {
    let nats = NatsServer::start().expect("nats-server");
    let server = Server::start_with(&[("KEYLEDGER_NATS_URL", &nats.url())]);
    let (status, trap) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "prod backup", "duration": "never", "honeytoken": true })),
    );
    assert_eq!(status, 201, "{trap}");
    let trap_key = trap["key"].as_str().unwrap().to_owned();
    let listed = server.get("/v1/api-keys", &server.admin_key);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == trap["id"] && k["honeytoken"] == true),
        "{listed}"
    );

    let rt = runtime();
    let config = BusConfig::from_url(nats.url());
    let mut deliveries = rt.block_on(async {
        let subscriber = Subscriber::connect(&config).await.expect("connect");
        let mut options = DurableOptions::new("honeytoken-watch", StartAt::Beginning);
        options.filter_subject = Some("api_key.honeytoken_used".to_owned());
        // The relay creates the stream at its first publish: the key's creation above.
        let mut attempts = 0;
        loop {
            match subscriber.subscribe_durable_with(options.clone()).await {
                Ok(deliveries) => break deliveries,
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    eprintln!("waiting for the stream: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("subscribe: {error}"),
            }
        }
    });

    // Refused exactly as a key nobody issued (same status, same body).
    let (stranger, _) =
        keyledger_crypto::generate_api_key(&ring::rand::SystemRandom::new()).unwrap();
    let (_, unknown, _) = server.raw(
        "GET",
        "/v1/me",
        &[("authorization", &format!("Bearer {}", stranger.expose()))],
        Vec::new(),
    );
    let (status, refused, _) = server.raw(
        "GET",
        "/v1/me",
        &[
            ("authorization", &format!("Bearer {trap_key}")),
            ("user-agent", "exfil-script/0.1"),
        ],
        Vec::new(),
    );
    assert_eq!(status, 401);
    assert_eq!(refused, unknown);

    let delivery = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), deliveries.next())
            .await
            .expect("HoneytokenUsed published")
            .expect("a delivery")
            .expect("a readable delivery")
    });
    let event = serde_json::to_value(&delivery.envelope).unwrap();
    assert_eq!(event["type"], "HoneytokenUsed", "{event}");
    assert_eq!(event["actor"], "system");
    assert_eq!(event["data"]["key"], trap["id"]);
    assert_eq!(event["data"]["owner"], "admin");
    assert_eq!(event["data"]["source_address"], "127.0.0.1");
    assert_eq!(event["data"]["user_agent"], "exfil-script/0.1");
    assert_eq!(event["data"]["route"], "GET /v1/me");
    let text = event.to_string();
    assert!(
        !text.contains(&trap_key),
        "the honeytoken itself is never published"
    );

    // Logging in with it (the console's way in) is refused as unknown, and recorded too.
    let (status, refused) = server.call(
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "key": trap_key })),
    );
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused, unknown);
    let delivery = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), deliveries.next())
            .await
            .expect("a second HoneytokenUsed published")
            .expect("a delivery")
            .expect("a readable delivery")
    });
    let event = serde_json::to_value(&delivery.envelope).unwrap();
    assert_eq!(event["data"]["route"], "POST /v1/auth/login", "{event}");
}
