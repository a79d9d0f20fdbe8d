//! The `keyledger audit …` and `keyledger admin rotate-master-key|backup|restore` subcommands.
//!
//! The binary adds them with one variant each (`Audit(AuditCommand)` in its command enum,
//! `#[command(flatten)] Audit(AdminAuditCommand)` in its admin enum) and calls `run` with a
//! [`RunContext`] built from its global options (`--json`, the endpoint and saved key). Offline
//! commands open the data directory, which a running server holds locked: those commands then
//! name the command that works next to it — `--remote`, which asks the server over its API with
//! the saved key (or `KEYLEDGER_API_KEY`) and `--endpoint`, for `verify`, `replay`, `export`,
//! `public-key` and `checkpoint`, or a backup for `shredded`.

use std::fs;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use keyledger_crypto::{MasterKey, SecretString};
use keyledger_vault::{
    SystemClock, Vault, VaultConfig, read_master_key, rotate_master_key_offline,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::export::{CheckpointRecord, EndTally, ExportLine, PublicKeyInfo, export_jsonl};
use crate::replay::{Moment, diff, states_as_of};
use crate::shredded::{attempt_recovery, shredding_report};
use crate::source::{open_log_offline, read_export_envelopes};
use crate::verify::{
    Head, Problem, SignerSource, VerifyOptions, parse_public_key, verify_data_dir, verify_export,
    verify_export_file,
};
use crate::{AuditError, backup};

/// What the binary passes down from its global options.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Print JSON instead of tables.
    pub json: bool,
    /// The server and key for `--remote`.
    pub remote: Option<Remote>,
}

/// A running server and the key to call it with.
#[derive(Debug, Clone)]
pub struct Remote {
    /// e.g. `http://127.0.0.1:8080`.
    pub endpoint: String,
    pub key: SecretString,
}

/// What `verify` and `restore` return when the log does not verify, so the binary can map it to
/// its own exit code (`err.downcast_ref::<VerificationFailed>()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verification failed at {0}")]
pub struct VerificationFailed(pub Problem);

/// A `--remote` request that the server refused, or that did not reach it. The binary maps
/// `status` to its exit code (`None`: the server could not be reached).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteFailure {
    pub status: Option<u16>,
    pub message: String,
}

/// `keyledger audit …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify an export file, a data directory, or a running server's log (--remote): the hash
    /// chain, the public fields, every checkpoint signature, and that an export is complete.
    /// Says how many events a signed checkpoint covers. Exits 6 at the first problem, naming its
    /// seq.
    Verify(VerifyArgs),
    /// Export events and their signed checkpoints as JSON lines (contains key hashes and
    /// ciphertext in `body`: for auditors, not for publication).
    Export(ExportArgs),
    /// The state as of a seq or a time — keys, owners, expiry, status, roles — or what changed
    /// between two moments.
    Replay(ReplayArgs),
    /// External keys whose data keys were destroyed (crypto-shredded).
    Shredded(ShreddedArgs),
    /// Print the Ed25519 public key that signs checkpoints.
    PublicKey(PublicKeyArgs),
    /// Sign a checkpoint at the current head now.
    Checkpoint(CheckpointArgs),
}

/// `keyledger admin rotate-master-key|backup|restore`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminAuditCommand {
    /// Re-wrap every data key and vault secret under a new master key and replace the master key
    /// file; the old key opens nothing afterwards. Offline: stop the server first.
    RotateMasterKey(RotateArgs),
    /// Write a consistent backup of the data directory into DIR (no master key inside).
    Backup(BackupArgs),
    /// Restore a backup into an empty data directory and verify it.
    Restore(RestoreArgs),
}

/// The data directory of offline commands.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// The data directory (`data_dir` of the configuration).
    #[arg(
        long = "data",
        value_name = "DIR",
        env = "KEYLEDGER_DATA_DIR",
        default_value = "data"
    )]
    pub data_dir: PathBuf,
}

