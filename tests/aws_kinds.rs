//! The kinds of AWS credential through the real binary, against the testkit's S3 and STS
//! servers (one identity store): temporary credentials (`session`) are stored with their token,
//! signed with it, expire with it, and are refused once expired; none of their secret parts
//! reaches a response, the log output or an event.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyledger_domain::Timestamp;
use keyledger_testkit::iam::AccessKey;
use keyledger_testkit::s3::S3Server;
use keyledger_testkit::sts::StsServer;
use serde_json::{Value, json};

use crate::support::Server;

/// The S3 server's own key (full access); it puts the objects.
const ADMIN_KEY: &str = "AKIAKINDSADMIN000001";
const ADMIN_SECRET: &str = "kindsAdminSecret0123456789abcdefghijklmn";
/// A lab member's long-lived key: it asks STS for the temporary credentials a user stores.
const MEMBER_KEY: &str = "AKIAKINDSMEMBER00001";
const MEMBER_SECRET: &str = "kindsMemberSecret0123456789abcdefghijklm";

/// Temporary credentials as `aws sts get-session-token` hands them out.
struct Session {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expires_at: Timestamp,
}

struct Lab {
    s3: S3Server,
    sts: StsServer,
    runtime: tokio::runtime::Runtime,
}

fn lab() -> Lab {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (s3, sts) = runtime.block_on(async {
        let s3 = S3Server::start(ADMIN_KEY, ADMIN_SECRET).await.unwrap();
        s3.create_bucket("lab").await.unwrap();
        for (key, content) in [
            ("runs/a.fastq", "ACGTACGT"),
            ("runs/2024/b.fastq", "TTGCA"),
            ("other/c.fastq", "GGGG"),
        ] {
            s3.put_object("lab", key, content.as_bytes().to_vec())
                .await
                .unwrap();
        }
        s3.iam()
            .add_access_key(AccessKey::new(MEMBER_KEY, MEMBER_SECRET).user("member"));
        let sts = StsServer::start(s3.iam().clone()).await.unwrap();
        (s3, sts)
    });
    Lab { s3, sts, runtime }
}

impl Lab {
    /// GetSessionToken with the member's key, through the real SDK client.
    fn session(&self) -> Session {
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
            .region(aws_sdk_sts::config::Region::new("us-east-1"))
            .endpoint_url(self.sts.endpoint())
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                MEMBER_KEY,
                MEMBER_SECRET,
                None,
                None,
                "test",
            ))
            .build();
        let client = aws_sdk_sts::Client::from_conf(config);
        let output = self
            .runtime
            .block_on(client.get_session_token().duration_seconds(3600).send())
            .unwrap();
        let credentials = output.credentials().unwrap();
        let expiration = credentials.expiration();
        Session {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: credentials.secret_access_key().to_owned(),
            session_token: credentials.session_token().to_owned(),
            expires_at: Timestamp::from_millis(expiration.to_millis().unwrap()),
        }
    }
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(i64::try_from(millis).unwrap())
}

/// A member with their own API key, ready to store external keys and ingest.
fn member(server: &Server) -> String {
    server.create_user("mia", &["developer"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/mia/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "ingest", "duration": "7d" })),
    );
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

fn session_body(session: &Session, expires_at: Timestamp) -> Value {
    json!({ "label": "sso", "provider": "aws", "kind": "session", "duration": "30d",
        "aws": { "access_key_id": session.access_key_id,
                 "secret_access_key": session.secret_access_key,
                 "session_token": session.session_token,
                 "session_expires_at": expires_at.to_rfc3339(),
                 "region": "us-east-1" } })
}

/// Every event's public JSON, as the audit export gives it.
fn all_events(server: &Server) -> String {
    server
        .get("/v1/events?from=1&limit=10000", &server.admin_key)
        .to_string()
}

