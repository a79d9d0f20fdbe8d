use keyledger_domain::*;

use crate::fixtures::*;

fn when(
    state: &State,
    actor: Actor,
    action: Action,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    decide(state, Command::new(actor, action), now)
}

fn succeed(state: &mut State, actor: Actor, action: Action, now: Timestamp) -> Vec<Event> {
    let events = decide(state, Command::new(actor, action), now).expect("command should succeed");
    events.iter().for_each(|e| state.apply(e));
    events
}

/// The admin defines `keys-only`, a custom role that may manage its holder's keys.
fn define_keys_only_role(state: &mut State) {
    succeed(
        state,
        as_user("admin"),
        Action::DefineRole {
            role: role("keys-only"),
            permissions: vec![Permission::ManageUserApiKeys],
        },
        T0,
    );
}

fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

#[test]
fn bootstrap_creates_the_first_admin_once() {
    let mut state = State::default();
    let events = succeed(
        &mut state,
        Actor::Operator,
        Action::BootstrapAdmin {
            admin: user("root"),
            key: new_key(1, KeyDuration::Never),
        },
        T0,
    );
    assert_eq!(
        names(&events),
        ["UserCreated", "RoleGranted", "ApiKeyCreated"]
    );
    assert!(state.has_permission(&user("root"), Permission::ManageOrganizationUsers));
    let again = when(
        &state,
        Actor::Operator,
        Action::BootstrapAdmin {
            admin: user("other"),
            key: new_key(2, KeyDuration::Never),
        },
        T0,
    );
    assert_eq!(again, Err(DomainError::AlreadyBootstrapped));
    let by_user = when(
        &State::default(),
        as_user("x"),
        Action::BootstrapAdmin {
            admin: user("x"),
            key: new_key(3, KeyDuration::Never),
        },
        T0,
    );
    assert!(matches!(by_user, Err(DomainError::PermissionDenied { .. })));
}

#[test]
fn internal_key_lifecycle() {
    let mut state = world();
    let created = succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(7))),
        T0,
    );
    match &created[0] {
        Event::ApiKeyCreated {
            owner, expires_at, ..
        } => {
            assert_eq!(owner, &user("dev"));
            assert_eq!(*expires_at, Some(T0.plus_days(7)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        state.api_key_by_hash(&hash(1)).map(|k| k.id.clone()),
        Some(key_id(1))
    );

    let rolled = succeed(
        &mut state,
        as_user("dev"),
        Action::RollApiKey {
            key: key_id(1),
            grace: GracePeriod::parse("1h").unwrap(),
            hint: KeyHint::mask("kl_newnewnewnew", 7, 4),
            secret_hash: hash(99),
        },
        T0,
    );
    assert_eq!(names(&rolled), ["ApiKeyRolled"]);
    // Both secrets find the key during the grace period.
    assert!(state.api_key_by_hash(&hash(1)).is_some());
    assert!(state.api_key_by_hash(&hash(99)).is_some());
    assert_eq!(
        state
            .api_key(&key_id(1))
            .unwrap()
            .previous
            .as_ref()
            .unwrap()
            .valid_until,
        T0.plus_millis(3_600_000)
    );

    succeed(
        &mut state,
        as_user("dev"),
        Action::DeleteApiKeys {
            keys: vec![key_id(1)],
        },
        T0,
    );
    assert!(state.api_key_by_hash(&hash(1)).is_none());
    assert!(state.api_key_by_hash(&hash(99)).is_none());
    assert!(state.api_keys_of(&user("dev")).is_empty());
}

#[test]
fn a_name_is_taken_while_an_active_key_of_the_same_owner_holds_it() {
    let named = |n: u32, name: &str, duration: KeyDuration| NewApiKey {
        name: KeyName::parse(name).unwrap(),
        ..new_key(n, duration)
    };
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(named(1, "laptop", KeyDuration::Days(1))),
        T0,
    );
    let again = when(
        &state,
        as_user("dev"),
        Action::CreateApiKey(named(2, "laptop", KeyDuration::Days(7))),
        T0,
    );
    let Err(DomainError::KeyNameTaken { hint, id }) = &again else {
        panic!("unexpected {again:?}");
    };
    assert_eq!(id.as_str(), key_id(1).as_str());
    let message = again.as_ref().unwrap_err().to_string();
    assert!(
        message.contains(hint.as_str()) && message.contains(key_id(1).as_str()),
        "{message}"
    );
    // Refusals never echo what was sent.
    assert!(!message.contains("laptop"), "{message}");
    // An admin issuing a key for the user meets the same rule.
    let issued = when(
        &state,
        as_user("admin"),
        Action::IssueApiKey {
            owner: user("dev"),
            key: named(3, "laptop", KeyDuration::Days(7)),
        },
        T0,
    );
    assert!(
        matches!(issued, Err(DomainError::KeyNameTaken { .. })),
        "{issued:?}"
    );
    // Another user may use the name; a different name is fine.
    succeed(
        &mut state,
        as_user("admin"),
        Action::CreateApiKey(named(4, "laptop", KeyDuration::Days(7))),
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(named(5, "laptop 2", KeyDuration::Days(7))),
        T0,
    );
    // An expired key frees its name, even before the sweeper recorded the expiry.
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(named(6, "laptop", KeyDuration::Days(7))),
        T0.plus_days(2),
    );
    // So does a deleted one.
    succeed(
        &mut state,
        as_user("dev"),
        Action::DeleteApiKeys {
            keys: vec![key_id(6)],
        },
        T0.plus_days(2),
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(named(7, "laptop", KeyDuration::Days(7))),
        T0.plus_days(2),
    );
}

