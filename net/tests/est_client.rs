//! The EST client against the CA's EST server (started in-process through the library
//! `wardseal-pki est serve` uses): first enrollment with a one-time secret, then a
//! certificate renewing itself several times, each renewal authenticated by the last.

#![expect(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use wardseal_core::identity::{GroupId, Identity, RuleId};
use wardseal_net::client::{ClientTlsSettings, Endpoint};
use wardseal_net::est_client::{self, Basic, EstClient};
use wardseal_net::{Error, EstClientError};
use wardseal_pki::est::{EstOptions, Registration, TlsFiles};
use wardseal_testkit::TestPki;
use x509_parser::prelude::{FromDer, X509Certificate};

const EPC: &str = "urn:epc:tag:sgtin-96:3.0614141.812345.6789";

fn serial_and_epc(der: &[u8]) -> (String, String) {
    let (_, certificate) = X509Certificate::from_der(der).unwrap();
    let epc = certificate
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .unwrap();
    (certificate.raw_serial_as_string(), epc)
}

#[tokio::test]
async fn a_device_enrolls_then_renews_itself_before_expiry() {
    let pki = TestPki::new().await.unwrap();
    let server_files = pki.issue(Identity::storage(None, None)).await.unwrap();
    let epc: wardseal_core::epc::Sgtin96 = EPC.parse().unwrap();
    let secret = wardseal_pki::est::register(
        pki.ca(),
        &Registration {
            epc: epc.clone(),
            group_id: GroupId(3),
            rule_id: RuleId(128),
            ward: Some("ward-7".into()),
            secret: true,
            manufacturer_serial: None,
        },
        false,
        "test",
    )
    .await
    .unwrap()
    .unwrap();
    let signing = pki.ca().unlock(pki.secrets()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint: Endpoint = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    )
    .parse()
    .unwrap();
    let files = TlsFiles {
        certificate: server_files.certificate.clone(),
        key: server_files.key.clone(),
        manufacturer_cas: Vec::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = wardseal_pki::est::serve(
        &signing,
        &files,
        listener,
        EstOptions {
            validity_days: Some(1),
            ..EstOptions::default()
        },
        "est",
        async {
            let _ = stopped.await;
        },
    );
    let device = async {
        let dir = tempfile::tempdir().unwrap();
        // First enrollment: no client certificate, the one-time secret.
        let anonymous = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(pki.root_der().to_vec()))
                .unwrap();
            roots
        })
        .with_no_client_auth();
        let client = EstClient::new(&endpoint, std::sync::Arc::new(anonymous));
        let ca_certificates = client.ca_certificates().await.unwrap();
        assert_eq!(ca_certificates.len(), 2);
        assert!(
            ca_certificates
                .iter()
                .any(|der| der.as_ref() == pki.root_der())
        );
        let (key_pem, csr) = est_client::new_key_and_csr("pump").unwrap();
        let basic = Basic {
            user: &epc.to_hex(),
            password: secret.expose(),
        };
        let first = client.simple_enroll(&csr, Some(&basic)).await.unwrap();
        let (first_serial, first_epc) = serial_and_epc(&first);
        assert_eq!(first_epc, epc.pure_identity_uri());
        // The secret is spent.
        match client.simple_enroll(&csr, Some(&basic)).await {
            Err(Error::Est(EstClientError::Refused {
                status: 403, body, ..
            })) => {
                assert!(body.contains("secret_used"), "{body}");
            }
            other => panic!("a reused secret was not refused: {other:?}"),
        }

        // Write the identity as a device keeps it, then renew it three times.
        let certificate_path = dir.path().join("device.pem");
        let key_path = dir.path().join("device.key");
        std::fs::write(
            &certificate_path,
            wardseal_pki::ca::pem("CERTIFICATE", &first).unwrap(),
        )
        .unwrap();
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .unwrap();
            file.write_all(key_pem.as_bytes()).unwrap();
        }
        let settings = ClientTlsSettings::new(pki.ca_bundle(), &certificate_path, &key_path);
        // Valid a day: not due with a one-hour margin.
        let not_due = est_client::renew_if_due(&endpoint, &settings, Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(not_due.is_none());
        let mut serials = vec![first_serial];
        for _ in 0..3 {
            let renewed =
                est_client::renew_if_due(&endpoint, &settings, Duration::from_secs(2 * 86_400))
                    .await
                    .unwrap()
                    .expect("due within a two-day margin");
            let (serial, renewed_epc) = serial_and_epc(&renewed.certificate);
            assert_eq!(renewed_epc, epc.pure_identity_uri(), "the identity changed");
            assert!(!serials.contains(&serial), "the serial was reused");
            assert!(renewed.not_after > SystemTime::now());
            serials.push(serial);
            // The files now hold the new identity, and it works for the next handshake.
            let written =
                wardseal_net::files::certificates("certificate", &certificate_path).unwrap();
            assert_eq!(written[0], renewed.certificate);
            wardseal_net::files::private_key(&key_path).unwrap();
        }
        stop.send(()).unwrap();
        serials
    };
    let ((), serials) = tokio::join!(async { server.await.unwrap() }, device);
    // Every renewal is linked to the one before in the inventory.
    let records = pki
        .ca()
        .inventory()
        .list(&wardseal_pki::inventory::Filter::default())
        .await
        .unwrap();
    let renewals = records
        .iter()
        .filter(|record| record.renewal_of.is_some())
        .count();
    assert_eq!(renewals, 3, "{records:?}");
    assert_eq!(serials.len(), 4);
}
