//! HTTP key verification on loopback, against a bare axum handler in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_crypto::MasterKey;
use keyledger_domain::{Action, Actor, FromTrusted, KeyDuration, KeyName, RoleName, UserId};
use keyledger_vault::{SystemClock, Vault, VaultConfig};

use crate::report::{Report, cpu_seconds, human, rate, ratio};

const CONNECTIONS: usize = 64;

pub fn run(report: &mut Report, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let window = Duration::from_secs_f64(if report.quick { 2.0 } else { 5.0 });
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let master = MasterKey::generate(&ring::rand::SystemRandom::new())?;
        let config = VaultConfig { data_dir: dir.path().to_path_buf(), ..VaultConfig::default() };
        let vault = Vault::open(config, &master, Arc::new(SystemClock))?;
        let admin = vault.bootstrap(UserId::from_trusted("admin".into())).await?;
        let admin_actor = Actor::User { user: UserId::from_trusted("admin".into()), key: Some(admin.id.clone()) };
        vault
            .run(
                admin_actor.clone(),
                Action::CreateUser {
                    user: UserId::from_trusted("gateway".into()),
                    display_name: None,
                    roles: vec![RoleName::from_trusted("service".into())],
                },
            )
            .await?;
        let service = vault
            .issue_api_key(admin_actor.clone(), UserId::from_trusted("gateway".into()), KeyName::from_trusted("gw".into()), KeyDuration::Days(1), None)
            .await?;
        let mut keys = Vec::new();
        for n in 0..256 {
            let key = vault.create_api_key(admin_actor.clone(), KeyName::from_trusted(format!("k{n}")), KeyDuration::Days(1), None).await?;
            keys.push(key.secret.expose().to_owned());
        }
        let api_config = keyledger_api::ApiConfig { auth_failure_limit: 0, ..keyledger_api::ApiConfig::default() };
        let api = keyledger_api::router(keyledger_api::ApiState::new(vault.clone(), api_config.clone()));
        let bare = axum::Router::new().route("/v1/keys/verify", axum::routing::post(|| async { axum::http::StatusCode::OK }));

        let diagnostics = std::env::var_os("KEYLEDGER_BENCH_INPROC").is_some();
        if diagnostics {
            let bare_ns = in_process(bare.clone(), service.secret.expose(), &keys).await?;
            let api_ns = in_process(api.clone(), service.secret.expose(), &keys).await?;
            eprintln!("in-process server CPU per request: bare {bare_ns:.0} ns, api {api_ns:.0} ns");
            let cpu = cpu_seconds();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let (api, key, keys) = (api.clone(), service.secret.expose().to_owned(), keys.clone());
                tasks.push(tokio::spawn(async move { in_process_rounds(api, &key, &keys, 20_000).await }));
            }
            for task in tasks {
                task.await??;
            }
            let wall = started.elapsed().as_secs_f64();
            eprintln!("in-process, 64 concurrent tasks: {:.0} requests/s, {:.0} ns CPU per request", 1_280_000.0 / wall, (cpu_seconds() - cpu) * 1e9 / 1_280_000.0);
            if std::env::var("KEYLEDGER_BENCH_INPROC").as_deref() == Ok("only") {
                return anyhow::Ok(());
            }
            // Bare handlers that answer with the API's headers, or its body.
            for (what, with_headers, with_body) in [("headers+body", true, true), ("headers", true, false), ("body", false, true)] {
                let copy = axum::Router::new().route("/v1/keys/verify", axum::routing::post(move || async move {
                    let mut response = if with_body {
                        axum::response::IntoResponse::into_response(axum::Json(serde_json::json!({"valid":true,"key_id":"key_0123456789abcdef","owner":"admin","permissions":["manage_user_api_keys","verify_api_keys","import_organization_samples","manage_organization_users","read_audit_log"],"expires_at":"2026-12-26T19:12:12.123Z"})))
                    } else {
                        axum::response::IntoResponse::into_response(axum::http::StatusCode::OK)
                    };
                    if with_headers {
                        let headers = response.headers_mut();
                        for (name, value) in [("x-content-type-options","nosniff"),("cache-control","no-store"),("x-frame-options","DENY"),("content-security-policy","default-src 'none'; frame-ancestors 'none'"),("x-request-id","0123456789abcdef")] {
                            headers.insert(name, axum::http::HeaderValue::from_static(value));
                        }
                    }
                    response
                }));
                let copy_addr = serve(copy).await?;
                let copy_result = load(copy_addr, service.secret.expose(), &keys, window).await?;
                eprintln!("bare with the API's {what}: {:.0}/s", copy_result.rate);
            }
        }
        let bare_addr = serve(bare).await?;
        // The API through the server the binary runs (timeouts, connection cap, watchdogs).
        let api_addr = serve_api(keyledger_api::ApiState::new(vault.clone(), api_config.clone())).await?;
        let cpu = cpu_seconds();
        let bare_result = load(bare_addr, service.secret.expose(), &keys, window).await?;
        let cpu_bare = cpu_seconds() - cpu;
        let api_result = load(api_addr, service.secret.expose(), &keys, window).await?;
        let cpu_api = cpu_seconds() - cpu - cpu_bare;
        if diagnostics {
            eprintln!("cpu: bare {cpu_bare:.2} s, api {cpu_api:.2} s in {window:?} each");
        }
        report.section(
            &format!("HTTP key verification, {CONNECTIONS} concurrent connections on loopback (client in the same process)"),
            &["server", "requests/s", "p50", "p99", "ratio vs bare axum", "goal"],
        );
        report.row(&["bare axum handler returning 200".into(), human(bare_result.rate), ms(bare_result.p50), ms(bare_result.p99), "1.00".into(), String::new()]);
        report.row(&[
            "`POST /v1/keys/verify` through the production server (caller key checked, then the presented key)".into(),
            human(api_result.rate),
            ms(api_result.p50),
            ms(api_result.p99),
            ratio(api_result.rate, bare_result.rate),
            "≥ 0.7".into(),
        ]);
        anyhow::Ok(())
    })
}

