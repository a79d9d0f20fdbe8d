//! The DNAnexus emulator on the wire: raw HTTP/1.1 requests, so headers and byte counts are
//! checked exactly as a client sees them.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use keyledger_testkit::dnanexus::{
    Content, DATA_PATH_PREFIX, DnanexusEmulator, Fault, FaultRun, Level, Seed, generated_bytes,
};

const TOKEN: &str = "protocol-token";
const OTHER_TOKEN: &str = "bob-token";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error_type(&self) -> String {
        self.json()["error"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends one request on a fresh connection and reads the reply until the server closes it.
/// Returns the body as received (even when shorter than advertised).
async fn raw(
    emulator: &DnanexusEmulator,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port()))
        .await
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        emulator.host(),
        emulator.port(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut received = Vec::new();
    // A connection cut by fault injection may end in a reset: keep what arrived.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut received),
    )
    .await;
    let split = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete header block");
    let head = String::from_utf8_lossy(&received[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: received[split + 4..].to_vec(),
    }
}

async fn api(emulator: &DnanexusEmulator, path: &str, input: Value) -> Reply {
    let authorization = format!("Bearer {TOKEN}");
    raw(
        emulator,
        "POST",
        path,
        &[
            ("Authorization", &authorization),
            ("Content-Type", "application/json"),
        ],
        input.to_string().as_bytes(),
    )
    .await
}

/// Every API reply is JSON with an exact length.
fn assert_json_reply(reply: &Reply) {
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    assert_eq!(
        reply
            .header("content-length")
            .and_then(|value| value.parse::<usize>().ok()),
        Some(reply.body.len())
    );
    assert!(reply.header("content-encoding").is_none());
}

struct Fixture {
    emulator: DnanexusEmulator,
    project: String,
    private_project: String,
    big: String,
}

async fn fixture() -> Fixture {
    let mut seed = Seed::new();
    let alice = seed.add_user("alice");
    let bob = seed.add_user("bob");
    seed.add_token(&alice, TOKEN);
    seed.add_token(&bob, OTHER_TOKEN);
    let project = seed.add_project("Shared", &alice);
    seed.add_member(&project, &bob, Level::View);
    let private_project = seed.add_project("Private", &bob);
    for index in 0..25 {
        let folder = ["/x", "/x/y", "/z"][index % 3];
        seed.add_file(
            &project,
            &format!("{folder}/file{index:02}.csv"),
            Content::Bytes(format!("row {index}\n").into_bytes()),
            1 << 20,
        );
    }
    let big = seed.add_file(
        &project,
        "/big.bin",
        Content::Generated {
            size: 3_000_000,
            seed: 9,
        },
        1_000_000,
    );
    seed.add_file(
        &private_project,
        "/secret.txt",
        Content::Bytes(b"bob's".to_vec()),
        1 << 20,
    );
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    Fixture {
        emulator,
        project,
        private_project,
        big,
    }
}

#[tokio::test]
async fn errors_are_json_with_the_documented_types() {
    let fixture = fixture().await;
    let emulator = &fixture.emulator;
    let check = |reply: Reply, status: u16, kind: &str, message: &str| {
        assert_json_reply(&reply);
        assert_eq!(
            (reply.status, reply.error_type()),
            (status, kind.to_owned()),
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message)
        );
    };
    check(
        raw(emulator, "POST", "/system/whoami", &[], b"{}").await,
        401,
        "PermissionDenied",
        "Authentication required",
    );
    check(
        raw(
            emulator,
            "POST",
            "/system/whoami",
            &[("Authorization", "Bearer nope")],
            b"{}",
        )
        .await,
        401,
        "InvalidAuthentication",
        "The token could not be found",
    );
    let fine = api(emulator, "/system/whoami", json!({})).await;
    assert_json_reply(&fine);
    assert_eq!(
        (fine.status, fine.json()),
        (200, json!({"id": "user-alice"}))
    );
    check(
        raw(
            emulator,
            "POST",
            "/system/whoami",
            &[("Authorization", "Bearer protocol-token")],
            b"{not json",
        )
        .await,
        400,
        "MalformedJSON",
        "",
    );
    check(
        raw(
            emulator,
            "POST",
            "/system/whoami",
            &[
                ("Authorization", "Bearer protocol-token"),
                ("Content-Type", "text/plain"),
            ],
            b"{}",
        )
        .await,
        400,
        "MalformedJSON",
        "",
    );
    check(
        api(emulator, "/system/findDataObjects", json!({"limit": 0})).await,
        422,
        "InvalidInput",
        "limit",
    );
    check(
        api(emulator, "/system/findDataObjects", json!({"name": 5})).await,
        422,
        "InvalidInput",
        "name",
    );
    check(
        api(
            emulator,
            &format!("/{}/describe", fixture.private_project),
            json!({}),
        )
        .await,
        404,
        "ResourceNotFound",
        "",
    );
    check(
        api(
            emulator,
            "/file-000000000000000000000000/describe",
            json!({}),
        )
        .await,
        404,
        "ResourceNotFound",
        "",
    );
    check(
        api(
            emulator,
            &format!("/{}/listFolder", fixture.project),
            json!({"folder": "/missing"}),
        )
        .await,
        404,
        "ResourceNotFound",
        "folder",
    );
    check(
        raw(emulator, "GET", "/system/whoami", &[], b"").await,
        405,
        "MethodNotAllowed",
        "",
    );

    fixture.emulator.control().expire_token(TOKEN);
    check(
        api(emulator, "/system/whoami", json!({})).await,
        401,
        "InvalidAuthentication",
        "expired",
    );
}

