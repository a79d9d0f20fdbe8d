//! The identities of a test AWS account, shared by the S3 and STS test servers: long-lived
//! access keys, roles (trust, external ID, maximum session, permission policy) and the temporary
//! credentials STS issued for them.
//!
//! The guarantee: a request is allowed only if every policy that bounds its credential allows
//! it and none denies it explicitly. A long-lived key is bounded by its own policy, if it has
//! one; a role session by the role's policy and its session policy (their intersection, as in
//! AWS); a `GetSessionToken` session by its user's policy. A credential that no policy bounds
//! may do everything, which is what every test written before this module assumes. Temporary
//! credentials expire by the [`TestClock`], which a test advances instead of sleeping.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use keyledger_testkit::iam::{AccessKey, Policy, Role};
//! use keyledger_testkit::s3::S3Server;
//! use keyledger_testkit::sts::StsServer;
//! let s3 = S3Server::start("AKIAIOSFODNN7EXAMPLE", "secret").await?;
//! s3.iam().add_access_key(AccessKey::new("AKIAPLATFORM00000001", "platform-secret").user("keyledger"));
//! s3.iam().add_role(
//!     Role::new("arn:aws:iam::111122223333:role/lab-reader", Policy::read_only("lab", "runs/"))
//!         .trust("AKIAPLATFORM00000001")
//!         .external_id("kl-ext-4f1c"),
//! );
//! let sts = StsServer::start(s3.iam().clone()).await?;
//! println!("STS at {}", sts.endpoint());
//! # Ok(()) }
//! ```

mod clock;
mod policy;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};

pub use clock::TestClock;
pub(crate) use policy::{AccessRequest, Verdict};
pub use policy::{Policy, PolicyError};

/// The account of users created without an explicit ARN.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// AWS's default and longest session of a role assumed by another role's session.
const ROLE_CHAINING_LIMIT: Duration = Duration::from_secs(3600);

/// The identities the test servers accept. Cloning shares them.
#[derive(Clone, Default)]
pub struct Iam {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    directory: Mutex<Directory>,
    clock: TestClock,
}

#[derive(Default)]
struct Directory {
    /// Long-lived keys and issued sessions, by access key id.
    credentials: HashMap<String, Credential>,
    roles: HashMap<String, Role>,
    assumed: Vec<AssumedRole>,
}

enum Credential {
    User(AccessKey),
    Session(Session),
}

struct Session {
    secret: String,
    token: String,
    expires_at: SystemTime,
    identity: Identity,
    /// Every one must allow a request; empty means no bound.
    policies: Vec<BoundingPolicy>,
    /// Assumed through a role (so a further AssumeRole is role chaining).
    is_role_session: bool,
}

#[derive(Clone, Debug)]
struct BoundingPolicy {
    kind: PolicyKind,
    policy: Policy,
}

/// Which kind of policy refused a request, for AWS's wording of AccessDenied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PolicyKind {
    Identity,
    Session,
}

/// Who a principal is, as GetCallerIdentity answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `arn:aws:iam::<account>:user/<name>` or `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub arn: String,
    /// `AIDA…` for a user, `AROA…:<session>` for a role session.
    pub user_id: String,
    pub account: String,
}

/// A long-lived access key (`AKIA…`) of an IAM user.
#[derive(Clone)]
pub struct AccessKey {
    id: String,
    secret: String,
    identity: Identity,
    policy: Option<Policy>,
}

/// A role that STS lets trusted principals assume.
#[derive(Clone, Debug)]
pub struct Role {
    arn: String,
    role_id: String,
    /// Access key ids or principal ARNs (a user's, or a role's for its sessions).
    trusted: Vec<String>,
    external_id: Option<String>,
    max_session: Duration,
    policy: Policy,
}

/// What one successful AssumeRole asked for (no secrets), for tests to inspect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumedRole {
    pub role_arn: String,
    pub session_name: String,
    /// The access key id that called AssumeRole.
    pub caller_access_key_id: String,
    pub external_id: Option<String>,
    pub duration: Duration,
    pub session_policy: Option<String>,
    /// The `ASIA…` access key id issued.
    pub issued_access_key_id: String,
}

/// Temporary credentials as STS returns them.
#[derive(Clone)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
}

/// An authenticated caller: who it is and what bounds it.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub access_key_id: String,
    pub identity: Identity,
    policies: Vec<BoundingPolicy>,
    pub is_session: bool,
    pub is_role_session: bool,
    /// For a user or a session of a user: the user's ARN; for a role session: the role's ARN.
    pub trust_arn: String,
}

