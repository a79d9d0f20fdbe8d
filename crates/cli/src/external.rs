//! `keyledger external add|list|delete|verify|rotate|trust-policy`: credentials for AWS and DNAnexus. Secrets are read
//! from a no-echo prompt, standard input or an AWS profile file, never from the command line,
//! and never printed.
//!
//! Everything that can be checked without the secret (the access key id's form, the region, the
//! profile) is checked before the secret is asked for, so a typo costs no retyping.

use serde_json::{Value, json};

use crate::aws_profile::{AwsCredential, SessionFlags, aws_credential};
use crate::client::{Client, ClientArgs, read_secret, segment};
use crate::exit::{Exit, Failure};
use crate::keys::{Naming, confirm, delete_by_ids, print_deleted, resolve};
use crate::output::{ListArgs, field, items, marked_status, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum ExternalCommand {
    /// Store a credential (one per provider: delete the existing one first).
    #[command(subcommand)]
    Add(AddCommand),
    /// List your external keys (masked).
    List(ListArgs),
    /// Delete external keys by id, label or provider; their secrets are destroyed for good
    /// (crypto-shredding).
    Delete {
        /// External key ids (`ext_…`), labels, or providers (`aws`, `dnanexus`).
        #[arg(required = true, value_name = "ID_LABEL_OR_PROVIDER")]
        keys: Vec<String>,
        /// Do not ask for confirmation (needed when standard input is not a terminal).
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Test a stored credential against its provider and record the result: the credential
    /// itself, or what an ingestion of a bucket and prefix (a project) needs, one line per
    /// capability. Exits 0 only when every capability passed, 9 when the provider refused one.
    Verify {
        /// The external key's id (`ext_…`), label or provider.
        key: String,
        /// AWS: test list, read and region on this bucket.
        #[arg(long, conflicts_with = "project")]
        bucket: Option<String>,
        /// AWS: the key prefix under --bucket (default: the bucket's root).
        #[arg(long, requires = "bucket")]
        prefix: Option<String>,
        /// DNAnexus: report the token's access level on this project (id or name).
        #[arg(long)]
        project: Option<String>,
    },
    /// Replace the secret of a stored key in place: same id, label and expiry. New ingestions
    /// use the new secret at once; running ones finish on the old one, whose data key is then
    /// destroyed. The secret is read as by `add` (prompt, standard input or an AWS profile).
    Rotate {
        /// The external key's id (`ext_…`), label or provider.
        key: String,
        /// AWS: the new access key id (AKIA… or ASIA…, not a secret).
        #[arg(long)]
        access_key_id: Option<String>,
        /// AWS: the region, if it changes (default: the stored key's, or the profile's).
        #[arg(long)]
        region: Option<String>,
        /// Read the new secret access key or token from standard input instead of prompting.
        #[arg(long, conflicts_with = "aws_profile")]
        secret_stdin: bool,
        /// AWS: take the new access key id, secret and region (and a session token) from this
        /// profile of the AWS CLI's files, as `external add aws --aws-profile` does.
        #[arg(long, value_name = "NAME", conflicts_with = "access_key_id")]
        aws_profile: Option<String>,
        /// AWS temporary credentials (an ASIA… id): also ask for the session token after the
        /// secret (with --secret-stdin: the second line of standard input). Needs
        /// --session-expires-at.
        #[arg(long, conflicts_with = "aws_profile", requires = "session_expires_at")]
        session_token: bool,
        /// When the session token expires (RFC 3339, e.g. 2026-12-05T21:30:00Z); with
        /// --aws-profile, overrides the profile's aws_session_expiration.
        #[arg(long, value_name = "TIME")]
        session_expires_at: Option<String>,
    },
    /// Print the trust policy your AWS role needs before you store it with `add aws-role`: it
    /// lets the platform assume the role with your external ID. The JSON goes to standard
    /// output, the explanation to standard error.
    TrustPolicy,
}

#[derive(Debug, clap::Subcommand)]
pub enum AddCommand {
    /// Amazon Web Services: access key id, secret access key (prompted), region; or all three
    /// from a profile of the AWS CLI's files (`--aws-profile`).
    Aws {
        #[arg(long)]
        label: String,
        /// AKIA… or ASIA… (not a secret).
        #[arg(long, required_unless_present = "aws_profile")]
        access_key_id: Option<String>,
        /// e.g. eu-west-2 (with --aws-profile: overrides the profile's region).
        #[arg(long, required_unless_present = "aws_profile")]
        region: Option<String>,
        #[arg(long, default_value = "90d")]
        duration: String,
        /// Read the secret access key from standard input instead of prompting.
        #[arg(long, conflicts_with = "aws_profile")]
        secret_stdin: bool,
        /// Take the access key id, secret and region from this profile of ~/.aws/credentials and
        /// ~/.aws/config (or AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), as `aws configure`
        /// writes them.
        #[arg(long, value_name = "NAME", conflicts_with = "access_key_id")]
        aws_profile: Option<String>,
        /// Temporary credentials (an ASIA… id): also ask for the session token after the secret
        /// (with --secret-stdin: the second line of standard input). Needs --session-expires-at.
        #[arg(long, conflicts_with = "aws_profile", requires = "session_expires_at")]
        session_token: bool,
        /// When the session token expires (RFC 3339, e.g. 2026-12-05T21:30:00Z, as `aws sts`
        /// prints it); with --aws-profile, overrides the profile's aws_session_expiration.
        #[arg(long, value_name = "TIME")]
        session_expires_at: Option<String>,
    },
    /// An AWS IAM role that keyledger assumes for each ingestion with your external ID
    /// (`keyledger external trust-policy` prints the trust policy it needs). Nothing secret.
    AwsRole {
        #[arg(long)]
        label: String,
        /// arn:aws:iam::<account>:role/<name>
        #[arg(long)]
        role_arn: String,
        /// The region of the buckets the role reads, e.g. eu-west-2.
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "90d")]
        duration: String,
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

const NAMING: Naming = Naming {
    what: "external key",
    fields: &["label", "provider"],
    list_command: "keyledger external list",
};

pub fn run(command: &ExternalCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    match command {
        ExternalCommand::Add(AddCommand::Aws {
            label,
            access_key_id,
            region,
            duration,
            secret_stdin,
            aws_profile,
            session_token,
            session_expires_at,
        }) => {
            // clap requires --access-key-id and --region without a profile.
            let AwsCredential {
                access_key_id,
                secret,
                region,
                session,
            } = aws_credential(
                access_key_id.as_deref(),
                region.as_deref(),
                None,
                *secret_stdin,
                aws_profile.as_deref(),
                SessionFlags {
                    token: *session_token,
                    expires_at: session_expires_at.as_deref(),
                },
            )?;
            let mut aws = json!({
                "access_key_id": access_key_id.as_str(),
                "secret_access_key": secret.expose(),
                "region": region.as_str(),
            });
            if let Some((token, expires_at)) = &session {
                aws["session_token"] = json!(token.expose());
                aws["session_expires_at"] = json!(expires_at);
            }
            let body = json!({
                "label": label,
                "provider": "aws",
                "kind": if session.is_some() { "session" } else { "access_key" },
                "aws": aws,
                "duration": duration,
            });
            show_one(&client.post("/v1/external-keys", &body)?, global, "Stored");
        }
        ExternalCommand::Add(AddCommand::AwsRole {
            label,
            role_arn,
            region,
            duration,
        }) => crate::aws_role::add(&client, global, label, role_arn, region, duration)?,
        ExternalCommand::TrustPolicy => crate::aws_role::trust_policy(&client, global)?,
        ExternalCommand::Add(AddCommand::Dnanexus {
            label,
            duration,
            secret_stdin,
        }) => {
            let token = read_secret("DNAnexus API token: ", *secret_stdin)?;
            let body = json!({ "label": label, "provider": "dnanexus", "dnanexus": { "token": token.expose() }, "duration": duration });
            show_one(&client.post("/v1/external-keys", &body)?, global, "Stored");
        }
        ExternalCommand::List(list_args) => {
            let list = list_args.apply(&client.get("/v1/external-keys")?, "keys", "label");
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
                        marked_status(k),
                        time(k, "expires_at", "never"),
                        time(k, "last_used_at", "never"),
                        verified(k),
                    ]
                })
                .collect();
            if rows.is_empty() && list_args.filters() {
                println!("No external keys match.");
            } else if rows.is_empty() {
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
                        "LAST USED",
                        "LAST VERIFIED",
                    ],
                    &rows,
                );
            }
        }
        ExternalCommand::Delete { keys, yes } => {
            let listed = client.get("/v1/external-keys")?;
            let chosen = resolve(items(&listed, "keys"), keys, &NAMING)?;
            let described: Vec<String> = chosen.iter().map(describe).collect();
            let plural = if chosen.len() == 1 {
                "Its secret is"
            } else {
                "Their secrets are"
            };
            let consequence = format!(
                "{plural} destroyed for good: not even a backup can bring {} back.",
                if chosen.len() == 1 { "it" } else { "them" }
            );
            confirm(&described, "external key", Some(&consequence), *yes)?;
            let ids: Vec<String> = chosen.iter().map(|k| field(k, "id")).collect();
            let deleted = delete_by_ids(&client, "/v1/external-keys", &ids)?;
            print_deleted(&deleted, global, "external key");
        }
        ExternalCommand::Verify {
            key,
            bucket,
            prefix,
            project,
        } => {
            let listed = client.get("/v1/external-keys")?;
            let chosen = resolve(items(&listed, "keys"), std::slice::from_ref(key), &NAMING)?;
            let id = chosen.first().map(|k| field(k, "id")).unwrap_or_default();
            let mut scope = serde_json::Map::new();
            for (name, value) in [("bucket", bucket), ("prefix", prefix), ("project", project)] {
                if let Some(value) = value {
                    scope.insert(name.to_owned(), json!(value));
                }
            }
            let verified = client.post(
                &format!("/v1/external-keys/{}/verify", segment(&id)),
                &Value::Object(scope),
            )?;
            let failure = verification_failure(&verified);
            if global.json {
                print_json(&verified);
            } else {
                if failure.is_none() {
                    println!(
                        "{} key {} \"{}\" ({}) works: {} accepted it.",
                        field(&verified, "provider"),
                        field(&verified, "id"),
                        field(&verified, "label"),
                        field(&verified, "hint"),
                        provider_name(&verified)
                    );
                }
                for line in capability_lines(&verified) {
                    println!("{line}");
                }
            }
            if let Some(failure) = failure {
                return Err(failure.into());
            }
        }
        ExternalCommand::Rotate {
            key,
            access_key_id,
            region,
            secret_stdin,
            aws_profile,
            session_token,
            session_expires_at,
        } => {
            let listed = client.get("/v1/external-keys")?;
            let chosen = resolve(items(&listed, "keys"), std::slice::from_ref(key), &NAMING)?;
            let Some(stored) = chosen.first() else {
                return Ok(());
            };
            let body = match stored.get("provider").and_then(Value::as_str) {
                Some("aws") => {
                    // The region stays the stored key's unless a flag or profile says otherwise.
                    let credential = aws_credential(
                        access_key_id.as_deref(),
                        region.as_deref(),
                        stored.get("region").and_then(Value::as_str),
                        *secret_stdin,
                        aws_profile.as_deref(),
                        SessionFlags {
                            token: *session_token,
                            expires_at: session_expires_at.as_deref(),
                        },
                    )?;
                    let mut aws = json!({
                        "access_key_id": credential.access_key_id.as_str(),
                        "secret_access_key": credential.secret.expose(),
                        "region": credential.region.as_str(),
                    });
                    if let Some((token, expires_at)) = &credential.session {
                        aws["session_token"] = json!(token.expose());
                        aws["session_expires_at"] = json!(expires_at);
                    }
                    json!({ "aws": aws })
                }
                _ => {
                    if access_key_id.is_some()
                        || aws_profile.is_some()
                        || region.is_some()
                        || *session_token
                        || session_expires_at.is_some()
                    {
                        return Err(Failure::new(
                            Exit::Usage,
                            "--access-key-id, --region, --aws-profile and the --session-… flags are for AWS keys; a DNAnexus key takes only a new token",
                        )
                        .into());
                    }
                    let token = read_secret("New DNAnexus API token: ", *secret_stdin)?;
                    json!({ "dnanexus": { "token": token.expose() } })
                }
            };
            let id = field(stored, "id");
            let rotated = client.put(
                &format!("/v1/external-keys/{}/credential", segment(&id)),
                Some(&body),
            )?;
            show_one(&rotated, global, "Replaced the secret of");
        }
    }
    Ok(())
}

