//! Saved sources (decision 0031): given events, when a command, then events or an error; and
//! when each is due.

use keyledger_domain::*;

use crate::fixtures::*;

const HOUR: i64 = 3_600_000;

/// The first full hour after `T0`.
fn first_hour() -> Timestamp {
    Timestamp::from_millis((T0.as_millis() / HOUR + 1) * HOUR)
}

fn source_id(n: u32) -> SourceId {
    SourceId::parse(&format!("src_{n:016}")).unwrap()
}

fn job(n: u32) -> IngestionId {
    IngestionId::parse(&format!("ing_{n:016}")).unwrap()
}

fn apply(state: &mut State, actor: Actor, action: Action, now: Timestamp) -> Vec<Event> {
    let events = decide(state, Command::new(actor, action), now).expect("command should succeed");
    events.iter().for_each(|e| state.apply(e));
    events
}

fn when(
    state: &State,
    actor: Actor,
    action: Action,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    decide(state, Command::new(actor, action), now)
}

fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

fn save(n: u32, name: &str, schedule: Option<&str>) -> Action {
    Action::SaveSource {
        source: source_id(n),
        name: SourceName::parse(name).unwrap(),
        selection: Selection::Aws {
            bucket: "runs".into(),
            prefix: "2026/".into(),
            pattern: r"\.csv$".into(),
        },
        destination: "member/nightly".into(),
        schedule: schedule.map(|cron| Schedule::parse(cron, Some("UTC")).unwrap()),
    }
}

fn run(n: u32, ingestion: u32, scheduled_for: Option<Timestamp>) -> Action {
    Action::RunSource {
        source: source_id(n),
        ingestion: job(ingestion),
        batch_id: format!("batch-{ingestion}"),
        scheduled_for,
    }
}

fn finish(state: &mut State, ingestion: u32, at: Timestamp) {
    state.apply(&Event::IngestionCompleted {
        ingestion: job(ingestion),
        files: 0,
        bytes: 0,
        failed: 0,
        at,
    });
}

