//! The log set-up every wardseal binary shares: `tracing` events written to standard
//! error, for a person (the default) or as one JSON object per line for a log collector.
//!
//! Libraries only emit `tracing` events; a binary calls [`init`] once, first thing in
//! `main`, with the format from its `--log-format` flag or [`LogFormat::from_env`]. The
//! level comes from `RUST_LOG` (as in `RUST_LOG=info,wardseal_collector=debug`); without it,
//! `info` and above are written.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The environment variable that chooses the format when no flag does.
pub const FORMAT_VARIABLE: &str = "WARDSEAL_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event (time, level, target, message and fields).
    #[default]
    Human,
    /// One JSON object per event, for journald, Loki or Elasticsearch.
    Json,
}

impl LogFormat {
    /// The format `WARDSEAL_LOG_FORMAT` names, or [`LogFormat::Human`] when it is unset.
    pub fn from_env() -> Result<Self, UnknownLogFormat> {
        match std::env::var(FORMAT_VARIABLE) {
            Ok(text) => text.parse(),
            Err(_) => Ok(Self::Human),
        }
    }
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "human" | "text" | "" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err(UnknownLogFormat(text.to_owned())),
        }
    }
}

/// A log format that is neither `human` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}`: use `human` or `json`")]
pub struct UnknownLogFormat(pub String);

/// Installs the process-wide subscriber: `format` on standard error, level from
/// `RUST_LOG` (default `info`). A second call (a test that starts two binaries' mains in
/// one process) leaves the first subscriber in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed: keep that one.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("human".parse::<LogFormat>(), Ok(LogFormat::Human));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