#[tokio::test]
async fn find_data_objects_pages_filters_and_describes() {
    let fixture = fixture().await;
    let emulator = &fixture.emulator;
    let mut seen = Vec::new();
    let mut starting = Value::Null;
    let mut pages = 0;
    loop {
        let mut input = json!({"class": "file", "scope": {"project": fixture.project, "folder": "/x"}, "name": {"regexp": "^FILE", "flags": "i"}, "describe": {"fields": {"name": true, "folder": true, "parts": true}}, "limit": 4});
        if !starting.is_null() {
            input["starting"] = starting.clone();
        }
        let reply = api(emulator, "/system/findDataObjects", input).await;
        assert_json_reply(&reply);
        let page = reply.json();
        for result in page["results"].as_array().unwrap() {
            assert_eq!(result["project"], fixture.project.as_str());
            let describe = &result["describe"];
            assert_eq!(
                describe.as_object().unwrap().len(),
                3,
                "only the fields asked for: {describe}"
            );
            assert_eq!(describe["parts"]["1"]["state"], "complete");
            seen.push(format!(
                "{}/{}",
                describe["folder"].as_str().unwrap(),
                describe["name"].as_str().unwrap()
            ));
        }
        pages += 1;
        starting = page["next"].clone();
        if starting.is_null() {
            break;
        }
        assert!(
            starting["project"].is_string() && starting["id"].is_string(),
            "{starting}"
        );
    }
    // /x and /x/y hold files 0,1,3,4,6,7,… (17 of 25); 4 per page.
    assert_eq!(seen.len(), 17);
    assert_eq!(pages, 5);
    assert!(seen.iter().all(|path| path.starts_with("/x/")));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 17, "no file twice across pages");

    let not_recursive = api(
        emulator,
        "/system/findDataObjects",
        json!({"scope": {"project": fixture.project, "folder": "/x", "recurse": false}}),
    )
    .await
    .json();
    assert_eq!(not_recursive["results"].as_array().unwrap().len(), 9);
    let glob = api(
        emulator,
        "/system/findDataObjects",
        json!({"name": {"glob": "file1?.csv"}}),
    )
    .await
    .json();
    assert_eq!(glob["results"].as_array().unwrap().len(), 10);
    // Without a scope: every project the caller can see, so not Bob's private one.
    let everything = api(emulator, "/system/findDataObjects", json!({"limit": 1000}))
        .await
        .json();
    assert_eq!(everything["results"].as_array().unwrap().len(), 26);
}

