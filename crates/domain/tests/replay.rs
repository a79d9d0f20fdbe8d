//! Replaying any sequence of events that `decide` produced reproduces the same state.

use keyledger_domain::*;
use proptest::prelude::*;

use crate::fixtures::*;

#[derive(Debug, Clone)]
enum Step {
    CreateKey(u32, u32),
    DeleteKeys(Vec<u32>),
    Roll(u32),
    CreateAws(u32),
    CreateDx(u32),
    DeleteExternal(u32),
    Revoke,
    Grant,
    Advance(u32),
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..20u32, 1..40u32).prop_map(|(n, d)| Step::CreateKey(n, d)),
        proptest::collection::vec(0..20u32, 1..4).prop_map(Step::DeleteKeys),
        (0..20u32).prop_map(Step::Roll),
        (20..30u32).prop_map(Step::CreateAws),
        (30..40u32).prop_map(Step::CreateDx),
        (20..40u32).prop_map(Step::DeleteExternal),
        Just(Step::Revoke),
        Just(Step::Grant),
        (1..20u32).prop_map(Step::Advance),
        Just(Step::Sweep),
    ]
}

proptest! {
    #[test]
    fn replay_reproduces_the_state(steps in proptest::collection::vec(step(), 1..60)) {
        let mut live = world();
        let mut log: Vec<Event> = Vec::new();
        let mut now = T0;
        for step in steps {
            let (actor, action) = match step {
                Step::CreateKey(n, days) => (as_user("dev"), Action::CreateApiKey(new_key(n, KeyDuration::Days(days)))),
                Step::DeleteKeys(ns) => (as_user("dev"), Action::DeleteApiKeys { keys: ns.into_iter().map(key_id).collect() }),
                Step::Roll(n) => (as_user("dev"), Action::RollApiKey { key: key_id(n), grace: GracePeriod::parse("1h").unwrap(), hint: KeyHint::mask("kl_rolledrolled", 7, 4), secret_hash: hash(200 + (n as u8 % 50)) }),
                Step::CreateAws(n) => (as_user("dev"), Action::CreateExternalKey(aws_key(n))),
                Step::CreateDx(n) => (as_user("dev"), Action::CreateExternalKey(dnanexus_key(n))),
                Step::DeleteExternal(n) => (as_user("dev"), Action::DeleteExternalKeys { keys: vec![ext_id(n)] }),
                Step::Revoke => (as_user("admin"), Action::RevokeRole { user: user("dev"), role: role("developer") }),
                Step::Grant => (as_user("admin"), Action::GrantRole { user: user("dev"), role: role("developer") }),
                Step::Advance(days) => { now = now.plus_days(days); continue }
                Step::Sweep => (Actor::System, Action::ExpireDue),
            };
            if let Ok(events) = decide(&live, Command::new(actor, action), now) {
                for event in events {
                    live.apply(&event);
                    log.push(event);
                }
            }
        }
        let mut replayed = world();
        for event in &log {
            // Through the log's binary encoding, as a real replay does.
            let bytes = bincode::serde::encode_to_vec(event, bincode::config::standard()).unwrap();
            let (decoded, _): (Event, usize) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            replayed.apply_owned(decoded);
        }
        prop_assert_eq!(replayed, live);
    }
}
