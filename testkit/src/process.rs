//! The real binaries (`wardseal-storage`, `wardseal-collector`, anvil) as child processes:
//! started with their output appended to a log file, waited for (bounded) until they
//! listen, killed with SIGKILL or stopped with a signal, and started again with the same
//! command line (same ports, same database, same spool). A [`Process`] that is dropped
//! kills its child by PID, so a failing test leaves nothing running.
//!
//! # Finding the binaries
//!
//! [`binary`] looks, in order, in `$WARDSEAL_BIN_DIR`, then in the target directory the
//! running test executable was built into (`target/<profile>/deps/faults-…` →
//! `target/<profile>/`), where `cargo test --workspace` has just built every package's
//! binaries. When a binary is not there (`cargo test -p wardseal-tests` builds only that
//! package), it is built once per test process with `cargo build -p PACKAGE --bin NAME`
//! in the same profile and target directory; if that fails the error says what to run.
//! A binary found there is used as it is: after changing storage or the collector, run
//! the suite with `cargo test --workspace` (or build them first) so it is current.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;

/// The environment variable naming a directory that holds the binaries.
pub const BIN_DIR_ENV: &str = "WARDSEAL_BIN_DIR";

/// How long [`binary`] lets `cargo build` run.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);

/// Binaries already built by [`binary`] in this process (so each is built once).
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Where the workspace's binary `name` (of package `package`) is; see the module
/// documentation for the search order. Builds it when missing.
pub fn binary(package: &str, name: &str) -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        let path = PathBuf::from(dir).join(name);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::BinaryMissing {
            name: name.to_owned(),
            package: package.to_owned(),
            searched: path.display().to_string(),
            reason: format!("{BIN_DIR_ENV} is set, so nothing is built"),
        });
    }
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        action: "find",
        what: "the running test executable".into(),
        source,
    })?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = profile_dir.join(name);
    // Serialise concurrent tests: one builds, the others wait and then find it.
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if path.is_file() {
        return Ok(path);
    }
    let missing = |reason: String| Error::BinaryMissing {
        name: name.to_owned(),
        package: package.to_owned(),
        searched: profile_dir.display().to_string(),
        reason,
    };
    if built.iter().any(|b| b == name) {
        return Err(missing("it was built but is still not there".into()));
    }
    let (Some(target_dir), Some(profile)) = (
        profile_dir.parent(),
        profile_dir.file_name().and_then(|p| p.to_str()),
    ) else {
        return Err(missing(format!(
            "{} is not inside a cargo target directory",
            exe.display()
        )));
    };
    // `debug` is the directory of the `dev` profile.
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            name,
            "--profile",
            profile,
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| missing(format!("cannot run cargo: {e}")))?;
    let status = wait_bounded(&mut child, BUILD_TIMEOUT)
        .map_err(|e| missing(format!("waiting for cargo: {e}")))?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(missing(format!(
            "cargo build did not finish within {} s",
            BUILD_TIMEOUT.as_secs()
        )));
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        return Err(missing(format!(
            "cargo build exited with {status}: {}",
            stderr.trim()
        )));
    }
    built.push(name.to_owned());
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(
            "cargo build succeeded but wrote no such file".into(),
        ))
    }
}

/// Waits for `child` to exit, at most `timeout`; `None` when it is still running.
fn wait_bounded(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A signal [`Process::stop`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: the collector drains and stops.
    Term,
    /// SIGINT (Ctrl-C): storage stops serving and exits.
    Int,
    /// SIGHUP: the servers reload certificates and CRLs.
    Hup,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Int => "INT",
            Signal::Hup => "HUP",
        }
    }
}

/// A child process that can be started, killed and started again with the same command
/// line. Its stdout and stderr go to one log file, appended across starts (each start
/// writes a header line), so the log tells the whole story of a test.
#[derive(Debug)]
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Process {
    /// A process named `name` (for messages) running `program`, logging to `log`. Not
    /// started yet.
    pub fn new(name: &str, program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            log: log.into(),
            child: None,
            starts: 0,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for every start (the rest is inherited).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The running child's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (an error if it is running).
    pub fn start(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::Io {
                action: "start",
                what: self.name.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "it is already running",
                ),
            });
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| Error::Io {
                action: "open the log",
                what: self.log.display().to_string(),
                source,
            })?;
        self.starts += 1;
        let _ = writeln!(
            log,
            "--- {} start {} ({}) ---",
            self.name,
            self.starts,
            wardseal_core::reading::Timestamp::now()
        );
        let stderr = log.try_clone().map_err(|source| Error::Io {
            action: "share the log",
            what: self.log.display().to_string(),
            source,
        })?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = command.spawn().map_err(|source| Error::Io {
            action: "start",
            what: format!("{} ({})", self.name, self.program.display()),
            source,
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the child is running (reaps it when it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// The exit status when the child has exited (and is not yet reaped by a start).
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the child with SIGKILL (`kill -9`: no cleanup, no flush) and reaps it.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::NotRunning {
                name: self.name.clone(),
            });
        };
        // std's Child::kill sends SIGKILL on Unix.
        child.kill().map_err(|source| Error::Io {
            action: "kill -9",
            what: self.name.clone(),
            source,
        })?;
        child.wait().map_err(|source| Error::Io {
            action: "reap",
            what: self.name.clone(),
            source,
        })?;
        Ok(())
    }

    /// Sends `signal` to the child by PID.
    pub fn signal(&mut self, signal: Signal) -> Result<(), Error> {
        let Some(pid) = self.pid() else {
            return Err(Error::NotRunning {
                name: self.name.clone(),
            });
        };
        let status = Command::new("kill")
            .args(["-s", signal.name(), &pid.to_string()])
            .status()
            .map_err(|source| Error::Io {
                action: "run kill to signal",
                what: self.name.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::NotRunning {
                name: self.name.clone(),
            })
        }
    }

    /// Stops the child with `signal` and waits (at most `timeout`) for it to exit;
    /// returns its exit status. A child still running after `timeout` is killed and the
    /// timeout is the error.
    pub async fn stop(&mut self, signal: Signal, timeout: Duration) -> Result<ExitStatus, Error> {
        self.signal(signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.kill9();
                return Err(self.timeout(&format!("exit after SIG{}", signal.name()), timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most `timeout`) until something accepts TCP connections on loopback
    /// `port`; fails at once when the child exits meanwhile.
    pub async fn wait_listening(&mut self, port: u16, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            let attempt = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await;
            if matches!(attempt, Ok(Ok(_))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(&format!("listening on 127.0.0.1:{port}"), timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails when the child is not running (it exited on its own), with its log's end.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        if let Some(status) = self.exited() {
            self.child = None;
            return Err(Error::Exited {
                name: self.name.clone(),
                status,
                log: self.log.clone(),
                tail: self.log_tail(30),
            });
        }
        if self.child.is_none() {
            return Err(Error::NotRunning {
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    fn timeout(&self, what: &str, timeout: Duration) -> Error {
        Error::Timeout {
            name: self.name.clone(),
            what: what.to_owned(),
            seconds: timeout.as_secs(),
            log: self.log.clone(),
            tail: self.log_tail(30),
        }
    }

    /// The last `lines` lines of the log (at most its last 64 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(mut file) = File::open(&self.log) else {
            return String::new();
        };
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(length.saturating_sub(65_536)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log as text (lossy), for checks on what the process reported.
    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never leave a child behind: SIGKILL by PID, then reap.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
