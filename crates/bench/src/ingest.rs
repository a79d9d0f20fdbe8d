//! Ingestion throughput against the in-process S3 server and the DNAnexus emulator, each
//! against the official client (awscli, dxpy) and the server's own limit, in the same run.

mod resync;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use futures::StreamExt;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Seed};
use keyledger_testkit::s3::{ChecksumAlgorithm, S3Server};

use crate::report::{Report, cpu_seconds, ratio};

const ACCESS_KEY_ID: &str = "AKIABENCHMARK0000001";
const SECRET: &str = "benchSecretKey0123456789abcdefghijklmnOP";
const DX_TOKEN: &str = "dxBenchToken0123456789abcdef";
const RUNS: usize = 3;
/// awscli's default `multipart_chunksize`.
const AWSCLI_PART_SIZE: u64 = 8 << 20;

pub fn run_s3(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    // KEYLEDGER_BENCH_S3_MIB sets the big objects' size (a check of the section on a machine
    // short of disk or time; the figures to compare are the 1 GiB ones).
    let big: u64 = match std::env::var("KEYLEDGER_BENCH_S3_MIB") {
        Ok(mib) => mib.trim().parse::<u64>()? << 20,
        Err(_) if report.quick => 256 << 20,
        Err(_) => 1 << 30,
    };
    let small_count: u64 = if report.quick { 500 } else { 2000 };
    let aws = tool(".venv/bin/aws")?;
    let server = runtime.block_on(S3Server::start(ACCESS_KEY_ID, SECRET))?;
    runtime.block_on(async {
        server.create_bucket("bench").await?;
        // As S3 stores an upload today: one PutObject with S3's default CRC64NVME...
        server
            .put_generated_object_with(
                "bench",
                "big-crc64nvme/matrix.h5ad",
                big,
                7,
                Some(ChecksumAlgorithm::Crc64Nvme),
            )
            .await?;
        // ... as awscli uploads a large file: 8 MiB parts with a CRC32 each (composite)...
        server
            .put_generated_object_multipart(
                "bench",
                "big-composite/matrix.h5ad",
                big,
                7,
                AWSCLI_PART_SIZE,
                ChecksumAlgorithm::Crc32,
            )
            .await?;
        // ... and, as older uploads are, with no checksum: the ETag's MD5 is the only check.
        server
            .put_generated_object_with("bench", "big-md5/matrix.h5ad", big, 7, None)
            .await?;
        server
            .put_generated_objects("bench", small_count, 64 * 1024, 11, |i| {
                format!("small/sample-{i:05}.csv")
            })
            .await?;
        anyhow::Ok(())
    })?;
    let endpoint = server.endpoint();
    let mut ceilings = Vec::new();
    report.section(
        "S3 ingestion (in-process s3s-fs server with SigV4; median of 3 runs)",
        &[
            "case",
            "keyledger",
            "awscli `s3 cp --recursive`",
            "server limit",
            "vs awscli",
            "vs limit",
            "vs ceiling",
            "goals",
        ],
    );
    let big_case = |what: &str| format!("1 × {} MiB object, {what}", big >> 20);
    for (case, prefix, bytes, files, check) in [
        (
            big_case("CRC64NVME (S3's default)"),
            "big-crc64nvme/",
            big,
            1u64,
            Some(Check::Crc64Nvme),
        ),
        (
            big_case(&format!(
                "{} parts with CRC32 (awscli's multipart upload)",
                big.div_ceil(AWSCLI_PART_SIZE)
            )),
            "big-composite/",
            big,
            1,
            Some(Check::CompositeCrc32),
        ),
        (
            big_case("no checksum (ETag MD5)"),
            "big-md5/",
            big,
            1,
            Some(Check::Md5),
        ),
        (
            format!("{small_count} × 64 KiB objects"),
            "small/",
            small_count * 64 * 1024,
            small_count,
            None,
        ),
    ] {
        let mut dirs = RunDirs::new(files > 1)?;
        let ours = median(RUNS, || {
            let (_, fetched, elapsed) = dirs.run(|dir| {
                Ok(runtime.block_on(crate::ingestion::ingest_s3_once(
                    dir,
                    &endpoint,
                    ACCESS_KEY_ID,
                    SECRET,
                    "bench",
                    prefix,
                    ".*",
                ))?)
            })?;
            anyhow::ensure!(
                fetched == files,
                "keyledger fetched {fetched} of {files} files"
            );
            Ok(elapsed.as_secs_f64())
        })?;
        let awscli = median(RUNS, || {
            dirs.run(|out| {
                let started = Instant::now();
                let status = Command::new(&aws)
                    .args([
                        "s3",
                        "cp",
                        "--recursive",
                        "--only-show-errors",
                        "--endpoint-url",
                        &endpoint,
                    ])
                    .arg(format!("s3://bench/{prefix}"))
                    .arg(out)
                    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
                    .env("AWS_SECRET_ACCESS_KEY", SECRET)
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("AWS_CONFIG_FILE", "/dev/null")
                    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
                    .status()?;
                let elapsed = started.elapsed();
                anyhow::ensure!(status.success(), "aws s3 cp failed");
                Ok(elapsed.as_secs_f64())
            })
        })?;
        let mut limit_cpu = Vec::with_capacity(RUNS);
        let limit = median(RUNS, || {
            let cpu = cpu_seconds();
            let seconds = runtime.block_on(s3_limit(&server, prefix))?;
            limit_cpu.push(cpu_seconds() - cpu);
            Ok(seconds)
        })?;
        limit_cpu.sort_by(f64::total_cmp);
        let mut vs_ceiling = "—".to_owned();
        if let Some(check) = check {
            let floor = HashingFloor::measure(bytes, limit_cpu[limit_cpu.len() / 2], check)
                .no_faster_than(limit);
            vs_ceiling = ratio(floor.best_seconds(), ours);
            ceilings.push(format!(
                "Ceiling for the {case} on this machine, for any client that verifies its {} \
                 and records a SHA-256 as this service must: {}, i.e. at most {} × the server \
                 limit and {} × awscli (which verifies nothing on a ranged download).",
                check.describe(),
                floor.arithmetic(),
                ratio(limit, floor.best_seconds()),
                ratio(awscli, floor.best_seconds()),
            ));
        }
        let (rate_ours, rate_aws, rate_limit) = (
            bytes as f64 / ours,
            bytes as f64 / awscli,
            bytes as f64 / limit,
        );
        let unit = |rate: f64, seconds: f64| {
            if files == 1 {
                format!("{:.0} MB/s ({seconds:.2} s)", rate / 1e6)
            } else {
                format!("{:.0} files/s ({seconds:.2} s)", files as f64 / seconds)
            }
        };
        report.row(&[
            case,
            unit(rate_ours, ours),
            unit(rate_aws, awscli),
            unit(rate_limit, limit),
            ratio(rate_ours, rate_aws),
            ratio(rate_ours, rate_limit),
            vs_ceiling,
            if files == 1 {
                "> 1 vs awscli, ≥ 0.9 vs ceiling".into()
            } else {
                "≥ 4 vs awscli".into()
            },
        ]);
    }
    report.note(
        "keyledger: a full ingestion job (list, lease, parallel ranged GETs, verification of \
         the check each object has — full-object CRC64NVME, composite CRC32 over the upload's \
         parts learnt with HEAD partNumber, or the ETag's MD5 when there is no checksum — size, \
         SHA-256, fsync, rename, events). Server limit: the same objects read with 8 parallel \
         ranged GETs (big) or 32 concurrent GETs (small), bytes discarded. vs ceiling: the \
         ceiling's seconds over keyledger's. Transfer in each ceiling: the server-limit run's \
         CPU.",
    );
    for ceiling in &ceilings {
        report.note(ceiling);
    }
    resync::run(report, runtime, &aws, &endpoint, "small/", small_count)
}

