//! The key lifecycle as pure data: events, commands, validation into domain types, permissions,
//! the state fold (`State::apply`) and `decide`.
//!
//! Architecture invariant: no I/O, no async, no clock. Time, ids and hashes are passed in.

mod command;
mod decide;
mod error;
mod event;
mod key_status;
mod permissions;
pub mod public;
mod state;
mod time;
mod values;

pub use command::{
    Action, Command, ExternalKeyRotation, IngestionProgress, KeyUsage, NewApiKey, NewExternalKey,
    RoleAssumed,
};
pub use decide::{Decision, MAX_RECORDED_TEXT, decide, decide_with_reads, permitted_user};
pub use error::{DomainError, Holder};
pub use event::{
    Actor, CredentialKind, Event, ExternalKeyPublic, FailureKind, SealedSecret, SecretHash,
    Selection, external_key_stream, ingestion_stream, role_stream, source_stream, user_stream,
};
pub use key_status::KeyStatus;
pub use permissions::{
    ADMIN_ROLE, BUILT_IN_ROLES, Permission, PermissionSet, built_in_permissions,
};
pub use state::{
    ApiKey, Deactivation, ExternalKey, FileOutcome, Ingestion, IngestionState, JobLease,
    PreviousSecret, RECENT_SOURCE_RUNS, Revocation, RotatedDataKeys, SecretKind, Source,
    SourceRefusal, SourceRun, State, User, Verification,
};
pub use time::{MILLIS_PER_DAY, MILLIS_PER_MINUTE, TimeParseError, Timestamp};
pub use values::{
    AccessKeyId, AwsExternalId, AwsRegion, AwsRoleArn, DataKeyId, DisplayName, DurationPolicy,
    ExternalKeyId, FromTrusted, GracePeriod, HiddenCharacter, IngestionId, KeyDuration, KeyHint,
    KeyId, KeyName, KeyScope, Label, Network, Provider, Reason, RoleName, Schedule, SourceId,
    SourceName, UserId, ValidationError, check_aws_secret, check_aws_session_token,
    check_bucket_name, check_dnanexus_project, check_dnanexus_token, check_visible_text,
};
