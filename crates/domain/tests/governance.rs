//! Governance (decision 0026), given / when / then: scoped keys, revocation by an
//! administrator, offboarding in one decision.

use keyledger_domain::*;

use crate::fixtures::*;

fn when(state: &State, actor: Actor, action: Action) -> Result<Vec<Event>, DomainError> {
    decide(state, Command::new(actor, action), T0)
}

fn succeed(state: &mut State, actor: Actor, action: Action) -> Vec<Event> {
    let events = when(state, actor, action).expect("command should succeed");
    events.iter().for_each(|e| state.apply(e));
    events
}

fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap()
}

fn scoped(n: u32, scopes: &[&str], networks: &[&str]) -> NewApiKey {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let networks: Vec<String> = networks.iter().map(|s| s.to_string()).collect();
    NewApiKey {
        scope: KeyScope::parse(Some(&scopes), Some(&networks)).unwrap(),
        ..new_key(n, KeyDuration::Days(30))
    }
}

fn as_key(name: &str, n: u32) -> Actor {
    Actor::User {
        user: user(name),
        key: Some(key_id(n)),
    }
}

#[test]
fn a_scoped_key_is_recorded_beside_its_creation_and_limited_to_its_scopes() {
    let mut state = world();
    let events = succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(scoped(1, &["manage_user_api_keys"], &["10.0.0.0/8"])),
    );
    assert_eq!(names(&events), ["ApiKeyCreated", "ApiKeyScoped"]);
    let key = state.api_key(&key_id(1)).unwrap();
    assert_eq!(
        key.scopes,
        Some(PermissionSet::of(&[Permission::ManageUserApiKeys]))
    );
    assert_eq!(key.networks, [Network::parse("10.0.0.0/8").unwrap()]);
    // An unscoped key has no second event.
    let events = succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(2, KeyDuration::Days(30))),
    );
    assert_eq!(names(&events), ["ApiKeyCreated"]);

    // Acting with the scoped key: what its scopes leave out is refused, naming them.
    let refused = when(
        &state,
        as_key("dev", 1),
        Action::RequestIngestion {
            ingestion: IngestionId::parse("ing_0000000000000001").unwrap(),
            selection: Selection::Aws {
                bucket: "lab".into(),
                prefix: String::new(),
                pattern: ".*".into(),
            },
            destination: "dev".into(),
            batch_id: "b".into(),
            force: false,
        },
    );
    assert_eq!(
        refused,
        Err(DomainError::OutOfScope {
            permission: Permission::ImportOrganizationSamples,
            scopes: vec![Permission::ManageUserApiKeys],
        })
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("which this key's scopes (manage_user_api_keys) leave out")
    );
    // What they include goes through.
    succeed(
        &mut state,
        as_key("dev", 1),
        Action::CreateApiKey(new_key(3, KeyDuration::Days(1))),
    );
}

#[test]
fn a_scope_the_owner_lacks_is_refused() {
    let state = world();
    let refused = when(
        &state,
        as_user("dev"),
        Action::CreateApiKey(scoped(1, &["manage_organization_users"], &[])),
    )
    .unwrap_err();
    let DomainError::Invalid(error) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(error.field, "scopes");
    // An admin issuing a key to someone else is held to that user's permissions.
    let refused = when(
        &state,
        as_user("admin"),
        Action::IssueApiKey {
            owner: user("auditor"),
            key: scoped(2, &["verify_api_keys"], &[]),
        },
    );
    assert!(
        matches!(refused, Err(DomainError::Invalid(ref e)) if e.field == "scopes"),
        "{refused:?}"
    );
}