/// Why a credential was refused before any policy was looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CredentialRefusal {
    UnknownAccessKey,
    /// A temporary access key id sent without its session token.
    MissingToken,
    /// A token that is not the one issued with this access key id.
    InvalidToken,
    ExpiredToken,
}

/// Why a request was refused by policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denial {
    /// No policy of this kind allows the action.
    NotAllowedBy(PolicyKind),
    /// A statement of this kind denies it.
    ExplicitDeny(PolicyKind),
}

/// What the STS server asks of [`Iam::assume_role`].
#[derive(Debug)]
pub(crate) struct AssumeRoleRequest<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub external_id: Option<&'a str>,
    pub duration: Option<Duration>,
    pub session_policy: Option<(&'a str, Policy)>,
}

/// Why AssumeRole refused, in the terms the STS server answers with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AssumeRoleRefusal {
    /// Untrusted principal, wrong or missing external ID, unknown role: AWS says the same for all.
    AccessDenied,
    DurationExceedsRoleMaximum,
    DurationExceedsChainingLimit,
}

impl Iam {
    /// No keys, no roles, a clock at the real time.
    pub fn new() -> Iam {
        Iam::default()
    }

    /// Adds (or replaces) a long-lived access key.
    pub fn add_access_key(&self, key: AccessKey) {
        self.directory()
            .credentials
            .insert(key.id.clone(), Credential::User(key));
    }

    /// Removes an access key, as `aws iam delete-access-key` does: requests signed with it are
    /// refused from now on (`InvalidAccessKeyId`).
    pub fn remove_access_key(&self, id: &str) {
        self.directory().credentials.remove(id);
    }

    /// Adds (or replaces, to change its trust or external ID) a role.
    pub fn add_role(&self, role: Role) {
        self.directory().roles.insert(role.arn.clone(), role);
    }

    /// The clock that decides when temporary credentials expire.
    pub fn clock(&self) -> &TestClock {
        &self.shared.clock
    }

    /// Every successful AssumeRole so far, oldest first.
    pub fn assumed_roles(&self) -> Vec<AssumedRole> {
        self.directory().assumed.clone()
    }

    /// The secret that signs requests of this access key id (expired sessions included: their
    /// signature is checked first, then the expiry, as AWS does).
    pub(crate) fn secret_of(&self, access_key_id: &str) -> Option<String> {
        match self.directory().credentials.get(access_key_id)? {
            Credential::User(key) => Some(key.secret.clone()),
            Credential::Session(session) => Some(session.secret.clone()),
        }
    }

    /// The principal behind a request signed by `access_key_id`, with the session token it
    /// carried.
    pub(crate) fn authenticate(
        &self,
        access_key_id: &str,
        token: Option<&str>,
    ) -> Result<Principal, CredentialRefusal> {
        let now = self.shared.clock.now();
        let directory = self.directory();
        match directory.credentials.get(access_key_id) {
            None => Err(CredentialRefusal::UnknownAccessKey),
            Some(Credential::User(key)) => {
                if token.is_some() {
                    return Err(CredentialRefusal::InvalidToken);
                }
                Ok(Principal {
                    access_key_id: key.id.clone(),
                    identity: key.identity.clone(),
                    policies: key
                        .policy
                        .iter()
                        .map(|policy| BoundingPolicy {
                            kind: PolicyKind::Identity,
                            policy: policy.clone(),
                        })
                        .collect(),
                    is_session: false,
                    is_role_session: false,
                    trust_arn: key.identity.arn.clone(),
                })
            }
            Some(Credential::Session(session)) => {
                let Some(token) = token else {
                    return Err(CredentialRefusal::MissingToken);
                };
                if token != session.token {
                    return Err(CredentialRefusal::InvalidToken);
                }
                if now >= session.expires_at {
                    return Err(CredentialRefusal::ExpiredToken);
                }
                Ok(Principal {
                    access_key_id: access_key_id.to_owned(),
                    identity: session.identity.clone(),
                    policies: session.policies.clone(),
                    is_session: true,
                    is_role_session: session.is_role_session,
                    trust_arn: trust_arn_of(&session.identity),
                })
            }
        }
    }

