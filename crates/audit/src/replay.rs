//! The state as of any moment — which internal and external keys existed, with owners, expiry
//! and status at that moment, and who held which roles and permissions — and what changed
//! between two moments. Built by folding the log from seq 1, verifying the chain on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use keyledger_domain::{KeyStatus, Permission, State, Timestamp};
use keyledger_log::{Envelope, Seq};
use keyledger_vault::decode_event;
use serde::Serialize;

use crate::AuditError;
use crate::table::Table;
use crate::verify::{Problem, ProblemKind, SignerSource, Walk};

/// A point in the log's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Right after the event with this seq.
    Seq(Seq),
    /// The longest prefix of the log whose events were all recorded at or before this time.
    Time(Timestamp),
}

impl Moment {
    /// `42` or `seq:42` for a seq; RFC 3339 (`2026-11-26T16:00:00Z`) or a date for a time.
    pub fn parse(text: &str) -> Result<Moment, AuditError> {
        let text = text.trim();
        let digits = text.strip_prefix("seq:").unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse()
                .map(Moment::Seq)
                .map_err(|_| AuditError::Usage(format!("`{text}` is too large for a seq")));
        }
        Timestamp::parse_rfc3339(text)
            .map(Moment::Time)
            .map_err(|err| AuditError::Usage(format!("{err}, or a seq such as 42")))
    }

    /// Whether `envelope` lies after this moment.
    fn is_before(&self, envelope: &Envelope) -> bool {
        match self {
            Moment::Seq(seq) => envelope.seq > *seq,
            Moment::Time(time) => envelope.time_ms > time.as_millis(),
        }
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Moment::Seq(seq) => write!(f, "seq {seq}"),
            Moment::Time(time) => write!(f, "{time}"),
        }
    }
}

/// Which moment a view shows: the last event folded in and the time statuses are judged at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOf {
    /// The moment as asked.
    pub moment: String,
    /// The last event included (0: none).
    pub seq: Seq,
    /// Statuses are as of this time: the asked time, or the time of event `seq`.
    pub time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserAsOf {
    pub user: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InternalKeyAsOf {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub hint: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub status: KeyStatus,
    /// When the deletion or expiry was recorded (an expiry not yet recorded shows `expires_at`).
    pub status_changed_at: Option<Timestamp>,
    pub rolled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalKeyAsOf {
    pub id: String,
    pub owner: String,
    pub provider: String,
    pub label: String,
    pub hint: String,
    pub region: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub status: KeyStatus,
    pub status_changed_at: Option<Timestamp>,
    /// When its secret was last replaced in place (absent: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Timestamp>,
}

/// The state at one moment, as `keyledger audit replay` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateAsOf {
    pub as_of: AsOf,
    pub users: Vec<UserAsOf>,
    /// Permission → the users holding it (through any role) at that moment.
    pub permission_holders: BTreeMap<String, Vec<String>>,
    /// Custom roles defined by then, with their permissions.
    pub custom_roles: BTreeMap<String, Vec<String>>,
    pub internal_keys: Vec<InternalKeyAsOf>,
    pub external_keys: Vec<ExternalKeyAsOf>,
}

/// A key that changed between two moments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// `internal` or `external`.
    pub kind: &'static str,
    pub id: String,
    pub owner: String,
    /// The internal key's name or the external key's label.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleChange {
    pub user: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionChange {
    pub user: String,
    pub permission: String,
}

/// What changed from one moment to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDiff {
    pub from: AsOf,
    pub to: AsOf,
    pub users_created: Vec<String>,
    pub roles_granted: Vec<RoleChange>,
    pub roles_revoked: Vec<RoleChange>,
    pub permissions_gained: Vec<PermissionChange>,
    pub permissions_lost: Vec<PermissionChange>,
    pub keys_created: Vec<KeyChange>,
    pub keys_rolled: Vec<KeyChange>,
    pub keys_expired: Vec<KeyChange>,
    pub keys_deleted: Vec<KeyChange>,
}

/// The state at `moment`.
pub fn state_as_of(
    envelopes: impl IntoIterator<Item = Result<Envelope, AuditError>>,
    moment: Moment,
) -> Result<StateAsOf, AuditError> {
    let mut views = states_as_of(envelopes, &[moment])?;
    views
        .pop()
        .ok_or_else(|| AuditError::Usage("no moment given".to_owned()))
}

