//! The servers' rustls configuration: mutual TLS against the hospital CA with CRLs,
//! reloadable without a restart.
//!
//! # Revocation and resumed sessions
//!
//! rustls checks a client certificate against the CRLs only during a full handshake: a
//! resumed TLS 1.3 session keeps the identity stored with the ticket and is not checked
//! again, and a connection kept alive (HTTP/1.1 keep-alive, HTTP/2) is not re-checked
//! either. So [`ServerTls`] does both of these:
//!
//! 1. **No resumption.** No session cache and no tickets: every connection does a full
//!    handshake and is checked against the CRLs current at that moment.
//! 2. **Per-request re-check.** The serving loop ([`crate::serve`]) checks the peer's
//!    issuer and serial against the revoked set of the *current* configuration before each
//!    request, so a connection opened before a revocation is refused on its next request
//!    after [`ServerTls::reload`].
//!
//! Only the end-entity certificate is checked against CRLs: the root is offline and an
//! issuing CA is withdrawn by replacing the CA bundle, which a reload also picks up.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;

use crate::error::{AccessError, CertificateError, ConfigError, Error};
use crate::files;
use crate::peer::PeerIdentity;

/// The ALPN protocols the servers offer, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where a server's TLS material lives. Every file is re-read on [`ServerTls::reload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    /// The server's certificate (PEM; leaf first, optionally followed by its chain).
    pub certificate: PathBuf,
    /// The server's private key (PEM, mode 0600 or stricter).
    pub key: PathBuf,
    /// The hospital CA: root and issuing certificates (PEM bundle), the only trust anchors
    /// for client certificates.
    pub ca_bundle: PathBuf,
    /// CRL files (PEM or DER), typically the issuing CA's `crl.pem`.
    pub crls: Vec<PathBuf>,
    /// What a CRL past its `nextUpdate` does. [`ExpiredCrl::Refuse`] by default.
    pub expired_crl: ExpiredCrl,
}

/// What happens while a CRL in force is past its `nextUpdate` (the CA failed to publish a
/// fresh one, or the server cannot fetch it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExpiredCrl {
    /// Fail closed: every request is answered 503 `crl_expired` (the handshake still
    /// completes, so the client learns why) and certificates checked outside the
    /// handshake are refused.
    #[default]
    Refuse,
    /// Keep using the expired CRL's entries; the caller warns (see
    /// [`ServerTls::expired_crl`]).
    Warn,
}

impl std::str::FromStr for ExpiredCrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "refuse" => Ok(Self::Refuse),
            "warn" => Ok(Self::Warn),
            other => Err(format!(
                "`{other}` is not an expired-CRL policy; use \"refuse\" or \"warn\""
            )),
        }
    }
}

impl ServerTlsSettings {
    /// Settings with CRL expiry enforced and no CRL files.
    pub fn new(
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca_bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            certificate: certificate.into(),
            key: key.into(),
            ca_bundle: ca_bundle.into(),
            crls: Vec::new(),
            expired_crl: ExpiredCrl::Refuse,
        }
    }
}

/// One loaded generation of the configuration.
struct Loaded {
    config: Arc<ServerConfig>,
    trust: Arc<Trust>,
    /// (issuer DN DER, serial) of every revoked certificate in the CRLs.
    revoked: HashSet<(Vec<u8>, Vec<u8>)>,
    /// The CRL in force that expires first: (`nextUpdate` as Unix seconds, issuer,
    /// `nextUpdate` as RFC 3339).
    first_expiry: Option<(i64, String, String)>,
    /// The CA bundle, against which every CRL's signature is verified.
    ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// A server's TLS configuration, swapped atomically on reload: connections accepted after
/// a reload use the new certificates, CA bundle and CRLs; existing connections are
/// re-checked per request (see the module docs).
pub struct ServerTls {
    settings: ServerTlsSettings,
    fetched_crls: Mutex<Vec<Vec<u8>>>,
    current: ArcSwap<Loaded>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerTls")
            .field("settings", &self.settings)
            .field("revoked", &self.current.load().revoked.len())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the certificate, key, CA bundle and CRLs.
    pub fn load(settings: ServerTlsSettings) -> Result<Self, Error> {
        let loaded = load_config(&settings, &[])?;
        Ok(Self {
            settings,
            fetched_crls: Mutex::new(Vec::new()),
            current: ArcSwap::from_pointee(loaded),
        })
    }

