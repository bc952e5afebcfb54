//! A whole ward on loopback: the hospital CA, the contracts on a ledger, patient cards,
//! certified devices, storage and the collector.
//!
//! Two steps, so that a ward can run in this process or in others:
//!
//! 1. [`WardFiles::prepare`] writes everything to a directory: the CA (and its bundle and
//!    CRL), every certificate and key (keys 0600), the patients' cards (on SoftHSM tokens
//!    when the store is available, else software keys), the contracts deployed with one
//!    rule per device group and the devices registered, the storage command line and the
//!    collector's `collector.toml`, and `ward.json` describing it all
//!    ([`WardFiles::load`] reads it back).
//! 2. [`RunningWard::start`] runs storage and the collector from those files in this
//!    process on their loopback ports, admits the patients and assigns devices and staff.
//!    Suites that run the real binaries instead take [`WardFiles::storage_args`] and
//!    [`WardFiles::collector_args`], and admit through `wardseal-storage admit …` or the
//!    admin API.
//!
//! The embedded chain can be opened by one process only: with
//! [`LedgerChoice::Embedded`] a ward runs in one process; [`LedgerChoice::Rpc`] (anvil)
//! lets storage and the collector run as separate processes.
//!
//! SoftHSM reads its store from `SOFTHSM2_CONF` when the module is first loaded, and
//! changing a running process's environment is not sound, so the ward uses SoftHSM only
//! when the process was started with `SOFTHSM2_CONF` naming a store
//! ([`softhsm_store`] writes one; the demo re-executes itself with it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use wardseal_collector::batcher::Card;
use wardseal_collector::client::{Connection, Endpoint};
use wardseal_collector::config::load_config;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_contracts::{
    AccountKey, AnyBackend, Device, Ledger, LedgerAccount, LedgerLocation, Role,
};
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{AuthorityKind, GroupId, Identity, RuleId, SubjectId};
use wardseal_net::client::ClientTlsSettings;
use wardseal_net::server::ServerTlsSettings;
use wardseal_storage::api::Storage;
use wardseal_storage::store::Store;
use wardseal_storage::{Server, ServerConfig};

use crate::error::Error;
use crate::kinds::DeviceKind;
use wardseal_testkit::pki::{CertificateFiles, TestPki};

/// The file [`WardFiles::prepare`] writes and [`WardFiles::load`] reads.
pub const WARD_FILE: &str = "ward.json";
/// The device list [`WardFiles::prepare`] writes in `DIR/devices/` (for
/// `wardseal-sim run --devices DIR/devices`).
pub const DEVICES_FILE: &str = "devices.json";
/// The GS1 company prefix of the simulated devices (the GS1 example prefix).
pub const COMPANY_PREFIX: &str = "0614141";
/// How long [`RunningWard::start`] waits for the collector to learn the assignments.
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(15);

/// Which ledger the ward's contracts live on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerChoice {
    /// The embedded chain in `DIR/chain` (one process only).
    Embedded,
    /// A JSON-RPC node (anvil, Besu) and the hex private key of a funded account, which
    /// deploys the contracts and anchors for storage and the collector.
    Rpc {
        /// The node's URL.
        url: String,
        /// A file holding the account's hex private key (0600).
        key_file: PathBuf,
    },
}

/// Where storage keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseChoice {
    /// A SQLite file, `DIR/storage.db`.
    Sqlite,
    /// A PostgreSQL database (`postgres://…`), which must be empty or hold a ward's data.
    Postgres(String),
}

/// What holds the patients' signing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardBackend {
    /// SoftHSM when this process has a store (`SOFTHSM2_CONF`) and the module is
    /// installed, software keys otherwise.
    Auto,
    /// Tokens on SoftHSM (an error without a store).
    SoftHsm,
    /// P-256 keys in 0600 files, handed to the collector in-process.
    Software,
}

/// What ward to prepare.
#[derive(Debug, Clone)]
pub struct WardOptions {
    /// The directory to write everything to (created; must not hold a ward yet).
    pub dir: PathBuf,
    /// The ward id (the collector's subject id).
    pub ward: String,
    /// How many patients are admitted (`P-0001`, `P-0002`, …).
    pub patients: usize,
    /// The devices each patient wears, one of each kind listed.
    pub kinds: Vec<DeviceKind>,
    /// The ledger.
    pub ledger: LedgerChoice,
    /// Storage's database.
    pub database: DatabaseChoice,
    /// The patients' cards.
    pub cards: CardBackend,
}

