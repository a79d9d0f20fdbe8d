use keyledger_crypto::SecretString;
use keyledger_domain::{DomainError, KeyDuration, Label, Provider};
use keyledger_vault::{NewCredential, VaultError};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_fifty_concurrent_creates_of_the_same_aws_key_exactly_one_wins() {
    let test = vault().await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        let vault = test.vault.clone();
        tasks.push(tokio::spawn(async move {
            let secret = SecretString::new(format!("{:0>40}", n));
            let credential =
                NewCredential::aws("AKIAIOSFODNN7EXAMPLE", secret, "eu-west-2").unwrap();
            vault
                .create_external_key(
                    dev(),
                    Label::parse(&format!("try {n}")).unwrap(),
                    credential,
                    KeyDuration::Days(30),
                    None,
                )
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(VaultError::Domain(DomainError::ExternalKeyExists {
                provider: Provider::Aws,
            })) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(test.vault.list_external_keys(&user("dev")).len(), 1);
    // Exactly one data key exists: the losers' were removed.
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

/// Two admins (or one user's two scripts) racing to create a key of the same name: the
/// name check and the append must not interleave, whichever path creates the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_fifty_concurrent_creates_of_one_key_name_exactly_one_wins() {
    let test = vault().await;
    let mut tasks = Vec::new();
    for n in 0..50 {
        let vault = test.vault.clone();
        tasks.push(tokio::spawn(async move {
            let name = keyledger_domain::KeyName::parse("deploy").unwrap();
            match n % 3 {
                0 => {
                    vault
                        .create_api_key(dev(), name, KeyDuration::Days(1), None)
                        .await
                }
                1 => {
                    vault
                        .issue_api_key(admin_actor(), user("dev"), name, KeyDuration::Days(1), None)
                        .await
                }
                _ => {
                    vault
                        .create_honeytoken(dev(), name, KeyDuration::Days(1), None)
                        .await
                }
            }
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(VaultError::Domain(DomainError::KeyNameTaken { .. })) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(test.vault.list_api_keys(&user("dev")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_key_creation_is_all_recorded() {
    let test = vault().await;
    let mut tasks = Vec::new();
    for n in 0..200 {
        let vault = test.vault.clone();
        tasks.push(tokio::spawn(async move {
            let name = keyledger_domain::KeyName::parse(&format!("k{n}")).unwrap();
            vault
                .create_api_key(dev(), name, KeyDuration::Days(1), None)
                .await
                .unwrap()
        }));
    }
    let mut secrets = Vec::new();
    for task in tasks {
        secrets.push(task.await.unwrap().secret);
    }
    for secret in &secrets {
        assert_eq!(
            test.vault.authenticate(secret.expose()).unwrap().user,
            user("dev")
        );
    }
    assert_eq!(test.vault.list_api_keys(&user("dev")).len(), 200);
    assert!(test.vault.log().verify().unwrap().first_bad.is_none());
}

/// `run_all` is one atomic append: every action's events or, if any is refused, none.
#[tokio::test]
async fn run_all_appends_every_action_or_none() {
    use keyledger_domain::{Action, RoleName};
    let test = vault().await;
    let create = |name: &str| Action::CreateUser {
        user: user(name),
        display_name: None,
        roles: vec![RoleName::parse("member").unwrap()],
    };
    let head = test.vault.log().head().0;
    let refused = test
        .vault
        .run_all(admin_actor(), vec![create("ann"), create("dev")])
        .await;
    assert!(matches!(refused, Err(VaultError::Domain(_))), "{refused:?}");
    assert_eq!(test.vault.log().head().0, head, "nothing appended");
    assert!(test.vault.read(|state| state.user(&user("ann")).is_none()));

    let executed = test
        .vault
        .run_all(admin_actor(), vec![create("ann"), create("bob")])
        .await
        .unwrap();
    // Each creation is a user and a role grant, all in one append.
    assert_eq!(executed.events.len(), 4);
    assert_eq!(
        (executed.first_seq, executed.last_seq),
        (head + 1, head + 4)
    );
    assert!(test.vault.read(|state| state.user(&user("bob")).is_some()));
}

/// Two administrators remove each other's `admin` role at the same moment, round after round:
/// the last-administrator rule spans both users' streams, so one removal lands and the other is
/// decided again and refused. An organisation never ends with nobody to manage it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_revoking_each_other_leave_one_admin() {
    use keyledger_domain::{Action, Actor, RoleName};
    let test = vault().await;
    let admin_role = RoleName::parse("admin").unwrap();
    let as_user = |name: &str| Actor::User {
        user: user(name),
        key: None,
    };
    test.vault
        .run(
            admin_actor(),
            Action::CreateUser {
                user: user("second"),
                display_name: None,
                roles: vec![admin_role.clone()],
            },
        )
        .await
        .unwrap();
    for round in 0..40 {
        let revoke = |by: &str, target: &str| {
            let vault = test.vault.clone();
            let (actor, action) = (
                as_user(by),
                Action::RevokeRole {
                    user: user(target),
                    role: admin_role.clone(),
                },
            );
            tokio::spawn(async move { vault.run(actor, action).await })
        };
        let one = revoke("admin", "second");
        let other = revoke("second", "admin");
        let results = [one.await.unwrap(), other.await.unwrap()];
        let landed = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(landed, 1, "round {round}: {results:?}");
        for refused in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(
                    refused,
                    VaultError::Domain(DomainError::LastAdmin { .. })
                        | VaultError::Domain(DomainError::PermissionDenied { .. })
                ),
                "round {round}: {refused}"
            );
        }
        let admins: Vec<String> = test.vault.read(|state| {
            state
                .users()
                .filter(|u| u.roles.contains(&admin_role))
                .map(|u| u.id.to_string())
                .collect()
        });
        assert_eq!(admins.len(), 1, "round {round}: {admins:?}");
        // The survivor makes the other an administrator again for the next round.
        let other = if admins[0] == "admin" {
            "second"
        } else {
            "admin"
        };
        test.vault
            .run(
                as_user(&admins[0]),
                Action::GrantRole {
                    user: user(other),
                    role: admin_role.clone(),
                },
            )
            .await
            .unwrap();
    }
}

/// A data directory another vault holds is refused with the typed `Locked`, naming the data
/// directory (not the log folder inside it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_data_directory_is_refused_as_locked() {
    let test = vault().await;
    let second =
        keyledger_vault::Vault::open(config(test.dir.path()), &test.master, test.clock.clone());
    match second {
        Err(VaultError::Locked { dir }) => assert_eq!(dir, test.dir.path()),
        Err(other) => panic!("expected VaultError::Locked, got {other:?}"),
        Ok(_) => panic!("a held data directory opened a second time"),
    }
}
