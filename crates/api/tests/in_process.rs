use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use keyledger_api::{ApiConfig, ApiState, CheckOutcome, CredentialChecker, router};
use keyledger_crypto::MasterKey;
use keyledger_domain::{MILLIS_PER_DAY, Timestamp, UserId};
use keyledger_vault::{Lease, ManualClock, Vault, VaultConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) state: ApiState,
    pub(crate) admin: String,
}

impl Harness {
    pub(crate) async fn new() -> Harness {
        Harness::with(|state| state).await
    }

    async fn with(configure: impl FnOnce(ApiState) -> ApiState) -> Harness {
        Harness::with_config(ApiConfig::default(), configure).await
    }

    /// A harness whose API runs with `api_config`.
    pub(crate) async fn with_config(
        api_config: ApiConfig,
        configure: impl FnOnce(ApiState) -> ApiState,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)));
        let master = MasterKey::generate(&ring::rand::SystemRandom::new()).unwrap();
        let config = VaultConfig {
            data_dir: dir.path().to_path_buf(),
            ..VaultConfig::default()
        };
        let vault = Vault::open(config, &master, clock.clone()).unwrap();
        let admin = vault
            .bootstrap(UserId::parse("admin").unwrap())
            .await
            .unwrap()
            .secret
            .expose()
            .to_owned();
        let state = configure(ApiState::new(vault, api_config));
        Harness {
            _dir: dir,
            clock,
            state,
            admin,
        }
    }

    pub(crate) fn app(&self) -> Router {
        router(self.state.clone())
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.admin, method, path, body).await
    }

    pub(crate) async fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"));
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .app()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn keys_expire_when_the_clock_passes_their_expiry() {
    let harness = Harness::new().await;
    let (status, created) = harness
        .call(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "short", "duration": "1d" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = created["key"].as_str().unwrap().to_owned();
    let me = |key: String| {
        let app = harness.app();
        async move {
            let request = Request::get("/v1/me")
                .header("x-api-key", key)
                .body(Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    assert_eq!(me(key.clone()).await.0, StatusCode::OK);
    harness.clock.advance_millis(MILLIS_PER_DAY + 1);
    let (status, body) = me(key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "key expired");
    let (_, list) = harness.call("GET", "/v1/api-keys", None).await;
    let statuses: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"expired"), "{list}");
    assert_eq!(harness.state.metrics().refusals("expired"), 1);
}

#[tokio::test]
async fn verify_is_501_without_a_connector() {
    let harness = Harness::new().await;
    let (_, stored) = harness
        .call("POST", "/v1/external-keys", Some(json!({ "label": "dx", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop" }, "duration": "7d" })))
        .await;
    let (status, body) = harness
        .call(
            "POST",
            &format!(
                "/v1/external-keys/{}/verify",
                stored["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no connector")
    );
}

/// A checker that accepts tokens ending in "ok" and says so without the token.
struct FakeChecker;

impl CredentialChecker for FakeChecker {
    fn check<'a>(
        &'a self,
        lease: &'a Lease,
        _scope: Option<&'a keyledger_domain::Selection>,
    ) -> Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>> {
        Box::pin(async move {
            match &lease.credential {
                keyledger_vault::ExternalCredential::Dnanexus { token } => CheckOutcome {
                    ok: token.expose().ends_with("ok"),
                    detail: "whoami answered".to_owned(),
                    kind: None,
                    capabilities: Vec::new(),
                },
                keyledger_vault::ExternalCredential::Aws { .. }
                | keyledger_vault::ExternalCredential::AwsRole { .. } => CheckOutcome {
                    ok: false,
                    detail: "no bucket".to_owned(),
                    kind: Some(keyledger_domain::FailureKind::ProviderRejected),
                    capabilities: Vec::new(),
                },
            }
        })
    }
}

#[tokio::test]
async fn verify_records_what_the_connector_says() {
    let harness = Harness::with(|state| state.with_credential_checker(Arc::new(FakeChecker))).await;
    let (_, stored) = harness
        .call("POST", "/v1/external-keys", Some(json!({ "label": "dx", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop-ok" }, "duration": "7d" })))
        .await;
    let id = stored["id"].as_str().unwrap();
    let (status, body) = harness
        .call("POST", &format!("/v1/external-keys/{id}/verify"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["last_verified_ok"].as_bool(),
            body["last_verified_detail"].as_str()
        ),
        (Some(true), Some("whoami answered"))
    );
    let (status, _) = harness
        .call(
            "POST",
            "/v1/external-keys/ext_0000000000000000/verify",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The test's body is optional; when given it must fit the key's provider, and is checked
/// before anything is leased or asked of the provider.
#[tokio::test]
async fn a_verify_body_must_fit_the_key() {
    let harness = Harness::with(|state| state.with_credential_checker(Arc::new(FakeChecker))).await;
    let (_, stored) = harness
        .call("POST", "/v1/external-keys", Some(json!({ "label": "dx", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop-ok" }, "duration": "7d" })))
        .await;
    let path = format!(
        "/v1/external-keys/{}/verify",
        stored["id"].as_str().unwrap()
    );
    for (body, status, words) in [
        (json!({}), StatusCode::OK, ""),
        (json!({ "project": "rnaseq" }), StatusCode::OK, ""),
        (
            json!({ "bucket": "lab" }),
            StatusCode::BAD_REQUEST,
            "bucket",
        ),
        (
            json!({ "prefix": "runs/" }),
            StatusCode::BAD_REQUEST,
            "prefix",
        ),
        (json!({ "project": "" }), StatusCode::BAD_REQUEST, "project"),
        (
            json!({ "folder": "/" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "folder",
        ),
    ] {
        let (answered, answer) = harness.call("POST", &path, Some(body.clone())).await;
        assert_eq!(answered, status, "{body}: {answer}");
        assert!(answer.to_string().contains(words), "{body}: {answer}");
    }
    let request = Request::post(&path)
        .header("authorization", format!("Bearer {}", harness.admin))
        .header("content-type", "text/plain")
        .body(Body::from("bucket=lab"))
        .unwrap();
    let response = harness.app().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused() {
    let harness = Harness::new().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 8 * 1024])).collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let request = Request::post("/v1/api-keys")
        .header("authorization", format!("Bearer {}", harness.admin))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = harness.app().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(
        body["error"]["message"], "the request body is larger than the server accepts (64 KiB)",
        "the message names the configured limit"
    );
}

/// Ownership is judged before the route runs: another user's external key is reported as
/// unknown (404), is never leased, and its owner can still test it.
#[tokio::test]
async fn another_users_external_key_is_not_found() {
    let harness = Harness::with(|state| state.with_credential_checker(Arc::new(FakeChecker))).await;
    let (_, stored) = harness
        .call("POST", "/v1/external-keys", Some(json!({ "label": "dx", "provider": "dnanexus", "dnanexus": { "token": "dxTokenAbcdefghijklmnop-ok" }, "duration": "7d" })))
        .await;
    let id = stored["id"].as_str().unwrap().to_owned();
    let (status, _) = harness
        .call(
            "POST",
            "/v1/users",
            Some(json!({ "user": "mia", "roles": ["member"] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, issued) = harness
        .call(
            "POST",
            "/v1/users/mia/api-keys",
            Some(json!({ "name": "laptop", "duration": "7d" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let mia = issued["key"].as_str().unwrap().to_owned();
    let path = format!("/v1/external-keys/{id}/verify");
    let (status, body) = harness.call_as(&mia, "POST", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = harness
        .call_as(&mia, "POST", "/v1/external-keys/not-an-id/verify", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = harness.call("POST", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["last_verified_ok"], true);
}

#[test]
fn the_openapi_document_covers_every_route() {
    let document: Value = serde_json::from_str(&keyledger_api::openapi_json()).unwrap();
    let mut operations: Vec<String> = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations.sort();
    let mut routes: Vec<String> = keyledger_api::route_table()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    routes.sort();
    assert_eq!(operations, routes);
    insta::assert_json_snapshot!("openapi_operations", operations);
}