impl WardOptions {
    /// Two patients wearing one device of every kind, embedded ledger, SQLite, cards on
    /// SoftHSM when available.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ward: "ward-7".into(),
            patients: 2,
            kinds: DeviceKind::ALL.to_vec(),
            ledger: LedgerChoice::Embedded,
            database: DatabaseChoice::Sqlite,
            cards: CardBackend::Auto,
        }
    }
}

/// A staff member's (or lab's) subject id and certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffFiles {
    /// The subject id in the certificate.
    pub id: String,
    /// The certificate and key.
    pub files: CertificateFiles,
}

/// Where a patient's signing key is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientCard {
    /// A SoftHSM token labelled with the patient id, enrolled by the CA.
    SoftHsm {
        /// The RFC 7512 URI the collector opens (with module path and PIN file).
        pkcs11_uri: String,
        /// The user PIN's file (0600).
        pin_file: PathBuf,
    },
    /// A software key (unencrypted PKCS#8 PEM, 0600).
    Software {
        /// The key file.
        key: PathBuf,
    },
}

/// An admitted patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientFiles {
    /// The pseudonymous patient id.
    pub id: String,
    /// Room and bed.
    pub room: String,
    /// Bed.
    pub bed: String,
    /// The patient certificate (PEM).
    pub certificate: PathBuf,
    /// The signing key.
    pub card: PatientCard,
    /// The PC/SC bedside reader whose card stands for the patient's presence (the
    /// collector's `[[cards]] reader`): the token signs only while a card is in it.
    /// `None`: the token is always present.
    #[serde(default)]
    pub reader: Option<String>,
}

/// A certified, registered device worn by a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFiles {
    /// A readable name (`P-0001-ecg`).
    pub name: String,
    /// The kind.
    pub kind: DeviceKind,
    /// The EPC tag URI (`urn:epc:tag:sgtin-96:3.0614141.812341.1`).
    pub epc: String,
    /// The patient it is assigned to.
    pub patient: String,
    /// Its group (and rule) id.
    pub group: u32,
    /// The certificate and key.
    pub files: CertificateFiles,
}

impl DeviceFiles {
    /// The EPC.
    pub fn sgtin(&self) -> Result<Sgtin96, Error> {
        Ok(self
            .epc
            .parse::<Sgtin96>()
            .map_err(wardseal_core::Error::from)?)
    }
}

/// How storage and the collector reach the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerFiles {
    /// The deployed suite (`suite.json`).
    pub suite: PathBuf,
    /// The embedded chain's directory, for [`LedgerChoice::Embedded`].
    pub embedded_dir: Option<PathBuf>,
    /// The node's URL, for [`LedgerChoice::Rpc`].
    pub rpc_url: Option<String>,
    /// The account that deployed the contracts and anchors (`0x…`).
    pub account: String,
    /// Its hex private key (0600).
    pub key_file: PathBuf,
}

/// Everything a prepared ward is made of, as written to `DIR/ward.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WardFiles {
    /// The ward directory.
    pub dir: PathBuf,
    /// The ward id.
    pub ward: String,
    /// The CA directory (`wardseal-pki --ca DIR …`).
    pub ca_dir: PathBuf,
    /// The CA key passphrase's file (0600).
    pub ca_passphrase: PathBuf,
    /// The CA bundle (root + issuing CA, PEM).
    pub ca_bundle: PathBuf,
    /// The CRL (PEM), rewritten by every revocation.
    pub crl: PathBuf,
    /// Storage's server certificate.
    pub storage: CertificateFiles,
    /// The collector's server (and storage client) certificate.
    pub collector: CertificateFiles,
    /// An administrator (`admin-1`), for storage's admin API.
    pub admin: StaffFiles,
    /// The nurse assigned to every patient.
    pub nurse: StaffFiles,
    /// A nurse assigned to no patient (her reads are refused).
    pub other_nurse: StaffFiles,
    /// A laboratory (an authority registered on chain as `lab-1`), assigned to nobody:
    /// it reads only with a patient's grant on chain.
    pub lab: StaffFiles,
    /// The patients.
    pub patients: Vec<PatientFiles>,
    /// The devices.
    pub devices: Vec<DeviceFiles>,
    /// The ledger.
    pub ledger: LedgerFiles,
    /// Storage's database URL (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    /// Storage's loopback port.
    pub storage_port: u16,
    /// The collector's loopback port.
    pub collector_port: u16,
    /// The collector's configuration.
    pub collector_config: PathBuf,
    /// The SoftHSM configuration the cards are on (`SOFTHSM2_CONF` for every process
    /// that opens them), when they are on SoftHSM.
    pub softhsm_conf: Option<PathBuf>,
    /// Where the collector reads CRLs (files or the CA's `http://` distribution points,
    /// as `wardseal-pki crl --serve` serves them); empty: the CRL file [`WardFiles::crl`].
    #[serde(default)]
    pub collector_crls: Vec<String>,
}

