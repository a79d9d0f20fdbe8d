//! The clap definitions of `keyledger audit …` and `keyledger admin rotate-master-key|backup|restore`.

use std::path::PathBuf;

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
