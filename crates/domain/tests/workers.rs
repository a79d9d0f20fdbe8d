//! Decision 0025, given / when / then: a worker (role `worker`) leases a live job's credential,
//! reports under its lease, and is stopped by an ended lease; a redelivered job records nothing
//! twice.

use keyledger_domain::*;

use crate::fixtures::*;

fn decide_as(state: &State, actor: Actor, action: Action) -> Result<Vec<Event>, DomainError> {
    decide(state, Command::new(actor, action), T0)
}

fn apply(state: &mut State, actor: Actor, action: Action) -> Vec<Event> {
    let events = decide_as(state, actor, action).expect("command should succeed");
    events.iter().for_each(|e| state.apply(e));
    events
}

fn job() -> IngestionId {
    IngestionId::parse("ing_0000000000000001").unwrap()
}

/// `member` stored AWS key 1 and requested job 1; `wrk` holds the role `worker`.
fn given_a_requested_job() -> State {
    let mut state = world();
    for event in [
        Event::UserCreated {
            user: user("wrk"),
            display_name: None,
            at: T0,
        },
        Event::RoleGranted {
            user: user("wrk"),
            role: role("worker"),
            at: T0,
        },
    ] {
        state.apply(&event);
    }
    apply(
        &mut state,
        as_user("member"),
        Action::CreateExternalKey(aws_key(1)),
    );
    apply(
        &mut state,
        as_user("member"),
        Action::RequestIngestion {
            ingestion: job(),
            selection: Selection::Aws {
                bucket: "b".into(),
                prefix: "p/".into(),
                pattern: ".*".into(),
            },
            destination: "member".into(),
            batch_id: "batch-1".into(),
            force: false,
        },
    );
    state
}

fn lease(id: &str) -> Action {
    Action::LeaseIngestion {
        ingestion: job(),
        lease: id.into(),
        expires_at: T0.plus_millis(60_000),
    }
}

fn report(lease: &str, progress: IngestionProgress) -> Action {
    Action::ReportIngestion {
        ingestion: job(),
        lease: lease.into(),
        progress,
    }
}

fn fetched(path: &str) -> IngestionProgress {
    IngestionProgress::FileFetched {
        path: path.into(),
        size: 3,
        sha256: [1; 32],
        source_etag: "etag".into(),
    }
}

fn failed(reason: &str) -> IngestionProgress {
    IngestionProgress::Failed {
        reason: reason.into(),
        failure_kind: FailureKind::Cancelled,
    }
}

fn ended(result: Result<Vec<Event>, DomainError>) -> String {
    match result {
        Err(DomainError::LeaseEnded { reason }) => reason,
        other => panic!("expected the lease to have ended, got {other:?}"),
    }
}