/// A verification the provider did not pass, as the exit code and sentence it ends with: 0
/// only when the key works. The provider refusing (rejected or expired credentials, access
/// denied, a bucket or project missing, a name that does not resolve) is 9; a failure that is
/// the provider's or the network's passing trouble (`last_verified_kind: transient`) or keyledger's own
/// (`internal`) is 5, as for any server failure.
fn verification_failure(verified: &Value) -> Option<Failure> {
    if verified.get("last_verified_ok").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let kind = verified.get("last_verified_kind").and_then(Value::as_str);
    let exit = match kind {
        Some("transient" | "internal") => Exit::Server,
        _ => Exit::ProviderRejected,
    };
    let provider = provider_name(verified);
    let reason = verified
        .get("last_verified_detail")
        .and_then(Value::as_str)
        .filter(|detail| !detail.trim().is_empty())
        .unwrap_or("no reason was given");
    let verb = if exit == Exit::Server {
        "could not be checked"
    } else {
        "did not pass the check"
    };
    Some(Failure::new(
        exit,
        format!(
            "{} \"{}\" {verb} with {provider}: {reason}",
            field(verified, "id"),
            field(verified, "label"),
        ),
    ))
}

/// `✓ list    listed s3://lab/runs/ …` / `✗ read    missing permission: …`, one per capability
/// the test checked.
fn capability_lines(verified: &Value) -> Vec<String> {
    items(verified, "capabilities")
        .iter()
        .map(|checked| {
            let mark = if checked.get("ok").and_then(Value::as_bool) == Some(true) {
                "✓"
            } else {
                "✗"
            };
            format!(
                "{mark} {:<8} {}",
                field(checked, "capability"),
                field(checked, "detail")
            )
        })
        .collect()
}

