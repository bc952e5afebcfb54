//! A whole ward as separate processes, the way a hospital runs it: anvil as the ledger
//! node, storage on SQLite or on its own PostgreSQL cluster, and the real
//! `wardseal-storage` and `wardseal-collector` binaries started from a
//! [`WardFiles`] directory. Every part can be killed and started again on the same
//! ports, database, spool and chain state.
//!
//! The patients' cards are SoftHSM tokens (the collector binary opens cards on tokens
//! only), so the process that calls [`Stack::start`] must have been started with
//! `SOFTHSM2_CONF` naming a store (`wardseal_testkit::softhsm::run_isolated_test` does that for a
//! test); the collector inherits it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use wardseal_contracts::{AnyBackend, Ledger};
use wardseal_sim::kinds::DeviceKind;
use wardseal_sim::ward::{
    CardBackend, DatabaseChoice, LedgerChoice, WardFiles, WardOptions, open_ledger,
};
use wardseal_storage::store::Store;

use wardseal_testkit::process::{self, Process, Signal};
use wardseal_testkit::{Anvil, PostgresCluster};

use crate::audit::{self, Coverage};

/// How long a server may take to listen after it was started.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong running the stack.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A process, anvil or PostgreSQL could not be run.
    #[error(transparent)]
    Kit(#[from] wardseal_testkit::Error),
    /// The ward could not be prepared.
    #[error("preparing the ward: {0}")]
    Ward(#[from] wardseal_sim::Error),
    /// The patients could not be admitted.
    #[error("admitting the patients: {0}")]
    Admit(#[from] wardseal_storage::Error),
    /// A check could not read what it checks, or found a violation.
    #[error(transparent)]
    Audit(#[from] audit::Error),
    /// Something did not happen in time.
    #[error("{what} did not happen within {seconds} s{detail}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound.
        seconds: u64,
        /// What was seen last.
        detail: String,
    },
}

/// Storage's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file in the ward directory.
    Sqlite,
    /// A throwaway PostgreSQL cluster of the stack's own.
    Postgres,
}

/// Anchors on chain cover the three logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchored {
    /// The collector's decision log.
    pub decisions: Coverage,
    /// Storage's access log.
    pub access_log: Coverage,
    /// Storage's batch log (every stored batch).
    pub batch_log: Coverage,
}

/// What a [`Stack`] runs beyond the default ward.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Serve the CA's CRL over HTTP with the real `wardseal-pki crl --serve` (a child
    /// process, see [`Stack::crl_server`]) and have the collector fetch it from there
    /// instead of reading the CRL file. Storage keeps reading the file (its binary takes
    /// files only).
    pub crl_server: bool,
    /// The first patient's card presence comes from this PC/SC bedside reader (the
    /// collector's `[[cards]] reader`); pcscd must be running with it.
    pub bedside_reader: Option<String>,
}

/// A running ward of processes (see the module documentation).
#[derive(Debug)]
pub struct Stack {
    files: WardFiles,
    ledger: Ledger<AnyBackend>,
    storage: Process,
    collector: Process,
    crl_server: Option<CrlServer>,
    // Dropped after the servers (fields drop in order): they never outlive their
    // database and node.
    postgres: Option<PostgresCluster>,
    anvil: Anvil,
}

impl Stack {
    /// Starts anvil (and PostgreSQL), prepares a ward in `dir` (two patients, each
    /// wearing a pulse oximeter and an ECG; cards on SoftHSM), admits the patients and
    /// starts storage and the collector, waiting until both listen.
    pub async fn start(dir: &Path, database: Database) -> Result<Self, Error> {
        Self::start_with(dir, database, &StackOptions::default()).await
    }

    /// [`Stack::start`] with what `options` add (a CRL server, a bedside reader).
    pub async fn start_with(
        dir: &Path,
        database: Database,
        options: &StackOptions,
    ) -> Result<Self, Error> {
        let anvil = Anvil::start_in(dir).await?;
        let postgres = match database {
            Database::Sqlite => None,
            Database::Postgres => Some(PostgresCluster::start()?),
        };
        let key_file = dir.join("anvil-dev.key");
        Anvil::write_dev_key(0, &key_file)?;
        let mut ward_options = WardOptions::new(dir.join("ward"));
        ward_options.kinds = vec![DeviceKind::PulseOximeter, DeviceKind::Ecg];
        ward_options.cards = CardBackend::SoftHsm;
        ward_options.ledger = LedgerChoice::Rpc {
            url: anvil.url(),
            key_file,
        };
        ward_options.database = match &postgres {
            Some(cluster) => DatabaseChoice::Postgres(cluster.url()),
            None => DatabaseChoice::Sqlite,
        };
        let mut files = WardFiles::prepare(&ward_options).await?;
        admit(&files).await?;
        let crl_server = if options.crl_server {
            let mut server = CrlServer::new(&files)?;
            server.start().await?;
            files.collector_crls = vec![server.url().to_owned()];
            Some(server)
        } else {
            None
        };
        if let (Some(reader), Some(patient)) = (&options.bedside_reader, files.patients.first_mut())
        {
            patient.reader = Some(reader.clone());
        }
        files.rewrite()?;
        let ledger = open_ledger(&files.ledger)?;

        let storage_binary = process::binary("wardseal-storage", "wardseal-storage")?;
        let collector_binary = process::binary("wardseal-collector", "wardseal-collector")?;
        let storage = Process::new("storage", storage_binary, files.dir.join("storage.log"))
            .args(files.storage_args());
        let mut collector = Process::new(
            "collector",
            collector_binary,
            files.dir.join("collector.log"),
        )
        .args(files.collector_args());
        if let Some(conf) = &files.softhsm_conf {
            collector = collector.env(wardseal_testkit::softhsm::CONF_ENV, conf);
        }
        let mut stack = Self {
            files,
            ledger,
            storage,
            collector,
            crl_server,
            postgres,
            anvil,
        };
        stack.start_storage().await?;
        stack.start_collector().await?;
        Ok(stack)
    }

