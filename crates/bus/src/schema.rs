//! The documented wire format of the public stream, for subscribers in any language:
//! every event type, its NATS subject, its fields and an example. The catalogue
//! ([`EVENT_DOCS`]) is derived from the public event type itself (`PublicEvent`'s schema and
//! doc comments), so it cannot drift from what is published; `docs/events.md` and
//! `docs/events.schema.json` are generated from it, and a test fails when they, the catalogue
//! or the JSON the relay publishes disagree.

use std::sync::LazyLock;

use keyledger_domain::public::{PublicEnvelope, PublicEvent};
use keyledger_domain::{
    AccessKeyId, AwsRegion, AwsRoleArn, DataKeyId, DisplayName, Event, ExternalKeyId,
    ExternalKeyPublic, FailureKind, FromTrusted, IngestionId, KeyHint, KeyId, KeyName, Label,
    Permission, Provider, Reason, RoleName, SealedSecret, SecretHash, Selection, SourceId,
    SourceName, Timestamp, UserId,
};
use keyledger_log::Envelope;
use serde_json::Value;
use utoipa::PartialSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, Schema, SchemaFormat, SchemaType, Type};

use crate::wire::public_envelope;

mod render;
pub use render::{json_schema, matches_type, render_markdown};

/// The JSON type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonType {
    String,
    /// A non-negative integer (fits in 64 bits).
    Integer,
    Boolean,
    /// An RFC 3339 UTC time with milliseconds: `2026-11-26T16:24:57.123Z`.
    Timestamp,
    /// An array of strings.
    StringArray,
    Object,
}

/// One field of an event's `data`.
#[derive(Clone, Copy, Debug)]
pub struct FieldDoc {
    pub name: &'static str,
    pub json_type: JsonType,
    /// `null` is allowed.
    pub nullable: bool,
    pub description: &'static str,
}

/// One event type.
#[derive(Clone, Copy, Debug)]
pub struct EventDoc {
    pub type_name: &'static str,
    pub subject_suffix: &'static str,
    pub summary: &'static str,
    pub fields: &'static [FieldDoc],
}

const fn field(name: &'static str, json_type: JsonType, description: &'static str) -> FieldDoc {
    FieldDoc {
        name,
        json_type,
        nullable: false,
        description,
    }
}

use JsonType::{Integer, Object, Timestamp as Time};

/// Every event type of the public stream, in the order of `PublicEvent`: derived from its schema
/// (each variant's and field's doc comment in `keyledger_domain::public`) and, for the subject,
/// from the domain's `Event::subject_suffix`. Nothing here is written by hand.
pub static EVENT_DOCS: LazyLock<Vec<EventDoc>> = LazyLock::new(derived_event_docs);

fn derived_event_docs() -> Vec<EventDoc> {
    let RefOr::T(Schema::OneOf(variants)) = PublicEvent::schema() else {
        unreachable!("PublicEvent is an adjacently tagged enum: its schema is one of its variants");
    };
    let examples = example_events();
    variants
        .items
        .iter()
        .filter_map(|variant| match variant {
            RefOr::T(Schema::Object(variant)) => Some(variant),
            _ => None,
        })
        .map(|variant| {
            let type_name = variant_tag(variant);
            let data = match variant.properties.get("data") {
                Some(RefOr::T(Schema::Object(data))) => Some(data),
                _ => None,
            };
            let summary = variant
                .description
                .as_deref()
                .or_else(|| data.and_then(|data| data.description.as_deref()))
                .unwrap_or_default();
            let subject_suffix = examples
                .iter()
                .find(|event| event.type_name() == type_name)
                .map_or("", Event::subject_suffix);
            let fields: Vec<FieldDoc> = data
                .map(|data| {
                    data.properties
                        .iter()
                        .map(|(name, schema)| field_doc(name, schema))
                        .collect()
                })
                .unwrap_or_default();
            EventDoc {
                type_name: leak(type_name),
                subject_suffix,
                summary: leak(summary),
                fields: Vec::leak(fields),
            }
        })
        .collect()
}

/// The catalogue is built once per process; its few strings live as long as it does.
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The variant's name: the only value its `type` property allows.
fn variant_tag(variant: &utoipa::openapi::schema::Object) -> &str {
    let Some(RefOr::T(Schema::Object(tag))) = variant.properties.get("type") else {
        return "";
    };
    tag.enum_values
        .iter()
        .flatten()
        .find_map(Value::as_str)
        .unwrap_or_default()
}