#[test]
fn a_user_without_manage_user_api_keys_is_refused() {
    let state = world();
    for actor in [as_user("auditor"), as_user("nobody"), Actor::System] {
        for action in [
            Action::CreateApiKey(new_key(1, KeyDuration::Days(1))),
            Action::CreateExternalKey(aws_key(1)),
            Action::DeleteApiKeys {
                keys: vec![key_id(1)],
            },
        ] {
            let refused = when(&state, actor.clone(), action, T0);
            assert!(
                matches!(
                    refused,
                    Err(DomainError::PermissionDenied {
                        permission: Permission::ManageUserApiKeys,
                        ..
                    })
                ),
                "{actor}: {refused:?}"
            );
        }
    }
}

/// Whoever may import samples may store the external key an import uses (decision 0012):
/// a built-in role that grants the one grants the other.
#[test]
fn every_built_in_role_that_imports_can_store_the_key_an_import_needs() {
    for (name, permissions) in keyledger_domain::BUILT_IN_ROLES {
        if permissions.contains(&Permission::ImportOrganizationSamples) {
            assert!(
                permissions.contains(&Permission::ManageUserApiKeys),
                "role {name} may import but not store the key an import uses"
            );
        }
    }
    let mut state = world();
    succeed(
        &mut state,
        as_user("member"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    let selection = Selection::Aws {
        bucket: "b".into(),
        prefix: "p/".into(),
        pattern: ".*".into(),
    };
    let events = succeed(
        &mut state,
        as_user("member"),
        Action::RequestIngestion {
            ingestion: IngestionId::parse("ing_0000000000000001").unwrap(),
            selection,
            destination: "member".into(),
            batch_id: "batch-1".into(),
            force: false,
        },
        T0,
    );
    assert_eq!(names(&events), ["IngestionRequested"]);
}

/// A custom role cannot grant importing without storing the key an import needs.
#[test]
fn a_custom_role_that_imports_must_store_keys_too() {
    let mut state = world();
    let define = |permissions: Vec<Permission>| Action::DefineRole {
        role: role("importer"),
        permissions,
    };
    let refused = when(
        &state,
        as_user("admin"),
        define(vec![Permission::ImportOrganizationSamples]),
        T0,
    );
    assert!(
        matches!(&refused, Err(DomainError::Invalid(error)) if error.field == "permissions"),
        "{refused:?}"
    );
    succeed(
        &mut state,
        as_user("admin"),
        define(vec![
            Permission::ImportOrganizationSamples,
            Permission::ManageUserApiKeys,
        ]),
        T0,
    );
}

/// A refusal names the missing permission, the roles held, and the command that fixes it.
#[test]
fn a_refusal_says_what_is_missing_and_who_can_grant_it() {
    let check = |actor: Actor, action: Action, expect: &str| {
        let refused = when(&world(), actor, action, T0).unwrap_err();
        assert_eq!(refused.to_string(), expect);
    };
    check(
        as_user("auditor"),
        Action::CreateExternalKey(aws_key(1)),
        "this needs the permission `manage_user_api_keys` (create, list and delete your own \
         internal and external keys), which your roles (auditor) do not grant; a user with \
         `manage_organization_users` (the admin role) can grant it: \
         `keyledger admin users grant auditor member`",
    );
    check(
        as_user("nobody"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(1))),
        "this needs the permission `manage_user_api_keys` (create, list and delete your own \
         internal and external keys), and you hold no role; a user with \
         `manage_organization_users` (the admin role) can grant it: \
         `keyledger admin users grant nobody member`",
    );
    check(
        as_user("dev"),
        Action::GrantRole {
            user: user("dev"),
            role: role("admin"),
        },
        "this needs the permission `manage_organization_users` (create users, grant and revoke \
         roles), which your roles (developer) do not grant; a user with \
         `manage_organization_users` (the admin role) can grant it: \
         `keyledger admin users grant dev admin`",
    );
}

#[test]
fn a_revoked_role_takes_effect_at_once() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("admin"),
        Action::RevokeRole {
            user: user("dev"),
            role: role("developer"),
        },
        T0,
    );
    assert!(matches!(
        when(
            &state,
            as_user("dev"),
            Action::CreateApiKey(new_key(1, KeyDuration::Days(1))),
            T0
        ),
        Err(DomainError::PermissionDenied { .. })
    ));
}