    /// Assumes a role for `caller`: trust, external ID and duration enforced, as AWS does.
    pub(crate) fn assume_role(
        &self,
        caller: &Principal,
        request: AssumeRoleRequest<'_>,
    ) -> Result<(TemporaryCredentials, Identity), AssumeRoleRefusal> {
        let now = self.shared.clock.now();
        let mut directory = self.directory();
        let role = directory
            .roles
            .get(request.role_arn)
            .ok_or(AssumeRoleRefusal::AccessDenied)?
            .clone();
        let trusted = role
            .trusted
            .iter()
            .any(|principal| *principal == caller.access_key_id || *principal == caller.trust_arn);
        let external_id_matches = match &role.external_id {
            None => true,
            Some(required) => request.external_id == Some(required.as_str()),
        };
        if !trusted || !external_id_matches {
            return Err(AssumeRoleRefusal::AccessDenied);
        }
        let duration = request.duration.unwrap_or(ROLE_CHAINING_LIMIT);
        if caller.is_role_session && duration > ROLE_CHAINING_LIMIT {
            return Err(AssumeRoleRefusal::DurationExceedsChainingLimit);
        }
        if duration > role.max_session {
            return Err(AssumeRoleRefusal::DurationExceedsRoleMaximum);
        }
        let (account, role_name) = role_account_and_name(&role.arn);
        let identity = Identity {
            arn: format!(
                "arn:aws:sts::{account}:assumed-role/{role_name}/{}",
                request.session_name
            ),
            user_id: format!("{}:{}", role.role_id, request.session_name),
            account: account.to_owned(),
        };
        let mut policies = vec![BoundingPolicy {
            kind: PolicyKind::Identity,
            policy: role.policy.clone(),
        }];
        if let Some((_, policy)) = &request.session_policy {
            policies.push(BoundingPolicy {
                kind: PolicyKind::Session,
                policy: policy.clone(),
            });
        }
        let credentials = issue(
            &mut directory,
            now + duration,
            identity.clone(),
            policies,
            true,
        );
        directory.assumed.push(AssumedRole {
            role_arn: role.arn.clone(),
            session_name: request.session_name.to_owned(),
            caller_access_key_id: caller.access_key_id.clone(),
            external_id: request.external_id.map(str::to_owned),
            duration,
            session_policy: request.session_policy.map(|(text, _)| text.to_owned()),
            issued_access_key_id: credentials.access_key_id.clone(),
        });
        Ok((credentials, identity))
    }

    /// Issues session credentials with the caller's own identity and bounds.
    pub(crate) fn get_session_token(
        &self,
        caller: &Principal,
        duration: Duration,
    ) -> TemporaryCredentials {
        let now = self.shared.clock.now();
        let mut directory = self.directory();
        issue(
            &mut directory,
            now + duration,
            caller.identity.clone(),
            caller.policies.clone(),
            false,
        )
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        self.shared.directory.lock()
    }
}

impl Principal {
    /// Whether every bounding policy allows the request and none denies it.
    pub(crate) fn authorize(&self, request: &AccessRequest) -> Result<(), Denial> {
        let mut missing = None;
        for bound in &self.policies {
            match bound.policy.evaluate(request) {
                Verdict::Allow => {}
                Verdict::Deny => return Err(Denial::ExplicitDeny(bound.kind)),
                Verdict::NotAllowed => {
                    missing.get_or_insert(Denial::NotAllowedBy(bound.kind));
                }
            }
        }
        missing.map_or(Ok(()), Err)
    }
}

impl Denial {
    /// AWS's explanation, as in "User: … is not authorized to perform: … because …".
    pub(crate) fn reason(self, action: &str) -> String {
        let kind = |kind| match kind {
            PolicyKind::Identity => "identity-based policy",
            PolicyKind::Session => "session policy",
        };
        match self {
            Denial::NotAllowedBy(which) => format!("no {} allows the {action} action", kind(which)),
            Denial::ExplicitDeny(which) => format!("with an explicit deny in a {}", kind(which)),
        }
    }
}

impl AccessKey {
    /// A key of the user `testkit` in [`DEFAULT_ACCOUNT`], with full access.
    pub fn new(id: &str, secret: &str) -> AccessKey {
        AccessKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
            identity: user_identity(DEFAULT_ACCOUNT, "testkit"),
            policy: None,
        }
    }

    /// The key belongs to user `name` of [`DEFAULT_ACCOUNT`].
    pub fn user(mut self, name: &str) -> AccessKey {
        self.identity = user_identity(DEFAULT_ACCOUNT, name);
        self
    }

    /// The key belongs to user `name` of `account`.
    pub fn user_in(mut self, account: &str, name: &str) -> AccessKey {
        self.identity = user_identity(account, name);
        self
    }

    /// Bounds the key by `policy` (such as [`Policy::read_only`]).
    pub fn policy(mut self, policy: Policy) -> AccessKey {
        self.policy = Some(policy);
        self
    }

    /// The identity GetCallerIdentity answers for this key.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

