//! Recording a job's progress in its stream `ingestion/<id>`: one append at a time, and the
//! events of many files in one append.
//!
//! Every event goes through the domain's `decide`. A single item goes through
//! [`Vault::run`] (decide against the projection, append with the stream's expected version).
//! Several file events are decided against the current state and appended as one atomic batch
//! whose expected version is the one this job's own last append produced: the projection had
//! applied that append before it was acknowledged, so the state decided against is exactly the
//! stream as the log holds it. If anything else was appended to the stream since (a
//! cancellation, a restart's recovery in another process), the batch conflicts and the items
//! are recorded one by one through the vault, which then sees the newer state. See decision
//! 0007.

use keyledger_domain::{
    Action, Actor, Command, DomainError, Event, IngestionId, IngestionProgress, decide,
};
use keyledger_log::{AppendBatch, AppendError, ExpectedVersion, NewEvent};
use keyledger_vault::{Executed, Vault, VaultError, encode_event};

/// Why recording progress did not work.
#[derive(Debug)]
pub(crate) enum Interrupted {
    /// The job is already finished in the log (cancelled meanwhile).
    Finished,
    Vault(String),
}

/// Items recorded before an interruption (in order), and the interruption.
#[derive(Debug)]
pub(crate) struct Unrecorded {
    pub recorded: usize,
    pub why: Interrupted,
}

/// Appends one job's events, one append at a time: concurrent appends to one stream would
/// conflict on its expected version. Each append is one durable group commit.
#[derive(Debug)]
pub(crate) struct Recorder {
    ingestion: IngestionId,
    stream: String,
    /// The stream's version after this job's last append to it; `None` before the first one
    /// and after a conflict. Held across an append: it is also the job's turn to append.
    known_version: tokio::sync::Mutex<Option<u64>>,
}

impl Recorder {
    pub fn new(ingestion: IngestionId) -> Recorder {
        Recorder {
            stream: format!("ingestion/{ingestion}"),
            ingestion,
            known_version: tokio::sync::Mutex::new(None),
        }
    }

    /// Records one item.
    pub async fn record(
        &self,
        vault: &Vault,
        progress: IngestionProgress,
    ) -> Result<(), Interrupted> {
        let mut known = self.known_version.lock().await;
        self.record_one(vault, &mut known, progress).await
    }

    /// Records `items` in order, in one append when this job's view of its stream is current.
    pub async fn record_all(
        &self,
        vault: &Vault,
        items: Vec<IngestionProgress>,
    ) -> Result<(), Unrecorded> {
        let mut known = self.known_version.lock().await;
        if items.len() > 1
            && let Some(version) = *known
        {
            match self.append_batch(vault, version, &items).await {
                Ok(appended) => {
                    *known = Some(version + appended);
                    return Ok(());
                }
                // Someone else wrote to the stream: decide each item against the newer state.
                Err(None) => *known = None,
                Err(Some(why)) => return Err(Unrecorded { recorded: 0, why }),
            }
        }
        for (recorded, progress) in items.into_iter().enumerate() {
            if let Err(why) = self.record_one(vault, &mut known, progress).await {
                return Err(Unrecorded { recorded, why });
            }
        }
        Ok(())
    }

    async fn record_one(
        &self,
        vault: &Vault,
        known: &mut Option<u64>,
        progress: IngestionProgress,
    ) -> Result<(), Interrupted> {
        let action = Action::RecordIngestion {
            ingestion: self.ingestion.clone(),
            progress,
        };
        match vault.run(Actor::System, action).await {
            Ok(executed) => {
                if let Some(version) = self.version_after(vault, &executed) {
                    *known = Some(version);
                }
                Ok(())
            }
            Err(error) => Err(interrupted(error)),
        }
    }

    /// The stream's version after `executed`, if it appended to this job's stream.
    fn version_after(&self, vault: &Vault, executed: &Executed) -> Option<u64> {
        if !executed
            .events
            .iter()
            .any(|event| event.stream_id() == self.stream)
        {
            return None;
        }
        let envelope = vault.log().get(executed.last_seq).ok()??;
        (envelope.stream == self.stream).then_some(envelope.version)
    }

    /// Decides every item against the current state and appends the events atomically,
    /// expecting the stream at `version`. Returns how many events were appended; `Err(None)`
    /// on a version conflict.
    async fn append_batch(
        &self,
        vault: &Vault,
        version: u64,
        items: &[IngestionProgress],
    ) -> Result<u64, Option<Interrupted>> {
        let now = vault.now();
        let decided: Result<Vec<Event>, DomainError> = vault.read(|state| {
            let mut events = Vec::with_capacity(items.len());
            for progress in items {
                let command = Command::new(
                    Actor::System,
                    Action::RecordIngestion {
                        ingestion: self.ingestion.clone(),
                        progress: progress.clone(),
                    },
                );
                events.extend(decide(state, command, now)?);
            }
            Ok(events)
        });
        let events = decided.map_err(|error| Some(interrupted(VaultError::Domain(error))))?;
        if events.iter().any(|event| event.stream_id() != self.stream) {
            // Only file events are batched; anything else takes the vault's own path.
            return Err(None);
        }
        let batch = AppendBatch {
            request_id: None,
            actor: Actor::System.to_string(),
            time_ms: now.as_millis(),
            events: events
                .iter()
                .enumerate()
                .map(|(at, event)| NewEvent {
                    stream: self.stream.clone(),
                    expected: if at == 0 {
                        ExpectedVersion::Exact(version)
                    } else {
                        ExpectedVersion::Any
                    },
                    body: encode_event(event),
                })
                .collect(),
        };
        match vault.log().append(batch).await {
            Ok(_) => Ok(events.len() as u64),
            Err(AppendError::Conflict { .. }) => Err(None),
            Err(error) => Err(Some(Interrupted::Vault(error.to_string()))),
        }
    }
}

fn interrupted(error: VaultError) -> Interrupted {
    match error {
        VaultError::Domain(DomainError::IngestionFinished { .. }) => Interrupted::Finished,
        error => Interrupted::Vault(error.to_string()),
    }
}
