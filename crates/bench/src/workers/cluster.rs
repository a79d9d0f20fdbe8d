//! The processes of the workers section: a private nats-server, the vault (`keyledger serve`
//! with `[ingest] workers = "external"`) and `keyledger worker` processes, over the S3 test
//! server behind the fault proxy; the vault's events as its relay publishes them; all on
//! 127.0.0.1, and all stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use keyledger_domain::Timestamp;
use keyledger_testkit::fault_proxy::FaultProxy;
use keyledger_testkit::nats::NatsServer;
use keyledger_testkit::s3::S3Server;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

pub const ACCESS_KEY_ID: &str = "AKIABENCHWORKERS0001";
const SECRET: &str = "benchWorkersSecret0123456789abcdefghijkl";
pub const BUCKET: &str = "samples";
/// Long enough for any one step on a busy machine; the section waits for events, not time.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The providers, NATS, the vault, a shared store and the vault's events.
pub struct Cluster {
    pub s3: S3Server,
    pub proxy: FaultProxy,
    pub nats: NatsServer,
    pub events: Events,
    /// The job queue's ack wait, as the vault configures it.
    pub ack_wait: Duration,
    binary: PathBuf,
    vault: Child,
    base: String,
    admin: String,
    /// The member who imports (holds the AWS key and requests the jobs).
    member: String,
    work: tempfile::TempDir,
    http: reqwest::Client,
}

/// One `keyledger worker` process, with its own user (the `worker` of its leases).
pub struct Worker {
    pub name: String,
    child: Child,
}

impl Cluster {
    /// Starts everything and stores the member's AWS key; the bucket is the caller's to fill.
    pub async fn start(ack_wait: Duration) -> anyhow::Result<Cluster> {
        let binary = keyledger_binary()?;
        let s3 = S3Server::start(ACCESS_KEY_ID, SECRET).await?;
        s3.create_bucket(BUCKET).await?;
        let proxy = FaultProxy::start(s3.address()).await?;
        let nats = NatsServer::start()?;
        // Subscribed before the vault starts: no event is missed.
        let events = Events::subscribe(&nats.url()).await?;
        let work = tempfile::Builder::new()
            .prefix("keyledger-bench-workers-")
            .tempdir()?;
        let store = work.path().join("store");
        std::fs::create_dir_all(&store)?;
        let ack_wait_ms = ack_wait.as_millis().to_string();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .env_clear()
            .envs(inherited())
            .env("KEYLEDGER_HTTP_ADDR", "127.0.0.1:0")
            .env("KEYLEDGER_DATA_DIR", work.path().join("data"))
            .env("KEYLEDGER_NATS_URL", nats.url())
            .env("KEYLEDGER_INGEST_WORKERS", "external")
            .env("KEYLEDGER_INGEST_QUEUE_ACK_WAIT_MS", &ack_wait_ms)
            .env("KEYLEDGER_INGEST_STORE_ROOT", &store)
            .env("KEYLEDGER_INGEST_S3_ENDPOINT", proxy.endpoint())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(work.path(), "vault.log")?)
            .kill_on_drop(true);
        let mut vault = command
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let (base, admin) = read_start(&mut vault).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut cluster = Cluster {
            s3,
            proxy,
            nats,
            events,
            ack_wait,
            binary,
            vault,
            base,
            admin,
            member: String::new(),
            work,
            http,
        };
        cluster.wait_healthy().await?;
        cluster.create_user("dana", "member").await?;
        cluster.member = cluster.issue_key("dana").await?;
        let aws = json!({ "label": "bench", "provider": "aws", "duration": "30d",
            "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
        cluster
            .call(
                "POST",
                "/v1/external-keys",
                &cluster.member,
                Some(&aws),
                201,
            )
            .await?;
        Ok(cluster)
    }

    /// Requests an ingestion of `prefix` (every file fetched again: `force`); its id.
    pub async fn ingest(&self, prefix: &str) -> anyhow::Result<String> {
        let request =
            json!({ "provider": "aws", "bucket": BUCKET, "prefix": prefix, "force": true });
        let job = self
            .call("POST", "/v1/ingestions", &self.member, Some(&request), 202)
            .await?;
        job["id"]
            .as_str()
            .map(str::to_owned)
            .context("POST /v1/ingestions answered without an id")
    }

    /// The job as `GET /v1/ingestions/{id}` shows it.
    pub async fn job(&self, id: &str) -> anyhow::Result<Value> {
        self.call(
            "GET",
            &format!("/v1/ingestions/{id}"),
            &self.member,
            None,
            200,
        )
        .await
    }

    /// Starts a worker (concurrency 1) under a new user `name` with the `worker` role, and
    /// waits until it is ready (bound to the queue).
    pub async fn worker(&self, name: &str) -> anyhow::Result<Worker> {
        self.create_user(name, "worker").await?;
        let key = self.issue_key(name).await?;
        let store = format!("file://{}", self.work.path().join("store").display());
        let mut child = Command::new(&self.binary)
            .args(["worker", "--vault", &self.base, "--nats", &self.nats.url()])
            .args(["--store", &store, "--listen", "127.0.0.1:0"])
            .args(["--concurrency", "1", "--drain-timeout-secs", "1"])
            .env_clear()
            .envs(inherited())
            .env("KEYLEDGER_WORKER_KEY", key)
            .env("KEYLEDGER_INGEST_S3_ENDPOINT", self.proxy.endpoint())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(self.work.path(), &format!("{name}.log"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {} worker", self.binary.display()))?;
        let stdout = child.stdout.take().context("the worker's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let health = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix("keyledger worker: health on ") {
                    return Ok(address.to_owned());
                }
            }
            bail!("worker {name} exited before it listened")
        })
        .await
        .with_context(|| format!("worker {name} did not start"))??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.wait_ok(&format!("{health}/readyz"))
            .await
            .with_context(|| format!("worker {name} never became ready"))?;
        Ok(Worker {
            name: name.to_owned(),
            child,
        })
    }

