//! Test world: a real CA, an embedded chain with the contracts, a storage server on
//! 127.0.0.1 over a real database (SQLite file or a throwaway PostgreSQL cluster), and an
//! HTTPS client.

#![allow(dead_code, reason = "each test uses a different subset")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test helper fails the test by panicking"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use alloy::primitives::Address;
use bytes::Bytes;
use hyper::StatusCode;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use wardseal_contracts::{
    Device, EmbeddedChain, Ledger, Range, Role as LedgerRole, TypeRule, WideDecimal,
};
use wardseal_core::batch::{BatchHeader, ChainTip};
use wardseal_core::decimal::Decimal;
use wardseal_core::epc::Sgtin96;
use wardseal_core::exchange::BatchSubmission;
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_core::reading::{DataType, Measurement, Reading, Timestamp, Unit, Value};
use wardseal_core::signature::SignatureAlgorithm;
use wardseal_net::client::{Client, ClientOptions, ClientTlsSettings, Endpoint};
use wardseal_net::server::ServerTlsSettings;
use wardseal_storage::api::Storage;
use wardseal_storage::{Server, ServerConfig};
use wardseal_testkit::anvil::dev_signer;
use wardseal_testkit::{Anvil, AnvilOptions, CertificateFiles, TestPki};

pub(crate) const WARD: &str = "ward-7";
pub(crate) const GROUP: u32 = 3;
pub(crate) const RULE: u32 = 7;

pub(crate) fn epc(serial: u64) -> Sgtin96 {
    format!("urn:epc:id:sgtin:0614141.812345.{serial}")
        .parse()
        .unwrap()
}

/// Everything a test needs.
pub(crate) struct World {
    pub(crate) pki: TestPki,
    pub(crate) storage: Arc<Storage>,
    pub(crate) address: SocketAddr,
    pub(crate) collector: CertificateFiles,
    pub(crate) patient: CertificateFiles,
    pub(crate) patient_account: Address,
    /// The ledger as the patient's account (grants and revokes consent).
    pub(crate) patient_ledger: Ledger<wardseal_contracts::AnyBackend>,
    pub(crate) ledger: Ledger<wardseal_contracts::AnyBackend>,
    _anvil: Option<Anvil>,
    pub(crate) tip: Option<ChainTip>,
    _chain_dir: tempfile::TempDir,
    /// Dropping the world stops the server.
    pub(crate) server: Server,
    /// What the server was started from (its own port: a restart takes the same).
    pub(crate) config: ServerConfig,
}

/// Which ledger backend a world runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LedgerKind {
    /// revm in the process.
    Embedded,
    /// anvil over JSON-RPC (`$WARDSEAL_ANVIL` or `contracts/setup.sh`).
    Anvil,
}

impl World {
    pub(crate) async fn new(database_url: &str) -> Self {
        Self::with_ledger(database_url, LedgerKind::Embedded).await
    }

