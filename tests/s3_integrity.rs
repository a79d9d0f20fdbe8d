//! Issue 17, point 4, where a user meets it: files uploaded with the real awscli (a multipart
//! upload with a CRC32 per part, the 40 MB case; a CRC64NVME and a SHA-256 upload)
//! are ingested by `keyledger ingest s3` and verified, with no "retry" in sight.

use keyledger_testkit::awscli::aws;
use keyledger_testkit::s3::{S3Server, generated_bytes};
use serde_json::json;

use crate::support::Server;

const ACCESS_KEY_ID: &str = "AKIAINTEGRITYTEST001";
const SECRET: &str = "integritySecretKey0123456789abcdefghijkl";

#[test]
fn files_uploaded_with_aws_s3_cp_are_ingested_and_verified() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s3 = rt.block_on(S3Server::start(ACCESS_KEY_ID, SECRET)).unwrap();
    rt.block_on(s3.create_bucket("samples")).unwrap();
    let endpoint = s3.endpoint();
    let uploads = tempfile::tempdir().unwrap();
    // (key, size, awscli arguments)
    let files: [(&str, usize, &[&str]); 3] = [
        ("run/reads.bam", 40_000_000, &[]),
        (
            "run/calls.vcf",
            3_000_001,
            &["--checksum-algorithm", "CRC64NVME"],
        ),
        (
            "run/matrix.h5ad",
            18_000_003,
            &["--checksum-algorithm", "SHA256"],
        ),
    ];
    for (index, (key, size, extra)) in files.iter().enumerate() {
        let content = generated_bytes(index as u64, 0, *size);
        let local = uploads.path().join(format!("{index}.bin"));
        std::fs::write(&local, &content).unwrap();
        let destination = format!("s3://samples/{key}");
        let mut args = vec!["s3", "cp", local.to_str().unwrap(), destination.as_str()];
        args.extend_from_slice(extra);
        aws(&endpoint, ACCESS_KEY_ID, SECRET, &args, &[]).expect("aws s3 cp");
    }

    let server = Server::start_with(&[("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str())]);
    server.create_user("dana", &["developer"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/dana/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "ingest", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let aws_key = json!({ "label": "lab", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET, "region": "us-east-1" } });
    let (status, stored) = server.call("POST", "/v1/external-keys", Some(&key), Some(&aws_key));
    assert_eq!(status, 201, "{stored}");

    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &[
            "ingest", "s3", "--bucket", "samples", "--prefix", "run/", "--json",
        ],
        "",
        &[("KEYLEDGER_API_KEY", &key)],
    );
    assert!(
        !run.stdout.contains("retry") && !run.stderr.contains("retry"),
        "{run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 3, "{job}");
    assert_eq!(job["files_failed"], 0, "{job}");
    let store = server
        .data_dir()
        .join("samples")
        .join(job["store_path"].as_str().unwrap());
    for (index, (key, size, _)) in files.iter().enumerate() {
        let path = key.strip_prefix("run/").unwrap();
        let on_disk = std::fs::read(store.join(path)).unwrap();
        assert!(
            on_disk == generated_bytes(index as u64, 0, *size),
            "{path} differs"
        );
    }
}
