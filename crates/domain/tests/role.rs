//! The `role` kind of AWS key: stored without a secret, its AssumeRoles recorded for its owner
//! (or by the system for a job), never for another kind of key or another user (decision 0023).

use keyledger_domain::*;

use crate::fixtures::*;

const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/lab-reader";

fn role_key(n: u32) -> NewExternalKey {
    NewExternalKey {
        key: ext_id(n),
        label: Label::parse("lab role").unwrap(),
        public: ExternalKeyPublic::AwsRole {
            role_arn: AwsRoleArn::parse(ROLE_ARN).unwrap(),
            region: AwsRegion::parse("eu-west-2").unwrap(),
            external_id: AwsExternalId::parse("kl-0123456789abcdef0123456789abcdef").unwrap(),
        },
        sealed: SealedSecret {
            nonce: [1; 12],
            ciphertext: vec![0; 16],
        },
        duration: KeyDuration::Days(30),
    }
}

fn assumed(n: u32) -> Action {
    Action::RecordRoleAssumed(RoleAssumed {
        key: ext_id(n),
        ingestion: None,
        session_name: "keyledger-test".to_owned(),
        access_key_id: AccessKeyId::parse("ASIAI44QH8DHBEXAMPLE").unwrap(),
        session_expires_at: T0.plus_millis(3_600_000),
    })
}

#[test]
fn a_role_key_is_an_aws_key_of_kind_role_shown_by_its_arn() {
    let mut state = world();
    let events = decide(
        &state,
        Command::new(as_user("dev"), Action::CreateExternalKey(role_key(1))),
        T0,
    )
    .unwrap();
    events.iter().for_each(|event| state.apply(event));
    let key = state.external_key(&ext_id(1)).unwrap();
    assert_eq!(key.public.kind(), CredentialKind::Role);
    assert_eq!(key.public.kind().as_str(), "role");
    assert_eq!(key.provider(), Provider::Aws);
    assert_eq!(key.public.hint().as_str(), ROLE_ARN);
    assert_eq!(key.public.region().unwrap().as_str(), "eu-west-2");
    assert_eq!(key.public.token_expires_at(), None);
}

#[test]
fn assuming_a_role_is_recorded_for_its_owner_or_the_system_only() {
    let mut state = world();
    for (actor, action) in [
        (as_user("dev"), Action::CreateExternalKey(role_key(1))),
        (as_user("admin"), Action::CreateExternalKey(aws_key(2))),
    ] {
        let events = decide(&state, Command::new(actor, action), T0).unwrap();
        events.iter().for_each(|event| state.apply(event));
    }
    for actor in [as_user("dev"), Actor::System] {
        let events = decide(&state, Command::new(actor, assumed(1)), T0).unwrap();
        match events.as_slice() {
            [
                Event::ExternalKeyRoleAssumed {
                    owner,
                    role_arn,
                    access_key_id,
                    ..
                },
            ] => {
                assert_eq!(owner, &user("dev"));
                assert_eq!(role_arn.as_str(), ROLE_ARN);
                assert_eq!(access_key_id.as_str(), "ASIAI44QH8DHBEXAMPLE");
            }
            other => panic!("{other:?}"),
        }
    }
    // Someone else's role is not found; a key that is not a role is refused.
    let refused = decide(&state, Command::new(as_user("admin"), assumed(1)), T0).unwrap_err();
    assert!(matches!(refused, DomainError::NotFound { .. }), "{refused}");
    let refused = decide(&state, Command::new(Actor::System, assumed(2)), T0).unwrap_err();
    assert!(refused.to_string().contains("not a role"), "{refused}");
}

#[test]
fn role_arns_and_external_ids_are_parsed() {
    for good in [
        ROLE_ARN,
        "arn:aws:iam::111122223333:role/service/lab-reader",
        "arn:aws-us-gov:iam::111122223333:role/x",
    ] {
        assert!(AwsRoleArn::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "arn:aws:iam::111122223333:user/x",
        "arn:aws:iam::1111:role/x",
        "arn:aws:s3:::bucket",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/a b",
    ] {
        assert!(AwsRoleArn::parse(bad).is_err(), "{bad}");
    }
    assert!(AwsExternalId::parse("kl-0123").is_ok());
    assert!(AwsExternalId::parse("x").is_err());
    assert!(AwsExternalId::parse("a b").is_err());
}
