//! Start-up recovery of jobs a crash left running.

use keyledger_domain::{
    Action, Actor, IngestionId, IngestionProgress, IngestionState, KeyDuration,
};
use keyledger_ingest::{INTERRUPTED_REASON, Ingestor, RecoveryReport};

use crate::support::{BUCKET, SECRET, aws_selection, dev, harness, sha256_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_left_running_by_a_crash_are_failed_and_cleaned_up_at_start_up() {
    let h = harness(|_| {}).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;
    // What a crash mid-job leaves: a job in the log with one fetched file, that file in place,
    // a file renamed into place without its event, partial files, and a stray partial area.
    let id = IngestionId::parse("ing_0123456789abcdef").unwrap();
    let batch = "batch-20260921-abcdef";
    h.vault
        .run(
            dev(),
            Action::RequestIngestion {
                ingestion: id.clone(),
                selection: aws_selection(BUCKET, "", ""),
                destination: "dev".to_owned(),
                batch_id: batch.to_owned(),
                force: false,
            },
        )
        .await
        .unwrap();
    let kept = b"gene,count\n";
    h.vault
        .run(
            Actor::System,
            Action::RecordIngestion {
                ingestion: id.clone(),
                progress: IngestionProgress::FileFetched {
                    path: "kept.csv".to_owned(),
                    size: kept.len() as u64,
                    sha256: sha256_of(kept),
                    source_etag: "etag".to_owned(),
                },
            },
        )
        .await
        .unwrap();
    let batch_dir = h.store_root.join("dev").join(batch);
    std::fs::create_dir_all(batch_dir.join("sub")).unwrap();
    std::fs::write(batch_dir.join("kept.csv"), kept).unwrap();
    std::fs::write(batch_dir.join("sub/orphan.csv"), b"no event").unwrap();
    let area = h.store_root.join(".partial").join(id.as_str());
    std::fs::create_dir_all(&area).unwrap();
    std::fs::write(area.join("1.partial"), b"half").unwrap();
    std::fs::write(area.join("1.partial.parts"), b"record").unwrap();
    std::fs::create_dir_all(h.store_root.join(".partial/stray")).unwrap();

    // The restarted process.
    let restarted = Ingestor::new(h.vault.clone(), h.ingestor.config().clone());
    let report = restarted.recover().await.unwrap();

    assert_eq!(
        report,
        RecoveryReport {
            jobs_failed: 1,
            partial_areas_removed: 2,
            unrecorded_files_removed: 1,
        }
    );
    let job = h.vault.read(|state| state.ingestion(&id).cloned()).unwrap();
    assert_eq!(job.state, IngestionState::Failed);
    assert_eq!(job.error.as_deref(), Some(INTERRUPTED_REASON));
    assert_eq!(
        h.stored_files().keys().collect::<Vec<_>>(),
        [&format!("dev/{batch}/kept.csv")]
    );
    assert!(h.partial_leftovers().is_empty());
    assert!(!area.exists());
    let view = restarted.status(&id).unwrap();
    assert_eq!(view.error.as_deref(), Some("interrupted by a restart"));

    assert_eq!(
        restarted.recover().await.unwrap(),
        RecoveryReport::default()
    );
}
