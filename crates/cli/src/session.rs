//! `keyledger login`, `logout`, `whoami` and `profiles`: which server a command talks to and
//! with which key.
//!
//! Profiles are named endpoint + key pairs in `credentials.toml`, like `aws --profile` and
//! `gh auth`. The file is only ever replaced whole (temporary file, fsync, rename) with mode
//! 0600, so a crash leaves the old set or the new one, and nobody else can read a key.

use serde_json::{Value, json};

use crate::client::{
    Client, ClientArgs, Credentials, DEFAULT_ENDPOINT, check_profile_name, load_credentials_file,
    profile_name, read_secret, save_credentials_file,
};
use crate::exit::{Exit, Failure};
use crate::output::{field, print_json, print_table};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Read the key from standard input instead of prompting (it is never taken from the command line).
    #[arg(long)]
    pub key_stdin: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProfilesCommand {
    /// List the saved profiles; `*` marks the current one.
    List,
    /// Make a saved profile the current one (what commands use without --profile).
    Use { name: String },
}

/// Checks the key against the server, then saves endpoint and key as the profile (mode 0600).
pub fn login(args: &LoginArgs, global: &ClientArgs) -> anyhow::Result<()> {
    let mut file = load_credentials_file()?;
    let profile = profile_name(global, &file)?;
    let endpoint = match &global.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => file
            .profiles
            .get(&profile)
            .map(|c| c.endpoint.clone())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
    };
    let key = read_secret("keyledger API key: ", args.key_stdin)?;
    let client = Client::new(endpoint, Some(key.clone()))?;
    let me = client.get("/v1/me")?;
    file.profiles.insert(
        profile.clone(),
        Credentials {
            endpoint: client.endpoint().to_owned(),
            key: key.expose().to_owned(),
        },
    );
    // The first profile saved becomes current; logging in to another one does not switch
    // silently (`keyledger profiles use` does).
    if file.current.is_none() || file.profiles.len() == 1 {
        file.current = Some(profile.clone());
    }
    let path = save_credentials_file(&file)?;
    if global.json {
        print_json(&me);
        return Ok(());
    }
    println!(
        "Logged in to {} as {} (key {}), profile {profile}.",
        client.endpoint(),
        field(&me, "user"),
        field(&me, "key_id")
    );
    println!(
        "Credentials saved to {} (readable only by you).",
        path.display()
    );
    if file.current_name() != profile {
        println!(
            "The current profile is still {}: pass --profile {profile}, or run `keyledger profiles use {profile}`.",
            file.current_name()
        );
    }
    Ok(())
}

/// Forgets the profile's key (the current profile, or --profile).
pub fn logout(global: &ClientArgs) -> anyhow::Result<()> {
    let mut file = load_credentials_file()?;
    let profile = profile_name(global, &file)?;
    let removed = file.profiles.remove(&profile).is_some();
    if removed {
        if file.current.as_deref() == Some(profile.as_str()) {
            file.current = file.profiles.keys().next().cloned();
        }
        let path = crate::client::credentials_path()?;
        if file.profiles.is_empty() {
            std::fs::remove_file(&path).map_err(|err| {
                Failure::new(
                    Exit::Usage,
                    format!("cannot remove {}: {err}", path.display()),
                )
            })?;
        } else {
            save_credentials_file(&file)?;
        }
    }
    if global.json {
        print_json(&json!({ "logged_out": removed, "profile": profile }));
    } else if removed {
        println!("Logged out of profile {profile}: its key is forgotten.");
        if let Some(current) = &file.current {
            println!("The current profile is now {current}.");
        }
    } else {
        println!("Profile {profile} is not logged in: nothing to remove.");
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
    println!(
        "profile:     {}",
        client.profile().unwrap_or("- (KEYLEDGER_API_KEY)")
    );
    Ok(())
}

pub fn profiles(command: Option<&ProfilesCommand>, global: &ClientArgs) -> anyhow::Result<()> {
    let mut file = load_credentials_file()?;
    match command {
        None | Some(ProfilesCommand::List) => {
            let current = profile_name(global, &file)?;
            if global.json {
                let profiles: Vec<Value> = file
                    .profiles
                    .iter()
                    .map(|(name, c)| {
                        json!({ "name": name, "endpoint": c.endpoint, "current": *name == current })
                    })
                    .collect();
                print_json(&json!({ "current": current, "profiles": profiles }));
                return Ok(());
            }
            if file.profiles.is_empty() {
                println!("No saved profiles. Save one with `keyledger login [--profile NAME]`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = file
                .profiles
                .iter()
                .map(|(name, c)| {
                    let mark = if *name == current { "*" } else { "" };
                    vec![
                        mark.to_owned(),
                        name.clone(),
                        c.endpoint.clone(),
                        hint(&c.key),
                    ]
                })
                .collect();
            print_table(&["", "PROFILE", "ENDPOINT", "KEY"], &rows);
        }
        Some(ProfilesCommand::Use { name }) => {
            let name = check_profile_name(name)?;
            if !file.profiles.contains_key(name) {
                let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
                return Err(Failure::new(
                    Exit::NotFound,
                    format!(
                        "no saved profile `{name}` (saved: {}); save it with `keyledger login --profile {name}`",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                )
                .into());
            }
            file.current = Some(name.to_owned());
            save_credentials_file(&file)?;
            if global.json {
                print_json(&json!({ "current": name }));
            } else {
                println!("The current profile is now {name}.");
            }
        }
    }
    Ok(())
}

/// The first and last four characters of a key, as the server's listings show it.
fn hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let head: String = chars[..7].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}
