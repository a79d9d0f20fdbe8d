//! The web console: static files built into the binary (`crates/api/console/`), served at `/`
//! and `/console/<file>` with a strict Content-Security-Policy. The console is plain ES modules
//! with no build step; it talks to the public REST API on the same origin and nothing else.
//!
//! Merge [`routes`] into the API router *after* the API's own middleware layer: that layer sets
//! `Content-Security-Policy: default-src 'none'` on every response it wraps, which would stop the
//! console's scripts and styles from loading.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;

/// The policy every console response carries: scripts, styles, images and requests from this
/// origin only, no inline script or style, never inside a frame, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One file of the console, as built into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The file name under `/console/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// A hash of the bytes, for the `ETag`.
    pub version: u64,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../console/", $name)),
            version: fnv1a(include_bytes!(concat!("../console/", $name))),
        }
    };
}

/// Every file of the console. `index.html` is also served at `/`.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("grid.js", "text/javascript; charset=utf-8"),
    asset!("state.js", "text/javascript; charset=utf-8"),
    asset!("keys-shared.js", "text/javascript; charset=utf-8"),
    asset!("internal-keys.js", "text/javascript; charset=utf-8"),
    asset!("external-keys.js", "text/javascript; charset=utf-8"),
    asset!("external-key-test.js", "text/javascript; charset=utf-8"),
    asset!("external-key-rotate.js", "text/javascript; charset=utf-8"),
    asset!("expiry-banner.js", "text/javascript; charset=utf-8"),
    asset!("aws-role.js", "text/javascript; charset=utf-8"),
    asset!("inventory.js", "text/javascript; charset=utf-8"),
    asset!("key-limits.js", "text/javascript; charset=utf-8"),
    asset!("poll.js", "text/javascript; charset=utf-8"),
    asset!("samples-shared.js", "text/javascript; charset=utf-8"),
    asset!("samples-preview.js", "text/javascript; charset=utf-8"),
    asset!("samples-import.js", "text/javascript; charset=utf-8"),
    asset!("samples-jobs.js", "text/javascript; charset=utf-8"),
    asset!("samples-job.js", "text/javascript; charset=utf-8"),
    asset!("samples-sources.js", "text/javascript; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("samples.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The console's routes: `GET /` (the page) and `GET /console/{file}` (its scripts, styles and
/// icon). They need no state and no authentication: the page holds no data until the user
/// signs in through the API.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(file))
}

/// The asset called `name`, if the console has one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

async fn index(headers: HeaderMap) -> Response {
    match asset("index.html") {
        Some(page) => serve(page, &headers),
        None => not_found(),
    }
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match asset(&name) {
        Some(found) => serve(found, &headers),
        None => not_found(),
    }
}

fn serve(asset: &'static Asset, request_headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.version);
    let unchanged = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.bytes.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Revalidate every time (cheap, thanks to the ETag): a new binary brings new files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(&mut response);
    response
}

fn not_found() -> Response {
    let mut response = ApiError::not_found(
        "there is no such console file; the console starts at `/`, the API under `/v1`",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(&mut response);
    response
}

fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    );
}