/// Writes a private SoftHSM store under `ward_dir/softhsm` and returns its configuration
/// file: start the processes that use the ward's cards with `SOFTHSM2_CONF` naming it.
/// Returns `None` when SoftHSM's module is not installed.
pub fn softhsm_store(ward_dir: &Path) -> Result<Option<PathBuf>, Error> {
    if wardseal_softhsm::find_module().is_err() {
        return Ok(None);
    }
    let dir = ward_dir.join("softhsm");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| Error::io("create", &tokens, e))?;
    let conf = dir.join("softhsm2.conf");
    let text = format!(
        "# the ward's private SoftHSM store (wardseal-sim)\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n",
        tokens.display()
    );
    std::fs::write(&conf, text).map_err(|e| Error::io("write", &conf, e))?;
    Ok(Some(conf))
}

fn private_write(path: &Path, contents: &[u8]) -> Result<(), Error> {
    Ok(wardseal_pki::key::write_private_file(path, contents)?)
}

fn subject(id: &str) -> Result<SubjectId, Error> {
    Ok(SubjectId::new(id).map_err(wardseal_core::Error::from)?)
}

impl LedgerFiles {
    /// Where the ledger is.
    pub fn location(&self) -> Result<LedgerLocation, Error> {
        Ok(LedgerLocation::from_choice(
            self.embedded_dir.clone(),
            self.rpc_url.as_deref(),
        )?)
    }
}

/// Opens the ward's ledger as its account.
pub fn open_ledger(files: &LedgerFiles) -> Result<Ledger<AnyBackend>, Error> {
    let key = AccountKey::read(&files.key_file)?;
    Ok(files
        .location()?
        .open(LedgerAccount::Key(key), &files.suite)?)
}

impl WardFiles {
    /// Prepares a ward in `options.dir` (see the module documentation).
    pub async fn prepare(options: &WardOptions) -> Result<Self, Error> {
        if options.patients == 0 || options.patients > 9_999 {
            return Err(Error::Options(format!(
                "{} patients: expected 1 to 9999",
                options.patients
            )));
        }
        let dir = &options.dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io("resolve", dir, e))?;
        if dir.join(WARD_FILE).exists() || dir.join("ca").exists() {
            return Err(Error::Options(format!(
                "{} already holds a ward: choose an empty directory",
                dir.display()
            )));
        }
        let ward = options.ward.as_str();
        let pki = TestPki::create(&dir).await?;

        // The ledger: contracts, one rule per device group, the anchoring role.
        let key_file = dir.join("ledger-account.key");
        let (ledger, embedded_dir, rpc_url) = match &options.ledger {
            LedgerChoice::Embedded => {
                let key = AccountKey::generate();
                key.write_new(&key_file)?;
                let chain_dir = dir.join("chain");
                let backend =
                    LedgerLocation::Embedded(chain_dir.clone()).backend(LedgerAccount::Key(key))?;
                (Ledger::deploy(backend).await?, Some(chain_dir), None)
            }
            LedgerChoice::Rpc {
                url,
                key_file: given,
            } => {
                let key = AccountKey::read(given)?;
                key.write_new(&key_file)?;
                let backend = LedgerLocation::rpc(url)?.backend(LedgerAccount::Key(key))?;
                (Ledger::deploy(backend).await?, None, Some(url.clone()))
            }
        };
        let account: Address = ledger.account();
        ledger.grant_role(Role::Anchorer, account).await?;
        let mut kinds = options.kinds.clone();
        kinds.sort();
        kinds.dedup();
        for kind in &kinds {
            ledger.create_rule(kind.group()).await?;
            for rule in kind.type_rules()? {
                ledger.set_type_rule(kind.group(), &rule).await?;
            }
            ledger.set_group_rule(kind.group(), kind.group()).await?;
        }
        let suite = dir.join("suite.json");
        ledger.suite().save(&suite)?;

