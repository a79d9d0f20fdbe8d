//! `keyledger ingest …`: start an ingestion from S3 or DNAnexus with your stored key, follow it
//! with a live progress line, list, inspect and cancel jobs, and fetch a batch's files.
//!
//! The exit code says how a job ended (docs/cli.md): 0 every file stored, 7 some files failed
//! (each listed with its reason), 8 the selection matched nothing, 9 the provider refused, 5
//! any other failure. [`job_outcome`] is the one place that decides it, for following and for
//! `status` alike. A followed job is cancelled on Ctrl-C (see [`interrupt`]); a detached one
//! never is.

mod download;
mod interrupt;
mod lineage;
mod preview;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::exit::{Exit, Failure};
use crate::output::{field, items, print_json, print_table, time};
use interrupt::Interrupts;

#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// Pull sample files from an S3 bucket with your stored AWS key.
    S3 {
        #[arg(long)]
        bucket: String,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// A regular expression (not a shell glob) the whole object key must match: for files
        /// named like `quant_*.csv` in any folder, `(^|/)quant_[^/]*\.csv$`.
        #[arg(long, default_value = ".*")]
        pattern: String,
        #[command(flatten)]
        common: StartArgs,
    },
    /// Pull sample files from a DNAnexus project with your stored DNAnexus token.
    Dnanexus {
        /// A project id (project-…) or name.
        #[arg(long)]
        project: String,
        /// The folder to search, recursively.
        #[arg(long, default_value = "/")]
        folder: String,
        /// A regular expression (not a shell glob) the path under the folder must match: for
        /// files named like `*.sf` in any folder, `(^|/)[^/]*\.sf$`.
        #[arg(long, default_value = ".*")]
        pattern: String,
        #[command(flatten)]
        common: StartArgs,
    },
    /// Show one job: state, files, bytes, errors.
    Status { id: String },
    /// List your jobs, newest first.
    List,
    /// Cancel a running or queued job; its partial files are removed.
    Cancel { id: String },
    /// Show a finished batch's manifest: every stored file with its size, SHA-256 and source,
    /// and the files that failed.
    Manifest { id: String },
    /// Where a stored file came from: source and version, external key, time, SHA-256, and
    /// the other versions of the same remote file.
    Lineage {
        /// The file's path in the sample store: the job's store path, `/`, its path in the batch.
        path: String,
    },
    /// Fetch a batch's files to this machine, checking each one's SHA-256; run it again to
    /// finish a broken download (files already present and correct are skipped).
    Download {
        id: String,
        /// The folder to write into [default: ./<batch id>].
        #[arg(long)]
        to: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Your folder of the sample store (named after your user) or a folder under it, such as
    /// `alice/run-1` [default: your user name].
    #[arg(long)]
    destination: Option<String>,
    /// Print only the job id (hint on standard error) and return at once instead of following
    /// it; the job runs on. Without it, Ctrl-C cancels the job.
    #[arg(long)]
    detach: bool,
    /// Show what the selection picks (count, total size, the first page of paths) without
    /// fetching or recording anything.
    #[arg(long, conflicts_with = "detach")]
    dry_run: bool,
    /// Fetch every selected file again, even those an earlier import from the same source
    /// stored in the same version (skipped by default).
    #[arg(long, conflicts_with = "dry_run")]
    force: bool,
    /// With --dry-run: continue after this path (the `More:` line of the previous page).
    #[arg(long, requires = "dry_run")]
    cursor: Option<String>,
    /// With --dry-run: paths per page (1 to 1000) [default: 100].
    #[arg(long, requires = "dry_run")]
    page_size: Option<usize>,
}