/// Where the master key is, for commands that need it.
#[derive(Debug, Clone, clap::Args)]
pub struct MasterKeyArgs {
    /// The master key file [default: DIR/master.key]. KEYLEDGER_MASTER_KEY (the key itself)
    /// takes precedence when set.
    #[arg(long, value_name = "FILE", env = "KEYLEDGER_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// An export file (from `keyledger audit export`).
    #[arg(value_name = "FILE", required_unless_present_any = ["data_dir", "remote"])]
    pub file: Option<PathBuf>,
    /// Verify a data directory instead (the server must be stopped, or verify a copy).
    #[arg(long = "data", value_name = "DIR", conflicts_with = "file")]
    pub data_dir: Option<PathBuf>,
    /// Verify the running server's whole log, read over its API (`GET /v1/events`, permission
    /// view_audit_log) with the saved key or KEYLEDGER_API_KEY.
    #[arg(long, conflicts_with_all = ["file", "data_dir"])]
    pub remote: bool,
    /// The vault's published key (hex), as `keyledger audit public-key` prints it on the server.
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// Fail (exit 6) unless a signed checkpoint covers the last event.
    #[arg(long)]
    pub require_checkpoint: bool,
    /// Fail (exit 6) unless the log holds this event with this chain hash, e.g. the head that
    /// `keyledger audit checkpoint --remote` or an earlier verify printed.
    #[arg(long, value_name = "SEQ:HASH")]
    pub expect_head: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The first seq.
    #[arg(long, value_name = "SEQ", default_value_t = 1)]
    pub from: u64,
    /// The last seq [default: the head].
    #[arg(long, value_name = "SEQ")]
    pub to: Option<u64>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read from the running server (`GET /v1/events`, permission view_audit_log).
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("moment").required(true).args(["as_of", "seq", "diff"])))]
pub struct ReplayArgs {
    /// A time (RFC 3339 or a date) or a seq.
    #[arg(long, value_name = "TIME|SEQ")]
    pub as_of: Option<String>,
    /// Right after this seq.
    #[arg(long, value_name = "N")]
    pub seq: Option<u64>,
    /// What changed from moment A to moment B (each a time or a seq).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub diff: Option<Vec<String>>,
    /// Replay an export file instead of a data directory.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Replay the running server's log, read over its API (`GET /v1/events`, permission
    /// view_audit_log) with the saved key or KEYLEDGER_API_KEY.
    #[arg(long, conflicts_with = "file")]
    pub remote: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShreddedArgs {
    /// Also try to open every shredded secret with every wrapped key left (needs the master key).
    #[arg(long)]
    pub prove: bool,
    #[command(flatten)]
    pub master_key: MasterKeyArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PublicKeyArgs {
    /// Ask the running server (`GET /v1/audit/public-key`).
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckpointArgs {
    /// Ask the running server (`POST /v1/audit/checkpoints`).
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub master_key: MasterKeyArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// The master key file to rotate [default: DIR/master.key].
    #[arg(long, value_name = "FILE", env = "KEYLEDGER_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (missing or empty).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Ask the running server to write it (`POST /v1/admin/backup`; DIR is on the server).
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// A backup directory written by `keyledger admin backup`.
    #[arg(value_name = "BACKUP")]
    pub backup: PathBuf,
    /// The vault's published key (hex) to verify the restored checkpoints against.
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    #[command(flatten)]
    pub data: DataArgs,
}

impl AuditCommand {
    pub fn run(&self, context: &RunContext) -> anyhow::Result<()> {
        match self {
            AuditCommand::Verify(args) => verify(args, context),
            AuditCommand::Export(args) => export(args, context),
            AuditCommand::Replay(args) => replay(args, context),
            AuditCommand::Shredded(args) => shredded(args, context),
            AuditCommand::PublicKey(args) => public_key(args, context),
            AuditCommand::Checkpoint(args) => checkpoint(args, context),
        }
    }
}

impl AdminAuditCommand {
    pub fn run(&self, context: &RunContext) -> anyhow::Result<()> {
        match self {
            AdminAuditCommand::RotateMasterKey(args) => rotate(args, context),
            AdminAuditCommand::Backup(args) => backup_command(args, context),
            AdminAuditCommand::Restore(args) => restore(args, context),
        }
    }
}

fn verify(args: &VerifyArgs, context: &RunContext) -> anyhow::Result<()> {
    let mut options = VerifyOptions {
        public_key: args
            .public_key
            .as_deref()
            .map(parse_public_key)
            .transpose()?,
        require_checkpoint: args.require_checkpoint,
        expect_head: args.expect_head.as_deref().map(Head::parse).transpose()?,
    };
    let outcome = match (&args.file, &args.data_dir) {
        _ if args.remote => {
            let remote = require_remote(context)?;
            // Unpinned, the server's own key is the one to expect (and the report says so).
            let from_server = options.public_key.is_none();
            if from_server {
                options.public_key = Some(parse_public_key(&server_public_key(remote)?)?);
            }
            let export = RemoteExport::open(remote, 1, u64::MAX)?;
            let mut outcome = verify_export(BufReader::new(export), options)?;
            if from_server && outcome.signer_source == SignerSource::Pinned {
                outcome.signer_source = SignerSource::Server;
            }
            outcome
        }
        (Some(file), _) => verify_export_file(file, options)?,
        (None, Some(dir)) => {
            verify_data_dir(dir, options).map_err(|err| held_by_server(err, ASK_TO_VERIFY))?
        }
        (None, None) => bail!("give an export FILE, --data DIR or --remote"),
    };
    if context.json {
        print_json(&serde_json::json!({
            "ok": outcome.is_ok(),
            "first_seq": outcome.first_seq,
            "verified_through": outcome.verified_through,
            "head": outcome.head().map(|head| head.to_string()),
            "events": outcome.events,
            "signed_events": outcome.signed_events(),
            "chained_only_events": outcome.chained_only_events(),
            "signed_through": outcome.signed_through(),
            "checkpoints_verified": outcome.checkpoints_verified,
            "last_checkpoint": outcome.last_checkpoint.as_ref().map(CheckpointRecord::from_checkpoint),
            "terminated": outcome.terminated,
            "problem": outcome.problem.as_ref().map(|p| serde_json::json!({
                "seq": p.seq,
                "reason": p.kind.to_string(),
            })),
        }))?;
    } else {
        print!("{}", outcome.render());
    }
    match outcome.problem {
        None => Ok(()),
        Some(problem) => Err(VerificationFailed(problem).into()),
    }
}

/// What to run next to a running server instead of opening its data directory.
const ASK_TO_VERIFY: &str = "ask it instead: `keyledger audit verify --remote`";
const ASK_TO_EXPORT: &str = "ask it instead: `keyledger audit export --remote`";
const ASK_TO_REPLAY: &str =
    "ask it instead: `keyledger audit replay --remote` with the same moment";
const ASK_FOR_A_CHECKPOINT: &str = "ask it instead: `keyledger audit checkpoint --remote`";
const ASK_FOR_THE_KEY: &str = "ask it instead: `keyledger audit public-key --remote`";
const ASK_FOR_A_REMOTE_BACKUP: &str =
    "ask it instead: `keyledger admin backup --remote DIR` (DIR is on the server)";
const ASK_FOR_A_BACKUP: &str = "take a backup while it runs (`keyledger admin backup --remote DIR`) \
     and run this on it (`--data DIR`)";

/// A data directory that a running server holds, with the command that works next to it. The
/// binary exits with its "conflict with the current state" code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the data directory {} is in use by a running server; {instead} (with the saved key or \
     KEYLEDGER_API_KEY, and --endpoint if it is not the saved one), or stop the server",
    dir.display()
)]
pub struct HeldByServer {
    pub dir: PathBuf,
    pub instead: &'static str,
}

