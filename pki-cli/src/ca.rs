//! The CA directory: creating it, opening it, unlocking the issuing key, and the
//! operations that change the inventory (issue, renew, revoke, CRL).
//!
//! ```text
//! <ca-dir>/            0700
//!   ca.db              0600  settings, inventory, audit log (SQLite)
//!   root.key           0600  encrypted PKCS#8, only from `init` (absent when the key is on
//!                            a token or the root is offline: see [`crate::root`];
//!                            `root adopt` moves it out)
//!   issuing.key        0600  encrypted PKCS#8 (absent when on a token)
//!   root.crt, issuing.crt, chain.pem (issuing then root), crl.pem   0644
//!   root-crl.pem, crl-set.pem (root CRL then crl.pem)   0644, with an offline root
//! ```

use std::fmt;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pkcs8::der::pem::LineEnding;
use sqlx::Row;
use time::{Duration, OffsetDateTime};
use wardseal_core::identity::Identity;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::audit;
use crate::crl::{self, Crl, RevocationReason};
use crate::csr::CsrKey;
use crate::error::{CaError, Cause, Error, InventoryError, KeyError, ProfileError};
use crate::inventory::{CertificateRecord, DATABASE_FILE, Inventory, Revocation, format_time};
use crate::key::{self, KeyAlgorithm, SecretSource, SubjectKeyPair};
use crate::profile::{Request, ca_params};
use crate::public_key::{self, CertifiedKey, SubjectPublicKey};
use crate::serial::SerialNumber;
use crate::signer::CaKey;
use crate::token::{Pkcs11Uri, TokenKey};

/// The root certificate's file in the CA directory.
pub const ROOT_CERTIFICATE_FILE: &str = "root.crt";
/// The issuing CA certificate's file.
pub const ISSUING_CERTIFICATE_FILE: &str = "issuing.crt";
/// Issuing then root certificate, for `openssl verify -untrusted` and TLS servers.
pub const CHAIN_FILE: &str = "chain.pem";
/// The root key's file, when it is not on a token.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The issuing key's file, when it is not on a token.
pub const ISSUING_KEY_FILE: &str = "issuing.key";
/// The latest CRL written by [`SigningCa::crl`].
pub const CRL_FILE: &str = "crl.pem";

/// Where a CA key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// An encrypted PKCS#8 file in the CA directory.
    File(String),
    /// A key on a PKCS#11 token.
    Token(Pkcs11Uri),
    /// The root key, in an offline root directory ([`crate::root`]) this CA never opens.
    Offline(PathBuf),
}

impl KeyLocation {
    fn to_text(&self) -> String {
        match self {
            Self::File(name) => format!("file:{name}"),
            Self::Token(uri) => uri.to_string(),
            Self::Offline(dir) => format!("offline:{}", dir.display()),
        }
    }

    fn from_text(text: &str) -> Result<Self, Error> {
        if let Some(dir) = text.strip_prefix("offline:") {
            return Ok(Self::Offline(PathBuf::from(dir)));
        }
        match text.strip_prefix("file:") {
            Some(name) => Ok(Self::File(name.to_owned())),
            None => Ok(Self::Token(Pkcs11Uri::parse(text)?)),
        }
    }

    fn load(&self, dir: &Path, secrets: &Secrets) -> Result<CaKey, Error> {
        match self {
            Self::File(name) => {
                let passphrase = secrets.passphrase()?.passphrase(false)?;
                Ok(CaKey::new(key::read_encrypted_key(
                    &dir.join(name),
                    &passphrase,
                )?))
            }
            Self::Token(uri) => Ok(CaKey::new(TokenKey::open(uri, secrets.pin.as_ref())?)),
            Self::Offline(dir) => Err(CaError::BadSetting {
                setting: "issuing key",
                reason: format!(
                    "the key is offline in {}; only `wardseal-pki root` commands use it",
                    dir.display()
                ),
            }
            .into()),
        }
    }
}