fn field_doc(name: &str, schema: &RefOr<Schema>) -> FieldDoc {
    let (json_type, nullable, description) = match schema {
        RefOr::T(Schema::Array(array)) => (JsonType::StringArray, false, &array.description),
        RefOr::T(Schema::Object(object)) => {
            let (kind, nullable) = match &object.schema_type {
                SchemaType::Type(kind) => (kind.clone(), false),
                SchemaType::Array(kinds) => (
                    kinds
                        .iter()
                        .find(|kind| **kind != Type::Null)
                        .cloned()
                        .unwrap_or(Type::Object),
                    kinds.contains(&Type::Null),
                ),
                SchemaType::AnyValue => (Type::Object, false),
            };
            let is_time = object.format == Some(SchemaFormat::KnownFormat(KnownFormat::DateTime));
            let json_type = match kind {
                Type::String if is_time => JsonType::Timestamp,
                Type::String => JsonType::String,
                Type::Integer => JsonType::Integer,
                Type::Boolean => JsonType::Boolean,
                Type::Array => JsonType::StringArray,
                Type::Object | Type::Number | Type::Null => JsonType::Object,
            };
            (json_type, nullable, &object.description)
        }
        _ => (JsonType::Object, false, &None),
    };
    FieldDoc {
        name: leak(name),
        json_type,
        nullable,
        description: leak(description.as_deref().unwrap_or_default()),
    }
}

/// The fields every event has around its `data`.
pub const ENVELOPE_FIELDS: &[FieldDoc] = &[
    field(
        "id",
        JsonType::String,
        "The event id, 32 lowercase hex digits; also the NATS `Nats-Msg-Id` header.",
    ),
    field(
        "seq",
        Integer,
        "The event's position in the vault's log (1, 2, 3, …): strictly increasing in the stream; use it to resume.",
    ),
    field(
        "type",
        JsonType::String,
        "The event type, e.g. `ApiKeyCreated`; selects the shape of `data`.",
    ),
    field("time", Time, "When the event was appended to the log."),
    field(
        "subject",
        JsonType::String,
        "The aggregate the event belongs to, e.g. `api_key/key_…` or `user/alice`.",
    ),
    field(
        "actor",
        JsonType::String,
        "Who caused it: `user:<handle>`, `user:<handle>/key:<key id>`, `system` (sweeper, ingestion) or `operator` (local administration).",
    ),
    field("data", Object, "The event's fields, per type below."),
];

