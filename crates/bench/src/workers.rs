//! Ingestion workers (decision 0025), measured on real processes: the release `keyledger serve`
//! with `[ingest] workers = "external"`, `keyledger worker` processes and a private
//! nats-server, over the S3 test server behind the fault proxy.
//!
//! - **Dispatch latency**: `POST /v1/ingestions` answered → the job's `ExternalKeyLeased`
//!   (a worker has the job and its credential), one job at a time with two idle workers;
//!   against a raw JetStream publish → pull round trip on the same nats-server.
//! - **Failover**: the worker holding a throttled transfer is killed with SIGKILL; the time
//!   until another worker has leased the job again, against the queue's ack wait + 1 s.
//! - **Scaling**: the same jobs through a source that limits each connection's rate, with 1, 2
//!   and 4 workers of concurrency 1; throughput against N × one worker's. The source's rate,
//!   not the CPU, bounds one worker, so more workers can only help by working in parallel.

mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull, stream};
use bytes::Bytes;
use futures::StreamExt as _;
use keyledger_testkit::fault_proxy::Throttle;
use keyledger_testkit::s3::generated_bytes;

use crate::report::{Report, cpu_seconds, ratio};
use cluster::{BUCKET, Cluster, DEADLINE, Worker, now_millis};

/// The queue's ack wait for this section (the vault's default is 30 s): the failover goal is
/// relative to it, and a short one keeps the section short.
const ACK_WAIT: Duration = Duration::from_secs(3);
/// Each connection's rate at the throttled source.
const THROTTLE: u64 = 512 * 1024;
/// The object a failover job fetches: four seconds through the throttle.
const FAILOVER_SIZE: usize = 2 << 20;

/// What to measure; smaller with `--quick`.
struct Plan {
    dispatch_samples: usize,
    failover_rounds: usize,
    scale_jobs: usize,
    scale_files: usize,
    scale_file_size: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                dispatch_samples: 50,
                failover_rounds: 1,
                scale_jobs: 4,
                scale_files: 2,
                scale_file_size: 256 * 1024,
            }
        } else {
            Plan {
                dispatch_samples: 200,
                failover_rounds: 3,
                scale_jobs: 8,
                scale_files: 2,
                scale_file_size: 512 * 1024,
            }
        }
    }
}

pub fn run(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let plan = Plan::new(report.quick);
    runtime.block_on(async {
        let cluster = Cluster::start(ACK_WAIT).await?;
        seed(&cluster, &plan).await?;
        dispatch_section(report, &cluster, &plan).await?;
        scaling_section(report, &cluster, &plan).await?;
        failover_section(report, &cluster, &plan).await
    })
}

/// `tiny/` (one 1 KiB file), `failover/` (one big file), `scale/job-NN/` (the scaling jobs).
async fn seed(cluster: &Cluster, plan: &Plan) -> anyhow::Result<()> {
    let mut objects = vec![
        (
            "tiny/one.bin".to_owned(),
            Bytes::from(generated_bytes(1, 0, 1024)),
        ),
        (
            "failover/big.bin".to_owned(),
            Bytes::from(generated_bytes(2, 0, FAILOVER_SIZE)),
        ),
    ];
    for job in 0..plan.scale_jobs {
        for file in 0..plan.scale_files {
            let seed = (100 + job * plan.scale_files + file) as u64;
            objects.push((
                format!("scale/job-{job:02}/file-{file}.bin"),
                Bytes::from(generated_bytes(seed, 0, plan.scale_file_size)),
            ));
        }
    }
    cluster.s3.put_objects(BUCKET, objects).await?;
    Ok(())
}

