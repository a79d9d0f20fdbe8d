//! `keyledger source …`: saved sources (decision 0031): a selection and destination saved under
//! a name, run by hand (`source run`) or on a cron schedule in an explicit time zone. Each run
//! is an ordinary job: follow it with `keyledger ingest status ID`.

use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, segment};
use crate::output::{field, items, print_json, print_table, time};

#[derive(Debug, clap::Subcommand)]
pub enum SourceCommand {
    /// Save a source: what `keyledger ingest s3` / `ingest dnanexus` would fetch, under a name,
    /// optionally on a schedule.
    Save(Box<SaveArgs>),
    /// List your sources with their schedule, next and last run.
    List,
    /// Show one source and its last 20 runs.
    Show { id: String },
    /// Run a source now, as a new job (refused while its previous run is still going).
    Run { id: String },
    /// Stop a source's schedule (running it by hand still works).
    Pause { id: String },
    /// Start a paused source's schedule again, from its next occurrence.
    Resume { id: String },
    /// Delete a source; its runs' jobs and files stay.
    Delete { id: String },
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Unique among your sources.
    name: String,
    /// `aws` (with --bucket, --prefix) or `dnanexus` (with --project, --folder).
    #[arg(long, default_value = "aws")]
    provider: String,
    #[arg(long)]
    bucket: Option<String>,
    /// Only keys under this prefix.
    #[arg(long)]
    prefix: Option<String>,
    /// A DNAnexus project id (project-…) or name.
    #[arg(long)]
    project: Option<String>,
    /// The DNAnexus folder to search, recursively [default: /].
    #[arg(long)]
    folder: Option<String>,
    /// A regular expression (not a shell glob) the key or path must match [default: every
    /// file].
    #[arg(long)]
    pattern: Option<String>,
    /// Your folder of the sample store or a folder under it [default: your user name].
    #[arg(long)]
    destination: Option<String>,
    /// Five cron fields: minute hour day-of-month month day-of-week, such as "0 3 * * *"
    /// (03:00 every day). Without it the source runs only by hand.
    #[arg(long, requires = "timezone")]
    schedule: Option<String>,
    /// The IANA time zone the schedule is read in, such as Europe/Zurich or UTC.
    #[arg(long, requires = "schedule")]
    timezone: Option<String>,
}

