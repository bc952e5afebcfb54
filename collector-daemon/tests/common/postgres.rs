//! A throwaway PostgreSQL 15 cluster for the end-to-end tests on PostgreSQL, started the
//! way storage's own tests start theirs (initdb + pg_ctl as user `postgres` on a free
//! loopback port, trust authentication), or the database of `DATABASE_URL` when set.
//! Fails, never skips, when PostgreSQL is missing. Stopped by `pg_ctl stop` on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::storage::free_port;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn bin() -> PathBuf {
    PathBuf::from(std::env::var("WARDSEAL_PG_BIN").unwrap_or_else(|_| PG_BIN.into()))
}

/// A running cluster with an empty `wardseal` database.
pub(crate) struct Postgres {
    pub(crate) url: String,
    cluster: Option<(tempfile::TempDir, PathBuf)>,
}

impl Postgres {
    pub(crate) fn start() -> Self {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Self { url, cluster: None };
        }
        let bin = bin();
        assert!(
            bin.join("initdb").is_file(),
            "PostgreSQL is not installed at {} (apt-get install postgresql-15, or set DATABASE_URL / WARDSEAL_PG_BIN)",
            bin.display()
        );
        let temp = tempfile::Builder::new()
            .prefix("wardseal-collector-pg")
            .tempdir()
            .unwrap();
        let data = temp.path().join("data");
        let data_arg = data.display().to_string();
        run_as_postgres(
            temp.path(),
            &[
                &bin.join("initdb").display().to_string(),
                "-D",
                &data_arg,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let port = free_port();
        let log = temp.path().join("log").display().to_string();
        run_as_postgres(
            temp.path(),
            &[
                &bin.join("pg_ctl").display().to_string(),
                "-D",
                &data_arg,
                "-l",
                &log,
                "-w",
                "-o",
                &format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1",
                    temp.path().display()
                ),
                "start",
            ],
        );
        run_as_postgres(
            temp.path(),
            &[
                &bin.join("createdb").display().to_string(),
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "wardseal",
            ],
        );
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/wardseal"),
            cluster: Some((temp, data)),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((temp, data)) = &self.cluster {
            let data = data.display().to_string();
            let pg_ctl = bin().join("pg_ctl").display().to_string();
            let stop = [pg_ctl.as_str(), "-D", &data, "-m", "fast", "-w", "stop"];
            let _ = as_postgres(&stop).current_dir(temp.path()).output();
        }
    }
}

fn as_postgres(args: &[&str]) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).args(args);
        command
    } else {
        let mut command = Command::new(args[0]);
        command.args(&args[1..]);
        command
    }
}

fn run_as_postgres(dir: &Path, args: &[&str]) {
    // initdb refuses to run as root: the directory must belong to postgres.
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status();
    }
    let output = as_postgres(args).current_dir(dir).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs one query with `psql` and returns its unaligned, tuples-only output.
pub(crate) fn query(url: &str, sql: &str) -> String {
    // psql comes with PostgreSQL (package postgresql-client-15).
    let output = Command::new("psql")
        .args([url, "-X", "-A", "-t", "-F", " ", "-c", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