        // Servers and people.
        let certs = dir.join("certs");
        let storage = pki
            .issue_in(Identity::storage(None, None), &certs, "storage", ward)
            .await?;
        let collector = pki
            .issue_in(
                Identity::collector(subject(ward)?, None, None, None),
                &certs,
                "collector",
                ward,
            )
            .await?;
        let staff = |id: &'static str, identity: Identity| {
            let (pki, certs) = (&pki, &certs);
            async move {
                Ok::<_, Error>(StaffFiles {
                    id: id.to_owned(),
                    files: pki.issue_in(identity, certs, id, ward).await?,
                })
            }
        };
        let admin = staff("admin-1", Identity::admin(Some(subject("admin-1")?), None)).await?;
        let nurse = staff("nurse-1", Identity::staff(subject("nurse-1")?)).await?;
        let other_nurse = staff("nurse-2", Identity::staff(subject("nurse-2")?)).await?;
        // A laboratory (seed 2's layer 2): registered and bound on chain, it reads only the
        // records of a patient whose account grants it access (docs/authorities.md).
        let lab = staff(
            "lab-1",
            Identity::authority(subject("lab-1")?, AuthorityKind::Laboratory),
        )
        .await?;
        ledger
            .register_authority("lab-1", AuthorityKind::Laboratory)
            .await?;
        ledger.bind_authority_subject("lab-1", "lab-1").await?;

        // Patients and their cards.
        let softhsm_conf = match options.cards {
            CardBackend::Software => None,
            CardBackend::SoftHsm => Some(inherited_softhsm()?.ok_or_else(|| {
                Error::Options(
                    "cards on SoftHSM need SoftHSM installed and SOFTHSM2_CONF set for this process"
                        .into(),
                )
            })?),
            CardBackend::Auto => inherited_softhsm()?,
        };
        let cards_dir = dir.join("cards");
        std::fs::create_dir_all(&cards_dir).map_err(|e| Error::io("create", &cards_dir, e))?;
        let ids: Vec<String> = (1..=options.patients)
            .map(|number| format!("P-{number:04}"))
            .collect();
        if softhsm_conf.is_some() {
            // SoftHSM lists its tokens when the module is first loaded, so every token
            // exists before the first enrollment loads it in this process.
            init_tokens(&cards_dir, &ids)?;
        }
        let mut patients = Vec::with_capacity(options.patients);
        for (index, id) in ids.into_iter().enumerate() {
            let number = index + 1;
            let (certificate, card) = match &softhsm_conf {
                Some(_) => enroll_on_softhsm(&pki, &cards_dir, &id, ward).await?,
                None => {
                    let issued = pki
                        .issue_in(Identity::patient(subject(&id)?), &cards_dir, &id, ward)
                        .await?;
                    (
                        issued.certificate,
                        PatientCard::Software { key: issued.key },
                    )
                }
            };
            patients.push(PatientFiles {
                room: format!("{}", 100 + number),
                bed: "A".into(),
                id,
                certificate,
                card,
                reader: None,
            });
        }

        // Devices: one of each kind per patient, certified and registered.
        let devices_dir = dir.join("devices");
        let mut devices = Vec::new();
        for (index, patient) in patients.iter().enumerate() {
            for kind in &kinds {
                let serial = index + 1;
                let epc: Sgtin96 = format!(
                    "urn:epc:tag:sgtin-96:3.{COMPANY_PREFIX}.{}.{serial}",
                    kind.item_reference()
                )
                .parse()
                .map_err(wardseal_core::Error::from)?;
                let name = format!("{}-{}", patient.id, kind.name());
                let files = pki
                    .issue_in(
                        Identity::device(epc.clone(), GroupId(kind.group()), RuleId(kind.group())),
                        &devices_dir,
                        &name,
                        ward,
                    )
                    .await?;
                ledger
                    .register_device(&Device {
                        epc: epc.to_bytes(),
                        group: kind.group(),
                        rule_id: kind.group(),
                        ward: ward.to_owned(),
                        active: true,
                    })
                    .await?;
                devices.push(DeviceFiles {
                    name,
                    kind: *kind,
                    epc: epc.tag_uri(),
                    patient: patient.id.clone(),
                    group: kind.group(),
                    files,
                });
            }
        }
        let list = devices_dir.join(DEVICES_FILE);
        let text = serde_json::to_vec_pretty(&devices).map_err(|source| Error::WardFile {
            path: list.clone(),
            source,
        })?;
        std::fs::write(&list, text).map_err(|e| Error::io("write", &list, e))?;
        // The embedded chain is opened by one process at a time: close it now.
        drop(ledger);

        let database_url = match &options.database {
            DatabaseChoice::Sqlite => format!("sqlite://{}", dir.join("storage.db").display()),
            DatabaseChoice::Postgres(url) => url.clone(),
        };
        let files = Self {
            ward: ward.to_owned(),
            ca_dir: TestPki::ca_dir(&dir),
            ca_passphrase: TestPki::passphrase_file(&dir),
            ca_bundle: pki.ca_bundle().to_owned(),
            crl: pki.crl(),
            storage,
            collector,
            admin,
            nurse,
            other_nurse,
            lab,
            patients,
            devices,
            ledger: LedgerFiles {
                suite,
                embedded_dir,
                rpc_url,
                account: account.to_checksum(None),
                key_file,
            },
            database_url,
            storage_port: wardseal_testkit::free_port()?,
            collector_port: wardseal_testkit::free_port()?,
            collector_config: dir.join("collector.toml"),
            softhsm_conf,
            collector_crls: Vec::new(),
            dir,
        };
        files.write_collector_config()?;
        files.save()?;
        Ok(files)
    }

    /// Reads the `ward.json` a [`WardFiles::prepare`] wrote in `dir`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(WARD_FILE);
        let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        serde_json::from_slice(&text).map_err(|source| Error::WardFile { path, source })
    }

    /// Writes the collector's configuration and `ward.json` again, after a change to
    /// [`WardFiles::collector_crls`] or to a patient's [`PatientFiles::reader`].
    pub fn rewrite(&self) -> Result<(), Error> {
        self.write_collector_config()?;
        self.save()
    }

    fn save(&self) -> Result<(), Error> {
        let path = self.dir.join(WARD_FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|source| Error::WardFile {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
    }

    fn write_collector_config(&self) -> Result<(), Error> {
        let dir = self.dir.display();
        let ledger = match (&self.ledger.embedded_dir, &self.ledger.rpc_url) {
            (Some(chain), _) => format!(
                "embedded_dir = \"{}\"\naccount = \"{}\"",
                chain.display(),
                self.ledger.account
            ),
            (None, Some(url)) => format!(
                "rpc_url = \"{url}\"\naccount_key_file = \"{}\"",
                self.ledger.key_file.display()
            ),
            (None, None) => String::new(),
        };
        let mut cards = String::new();
        for patient in &self.patients {
            match &patient.card {
                PatientCard::SoftHsm { pkcs11_uri, .. } => {
                    cards.push_str(&format!(
                        "\n[[cards]]\npatient = \"{}\"\npkcs11_uri = \"{pkcs11_uri}\"\n",
                        patient.id
                    ));
                    if let Some(reader) = &patient.reader {
                        cards.push_str(&format!("reader = \"{reader}\"\n"));
                    }
                }
                PatientCard::Software { .. } => cards.push_str(&format!(
                    "\n# {}: software key {}; the collector binary takes cards on tokens only,\n\
                     # so this card is handed to the collector in-process (wardseal-sim).\n",
                    patient.id,
                    patient.certificate.display()
                )),
            }
        }
        let crls: Vec<String> = if self.collector_crls.is_empty() {
            vec![format!("\"{}\"", self.crl.display())]
        } else {
            self.collector_crls
                .iter()
                .map(|source| format!("\"{source}\""))
                .collect()
        };
        let text = format!(
            r#"# Written by wardseal-sim for ward {ward}; see collector.example.toml for every key.
[collector]
ward = "{ward}"
listen = "127.0.0.1:{collector_port}"
drain_secs = 5

[tls]
certificate = "{certificate}"
key = "{key}"
ca_bundle = "{bundle}"
crls = [{crls}]
crl_refresh_secs = 5
crl_fetch_timeout_secs = 2

[spool]
path = "{dir}/spool.db"

[batch]
linger_ms = 50

[storage]
url = "https://127.0.0.1:{storage_port}"
assignments_refresh_secs = 1

[ledger]
suite = "{suite}"
{ledger}
anchor_interval_secs = 5
follow_interval_ms = 200
{cards}"#,
            ward = self.ward,
            collector_port = self.collector_port,
            certificate = self.collector.certificate.display(),
            key = self.collector.key.display(),
            bundle = self.ca_bundle.display(),
            crls = crls.join(", "),
            storage_port = self.storage_port,
            suite = self.ledger.suite.display(),
        );
        std::fs::write(&self.collector_config, text)
            .map_err(|e| Error::io("write", &self.collector_config, e))
    }

    /// The arguments of `wardseal-storage` that serve this ward's storage
    /// (`--database … serve --listen 127.0.0.1:PORT …`).
    pub fn storage_args(&self) -> Vec<String> {
        let mut args = vec![
            "--database".to_owned(),
            self.database_url.clone(),
            "serve".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{}", self.storage_port),
            "--certificate".to_owned(),
            self.storage.certificate.display().to_string(),
            "--key".to_owned(),
            self.storage.key.display().to_string(),
            "--ca-bundle".to_owned(),
            self.ca_bundle.display().to_string(),
            "--crl".to_owned(),
            self.crl.display().to_string(),
            "--suite".to_owned(),
            self.ledger.suite.display().to_string(),
            "--ledger-key-file".to_owned(),
            self.ledger.key_file.display().to_string(),
            "--anchor-every".to_owned(),
            "5".to_owned(),
        ];
        match (&self.ledger.embedded_dir, &self.ledger.rpc_url) {
            (Some(dir), _) => args.extend(["--embedded".to_owned(), dir.display().to_string()]),
            (None, Some(url)) => args.extend(["--rpc".to_owned(), url.clone()]),
            (None, None) => {}
        }
        args
    }

    /// The arguments of `wardseal-collector` that run this ward's collector
    /// (`run --config DIR/collector.toml`).
    pub fn collector_args(&self) -> Vec<String> {
        vec![
            "run".to_owned(),
            "--config".to_owned(),
            self.collector_config.display().to_string(),
        ]
    }

    /// The collector's URL.
    pub fn collector_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.collector_port)
    }

    /// Storage's URL.
    pub fn storage_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.storage_port)
    }

    /// The devices of one patient.
    pub fn devices_of<'a>(&'a self, patient: &'a str) -> impl Iterator<Item = &'a DeviceFiles> {
        self.devices.iter().filter(move |d| d.patient == patient)
    }
}