#[test]
fn bulk_delete_is_all_or_nothing() {
    let mut state = world();
    for n in 1..=3 {
        succeed(
            &mut state,
            as_user("dev"),
            Action::CreateApiKey(new_key(n, KeyDuration::Days(30))),
            T0,
        );
    }
    succeed(
        &mut state,
        as_user("admin"),
        Action::CreateApiKey(new_key(9, KeyDuration::Days(30))),
        T0,
    );

    let check = |keys: Vec<KeyId>, expect: Result<usize, DomainError>| {
        let result = when(&state, as_user("dev"), Action::DeleteApiKeys { keys }, T0)
            .map(|events| events.len());
        assert_eq!(result, expect);
    };
    check(vec![key_id(1), key_id(2)], Ok(2));
    check(vec![key_id(1), key_id(1), key_id(2)], Ok(2));
    check(
        vec![key_id(1), key_id(404)],
        Err(DomainError::NotFound {
            what: "API key",
            id: key_id(404).to_string(),
        }),
    );
    // Another user's key is indistinguishable from a missing one.
    check(
        vec![key_id(1), key_id(9)],
        Err(DomainError::NotFound {
            what: "API key",
            id: key_id(9).to_string(),
        }),
    );
    assert!(matches!(
        when(
            &state,
            as_user("dev"),
            Action::DeleteApiKeys { keys: vec![] },
            T0
        ),
        Err(DomainError::Invalid(_))
    ));
}

#[test]
fn one_external_key_per_provider() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    assert_eq!(
        when(
            &state,
            as_user("dev"),
            Action::CreateExternalKey(aws_key(2)),
            T0
        ),
        Err(DomainError::ExternalKeyExists {
            provider: Provider::Aws
        })
    );
    // Another provider, or another user, is fine.
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(dnanexus_key(3)),
        T0,
    );
    succeed(
        &mut state,
        as_user("admin"),
        Action::CreateExternalKey(aws_key(4)),
        T0,
    );
    // After deletion the slot is free again.
    succeed(
        &mut state,
        as_user("dev"),
        Action::DeleteExternalKeys {
            keys: vec![ext_id(1)],
        },
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(5)),
        T0,
    );
    let message = DomainError::ExternalKeyExists {
        provider: Provider::Aws,
    }
    .to_string();
    assert!(message.contains("delete it first"), "{message}");
}

#[test]
fn an_expired_external_key_frees_its_slot() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    let later = T0.plus_days(31);
    let events = succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(2)),
        later,
    );
    assert_eq!(names(&events), ["ExternalKeyExpired", "ExternalKeyCreated"]);
}