#[test]
fn session_credentials_are_stored_with_their_token_ingest_and_expire_with_it() {
    let lab = lab();
    let session = lab.session();
    let (endpoint, sts_endpoint) = (lab.s3.endpoint(), lab.sts.endpoint());
    // The credential check without a bucket asks STS who the key is.
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
    ]);
    let key = member(&server);
    let store = |body: &Value| server.call("POST", "/v1/external-keys", Some(&key), Some(body));

    // An ASIA… id without its token can never work: refused, naming what is missing.
    let (status, body) = store(
        &json!({ "label": "sso", "provider": "aws", "duration": "30d",
        "aws": { "access_key_id": session.access_key_id,
                 "secret_access_key": session.secret_access_key, "region": "us-east-1" } }),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session token"),
        "{body}"
    );
    // Kind `session` needs the token and its expiry; an expired token is refused up front.
    let mut without_token = session_body(&session, session.expires_at);
    without_token["aws"]
        .as_object_mut()
        .unwrap()
        .remove("session_token");
    let (status, body) = store(&without_token);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("session_token"), "{body}");
    let (status, body) = store(&session_body(&session, now().plus_millis(-60_000)));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("already expired"), "{body}");

    // Stored: the key expires with the token (not in 30 days), shown masked, never the secret.
    let (status, stored) = store(&session_body(&session, session.expires_at));
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["kind"], "session", "{stored}");
    assert_eq!(stored["provider"], "aws", "{stored}");
    assert!(
        stored["hint"].as_str().unwrap().starts_with("ASIA…"),
        "{stored}"
    );
    let token_expiry = session.expires_at.to_rfc3339();
    assert_eq!(stored["expires_at"], token_expiry.as_str(), "{stored}");
    assert_eq!(
        stored["token_expires_at"],
        token_expiry.as_str(),
        "{stored}"
    );

    // The S3 server accepts only requests signed with the session token: the ingestion works.
    let dir = tempfile::tempdir().unwrap();
    let run = server.cli(
        dir.path(),
        &[
            "ingest", "s3", "--bucket", "lab", "--prefix", "runs/", "--json",
        ],
        "",
        &[("KEYLEDGER_API_KEY", &key)],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let job = run.json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["files_fetched"], 2, "{job}");

    // Canary: neither the secret nor the token in the server's output or any event.
    let output = server.output();
    let events = all_events(&server);
    for secret in [&session.secret_access_key, &session.session_token] {
        assert!(!output.contains(secret.as_str()), "a secret in the logs");
        assert!(!events.contains(secret.as_str()), "a secret in the events");
        assert!(!stored.to_string().contains(secret.as_str()));
    }

    // The least-privilege test signs with the token too: list, read and region pass.
    let verify = |scope: &Value| {
        let (status, verified) = server.call(
            "POST",
            &format!(
                "/v1/external-keys/{}/verify",
                stored["id"].as_str().unwrap()
            ),
            Some(&key),
            Some(scope),
        );
        assert_eq!(status, 200, "{verified}");
        verified
    };
    let lab_runs = json!({ "bucket": "lab", "prefix": "runs/" });
    let verified = verify(&lab_runs);
    assert_eq!(verified["last_verified_ok"], true, "{verified}");
    assert_eq!(
        verified["capabilities"].as_array().unwrap().len(),
        3,
        "{verified}"
    );
    // AWS ends a token on its own clock: past it, S3's ExpiredToken is named as such.
    lab.s3.iam().clock().advance(Duration::from_secs(2 * 3600));
    let verified = verify(&lab_runs);
    assert_eq!(verified["last_verified_ok"], false, "{verified}");
    let list = &verified["capabilities"][0];
    assert_eq!(list["capability"], "list", "{verified}");
    let detail = list["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("expired token: the temporary credentials have expired")
            && detail.contains("S3 said ExpiredToken"),
        "{verified}"
    );
    for secret in [&session.secret_access_key, &session.session_token] {
        assert!(!verified.to_string().contains(secret.as_str()));
    }

    // A session about to expire: stored with its expiry, shown expired once past it, and a job
    // is then refused up front with that reason.
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/external-keys/{}", stored["id"].as_str().unwrap()),
        Some(&key),
        None,
    );
    assert_eq!(status, 200, "{body}");
    // Ten seconds leave room for a busy machine between here and the store.
    let soon = now().plus_millis(10_000);
    let (status, short) = store(&session_body(&session, soon));
    assert_eq!(status, 201, "{short}");
    let waited = Instant::now();
    loop {
        let list = server.get("/v1/external-keys", &key);
        if list["keys"][0]["status"] == "expired" {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "never shown expired: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = server.call(
        "POST",
        "/v1/ingestions",
        Some(&key),
        Some(&json!({ "provider": "aws", "bucket": "lab", "prefix": "runs/" })),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "session_expired", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("expired") && message.contains(&soon.to_string()),
        "{message}"
    );
}

