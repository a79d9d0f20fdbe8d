//! Server configuration: `config/keyledger.toml` embedded as the default, merged with an optional
//! `--config FILE`, then `KEYLEDGER_*` environment variables.
//!
//! Sections this module does not know (added by other components, e.g. `[nats]`) are kept as
//! raw TOML and read with [`Config::section`]; environment overrides work for them too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use keyledger_domain::DurationPolicy;
use keyledger_log::Durability;
use keyledger_vault::VaultConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/keyledger.toml");

const ENV_PREFIX: &str = "KEYLEDGER_";

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub data_dir: PathBuf,
    pub master_key_file: String,
    pub http: HttpSection,
    pub keys: KeysSection,
    pub vault: VaultSection,
    pub log: LogSection,
    pub bootstrap: BootstrapSection,
    #[serde(default)]
    pub secret_scanning: SecretScanningSection,
    /// Sections of other components, as written.
    #[serde(flatten)]
    #[allow(
        dead_code,
        reason = "read by the components that add sections (nats, ingest, ...)"
    )]
    pub other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub addr: String,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub auth_failures_per_minute: u32,
    pub throttle_capacity: usize,
    /// Deprecated: `true` means `trusted_proxy_hops = 1`.
    pub trust_forwarded_for: bool,
    pub trusted_proxy_hops: usize,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub shutdown_grace_ms: u64,
}

impl HttpSection {
    /// `trusted_proxy_hops`, or 1 for the older `trust_forwarded_for = true`.
    pub fn proxy_hops(&self) -> usize {
        if self.trusted_proxy_hops == 0 && self.trust_forwarded_for {
            1
        } else {
            self.trusted_proxy_hops
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    pub max_days: u32,
    pub allow_never: bool,
    pub session_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    pub durability: String,
    pub usage_flush_interval_secs: u64,
    pub sweep_interval_secs: u64,
    pub expiry_warning_days: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: String,
    pub level: String,
}

/// `[secret_scanning]`: the intake of GitHub's secret scanning partner program.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretScanningSection {
    /// GitHub's public keys (PEM) by identifier, as `/meta/public_keys/secret_scanning` lists them.
    #[serde(default)]
    pub github_public_keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSection {
    pub admin_user: String,
}

impl Config {
    /// The default, merged with `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        Config::load_with_env(file, std::env::vars())
    }

    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table: toml::Table = toml::from_str(DEFAULT_CONFIG)
            .context("the embedded default configuration is invalid")?;
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read configuration file {}", file.display()))?;
            let overlay: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", file.display()))?;
            merge(&mut table, overlay);
        }
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        for (name, value) in env {
            apply_env(&mut table, &name, &value)?;
        }
        for (key, value) in &table {
            if !value.is_table() && !KNOWN_TOP_LEVEL.contains(&key.as_str()) {
                bail!(
                    "unknown configuration key `{key}` (known top-level keys: {})",
                    KNOWN_TOP_LEVEL.join(", ")
                );
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|err| anyhow!("invalid configuration: {err}"))?;
        config.check()?;
        Ok(config)
    }

    /// Another component's section, e.g. `config.section::<NatsConfig>("nats")`.
    #[allow(
        dead_code,
        reason = "for the components that add sections (nats, ingest, ...)"
    )]
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        match self.other.get(name) {
            None => Ok(None),
            Some(value) => value
                .clone()
                .try_into()
                .map(Some)
                .map_err(|err| anyhow!("invalid [{name}] configuration: {err}")),
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        if self.master_key_file.trim().is_empty() {
            self.data_dir.join("master.key")
        } else {
            PathBuf::from(&self.master_key_file)
        }
    }

    pub fn vault_config(&self) -> anyhow::Result<VaultConfig> {
        let durability = match self.vault.durability.as_str() {
            "full" => Durability::Full,
            "flush" => Durability::Flush,
            other => bail!("vault.durability: `{other}` is not a durability; use full or flush"),
        };
        Ok(VaultConfig {
            data_dir: self.data_dir.clone(),
            durability,
            duration_policy: DurationPolicy {
                max_days: self.keys.max_days,
                allow_never: self.keys.allow_never,
            },
            usage_flush_interval: Duration::from_secs(self.vault.usage_flush_interval_secs.max(1)),
            sweep_interval: Duration::from_secs(self.vault.sweep_interval_secs.max(1)),
            session_ttl: Duration::from_secs(self.keys.session_ttl_secs.max(1)),
            expiry_warning_days: self.vault.expiry_warning_days.clone(),
        })
    }

    pub fn api_config(&self) -> keyledger_api::ApiConfig {
        keyledger_api::ApiConfig {
            body_limit: self.http.body_limit_bytes,
            request_timeout: Duration::from_millis(self.http.request_timeout_ms.max(1)),
            auth_failure_limit: self.http.auth_failures_per_minute,
            auth_failure_window: Duration::from_secs(60),
            throttle_capacity: self.http.throttle_capacity,
            trusted_proxy_hops: self.http.proxy_hops(),
            header_read_timeout: Duration::from_millis(self.http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.http.idle_timeout_ms),
            max_connections: self.http.max_connections,
            shutdown_grace: Duration::from_millis(self.http.shutdown_grace_ms),
            github_scanning_keys: self.secret_scanning.github_public_keys.clone(),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "log.format: `{}` is not a log format; use text or json",
                self.log.format
            );
        }
        if self.http.body_limit_bytes < 1024 {
            bail!("http.body_limit_bytes: must be at least 1024");
        }
        if self.http.header_read_timeout_ms == 0 || self.http.idle_timeout_ms == 0 {
            bail!(
                "http.header_read_timeout_ms and http.idle_timeout_ms: must be at least 1 \
                 (a connection without them can be held open forever)"
            );
        }
        self.vault_config()?;
        for (identifier, pem) in &self.secret_scanning.github_public_keys {
            keyledger_api::parse_scanning_public_key(pem).map_err(|reason| {
                anyhow!("secret_scanning.github_public_keys.\"{identifier}\" {reason}")
            })?;
        }
        if self.vault.expiry_warning_days.contains(&0) {
            bail!(
                "vault.expiry_warning_days: list days before expiry (1 or more), e.g. [30, 7, 1]"
            );
        }
        keyledger_domain::UserId::parse(&self.bootstrap.admin_user)
            .map_err(|err| anyhow!("bootstrap.admin_user: {}", err.message))?;
        Ok(())
    }
}