#[test]
fn a_session_key_ends_with_its_token() {
    let mut state = world();
    let token_end = T0.plus_millis(3_600_000);
    // A token already expired cannot be stored.
    let refused = when(
        &state,
        as_user("dev"),
        Action::CreateExternalKey(aws_session_key(1, T0)),
        T0,
    );
    assert!(
        matches!(&refused, Err(DomainError::Invalid(v)) if v.field == "session_expires_at"),
        "{refused:?}"
    );
    // Asked for 30 days, the key expires with the token.
    let events = succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_session_key(1, token_end)),
        T0,
    );
    assert!(
        matches!(&events[..], [Event::ExternalKeyCreated { expires_at: Some(at), .. }] if *at == token_end),
        "{events:?}"
    );
    let key = state.external_key(&ext_id(1)).unwrap();
    assert_eq!(key.public.kind(), CredentialKind::Session);
    assert_eq!(key.status_at(token_end), KeyStatus::Expired);
    // A job asked for after the token's end is refused with that reason, before and after
    // the sweeper records the expiry.
    let request = Action::RequestIngestion {
        ingestion: IngestionId::parse("ing_0000000000000001").unwrap(),
        selection: Selection::Aws {
            bucket: "b".into(),
            prefix: "p/".into(),
            pattern: ".*".into(),
        },
        destination: "samples".into(),
        batch_id: "batch-1".into(),
        force: false,
    };
    let expired = Err(DomainError::SessionExpired {
        provider: Provider::Aws,
        at: token_end,
    });
    assert_eq!(
        when(&state, as_user("dev"), request.clone(), token_end),
        expired
    );
    succeed(&mut state, Actor::System, Action::ExpireDue, token_end);
    assert_eq!(when(&state, as_user("dev"), request, token_end), expired);
}

#[test]
fn the_sweeper_expires_what_is_due_and_nothing_else() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(1))),
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(2, KeyDuration::Days(7))),
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(3, KeyDuration::Never)),
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(4)),
        T0,
    );

    assert_eq!(
        when(&state, Actor::System, Action::ExpireDue, T0),
        Ok(vec![])
    );
    let day2 = T0.plus_days(2);
    let events = succeed(&mut state, Actor::System, Action::ExpireDue, day2);
    assert_eq!(
        events,
        vec![Event::ApiKeyExpired {
            key: key_id(1),
            owner: user("dev"),
            at: day2
        }]
    );
    assert_eq!(
        state.api_key(&key_id(1)).unwrap().status,
        KeyStatus::Expired
    );
    // An expired key is expired even before the sweeper records it.
    assert_eq!(
        state
            .api_key(&key_id(2))
            .unwrap()
            .status_at(T0.plus_days(8)),
        KeyStatus::Expired
    );
    let events = succeed(
        &mut state,
        Actor::System,
        Action::ExpireDue,
        T0.plus_days(40),
    );
    assert_eq!(names(&events), ["ApiKeyExpired", "ExternalKeyExpired"]);
    assert!(matches!(
        when(&state, as_user("admin"), Action::ExpireDue, T0),
        Err(DomainError::PermissionDenied { .. })
    ));
}

#[test]
fn expired_and_rolled_keys_cannot_roll() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(1))),
        T0,
    );
    let roll = Action::RollApiKey {
        key: key_id(1),
        grace: GracePeriod::from_millis(0),
        hint: KeyHint::mask("kl_aaaaaaaaaaaa", 7, 4),
        secret_hash: hash(50),
    };
    assert!(matches!(
        when(&state, as_user("dev"), roll.clone(), T0.plus_days(2)),
        Err(DomainError::NotActive { .. })
    ));
    // A grace period never outlives the key.
    let events = when(
        &state,
        as_user("dev"),
        Action::RollApiKey {
            key: key_id(1),
            grace: GracePeriod::parse("7d").unwrap(),
            hint: KeyHint::mask("kl_aaaaaaaaaaaa", 7, 4),
            secret_hash: hash(50),
        },
        T0,
    )
    .unwrap();
    assert!(
        matches!(events[0], Event::ApiKeyRolled { previous_valid_until, .. } if previous_valid_until == T0.plus_days(1))
    );
}