#[test]
fn the_cli_stores_temporary_credentials_from_a_profile() {
    let lab = lab();
    let session = lab.session();
    let (endpoint, sts_endpoint) = (lab.s3.endpoint(), lab.sts.endpoint());
    // The credential check without a bucket asks STS who the key is.
    let server = Server::start_with(&[
        ("KEYLEDGER_INGEST_S3_ENDPOINT", endpoint.as_str()),
        ("KEYLEDGER_INGEST_STS_ENDPOINT", sts_endpoint.as_str()),
    ]);
    let key = member(&server);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        format!(
            "[sso]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\nregion = us-east-1\n",
            session.access_key_id, session.secret_access_key, session.session_token
        ),
    )
    .unwrap();
    let config = home.path().join("config");
    let home_text = home.path().display().to_string();
    let env = [
        ("KEYLEDGER_API_KEY", key.as_str()),
        ("HOME", home_text.as_str()),
    ];
    let add = |extra: &[&str]| {
        let mut args = vec![
            "external",
            "add",
            "aws",
            "--label",
            "sso",
            "--aws-profile",
            "sso",
        ];
        args.extend_from_slice(extra);
        server.cli(&config, &args, "", &env)
    };

    // The profile does not say when the token expires: the CLI asks for it.
    let run = add(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--session-expires-at"), "{run:?}");
    let expires_at = session.expires_at.to_rfc3339();
    let run = add(&["--session-expires-at", &expires_at, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let stored = run.json();
    assert_eq!(stored["kind"], "session", "{stored}");
    for secret in [&session.secret_access_key, &session.session_token] {
        assert!(!run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()));
    }

    // Typed by hand: the secret, then the token, each on its own line of standard input.
    let run = server.cli(&config, &["external", "delete", "aws", "--yes"], "", &env);
    assert_eq!(run.code, 0, "{run:?}");
    let run = server.cli(
        &config,
        &[
            "external",
            "add",
            "aws",
            "--label",
            "typed",
            "--access-key-id",
            &session.access_key_id,
            "--region",
            "us-east-1",
            "--secret-stdin",
            "--session-token",
            "--session-expires-at",
            &expires_at,
        ],
        &format!("{}\n{}\n", session.secret_access_key, session.session_token),
        &env,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = server.cli(&config, &["external", "verify", "aws"], "", &env);
    assert_eq!(run.code, 0, "{run:?}");

    // Rotated to fresh temporary credentials, typed by hand, and then from the profile: the
    // same key, still a session, and it works.
    let fresh = lab.session();
    let fresh_expiry = fresh.expires_at.to_rfc3339();
    let run = server.cli(
        &config,
        &[
            "external",
            "rotate",
            "aws",
            "--access-key-id",
            &fresh.access_key_id,
            "--secret-stdin",
            "--session-token",
            "--session-expires-at",
            &fresh_expiry,
            "--json",
        ],
        &format!("{}\n{}\n", fresh.secret_access_key, fresh.session_token),
        &env,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let rotated = run.json();
    assert_eq!(rotated["kind"], "session", "{rotated}");
    assert_eq!(
        rotated["token_expires_at"],
        fresh_expiry.as_str(),
        "{rotated}"
    );
    for secret in [&fresh.secret_access_key, &fresh.session_token] {
        assert!(!run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()));
    }
    let run = server.cli(
        &config,
        &[
            "external",
            "rotate",
            "aws",
            "--aws-profile",
            "sso",
            "--session-expires-at",
            &expires_at,
        ],
        "",
        &env,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = server.cli(&config, &["external", "verify", "aws"], "", &env);
    assert_eq!(run.code, 0, "{run:?}");
    // A token flag on a DNAnexus key is a usage error, before anything is read.
    let run = server.cli(
        &config,
        &[
            "external",
            "rotate",
            "dnanexus",
            "--session-expires-at",
            &expires_at,
        ],
        "",
        &env,
    );
    assert_ne!(run.code, 0, "{run:?}");
}
