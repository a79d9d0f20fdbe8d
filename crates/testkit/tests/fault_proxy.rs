//! The fault proxy's throttle: a limited body arrives whole and unchanged, alone, with a fault,
//! and on several connections at once. No timing is asserted (the machine may be busy).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use keyledger_testkit::fault_proxy::{Fault, FaultProxy, RequestMatch, Throttle};

/// 200 KiB + 17 bytes: more than one bucketful at every rate below, and not a multiple of one.
const LEN: usize = 200 * 1024 + 17;

fn content() -> Vec<u8> {
    (0..LEN).map(|i| (i * 31 % 251) as u8).collect()
}

/// An upstream that answers every GET with [`content`].
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { content() });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

async fn get(proxy: &FaultProxy, path: &str) -> Vec<u8> {
    let stream = tokio::net::TcpStream::connect(proxy.address())
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, proxy.address().to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// Reads `/blob` through a proxy with `throttle` (and `fault` on it, if any) `connections` times
/// at once, and checks every copy against what upstream holds.
async fn check(throttle: Option<u64>, fault: Option<Fault>, connections: usize, expected: &[u8]) {
    let proxy = FaultProxy::start(upstream().await).await.unwrap();
    proxy.throttle(throttle.map(|bytes_per_second| Throttle { bytes_per_second }));
    if let Some(fault) = fault {
        proxy.inject(RequestMatch::get(), fault, u32::MAX);
    }
    let copies = futures::future::join_all((0..connections).map(|_| get(&proxy, "/blob"))).await;
    for copy in copies {
        assert_eq!(copy.len(), expected.len(), "throttle {throttle:?}");
        assert!(copy == expected, "throttle {throttle:?}: the bytes changed");
    }
    assert_eq!(proxy.requests().len(), connections);
}

#[tokio::test]
async fn a_throttled_body_arrives_whole_and_unchanged() {
    let content = content();
    let mut flipped = content.clone();
    flipped[70_000] ^= 0xFF;
    // At 1 MiB/s a bucketful is 52,428 bytes: the body leaves in four full pieces and a rest.
    check(None, None, 1, &content).await;
    check(Some(1 << 20), None, 1, &content).await;
    check(Some(2 << 20), None, 3, &content).await;
    // The throttle wraps the faulty body: the fault still applies, once.
    check(
        Some(1 << 20),
        Some(Fault::FlipByte { offset: 70_000 }),
        1,
        &flipped,
    )
    .await;
}

#[tokio::test]
async fn lifting_the_throttle_applies_to_the_next_response() {
    let content = content();
    let proxy = FaultProxy::start(upstream().await).await.unwrap();
    proxy.throttle(Some(Throttle {
        bytes_per_second: 4 << 20,
    }));
    assert!(get(&proxy, "/a").await == content);
    proxy.throttle(None);
    assert!(get(&proxy, "/b").await == content);
}