/// Where the CA's secrets come from: the key-file passphrase and the token PIN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// The passphrase of the key files (asked at the terminal when absent).
    pub passphrase: Option<SecretSource>,
    /// The token PIN (the URI's `pin-source`, else a prompt, when absent).
    pub pin: Option<SecretSource>,
}

impl Secrets {
    fn passphrase(&self) -> Result<SecretSource, KeyError> {
        Ok(self.passphrase.clone().unwrap_or(SecretSource::Prompt))
    }
}

/// Where `init` puts a CA key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    /// Generate it and store it encrypted in the CA directory.
    GenerateFile,
    /// Use an existing key on a token.
    Token(Pkcs11Uri),
    /// The root only: an offline root directory ([`crate::root`]) signs the issuing CA;
    /// its key is read with `passphrase` for this once and stays in that directory.
    Offline {
        /// The root directory.
        dir: PathBuf,
        /// The root key's passphrase.
        passphrase: SecretSource,
    },
}

/// What `init` creates.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The CA directory (created 0700 if missing; must not hold a CA).
    pub dir: PathBuf,
    /// The organisation (subject O of every certificate).
    pub organisation: String,
    /// The algorithm of generated CA keys.
    pub algorithm: KeyAlgorithm,
    /// Where the root key is.
    pub root_key: KeyPlacement,
    /// Where the issuing key is.
    pub issuing_key: KeyPlacement,
    /// The CRL URL put in every certificate's CRL distribution point.
    pub crl_url: Option<String>,
    /// Days from one CRL to its `nextUpdate`.
    pub crl_days: u32,
    /// Validity of the root: start and end.
    pub root_validity: (OffsetDateTime, OffsetDateTime),
    /// Validity of the issuing CA: start and end (an offline root shortens it to its own).
    pub issuing_validity: (OffsetDateTime, OffsetDateTime),
    /// The issuing CA's common name (default "`<organisation> wardseal issuing CA`"); give
    /// each issuing CA under one root its own.
    pub issuing_name: Option<String>,
}

impl InitOptions {
    /// Defaults: P-256 keys in files, root valid 20 years, issuing CA 5 years (both from
    /// an hour ago, so that certificates backdated for clock skew fall inside), CRLs every
    /// 7 days, no CRL URL.
    pub fn new(dir: impl Into<PathBuf>, organisation: impl Into<String>) -> Self {
        let now = now() - Duration::hours(1);
        Self {
            dir: dir.into(),
            organisation: organisation.into(),
            algorithm: KeyAlgorithm::EcdsaP256,
            root_key: KeyPlacement::GenerateFile,
            issuing_key: KeyPlacement::GenerateFile,
            crl_url: None,
            crl_days: 7,
            root_validity: (now, now + Duration::days(20 * 365)),
            issuing_validity: (now, now + Duration::days(5 * 365)),
            issuing_name: None,
        }
    }
}

/// The CA's settings, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaSettings {
    /// Subject O of every certificate.
    pub organisation: String,
    /// The algorithm of generated CA keys.
    pub key_algorithm: String,
    /// The CRL URL, if any.
    pub crl_url: Option<String>,
    /// Days from one CRL to its `nextUpdate`.
    pub crl_days: u32,
    /// The root certificate (DER).
    #[serde(skip)]
    pub root_certificate: Vec<u8>,
    /// The issuing CA certificate (DER).
    #[serde(skip)]
    pub issuing_certificate: Vec<u8>,
    /// Where the root key is.
    #[serde(skip)]
    pub root_key: KeyLocation,
    /// Where the issuing key is.
    #[serde(skip)]
    pub issuing_key: KeyLocation,
}

/// An opened CA directory. Reading needs no secret; signing needs [`Ca::unlock`].
#[derive(Debug)]
pub struct Ca {
    dir: PathBuf,
    inventory: Inventory,
    settings: CaSettings,
}