fn provider_name(key: &Value) -> &'static str {
    match key.get("provider").and_then(Value::as_str) {
        Some("aws") => "AWS",
        Some("dnanexus") => "DNAnexus",
        _ => "the provider",
    }
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

/// `ext_… aws "bucket" (AKIA…MPLE)`: what a confirmation names.
fn describe(key: &&Value) -> String {
    format!(
        "{} {} \"{}\" ({})",
        field(key, "id"),
        field(key, "provider"),
        field(key, "label"),
        field(key, "hint")
    )
}

#[cfg(test)]
mod tests {
    use keyledger_crypto::SecretString;

    use crate::aws_profile::AwsProfile;

    /// Loads profile `name` from the two files' texts: `Ok((access key id, secret, region))`,
    /// or the error's message.
    fn check(
        name: &str,
        credentials: &str,
        config: &str,
        expect: Result<(&str, &str, Option<&str>), &str>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (credentials_file, config_file) =
            (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(&credentials_file, credentials).unwrap();
        std::fs::write(&config_file, config).unwrap();
        let loaded = AwsProfile::from_files(name, credentials_file, config_file);
        match (loaded, expect) {
            (Ok(profile), Ok((id, secret, region))) => {
                assert_eq!(profile.access_key_id, id);
                assert_eq!(profile.secret_access_key.expose(), secret);
                assert_eq!(profile.region.as_deref(), region);
                assert!(!format!("{profile:?}").contains(secret));
            }
            (Err(err), Err(expect)) => {
                let message = err.to_string();
                assert!(message.contains(expect), "{message}");
                assert!(!message.contains("Secret/Key+1"), "{message}");
            }
            (loaded, expect) => panic!(
                "{:?} but expected {expect:?}",
                loaded.map(|p| p.access_key_id)
            ),
        }
    }

    const CREDENTIALS: &str = "# written by aws configure\n[default]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = Secret/Key+1\n\n[lab]\naws_access_key_id=AKIABBBBBBBBBBBBBBBB\naws_secret_access_key=Secret/Key+1#not-a-comment\n";

    #[test]
    fn profiles_are_read_as_the_aws_cli_writes_them() {
        let config = "[default]\nregion = us-east-1\n; a comment\n[profile lab]\ns3 =\n    region = ap-south-1\nregion = eu-west-2\n";
        check(
            "default",
            CREDENTIALS,
            config,
            Ok(("AKIAAAAAAAAAAAAAAAAA", "Secret/Key+1", Some("us-east-1"))),
        );
        check(
            "lab",
            CREDENTIALS,
            config,
            Ok((
                "AKIABBBBBBBBBBBBBBBB",
                "Secret/Key+1#not-a-comment",
                Some("eu-west-2"),
            )),
        );
        // `[profile default]` is the default profile too; the region may be missing.
        check(
            "default",
            CREDENTIALS,
            "[profile default]\nregion = sa-east-1\n",
            Ok(("AKIAAAAAAAAAAAAAAAAA", "Secret/Key+1", Some("sa-east-1"))),
        );
        check(
            "lab",
            CREDENTIALS,
            "",
            Ok(("AKIABBBBBBBBBBBBBBBB", "Secret/Key+1#not-a-comment", None)),
        );
        // Keys may live in the config file; `[lab]` there is not profile `lab`.
        check(
            "dev",
            "",
            "[profile dev]\naws_access_key_id = AKIACCCCCCCCCCCCCCCC\naws_secret_access_key = Secret/Key+1\n",
            Ok(("AKIACCCCCCCCCCCCCCCC", "Secret/Key+1", None)),
        );
        check(
            "lab",
            "",
            "[lab]\nregion = eu-west-2\n",
            Err("no AWS profile `lab`"),
        );
    }

    #[test]
    fn temporary_profiles_bring_their_session_token() {
        let dir = tempfile::tempdir().unwrap();
        let (credentials_file, config_file) =
            (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(
            &credentials_file,
            "[temp]\naws_access_key_id = ASIAAAAAAAAAAAAAAAAA\naws_secret_access_key = Secret/Key+1\naws_session_token = Token/Part+2\naws_session_expiration = 2026-12-05T21:30:00Z\n",
        )
        .unwrap();
        let profile = AwsProfile::from_files("temp", credentials_file, config_file).unwrap();
        assert_eq!(
            profile.session_token.as_ref().map(SecretString::expose),
            Some("Token/Part+2")
        );
        assert_eq!(
            profile.session_expires_at.as_deref(),
            Some("2026-12-05T21:30:00Z")
        );
        let shown = format!("{profile:?}");
        assert!(!shown.contains("Token/Part+2") && !shown.contains("Secret/Key+1"));
    }

    #[test]
    fn profiles_that_cannot_be_stored_say_why() {
        check("nobody", CREDENTIALS, "", Err("no AWS profile `nobody`"));
        check(
            "sso",
            "",
            "[profile sso]\nsso_start_url = https://example.awsapps.com/start\n",
            Err("has no aws_access_key_id"),
        );
        check(
            "broken",
            "[broken\naws_secret_access_key = Secret/Key+1\n",
            "",
            Err("line 1"),
        );
    }
}