async fn dispatch_section(
    report: &mut Report,
    cluster: &Cluster,
    plan: &Plan,
) -> anyhow::Result<()> {
    let samples = plan.dispatch_samples;
    let raw = raw_round_trips(&cluster.nats.url(), samples).await?;
    let ours = dispatch_latencies(cluster, samples).await?;
    let (raw_p50, raw_p99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    report.section(
        &format!(
            "Ingestion workers: dispatch latency ({samples} jobs one at a time, 2 idle workers, nats-server 2.9)"
        ),
        &["what", "p50", "p99", "ratio vs raw (p50 / p99)", "goal"],
    );
    report.row(&[
        "raw JetStream publish (with PubAck) → a waiting pull receives it, same server".into(),
        format!("{raw_p50:.2} ms"),
        format!("{raw_p99:.2} ms"),
        "1.00 / 1.00".into(),
        String::new(),
    ]);
    report.row(&[
        "`POST /v1/ingestions` answered → the job's `ExternalKeyLeased` arrives from the relay (a worker has the job and its credential)".into(),
        format!("{p50:.2} ms"),
        format!("{p99:.2} ms"),
        format!("{} / {}", ratio(p50, raw_p50), ratio(p99, raw_p99)),
        "reported (no goal)".into(),
    ]);
    report.note(
        "keyledger's path after the answer (the request's append is before it): the dispatcher \
         following the log, its publish to KEYLEDGER_JOBS and PubAck, the worker's waiting pull, the \
         worker's `POST /v1/worker/ingestions/{id}/lease`, the lease's decision and append \
         (fsync; the vault answers the worker after it), and the relay's publish of that \
         append to the bench's subscriber, which stands in for the worker's answer (the \
         relay's own append-to-subscriber latency is in the relay section). Event times have \
         whole milliseconds only, too coarse for this figure. Each job (one 1 KiB file) \
         finishes before the next is requested.",
    );
    Ok(())
}

/// `POST /v1/ingestions` answered → `ExternalKeyLeased`, in ms, one job at a time.
async fn dispatch_latencies(cluster: &Cluster, samples: usize) -> anyhow::Result<Vec<f64>> {
    cluster.proxy.throttle(None);
    let workers = [
        cluster.worker("dispatch-0").await?,
        cluster.worker("dispatch-1").await?,
    ];
    let mut latencies = Vec::with_capacity(samples + 1);
    // One untimed job first: connections and the queue's first delivery warm up.
    for _ in 0..=samples {
        let from = cluster.events.mark();
        let id = cluster.ingest("tiny/").await?;
        let accepted = Instant::now();
        let lease = cluster.events.leased(from, &id, None).await?;
        cluster.events.finished(from, &id).await?;
        let waited = lease.arrived.saturating_duration_since(accepted);
        latencies.push(waited.as_secs_f64() * 1e3);
    }
    for worker in workers {
        worker.stop().await?;
    }
    latencies.remove(0);
    Ok(latencies)
}

/// The floor under dispatch: a message published with a PubAck to a WorkQueue stream on the
/// same server, received by a pull request already waiting (as an idle worker's is), in ms.
async fn raw_round_trips(url: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let puller = jetstream::new(async_nats::connect(url).await?);
    let publisher = jetstream::new(async_nats::connect(url).await?);
    let stream = puller
        .get_or_create_stream(stream::Config {
            name: "BENCH_RAW_JOBS".to_owned(),
            subjects: vec!["bench.raw.jobs.>".to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let consumer = stream
        .get_or_create_consumer(
            "raw",
            pull::Config {
                durable_name: Some("raw".to_owned()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    // The size of a job message (ingestion id, provider, ticket).
    let payload = Bytes::from(format!(
        "{{\"ingestion\":\"ing_0123456789abcdef\",\"provider\":\"aws\",\"ticket\":\"{}\"}}",
        "ab".repeat(32)
    ));
    let mut latencies = Vec::with_capacity(samples + 1);
    // One untimed round trip first, as for keyledger's.
    for i in 0..=samples {
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        let started = Instant::now();
        let publish = async {
            let ack = publisher
                .publish(format!("bench.raw.jobs.{i}"), payload.clone())
                .await?;
            ack.await?;
            anyhow::Ok(())
        };
        let receive = async {
            let message = tokio::time::timeout(DEADLINE, batch.next())
                .await
                .context("the raw pull received nothing")?
                .context("the raw pull ended")?
                .map_err(|error| anyhow::anyhow!("raw pull: {error}"))?;
            let elapsed = started.elapsed();
            message
                .double_ack()
                .await
                .map_err(|error| anyhow::anyhow!("raw ack: {error}"))?;
            anyhow::Ok(elapsed)
        };
        let (published, received) = tokio::join!(publish, receive);
        published?;
        latencies.push(received?.as_secs_f64() * 1e3);
    }
    let _ = puller.delete_stream("BENCH_RAW_JOBS").await;
    latencies.remove(0);
    Ok(latencies)
}

async fn scaling_section(
    report: &mut Report,
    cluster: &Cluster,
    plan: &Plan,
) -> anyhow::Result<()> {
    cluster.proxy.throttle(Some(Throttle {
        bytes_per_second: THROTTLE,
    }));
    let mut runs = Vec::new();
    for workers in [1, 2, 4] {
        runs.push(scale(cluster, plan, workers).await?);
    }
    cluster.proxy.throttle(None);
    let one = runs[0].bytes_per_second();
    report.section(
        &format!(
            "Ingestion workers: throughput with 1, 2, 4 workers ({} jobs × {} files × {} KiB, each connection limited to {} KiB/s, concurrency 1 each)",
            plan.scale_jobs,
            plan.scale_files,
            plan.scale_file_size >> 10,
            THROTTLE >> 10
        ),
        &[
            "workers",
            "time",
            "throughput",
            "jobs per worker",
            "CPU used (all processes but nats-server)",
            "vs N × one worker",
            "goal",
        ],
    );
    for run in &runs {
        report.row(&[
            run.workers.to_string(),
            format!("{:.2} s", run.seconds),
            format!("{:.2} MB/s", run.bytes_per_second() / 1e6),
            run.jobs_per_worker
                .values()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            format!(
                "{:.2} s ({:.0} % of 2 cores)",
                run.cpu,
                run.cpu / run.seconds / 2.0 * 1e2
            ),
            ratio(run.bytes_per_second(), run.workers as f64 * one),
            if run.workers == 1 {
                String::new()
            } else {
                "≥ 0.8".into()
            },
        ]);
    }
    report.note(
        "Time: the first `POST /v1/ingestions` (all jobs requested at once, workers already \
         ready) until the last `IngestionCompleted`. The fault proxy's throttle limits every \
         response body to the rate (a token bucket per response, one response at a time per \
         connection), so one worker's throughput is bound by the source's rate, not by the CPU; \
         the CPU column shows how little of the machine any run used.",
    );
    Ok(())
}

/// One scaling run: what it took, and who did what.
struct ScaleRun {
    workers: usize,
    seconds: f64,
    bytes: u64,
    cpu: f64,
    jobs_per_worker: BTreeMap<String, usize>,
}

impl ScaleRun {
    fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds.max(1e-9)
    }
}

async fn scale(cluster: &Cluster, plan: &Plan, count: usize) -> anyhow::Result<ScaleRun> {
    let mut workers = Vec::with_capacity(count);
    for n in 0..count {
        workers.push(cluster.worker(&format!("scale-{count}-{n}")).await?);
    }
    let cpu_before = cpu_seconds() + cluster.children_cpu_seconds(&workers);
    let from = cluster.events.mark();
    let started = now_millis();
    let mut ids = Vec::with_capacity(plan.scale_jobs);
    for job in 0..plan.scale_jobs {
        ids.push(cluster.ingest(&format!("scale/job-{job:02}/")).await?);
    }
    let mut ended = started;
    for id in &ids {
        ended = ended.max(cluster.events.finished(from, id).await?);
    }
    let cpu = cpu_seconds() + cluster.children_cpu_seconds(&workers) - cpu_before;
    for id in &ids {
        let job = cluster.job(id).await?;
        anyhow::ensure!(
            job["files_fetched"] == plan.scale_files,
            "job {id} fetched {} of {} files",
            job["files_fetched"],
            plan.scale_files
        );
    }
    let jobs_per_worker = cluster
        .events
        .wait_for("the leases", from, |events| {
            let mut per_worker: BTreeMap<String, usize> = workers
                .iter()
                .map(|worker| (worker.name.clone(), 0))
                .collect();
            for (_, event) in events {
                if event["type"] == "ExternalKeyLeased"
                    && let Some(worker) = event["data"]["worker"].as_str()
                {
                    *per_worker.entry(worker.to_owned()).or_default() += 1;
                }
            }
            Some(per_worker)
        })
        .await?;
    for worker in workers {
        worker.stop().await?;
    }
    Ok(ScaleRun {
        workers: count,
        seconds: (ended - started) / 1e3,
        bytes: (plan.scale_jobs * plan.scale_files * plan.scale_file_size) as u64,
        cpu,
        jobs_per_worker,
    })
}

async fn failover_section(
    report: &mut Report,
    cluster: &Cluster,
    plan: &Plan,
) -> anyhow::Result<()> {
    cluster.proxy.throttle(Some(Throttle {
        bytes_per_second: THROTTLE,
    }));
    let times = failover_times(cluster, plan.failover_rounds).await?;
    cluster.proxy.throttle(None);
    let ack_wait = cluster.ack_wait.as_secs_f64();
    let budget = ack_wait + 1.0;
    report.section(
        &format!(
            "Ingestion workers: failover after kill -9 of a busy worker ({} round{}, 2 workers, ack_wait {ack_wait:.0} s)",
            times.len(),
            if times.len() == 1 { "" } else { "s" }
        ),
        &["round", "kill → leased by another worker", "vs ack_wait", "vs ack_wait + 1 s", "goal"],
    );
    for (round, seconds) in times.iter().enumerate() {
        report.row(&[
            (round + 1).to_string(),
            format!("{seconds:.2} s"),
            ratio(*seconds, ack_wait),
            ratio(*seconds, budget),
            "≤ 1 vs ack_wait + 1 s".into(),
        ]);
    }
    report.note(
        "The busy worker holds a throttled transfer of a 2 MiB object (4 s at the source's rate) \
         and is killed as soon as the proxy has its GET, shortly after it leased the job and \
         before its first progress ack (every ack_wait / 3): the slowest case, as the queue \
         redelivers ack_wait after the delivery. The time ends at the second \
         `ExternalKeyLeased` of the job (the vault's clock, whole milliseconds); the job then \
         completes on the other worker.",
    );
    Ok(())
}

/// Seconds from SIGKILL of the worker holding the transfer to the job's next lease, per round.
async fn failover_times(cluster: &Cluster, rounds: usize) -> anyhow::Result<Vec<f64>> {
    let mut workers: Vec<Worker> = Vec::new();
    let mut started = 0;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        while workers.len() < 2 {
            workers.push(cluster.worker(&format!("failover-{started}")).await?);
            started += 1;
        }
        cluster.proxy.control().clear_requests();
        let from = cluster.events.mark();
        let id = cluster.ingest("failover/").await?;
        let holder = cluster.events.leased(from, &id, None).await?.worker;
        wait_for_transfer(cluster, "failover/big.bin").await?;
        let index = workers
            .iter()
            .position(|worker| worker.name == holder)
            .with_context(|| {
                format!("the job was leased by {holder}, not by a worker of this run")
            })?;
        let mut busy = workers.remove(index);
        let killed = now_millis().floor();
        busy.kill().await?;
        let resumed = cluster.events.leased(from, &id, Some(&holder)).await?;
        times.push((resumed.millis - killed) / 1e3);
        cluster.events.finished(from, &id).await?;
    }
    for worker in workers {
        worker.stop().await?;
    }
    Ok(times)
}

/// Waits until the proxy has received a GET of `path` (bounded).
async fn wait_for_transfer(cluster: &Cluster, path: &str) -> anyhow::Result<()> {
    let control = cluster.proxy.control();
    tokio::time::timeout(DEADLINE, async {
        while !control
            .requests()
            .iter()
            .any(|seen| seen.method == "GET" && seen.path_and_query.contains(path))
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .with_context(|| format!("no GET of {path} reached the source"))
}

/// The `q` quantile (nearest rank) of `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
