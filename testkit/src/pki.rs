//! A real wardseal CA in a temporary directory, for tests of this and other crates
//! (feature `testing`). Certificates are issued by `wardseal-pki`, the hospital CA itself.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fixture fails the test by panicking, with the message"
)]

use std::path::PathBuf;

use wardseal_core::identity::Identity;
use wardseal_pki::ca::{Ca, InitOptions, Secrets, SubjectKey};
use wardseal_pki::crl::RevocationReason;
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;
use wardseal_pki::serial::SerialNumber;

/// A CA with a root and an issuing CA, plus the CA bundle and CRL files servers load.
#[derive(Debug)]
pub struct TestPki {
    /// Holds every file; removed when dropped.
    pub temp: tempfile::TempDir,
    /// The CA.
    pub ca: Ca,
    secrets: Secrets,
    issued: std::sync::atomic::AtomicUsize,
}

/// A certificate issued for a test, with its key file.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// The certificate (PEM file).
    pub certificate: PathBuf,
    /// Its key (unencrypted PKCS#8 PEM, 0600).
    pub key: PathBuf,
    /// Its serial number.
    pub serial: SerialNumber,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

impl TestPki {
    /// Creates a CA ("St Example Hospital", ECDSA P-256) and writes the CA bundle and an
    /// empty CRL.
    pub async fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let passphrase = temp.path().join("passphrase");
        std::fs::write(&passphrase, "correct horse battery staple").unwrap();
        let secrets = Secrets {
            passphrase: Some(SecretSource::File(passphrase)),
            pin: None,
        };
        let mut options = InitOptions::new(temp.path().join("ca"), "St Example Hospital");
        options.crl_url = Some("http://127.0.0.1:9/crl/issuing.crl".into());
        let ca = Ca::init(&options, &secrets, "test").await.unwrap();
        let settings = ca.settings();
        let bundle = format!(
            "{}{}",
            wardseal_pki::ca::pem("CERTIFICATE", &settings.root_certificate).unwrap(),
            wardseal_pki::ca::pem("CERTIFICATE", &settings.issuing_certificate).unwrap()
        );
        std::fs::write(temp.path().join("ca-bundle.pem"), bundle).unwrap();
        let pki = Self {
            temp,
            ca,
            secrets,
            issued: std::sync::atomic::AtomicUsize::new(0),
        };
        pki.publish_crl().await;
        pki
    }

    /// The CA bundle (root + issuing, PEM).
    pub fn ca_bundle(&self) -> PathBuf {
        self.temp.path().join("ca-bundle.pem")
    }

    /// The CRL file (PEM) the CA writes.
    pub fn crl(&self) -> PathBuf {
        self.ca.crl_path()
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> Vec<u8> {
        self.ca.settings().root_certificate.clone()
    }

    /// Issues a certificate for `identity` (P-256 key), with 127.0.0.1 and `localhost` as
    /// names for collector and storage identities.
    pub async fn issue(&self, identity: Identity) -> TestCertificate {
        self.issue_with(identity, KeyAlgorithm::EcdsaP256).await
    }

    /// Issues a certificate for `identity` with a key of `algorithm`.
    pub async fn issue_with(&self, identity: Identity, algorithm: KeyAlgorithm) -> TestCertificate {
        use wardseal_core::identity::Role;
        let number = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}-{number}", identity.role().name());
        let mut request = Request::new(identity.clone());
        if matches!(identity.role(), Role::Collector | Role::Storage) {
            request.ip_addresses = vec!["127.0.0.1".parse().unwrap()];
            request.dns_names = vec!["localhost".into()];
        }
        if matches!(identity.role(), Role::Device | Role::Collector) {
            request.ward = Some("ward-7".into());
        }
        let key = self.temp.path().join(format!("{name}.key"));
        let subject_key = SubjectKey::Generate {
            algorithm,
            path: key.clone(),
        };
        let issued = self
            .ca
            .unlock(&self.secrets)
            .unwrap()
            .issue(&request, &subject_key, "test")
            .await
            .unwrap();
        let certificate = self.temp.path().join(format!("{name}.pem"));
        std::fs::write(&certificate, &issued.pem).unwrap();
        TestCertificate {
            certificate,
            key,
            serial: issued.record.serial.clone(),
            der: issued.record.der.clone(),
        }
    }

    /// Revokes a certificate and publishes a new CRL.
    pub async fn revoke(&self, certificate: &TestCertificate) {
        self.ca
            .revoke(
                &certificate.serial,
                RevocationReason::KeyCompromise,
                None,
                "test",
            )
            .await
            .unwrap();
        self.publish_crl().await;
    }

    /// Signs and writes a new CRL to [`TestPki::crl`].
    pub async fn publish_crl(&self) {
        self.ca
            .unlock(&self.secrets)
            .unwrap()
            .crl("test")
            .await
            .expect("sign a CRL");
    }
}
