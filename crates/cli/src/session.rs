//! `keyledger login`, `logout` and `whoami`.

use serde_json::Value;

use crate::client::{
    Client, ClientArgs, Credentials, DEFAULT_ENDPOINT, load_credentials, read_secret,
    save_credentials,
};
use crate::exit::{Exit, Failure};
use crate::output::{field, print_json};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Read the key from standard input instead of prompting (it is never taken from the command line).
    #[arg(long)]
    pub key_stdin: bool,
}

/// Checks the key against the server, then saves endpoint and key (mode 0600).
pub fn login(args: &LoginArgs, global: &ClientArgs) -> anyhow::Result<()> {
    let endpoint = match &global.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => load_credentials()?
            .map(|c| c.endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
    };
    let key = read_secret("keyledger API key: ", args.key_stdin)?;
    let client = Client::new(endpoint, Some(key.clone()))?;
    let me = client.get("/v1/me")?;
    let path = save_credentials(&Credentials {
        endpoint: client.endpoint().to_owned(),
        key: key.expose().to_owned(),
    })?;
    if global.json {
        print_json(&me);
    } else {
        println!(
            "Logged in to {} as {} (key {}).",
            client.endpoint(),
            field(&me, "user"),
            field(&me, "key_id")
        );
        println!(
            "Credentials saved to {} (readable only by you).",
            path.display()
        );
    }
    Ok(())
}

pub fn logout(global: &ClientArgs) -> anyhow::Result<()> {
    let path = crate::client::credentials_path()?;
    let removed = match std::fs::remove_file(&path) {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => {
            return Err(Failure::new(
                Exit::Usage,
                format!("cannot remove {}: {err}", path.display()),
            )
            .into());
        }
    };
    if global.json {
        print_json(&serde_json::json!({ "logged_out": removed }));
    } else if removed {
        println!("Logged out: removed {}.", path.display());
    } else {
        println!("Not logged in: nothing to remove.");
    }
    Ok(())
}

pub fn whoami(global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    let me: Value = client.get("/v1/me")?;
    if global.json {
        print_json(&me);
        return Ok(());
    }
    println!("user:        {}", field(&me, "user"));
    if me.get("display_name").is_some_and(|v| !v.is_null()) {
        println!("name:        {}", field(&me, "display_name"));
    }
    println!("roles:       {}", field(&me, "roles"));
    println!("permissions: {}", field(&me, "permissions"));
    println!("key:         {}", field(&me, "key_id"));
    println!("endpoint:    {}", client.endpoint());
    Ok(())
}
