//! The DNAnexus emulator against the official client: `dx` from the repository's venv
//! (`scripts/dxpy-venv.sh` creates it when missing), talking plain HTTP to 127.0.0.1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use keyledger_testkit::dnanexus::{
    Content, DATA_PATH_PREFIX, DnanexusEmulator, Fault, FaultRun, Seed, generated_bytes,
};

const TOKEN: &str = "dx-conformance-token-0001";
const MIB: u64 = 1 << 20;
/// Generous: one `dx` run takes about a second, a few with retries.
const DX_TIMEOUT: Duration = Duration::from_secs(120);

/// Path of `dx`, installing dxpy into `<repo>/.venv` on first use. Never skips: a machine
/// without dxpy fails here with the reason.
fn dx_path() -> &'static Path {
    static DX: OnceLock<PathBuf> = OnceLock::new();
    DX.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dx = repo.join(".venv/bin/dx");
        if dx.is_file() {
            return dx;
        }
        let script = repo.join("scripts/dxpy-venv.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|error| panic!("could not run {}: {error}", script.display()));
        assert!(
            output.status.success() && dx.is_file(),
            "dx is missing and {} failed (exit {:?}); these conformance tests need dxpy from PyPI:\n{}",
            script.display(),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        dx
    })
}

/// A private dx configuration pointed at one emulator.
struct Dx {
    config: tempfile::TempDir,
    host: String,
    port: u16,
    project: String,
    token: String,
}

impl Dx {
    fn new(emulator: &DnanexusEmulator, project: &str) -> Self {
        Self {
            config: tempfile::tempdir().expect("temporary dx config folder"),
            host: emulator.host(),
            port: emulator.port(),
            project: project.to_owned(),
            token: TOKEN.to_owned(),
        }
    }

