//! A private `nats-server` with JetStream for one test: its own free port on 127.0.0.1 and its
//! own store directory, which survive [`NatsServer::stop`] and [`NatsServer::restart`] so a test
//! can take the server away and bring it back with everything it had stored.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH`, else `/usr/sbin/nats-server`
//! (Debian's package; `make test` installs it).
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! let mut nats = keyledger_testkit::nats::NatsServer::start()?;
//! let url = nats.url(); // nats://127.0.0.1:<port>
//! nats.stop()?; // clients now see the server gone
//! nats.restart()?; // same port, same store
//! # Ok(()) }
//! ```

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long a start or restart may take before it is reported as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) private nats-server. Killed when dropped; its store is deleted then.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// Holds the JetStream store (`store/`) and the server's log (`nats-server.log`).
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and waits until it accepts clients.
    pub fn start() -> anyhow::Result<NatsServer> {
        NatsServer::start_with_args(&[])
    }

    /// Like [`NatsServer::start`], with more command-line arguments for nats-server (for example
    /// `--auth <token>`, or `-c <config file>` for accounts and permissions).
    pub fn start_with_args(extra_args: &[&str]) -> anyhow::Result<NatsServer> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("keyledger-nats-")
            .tempdir()
            .context("cannot create a temporary directory for nats-server")?;
        std::fs::create_dir_all(dir.path().join("store"))?;
        let mut server = NatsServer {
            binary,
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            child: None,
        };
        // The free port is found by binding and releasing it, so another process may take it
        // before nats-server binds: try a few ports before giving up.
        let mut last_error = None;
        for _ in 0..3 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The server's own log, for diagnosing a failing test.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit; it is killed if it takes
    /// longer than 10 s. The port and the store are kept for [`NatsServer::restart`].
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Ok(());
        }
        let terminated = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while terminated && Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().ok();
        child.wait().context("waiting for nats-server to exit")?;
        Ok(())
    }

    /// Starts the server again on the same port with the same store, and waits until it
    /// accepts clients. Stops it first if it is running.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot create the nats-server log file")?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.store_dir())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = command
            .spawn()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        self.child = Some(child);
        if let Err(error) = self.wait_until_ready() {
            if let Some(mut child) = self.child.take() {
                child.kill().ok();
                child.wait().ok();
            }
            return Err(error.context(format!("nats-server log:\n{}", self.log_tail())));
        }
        Ok(())
    }

    /// Ready means: the port answers with the server's `INFO` line.
    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("nats-server exited during start-up ({status})");
            }
            if greets(address) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server did not accept connections on {address} within {START_TIMEOUT:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url())
            .field("store", &self.store_dir())
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(explicit);
        if path.is_file() {
            return Ok(path);
        }
        bail!("NATS_SERVER_BIN={} does not exist", path.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nats-server"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|candidate| is_executable(candidate))
        .context("nats-server is not installed: run `apt-get install -y nats-server` (`make test` installs it), or set NATS_SERVER_BIN")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn greets(address: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}
