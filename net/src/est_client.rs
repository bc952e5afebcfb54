//! The client side of EST (RFC 7030): fetch the CA certificates, enroll, and renew a
//! certificate before it expires.
//!
//! A server or device renews with the certificate it already has: [`renew_if_due`] looks
//! at the certificate's `notAfter`, and when it is within the margin it makes a new key,
//! sends its CSR to `simplereenroll` authenticated by the current certificate (TLS client
//! authentication, RFC 7030 §3.3.2), and writes the new key and certificate in place of
//! the old (each written to a temporary file and renamed, the key 0600). The caller then
//! reloads its TLS configuration ([`crate::server::ServerTls::reload`] for servers, a new
//! [`crate::client::ClientTlsSettings::client_config`] for clients): no restart.
//!
//! Requests carry the DER CSR in base64 (`application/pkcs10`, RFC 7030 §4.2.1); answers
//! are base64 certs-only PKCS#7 (§4.2.3), read here with the `der` crate. HTTP is
//! hyper-util's client over hyper-rustls, as in [`crate::client`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode as _, Encode as _, Reader as _, SliceReader, Tagged as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::client::{ClientTlsSettings, Endpoint};
use crate::error::{Error, EstClientError};
use crate::files;

/// `id-signedData` (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// The largest answer read: a few certificates.
const MAX_ANSWER: usize = 1024 * 1024;

/// An EST client for one server.
#[derive(Clone)]
pub struct EstClient {
    base: String,
    http: PooledClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for EstClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// HTTP Basic credentials for a first enrollment (RFC 7030 §3.2.3): the device's EPC in
/// hex and its one-time secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic<'a> {
    /// The user (the EPC as 24 hex digits).
    pub user: &'a str,
    /// The one-time secret.
    pub password: &'a str,
}

impl std::fmt::Debug for Basic<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic")
            .field("user", &self.user)
            .field("password", &"[secret elided]")
            .finish()
    }
}

fn local(reason: impl std::fmt::Display) -> Error {
    EstClientError::Local {
        reason: reason.to_string(),
    }
    .into()
}

impl EstClient {
    /// A client for `endpoint` (`https://host:port`) with `tls` (the CA bundle as trust
    /// anchors; a client certificate for `simplereenroll` or a manufacturer one).
    pub fn new(endpoint: &Endpoint, tls: Arc<ClientConfig>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let mut https = HttpsConnector::from((http, tls));
        https.enforce_https();
        Self {
            base: format!("{endpoint}/.well-known/est/"),
            http: PooledClient::builder(TokioExecutor::new()).build(https),
        }
    }

    async fn exchange(
        &self,
        operation: &'static str,
        method: Method,
        body: Option<(&[u8], Option<&Basic<'_>>)>,
    ) -> Result<Vec<u8>, Error> {
        let url = format!("{}{operation}", self.base);
        let failed = |reason: String| EstClientError::Exchange {
            operation,
            url: url.clone(),
            reason,
        };
        let mut request = Request::builder().method(method).uri(url.as_str());
        let content = match body {
            Some((der, basic)) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/pkcs10");
                if let Some(basic) = basic {
                    let credentials = STANDARD.encode(format!("{}:{}", basic.user, basic.password));
                    request = request
                        .header(hyper::header::AUTHORIZATION, format!("Basic {credentials}"));
                }
                Bytes::from(STANDARD.encode(der))
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(content))
            .map_err(|error| failed(error.to_string()))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| failed(error.to_string()))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|error| failed(error.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .map_err(|_| failed("no answer within 60 s".into()))??;
        if status != 200 {
            return Err(EstClientError::Refused {
                operation,
                status,
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            }
            .into());
        }
        let compact: Vec<u8> = body
            .iter()
            .copied()
            .filter(|byte| !byte.is_ascii_whitespace())
            .collect();
        STANDARD.decode(compact).map_err(|error| {
            EstClientError::BadAnswer {
                operation,
                reason: format!("not base64: {error}"),
            }
            .into()
        })
    }

    /// `/cacerts`: the CA certificates the server hands out (issuing CA, root).
    pub async fn ca_certificates(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let der = self.exchange("cacerts", Method::GET, None).await?;
        certs_only("cacerts", &der)
    }

    /// `/simpleenroll` with `csr` (DER), authenticated by `basic` or by the client
    /// certificate of the TLS configuration; returns the new certificate.
    pub async fn simple_enroll(
        &self,
        csr: &[u8],
        basic: Option<&Basic<'_>>,
    ) -> Result<CertificateDer<'static>, Error> {
        let der = self
            .exchange("simpleenroll", Method::POST, Some((csr, basic)))
            .await?;
        first_certificate("simpleenroll", &der)
    }

    /// `/simplereenroll` with `csr` (DER), authenticated by the current certificate (the
    /// TLS configuration's); returns the new certificate.
    pub async fn simple_reenroll(&self, csr: &[u8]) -> Result<CertificateDer<'static>, Error> {
        let der = self
            .exchange("simplereenroll", Method::POST, Some((csr, None)))
            .await?;
        first_certificate("simplereenroll", &der)
    }
}

fn first_certificate(
    operation: &'static str,
    der: &[u8],
) -> Result<CertificateDer<'static>, Error> {
    certs_only(operation, der)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            EstClientError::BadAnswer {
                operation,
                reason: "it holds no certificate".into(),
            }
            .into()
        })
}