/// Reads a device list ([`DEVICES_FILE`]) from `dir`.
pub fn load_devices(dir: &Path) -> Result<Vec<DeviceFiles>, Error> {
    let path = dir.join(DEVICES_FILE);
    let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    serde_json::from_slice(&text).map_err(|source| Error::WardFile { path, source })
}

/// The SoftHSM store this process was started with, if SoftHSM is installed.
fn inherited_softhsm() -> Result<Option<PathBuf>, Error> {
    if std::env::var_os(wardseal_softhsm::CONF_ENV).is_none()
        || wardseal_softhsm::find_module().is_err()
    {
        return Ok(None);
    }
    Ok(Some(
        wardseal_softhsm::SoftHsm::from_env()?
            .conf_path()
            .to_owned(),
    ))
}

/// Initialises one token per patient (labelled with the patient id) in this process's
/// SoftHSM store, each with its user PIN in `cards_dir/ID.pin` (0600).
fn init_tokens(cards_dir: &Path, patients: &[String]) -> Result<(), Error> {
    use wardseal_softhsm::{SoftHsm, TokenSpec};
    let hsm = SoftHsm::from_env()?;
    for patient in patients {
        // The demo's tokens hold simulated patients' keys; the default PIN is written to
        // a 0600 file so no prompt is needed, as a bedside token's would be by its
        // installer.
        hsm.init_token(&TokenSpec::new(patient))?;
        private_write(
            &cards_dir.join(format!("{patient}.pin")),
            TokenSpec::DEFAULT_USER_PIN.as_bytes(),
        )?;
    }
    Ok(())
}

