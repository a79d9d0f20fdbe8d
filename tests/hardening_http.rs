//! Connection handling of the real binary: slow request heads and idle connections are closed,
//! SIGTERM with a slow client still connected ends the process within the shutdown grace (and a
//! new `serve` on the same data directory starts), and the failed-authentication throttle keys on
//! the `X-Forwarded-For` entry the trusted proxy added. Every wait is a bounded read or poll.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, Server};

const BOUND: Duration = Duration::from_secs(20);

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; panics if it does not within `BOUND`.
fn wait_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return received,
            Err(err) => panic!("the server did not close the connection within {BOUND:?}: {err}"),
        }
    }
}

#[test]
fn slow_request_heads_and_idle_connections_are_closed() {
    let server = Server::start_with(&[
        ("KEYLEDGER_HTTP_HEADER_READ_TIMEOUT_MS", "400"),
        ("KEYLEDGER_HTTP_IDLE_TIMEOUT_MS", "400"),
    ]);
    // Half a request head, then nothing.
    let mut slow = TcpStream::connect(address(&server)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: a")
        .unwrap();
    assert!(wait_until_closed(&mut slow).is_empty());

    // One request, then an idle keep-alive connection.
    let mut idle = TcpStream::connect(address(&server)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    let received = wait_until_closed(&mut idle);
    assert!(received.starts_with(b"HTTP/1.1 200"), "{received:?}");

    // (Raw one-request connections: a pooled client could race the 400 ms idle timeout.)
    let mut metrics = TcpStream::connect(address(&server)).unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        server.admin_key
    );
    metrics.write_all(request.as_bytes()).unwrap();
    let metrics = String::from_utf8_lossy(&wait_until_closed(&mut metrics)).into_owned();
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains(
            "keyledger_http_connections_timed_out_total{reason=\"header_read_timeout\"} 1"
        )
    );
    assert!(
        metrics.contains("keyledger_http_connections_timed_out_total{reason=\"idle_timeout\"}")
    );
}

/// A `keyledger serve` started directly, so that the test sees when it exits.
struct Process {
    child: Child,
    address: String,
}

impl Process {
    fn start(data_dir: &std::path::Path) -> Process {
        let mut child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("KEYLEDGER_HTTP_ADDR", "127.0.0.1:0")
            .env("KEYLEDGER_DATA_DIR", data_dir)
            .env("KEYLEDGER_HTTP_SHUTDOWN_GRACE_MS", "500")
            .env("KEYLEDGER_HTTP_HEADER_READ_TIMEOUT_MS", "600000")
            .env("KEYLEDGER_HTTP_IDLE_TIMEOUT_MS", "600000")
            .env("KEYLEDGER_HTTP_REQUEST_TIMEOUT_MS", "600000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.strip_prefix("keyledger listening on http://") {
                    let _ = sender.send(address.to_owned());
                }
            }
        });
        let address = receiver
            .recv_timeout(BOUND)
            .expect("keyledger serve starts and prints its address");
        Process { child, address }
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns how long it took.
    fn terminate(&mut self) -> Duration {
        let asked = Instant::now();
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                return asked.elapsed();
            }
            assert!(
                asked.elapsed() < BOUND,
                "serve is still running {BOUND:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_with_slow_clients_exits_within_the_grace_and_a_restart_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut first = Process::start(&data_dir);
    // A request whose body never comes, and a request head that never ends.
    let mut in_flight = TcpStream::connect(&first.address).unwrap();
    in_flight
        .write_all(b"POST /v1/auth/login HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .unwrap();
    let mut slow = TcpStream::connect(&first.address).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: a")
        .unwrap();
    // Both are accepted before the signal: a request on a third connection is answered.
    let mut check = TcpStream::connect(&first.address).unwrap();
    check
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert!(wait_until_closed(&mut check).starts_with(b"HTTP/1.1 200"));

    first.terminate();
    wait_until_closed(&mut in_flight);
    wait_until_closed(&mut slow);

    // The data directory's lock is free: a new server opens it and answers.
    let second = Process::start(&data_dir);
    let mut check = TcpStream::connect(&second.address).unwrap();
    check
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert!(wait_until_closed(&mut check).starts_with(b"HTTP/1.1 200"));
}

#[test]
fn the_throttle_keys_on_the_entry_the_trusted_proxy_added() {
    let server = Server::start_with(&[
        ("KEYLEDGER_HTTP_AUTH_FAILURES_PER_MINUTE", "3"),
        ("KEYLEDGER_HTTP_TRUSTED_PROXY_HOPS", "1"),
    ]);
    let wrong = "Bearer kl_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let attempt = |forwarded: &str| {
        server
            .raw(
                "GET",
                "/v1/me",
                &[("authorization", wrong), ("x-forwarded-for", forwarded)],
                Vec::new(),
            )
            .0
    };
    // The attacker forges a new leftmost entry every time; the proxy appends the real address.
    for forged in 1..=3 {
        assert_eq!(attempt(&format!("10.0.0.{forged}, 203.0.113.7")), 401);
    }
    assert_eq!(
        attempt("10.0.0.99, 203.0.113.7"),
        429,
        "throttled despite forged entries"
    );
    // Naming someone else's address on the left does not lock them out.
    assert_eq!(
        attempt("198.51.100.1"),
        401,
        "another client is not affected"
    );
    assert_eq!(attempt("203.0.113.7, 198.51.100.1"), 401);
    // IPv6 clients are throttled by their /64.
    for host in 1..=3 {
        assert_eq!(attempt(&format!("2001:db8:0:7::{host}")), 401);
    }
    assert_eq!(attempt("2001:db8:0:7:ffff::1"), 429);
}