#[test]
fn users_and_roles_are_for_admins() {
    let mut state = world();
    let create = Action::CreateUser {
        user: user("carol"),
        display_name: None,
        roles: vec![role("developer"), role("member")],
    };
    assert!(matches!(
        when(&state, as_user("dev"), create.clone(), T0),
        Err(DomainError::PermissionDenied { .. })
    ));
    let events = succeed(&mut state, as_user("admin"), create.clone(), T0);
    assert_eq!(
        names(&events),
        ["UserCreated", "RoleGranted", "RoleGranted"]
    );
    assert_eq!(
        when(&state, as_user("admin"), create, T0),
        Err(DomainError::UserExists {
            user: "carol".into()
        })
    );
    assert_eq!(
        when(
            &state,
            as_user("admin"),
            Action::GrantRole {
                user: user("carol"),
                role: role("wizard")
            },
            T0
        ),
        Err(DomainError::UnknownRole {
            role: "wizard".into()
        })
    );
    assert_eq!(
        when(
            &state,
            as_user("admin"),
            Action::GrantRole {
                user: user("carol"),
                role: role("member")
            },
            T0
        ),
        Ok(vec![])
    );
    assert_eq!(
        when(
            &state,
            as_user("admin"),
            Action::RevokeRole {
                user: user("admin"),
                role: role("admin")
            },
            T0
        ),
        Err(DomainError::LastAdmin {
            user: "admin".into()
        })
    );
    assert_eq!(
        when(
            &state,
            as_user("admin"),
            Action::DefineRole {
                role: role("admin"),
                permissions: vec![]
            },
            T0
        ),
        Err(DomainError::BuiltInRole {
            role: "admin".into()
        })
    );
    define_keys_only_role(&mut state);
    succeed(
        &mut state,
        as_user("admin"),
        Action::GrantRole {
            user: user("auditor"),
            role: role("keys-only"),
        },
        T0,
    );
    succeed(
        &mut state,
        as_user("auditor"),
        Action::CreateApiKey(new_key(5, KeyDuration::Days(1))),
        T0,
    );
    // Redefining the role changes what its holders may do, at once.
    succeed(
        &mut state,
        as_user("admin"),
        Action::DefineRole {
            role: role("keys-only"),
            permissions: vec![],
        },
        T0,
    );
    assert!(matches!(
        when(
            &state,
            as_user("auditor"),
            Action::CreateApiKey(new_key(6, KeyDuration::Days(1))),
            T0
        ),
        Err(DomainError::PermissionDenied { .. })
    ));
}

#[test]
fn usage_is_aggregated_and_ignores_deleted_keys() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(1, KeyDuration::Days(1))),
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateApiKey(new_key(2, KeyDuration::Days(1))),
        T0,
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::DeleteApiKeys {
            keys: vec![key_id(2)],
        },
        T0,
    );
    let usages = vec![
        KeyUsage {
            key: key_id(1),
            last_used_at: T0.plus_millis(5),
            uses: 42,
        },
        KeyUsage {
            key: key_id(2),
            last_used_at: T0.plus_millis(5),
            uses: 1,
        },
    ];
    let events = succeed(
        &mut state,
        Actor::System,
        Action::RecordApiKeyUsage { usages },
        T0,
    );
    assert_eq!(names(&events), ["ApiKeyUsed"]);
    let key = state.api_key(&key_id(1)).unwrap();
    assert_eq!((key.uses, key.last_used_at), (42, Some(T0.plus_millis(5))));
}

#[test]
fn ingestions_need_permission_and_a_usable_key() {
    let mut state = world();
    let selection = Selection::Aws {
        bucket: "b".into(),
        prefix: "p/".into(),
        pattern: ".*".into(),
    };
    let request = |n: u32| Action::RequestIngestion {
        ingestion: IngestionId::parse(&format!("ing_{n:016}")).unwrap(),
        selection: selection.clone(),
        destination: "samples".into(),
        batch_id: format!("batch-{n}"),
        force: false,
    };
    assert!(matches!(
        when(&state, as_user("auditor"), request(1), T0),
        Err(DomainError::PermissionDenied { .. })
    ));
    assert_eq!(
        when(&state, as_user("dev"), request(1), T0),
        Err(DomainError::NoExternalKey {
            provider: Provider::Aws
        })
    );
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    succeed(&mut state, as_user("dev"), request(1), T0);
    let ingestion = IngestionId::parse("ing_0000000000000001").unwrap();
    let record = |progress| Action::RecordIngestion {
        ingestion: ingestion.clone(),
        progress,
    };
    succeed(
        &mut state,
        Actor::System,
        record(IngestionProgress::KeyUsed),
        T0,
    );
    succeed(
        &mut state,
        Actor::System,
        record(IngestionProgress::Listed {
            files: 2,
            bytes: 30,
        }),
        T0,
    );
    succeed(
        &mut state,
        Actor::System,
        record(IngestionProgress::FileFetched {
            path: "a".into(),
            size: 10,
            sha256: [1; 32],
            source_etag: "e".into(),
        }),
        T0,
    );
    succeed(
        &mut state,
        Actor::System,
        record(IngestionProgress::FileFailed {
            path: "b".into(),
            reason: "checksum".into(),
            failure_kind: FailureKind::Integrity,
        }),
        T0,
    );
    let done = succeed(
        &mut state,
        Actor::System,
        record(IngestionProgress::Completed),
        T0,
    );
    assert!(matches!(
        done[0],
        Event::IngestionCompleted {
            files: 1,
            bytes: 10,
            failed: 1,
            ..
        }
    ));
    assert_eq!(
        state.ingestion(&ingestion).unwrap().state,
        IngestionState::Completed
    );
    assert!(
        state
            .external_key(&ext_id(1))
            .unwrap()
            .last_used_at
            .is_some()
    );
    assert!(matches!(
        when(
            &state,
            Actor::System,
            record(IngestionProgress::Cancelled),
            T0
        ),
        Err(DomainError::IngestionFinished { .. })
    ));
    // An expired key stops new jobs.
    assert_eq!(
        when(&state, as_user("dev"), request(2), T0.plus_days(31)),
        Err(DomainError::NoExternalKey {
            provider: Provider::Aws
        })
    );
}

