use keyledger_crypto::{MasterKey, SecretString};
use keyledger_domain::{
    Action, DomainError, GracePeriod, KeyDuration, KeyName, KeyStatus, Label, MILLIS_PER_DAY,
    Provider, RoleName,
};
use keyledger_vault::{AuthFailure, ExternalCredential, NewCredential, Vault, VaultError};

use crate::support::*;

fn name(text: &str) -> KeyName {
    KeyName::parse(text).unwrap()
}

#[tokio::test]
async fn keys_verify_until_they_expire_and_the_sweeper_records_it() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("ci"), KeyDuration::Days(1), None)
        .await
        .unwrap();
    let principal = test.vault.authenticate(key.secret.expose()).unwrap();
    assert_eq!(principal.user, user("dev"));
    assert!(principal.has(keyledger_domain::Permission::ManageUserApiKeys));

    test.clock.advance_millis(MILLIS_PER_DAY);
    assert_eq!(
        test.vault.authenticate(key.secret.expose()),
        Err(AuthFailure::Expired)
    );
    assert_eq!(
        test.vault.list_api_keys(&user("dev"))[0].status,
        KeyStatus::Expired
    );
    assert_eq!(test.vault.sweep_expired().await.unwrap(), 1);
    assert_eq!(test.vault.sweep_expired().await.unwrap(), 0);
    assert_eq!(
        test.vault.read(|s| s.api_key(&key.id).unwrap().status),
        KeyStatus::Expired
    );
}

#[tokio::test]
async fn malformed_unknown_and_deleted_keys_are_refused() {
    let test = vault().await;
    assert!(matches!(
        test.vault.authenticate("nonsense"),
        Err(AuthFailure::Malformed(_))
    ));
    let mut typo = test.admin_key.clone();
    typo.replace_range(5..6, if &typo[5..6] == "a" { "b" } else { "a" });
    assert!(matches!(
        test.vault.authenticate(&typo),
        Err(AuthFailure::Malformed(_))
    ));
    let key = test
        .vault
        .create_api_key(dev(), name("gone"), KeyDuration::Never, None)
        .await
        .unwrap();
    test.vault
        .delete_api_keys(dev(), vec![key.id.clone()])
        .await
        .unwrap();
    assert_eq!(
        test.vault.authenticate(key.secret.expose()),
        Err(AuthFailure::UnknownKey)
    );
}

#[tokio::test]
async fn sessions_die_with_their_key_and_with_time() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("cli"), KeyDuration::Days(30), None)
        .await
        .unwrap();
    let principal = test.vault.authenticate(key.secret.expose()).unwrap();
    let session = test.vault.issue_session(&principal);
    assert!(
        test.vault
            .authenticate(session.token.expose())
            .unwrap()
            .via_session
    );
    let mut forged = session.token.expose().to_owned();
    forged.pop();
    assert_eq!(
        test.vault.authenticate(&forged),
        Err(AuthFailure::InvalidSession)
    );
    test.clock.advance_millis(3_600_001);
    assert_eq!(
        test.vault.authenticate(session.token.expose()),
        Err(AuthFailure::SessionExpired)
    );

    let session = test
        .vault
        .issue_session(&test.vault.authenticate(key.secret.expose()).unwrap());
    test.vault
        .delete_api_keys(dev(), vec![key.id.clone()])
        .await
        .unwrap();
    assert_eq!(
        test.vault.authenticate(session.token.expose()),
        Err(AuthFailure::Deleted)
    );
}

#[tokio::test]
async fn a_rolled_key_keeps_its_old_secret_for_the_grace_period() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("svc"), KeyDuration::Days(30), None)
        .await
        .unwrap();
    let rolled = test
        .vault
        .roll_api_key(dev(), key.id.clone(), GracePeriod::parse("1h").unwrap())
        .await
        .unwrap();
    assert_eq!(rolled.id, key.id);
    assert_ne!(rolled.secret, key.secret);
    assert!(test.vault.authenticate(key.secret.expose()).is_ok());
    assert!(test.vault.authenticate(rolled.secret.expose()).is_ok());
    test.clock.advance_millis(3_600_000);
    assert_eq!(
        test.vault.authenticate(key.secret.expose()),
        Err(AuthFailure::RolledOver)
    );
    assert!(test.vault.authenticate(rolled.secret.expose()).is_ok());
}