fn held_by_server(err: AuditError, instead: &'static str) -> anyhow::Error {
    match err {
        AuditError::InUse(dir) => HeldByServer { dir, instead }.into(),
        other => other.into(),
    }
}

fn export(args: &ExportArgs, context: &RunContext) -> anyhow::Result<()> {
    let ExportFormat::Jsonl = args.format;
    let to = args.to.unwrap_or(u64::MAX);
    if args.from > to {
        bail!("--from {} is after --to {to}", args.from);
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            // An export holds every event (ciphertext, key hashes): private, like the log.
            keyledger_log::private_files::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let (events, checkpoints) = if args.remote {
        let mut export = RemoteExport::open(require_remote(context)?, args.from, to)?;
        std::io::copy(&mut export, &mut out)?;
        (export.tally.events(), export.tally.checkpoints())
    } else {
        let log = open_log_offline(&args.data.data_dir)
            .map_err(|err| held_by_server(err, ASK_TO_EXPORT))?;
        let summary = export_jsonl(&log, args.from, to, &mut out);
        log.close();
        let summary = summary?;
        (summary.events, summary.checkpoints)
    };
    out.flush()?;
    if args.out.is_some() {
        eprintln!("exported {events} events and {checkpoints} checkpoints");
    }
    Ok(())
}

/// A running server's log as an export, read page by page over `GET /v1/events` and ending with
/// the end record: what `export --remote` writes and `verify --remote` and `replay --remote`
/// read. Lines are re-serialised through their types, so the stream is byte for byte what an
/// offline export of the same range is.
struct RemoteExport<'a> {
    remote: &'a Remote,
    client: reqwest::blocking::Client,
    /// The next page's first seq; `None` once the server said there is no more.
    next: Option<u64>,
    to: u64,
    tally: EndTally,
    buffer: Vec<u8>,
    position: usize,
    ended: bool,
}

