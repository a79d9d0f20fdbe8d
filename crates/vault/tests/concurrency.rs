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
        .data_keys()
        .iter()
        .unwrap()
        .into_iter()
        .filter(|(id, _)| id.starts_with("ext_"))
        .count();
    assert_eq!(credential_keys, 1);
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