/// The current time, to the second (certificates and the database hold seconds).
pub(crate) fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// DER to PEM.
pub fn pem(label: &str, der: &[u8]) -> Result<String, Error> {
    pkcs8::der::pem::encode_string(label, LineEnding::LF, der)
        .map_err(|error| Error::encoding("encode PEM", Cause::message(error.to_string())))
}

impl Ca {
    /// Creates a CA: root and issuing keys and certificates, the database, the first
    /// audit entry.
    pub async fn init(
        options: &InitOptions,
        secrets: &Secrets,
        actor: &str,
    ) -> Result<Self, Error> {
        if !options.algorithm.suits_ca() {
            return Err(CaError::BadSetting {
                setting: "--algorithm",
                reason: format!(
                    "{} is not offered for CA keys; use p256, p384 or rsa3072",
                    options.algorithm
                ),
            }
            .into());
        }
        if options.crl_days == 0 || options.crl_days > 366 {
            return Err(CaError::BadSetting {
                setting: "--crl-days",
                reason: "must be 1 to 366".into(),
            }
            .into());
        }
        if let Some(url) = &options.crl_url
            && !(url.starts_with("http://") && url.is_ascii() && url.len() > 7)
        {
            return Err(CaError::BadSetting {
                setting: "--crl-url",
                reason: format!(
                    "{url:?} is not an http:// URL (RFC 5280 CRLs are fetched over plain HTTP)"
                ),
            }
            .into());
        }
        let dir = &options.dir;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| Error::io("create", dir, error))?;
        let database = dir.join(DATABASE_FILE);
        if database.exists() {
            return Err(CaError::AlreadyInitialised { path: dir.clone() }.into());
        }
        let needs_passphrase = [&options.root_key, &options.issuing_key]
            .iter()
            .any(|placement| **placement == KeyPlacement::GenerateFile);
        let passphrase = if needs_passphrase {
            let passphrase = secrets.passphrase()?.passphrase(true)?;
            passphrase.check_strength()?;
            Some(passphrase)
        } else {
            None
        };
        let place = |placement: &KeyPlacement, file: &str| -> Result<(CaKey, KeyLocation), Error> {
            match (placement, &passphrase) {
                (KeyPlacement::GenerateFile, Some(passphrase)) => {
                    let key = options.algorithm.generate()?;
                    key::write_encrypted_key(&dir.join(file), &key, passphrase)?;
                    Ok((CaKey::new(key), KeyLocation::File(file.to_owned())))
                }
                (KeyPlacement::Token(uri), _) => Ok((
                    CaKey::new(TokenKey::open(uri, secrets.pin.as_ref())?),
                    KeyLocation::Token(uri.clone()),
                )),
                (KeyPlacement::Offline { .. }, _) => Err(CaError::BadSetting {
                    setting: "issuing key",
                    reason: "only the root key can be offline".into(),
                }
                .into()),
                (KeyPlacement::GenerateFile, None) => Err(KeyError::SecretUnavailable {
                    what: "CA key passphrase".into(),
                    source_description: "nowhere".into(),
                    reason: "no passphrase source".into(),
                }
                .into()),
            }
        };
        let (issuing_key, issuing_location) = place(&options.issuing_key, ISSUING_KEY_FILE)?;
        let organisation = options.organisation.as_str();
        if organisation.trim().is_empty() || organisation.chars().count() > 64 {
            return Err(CaError::BadSetting {
                setting: "--organisation",
                reason: "must be 1 to 64 characters".into(),
            }
            .into());
        }
        let issuing_name = options
            .issuing_name
            .clone()
            .unwrap_or_else(|| format!("{organisation} wardseal issuing CA"));
        crate::profile::check_text("issuing CA name", &issuing_name, 64)?;
        let mut issuing_params = ca_params(
            &issuing_name,
            organisation,
            Some(0),
            options.issuing_validity.0,
            options.issuing_validity.1,
            &SerialNumber::random(),
        );
        let (root_der, issuing_der, root_location) = if let KeyPlacement::Offline {
            dir: root_dir,
            passphrase: root_passphrase,
        } = &options.root_key
        {
            let mut root = crate::root::OfflineRoot::open(root_dir)?.unlock(root_passphrase)?;
            issuing_params.not_after = issuing_params.not_after.min(root.not_after());
            let issuing_certificate = issuing_params
                .signed_by(&issuing_key, &root.issuer)
                .map_err(|error| Error::encoding("sign the issuing CA certificate", error))?;
            let issuing_der = issuing_certificate.der().to_vec();
            root.record_issued(&issuing_der)?;
            let root_dir = fs::canonicalize(root_dir).unwrap_or_else(|_| root_dir.clone());
            (
                root.root().certificate().to_vec(),
                issuing_der,
                KeyLocation::Offline(root_dir),
            )
        } else {
            let (root_key, root_location) = place(&options.root_key, ROOT_KEY_FILE)?;
            let root_params = ca_params(
                &format!("{organisation} wardseal root CA"),
                organisation,
                None,
                options.root_validity.0,
                options.root_validity.1,
                &SerialNumber::random(),
            );
            let root_certificate = root_params
                .self_signed(&root_key)
                .map_err(|error| Error::encoding("sign the root certificate", error))?;
            let root_issuer = rcgen::Issuer::new(root_params, &root_key);
            let issuing_certificate = issuing_params
                .signed_by(&issuing_key, &root_issuer)
                .map_err(|error| Error::encoding("sign the issuing CA certificate", error))?;
            (
                root_certificate.der().to_vec(),
                issuing_certificate.der().to_vec(),
                root_location,
            )
        };
        crate::root::write_ca_files(dir, &root_der, &issuing_der)?;