impl<'a> RemoteExport<'a> {
    /// Fetches the first page at once, so that a refusal (no permission, unreachable) is an
    /// error of the command rather than of a read halfway through.
    fn open(remote: &'a Remote, from: u64, to: u64) -> anyhow::Result<RemoteExport<'a>> {
        let mut export = RemoteExport {
            remote,
            client: http_client()?,
            next: Some(from.max(1)),
            to,
            tally: EndTally::default(),
            buffer: Vec::new(),
            position: 0,
            ended: false,
        };
        export.fill()?;
        Ok(export)
    }

    /// Replaces the buffer with the next page's lines, or with the end record after the last.
    fn fill(&mut self) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Page {
            lines: Vec<serde_json::Value>,
            next_from: Option<u64>,
        }
        self.buffer.clear();
        self.position = 0;
        let Some(from) = self.next.filter(|from| *from <= self.to) else {
            write_jsonl(&mut self.buffer, &self.tally.end_line())?;
            self.ended = true;
            return Ok(());
        };
        let limit = (self.to - from).saturating_add(1).min(1000);
        let page: Page = send(
            self.client.get(format!(
                "{}/v1/events?from={from}&limit={limit}",
                self.remote.endpoint.trim_end_matches('/')
            )),
            self.remote,
        )?;
        for line in &page.lines {
            let seq = line.get("seq").and_then(serde_json::Value::as_u64);
            if seq.is_some_and(|seq| seq > self.to) {
                continue;
            }
            // Back through the typed line, so the stream has the canonical field order (and
            // verifies on the fast path); anything else is passed on as received.
            match serde_json::from_value::<ExportLine>(line.clone()) {
                Ok(typed) => {
                    self.tally.count(&typed);
                    write_jsonl(&mut self.buffer, &typed)?;
                }
                Err(_) => write_jsonl(&mut self.buffer, line)?,
            }
        }
        self.next = page.next_from;
        Ok(())
    }
}

