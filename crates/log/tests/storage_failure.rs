//! Storage failures for real: the log lives on a small tmpfs that is filled up and freed again.
//! Needs root (to mount); without it the tests fail and say why rather than pass unchecked.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use keyledger_log::{AppendError, ExpectedVersion, LogError};
use keyledger_testkit::small_disk::SmallDisk;

use crate::support::{batch, event, open, read_all, with_request_id};

/// Polls `condition` every 10 ms for at most 60 s.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn body(n: u32) -> Vec<u8> {
    // Large enough that a few hundred fill a small disk, small enough to stay one block.
    let mut body = format!("event-{n:06}-").into_bytes();
    body.resize(2048, b'x');
    body
}

fn bodies(log: &keyledger_log::EventLog) -> BTreeSet<Vec<u8>> {
    read_all(log).into_iter().map(|e| e.body).collect()
}

#[test]
fn a_full_disk_refuses_appends_cleanly_and_the_log_recovers_without_a_reopen() {
    let disk = SmallDisk::mount(4096);
    let dir = disk.path().join("log");
    let (log, _) = open(&dir);
    let mut acknowledged = BTreeSet::new();
    for n in 0..20 {
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &body(n))]))
            .expect("append before the disk is full");
        acknowledged.insert(body(n));
    }

    let filler = disk.fill();
    // sled may still have room in space it allocated before: append until storage refuses.
    let mut n = 20;
    let failure = loop {
        assert!(n < 20_000, "appends never failed on a full disk");
        let request = with_request_id(
            batch(vec![event("s", ExpectedVersion::Any, &body(n))]),
            (n % 251) as u8,
        );
        match log.append_blocking(request) {
            Ok(committed) if !committed.duplicate => {
                acknowledged.insert(body(n));
            }
            Ok(_) => {}
            Err(error) => break error,
        }
        n += 1;
    };
    let failed_body = body(n);
    assert!(
        matches!(&failure, AppendError::Storage(_)),
        "a full disk is a storage error: {failure}"
    );
    let message = failure.to_string();
    assert!(
        message.contains("No space left on device") && message.contains("not committed"),
        "the answer says what happened: {message}"
    );
    let health = log.storage_health();
    assert!(!health.writable(), "the log reports that it cannot write");
    assert!(
        health
            .fault
            .as_deref()
            .is_some_and(|fault| fault.contains("No space left on device")),
        "with the reason: {health:?}"
    );
    assert!(health.failures >= 1);

    // While the disk stays full, appends are refused at once with a clear reason.
    let refused = log
        .append_blocking(batch(vec![event("s", ExpectedVersion::Any, b"refused")]))
        .expect_err("appends are refused while the disk is full");
    assert!(
        matches!(
            refused,
            AppendError::Storage(
                LogError::StorageUnavailable { .. } | LogError::NotConfirmed { .. }
            )
        ),
        "{refused}"
    );
    // Reads keep working meanwhile.
    assert_eq!(bodies(&log), acknowledged);

    fs::remove_file(&filler).expect("free the disk");
    // The writer notices by itself, without an append and without a reopen.
    wait_for("the log to report that it can write again", || {
        log.storage_health().writable()
    });
    assert!(log.storage_health().recoveries >= 1);
    for m in 0..5 {
        let n = 100_000 + m;
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &body(n))]))
            .expect("appends succeed once space is free");
        acknowledged.insert(body(n));
    }

    // Every acknowledged event is there, nothing that was refused, and the chain verifies.
    let stored = bodies(&log);
    assert!(
        !stored.contains(&failed_body),
        "a refused append never appears"
    );
    assert!(!stored.contains(b"refused".as_slice()));
    assert_eq!(stored, acknowledged);
    assert!(log.verify().expect("verify").is_ok());
    let head = log.head();
    log.close();

    let (log, _) = open(&dir);
    assert_eq!(log.head(), head);
    assert_eq!(bodies(&log), acknowledged);
    assert!(log.verify().expect("verify after reopen").is_ok());
    log.close();
}

#[test]
fn a_reader_that_holds_the_failed_database_delays_recovery_but_does_not_block_it() {
    let disk = SmallDisk::mount(4096);
    let dir = disk.path().join("log");
    let (log, _) = open(&dir);
    for n in 0..10 {
        log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, &body(n))]))
            .expect("append");
    }
    let mut reader = log.read_from(1);
    let first = reader.next().expect("an event").expect("readable");
    assert_eq!(first.seq, 1);

    let filler = disk.fill();
    let mut n = 10;
    while log
        .append_blocking(batch(vec![event("s", ExpectedVersion::Any, &body(n))]))
        .is_ok()
    {
        n += 1;
        assert!(n < 20_000, "appends never failed on a full disk");
    }
    fs::remove_file(&filler).expect("free the disk");
    // The held iterator keeps the failed database open: a recovery attempt waits for it, gives
    // up, and says why; the iterator still reads every event it promised.
    wait_for("a recovery attempt that found the reader", || {
        log.storage_health()
            .fault
            .is_some_and(|fault| fault.contains("readers still hold"))
    });
    let rest: Vec<_> = reader.by_ref().collect::<Result<_, _>>().expect("read on");
    assert_eq!(rest.len(), 9);
    drop(reader);
    wait_for("recovery once the reader let go", || {
        log.storage_health().writable()
    });
    log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, b"after")]))
        .expect("append after recovery");
    assert!(log.verify().expect("verify").is_ok());
    log.close();
}

#[test]
fn everything_the_log_writes_is_private_whatever_the_umask() {
    // 022 is the usual default: files would be 0644 and directories 0755 without explicit modes.
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().expect("tempdir");
    let log_dir = dir.path().join("data").join("log");
    let (log, _) = open(&log_dir);
    log.append_blocking(batch(vec![event("s", ExpectedVersion::Any, b"one")]))
        .expect("append");
    log.data_keys().put("key", b"wrapped").expect("data key");
    log.meta().put("m", b"v").expect("meta");
    let backup = dir.path().join("backup");
    log.backup_to(&backup).expect("backup");
    log.close();
    rustix::process::umask(previous);

    let mut widened = Vec::new();
    for root in [&log_dir, &backup] {
        collect_widened(root, &mut widened);
    }
    assert!(
        widened.is_empty(),
        "readable by group or others: {widened:?}"
    );
}

fn collect_widened(path: &Path, widened: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::symlink_metadata(path).expect("metadata");
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        widened.push(format!("{} {mode:o}", path.display()));
    }
    if metadata.is_dir() {
        for entry in fs::read_dir(path).expect("read dir") {
            collect_widened(&entry.expect("entry").path(), widened);
        }
    }
}