/// The best time a client that must verify what it downloads could reach on this machine for
/// a big object: the CPU a bare transfer of it costs (server and a reader that discards the
/// bytes, both in this process) plus the CPU of the digests this service must compute over the
/// bytes for the object's check, spread over every core, and never less than the longest digest
/// that is one sequential stream. Optimistic: it leaves out writing, syncing and the events.
/// Each digest is timed with the code the connector uses: ring's SHA-256, md5-many's MD5,
/// crc-fast's CRCs.
struct HashingFloor {
    /// The bare transfer's own time: no client that also hashes is faster.
    transfer_seconds: f64,
    transfer_cpu: f64,
    check_cpu: f64,
    sha256_cpu: f64,
    check: Check,
    cores: f64,
}

/// What a big object is verified by, besides the SHA-256 every ingested file gets.
#[derive(Clone, Copy)]
enum Check {
    /// A single-part upload with no checksum: the ETag's MD5, one stream.
    Md5,
    /// S3's full-object CRC64NVME, one stream.
    Crc64Nvme,
    /// A composite CRC32: one CRC32 per part (in order, one stream), then a CRC32 over the
    /// parts' CRCs (negligible).
    CompositeCrc32,
    /// DNAnexus: one MD5 per part, this many parts hashed side by side.
    PartMd5s(usize),
}