impl std::io::Read for RemoteExport<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.buffer.len() {
            if self.ended {
                return Ok(0);
            }
            self.fill()
                .map_err(|err| std::io::Error::other(format!("{err:#}")))?;
        }
        let n = out.len().min(self.buffer.len() - self.position);
        out[..n].copy_from_slice(&self.buffer[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

fn write_jsonl(out: &mut Vec<u8>, line: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.push(b'\n');
    Ok(())
}

fn replay(args: &ReplayArgs, context: &RunContext) -> anyhow::Result<()> {
    let moments: Vec<Moment> = match (&args.as_of, args.seq, &args.diff) {
        (Some(as_of), _, _) => vec![Moment::parse(as_of)?],
        (None, Some(seq), _) => vec![Moment::Seq(seq)],
        (None, None, Some(pair)) => pair
            .iter()
            .map(|m| Moment::parse(m))
            .collect::<Result<_, _>>()?,
        (None, None, None) => bail!("give --as-of, --seq or --diff"),
    };
    let views = match &args.file {
        None if args.remote => {
            let export = RemoteExport::open(require_remote(context)?, 1, u64::MAX)?;
            states_as_of(read_export_envelopes(BufReader::new(export)), &moments)?
        }
        Some(path) => {
            let file =
                fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            states_as_of(read_export_envelopes(BufReader::new(file)), &moments)?
        }
        None => {
            let log = open_log_offline(&args.data.data_dir)
                .map_err(|err| held_by_server(err, ASK_TO_REPLAY))?;
            let views = states_as_of(
                log.read_from(1).map(|e| e.map_err(AuditError::from)),
                &moments,
            );
            log.close();
            views?
        }
    };
    match views.as_slice() {
        [from, to] => {
            let changes = diff(from, to);
            if context.json {
                print_json(&changes)?;
            } else {
                print!("{}", changes.render());
            }
        }
        [view] => {
            if context.json {
                print_json(view)?;
            } else {
                print!("{}", view.render());
            }
        }
        _ => bail!("give one moment, or two with --diff"),
    }
    Ok(())
}

fn shredded(args: &ShreddedArgs, context: &RunContext) -> anyhow::Result<()> {
    let master = if args.prove {
        Some(load_master_key(&args.master_key, &args.data.data_dir)?)
    } else {
        None
    };
    let log = open_log_offline(&args.data.data_dir)
        .map_err(|err| held_by_server(err, ASK_FOR_A_BACKUP))?;
    let report = shredding_report(&log);
    let attempts = master
        .as_ref()
        .map(|master| attempt_recovery(&log, master))
        .transpose();
    log.close();
    let (report, attempts) = (report?, attempts?);
    if context.json {
        print_json(&serde_json::json!({ "report": report, "recovery_attempts": attempts }))?;
    } else {
        print!("{}", report.render());
        if let Some(attempts) = &attempts {
            let opened = attempts.iter().filter(|a| a.opened).count();
            println!(
                "\nTried every wrapped key left ({} each) against each of the {} shredded secrets with the master key: {} opened.",
                attempts.first().map_or(0, |a| a.wrapped_keys_tried),
                attempts.len(),
                opened
            );
        }
    }
    if attempts.is_some_and(|attempts| attempts.iter().any(|a| a.opened)) {
        bail!("a shredded secret could still be opened");
    }
    Ok(())
}

fn public_key(args: &PublicKeyArgs, context: &RunContext) -> anyhow::Result<()> {
    let key = if args.remote {
        server_public_key(require_remote(context)?)?
    } else {
        let log = open_log_offline(&args.data.data_dir)
            .map_err(|err| held_by_server(err, ASK_FOR_THE_KEY))?;
        let key = keyledger_vault::published_public_key(&log);
        log.close();
        let key = key?.ok_or_else(|| {
            anyhow!("this data directory has no checkpoint key yet: the vault creates one when it first opens")
        })?;
        keyledger_domain::public::hex(&key)
    };
    if context.json {
        print_json(&serde_json::json!({ "algorithm": "ed25519", "public_key": key }))
    } else {
        println!("{key}");
        Ok(())
    }
}

/// The checkpoint key the server publishes (hex).
fn server_public_key(remote: &Remote) -> anyhow::Result<String> {
    let info: PublicKeyInfo = send(
        http_client()?.get(format!(
            "{}/v1/audit/public-key",
            remote.endpoint.trim_end_matches('/')
        )),
        remote,
    )?;
    Ok(info.public_key)
}

fn checkpoint(args: &CheckpointArgs, context: &RunContext) -> anyhow::Result<()> {
    let record = if args.remote {
        let remote = require_remote(context)?;
        send(
            http_client()?.post(format!(
                "{}/v1/audit/checkpoints",
                remote.endpoint.trim_end_matches('/')
            )),
            remote,
        )?
    } else {
        let master = load_master_key(&args.master_key, &args.data.data_dir)?;
        let vault = open_vault(&args.data.data_dir, &master).map_err(|err| {
            match err.downcast::<AuditError>() {
                Ok(err) => held_by_server(err, ASK_FOR_A_CHECKPOINT),
                Err(err) => err,
            }
        })?;
        CheckpointRecord::from_checkpoint(&vault.checkpoint_now()?)
    };
    if context.json {
        print_json(&record)
    } else {
        println!(
            "checkpoint at seq {}: hash {} signed by {}\nhead {}:{} (for `keyledger audit verify --expect-head`)",
            record.seq, record.hash, record.public_key, record.seq, record.hash
        );
        Ok(())
    }
}

fn rotate(args: &RotateArgs, context: &RunContext) -> anyhow::Result<()> {
    let file = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.data.data_dir.join("master.key"));
    let config = VaultConfig {
        data_dir: args.data.data_dir.clone(),
        ..VaultConfig::default()
    };
    let outcome = rotate_master_key_offline(&config, &file, Arc::new(SystemClock))
        .map_err(|err| anyhow!("{err}"))?;
    if context.json {
        print_json(&serde_json::json!({
            "old_fingerprint": outcome.old_fingerprint,
            "new_fingerprint": outcome.new_fingerprint,
            "generation": outcome.generation,
            "credentials": outcome.rewrap.credentials,
            "vault_secrets": outcome.rewrap.vault_secrets,
            "resumed": outcome.resumed,
        }))?;
    } else {
        println!(
            "master key rotated{}: {} -> {} (generation {}); {} credential data keys and {} vault secrets re-wrapped; {} written, the old key is kept nowhere",
            if outcome.resumed {
                " (an interrupted rotation was finished)"
            } else {
                ""
            },
            outcome.old_fingerprint,
            outcome.new_fingerprint,
            outcome.generation,
            outcome.rewrap.credentials,
            outcome.rewrap.vault_secrets,
            file.display()
        );
    }
    Ok(())
}

fn backup_command(args: &BackupArgs, context: &RunContext) -> anyhow::Result<()> {
    let manifest: keyledger_vault::BackupManifest = if args.remote {
        let remote = require_remote(context)?;
        let request = http_client()?
            .post(format!(
                "{}/v1/admin/backup",
                remote.endpoint.trim_end_matches('/')
            ))
            .json(&serde_json::json!({ "dir": args.dir }));
        send(request, remote)?
    } else {
        backup::backup_offline(&args.data.data_dir, &args.dir)
            .map_err(|err| held_by_server(err, ASK_FOR_A_REMOTE_BACKUP))?
    };
    if context.json {
        print_json(&manifest)
    } else {
        println!(
            "backup written to {}: events through seq {} ({}), {} data keys; the master key is not in it",
            args.dir.display(),
            manifest.head,
            manifest.head_hash,
            manifest.data_keys
        );
        Ok(())
    }
}

fn restore(args: &RestoreArgs, context: &RunContext) -> anyhow::Result<()> {
    let options = VerifyOptions {
        public_key: args
            .public_key
            .as_deref()
            .map(parse_public_key)
            .transpose()?,
        ..VerifyOptions::default()
    };
    let outcome = backup::restore(&args.backup, &args.data.data_dir, options)?;
    if context.json {
        print_json(&serde_json::json!({
            "head": outcome.manifest.head,
            "head_hash": outcome.manifest.head_hash,
            "verified": outcome.verify.is_ok(),
            "problem": outcome.verify.problem.as_ref().map(|p| p.to_string()),
        }))?;
    } else {
        println!(
            "restored {} into {} (events through seq {})",
            args.backup.display(),
            args.data.data_dir.display(),
            outcome.manifest.head
        );
        print!("{}", outcome.verify.render());
    }
    match outcome.verify.problem {
        None => Ok(()),
        Some(problem) => Err(VerificationFailed(problem).into()),
    }
}

fn load_master_key(args: &MasterKeyArgs, data_dir: &Path) -> anyhow::Result<MasterKey> {
    if let Some(text) = std::env::var_os("KEYLEDGER_MASTER_KEY").filter(|v| !v.is_empty()) {
        let text = text
            .into_string()
            .map_err(|_| anyhow!("KEYLEDGER_MASTER_KEY is not text"))?;
        return MasterKey::parse(&text).map_err(|err| anyhow!("KEYLEDGER_MASTER_KEY: {err}"));
    }
    let file = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("master.key"));
    read_master_key(&file).map_err(|err| anyhow!("{err}"))
}