/// The state at each of `moments` (in the order given), in one pass over the log. The events
/// must start at seq 1; the chain is verified up to the last moment, and a damaged event before
/// it is an error rather than a silently wrong answer.
pub fn states_as_of(
    envelopes: impl IntoIterator<Item = Result<Envelope, AuditError>>,
    moments: &[Moment],
) -> Result<Vec<StateAsOf>, AuditError> {
    let mut walk = Walk::new(None, SignerSource::Unknown);
    let mut state = State::default();
    let mut last: Option<(Seq, i64)> = None;
    let mut views: Vec<Option<StateAsOf>> = vec![None; moments.len()];
    for envelope in envelopes {
        let envelope = envelope?;
        for (slot, moment) in views.iter_mut().zip(moments) {
            if slot.is_none() && moment.is_before(&envelope) {
                *slot = Some(view(&state, as_of(moment, last)));
            }
        }
        if views.iter().all(Option::is_some) {
            break;
        }
        if last.is_none() && envelope.seq != 1 {
            return Err(AuditError::Usage(format!(
                "the events start at seq {}: a replay needs the log from seq 1",
                envelope.seq
            )));
        }
        walk.check_envelope(&envelope)
            .map_err(AuditError::Damaged)?;
        let event = decode_event(&envelope.body).map_err(|detail| {
            AuditError::Damaged(Problem {
                seq: envelope.seq,
                kind: ProblemKind::Unreadable {
                    detail: format!("the body is not an event: {detail}"),
                },
            })
        })?;
        state.apply_owned(event);
        last = Some((envelope.seq, envelope.time_ms));
    }
    Ok(views
        .into_iter()
        .zip(moments)
        .map(|(slot, moment)| slot.unwrap_or_else(|| view(&state, as_of(moment, last))))
        .collect())
}

fn as_of(moment: &Moment, last: Option<(Seq, i64)>) -> AsOf {
    let (seq, last_time) = last.unwrap_or((0, 0));
    AsOf {
        moment: moment.to_string(),
        seq,
        time: match moment {
            Moment::Time(time) => *time,
            Moment::Seq(_) => Timestamp::from_millis(last_time),
        },
    }
}

