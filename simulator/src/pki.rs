//! The ward's hospital CA, kept in the ward directory: a real `wardseal-pki` CA whose
//! key passphrase is in a 0600 file next to it, so the ward (and `wardseal-pki` on the
//! command line) can issue and revoke certificates and republish the CRL at any time.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};
use wardseal_core::identity::{Identity, Role};
use wardseal_pki::ca::{Ca, InitOptions, Secrets, SubjectKey};
use wardseal_pki::crl::RevocationReason;
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;
use wardseal_pki::serial::SerialNumber;

use crate::error::Error;

/// The organisation every ward certificate names.
pub const ORGANISATION: &str = "St Example Hospital";
/// The actor recorded in the CA's audit log for what the simulator does.
const ACTOR: &str = "wardseal-sim";

/// A certificate and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFiles {
    /// The certificate (PEM).
    pub certificate: PathBuf,
    /// Its private key (unencrypted PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// Its serial number (hex, as `wardseal-pki` prints it).
    pub serial: String,
}

/// The ward's CA.
#[derive(Debug)]
pub struct WardPki {
    ca: Ca,
    secrets: Secrets,
    bundle: PathBuf,
}

impl WardPki {
    /// The CA directory inside a ward directory.
    pub fn ca_dir(ward_dir: &Path) -> PathBuf {
        ward_dir.join("ca")
    }

    /// The file holding the CA key passphrase (0600) inside a ward directory.
    pub fn passphrase_file(ward_dir: &Path) -> PathBuf {
        ward_dir.join("ca-passphrase")
    }

    /// The CA bundle (root + issuing, PEM) inside a ward directory.
    pub fn bundle_file(ward_dir: &Path) -> PathBuf {
        ward_dir.join("ca-bundle.pem")
    }

    /// Creates a CA (ECDSA P-256 root and issuing CA, keys encrypted under a random
    /// passphrase) in `ward_dir`, writes the CA bundle and publishes an empty CRL.
    pub async fn create(ward_dir: &Path) -> Result<Self, Error> {
        Self::create_for(ward_dir, ORGANISATION).await
    }

    /// As [`WardPki::create`], for another organisation (another hospital's CA, whose
    /// certificates the ward must not trust).
    pub async fn create_for(ward_dir: &Path, organisation: &str) -> Result<Self, Error> {
        let mut random = [0u8; 24];
        rand_core::OsRng.fill_bytes(&mut random);
        let passphrase = Self::passphrase_file(ward_dir);
        wardseal_pki::key::write_private_file(&passphrase, hex::encode(random).as_bytes())?;
        let secrets = Self::secrets(ward_dir);
        let options = InitOptions::new(Self::ca_dir(ward_dir), organisation);
        let ca = Ca::init(&options, &secrets, ACTOR).await?;
        let settings = ca.settings();
        let bundle_text = format!(
            "{}{}",
            wardseal_pki::ca::pem("CERTIFICATE", &settings.root_certificate)?,
            wardseal_pki::ca::pem("CERTIFICATE", &settings.issuing_certificate)?
        );
        let bundle = Self::bundle_file(ward_dir);
        std::fs::write(&bundle, bundle_text).map_err(|e| Error::io("write", &bundle, e))?;
        let pki = Self {
            ca,
            secrets,
            bundle,
        };
        pki.publish_crl().await?;
        Ok(pki)
    }

    /// Opens the CA a previous [`WardPki::create`] made in `ward_dir`.
    pub async fn open(ward_dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            ca: Ca::open(Self::ca_dir(ward_dir)).await?,
            secrets: Self::secrets(ward_dir),
            bundle: Self::bundle_file(ward_dir),
        })
    }

    fn secrets(ward_dir: &Path) -> Secrets {
        Secrets {
            passphrase: Some(SecretSource::File(Self::passphrase_file(ward_dir))),
            pin: None,
        }
    }

    /// The CA itself (inventory, settings, card enrollment through [`WardPki::secrets_for`]).
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// What unlocks the CA's signing key.
    pub fn secrets_for(&self) -> &Secrets {
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

    /// Issues a certificate for `identity` with a new P-256 key, written as
    /// `dir/name.pem` and `dir/name.key` (0600). Collector and storage certificates name
    /// 127.0.0.1 and `localhost`; device and collector certificates record `ward`.
    pub async fn issue(
        &self,
        identity: Identity,
        dir: &Path,
        name: &str,
        ward: &str,
    ) -> Result<CertificateFiles, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let mut request = Request::new(identity.clone());
        if matches!(identity.role(), Role::Collector | Role::Storage) {
            request.ip_addresses = vec![IpAddr::from([127, 0, 0, 1])];
            request.dns_names = vec!["localhost".into()];
        }
        if matches!(identity.role(), Role::Device | Role::Collector) {
            request.ward = Some(ward.to_owned());
        }
        let key = dir.join(format!("{name}.key"));
        let subject_key = SubjectKey::Generate {
            algorithm: KeyAlgorithm::EcdsaP256,
            path: key.clone(),
        };
        let issued = self
            .ca
            .unlock(&self.secrets)?
            .issue(&request, &subject_key, ACTOR)
            .await?;
        let certificate = dir.join(format!("{name}.pem"));
        std::fs::write(&certificate, &issued.pem)
            .map_err(|e| Error::io("write", &certificate, e))?;
        Ok(CertificateFiles {
            certificate,
            key,
            serial: issued.record.serial.to_string(),
        })
    }

    /// Revokes the certificate with this serial (key compromise) and publishes a new CRL.
    /// Servers see it at their next CRL reload (`RunningWard::reload_crls`).
    pub async fn revoke(&self, serial: &str) -> Result<(), Error> {
        let serial: SerialNumber = serial.parse().map_err(wardseal_pki::Error::from)?;
        self.ca
            .revoke(&serial, RevocationReason::KeyCompromise, None, ACTOR)
            .await?;
        self.publish_crl().await
    }

    /// Signs and writes a new CRL to [`WardPki::crl`].
    pub async fn publish_crl(&self) -> Result<(), Error> {
        self.ca.unlock(&self.secrets)?.crl(ACTOR).await?;
        Ok(())
    }
}
