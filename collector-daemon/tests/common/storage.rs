//! The other end of the data path for the end-to-end tests: wardseal-storage serving its
//! real API over mutual TLS on a fixed loopback port with a SQLite database, stoppable and
//! restartable on the same port and database; and a patient's card enrolled on a SoftHSM
//! token by the hospital CA.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wardseal_collector::client::{Connection, Reply};
use wardseal_contracts::{AnyBackend, Ledger};
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_core::reading::Timestamp;
use wardseal_net::server::ServerTlsSettings;
use wardseal_storage::alerts::EscalationPolicy;
use wardseal_storage::api::Storage;
use wardseal_storage::{Server, ServerConfig};
use wardseal_testkit::softhsm::{SoftHsm, TokenSpec};
use wardseal_testkit::{CertificateFiles, Postgres, TestPki};

use super::{WARD, epc};

/// The patient of the end-to-end tests.
pub(crate) const PATIENT: &str = "P-000123";
/// The nurse assigned to [`PATIENT`] (reads proofs).
pub(crate) const NURSE: &str = "nurse-1";

/// Enrolls `patient`'s card on a new SoftHSM token (key generated on the token, patient
/// certificate issued by the test CA and written back next to the key), the way
/// `wardseal-pki card enroll` does. Returns the key's RFC 7512 URI for the collector.
pub(crate) async fn enroll_card(pki: &TestPki, hsm: &SoftHsm, patient: &str) -> String {
    hsm.init_token(&TokenSpec::new(patient)).unwrap();
    enroll_on_token(pki, hsm, patient).await
}

/// Like [`enroll_card`], on a token already initialised with `hsm.init_token` (a process
/// that has loaded the PKCS#11 module does not see tokens initialised after that, so a
/// process enrolling several cards initialises every token first).
pub(crate) async fn enroll_on_token(pki: &TestPki, hsm: &SoftHsm, patient: &str) -> String {
    let pin = hsm.token_dir().join(format!("{patient}.pin"));
    std::fs::write(&pin, TokenSpec::DEFAULT_USER_PIN).unwrap();
    pki.enroll_card(hsm, patient, &pin, WARD)
        .await
        .unwrap()
        .pkcs11_uri
}

/// The collector configuration lines holding `patient`'s card.
pub(crate) fn card_section(patient: &str, uri: &str) -> String {
    format!("[[cards]]\npatient = \"{patient}\"\npkcs11_uri = \"{uri}\"\n")
}

/// Storage's database in a run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Database {
    Sqlite,
    Postgres,
}

/// The storage setup of a run on `database` (the cluster lives as long as the guard).
pub(crate) async fn storage_setup(
    database: Database,
    pki: &TestPki,
    dir: &Path,
    port: u16,
) -> (StorageSetup, Option<Postgres>) {
    match database {
        Database::Sqlite => (StorageSetup::new(pki, dir, port).await, None),
        Database::Postgres => {
            let cluster = Postgres::start().unwrap();
            let setup = StorageSetup::on_postgres(pki, dir, port, cluster.url()).await;
            (setup, Some(cluster))
        }
    }
}

/// A running storage server.
pub(crate) struct StorageServer {
    pub(crate) storage: Arc<Storage>,
    pub(crate) address: SocketAddr,
    server: Server,
}

/// What a storage server is started from (kept to restart it the same way).
#[derive(Clone)]
pub(crate) struct StorageSetup {
    pub(crate) certificate: CertificateFiles,
    pub(crate) ca_bundle: PathBuf,
    pub(crate) crl: PathBuf,
    pub(crate) database: PathBuf,
    /// `postgres://…` when storage runs on PostgreSQL; SQLite at `database` otherwise.
    pub(crate) postgres: Option<String>,
    pub(crate) port: u16,
    /// How long alerts may wait for acknowledgement before they escalate.
    pub(crate) escalation: EscalationPolicy,
}

impl StorageSetup {
    /// A storage identity from `pki`, a database file in `dir`, listening on `port`.
    pub(crate) async fn new(pki: &TestPki, dir: &Path, port: u16) -> Self {
        Self {
            certificate: pki.issue(Identity::storage(None, None)).await.unwrap(),
            ca_bundle: pki.ca_bundle().to_owned(),
            crl: pki.crl(),
            database: dir.join("storage.db"),
            postgres: None,
            port,
            escalation: EscalationPolicy::default(),
        }
    }