const KNOWN_TOP_LEVEL: [&str; 2] = ["data_dir", "master_key_file"];

/// Variables that are not configuration keys (client settings and the master key itself).
const NOT_CONFIGURATION: [&str; 6] = [
    "KEYLEDGER_ENDPOINT",
    "KEYLEDGER_WORKER_KEY",
    "KEYLEDGER_API_KEY",
    "KEYLEDGER_CONFIG_DIR",
    "KEYLEDGER_MASTER_KEY",
    "KEYLEDGER_CONFIG",
];

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_section)), toml::Value::Table(overlay_section)) => {
                merge(base_section, overlay_section)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `KEYLEDGER_DATA_DIR` sets `data_dir`; `KEYLEDGER_HTTP_ADDR` sets `[http] addr`. A variable
/// naming a known section but an unknown key is an error (a typo would otherwise be ignored);
/// variables that name no section are left alone.
fn apply_env(table: &mut toml::Table, name: &str, raw: &str) -> anyhow::Result<()> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    if NOT_CONFIGURATION.contains(&name) || rest.is_empty() {
        return Ok(());
    }
    let key = rest.to_ascii_lowercase();
    if let Some(existing) = table.get(&key).filter(|v| !v.is_table()) {
        let value = typed(existing, raw).with_context(|| format!("environment variable {name}"))?;
        table.insert(key, value);
        return Ok(());
    }
    let Some((section, field)) = key.split_once('_') else {
        return Ok(());
    };
    let Some(toml::Value::Table(section_table)) = table.get_mut(section) else {
        return Ok(());
    };
    let value = match section_table.get(field) {
        Some(existing) => {
            typed(existing, raw).with_context(|| format!("environment variable {name}"))?
        }
        None => {
            let known: Vec<String> = section_table
                .keys()
                .map(|k| {
                    format!(
                        "{ENV_PREFIX}{}_{}",
                        section.to_uppercase(),
                        k.to_uppercase()
                    )
                })
                .collect();
            bail!(
                "environment variable {name} names no configuration key; [{section}] has {}",
                known.join(", ")
            );
        }
    };
    section_table.insert(field.to_owned(), value);
    Ok(())
}

