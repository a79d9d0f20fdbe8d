//! The inventory: every internal and external key of the organisation, for the people who run
//! it (decision 0026). A read model over the projection: filters, a sort, and keyset cursors that
//! stay correct while keys come and go between pages.

use std::cmp::Ordering;

use base64::Engine;
use keyledger_domain::{
    FromTrusted, KeyId, KeyStatus, MILLIS_PER_DAY, Permission, Provider, State, Timestamp, UserId,
    ValidationError,
};
use serde::Serialize;

use crate::Vault;

/// Internal (`kl_` keys) or external (stored provider credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryKind {
    Internal,
    External,
}

/// A key's status as the inventory shows it: `revoked` tells an administrator's revocation (or
/// an offboarding) from the owner's own deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryStatus {
    Active,
    Expired,
    Deleted,
    Revoked,
}

impl InventoryStatus {
    pub fn parse(raw: &str) -> Result<InventoryStatus, ValidationError> {
        match raw {
            "active" => Ok(InventoryStatus::Active),
            "expired" => Ok(InventoryStatus::Expired),
            "deleted" => Ok(InventoryStatus::Deleted),
            "revoked" => Ok(InventoryStatus::Revoked),
            _ => Err(ValidationError::new(
                "status",
                "use `active`, `expired`, `deleted` or `revoked`",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InventoryStatus::Active => "active",
            InventoryStatus::Expired => "expired",
            InventoryStatus::Deleted => "deleted",
            InventoryStatus::Revoked => "revoked",
        }
    }
}

/// What the inventory is sorted by; ties are broken by id, so the order is total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InventorySort {
    #[default]
    Created,
    Expires,
    LastUsed,
    Owner,
    Name,
}

impl InventorySort {
    /// `created`, `expires`, `last_used`, `owner` or `name`; a leading `-` sorts descending.
    pub fn parse(raw: &str) -> Result<(InventorySort, bool), ValidationError> {
        let (descending, name) = match raw.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, raw),
        };
        let sort = match name {
            "created" => InventorySort::Created,
            "expires" => InventorySort::Expires,
            "last_used" => InventorySort::LastUsed,
            "owner" => InventorySort::Owner,
            "name" => InventorySort::Name,
            _ => {
                return Err(ValidationError::new(
                    "sort",
                    "use `created`, `expires`, `last_used`, `owner` or `name`, with a leading `-` \
                     for descending",
                ));
            }
        };
        Ok((sort, descending))
    }
}