pub fn run(command: &IngestCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    match command {
        IngestCommand::S3 {
            bucket,
            prefix,
            pattern,
            common,
        } => {
            let body = json!({ "provider": "aws", "bucket": bucket, "prefix": prefix, "pattern": pattern, "destination": common.destination });
            preview_or_start(&client, global, common, body, pattern)
        }
        IngestCommand::Dnanexus {
            project,
            folder,
            pattern,
            common,
        } => {
            let body = json!({ "provider": "dnanexus", "project": project, "folder": folder, "pattern": pattern, "destination": common.destination });
            preview_or_start(&client, global, common, body, pattern)
        }
        IngestCommand::Status { id } => {
            let job = client.get(&format!("/v1/ingestions/{}", segment(id)))?;
            show(&job, global.json);
            job_outcome(&job).map_err(Into::into)
        }
        IngestCommand::List => {
            let list = client.get("/v1/ingestions")?;
            if global.json {
                print_json(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&list, "ingestions")
                .iter()
                .map(|job| {
                    vec![
                        field(job, "id"),
                        field(job, "provider"),
                        field(job, "state"),
                        format!(
                            "{}/{}",
                            count(job, "files_fetched"),
                            optional_count(job, "files_selected")
                        ),
                        bytes(job["bytes_fetched"].as_u64().unwrap_or(0)),
                        field(job, "batch_id"),
                        time(job, "requested_at", "-"),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!(
                    "No ingestions. Start one with `keyledger ingest s3 --bucket B --pattern RE`."
                );
            } else {
                print_table(
                    &[
                        "ID",
                        "PROVIDER",
                        "STATE",
                        "FILES",
                        "BYTES",
                        "BATCH",
                        "REQUESTED",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        IngestCommand::Cancel { id } => {
            let job = client.post(
                &format!("/v1/ingestions/{}/cancel", segment(id)),
                &json!({}),
            )?;
            if global.json {
                print_json(&job);
            } else {
                println!(
                    "Cancelled {}; its partial files are removed.",
                    field(&job, "id")
                );
            }
            Ok(())
        }
        IngestCommand::Manifest { id } => {
            let manifest = client.get(&format!("/v1/ingestions/{}/manifest", segment(id)))?;
            if global.json {
                print_json(&manifest);
            } else {
                download::show_manifest(&manifest);
            }
            Ok(())
        }
        IngestCommand::Lineage { path } => lineage::run(&client, path, global.json),
        IngestCommand::Download { id, to } => {
            download::run(&client, id, to.as_deref(), global.json)
        }
    }
}

/// Adds `"force": true` to a job's body when asked.
/// `--dry-run`: what the selection `body` picks; else the job, started (and followed).
fn preview_or_start(
    client: &Client,
    global: &ClientArgs,
    common: &StartArgs,
    body: Value,
    pattern: &str,
) -> anyhow::Result<()> {
    if common.dry_run {
        return preview::run(
            client,
            &body,
            common.cursor.as_deref(),
            common.page_size,
            global.json,
        );
    }
    start(
        client,
        global,
        with_force(body, common.force),
        pattern,
        common.detach,
    )
}

fn with_force(mut body: Value, force: bool) -> Value {
    if force {
        body["force"] = Value::Bool(true);
    }
    body
}

/// How often a followed job is looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a Ctrl-C waits for the cancelled job to end before giving up on it.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

fn start(
    client: &Client,
    global: &ClientArgs,
    body: Value,
    pattern: &str,
    detach: bool,
) -> anyhow::Result<()> {
    // Installed before the job exists, so a Ctrl-C during the request still cancels it.
    let interrupts = (!detach).then(Interrupts::install).transpose()?;
    let job = client
        .post("/v1/ingestions", &body)
        .map_err(|error| with_glob_hint(error, pattern))?;
    let id = field(&job, "id");
    let Some(interrupts) = interrupts else {
        // Standard output is the id alone, for `id=$(keyledger ingest s3 … --detach)`.
        if global.json {
            print_json(&job);
        } else {
            println!("{id}");
        }
        eprintln!(
            "Started {id} (batch {}); it runs on without this command. Follow it with \
             `keyledger ingest status {id}`.",
            field(&job, "batch_id")
        );
        return Ok(());
    };
    interrupts.following(&id);
    let job = match follow(client, &id, !global.json, &interrupts)? {
        Followed::Finished(job) => job,
        Followed::Interrupted => return cancel_on_interrupt(client, &id, &interrupts),
    };
    show(&job, global.json);
    job_outcome(&job).map_err(Into::into)
}

/// How following a job ended.
enum Followed {
    Finished(Value),
    Interrupted,
}

/// Polls the job until it finishes or the user presses Ctrl-C, drawing a progress line on
/// standard error when it is a terminal: files, bytes, rate, ETA.
fn follow(
    client: &Client,
    id: &str,
    draw: bool,
    interrupts: &Interrupts,
) -> anyhow::Result<Followed> {
    let draw = draw && std::io::stderr().is_terminal();
    let started = Instant::now();
    loop {
        if interrupts.pressed() {
            if draw {
                eprintln!();
            }
            return Ok(Followed::Interrupted);
        }
        let job = client.get(&format!("/v1/ingestions/{}", segment(id)))?;
        let state = job["state"].as_str().unwrap_or("");
        if draw {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K{}", progress_line(&job, started.elapsed()));
            let _ = err.flush();
        }
        if matches!(state, "completed" | "failed" | "cancelled") {
            if draw {
                eprintln!();
            }
            return Ok(Followed::Finished(job));
        }
        interrupts.wait(POLL_INTERVAL);
    }
}

/// The first Ctrl-C: cancels the job through the API and waits (bounded) for it to end. A
/// second Ctrl-C ends the process at once (see [`interrupt`]). Always exits 130.
fn cancel_on_interrupt(client: &Client, id: &str, interrupts: &Interrupts) -> anyhow::Result<()> {
    eprintln!("Cancelling ingestion {id}… (use --detach to leave jobs running)");
    let path = format!("/v1/ingestions/{}", segment(id));
    let cancelled = client.post(&format!("{path}/cancel"), &json!({}));
    if let Err(error) = cancelled {
        let finished = error
            .downcast_ref::<Failure>()
            .is_some_and(|failure| failure.exit == Exit::Conflict);
        if !finished {
            return Err(Failure::new(
                Exit::Interrupted,
                format!(
                    "interrupted; ingestion {id} could not be cancelled ({error:#}) and may still \
                     run: cancel it with `keyledger ingest cancel {id}`"
                ),
            )
            .into());
        }
    }
    let deadline = Instant::now() + CANCEL_WAIT;
    loop {
        let job = client.get(&path)?;
        let state = job["state"].as_str().unwrap_or("");
        match state {
            "cancelled" => {
                return Err(Failure::new(
                    Exit::Interrupted,
                    format!(
                        "interrupted; ingestion {id} was cancelled ({} files had been stored in \
                         {})",
                        count(&job, "files_fetched"),
                        field(&job, "store_path")
                    ),
                )
                .into());
            }
            "completed" | "failed" => {
                return Err(Failure::new(
                    Exit::Interrupted,
                    format!(
                        "interrupted; ingestion {id} had already ended ({state}) and was not \
                         cancelled: see `keyledger ingest status {id}`"
                    ),
                )
                .into());
            }
            _ if Instant::now() >= deadline => {
                return Err(Failure::new(
                    Exit::Interrupted,
                    format!(
                        "interrupted; ingestion {id} is still cancelling after {} s: check \
                         `keyledger ingest status {id}`",
                        CANCEL_WAIT.as_secs()
                    ),
                )
                .into());
            }
            _ => interrupts.wait(POLL_INTERVAL),
        }
    }
}

fn progress_line(job: &Value, elapsed: Duration) -> String {
    let state = job["state"].as_str().unwrap_or("");
    let transferred = job["bytes_transferred"].as_u64().unwrap_or(0);
    let total = job["bytes_selected"].as_u64();
    let rate = job["bytes_per_second"].as_u64().unwrap_or(0);
    let bar = match total {
        Some(total) if total > 0 => {
            let done = ((transferred as f64 / total as f64) * 30.0)
                .round()
                .clamp(0.0, 30.0) as usize;
            format!("[{}{}] ", "#".repeat(done), ".".repeat(30 - done))
        }
        _ => String::new(),
    };
    let eta = match (total, rate) {
        (Some(total), rate) if rate > 0 && total > transferred => {
            format!(" ETA {}s", (total - transferred) / rate)
        }
        _ => String::new(),
    };
    format!(
        "{state:<9} {bar}files {}/{} ({} failed)  {}/{}  {}/s{eta}  {:.0}s",
        count(job, "files_fetched"),
        optional_count(job, "files_selected"),
        count(job, "files_failed"),
        bytes(transferred),
        total.map(bytes).unwrap_or_else(|| "?".into()),
        bytes(rate),
        elapsed.as_secs_f64()
    )
}

fn show(job: &Value, json: bool) {
    if json {
        print_json(job);
        return;
    }
    print_table(
        &[
            "ID",
            "STATE",
            "FILES",
            "FAILED",
            "BYTES",
            "BATCH",
            "STORE PATH",
        ],
        &[vec![
            field(job, "id"),
            field(job, "state"),
            format!(
                "{}/{}",
                count(job, "files_fetched"),
                optional_count(job, "files_selected")
            ),
            count(job, "files_failed"),
            bytes(job["bytes_fetched"].as_u64().unwrap_or(0)),
            field(job, "batch_id"),
            field(job, "store_path"),
        ]],
    );
    let failed: Vec<Vec<String>> = items(job, "files")
        .iter()
        .filter(|f| f["state"] == "failed")
        .map(|f| vec![field(f, "path"), field(f, "error")])
        .collect();
    if !failed.is_empty() {
        println!();
        print_table(&["FAILED FILE", "REASON"], &failed);
    }
    // A failed job's error is the command's own error line (see `job_outcome`), printed once.
}

/// What a job's state means for the command's exit code: `Ok` for a job that stored every
/// file it selected (or is still running), otherwise the failure scripts should see.
fn job_outcome(job: &Value) -> Result<(), Failure> {
    let id = field(job, "id");
    match job["state"].as_str() {
        Some("completed") => {
            let failed = job["files_failed"].as_u64().unwrap_or(0);
            let selected = job["files_selected"].as_u64().unwrap_or(0);
            if failed > 0 {
                return Err(Failure::new(
                    Exit::PartialFailure,
                    format!(
                        "ingestion {id}: {failed} of {selected} files failed (listed above with \
                         their reasons); the other {} are in {}",
                        count(job, "files_fetched"),
                        field(job, "store_path")
                    ),
                ));
            }
            if selected == 0 {
                return Err(Failure::new(Exit::NothingMatched, nothing_matched(job)));
            }
            Ok(())
        }
        Some("failed") => Err(Failure::new(
            exit_for_failure_kind(job["failure_kind"].as_str()),
            format!(
                "ingestion {id} failed: {}",
                job["error"]
                    .as_str()
                    .unwrap_or("see `keyledger ingest status`")
            ),
        )),
        Some("cancelled") => Err(Failure::new(
            Exit::Server,
            format!(
                "ingestion {id} was cancelled; {} files had been stored in {}",
                count(job, "files_fetched"),
                field(job, "store_path")
            ),
        )),
        _ => Ok(()),
    }
}

/// The exit code of a failed job, from the API's machine-readable `failure_kind`: the provider's
/// refusals (which retrying cannot fix) are 9, anything else (or no kind) is 5.
fn exit_for_failure_kind(kind: Option<&str>) -> Exit {
    match kind {
        Some("provider_rejected" | "not_found" | "unreachable") => Exit::ProviderRejected,
        _ => Exit::Server,
    }
}

/// "Nothing matched", with what was searched and, for a pattern that looks like a shell glob,
/// the regular expression that was probably meant.
fn nothing_matched(job: &Value) -> String {
    let selection = &job["selection"];
    let (place, pattern, against) = if let Some(aws) = selection.get("aws") {
        (
            format!("s3://{}/{}", text(aws, "bucket"), text(aws, "prefix")),
            text(aws, "pattern"),
            "the whole object key",
        )
    } else if let Some(dx) = selection.get("dnanexus") {
        (
            format!("{}:{}", text(dx, "project"), text(dx, "folder")),
            text(dx, "pattern"),
            "the path under the folder",
        )
    } else {
        ("the selection".to_owned(), String::new(), "")
    };
    let mut message = format!(
        "ingestion {}: nothing matched: no file in {place} matches the pattern `{pattern}`",
        field(job, "id")
    );
    match glob_as_regex(&pattern) {
        Some(regex) => message.push_str(&format!(
            "; --pattern is a regular expression (matched against {against}), not a shell \
             glob: for file names like `{pattern}` use --pattern '{regex}'"
        )),
        None => message.push_str(&format!(
            "; --pattern is a regular expression matched against {against}; check the \
             bucket or project, the prefix or folder, and the pattern"
        )),
    }
    message
}

/// A start request refused for its pattern (`*.h5ad` is not a valid regular expression) gets
/// the same glob hint as a selection that matched nothing.
fn with_glob_hint(error: anyhow::Error, pattern: &str) -> anyhow::Error {
    let Some(failure) = error.downcast_ref::<Failure>() else {
        return error;
    };
    match glob_as_regex(pattern) {
        Some(regex) if failure.exit == Exit::Usage && failure.message.contains("pattern") => {
            Failure::new(
                failure.exit,
                format!(
                    "{}; --pattern is a regular expression, not a shell glob: for file names \
                     like `{pattern}` use --pattern '{regex}'",
                    failure.message
                ),
            )
            .into()
        }
        _ => error,
    }
}

/// The regular expression a shell glob means, if `pattern` looks like one: it has `*` or `?`
/// used as glob wildcards (not after `.`, `)` or `]` as in `.*`) and no regex-only syntax. The
/// result matches a whole file name in any folder, as the shell would in each folder.
fn glob_as_regex(pattern: &str) -> Option<String> {
    if pattern.is_empty() || pattern.contains(['^', '$', '\\', '(', ')', '|', '+', '{', '}']) {
        return None;
    }
    let chars: Vec<char> = pattern.chars().collect();
    let glob_wildcard = chars.iter().enumerate().any(|(index, c)| {
        matches!(c, '*' | '?') && (index == 0 || !matches!(chars[index - 1], '.' | ']' | ')'))
    });
    if !glob_wildcard {
        return None;
    }
    let mut regex = String::from(if pattern.contains('/') { "^" } else { "(^|/)" });
    for c in pattern.chars() {
        match c {
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            '.' => regex.push_str("\\."),
            other => regex.push(other),
        }
    }
    regex.push('$');
    Some(regex)
}

fn text(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_default().to_owned()
}

fn count(job: &Value, name: &str) -> String {
    job[name].as_u64().unwrap_or(0).to_string()
}

fn optional_count(job: &Value, name: &str) -> String {
    job[name]
        .as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "?".into())
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_the_regular_expressions_they_mean() {
        let check = |pattern: &str, expect: Option<&str>| {
            assert_eq!(glob_as_regex(pattern).as_deref(), expect, "{pattern:?}");
        };
        check("quant_*.csv", Some(r"(^|/)quant_[^/]*\.csv$"));
        check("*.h5ad", Some(r"(^|/)[^/]*\.h5ad$"));
        check("sample-?.fastq.gz", Some(r"(^|/)sample-[^/]\.fastq\.gz$"));
        check("plate-1/*.csv", Some(r"^plate-1/[^/]*\.csv$"));
        // Regular expressions are left alone.
        check(r"\.csv$", None);
        check(".*", None);
        check("quant_.*csv", None);
        check("^quant", None);
        check("(a|b).csv", None);
        check("csv", None);
        check("", None);
    }

    #[test]
    fn a_finished_job_decides_the_exit_code() {
        let check = |job: Value, expect: Option<Exit>, fragment: &str| {
            let outcome = job_outcome(&job);
            assert_eq!(outcome.as_ref().err().map(|f| f.exit), expect, "{job}");
            if let Err(failure) = outcome {
                assert!(failure.message.contains(fragment), "{}", failure.message);
            }
        };
        let aws =
            json!({ "aws": { "bucket": "lab", "prefix": "runs/", "pattern": "quant_*.csv" } });
        check(
            json!({ "id": "ing_1", "state": "completed", "files_selected": 3, "files_fetched": 3, "files_failed": 0 }),
            None,
            "",
        );
        check(json!({ "id": "ing_1", "state": "fetching" }), None, "");
        check(
            json!({ "id": "ing_1", "state": "completed", "files_selected": 3, "files_fetched": 2, "files_failed": 1, "store_path": "alice/b" }),
            Some(Exit::PartialFailure),
            "1 of 3 files failed",
        );
        check(
            json!({ "id": "ing_1", "state": "completed", "files_selected": 0, "files_failed": 0, "selection": aws }),
            Some(Exit::NothingMatched),
            r"s3://lab/runs/ matches the pattern `quant_*.csv`; --pattern is a regular expression",
        );
        let dx = json!({ "dnanexus": { "project": "project-x", "folder": "/quant", "pattern": r"\.sf$" } });
        check(
            json!({ "id": "ing_1", "state": "completed", "files_selected": 0, "selection": dx }),
            Some(Exit::NothingMatched),
            "no file in project-x:/quant",
        );
        for (kind, exit) in [
            (Some("provider_rejected"), Exit::ProviderRejected),
            (Some("not_found"), Exit::ProviderRejected),
            (Some("unreachable"), Exit::ProviderRejected),
            (Some("transient"), Exit::Server),
            (Some("storage"), Exit::Server),
            (None, Exit::Server),
        ] {
            check(
                json!({ "id": "ing_1", "state": "failed", "error": "listing failed", "failure_kind": kind }),
                Some(exit),
                "ingestion ing_1 failed: listing failed",
            );
        }
        check(
            json!({ "id": "ing_1", "state": "cancelled", "files_fetched": 1 }),
            Some(Exit::Server),
            "was cancelled",
        );
    }
}