/// Every stream a decision read beyond those it writes is named, so the vault can refuse the
/// append if one of them moved in between (the log's stream guards).
#[test]
fn decisions_name_the_streams_they_read() {
    let mut state = world();
    define_keys_only_role(&mut state);
    succeed(
        &mut state,
        as_user("admin"),
        Action::CreateUser {
            user: user("second"),
            display_name: None,
            roles: vec![role("admin"), role("keys-only")],
        },
        T0,
    );
    let check = |actor: Actor, action: Action, expect: &[&str]| {
        let decision = decide_with_reads(&state, Command::new(actor, action), T0)
            .expect("the command should succeed");
        let reads: Vec<&str> = decision.reads.iter().map(String::as_str).collect();
        assert_eq!(reads, expect);
    };
    // Removing an administrator counts the administrators: every one of them is read.
    check(
        as_user("admin"),
        Action::RevokeRole {
            user: user("second"),
            role: role("admin"),
        },
        &["user/admin"],
    );
    check(
        as_user("second"),
        Action::RevokeRole {
            user: user("admin"),
            role: role("admin"),
        },
        &["role/keys-only", "user/second"],
    );
    // A permission is read from the actor's roles, custom role definitions included.
    check(
        as_user("second"),
        Action::CreateApiKey(new_key(7, KeyDuration::Days(1))),
        &["role/keys-only", "user/second"],
    );
    check(
        as_user("dev"),
        Action::CreateApiKey(new_key(8, KeyDuration::Days(1))),
        &["user/dev"],
    );
    check(
        as_user("admin"),
        Action::GrantRole {
            user: user("dev"),
            role: role("keys-only"),
        },
        &["role/keys-only", "user/admin"],
    );
}

/// A rotation of external key `n` to `public`, sealed under data key `<ext id>/<suffix>`.
fn rotation(n: u32, public: ExternalKeyPublic, suffix: &str) -> Action {
    Action::RotateExternalKey(ExternalKeyRotation {
        key: ext_id(n),
        public,
        sealed: SealedSecret {
            nonce: [9; 12],
            ciphertext: vec![7, 8, 9],
        },
        data_key: DataKeyId::rotated(&ext_id(n), suffix),
    })
}

#[test]
fn a_rotation_to_temporary_credentials_ends_the_key_with_its_token() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    let session = |expires: Timestamp| ExternalKeyPublic::AwsSession {
        access_key_id: AccessKeyId::parse("ASIAI44QH8DHBEXAMPLE").unwrap(),
        region: AwsRegion::parse("eu-west-2").unwrap(),
        token_expires_at: expires,
    };
    let later = T0.plus_days(1);
    let refused = decide(
        &state,
        Command::new(as_user("dev"), rotation(1, session(later), "a")),
        later,
    )
    .unwrap_err();
    assert!(refused.to_string().contains("already expired"), "{refused}");
    succeed(
        &mut state,
        as_user("dev"),
        rotation(1, session(T0.plus_days(2)), "a"),
        later,
    );
    let key = state.external_key(&ext_id(1)).unwrap();
    assert_eq!(
        key.expires_at,
        Some(T0.plus_days(2)),
        "the token's expiry, not 30 days"
    );
}

