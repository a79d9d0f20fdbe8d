//! A 1 GiB object is fetched with bounded memory. The measurement runs in a child process (this
//! test binary, filtered to this one test), so that no other test shares its peak (VmHWM).

use std::io::Read as _;
use std::process::Command;
use std::time::Instant;

use keyledger_domain::{Event, KeyDuration};
use keyledger_ingest::JobState;
use keyledger_testkit::s3::{S3Server, fill_generated};

use crate::support::{
    ACCESS_KEY_ID, BUCKET, SECRET, assert_finished, aws_selection, harness, s3_options,
};

const CHILD: &str = "KEYLEDGER_INGEST_MEMORY_CHILD";
const TEST_NAME: &str = "memory::a_1_gib_object_is_fetched_with_peak_memory_under_200_mib";
const SIZE: u64 = 1 << 30;
const LIMIT_KIB: u64 = 200 * 1024;

#[test]
fn a_1_gib_object_is_fetched_with_peak_memory_under_200_mib() {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(fetch_one_gib());
        println!("VmHWM_KIB={}", peak_kib());
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let peak: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM_KIB="))
        .unwrap_or_else(|| panic!("no measurement in: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    println!("child peak memory: {} MiB", peak / 1024);
    for line in stdout.lines() {
        if let Some(at) = line.find("FIGURE ") {
            println!("{}", &line[at..]);
        }
    }
    assert!(peak < LIMIT_KIB, "peak memory {} MiB", peak / 1024);
}

async fn fetch_one_gib() {
    let server = S3Server::start(ACCESS_KEY_ID, SECRET).await.unwrap();
    server.create_bucket(BUCKET).await.unwrap();
    let seeded = Instant::now();
    server
        .put_generated_object(BUCKET, "big/matrix.h5ad", SIZE, 7)
        .await
        .unwrap();
    println!("FIGURE seeding 1 GiB took {:?}", seeded.elapsed());
    let h = harness(|config| config.s3 = s3_options(&server.endpoint())).await;
    h.store_aws_key(SECRET, KeyDuration::Days(30)).await;

    let started = Instant::now();
    let view = h.ingest(aws_selection(BUCKET, "big/", "")).await;
    let elapsed = started.elapsed();
    println!(
        "FIGURE ingesting 1 GiB took {elapsed:?} ({:.0} MiB/s)",
        1024.0 / elapsed.as_secs_f64()
    );

    assert_finished(&view, JobState::Completed);
    assert_eq!(view.bytes_fetched, SIZE);
    let recorded = h
        .events_of(&view.id)
        .into_iter()
        .find_map(|event| match event {
            Event::IngestionFileFetched { sha256, .. } => Some(sha256),
            _ => None,
        })
        .unwrap();
    // The stored file, read back in chunks, is the generated content and hashes as recorded.
    let path = h.store_root.join(&view.store_path).join("matrix.h5ad");
    let mut file = std::fs::File::open(&path).unwrap();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut chunk = vec![0u8; 1 << 20];
    let mut expected = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let read = file.read(&mut chunk).unwrap();
        if read == 0 {
            break;
        }
        fill_generated(7, offset, &mut expected[..read]);
        assert!(
            chunk[..read] == expected[..read],
            "content differs near {offset}"
        );
        hash.update(&chunk[..read]);
        offset += read as u64;
    }
    assert_eq!(offset, SIZE);
    assert_eq!(hash.finish().as_ref(), recorded.as_slice());
    assert!(h.partial_leftovers().is_empty());
}

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