/// One example of every event type (two of `ExternalKeyCreated`, one per provider), with the
/// secret-bearing fields filled so a test can check they never reach the JSON.
pub fn example_events() -> Vec<Event> {
    let at = example_time();
    let later = at.plus_days(30);
    let user = || UserId::from_trusted("alice".to_owned());
    let key = || KeyId::from_trusted("key_4Vq8ZcT1mN0pRb7s".to_owned());
    let external = || ExternalKeyId::from_trusted("ext_Hx2Lr9Qe5WbN1sKd".to_owned());
    let ingestion = || IngestionId::from_trusted("ing_7TzR3pYc0MvA6gLu".to_owned());
    let source = || SourceId::from_trusted("src_N4bQ8wLc2YhT6vRe".to_owned());
    let hint = || KeyHint::from_trusted("kl_AbCd…wXyZ".to_owned());
    let sealed = || SealedSecret {
        nonce: [0x5a; 12],
        ciphertext: vec![0xc1; 48],
    };
    let secret_hash = SecretHash([0x7e; 32]);
    vec![
        Event::UserCreated {
            user: user(),
            display_name: Some(DisplayName::from_trusted("Alice Martin".to_owned())),
            at,
        },
        Event::RoleDefined {
            role: RoleName::from_trusted("key-auditor".to_owned()),
            permissions: vec![Permission::ViewAuditLog, Permission::VerifyApiKeys],
            at,
        },
        Event::RoleGranted {
            user: user(),
            role: RoleName::from_trusted("member".to_owned()),
            at,
        },
        Event::RoleRevoked {
            user: user(),
            role: RoleName::from_trusted("member".to_owned()),
            at,
        },
        Event::ApiKeyCreated {
            key: key(),
            owner: user(),
            name: KeyName::from_trusted("ci pipeline".to_owned()),
            hint: hint(),
            secret_hash,
            created_at: at,
            expires_at: Some(later),
        },
        Event::ApiKeyRolled {
            key: key(),
            owner: user(),
            hint: KeyHint::from_trusted("kl_EfGh…sTuV".to_owned()),
            secret_hash,
            previous_valid_until: at.plus_days(1),
            at,
        },
        Event::ApiKeyDeleted {
            key: key(),
            owner: user(),
            at,
        },
        Event::ApiKeyExpired {
            key: key(),
            owner: user(),
            at,
        },
        Event::ApiKeyUsed {
            key: key(),
            owner: user(),
            last_used_at: at,
            uses: 42,
        },
        Event::ExternalKeyCreated {
            key: external(),
            owner: user(),
            label: Label::from_trusted("sequencing bucket".to_owned()),
            public: ExternalKeyPublic::Aws {
                access_key_id: AccessKeyId::from_trusted("AKIAIOSFODNN7EXAMPLE".to_owned()),
                region: AwsRegion::from_trusted("eu-west-2".to_owned()),
            },
            sealed: sealed(),
            created_at: at,
            expires_at: Some(later),
        },
        Event::ExternalKeyCreated {
            key: ExternalKeyId::from_trusted("ext_Pn4Wd8Jv2RfT6yQa".to_owned()),
            owner: user(),
            label: Label::from_trusted("DNAnexus project".to_owned()),
            public: ExternalKeyPublic::Dnanexus {
                token_hint: KeyHint::from_trusted("…Q7mZ".to_owned()),
            },
            sealed: sealed(),
            created_at: at,
            expires_at: None,
        },
        Event::ExternalKeyDeleted {
            key: external(),
            owner: user(),
            provider: Provider::Aws,
            at,
        },
        Event::ExternalKeyExpired {
            key: external(),
            owner: user(),
            provider: Provider::Aws,
            at,
        },
        Event::ExternalKeyVerified {
            key: external(),
            owner: user(),
            ok: true,
            detail: "listed bucket sequencing-runs".to_owned(),
            at,
        },
        Event::ExternalKeyUsed {
            key: external(),
            owner: user(),
            ingestion: ingestion(),
            at,
        },
        Event::IngestionRequested {
            ingestion: ingestion(),
            owner: user(),
            external_key: external(),
            selection: Selection::Aws {
                bucket: "sequencing-runs".to_owned(),
                prefix: "2026/run-17/".to_owned(),
                pattern: r"\.fastq\.gz$".to_owned(),
            },
            destination: "samples/run-17".to_owned(),
            batch_id: "batch-0017".to_owned(),
            at,
        },
        Event::IngestionListed {
            ingestion: ingestion(),
            files: 12,
            bytes: 7_340_032_000,
            at,
        },
        Event::IngestionFileFetched {
            ingestion: ingestion(),
            path: "2026/run-17/S1_R1.fastq.gz".to_owned(),
            size: 611_669_333,
            sha256: [0x3b; 32],
            source_etag: "\"9b2cf535f27731c974343645a3985328\"".to_owned(),
            external_key: external(),
            at,
        },
        Event::IngestionFileFailed {
            ingestion: ingestion(),
            path: "2026/run-17/S2_R1.fastq.gz".to_owned(),
            reason: "object `2026/run-17/S2_R1.fastq.gz` failed verification (size): expected \
                     611669333, got 5242880; the partial file was deleted. A new fetch helps only \
                     if the bytes were damaged on the way; if it fails the same way, the stored \
                     object does not match its own checksum: upload it again"
                .to_owned(),
            failure_kind: FailureKind::Integrity,
            at,
        },
        Event::IngestionCompleted {
            ingestion: ingestion(),
            files: 11,
            bytes: 6_728_362_667,
            failed: 1,
            at,
        },
        Event::IngestionFailed {
            ingestion: ingestion(),
            reason: "listing s3://sequencing-runs/2026/run-17/ failed: the stored AWS key was \
                     rejected by S3 (InvalidAccessKeyId): check the key in the vault or replace it"
                .to_owned(),
            failure_kind: FailureKind::ProviderRejected,
            at,
        },
        Event::IngestionCancelled {
            ingestion: ingestion(),
            at,
        },
        Event::MasterKeyRotated {
            generation: 2,
            data_keys: 17,
            at,
        },
        Event::ExternalKeyRotated {
            key: external(),
            owner: user(),
            public: ExternalKeyPublic::Aws {
                access_key_id: AccessKeyId::from_trusted("AKIAI44QH8DHBEXAMPLE".to_owned()),
                region: AwsRegion::from_trusted("eu-west-2".to_owned()),
            },
            sealed: sealed(),
            previous_data_key: DataKeyId::original(&external()),
            data_key: DataKeyId::rotated(&external(), "Vq3Lx8Tb"),
            at,
        },
        Event::ExternalKeyDataKeyDestroyed {
            key: external(),
            owner: user(),
            data_key: DataKeyId::original(&external()),
            at,
        },
        Event::ApiKeyExpiring {
            key: key(),
            owner: user(),
            expires_at: at.plus_days(7),
            horizon_days: 7,
            at,
        },
        Event::ExternalKeyExpiring {
            key: external(),
            owner: user(),
            provider: Provider::Aws,
            expires_at: at.plus_days(30),
            horizon_days: 30,
            at,
        },
        Event::ApiKeyLeaked {
            key: key(),
            owner: user(),
            url: "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt"
                .to_owned(),
            source: "content".to_owned(),
            at,
        },
        Event::HoneytokenCreated {
            key: KeyId::from_trusted("key_Hn7Yt2Pq9Ld4Wc1x".to_owned()),
            owner: user(),
            name: KeyName::from_trusted("prod backup (canary)".to_owned()),
            hint: KeyHint::from_trusted("kl_HoNe…yTok".to_owned()),
            secret_hash,
            created_at: at,
            expires_at: None,
        },
        Event::HoneytokenUsed {
            key: KeyId::from_trusted("key_Hn7Yt2Pq9Ld4Wc1x".to_owned()),
            owner: user(),
            source_address: "203.0.113.7".to_owned(),
            user_agent: "python-requests/2.32.3".to_owned(),
            route: "GET /v1/me".to_owned(),
            at,
        },
        Event::ExternalKeyLeased {
            key: external(),
            owner: user(),
            ingestion: ingestion(),
            worker: UserId::from_trusted("worker-eu-1".to_owned()),
            lease: "lease_Hq2Wm9Xc4Tb7Lp1Z".to_owned(),
            data_key: DataKeyId::original(&external()),
            expires_at: Timestamp::from_millis(1_795_796_697_123),
            at,
        },
        Event::ExternalKeyRoleAssumed {
            key: external(),
            owner: user(),
            ingestion: Some(ingestion()),
            role_arn: AwsRoleArn::from_trusted(
                "arn:aws:iam::111122223333:role/keyledger-reader".to_owned(),
            ),
            session_name: format!("keyledger-{}", ingestion()),
            access_key_id: AccessKeyId::from_trusted("ASIAQ3EGUV7XEXAMPLE1".to_owned()),
            session_expires_at: Timestamp::from_millis(at.as_millis() + 3_600_000),
            at,
        },
        Event::ApiKeyScoped {
            key: key(),
            owner: user(),
            scopes: vec![Permission::VerifyApiKeys],
            networks: vec![
                keyledger_domain::Network::parse("203.0.113.0/24")
                    .unwrap_or_else(|_| unreachable!("a valid example network")),
            ],
            at,
        },
        Event::ApiKeyRevoked {
            key: key(),
            owner: user(),
            reason: Reason::from_trusted("found in a public repository".to_owned()),
            at,
        },
        Event::ExternalKeyRevoked {
            key: external(),
            owner: user(),
            provider: Provider::Aws,
            reason: Reason::from_trusted("left the company".to_owned()),
            at,
        },
        Event::UserDeactivated {
            user: user(),
            reason: Reason::from_trusted("left the company".to_owned()),
            at,
        },
        Event::UserReactivated { user: user(), at },
        Event::IngestionFilesSkipped {
            ingestion: ingestion(),
            files: 11,
            bytes: 6_728_362_667,
            at,
        },
        Event::SourceSaved {
            source: source(),
            owner: user(),
            name: SourceName::from_trusted("nightly runs".to_owned()),
            selection: Selection::Aws {
                bucket: "sequencing-runs".to_owned(),
                prefix: "2026/".to_owned(),
                pattern: r"\.fastq\.gz$".to_owned(),
            },
            destination: "alice/nightly".to_owned(),
            schedule: Some("0 3 * * *".to_owned()),
            timezone: Some("Europe/Zurich".to_owned()),
            at,
        },
        Event::SourcePaused {
            source: source(),
            owner: user(),
            at,
        },
        Event::SourceResumed {
            source: source(),
            owner: user(),
            at,
        },
        Event::SourceDeleted {
            source: source(),
            owner: user(),
            at,
        },
        Event::SourceRunStarted {
            source: source(),
            owner: user(),
            ingestion: ingestion(),
            scheduled_for: Some(Timestamp::from_millis(1_795_654_800_000)),
            at,
        },
        Event::IngestionSyncForced {
            ingestion: ingestion(),
            at,
        },
        Event::SourceRunRefused {
            source: source(),
            owner: user(),
            scheduled_for: Timestamp::from_millis(1_795_654_800_000),
            reason: "you have no usable external key for Amazon Web Services (aws); store one first"
                .to_owned(),
            at,
        },
    ]
}

