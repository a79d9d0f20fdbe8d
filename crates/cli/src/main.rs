//! `keyledger`: the server (`serve`) and the command-line client of the vault.
//!
//! Each subcommand lives in its own module; adding one is a module file plus one variant and one
//! match arm here. Exit codes are in [`exit::Exit`] and docs/operations.md.

mod admin;
mod audit;
mod client;
mod config;
mod events;
mod exit;
mod external;
mod ingest;
mod keys;
mod output;
mod serve;
mod session;

use clap::{Parser, Subcommand};

use crate::client::ClientArgs;
use crate::exit::{Exit, Failure};

/// glibc malloc's arena locks serialise the async workers under load (decision 0009).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "keyledger",
    version,
    about = "Event-sourced credential vault: API keys and external credentials"
)]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (REST API, expiry sweeper, usage recording).
    Serve(serve::ServeArgs),
    /// First admin (local) and users and roles (over HTTP).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Check an API key and save it with the endpoint for later commands.
    Login(session::LoginArgs),
    /// Forget the saved key.
    Logout,
    /// Show who the saved key belongs to and what it may do.
    Whoami,
    /// Your internal API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Your external keys (AWS, DNAnexus).
    #[command(subcommand)]
    External(external::ExternalCommand),
    /// Events as published on NATS JetStream.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// A read replica: follows the NATS stream and serves key verification.
    Replica(events::ReplicaArgs),
    /// Pull sample files from S3 or DNAnexus with your stored keys.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// Verify, export and replay the event log; crypto-shredding evidence.
    #[command(subcommand)]
    Audit(keyledger_audit::cli::AuditCommand),
}

fn main() {
    // Everything keyledger writes (data directory, log, snapshots, backups, exports, samples,
    // keys) is for its own user only, whatever umask it was started with. The libraries also
    // pass explicit modes; this covers files that dependencies (sled) create.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            let code = match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok
                }
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Exit::Usage,
                _ => Exit::Usage,
            };
            std::process::exit(code as i32);
        }
    };
    let result = match &cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Admin(command) => admin::run(command, &cli.client),
        Command::Login(args) => session::login(args, &cli.client),
        Command::Logout => session::logout(&cli.client),
        Command::Whoami => session::whoami(&cli.client),
        Command::Keys(command) => keys::run(command, &cli.client),
        Command::External(command) => external::run(command, &cli.client),
        Command::Audit(command) => audit::run(command, &cli.client),
        Command::Ingest(command) => ingest::run(command, &cli.client),
        Command::Events(command) => events::run(command, cli.client.json),
        Command::Replica(args) => events::run_replica(args),
    };
    if let Err(err) = result {
        let (exit, message) = match err.downcast_ref::<Failure>() {
            Some(failure) => (failure.exit, failure.message.clone()),
            None => (Exit::Usage, format!("{err:#}")),
        };
        eprintln!("error: {}", one_line(&message));
        std::process::exit(exit as i32);
    }
}

/// Errors are one line on standard error, whatever the underlying message.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
