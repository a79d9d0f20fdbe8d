//! Previews against the DNAnexus emulator: what a selection picks, bounded, nothing recorded.

use keyledger_ingest::{IngestError, PreviewRequest};

use crate::dnanexus::{dx_harness, fixture, selection};
use crate::support::{dev, dnanexus_options, harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dnanexus_preview_counts_pages_and_stops_at_its_limit() {
    let fixture = fixture().await;
    let h = dx_harness(&fixture).await;
    let head = h.vault.log().head();
    let request = |cursor: Option<String>, page_size| PreviewRequest {
        selection: selection(&fixture.project, r"\.csv$"),
        cursor,
        page_size,
    };

    let preview = h.ingestor.preview(dev(), request(None, 40)).await.unwrap();
    let mut expected: Vec<(String, u64)> = fixture
        .files
        .iter()
        .filter(|(path, ..)| path.ends_with(".csv"))
        .map(|(path, _, size, _)| (path.clone(), *size))
        .collect();
    assert!(preview.complete, "{preview:?}");
    assert_eq!(preview.matched, 100);
    assert_eq!(preview.scanned, 300, "every file under /runs was looked at");
    assert_eq!(
        preview.total_bytes,
        expected.iter().map(|(_, size)| size).sum::<u64>()
    );
    assert_eq!(preview.files.len(), 40);
    // In the order of the remote paths; stored paths are relative to the folder.
    expected.sort_by_key(|(path, _)| format!("/runs/{path}"));
    for (shown, (path, size)) in preview.files.iter().zip(&expected) {
        assert_eq!((&shown.path, shown.size), (path, *size));
        assert_eq!(shown.remote_path, format!("/runs/{path}"));
    }
    let cursor = preview.next_cursor.clone().unwrap();
    let next = h
        .ingestor
        .preview(dev(), request(Some(cursor), 1000))
        .await
        .unwrap();
    assert_eq!(next.matched, 60, "the files after the cursor");
    assert_eq!(next.files[0].path, expected[40].0);
    assert_eq!(next.next_cursor, None);

    // Nothing was recorded: not a job, not even `ExternalKeyUsed`.
    assert_eq!(h.vault.log().head(), head);
    assert!(h.ingestor.list(&crate::support::user("dev")).is_empty());

    // A bad page size is refused before anything is listed.
    let refused = h.ingestor.preview(dev(), request(None, 0)).await;
    assert!(
        matches!(&refused, Err(IngestError::InvalidSelection(refusal)) if refusal.field == "page_size"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_past_its_limit_says_so() {
    let fixture = fixture().await;
    let endpoint = fixture.emulator.endpoint();
    let h = harness(move |config| {
        config.dnanexus = dnanexus_options(&endpoint);
        config.preview_max_scanned = 50;
    })
    .await;
    h.store_dnanexus_token(crate::support::DX_TOKEN).await;
    let preview = h
        .ingestor
        .preview(
            dev(),
            PreviewRequest {
                selection: selection(&fixture.project, ".*"),
                cursor: None,
                page_size: 100,
            },
        )
        .await
        .unwrap();
    assert!(!preview.complete, "{preview:?}");
    assert_eq!((preview.scanned, preview.limit), (50, 50));
    assert!(preview.matched <= 50);
    assert!(
        preview.note.as_deref().unwrap().contains("stopped listing"),
        "{preview:?}"
    );
}