impl Check {
    fn describe(self) -> &'static str {
        match self {
            Check::Md5 => "ETag's MD5",
            Check::Crc64Nvme => "CRC64NVME",
            Check::CompositeCrc32 => "per-part CRC32s",
            Check::PartMd5s(_) => "part MD5s",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Check::Md5 => "MD5",
            Check::Crc64Nvme => "CRC64NVME",
            Check::CompositeCrc32 => "CRC32",
            Check::PartMd5s(_) => "MD5",
        }
    }
}

impl HashingFloor {
    /// Times the check's digest and SHA-256 over `bytes` of content larger than any cache, as
    /// downloads are.
    fn measure(bytes: u64, transfer_cpu: f64, check: Check) -> HashingFloor {
        let buffer = keyledger_testkit::s3::generated_bytes(5, 0, 64 << 20);
        let rounds = bytes.div_ceil(buffer.len() as u64);
        let scale = bytes as f64 / (rounds * buffer.len() as u64) as f64;
        let timed = |hash: &mut dyn FnMut()| {
            let started = Instant::now();
            for _ in 0..rounds {
                hash();
            }
            started.elapsed().as_secs_f64() * scale
        };
        let sha256_cpu = timed(&mut || {
            let mut sha256 = ring::digest::Context::new(&ring::digest::SHA256);
            for block in buffer.chunks(1 << 20) {
                sha256.update(block);
            }
            std::hint::black_box(sha256.finish());
        });
        let crc = |algorithm: crc_fast::CrcAlgorithm| {
            let buffer = &buffer;
            move || {
                let mut digest = crc_fast::Digest::new(algorithm);
                for block in buffer.chunks(1 << 20) {
                    digest.update(block);
                }
                std::hint::black_box(digest.finalize());
            }
        };
        let check_cpu = match check {
            Check::Md5 => timed(&mut || {
                let mut md5 = md5_many::Md5State::new();
                for block in buffer.chunks(1 << 20) {
                    md5.update(block);
                }
                std::hint::black_box(md5.finalize());
            }),
            Check::Crc64Nvme => timed(&mut crc(crc_fast::CrcAlgorithm::Crc64Nvme)),
            Check::CompositeCrc32 => timed(&mut crc(crc_fast::CrcAlgorithm::Crc32IsoHdlc)),
            Check::PartMd5s(parts) => {
                let engine = md5_many::Md5Many::new();
                let lanes: Vec<&[u8]> = buffer.chunks(buffer.len() / parts.max(1)).collect();
                let mut digests = vec![[0u8; 16]; lanes.len()];
                timed(&mut || {
                    engine.hash_many(&lanes, &mut digests);
                    std::hint::black_box(&digests);
                })
            }
        };
        HashingFloor {
            transfer_seconds: 0.0,
            transfer_cpu,
            check_cpu,
            sha256_cpu,
            check,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }
    }