/// The view of `state` with statuses judged at `as_of.time`.
pub fn view(state: &State, as_of: AsOf) -> StateAsOf {
    let now = as_of.time;
    let users: Vec<UserAsOf> = state
        .users()
        .map(|user| UserAsOf {
            user: user.id.to_string(),
            roles: user.roles.iter().map(|r| r.to_string()).collect(),
            permissions: state
                .permissions_of(&user.id)
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            created_at: user.created_at,
        })
        .collect();
    let permission_holders = Permission::ALL
        .iter()
        .map(|permission| {
            let holders = users
                .iter()
                .filter(|u| u.permissions.iter().any(|p| p == permission.as_str()))
                .map(|u| u.user.clone())
                .collect();
            (permission.as_str().to_owned(), holders)
        })
        .collect();
    let custom_roles = state
        .custom_roles()
        .map(|(role, permissions)| {
            (
                role.to_string(),
                permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            )
        })
        .collect();
    let mut internal_keys: Vec<InternalKeyAsOf> = state
        .api_keys()
        .map(|key| InternalKeyAsOf {
            id: key.id.to_string(),
            owner: key.owner.to_string(),
            name: key.name.to_string(),
            hint: key.hint.to_string(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            status: key.status_at(now),
            status_changed_at: key.status_changed_at,
            rolled_at: key.rolled_at,
        })
        .collect();
    internal_keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut external_keys: Vec<ExternalKeyAsOf> = state
        .external_keys()
        .map(|key| ExternalKeyAsOf {
            id: key.id.to_string(),
            owner: key.owner.to_string(),
            provider: key.provider().to_string(),
            label: key.label.to_string(),
            hint: key.public.hint().to_string(),
            region: key.public.region().map(ToString::to_string),
            created_at: key.created_at,
            expires_at: key.expires_at,
            status: key.status_at(now),
            status_changed_at: key.status_changed_at,
            rotated_at: state.rotated_at(&key.id),
        })
        .collect();
    external_keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    StateAsOf {
        as_of,
        users,
        permission_holders,
        custom_roles,
        internal_keys,
        external_keys,
    }
}

/// What changed from `from` to `to`.
pub fn diff(from: &StateAsOf, to: &StateAsOf) -> StateDiff {
    let before_users: BTreeMap<&str, &UserAsOf> =
        from.users.iter().map(|u| (u.user.as_str(), u)).collect();
    let mut changes = StateDiff {
        from: from.as_of.clone(),
        to: to.as_of.clone(),
        users_created: Vec::new(),
        roles_granted: Vec::new(),
        roles_revoked: Vec::new(),
        permissions_gained: Vec::new(),
        permissions_lost: Vec::new(),
        keys_created: Vec::new(),
        keys_rolled: Vec::new(),
        keys_expired: Vec::new(),
        keys_deleted: Vec::new(),
    };
    let empty = Vec::new();
    for user in &to.users {
        let before = before_users.get(user.user.as_str());
        if before.is_none() {
            changes.users_created.push(user.user.clone());
        }
        let (roles_before, permissions_before) =
            before.map_or((&empty, &empty), |b| (&b.roles, &b.permissions));
        let (granted, revoked) = set_changes(roles_before, &user.roles);
        let (gained, lost) = set_changes(permissions_before, &user.permissions);
        let role = |role: String| RoleChange {
            user: user.user.clone(),
            role,
        };
        let permission = |permission: String| PermissionChange {
            user: user.user.clone(),
            permission,
        };
        changes.roles_granted.extend(granted.into_iter().map(role));
        changes.roles_revoked.extend(revoked.into_iter().map(role));
        changes
            .permissions_gained
            .extend(gained.into_iter().map(permission));
        changes
            .permissions_lost
            .extend(lost.into_iter().map(permission));
    }

    let internal_before: BTreeMap<&str, &InternalKeyAsOf> = from
        .internal_keys
        .iter()
        .map(|k| (k.id.as_str(), k))
        .collect();
    for key in &to.internal_keys {
        let change = || KeyChange {
            kind: "internal",
            id: key.id.clone(),
            owner: key.owner.clone(),
            name: key.name.clone(),
        };
        let before = internal_before.get(key.id.as_str());
        if before.is_none() {
            changes.keys_created.push(change());
        }
        if key.rolled_at.is_some() && before.is_none_or(|b| b.rolled_at != key.rolled_at) {
            changes.keys_rolled.push(change());
        }
        let status_before = before.map(|b| b.status);
        push_status_change(&mut changes, status_before, key.status, change());
    }
    let external_before: BTreeMap<&str, &ExternalKeyAsOf> = from
        .external_keys
        .iter()
        .map(|k| (k.id.as_str(), k))
        .collect();
    for key in &to.external_keys {
        let change = KeyChange {
            kind: "external",
            id: key.id.clone(),
            owner: key.owner.clone(),
            name: key.label.clone(),
        };
        let before = external_before.get(key.id.as_str());
        if before.is_none() {
            changes.keys_created.push(change.clone());
        }
        // A rotation replaced its secret in place: listed with the internal keys' rolls.
        if key.rotated_at.is_some() && before.is_none_or(|b| b.rotated_at != key.rotated_at) {
            changes.keys_rolled.push(change.clone());
        }
        push_status_change(&mut changes, before.map(|b| b.status), key.status, change);
    }
    changes
}

fn push_status_change(
    changes: &mut StateDiff,
    before: Option<KeyStatus>,
    after: KeyStatus,
    change: KeyChange,
) {
    if before == Some(after) {
        return;
    }
    match after {
        KeyStatus::Expired => changes.keys_expired.push(change),
        KeyStatus::Deleted => changes.keys_deleted.push(change),
        KeyStatus::Active => {}
    }
}

fn set_changes(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let before: BTreeSet<&String> = before.iter().collect();
    let after: BTreeSet<&String> = after.iter().collect();
    (
        after.difference(&before).map(|s| (*s).clone()).collect(),
        before.difference(&after).map(|s| (*s).clone()).collect(),
    )
}

impl StateAsOf {
    /// The tables `keyledger audit replay` prints.
    pub fn render(&self) -> String {
        let mut out = format!(
            "State as of {} (through seq {}; statuses at {})\n",
            self.as_of.moment, self.as_of.seq, self.as_of.time
        );
        out.push_str("\nUsers\n");
        let mut users = Table::new(&["user", "roles", "permissions", "created"]);
        for user in &self.users {
            users.row(vec![
                user.user.clone(),
                list(&user.roles),
                list(&user.permissions),
                user.created_at.to_string(),
            ]);
        }
        out.push_str(&users.render());
        if !self.custom_roles.is_empty() {
            out.push_str("\nCustom roles\n");
            let mut roles = Table::new(&["role", "permissions"]);
            for (role, permissions) in &self.custom_roles {
                roles.row(vec![role.clone(), list(permissions)]);
            }
            out.push_str(&roles.render());
        }
        out.push_str("\nPermission holders\n");
        let mut holders = Table::new(&["permission", "users"]);
        for (permission, users) in &self.permission_holders {
            holders.row(vec![permission.clone(), list(users)]);
        }
        out.push_str(&holders.render());
        out.push_str("\nInternal keys\n");
        let mut keys = Table::new(&[
            "id", "owner", "name", "hint", "created", "expires", "status", "changed", "rolled",
        ]);
        for key in &self.internal_keys {
            keys.row(vec![
                key.id.clone(),
                key.owner.clone(),
                key.name.clone(),
                key.hint.clone(),
                key.created_at.to_string(),
                time_or_never(key.expires_at),
                key.status.as_str().to_owned(),
                time_or_dash(key.status_changed_at),
                time_or_dash(key.rolled_at),
            ]);
        }
        out.push_str(&if keys.is_empty() {
            "(none)\n".to_owned()
        } else {
            keys.render()
        });
        out.push_str("\nExternal keys\n");
        let mut keys = Table::new(&[
            "id", "owner", "provider", "label", "hint", "region", "created", "expires", "status",
            "changed",
        ]);
        for key in &self.external_keys {
            keys.row(vec![
                key.id.clone(),
                key.owner.clone(),
                key.provider.clone(),
                key.label.clone(),
                key.hint.clone(),
                key.region.clone().unwrap_or_else(|| "-".to_owned()),
                key.created_at.to_string(),
                time_or_never(key.expires_at),
                key.status.as_str().to_owned(),
                time_or_dash(key.status_changed_at),
            ]);
        }
        out.push_str(&if keys.is_empty() {
            "(none)\n".to_owned()
        } else {
            keys.render()
        });
        out
    }
}

impl StateDiff {
    /// The table `keyledger audit replay --diff A B` prints.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Changes from {} (through seq {}) to {} (through seq {})\n\n",
            self.from.moment, self.from.seq, self.to.moment, self.to.seq
        );
        let mut table = Table::new(&["change", "who", "what"]);
        for user in &self.users_created {
            table.row(vec!["user created".into(), user.clone(), String::new()]);
        }
        for (label, roles) in [
            ("role granted", &self.roles_granted),
            ("role revoked", &self.roles_revoked),
        ] {
            for change in roles {
                table.row(vec![label.into(), change.user.clone(), change.role.clone()]);
            }
        }
        for (label, permissions) in [
            ("permission gained", &self.permissions_gained),
            ("permission lost", &self.permissions_lost),
        ] {
            for change in permissions {
                table.row(vec![
                    label.into(),
                    change.user.clone(),
                    change.permission.clone(),
                ]);
            }
        }
        for (label, keys) in [
            ("key created", &self.keys_created),
            ("key rolled", &self.keys_rolled),
            ("key expired", &self.keys_expired),
            ("key deleted", &self.keys_deleted),
        ] {
            for key in keys {
                table.row(vec![
                    label.into(),
                    key.owner.clone(),
                    format!("{} {} ({})", key.kind, key.id, key.name),
                ]);
            }
        }
        out.push_str(&if table.is_empty() {
            "(no changes)\n".to_owned()
        } else {
            table.render()
        });
        out
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn time_or_never(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "never".to_owned(), |t| t.to_string())
}

fn time_or_dash(time: Option<Timestamp>) -> String {
    time.map_or_else(|| "-".to_owned(), |t| t.to_string())
}