    fn with_token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self
    }

    async fn run(&self, args: &[&str], directory: &Path) -> Output {
        let mut command = tokio::process::Command::new(dx_path());
        for (name, _) in std::env::vars() {
            if name.starts_with("DX_") || name.to_ascii_lowercase().ends_with("_proxy") {
                command.env_remove(name);
            }
        }
        let context =
            serde_json::json!({"auth_token_type": "Bearer", "auth_token": self.token}).to_string();
        command
            .args(args)
            .current_dir(directory)
            .env("DX_USER_CONF_DIR", self.config.path())
            .env("DX_APISERVER_HOST", &self.host)
            .env("DX_APISERVER_PORT", self.port.to_string())
            .env("DX_APISERVER_PROTOCOL", "http")
            .env("DX_SECURITY_CONTEXT", context)
            .env("DX_PROJECT_CONTEXT_ID", &self.project)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(DX_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("dx {args:?} did not finish within {DX_TIMEOUT:?}"))
            .expect("dx runs")
    }

    /// Runs dx and insists on success; returns stdout.
    async fn ok(&self, args: &[&str], directory: &Path) -> String {
        let output = self.run(args, directory).await;
        assert!(
            output.status.success(),
            "dx {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

struct Fixture {
    emulator: DnanexusEmulator,
    project: String,
    /// `(path, file id, generated seed, size)` of every seeded file.
    files: Vec<(String, String, u64, u64)>,
}

/// A project with a few folders; `/big.bin` has several parts.
async fn fixture() -> Fixture {
    let mut seed = Seed::new();
    let alice = seed.add_user("alice");
    seed.add_token(&alice, TOKEN);
    let project = seed.add_project("Genomes", &alice);
    let layout: &[(&str, u64, u64)] = &[
        ("/notes.txt", 100, MIB),
        ("/reads/a.fastq", 2000, MIB),
        ("/reads/b.fastq", 3000, MIB),
        ("/reads/sub/c.fastq", 4000, MIB),
        ("/reads/sub/deep/d.txt", 0, MIB),
        ("/big.bin", 5 * MIB + 12_345, MIB),
    ];
    let mut files = Vec::new();
    for (index, (path, size, part_size)) in layout.iter().enumerate() {
        let generator = 1000 + index as u64;
        let id = seed.add_file(
            &project,
            path,
            Content::Generated {
                size: *size,
                seed: generator,
            },
            *part_size,
        );
        files.push((path.to_string(), id, generator, *size));
    }
    seed.add_folder(&project, "/empty");
    let emulator = DnanexusEmulator::start(seed)
        .await
        .expect("emulator starts");
    Fixture {
        emulator,
        project,
        files,
    }
}

impl Fixture {
    fn id(&self, path: &str) -> &str {
        &self
            .files
            .iter()
            .find(|(candidate, ..)| candidate == path)
            .expect("seeded path")
            .1
    }

    fn expected_bytes(&self, path: &str) -> Vec<u8> {
        let (_, _, generator, size) = self
            .files
            .iter()
            .find(|(candidate, ..)| candidate == path)
            .expect("seeded path");
        generated_bytes(*generator, 0, *size as usize)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_ls_shows_folders_and_files() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);

    let root: BTreeSet<String> = dx
        .ok(&["ls"], work.path())
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        root,
        BTreeSet::from(["big.bin", "empty/", "notes.txt", "reads/"].map(String::from))
    );
    let reads: BTreeSet<String> = dx
        .ok(&["ls", "/reads"], work.path())
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        reads,
        BTreeSet::from(["a.fastq", "b.fastq", "sub/"].map(String::from))
    );
    // By project name, as a user would type it.
    let by_name = dx.ok(&["ls", "Genomes:/reads/sub"], work.path()).await;
    assert!(
        by_name.contains("c.fastq") && by_name.contains("deep/"),
        "{by_name}"
    );
    // A folder that does not exist is an error, as on the platform.
    assert!(
        !dx.run(&["ls", "/nowhere"], work.path())
            .await
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_find_data_by_name_and_glob() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);

    let ids = |stdout: String| -> BTreeSet<String> {
        stdout
            .lines()
            .map(|line| line.rsplit(':').next().unwrap_or(line).to_owned())
            .collect()
    };
    let glob = ids(dx
        .ok(
            &["find", "data", "--name", "*.fastq", "--brief"],
            work.path(),
        )
        .await);
    let expected: BTreeSet<String> = ["/reads/a.fastq", "/reads/b.fastq", "/reads/sub/c.fastq"]
        .iter()
        .map(|path| fixture.id(path).to_owned())
        .collect();
    assert_eq!(glob, expected);
    let exact = ids(dx
        .ok(
            &["find", "data", "--name", "b.fastq", "--brief"],
            work.path(),
        )
        .await);
    assert_eq!(
        exact,
        BTreeSet::from([fixture.id("/reads/b.fastq").to_owned()])
    );
    let in_folder = ids(dx
        .ok(
            &["find", "data", "--path", "/reads/sub", "--brief"],
            work.path(),
        )
        .await);
    let expected: BTreeSet<String> = ["/reads/sub/c.fastq", "/reads/sub/deep/d.txt"]
        .iter()
        .map(|path| fixture.id(path).to_owned())
        .collect();
    assert_eq!(in_folder, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_describe_reports_the_file() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);

    let described: serde_json::Value = serde_json::from_str(
        &dx.ok(&["describe", "/reads/a.fastq", "--json"], work.path())
            .await,
    )
    .expect("JSON");
    assert_eq!(described["id"], fixture.id("/reads/a.fastq"));
    assert_eq!(described["class"], "file");
    assert_eq!(described["name"], "a.fastq");
    assert_eq!(described["folder"], "/reads");
    assert_eq!(described["state"], "closed");
    assert_eq!(described["size"], 2000);
    assert_eq!(described["project"], fixture.project.as_str());
    // By id too, with the human-readable output.
    let human = dx
        .ok(&["describe", fixture.id("/big.bin")], work.path())
        .await;
    assert!(
        human.contains("big.bin") && human.contains("closed"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_download_of_a_multipart_file_is_byte_identical() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);
    let control = fixture.emulator.control();
    assert_eq!(control.file(fixture.id("/big.bin")).unwrap().parts.len(), 6);

    dx.ok(&["download", "/big.bin", "-o", "big.bin"], work.path())
        .await;
    let downloaded = std::fs::read(work.path().join("big.bin")).unwrap();
    assert!(
        downloaded == fixture.expected_bytes("/big.bin"),
        "downloaded bytes differ"
    );
    // dx fetched ranges of the data URL, without the token.
    let data_gets: Vec<_> = control
        .requests()
        .into_iter()
        .filter(|request| request.data)
        .collect();
    assert!(
        data_gets.len() >= 6,
        "one ranged GET per part at least: {data_gets:?}"
    );
    assert!(
        data_gets.iter().all(|request| request.status == 206),
        "{data_gets:?}"
    );
    assert!(control.data_authorization_headers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_download_recursive_folder_is_byte_identical() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);

    std::fs::create_dir(work.path().join("out")).unwrap();
    dx.ok(&["download", "-r", "/reads", "-o", "out"], work.path())
        .await;
    for path in [
        "/reads/a.fastq",
        "/reads/b.fastq",
        "/reads/sub/c.fastq",
        "/reads/sub/deep/d.txt",
    ] {
        let local = work.path().join("out").join(path.trim_start_matches('/'));
        let bytes =
            std::fs::read(&local).unwrap_or_else(|error| panic!("{}: {error}", local.display()));
        assert!(bytes == fixture.expected_bytes(path), "{path} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_whoami_names_the_token_owner() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);
    assert_eq!(dx.ok(&["whoami"], work.path()).await.trim(), "alice");
    assert_eq!(
        dx.ok(&["whoami", "--id"], work.path()).await.trim(),
        "user-alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_fails_with_the_servers_message_for_bad_tokens() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let check = |output: Output, message: &str| {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_ne!(
            output.status.code(),
            Some(0),
            "dx must fail; stderr: {stderr}"
        );
        assert!(
            stderr.contains(message),
            "expected {message:?} in: {stderr}"
        );
    };
    let unknown = Dx::new(&fixture.emulator, &fixture.project).with_token("not-a-token");
    check(
        unknown.run(&["whoami"], work.path()).await,
        "The token could not be found",
    );
    check(
        unknown.run(&["ls"], work.path()).await,
        "The token could not be found",
    );
    check(
        unknown.run(&["download", "/notes.txt"], work.path()).await,
        "The token could not be found",
    );

    let control = fixture.emulator.control();
    control.add_token("user-alice", "short-lived").unwrap();
    let expiring = Dx::new(&fixture.emulator, &fixture.project).with_token("short-lived");
    expiring.ok(&["whoami"], work.path()).await;
    control.expire_token("short-lived");
    check(
        expiring.run(&["ls"], work.path()).await,
        "The token has expired",
    );
    control.add_token("user-alice", "revoked").unwrap();
    control.revoke_token("revoked");
    check(
        Dx::new(&fixture.emulator, &fixture.project)
            .with_token("revoked")
            .run(&["ls"], work.path())
            .await,
        "The token could not be found",
    );
    assert!(!work.path().join("notes.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_download_fails_on_a_wrong_part_md5() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);
    fixture
        .emulator
        .control()
        .corrupt_part_md5(fixture.id("/big.bin"), 3)
        .unwrap();
    let output = dx
        .run(&["download", "/big.bin", "-o", "big.bin"], work.path())
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(0),
        "dx must refuse the file; stderr: {stderr}"
    );
    assert!(stderr.to_ascii_lowercase().contains("checksum"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dx_rides_out_injected_faults() {
    let fixture = fixture().await;
    let work = tempfile::tempdir().unwrap();
    let dx = Dx::new(&fixture.emulator, &fixture.project);
    let control = fixture.emulator.control();
    // Throttling with Retry-After: 0 (dxpy then waits 0 s), a server error and a cut-off data
    // body: dx retries all three and still gets the right bytes.
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 503,
                retry_after: Some(0),
            },
            2,
        )
        .on_path("findDataObjects"),
    );
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 500,
                retry_after: None,
            },
            1,
        )
        .on_path("/download"),
    );
    control.inject(
        FaultRun::new(Fault::TruncateBody { after_bytes: 1000 }, 1).on_path(DATA_PATH_PREFIX),
    );
    dx.ok(
        &["download", "/reads/a.fastq", "-o", "a.fastq"],
        work.path(),
    )
    .await;
    assert!(
        std::fs::read(work.path().join("a.fastq")).unwrap()
            == fixture.expected_bytes("/reads/a.fastq")
    );
    assert_eq!(control.pending_faults(), 0, "every injected fault was hit");
}
