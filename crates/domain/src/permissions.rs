//! Permissions and the built-in roles that hold them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::values::{RoleName, ValidationError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// The platform's "Manage API Keys": create, list, delete one's own internal and external keys.
    ManageUserApiKeys,
    /// Start ingestions of sample files with one's own external keys.
    ImportOrganizationSamples,
    /// Create users, grant and revoke roles.
    ManageOrganizationUsers,
    /// Read, export and replay the event log.
    ViewAuditLog,
    /// Verify other people's internal keys (for platform services).
    VerifyApiKeys,
    /// Run ingestion jobs handed out by the work queue: lease the credential of a job one was
    /// given and report its files (`keyledger worker` processes; nothing else).
    RunIngestionJobs,
    /// See every internal and external key of the organisation: the inventory.
    AuditOrganizationKeys,
    /// Revoke anyone's internal or external key, with a reason.
    RevokeOrganizationKeys,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::ManageUserApiKeys,
        Permission::ImportOrganizationSamples,
        Permission::ManageOrganizationUsers,
        Permission::ViewAuditLog,
        Permission::VerifyApiKeys,
        Permission::RunIngestionJobs,
        Permission::AuditOrganizationKeys,
        Permission::RevokeOrganizationKeys,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManageUserApiKeys => "manage_user_api_keys",
            Permission::ImportOrganizationSamples => "import_organization_samples",
            Permission::ManageOrganizationUsers => "manage_organization_users",
            Permission::ViewAuditLog => "view_audit_log",
            Permission::VerifyApiKeys => "verify_api_keys",
            Permission::RunIngestionJobs => "run_ingestion_jobs",
            Permission::AuditOrganizationKeys => "audit_organization_keys",
            Permission::RevokeOrganizationKeys => "revoke_organization_keys",
        }
    }

    /// What the permission allows, in the words a refusal uses.
    pub fn allows(self) -> &'static str {
        match self {
            Permission::ManageUserApiKeys => {
                "create, list and delete your own internal and external keys"
            }
            Permission::ImportOrganizationSamples => "import sample files with your external keys",
            Permission::ManageOrganizationUsers => "create users, grant and revoke roles",
            Permission::ViewAuditLog => "read, export, verify and replay the event log",
            Permission::VerifyApiKeys => "verify other people's internal keys",
            Permission::RunIngestionJobs => {
                "lease the credential of an ingestion job handed to you and report its files"
            }
            Permission::AuditOrganizationKeys => {
                "list every internal and external key of the organisation"
            }
            Permission::RevokeOrganizationKeys => "revoke anyone's internal or external key",
        }
    }

    /// The built-in role with the fewest permissions that grants this one: what a refusal
    /// suggests granting.
    pub fn smallest_built_in_role(self) -> &'static str {
        BUILT_IN_ROLES
            .iter()
            .filter(|(_, permissions)| permissions.contains(&self))
            .min_by_key(|(_, permissions)| permissions.len())
            .map_or(ADMIN_ROLE, |(name, _)| name)
    }

    pub fn parse(raw: &str) -> Result<Permission, ValidationError> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| {
                let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                ValidationError::new(
                    "permission",
                    format!("not a permission; known: {}", known.join(", ")),
                )
            })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions, as a bitmask: checking one costs no allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub const EMPTY: PermissionSet = PermissionSet(0);

    pub const fn of(permissions: &[Permission]) -> PermissionSet {
        let mut bits = 0;
        let mut i = 0;
        while i < permissions.len() {
            bits |= 1 << permissions[i] as u8;
            i += 1;
        }
        PermissionSet(bits)
    }

    pub fn contains(&self, permission: &Permission) -> bool {
        self.0 & (1 << *permission as u8) != 0
    }

    pub fn insert(&mut self, permission: Permission) {
        self.0 |= 1 << permission as u8;
    }

    pub fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    /// The permissions in both sets: what a scoped key may do of what its owner holds.
    pub fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    /// Whether every permission of `self` is in `other`.
    pub fn is_subset(&self, other: &PermissionSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// In the order of [`Permission::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        Permission::ALL.into_iter().filter(|p| self.contains(p))
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::EMPTY;
        iter.into_iter().for_each(|p| set.insert(p));
        set
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Permission>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// The roles every deployment has. Custom roles can be defined next to them.
///
/// Built-in roles are defined here, not in the log: a data directory written by an older
/// version gets these definitions when the new version opens it (decision 0012). Whoever may
/// import samples may also store the external key an import uses (`member`, `developer`).
pub const BUILT_IN_ROLES: [(&str, &[Permission]); 6] = [
    ("admin", &Permission::ALL),
    (
        "member",
        &[
            Permission::ManageUserApiKeys,
            Permission::ImportOrganizationSamples,
        ],
    ),
    // The same as `member` since decision 0012; kept so that existing grants keep their meaning.
    (
        "developer",
        &[
            Permission::ManageUserApiKeys,
            Permission::ImportOrganizationSamples,
        ],
    ),
    ("auditor", &[Permission::ViewAuditLog]),
    ("service", &[Permission::VerifyApiKeys]),
    // `keyledger worker` processes (decision 0025): this permission and nothing else.
    ("worker", &[Permission::RunIngestionJobs]),
];

pub const ADMIN_ROLE: &str = "admin";

pub fn built_in_permissions(role: &RoleName) -> Option<PermissionSet> {
    BUILT_IN_ROLES
        .iter()
        .find(|(name, _)| *name == role.as_str())
        .map(|(_, permissions)| PermissionSet::of(permissions))
}
