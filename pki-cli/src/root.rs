//! The offline root: its key kept apart from the issuing CA's, and the ceremony that uses it.
//!
//! ```text
//! <root-dir>/          0700  removable media, or a machine that is off the network
//!   root.key           0600  encrypted PKCS#8
//!   root.crt           0644  the root certificate
//!   root.json          0600  the issuing CAs it signed, their revocations, the CRL number
//!   root-crl.pem       0644  the latest root CRL
//! ```
//!
//! The root does three things, each a `wardseal-pki root` command run in a ceremony with
//! the root directory mounted: create itself (`root init`), sign an issuing CA
//! (`root sign-issuing`, which creates the CA directory with [`crate::ca::Ca::init`] and
//! [`crate::ca::KeyPlacement::Offline`]), and sign its CRL (`root crl`), which lists the
//! issuing CAs it revoked (`root revoke`). The issuing CA never reads the root key again.
//!
//! Verifiers that check revocation at every level (`openssl verify -crl_check_all`,
//! nginx's `ssl_crl`) need a CRL from each CA in the chain: the root's CRL is published
//! into each CA directory (`root crl --publish`), and the CA's `crl` then writes
//! `crl-set.pem`, the root CRL followed by the issuing CA's — the whole set in one file.
//!
//! A CA made by `wardseal-pki init` keeps its root key in the CA directory; `root adopt`
//! moves it out into a root directory and records the CA's issuing certificate there.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::ca::{self, CHAIN_FILE, ISSUING_CERTIFICATE_FILE, ROOT_CERTIFICATE_FILE, now, pem};
use crate::crl::{self, Crl, RevocationReason};
use crate::error::{CaError, Error, RootError};
use crate::inventory::{Revocation, format_time};
use crate::key::{self, KeyAlgorithm, SecretSource};
use crate::profile::ca_params;
use crate::serial::SerialNumber;
use crate::signer::CaKey;

/// The root's key file.
pub const KEY_FILE: &str = "root.key";
/// The root's state file.
pub const STATE_FILE: &str = "root.json";
/// The latest root CRL (in the root directory, and published into CA directories).
pub const CRL_FILE: &str = "root-crl.pem";
/// Root CRL then issuing CA CRL, written into a CA directory (`ssl_crl`, `-CRLfile`).
pub const CRL_SET_FILE: &str = "crl-set.pem";

/// An issuing CA the root signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssuingCa {
    /// Its serial (hex).
    pub serial: String,
    /// Its subject.
    pub subject: String,
    /// End of its validity (Unix seconds).
    pub not_after: i64,
    /// When the root revoked it (Unix seconds), if it did.
    pub revoked_at: Option<i64>,
    /// Why (RFC 5280 reason name).
    pub reason: Option<String>,
}

/// What the root directory remembers between ceremonies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct State {
    organisation: String,
    crl_days: u32,
    crl_number: u64,
    issued: Vec<IssuingCa>,
}

/// What `root init` creates.
#[derive(Debug, Clone)]
pub struct RootOptions {
    /// The root directory (created 0700; must not hold a root).
    pub dir: PathBuf,
    /// Subject O.
    pub organisation: String,
    /// The key's algorithm (p256, p384, rsa3072).
    pub algorithm: KeyAlgorithm,
    /// Validity: start and end.
    pub validity: (OffsetDateTime, OffsetDateTime),
    /// Days from one root CRL to its `nextUpdate`.
    pub crl_days: u32,
}

impl RootOptions {
    /// Defaults: P-256, valid 20 years from an hour ago, a CRL every 30 days.
    pub fn new(dir: impl Into<PathBuf>, organisation: impl Into<String>) -> Self {
        let start = now() - Duration::hours(1);
        Self {
            dir: dir.into(),
            organisation: organisation.into(),
            algorithm: KeyAlgorithm::EcdsaP256,
            validity: (start, start + Duration::days(20 * 365)),
            crl_days: 30,
        }
    }
}

