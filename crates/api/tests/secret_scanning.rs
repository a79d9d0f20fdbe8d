//! The secret-scanning intake with a signed sample payload in GitHub's partner format: a P-256
//! key pair made in the test signs the raw body; the server verifies it against the configured
//! public key, revokes the real key and labels each token; a bad signature revokes nothing.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use keyledger_api::ApiConfig;
use keyledger_domain::Event;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::in_process::Harness;

const IDENTIFIER: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";
const PATH: &str = "/v1/secret-scanning/github";

/// The DER of a P-256 SubjectPublicKeyInfo before its 65-byte point.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

struct Signer {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer { pair, rng }
    }

    /// The public key as GitHub publishes it: PEM of the SubjectPublicKeyInfo.
    fn public_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    /// Base64 of the DER signature over `body`.
    fn sign(&self, body: &[u8]) -> String {
        let signature = self.pair.sign(&self.rng, body).unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }
}

async fn harness(signer: &Signer) -> Harness {
    let mut config = ApiConfig::default();
    config
        .github_scanning_keys
        .insert(IDENTIFIER.to_owned(), signer.public_pem());
    Harness::with_config(config, |state| state).await
}

/// POSTs `body` as GitHub does, with the given identifier and signature headers.
async fn alert(
    harness: &Harness,
    body: &str,
    identifier: Option<&str>,
    signature: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::post(PATH).header("content-type", "application/json");
    if let Some(identifier) = identifier {
        request = request.header("Github-Public-Key-Identifier", identifier);
    }
    if let Some(signature) = signature {
        request = request.header("Github-Public-Key-Signature", signature);
    }
    let response = harness
        .app()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn leaked_events(harness: &Harness) -> Vec<Event> {
    let vault = harness.state.vault();
    vault
        .log()
        .read_from(1)
        .map(|envelope| keyledger_vault::decode_event(&envelope.unwrap().body).unwrap())
        .filter(|event| matches!(event, Event::ApiKeyLeaked { .. }))
        .collect()
}

#[tokio::test]
async fn a_signed_report_revokes_the_real_key_and_labels_every_token() {
    let signer = Signer::new();
    let harness = harness(&signer).await;
    let (status, created) = harness
        .call(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "pushed by mistake", "duration": "30d" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let leaked = created["key"].as_str().unwrap().to_owned();
    let url = "https://github.com/octocat/Hello-World/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt";
    let body = json!([
        { "token": leaked, "type": "keyledger_api_key", "url": url, "source": "content" },
        { "token": "kl_thisIsNotAKeyOfThisVault000000000000", "type": "keyledger_api_key",
          "url": url, "source": "commit" },
    ])
    .to_string();

    // Refused without a word of the body being acted on: tampered body, a signature by another
    // key, an unknown identifier, no headers.
    let tampered = body.replace("content", "contents");
    let stranger = Signer::new();
    for (identifier, signature, sent) in [
        (
            Some(IDENTIFIER),
            Some(signer.sign(body.as_bytes())),
            &tampered,
        ),
        (
            Some(IDENTIFIER),
            Some(stranger.sign(body.as_bytes())),
            &body,
        ),
        (Some("0000"), Some(signer.sign(body.as_bytes())), &body),
        (Some(IDENTIFIER), Some("not base64!".to_owned()), &body),
        (None, None, &body),
    ] {
        let (status, answer) = alert(&harness, sent, identifier, signature.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["error"]["code"], "unauthenticated", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Github-Public-Key")
                || answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("signature"),
            "{answer}"
        );
    }
    assert!(leaked_events(&harness).is_empty(), "nothing may be revoked");
    let (status, _) = harness.call_as(&leaked, "GET", "/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "the key still works");

    // Signed: the real key is revoked at once, the stranger is a false positive.
    let signature = signer.sign(body.as_bytes());
    let (status, answer) = alert(&harness, &body, Some(IDENTIFIER), Some(&signature)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!([
            { "token_raw": leaked, "token_type": "keyledger_api_key", "label": "true_positive" },
            { "token_raw": "kl_thisIsNotAKeyOfThisVault000000000000",
              "token_type": "keyledger_api_key", "label": "false_positive" },
        ])
    );
    let (status, refused) = harness.call_as(&leaked, "GET", "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    match &leaked_events(&harness)[..] {
        [
            Event::ApiKeyLeaked {
                key,
                url: at,
                source,
                ..
            },
        ] => {
            assert_eq!(key.as_str(), created["id"].as_str().unwrap());
            assert_eq!(at, url);
            assert_eq!(source, "content");
        }
        other => panic!("expected one ApiKeyLeaked, got {other:?}"),
    }

    // GitHub's retry of the same delivery: the same answer, nothing more revoked.
    let (status, again) = alert(&harness, &body, Some(IDENTIFIER), Some(&signature)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, answer);
    assert_eq!(leaked_events(&harness).len(), 1);

    // A signed body that is not the partner format is a 4xx naming the problem.
    let junk = "{\"token\": 1}";
    let (status, answer) = alert(
        &harness,
        junk,
        Some(IDENTIFIER),
        Some(&signer.sign(junk.as_bytes())),
    )
    .await;
    assert!(status.is_client_error(), "{status} {answer}");
}

#[tokio::test]
async fn without_configured_keys_every_alert_is_refused() {
    let harness = Harness::new().await;
    let body = "[]";
    let signer = Signer::new();
    let (status, answer) = alert(
        &harness,
        body,
        Some(IDENTIFIER),
        Some(&signer.sign(body.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
}

#[test]
fn configured_keys_are_checked() {
    let signer = Signer::new();
    assert_eq!(
        keyledger_api::parse_scanning_public_key(&signer.public_pem())
            .unwrap()
            .len(),
        65
    );
    assert!(
        keyledger_api::parse_scanning_public_key(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )
        .is_err()
    );
    assert!(keyledger_api::parse_scanning_public_key("not pem at all %%").is_err());
}
