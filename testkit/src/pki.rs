//! The test PKI: a real `wardseal-pki` CA (ECDSA P-256 root and issuing CA) in a
//! directory, whose key passphrase is a random one in a 0600 file next to it, so a test,
//! the simulator's ward and `wardseal-pki` on the command line can all issue and revoke
//! certificates and republish the CRL at any time.
//!
//! [`TestPki::new`] makes one in a temporary directory it owns (a suite's CA);
//! [`TestPki::create`] in a directory the caller keeps (a ward directory, which
//! [`TestPki::open`] opens again in another process). Certificates come back as
//! [`CertificateFiles`]: a PEM certificate and its unencrypted PKCS#8 key (0600).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};
use wardseal_core::identity::{Identity, Role};
use wardseal_pki::ca::{Ca, InitOptions, Secrets, SubjectKey};
use wardseal_pki::card::{EnrollOptions, TokenChoice};
use wardseal_pki::crl::RevocationReason;
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;
use wardseal_pki::serial::SerialNumber;
use wardseal_softhsm::SoftHsm;

use crate::Error;

/// The organisation the test CA names.
pub const ORGANISATION: &str = "St Example Hospital";
/// The ward [`TestPki::issue`] records in device and collector certificates.
pub const WARD: &str = "ward-7";
/// The CRL distribution point in the certificates of a [`TestPki::new`] CA: the discard
/// port, so a client that follows it gets nothing.
pub const TEST_CRL_URL: &str = "http://127.0.0.1:9/crl/issuing.crl";
/// The actor recorded in the CA's audit log.
const ACTOR: &str = "test";

/// A certificate and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFiles {
    /// The certificate (PEM).
    pub certificate: PathBuf,
    /// Its private key (unencrypted PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// Its serial number (hex, as `wardseal-pki` prints it); empty for a certificate the
    /// CA did not issue.
    pub serial: String,
}

impl CertificateFiles {
    /// The certificate (DER), read from [`CertificateFiles::certificate`].
    pub fn der(&self) -> Result<Vec<u8>, Error> {
        let text = std::fs::read(&self.certificate)
            .map_err(|e| Error::io("read", self.certificate.display(), e))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(&text).map_err(|e| Error::Failed {
            what: format!("read the PEM certificate {}", self.certificate.display()),
            reason: e.to_string(),
        })?;
        Ok(pem.contents)
    }
}

impl CertificateFiles {
    /// Writes the certificate, its key and the CA certificates of `ca_bundle` as one
    /// PKCS#12 file `out` (0600) named `name`, for importing into a browser or an NSS
    /// database, under a new random password written to `password_file` (0600).
    pub fn write_pkcs12(
        &self,
        ca_bundle: &Path,
        name: &str,
        out: &Path,
        password_file: &Path,
    ) -> Result<(), Error> {
        let failed = |what: &str, error: openssl::error::ErrorStack| Error::Failed {
            what: format!("{what} for the PKCS#12 file {}", out.display()),
            reason: error.to_string(),
        };
        let read =
            |path: &Path| std::fs::read(path).map_err(|e| Error::io("read", path.display(), e));
        let certificate = openssl::x509::X509::from_pem(&read(&self.certificate)?)
            .map_err(|e| failed("read the certificate", e))?;
        let key = openssl::pkey::PKey::private_key_from_pem(&read(&self.key)?)
            .map_err(|e| failed("read the key", e))?;
        let mut chain = openssl::stack::Stack::new().map_err(|e| failed("allocate", e))?;
        for ca in openssl::x509::X509::stack_from_pem(&read(ca_bundle)?)
            .map_err(|e| failed("read the CA bundle", e))?
        {
            chain.push(ca).map_err(|e| failed("allocate", e))?;
        }
        let mut random = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut random);
        let password = hex::encode(random);
        let der = openssl::pkcs12::Pkcs12::builder()
            .name(name)
            .pkey(&key)
            .cert(&certificate)
            .ca(chain)
            .build2(&password)
            .and_then(|pkcs12| pkcs12.to_der())
            .map_err(|e| failed("build", e))?;
        wardseal_pki::key::write_private_file(password_file, password.as_bytes())?;
        wardseal_pki::key::write_private_file(out, &der)?;
        Ok(())
    }
}

/// A patient card enrolled on a SoftHSM token by [`TestPki::enroll_card`].
#[derive(Debug, Clone)]
pub struct EnrolledCard {
    /// The patient certificate (PEM), also written back to the token.
    pub certificate_pem: String,
    /// The key's RFC 7512 URI, with the module path and the PIN file.
    pub pkcs11_uri: String,
}