/// A page request. `provider` is `None` for every kind; `Some(None)` for internal keys only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryQuery {
    pub user: Option<UserId>,
    pub status: Option<InventoryStatus>,
    pub provider: Option<Option<Provider>>,
    pub expiring_within_days: Option<u32>,
    pub sort: InventorySort,
    pub descending: bool,
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Default for InventoryQuery {
    fn default() -> Self {
        InventoryQuery {
            user: None,
            status: None,
            provider: None,
            expiring_within_days: None,
            sort: InventorySort::default(),
            descending: false,
            limit: InventoryQuery::DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl InventoryQuery {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 500;
}

/// One key as the inventory shows it: never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InventoryItem {
    pub kind: InventoryKind,
    pub id: String,
    pub owner: UserId,
    /// Whether the owner is deactivated.
    pub owner_deactivated: bool,
    /// The key's name (internal) or label (external).
    pub name: String,
    pub hint: String,
    /// `None` for internal keys.
    pub provider: Option<Provider>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub status: InventoryStatus,
    pub revoked_reason: Option<String>,
    /// Internal keys: the permissions the key may use now (its scopes ∩ its owner's
    /// permissions); external keys: empty.
    pub effective_permissions: Vec<Permission>,
    /// Internal keys: the scopes it was created with (`None`: unscoped).
    pub scopes: Option<Vec<Permission>>,
    pub networks: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InventoryPage {
    pub keys: Vec<InventoryItem>,
    /// Pass as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// How many keys match the filters, over all pages.
    pub total: usize,
}

impl Vault {
    /// A page of the inventory, as of now.
    pub fn inventory(&self, query: &InventoryQuery) -> Result<InventoryPage, ValidationError> {
        let now = self.now();
        let pending = self.pending_usage();
        let after = query
            .cursor
            .as_deref()
            .map(|cursor| Cursor::parse(cursor, query))
            .transpose()?;
        let mut items = self.read(|state| everything(state, now));
        for item in &mut items {
            let key = <KeyId as FromTrusted>::from_trusted(item.id.clone());
            if item.kind == InventoryKind::Internal
                && let Some((at, _)) = pending.get(&key)
            {
                item.last_used_at = item.last_used_at.max(Some(*at));
            }
        }
        items.retain(|item| matches(item, query, now));
        items.sort_by(|a, b| order(a, b, query));
        let total = items.len();
        if let Some(after) = after {
            items.retain(|item| order_key_after(item, &after, query));
        }
        let limit = query.limit.clamp(1, InventoryQuery::MAX_LIMIT);
        let next_cursor = (items.len() > limit).then(|| Cursor::of(&items[limit - 1], query));
        items.truncate(limit);
        Ok(InventoryPage {
            keys: items,
            next_cursor,
            total,
        })
    }
}

fn everything(state: &State, now: Timestamp) -> Vec<InventoryItem> {
    let deactivated = |user: &UserId| state.user(user).is_some_and(|u| u.deactivated.is_some());
    let mut items: Vec<InventoryItem> = state
        .api_keys()
        .map(|key| {
            let held = state.permissions_of(&key.owner);
            let effective = key.scopes.map_or(held, |s| s.intersection(held));
            InventoryItem {
                kind: InventoryKind::Internal,
                id: key.id.to_string(),
                owner: key.owner.clone(),
                owner_deactivated: deactivated(&key.owner),
                name: key.name.to_string(),
                hint: key.hint.to_string(),
                provider: None,
                created_at: key.created_at,
                expires_at: key.expires_at,
                last_used_at: key.last_used_at,
                status: status(key.status_at(now), key.revoked.is_some()),
                revoked_reason: key.revoked.as_ref().map(|r| r.reason.to_string()),
                effective_permissions: if key.status_at(now) == KeyStatus::Active {
                    effective.iter().collect()
                } else {
                    Vec::new()
                },
                scopes: key.scopes.map(|s| s.iter().collect()),
                networks: key.networks.iter().map(ToString::to_string).collect(),
            }
        })
        .collect();
    items.extend(state.external_keys().map(|key| InventoryItem {
        kind: InventoryKind::External,
        id: key.id.to_string(),
        owner: key.owner.clone(),
        owner_deactivated: deactivated(&key.owner),
        name: key.label.to_string(),
        hint: key.public.hint().to_string(),
        provider: Some(key.provider()),
        created_at: key.created_at,
        expires_at: key.expires_at,
        last_used_at: key.last_used_at,
        status: status(key.status_at(now), key.revoked.is_some()),
        revoked_reason: key.revoked.as_ref().map(|r| r.reason.to_string()),
        effective_permissions: Vec::new(),
        scopes: None,
        networks: Vec::new(),
    }));
    items
}

fn status(status: KeyStatus, revoked: bool) -> InventoryStatus {
    match status {
        _ if revoked => InventoryStatus::Revoked,
        KeyStatus::Active => InventoryStatus::Active,
        KeyStatus::Expired => InventoryStatus::Expired,
        KeyStatus::Deleted => InventoryStatus::Deleted,
    }
}

fn matches(item: &InventoryItem, query: &InventoryQuery, now: Timestamp) -> bool {
    if query.user.as_ref().is_some_and(|user| &item.owner != user) {
        return false;
    }
    if query.status.is_some_and(|status| item.status != status) {
        return false;
    }
    if query
        .provider
        .is_some_and(|provider| item.provider != provider)
    {
        return false;
    }
    if let Some(days) = query.expiring_within_days {
        let horizon = now.plus_millis(i64::from(days) * MILLIS_PER_DAY);
        let expiring = item.status == InventoryStatus::Active
            && item.expires_at.is_some_and(|at| at <= horizon);
        if !expiring {
            return false;
        }
    }
    true
}

/// The value an item is sorted by: a time (missing expiries sort as the farthest future,
/// missing uses as the farthest past) or a text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    Time(i64),
    Text(String),
}

fn sort_value(item: &InventoryItem, sort: InventorySort) -> SortValue {
    match sort {
        InventorySort::Created => SortValue::Time(item.created_at.as_millis()),
        InventorySort::Expires => {
            SortValue::Time(item.expires_at.map_or(i64::MAX, Timestamp::as_millis))
        }
        InventorySort::LastUsed => {
            SortValue::Time(item.last_used_at.map_or(i64::MIN, Timestamp::as_millis))
        }
        InventorySort::Owner => SortValue::Text(item.owner.to_string()),
        InventorySort::Name => SortValue::Text(item.name.clone()),
    }
}

fn compare(a: (&SortValue, &str), b: (&SortValue, &str), descending: bool) -> Ordering {
    let ordering = a.0.cmp(b.0).then_with(|| a.1.cmp(b.1));
    if descending {
        ordering.reverse()
    } else {
        ordering
    }
}

fn order(a: &InventoryItem, b: &InventoryItem, query: &InventoryQuery) -> Ordering {
    compare(
        (&sort_value(a, query.sort), &a.id),
        (&sort_value(b, query.sort), &b.id),
        query.descending,
    )
}

fn order_key_after(item: &InventoryItem, cursor: &Cursor, query: &InventoryQuery) -> bool {
    compare(
        (&sort_value(item, query.sort), &item.id),
        (&cursor.value, &cursor.id),
        query.descending,
    ) == Ordering::Greater
}

/// Where a page ended: the last item's sort value and id (keyset pagination), opaque to
/// clients (base64url of `t<millis>|<id>` or `s<hex text>|<id>`).
struct Cursor {
    value: SortValue,
    id: String,
}

impl Cursor {
    fn of(item: &InventoryItem, query: &InventoryQuery) -> String {
        let value = match sort_value(item, query.sort) {
            SortValue::Time(millis) => format!("t{millis}"),
            SortValue::Text(text) => format!("s{}", keyledger_domain::public::hex(text.as_bytes())),
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{value}|{}", item.id))
    }

    fn parse(raw: &str, query: &InventoryQuery) -> Result<Cursor, ValidationError> {
        let invalid = || {
            ValidationError::new(
                "cursor",
                "not a cursor of this listing: pass `next_cursor` from the previous page, with the \
                 same sort",
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (value, id) = text.split_once('|').ok_or_else(invalid)?;
        let time_sort = matches!(
            query.sort,
            InventorySort::Created | InventorySort::Expires | InventorySort::LastUsed
        );
        let value = match (value.split_at_checked(1), time_sort) {
            (Some(("t", millis)), true) => SortValue::Time(millis.parse().map_err(|_| invalid())?),
            (Some(("s", hex)), false) => SortValue::Text(unhex(hex).ok_or_else(invalid)?),
            _ => return Err(invalid()),
        };
        Ok(Cursor {
            value,
            id: id.to_owned(),
        })
    }
}

fn unhex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
