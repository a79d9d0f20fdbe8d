//! `keyledger ingest …`: start an ingestion from S3 or DNAnexus with your stored key, follow it
//! with a live progress line, list, inspect and cancel jobs.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::exit::{Exit, Failure};
use crate::output::{field, items, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// Pull sample files from an S3 bucket with your stored AWS key.
    S3 {
        #[arg(long)]
        bucket: String,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// A regular expression the object key must match.
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
        /// A regular expression the path under the folder must match.
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
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Your folder of the sample store (named after your user) or a folder under it, such as
    /// `alice/run-1` [default: your user name].
    #[arg(long)]
    destination: Option<String>,
    /// Print the job id and return at once instead of following it.
    #[arg(long)]
    detach: bool,
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
            start(&client, global, body, common.detach)
        }
        IngestCommand::Dnanexus {
            project,
            folder,
            pattern,
            common,
        } => {
            let body = json!({ "provider": "dnanexus", "project": project, "folder": folder, "pattern": pattern, "destination": common.destination });
            start(&client, global, body, common.detach)
        }
        IngestCommand::Status { id } => {
            let job = client.get(&format!("/v1/ingestions/{}", segment(id)))?;
            show(&job, global.json);
            finished_ok(&job)
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
    }
}

fn start(client: &Client, global: &ClientArgs, body: Value, detach: bool) -> anyhow::Result<()> {
    let job = client.post("/v1/ingestions", &body)?;
    let id = field(&job, "id");
    if detach {
        if global.json {
            print_json(&job);
        } else {
            println!(
                "Started {id} (batch {}). Follow it with `keyledger ingest status {id}`.",
                field(&job, "batch_id")
            );
        }
        return Ok(());
    }
    let job = follow(client, &id, !global.json)?;
    show(&job, global.json);
    finished_ok(&job)
}

/// Polls the job until it finishes, drawing a progress line on standard error when it is a
/// terminal: files, bytes, rate, ETA.
fn follow(client: &Client, id: &str, draw: bool) -> anyhow::Result<Value> {
    let draw = draw && std::io::stderr().is_terminal();
    let started = Instant::now();
    loop {
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
            return Ok(job);
        }
        std::thread::sleep(Duration::from_millis(250));
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
    // A failed job's error is not printed here: `finished_ok` returns it, and main prints it
    // once on standard error.
}

/// A failed job makes the command fail, so scripts notice.
fn finished_ok(job: &Value) -> anyhow::Result<()> {
    match job["state"].as_str() {
        Some("failed") => Err(Failure::new(
            Exit::Server,
            format!(
                "ingestion {} failed: {}",
                field(job, "id"),
                job["error"]
                    .as_str()
                    .unwrap_or("see `keyledger ingest status`")
            ),
        )
        .into()),
        _ => Ok(()),
    }
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