/// Enrolls `patient`'s token (see [`init_tokens`]): key generated on the token, patient
/// certificate issued by the CA and written back, and to `cards_dir/ID.pem`.
async fn enroll_on_softhsm(
    pki: &TestPki,
    cards_dir: &Path,
    patient: &str,
    ward: &str,
) -> Result<(PathBuf, PatientCard), Error> {
    let hsm = wardseal_softhsm::SoftHsm::from_env()?;
    let pin_file = cards_dir.join(format!("{patient}.pin"));
    let enrolled = pki.enroll_card(&hsm, patient, &pin_file, ward).await?;
    let certificate = cards_dir.join(format!("{patient}.pem"));
    std::fs::write(&certificate, &enrolled.certificate_pem)
        .map_err(|e| Error::io("write", &certificate, e))?;
    Ok((
        certificate,
        PatientCard::SoftHsm {
            pkcs11_uri: enrolled.pkcs11_uri,
            pin_file,
        },
    ))
}

/// A ward running in this process: storage and the collector on loopback.
pub struct RunningWard {
    files: WardFiles,
    pki: TestPki,
    ledger: Ledger<AnyBackend>,
    storage: Server,
    collector: Daemon,
}

impl std::fmt::Debug for RunningWard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWard")
            .field("dir", &self.files.dir)
            .field("collector", &self.collector.local_addr())
            .field("storage_port", &self.files.storage_port)
            .finish_non_exhaustive()
    }
}