/// How [`TestPki::create_with`] makes a CA.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// The organisation the CA names.
    pub organisation: String,
    /// The CRL distribution point its certificates carry, if any.
    pub crl_url: Option<String>,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self {
            organisation: ORGANISATION.to_owned(),
            crl_url: None,
        }
    }
}

/// A CA with a root and an issuing CA, plus the CA bundle and CRL files servers load.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    ca: Ca,
    secrets: Secrets,
    bundle: PathBuf,
    issued: AtomicUsize,
    // The directory of a `new` CA; dropped (deleted) last.
    _temp: Option<tempfile::TempDir>,
}

impl TestPki {
    /// The CA directory inside `dir`.
    pub fn ca_dir(dir: &Path) -> PathBuf {
        dir.join("ca")
    }

    /// The file holding the CA key passphrase (0600) inside `dir`.
    pub fn passphrase_file(dir: &Path) -> PathBuf {
        dir.join("ca-passphrase")
    }

    /// The CA bundle (root + issuing, PEM) inside `dir`.
    pub fn bundle_file(dir: &Path) -> PathBuf {
        dir.join("ca-bundle.pem")
    }

    /// A CA in a new temporary directory (deleted when dropped), whose certificates
    /// carry the distribution point [`TEST_CRL_URL`].
    pub async fn new() -> Result<Self, Error> {
        let temp = tempfile::Builder::new()
            .prefix("wardseal-pki-")
            .tempdir()
            .map_err(|e| Error::io("create", "a temporary directory for the test CA", e))?;
        let options = PkiOptions {
            crl_url: Some(TEST_CRL_URL.to_owned()),
            ..PkiOptions::default()
        };
        let mut pki = Self::create_with(temp.path(), &options).await?;
        pki._temp = Some(temp);
        Ok(pki)
    }

    /// Creates a CA for [`ORGANISATION`] in `dir`, writes the CA bundle and publishes an
    /// empty CRL.
    pub async fn create(dir: &Path) -> Result<Self, Error> {
        Self::create_with(dir, &PkiOptions::default()).await
    }

    /// As [`TestPki::create`], for another organisation (another hospital's CA, whose
    /// certificates a ward must not trust).
    pub async fn create_for(dir: &Path, organisation: &str) -> Result<Self, Error> {
        let options = PkiOptions {
            organisation: organisation.to_owned(),
            ..PkiOptions::default()
        };
        Self::create_with(dir, &options).await
    }

    /// Creates a CA in `dir` as `options` say (keys encrypted under a random passphrase
    /// kept in [`TestPki::passphrase_file`]), writes the CA bundle and publishes an empty
    /// CRL.
    pub async fn create_with(dir: &Path, options: &PkiOptions) -> Result<Self, Error> {
        let mut random = [0u8; 24];
        rand_core::OsRng.fill_bytes(&mut random);
        let passphrase = Self::passphrase_file(dir);
        wardseal_pki::key::write_private_file(&passphrase, hex::encode(random).as_bytes())?;
        let secrets = Self::secrets_in(dir);
        let mut init = InitOptions::new(Self::ca_dir(dir), &options.organisation);
        init.crl_url = options.crl_url.clone();
        let ca = Ca::init(&init, &secrets, ACTOR).await?;
        let settings = ca.settings();
        let bundle_text = format!(
            "{}{}",
            wardseal_pki::ca::pem("CERTIFICATE", &settings.root_certificate)?,
            wardseal_pki::ca::pem("CERTIFICATE", &settings.issuing_certificate)?
        );
        let bundle = Self::bundle_file(dir);
        std::fs::write(&bundle, bundle_text)
            .map_err(|e| Error::io("write", bundle.display(), e))?;
        let pki = Self {
            dir: dir.to_owned(),
            ca,
            secrets,
            bundle,
            issued: AtomicUsize::new(0),
            _temp: None,
        };
        pki.publish_crl().await?;
        Ok(pki)
    }

