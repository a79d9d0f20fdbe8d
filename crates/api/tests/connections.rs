//! The HTTP server's connection handling over real TCP on 127.0.0.1: header read and idle
//! timeouts, the connection cap, the shutdown deadline, and `Connection: close` on answers
//! given before the request body was read. Timeouts are configured short; every wait for the
//! server is a bounded read, never a sleep followed by an assertion.

use std::net::SocketAddr;
use std::time::Duration;

use keyledger_api::{ApiConfig, ApiState, serve};
use keyledger_crypto::MasterKey;
use keyledger_domain::{Timestamp, UserId};
use keyledger_vault::{ManualClock, Vault, VaultConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound for anything the server must do; the configured timeouts are far shorter.
const BOUND: Duration = Duration::from_secs(20);
const LONG: Duration = Duration::from_secs(600);

struct TestServer {
    dir: tempfile::TempDir,
    address: SocketAddr,
    state: ApiState,
    admin: String,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    async fn start(config: ApiConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let (vault, admin) = open_vault(dir.path(), true).await;
        let state = ApiState::new(vault, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            dir,
            address,
            state,
            admin,
            stop: Some(stop),
            served: Some(served),
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }

    fn counter(&self, name: &str, labels: &str) -> f64 {
        self.state
            .vault()
            .telemetry()
            .value(name, labels)
            .unwrap_or(0.0)
    }

    /// Asks for shutdown and waits (bounded) for `serve` to return.
    async fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        tokio::time::timeout(BOUND, served)
            .await
            .expect("serve returns within the shutdown grace")
            .unwrap()
            .unwrap();
    }
}

async fn open_vault(dir: &std::path::Path, bootstrap: bool) -> (Vault, String) {
    let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
    // A fixed key, so that the vault can be opened again.
    let master = MasterKey::parse(&"07".repeat(32)).unwrap();
    let config = VaultConfig {
        data_dir: dir.to_path_buf(),
        ..VaultConfig::default()
    };
    let vault = Vault::open(config, &master, clock).unwrap();
    let admin = if bootstrap {
        vault
            .bootstrap(UserId::parse("admin").unwrap())
            .await
            .unwrap()
            .secret
            .expose()
            .to_owned()
    } else {
        String::new()
    };
    (vault, admin)
}

fn config(change: impl FnOnce(&mut ApiConfig)) -> ApiConfig {
    let mut config = ApiConfig {
        header_read_timeout: LONG,
        idle_timeout: LONG,
        shutdown_grace: LONG,
        ..ApiConfig::default()
    };
    change(&mut config);
    config
}

/// One HTTP/1.1 response: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (the server always sends `Content-Length`), bounded in time.
async fn read_response(stream: &mut TcpStream) -> Response {
    tokio::time::timeout(BOUND, async {
        let mut buffer = Vec::new();
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the connection closed before a response");
            buffer.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = buffer[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the connection closed inside a response body");
            body.extend_from_slice(&chunk[..read]);
        }
        Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    })
    .await
    .expect("a response within the bound")
}

/// Waits (bounded) until the server closes the connection; returns what it sent meanwhile.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    tokio::time::timeout(BOUND, async {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return received,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .expect("the server closes the connection within the bound")
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off() {
    let server = TestServer::start(config(|c| {
        c.header_read_timeout = Duration::from_millis(300);
    }))
    .await;
    let mut slow = server.connect().await;
    let (mut reader, mut writer) = slow.split();
    let trickle = async {
        // A head that never ends, one byte every 20 ms (bounded: 1000 bytes = 20 s).
        for byte in b"GET /healthz HTTP/1.1\r\nx-slow: "
            .iter()
            .chain([b'a'; 1000].iter())
        {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let closed = async {
        let mut received = Vec::new();
        let _ = reader.read_to_end(&mut received).await;
        received
    };
    let received = tokio::select! {
        received = closed => received,
        () = trickle => panic!("the server still listened after 1000 slow bytes"),
    };
    assert!(received.is_empty() || received.starts_with(b"HTTP/1.1 408"));
    assert_eq!(
        server.counter(
            "keyledger_http_connections_timed_out_total",
            "reason=\"header_read_timeout\""
        ),
        1.0
    );
    // A client that sends its head at once is served on a fresh connection.
    let mut quick = server.connect().await;
    quick.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut quick).await.status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start(config(|c| {
        c.idle_timeout = Duration::from_millis(300);
    }))
    .await;
    let mut stream = server.connect().await;
    for _ in 0..2 {
        stream.write_all(HEALTH).await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), None, "kept alive");
    }
    assert!(read_until_closed(&mut stream).await.is_empty());
    assert_eq!(
        server.counter(
            "keyledger_http_connections_timed_out_total",
            "reason=\"idle_timeout\""
        ),
        1.0
    );
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_and_accepted_ones_are_served() {
    let server = TestServer::start(config(|c| c.max_connections = 2)).await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    for stream in [&mut first, &mut second] {
        stream.write_all(HEALTH).await.unwrap();
        assert_eq!(read_response(stream).await.status, 200);
    }
    // The accept loop counts the cap as reached as soon as both slots are taken.
    let reached = "keyledger_http_connection_limit_reached_total";
    let deadline = tokio::time::Instant::now() + BOUND;
    while server.counter(reached, "") < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "cap never reached");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The kernel completes the handshake, but the server does not take the connection.
    let mut third = server.connect().await;
    third.write_all(HEALTH).await.unwrap();
    first.write_all(HEALTH).await.unwrap();
    assert_eq!(
        read_response(&mut first).await.status,
        200,
        "accepted work goes on"
    );
    let mut byte = [0u8; 1];
    assert!(
        matches!(third.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the third connection waits while two are open"
    );
    drop(first);
    assert_eq!(
        read_response(&mut third).await.status,
        200,
        "served once a slot frees"
    );
}

#[tokio::test]
async fn shutdown_closes_slow_clients_after_the_grace_and_releases_the_vault() {
    let mut server = TestServer::start(config(|c| {
        c.shutdown_grace = Duration::from_millis(300);
        c.request_timeout = LONG;
    }))
    .await;
    // A request whose body never comes (in flight), a half-sent head, an idle connection.
    let mut in_flight = server.connect().await;
    in_flight
        .write_all(b"POST /v1/auth/login HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut half_head = server.connect().await;
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nx-sl")
        .await
        .unwrap();
    let mut idle = server.connect().await;
    idle.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut idle).await.status, 200);

    server.shut_down().await;
    for stream in [&mut in_flight, &mut half_head, &mut idle] {
        read_until_closed(stream).await;
    }
    assert!(
        TcpStream::connect(server.address).await.is_err(),
        "no longer accepting"
    );
    // With the server's state gone the data directory can be opened again.
    let TestServer { dir, state, .. } = server;
    drop(state);
    let (reopened, _) = open_vault(dir.path(), false).await;
    assert!(reopened.read(|s| s.has_users()));
}

