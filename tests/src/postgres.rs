//! A throwaway PostgreSQL 15 cluster for the suites: `initdb` and `pg_ctl` in a temporary
//! directory, on a free loopback port, stopped (by `pg_ctl stop` on its data directory)
//! when dropped — or the database of `DATABASE_URL` when that is set.
//!
//! `initdb` refuses to run as root, so as root the binaries run as user `postgres`
//! through `runuser`, and the directory is handed to that user. The binaries are taken
//! from `WARDSEAL_PG_BIN`, else `/usr/lib/postgresql/15/bin`. A missing PostgreSQL is an
//! error that says how to install it: the suites fail, never skip.

use std::path::PathBuf;
use std::process::Command;

/// Where Debian's PostgreSQL 15 binaries are.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The environment variable naming another binaries' directory.
pub const BIN_ENV: &str = "WARDSEAL_PG_BIN";
/// The environment variable naming an existing database to use instead.
pub const URL_ENV: &str = "DATABASE_URL";

/// Why the cluster could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The binaries are not there.
    #[error(
        "PostgreSQL is not installed at {0} (apt-get install postgresql-15, or set DATABASE_URL or WARDSEAL_PG_BIN)"
    )]
    Missing(PathBuf),
    /// A file-system step failed.
    #[error("cannot prepare the cluster directory: {0}")]
    Io(#[from] std::io::Error),
    /// A PostgreSQL command failed.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
}

/// A running throwaway cluster (or an external database).
#[derive(Debug)]
pub struct Postgres {
    url: String,
    cluster: Option<Cluster>,
}

#[derive(Debug)]
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    // Kept for its drop: removes the cluster's files after the stop.
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a cluster with one database, `wardseal`, owned by `postgres` (trust
    /// authentication on 127.0.0.1 only).
    pub fn start() -> Result<Self, PostgresError> {
        if let Ok(url) = std::env::var(URL_ENV) {
            return Ok(Self { url, cluster: None });
        }
        let bin = PathBuf::from(std::env::var(BIN_ENV).unwrap_or_else(|_| DEFAULT_BIN.into()));
        if !bin.join("initdb").is_file() {
            return Err(PostgresError::Missing(bin));
        }
        let dir = tempfile::Builder::new().prefix("wardseal-pg").tempdir()?;
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let root = is_root();
        if root {
            // initdb refuses root: the cluster belongs to postgres.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let work = dir.path().to_owned();
        let tool = |name: &str| {
            let mut command = if root {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(bin.join(name));
                command
            } else {
                Command::new(bin.join(name))
            };
            command.current_dir(&work);
            command
        };
        run(tool("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]))?;
        let cluster = Cluster {
            bin: bin.clone(),
            data: data.clone(),
            dir,
        };
        run(tool("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                cluster.dir.path().display()
            ))
            .arg("start"))?;
        // From here the cluster runs: a failure below stops it through the drop.
        let postgres = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/wardseal"),
            cluster: Some(cluster),
        };
        run(tool("createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "wardseal",
        ]))?;
        Ok(postgres)
    }

    /// The database's URL (`postgres://postgres@127.0.0.1:PORT/wardseal`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            let mut command = if is_root() {
                let mut command = Command::new("runuser");
                command
                    .args(["-u", "postgres", "--"])
                    .arg(cluster.bin.join("pg_ctl"));
                command
            } else {
                Command::new(cluster.bin.join("pg_ctl"))
            };
            let _ = command
                .arg("-D")
                .arg(&cluster.data)
                .args(["-m", "fast", "-w", "-t", "30", "stop"])
                .current_dir(cluster.dir.path())
                .output();
        }
    }
}

fn run(command: &mut Command) -> Result<(), PostgresError> {
    let output = command.output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(PostgresError::Command {
        command: format!("{command:?}"),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}