        let inventory = Inventory::create(&database).await?;
        let settings = CaSettings {
            organisation: organisation.to_owned(),
            key_algorithm: options.algorithm.name().to_owned(),
            crl_url: options.crl_url.clone(),
            crl_days: options.crl_days,
            root_certificate: root_der,
            issuing_certificate: issuing_der,
            root_key: root_location,
            issuing_key: issuing_location,
        };
        let mut transaction = inventory.write().await?;
        sqlx::query(
            "INSERT INTO ca (id, organisation, name, key_algorithm, root_certificate, \
             issuing_certificate, root_key, issuing_key, crl_url, crl_days, created_at) \
             VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&settings.organisation)
        .bind(format!("{organisation} wardseal CA"))
        .bind(&settings.key_algorithm)
        .bind(&settings.root_certificate)
        .bind(&settings.issuing_certificate)
        .bind(settings.root_key.to_text())
        .bind(settings.issuing_key.to_text())
        .bind(&settings.crl_url)
        .bind(i64::from(settings.crl_days))
        .bind(now().unix_timestamp())
        .execute(&mut *transaction)
        .await
        .map_err(|error| inventory.error("record the CA", error))?;
        audit::append(
            &inventory,
            &mut transaction,
            actor,
            "init",
            &serde_json::json!({
                "organisation": settings.organisation,
                "algorithm": settings.key_algorithm,
                "root_key": settings.root_key.to_text(),
                "issuing_key": settings.issuing_key.to_text(),
                "crl_url": settings.crl_url,
            }),
        )
        .await?;
        inventory.commit(transaction).await?;
        Ok(Self {
            dir: dir.clone(),
            inventory,
            settings,
        })
    }