    fn longest_stream(&self) -> f64 {
        match self.check {
            // Side by side lanes are not one stream.
            Check::PartMd5s(_) => self.sha256_cpu,
            _ => self.sha256_cpu.max(self.check_cpu),
        }
    }

    /// A cheap check (a CRC) leaves the CPU bound below the transfer's own time: the ceiling is
    /// then the transfer itself.
    fn no_faster_than(self, transfer_seconds: f64) -> HashingFloor {
        HashingFloor {
            transfer_seconds,
            ..self
        }
    }

    fn best_seconds(&self) -> f64 {
        ((self.transfer_cpu + self.check_cpu + self.sha256_cpu) / self.cores)
            .max(self.longest_stream())
            .max(self.transfer_seconds)
    }

    /// "transfer X CPU-s + <check> Y CPU-s + SHA-256 Z CPU-s over N cores ≥ T s".
    fn arithmetic(&self) -> String {
        format!(
            "{:.2} CPU-s of transfer + {:.2} CPU-s of {} + {:.2} CPU-s of SHA-256, over {} \
             cores (and no less than the longest single digest stream, {:.2} s, nor the bare \
             transfer, {:.2} s): at least {:.2} s",
            self.transfer_cpu,
            self.check_cpu,
            self.check.name(),
            self.sha256_cpu,
            self.cores,
            self.longest_stream(),
            self.transfer_seconds,
            self.best_seconds()
        )
    }
}