/// Parses an environment value as the type of the default it replaces.
fn typed(existing: &toml::Value, raw: &str) -> anyhow::Result<toml::Value> {
    Ok(match existing {
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| anyhow!("`{raw}` is not a whole number"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| anyhow!("`{raw}` is not a number"))?,
        ),
        // A list of whole numbers, comma-separated (`30,7,1`); empty for none.
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse().map(toml::Value::Integer).map_err(|_| {
                        anyhow!("`{raw}` is not a comma-separated list of whole numbers")
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => bail!("`{raw}` is not true or false"),
            })
        }
        _ => toml::Value::String(raw.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> anyhow::Result<Config> {
        Config::load_with_env(
            None,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn expiry_warning_days_come_from_the_file_or_a_comma_separated_variable() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.vault_config().unwrap().expiry_warning_days,
            [30, 7, 1]
        );
        let config = load(&[("KEYLEDGER_VAULT_EXPIRY_WARNING_DAYS", "14, 2")]).unwrap();
        assert_eq!(config.vault.expiry_warning_days, [14, 2]);
        let config = load(&[("KEYLEDGER_VAULT_EXPIRY_WARNING_DAYS", "")]).unwrap();
        assert!(config.vault.expiry_warning_days.is_empty());
        let error = load(&[("KEYLEDGER_VAULT_EXPIRY_WARNING_DAYS", "30,soon")]).unwrap_err();
        assert!(
            format!("{error:#}").contains("comma-separated"),
            "{error:#}"
        );
        let error = load(&[("KEYLEDGER_VAULT_EXPIRY_WARNING_DAYS", "7,0")]).unwrap_err();
        assert!(error.to_string().contains("expiry_warning_days"), "{error}");
    }

    #[test]
    fn a_secret_scanning_key_that_is_not_p256_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyledger.toml");
        std::fs::write(
            &file,
            "[secret_scanning.github_public_keys]\n\"abc\" = \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"\n",
        )
        .unwrap();
        let error = Config::load_with_env(Some(&file), Vec::new()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("secret_scanning.github_public_keys.\"abc\""),
            "{error}"
        );
    }

    #[test]
    fn the_embedded_default_is_the_make_run_setup() {
        let config = load(&[]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.master_key_path(), PathBuf::from("data/master.key"));
        assert_eq!(config.http.addr, "127.0.0.1:8080");
        assert_eq!(config.http.body_limit_bytes, 64 * 1024);
        assert_eq!(config.log.format, "text");
    }

    #[test]
    fn environment_overrides() {
        let config = load(&[
            ("KEYLEDGER_DATA_DIR", "/tmp/kl"),
            ("KEYLEDGER_HTTP_ADDR", "127.0.0.1:0"),
            ("KEYLEDGER_LOG_FORMAT", "json"),
            ("KEYLEDGER_HTTP_AUTH_FAILURES_PER_MINUTE", "3"),
            ("KEYLEDGER_HTTP_TRUST_FORWARDED_FOR", "yes"),
            ("KEYLEDGER_MASTER_KEY_FILE", "/etc/kl.key"),
            ("KEYLEDGER_API_KEY", "ignored"),
            ("KEYLEDGER_ENDPOINT", "ignored"),
            ("OTHER", "ignored"),
        ])
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/tmp/kl"));
        assert_eq!(config.http.addr, "127.0.0.1:0");
        assert_eq!(config.log.format, "json");
        assert_eq!(config.http.auth_failures_per_minute, 3);
        assert!(config.http.trust_forwarded_for);
        assert_eq!(config.master_key_path(), PathBuf::from("/etc/kl.key"));
    }

    #[test]
    fn connection_limits_and_proxy_hops() {
        let config = load(&[]).unwrap().api_config();
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 0, "derived from the file limit");
        assert_eq!(config.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.trusted_proxy_hops, 0);
        let hops = |env: &[(&str, &str)]| load(env).unwrap().api_config().trusted_proxy_hops;
        // The older switch still works and means one proxy.
        assert_eq!(hops(&[("KEYLEDGER_HTTP_TRUST_FORWARDED_FOR", "true")]), 1);
        assert_eq!(hops(&[("KEYLEDGER_HTTP_TRUSTED_PROXY_HOPS", "2")]), 2);
        assert_eq!(
            hops(&[
                ("KEYLEDGER_HTTP_TRUST_FORWARDED_FOR", "true"),
                ("KEYLEDGER_HTTP_TRUSTED_PROXY_HOPS", "3")
            ]),
            3
        );
        let message = format!(
            "{:#}",
            load(&[("KEYLEDGER_HTTP_IDLE_TIMEOUT_MS", "0")]).unwrap_err()
        );
        assert!(message.contains("idle_timeout_ms"), "{message}");
    }

    #[test]
    fn mistakes_are_explained() {
        let message = |env: &[(&str, &str)]| format!("{:#}", load(env).unwrap_err());
        assert!(message(&[("KEYLEDGER_HTTP_ADR", "x")]).contains("KEYLEDGER_HTTP_ADDR"));
        assert!(
            message(&[("KEYLEDGER_HTTP_BODY_LIMIT_BYTES", "lots")]).contains("not a whole number")
        );
        assert!(message(&[("KEYLEDGER_LOG_FORMAT", "xml")]).contains("use text or json"));
        assert!(message(&[("KEYLEDGER_VAULT_DURABILITY", "maybe")]).contains("full or flush"));
    }

    #[test]
    fn a_file_is_merged_over_the_default_and_other_sections_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[http]\naddr = \"0.0.0.0:9000\"\n\n[nats]\nurl = \"nats://x\"\n",
        )
        .unwrap();
        let config = Config::load_with_env(
            Some(&path),
            [("KEYLEDGER_NATS_URL".to_owned(), "nats://y".to_owned())],
        )
        .unwrap();
        assert_eq!(config.http.addr, "0.0.0.0:9000");
        assert_eq!(config.http.body_limit_bytes, 65536);
        #[derive(Deserialize)]
        struct Nats {
            url: String,
        }
        assert_eq!(
            config.section::<Nats>("nats").unwrap().unwrap().url,
            "nats://y"
        );
    }
}