    /// Re-reads every file (and keeps the last fetched CRLs) and swaps the configuration
    /// in. On error the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), Error> {
        let fetched = self.fetched();
        let loaded = load_config(&self.settings, &fetched)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// Replaces the CRLs the caller fetched itself (for example from the CA's
    /// `http://` distribution point; PEM or DER) and reloads.
    pub fn set_fetched_crls(&self, crls: Vec<Vec<u8>>) -> Result<(), Error> {
        let loaded = load_config(&self.settings, &crls)?;
        if let Ok(mut fetched) = self.fetched_crls.lock() {
            *fetched = crls;
        }
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The settings this was loaded from.
    pub fn settings(&self) -> &ServerTlsSettings {
        &self.settings
    }

    /// The rustls configuration for the next handshake.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.load().config)
    }

    /// Refuses a peer whose certificate is on the current CRLs, and everyone while a CRL
    /// is past its `nextUpdate` under [`ExpiredCrl::Refuse`].
    pub fn check_not_revoked(&self, peer: &PeerIdentity) -> Result<(), AccessError> {
        let loaded = self.current.load();
        let key = (peer.issuer.clone(), peer.serial.clone());
        if loaded.revoked.contains(&key) {
            return Err(AccessError::Revoked);
        }
        if self.settings.expired_crl == ExpiredCrl::Refuse
            && let Some(expired) = expired(&loaded, std::time::SystemTime::now())
        {
            return Err(expired);
        }
        Ok(())
    }

    /// The expiry of the CRL in force that is past its `nextUpdate` at `now`, whatever
    /// the policy (so a server under [`ExpiredCrl::Warn`] can say so).
    pub fn expired_crl(&self, now: std::time::SystemTime) -> Option<AccessError> {
        expired(&self.current.load(), now)
    }

    /// Parses a CRL (PEM or DER) and verifies its signature against its issuer in the
    /// current CA bundle; `origin` names it in errors. A CRL that does not verify is
    /// refused: anyone on the path could otherwise un-revoke a device.
    pub fn verify_crl(
        &self,
        origin: &str,
        bytes: &[u8],
    ) -> Result<CertificateRevocationListDer<'static>, Error> {
        let crl = files::crl(origin, bytes)?;
        verify_crl_signature(origin, &crl, &self.current.load().ca)?;
        Ok(crl)
    }

