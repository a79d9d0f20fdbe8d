//! Throughput of the connector against a DNAnexus API server (the emulator binary in practice):
//!
//! ```text
//! fetch_bench --api URL --token T --project P --folder F --out DIR [--files-in-parallel N]
//!             [--concurrency C] [--runs R] [--raw]
//! ```
//!
//! Lists `F`, fetches every file into `DIR` (`--files-in-parallel` fetches at once, each with the
//! default options) `R` times and prints each run and the median. `--raw` instead GETs the
//! first file's download URL once, discarding the bytes, to measure the server alone.

use std::path::PathBuf;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use keyledger_connect_dnanexus::{
    DnanexusOptions, DnanexusSelection, DnanexusSource, DnanexusToken, PartialFile, Source,
};
use tokio_util::sync::CancellationToken;

struct Arguments {
    api: String,
    token: String,
    project: String,
    folder: String,
    out: PathBuf,
    files_in_parallel: usize,
    runs: usize,
    concurrency: Option<usize>,
    raw: bool,
}

fn parse_arguments() -> Result<Arguments, String> {
    let mut arguments = Arguments {
        api: String::new(),
        token: String::new(),
        project: String::new(),
        folder: "/".into(),
        out: PathBuf::from("."),
        files_in_parallel: 16,
        runs: 3,
        concurrency: None,
        raw: false,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--raw" {
            arguments.raw = true;
            continue;
        }
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--api" => arguments.api = value,
            "--token" => arguments.token = value,
            "--project" => arguments.project = value,
            "--folder" => arguments.folder = value,
            "--out" => arguments.out = PathBuf::from(value),
            "--files-in-parallel" => {
                arguments.files_in_parallel = value
                    .parse()
                    .map_err(|_| "--files-in-parallel must be a number")?
            }
            "--concurrency" => {
                arguments.concurrency = Some(
                    value
                        .parse()
                        .map_err(|_| "--concurrency must be a number")?,
                )
            }
            "--runs" => arguments.runs = value.parse().map_err(|_| "--runs must be a number")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if arguments.api.is_empty() || arguments.token.is_empty() || arguments.project.is_empty() {
        return Err("--api, --token and --project are required".into());
    }
    Ok(arguments)
}

/// Peak resident set size of this process, from /proc (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments = parse_arguments()?;
    let defaults = DnanexusOptions::default();
    let concurrency = arguments.concurrency.unwrap_or(defaults.concurrency);
    let options = DnanexusOptions {
        api_url: arguments.api.clone(),
        concurrency,
        ..defaults
    };
    let source = DnanexusSource::new(&DnanexusToken(arguments.token.clone()), &options)?;
    let files = source
        .list(&DnanexusSelection::new(
            &arguments.project,
            &arguments.folder,
            regex::Regex::new("")?,
        ))
        .await?;
    let total_bytes: u64 = files.iter().map(|file| file.size).sum();
    println!("{} files, {} bytes", files.len(), total_bytes);

    if arguments.raw {
        let first = files.first().ok_or("no file to fetch")?;
        let http = reqwest::Client::new();
        let download: serde_json::Value = http
            .post(format!("{}/{}/download", arguments.api, first.version))
            .bearer_auth(&arguments.token)
            .json(&serde_json::json!({"project": first.location.project}))
            .send()
            .await?
            .json()
            .await?;
        let url = download["url"].as_str().ok_or("no url")?;
        let started = Instant::now();
        let mut response = http.get(url).send().await?;
        let mut received = 0u64;
        while let Some(chunk) = response.chunk().await? {
            received += chunk.len() as u64;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "raw GET: {received} bytes in {seconds:.3} s = {:.0} MB/s",
            received as f64 / seconds / 1e6
        );
        return Ok(());
    }

    std::fs::create_dir_all(&arguments.out)?;
    let mut seconds = Vec::new();
    for run in 0..arguments.runs {
        let started = Instant::now();
        let cancel = CancellationToken::new();
        futures::stream::iter(files.iter().enumerate())
            .map(|(index, file)| {
                let source = source.clone();
                let partial = arguments.out.join(format!("{index:05}.partial"));
                let done = arguments
                    .out
                    .join(format!("{index:05}-{}", file.location.name));
                let cancel = cancel.clone();
                async move {
                    source
                        .fetch(file, &PartialFile::new(&partial), &|_| {}, &cancel)
                        .await?;
                    tokio::fs::rename(&partial, &done).await?;
                    Ok::<(), Box<dyn std::error::Error>>(())
                }
            })
            .buffer_unordered(arguments.files_in_parallel)
            .try_collect::<Vec<()>>()
            .await?;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "run {}: {elapsed:.3} s, {:.0} MB/s, {:.0} files/s",
            run + 1,
            total_bytes as f64 / elapsed / 1e6,
            files.len() as f64 / elapsed
        );
        seconds.push(elapsed);
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!(
        "median {median:.3} s: {:.0} MB/s, {:.0} files/s; peak RSS {:.0} MiB",
        total_bytes as f64 / median / 1e6,
        files.len() as f64 / median,
        peak_rss_mib()
    );
    Ok(())
}