fn open_vault(data_dir: &Path, master: &MasterKey) -> anyhow::Result<Vault> {
    if !data_dir.join("log").join("db").is_file() {
        return Err(AuditError::NotADataDir(data_dir.to_path_buf()).into());
    }
    let config = VaultConfig {
        data_dir: data_dir.to_path_buf(),
        ..VaultConfig::default()
    };
    Vault::open(config, master, Arc::new(SystemClock)).map_err(|err| match err {
        keyledger_vault::VaultError::Locked { .. } => {
            AuditError::InUse(data_dir.to_path_buf()).into()
        }
        other => anyhow!("{other}"),
    })
}

fn require_remote(context: &RunContext) -> anyhow::Result<&Remote> {
    context.remote.as_ref().ok_or_else(|| {
        RemoteFailure {
            status: Some(401),
            message: "--remote needs a server and a key: log in first with `keyledger login`, \
                      or set KEYLEDGER_API_KEY"
                .to_owned(),
        }
        .into()
    })
}

fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot create an HTTP client")
}

fn send<T: DeserializeOwned>(
    request: reqwest::blocking::RequestBuilder,
    remote: &Remote,
) -> anyhow::Result<T> {
    let response = request
        .bearer_auth(remote.key.expose())
        .send()
        .map_err(|err| {
            let mut cause: &dyn std::error::Error = &err;
            while let Some(next) = cause.source() {
                cause = next;
            }
            RemoteFailure {
                status: None,
                message: format!(
                    "cannot reach the keyledger server at {}: {cause}",
                    remote.endpoint
                ),
            }
        })?;
    let status = response.status();
    if !status.is_success() {
        // The API's sentence (it names a missing permission and who can grant it), not its JSON.
        let body: serde_json::Value = response.json().unwrap_or_default();
        let message = body
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        return Err(RemoteFailure {
            status: Some(status.as_u16()),
            message,
        }
        .into());
    }
    response
        .json()
        .context("the server's answer is not what this command expects")
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}
