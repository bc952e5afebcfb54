//! The collector's one error type, its typed parts, and the one function that puts a
//! refusal on the wire ([`Rejection::status`], [`Rejection::code`]).

use std::path::PathBuf;

use wardseal_core::epc::Sgtin96;
use wardseal_core::reading::Timestamp;

/// Everything that can go wrong in the collector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The spool (the SQLite database) failed.
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    /// The ledger (rules, registry, anchors) failed.
    #[error("ledger: {0}")]
    Ledger(#[from] wardseal_contracts::Error),
    /// TLS material (certificates, keys, CRLs) is unusable.
    #[error("TLS: {0}")]
    Tls(#[from] wardseal_net::Error),
    /// A patient card failed.
    #[error("patient card: {0}")]
    Card(#[from] wardseal_card::Error),
    /// A batch could not be built.
    #[error("batch: {0}")]
    Batch(#[from] wardseal_core::batch::BatchError),
    /// A gap record could not be built.
    #[error("gap record: {0}")]
    Gap(#[from] wardseal_core::gap::GapError),
    /// Delivering to storage failed.
    #[error("forwarding to storage: {0}")]
    Forward(#[from] ForwardError),
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the collector.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser found.
        source: Box<toml::de::Error>,
    },
    /// An environment override holds an unusable value.
    #[error("environment variable {name}: {reason}")]
    Environment {
        /// The variable.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key file can be read by other users.
    #[error(
        "{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}` before starting the collector"
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A value is out of its range or inconsistent with another.
    #[error("`{key}`: {reason}")]
    Invalid {
        /// The configuration key.
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The disk (or the configured spool size limit) is full: new readings are refused,
    /// nothing already accepted is dropped.
    #[error(
        "the spool is full (disk or `spool.max_bytes`); readings are refused until storage drains it or space is freed"
    )]
    Full,
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The spool's writer thread has stopped.
    #[error("the spool writer has stopped")]
    Stopped,
    /// A row holds data the collector did not write (a damaged or foreign database).
    #[error("spool row {row} is damaged: {reason}")]
    Corrupt {
        /// The row id.
        row: i64,
        /// What is wrong.
        reason: String,
    },
}

impl SpoolError {
    /// Maps a SQLite error, singling out a full disk.
    pub(crate) fn from_sqlite(error: rusqlite::Error) -> Self {
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            SpoolError::Full
        } else {
            SpoolError::Sqlite(error)
        }
    }
}

/// Why a delivery to storage failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No connection could be made, or it broke before the answer was complete.
    #[error("storage cannot be reached: {0}")]
    Request(#[from] wardseal_net::client::RequestError),
    /// Storage answered with an error.
    #[error("storage refused the batch with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Storage's error body.
        body: String,
    },
    /// Storage's answer is not a receipt for the batch sent.
    #[error("storage's answer is not a receipt for this batch: {0}")]
    BadReceipt(String),
    /// Storage refused for good (its body says `"permanent": true`): sending the same
    /// request again cannot succeed, so the batch is quarantined instead of retried.
    #[error("storage refused for good with HTTP {status} {code}: {message}")]
    Permanent {
        /// The HTTP status.
        status: u16,
        /// Storage's machine code.
        code: String,
        /// Storage's sentence.
        message: String,
    },
}

/// Why one reading (or a whole request) was refused at ingest, in check order.
///
/// Each variant's `strum(serialize)` is its stable machine code: [`Rejection::code`] and
/// [`Rejection::CODES`] are derived from it, so the list cannot drift from the variants.
#[derive(
    Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr, strum::VariantNames,
)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is not usable JSON readings.
    #[error("{0}")]
    #[strum(serialize = "malformed_body")]
    MalformedBody(String),
    /// One reading is malformed.
    #[error("{0}")]
    #[strum(serialize = "malformed_reading")]
    MalformedReading(String),
    /// The client certificate is not a device's.
    #[error("only device certificates may send readings; this certificate's role is {role}")]
    #[strum(serialize = "not_a_device")]
    NotADevice {
        /// The certificate's role.
        role: String,
    },
    /// The device is not in the registry.
    #[error("device {0} is not registered; register it on the ledger first")]
    #[strum(serialize = "unknown_device")]
    UnknownDevice(Sgtin96),
    /// The device was deactivated (captured or retired).
    #[error("device {0} is deactivated")]
    #[strum(serialize = "inactive_device")]
    InactiveDevice(Sgtin96),
    /// The certificate's group differs from the registry's.
    #[error(
        "device {device}: the certificate says group {certificate} but the registry says {registry}"
    )]
    #[strum(serialize = "group_mismatch")]
    GroupMismatch {
        /// The device.
        device: Sgtin96,
        /// The certificate's group.
        certificate: u32,
        /// The registry's group.
        registry: u32,
    },
    /// The device's group follows no rule.
    #[error("group {0} follows no rule")]
    #[strum(serialize = "no_rule_for_group")]
    NoRuleForGroup(u32),
    /// The group's rule does not allow this data type.
    #[error("group {group} may not send {data_type} readings")]
    #[strum(serialize = "data_type_not_allowed")]
    DataTypeNotAllowed {
        /// The group.
        group: u32,
        /// The data type.
        data_type: String,
    },
    /// The unit is not the rule's.
    #[error("unit `{unit}` is not the one the rule fixes for {data_type}")]
    #[strum(serialize = "wrong_unit")]
    WrongUnit {
        /// The data type.
        data_type: String,
        /// The unit sent.
        unit: String,
    },
    /// The value is out of the rule's range (or has the wrong shape or precision).
    #[error("value component {component} is {what} of the rule")]
    #[strum(serialize = "value_out_of_range")]
    OutOfRange {
        /// The failing component's index.
        component: u8,
        /// "below the minimum", "above the maximum", ...
        what: &'static str,
    },
    /// The device sends faster than its rule allows.
    #[error("more than {max} {data_type} readings in the last minute")]
    #[strum(serialize = "rate_exceeded")]
    RateExceeded {
        /// The data type.
        data_type: String,
        /// The rule's limit.
        max: u32,
    },
    /// The device time is too far from the collector's clock.
    #[error(
        "reading time {time} is outside the accepted window ({past_secs} s in the past to {future_secs} s in the future); check the device clock"
    )]
    #[strum(serialize = "timestamp_skew")]
    Skew {
        /// The reading's time.
        time: Timestamp,
        /// How old a reading may be.
        past_secs: u64,
        /// How far ahead a reading may be.
        future_secs: u64,
    },
    /// The sequence number is not above the device's high-water mark.
    #[error(
        "sequence {sequence} is not above {high_water}, the highest already accepted from this device"
    )]
    #[strum(serialize = "replay")]
    Replay {
        /// The reading's sequence number.
        sequence: u64,
        /// The device's high-water mark.
        high_water: u64,
    },
    /// The spool is full.
    #[error("the collector's spool is full; retry later (the reading was not stored)")]
    #[strum(serialize = "spool_full")]
    SpoolFull,
    /// The spool failed otherwise.
    #[error("the collector cannot store readings right now; retry later")]
    #[strum(serialize = "spool_unavailable")]
    Unavailable,
}

