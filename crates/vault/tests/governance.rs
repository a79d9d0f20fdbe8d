//! Expiry warnings, leak reports and honeytokens (decision 0027), with the injected clock.

use keyledger_crypto::SecretString;
use keyledger_domain::{Event, KeyDuration, KeyId, KeyName, KeyStatus, Label, MILLIS_PER_DAY};
use keyledger_vault::{AuthFailure, LeakLabel, LeakReport, NewCredential, Vault};

use crate::support::*;

fn name(text: &str) -> KeyName {
    KeyName::parse(text).unwrap()
}

fn events(vault: &Vault) -> Vec<Event> {
    vault
        .log()
        .read_from(1)
        .map(|envelope| keyledger_vault::decode_event(&envelope.unwrap().body).unwrap())
        .collect()
}

/// `(key id, horizon)` of every expiry warning in the log, internal and external, in order.
fn warnings(vault: &Vault) -> Vec<(String, u32)> {
    events(vault)
        .into_iter()
        .filter_map(|event| match event {
            Event::ApiKeyExpiring {
                key, horizon_days, ..
            } => Some((key.to_string(), horizon_days)),
            Event::ExternalKeyExpiring {
                key, horizon_days, ..
            } => Some((key.to_string(), horizon_days)),
            _ => None,
        })
        .collect()
}

fn report(token: &str) -> LeakReport {
    LeakReport {
        token: SecretString::new(token.to_owned()),
        url: "https://github.com/octocat/Hello-World/blob/1234567/config.env".to_owned(),
        source: "content".to_owned(),
    }
}

/// A 45-day key is warned at 30, 7 and 1 days, each exactly once, although the sweeper runs at
/// every step and the vault restarts between the horizons; an external key likewise.
#[tokio::test]
async fn each_horizon_is_announced_once_per_key_across_a_restart() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("ci"), KeyDuration::Days(45), None)
        .await
        .unwrap();
    let dx = NewCredential::dnanexus(SecretString::new("dxTokenWarn0123456789".into())).unwrap();
    let external = test
        .vault
        .create_external_key(
            dev(),
            Label::parse("dx").unwrap(),
            dx,
            KeyDuration::Days(10),
            None,
        )
        .await
        .unwrap();
    let never = test
        .vault
        .create_api_key(dev(), name("forever"), KeyDuration::Never, None)
        .await
        .unwrap();

    // Day 0: nothing is due for the internal key; the 10-day external key is inside the 30-day
    // horizon from its start and is announced once, at the nearest horizon it is within.
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 1);
    assert_eq!(warnings(&test.vault), [(external.id.to_string(), 30)]);
    let mut expected = vec![(external.id.to_string(), 30)];

    // Day 15: the internal key is 30 days from its expiry. Sweeping twice records it once.
    test.clock.advance_millis(15 * MILLIS_PER_DAY);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 1);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 0);
    expected.push((key.id.to_string(), 30));
    assert_eq!(warnings(&test.vault), expected);
    assert_eq!(
        test.vault.list_api_keys(&user("dev"))[..]
            .iter()
            .find(|k| k.id == key.id)
            .unwrap()
            .expiry_warning_days,
        Some(30)
    );

    // A restart between the horizons: the log says what was announced, nothing repeats.
    let test = test.reopen();
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 0);

    // Day 38: 7 days left for the internal key; the external key expired at day 10 and gets
    // no warning after its expiry.
    test.clock.advance_millis(23 * MILLIS_PER_DAY);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 1);
    expected.push((key.id.to_string(), 7));
    let test = test.reopen();
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 0);

    // Day 44: one day left. Then expired: nothing more.
    test.clock.advance_millis(6 * MILLIS_PER_DAY);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 1);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 0);
    expected.push((key.id.to_string(), 1));
    test.clock.advance_millis(2 * MILLIS_PER_DAY);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 0);
    assert_eq!(warnings(&test.vault), expected);
    assert!(
        warnings(&test.vault)
            .iter()
            .all(|(id, _)| *id != never.id.to_string()),
        "a key that never expires is never announced"
    );
}

