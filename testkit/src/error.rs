//! The kit's one error type.

use std::path::PathBuf;
use std::process::ExitStatus;

/// What went wrong starting, driving or stopping a fixture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A component is not installed where it was looked for.
    #[error("{what} is not installed at {path}: {fix}")]
    Missing {
        /// The component.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What to install or set.
        fix: String,
    },
    /// A workspace binary is neither where it was looked for nor buildable.
    #[error(
        "the binary {name} was not found in {searched} and building it failed: {reason}; \
         build it first (`cargo build -p {package} --bin {name}`, or run the suite with \
         `cargo test --workspace`) or set {env} to the directory that holds it",
        env = crate::process::BIN_DIR_ENV
    )]
    BinaryMissing {
        /// The binary.
        name: String,
        /// Its package.
        package: String,
        /// Where it was looked for.
        searched: String,
        /// Why building it failed.
        reason: String,
    },
    /// A file or process operation failed.
    #[error("cannot {action} {what}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{tool} {args} failed ({status}): {output}")]
    Tool {
        /// The tool.
        tool: String,
        /// Its arguments.
        args: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed (and, for PostgreSQL, the end of the server log).
        output: String,
    },
    /// A child process exited while it was expected to start or run.
    #[error("{name} exited with {status} before it was ready; the end of its log {log}:\n{tail}")]
    Exited {
        /// The process's name.
        name: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// A child process did not do something in time.
    #[error("{name}: {what} did not happen within {seconds} s; the end of its log {log}:\n{tail}")]
    Timeout {
        /// The process's name.
        name: String,
        /// What was waited for.
        what: String,
        /// The bound.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// A condition did not hold in time (no process log to show).
    #[error("{what} did not happen within {seconds} s{hint}")]
    NotInTime {
        /// What was waited for.
        what: String,
        /// The bound.
        seconds: u64,
        /// What may be wrong, starting with "; " (or empty).
        hint: &'static str,
    },
    /// Something a fixture depends on failed.
    #[error("{what}: {reason}")]
    Failed {
        /// What was being done.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The process is not running.
    #[error("{name} is not running")]
    NotRunning {
        /// The process's name.
        name: String,
    },
    /// The PC/SC test lock could not be taken.
    #[error("cannot take the PC/SC test lock {path}: {0}", path = crate::pcsc::LOCK_FILE)]
    PcscLock(#[source] std::io::Error),
    /// A pcscd that the kit did not start is running (a system one, or a test that
    /// ignores the lock), so the kit cannot know which readers it shows.
    #[error("a pcscd that this test did not start is running; stop it first")]
    PcscAlreadyRunning,
    /// The virtual card could not talk to vpcd.
    #[error("the virtual card: {0}")]
    Card(#[from] wardseal_card::Error),
    /// The test CA refused or failed.
    #[error("test CA: {0}")]
    Pki(#[from] wardseal_pki::Error),
    /// A SoftHSM store or token could not be prepared.
    #[error("SoftHSM: {0}")]
    SoftHsm(#[from] wardseal_softhsm::Error),
}

impl Error {
    /// An I/O error while doing `action` on `what`.
    pub(crate) fn io(
        action: &'static str,
        what: impl std::fmt::Display,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            what: what.to_string(),
            source,
        }
    }
}