    /// Opens an existing CA directory.
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let database = dir.join(DATABASE_FILE);
        if !database.is_file() {
            return Err(CaError::NotInitialised { path: dir }.into());
        }
        let inventory = Inventory::open(&database).await?;
        let row = sqlx::query("SELECT * FROM ca WHERE id = 1")
            .fetch_optional(inventory.pool())
            .await
            .map_err(|error| inventory.error("read the CA settings", error))?
            .ok_or_else(|| CaError::NotInitialised { path: dir.clone() })?;
        let get = |error| inventory.error("decode the CA settings", error);
        let crl_days: i64 = row.try_get("crl_days").map_err(get)?;
        let settings = CaSettings {
            organisation: row.try_get("organisation").map_err(get)?,
            key_algorithm: row.try_get("key_algorithm").map_err(get)?,
            crl_url: row.try_get("crl_url").map_err(get)?,
            crl_days: u32::try_from(crl_days).unwrap_or(7),
            root_certificate: row.try_get("root_certificate").map_err(get)?,
            issuing_certificate: row.try_get("issuing_certificate").map_err(get)?,
            root_key: KeyLocation::from_text(&row.try_get::<String, _>("root_key").map_err(get)?)?,
            issuing_key: KeyLocation::from_text(
                &row.try_get::<String, _>("issuing_key").map_err(get)?,
            )?,
        };
        Ok(Self {
            dir,
            inventory,
            settings,
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The settings.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// Records that the root key now lives in an offline root directory (`root adopt`).
    pub(crate) async fn set_root_offline(&self, root_dir: &Path, actor: &str) -> Result<(), Error> {
        let root_dir = fs::canonicalize(root_dir).unwrap_or_else(|_| root_dir.to_owned());
        let location = KeyLocation::Offline(root_dir).to_text();
        let inventory = &self.inventory;
        let mut transaction = inventory.write().await?;
        sqlx::query("UPDATE ca SET root_key = ? WHERE id = 1")
            .bind(&location)
            .execute(&mut *transaction)
            .await
            .map_err(|error| inventory.error("record the offline root", error))?;
        audit::append(
            inventory,
            &mut transaction,
            actor,
            "root-adopt",
            &serde_json::json!({ "root_key": location }),
        )
        .await?;
        inventory.commit(transaction).await
    }

    /// Loads the issuing key (reading the passphrase or PIN) so that the CA can sign.
    pub fn unlock(&self, secrets: &Secrets) -> Result<SigningCa<'_>, Error> {
        let key = self.settings.issuing_key.load(&self.dir, secrets)?;
        let bad = || CaError::BadCaCertificate { which: "issuing" };
        let (_, certificate) =
            X509Certificate::from_der(&self.settings.issuing_certificate).map_err(|_| bad())?;
        let validity = certificate.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        let key_identifier = certificate
            .extensions()
            .iter()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .ok_or_else(bad)?;
        let issuer = rcgen::Issuer::from_ca_cert_der(
            &self.settings.issuing_certificate.as_slice().into(),
            key,
        )
        .map_err(|_| bad())?;
        Ok(SigningCa {
            ca: self,
            issuer,
            not_before,
            not_after,
            key_identifier,
        })
    }

    /// Revokes a certificate by serial.
    pub async fn revoke(
        &self,
        serial: &SerialNumber,
        reason: RevocationReason,
        invalidity_date: Option<OffsetDateTime>,
        actor: &str,
    ) -> Result<CertificateRecord, Error> {
        let inventory = &self.inventory;
        let mut transaction = inventory.write().await?;
        let mut record = inventory.certificate_in(&mut transaction, serial).await?;
        if record.revocation.is_some() {
            return Err(InventoryError::AlreadyRevoked {
                serial: serial.clone(),
            }
            .into());
        }
        let revocation = Revocation {
            revoked_at: now(),
            reason,
            invalidity_date,
        };
        inventory
            .mark_revoked(&mut transaction, serial, &revocation)
            .await?;
        audit::append(
            inventory,
            &mut transaction,
            actor,
            "revoke",
            &serde_json::json!({
                "serial": serial.to_string(),
                "reason": reason.name(),
                "invalidity_date": invalidity_date.map(format_time),
            }),
        )
        .await?;
        inventory.commit(transaction).await?;
        record.revocation = Some(revocation);
        Ok(record)
    }

    /// The serial of the valid certificate of an EPC (any form [`wardseal_core::epc::Sgtin96`]
    /// parses).
    pub async fn serial_for_epc(&self, epc: &str) -> Result<SerialNumber, Error> {
        let epc: wardseal_core::epc::Sgtin96 = epc.parse()?;
        let uri = epc.pure_identity_uri();
        let filter = crate::inventory::Filter {
            epc: Some(uri.clone()),
            status: Some(crate::inventory::Status::Valid),
            ..Default::default()
        };
        self.inventory
            .list(&filter)
            .await?
            .into_iter()
            .next()
            .map(|record| record.serial)
            .ok_or_else(|| InventoryError::UnknownEpc { epc: uri }.into())
    }

    /// The latest CRL written to the CA directory, if any (PEM).
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL_FILE)
    }
}

