//! `whoami` and `list` against the emulator.

use std::collections::BTreeSet;

use keyledger_connect_dnanexus::{
    DnanexusError, DnanexusOptions, DnanexusSelection, DnanexusToken, PartialFile, Source,
};
use keyledger_testkit::dnanexus::{
    Content, DATA_PATH_PREFIX, DnanexusEmulator, Fault, FaultRun, Level,
};
use regex::Regex;
use tokio_util::sync::CancellationToken;

use crate::common::{
    CANARY_TOKEN, USER, assert_no_secret, fast_options, seed, source, source_with,
};

#[tokio::test]
async fn whoami_names_the_user() {
    let (seed, _) = seed("P");
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    assert_eq!(source(&emulator).check_access().await.unwrap(), USER);
}

#[tokio::test]
async fn lists_300_nested_files_by_relative_path_across_pages() {
    let (mut seed, project) = seed("Sequencing");
    let mut expected = BTreeSet::new();
    for index in 0..300 {
        let lane = ["a", "b", "c"][index % 3];
        let kind = if index % 4 == 0 { "txt" } else { "fastq" };
        let relative = format!("{lane}/sub{}/f{index:03}.{kind}", index % 5);
        seed.add_file(
            &project,
            &format!("/reads/{relative}"),
            Content::Bytes(vec![index as u8; index % 7 + 1]),
            4,
        );
        if lane == "b" && kind == "fastq" {
            expected.insert(relative);
        }
    }
    // Outside the folder, and a sibling whose name starts like it: never listed.
    seed.add_file(
        &project,
        "/other/b/x.fastq",
        Content::Bytes(b"x".to_vec()),
        4,
    );
    seed.add_file(
        &project,
        "/readsX/b/y.fastq",
        Content::Bytes(b"y".to_vec()),
        4,
    );
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let options = DnanexusOptions {
        list_page_size: 7,
        ..fast_options(&emulator)
    };
    let source = source_with(&emulator, options, CANARY_TOKEN);

    let files = source
        .list(&DnanexusSelection::new(
            &project,
            "/reads/",
            Regex::new(r"^b/.*\.fastq$").unwrap(),
        ))
        .await
        .unwrap();
    let listed: BTreeSet<String> = files
        .iter()
        .map(|file| {
            format!(
                "{}/{}",
                file.location.folder.trim_start_matches("/reads/"),
                file.location.name
            )
        })
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(files.len(), 75);
    let sorted = files.windows(2).all(|pair| {
        (&pair[0].location.folder, &pair[0].location.name)
            <= (&pair[1].location.folder, &pair[1].location.name)
    });
    assert!(sorted, "ordered by folder, then name");
    for file in &files {
        assert_eq!(file.location.project, project);
        assert_eq!(
            file.location
                .parts
                .iter()
                .map(|part| part.size)
                .sum::<u64>(),
            file.size
        );
        assert!(
            file.location
                .parts
                .iter()
                .all(|part| part.md5.as_ref().is_some_and(|md5| md5.len() == 32))
        );
        assert_eq!(
            file.location
                .parts
                .iter()
                .map(|part| part.index)
                .collect::<Vec<_>>(),
            (1..=file.location.parts.len() as u32).collect::<Vec<_>>()
        );
    }
    // 300 files under /reads, 7 per page.
    let pages = emulator
        .control()
        .requests()
        .iter()
        .filter(|request| request.path == "/system/findDataObjects")
        .count();
    assert_eq!(pages, 300usize.div_ceil(7));

    // The pattern sees paths relative to the folder: from the root they start with "reads/".
    let from_root = source
        .list(&DnanexusSelection::new(
            &project,
            "/",
            Regex::new(r"^reads/b/sub0/").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        from_root.len(),
        expected
            .iter()
            .filter(|path| path.starts_with("b/sub0/"))
            .count()
            + 5
    );
    let direct = source
        .list(&DnanexusSelection::new(
            &project,
            "/reads/a/sub0",
            Regex::new(r"^f\d+\.txt$").unwrap(),
        ))
        .await
        .unwrap();
    assert!(
        !direct.is_empty()
            && direct
                .iter()
                .all(|file| file.location.folder == "/reads/a/sub0"
                    && file.location.name.ends_with(".txt"))
    );
    assert!(
        source
            .list(&DnanexusSelection::new(
                &project,
                "/missing",
                Regex::new("").unwrap()
            ))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn projects_resolve_by_name_and_unknown_ones_are_reported() {
    let (mut seed, project) = seed("Cohort 7");
    seed.add_file(&project, "/a.csv", Content::Bytes(b"a".to_vec()), 4);
    let stranger = seed.add_user("stranger");
    let hidden = seed.add_project("Hidden", &stranger);
    let shared = seed.add_project("Shared", &stranger);
    seed.add_member(&shared, USER, Level::View);
    seed.add_file(&shared, "/s.csv", Content::Bytes(b"s".to_vec()), 4);
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let source = source(&emulator);
    let any = Regex::new("").unwrap();

    let by_name = source
        .list(&DnanexusSelection::new("Cohort 7", "/", any.clone()))
        .await
        .unwrap();
    assert_eq!(
        by_name
            .iter()
            .map(|file| file.location.name.as_str())
            .collect::<Vec<_>>(),
        ["a.csv"]
    );
    assert_eq!(
        source
            .list(&DnanexusSelection::new("Shared", "", any.clone()))
            .await
            .unwrap()
            .len(),
        1,
        "view access is enough"
    );
    for missing in [
        "project-000000000000000000000000",
        "No such project",
        hidden.as_str(),
        "Hidden",
    ] {
        match source
            .list(&DnanexusSelection::new(missing, "/", any.clone()))
            .await
        {
            Err(DnanexusError::ProjectNotFound { project }) => assert_eq!(project, missing),
            other => panic!("{missing}: expected ProjectNotFound, got {other:?}"),
        }
    }
    assert!(matches!(
        source
            .list(&DnanexusSelection::new(&project, "relative", any.clone()))
            .await,
        Err(DnanexusError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_rejected() {
    let (seed, project) = seed("P");
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let control = emulator.control();
    let any = Regex::new("").unwrap();

    let unknown = source_with(&emulator, fast_options(&emulator), "never-issued");
    assert!(matches!(
        unknown.check_access().await,
        Err(DnanexusError::TokenRejected)
    ));

    let source = source(&emulator);
    source.check_access().await.unwrap();
    control.expire_token(CANARY_TOKEN);
    for error in [
        source.check_access().await.unwrap_err(),
        source
            .list(&DnanexusSelection::new(&project, "/", any.clone()))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(error, DnanexusError::TokenRejected), "{error:?}");
        assert_eq!(
            error.to_string(),
            "the stored DNAnexus token was rejected (expired or revoked)"
        );
        assert_no_secret(&error);
    }
    control.set_token_expiry(CANARY_TOKEN, None);
    source.check_access().await.unwrap();
    control.revoke_token(CANARY_TOKEN);
    let error = source
        .list(&DnanexusSelection::new(&project, "/", any.clone()))
        .await
        .unwrap_err();
    assert!(matches!(error, DnanexusError::TokenRejected), "{error:?}");
    assert_no_secret(&error);
}

#[tokio::test]
async fn listing_rides_out_throttling_and_server_errors() {
    let (mut seed, project) = seed("P");
    for index in 0..10 {
        seed.add_file(
            &project,
            &format!("/f{index}"),
            Content::Bytes(vec![1; 3]),
            4,
        );
    }
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let control = emulator.control();
    let options = DnanexusOptions {
        list_page_size: 3,
        max_attempts: 6,
        ..fast_options(&emulator)
    };
    let source = source_with(&emulator, options, CANARY_TOKEN);
    // Five failures in a row, then success on the sixth attempt. Retry-After: 30 would stall a test; the options cap every wait at 20 ms.
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 503,
                retry_after: Some(30),
            },
            2,
        )
        .on_path("findDataObjects"),
    );
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 500,
                retry_after: None,
            },
            1,
        )
        .on_path("findDataObjects"),
    );
    control.inject(FaultRun::new(Fault::Disconnect, 1).on_path("findDataObjects"));
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 429,
                retry_after: Some(1),
            },
            1,
        )
        .on_path("findDataObjects"),
    );
    let files = source
        .list(&DnanexusSelection::new(
            &project,
            "/",
            regex::Regex::new("").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(files.len(), 10);
    assert_eq!(control.pending_faults(), 0);

    // A run longer than the attempts: the last error comes back, typed.
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 503,
                retry_after: Some(1),
            },
            10,
        )
        .on_path("whoami"),
    );
    match source.check_access().await {
        Err(DnanexusError::Api {
            kind, status: 503, ..
        }) => assert_eq!(kind, "ServiceUnavailable"),
        other => panic!("expected the 503 after 6 attempts, got {other:?}"),
    }
    assert_eq!(control.pending_faults(), 4, "6 attempts, no more");
    // Other 4xx answers are final at once.
    control.clear_faults();
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 400,
                retry_after: None,
            },
            3,
        )
        .on_path("whoami"),
    );
    assert!(matches!(
        source.check_access().await,
        Err(DnanexusError::Api { status: 400, .. })
    ));
    assert_eq!(control.pending_faults(), 2);
}