#[tokio::test]
async fn describe_honours_fields_and_legacy_flags() {
    let fixture = fixture().await;
    let emulator = &fixture.emulator;
    let path = format!("/{}/describe", fixture.big);
    let default = api(emulator, &path, json!({})).await.json();
    assert_eq!(default["size"], 3_000_000);
    assert_eq!(default["state"], "closed");
    assert!(
        default.get("parts").is_none(),
        "parts are not a default field"
    );
    let legacy = api(
        emulator,
        &path,
        json!({"parts": true, "properties": true, "project": fixture.project}),
    )
    .await
    .json();
    assert_eq!(legacy["name"], "big.bin");
    assert_eq!(legacy["parts"].as_object().unwrap().len(), 3);
    assert!(legacy["properties"].is_object());
    let only = api(emulator, &path, json!({"fields": {"parts": true}}))
        .await
        .json();
    assert_eq!(
        only.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["parts"]
    );
    let both = api(
        emulator,
        &path,
        json!({"fields": {"parts": true}, "defaultFields": true}),
    )
    .await
    .json();
    assert!(both["parts"].is_object() && both["id"] == fixture.big.as_str());
    let expected_md5 = format!("{:x}", Md5Hex(&generated_bytes(9, 1_000_000, 1_000_000)));
    assert_eq!(both["parts"]["2"]["md5"], expected_md5.as_str());
    assert_eq!(both["parts"]["2"]["size"], 1_000_000);

    let wrong_project = api(emulator, &path, json!({"project": fixture.private_project})).await;
    assert_eq!(wrong_project.error_type(), "ResourceNotFound");
    fixture
        .emulator
        .control()
        .corrupt_part_md5(&fixture.big, 2)
        .unwrap();
    let corrupted = api(emulator, &path, json!({"fields": {"parts": true}}))
        .await
        .json();
    assert_ne!(corrupted["parts"]["2"]["md5"], expected_md5.as_str());

    let project = api(
        emulator,
        &format!("/{}/describe", fixture.project),
        json!({"folders": true}),
    )
    .await
    .json();
    assert_eq!(project["name"], "Shared");
    assert_eq!(project["level"], "ADMINISTER");
    assert_eq!(project["folders"], json!(["/", "/x", "/x/y", "/z"]));
    let listing = api(
        emulator,
        &format!("/{}/listFolder", fixture.project),
        json!({"folder": "/x/", "describe": {"fields": {"name": true}}}),
    )
    .await
    .json();
    assert_eq!(listing["folders"], json!(["/x/y"]));
    assert_eq!(listing["objects"].as_array().unwrap().len(), 9);
    assert!(listing["objects"][0]["describe"]["name"].is_string());

    let projects = api(
        emulator,
        "/system/findProjects",
        json!({"name": "Shared", "describe": true, "level": "VIEW", "limit": 100}),
    )
    .await
    .json();
    assert_eq!(projects["results"][0]["id"], fixture.project.as_str());
    assert_eq!(projects["results"][0]["describe"]["name"], "Shared");
    let whoami = api(
        emulator,
        "/system/whoami",
        json!({"fields": {"clientIp": true}}),
    )
    .await
    .json();
    assert_eq!(whoami, json!({"id": "user-alice", "clientIp": "127.0.0.1"}));
    let user = api(emulator, "/user-alice/describe", json!({}))
        .await
        .json();
    assert_eq!(user["handle"], "alice");
}

/// Lowercase hex of an MD5, for comparing with `describe`.
struct Md5Hex<'a>(&'a [u8]);

impl std::fmt::LowerHex for Md5Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use md5::Digest;
        for byte in md5::Md5::digest(self.0) {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn download_urls_serve_exact_ranges_without_a_token() {
    let fixture = fixture().await;
    let emulator = &fixture.emulator;
    let reply = api(
        emulator,
        &format!("/{}/download", fixture.big),
        json!({"preauthenticated": true, "duration": 3600, "project": fixture.project}),
    )
    .await;
    assert_json_reply(&reply);
    let download = reply.json();
    assert_eq!(download["headers"], json!({}));
    assert!(download["expires"].as_u64().unwrap() > 0);
    let url = download["url"].as_str().unwrap();
    assert!(url.contains(&fixture.big), "the URL names the file: {url}");
    let path = &url[url.find(DATA_PATH_PREFIX).unwrap()..];

    let whole = raw(emulator, "GET", path, &[], b"").await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == generated_bytes(9, 0, 3_000_000));
    let range = raw(
        emulator,
        "GET",
        path,
        &[("Range", "bytes=999990-1000009")],
        b"",
    )
    .await;
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-length"), Some("20"));
    assert_eq!(
        range.header("content-range"),
        Some("bytes 999990-1000009/3000000")
    );
    assert_eq!(range.body, generated_bytes(9, 999_990, 20));
    let suffix = raw(emulator, "GET", path, &[("Range", "bytes=-5")], b"").await;
    assert_eq!(suffix.body, generated_bytes(9, 2_999_995, 5));
    let beyond = raw(emulator, "GET", path, &[("Range", "bytes=3000000-")], b"").await;
    assert_eq!(beyond.status, 416);
    assert_eq!(
        raw(emulator, "HEAD", path, &[], b"")
            .await
            .header("content-length"),
        Some("3000000")
    );

    let control = emulator.control();
    control.inject(
        FaultRun::new(Fault::TruncateBody { after_bytes: 100 }, 1).on_path(DATA_PATH_PREFIX),
    );
    let truncated = raw(emulator, "GET", path, &[("Range", "bytes=0-9999")], b"").await;
    assert_eq!(
        truncated.header("content-length"),
        Some("10000"),
        "the full length is advertised"
    );
    assert_eq!(
        truncated.body,
        generated_bytes(9, 0, 100),
        "but only 100 bytes arrive"
    );

    let mut requests_with_token = control
        .requests()
        .into_iter()
        .filter(|request| request.data && request.authorization.is_some());
    assert!(requests_with_token.next().is_none());
    control.expire_download_urls();
    let expired = raw(emulator, "GET", path, &[], b"").await;
    assert_eq!(expired.status, 403);
    assert_json_reply(&expired);
    assert_eq!(
        raw(
            emulator,
            "GET",
            &format!("{DATA_PATH_PREFIX}D/{}/unknown/x", fixture.big),
            &[],
            b""
        )
        .await
        .status,
        404
    );
    let elsewhere = api(
        emulator,
        &format!("/{}/download", fixture.big),
        json!({"project": fixture.private_project}),
    )
    .await;
    assert_eq!(elsewhere.error_type(), "ResourceNotFound");
}