/// Where the subject's key comes from.
#[derive(Debug, Clone)]
pub enum SubjectKey {
    /// A verified CSR's public key.
    Csr(CsrKey),
    /// Generate a key and write it (unencrypted PKCS#8 PEM, 0600) to a new file.
    Generate {
        /// The algorithm.
        algorithm: KeyAlgorithm,
        /// The file to create.
        path: PathBuf,
    },
}

/// A certificate just issued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Issued {
    /// Its inventory record.
    #[serde(flatten)]
    pub record: CertificateRecord,
    /// The certificate (PEM).
    #[serde(skip)]
    pub pem: String,
    /// Where the generated key was written, if one was.
    pub key_path: Option<PathBuf>,
}

/// One line: the role and serial issued and, when a key was generated, where it went
/// (what `wardseal-pki issue --out` prints).
impl fmt::Display for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "issued {} serial {}",
            self.record.role, self.record.serial
        )?;
        if let Some(path) = &self.key_path {
            write!(f, ", key in {}", path.display())?;
        }
        Ok(())
    }
}

/// A CA with its issuing key loaded.
#[derive(Debug)]
pub struct SigningCa<'a> {
    ca: &'a Ca,
    issuer: rcgen::Issuer<'static, CaKey>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_identifier: Vec<u8>,
}

/// A certificate built but not yet recorded.
pub(crate) struct Built {
    pub(crate) record: CertificateRecord,
    pub(crate) pem: String,
}

