use std::path::Path;
use std::sync::{Arc, Mutex};

use keyledger_log::{
    AppendBatch, Durability, Envelope, EventLog, ExpectedVersion, LogConfig, NewEvent,
};

/// Envelopes passed to `on_commit`, one inner Vec per call.
pub type Commits = Arc<Mutex<Vec<Vec<Envelope>>>>;

pub fn open(dir: &Path) -> (EventLog, Commits) {
    open_with(LogConfig::new(dir))
}

pub fn open_with(config: LogConfig) -> (EventLog, Commits) {
    let commits: Commits = Arc::default();
    let seen = commits.clone();
    let log = EventLog::open(
        config,
        Box::new(move |envelopes: &[Envelope]| {
            seen.lock().expect("commits lock").push(envelopes.to_vec());
        }),
    )
    .expect("open log");
    (log, commits)
}

/// Flush-only durability: the same code path, fewer fsyncs for tests that run many commits.
pub fn fast_config(dir: &Path) -> LogConfig {
    LogConfig {
        durability: Durability::Flush,
        ..LogConfig::new(dir)
    }
}

pub fn event(stream: &str, expected: ExpectedVersion, body: &[u8]) -> NewEvent {
    NewEvent {
        stream: stream.to_owned(),
        expected,
        body: body.to_vec(),
    }
}

pub fn batch(events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch {
        request_id: None,
        guards: Vec::new(),
        actor: "user:test".to_owned(),
        time_ms: 1_700_000_000_000,
        events,
    }
}

pub fn with_request_id(mut batch: AppendBatch, id: u8) -> AppendBatch {
    batch.request_id = Some([id; 16]);
    batch
}

pub fn read_all(log: &EventLog) -> Vec<Envelope> {
    log.read_from(1)
        .collect::<Result<Vec<_>, _>>()
        .expect("read log")
}