/// A session is bound to the secret it was minted from: rolling with no grace (the remedy for a
/// leak) ends it at once, and a session minted from the previous secret during a grace ends
/// with the grace, whatever its own lifetime says.
#[tokio::test]
async fn sessions_die_with_the_secret_they_came_from() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("laptop"), KeyDuration::Days(30), None)
        .await
        .unwrap();
    let leaked = test
        .vault
        .issue_session(&test.vault.authenticate(key.secret.expose()).unwrap());
    let rolled = test
        .vault
        .roll_api_key(dev(), key.id.clone(), GracePeriod::parse("0").unwrap())
        .await
        .unwrap();
    // With no grace the old secret is forgotten: its sessions cannot be told from forgeries.
    assert_eq!(
        test.vault.authenticate(leaked.token.expose()),
        Err(AuthFailure::InvalidSession)
    );
    let fresh = test
        .vault
        .issue_session(&test.vault.authenticate(rolled.secret.expose()).unwrap());
    assert!(test.vault.authenticate(fresh.token.expose()).is_ok());

    // A grace of 10 minutes: sessions from the old secret live exactly that long.
    let graced = test
        .vault
        .roll_api_key(dev(), key.id.clone(), GracePeriod::parse("10m").unwrap())
        .await
        .unwrap();
    let from_old = test
        .vault
        .issue_session(&test.vault.authenticate(rolled.secret.expose()).unwrap());
    assert_eq!(from_old.expires_at, test.vault.now().plus_millis(600_000));
    let from_new = test
        .vault
        .issue_session(&test.vault.authenticate(graced.secret.expose()).unwrap());
    assert!(test.vault.authenticate(fresh.token.expose()).is_ok());
    assert!(test.vault.authenticate(from_old.token.expose()).is_ok());
    test.clock.advance_millis(600_000);
    for ended in [&fresh, &from_old] {
        assert_eq!(
            test.vault.authenticate(ended.token.expose()),
            Err(AuthFailure::RolledOver)
        );
    }
    assert!(test.vault.authenticate(from_new.token.expose()).is_ok());
}

#[tokio::test]
async fn usage_is_aggregated_into_one_event_per_key() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("busy"), KeyDuration::Days(30), None)
        .await
        .unwrap();
    let head_before = test.vault.log().head().0;
    for _ in 0..100 {
        test.vault.authenticate(key.secret.expose()).unwrap();
    }
    assert_eq!(
        test.vault.log().head().0,
        head_before,
        "no event per request"
    );
    assert!(
        test.vault.list_api_keys(&user("dev"))[0]
            .last_used_at
            .is_some(),
        "the listing shows pending use"
    );
    assert_eq!(test.vault.flush_usage().await.unwrap(), 1);
    assert_eq!(test.vault.read(|s| s.api_key(&key.id).unwrap().uses), 100);
}

#[tokio::test]
async fn a_role_revoked_takes_effect_on_the_next_request() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("k"), KeyDuration::Days(30), None)
        .await
        .unwrap();
    test.vault
        .run(
            admin_actor(),
            Action::RevokeRole {
                user: user("dev"),
                role: RoleName::parse("developer").unwrap(),
            },
        )
        .await
        .unwrap();
    let principal = test.vault.authenticate(key.secret.expose()).unwrap();
    assert!(!principal.has(keyledger_domain::Permission::ManageUserApiKeys));
    let refused = test
        .vault
        .create_api_key(principal.actor(), name("more"), KeyDuration::Days(1), None)
        .await;
    assert!(matches!(
        refused,
        Err(VaultError::Domain(DomainError::PermissionDenied { .. }))
    ));
}

#[tokio::test]
async fn state_survives_reopening_and_the_chain_verifies() {
    let test = vault().await;
    let key = test
        .vault
        .create_api_key(dev(), name("kept"), KeyDuration::Days(30), None)
        .await
        .unwrap();
    let aws = NewCredential::aws(
        "AKIAIOSFODNN7EXAMPLE",
        SecretString::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
        "us-east-1",
    )
    .unwrap();
    test.vault
        .create_external_key(
            dev(),
            Label::parse("lab").unwrap(),
            aws,
            KeyDuration::Days(30),
            None,
        )
        .await
        .unwrap();
    let keys_before = test.vault.list_api_keys(&user("dev"));
    let external_before = test.vault.list_external_keys(&user("dev"));
    let test = test.reopen();
    assert_eq!(test.vault.list_api_keys(&user("dev")), keys_before);
    assert_eq!(test.vault.list_external_keys(&user("dev")), external_before);
    assert!(test.vault.authenticate(key.secret.expose()).is_ok());
    let lease = test.vault.lease_for(&user("dev"), Provider::Aws).unwrap();
    match lease.credential {
        ExternalCredential::Aws {
            secret_access_key,
            region,
            ..
        } => {
            assert_eq!(
                secret_access_key.expose(),
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            );
            assert_eq!(region, "us-east-1");
        }
        other => panic!("unexpected {other:?}"),
    }
    let report = test.vault.log().verify().unwrap();
    assert!(report.first_bad.is_none());
}