#[test]
fn only_a_worker_leases_and_the_lease_is_recorded() {
    let mut state = given_a_requested_job();
    for caller in ["member", "auditor", "dev"] {
        assert!(matches!(
            decide_as(&state, as_user(caller), lease("lease_a")),
            Err(DomainError::PermissionDenied {
                permission: Permission::RunIngestionJobs,
                ..
            })
        ));
    }
    let events = apply(&mut state, as_user("wrk"), lease("lease_a"));
    match events.as_slice() {
        [
            Event::ExternalKeyLeased {
                key,
                worker,
                data_key,
                ..
            },
        ] => {
            assert_eq!(key, &ext_id(1));
            assert_eq!(worker, &user("wrk"));
            assert_eq!(data_key, &DataKeyId::original(&ext_id(1)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state.job_lease(&job()).unwrap().id, "lease_a");
    // The worker's permission is that one only.
    assert!(!state.has_permission(&user("wrk"), Permission::ManageUserApiKeys));
    assert!(!state.has_permission(&user("wrk"), Permission::ImportOrganizationSamples));
}

#[test]
fn a_redelivered_job_records_each_file_once_and_ends_the_old_lease() {
    let mut state = given_a_requested_job();
    apply(&mut state, as_user("wrk"), lease("lease_a"));
    let listed = IngestionProgress::Listed { files: 2, bytes: 6 };
    assert_eq!(
        apply(
            &mut state,
            as_user("wrk"),
            report("lease_a", listed.clone())
        )
        .len(),
        1
    );
    apply(
        &mut state,
        as_user("wrk"),
        report("lease_a", fetched("a.csv")),
    );
    // The job goes to a second worker: a new lease.
    apply(&mut state, as_user("wrk"), lease("lease_b"));
    let reason = ended(decide_as(
        &state,
        as_user("wrk"),
        report("lease_a", fetched("b.csv")),
    ));
    assert!(reason.contains("handed to another worker"), "{reason}");
    // The old holder cannot even record a failure.
    ended(decide_as(
        &state,
        as_user("wrk"),
        report("lease_a", failed("x")),
    ));
    // What is recorded is skipped, the rest recorded.
    assert!(apply(&mut state, as_user("wrk"), report("lease_b", listed)).is_empty());
    assert!(
        apply(
            &mut state,
            as_user("wrk"),
            report("lease_b", fetched("a.csv"))
        )
        .is_empty()
    );
    assert_eq!(
        apply(
            &mut state,
            as_user("wrk"),
            report("lease_b", fetched("b.csv"))
        )
        .len(),
        1
    );
    let completed = apply(
        &mut state,
        as_user("wrk"),
        report("lease_b", IngestionProgress::Completed),
    );
    match completed.as_slice() {
        [Event::IngestionCompleted { files, bytes, .. }] => assert_eq!((*files, *bytes), (2, 6)),
        other => panic!("{other:?}"),
    }
    // Finished: the lease ended with the job.
    assert!(matches!(
        decide_as(&state, as_user("wrk"), report("lease_b", fetched("c.csv"))),
        Err(DomainError::IngestionFinished { .. })
    ));
}

#[test]
fn deleting_or_rotating_the_key_ends_the_lease_but_the_failure_is_recorded() {
    for end in ["delete", "rotate"] {
        let mut state = given_a_requested_job();
        apply(&mut state, as_user("wrk"), lease("lease_a"));
        let action = match end {
            "delete" => Action::DeleteExternalKeys {
                keys: vec![ext_id(1)],
            },
            _ => Action::RotateExternalKey(ExternalKeyRotation {
                key: ext_id(1),
                public: aws_key(1).public,
                sealed: SealedSecret {
                    nonce: [9; 12],
                    ciphertext: vec![7, 8, 9],
                },
                data_key: DataKeyId::rotated(&ext_id(1), "Rot8edAbCdEfGhIj"),
            }),
        };
        apply(&mut state, as_user("member"), action);
        let reason = ended(decide_as(
            &state,
            as_user("wrk"),
            report("lease_a", fetched("a.csv")),
        ));
        let said = if end == "delete" {
            "deleted"
        } else {
            "rotated"
        };
        assert!(reason.contains(said), "{end}: {reason}");
        let events = apply(
            &mut state,
            as_user("wrk"),
            report("lease_a", failed(&reason)),
        );
        assert_eq!(events.len(), 1, "{end}");
        assert_eq!(
            state.ingestion(&job()).unwrap().state,
            IngestionState::Failed,
            "{end}"
        );
    }
}

#[test]
fn each_recorded_step_renews_the_lease_so_a_long_job_is_not_refused() {
    let mut state = given_a_requested_job();
    // A lease of 60 s (`lease`), granted at T0.
    apply(&mut state, as_user("wrk"), lease("lease_a"));
    let at = |seconds: i64| T0.plus_millis(seconds * 1000);
    let when = |state: &State, seconds: i64, progress: IngestionProgress| {
        decide(
            state,
            Command::new(as_user("wrk"), report("lease_a", progress)),
            at(seconds),
        )
    };
    // A report every 50 s: each renews the lease, so the job goes on far past its first end.
    for (n, seconds) in [50, 100, 150, 200].into_iter().enumerate() {
        let events = when(&state, seconds, fetched(&format!("f{n}"))).expect("accepted");
        events.iter().for_each(|e| state.apply(e));
    }
    assert_eq!(state.job_lease(&job()).unwrap().expires_at, at(260));
    // Silent for longer than the lease: it ends, as before.
    let reason = ended(when(&state, 261, fetched("late")));
    assert!(reason.contains("expired"), "{reason}");
    // A step the lease did not report (a report already recorded is skipped) renews nothing
    // more than the recorded one did.
    assert!(when(&state, 230, fetched("f0")).unwrap().is_empty());
}