pub fn run(command: &SourceCommand, global: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::from_args(global)?;
    let path = |id: &str, action: &str| format!("/v1/sources/{}{action}", segment(id));
    match command {
        SourceCommand::Save(save) => {
            let SaveArgs {
                name,
                provider,
                bucket,
                prefix,
                project,
                folder,
                pattern,
                destination,
                schedule,
                timezone,
            } = save.as_ref();
            let body = json!({
                "name": name, "provider": provider, "bucket": bucket, "prefix": prefix,
                "project": project, "folder": folder, "pattern": pattern,
                "destination": destination, "schedule": schedule, "timezone": timezone,
            });
            let source = client.post("/v1/sources", &body)?;
            if global.json {
                print_json(&source);
            } else {
                println!(
                    "Saved source {} ({}); {}",
                    field(&source, "name"),
                    field(&source, "id"),
                    when_next(&source)
                );
            }
            Ok(())
        }
        SourceCommand::List => {
            let list = client.get("/v1/sources")?;
            if global.json {
                print_json(&list);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items(&list, "sources").iter().map(row).collect();
            if rows.is_empty() {
                println!(
                    "No sources. Save one with `keyledger source save NAME --bucket B --pattern RE`."
                );
            } else {
                print_table(
                    &[
                        "ID",
                        "NAME",
                        "SELECTION",
                        "SCHEDULE",
                        "STATE",
                        "NEXT RUN",
                        "LAST RUN",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        SourceCommand::Show { id } => {
            let source = client.get(&path(id, ""))?;
            if global.json {
                print_json(&source);
            } else {
                show(&source);
            }
            Ok(())
        }
        SourceCommand::Run { id } => {
            let job = client.post(&path(id, "/run"), &json!({}))?;
            if global.json {
                print_json(&job);
            } else {
                let job_id = field(&job, "id");
                println!("{job_id}");
                eprintln!(
                    "Started {job_id} (batch {}). Follow it with `keyledger ingest status {job_id}`.",
                    field(&job, "batch_id")
                );
            }
            Ok(())
        }
        SourceCommand::Pause { id } | SourceCommand::Resume { id } => {
            let action = match command {
                SourceCommand::Pause { .. } => "/pause",
                _ => "/resume",
            };
            let source = client.post(&path(id, action), &json!({}))?;
            if global.json {
                print_json(&source);
            } else {
                println!(
                    "Source {} is {}; {}",
                    field(&source, "id"),
                    field(&source, "state"),
                    when_next(&source)
                );
            }
            Ok(())
        }
        SourceCommand::Delete { id } => {
            client.delete(&path(id, ""))?;
            if global.json {
                print_json(&json!({ "deleted": id }));
            } else {
                println!("Deleted source {id}; its runs' jobs and files stay.");
            }
            Ok(())
        }
    }
}

fn row(source: &Value) -> Vec<String> {
    vec![
        field(source, "id"),
        field(source, "name"),
        selection(source),
        schedule(source),
        field(source, "state"),
        time(source, "next_run_at", "-"),
        match (&source["last_refusal"], &source["last_run"]) {
            // A refusal newer than the last run: the schedule is stuck until its owner acts.
            (refusal @ Value::Object(_), _) => {
                format!("REFUSED {}", time(refusal, "scheduled_for", "-"))
            }
            (_, Value::Null) => "-".to_owned(),
            (_, run) => format!("{} {}", time(run, "started_at", "-"), field(run, "state")),
        },
    ]
}

fn show(source: &Value) {
    println!("{}  {}", field(source, "id"), field(source, "name"));
    println!("  selection    {}", selection(source));
    println!("  destination  {}", field(source, "destination"));
    println!("  schedule     {}", schedule(source));
    println!("  state        {}", field(source, "state"));
    println!("  next run     {}", time(source, "next_run_at", "-"));
    println!("  runs         {}", source["runs"].as_u64().unwrap_or(0));
    let refusal = &source["last_refusal"];
    if refusal.is_object() {
        println!(
            "  refused      the run for {} (at {}): {}",
            time(refusal, "scheduled_for", "-"),
            time(refusal, "at", "-"),
            field(refusal, "reason")
        );
    }
    let runs = items(source, "recent_runs");
    if runs.is_empty() {
        return;
    }
    println!();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            vec![
                field(run, "ingestion"),
                field(run, "state"),
                time(run, "started_at", "-"),
                time(run, "scheduled_for", "by hand"),
            ]
        })
        .collect();
    print_table(&["JOB", "STATE", "STARTED", "SCHEDULED FOR"], &rows);
}

fn selection(source: &Value) -> String {
    let pattern = field(source, "pattern");
    match source["provider"].as_str() {
        Some("dnanexus") => format!(
            "dnanexus {}:{} {pattern}",
            field(source, "project"),
            field(source, "folder")
        ),
        _ => format!(
            "s3://{}/{} {pattern}",
            field(source, "bucket"),
            field(source, "prefix")
        ),
    }
}

fn schedule(source: &Value) -> String {
    match source["schedule"].as_str() {
        Some(cron) => format!("{cron} ({})", field(source, "timezone")),
        None => "by hand".to_owned(),
    }
}

fn when_next(source: &Value) -> String {
    match source["next_run_at"].as_str() {
        Some(_) => format!("next run {}.", time(source, "next_run_at", "-")),
        None if source["schedule"].is_null() => {
            "it runs by hand: `keyledger source run ID`.".to_owned()
        }
        None => "its schedule runs nothing while paused.".to_owned(),
    }
}