/// A root directory, opened (no secret needed).
#[derive(Debug)]
pub struct OfflineRoot {
    dir: PathBuf,
    state: State,
    certificate: Vec<u8>,
}

/// An opened root whose key is loaded: it can sign.
#[derive(Debug)]
pub struct UnlockedRoot {
    root: OfflineRoot,
    pub(crate) issuer: rcgen::Issuer<'static, CaKey>,
    not_after: OffsetDateTime,
    key_identifier: Vec<u8>,
}

fn write_public(path: &Path, text: &str) -> Result<(), Error> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, text)
        .and_then(|()| fs::set_permissions(&temporary, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|error| Error::io("write", path, error))
}

fn certificate_der(path: &Path) -> Result<Vec<u8>, Error> {
    let text = fs::read(path).map_err(|error| Error::io("read", path, error))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).map_err(|error| RootError::Damaged {
        path: path.to_owned(),
        reason: format!("not a PEM certificate: {error}"),
    })?;
    Ok(pem.contents)
}

impl OfflineRoot {
    /// Creates a root: key, self-signed certificate, empty state.
    pub fn init(options: &RootOptions, passphrase: &SecretSource) -> Result<Self, Error> {
        if !options.algorithm.suits_ca() {
            return Err(CaError::BadSetting {
                setting: "--algorithm",
                reason: format!("{} is not offered for CA keys", options.algorithm),
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
        let organisation = options.organisation.as_str();
        if organisation.trim().is_empty() || organisation.chars().count() > 64 {
            return Err(CaError::BadSetting {
                setting: "--organisation",
                reason: "must be 1 to 64 characters".into(),
            }
            .into());
        }
        let dir = &options.dir;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| Error::io("create", dir, error))?;
        if dir.join(STATE_FILE).exists() || dir.join(KEY_FILE).exists() {
            return Err(RootError::AlreadyInitialised { path: dir.clone() }.into());
        }
        let passphrase = passphrase.passphrase(true)?;
        passphrase.check_strength()?;
        let key = options.algorithm.generate()?;
        key::write_encrypted_key(&dir.join(KEY_FILE), &key, &passphrase)?;
        let params = ca_params(
            &format!("{organisation} wardseal root CA"),
            organisation,
            None,
            options.validity.0,
            options.validity.1,
            &SerialNumber::random(),
        );
        let certificate = params
            .self_signed(&key)
            .map_err(|error| Error::encoding("sign the root certificate", error))?;
        write_public(&dir.join(ROOT_CERTIFICATE_FILE), &certificate.pem())?;
        let root = Self {
            dir: dir.clone(),
            state: State {
                organisation: organisation.to_owned(),
                crl_days: options.crl_days,
                crl_number: 0,
                issued: Vec::new(),
            },
            certificate: certificate.der().to_vec(),
        };
        root.save()?;
        Ok(root)
    }

    /// Opens a root directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let path = dir.join(STATE_FILE);
        if !path.is_file() {
            return Err(RootError::NotInitialised { path: dir }.into());
        }
        let text = fs::read_to_string(&path).map_err(|error| Error::io("read", &path, error))?;
        let state: State = serde_json::from_str(&text).map_err(|error| RootError::Damaged {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        let certificate = certificate_der(&dir.join(ROOT_CERTIFICATE_FILE))?;
        Ok(Self {
            dir,
            state,
            certificate,
        })
    }

    fn save(&self) -> Result<(), Error> {
        let path = self.dir.join(STATE_FILE);
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.state)
            .map_err(|error| Error::encoding("encode the root state", error))?;
        let _ = fs::remove_file(&temporary);
        key::write_private_file(&temporary, text.as_bytes())?;
        fs::rename(&temporary, &path).map_err(|error| Error::io("write", &path, error))
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The subject O.
    pub fn organisation(&self) -> &str {
        &self.state.organisation
    }

    /// The issuing CAs the root signed, oldest first.
    pub fn issued(&self) -> &[IssuingCa] {
        &self.state.issued
    }

    /// Records that the root revoked an issuing CA (the next `root crl` lists it).
    pub fn revoke(
        &mut self,
        serial: &SerialNumber,
        reason: RevocationReason,
    ) -> Result<IssuingCa, Error> {
        let text = serial.to_string();
        let entry = self
            .state
            .issued
            .iter_mut()
            .find(|entry| entry.serial == text)
            .ok_or_else(|| RootError::UnknownIssuingCa {
                serial: text.clone(),
            })?;
        if entry.revoked_at.is_some() {
            return Err(RootError::AlreadyRevoked { serial: text }.into());
        }
        entry.revoked_at = Some(now().unix_timestamp());
        entry.reason = Some(reason.name().to_owned());
        let revoked = entry.clone();
        self.save()?;
        Ok(revoked)
    }

    /// Loads the root key.
    pub fn unlock(self, passphrase: &SecretSource) -> Result<UnlockedRoot, Error> {
        let passphrase = passphrase.passphrase(false)?;
        let key = key::read_encrypted_key(&self.dir.join(KEY_FILE), &passphrase)?;
        let bad = || CaError::BadCaCertificate { which: "root" };
        let (_, certificate) = X509Certificate::from_der(&self.certificate).map_err(|_| bad())?;
        let not_after = certificate.validity().not_after.to_datetime();
        let key_identifier = certificate
            .extensions()
            .iter()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .ok_or_else(bad)?;
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&self.certificate.as_slice().into(), CaKey::new(key))
                .map_err(|_| bad())?;
        Ok(UnlockedRoot {
            root: self,
            issuer,
            not_after,
            key_identifier,
        })
    }

    /// Moves a CA directory's root key (from `wardseal-pki init`) into a new root
    /// directory, recording the CA's issuing certificate there.
    pub async fn adopt(
        ca_dir: &Path,
        root_dir: &Path,
        crl_days: u32,
        actor: &str,
    ) -> Result<Self, Error> {
        let ca = ca::Ca::open(ca_dir).await?;
        let key_path = ca_dir.join(ca::ROOT_KEY_FILE);
        if ca.settings().root_key != ca::KeyLocation::File(ca::ROOT_KEY_FILE.to_owned())
            || !key_path.is_file()
        {
            return Err(RootError::NothingToAdopt {
                path: ca_dir.to_owned(),
            }
            .into());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root_dir)
            .map_err(|error| Error::io("create", root_dir, error))?;
        if root_dir.join(STATE_FILE).exists() || root_dir.join(KEY_FILE).exists() {
            return Err(RootError::AlreadyInitialised {
                path: root_dir.to_owned(),
            }
            .into());
        }
        let settings = ca.settings();
        let mut root = Self {
            dir: root_dir.to_owned(),
            state: State {
                organisation: settings.organisation.clone(),
                crl_days,
                crl_number: 0,
                issued: Vec::new(),
            },
            certificate: settings.root_certificate.clone(),
        };
        root.record_issued(&settings.issuing_certificate)?;
        write_public(
            &root_dir.join(ROOT_CERTIFICATE_FILE),
            &pem("CERTIFICATE", &settings.root_certificate)?,
        )?;
        let key_text = fs::read(&key_path).map_err(|error| Error::io("read", &key_path, error))?;
        key::write_private_file(&root_dir.join(KEY_FILE), &key_text)?;
        root.save()?;
        ca.set_root_offline(root_dir, actor).await?;
        fs::remove_file(&key_path).map_err(|error| Error::io("remove", &key_path, error))?;
        Ok(root)
    }

    fn record_issued(&mut self, der: &[u8]) -> Result<IssuingCa, Error> {
        let (_, certificate) = X509Certificate::from_der(der)
            .map_err(|_| CaError::BadCaCertificate { which: "issuing" })?;
        let entry = IssuingCa {
            serial: SerialNumber::from_der_content(certificate.raw_serial()).to_string(),
            subject: certificate.subject().to_string(),
            not_after: certificate.validity().not_after.timestamp(),
            revoked_at: None,
            reason: None,
        };
        self.state.issued.push(entry.clone());
        Ok(entry)
    }
}

impl UnlockedRoot {
    /// The root, for reading.
    pub fn root(&self) -> &OfflineRoot {
        &self.root
    }

    /// The end of the root's validity (an issuing CA cannot outlive it).
    pub(crate) fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Records an issuing CA certificate the root just signed.
    pub(crate) fn record_issued(&mut self, der: &[u8]) -> Result<IssuingCa, Error> {
        let entry = self.root.record_issued(der)?;
        self.root.save()?;
        Ok(entry)
    }

    /// Signs the root CRL (every issuing CA revoked and not yet expired), writes it to the
    /// root directory and to each of `publish` (CA directories, whose `crl-set.pem` is
    /// rebuilt), and returns it.
    pub fn crl(&mut self, publish: &[PathBuf]) -> Result<Crl, Error> {
        let now = now();
        let revoked: Vec<(SerialNumber, Revocation)> = self
            .root
            .state
            .issued
            .iter()
            .filter(|entry| entry.not_after >= now.unix_timestamp())
            .filter_map(|entry| {
                let revoked_at = OffsetDateTime::from_unix_timestamp(entry.revoked_at?).ok()?;
                Some((
                    entry.serial.parse().ok()?,
                    Revocation {
                        revoked_at,
                        reason: entry
                            .reason
                            .as_deref()
                            .and_then(|name| name.parse().ok())
                            .unwrap_or_default(),
                        invalidity_date: None,
                    },
                ))
            })
            .collect();
        self.root.state.crl_number += 1;
        let next_update =
            (now + Duration::days(i64::from(self.root.state.crl_days))).min(self.not_after);
        let crl = crl::sign(
            &self.issuer,
            &revoked,
            self.root.state.crl_number,
            now,
            next_update,
            None,
            &self.key_identifier,
        )?;
        self.root.save()?;
        let text = crl.pem()?;
        write_public(&self.root.dir.join(CRL_FILE), &text)?;
        for dir in publish {
            write_public(&dir.join(CRL_FILE), &text)?;
            write_crl_set(dir)?;
        }
        Ok(crl)
    }
}

/// Rebuilds `crl-set.pem` in a CA directory from its root CRL and its own CRL, when it
/// has both.
pub(crate) fn write_crl_set(ca_dir: &Path) -> Result<(), Error> {
    let root = ca_dir.join(CRL_FILE);
    let issuing = ca_dir.join(ca::CRL_FILE);
    if !(root.is_file() && issuing.is_file()) {
        return Ok(());
    }
    let mut set = fs::read_to_string(&root).map_err(|error| Error::io("read", &root, error))?;
    set.push_str(
        &fs::read_to_string(&issuing).map_err(|error| Error::io("read", &issuing, error))?,
    );
    write_public(&ca_dir.join(CRL_SET_FILE), &set)
}

/// Writes the public files of a CA directory whose root is offline: root.crt, issuing.crt
/// and chain.pem.
pub(crate) fn write_ca_files(dir: &Path, root_der: &[u8], issuing_der: &[u8]) -> Result<(), Error> {
    let root_pem = pem("CERTIFICATE", root_der)?;
    let issuing_pem = pem("CERTIFICATE", issuing_der)?;
    write_public(&dir.join(ROOT_CERTIFICATE_FILE), &root_pem)?;
    write_public(&dir.join(ISSUING_CERTIFICATE_FILE), &issuing_pem)?;
    write_public(&dir.join(CHAIN_FILE), &format!("{issuing_pem}{root_pem}"))
}

/// One line per issuing CA, as `root list` prints it.
pub struct IssuedListing<'a>(pub &'a [IssuingCa]);

impl std::fmt::Display for IssuedListing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for entry in self.0 {
            let until = OffsetDateTime::from_unix_timestamp(entry.not_after)
                .map(format_time)
                .unwrap_or_default();
            write!(f, "{} {} until {until}", entry.serial, entry.subject)?;
            if let Some(reason) = &entry.reason {
                write!(f, " REVOKED ({reason})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
