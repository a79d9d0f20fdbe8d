//! The create dialog's limits in a real browser (`tests/console/key-limits.mjs`, headless
//! Chromium, as `console.rs`): a key limited to a scope and a network, a bad network refused at
//! its field, a honeytoken; the API then holds exactly what the page said.
//! `KEYLEDGER_UPDATE_SCREENSHOTS=1` writes its screenshots to `docs/console/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::console::{assert_browser_passed, browser_script, install_browser, run_bounded};
use crate::support::{Server, developer_key};

#[test]
fn key_limits_in_a_real_browser() {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    install_browser(&repository);
    let server = Server::start();
    let mia = developer_key(&server, "mia");
    let command = browser_script(
        &server,
        "key-limits.mjs",
        &mia,
        "console-key-limits-screenshots",
    );
    let run = run_bounded(command, Duration::from_secs(180));
    assert_browser_passed(run, "key-limits.mjs", "key limits e2e: passed", &server);
    let keys = server.get("/v1/api-keys", &mia)["keys"].clone();
    let named = |name: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|key| key["name"] == name)
            .unwrap_or_else(|| panic!("no key {name} in {keys}"))
            .clone()
    };
    let limited = named("ci deploy");
    assert_eq!(limited["scopes"], json!(["manage_user_api_keys"]));
    assert_eq!(limited["networks"], json!(["203.0.113.0/24"]));
    assert_eq!(named("decoy")["honeytoken"], true);
}
