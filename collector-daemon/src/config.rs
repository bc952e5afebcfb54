//! The collector's configuration: one TOML file (`collector.example.toml` documents every
//! key), overridden key by key by environment variables named
//! `WARDSEAL_COLLECTOR__<SECTION>__<KEY>` (for example
//! `WARDSEAL_COLLECTOR__SPOOL__PATH=/var/lib/wardseal/spool.db`).
//!
//! [`load_config`] is the one loader, used at start-up, by `check-config` and on SIGHUP.
//! It refuses private key and PIN files that group or others can read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wardseal_core::identity::SubjectId;

use crate::client::Endpoint;
use crate::error::ConfigError;

/// The environment variable prefix of overrides.
pub const ENV_PREFIX: &str = "WARDSEAL_COLLECTOR__";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who and where the collector is.
    pub collector: CollectorSection,
    /// The TLS front door.
    pub tls: TlsSection,
    /// The durable spool.
    pub spool: SpoolSection,
    /// Ingest checks.
    #[serde(default)]
    pub ingest: IngestSection,
    /// Batching.
    #[serde(default)]
    pub batch: BatchSection,
    /// Storage (delivery and assignments).
    pub storage: StorageSection,
    /// The chain (rules, registry, anchors).
    pub ledger: LedgerSection,
    /// Patient cards held by configuration (bedside tokens).
    #[serde(default)]
    pub cards: Vec<CardSection>,
    /// Technical alerts.
    #[serde(default)]
    pub alerts: AlertsSection,
}

/// `[alerts]`: when the collector raises technical alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// A device that sent nothing for this many seconds is silent.
    #[serde(default = "default_silent_after")]
    pub silent_after_secs: u64,
    /// Per data type (its name, e.g. `heart_rate`), a different silence bound.
    #[serde(default)]
    pub silent_after_secs_by_type: std::collections::BTreeMap<String, u64>,
    /// A patient's readings waiting this many seconds for an absent card raise an alert.
    #[serde(default = "default_card_absent_after")]
    pub card_absent_after_secs: u64,
    /// The spool is filling when it holds more than this fraction of `spool.max_bytes`.
    #[serde(default = "default_spool_filling")]
    pub spool_filling_fraction: f64,
    /// How often the conditions are checked, milliseconds.
    #[serde(default = "default_alert_check_ms")]
    pub check_interval_ms: u64,
}

fn default_silent_after() -> u64 {
    300
}

fn default_card_absent_after() -> u64 {
    60
}

fn default_spool_filling() -> f64 {
    0.8
}

fn default_alert_check_ms() -> u64 {
    1_000
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            silent_after_secs: default_silent_after(),
            silent_after_secs_by_type: std::collections::BTreeMap::new(),
            card_absent_after_secs: default_card_absent_after(),
            spool_filling_fraction: default_spool_filling(),
            check_interval_ms: default_alert_check_ms(),
        }
    }
}

/// `[collector]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// The ward id (the collector certificate's subject id; names batches and the
    /// decision log).
    pub ward: SubjectId,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds in-flight requests get to finish at shutdown.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// Listen backlog: connections the kernel queues before the accept loop takes them
    /// (capped by `net.core.somaxconn`).
    #[serde(default = "default_listen_backlog")]
    pub listen_backlog: u32,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The collector's certificate (PEM, leaf first).
    pub certificate: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The hospital CA bundle (PEM).
    pub ca_bundle: PathBuf,
    /// CRL sources: files (PEM or DER) or the CA's `http://` distribution points,
    /// re-read or fetched on every refresh and on SIGHUP.
    #[serde(default)]
    pub crls: Vec<String>,
    /// Seconds between CRL refreshes.
    #[serde(default = "default_crl_refresh_secs")]
    pub crl_refresh_secs: u64,
    /// Seconds one CRL fetch may take.
    #[serde(default = "default_crl_fetch_timeout_secs")]
    pub crl_fetch_timeout_secs: u64,
    /// What a CRL past its `nextUpdate` does.
    #[serde(default)]
    pub expired_crl: ExpiredCrlSetting,
}

/// `tls.expired_crl`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpiredCrlSetting {
    /// Refuse every device (503 `crl_expired`) until a fresh CRL arrives.
    #[default]
    Refuse,
    /// Keep the expired CRL's revocations in force and log a warning.
    Warn,
}

impl From<ExpiredCrlSetting> for wardseal_net::server::ExpiredCrl {
    fn from(setting: ExpiredCrlSetting) -> Self {
        match setting {
            ExpiredCrlSetting::Refuse => Self::Refuse,
            ExpiredCrlSetting::Warn => Self::Warn,
        }
    }
}

/// The CRL sources of `[tls] crls`, split by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlSources {
    /// Files, re-read on every reload.
    pub files: Vec<PathBuf>,
    /// Distribution points, fetched on every refresh.
    pub urls: Vec<wardseal_net::crl::HttpUrl>,
}

