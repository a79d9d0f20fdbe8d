//! `keyledger`: the server (`serve`) and the command-line client of the vault.
//!
//! Each subcommand lives in its own module; adding one is a module file plus one variant and one
//! match arm here. Exit codes are in [`exit::Exit`] and docs/cli.md.
//!
//! Every error leaves the process as exactly one line on standard error (`error: …`) and one of
//! the documented exit codes: commands return their errors instead of printing them, and this
//! file alone prints them, clap's usage errors included.

mod admin;
mod admin_keys;
mod audit;
mod aws_profile;
mod aws_role;
mod client;
mod config;
mod events;
mod exit;
mod external;
mod ingest;
mod keys;
mod local;
mod output;
mod serve;
mod session;
mod source;
mod worker;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Forget the saved key of the current profile (or --profile).
    Logout,
    /// Saved profiles (endpoint and key): list them, or switch the current one.
    Profiles {
        #[command(subcommand)]
        command: Option<session::ProfilesCommand>,
    },
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
    /// An ingestion worker: takes jobs from the NATS work queue, leases their credential from
    /// the vault, stores the files in the shared sample store.
    Worker(worker::WorkerArgs),
    /// Pull sample files from S3 or DNAnexus with your stored keys.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// Saved sources: a selection imported again by hand or on a cron schedule.
    #[command(subcommand)]
    Source(source::SourceCommand),
    /// Verify, export and replay the event log; crypto-shredding evidence.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print a shell completion script: `source <(keyledger completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    Man {
        /// Write `keyledger.1`, `keyledger-keys.1`, `keyledger-keys-create.1`, … into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() {
    // Everything keyledger writes (data directory, log, snapshots, backups, exports, samples,
    // keys) is for its own user only, whatever umask it was started with. The libraries also
    // pass explicit modes; this covers files that dependencies (sled) create.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = err.print();
                    std::process::exit(Exit::Ok as i32);
                }
                // `keyledger keys` alone: the help is what was asked for, on standard error.
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = err.print();
                }
                _ => eprintln!("error: {}", usage_error_line(&err.render().to_string())),
            }
            std::process::exit(Exit::Usage as i32);
        }
    };
    // Servers keep the default: a server that lost its standard output must not exit 0.
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Replica(_) | Command::Worker(_)
    ) {
        quiet_on_closed_pipe();
    }
    let result = match &cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Admin(command) => admin::run(command, &cli.client),
        Command::Login(args) => session::login(args, &cli.client),
        Command::Logout => session::logout(&cli.client),
        Command::Profiles { command } => session::profiles(command.as_ref(), &cli.client),
        Command::Whoami => session::whoami(&cli.client),
        Command::Keys(command) => keys::run(command, &cli.client),
        Command::External(command) => external::run(command, &cli.client),
        Command::Audit(command) => audit::run(command, &cli.client),
        Command::Ingest(command) => ingest::run(command, &cli.client),
        Command::Source(command) => source::run(command, &cli.client),
        Command::Events(command) => events::run(command, cli.client.json),
        Command::Replica(args) => events::run_replica(args),
        Command::Worker(args) => worker::run(args),
        Command::Completions { shell } => completions(*shell),
        Command::Man { out } => man(out.as_deref()),
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

/// A reader that closed the pipe (`keyledger keys list | head -1`) has what it wanted: `println!`
/// then fails with a broken pipe, and the command ends quietly with success, as `tail` and
/// ripgrep do, instead of a panic message. Every other panic keeps the default report.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(Exit::Ok as i32);
        }
        default(info);
    }));
}

/// Errors are one line on standard error, whatever the underlying message, and say `error:`
/// once even when the message already started with it.
fn one_line(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut rest = line.as_str();
    while let Some(stripped) = rest.strip_prefix("error: ") {
        rest = stripped;
    }
    rest.to_owned()
}

/// clap's usage error in one line: its message, its tip in parentheses, then the usage, with
/// the blank lines and "For more information" dropped (`--help` says the rest).
fn usage_error_line(rendered: &str) -> String {
    let mut message = Vec::new();
    let mut tips = Vec::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(text) = line.strip_prefix("tip: ") {
            // "to pass '--nmae' as a value, use '-- --nmae'" misleads more often than it helps:
            // a mistyped option is far likelier than a value that starts with dashes.
            if !text.starts_with("to pass '") {
                tips.push(text.to_owned());
            }
        } else if let Some(text) = line.strip_prefix("Usage: ") {
            usage = Some(text.to_owned());
        } else if !line.starts_with("For more information") {
            message.push(line.to_owned());
        }
    }
    let mut out = one_line(&message.join(" "));
    if !tips.is_empty() {
        out.push_str(&format!(" ({})", tips.join("; ")));
    }
    if let Some(usage) = usage {
        out.push_str(&format!("; usage: {usage}"));
    }
    out
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "keyledger", &mut script);
    write_stdout(&script)
}

/// The main page to standard output, or every command's page into `out` (readable by all, as
/// man pages are installed: the process umask is 077).
fn man(out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let command = Cli::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return write_stdout(&page);
    };
    std::fs::create_dir_all(dir).map_err(|err| {
        Failure::new(
            Exit::Usage,
            format!("cannot create {}: {err}", dir.display()),
        )
    })?;
    clap_mangen::generate_to(command, dir).map_err(|err| {
        Failure::new(
            Exit::Usage,
            format!("cannot write man pages into {}: {err}", dir.display()),
        )
    })?;
    let mut pages = 0;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "1") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            pages += 1;
        }
    }
    eprintln!("wrote {pages} man pages into {}", dir.display());
    Ok(())
}

/// Writes generated text; a closed pipe (`| head`) is the reader's choice, not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}
