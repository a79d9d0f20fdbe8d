//! The encoded form of every event kind, so a change to the log's format shows up in review.

use keyledger_domain::public::{PublicEnvelope, PublicEvent};
use keyledger_domain::*;

use crate::fixtures::*;

pub fn one_of_each() -> Vec<Event> {
    let ingestion = IngestionId::parse("ing_0000000000000001").unwrap();
    vec![
        Event::UserCreated {
            user: user("alice"),
            display_name: Some(DisplayName::parse("Alice").unwrap()),
            at: T0,
        },
        Event::RoleDefined {
            role: role("keys-only"),
            permissions: vec![Permission::ManageUserApiKeys],
            at: T0,
        },
        Event::RoleGranted {
            user: user("alice"),
            role: role("developer"),
            at: T0,
        },
        Event::RoleRevoked {
            user: user("alice"),
            role: role("developer"),
            at: T0,
        },
        Event::ApiKeyCreated {
            key: key_id(1),
            owner: user("alice"),
            name: KeyName::parse("ci").unwrap(),
            hint: KeyHint::mask("kl_AbCdEfGhIjKlMnOp", 7, 4),
            secret_hash: hash(1),
            created_at: T0,
            expires_at: Some(T0.plus_days(30)),
        },
        Event::ApiKeyRolled {
            key: key_id(1),
            owner: user("alice"),
            hint: KeyHint::mask("kl_ZyXwVuTsRqPoNm", 7, 4),
            secret_hash: hash(2),
            previous_valid_until: T0.plus_millis(3_600_000),
            at: T0,
        },
        Event::ApiKeyDeleted {
            key: key_id(1),
            owner: user("alice"),
            at: T0,
        },
        Event::ApiKeyExpired {
            key: key_id(1),
            owner: user("alice"),
            at: T0,
        },
        Event::ApiKeyUsed {
            key: key_id(1),
            owner: user("alice"),
            last_used_at: T0,
            uses: 3,
        },
        match Action::CreateExternalKey(aws_key(2)) {
            Action::CreateExternalKey(k) => Event::ExternalKeyCreated {
                key: k.key,
                owner: user("alice"),
                label: k.label,
                public: k.public,
                sealed: k.sealed,
                created_at: T0,
                expires_at: Some(T0.plus_days(30)),
            },
            _ => unreachable!(),
        },
        Event::ExternalKeyDeleted {
            key: ext_id(2),
            owner: user("alice"),
            provider: Provider::Aws,
            at: T0,
        },
        Event::ExternalKeyExpired {
            key: ext_id(2),
            owner: user("alice"),
            provider: Provider::Dnanexus,
            at: T0,
        },
        Event::ExternalKeyVerified {
            key: ext_id(2),
            owner: user("alice"),
            ok: true,
            detail: "listed bucket".into(),
            at: T0,
        },
        Event::ExternalKeyUsed {
            key: ext_id(2),
            owner: user("alice"),
            ingestion: ingestion.clone(),
            at: T0,
        },
        Event::IngestionRequested {
            ingestion: ingestion.clone(),
            owner: user("alice"),
            external_key: ext_id(2),
            selection: Selection::Aws {
                bucket: "lab".into(),
                prefix: "runs/".into(),
                pattern: r".*\.csv$".into(),
            },
            destination: "samples".into(),
            batch_id: "batch-1".into(),
            at: T0,
        },
        Event::IngestionListed {
            ingestion: ingestion.clone(),
            files: 2,
            bytes: 2048,
            at: T0,
        },
        Event::IngestionFileFetched {
            ingestion: ingestion.clone(),
            path: "runs/a.csv".into(),
            size: 1024,
            sha256: [0xab; 32],
            source_etag: "\"9e107d9d372bb6826bd81d3542a419d6\"".into(),
            external_key: ext_id(2),
            at: T0,
        },
        Event::IngestionFileFailed {
            ingestion: ingestion.clone(),
            path: "runs/b.csv".into(),
            reason: "object `runs/b.csv` failed verification (ETag MD5)".into(),
            failure_kind: FailureKind::Integrity,
            at: T0,
        },
        Event::IngestionCompleted {
            ingestion: ingestion.clone(),
            files: 1,
            bytes: 1024,
            failed: 1,
            at: T0,
        },
        Event::IngestionFailed {
            ingestion: ingestion.clone(),
            reason: "cannot resolve host `s3.example.invalid`: check the endpoint".into(),
            failure_kind: FailureKind::Unreachable,
            at: T0,
        },
        Event::IngestionCancelled {
            ingestion: ingestion.clone(),
            at: T0,
        },
        Event::MasterKeyRotated {
            generation: 1,
            data_keys: 3,
            at: T0,
        },
        match Action::CreateExternalKey(aws_key(2)) {
            Action::CreateExternalKey(k) => Event::ExternalKeyRotated {
                key: k.key.clone(),
                owner: user("alice"),
                public: k.public,
                sealed: k.sealed,
                previous_data_key: DataKeyId::original(&k.key),
                data_key: DataKeyId::rotated(&k.key, "0000000000000001"),
                at: T0,
            },
            _ => unreachable!(),
        },
        Event::ExternalKeyDataKeyDestroyed {
            key: ext_id(2),
            owner: user("alice"),
            data_key: DataKeyId::original(&ext_id(2)),
            at: T0,
        },
        Event::ApiKeyExpiring {
            key: key_id(1),
            owner: user("alice"),
            expires_at: T0.plus_days(7),
            horizon_days: 7,
            at: T0,
        },
        Event::ExternalKeyExpiring {
            key: ext_id(2),
            owner: user("alice"),
            provider: Provider::Dnanexus,
            expires_at: T0.plus_days(30),
            horizon_days: 30,
            at: T0,
        },
        Event::ApiKeyLeaked {
            key: key_id(1),
            owner: user("alice"),
            url: "https://github.com/octocat/Hello-World/blob/1234567/.env".into(),
            source: "content".into(),
            at: T0,
        },
        Event::HoneytokenCreated {
            key: key_id(3),
            owner: user("alice"),
            name: KeyName::parse("canary").unwrap(),
            hint: KeyHint::mask("kl_HoNeYtOkEnAbCdEf", 7, 4),
            secret_hash: hash(3),
            created_at: T0,
            expires_at: None,
        },
        Event::HoneytokenUsed {
            key: key_id(3),
            owner: user("alice"),
            source_address: "203.0.113.7".into(),
            user_agent: "curl/8.5.0".into(),
            route: "GET /v1/me".into(),
            at: T0,
        },
        Event::ExternalKeyRoleAssumed {
            key: ext_id(3),
            owner: user("alice"),
            ingestion: Some(ingestion.clone()),
            role_arn: AwsRoleArn::parse("arn:aws:iam::111122223333:role/lab-reader").unwrap(),
            session_name: "keyledger-ing_0000000000000001".to_owned(),
            access_key_id: AccessKeyId::parse("ASIAI44QH8DHBEXAMPLE").unwrap(),
            session_expires_at: T0.plus_millis(3_600_000),
            at: T0,
        },
        Event::ApiKeyScoped {
            key: key_id(1),
            owner: user("alice"),
            scopes: vec![Permission::ViewAuditLog],
            networks: vec![
                Network::parse("203.0.113.0/24").unwrap(),
                Network::parse("2001:db8::/32").unwrap(),
            ],
            at: T0,
        },
        Event::ApiKeyRevoked {
            key: key_id(1),
            owner: user("alice"),
            reason: Reason::parse("found in a public repository").unwrap(),
            at: T0,
        },
        Event::ExternalKeyRevoked {
            key: ext_id(1),
            owner: user("alice"),
            provider: Provider::Aws,
            reason: Reason::parse("left the company").unwrap(),
            at: T0,
        },
        Event::UserDeactivated {
            user: user("alice"),
            reason: Reason::parse("left the company").unwrap(),
            at: T0,
        },
        Event::UserReactivated {
            user: user("alice"),
            at: T0,
        },
        Event::IngestionFilesSkipped {
            ingestion: IngestionId::parse("ing_0000000000000001").unwrap(),
            files: 3,
            bytes: 3072,
            at: T0,
        },
        Event::SourceSaved {
            source: source(),
            owner: user("alice"),
            name: SourceName::parse("nightly").unwrap(),
            selection: Selection::Aws {
                bucket: "lab".into(),
                prefix: "runs/".into(),
                pattern: r"\.csv$".into(),
            },
            destination: "alice/nightly".into(),
            schedule: Some("0 3 * * *".into()),
            timezone: Some("Europe/Zurich".into()),
            at: T0,
        },
        Event::SourcePaused {
            source: source(),
            owner: user("alice"),
            at: T0,
        },
        Event::SourceResumed {
            source: source(),
            owner: user("alice"),
            at: T0,
        },
        Event::SourceDeleted {
            source: source(),
            owner: user("alice"),
            at: T0,
        },
        Event::SourceRunStarted {
            source: source(),
            owner: user("alice"),
            ingestion: IngestionId::parse("ing_0000000000000001").unwrap(),
            scheduled_for: Some(T0),
            at: T0,
        },
        Event::IngestionSyncForced {
            ingestion: IngestionId::parse("ing_0000000000000001").unwrap(),
            at: T0,
        },
        Event::SourceRunRefused {
            source: source(),
            owner: user("alice"),
            scheduled_for: T0,
            reason:
                "you have no usable external key for Amazon Web Services (aws); store one first"
                    .into(),
            at: T0,
        },
    ]
}

