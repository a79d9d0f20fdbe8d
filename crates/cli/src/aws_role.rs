//! `keyledger external trust-policy` and `keyledger external add aws-role`: the `role` kind of
//! AWS credential. Nothing secret is typed or printed: a role key is a role ARN and a region,
//! and keyledger assumes the role with the external ID it generated for the user.

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs};
use crate::exit::{Exit, Failure};
use crate::output::{field, print_json};

/// Prints the trust policy the user's role needs: the JSON alone on standard output (ready for
/// `aws iam update-assume-role-policy --policy-document file:///dev/stdin`), what it means on
/// standard error. With `--json`, the whole setup (external ID, principal, both policies).
pub fn trust_policy(client: &Client, global: &ClientArgs) -> anyhow::Result<()> {
    let setup = client.get("/v1/external-keys/aws-role-setup")?;
    if global.json {
        print_json(&setup);
        return Ok(());
    }
    let policy = setup.get("trust_policy").cloned().unwrap_or(Value::Null);
    println!("{}", serde_json::to_string_pretty(&policy)?);
    eprintln!(
        "Your external ID is {}: keyledger sends it with every AssumeRole of your role.",
        field(&setup, "external_id")
    );
    match setup.get("principal_arn").and_then(Value::as_str) {
        Some(principal) => eprintln!("The platform assumes roles as {principal}."),
        None => eprintln!(
            "This server does not say which principal assumes roles: ask your keyledger \
             operator, and put it in place of the Principal above."
        ),
    }
    if setup.get("assume_role_configured").and_then(Value::as_bool) != Some(true) {
        eprintln!(
            "Note: this server has no AWS credentials to assume roles with yet; tests and \
             ingestions with a role key fail until its operator sets them."
        );
    }
    eprintln!(
        "Give your role this trust policy, then: keyledger external add aws-role --label … \
         --role-arn arn:aws:iam::<account>:role/<name> --region <region>"
    );
    Ok(())
}

/// Stores a `role` key.
pub fn add(
    client: &Client,
    global: &ClientArgs,
    label: &str,
    role_arn: &str,
    region: &str,
    duration: &str,
) -> anyhow::Result<()> {
    if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "--role-arn `{role_arn}` is not a role ARN: use one such as \
                 arn:aws:iam::111122223333:role/lab-reader"
            ),
        )
        .into());
    }
    let body = json!({
        "label": label,
        "provider": "aws",
        "kind": "role",
        "aws_role": { "role_arn": role_arn, "region": region },
        "duration": duration,
    });
    let stored = client.post("/v1/external-keys", &body)?;
    if global.json {
        print_json(&stored);
        return Ok(());
    }
    println!(
        "Stored aws key {} \"{}\" (role {}).",
        field(&stored, "id"),
        field(&stored, "label"),
        field(&stored, "role_arn")
    );
    println!(
        "keyledger assumes it with external ID {}; test it with `keyledger external verify aws`.",
        field(&stored, "external_id")
    );
    Ok(())
}
