//! Kill -9 while appending: every acknowledged event must survive, byte for byte.
//!
//! The parent test re-runs this test binary in "writer mode" (an environment variable switches
//! `crash_writer_child` on), kills it with SIGKILL after a random delay, and checks the log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyledger_log::{AppendBatch, Durability, EventLog, ExpectedVersion, LogConfig, NewEvent};

use crate::support::open_with;

const CHILD_DIR_VAR: &str = "KEYLEDGER_LOG_CRASH_DIR";
const CHILD_ROUND_VAR: &str = "KEYLEDGER_LOG_CRASH_ROUND";
const WRITERS: usize = 8;
const ROUNDS: u32 = 20;

fn body_for(id: &str) -> Vec<u8> {
    // ~150 bytes that depend on the id, so a mixed-up body cannot pass.
    id.as_bytes().iter().copied().cycle().take(150).collect()
}

fn stream_for(writer: usize) -> String {
    format!("crash/writer-{writer}")
}

/// Writer mode: 8 threads append until killed and print each acknowledged event at once.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND_VAR)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let log = EventLog::open(
        LogConfig {
            durability: Durability::Full,
            ..LogConfig::new(dir)
        },
        Box::new(|_| {}),
    )
    .expect("child: open");
    let threads: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let log = log.clone();
            std::thread::spawn(move || append_until_killed(&log, round, writer))
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn append_until_killed(log: &EventLog, round: u32, writer: usize) {
    let stream = stream_for(writer);
    // Exact versions: also proves stream versions are recovered with the events.
    let mut version = log.stream_version(&stream).unwrap_or(0);
    let started = Instant::now();
    let mut n = 0u32;
    // A safety net if the parent died: never outlive it by much.
    while started.elapsed() < Duration::from_secs(15) {
        let size = 1 + (n as usize % 3);
        let ids: Vec<String> = (0..size)
            .map(|k| format!("r{round}-w{writer}-n{n}-k{k}"))
            .collect();
        let events = ids
            .iter()
            .enumerate()
            .map(|(k, id)| NewEvent {
                stream: stream.clone(),
                expected: if k == 0 {
                    ExpectedVersion::Exact(version)
                } else {
                    ExpectedVersion::Any
                },
                body: body_for(id),
            })
            .collect();
        let committed = log
            .append_blocking(AppendBatch {
                request_id: None,
                guards: Vec::new(),
                actor: format!("writer-{writer}"),
                time_ms: 0,
                events,
            })
            .expect("child: append");
        let mut out = std::io::stdout().lock();
        for (offset, id) in ids.iter().enumerate() {
            writeln!(out, "ack {} {id}", committed.first_seq + offset as u64).expect("stdout");
        }
        out.flush().expect("flush stdout");
        version += size as u64;
        n += 1;
    }
}

/// xorshift64*, seeded from the clock; the seed is printed to reproduce a failure.
struct Random(u64);

impl Random {
    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        low + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (high - low + 1)
    }
}

#[test]
fn acknowledged_appends_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut random = Random(seed);
    let exe = std::env::current_exe().expect("current exe");
    // seq -> id of every event acknowledged in any round.
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_VAR, dir.path())
            .env(CHILD_ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut stdout = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill was never fully acknowledged to us: ignore it.
                    Ok(_) if line.ends_with('\n') => lines.push(line),
                    Ok(_) => {}
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(random.between(50, 400)));
        if let Some(status) = child.try_wait().expect("try_wait") {
            let output = child.wait_with_output().expect("child output");
            panic!(
                "round {round}: the writer exited by itself ({status}): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        let lines = reader.join().expect("reader thread");
        let before = acknowledged.len();
        for line in lines {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                continue; // test harness chatter
            }
            let seq: u64 = parts.next().and_then(|s| s.parse().ok()).expect("ack seq");
            let id = parts.next().expect("ack id").to_owned();
            if let Some(previous) = acknowledged.insert(seq, id.clone()) {
                panic!("round {round}: seq {seq} acknowledged twice: {previous} and {id}");
            }
        }
        eprintln!(
            "round {round}: {} new acknowledged events",
            acknowledged.len() - before
        );
        check_log(dir.path(), &acknowledged, round);
    }
    assert!(!acknowledged.is_empty(), "no append was ever acknowledged");
}

fn check_log(dir: &Path, acknowledged: &BTreeMap<u64, String>, round: u32) {
    let (log, _) = open_with(LogConfig::new(dir));
    let report = log.verify().expect("verify");
    assert_eq!(report.first_bad, None, "round {round}: chain damaged");
    assert_eq!(report.verified_through, log.head().0);
    for (seq, id) in acknowledged {
        let env = log
            .get(*seq)
            .expect("read")
            .unwrap_or_else(|| panic!("round {round}: acknowledged seq {seq} ({id}) is lost"));
        assert_eq!(
            env.body,
            body_for(id),
            "round {round}: seq {seq} has another body"
        );
        let writer = id
            .split('-')
            .nth(1)
            .and_then(|w| w.strip_prefix('w'))
            .and_then(|w| w.parse::<usize>().ok())
            .expect("writer in id");
        assert_eq!(env.stream, stream_for(writer));
    }
    // Versions are contiguous per stream, as the recovered stream map claims.
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    for env in log.read_from(1) {
        let env = env.expect("read");
        let version = versions.entry(env.stream.clone()).or_insert(0);
        *version += 1;
        assert_eq!(env.version, *version, "round {round}: seq {}", env.seq);
    }
    for (stream, version) in versions {
        assert_eq!(log.stream_version(&stream), Some(version));
    }
    log.close();
}
