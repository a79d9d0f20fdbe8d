//! Canary secrets: after creation, no response, server log line, metric or data-directory byte
//! contains them.

use serde_json::json;

use crate::support::{Server, files_containing};

const AWS_CANARY: &str = "CANARYawsSECRETdoNotLeak/0123456789+ABCD";
const DX_CANARY: &str = "CANARYdnanexusTOKENdoNotLeak0123456789";

#[test]
fn no_secret_leaks_after_creation() {
    assert_eq!(AWS_CANARY.len(), 40);
    let mut server = Server::start_with(&[
        ("KEYLEDGER_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug,sled=info"),
    ]);
    let admin = server.admin_key.clone();

    let (status, created) = server.call(
        "POST",
        "/v1/api-keys",
        Some(&admin),
        Some(&json!({ "name": "canary", "duration": "7d" })),
    );
    assert_eq!(status, 201);
    let key_canary = created["key"].as_str().unwrap().to_owned();
    let aws = json!({ "label": "canary", "provider": "aws", "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": AWS_CANARY, "region": "us-east-1" }, "duration": "30d" });
    let (status, aws_key) = server.call("POST", "/v1/external-keys", Some(&admin), Some(&aws));
    assert_eq!(status, 201);
    let dx = json!({ "label": "canary", "provider": "dnanexus", "dnanexus": { "token": DX_CANARY }, "duration": "30d" });
    let (status, dx_key) = server.call("POST", "/v1/external-keys", Some(&admin), Some(&dx));
    assert_eq!(status, 201);
    let canaries = [AWS_CANARY, DX_CANARY, key_canary.as_str()];

    // Everything a client can see afterwards.
    let mut seen = vec![aws_key.to_string(), dx_key.to_string()];
    let mut look =
        |method: &str, path: &str, key: Option<&str>, body: Option<serde_json::Value>| {
            let response = server.send(method, path, key, body.as_ref());
            seen.push(format!("{:?}", response.headers()));
            seen.push(response.text().unwrap());
        };
    look("GET", "/v1/api-keys", Some(&admin), None);
    look("GET", "/v1/external-keys", Some(&admin), None);
    look("GET", "/v1/me", Some(&key_canary), None);
    look(
        "POST",
        "/v1/keys/verify",
        Some(&admin),
        Some(json!({ "key": key_canary })),
    );
    look(
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({ "key": key_canary })),
    );
    look("POST", "/v1/external-keys", Some(&admin), Some(aws.clone()));
    look(
        "POST",
        "/v1/external-keys",
        Some(&admin),
        Some(
            json!({ "label": "x", "provider": "aws", "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": AWS_CANARY, "region": "nowhere" }, "duration": "1d" }),
        ),
    );
    look(
        "POST",
        "/v1/external-keys",
        Some(&admin),
        Some(
            json!({ "label": "x", "provider": "dnanexus", "dnanexus": { "token": DX_CANARY, "extra": 1 }, "duration": "1d" }),
        ),
    );
    look(
        "GET",
        "/v1/me",
        Some(&format!("{}x", &key_canary[..40])),
        None,
    );
    look("GET", "/metrics", None, None);
    look("GET", "/readyz", None, None);
    look("GET", "/openapi.json", None, None);
    for text in &seen {
        for canary in canaries {
            assert!(
                !text.contains(canary),
                "a response after creation contains a secret: {text}"
            );
        }
    }

    // Delete the AWS key: its data key is destroyed (crypto-shredding).
    let aws_id = aws_key["id"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/v1/external-keys/{aws_id}"),
                Some(&admin),
                None
            )
            .0,
        200
    );

    server.stop();
    let output = server.output();
    assert!(
        output.contains("\"request_id\""),
        "JSON logs with request ids were expected:\n{output}"
    );
    assert!(output.contains("\"key_id\""), "spans carry the key id");
    for canary in canaries {
        assert!(
            !output.contains(canary),
            "the server's output contains a secret"
        );
    }
    let master_key = std::fs::read_to_string(server.data_dir().join("master.key")).unwrap();
    assert!(
        !output.contains(master_key.trim()),
        "the server's output contains the master key"
    );
    let needles: Vec<&[u8]> = canaries.iter().map(|c| c.as_bytes()).collect();
    let leaks = files_containing(&server.data_dir().join("log"), &needles);
    assert!(leaks.is_empty(), "{leaks:?}");

    // Offline, with the master key: the deleted credential can no longer be decrypted, the kept
    // one can.
    let master = keyledger_vault::read_master_key(&server.data_dir().join("master.key")).unwrap();
    let config = keyledger_vault::VaultConfig {
        data_dir: server.data_dir(),
        ..Default::default()
    };
    let vault = keyledger_vault::Vault::open(
        config,
        &master,
        std::sync::Arc::new(keyledger_vault::SystemClock),
    )
    .unwrap();
    let aws_id = keyledger_domain::ExternalKeyId::parse(&aws_id).unwrap();
    assert!(vault.lease_external_key(&aws_id).is_err());
    let dx_id = keyledger_domain::ExternalKeyId::parse(dx_key["id"].as_str().unwrap()).unwrap();
    match vault.lease_external_key(&dx_id).unwrap().credential {
        keyledger_vault::ExternalCredential::Dnanexus { token } => {
            assert_eq!(token.expose(), DX_CANARY)
        }
        other => panic!("unexpected credential {other:?}"),
    }
    let _ = vault.log().head();
    let deleted = vault.log().data_key(aws_id.as_str()).unwrap();
    assert!(deleted.is_none(), "the deleted key's data key is gone");
}
