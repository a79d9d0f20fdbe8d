//! `keyledger keys create|list|delete|roll`: the caller's internal keys.
//!
//! Deleting cannot be undone, so `delete` names what it is about to delete and asks on a
//! terminal; without one it refuses unless `--yes` says the caller means it. It also warns when
//! one of the keys is the one this CLI is logged in with. Keys are named by id or by name; a
//! name that several keys share is refused rather than guessed.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::exit::{Exit, Failure};
use crate::output::{ListArgs, field, items, marked_status, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and never again.
    Create {
        /// A name to recognise the key by, e.g. "ci pipeline" (or `--name NAME`). Two of your
        /// active keys cannot share a name.
        #[arg(value_name = "NAME", required_unless_present = "name_option")]
        name: Option<String>,
        /// The same name, given as an option, as `admin users issue-key` takes it.
        #[arg(long = "name", value_name = "NAME", conflicts_with = "name")]
        name_option: Option<String>,
        /// 1d, 7d, 30d, 60d, 90d, 1y, a number of days (45d), or never.
        #[arg(long, default_value = "30d")]
        duration: String,
        /// Create a honeytoken: a key that grants nothing (every request with it is refused as
        /// with an unknown key) and whose every use is recorded as `HoneytokenUsed`.
        #[arg(long)]
        honeytoken: bool,
        /// Limit the key to one of your permissions (repeatable), e.g. verify_api_keys. What
        /// it may do is always its scopes ∩ your permissions at the time.
        #[arg(long = "scope", value_name = "PERMISSION")]
        scopes: Vec<String>,
        /// Allow the key only from this client network (repeatable), e.g. 203.0.113.0/24.
        #[arg(long = "network", value_name = "CIDR")]
        networks: Vec<String>,
    },
    /// List your keys (masked). A key whose expiry was announced is marked
    /// `active, expires within 7d` (the horizon); a honeytoken `active, honeytoken`.
    List(ListArgs),
    /// Delete keys by id or name; several are deleted together, or none if one is unknown.
    Delete {
        /// Key ids (`key_…`) or names.
        #[arg(required = true, value_name = "ID_OR_NAME")]
        keys: Vec<String>,
        /// Do not ask for confirmation (needed when standard input is not a terminal).
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Give a key a new secret; the old one keeps working for the grace period.
    Roll {
        /// The key's id (`key_…`) or name.
        #[arg(value_name = "ID_OR_NAME")]
        key: String,
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
            honeytoken,
            scopes,
            networks,
        } => {
            let name = name.as_ref().or(name_option.as_ref());
            let mut body = json!({ "name": name, "duration": duration });
            if *honeytoken {
                body["honeytoken"] = json!(true);
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if !networks.is_empty() {
                body["networks"] = json!(networks);
            }
            let created = client.post("/v1/api-keys", &body)?;
            show_secret(&created, global, "Created");
        }
        KeysCommand::List(list_args) => {
            let list = list_args.apply(&client.get("/v1/api-keys")?, "keys", "name");
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
                        marked_status(k),
                        time(k, "created_at", "-"),
                        time(k, "expires_at", "never"),
                        time(k, "last_used_at", "never"),
                    ]
                })
                .collect();
            if rows.is_empty() && list_args.filters() {
                println!("No keys match.");
            } else if rows.is_empty() {
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
        KeysCommand::Delete { keys, yes } => {
            let listed = client.get("/v1/api-keys")?;
            let chosen = resolve(items(&listed, "keys"), keys, &Naming::INTERNAL)?;
            let logged_in_with = client
                .get("/v1/me")
                .ok()
                .and_then(|me| me.get("key_id").and_then(Value::as_str).map(str::to_owned));
            if let Some(current) = logged_in_with
                .as_deref()
                .filter(|current| chosen.iter().any(|k| field(k, "id") == *current))
            {
                eprintln!(
                    "warning: {current} is the key this command is using; once it is deleted, \
                     run `keyledger login` with another key"
                );
            }
            let described: Vec<String> = chosen.iter().map(describe_internal).collect();
            confirm(&described, "key", None, *yes)?;
            let ids: Vec<String> = chosen.iter().map(|k| field(k, "id")).collect();
            let deleted = delete_by_ids(&client, "/v1/api-keys", &ids)?;
            print_deleted(&deleted, global, "key");
        }
        KeysCommand::Roll { key, grace } => {
            let listed = client.get("/v1/api-keys")?;
            let chosen = resolve(
                items(&listed, "keys"),
                std::slice::from_ref(key),
                &Naming::INTERNAL,
            )?;
            let id = chosen.first().map(|k| field(k, "id")).unwrap_or_default();
            let rolled = client.post(
                &format!("/v1/api-keys/{}/roll", segment(&id)),
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
            time(created, "previous_valid_until", "-")
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

/// How the keys of a listing can be named on the command line besides their id.
pub(crate) struct Naming {
    /// What the keys are called in messages ("key", "external key").
    pub what: &'static str,
    /// The fields whose exact value names a key (`name`; `label` and `provider`).
    pub fields: &'static [&'static str],
    /// The command that lists them, for "not found" messages.
    pub list_command: &'static str,
}

impl Naming {
    pub const INTERNAL: Naming = Naming {
        what: "key",
        fields: &["name"],
        list_command: "keyledger keys list",
    };
}

/// The listed keys the arguments name, each once, in the order given. An argument is an id, or
/// else the exact value of one of `naming.fields`; one that names nothing is "not found" (3),
/// one that names several keys is refused (1): deleting the wrong one cannot be undone.
pub(crate) fn resolve<'a>(
    listed: &'a [Value],
    arguments: &[String],
    naming: &Naming,
) -> anyhow::Result<Vec<&'a Value>> {
    let mut chosen: Vec<&Value> = Vec::new();
    for argument in arguments {
        let by_id = listed.iter().find(|k| field(k, "id") == *argument);
        let key = match by_id {
            Some(key) => key,
            None => {
                let named: Vec<&Value> = listed
                    .iter()
                    .filter(|k| {
                        naming
                            .fields
                            .iter()
                            .any(|name| k.get(*name).and_then(Value::as_str) == Some(argument))
                    })
                    .collect();
                match named.as_slice() {
                    [key] => *key,
                    [] => {
                        return Err(Failure::new(
                            Exit::NotFound,
                            format!(
                                "{} `{argument}` was not found: none of yours has this id or {}; \
                                 `{}` shows them",
                                naming.what,
                                naming.fields.join(" or "),
                                naming.list_command
                            ),
                        )
                        .into());
                    }
                    several => {
                        let ids: Vec<String> = several.iter().map(|k| field(k, "id")).collect();
                        return Err(Failure::new(
                            Exit::Usage,
                            format!(
                                "`{argument}` names {} of your {}s ({}): name the one you mean \
                                 by its id",
                                several.len(),
                                naming.what,
                                ids.join(", ")
                            ),
                        )
                        .into());
                    }
                }
            }
        };
        if !chosen.iter().any(|k| field(k, "id") == field(key, "id")) {
            chosen.push(key);
        }
    }
    Ok(chosen)
}

/// Asks "Delete …? This cannot be undone [y/N]" on a terminal. Without a terminal the answer
/// cannot be asked for, so only `--yes` lets the deletion go ahead.
pub(crate) fn confirm(
    described: &[String],
    what: &str,
    consequence: Option<&str>,
    yes: bool,
) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let subject = match described {
        [one] => format!("{what} {one}"),
        many => format!("{} {what}s: {}", many.len(), many.join(", ")),
    };
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "not deleting {subject} without confirmation: standard input is not a terminal, \
                 so pass --yes to delete without asking"
            ),
        )
        .into());
    }
    let mut stderr = std::io::stderr();
    let consequence = consequence.map(|c| format!(" {c}")).unwrap_or_default();
    let _ = write!(
        stderr,
        "Delete {subject}?{consequence} This cannot be undone [y/N] "
    );
    let _ = stderr.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|err| Failure::new(Exit::Usage, format!("cannot read the answer: {err}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        return Ok(());
    }
    Err(Failure::new(Exit::Usage, format!("not deleted: {subject} kept")).into())
}

/// Deletes one key with `DELETE {base}/{id}`, several atomically with `POST {base}/delete`.
pub(crate) fn delete_by_ids(client: &Client, base: &str, ids: &[String]) -> anyhow::Result<Value> {
    match ids {
        [id] => client.delete(&format!("{base}/{}", segment(id))),
        _ => client.post(&format!("{base}/delete"), &json!({ "ids": ids })),
    }
}

/// `key_… "laptop" (kl_AbCd…wXyZ)`: what a confirmation names.
fn describe_internal(key: &&Value) -> String {
    format!(
        "{} \"{}\" ({})",
        field(key, "id"),
        field(key, "name"),
        field(key, "hint")
    )
}