    /// The ward's files.
    pub fn files(&self) -> &WardFiles {
        &self.files
    }

    /// The ledger, as the ward's account.
    pub fn ledger(&self) -> &Ledger<AnyBackend> {
        &self.ledger
    }

    /// The storage process.
    pub fn storage(&mut self) -> &mut Process {
        &mut self.storage
    }

    /// The collector process.
    pub fn collector(&mut self) -> &mut Process {
        &mut self.collector
    }

    /// The ledger node.
    pub fn anvil(&mut self) -> &mut Anvil {
        &mut self.anvil
    }

    /// The CRL server, when the stack was started with one.
    pub fn crl_server(&mut self) -> Option<&mut CrlServer> {
        self.crl_server.as_mut()
    }

    /// The PostgreSQL cluster, when storage is on PostgreSQL.
    pub fn postgres(&self) -> Option<&PostgresCluster> {
        self.postgres.as_ref()
    }

    /// The collector's spool.
    pub fn spool(&self) -> PathBuf {
        self.files.dir.join("spool.db")
    }

    /// Starts storage (again) and waits until it listens.
    pub async fn start_storage(&mut self) -> Result<(), Error> {
        self.storage.start()?;
        self.storage
            .wait_listening(self.files.storage_port, LISTEN_TIMEOUT)
            .await?;
        Ok(())
    }

    /// Starts the collector (again) and waits until it listens.
    pub async fn start_collector(&mut self) -> Result<(), Error> {
        self.collector.start()?;
        self.collector
            .wait_listening(self.files.collector_port, LISTEN_TIMEOUT)
            .await?;
        Ok(())
    }

