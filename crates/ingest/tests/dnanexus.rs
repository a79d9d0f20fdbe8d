//! Jobs against the DNAnexus emulator.

use keyledger_domain::Selection;
use keyledger_ingest::JobState;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed, generated_bytes};

use crate::support::{
    DX_TOKEN, Harness, assert_finished, assert_no_secret, assert_store_matches_events,
    dnanexus_options, harness, kinds,
};

const KIB: u64 = 1024;

pub(crate) struct Fixture {
    pub emulator: DnanexusEmulator,
    pub project: String,
    /// `(path relative to /runs, file id, size, generator seed)` of every seeded file.
    pub files: Vec<(String, String, u64, u64)>,
}

/// 300 files in nested folders under `/runs` (one in three a `.csv`), most of them in several
/// parts, plus files outside `/runs`.
pub(crate) async fn fixture() -> Fixture {
    let mut seed = Seed::new();
    let user = seed.add_user("ada");
    seed.add_token(&user, DX_TOKEN);
    let project = seed.add_project("Samples", &user);
    let mut files = Vec::new();
    for index in 0..300u64 {
        let folder = match index % 4 {
            0 => "".to_owned(),
            1 => "/r1".to_owned(),
            2 => format!("/r2/lane{}", index % 3),
            _ => format!("/r3/deep/nested/{}", index % 5),
        };
        let extension = if index % 3 == 0 { "csv" } else { "txt" };
        let relative = format!("{}/s{index:03}.{extension}", folder.trim_start_matches('/'))
            .trim_start_matches('/')
            .to_owned();
        // Sizes from 0 to ~300 KiB; parts of 16 KiB to 128 KiB.
        let size = (index * 997) % (300 * KIB);
        let part_size = [16 * KIB, 64 * KIB, 128 * KIB][(index % 3) as usize];
        let id = seed.add_file(
            &project,
            &format!("/runs/{relative}"),
            Content::Generated { size, seed: index },
            part_size,
        );
        files.push((relative, id, size, index));
    }
    seed.add_file(
        &project,
        "/other/outside.csv",
        Content::Bytes(b"not selected".to_vec()),
        KIB,
    );
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    Fixture {
        emulator,
        project,
        files,
    }
}

pub(crate) async fn dx_harness(fixture: &Fixture) -> Harness {
    let endpoint = fixture.emulator.endpoint();
    let h = harness(move |config| config.dnanexus = dnanexus_options(&endpoint)).await;
    h.store_dnanexus_token(DX_TOKEN).await;
    h
}

pub(crate) fn selection(project: &str, pattern: &str) -> Selection {
    Selection::Dnanexus {
        project: project.to_owned(),
        folder: "/runs".to_owned(),
        pattern: pattern.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_selects_files_in_nested_folders_and_each_is_verified() {
    let fixture = fixture().await;
    let h = dx_harness(&fixture).await;

    let view = h.ingest(selection(&fixture.project, r"\.csv$")).await;

    assert_finished(&view, JobState::Completed);
    assert_no_secret(&view);
    let expected: Vec<&(String, String, u64, u64)> = fixture
        .files
        .iter()
        .filter(|(path, ..)| path.ends_with(".csv"))
        .collect();
    assert_eq!(expected.len(), 100);
    assert_eq!(view.files_selected, Some(100));
    assert_eq!(view.files_fetched, 100);
    let stored = assert_store_matches_events(&h, &view);
    assert_eq!(stored.len(), 100);
    for (path, _, size, generator) in expected {
        assert!(
            stored.get(path) == Some(&generated_bytes(*generator, 0, *size as usize)),
            "{path}"
        );
    }
    let events = h.events_of(&view.id);
    assert!(events.iter().any(|event| matches!(
        event,
        keyledger_domain::Event::IngestionFileFetched { source_etag, .. } if source_etag.starts_with("file-")
    )));
    assert!(
        fixture
            .emulator
            .control()
            .data_authorization_headers()
            .is_empty(),
        "the token is never sent to download URLs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_part_md5_fails_that_file_only() {
    let fixture = fixture().await;
    let (path, id, ..) = fixture
        .files
        .iter()
        .find(|(path, _, size, _)| path.ends_with(".csv") && *size > 200 * KIB)
        .unwrap()
        .clone();
    fixture.emulator.control().corrupt_part_md5(&id, 2).unwrap();
    let h = dx_harness(&fixture).await;

    let view = h.ingest(selection(&fixture.project, r"\.csv$")).await;

    assert_finished(&view, JobState::Completed);
    assert_eq!((view.files_fetched, view.files_failed), (99, 1));
    let failed = view.files.iter().find(|file| file.path == path).unwrap();
    let reason = failed.error.as_deref().unwrap();
    assert!(reason.contains("part 2 failed verification"), "{reason}");
    let stored = assert_store_matches_events(&h, &view);
    assert!(!stored.contains_key(&path));
    assert_eq!(stored.len(), 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_fails_the_job_clearly() {
    let fixture = fixture().await;
    let h = dx_harness(&fixture).await;
    fixture.emulator.control().revoke_token(DX_TOKEN);

    let view = h.ingest(selection(&fixture.project, "")).await;

    assert_finished(&view, JobState::Failed);
    assert_no_secret(&view);
    let error = view.error.as_deref().unwrap();
    assert!(
        error.contains("the stored DNAnexus token was rejected (expired or revoked)"),
        "{error}"
    );
    assert_eq!(
        kinds(&h.events_of(&view.id)),
        ["IngestionRequested", "ExternalKeyUsed", "IngestionFailed"]
    );
    assert!(h.stored_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_can_be_named_and_a_missing_one_is_explained() {
    let fixture = fixture().await;
    let h = dx_harness(&fixture).await;

    let view = h.ingest(selection("Samples", r"^r1/s00[0-9]\.")).await;
    assert_finished(&view, JobState::Completed);
    assert!(view.files_fetched > 0);
    assert!(view.files.iter().all(|file| file.path.starts_with("r1/")));

    let view = h.ingest(selection("No such project", "")).await;
    assert_finished(&view, JobState::Failed);
    let error = view.error.as_deref().unwrap();
    assert!(error.contains("was not found"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_and_test_asks_whoami() {
    let fixture = fixture().await;
    let h = dx_harness(&fixture).await;
    let key = h.vault.list_external_keys(&crate::support::user("dev"))[0]
        .id
        .clone();

    let view = h
        .ingestor
        .verify_external_key(crate::support::dev(), &key, None)
        .await
        .unwrap();
    assert_eq!(view.last_verified_ok, Some(true));
    assert_eq!(
        view.last_verified_detail.as_deref(),
        Some("DNAnexus accepted the token; it belongs to user-ada")
    );

    fixture.emulator.control().revoke_token(DX_TOKEN);
    let view = h
        .ingestor
        .verify_external_key(crate::support::dev(), &key, None)
        .await
        .unwrap();
    assert_eq!(view.last_verified_ok, Some(false));
    assert!(!view.last_verified_detail.unwrap().contains(DX_TOKEN));
}
