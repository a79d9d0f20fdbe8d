//! The console's Samples pages in a real browser (`tests/console/samples.mjs`, headless
//! Chromium, as `console.rs`): an import of the S3 test server's bucket (objects uploaded with
//! the real awscli) with its live preview, the API's refusals in words (a bad regex, a missing
//! bucket, nothing matched, no usable key), a scheduled run refused for lack of a key (a warning
//! line with a link to External keys), a DNAnexus import, the job watched to its end in the list without a
//! reload, its files with SHA-256 and lineage and a download, Cancel, the phone layout, and a
//! user without the permission. `KEYLEDGER_UPDATE_SCREENSHOTS=1` writes its screenshots to
//! `docs/console/`.
//!
//! The job is kept running for exactly as long as the browser needs to see it run: the fault
//! proxy in front of S3 holds one object's GET on a gate, and the script opens the gate by
//! sending a request to the proxy (`/console-release-N`), which a thread here waits for — a
//! condition, no sleep.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyledger_testkit::awscli::aws;
use keyledger_testkit::dnanexus::{Content, DnanexusEmulator, Level, Seed};
use keyledger_testkit::fault_proxy::{Fault, FaultControl, FaultProxy, Gate, RequestMatch};
use keyledger_testkit::s3::S3Server;
use serde_json::json;

use crate::console::{assert_browser_passed, browser_script, install_browser, run_bounded};
use crate::support::{Server, developer_key, runtime};

const ACCESS_KEY_ID: &str = "AKIASAMPLESCONSOLE01";
const SECRET: &str = "samplesConsoleSecret0123456789abcdefghij";
const DNANEXUS_TOKEN: &str = "dxTOKENforTHEsamplesPAGES0123456789";

/// The bucket's objects under `runs/`, as a scientist's upload would leave them.
const OBJECTS: &[(&str, &str)] = &[
    ("plate-1/a.csv", "gene,count\nBRCA1,12\n"),
    ("plate-1/b.csv", "gene,count\nTP53,7\n"),
    ("plate-2/c.csv", "gene,count\nEGFR,31\nKRAS,4\n"),
    ("notes.txt", "plate 2 was re-run\n"),
    ("reads.fastq", "@r1\nACGT\n+\nIIII\n"),
];

