//! The mTLS front door with certificates issued by the real hospital CA (wardseal-pki).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::{client, get_h2, get_once, http1};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use wardseal_core::identity::{GroupId, Identity, Role, RuleId, SubjectId};
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};
use wardseal_net::wire::{WireError, json_response};
use wardseal_net::{Error, KeyFileError};
use wardseal_testkit::{CertificateFiles, TestPki};

struct Server {
    address: SocketAddr,
    tls: Arc<ServerTls>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap();
    }
}

fn ward() -> SubjectId {
    SubjectId::new("ward-7").unwrap()
}

fn collector() -> Identity {
    Identity::collector(ward(), Some(GroupId(3)), Some(RuleId(128)), None)
}

fn device() -> Identity {
    let epc = "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
        .parse()
        .unwrap();
    Identity::device(epc, GroupId(3), RuleId(128))
}

/// Parks each request: the handler says it `entered`, then waits for `release`.
#[derive(Clone)]
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

/// A server whose handler accepts collectors and devices and echoes the identity; `gate`,
/// when given, holds each request until released.
async fn start(pki: &TestPki, gate: Option<Gate>) -> Server {
    let storage = pki.issue(Identity::storage(None, None)).await.unwrap();
    let mut settings = ServerTlsSettings::new(&storage.certificate, &storage.key, pki.ca_bundle());
    settings.crls.push(pki.crl());
    let tls = Arc::new(ServerTls::load(settings).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = move |_request, peer: Arc<wardseal_net::peer::PeerIdentity>| {
        let gate = gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.entered.notify_one();
                gate.release.notified().await;
            }
            match peer.require_any_role(&[Role::Collector, Role::Device]) {
                Ok(identity) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({"role": identity.role().name(), "serial": peer.serial_hex()}),
                ),
                Err(error) => {
                    WireError::new(StatusCode::FORBIDDEN, "wrong_role", error.to_string())
                        .into_response()
                }
            }
        }
    };
    let task = tokio::spawn(serve(
        listener,
        Arc::clone(&tls),
        ServeOptions::default(),
        handler,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        address,
        tls,
        stop: Some(stop),
        task,
    }
}

/// The serial as the server's peer identity prints it (uppercase hexadecimal).
fn serial_hex(certificate: &CertificateFiles) -> String {
    certificate.serial.to_uppercase()
}

#[tokio::test]
async fn collector_identity_reaches_the_handler_over_http1_and_http2() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let collector = pki.issue(collector()).await.unwrap();

    let mut connection = http1(
        client(pki.ca_bundle(), &collector, &[b"http/1.1"]),
        server.address,
    )
    .await
    .unwrap();
    assert_eq!(connection.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (status, body) = connection.get("/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "collector");
    assert_eq!(body["serial"], serial_hex(&collector));

    let (status, body) = get_h2(
        client(pki.ca_bundle(), &collector, &[b"h2", b"http/1.1"]),
        server.address,
        "/",
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "collector");
    server.stop().await;
}

#[tokio::test]
async fn wrong_role_is_refused_with_a_code() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let staff = pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let (status, body) = get_once(client(pki.ca_bundle(), &staff, &[]), server.address, "/")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "wrong_role");
    assert!(body["message"].as_str().unwrap().contains("staff"));
    server.stop().await;
}