struct LoadResult {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn serve(router: axum::Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    Ok(addr)
}

async fn serve_api(state: keyledger_api::ApiState) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(keyledger_api::serve(
        listener,
        state,
        std::future::pending(),
    ));
    Ok(addr)
}

async fn load(
    addr: std::net::SocketAddr,
    service_key: &str,
    keys: &[String],
    window: Duration,
) -> anyhow::Result<LoadResult> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let url = format!("http://{addr}/v1/keys/verify");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let (client, url, service_key) = (client.clone(), url.clone(), service_key.to_owned());
        let keys: Vec<String> = keys
            .iter()
            .skip(worker % keys.len())
            .take(8)
            .cloned()
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while started.elapsed() < window {
                let body = format!("{{\"key\":\"{}\"}}", keys[n % keys.len()]);
                n += 1;
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("authorization", format!("Bearer {service_key}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                if let Ok(response) = response {
                    let ok = response.status().is_success();
                    let _ = response.bytes().await;
                    if ok {
                        latencies.push(sent.elapsed());
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(!latencies.is_empty(), "no request succeeded against {url}");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(LoadResult {
        rate: rate(latencies.len() as f64, elapsed),
        p50: at(0.50),
        p99: at(0.99),
    })
}

/// Diagnostics: the server's own time per request, without sockets or a client.
async fn in_process(
    router: axum::Router,
    service_key: &str,
    keys: &[String],
) -> anyhow::Result<f64> {
    let rounds = 1_000_000;
    let started = Instant::now();
    in_process_rounds(router, service_key, keys, rounds).await?;
    Ok(started.elapsed().as_nanos() as f64 / rounds as f64)
}

async fn in_process_rounds(
    router: axum::Router,
    service_key: &str,
    keys: &[String],
    rounds: usize,
) -> anyhow::Result<()> {
    use tower::ServiceExt;
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    for n in 0..rounds {
        let body = format!("{{\"key\":\"{}\"}}", keys[n % keys.len()]);
        let mut request = axum::http::Request::post("/v1/keys/verify")
            .header("authorization", format!("Bearer {service_key}"))
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(axum::body::Body::from(body))?;
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let response = router.clone().oneshot(request).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    }
    Ok(())
}
