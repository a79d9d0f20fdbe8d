//! The state as of a moment and the changes between two, on a scripted history, from the data
//! directory and from an export: tables and JSON as snapshots.

use keyledger_audit::replay::{Moment, diff, state_as_of, states_as_of};
use keyledger_audit::{AuditError, export_jsonl, read_export_envelopes};
use keyledger_domain::KeyStatus;

use crate::support::*;

fn log_events(test: &TestVault) -> Vec<Result<keyledger_log::Envelope, AuditError>> {
    test.vault
        .log()
        .read_from(1)
        .map(|e| e.map_err(AuditError::from))
        .collect()
}

#[tokio::test]
async fn the_state_as_of_a_time_shows_keys_statuses_and_roles_then() {
    let history = scripted_history().await;
    let test = &history.test;
    let at_a = state_as_of(log_events(test), Moment::Time(history.moment_a)).unwrap();
    let at_b = state_as_of(log_events(test), Moment::Time(history.moment_b)).unwrap();

    // At A: carol (a member, then also a developer) held manage_user_api_keys, with admin and
    // dev; every key was active.
    assert_eq!(
        at_a.permission_holders["manage_user_api_keys"],
        ["admin", "carol", "dev"]
    );
    assert!(
        at_a.internal_keys
            .iter()
            .all(|k| k.status == KeyStatus::Active)
    );
    // At B: dev's role was revoked, `ci` and the DNAnexus key had expired, `laptop` and the
    // AWS key were deleted.
    assert_eq!(
        at_b.permission_holders["manage_user_api_keys"],
        ["admin", "carol"]
    );
    let status = |name: &str| {
        at_b.internal_keys
            .iter()
            .find(|k| k.name == name)
            .map(|k| k.status)
    };
    assert_eq!(status("ci"), Some(KeyStatus::Expired));
    assert_eq!(status("laptop"), Some(KeyStatus::Deleted));

    insta::assert_snapshot!("as_of_a_table", redact(&at_a.render(), &history.names));
    insta::assert_snapshot!("as_of_b_table", redact(&at_b.render(), &history.names));
    insta::assert_snapshot!(
        "as_of_b_json",
        redact(
            &serde_json::to_string_pretty(&at_b).unwrap(),
            &history.names
        )
    );
}

#[tokio::test]
async fn the_diff_between_two_moments_lists_what_changed() {
    let history = scripted_history().await;
    let test = &history.test;
    let moments = [
        Moment::Time(history.moment_a),
        Moment::Time(history.moment_b),
    ];
    let views = states_as_of(log_events(test), &moments).unwrap();
    let changes = diff(&views[0], &views[1]);
    assert_eq!(changes.roles_revoked.len(), 1);
    assert_eq!(changes.keys_expired.len(), 2);
    assert_eq!(changes.keys_deleted.len(), 2);
    insta::assert_snapshot!("diff_a_b_table", redact(&changes.render(), &history.names));
    insta::assert_snapshot!(
        "diff_a_b_json",
        redact(
            &serde_json::to_string_pretty(&changes).unwrap(),
            &history.names
        )
    );
    // From the beginning to A: users, grants and keys created.
    let views = states_as_of(
        log_events(test),
        &[Moment::Seq(0), Moment::Time(history.moment_a)],
    )
    .unwrap();
    insta::assert_snapshot!(
        "diff_start_a_table",
        redact(&diff(&views[0], &views[1]).render(), &history.names)
    );
}

#[tokio::test]
async fn a_moment_by_seq_stops_right_after_that_event_and_statuses_are_judged_then() {
    let history = scripted_history().await;
    let test = &history.test;
    // Through seq 5: the bootstrap (3 events) and dev's creation (2 events).
    let view = state_as_of(log_events(test), Moment::Seq(5)).unwrap();
    assert_eq!(view.as_of.seq, 5);
    assert_eq!(view.users.len(), 2);
    assert_eq!(view.internal_keys.len(), 1);
    insta::assert_snapshot!("as_of_seq_5_table", redact(&view.render(), &history.names));

    // An expiry the sweeper had not recorded yet still shows as expired at a later time.
    let just_after_expiry = history.moment_a.plus_millis(DAY);
    let view = state_as_of(log_events(test), Moment::Time(just_after_expiry)).unwrap();
    let ci = view.internal_keys.iter().find(|k| k.name == "ci").unwrap();
    assert_eq!(ci.status, KeyStatus::Expired);
}

#[tokio::test]
async fn an_export_replays_to_the_same_state_as_the_data_directory() {
    let history = scripted_history().await;
    let test = &history.test;
    let mut export = Vec::new();
    export_jsonl(test.vault.log(), 1, u64::MAX, &mut export).unwrap();
    for moment in [
        Moment::Time(history.moment_a),
        Moment::Time(history.moment_b),
        Moment::Seq(9),
    ] {
        let from_dir = state_as_of(log_events(test), moment).unwrap();
        let from_file = state_as_of(read_export_envelopes(export.as_slice()), moment).unwrap();
        assert_eq!(from_dir, from_file);
    }
}

#[tokio::test]
async fn a_damaged_log_is_refused_rather_than_replayed_wrongly() {
    let history = scripted_history().await;
    let mut export = Vec::new();
    export_jsonl(history.test.vault.log(), 1, u64::MAX, &mut export).unwrap();
    let text = String::from_utf8(export).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(4);
    let joined = lines.join("\n");
    let result = state_as_of(
        read_export_envelopes(joined.as_bytes()),
        Moment::Time(history.moment_b),
    );
    match result {
        Err(AuditError::Damaged(problem)) => assert_eq!(problem.seq, 5),
        other => panic!("expected a damaged log, got {other:?}"),
    }
    // A moment before the damage is still answered.
    assert!(state_as_of(read_export_envelopes(joined.as_bytes()), Moment::Seq(4)).is_ok());
}

#[test]
fn moments_parse_as_seqs_or_times() {
    assert_eq!(Moment::parse("42").unwrap(), Moment::Seq(42));
    assert_eq!(Moment::parse("seq:7").unwrap(), Moment::Seq(7));
    assert_eq!(
        Moment::parse("2026-09-21T12:00:00Z").unwrap(),
        Moment::Time(keyledger_domain::Timestamp::parse_rfc3339("2026-09-21T12:00:00Z").unwrap())
    );
    assert!(Moment::parse("yesterday").is_err());
}