    /// Fails when storage or the collector exited on its own.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        self.storage.ensure_running()?;
        self.collector.ensure_running()?;
        Ok(())
    }

    /// Waits until every leaf in `acknowledged` is in storage's database; returns the
    /// stored leaf counts.
    pub async fn wait_stored(
        &self,
        acknowledged: &[wardseal_core::Hash],
        timeout: Duration,
    ) -> Result<HashMap<wardseal_core::Hash, u64>, Error> {
        wait_stored(&self.files.database_url, acknowledged, timeout)
            .await
            .map_err(|error| match error {
                Error::Timeout {
                    what,
                    seconds,
                    detail,
                } => Error::Timeout {
                    what,
                    seconds,
                    detail: format!("{detail}; collector log:\n{}", self.collector.log_tail(20)),
                },
                other => other,
            })
    }

    /// Waits until the collector's decision log, storage's access log and storage's
    /// batch log are covered by anchors on chain (see [`audit::coverage`],
    /// [`audit::batch_log`]).
    pub async fn wait_anchored(&self, timeout: Duration) -> Result<Anchored, Error> {
        wait_anchored(&self.files, &self.spool(), &self.ledger, timeout).await
    }

    /// Waits until the three logs have at least one anchor on chain, so that a fault hits a
    /// ward with anchoring history (and entries anchored since must continue it).
    pub async fn wait_first_anchors(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let decisions_id = wardseal_collector::decision_log::log_id(&self.files.ward).0;
        let access_id = wardseal_storage::chain::access_log_id().0;
        let batches_id = wardseal_storage::chain::batch_log_id().0;
        loop {
            let decisions = audit::chain_anchors(&self.ledger, decisions_id).await?;
            let access = audit::chain_anchors(&self.ledger, access_id).await?;
            let batches = audit::chain_anchors(&self.ledger, batches_id).await?;
            if !decisions.is_empty() && !access.is_empty() && !batches.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "a first anchor of the decision log, the access log and the batch log"
                        .into(),
                    seconds: timeout.as_secs(),
                    detail: format!(
                        ": {}, {} and {} anchors",
                        decisions.len(),
                        access.len(),
                        batches.len()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops the collector (SIGTERM: drain) and storage (SIGINT) gracefully; returns
    /// their exit statuses.
    pub async fn shutdown(&mut self) -> Result<(ExitStatus, ExitStatus), Error> {
        let collector = self.collector.stop(Signal::Term, STOP_TIMEOUT).await?;
        let storage = self.storage.stop(Signal::Int, STOP_TIMEOUT).await?;
        Ok((collector, storage))
    }
}

/// Waits until every leaf in `acknowledged` is in the storage database at
/// `database_url`; returns the stored leaf counts.
pub async fn wait_stored(
    database_url: &str,
    acknowledged: &[wardseal_core::Hash],
    timeout: Duration,
) -> Result<HashMap<wardseal_core::Hash, u64>, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let stored = audit::stored_leaf_counts(database_url).await?;
        let missing = acknowledged
            .iter()
            .filter(|l| !stored.contains_key(l))
            .count();
        if missing == 0 {
            return Ok(stored);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: "storage holding every acknowledged reading".into(),
                seconds: timeout.as_secs(),
                detail: format!(": {missing} of {} still missing", acknowledged.len()),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the decision log in the collector's `spool`, and the access log and the
/// batch log in storage's database (all of ward `files`), are covered by anchors on chain
/// (see [`audit::coverage`]); the batch log is also checked against the stored batches
/// and against the anchors storage recorded for it (see [`audit::batch_log`]).
pub async fn wait_anchored(
    files: &WardFiles,
    spool: &Path,
    ledger: &Ledger<AnyBackend>,
    timeout: Duration,
) -> Result<Anchored, Error> {
    let deadline = Instant::now() + timeout;
    let decisions_id = wardseal_collector::decision_log::log_id(&files.ward).0;
    let access_id = wardseal_storage::chain::access_log_id().0;
    let batches_id = wardseal_storage::chain::batch_log_id().0;
    loop {
        let decisions: Vec<_> = audit::decision_log(spool)?
            .into_iter()
            .map(|(leaf, _)| leaf)
            .collect();
        let access = audit::access_log_leaves(&files.database_url).await?;
        let batches = audit::batch_log(&files.database_url).await?;
        let result = async {
            let decision_anchors = audit::chain_anchors(ledger, decisions_id).await?;
            let access_anchors = audit::chain_anchors(ledger, access_id).await?;
            let batch_anchors = audit::chain_anchors(ledger, batches_id).await?;
            audit::check_batch_anchors_on_chain(&batches, &batch_anchors)?;
            Ok::<_, audit::Error>(Anchored {
                decisions: audit::coverage("the decision log", &decisions, &decision_anchors)?,
                access_log: audit::coverage("the access log", &access, &access_anchors)?,
                batch_log: audit::coverage("the batch log", &batches.leaves, &batch_anchors)?,
            })
        }
        .await;
        match result {
            Ok(anchored) => return Ok(anchored),
            // Not yet anchored is the only thing worth waiting for.
            Err(audit::Error::Unanchored { .. } | audit::Error::Ledger(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Admits every patient of `files` in storage's database, assigns their devices (from
/// an hour ago) and the nurse; the storage process is not running yet.
async fn admit(files: &WardFiles) -> Result<(), Error> {
    let store = Store::open(&files.database_url).await?;
    wardseal_sim::ward::admit(files, &store).await?;
    store.close().await;
    Ok(())
}

/// The CA's CRL served over HTTP by the real `wardseal-pki --ca-dir … crl --serve
/// 127.0.0.1:PORT` (a child [`Process`]), on a port fixed at creation so that it can be
/// killed and started again at the same URL. The server re-signs the CRL within a second
/// of a revocation made by another process (this test's [`wardseal_testkit::TestPki`]).
#[derive(Debug)]
pub struct CrlServer {
    process: Process,
    port: u16,
    url: String,
}

impl CrlServer {
    /// A CRL server for the CA of `files`, not started yet.
    pub fn new(files: &WardFiles) -> Result<Self, Error> {
        let binary = process::binary("wardseal-pki", "wardseal-pki")?;
        let port = wardseal_testkit::free_port()?;
        let process = Process::new("crl-server", binary, files.dir.join("crl-server.log")).args([
            "--ca-dir".into(),
            files.ca_dir.clone().into_os_string(),
            "--passphrase-file".into(),
            files.ca_passphrase.clone().into_os_string(),
            "--actor".into(),
            "wardseal-tests".into(),
            "crl".into(),
            "--serve".into(),
            std::ffi::OsString::from(format!("127.0.0.1:{port}")),
        ]);
        Ok(Self {
            process,
            port,
            url: String::new(),
        })
    }

    /// The URL the CRL is served at (known once started: the server prints it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Starts the server (again) and waits until it listens; reads the URL it serves the
    /// CRL at from its log (the path depends on the CA's configured CRL URL).
    pub async fn start(&mut self) -> Result<(), Error> {
        self.process.start()?;
        self.process
            .wait_listening(self.port, LISTEN_TIMEOUT)
            .await?;
        // It prints the URL right after binding, so a connection may succeed just before.
        let prefix = format!("serving CRL at http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            let log = self.process.log_text();
            if let Some(line) = log.lines().rev().find(|line| line.starts_with(&prefix)) {
                line.trim_start_matches("serving CRL at ")
                    .clone_into(&mut self.url);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "the CRL server naming its URL".into(),
                    seconds: LISTEN_TIMEOUT.as_secs(),
                    detail: format!(": its log has no line starting {prefix:?}:\n{log}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
