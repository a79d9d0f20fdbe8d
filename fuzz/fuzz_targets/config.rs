//! The configuration file as `keyledger serve --config FILE` reads it, merged over the embedded
//! default, then `KEYLEDGER_*` variables. The input is the file's text, then optionally a NUL
//! byte and `NAME=value` lines for the environment. `crates/cli/src/config.rs` is compiled in
//! as it is (it lives in the binary crate).
#![no_main]

#[allow(dead_code, reason = "the binary uses what this target does not")]
#[path = "../../crates/cli/src/config.rs"]
mod config;

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One file per process, rewritten for every input. In memory (`/dev/shm`) where there is
/// one: rewriting a file on ext4 waits for the disk (about 4 ms), 15 times the parse itself.
fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("keyledger-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&byte| byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let path = config_path();
    let written = std::fs::File::create(path).and_then(|mut out| out.write_all(file));
    if written.is_err() {
        return;
    }
    if let Ok(config) = config::Config::load_with_env(Some(path), env) {
        let _ = config.vault_config();
        let _ = config.api_config();
        let _ = config.master_key_path();
    }
});
