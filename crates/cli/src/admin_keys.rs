//! `keyledger admin keys list|revoke`: the inventory of every key of the organisation
//! (`audit_organization_keys`) and revoking anyone's key with a reason
//! (`revoke_organization_keys`). Decision 0026.

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::output::{field, items, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum AdminKeysCommand {
    /// Every internal and external key of the organisation, with owner, status and use.
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
        /// active, expired, deleted or revoked.
        #[arg(long)]
        status: Option<String>,
        /// internal, aws or dnanexus.
        #[arg(long)]
        provider: Option<String>,
        /// Only active keys that expire within this many days.
        #[arg(long, value_name = "DAYS")]
        expiring_within: Option<u32>,
        /// created, expires, last_used, owner or name; a leading `-` sorts descending.
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        /// Keys per page (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this cursor (`next_cursor` of a previous page); without it, every page
        /// is fetched.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Revoke anyone's key (`key_…` or `ext_…`); the reason is recorded in the event. An
    /// external key's secret is destroyed.
    Revoke {
        /// The key's id.
        id: String,
        /// Why, for the record (1 to 300 characters).
        #[arg(long)]
        reason: String,
    },
}

pub fn run(command: &AdminKeysCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    match command {
        AdminKeysCommand::List {
            user,
            status,
            provider,
            expiring_within,
            sort,
            limit,
            cursor,
        } => {
            let mut query = vec![format!("limit={limit}")];
            let mut add = |name: &str, value: Option<String>| {
                if let Some(value) = value {
                    query.push(format!("{name}={}", segment(&value)));
                }
            };
            add("user", user.clone());
            add("status", status.clone());
            add("provider", provider.clone());
            add(
                "expiring_within_days",
                expiring_within.map(|d| d.to_string()),
            );
            add("sort", sort.clone());
            let base = format!("/v1/admin/keys?{}", query.join("&"));
            // One page when a cursor is given, else all of them.
            let mut keys: Vec<Value> = Vec::new();
            let mut next = cursor.clone();
            let (total, next_cursor) = loop {
                let path = match &next {
                    Some(cursor) => format!("{base}&cursor={}", segment(cursor)),
                    None => base.clone(),
                };
                let page = client.get(&path)?;
                keys.extend(items(&page, "keys").iter().cloned());
                match (cursor, page["next_cursor"].as_str()) {
                    (None, Some(more)) => next = Some(more.to_owned()),
                    _ => break (page["total"].clone(), page["next_cursor"].clone()),
                }
            };
            if global.json {
                print_json(&json!({ "keys": keys, "total": total, "next_cursor": next_cursor }));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    let mut owner = field(k, "owner");
                    if k["owner_deactivated"].as_bool() == Some(true) {
                        owner.push_str(" (deactivated)");
                    }
                    let mut status = field(k, "status");
                    if let Some(reason) = k["revoked_reason"].as_str() {
                        status = format!("{status}: {reason}");
                    }
                    vec![
                        field(k, "id"),
                        owner,
                        field(k, "provider"),
                        field(k, "name"),
                        field(k, "hint"),
                        status,
                        time(k, "created_at", "-"),
                        time(k, "expires_at", "never"),
                        time(k, "last_used_at", "never"),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No keys match.");
            } else {
                print_table(
                    &[
                        "ID",
                        "OWNER",
                        "PROVIDER",
                        "NAME",
                        "KEY",
                        "STATUS",
                        "CREATED",
                        "EXPIRES",
                        "LAST USED",
                    ],
                    &rows,
                );
                if let Some(more) = next_cursor.as_str() {
                    println!("More: --cursor {more}");
                }
            }
        }
        AdminKeysCommand::Revoke { id, reason } => {
            let answer = client.post(
                &format!("/v1/admin/keys/{}/revoke", segment(id)),
                &json!({ "reason": reason }),
            )?;
            if global.json {
                print_json(&answer);
            } else {
                println!("Revoked {}.", field(&answer, "revoked"));
            }
        }
    }
    Ok(())
}