fn new_aws_public() -> ExternalKeyPublic {
    ExternalKeyPublic::Aws {
        access_key_id: AccessKeyId::parse("AKIAI44QH8DHBEXAMPLE").unwrap(),
        region: AwsRegion::parse("eu-west-2").unwrap(),
    }
}

#[test]
fn a_rotation_replaces_the_secret_in_place_and_retires_the_data_key_until_destroyed() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    let later = T0.plus_days(1);
    let events = succeed(
        &mut state,
        as_user("dev"),
        rotation(1, new_aws_public(), "a"),
        later,
    );
    assert_eq!(names(&events), ["ExternalKeyRotated"]);
    let original = DataKeyId::original(&ext_id(1));
    let first = DataKeyId::rotated(&ext_id(1), "a");
    match &events[0] {
        Event::ExternalKeyRotated {
            previous_data_key,
            data_key,
            owner,
            ..
        } => {
            assert_eq!(previous_data_key, &original);
            assert_eq!(data_key, &first);
            assert_eq!(owner, &user("dev"));
        }
        other => panic!("{other:?}"),
    }
    let key = state.external_key(&ext_id(1)).unwrap();
    assert_eq!(key.public.hint().as_str(), "AKIA…MPLE");
    assert_eq!(key.expires_at, Some(T0.plus_days(30)), "the expiry stays");
    assert_eq!(key.created_at, T0);
    assert_eq!(state.data_key_of(&ext_id(1)), first);
    assert_eq!(state.rotated_at(&ext_id(1)), Some(later));
    assert!(state.is_retired(&ext_id(1), &original));

    // A second rotation retires the first rotated key too; each is destroyed once.
    succeed(
        &mut state,
        as_user("dev"),
        rotation(1, new_aws_public(), "b"),
        later,
    );
    let retired: Vec<_> = state.retired_data_keys().map(|(_, d)| d.clone()).collect();
    assert_eq!(retired, [original.clone(), first.clone()]);
    let destroy = |data_key: &DataKeyId| Action::RecordDataKeyDestroyed {
        key: ext_id(1),
        data_key: data_key.clone(),
    };
    assert!(matches!(
        when(&state, as_user("dev"), destroy(&original), later),
        Err(DomainError::PermissionDenied { .. })
    ));
    let events = succeed(&mut state, Actor::System, destroy(&original), later);
    assert_eq!(names(&events), ["ExternalKeyDataKeyDestroyed"]);
    assert_eq!(
        when(&state, Actor::System, destroy(&original), later),
        Ok(vec![])
    );
    // The current data key is never "destroyed" this way.
    let current = state.data_key_of(&ext_id(1));
    assert_eq!(
        when(&state, Actor::System, destroy(&current), later),
        Ok(vec![])
    );
}

#[test]
fn only_an_active_key_of_ones_own_is_rotated_with_its_own_provider() {
    let mut state = world();
    succeed(
        &mut state,
        as_user("dev"),
        Action::CreateExternalKey(aws_key(1)),
        T0,
    );
    // Someone else's key does not exist for them.
    assert_eq!(
        when(
            &state,
            as_user("admin"),
            rotation(1, new_aws_public(), "a"),
            T0
        ),
        Err(DomainError::NotFound {
            what: "external key",
            id: ext_id(1).to_string(),
        })
    );
    // A DNAnexus token cannot replace an AWS key.
    let dx = ExternalKeyPublic::Dnanexus {
        token_hint: KeyHint::mask("abcdefghijklmnopqrstuv", 0, 4),
    };
    let refused = when(&state, as_user("dev"), rotation(1, dx, "a"), T0).unwrap_err();
    assert!(
        refused.to_string().contains("send a `aws` credential"),
        "{refused}"
    );
    // Expired (recorded or not): refused with the reason.
    let expired = when(
        &state,
        as_user("dev"),
        rotation(1, new_aws_public(), "a"),
        T0.plus_days(31),
    );
    assert_eq!(
        expired,
        Err(DomainError::NotActive {
            what: "external key",
            id: ext_id(1).to_string(),
            status: KeyStatus::Expired,
        })
    );
    // Deleted: not found.
    succeed(
        &mut state,
        as_user("dev"),
        Action::DeleteExternalKeys {
            keys: vec![ext_id(1)],
        },
        T0,
    );
    assert!(matches!(
        when(
            &state,
            as_user("dev"),
            rotation(1, new_aws_public(), "a"),
            T0
        ),
        Err(DomainError::NotFound { .. })
    ));
}