impl RunningWard {
    /// Starts storage and the collector of a prepared ward in this process, admits the
    /// patients, assigns their devices and the nurse (`nurse-1`) to them, and waits
    /// (bounded) until the collector has learnt the assignments from storage.
    pub async fn start(files: &WardFiles) -> Result<Self, Error> {
        let pki = TestPki::open(&files.dir).await?;
        let ledger = open_ledger(&files.ledger)?;
        let storage = start_storage(files, ledger.clone()).await?;
        admit(files, &storage.storage().store).await?;

        let config = load_config(&files.collector_config, Vec::new())?;
        let mut cards = open_cards(&config)?;
        for patient in &files.patients {
            if let PatientCard::Software { key } = &patient.card {
                cards.push((
                    subject(&patient.id)?,
                    software_card(key, &patient.certificate)?,
                ));
            }
        }
        let collector = Daemon::start(&config, ledger.clone(), cards).await?;
        let running = Self {
            files: files.clone(),
            pki,
            ledger,
            storage,
            collector,
        };
        running.wait_for_assignments().await?;
        Ok(running)
    }

    async fn wait_for_assignments(&self) -> Result<(), Error> {
        let mut epcs = Vec::with_capacity(self.files.devices.len());
        for device in &self.files.devices {
            epcs.push(device.sgtin()?);
        }
        let deadline = Instant::now() + ASSIGNMENT_WAIT;
        loop {
            let replica = self.collector.replica();
            if epcs.iter().all(|epc| replica.patient(epc).is_some()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "the collector to fetch the device assignments from storage".into(),
                    seconds: ASSIGNMENT_WAIT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The files the ward runs from.
    pub fn files(&self) -> &WardFiles {
        &self.files
    }

    /// The CA: issue more certificates, revoke, republish the CRL (then
    /// [`RunningWard::reload_crls`]).
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// The ledger, as the ward's account (rules, registry, consent, anchors).
    pub fn ledger(&self) -> &Ledger<AnyBackend> {
        &self.ledger
    }

    /// Storage (its store, chain and TLS), for checks and administration.
    pub fn storage(&self) -> &Arc<Storage> {
        self.storage.storage()
    }

    /// The collector (spool, metrics, replica).
    pub fn collector(&self) -> &Daemon {
        &self.collector
    }

    /// Where the collector listens.
    pub fn collector_addr(&self) -> SocketAddr {
        self.collector.local_addr()
    }

    /// Where storage listens.
    pub fn storage_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.files.storage_port))
    }

    /// The collector's endpoint for [`Connection::open`].
    pub fn collector_endpoint(&self) -> Endpoint {
        endpoint(self.collector_addr().port())
    }

    /// Storage's endpoint for [`Connection::open`].
    pub fn storage_endpoint(&self) -> Endpoint {
        endpoint(self.files.storage_port)
    }

    /// A client TLS configuration presenting `files`' certificate and trusting the CA.
    pub fn client_config(
        &self,
        files: &CertificateFiles,
    ) -> Result<Arc<rustls::ClientConfig>, Error> {
        client_config(&self.files.ca_bundle, files)
    }

    /// Opens a mutual-TLS connection to the collector as `files`' holder.
    pub async fn connect_collector(&self, files: &CertificateFiles) -> Result<Connection, Error> {
        connect(&self.collector_endpoint(), self.client_config(files)?).await
    }

    /// Opens a mutual-TLS connection to storage as `files`' holder.
    pub async fn connect_storage(&self, files: &CertificateFiles) -> Result<Connection, Error> {
        connect(&self.storage_endpoint(), self.client_config(files)?).await
    }

    /// Re-reads the CRLs (and certificates) in storage and the collector now, rather than
    /// at their next periodic refresh.
    pub fn reload_crls(&self) -> Result<(), Error> {
        self.collector.reload()?;
        self.storage.reload()?;
        Ok(())
    }

    /// Anchors the collector's unanchored rule decisions now; returns the anchored root
    /// (hex) and how many decisions it covers, or `None` when there were none.
    pub async fn anchor_decisions(&self) -> Result<Option<(String, u64)>, Error> {
        let log = wardseal_collector::decision_log::log_id(&self.files.ward);
        let round = wardseal_collector::decision_log::anchor_once(
            self.collector.spool(),
            &self.ledger,
            log,
            1_000_000,
        )
        .await?;
        Ok(round.map(|round| (round.anchor.root.to_string(), round.anchor.count)))
    }