fn source() -> SourceId {
    SourceId::parse("src_0000000000000001").unwrap()
}

#[test]
fn every_event_kind_is_covered() {
    let kinds: std::collections::BTreeSet<&str> =
        one_of_each().iter().map(Event::type_name).collect();
    assert_eq!(
        kinds.len(),
        one_of_each().len(),
        "one example per kind, no duplicates"
    );
}

#[test]
fn binary_encoding_of_each_event() {
    for event in one_of_each() {
        let bytes = bincode::serde::encode_to_vec(&event, bincode::config::standard()).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        insta::assert_snapshot!(format!("binary_{}", event.type_name()), hex);
    }
}

#[test]
fn public_json_of_each_event() {
    for (seq, event) in one_of_each().into_iter().enumerate() {
        let envelope = PublicEnvelope {
            id: "0123456789abcdef0123456789abcdef".into(),
            seq: seq as u64 + 1,
            time: T0,
            subject: event.stream_id(),
            actor: "user:alice/key:key_0000000000000001".into(),
            event: PublicEvent::from(&event),
        };
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["type"], event.type_name());
        let text = json.to_string();
        for forbidden in ["secret_hash", "sealed", "ciphertext", "nonce"] {
            assert!(!text.contains(forbidden), "{forbidden} in {text}");
        }
        let back: PublicEnvelope = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, envelope);
        insta::assert_json_snapshot!(format!("public_{}", event.type_name()), json);
    }
}

#[test]
fn failure_kinds_have_stable_names() {
    for kind in FailureKind::ALL {
        let json = serde_json::to_value(kind).unwrap();
        assert_eq!(json, kind.as_str());
        assert_eq!(serde_json::from_value::<FailureKind>(json).unwrap(), kind);
    }
}
