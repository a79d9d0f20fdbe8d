//! The vault's core: key verification, durable appends, replay.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyledger_crypto::MasterKey;
use keyledger_domain::{Actor, FromTrusted, KeyDuration, KeyName, UserId};
use keyledger_log::{AppendBatch, Durability, EventLog, ExpectedVersion, LogConfig, NewEvent};
use keyledger_vault::{Projection, SystemClock, Vault, VaultConfig};

use crate::report::{Report, human, peak_rss_mib, rate, ratio};

pub fn verification(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let master = MasterKey::generate(&ring::rand::SystemRandom::new())?;
    let config = VaultConfig {
        data_dir: dir.path().to_path_buf(),
        durability: Durability::Flush,
        ..VaultConfig::default()
    };
    let vault = Vault::open(config, &master, Arc::new(SystemClock))?;
    let admin = runtime.block_on(vault.bootstrap(UserId::from_trusted("admin".into())))?;
    let actor = Actor::User {
        user: UserId::from_trusted("admin".into()),
        key: Some(admin.id.clone()),
    };
    let mut secrets = Vec::new();
    for n in 0..1000 {
        let key = runtime.block_on(vault.create_api_key(
            actor.clone(),
            KeyName::from_trusted(format!("k{n}")),
            KeyDuration::Days(30),
            None,
        ))?;
        secrets.push(key.secret);
    }
    let iterations = if report.quick { 200_000 } else { 1_000_000 };

    // Baseline: the HMAC-SHA256 that every verification must compute, on the same input.
    let pepper = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7u8; 32]);
    let started = Instant::now();
    for i in 0..iterations {
        black_box(ring::hmac::sign(
            &pepper,
            black_box(secrets[i % secrets.len()].expose().as_bytes()),
        ));
    }
    let raw = rate(iterations as f64, started.elapsed());

    let started = Instant::now();
    for i in 0..iterations {
        let principal = vault.authenticate(black_box(secrets[i % secrets.len()].expose()));
        assert!(principal.is_ok());
        black_box(principal.ok());
    }
    let ours = rate(iterations as f64, started.elapsed());
    report.section(
        "Internal-key verification (one thread, 1,000 keys)",
        &["what", "per second", "ratio vs raw HMAC-SHA256", "goal"],
    );
    report.row(&[
        "raw HMAC-SHA256 of the key".into(),
        human(raw),
        "1.00".into(),
        String::new(),
    ]);
    report.row(&[
        "`Vault::authenticate` (format+CRC, HMAC, lookup, status, permissions, usage)".into(),
        human(ours),
        ratio(ours, raw),
        "≥ 0.5".into(),
    ]);
    Ok(())
}

pub fn appends(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let seconds = if report.quick { 1.0 } else { 3.0 };
    let window = Duration::from_secs_f64(seconds);
    let body = vec![0x5au8; 256];
    report.section(
        "Durable appends (256-byte events, flush + sync_data per group)",
        &[
            "writers",
            "plain sled loop /s",
            "keyledger log acked /s",
            "ratio",
            "goal",
        ],
    );
    for writers in [1usize, 16, 128] {
        let baseline = plain_sled_loop(writers, &body, window)?;
        let ours = runtime.block_on(log_appends(writers, &body, window))?;
        report.row(&[
            writers.to_string(),
            human(baseline),
            human(ours),
            ratio(ours, baseline),
            "≥ 0.8".into(),
        ]);
    }
    report.note(
        "Baseline: one thread inserting `writers` values per batch (`apply_batch`), then `flush` and \
         `sync_data` on the database file, in a loop — the bytes the log writes, without its hash \
         chain, envelopes, stream versions or waiters.",
    );
    Ok(())
}

fn plain_sled_loop(batch_size: usize, body: &[u8], window: Duration) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let db = sled::open(dir.path())?;
    let tree = db.open_tree("events")?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("db"))?;
    let mut seq: u64 = 0;
    let started = Instant::now();
    while started.elapsed() < window {
        let mut batch = sled::Batch::default();
        for _ in 0..batch_size {
            seq += 1;
            batch.insert(&seq.to_be_bytes(), body);
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        file.sync_data()?;
    }
    Ok(rate(seq as f64, started.elapsed()))
}

async fn log_appends(writers: usize, body: &[u8], window: Duration) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let log = EventLog::open(
        LogConfig::new(dir.path()),
        Box::new(|_: &[keyledger_log::Envelope]| {}),
    )?;
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (log, acked, stop, body) = (log.clone(), acked.clone(), stop.clone(), body.to_vec());
        tasks.push(tokio::spawn(async move {
            let stream = format!("bench/{writer}");
            while !stop.load(Ordering::Relaxed) {
                let batch = AppendBatch {
                    request_id: None,
                    guards: Vec::new(),
                    actor: "system".into(),
                    time_ms: 0,
                    events: vec![NewEvent {
                        stream: stream.clone(),
                        expected: ExpectedVersion::Any,
                        body: body.clone(),
                    }],
                };
                if log.append(batch).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let count = acked.load(Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    Ok(rate(count as f64, elapsed))
}

pub fn replay(report: &mut Report) -> anyhow::Result<()> {
    let events: u64 = if report.quick { 200_000 } else { 1_000_000 };
    let dir = tempfile::tempdir()?;
    // The same realistic log the audit benchmarks use: keys created, used and deleted.
    crate::audit::generate_log(dir.path(), events)?.close();
    // A fresh process, so peak memory is the replay's own.
    let output = std::process::Command::new(std::env::current_exe()?)
        .arg("replay-child")
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "replay child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let figures: Vec<f64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [count, scan_rate, replay_rate, peak_mib, open_mib] = figures[..] else {
        anyhow::bail!("unexpected replay child output: {text}");
    };
    report.section(
        &format!("Replay of {} events into the projection", human(count)),
        &[
            "what",
            "events per second",
            "ratio vs raw sled scan",
            "goal",
        ],
    );
    report.row(&[
        "raw sled scan of the stored events (no decoding)".into(),
        human(scan_rate),
        "1.00".into(),
        String::new(),
    ]);
    report.row(&[
        "decode + verify nothing + fold into `State`".into(),
        human(replay_rate),
        ratio(replay_rate, scan_rate),
        "≥ 1 M/s".into(),
    ]);
    report.note(&format!("Peak resident memory of the replaying process: {peak_mib:.0} MiB (of which {open_mib:.0} MiB after opening the log)."));
    Ok(())
}

/// Runs in a child process: scans the raw sled tree, then opens the log and replays it.
pub fn replay_child(args: &[String]) -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        args.first()
            .ok_or_else(|| anyhow::anyhow!("missing directory"))?,
    );
    // Baseline: iterate the log's sled tree and walk the blocks' framing, decoding nothing.
    let db = sled::open(&dir)?;
    let tree = db.open_tree("events")?;
    let started = Instant::now();
    let scanned = keyledger_log::raw::count_stored_events(&tree)?;
    let scan_rate = rate(scanned as f64, started.elapsed());
    drop(tree);
    drop(db);

    let log = EventLog::open(
        LogConfig::new(&dir),
        Box::new(|_: &[keyledger_log::Envelope]| {}),
    )?;
    let open_mib = peak_rss_mib();
    let mut projection = Projection::default();
    let started = Instant::now();
    let count = projection.replay(&log.view())?;
    let replay_rate = rate(count as f64, started.elapsed());
    println!(
        "{count} {scan_rate} {replay_rate} {} {open_mib}",
        peak_rss_mib()
    );
    Ok(())
}