    /// The same on the PostgreSQL database at `url`.
    pub(crate) async fn on_postgres(pki: &TestPki, dir: &Path, port: u16, url: &str) -> Self {
        Self {
            postgres: Some(url.to_owned()),
            ..Self::new(pki, dir, port).await
        }
    }

    pub(crate) fn url(&self) -> String {
        match &self.postgres {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.database.display()),
        }
    }

    /// How many times each leaf hash is stored, read from storage's database.
    pub(crate) fn stored_leaves(&self) -> HashMap<String, i64> {
        match &self.postgres {
            None => stored_leaves(&self.database),
            Some(url) => wardseal_testkit::postgres::query(
                url,
                "SELECT encode(leaf_hash, 'hex'), COUNT(*) FROM readings GROUP BY leaf_hash",
            )
            .unwrap()
            .lines()
            .filter_map(|line| {
                let (leaf, count) = line.split_once(' ')?;
                Some((leaf.to_owned(), count.parse().ok()?))
            })
            .collect(),
        }
    }

    /// Starts storage with `ledger` for the registry and rules, the way the binary does
    /// (no anchoring timer: the tests anchor when they choose).
    pub(crate) async fn start(&self, ledger: Ledger<AnyBackend>) -> StorageServer {
        let mut settings = ServerTlsSettings::new(
            &self.certificate.certificate,
            &self.certificate.key,
            &self.ca_bundle,
        );
        settings.crls.push(self.crl.clone());
        // The port was just released (first start) or by the stopped server (restart).
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut config = ServerConfig::new(self.url(), address, settings);
        config.anchor_interval = None;
        config.drain_timeout = Duration::from_secs(2);
        config.escalation = self.escalation;
        config.escalation_check = Duration::from_millis(100);
        let deadline = Instant::now() + Duration::from_secs(30);
        let server = loop {
            match Server::start(&config, ledger.clone()).await {
                Ok(server) => break server,
                Err(error) => {
                    // Only the port may still be busy; anything else fails now.
                    assert!(
                        matches!(error, wardseal_storage::Error::Listen { .. })
                            && Instant::now() < deadline,
                        "storage did not start on {address}: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        StorageServer {
            storage: Arc::clone(server.storage()),
            address,
            server,
        }
    }
}

impl StorageServer {
    /// Admits [`PATIENT`] to the ward, assigns `devices` (EPC serials) to them from an
    /// hour ago, and assigns [`NURSE`] to them.
    pub(crate) async fn admit(&self, devices: &[u64]) {
        let store = &self.storage.store;
        let patient = SubjectId::new(PATIENT).unwrap();
        store.admit(&patient, WARD, "12", "B", None).await.unwrap();
        let since = Timestamp::now().unix_micros() - 3_600_000_000;
        for &serial in devices {
            store
                .assign_device(&epc(serial).pure_identity_uri(), PATIENT, since)
                .await
                .unwrap();
        }
        store
            .assign_staff(&SubjectId::new(NURSE).unwrap(), &patient, "nurse")
            .await
            .unwrap();
    }

    /// Stops serving (open connections are closed after a short drain) and closes the
    /// database: storage is down.
    pub(crate) async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// A nurse's certificate (to read proofs).
pub(crate) async fn nurse(pki: &TestPki) -> CertificateFiles {
    pki.issue(Identity::staff(SubjectId::new(NURSE).unwrap()))
        .await
        .unwrap()
}

/// How many times each leaf hash is stored, read from storage's database file.
pub(crate) fn stored_leaves(database: &Path) -> HashMap<String, i64> {
    let connection =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut statement = connection
        .prepare("SELECT leaf_hash, COUNT(*) FROM readings GROUP BY leaf_hash")
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                hex::encode(row.get::<_, Vec<u8>>(0)?),
                row.get::<_, i64>(1)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A metric of the collector's `/metrics`, read over `connection`.
pub(crate) async fn metric(connection: &Connection, name: &str) -> f64 {
    let Reply { status, body, .. } = connection
        .send(hyper::Method::GET, "/metrics", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| format!("no metric {name} in:\n{text}"))
        .unwrap()
}