    /// Opens the CA a previous [`TestPki::create`] made in `dir`.
    pub async fn open(dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            dir: dir.to_owned(),
            ca: Ca::open(Self::ca_dir(dir)).await?,
            secrets: Self::secrets_in(dir),
            bundle: Self::bundle_file(dir),
            issued: AtomicUsize::new(0),
            _temp: None,
        })
    }

    fn secrets_in(dir: &Path) -> Secrets {
        Secrets {
            passphrase: Some(SecretSource::File(Self::passphrase_file(dir))),
            pin: None,
        }
    }

    /// The directory holding the CA, its passphrase, the bundle and what
    /// [`TestPki::issue`] writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA itself (inventory, settings, `wardseal-pki` operations with
    /// [`TestPki::secrets`]).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// What unlocks the CA's signing key.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The CA bundle (root + issuing CA, PEM): what every server and client trusts.
    pub fn ca_bundle(&self) -> &Path {
        &self.bundle
    }

    /// The CRL file the CA publishes (PEM).
    pub fn crl(&self) -> PathBuf {
        self.ca.crl_path()
    }

    /// The root certificate (DER): the only trust anchor a proof check needs.
    pub fn root_der(&self) -> &[u8] {
        &self.ca.settings().root_certificate
    }

    /// Issues a certificate for `identity` with a new P-256 key, written into
    /// [`TestPki::dir`] under a name of its own; device and collector certificates
    /// record the ward [`WARD`].
    pub async fn issue(&self, identity: Identity) -> Result<CertificateFiles, Error> {
        self.issue_with(identity, KeyAlgorithm::EcdsaP256).await
    }

    /// As [`TestPki::issue`], with a key of `algorithm`.
    pub async fn issue_with(
        &self,
        identity: Identity,
        algorithm: KeyAlgorithm,
    ) -> Result<CertificateFiles, Error> {
        let number = self.issued.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{number}", identity.role().name());
        self.issue_to(identity, algorithm, &self.dir, &name, WARD)
            .await
    }

    /// Issues a certificate for `identity` with a new P-256 key, written as
    /// `dir/name.pem` and `dir/name.key` (0600); device and collector certificates record
    /// `ward`.
    pub async fn issue_in(
        &self,
        identity: Identity,
        dir: &Path,
        name: &str,
        ward: &str,
    ) -> Result<CertificateFiles, Error> {
        self.issue_to(identity, KeyAlgorithm::EcdsaP256, dir, name, ward)
            .await
    }

    async fn issue_to(
        &self,
        identity: Identity,
        algorithm: KeyAlgorithm,
        dir: &Path,
        name: &str,
        ward: &str,
    ) -> Result<CertificateFiles, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir.display(), e))?;
        let mut request = Request::new(identity.clone());
        // Servers on loopback: clients check the name they connected to.
        if matches!(identity.role(), Role::Collector | Role::Storage) {
            request.ip_addresses = vec![IpAddr::from([127, 0, 0, 1])];
            request.dns_names = vec!["localhost".into()];
        }
        if matches!(identity.role(), Role::Device | Role::Collector) {
            request.ward = Some(ward.to_owned());
        }
        let key = dir.join(format!("{name}.key"));
        let subject_key = SubjectKey::Generate {
            algorithm,
            path: key.clone(),
        };
        let issued = self
            .ca
            .unlock(&self.secrets)?
            .issue(&request, &subject_key, ACTOR)
            .await?;
        let certificate = dir.join(format!("{name}.pem"));
        std::fs::write(&certificate, &issued.pem)
            .map_err(|e| Error::io("write", certificate.display(), e))?;
        Ok(CertificateFiles {
            certificate,
            key,
            serial: issued.record.serial.to_string(),
        })
    }

    /// Enrolls `patient`'s card on the SoftHSM token labelled `patient` (initialised
    /// already, its user PIN in `pin_file`) the way `wardseal-pki card enroll` does: key
    /// generated on the token (label `patient`), patient certificate issued by this CA
    /// and written back next to the key, `ward` recorded in the inventory.
    pub async fn enroll_card(
        &self,
        hsm: &SoftHsm,
        patient: &str,
        pin_file: &Path,
        ward: &str,
    ) -> Result<EnrolledCard, Error> {
        let mut options = EnrollOptions::new(
            TokenChoice {
                module: hsm.module_path().to_owned(),
                token: patient.to_owned(),
            },
            Some(SecretSource::File(pin_file.to_owned())),
            patient,
        );
        options.key_label = "patient".to_owned();
        options.ward = Some(ward.to_owned());
        let enrollment = self
            .ca
            .unlock(&self.secrets)?
            .enroll_card(&options, ACTOR)
            .await?;
        Ok(EnrolledCard {
            certificate_pem: enrollment.issued.pem,
            pkcs11_uri: format!(
                "pkcs11:token={patient};object=patient?module-path={}&pin-source=file:{}",
                hsm.module_path().display(),
                pin_file.display()
            ),
        })
    }

    /// Revokes the certificate with this serial (key compromise) and publishes a new CRL.
    pub async fn revoke(&self, serial: &str) -> Result<(), Error> {
        let serial: SerialNumber = serial.parse().map_err(wardseal_pki::Error::from)?;
        self.ca
            .revoke(&serial, RevocationReason::KeyCompromise, None, ACTOR)
            .await?;
        self.publish_crl().await
    }

    /// Signs and writes a new CRL to [`TestPki::crl`].
    pub async fn publish_crl(&self) -> Result<(), Error> {
        self.ca.unlock(&self.secrets)?.crl(ACTOR).await?;
        Ok(())
    }
}