async fn s3_limit(server: &S3Server, prefix: &str) -> anyhow::Result<f64> {
    let client = server.client();
    let mut keys = Vec::new();
    let mut pages = client
        .list_objects_v2()
        .bucket("bench")
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            keys.push((
                object.key().unwrap_or_default().to_owned(),
                object.size().unwrap_or(0) as u64,
            ));
        }
    }
    let started = Instant::now();
    let mut ranges = Vec::new();
    for (key, size) in &keys {
        let part = 16u64 << 20;
        let mut offset = 0;
        while offset < *size {
            ranges.push((key.clone(), offset, (offset + part).min(*size) - 1));
            offset += part;
        }
    }
    let concurrency = if keys.len() == 1 { 8 } else { 32 };
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(ranges)
        .map(|(key, start, end)| async move {
            let response = client
                .get_object()
                .bucket("bench")
                .key(&key)
                .range(format!("bytes={start}-{end}"))
                .send()
                .await?;
            let mut body = response.body;
            while let Some(chunk) = body.next().await {
                std::hint::black_box(chunk?);
            }
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub fn run_dnanexus(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    // KEYLEDGER_BENCH_S3_MIB sets the big objects' size (a check of the section on a machine
    // short of disk or time; the figures to compare are the 1 GiB ones).
    let big: u64 = match std::env::var("KEYLEDGER_BENCH_S3_MIB") {
        Ok(mib) => mib.trim().parse::<u64>()? << 20,
        Err(_) if report.quick => 256 << 20,
        Err(_) => 1 << 30,
    };
    let small_count: u64 = if report.quick { 200 } else { 500 };
    let dx = tool(".venv/bin/dx")?;
    let mut seed = Seed::new();
    let user = seed.add_user("bench");
    seed.add_token(&user, DX_TOKEN);
    let project = seed.add_project("bench", &user);
    let big_id = seed.add_file(
        &project,
        "/big/matrix.h5ad",
        Content::Generated { size: big, seed: 3 },
        64 << 20,
    );
    for i in 0..small_count {
        seed.add_file(
            &project,
            &format!("/small/sample-{i:04}.quant.sf"),
            Content::Generated {
                size: 256 * 1024,
                seed: 100 + i,
            },
            256 * 1024,
        );
    }
    let emulator = runtime.block_on(DnanexusEmulator::start(seed))?;
    let endpoint = emulator.endpoint();
    report.section(
        "DNAnexus ingestion (the project's emulator; median of 3 runs; both tools verify part MD5s)",
        &["case", "keyledger", "dxpy `dx download`", "ratio", "goal"],
    );
    let conf = tempfile::tempdir()?;
    let mut dx_big = 0.0;
    let dx_run = |args: &[&str], out: &Path| -> anyhow::Result<f64> {
        let started = Instant::now();
        let status = Command::new(&dx)
            .args(args)
            .current_dir(out)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", conf.path())
            .env("DX_USER_CONF_DIR", conf.path())
            .env("DX_APISERVER_HOST", emulator.host())
            .env("DX_APISERVER_PORT", emulator.port().to_string())
            .env("DX_APISERVER_PROTOCOL", "http")
            .env(
                "DX_SECURITY_CONTEXT",
                format!("{{\"auth_token_type\":\"Bearer\",\"auth_token\":\"{DX_TOKEN}\"}}"),
            )
            .env("DX_PROJECT_CONTEXT_ID", &project)
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "dx {args:?} failed");
        Ok(started.elapsed().as_secs_f64())
    };
    for (case, folder, files) in [
        (
            format!("1 × {} MiB file in 64 MiB parts", big >> 20),
            "/big",
            1u64,
        ),
        (
            format!("{small_count} × 256 KiB files"),
            "/small",
            small_count,
        ),
    ] {
        let mut dirs = RunDirs::new(files > 1)?;
        let ours = median(RUNS, || {
            let (_, fetched, elapsed) = dirs.run(|dir| {
                Ok(runtime.block_on(crate::ingestion::ingest_dnanexus_once(
                    dir, &endpoint, DX_TOKEN, &project, folder, ".*",
                ))?)
            })?;
            anyhow::ensure!(
                fetched == files,
                "keyledger fetched {fetched} of {files} files"
            );
            Ok(elapsed.as_secs_f64())
        })?;
        let theirs = median(RUNS, || {
            dirs.run(|out| {
                if files == 1 {
                    dx_run(
                        &[
                            "download",
                            "-f",
                            &format!("{project}:{}", big_id),
                            "-o",
                            "matrix.h5ad",
                        ],
                        out,
                    )
                } else {
                    std::fs::create_dir_all(out.join("small"))?;
                    dx_run(
                        &[
                            "download",
                            "-r",
                            "-f",
                            &format!("{project}:{folder}"),
                            "-o",
                            ".",
                        ],
                        out,
                    )
                }
            })
        })?;
        if files == 1 {
            dx_big = theirs;
        }
        report.row(&[
            case,
            format!("{ours:.2} s"),
            format!("{theirs:.2} s"),
            ratio(theirs, ours),
            if files == 1 {
                "≥ 1.5".into()
            } else {
                "≥ 3".into()
            },
        ]);
    }
    let cpu = cpu_seconds();
    let raw = runtime.block_on(raw_serving_rate(&endpoint, &big_id, big))?;
    let floor = HashingFloor::measure(
        big,
        cpu_seconds() - cpu,
        Check::PartMd5s((big >> 26) as usize),
    );
    report.note(&format!(
        "Emulator raw serving rate (one GET of the {} MiB data URL, bytes discarded): {:.0} MB/s. \
         Ceiling for the big file on this machine, for a client that verifies the part MD5s and \
         records a SHA-256 as this service must: {}, i.e. at most {} × dx in this run (dx \
         computes the MD5s only). Transfer: the raw serving run's CPU.",
        big >> 20,
        raw / 1e6,
        floor.arithmetic(),
        ratio(dx_big, floor.best_seconds()),
    ));
    Ok(())
}

async fn raw_serving_rate(endpoint: &str, file: &str, size: u64) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let download: serde_json::Value = client
        .post(format!("{endpoint}/{file}/download"))
        .bearer_auth(DX_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await?
        .json()
        .await?;
    let url = download["url"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no url in {download}"))?
        .to_owned();
    let started = Instant::now();
    let mut response = client.get(url).send().await?;
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
    }
    anyhow::ensure!(received == size, "received {received} of {size} bytes");
    Ok(size as f64 / started.elapsed().as_secs_f64())
}

pub fn run_audit(report: &mut Report) -> anyhow::Result<()> {
    let events = if report.quick { 200_000 } else { 1_000_000 };
    let verify = crate::audit::bench_verify(events)?;
    let startup = crate::audit::bench_startup(events)?;
    report.section(
        &format!("Audit ({events} events)"),
        &["what", "figure", "note"],
    );
    report.row(&[
        "`audit verify` of a JSONL export".into(),
        format!("{:.0} k events/s", verify.export_events_per_second() / 1e3),
        format!(
            "{} MiB export, {} checkpoints",
            verify.export_bytes >> 20,
            verify.checkpoints
        ),
    ]);
    report.row(&[
        "`audit verify --data` (opened log)".into(),
        format!(
            "{:.0} k events/s",
            verify.data_dir_events_per_second() / 1e3
        ),
        format!(
            "opening the log: {:.2} s",
            verify.open_data_dir.as_secs_f64()
        ),
    ]);
    report.row(&[
        "start-up with a full replay".into(),
        format!("{:.2} s", startup.full_replay.as_secs_f64()),
        format!(
            "of which the projection {:.2} s",
            startup.full_replay_projection.as_secs_f64()
        ),
    ]);
    report.row(&[
        "start-up from a snapshot".into(),
        format!(
            "{:.2} s ({}× faster)",
            startup.with_snapshot.as_secs_f64(),
            ratio(
                startup.full_replay.as_secs_f64(),
                startup.with_snapshot.as_secs_f64()
            )
        ),
        format!(
            "snapshot {} MiB, written in {:.2} s",
            startup.snapshot_bytes >> 20,
            startup.snapshot_write.as_secs_f64()
        ),
    ]);
    Ok(())
}

/// The median of `runs` timed runs. Before each, untimed, the page cache's dirty data is
/// written out (`sync`): a tool that does not fsync (awscli, dx) would otherwise leave its
/// writeback to slow down whichever run comes next, and the seeded test data its own.
/// Working directories of one case's runs, both tools alike. On ext4 without a journal (this
/// machine's file system) each file creation first passes over every inode of its block group
/// freed recently (a minute or more; measured: still so 11 s later), one buffer-cache lookup
/// each: in /tmp, where earlier runs' files had just been deleted, a creation cost ≈ 75 µs
/// instead of ≈ 6 µs. So the run directories live under a parent flagged as the top of a
/// directory tree (`chattr +T`), which makes ext4 give each a block group of its own, and with
/// `keep` they stay until the case ends, so that no run frees inodes where the next one
/// creates files. See docs/benchmarks.md.
struct RunDirs {
    kept: Vec<tempfile::TempDir>,
    root: tempfile::TempDir,
    keep: bool,
}

impl RunDirs {
    fn new(keep: bool) -> anyhow::Result<RunDirs> {
        let root = tempfile::tempdir()?;
        // Only ext4 knows the flag; on other file systems the question does not arise.
        let _ = Command::new("chattr")
            .arg("+T")
            .arg(root.path())
            .stderr(std::process::Stdio::null())
            .status();
        Ok(RunDirs {
            kept: Vec::new(),
            root,
            keep,
        })
    }

    /// Runs `run` in a fresh empty directory.
    fn run<T>(&mut self, run: impl FnOnce(&Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let dir = tempfile::tempdir_in(self.root.path())?;
        let outcome = run(dir.path());
        if self.keep {
            self.kept.push(dir);
        }
        outcome
    }
}

fn median(runs: usize, mut run: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        Command::new("sync").status()?;
        times.push(run()?);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn tool(relative: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `make test-deps` (scripts/python-deps.sh)",
        path.display()
    );
    Ok(path)
}
