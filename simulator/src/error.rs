//! The simulator's one error type.

use std::path::PathBuf;

/// What went wrong while preparing, starting or driving a ward.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A device kind name that is not one of [`crate::kinds::DeviceKind::ALL`].
    #[error(
        "unknown device kind {0:?}: expected one of ecg, eeg, emg, pulse_oximeter, thermometer, cgm, insulin_pen, blood_pressure"
    )]
    UnknownKind(String),
    /// The options cannot describe a ward.
    #[error("invalid ward options: {0}")]
    Options(String),
    /// A file or directory could not be created, read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A ward file (`ward.json`, a device list) is not what the simulator wrote.
    #[error("{path} is not a valid ward file: {source}")]
    WardFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The CA refused or failed.
    #[error("hospital CA: {0}")]
    Pki(#[from] wardseal_pki::Error),
    /// An identity or EPC could not be built.
    #[error("identity: {0}")]
    Identity(#[from] wardseal_core::Error),
    /// A rule could not be built.
    #[error("rule: {0}")]
    Rule(#[from] wardseal_contracts::RuleError),
    /// The ledger refused or failed.
    #[error("ledger: {0}")]
    Ledger(#[from] wardseal_contracts::Error),
    /// A patient card (token or software key) could not be used.
    #[error("patient card: {0}")]
    Card(#[from] wardseal_card::Error),
    /// The SoftHSM store could not be prepared.
    #[error("SoftHSM: {0}")]
    SoftHsm(#[from] wardseal_softhsm::Error),
    /// The ward's CA (the test kit's PKI) or a free port failed.
    #[error("{0}")]
    Kit(#[from] wardseal_testkit::Error),
    /// TLS material could not be loaded.
    #[error("TLS: {0}")]
    Net(#[from] wardseal_net::Error),
    /// The collector refused its configuration or failed to start.
    #[error("collector: {0}")]
    Collector(#[from] wardseal_collector::Error),
    /// The collector configuration written by the simulator was refused.
    #[error("collector configuration: {0}")]
    CollectorConfig(#[from] wardseal_collector::ConfigError),
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] wardseal_storage::Error),
    /// A request to a server could not be sent or answered.
    #[error("request to {target}: {reason}")]
    Request {
        /// The server and path.
        target: String,
        /// Why it failed.
        reason: String,
    },
    /// Something the ward needs did not happen in time.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