/// `[spool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// The SQLite database.
    pub path: PathBuf,
    /// Size limit in bytes (0: the disk's).
    #[serde(default)]
    pub max_bytes: u64,
    /// Most requests per group commit.
    #[serde(default = "default_max_group")]
    pub max_group: usize,
}

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Largest request body in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How old a reading may be, seconds.
    #[serde(default = "default_skew_past")]
    pub skew_past_secs: u64,
    /// How far in the future a reading may be, seconds.
    #[serde(default = "default_skew_future")]
    pub skew_future_secs: u64,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            skew_past_secs: default_skew_past(),
            skew_future_secs: default_skew_future(),
        }
    }
}

/// `[batch]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// Most readings per batch.
    #[serde(default = "default_max_readings")]
    pub max_readings: usize,
    /// Milliseconds a reading may wait for company before its batch is sealed.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_readings: default_max_readings(),
            linger_ms: default_linger_ms(),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Storage's URL, `https://host:port`.
    pub url: String,
    /// Seconds between assignment refreshes from storage.
    #[serde(default = "default_assignments_secs")]
    pub assignments_refresh_secs: u64,
    /// A JSON file of `WardAssignments` used instead of storage's API (the demo).
    #[serde(default)]
    pub assignments_file: Option<PathBuf>,
    /// Seconds a reading may wait for an assignment valid at its measurement time before
    /// a warning and `wardseal_collector_readings_unassigned` say so.
    #[serde(default = "default_unassigned_alert_secs")]
    pub unassigned_alert_secs: u64,
}

/// `[ledger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// The deployed suite's addresses (`suite.json`).
    pub suite: PathBuf,
    /// The embedded chain's directory (single-machine default).
    #[serde(default)]
    pub embedded_dir: Option<PathBuf>,
    /// The collector's account on the embedded chain (0x…, needs the anchorer role).
    #[serde(default)]
    pub account: Option<String>,
    /// A JSON-RPC node's URL, instead of the embedded chain.
    #[serde(default)]
    pub rpc_url: Option<String>,
    /// File holding the collector's account private key (hex) for JSON-RPC; mode 0600.
    #[serde(default)]
    pub account_key_file: Option<PathBuf>,
    /// Seconds between decision-log anchors.
    #[serde(default = "default_anchor_secs")]
    pub anchor_interval_secs: u64,
    /// Milliseconds between polls for rule and registry events.
    #[serde(default = "default_follow_ms")]
    pub follow_interval_ms: u64,
}

/// `[[cards]]`: a patient's card held by configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSection {
    /// The patient's subject id.
    pub patient: SubjectId,
    /// RFC 7512 URI of the key (`pkcs11:token=…;object=…?module-path=…&pin-source=file:…`).
    pub pkcs11_uri: String,
    /// The patient's certificate (PEM or DER); read from the token when absent.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The PC/SC bedside reader (name as pcscd gives it) whose card stands for this
    /// patient's presence: the token signs only while a card is in this reader. Absent:
    /// the token is always present.
    #[serde(default)]
    pub reader: Option<String>,
}

fn default_max_connections() -> usize {
    4096
}
fn default_listen_backlog() -> u32 {
    4096
}
fn default_drain_secs() -> u64 {
    30
}
fn default_crl_refresh_secs() -> u64 {
    60
}
fn default_crl_fetch_timeout_secs() -> u64 {
    10
}
fn default_max_group() -> usize {
    4096
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_skew_past() -> u64 {
    3600
}
fn default_skew_future() -> u64 {
    30
}
fn default_max_readings() -> usize {
    2000
}
fn default_linger_ms() -> u64 {
    50
}
fn default_assignments_secs() -> u64 {
    30
}
fn default_unassigned_alert_secs() -> u64 {
    300
}
fn default_anchor_secs() -> u64 {
    60
}
fn default_follow_ms() -> u64 {
    1000
}

impl Config {
    /// The CRL sources, files and URLs.
    pub fn crl_sources(&self) -> Result<CrlSources, ConfigError> {
        let mut sources = CrlSources::default();
        for text in &self.tls.crls {
            match text.parse::<wardseal_net::crl::CrlSource>() {
                Ok(wardseal_net::crl::CrlSource::File(path)) => sources.files.push(path),
                Ok(wardseal_net::crl::CrlSource::Http(url)) => sources.urls.push(url),
                Err(error) => {
                    return Err(ConfigError::Invalid {
                        key: "tls.crls",
                        reason: error.to_string(),
                    });
                }
            }
        }
        Ok(sources)
    }

    /// Storage's endpoint.
    pub fn storage_endpoint(&self) -> Result<Endpoint, ConfigError> {
        self.storage
            .url
            .parse()
            .map_err(|error: crate::client::UrlError| ConfigError::Invalid {
                key: "storage.url",
                reason: error.reason,
            })
    }

    /// The ward id.
    pub fn ward(&self) -> &SubjectId {
        &self.collector.ward
    }

    /// The batch linger time.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.batch.linger_ms)
    }
}

