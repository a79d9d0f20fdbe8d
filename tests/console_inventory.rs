//! The console's key inventory in a real browser (`tests/console/inventory.mjs`, headless
//! Chromium, as `console.rs`): an administrator sees every key, filters, revokes one with a
//! reason; a member is turned away. `KEYLEDGER_UPDATE_SCREENSHOTS=1` writes its screenshots to
//! `docs/console/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::console::{assert_browser_passed, browser_script, install_browser, run_bounded};
use crate::support::{Server, developer_key};

#[test]
fn the_key_inventory_in_a_real_browser() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    install_browser(&repository);
    let server = Server::start();
    let mia = developer_key(&server, "mia");
    server.create_key(&mia, "laptop", "30d");
    let aws = json!({ "label": "lab bucket", "provider": "aws", "aws": { "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "eu-west-2" }, "duration": "30d" });
    let (status, body) = server.call("POST", "/v1/external-keys", Some(&mia), Some(&aws));
    assert_eq!(status, 201, "{body}");
    // A member without the inventory's permission: an auditor.
    server.create_user("aud", &["auditor"]);
    let (status, body) = server.call(
        "POST",
        "/v1/users/aud/api-keys",
        Some(&server.admin_key),
        Some(&json!({ "name": "console", "duration": "1d" })),
    );
    assert_eq!(status, 201, "{body}");
    let keys = json!({ "admin": server.admin_key, "member": body["key"] });
    let command = browser_script(
        &server,
        "inventory.mjs",
        &keys.to_string(),
        "console-inventory-screenshots",
    );
    let run = run_bounded(command, Duration::from_secs(180));
    assert_browser_passed(run, "inventory.mjs", "inventory e2e: passed", &server);
}
