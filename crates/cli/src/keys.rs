//! `keyledger keys create|list|delete|roll`: the caller's internal keys.

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::output::{field, items, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and never again.
    Create {
        /// A name to recognise the key by, e.g. "ci pipeline" (or `--name NAME`).
        #[arg(value_name = "NAME", required_unless_present = "name_option")]
        name: Option<String>,
        /// The same name, given as an option, as `admin users issue-key` takes it.
        #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
        name_option: Option<String>,
        /// 1d, 7d, 30d, 60d, 90d, 1y, a number of days (45d), or never.
        #[arg(long, default_value = "30d")]
        duration: String,
    },
    /// List your keys (masked).
    List,
    /// Delete keys by id; several ids are deleted together, or none if one is unknown.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Give a key a new secret; the old one keeps working for the grace period.
    Roll {
        id: String,
        /// How long the old secret keeps working: 0, 30s, 15m, 1h, 24h, up to 7d.
        #[arg(long, default_value = "0")]
        grace: String,
    },
}

pub fn run(command: &KeysCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    match command {
        KeysCommand::Create {
            name,
            name_option,
            duration,
        } => {
            let name = name.as_ref().or(name_option.as_ref());
            let created = client.post(
                "/v1/api-keys",
                &json!({ "name": name, "duration": duration }),
            )?;
            show_secret(&created, global, "Created");
        }
        KeysCommand::List => {
            let list = client.get("/v1/api-keys")?;
            if global.json {
                print_json(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&list, "keys")
                .iter()
                .map(|k| {
                    vec![
                        field(k, "id"),
                        field(k, "name"),
                        field(k, "hint"),
                        field(k, "status"),
                        time(k, "created_at", "-"),
                        time(k, "expires_at", "never"),
                        time(k, "last_used_at", "never"),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No keys. Create one with `keyledger keys create NAME`.");
            } else {
                print_table(
                    &[
                        "ID",
                        "NAME",
                        "KEY",
                        "STATUS",
                        "CREATED",
                        "EXPIRES",
                        "LAST USED",
                    ],
                    &rows,
                );
            }
        }
        KeysCommand::Delete { ids } => {
            let deleted = if let [id] = ids.as_slice() {
                client.delete(&format!("/v1/api-keys/{}", segment(id)))?
            } else {
                client.post("/v1/api-keys/delete", &json!({ "ids": ids }))?
            };
            print_deleted(&deleted, global, "key");
        }
        KeysCommand::Roll { id, grace } => {
            let rolled = client.post(
                &format!("/v1/api-keys/{}/roll", segment(id)),
                &json!({ "grace": grace }),
            )?;
            show_secret(&rolled, global, "Rolled");
        }
    }
    Ok(())
}

pub(crate) fn show_secret(created: &Value, global: &ClientArgs, verb: &str) {
    if global.json {
        print_json(created);
        return;
    }
    println!(
        "{verb} key {} \"{}\" (expires: {}).",
        field(created, "id"),
        field(created, "name"),
        time(created, "expires_at", "never")
    );
    if created
        .get("previous_valid_until")
        .is_some_and(|v| !v.is_null())
    {
        println!(
            "The previous secret keeps working until {}.",
            field(created, "previous_valid_until")
        );
    }
    println!();
    println!("    {}", field(created, "key"));
    println!();
    println!("Store it now: it will not be shown again.");
}

pub fn print_deleted(deleted: &Value, global: &ClientArgs, what: &str) {
    if global.json {
        print_json(deleted);
        return;
    }
    let ids = items(deleted, "deleted");
    let names: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    println!(
        "Deleted {} {what}{plural}: {}",
        names.len(),
        names.join(", ")
    );
}