/// Reads `path`, applies the environment overrides in `environment` (pass
/// `std::env::vars()`), checks the values and the key files' permissions.
pub fn load_config(
    path: &Path,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    for (name, value) in environment {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            return Err(ConfigError::Environment {
                name,
                reason: "name it WARDSEAL_COLLECTOR__<SECTION>__<KEY>".into(),
            });
        };
        let section = section.to_ascii_lowercase();
        let key = key.to_ascii_lowercase();
        let value = if let Ok(integer) = value.parse::<i64>() {
            toml::Value::Integer(integer)
        } else if let Ok(boolean) = value.parse::<bool>() {
            toml::Value::Boolean(boolean)
        } else {
            toml::Value::String(value)
        };
        match table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(entries) => {
                entries.insert(key, value);
            }
            _ => {
                return Err(ConfigError::Environment {
                    name,
                    reason: format!("`{section}` is not a section"),
                });
            }
        }
    }
    let config: Config =
        toml::Value::Table(table)
            .try_into()
            .map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = resolve_paths(config, base);
    validate(&config)?;
    Ok(config)
}

/// Relative paths in the file are relative to the file's directory.
fn resolve_paths(mut config: Config, base: &Path) -> Config {
    let fix = |path: &mut PathBuf| {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    };
    fix(&mut config.tls.certificate);
    fix(&mut config.tls.key);
    fix(&mut config.tls.ca_bundle);
    for source in &mut config.tls.crls {
        if !source.contains("://") && Path::new(source.as_str()).is_relative() {
            *source = base.join(source.as_str()).display().to_string();
        }
    }
    fix(&mut config.spool.path);
    if let Some(path) = config.storage.assignments_file.as_mut() {
        fix(path);
    }
    fix(&mut config.ledger.suite);
    if let Some(path) = config.ledger.embedded_dir.as_mut() {
        fix(path);
    }
    if let Some(path) = config.ledger.account_key_file.as_mut() {
        fix(path);
    }
    for card in &mut config.cards {
        if let Some(path) = card.certificate.as_mut() {
            fix(path);
        }
    }
    config
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    private_file(&config.tls.key)?;
    if let Some(key) = &config.ledger.account_key_file {
        private_file(key)?;
    }
    config.storage_endpoint()?;
    config.crl_sources()?;
    match (&config.ledger.embedded_dir, &config.ledger.rpc_url) {
        (Some(_), None) if config.ledger.account.is_some() => {}
        (None, Some(_)) if config.ledger.account_key_file.is_some() => {}
        _ => {
            return Err(ConfigError::Invalid {
                key: "ledger",
                reason:
                    "set either `embedded_dir` and `account`, or `rpc_url` and `account_key_file`"
                        .into(),
            });
        }
    }
    if config.batch.max_readings == 0 {
        return Err(ConfigError::Invalid {
            key: "batch.max_readings",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Refuses a secret file that group or others can read.
pub fn private_file(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let metadata = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write_example(dir: &Path) -> PathBuf {
        let text = include_str!("../collector.example.toml");
        let path = dir.join("collector.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(dir.join("collector.key"), "key").unwrap();
        std::fs::set_permissions(
            dir.join("collector.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        path
    }

    #[test]
    fn the_reference_file_loads_and_env_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_example(dir.path());
        let config = load_config(&path, Vec::new()).unwrap();
        assert_eq!(config.ward().as_str(), "ward-7");
        let config = load_config(
            &path,
            vec![
                ("WARDSEAL_COLLECTOR__SPOOL__MAX_BYTES".into(), "4096".into()),
                (
                    "WARDSEAL_COLLECTOR__COLLECTOR__LISTEN".into(),
                    "127.0.0.1:1".into(),
                ),
                ("UNRELATED".into(), "x".into()),
            ],
        )
        .unwrap();
        assert_eq!(config.spool.max_bytes, 4096);
        assert_eq!(config.collector.listen.port(), 1);
        assert!(config.spool.path.starts_with(dir.path()));
    }

    #[test]
    fn world_readable_keys_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_example(dir.path());
        std::fs::set_permissions(
            dir.path().join("collector.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let error = load_config(&path, Vec::new()).unwrap_err();
        assert!(
            matches!(error, ConfigError::KeyFilePermissions { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"));
        std::fs::set_permissions(
            dir.path().join("collector.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let error = load_config(
            &path,
            vec![("WARDSEAL_COLLECTOR__SPOOL__PATHH".into(), "x".into())],
        )
        .unwrap_err();
        assert!(error.to_string().contains("pathh"), "{error}");
    }
}