    async fn create_user(&self, user: &str, role: &str) -> anyhow::Result<()> {
        let body = json!({ "user": user, "roles": [role] });
        self.call("POST", "/v1/users", &self.admin, Some(&body), 201)
            .await?;
        Ok(())
    }

    async fn issue_key(&self, user: &str) -> anyhow::Result<String> {
        let body = json!({ "name": "bench", "duration": "7d" });
        let issued = self
            .call(
                "POST",
                &format!("/v1/users/{user}/api-keys"),
                &self.admin,
                Some(&body),
                201,
            )
            .await?;
        issued["key"]
            .as_str()
            .map(str::to_owned)
            .context("the issued key has no secret")
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.parse()?, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if status != expected {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.vault.try_wait()? {
            bail!("the vault exited ({status}); see its log");
        }
        self.wait_ok(&format!("{}/healthz", self.base)).await
    }

    /// Polls `url` until it answers 200 (bounded by [`DEADLINE`]).
    async fn wait_ok(&self, url: &str) -> anyhow::Result<()> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Ok(response) = self.http.get(url).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .with_context(|| format!("{url} did not answer 200"))
    }

    /// CPU seconds the vault and `workers` have used so far (the servers in this process are
    /// counted by the caller).
    pub fn children_cpu_seconds(&self, workers: &[Worker]) -> f64 {
        let pids = std::iter::once(self.vault.id()).chain(workers.iter().map(|w| w.child.id()));
        pids.flatten().map(process_cpu_seconds).sum()
    }
}

impl Worker {
    /// SIGKILL, and wait until the process is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM (the worker drains), and wait until it has exited.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .is_err()
        {
            self.kill().await?;
        }
        Ok(())
    }
}

/// The vault's events, as its relay publishes them on `keyledger.events.>`, in log order, each
/// with the moment it arrived here.
pub struct Events {
    seen: Arc<Mutex<Vec<(Instant, Value)>>>,
    count: watch::Receiver<usize>,
}

impl Events {
    async fn subscribe(url: &str) -> anyhow::Result<Events> {
        let client = async_nats::connect(url).await?;
        let mut subscriber = client.subscribe("keyledger.events.>").await?;
        client.flush().await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (sender, count) = watch::channel(0);
        let into = Arc::clone(&seen);
        tokio::spawn(async move {
            let _client = client;
            while let Some(message) = subscriber.next().await {
                let arrived = Instant::now();
                let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else {
                    continue;
                };
                let len = {
                    let mut seen = into.lock().unwrap_or_else(|e| e.into_inner());
                    seen.push((arrived, event));
                    seen.len()
                };
                sender.send_replace(len);
            }
        });
        Ok(Events { seen, count })
    }

