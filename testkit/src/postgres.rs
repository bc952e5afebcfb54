//! A throwaway PostgreSQL cluster for a suite: `initdb` into a temporary directory,
//! `pg_ctl start` on a free loopback port (no Unix socket outside that directory), one
//! database `wardseal`, and restarts on demand (`pg_ctl restart -m fast|immediate`) with
//! the same data and port, so a storage process keeps its URL across them. Stopped
//! (`pg_ctl stop -m immediate`, which signals the postmaster by the PID in its data
//! directory) and deleted when dropped.
//!
//! The binaries come from `$WARDSEAL_PG_BIN`, else `/usr/lib/postgresql/15/bin` (Debian's
//! `postgresql-15`). PostgreSQL refuses to run as root, so when this process is root the
//! tools run as user `postgres` through `runuser`, and the directory is given to it. A
//! missing installation is an error that says what to install: a suite that needs
//! PostgreSQL fails without it, it does not skip.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The environment variable naming PostgreSQL's binary directory.
pub const PG_BIN_ENV: &str = "WARDSEAL_PG_BIN";
/// Where Debian's `postgresql-15` installs the server binaries.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The database the cluster serves.
pub const DATABASE: &str = "wardseal";
/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong with the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL is not installed where it was looked for.
    #[error(
        "PostgreSQL is not installed at {0} (no initdb): install postgresql-15 or set \
         {PG_BIN_ENV} to the directory holding initdb and pg_ctl"
    )]
    Missing(PathBuf),
    /// A tool could not be run.
    #[error("cannot {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
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
        status: std::process::ExitStatus,
        /// What it printed, then the end of the server log.
        output: String,
    },
}

/// How the server stops in [`PostgresCluster::restart`].
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
            return Err(Error::Missing(bin));
        }
        let dir = tempfile::Builder::new()
            .prefix("wardseal-pg-")
            .tempdir()
            .map_err(|source| Error::Io {
                action: "create a temporary directory for PostgreSQL".into(),
                source,
            })?;
        let as_postgres = is_root()?;
        if as_postgres {
            // initdb refuses root; the cluster's files belong to `postgres`.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|source| Error::Io {
                    action: "run chown".into(),
                    source,
                })?;
            if !status.success() {
                return Err(Error::Tool {
                    tool: "chown".into(),
                    args: format!("-R postgres:postgres {}", dir.path().display()),
                    status,
                    output: "is there a `postgres` user?".into(),
                });
            }
        }
        let port = wardseal_sim::ward::free_port().map_err(|e| Error::Io {
            action: "find a free port".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
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
            .map_err(|source| Error::Io {
                action: format!("run {}", program.display()),
                source,
            })?;
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
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // pg_ctl signals the postmaster by the PID in its data directory.
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

fn is_root() -> Result<bool, Error> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|source| Error::Io {
            action: "run id -u".into(),
            source,
        })?;
    Ok(output.stdout.trim_ascii() == b"0")
}