/// A request with a body that the server answers before reading it (401, 415, 429) leaves the
/// connection usable for the next request: the server reads the rest of the body first. A body
/// over the limit (413) is not read: the answer says `Connection: close`, and the server closes.
#[tokio::test]
async fn an_answer_before_the_body_was_read_keeps_the_connection_usable() {
    let server = TestServer::start(config(|c| c.auth_failure_limit = 2)).await;
    let body = format!("{{\"name\":\"{}\"}}", "x".repeat(60_000));
    let mut stream = server.connect().await;
    let cases = [
        (None, "application/json", 401),
        (Some(server.admin.as_str()), "text/plain", 415),
        (Some("kl_wrong"), "application/json", 401),
        (Some("kl_wrong"), "application/json", 401),
        (Some("kl_wrong"), "application/json", 429),
    ];
    for (key, content_type, expect) in cases {
        let authorization = key
            .map(|key| format!("authorization: Bearer {key}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /v1/api-keys HTTP/1.1\r\nhost: t\r\n{authorization}content-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let response = read_response(&mut stream).await;
        assert_eq!(response.status, expect, "{}", response.body);
        assert_eq!(response.header("connection"), None, "{expect}: kept alive");
    }
    // The same connection still answers.
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);

    // Over the limit: refused from the head alone, and the connection is closed.
    let head = format!(
        "POST /v1/api-keys HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 70000\r\n\r\n",
        server.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    read_until_closed(&mut stream).await;
}