#[tokio::test]
async fn deleting_an_external_key_shreds_its_secret() {
    let test = vault().await;
    let token =
        NewCredential::dnanexus(SecretString::new("dxTokenCanary0123456789".into())).unwrap();
    let view = test
        .vault
        .create_external_key(
            dev(),
            Label::parse("dx").unwrap(),
            token,
            KeyDuration::Never,
            None,
        )
        .await
        .unwrap();
    assert!(test.vault.lease_external_key(&view.id).is_ok());
    test.vault
        .delete_external_keys(dev(), vec![view.id.clone()])
        .await
        .unwrap();
    assert!(
        test.vault
            .log()
            .data_key(view.id.as_str())
            .unwrap()
            .is_none()
    );
    assert!(test.vault.lease_external_key(&view.id).is_err());
    // Even after a restart with the same master key, nothing opens the sealed secret.
    let test = test.reopen();
    assert!(test.vault.lease_external_key(&view.id).is_err());
    // The slot is free for a new DNAnexus key.
    let again =
        NewCredential::dnanexus(SecretString::new("dxTokenSecond0123456789".into())).unwrap();
    test.vault
        .create_external_key(
            dev(),
            Label::parse("dx2").unwrap(),
            again,
            KeyDuration::Never,
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_key_for_a_provider_is_refused_with_a_clear_message() {
    let test = vault().await;
    let first = NewCredential::dnanexus(SecretString::new("dxToken00000000000001".into())).unwrap();
    test.vault
        .create_external_key(
            dev(),
            Label::parse("a").unwrap(),
            first,
            KeyDuration::Never,
            None,
        )
        .await
        .unwrap();
    let second =
        NewCredential::dnanexus(SecretString::new("dxToken00000000000002".into())).unwrap();
    let err = test
        .vault
        .create_external_key(
            dev(),
            Label::parse("b").unwrap(),
            second,
            KeyDuration::Never,
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("delete it first"), "{err}");
    let credential_keys = test
        .vault
        .log()
        .data_key_ids()
        .unwrap()
        .into_iter()
        .filter(|id| id.starts_with("ext_"))
        .count();
    assert_eq!(credential_keys, 1);
}

#[tokio::test]
async fn another_master_key_cannot_open_the_data_directory() {
    let test = vault().await;
    let TestVault {
        vault, dir, clock, ..
    } = test;
    drop(vault);
    let wrong = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
    match Vault::open(config(dir.path()), &wrong, clock) {
        Err(VaultError::Config(message)) => assert!(
            message.contains("does not open this data directory"),
            "{message}"
        ),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_is_leased_with_its_token_and_expires_with_it() {
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLE/session+token==";
    let test = vault().await;
    let token_end = test.vault.now().plus_millis(3_600_000);
    let session = |id: &str| {
        NewCredential::aws_session(
            id,
            SecretString::new(SECRET.into()),
            SecretString::new(TOKEN.into()),
            token_end,
            "us-east-1",
        )
    };
    // An ASIA… id is a session or nothing; an AKIA… id is never one.
    let refused = NewCredential::aws(
        "ASIAIOSFODNN7EXAMPLE",
        SecretString::new(SECRET.into()),
        "us-east-1",
    )
    .unwrap_err();
    assert_eq!(refused.field, "session_token");
    assert_eq!(
        session("AKIAIOSFODNN7EXAMPLE").unwrap_err().field,
        "access_key_id"
    );

    let view = test
        .vault
        .create_external_key(
            dev(),
            Label::parse("sso").unwrap(),
            session("ASIAIOSFODNN7EXAMPLE").unwrap(),
            KeyDuration::Days(30),
            None,
        )
        .await
        .unwrap();
    assert_eq!(view.expires_at, Some(token_end));
    assert_eq!(view.token_expires_at, Some(token_end));
    assert!(!format!("{view:?}").contains(TOKEN));
    let test = test.reopen();
    let lease = test.vault.lease_for(&user("dev"), Provider::Aws).unwrap();
    assert!(!format!("{lease:?}").contains(TOKEN));
    match lease.credential {
        ExternalCredential::Aws {
            secret_access_key,
            session: Some(session),
            ..
        } => {
            assert_eq!(secret_access_key.expose(), SECRET);
            assert_eq!(session.token.expose(), TOKEN);
            assert_eq!(session.expires_at, token_end);
        }
        other => panic!("unexpected {other:?}"),
    }
    test.clock.advance_millis(3_600_000);
    assert!(matches!(
        test.vault.lease_for(&user("dev"), Provider::Aws),
        Err(VaultError::Domain(DomainError::NoExternalKey { .. }))
    ));
}