impl SigningCa<'_> {
    /// The CA this signs for.
    pub fn ca(&self) -> &Ca {
        self.ca
    }

    /// Fails unless the issuing CA is valid at `at`.
    pub(crate) fn check_valid(&self, at: OffsetDateTime) -> Result<(), Error> {
        if at < self.not_before || at > self.not_after {
            return Err(CaError::Expired {
                not_before: format_time(self.not_before),
                not_after: format_time(self.not_after),
            }
            .into());
        }
        Ok(())
    }

    /// Builds and signs a certificate for `request` over `public_key` (no database access).
    pub(crate) fn build(
        &self,
        request: &Request,
        public_key: CertifiedKey<'_>,
        now: OffsetDateTime,
        renewal_of: Option<SerialNumber>,
    ) -> Result<Built, Error> {
        let serial = SerialNumber::random();
        let settings = &self.ca.settings;
        let params = request.certificate_params(
            &serial,
            now,
            &settings.organisation,
            settings.crl_url.as_deref(),
        )?;
        if params.not_after > self.not_after {
            return Err(CaError::OutlivesCa {
                requested: format_time(params.not_after),
                ca_not_after: format_time(self.not_after),
            }
            .into());
        }
        let (not_before, not_after) = (params.not_before, params.not_after);
        let der = public_key::sign_certificate(params, public_key, &self.issuer)?;
        let identity = &request.identity;
        let record = CertificateRecord {
            serial,
            role: identity.role(),
            common_name: request.subject_common_name(),
            epc: identity.device_id().map(|epc| epc.pure_identity_uri()),
            group_id: identity.group_id().map(|id| id.0),
            rule_id: identity.rule_id().map(|id| id.0),
            subject_id: identity.subject_id().map(ToString::to_string),
            ward: request.ward.clone(),
            not_before,
            not_after,
            issued_at: now,
            revocation: None,
            renewal_of,
            der,
        };
        Ok(Built {
            pem: pem("CERTIFICATE", &record.der)?,
            record,
        })
    }

    /// Issues one certificate.
    pub async fn issue(
        &self,
        request: &Request,
        key: &SubjectKey,
        actor: &str,
    ) -> Result<Issued, Error> {
        self.issue_inner(request, key, actor, None).await
    }

    async fn issue_inner(
        &self,
        request: &Request,
        key: &SubjectKey,
        actor: &str,
        renewal_of: Option<SerialNumber>,
    ) -> Result<Issued, Error> {
        let now = now();
        self.check_valid(now)?;
        request.check()?;
        let (built, key_path) = match key {
            SubjectKey::Csr(csr) => (
                self.build(request, csr.public_key().certified(), now, renewal_of)?,
                None,
            ),
            SubjectKey::Generate { algorithm, path } => {
                let pair = SubjectKeyPair::generate(*algorithm)?;
                let built = self.build(request, pair.certified(), now, renewal_of)?;
                key::write_plain_key(path, &pair)?;
                (built, Some(path.clone()))
            }
        };
        let recorded = self
            .record(std::slice::from_ref(&built.record), actor, "issue")
            .await;
        if let Err(error) = recorded {
            if let Some(path) = &key_path {
                // Nothing was issued: the key must not outlive the failed attempt.
                let _ = fs::remove_file(path);
            }
            return Err(error);
        }
        Ok(Issued {
            record: built.record,
            pem: built.pem,
            key_path,
        })
    }

    /// Records certificates in one transaction, refusing EPCs that already have a valid
    /// certificate (other than the one renewed), with one audit entry each.
    pub(crate) async fn record(
        &self,
        records: &[CertificateRecord],
        actor: &str,
        operation: &str,
    ) -> Result<(), Error> {
        self.record_with(records, actor, operation, &serde_json::Value::Null)
            .await
    }

    /// [`Self::record`], with `extra`'s fields (an object) added to each audit entry.
    pub(crate) async fn record_with(
        &self,
        records: &[CertificateRecord],
        actor: &str,
        operation: &str,
        extra: &serde_json::Value,
    ) -> Result<(), Error> {
        let inventory = &self.ca.inventory;
        let now = now();
        let mut transaction = inventory.write().await?;
        let in_use = inventory.valid_epcs(&mut transaction, now).await?;
        for record in records {
            if let Some(epc) = &record.epc
                && let Some(serial) = in_use.get(epc)
                && Some(serial) != record.renewal_of.as_ref()
            {
                return Err(ProfileError::EpcInUse {
                    epc: epc.clone(),
                    serial: serial.clone(),
                }
                .into());
            }
            inventory.insert(&mut transaction, record).await?;
        }
        let entries = records.iter().map(|record| {
            let mut detail = serde_json::json!({
                    "serial": record.serial.to_string(),
                    "role": record.role.name(),
                    "common_name": record.common_name,
                    "epc": record.epc,
                    "group_id": record.group_id,
                    "rule_id": record.rule_id,
                    "subject_id": record.subject_id,
                "renewal_of": record.renewal_of.as_ref().map(ToString::to_string),
            });
            if let (Some(detail), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
                detail.extend(extra.clone());
            }
            (operation, detail)
        });
        audit::append_many(inventory, &mut transaction, actor, entries).await?;
        inventory.commit(transaction).await
    }

    /// Renews a certificate: same identity, names and ward, new serial and validity, the
    /// link recorded. The key is the old certificate's unless `key` gives a new one.
    pub async fn renew(
        &self,
        serial: &SerialNumber,
        key: Option<&SubjectKey>,
        validity_days: Option<u32>,
        actor: &str,
    ) -> Result<Issued, Error> {
        let old = self.ca.inventory.certificate(serial).await?;
        let request = request_from_certificate(&old, validity_days)?;
        match key {
            Some(key) => {
                self.issue_inner(&request, key, actor, Some(old.serial.clone()))
                    .await
            }
            None => {
                let (_, certificate) = X509Certificate::from_der(&old.der)
                    .map_err(|error| damaged(serial, error.to_string()))?;
                let public_key = SubjectPublicKey::from_der(certificate.public_key().raw)
                    .map_err(|error| damaged(serial, error.to_string()))?;
                let now = now();
                self.check_valid(now)?;
                let built = self.build(
                    &request,
                    public_key.certified(),
                    now,
                    Some(old.serial.clone()),
                )?;
                self.record(std::slice::from_ref(&built.record), actor, "renew")
                    .await?;
                Ok(Issued {
                    record: built.record,
                    pem: built.pem,
                    key_path: None,
                })
            }
        }
    }

    /// Signs a new CRL (the next CRL number), writes it to `crl.pem`, and returns it.
    pub async fn crl(&self, actor: &str) -> Result<Crl, Error> {
        let now = now();
        self.check_valid(now)?;
        let inventory = &self.ca.inventory;
        let settings = &self.ca.settings;
        let mut transaction = inventory.write().await?;
        let number: i64 = sqlx::query_scalar(
            "UPDATE ca SET crl_number = crl_number + 1 WHERE id = 1 RETURNING crl_number",
        )
        .fetch_one(&mut *transaction)
        .await
        .map_err(|error| inventory.error("advance the CRL number", error))?;
        let revoked = inventory.revoked_unexpired(&mut transaction, now).await?;
        let next_update = (now + Duration::days(i64::from(settings.crl_days))).min(self.not_after);
        let crl = crl::sign(
            &self.issuer,
            &revoked,
            u64::try_from(number).unwrap_or_default(),
            now,
            next_update,
            settings.crl_url.as_deref(),
            &self.key_identifier,
        )?;
        audit::append(
            inventory,
            &mut transaction,
            actor,
            "crl",
            &serde_json::json!({ "number": crl.number, "entries": crl.entries }),
        )
        .await?;
        let path = self.ca.crl_path();
        let temporary = path.with_extension("pem.tmp");
        fs::write(&temporary, crl.pem()?)
            .and_then(|()| fs::set_permissions(&temporary, fs::Permissions::from_mode(0o644)))
            .and_then(|()| fs::rename(&temporary, &path))
            .map_err(|error| Error::io("write", &path, error))?;
        crate::root::write_crl_set(&self.ca.dir)?;
        inventory.commit(transaction).await?;
        Ok(crl)
    }
}