/// The certificates of a certs-only PKCS#7 SignedData (RFC 5652 §5, RFC 8551 §3.2.2).
pub fn certs_only(
    operation: &'static str,
    der: &[u8],
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bad = |error: der::Error| EstClientError::BadAnswer {
        operation,
        reason: error.to_string(),
    };
    let mut certificates = Vec::new();
    let content_info = AnyRef::from_der(der).map_err(bad)?;
    let signed_data = content_info
        .sequence(|reader: &mut SliceReader<'_>| {
            let content_type: ObjectIdentifier = reader.decode()?;
            if content_type != ID_SIGNED_DATA {
                return Err(der::Tag::ObjectIdentifier.value_error());
            }
            // content [0] EXPLICIT SignedData
            let explicit: AnyRef<'_> = reader.decode()?;
            AnyRef::from_der(explicit.value())
        })
        .map_err(bad)?;
    signed_data
        .sequence(|reader: &mut SliceReader<'_>| {
            let _version: AnyRef<'_> = reader.decode()?;
            let _digest_algorithms: AnyRef<'_> = reader.decode()?;
            let _content: AnyRef<'_> = reader.decode()?;
            while !reader.is_finished() {
                let field: AnyRef<'_> = reader.decode()?;
                // certificates [0] IMPLICIT SET OF CertificateChoices; crls [1] and
                // signerInfos follow and are not needed.
                if field.tag()
                    == (der::Tag::ContextSpecific {
                        constructed: true,
                        number: der::TagNumber::N0,
                    })
                {
                    let mut inner = SliceReader::new(field.value())?;
                    while !inner.is_finished() {
                        let certificate: AnyRef<'_> = inner.decode()?;
                        certificates.push(CertificateDer::from(certificate.to_der()?));
                    }
                }
            }
            Ok(())
        })
        .map_err(bad)?;
    Ok(certificates)
}

/// Whether `certificate` expires within `margin` of `now` (or already has).
pub fn renewal_due(
    certificate: &CertificateDer<'_>,
    margin: Duration,
    now: SystemTime,
) -> Result<bool, Error> {
    let (_, parsed) = X509Certificate::from_der(certificate)
        .map_err(|error| local(format!("the current certificate does not parse: {error}")))?;
    let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(not_after);
    Ok(now + margin >= not_after)
}

/// A new EC P-256 key (PKCS#8 PEM) and a CSR for it (DER) with `common_name`. The CA takes
/// only the key from the CSR; the name is for the record.
pub fn new_key_and_csr(common_name: &str) -> Result<(String, Vec<u8>), Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(local)?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params.serialize_request(&key).map_err(local)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// What a renewal wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// The new certificate (DER).
    pub certificate: CertificateDer<'static>,
    /// Its end of validity.
    pub not_after: SystemTime,
}

fn replace(path: &Path, contents: &[u8], private: bool) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = path.as_os_str().to_owned();
    name.push(".renewing");
    let temporary = std::path::PathBuf::from(name);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&temporary)
        .map_err(|error| local(format!("create {}: {error}", temporary.display())))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| local(format!("write {}: {error}", temporary.display())))?;
    std::fs::rename(&temporary, path)
        .map_err(|error| local(format!("replace {}: {error}", path.display())))
}

/// Renews the identity in `settings` over EST when its certificate is within `margin` of
/// expiry: a new key, `simplereenroll` with the current certificate, and the new key and
/// certificate written over the old files (key first). Returns `None` when not yet due.
/// The caller reloads its TLS configuration afterwards.
pub async fn renew_if_due(
    server: &Endpoint,
    settings: &ClientTlsSettings,
    margin: Duration,
) -> Result<Option<Renewed>, Error> {
    let chain = files::certificates("certificate", &settings.certificate)?;
    let current = chain
        .first()
        .ok_or_else(|| local("the certificate file holds no certificate"))?;
    if !renewal_due(current, margin, SystemTime::now())? {
        return Ok(None);
    }
    let client = EstClient::new(server, settings.client_config(&[b"http/1.1"])?);
    let (_, parsed) = X509Certificate::from_der(current)
        .map_err(|error| local(format!("the current certificate does not parse: {error}")))?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .unwrap_or("wardseal")
        .to_owned();
    let (key_pem, csr) = new_key_and_csr(&common_name)?;
    let certificate = client.simple_reenroll(&csr).await?;
    let (_, renewed) = X509Certificate::from_der(&certificate)
        .map_err(|error| local(format!("the new certificate does not parse: {error}")))?;
    let not_after = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(renewed.validity().not_after.timestamp()).unwrap_or(0));
    let mut pem = String::new();
    for der in std::iter::once(&certificate).chain(chain.iter().skip(1)) {
        pem.push_str(&pem_block(der));
    }
    replace(&settings.key, key_pem.as_bytes(), true)?;
    replace(&settings.certificate, pem.as_bytes(), false)?;
    Ok(Some(Renewed {
        certificate,
        not_after,
    }))
}

fn pem_block(der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // The answer comes from the network: any bytes give certificates or an error.
        #[test]
        fn any_answer_is_read_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = certs_only("cacerts", &bytes);
        }
    }

    #[test]
    fn garbage_is_not_a_certs_only_message() {
        assert!(certs_only("cacerts", b"\x30\x03\x02\x01\x01").is_err());
        assert!(certs_only("cacerts", b"hello").is_err());
    }

    #[test]
    fn renewal_is_due_inside_the_margin() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::hours(1);
        let certificate = params.self_signed(&key).unwrap();
        let der = CertificateDer::from(certificate.der().to_vec());
        let now = SystemTime::now();
        assert!(!renewal_due(&der, Duration::from_secs(60), now).unwrap());
        assert!(renewal_due(&der, Duration::from_secs(2 * 3600), now).unwrap());
    }

    #[test]
    fn csr_carries_the_new_key() {
        let (key, csr) = new_key_and_csr("pump").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
        parsed.verify_signature().unwrap();
    }
}