#[tokio::test]
async fn the_token_never_appears_in_errors_or_debug_output() {
    let (mut seed, project) = seed("P");
    seed.add_file(&project, "/a.csv", Content::Bytes(b"a".to_vec()), 4);
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let control = emulator.control();
    let source = source(&emulator);
    let echo = format!("token {CANARY_TOKEN} is not allowed here");
    let any = Regex::new("").unwrap();

    // A server that repeats the token in its error message, on every kind of call.
    let reply = |status: u16, path: &str| {
        FaultRun::new(
            Fault::Error {
                status,
                kind: "InvalidInput".into(),
                message: echo.clone(),
            },
            1,
        )
        .on_path(path)
    };
    control.inject(reply(422, "findDataObjects"));
    let error = source
        .list(&DnanexusSelection::new(&project, "/", any.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnanexusError::Api { status: 422, message, .. } if message.contains("[redacted]")),
        "{error:?}"
    );
    assert_no_secret(&error);
    control.inject(
        FaultRun::new(
            Fault::Error {
                status: 503,
                kind: "ServiceUnavailable".into(),
                message: echo.clone(),
            },
            10,
        )
        .on_path("whoami"),
    );
    let error = source.check_access().await.unwrap_err();
    assert_no_secret(&error);
    let files = source
        .list(&DnanexusSelection::new(&project, "/", any.clone()))
        .await
        .unwrap();
    control.inject(reply(400, DATA_PATH_PREFIX));
    let dir = tempfile::tempdir().unwrap();
    let error = source
        .fetch(
            &files[0],
            &PartialFile::new(dir.path().join("a")),
            &|_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, DnanexusError::Api { status: 400, .. }),
        "{error:?}"
    );
    assert_no_secret(&error);

    let token = DnanexusToken(CANARY_TOKEN.to_owned());
    for shown in [
        format!("{token:?}"),
        format!("{source:?}"),
        format!("{:?}", fast_options(&emulator)),
    ] {
        assert!(!shown.contains(CANARY_TOKEN), "{shown}");
    }
    assert_eq!(format!("{token:?}"), "[redacted]");
}