    /// How many events have arrived: pass it to [`Events::wait_for`] to look only at later ones.
    pub fn mark(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits until `find` finds something among the events from `from` on.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        from: usize,
        mut find: impl FnMut(&[(Instant, Value)]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut count = self.count.clone();
        tokio::time::timeout(DEADLINE, async {
            loop {
                {
                    let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(found) = find(&seen[from.min(seen.len())..]) {
                        return anyhow::Ok(found);
                    }
                }
                count.changed().await?;
            }
        })
        .await
        .with_context(|| format!("timed out waiting for {what}"))?
    }

    /// The job's lease by a worker other than `not_by` (`None`: any).
    pub async fn leased(
        &self,
        from: usize,
        job: &str,
        not_by: Option<&str>,
    ) -> anyhow::Result<Lease> {
        self.wait_for(&format!("the lease of {job}"), from, |events| {
            events.iter().find_map(|(arrived, event)| {
                let worker = event["data"]["worker"].as_str()?;
                if event["type"] != "ExternalKeyLeased"
                    || event["data"]["ingestion"] != job
                    || not_by == Some(worker)
                {
                    return None;
                }
                Some(Lease {
                    worker: worker.to_owned(),
                    millis: event_millis(event)?,
                    arrived: *arrived,
                })
            })
        })
        .await
    }

    /// The job's end: its time in ms; an error if it failed.
    pub async fn finished(&self, from: usize, job: &str) -> anyhow::Result<f64> {
        let event = self
            .wait_for(&format!("the end of {job}"), from, |events| {
                events
                    .iter()
                    .map(|(_, event)| event)
                    .find(|event| {
                        event["data"]["ingestion"] == job
                            && matches!(
                                event["type"].as_str(),
                                Some("IngestionCompleted" | "IngestionFailed")
                            )
                    })
                    .cloned()
            })
            .await?;
        if event["type"] != "IngestionCompleted" {
            bail!("job {job} failed: {}", event["data"]);
        }
        event_millis(&event).context("an event without a time")
    }
}

/// An `ExternalKeyLeased` as seen here.
pub struct Lease {
    /// The worker's user.
    pub worker: String,
    /// The event's time (the vault's clock, whole ms since the epoch).
    pub millis: f64,
    /// When the relay's message of it arrived here.
    pub arrived: Instant,
}

/// Now, in ms since the epoch (the clock the vault stamps events with).
pub fn now_millis() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1e3)
}

/// The event's time (when the vault appended it), in ms since the epoch.
fn event_millis(event: &Value) -> Option<f64> {
    let time = Timestamp::parse_rfc3339(event["time"].as_str()?).ok()?;
    Some(time.as_millis() as f64)
}

/// The `keyledger` binary beside this one (`make bench` builds both), or `$KEYLEDGER_BIN`.
fn keyledger_binary() -> anyhow::Result<PathBuf> {
    let binary = match std::env::var_os("KEYLEDGER_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("keyledger"),
    };
    if !binary.is_file() {
        bail!(
            "the workers section runs the release `keyledger` binary, and {} does not exist: \
             build it with `cargo build --release --bin keyledger` (`make bench` does), or set \
             KEYLEDGER_BIN",
            binary.display()
        );
    }
    Ok(binary)
}

/// What a child process keeps of this one's environment: nothing of keyledger's own settings.
fn inherited() -> Vec<(String, String)> {
    ["PATH", "HOME", "TMPDIR"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
        .collect()
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(name))?)
}

/// Reads the vault's standard output up to `keyledger listening on URL`: the URL and the
/// bootstrap admin's key (printed once, at the first start); keeps draining it afterwards.
async fn read_start(vault: &mut Child) -> anyhow::Result<(String, String)> {
    let stdout = vault.stdout.take().context("the vault's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut admin, mut base) = (None, None);
    tokio::time::timeout(DEADLINE, async {
        while base.is_none() {
            let Some(line) = lines.next_line().await? else {
                bail!("the vault exited during start-up; see its log");
            };
            if let Some(address) = line.strip_prefix("keyledger listening on ") {
                base = Some(address.trim().to_owned());
            }
            if admin.is_none() {
                admin = admin_key(&line);
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("the vault did not start")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let admin = admin.context("the vault printed no admin key at its first start")?;
    Ok((base.unwrap_or_default(), admin))
}

/// An internal key (`kl_` and 38 more letters or digits) in a line.
fn admin_key(line: &str) -> Option<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|word| word.starts_with("kl_") && word.len() == 41)
        .map(str::to_owned)
}

/// User + system CPU seconds of a process (0 once it is gone).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