#[tokio::test]
async fn injected_faults_are_finite_and_filtered() {
    let fixture = fixture().await;
    let emulator = &fixture.emulator;
    let control = emulator.control();
    control.inject(
        FaultRun::new(
            Fault::Status {
                status: 503,
                retry_after: Some(7),
            },
            2,
        )
        .on_path("whoami"),
    );
    control.inject(FaultRun::new(
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    ));
    assert_eq!(control.pending_faults(), 3);
    let first = api(emulator, "/system/whoami", json!({})).await;
    assert_eq!(
        (
            first.status,
            first.header("retry-after"),
            first.error_type().as_str()
        ),
        (503, Some("7"), "ServiceUnavailable")
    );
    assert_json_reply(&first);
    // Not matching the first run's filter: the unfiltered 429 run applies.
    let other = api(emulator, "/system/findProjects", json!({})).await;
    assert_eq!(
        (other.status, other.error_type().as_str()),
        (429, "RateLimitConditional")
    );
    assert_eq!(api(emulator, "/system/whoami", json!({})).await.status, 503);
    assert_eq!(api(emulator, "/system/whoami", json!({})).await.status, 200);
    assert_eq!(control.pending_faults(), 0);

    control.inject(FaultRun::new(Fault::Disconnect, 1));
    let mut stream = TcpStream::connect(("127.0.0.1", emulator.port()))
        .await
        .unwrap();
    stream
        .write_all(b"POST /system/whoami HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received).await;
    assert!(received.is_empty(), "no answer at all");
    let records = control.requests();
    assert_eq!(records.last().map(|record| record.status), Some(0));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let later = raw(
        emulator,
        "POST",
        "/system/comeBackLater",
        &[],
        json!({"waitUntil": now + 60_000, "setRetryAfter": true})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(later.status, 503);
    assert!(
        later
            .header("retry-after")
            .and_then(|value| value.parse::<u64>().ok())
            .is_some_and(|seconds| (59..=60).contains(&seconds))
    );
    let now_ok = raw(
        emulator,
        "POST",
        "/system/comeBackLater",
        &[],
        json!({"waitUntil": now - 1}).to_string().as_bytes(),
    )
    .await;
    assert!(now_ok.json()["currentTime"].as_u64().is_some());
}

#[tokio::test]
async fn a_folder_becomes_a_project() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("Samples");
    std::fs::create_dir_all(data.join("run1/lane2")).unwrap();
    std::fs::create_dir_all(data.join("empty")).unwrap();
    std::fs::write(data.join("top.txt"), b"top").unwrap();
    std::fs::write(data.join("run1/lane2/r.fq"), vec![7u8; 2500]).unwrap();
    let mut seed = Seed::from_dir_with_part_size(&data, 1000).unwrap();
    seed.add_token(keyledger_testkit::dnanexus::FROM_DIR_USER, TOKEN);
    let emulator = DnanexusEmulator::start(seed).await.unwrap();
    let project = emulator.control().project_id("Samples").unwrap();
    let files = emulator.control().files(&project);
    let paths: Vec<(&str, &str)> = files
        .iter()
        .map(|file| (file.folder.as_str(), file.name.as_str()))
        .collect();
    assert_eq!(paths, [("/", "top.txt"), ("/run1/lane2", "r.fq")]);
    assert_eq!(
        files[1]
            .parts
            .iter()
            .map(|(size, _)| *size)
            .collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    let described = api(
        &emulator,
        &format!("/{project}/describe"),
        json!({"folders": true}),
    )
    .await
    .json();
    assert_eq!(
        described["folders"],
        json!(["/", "/empty", "/run1", "/run1/lane2"])
    );
}