impl Role {
    /// A role (`arn:aws:iam::<account>:role/<name>`) with this permission policy, trusting no
    /// one yet, requiring no external ID, with AWS's default maximum session of one hour.
    pub fn new(arn: &str, policy: Policy) -> Role {
        Role {
            arn: arn.to_owned(),
            role_id: format!("AROA{}", random_text(17, UPPER_ALPHANUMERIC)),
            trusted: Vec::new(),
            external_id: None,
            max_session: ROLE_CHAINING_LIMIT,
            policy,
        }
    }

    /// Lets `principal` assume the role: an access key id, a user's ARN, or a role's ARN (for
    /// that role's sessions: role chaining).
    pub fn trust(mut self, principal: &str) -> Role {
        self.trusted.push(principal.to_owned());
        self
    }

    /// Requires this `sts:ExternalId` (the trust policy's `StringEquals` condition).
    pub fn external_id(mut self, external_id: &str) -> Role {
        self.external_id = Some(external_id.to_owned());
        self
    }

    /// The role's `MaxSessionDuration`.
    pub fn max_session(mut self, max_session: Duration) -> Role {
        self.max_session = max_session;
        self
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }
}

impl fmt::Debug for Iam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let directory = self.directory();
        f.debug_struct("Iam")
            .field("credentials", &directory.credentials.len())
            .field("roles", &directory.roles.keys().collect::<Vec<_>>())
            .field("clock", &self.shared.clock)
            .finish()
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("identity", &self.identity)
            .field("policy", &self.policy)
            .finish()
    }
}

impl fmt::Debug for TemporaryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("session_token", &"[redacted]")
            .field("expiration", &self.expiration)
            .finish()
    }
}

const UPPER_ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn issue(
    directory: &mut Directory,
    expires_at: SystemTime,
    identity: Identity,
    policies: Vec<BoundingPolicy>,
    is_role_session: bool,
) -> TemporaryCredentials {
    let access_key_id = format!("ASIA{}", random_text(16, UPPER_ALPHANUMERIC));
    let secret = random_text(40, SECRET_ALPHABET);
    // Real tokens run to several hundred characters and vary in length: clients must not cap them.
    let token = format!("IQoJb3JpZ2luX2Vj{}", random_text(320, SECRET_ALPHABET));
    directory.credentials.insert(
        access_key_id.clone(),
        Credential::Session(Session {
            secret: secret.clone(),
            token: token.clone(),
            expires_at,
            identity,
            policies,
            is_role_session,
        }),
    );
    TemporaryCredentials {
        access_key_id,
        secret_access_key: secret,
        session_token: token,
        expiration: expires_at,
    }
}

fn user_identity(account: &str, name: &str) -> Identity {
    Identity {
        arn: format!("arn:aws:iam::{account}:user/{name}"),
        user_id: format!("AIDA{}", random_text(17, UPPER_ALPHANUMERIC)),
        account: account.to_owned(),
    }
}

/// `arn:aws:iam::<account>:role/<path/><name>` → (account, name).
fn role_account_and_name(arn: &str) -> (&str, &str) {
    let account = arn.split(':').nth(4).unwrap_or_default();
    let name = arn.rsplit('/').next().unwrap_or_default();
    (account, name)
}

/// A role session is trusted as its role (`…:assumed-role/<role>/<session>` → `…:role/<role>`).
fn trust_arn_of(identity: &Identity) -> String {
    let Some(rest) = identity.arn.strip_prefix("arn:aws:sts::") else {
        return identity.arn.clone();
    };
    let mut fields = rest.splitn(2, ":assumed-role/");
    let (Some(account), Some(path)) = (fields.next(), fields.next()) else {
        return identity.arn.clone();
    };
    let role = path.split('/').next().unwrap_or_default();
    format!("arn:aws:iam::{account}:role/{role}")
}

fn random_text(length: usize, alphabet: &[u8]) -> String {
    let mut bytes = vec![0u8; length];
    // The system RNG failing is not something a test can recover from.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator works");
    bytes
        .iter()
        .map(|byte| char::from(alphabet[usize::from(*byte) % alphabet.len()]))
        .collect()
}