fn damaged(serial: &SerialNumber, reason: String) -> Error {
    InventoryError::Damaged {
        serial: serial.to_string(),
        reason,
    }
    .into()
}

/// Rebuilds the request a stored certificate was issued for.
pub(crate) fn request_from_certificate(
    record: &CertificateRecord,
    validity_days: Option<u32>,
) -> Result<Request, Error> {
    let (_, certificate) = X509Certificate::from_der(&record.der)
        .map_err(|error| damaged(&record.serial, error.to_string()))?;
    let mut identity = None;
    let mut request_names = (Vec::new(), Vec::new(), Vec::new());
    for extension in certificate.extensions() {
        if extension.oid.to_id_string() == wardseal_core::identity::IDENTITY_EXTENSION_OID_STRING {
            identity = Some(Identity::from_der(extension.value)?);
        }
        if let ParsedExtension::SubjectAlternativeName(names) = extension.parsed_extension() {
            for name in &names.general_names {
                match name {
                    GeneralName::DNSName(dns) => request_names.0.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                            request_names.1.push(std::net::IpAddr::from(octets));
                        } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                            request_names.1.push(std::net::IpAddr::from(octets));
                        }
                    }
                    GeneralName::RFC822Name(email) => request_names.2.push((*email).to_owned()),
                    _ => {}
                }
            }
        }
    }
    let identity =
        identity.ok_or_else(|| damaged(&record.serial, "no identity extension".into()))?;
    let mut request = Request::new(identity);
    request.common_name = Some(record.common_name.clone());
    request.dns_names = request_names.0;
    request.ip_addresses = request_names.1;
    request.emails = request_names.2;
    request.ward = record.ward.clone();
    request.validity_days = validity_days;
    Ok(request)
}
