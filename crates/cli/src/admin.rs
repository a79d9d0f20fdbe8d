//! `keyledger admin`: the first admin (`bootstrap`, local only, like Vault's `init`) and, over
//! HTTP as an admin, users and roles.

use std::path::PathBuf;

use keyledger_domain::UserId;
use keyledger_vault::VaultError;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::config::Config;
use crate::exit::{Exit, Failure};
use crate::local;
use crate::output::{field, items, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create the first admin and print its key. Local only: opens the data directory directly,
    /// so the server must not be running.
    Bootstrap {
        /// Configuration file (merged over the embedded default).
        #[arg(long, env = "KEYLEDGER_CONFIG")]
        config: Option<PathBuf>,
        /// The admin's user name [default: bootstrap.admin_user, `admin`].
        #[arg(long)]
        user: Option<String>,
    },
    /// Users and their roles (needs `manage_organization_users`).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Custom roles (needs `manage_organization_users`).
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Every key of the organisation (`audit_organization_keys`), and revoking any of them
    /// (`revoke_organization_keys`).
    #[command(subcommand)]
    Keys(crate::admin_keys::AdminKeysCommand),
    /// Master-key rotation, backups and restores (local, on the data directory).
    #[command(flatten)]
    Audit(crate::audit::AdminAuditCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Create a user, optionally with roles.
    Create {
        user: String,
        #[arg(long)]
        display_name: Option<String>,
        /// A role to grant (repeatable): admin, developer, member, auditor, service, or a custom one.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List users with their roles.
    List,
    /// Grant a role; it takes effect on the user's next request.
    Grant { user: String, role: String },
    /// Revoke a role; it takes effect on the user's next request.
    Revoke { user: String, role: String },
    /// Create an internal key for a user (their first key, or a service account's); printed once.
    IssueKey {
        user: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// 1d, 7d, 30d, 60d, 90d, 1y, a number of days (45d), or never.
        #[arg(long, default_value = "30d")]
        duration: String,
    },
    /// Offboard a user in one step: deactivated, every key revoked, external secrets destroyed,
    /// sessions ended.
    Deactivate {
        user: String,
        /// Why, for the record (1 to 300 characters).
        #[arg(long)]
        reason: String,
    },
    /// Reactivate a user: their roles apply again; their revoked keys stay revoked.
    Reactivate { user: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum RolesCommand {
    /// List built-in and custom roles.
    List,
    /// Define (or redefine) a custom role.
    Define {
        role: String,
        /// A permission (repeatable), e.g. manage_user_api_keys.
        #[arg(long = "permission")]
        permissions: Vec<String>,
    },
}

pub fn run(command: &AdminCommand, global: &ClientArgs) -> anyhow::Result<()> {
    match command {
        AdminCommand::Bootstrap { config, user } => {
            bootstrap(config.as_deref(), user.as_deref(), global)
        }
        AdminCommand::Users(users) => run_users(users, global),
        AdminCommand::Roles(roles) => run_roles(roles, global),
        AdminCommand::Keys(keys) => crate::admin_keys::run(keys, global),
        AdminCommand::Audit(command) => crate::audit::run_admin(command, global),
    }
}

fn bootstrap(
    config: Option<&std::path::Path>,
    user: Option<&str>,
    global: &ClientArgs,
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let admin = UserId::parse(user.unwrap_or(&config.bootstrap.admin_user))
        .map_err(|err| Failure::new(Exit::Usage, err.to_string()))?;
    let master = local::master_key(&config)?;
    let vault = local::open_vault(&config, &master)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let created = runtime.block_on(vault.bootstrap(admin.clone())).map_err(|err| match err {
        VaultError::Domain(keyledger_domain::DomainError::AlreadyBootstrapped) => Failure::new(
            Exit::Conflict,
            "the vault is already bootstrapped: an admin exists. Create more users with `keyledger admin users create`",
        ),
        other => Failure::new(Exit::Server, other.to_string()),
    })?;
    if global.json {
        print_json(&json!({
            "user": admin.as_str(),
            "id": created.id.as_str(),
            "key": created.secret.expose(),
            "hint": created.hint.as_str(),
            "created_at": created.created_at,
            "expires_at": created.expires_at,
        }));
    } else {
        local::print_admin_key(&admin, &created);
    }
    Ok(())
}

fn run_users(command: &UsersCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    let answer = match command {
        UsersCommand::Create {
            user,
            display_name,
            roles,
        } => {
            let mut body = json!({ "user": user, "roles": roles });
            if let Some(name) = display_name {
                body["display_name"] = Value::String(name.clone());
            }
            client.post("/v1/users", &body)?
        }
        UsersCommand::List => {
            let list = client.get("/v1/users")?;
            if global.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = items(&list, "users")
                    .iter()
                    .map(|u| {
                        vec![
                            field(u, "user"),
                            field(u, "display_name"),
                            field(u, "roles"),
                            field(u, "permissions"),
                            time(u, "created_at", "-"),
                        ]
                    })
                    .collect();
                print_table(&["USER", "NAME", "ROLES", "PERMISSIONS", "CREATED"], &rows);
            }
            return Ok(());
        }
        UsersCommand::Grant { user, role } => client.put(
            &format!("/v1/users/{}/roles/{}", segment(user), segment(role)),
            None,
        )?,
        UsersCommand::Revoke { user, role } => client.delete(&format!(
            "/v1/users/{}/roles/{}",
            segment(user),
            segment(role)
        ))?,
        UsersCommand::IssueKey {
            user,
            name,
            duration,
        } => {
            let created = client.post(
                &format!("/v1/users/{}/api-keys", segment(user)),
                &json!({ "name": name, "duration": duration }),
            )?;
            crate::keys::show_secret(&created, global, &format!("Issued for {user}:"));
            return Ok(());
        }
        UsersCommand::Deactivate { user, reason } => {
            let answer = client.post(
                &format!("/v1/users/{}/deactivate", segment(user)),
                &json!({ "reason": reason }),
            )?;
            if global.json {
                print_json(&answer);
            } else {
                let count = |name: &str| answer[name].as_array().map_or(0, Vec::len);
                println!(
                    "{user} is deactivated: {} internal and {} external keys revoked.",
                    count("revoked_api_keys"),
                    count("revoked_external_keys")
                );
            }
            return Ok(());
        }
        UsersCommand::Reactivate { user } => client.post(
            &format!("/v1/users/{}/reactivate", segment(user)),
            &json!({}),
        )?,
    };
    if global.json {
        print_json(&answer);
    } else {
        println!(
            "{}: roles {}; permissions {}",
            field(&answer, "user"),
            field(&answer, "roles"),
            field(&answer, "permissions")
        );
    }
    Ok(())
}

fn run_roles(command: &RolesCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    match command {
        RolesCommand::List => {
            let list = client.get("/v1/roles")?;
            if global.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = items(&list, "roles")
                    .iter()
                    .map(|r| {
                        let kind = if r.get("built_in").and_then(Value::as_bool).unwrap_or(false) {
                            "built-in"
                        } else {
                            "custom"
                        };
                        vec![field(r, "role"), kind.to_owned(), field(r, "permissions")]
                    })
                    .collect();
                print_table(&["ROLE", "KIND", "PERMISSIONS"], &rows);
            }
        }
        RolesCommand::Define { role, permissions } => {
            let answer = client.put(
                &format!("/v1/roles/{}", segment(role)),
                Some(&json!({ "permissions": permissions })),
            )?;
            if global.json {
                print_json(&answer);
            } else {
                println!(
                    "Role {}: {}",
                    field(&answer, "role"),
                    field(&answer, "permissions")
                );
            }
        }
    }
    Ok(())
}