/// `2026-11-26T16:24:57.123Z`, the time of every example.
pub fn example_time() -> Timestamp {
    Timestamp::from_millis(1_795_710_297_123)
}

/// The public envelope of an example event as the relay would publish it at position `seq`.
pub fn example_envelope(event: &Event, seq: u64) -> PublicEnvelope {
    let actor = match event {
        Event::ApiKeyExpired { .. }
        | Event::ApiKeyUsed { .. }
        | Event::ExternalKeyExpired { .. }
        | Event::ExternalKeyUsed { .. }
        | Event::IngestionListed { .. }
        | Event::IngestionFileFetched { .. }
        | Event::IngestionFileFailed { .. }
        | Event::IngestionCompleted { .. }
        | Event::IngestionFailed { .. }
        | Event::ExternalKeyDataKeyDestroyed { .. }
        | Event::ApiKeyExpiring { .. }
        | Event::ExternalKeyExpiring { .. }
        | Event::ApiKeyLeaked { .. }
        | Event::HoneytokenUsed { .. }
        | Event::ExternalKeyRoleAssumed { .. }
        | Event::IngestionFilesSkipped { .. }
        | Event::IngestionSyncForced { .. }
        | Event::SourceRunRefused { .. } => "system",
        // A scheduled run is started by the vault's scheduler.
        Event::SourceRunStarted {
            scheduled_for: Some(_),
            ..
        } => "system",
        Event::MasterKeyRotated { .. } => "operator",
        Event::ExternalKeyLeased { .. } => "user:worker-eu-1/key:key_4Wk8Rn2Tq6Yz0Pb3",
        _ => "user:alice/key:key_9sLm2Xc4Vb7Nq1Rt",
    };
    let mut event_id = [0u8; 16];
    for (index, byte) in event_id.iter_mut().enumerate() {
        *byte = (seq as u8).wrapping_mul(31).wrapping_add(index as u8 * 17);
    }
    let envelope = Envelope {
        seq,
        event_id,
        stream: event.stream_id(),
        version: 1,
        time_ms: example_time().as_millis(),
        actor: actor.to_owned(),
        request_id: None,
        body: Vec::new(),
        prev_hash: [0; 32],
        hash: [0; 32],
    };
    public_envelope(&envelope, event)
}