impl Rejection {
    /// The HTTP status a device receives for this refusal. With [`Rejection::code`], the
    /// collector's one error-to-wire map.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MalformedBody(_) | Rejection::MalformedReading(_) => 400,
            Rejection::NotADevice { .. }
            | Rejection::UnknownDevice(_)
            | Rejection::InactiveDevice(_)
            | Rejection::GroupMismatch { .. }
            | Rejection::NoRuleForGroup(_)
            | Rejection::DataTypeNotAllowed { .. } => 403,
            Rejection::WrongUnit { .. } | Rejection::OutOfRange { .. } | Rejection::Skew { .. } => {
                422
            }
            Rejection::RateExceeded { .. } => 429,
            Rejection::Replay { .. } => 409,
            Rejection::SpoolFull => 507,
            Rejection::Unavailable => 503,
        }
    }

    /// The stable machine code (documented in the README's table).
    pub fn code(&self) -> &'static str {
        self.into()
    }

    /// Every machine code, in check order (for metrics and the README).
    pub const CODES: &'static [&'static str] = <Self as strum::VariantNames>::VARIANTS;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_variants_codes_unique_and_documented() {
        let readme = include_str!("../README.md");
        let mut seen = std::collections::HashSet::new();
        for code in Rejection::CODES {
            assert!(seen.insert(*code), "{code} twice");
            assert!(
                readme.contains(&format!("| `{code}` |")),
                "{code} is not in the README's table of refusals"
            );
        }
        assert_eq!(Rejection::CODES.len(), 15);
        assert_eq!(Rejection::Unavailable.code(), "spool_unavailable");
        assert_eq!(
            Rejection::CODES.first(),
            Some(&Rejection::MalformedBody(String::new()).code())
        );
    }
}