#[test]
fn an_administrator_revokes_anyones_key_with_a_reason() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(30))),
    );
    let revoke = Action::RevokeApiKey {
        key: key_id(1),
        reason: reason("found in a public repository"),
    };
    // Only with `revoke_organization_keys`.
    assert!(matches!(
        when(&state, as_user("dev"), revoke.clone()),
        Err(DomainError::PermissionDenied {
            permission: Permission::RevokeOrganizationKeys,
            ..
        })
    ));
    let events = succeed(&mut state, as_user("admin"), revoke.clone());
    assert_eq!(
        events,
        [Event::ApiKeyRevoked {
            key: key_id(1),
            owner: user("dev"),
            reason: reason("found in a public repository"),
            at: T0,
        }]
    );
    let key = state.api_key(&key_id(1)).unwrap();
    assert_eq!(key.status, KeyStatus::Deleted);
    assert_eq!(
        key.revoked.as_ref().map(|r| r.reason.as_str()),
        Some("found in a public repository")
    );
    assert!(
        state.api_key_by_hash(&hash(1)).is_none(),
        "it no longer verifies"
    );
    assert!(matches!(
        when(&state, as_user("admin"), revoke),
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn offboarding_is_one_decision_and_reactivation_never_restores_a_key() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(30))),
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(2, KeyDuration::Days(30))),
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(dnanexus_key(2)),
    );
    let deactivate = Action::DeactivateUser {
        user: user("dev"),
        reason: reason("left the company"),
    };
    assert!(matches!(
        when(&state, as_user("dev"), deactivate.clone()),
        Err(DomainError::PermissionDenied { .. })
    ));
    let decision = decide_with_reads(
        &state,
        Command::new(as_user("admin"), deactivate.clone()),
        T0,
    )
    .unwrap();
    assert_eq!(
        names(&decision.events),
        [
            "UserDeactivated",
            "ApiKeyRevoked",
            "ApiKeyRevoked",
            "ExternalKeyRevoked",
            "ExternalKeyRevoked"
        ]
    );
    decision.events.iter().for_each(|e| state.apply(e));
    assert_eq!(state.permissions_of(&user("dev")), PermissionSet::EMPTY);
    assert!(state.api_keys_of(&user("dev")).is_empty());
    assert!(state.external_keys_of(&user("dev")).is_empty());
    assert!(
        state
            .active_external_key(&user("dev"), Provider::Aws)
            .is_none()
    );
    // Again: nothing changes. Issuing a key: refused.
    assert_eq!(when(&state, as_user("admin"), deactivate), Ok(Vec::new()));
    assert_eq!(
        when(
            &state,
            as_user("admin"),
            Action::IssueApiKey {
                owner: user("dev"),
                key: new_key(9, KeyDuration::Days(1)),
            },
        ),
        Err(DomainError::UserDeactivated { user: "dev".into() })
    );

    let events = succeed(
        &mut state,
        as_user("admin"),
        Action::ReactivateUser { user: user("dev") },
    );
    assert_eq!(names(&events), ["UserReactivated"]);
    assert!(!state.permissions_of(&user("dev")).is_empty());
    assert_eq!(
        state.api_key(&key_id(1)).unwrap().status,
        KeyStatus::Deleted,
        "no key comes back"
    );
}

#[test]
fn neither_oneself_nor_the_last_active_administrator_is_deactivated() {
    let mut state = world();
    let deactivate = |who: &str| Action::DeactivateUser {
        user: user(who),
        reason: reason("x"),
    };
    assert!(matches!(
        when(&state, as_user("admin"), deactivate("admin")),
        Err(DomainError::Invalid(ref e)) if e.field == "user"
    ));
    succeed(
        &mut state,
        as_user("admin"),
        Action::CreateUser {
            user: user("root2"),
            display_name: None,
            roles: vec![role("admin")],
        },
    );
    succeed(&mut state, as_user("root2"), deactivate("admin"));
    // root2 is now the only active administrator: their role cannot go either.
    assert!(matches!(
        when(
            &state,
            as_user("root2"),
            Action::RevokeRole {
                user: user("root2"),
                role: role("admin"),
            },
        ),
        Err(DomainError::LastAdmin { .. })
    ));
}