    pub(crate) async fn with_ledger(database_url: &str, kind: LedgerKind) -> Self {
        let pki = TestPki::new().await.unwrap();
        let chain_dir = tempfile::tempdir().unwrap();
        let (backend, patient_backend, patient_account, anvil): (
            wardseal_contracts::AnyBackend,
            wardseal_contracts::AnyBackend,
            Address,
            Option<Anvil>,
        ) = match kind {
            LedgerKind::Embedded => {
                let chain = EmbeddedChain::open(chain_dir.path()).unwrap();
                let patient_account = Address::repeat_byte(0x77);
                (
                    chain.backend(Address::repeat_byte(0x51)).into(),
                    chain.backend(patient_account).into(),
                    patient_account,
                    None,
                )
            }
            LedgerKind::Anvil => {
                let node = Anvil::start(AnvilOptions::default())
                    .await
                    .unwrap_or_else(|error| {
                        panic!(
                            "anvil is needed: {error}; run contracts/setup.sh or set WARDSEAL_ANVIL"
                        )
                    });
                let storage_signer = dev_signer(0).unwrap();
                let patient_signer = dev_signer(1).unwrap();
                let patient_account = patient_signer.address();
                (
                    wardseal_contracts::RpcBackend::connect(&node.url(), storage_signer)
                        .unwrap()
                        .into(),
                    wardseal_contracts::RpcBackend::connect(&node.url(), patient_signer)
                        .unwrap()
                        .into(),
                    patient_account,
                    Some(node),
                )
            }
        };
        let storage_account = wardseal_contracts::Backend::account(&backend);
        let ledger: Ledger<wardseal_contracts::AnyBackend> = Ledger::deploy(backend).await.unwrap();
        let patient_ledger = Ledger::new(patient_backend, *ledger.suite());
        for role in [
            LedgerRole::RuleAdmin,
            LedgerRole::Registrar,
            LedgerRole::Anchorer,
        ] {
            ledger.grant_role(role, storage_account).await.unwrap();
        }
        ledger.create_rule(RULE).await.unwrap();
        let range = |low: &str, high: &str| {
            Range::new(
                WideDecimal::parse(low).unwrap(),
                WideDecimal::parse(high).unwrap(),
            )
            .unwrap()
        };
        ledger
            .set_type_rule(
                RULE,
                &TypeRule::new(
                    DataType::HeartRate.code(),
                    "/min",
                    vec![range("30", "220")],
                    0,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        ledger.set_group_rule(GROUP, RULE).await.unwrap();
        for serial in [1, 2] {
            ledger.register_device(&ward_device(serial)).await.unwrap();
        }

        let server = pki.issue(Identity::storage(None, None)).await.unwrap();
        let mut settings =
            ServerTlsSettings::new(&server.certificate, &server.key, pki.ca_bundle());
        settings.crls.push(pki.crl());
        // The tests anchor when they choose (`World::anchor_now`, the admin routes).
        let mut config = ServerConfig::new(database_url, ([127, 0, 0, 1], 0).into(), settings);
        config.anchor_interval = None;
        let server = Server::start(&config, ledger.clone()).await.unwrap();
        let address = server.local_addr();
        config.listen = address;
        let storage = Arc::clone(server.storage());

        let collector = pki
            .issue(Identity::collector(
                SubjectId::new(WARD).unwrap(),
                Some(GroupId(GROUP)),
                Some(RuleId(RULE)),
                None,
            ))
            .await
            .unwrap();
        let patient = pki
            .issue(Identity::patient(SubjectId::new("patient-1").unwrap()))
            .await
            .unwrap();
        storage
            .store
            .admit(
                &SubjectId::new("patient-1").unwrap(),
                WARD,
                "12",
                "B",
                Some(patient_account),
            )
            .await
            .unwrap();
        storage
            .store
            .assign_device(&epc(1).pure_identity_uri(), "patient-1", 0)
            .await
            .unwrap();
        Self {
            pki,
            storage,
            address,
            collector,
            patient,
            patient_account,
            patient_ledger,
            ledger,
            _anvil: anvil,
            tip: None,
            _chain_dir: chain_dir,
            server,
            config,
        }
    }

    /// Stops storage (in-flight requests finish, background tasks stop) and starts it
    /// again on the same database and port.
    pub(crate) async fn restart(&mut self) {
        self.server.stop().await;
        self.server = Server::start(&self.config, self.ledger.clone())
            .await
            .unwrap();
        self.storage = Arc::clone(self.server.storage());
    }

    /// The anvil node's URL, when the world runs on anvil.
    pub(crate) fn anvil_url(&self) -> Option<String> {
        self._anvil.as_ref().map(Anvil::url)
    }

    pub(crate) fn reload(&self) {
        self.server.reload().unwrap();
    }

    /// POST/GET as `certificate`; `Err` when the connection is refused.
    pub(crate) async fn request(
        &self,
        certificate: &CertificateFiles,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, serde_json::Value), String> {
        request_to(
            self.address,
            self.pki.ca_bundle(),
            certificate,
            method,
            path,
            body,
        )
        .await
    }

    pub(crate) async fn submit(
        &self,
        submission: &BatchSubmission,
    ) -> Result<(StatusCode, serde_json::Value), String> {
        let body = serde_json::to_vec(submission).unwrap();
        self.request(&self.collector, "POST", "/v1/batches", Some(body))
            .await
    }

    /// Makes staff member `staff` responsible for `patient` as `role`.
    pub(crate) async fn assign_staff(&self, staff: &str, patient: &str, role: &str) {
        self.storage
            .store
            .assign_staff(
                &SubjectId::new(staff).unwrap(),
                &SubjectId::new(patient).unwrap(),
                role,
            )
            .await
            .unwrap();
    }

    pub(crate) async fn reading_count(&self) -> i64 {
        self.storage.store.counts().await.unwrap().0
    }
}

/// The URL of the SQLite database file `name` in `dir`.
pub(crate) fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

/// Device `serial` of the ward, active, in the ward's group and rule.
pub(crate) fn ward_device(serial: u64) -> Device {
    Device {
        epc: epc(serial).to_bytes(),
        group: GROUP,
        rule_id: RULE,
        ward: WARD.into(),
        active: true,
    }
}

/// A heart-rate reading of device `serial`.
pub(crate) fn heart_rate(serial: u64, bpm: &str, micros: i64, sequence: u64) -> Reading {
    let measurement = Measurement::new(
        DataType::HeartRate,
        Unit::of(DataType::HeartRate),
        Value::Quantity(Decimal::parse(bpm).unwrap()),
        Timestamp::from_unix_micros(micros).unwrap(),
        sequence,
    )
    .unwrap();
    Reading::new(epc(serial), measurement)
}

/// Builds and signs a batch of `readings` for `patient` after `tip` with `key_file`.
pub(crate) fn batch(
    patient: &str,
    tip: Option<&ChainTip>,
    readings: &[Reading],
    certificate: &CertificateFiles,
    key_file: &Path,
) -> BatchSubmission {
    let bytes = readings
        .iter()
        .map(Reading::canonical_bytes)
        .collect::<Vec<_>>();
    let leaves = bytes
        .iter()
        .map(|b| wardseal_core::merkle::leaf_hash(b))
        .collect::<Vec<_>>();
    let times = readings
        .iter()
        .map(|r| r.measurement().time())
        .collect::<Vec<_>>();
    let header = BatchHeader::for_leaves(
        SubjectId::new(patient).unwrap(),
        SubjectId::new(WARD).unwrap(),
        tip,
        &leaves,
        (*times.iter().min().unwrap(), *times.iter().max().unwrap()),
        SignatureAlgorithm::EcdsaP256Sha256,
    )
    .unwrap();
    let pem = std::fs::read_to_string(key_file).unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let signature: p256::ecdsa::Signature = key.sign(&header.canonical_bytes());
    BatchSubmission {
        header,
        signature: signature.to_der().as_bytes().to_vec(),
        patient_certificate: certificate.der().unwrap(),
        readings: bytes,
    }
}

/// One HTTPS request over mutual TLS as `certificate`, the answer read as JSON (`Null`
/// when it is not JSON); `Err` when the connection fails.
pub(crate) async fn request_to(
    address: SocketAddr,
    ca_bundle: &Path,
    certificate: &CertificateFiles,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, serde_json::Value), String> {
    let (status, _, body) =
        request_bytes_to(address, ca_bundle, certificate, method, path, body).await?;
    Ok((
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    ))
}

/// One HTTPS request over mutual TLS as `certificate`: the status, the content type and
/// the body as sent.
pub(crate) async fn request_bytes_to(
    address: SocketAddr,
    ca_bundle: &Path,
    certificate: &CertificateFiles,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, String, Bytes), String> {
    let config = ClientTlsSettings::new(ca_bundle, &certificate.certificate, &certificate.key)
        .client_config(&[b"http/1.1"])
        .unwrap();
    let endpoint = Endpoint {
        host: address.ip().to_string(),
        port: address.port(),
    };
    // A fresh client per request: each request makes its own connection and handshake,
    // as a refused certificate must show on the request that presents it.
    let client = Client::new(&endpoint, config, ClientOptions::fresh_connections());
    let method = hyper::Method::from_bytes(method.as_bytes()).unwrap();
    let reply = client
        .send(method, path, body.unwrap_or_default())
        .await
        .map_err(|error| error.to_string())?;
    Ok((
        StatusCode::from_u16(reply.status).unwrap(),
        reply.content_type.unwrap_or_default(),
        reply.body,
    ))
}