    /// Anchors storage's unanchored access-log entries now; returns the root (hex) and
    /// how many entries it covers, or `None` when there were none.
    pub async fn anchor_access_log(&self) -> Result<Option<(String, u64)>, Error> {
        Ok(wardseal_storage::access::anchor(self.storage.storage())
            .await?
            .map(|(root, count)| (root.to_string(), count)))
    }

    /// Anchors storage's unanchored batch-log entries (the stored batches' header hashes)
    /// now; returns the root (hex) and count, or `None` when nothing was new.
    pub async fn anchor_batches(&self) -> Result<Option<(String, u64)>, Error> {
        Ok(wardseal_storage::batch_log::anchor(self.storage.storage())
            .await?
            .map(|anchor| {
                let count = anchor.last_entry - anchor.first_entry + 1;
                (anchor.root.to_string(), u64::try_from(count).unwrap_or(0))
            }))
    }

    /// Stops the collector (draining in-flight requests, a last batching and delivery
    /// round), then storage, and closes the database.
    pub async fn shutdown(self) {
        self.collector.shutdown().await;
        self.storage.shutdown().await;
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}

/// A client TLS configuration (HTTP/2 and HTTP/1.1) presenting `files`' certificate and
/// trusting `ca_bundle`.
pub fn client_config(
    ca_bundle: &Path,
    files: &CertificateFiles,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    Ok(
        ClientTlsSettings::new(ca_bundle, &files.certificate, &files.key)
            .client_config(&[b"h2", b"http/1.1"])?,
    )
}

async fn connect(
    endpoint: &Endpoint,
    config: Arc<rustls::ClientConfig>,
) -> Result<Connection, Error> {
    Connection::open(endpoint, config)
        .await
        .map_err(|error| Error::Request {
            target: endpoint.to_string(),
            reason: error.to_string(),
        })
}

fn software_card(key: &Path, certificate: &Path) -> Result<Card, Error> {
    let pem = std::fs::read_to_string(key).map_err(|e| Error::io("read", key, e))?;
    let (_, document) = pkcs8::SecretDocument::from_pem(&pem)
        .map_err(|e| Error::Options(format!("{} is not a PKCS#8 PEM key: {e}", key.display())))?;
    let certificate_der = wardseal_net::files::certificates("patient certificate", certificate)?
        .into_iter()
        .next()
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| Error::Options(format!("{} holds no certificate", certificate.display())))?;
    let signer = wardseal_card::SoftwareSigner::from_pkcs8_der(document.as_bytes())?
        .with_certificate(certificate_der.clone());
    Ok(Card {
        signer: Arc::new(signer),
        certificate: certificate_der,
    })
}

/// Starts storage the way `wardseal-storage serve` does, without the anchoring timer (the
/// simulator anchors at the moments it reports on).
async fn start_storage(files: &WardFiles, ledger: Ledger<AnyBackend>) -> Result<Server, Error> {
    let mut settings = ServerTlsSettings::new(
        &files.storage.certificate,
        &files.storage.key,
        &files.ca_bundle,
    );
    settings.crls.push(files.crl.clone());
    let address = SocketAddr::from(([127, 0, 0, 1], files.storage_port));
    let mut config = ServerConfig::new(files.database_url.clone(), address, settings);
    config.anchor_interval = None;
    config.drain_timeout = Duration::from_secs(2);
    Ok(Server::start(&config, ledger).await?)
}

/// Admits every patient of `files` in `store`, assigns their devices (from an hour ago,
/// so readings timed a little in the past are attributed) and the nurse. Idempotent for a
/// restarted ward: an admission or assignment already there is kept.
pub async fn admit(files: &WardFiles, store: &Store) -> Result<(), Error> {
    let since = wardseal_storage::store::now_micros() - 3_600_000_000;
    let nurse = subject(&files.nurse.id)?;
    for patient in &files.patients {
        if store.admission(&patient.id).await?.is_none() {
            let id = subject(&patient.id)?;
            store
                .admit(&id, &files.ward, &patient.room, &patient.bed, None)
                .await?;
            for device in files.devices_of(&patient.id) {
                store
                    .assign_device(&device.sgtin()?.pure_identity_uri(), &patient.id, since)
                    .await?;
            }
            store.assign_staff(&nurse, &id, "nurse").await?;
        }
    }
    Ok(())
}