    /// Verifies a certificate that arrived outside the handshake (a patient's certificate
    /// inside a batch) against the same CA bundle and CRLs as the handshake, at `now`,
    /// requiring the extended key usage whose OID content octets are `extended_key_usage`;
    /// returns its wardseal identity.
    pub fn verify_certificate(
        &self,
        der: &[u8],
        extended_key_usage: &'static [u8],
        now: std::time::SystemTime,
    ) -> Result<PeerIdentity, CertificateError> {
        let loaded = self.current.load();
        let certificate = rustls::pki_types::CertificateDer::from(der);
        let time = rustls::pki_types::UnixTime::since_unix_epoch(
            now.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        loaded
            .trust
            .verify(
                &certificate,
                &[],
                webpki::KeyUsage::required(extended_key_usage),
                time,
            )
            .map_err(|error| match error {
                webpki::Error::CertRevoked => CertificateError::Revoked,
                other => CertificateError::Invalid {
                    reason: other.to_string(),
                },
            })?;
        PeerIdentity::from_certificate(&certificate).map_err(CertificateError::Identity)
    }

    fn fetched(&self) -> Vec<Vec<u8>> {
        self.fetched_crls
            .lock()
            .map(|fetched| fetched.clone())
            .unwrap_or_default()
    }
}

/// The one place a configuration is built, used at start-up and on every reload.
fn load_config(settings: &ServerTlsSettings, fetched: &[Vec<u8>]) -> Result<Loaded, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = root_store(&settings.ca_bundle)?;
    let ca = files::certificates("CA bundle", &settings.ca_bundle)?;
    let mut crls = Vec::new();
    for path in &settings.crls {
        let bytes = files::read("CRL", path)?;
        let origin = path.display().to_string();
        let crl = files::crl(&origin, &bytes)?;
        verify_crl_signature(&origin, &crl, &ca)?;
        crls.push(crl);
    }
    for bytes in fetched {
        let crl = files::crl("fetched", bytes)?;
        verify_crl_signature("fetched", &crl, &ca)?;
        crls.push(crl);
    }
    let crls = newest_per_issuer(crls);
    let revoked = revoked_set(&crls);
    let first_expiry = first_expiry(&crls);
    let owned_crls = crls
        .iter()
        .map(|crl| {
            webpki::OwnedCertRevocationList::from_der(crl.as_ref())
                .map(webpki::CertRevocationList::from)
                .map_err(|error| ConfigError::Crl {
                    origin: "CRL".into(),
                    reason: error.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut anchors = Vec::new();
    for certificate in files::certificates("CA bundle", &settings.ca_bundle)? {
        let anchor = webpki::anchor_from_trusted_cert(&certificate).map_err(|error| {
            ConfigError::TrustAnchor {
                path: settings.ca_bundle.clone(),
                reason: error.to_string(),
            }
        })?;
        anchors.push(anchor.to_owned());
    }

    // Expiry is not enforced in the handshake: under `Refuse` the serving loop answers
    // 503 `crl_expired` per request, which tells the client why (a TLS alert would not).
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|error| ConfigError::Verifier {
            reason: error.to_string(),
        })?;
    let trust = Arc::new(Trust {
        anchors,
        crls: owned_crls,
        enforce_revocation_expiration: settings.expired_crl == ExpiredCrl::Refuse,
    });
    let verifier = Arc::new(ClientVerifier {
        inner: verifier,
        trust: Arc::clone(&trust),
    });

    let chain = files::certificates("certificate", &settings.certificate)?;
    let key = files::private_key(&settings.key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| ConfigError::Verifier {
            reason: error.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| ConfigError::CertificateKey {
            reason: error.to_string(),
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS
        .iter()
        .map(|protocol| protocol.to_vec())
        .collect();
    // No resumption at all: see the module docs.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.ticketer = Arc::new(NoTickets);
    Ok(Loaded {
        config: Arc::new(config),
        trust,
        revoked,
        first_expiry,
        ca,
    })
}

fn expired(loaded: &Loaded, now: std::time::SystemTime) -> Option<AccessError> {
    let (next_update, issuer, text) = loaded.first_expiry.as_ref()?;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        });
    (now > *next_update).then(|| AccessError::CrlExpired {
        issuer: issuer.clone(),
        next_update: text.clone(),
    })
}

/// The CRL that expires first, among those with a `nextUpdate`.
fn first_expiry(crls: &[CertificateRevocationListDer<'_>]) -> Option<(i64, String, String)> {
    crls.iter()
        .filter_map(|crl| {
            let (_, parsed) = x509_parser::parse_x509_crl(crl.as_ref()).ok()?;
            let next = parsed.next_update()?;
            Some((
                next.timestamp(),
                parsed.issuer().to_string(),
                next.to_datetime()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| next.to_string()),
            ))
        })
        .min_by_key(|(next, _, _)| *next)
}

/// Verifies `crl`'s signature with the key of the CA-bundle certificate whose subject is
/// the CRL's issuer.
fn verify_crl_signature(
    origin: &str,
    crl: &CertificateRevocationListDer<'_>,
    ca: &[rustls::pki_types::CertificateDer<'_>],
) -> Result<(), ConfigError> {
    let invalid = |issuer: String, reason: String| ConfigError::CrlSignature {
        origin: origin.to_owned(),
        issuer,
        reason,
    };
    let (_, parsed) =
        x509_parser::parse_x509_crl(crl.as_ref()).map_err(|error| ConfigError::Crl {
            origin: origin.to_owned(),
            reason: error.to_string(),
        })?;
    let issuer = parsed.issuer();
    let mut last_error = "no certificate in the CA bundle has this subject".to_owned();
    for certificate in ca {
        let Ok((_, candidate)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
            continue;
        };
        if candidate.subject().as_raw() != issuer.as_raw() {
            continue;
        }
        match parsed.verify_signature(candidate.public_key()) {
            Ok(()) => return Ok(()),
            Err(error) => last_error = format!("bad signature ({error})"),
        }
    }
    Err(invalid(issuer.to_string(), last_error))
}

/// The CA bundle and the newest CRLs, for verifications outside rustls's own verifier.
#[derive(Debug)]
struct Trust {
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    enforce_revocation_expiration: bool,
}

impl Trust {
    fn verify(
        &self,
        certificate: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        usage: webpki::KeyUsage,
        time: rustls::pki_types::UnixTime,
    ) -> Result<(), webpki::Error> {
        let end_entity = webpki::EndEntityCert::try_from(certificate)?;
        let crls = self.crls.iter().collect::<Vec<_>>();
        let revocation = match webpki::RevocationOptionsBuilder::new(&crls) {
            Ok(builder) => {
                let builder = builder
                    .with_depth(webpki::RevocationCheckDepth::EndEntity)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny);
                Some(if self.enforce_revocation_expiration {
                    builder
                        .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                        .build()
                } else {
                    builder.build()
                })
            }
            // No CRL configured: as rustls's verifier, check no revocation.
            Err(_) => None,
        };
        end_entity
            .verify_for_usage(
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .all,
                &self.anchors,
                intermediates,
                time,
                usage,
                revocation,
                None,
            )
            .map(drop)
    }
}

/// rustls's WebPKI client verifier, plus one admission: a patient's card certificate,
/// whose profile has the wardseal patient-data-signing usage instead of `clientAuth`
/// (patients read their own access log with it). Everything else (chain, validity, CRLs)
/// is checked the same way; handshake signatures are checked by the inner verifier.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    trust: Arc<Trust>,
}

impl rustls::server::danger::ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => Ok(verified),
            Err(error) => {
                let patient = webpki::KeyUsage::required(patient_signing_usage());
                if self
                    .trust
                    .verify(end_entity, intermediates, patient, now)
                    .is_ok()
                {
                    Ok(rustls::server::danger::ClientCertVerified::assertion())
                } else {
                    Err(error)
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The DER content octets of the patient-data-signing EKU OID.
pub(crate) fn patient_signing_usage() -> &'static [u8] {
    static USAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    USAGE.get_or_init(|| {
        wardseal_core::identity::PATIENT_DATA_SIGNING_OID
            .as_bytes()
            .to_vec()
    })
}

/// Never issues TLS 1.2 tickets (rustls's default ticketer already does not; this says so).
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }
    fn lifetime(&self) -> u32 {
        0
    }
    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The trust anchors of a PEM CA bundle.
pub(crate) fn root_store(path: &std::path::Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for certificate in files::certificates("CA bundle", path)? {
        roots
            .add(certificate)
            .map_err(|error| ConfigError::TrustAnchor {
                path: path.to_owned(),
                reason: error.to_string(),
            })?;
    }
    Ok(roots)
}

/// Keeps, for each issuer, only its newest CRL (highest CRL number, then latest
/// `thisUpdate`): webpki would use the
/// first CRL of an issuer it finds, and a stale file next to a freshly fetched CRL must not
/// hide a revocation.
fn newest_per_issuer(
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Vec<CertificateRevocationListDer<'static>> {
    type Age = (Option<(usize, Vec<u8>)>, i64);
    let mut newest: std::collections::HashMap<
        Vec<u8>,
        (Age, CertificateRevocationListDer<'static>),
    > = std::collections::HashMap::new();
    for crl in crls {
        let Ok((_, parsed)) = x509_parser::parse_x509_crl(crl.as_ref()) else {
            continue;
        };
        let issuer = parsed.issuer().as_raw().to_vec();
        let number = parsed.crl_number().map(|number| {
            let bytes = number.to_bytes_be();
            (bytes.len(), bytes)
        });
        let age: Age = (number, parsed.last_update().timestamp());
        drop(parsed);
        match newest.get(&issuer) {
            Some((seen, _)) if *seen >= age => {}
            _ => {
                newest.insert(issuer, (age, crl));
            }
        }
    }
    newest.into_values().map(|(_, crl)| crl).collect()
}

fn revoked_set(crls: &[CertificateRevocationListDer<'_>]) -> HashSet<(Vec<u8>, Vec<u8>)> {
    let mut revoked = HashSet::new();
    for crl in crls {
        // Already parsed once by `files::crl`; a failure here cannot happen.
        if let Ok((_, parsed)) = x509_parser::parse_x509_crl(crl.as_ref()) {
            let issuer = parsed.issuer().as_raw().to_vec();
            for entry in parsed.iter_revoked_certificates() {
                revoked.insert((issuer.clone(), entry.raw_serial().to_vec()));
            }
        }
    }
    revoked
}