#[test]
fn the_samples_pages_in_a_real_browser() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    install_browser(&repository);
    let rt = runtime();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("lab")).unwrap();
    let upload = tempfile::tempdir().unwrap();
    for (path, text) in OBJECTS {
        let local = upload.path().join(path);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, text).unwrap();
    }
    aws(
        &s3.endpoint(),
        ACCESS_KEY_ID,
        SECRET,
        &[
            "s3",
            "sync",
            upload.path().to_str().unwrap(),
            "s3://lab/runs/",
        ],
        &[],
    )
    .expect("aws s3 sync");

    // c.csv's fetch waits for the browser to have seen the job run; reads.fastq's for Cancel.
    let proxy = rt.block_on(FaultProxy::start(s3.address())).unwrap();
    let gates = [
        ("plate-2/c.csv", "/console-release-1"),
        ("reads.fastq", "/console-release-2"),
    ]
    .map(|(object, release)| {
        let gate = Gate::default();
        proxy.inject(
            RequestMatch::get().path_contains(&format!("/lab/runs/{object}")),
            Fault::Hold(gate.clone()),
            1,
        );
        (gate, release)
    });
    let done = Arc::new(AtomicBool::new(false));
    let releaser = open_gates_on_request(proxy.control(), gates.to_vec(), done.clone());

    // A DNAnexus project with two quantification files, viewed by the token's user.
    let mut seed = Seed::new();
    let dx_user = seed.add_user("dee");
    seed.add_token(&dx_user, DNANEXUS_TOKEN);
    let project = seed.add_project("rnaseq", &dx_user);
    seed.add_member(&project, &dx_user, Level::View);
    for (path, text) in [
        ("/quant/s1.sf", "Name\tTPM\nA\t1.5\n"),
        ("/quant/s2.sf", "Name\tTPM\nB\t2.5\n"),
    ] {
        seed.add_file(
            &project,
            path,
            Content::Bytes(text.as_bytes().to_vec()),
            1024,
        );
    }
    let dnanexus = rt.block_on(DnanexusEmulator::start(seed)).unwrap();

    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", proxy.endpoint().as_str()),
        (
            "KEYLEDGER_INGEST_DNANEXUS_API_URL",
            dnanexus.endpoint().as_str(),
        ),
        // The users' 7-day keys would be announced as expiring (the banner has its own test).
        ("KEYLEDGER_VAULT_EXPIRY_WARNING_DAYS", ""),
        // `noa`'s every-minute source is refused (no key) within a second of its minute.
        ("KEYLEDGER_INGEST_SCHEDULE_TICK_SECS", "1"),
    ]);
    let sam = developer_key(&server, "sam");
    let aws_key = json!({ "label": "lab bucket", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&sam), Some(&aws_key));
    assert_eq!(status, 201, "{stored}");
    let dee = developer_key(&server, "dee");
    let dx_key = json!({ "label": "dx lab", "provider": "dnanexus", "duration": "30d",
        "dnanexus": { "token": DNANEXUS_TOKEN } });
    let (status, body) = server.call("POST", "/v1/external-keys", Some(&dee), Some(&dx_key));
    assert_eq!(status, 201, "{body}");
    let nokey = developer_key(&server, "noa");
    let refused = refused_source(&server, &nokey);
    server.create_user("aud", &["auditor"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/aud/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "console", "duration": "1d" })),
    );
    assert_eq!(status, 201, "{body}");
    let sha256: serde_json::Map<String, serde_json::Value> = OBJECTS
        .iter()
        .map(|(path, text)| (path.to_string(), json!(hex(text.as_bytes()))))
        .collect();
    let setup = json!({
        "sam": sam, "dee": dee, "nokey": nokey, "auditor": body["key"], "aws_key_id": stored["id"],
        "proxy": proxy.endpoint(), "sha256": sha256, "contents": OBJECTS.iter().map(|(p, t)| (p.to_string(), json!(t))).collect::<serde_json::Map<_, _>>(),
    });
    wait_for_refusal(&server, &nokey, &refused);
    let command = browser_script(
        &server,
        "samples.mjs",
        &setup.to_string(),
        "console-samples-screenshots",
    );
    let run = run_bounded(command, Duration::from_secs(300));
    // Whatever happened, nothing stays held.
    done.store(true, Ordering::SeqCst);
    for (gate, _) in &gates {
        gate.open();
    }
    releaser.join().unwrap();
    assert_browser_passed(run, "samples.mjs", "samples e2e: passed", &server);
}

/// `noa` (no external key) saves an every-minute source: the server's scheduler refuses its
/// next occurrence and records it (`last_refusal`), which the Saved sources list shows.
fn refused_source(server: &Server, key: &str) -> String {
    let body = json!({ "name": "every minute", "provider": "aws", "bucket": "lab",
        "prefix": "runs/", "pattern": r"\.csv$", "schedule": "* * * * *", "timezone": "UTC" });
    let (status, saved) = server.call("POST", "/v1/sources", Some(key), Some(&body));
    assert_eq!(status, 201, "{saved}");
    saved["id"].as_str().unwrap().to_owned()
}

/// Bounded polling (the next minute comes on the real clock): the refusal is recorded.
fn wait_for_refusal(server: &Server, key: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let source = server.get(&format!("/v1/sources/{id}"), key);
        if source["last_refusal"].is_object() {
            return;
        }
        assert!(Instant::now() < deadline, "no refusal recorded: {source}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Opens each gate once the proxy has seen a request for its release path, until `done`.
fn open_gates_on_request(
    control: FaultControl,
    mut gates: Vec<(Gate, &'static str)>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !gates.is_empty() && !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            let seen = control.requests();
            gates.retain(|(gate, release)| {
                let asked = seen.iter().any(|r| r.path_and_query.starts_with(release));
                if asked {
                    gate.open();
                }
                !asked
            });
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
