//! Permissions and the built-in roles that hold them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::values::{RoleName, ValidationError, printable};

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
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::ManageUserApiKeys,
        Permission::ImportOrganizationSamples,
        Permission::ManageOrganizationUsers,
        Permission::ViewAuditLog,
        Permission::VerifyApiKeys,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManageUserApiKeys => "manage_user_api_keys",
            Permission::ImportOrganizationSamples => "import_organization_samples",
            Permission::ManageOrganizationUsers => "manage_organization_users",
            Permission::ViewAuditLog => "view_audit_log",
            Permission::VerifyApiKeys => "verify_api_keys",
        }
    }

    pub fn parse(raw: &str) -> Result<Permission, ValidationError> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| {
                let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                ValidationError::new(
                    "permission",
                    format!(
                        "`{}` is not a permission; known: {}",
                        printable(raw),
                        known.join(", ")
                    ),
                )
            })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles every deployment has. Custom roles can be defined next to them.
pub const BUILT_IN_ROLES: [(&str, &[Permission]); 5] = [
    ("admin", &Permission::ALL),
    (
        "developer",
        &[
            Permission::ManageUserApiKeys,
            Permission::ImportOrganizationSamples,
        ],
    ),
    ("member", &[Permission::ImportOrganizationSamples]),
    ("auditor", &[Permission::ViewAuditLog]),
    ("service", &[Permission::VerifyApiKeys]),
];

pub const ADMIN_ROLE: &str = "admin";

pub fn built_in_permissions(role: &RoleName) -> Option<BTreeSet<Permission>> {
    BUILT_IN_ROLES
        .iter()
        .find(|(name, _)| *name == role.as_str())
        .map(|(_, permissions)| permissions.iter().copied().collect())
}