/// FNV-1a, 64 bits: evaluated at compile time for the `ETag`s. Not for security.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn get(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut request = Request::get(path);
            if let Some(tag) = if_none_match {
                request = request.header(header::IF_NONE_MATCH, tag);
            }
            let response = routes::<()>()
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec();
            (status, headers, body)
        })
    }

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.bytes).expect("console files are UTF-8")
    }

    #[test]
    fn every_module_a_script_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for rest in text(asset).split("from './").skip(1) {
                let module = &rest[..rest.find('\'').expect("an import ends with a quote")];
                assert!(
                    served.contains(&module),
                    "{} imports ./{module}, which ASSETS does not serve",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_the_security_headers() {
        let mut paths: Vec<(String, &Asset)> = ASSETS
            .iter()
            .map(|asset| (format!("/console/{}", asset.name), asset))
            .collect();
        paths.push(("/".to_owned(), asset("index.html").expect("index")));
        for (path, asset) in paths {
            let (status, headers, body) = get(&path, None);
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(body, asset.bytes, "{path}");
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            assert_eq!(header("content-type"), asset.content_type, "{path}");
            assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY);
            assert_eq!(header("x-content-type-options"), "nosniff");
            assert_eq!(header("referrer-policy"), "no-referrer");
            assert_eq!(header("x-frame-options"), "DENY");
            assert_eq!(header("cache-control"), "no-cache");
            assert!(header("etag").starts_with('"'), "{path}");
        }
    }

    #[test]
    fn a_known_etag_gets_304_and_an_unknown_file_404() {
        let (_, headers, _) = get("/console/app.js", None);
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .expect("etag")
            .to_owned();
        let (status, headers, body) = get("/console/app.js", Some(&etag));
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        let (status, _, body) = get("/console/app.js", Some("\"0\""));
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());

        for missing in [
            "/console/nope.js",
            "/console/..%2Fsrc%2Flib.rs",
            "/console/",
        ] {
            let (status, headers, body) = get(missing, None);
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
            if !body.is_empty() {
                let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
                assert_eq!(error["error"]["code"], "not_found");
                assert_eq!(
                    headers
                        .get(header::CONTENT_SECURITY_POLICY)
                        .and_then(|v| v.to_str().ok()),
                    Some(CONTENT_SECURITY_POLICY)
                );
            }
        }
    }

    /// Everything the page loads or imports is one of the built-in files: a file added to the
    /// folder but not to [`ASSETS`] (or a typo) fails here, not in a browser.
    #[test]
    fn every_reference_between_files_resolves_to_a_built_in_asset() {
        let mut references = Vec::new();
        for asset in ASSETS
            .iter()
            .filter(|a| a.content_type.starts_with("text/"))
        {
            let source = text(asset);
            for marker in ["\"/console/", "'./"] {
                let mut rest = source;
                while let Some(start) = rest.find(marker) {
                    let after = &rest[start + marker.len()..];
                    let end = after
                        .find(['"', '\''])
                        .expect("a quoted reference ends with a quote");
                    references.push((asset.name, after[..end].to_owned()));
                    rest = &after[end..];
                }
            }
        }
        assert!(references.len() >= 6, "{references:?}");
        for (from, name) in references {
            assert!(
                asset(&name).is_some(),
                "{from} refers to {name}, which is not in ASSETS"
            );
        }
    }

    /// ` onclick=`, ` onload=` and the like.
    fn has_event_handler_attribute(page: &str) -> bool {
        page.match_indices(" on").any(|(at, _)| {
            let name: String = page[at + 3..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            !name.is_empty() && page[at + 3 + name.len()..].starts_with('=')
        })
    }

    /// The CSP forbids inline scripts and styles and foreign origins; the files must not need them.
    #[test]
    fn no_inline_script_or_style_and_no_foreign_origin() {
        let page = text(asset("index.html").expect("index"));
        assert!(!page.contains("style="), "inline style in index.html");
        assert!(!page.contains("<style"), "style element in index.html");
        let scripts = page.matches("<script").count();
        let external = page
            .matches("<script type=\"module\" src=\"/console/")
            .count();
        assert_eq!(scripts, external, "every script is an external module");
        assert!(
            !has_event_handler_attribute(page),
            "no inline event handler attributes"
        );
        for asset in ASSETS
            .iter()
            .filter(|a| a.content_type.starts_with("text/"))
        {
            let source = text(asset).replace("http://www.w3.org/2000/svg", "");
            for forbidden in ["http://", "https://", "innerHTML", "eval(", "new Function"] {
                assert!(
                    !source.contains(forbidden),
                    "{} contains {forbidden}",
                    asset.name
                );
            }
            if asset.name.ends_with(".js") {
                assert!(
                    !source.contains("localStorage"),
                    "{}: keep nothing past the tab",
                    asset.name
                );
                assert!(
                    !source.contains(".style."),
                    "{}: styles belong in app.css",
                    asset.name
                );
            }
        }
    }
}