/// `member` (who may import) with an AWS key and an hourly source `src_…1`, saved at `T0`.
fn given_hourly_source() -> State {
    let mut state = world();
    apply(
        &mut state,
        as_user("member"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    apply(
        &mut state,
        as_user("member"),
        save(1, "hourly", Some("0 * * * *")),
        T0,
    );
    state
}

fn due(state: &State, now: Timestamp) -> Option<Timestamp> {
    state.source_due(state.source(&source_id(1)).unwrap(), now)
}

#[test]
fn a_source_is_saved_under_a_name_unique_to_its_owner() {
    let mut state = given_hourly_source();
    let source = state.source(&source_id(1)).unwrap();
    assert_eq!(source.owner, user("member"));
    assert_eq!(source.schedule.as_ref().unwrap().cron(), "0 * * * *");
    let again = when(&state, as_user("member"), save(2, "hourly", None), T0);
    assert!(
        matches!(again, Err(DomainError::SourceNameTaken { .. })),
        "{again:?}"
    );
    // Names are per owner: `dev` may use it too; an auditor may not import at all.
    apply(&mut state, as_user("dev"), save(3, "hourly", None), T0);
    let refused = when(&state, as_user("auditor"), save(5, "audit", None), T0);
    assert!(
        matches!(refused, Err(DomainError::PermissionDenied { .. })),
        "{refused:?}"
    );
    // A deleted source frees its name.
    apply(
        &mut state,
        as_user("member"),
        Action::DeleteSource {
            source: source_id(1),
        },
        T0,
    );
    apply(&mut state, as_user("member"), save(4, "hourly", None), T0);
}

#[test]
fn a_run_is_a_job_recorded_in_the_same_append_and_never_two_at_once() {
    let mut state = given_hourly_source();
    let events = apply(&mut state, as_user("member"), run(1, 1, None), T0);
    assert_eq!(names(&events), ["IngestionRequested", "SourceRunStarted"]);
    let Event::IngestionRequested { destination, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(destination, "member/nightly");
    // The first job has not finished: a second run is refused, by hand or on schedule.
    let twice = when(&state, as_user("member"), run(1, 2, None), T0);
    assert!(
        matches!(twice, Err(DomainError::SourceRunning { .. })),
        "{twice:?}"
    );
    let scheduled = when(
        &state,
        Actor::System,
        run(1, 2, Some(first_hour())),
        first_hour(),
    );
    assert!(
        matches!(scheduled, Err(DomainError::SourceRunning { .. })),
        "{scheduled:?}"
    );
    // The decision names the last run's job among its reads: a concurrent finish conflicts.
    finish(&mut state, 1, T0);
    let decision =
        decide_with_reads(&state, Command::new(as_user("member"), run(1, 2, None)), T0).unwrap();
    assert!(
        decision.reads.contains(&ingestion_stream(&job(1))),
        "{:?}",
        decision.reads
    );
    apply(&mut state, as_user("member"), run(1, 2, None), T0);
    assert_eq!(state.source(&source_id(1)).unwrap().runs, 2);
}

#[test]
fn another_users_source_is_not_found() {
    let mut state = given_hourly_source();
    apply(
        &mut state,
        as_user("admin"),
        Action::GrantRole {
            user: user("dev"),
            role: role("member"),
        },
        T0,
    );
    for action in [
        run(1, 1, None),
        Action::PauseSource {
            source: source_id(1),
        },
        Action::ResumeSource {
            source: source_id(1),
        },
        Action::DeleteSource {
            source: source_id(1),
        },
    ] {
        let refused = when(&state, as_user("dev"), action, T0);
        assert!(
            matches!(refused, Err(DomainError::NotFound { what: "source", .. })),
            "{refused:?}"
        );
    }
}

#[test]
fn a_schedule_is_due_once_per_occurrence_and_catches_up_once() {
    let mut state = given_hourly_source();
    assert_eq!(
        due(&state, T0),
        None,
        "nothing is due before the first occurrence"
    );
    let first = first_hour();
    assert_eq!(due(&state, first), Some(first));
    apply(&mut state, Actor::System, run(1, 1, Some(first)), first);
    // The same occurrence never runs twice.
    let again = when(&state, Actor::System, run(1, 2, Some(first)), first);
    assert!(matches!(again, Err(DomainError::Invalid(_))), "{again:?}");
    // While the run's job is going, the next occurrence is skipped, not run late.
    let second = first.plus_millis(HOUR);
    assert_eq!(due(&state, second), None);
    finish(&mut state, 1, second.plus_millis(60_000));
    assert_eq!(due(&state, second.plus_millis(120_000)), None);
    // Down for a day: the missed occurrences run once, as the latest of them.
    let later = second.plus_millis(24 * HOUR + 5 * 60_000);
    let latest = second.plus_millis(24 * HOUR);
    assert_eq!(due(&state, later), Some(latest));
    let source = state.source(&source_id(1)).unwrap();
    assert_eq!(state.source_next_run(source, later), Some(latest));
}

#[test]
fn paused_deleted_and_deactivated_sources_are_never_due() {
    let mut state = given_hourly_source();
    let first = first_hour();
    apply(
        &mut state,
        as_user("member"),
        Action::PauseSource {
            source: source_id(1),
        },
        T0,
    );
    assert_eq!(due(&state, first), None);
    let source = state.source(&source_id(1)).unwrap();
    assert_eq!(state.source_next_run(source, first), None);
    let refused = when(&state, Actor::System, run(1, 1, Some(first)), first);
    assert!(refused.is_err());
    // Resumed: occurrences while it was paused are not caught up.
    let resumed = first.plus_millis(60_000);
    apply(
        &mut state,
        as_user("member"),
        Action::ResumeSource {
            source: source_id(1),
        },
        resumed,
    );
    assert_eq!(due(&state, resumed), None);
    assert_eq!(
        due(&state, first.plus_millis(HOUR)),
        Some(first.plus_millis(HOUR))
    );
    // A deactivated owner's sources stop.
    let mut deactivated = state.clone();
    apply(
        &mut deactivated,
        as_user("admin"),
        Action::DeactivateUser {
            user: user("member"),
            reason: Reason::parse("left").unwrap(),
        },
        resumed,
    );
    assert_eq!(due(&deactivated, first.plus_millis(HOUR)), None);
    let refused = when(
        &deactivated,
        Actor::System,
        run(1, 1, Some(first.plus_millis(HOUR))),
        first,
    );
    assert!(
        matches!(refused, Err(DomainError::PermissionDenied { .. })),
        "{refused:?}"
    );
    // Deleted: gone from the state, its id unknown.
    apply(
        &mut state,
        as_user("member"),
        Action::DeleteSource {
            source: source_id(1),
        },
        resumed,
    );
    assert!(state.source(&source_id(1)).is_none());
    let refused = when(
        &state,
        Actor::System,
        run(1, 1, Some(first.plus_millis(HOUR))),
        first,
    );
    assert!(
        matches!(refused, Err(DomainError::NotFound { .. })),
        "{refused:?}"
    );
}

fn refusal(n: u32, scheduled_for: Timestamp, reason: &str) -> Action {
    Action::RecordSourceRefusal {
        source: source_id(n),
        scheduled_for,
        reason: reason.to_owned(),
    }
}

#[test]
fn a_refused_scheduled_run_is_recorded_once_per_occurrence_until_a_run_hides_it() {
    let mut state = given_hourly_source();
    apply(
        &mut state,
        as_user("member"),
        Action::DeleteExternalKeys {
            keys: vec![ext_id(1)],
        },
        T0,
    );
    let first = first_hour();
    let refused = when(&state, Actor::System, run(1, 1, Some(first)), first);
    let Err(error @ DomainError::NoExternalKey { .. }) = refused else {
        panic!("{refused:?}")
    };
    // The scheduler records the refusal's sentence: once for the occurrence.
    let events = apply(
        &mut state,
        Actor::System,
        refusal(1, first, &error.to_string()),
        first,
    );
    let [
        Event::SourceRunRefused {
            owner,
            scheduled_for,
            reason,
            ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!((owner, *scheduled_for), (&user("member"), first));
    assert!(reason.contains("no usable external key"), "{reason}");
    let shown = state.source(&source_id(1)).unwrap().current_refusal();
    assert_eq!(shown.map(|r| (r.scheduled_for, r.at)), Some((first, first)));
    // The next ticks try again, still the latest due occurrence: nothing more is recorded.
    let tick = first.plus_millis(30_000);
    assert_eq!(due(&state, tick), Some(first));
    assert_eq!(
        when(&state, Actor::System, refusal(1, first, "again"), tick).unwrap(),
        []
    );
    // Only the scheduler records refusals.
    let by_user = when(&state, as_user("member"), refusal(1, first, "x"), tick);
    assert!(by_user.is_err(), "{by_user:?}");
    // The next occurrence, refused again, is recorded again.
    let second = first.plus_millis(HOUR);
    let events = apply(
        &mut state,
        Actor::System,
        refusal(1, second, "no key"),
        second,
    );
    assert_eq!(names(&events), ["SourceRunRefused"]);
    // A new key: the next occurrence runs, and the refusal is no longer shown.
    apply(
        &mut state,
        as_user("member"),
        Action::CreateExternalKey(aws_key(2)),
        second,
    );
    let third = second.plus_millis(HOUR);
    assert_eq!(due(&state, third), Some(third));
    apply(&mut state, Actor::System, run(1, 1, Some(third)), third);
    let source = state.source(&source_id(1)).unwrap();
    assert!(source.last_refusal.is_some());
    assert_eq!(source.current_refusal(), None);
    // An occurrence already run is never recorded as refused.
    assert_eq!(
        when(&state, Actor::System, refusal(1, third, "late"), third).unwrap(),
        []
    );
}