/// Keeps [`example_events`] complete: a new event variant does not compile until it has a case
/// here (add an example with it; the catalogue follows `PublicEvent`).
pub fn documented_type(event: &Event) -> &'static str {
    match event {
        Event::UserCreated { .. }
        | Event::RoleDefined { .. }
        | Event::RoleGranted { .. }
        | Event::RoleRevoked { .. }
        | Event::ApiKeyCreated { .. }
        | Event::ApiKeyRolled { .. }
        | Event::ApiKeyDeleted { .. }
        | Event::ApiKeyExpired { .. }
        | Event::ApiKeyUsed { .. }
        | Event::ExternalKeyCreated { .. }
        | Event::ExternalKeyDeleted { .. }
        | Event::ExternalKeyExpired { .. }
        | Event::ExternalKeyVerified { .. }
        | Event::ExternalKeyUsed { .. }
        | Event::IngestionRequested { .. }
        | Event::IngestionListed { .. }
        | Event::IngestionFileFetched { .. }
        | Event::IngestionFileFailed { .. }
        | Event::IngestionCompleted { .. }
        | Event::IngestionFailed { .. }
        | Event::IngestionCancelled { .. }
        | Event::MasterKeyRotated { .. }
        | Event::ExternalKeyRotated { .. }
        | Event::ExternalKeyDataKeyDestroyed { .. }
        | Event::ApiKeyExpiring { .. }
        | Event::ExternalKeyExpiring { .. }
        | Event::ApiKeyLeaked { .. }
        | Event::HoneytokenCreated { .. }
        | Event::HoneytokenUsed { .. }
        | Event::ExternalKeyLeased { .. }
        | Event::ExternalKeyRoleAssumed { .. }
        | Event::ApiKeyScoped { .. }
        | Event::ApiKeyRevoked { .. }
        | Event::ExternalKeyRevoked { .. }
        | Event::UserDeactivated { .. }
        | Event::UserReactivated { .. }
        | Event::IngestionFilesSkipped { .. }
        | Event::SourceSaved { .. }
        | Event::SourcePaused { .. }
        | Event::SourceResumed { .. }
        | Event::SourceDeleted { .. }
        | Event::SourceRunStarted { .. }
        | Event::IngestionSyncForced { .. }
        | Event::SourceRunRefused { .. } => event.type_name(),
    }
}
