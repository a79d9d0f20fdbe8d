//! `keyledger external add|list|delete|verify`: credentials for AWS and DNAnexus. Secrets are read
//! from a no-echo prompt or standard input, never from the command line.

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, read_secret, segment};
use crate::keys::print_deleted;
use crate::output::{field, items, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum ExternalCommand {
    /// Store a credential (one per provider: delete the existing one first).
    #[command(subcommand)]
    Add(AddCommand),
    /// List your external keys (masked).
    List,
    /// Delete external keys by id; their data keys are destroyed (crypto-shredding).
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Test a stored credential against its provider and record the result.
    Verify { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum AddCommand {
    /// Amazon Web Services: access key id, secret access key (prompted), region.
    Aws {
        #[arg(long)]
        label: String,
        /// AKIA… or ASIA… (not a secret).
        #[arg(long)]
        access_key_id: String,
        /// e.g. eu-west-2.
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "90d")]
        duration: String,
        /// Read the secret access key from standard input instead of prompting.
        #[arg(long)]
        secret_stdin: bool,
    },
    /// DNAnexus: an API token (prompted).
    Dnanexus {
        #[arg(long)]
        label: String,
        #[arg(long, default_value = "90d")]
        duration: String,
        /// Read the token from standard input instead of prompting.
        #[arg(long)]
        secret_stdin: bool,
    },
}

pub fn run(command: &ExternalCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    match command {
        ExternalCommand::Add(AddCommand::Aws {
            label,
            access_key_id,
            region,
            duration,
            secret_stdin,
        }) => {
            let secret = read_secret("AWS secret access key: ", *secret_stdin)?;
            let body = json!({
                "label": label,
                "provider": "aws",
                "aws": { "access_key_id": access_key_id, "secret_access_key": secret.expose(), "region": region },
                "duration": duration,
            });
            show_one(&client.post("/v1/external-keys", &body)?, global, "Stored");
        }
        ExternalCommand::Add(AddCommand::Dnanexus {
            label,
            duration,
            secret_stdin,
        }) => {
            let token = read_secret("DNAnexus API token: ", *secret_stdin)?;
            let body = json!({ "label": label, "provider": "dnanexus", "dnanexus": { "token": token.expose() }, "duration": duration });
            show_one(&client.post("/v1/external-keys", &body)?, global, "Stored");
        }
        ExternalCommand::List => {
            let list = client.get("/v1/external-keys")?;
            if global.json {
                print_json(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&list, "keys")
                .iter()
                .map(|k| {
                    vec![
                        field(k, "id"),
                        field(k, "provider"),
                        field(k, "label"),
                        field(k, "hint"),
                        field(k, "region"),
                        field(k, "status"),
                        time(k, "expires_at", "never"),
                        verified(k),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No external keys. Store one with `keyledger external add aws|dnanexus`.");
            } else {
                print_table(
                    &[
                        "ID",
                        "PROVIDER",
                        "LABEL",
                        "KEY",
                        "REGION",
                        "STATUS",
                        "EXPIRES",
                        "LAST VERIFIED",
                    ],
                    &rows,
                );
            }
        }
        ExternalCommand::Delete { ids } => {
            let deleted = if let [id] = ids.as_slice() {
                client.delete(&format!("/v1/external-keys/{}", segment(id)))?
            } else {
                client.post("/v1/external-keys/delete", &json!({ "ids": ids }))?
            };
            print_deleted(&deleted, global, "external key");
        }
        ExternalCommand::Verify { id } => {
            let verified = client.post(
                &format!("/v1/external-keys/{}/verify", segment(id)),
                &json!({}),
            )?;
            show_one(&verified, global, "Verified");
        }
    }
    Ok(())
}

fn show_one(key: &Value, global: &ClientArgs, verb: &str) {
    if global.json {
        print_json(key);
        return;
    }
    println!(
        "{verb} {} key {} \"{}\" ({}).",
        field(key, "provider"),
        field(key, "id"),
        field(key, "label"),
        field(key, "hint")
    );
    if key.get("last_verified_ok").is_some_and(|v| !v.is_null()) {
        println!("Last verified: {}", verified(key));
    }
}

fn verified(key: &Value) -> String {
    match key.get("last_verified_ok").and_then(Value::as_bool) {
        None => "never".to_owned(),
        Some(ok) => format!(
            "{} {} {}",
            time(key, "last_verified_at", "-"),
            if ok { "ok" } else { "FAILED" },
            field(key, "last_verified_detail")
        ),
    }
}
