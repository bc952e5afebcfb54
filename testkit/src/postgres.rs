//! A throwaway PostgreSQL cluster for a suite: `initdb` into a temporary directory,
//! `pg_ctl start` on a free loopback port (no Unix socket outside that directory), one
//! database `wardseal`, and restarts on demand (`pg_ctl restart -m fast|immediate`) with
//! the same data and port, so a storage process keeps its URL across them. Stopped when
//! dropped: `pg_ctl stop -m immediate`, which signals the postmaster by the PID in its data
//! directory, and if that fails SIGKILL to that PID; then the directory is deleted.
//!
//! The binaries come from `$WARDSEAL_PG_BIN`, else `/usr/lib/postgresql/15/bin` (Debian's
//! `postgresql-15`). PostgreSQL refuses to run as root, so when this process is root the
//! tools run as user `postgres` through `runuser` and the directory is given to it;
//! otherwise they run as the current user. A missing installation is an error that says
//! what to install: a suite that needs PostgreSQL fails without it, it does not skip.
//!
//! [`Postgres::start`] is what most suites want: the database of `DATABASE_URL` when that
//! is set (a developer's or CI's own server), else a [`PostgresCluster`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Error;

/// The environment variable naming PostgreSQL's binary directory.
pub const PG_BIN_ENV: &str = "WARDSEAL_PG_BIN";
/// The environment variable naming a database to use instead of a throwaway cluster.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";
/// Where Debian's `postgresql-15` installs the server binaries.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database the cluster serves.
pub const DATABASE: &str = "wardseal";
/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the server stops in [`PostgresCluster::restart`] and [`PostgresCluster::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Clients are disconnected, transactions rolled back, a checkpoint is written.
    Fast,
    /// The postmaster and its children quit at once (no checkpoint: crash recovery on
    /// the next start), like a power cut for the database.
    Immediate,
}

impl StopMode {
    fn as_str(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL database for a test: `DATABASE_URL`'s, or a throwaway cluster's.
#[derive(Debug)]
pub struct Postgres {
    url: String,
    cluster: Option<PostgresCluster>,
}

impl Postgres {
    /// The database of `DATABASE_URL` when it is set, else a new [`PostgresCluster`].
    pub fn start() -> Result<Self, Error> {
        if let Some(url) = std::env::var_os(DATABASE_URL_ENV) {
            return Ok(Self {
                url: url.to_string_lossy().into_owned(),
                cluster: None,
            });
        }
        let cluster = PostgresCluster::start()?;
        Ok(Self {
            url: cluster.url(),
            cluster: Some(cluster),
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The throwaway cluster, when this is one (not `DATABASE_URL`'s database).
    pub fn cluster(&self) -> Option<&PostgresCluster> {
        self.cluster.as_ref()
    }

    /// Runs one SQL statement with `psql` and returns its unaligned, tuples-only output
    /// (fields separated by one space).
    pub fn query(&self, sql: &str) -> Result<String, Error> {
        query(&self.url, sql)
    }
}

/// Runs one SQL statement against `url` with `psql` (package `postgresql-client-15`) and
/// returns its unaligned, tuples-only output (fields separated by one space).
pub fn query(url: &str, sql: &str) -> Result<String, Error> {
    let args = [url, "-X", "-A", "-t", "-F", " ", "-c", sql];
    let output = Command::new("psql")
        .args(args)
        .output()
        .map_err(|e| Error::io("run", "psql (install postgresql-client-15)", e))?;
    if !output.status.success() {
        return Err(Error::Tool {
            tool: "psql".into(),
            args: args.join(" "),
            status: output.status,
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A running throwaway cluster (see the module documentation).
#[derive(Debug)]
pub struct PostgresCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PostgresCluster {
    /// Creates and starts a cluster with the database [`DATABASE`].
    pub fn start() -> Result<Self, Error> {
        let bin =
            PathBuf::from(std::env::var_os(PG_BIN_ENV).unwrap_or_else(|| DEFAULT_PG_BIN.into()));
        if !bin.join("initdb").is_file() {
            return Err(Error::Missing {
                what: "PostgreSQL (initdb)",
                path: bin,
                fix: format!(
                    "install postgresql-15, or set {PG_BIN_ENV} to the directory holding \
                     initdb and pg_ctl, or {DATABASE_URL_ENV} to a database"
                ),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("wardseal-pg-")
            .tempdir()
            .map_err(|e| Error::io("create", "a temporary directory for PostgreSQL", e))?;
        let as_postgres = is_root()?;
        if as_postgres {
            // initdb refuses root; the cluster's files belong to `postgres`.
            give_to_postgres(dir.path())?;
        }
        let port = crate::free_port()?;
        let data = dir.path().join("data");
        let cluster = Self {
            bin,
            data,
            port,
            as_postgres,
            dir,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                // The cluster is thrown away: no need to fsync its creation.
                "--no-sync",
            ],
        )?;
        cluster.pg_ctl(&["start"])?;
        cluster.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                DATABASE,
            ],
        )?;
        Ok(cluster)
    }

    /// The database's URL (`postgres://postgres@127.0.0.1:PORT/wardseal`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`mode`) and starts it again on the same port with the same
    /// data; returns when it accepts connections again.
    pub fn restart(&self, mode: StopMode) -> Result<(), Error> {
        self.pg_ctl(&["-m", mode.as_str(), "restart"])
    }

    /// Stops the server (`mode`); [`PostgresCluster::start_again`] starts it.
    pub fn stop(&self, mode: StopMode) -> Result<(), Error> {
        self.pg_ctl(&["-m", mode.as_str(), "stop"])
    }

    /// Starts a stopped server again.
    pub fn start_again(&self) -> Result<(), Error> {
        self.pg_ctl(&["start"])
    }

    fn pg_ctl(&self, action: &[&str]) -> Result<(), Error> {
        let data = self.data.display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let timeout = PG_CTL_TIMEOUT.as_secs().to_string();
        let mut args = vec![
            "-D", &data, "-l", &log, "-w", "-t", &timeout, "-o", &options,
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), Error> {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| Error::io("run", program.display(), e))?;
        if output.status.success() {
            return Ok(());
        }
        let server_log =
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = server_log.lines().rev().take(20).collect();
        Err(Error::Tool {
            tool: tool.to_owned(),
            args: args.join(" "),
            status: output.status,
            output: format!(
                "{}{}\nserver log:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        })
    }

    /// The postmaster's PID, from the first line of `postmaster.pid` in the data
    /// directory (absent when the server is stopped).
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // pg_ctl signals the postmaster by the PID in its data directory (as the user
        // that owns the cluster, which may be this process's own).
        if self.pg_ctl(&["-m", "immediate", "stop"]).is_err()
            && let Some(pid) = self.postmaster_pid()
        {
            // Never leave a server behind: SIGKILL by that PID.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn give_to_postgres(dir: &Path) -> Result<(), Error> {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .map_err(|e| Error::io("run", "chown", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            tool: "chown".into(),
            args: format!("-R postgres:postgres {}", dir.display()),
            status,
            output: "is there a `postgres` user?".into(),
        })
    }
}

fn is_root() -> Result<bool, Error> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| Error::io("run", "id -u", e))?;
    Ok(output.stdout.trim_ascii() == b"0")
}