#[tokio::test]
async fn revoked_certificate_is_refused_after_reload_and_resumption_cannot_bypass_it() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let device = pki.issue(device()).await.unwrap();
    // One client configuration, with rustls's default session cache: it would resume if
    // the server allowed it.
    let config = client(pki.ca_bundle(), &device, &[]);

    let mut first = http1(Arc::clone(&config), server.address).await.unwrap();
    assert_eq!(first.get("/").await.unwrap().0, StatusCode::OK);
    let mut second = http1(Arc::clone(&config), server.address).await.unwrap();
    assert_eq!(second.get("/").await.unwrap().0, StatusCode::OK);
    assert_eq!(
        second.handshake_kind,
        Some(rustls::HandshakeKind::Full),
        "the server must not resume sessions: a resumed session skips the revocation check"
    );

    pki.revoke(&device.serial).await.unwrap();
    // Not reloaded yet: the server still uses the old CRL.
    assert_eq!(first.get("/").await.unwrap().0, StatusCode::OK);
    server.tls.reload().unwrap();

    // A connection opened before the revocation is refused on its next request.
    let (status, body) = first.get("/").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "certificate_revoked");
    // A new connection (which might try to resume) fails the handshake.
    let refused = get_once(Arc::clone(&config), server.address, "/").await;
    assert!(refused.is_err(), "revoked certificate got {refused:?}");

    // Others are unaffected.
    let other = pki.issue(collector()).await.unwrap();
    let (status, _) = get_once(client(pki.ca_bundle(), &other, &[]), server.address, "/")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_fetched_crl_revokes_too() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let device = pki.issue(device()).await.unwrap();
    let config = client(pki.ca_bundle(), &device, &[]);
    assert_eq!(
        get_once(Arc::clone(&config), server.address, "/")
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
    // The CA publishes a new CRL; the server's file is left alone and the caller hands the
    // fetched bytes over instead.
    let stale = std::fs::read(pki.crl()).unwrap();
    pki.revoke(&device.serial).await.unwrap();
    let fetched = std::fs::read(pki.crl()).unwrap();
    std::fs::write(pki.crl(), stale).unwrap();
    server.tls.reload().unwrap();
    assert_eq!(
        get_once(Arc::clone(&config), server.address, "/")
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
    server.tls.set_fetched_crls(vec![fetched]).unwrap();
    assert!(
        get_once(Arc::clone(&config), server.address, "/")
            .await
            .is_err()
    );
    // A later file reload keeps the fetched CRL.
    server.tls.reload().unwrap();
    assert!(get_once(config, server.address, "/").await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_client_without_certificate_is_refused() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.root_der().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let refused = get_once(Arc::new(config), server.address, "/").await;
    assert!(refused.is_err(), "anonymous client got {refused:?}");
    server.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection; whatever it sent first (at most a TLS alert) is
    // not HTTP.
    let _ = stream.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/"),
        "plain HTTP got an HTTP answer: {answer:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn world_readable_key_is_refused() {
    let pki = TestPki::new().await.unwrap();
    let storage = pki.issue(Identity::storage(None, None)).await.unwrap();
    std::fs::set_permissions(&storage.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = ServerTls::load(ServerTlsSettings::new(
        &storage.certificate,
        &storage.key,
        pki.ca_bundle(),
    ))
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::KeyFile(KeyFileError::TooOpen { mode: 0o644, .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("chmod 600"));
    std::fs::set_permissions(&storage.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    ServerTls::load(ServerTlsSettings::new(
        &storage.certificate,
        &storage.key,
        pki.ca_bundle(),
    ))
    .unwrap();
}

#[tokio::test]
async fn shutdown_drains_the_request_in_flight() {
    let pki = TestPki::new().await.unwrap();
    let gate = Gate {
        entered: Arc::new(Notify::new()),
        release: Arc::new(Notify::new()),
    };
    let server = start(&pki, Some(gate.clone())).await;
    let collector = pki.issue(collector()).await.unwrap();
    let mut connection = http1(client(pki.ca_bundle(), &collector, &[]), server.address)
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { connection.get("/").await });
    // The handler holds the request; shut down, then let it finish.
    gate.entered.notified().await;
    let address = server.address;
    let Server { stop, task, .. } = server;
    stop.unwrap().send(()).unwrap();
    gate.release.notify_one();
    let (status, _) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    task.await.unwrap();
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn patient_card_certificates_pass_the_door_and_foreign_certificates_do_not() {
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    // A patient card certificate has the patient-data-signing usage, not clientAuth: the
    // door admits it (chain and CRL checked) and the handler decides by role.
    let patient = pki
        .issue(Identity::patient(SubjectId::new("patient-1").unwrap()))
        .await
        .unwrap();
    let (status, body) = get_once(client(pki.ca_bundle(), &patient, &[]), server.address, "/")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "wrong_role");
    // Revoked patient card: refused at the door.
    pki.revoke(&patient.serial).await.unwrap();
    server.tls.reload().unwrap();
    assert!(
        get_once(client(pki.ca_bundle(), &patient, &[]), server.address, "/")
            .await
            .is_err()
    );
    // A collector certificate from another CA: refused at the door.
    let foreign = TestPki::new().await.unwrap();
    let stranger = foreign.issue(collector()).await.unwrap();
    let refused = get_once(client(pki.ca_bundle(), &stranger, &[]), server.address, "/").await;
    assert!(refused.is_err(), "foreign certificate got {refused:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_pooled_client_speaks_both_versions_and_trusts_only_the_hospital_ca() {
    use wardseal_net::client::{Client, ClientOptions, Endpoint};
    let pki = TestPki::new().await.unwrap();
    let server = start(&pki, None).await;
    let collector = pki.issue(collector()).await.unwrap();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port: server.address.port(),
    };
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];
    let http1_only: &[&[u8]] = &[b"http/1.1"];
    for alpn in [both, http1_only] {
        let config = client(pki.ca_bundle(), &collector, alpn);
        let opened = Client::open(&endpoint, Arc::clone(&config)).await.unwrap();
        let lazy = Client::new(&endpoint, config, ClientOptions::fresh_connections());
        for connection in [&opened, &lazy, &opened] {
            let reply = connection
                .send(hyper::Method::GET, "/", bytes::Bytes::new())
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["role"], "collector");
            assert_eq!(body["serial"], serial_hex(&collector));
        }
    }

    // A server certified by another CA is not the hospital's: the handshake fails.
    let other = TestPki::new().await.unwrap();
    let stranger = start(&other, None).await;
    let config = client(pki.ca_bundle(), &collector, both);
    let refused = Client::open(
        &Endpoint {
            host: "127.0.0.1".into(),
            port: stranger.address.port(),
        },
        config,
    )
    .await;
    assert!(refused.is_err(), "a foreign server was trusted");
    stranger.stop().await;
    server.stop().await;
}
