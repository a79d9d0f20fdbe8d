//! What each audit command does: open the data directory (or ask the server with `--remote`),
//! call the audit library, print a table or JSON.

use std::fs;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use keyledger_audit::replay::{Moment, diff, states_as_of};
use keyledger_audit::shredded::{attempt_recovery, shredding_report};
use keyledger_audit::verify::{
    Head, Problem, SignerSource, VerifyOptions, parse_public_key, verify_data_dir, verify_export,
    verify_export_file,
};
use keyledger_audit::{
    AuditError, CheckpointRecord, backup, export_jsonl, open_log_offline, read_export_envelopes,
};
use keyledger_crypto::MasterKey;
use keyledger_vault::{
    SystemClock, Vault, VaultConfig, read_master_key, rotate_master_key_offline,
};

use super::args::*;
use super::remote::{
    RemoteExport, RunContext, http_client, require_remote, send, server_public_key,
};

/// What `verify` and `restore` return when the log does not verify, so the binary can map it to
/// its own exit code (`err.downcast_ref::<VerificationFailed>()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verification failed at {0}")]
pub struct VerificationFailed(pub Problem);

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
        let summary = export_jsonl(&log.view(), args.from, to, &mut out);
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
        let key = keyledger_vault::published_public_key(&log.view());
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

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}