/// A key deleted before its horizon is never announced; an expiring key's owner is named.
#[tokio::test]
async fn a_key_deleted_before_its_horizon_is_never_announced() {
    let test = vault().await;
    let deleted = test
        .vault
        .create_api_key(dev(), name("short-lived"), KeyDuration::Days(40), None)
        .await
        .unwrap();
    let kept = test
        .vault
        .create_api_key(dev(), name("kept"), KeyDuration::Days(40), None)
        .await
        .unwrap();
    test.vault
        .delete_api_keys(dev(), vec![deleted.id.clone()])
        .await
        .unwrap();
    test.clock.advance_millis(20 * MILLIS_PER_DAY);
    assert_eq!(test.vault.sweep_expiring().await.unwrap(), 1);
    let announced: Vec<(KeyId, String)> = events(&test.vault)
        .into_iter()
        .filter_map(|event| match event {
            Event::ApiKeyExpiring { key, owner, .. } => Some((key, owner.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(announced, [(kept.id.clone(), "dev".to_owned())]);
}

/// A reported token is judged against the issued keys: an active key is revoked at once and
/// stops working, a repeated report of it is still recognised, anything else is a false
/// positive.
#[tokio::test]
async fn a_leaked_active_key_is_revoked_and_others_are_labelled() {
    let test = vault().await;
    let leaked = test
        .vault
        .create_api_key(dev(), name("leaky"), KeyDuration::Never, None)
        .await
        .unwrap();
    let other = test
        .vault
        .create_api_key(dev(), name("safe"), KeyDuration::Never, None)
        .await
        .unwrap();
    let token = leaked.secret.expose().to_owned();
    let verdicts = test
        .vault
        .report_leaks(&[report(&token), report("kl_notakey"), report(&token)])
        .await
        .unwrap();
    let labels: Vec<LeakLabel> = verdicts.iter().map(|v| v.label).collect();
    assert_eq!(
        labels,
        [
            LeakLabel::TruePositive,
            LeakLabel::FalsePositive,
            LeakLabel::TruePositive
        ]
    );
    assert_eq!(verdicts[0].revoked.as_ref(), Some(&leaked.id));
    assert_eq!(
        test.vault.authenticate(&token).unwrap_err(),
        AuthFailure::UnknownKey
    );
    assert!(test.vault.authenticate(other.secret.expose()).is_ok());
    let leaks: Vec<(KeyId, String, String)> = events(&test.vault)
        .into_iter()
        .filter_map(|event| match event {
            Event::ApiKeyLeaked {
                key, url, source, ..
            } => Some((key, url, source)),
            _ => None,
        })
        .collect();
    assert_eq!(
        leaks,
        [(
            leaked.id.clone(),
            "https://github.com/octocat/Hello-World/blob/1234567/config.env".to_owned(),
            "content".to_owned()
        )],
        "one event, although the payload named the key twice"
    );
    assert_eq!(
        test.vault.read(|s| s.api_key(&leaked.id).unwrap().status),
        KeyStatus::Deleted
    );

    // GitHub retries: the same report again revokes nothing more and still says "ours".
    let again = test.vault.report_leaks(&[report(&token)]).await.unwrap();
    assert_eq!(again[0].label, LeakLabel::TruePositive);
    assert_eq!(again[0].revoked, None);
    let test = test.reopen();
    let after_restart = test.vault.report_leaks(&[report(&token)]).await.unwrap();
    assert_eq!(after_restart[0].label, LeakLabel::TruePositive);

    // A well-formed key that this vault never issued is a false positive.
    let (stranger, _) =
        keyledger_crypto::generate_api_key(&ring::rand::SystemRandom::new()).unwrap();
    let verdicts = test
        .vault
        .report_leaks(&[report(stranger.expose())])
        .await
        .unwrap();
    assert_eq!(verdicts[0].label, LeakLabel::FalsePositive);
}

/// A honeytoken is refused exactly as an unknown key, is listed as a honeytoken to its owner,
/// and its uses are recorded with where they came from.
#[tokio::test]
async fn a_honeytoken_grants_nothing_and_its_uses_are_recorded() {
    let test = vault().await;
    let trap = test
        .vault
        .create_honeytoken(dev(), name("canary"), KeyDuration::Never, None)
        .await
        .unwrap();
    let refused = test.vault.authenticate(trap.secret.expose()).unwrap_err();
    assert_eq!(refused.to_string(), AuthFailure::UnknownKey.to_string());
    assert_eq!(refused.reason(), AuthFailure::UnknownKey.reason());
    assert_eq!(
        refused,
        AuthFailure::Honeytoken {
            key: trap.id.clone()
        }
    );
    assert!(test.vault.verify_key(trap.secret.expose()).is_err());
    let listed = test.vault.list_api_keys(&user("dev"));
    assert!(listed.iter().any(|k| k.id == trap.id && k.honeytoken));

    test.vault
        .record_honeytoken_use(trap.id.clone(), "203.0.113.7", "curl/8.5.0", "GET /v1/me")
        .await
        .unwrap();
    let uses: Vec<(String, String, String)> = events(&test.vault)
        .into_iter()
        .filter_map(|event| match event {
            Event::HoneytokenUsed {
                source_address,
                user_agent,
                route,
                ..
            } => Some((source_address, user_agent, route)),
            _ => None,
        })
        .collect();
    assert_eq!(
        uses,
        [(
            "203.0.113.7".to_owned(),
            "curl/8.5.0".to_owned(),
            "GET /v1/me".to_owned()
        )]
    );
    // Still a honeytoken after a restart; never announced as expiring; a leak report of it
    // revokes nothing (it grants nothing anyway) but says it is ours.
    let test = test.reopen();
    assert!(matches!(
        test.vault.authenticate(trap.secret.expose()),
        Err(AuthFailure::Honeytoken { .. })
    ));
    let verdicts = test
        .vault
        .report_leaks(&[report(trap.secret.expose())])
        .await
        .unwrap();
    assert_eq!(verdicts[0].label, LeakLabel::TruePositive);
    assert_eq!(verdicts[0].revoked, None);
    // Only a honeytoken's uses can be recorded as such.
    let ordinary = test
        .vault
        .create_api_key(dev(), name("ordinary"), KeyDuration::Never, None)
        .await
        .unwrap();
    assert!(
        test.vault
            .record_honeytoken_use(ordinary.id.clone(), "203.0.113.7", "", "GET /v1/me")
            .await
            .is_err()
    );
}
