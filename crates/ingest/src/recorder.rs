//! Recording a job's progress in its stream `ingestion/<id>`: one append at a time, and the
//! events of many files in one append.
//!
//! Every event goes through the vault: a single item through [`Vault::run`], the events of a
//! published batch of files through [`Vault::run_all`] (each decided by the domain's `decide`
//! against the same state, appended atomically with the stream's expected version, decided
//! again if anything else was appended meanwhile, e.g. a cancellation). See decision 0007.

use keyledger_domain::{Action, Actor, DomainError, IngestionId, IngestionProgress};
use keyledger_vault::{Vault, VaultError};

/// Why recording progress did not work.
#[derive(Debug)]
pub(crate) enum Interrupted {
    /// The job is already finished in the log (cancelled meanwhile).
    Finished,
    Vault(String),
}

/// Appends one job's events, one append at a time: concurrent appends to one stream would
/// conflict on its expected version (and be decided again). Each append is one durable group
/// commit.
#[derive(Debug)]
pub(crate) struct Recorder {
    ingestion: IngestionId,
    /// The job's turn to append.
    turn: tokio::sync::Mutex<()>,
}

impl Recorder {
    pub fn new(ingestion: IngestionId) -> Recorder {
        Recorder {
            ingestion,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Records one item.
    pub async fn record(
        &self,
        vault: &Vault,
        progress: IngestionProgress,
    ) -> Result<(), Interrupted> {
        let _turn = self.turn.lock().await;
        vault
            .run(Actor::System, self.action(progress))
            .await
            .map(|_| ())
            .map_err(interrupted)
    }

    /// Records `items` in order, in one atomic append ([`Vault::run_all`]): all or none.
    pub async fn record_all(
        &self,
        vault: &Vault,
        items: Vec<IngestionProgress>,
    ) -> Result<(), Interrupted> {
        let _turn = self.turn.lock().await;
        let actions = items.into_iter().map(|item| self.action(item)).collect();
        vault
            .run_all(Actor::System, actions)
            .await
            .map(|_| ())
            .map_err(interrupted)
    }

    fn action(&self, progress: IngestionProgress) -> Action {
        Action::RecordIngestion {
            ingestion: self.ingestion.clone(),
            progress,
        }
    }
}

fn interrupted(error: VaultError) -> Interrupted {
    match error {
        VaultError::Domain(DomainError::IngestionFinished { .. }) => Interrupted::Finished,
        error => Interrupted::Vault(error.to_string()),
    }
}
