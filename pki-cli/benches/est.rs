//! EST enrollments per second: pre-registered devices, each enrolling over its own fresh
//! TLS connection (handshake included) with a one-time secret, 32 at a time, against the
//! EST server in-process (the library `wardseal-pki est serve` runs). Each enrollment
//! verifies the CSR, signs the certificate and commits it, the spent secret and the audit
//! entry in one SQLite transaction (`synchronous=FULL`). CSRs are made before the clock
//! starts. Prints the figure beside its target; asserts nothing about speed.
//!
//! `cargo bench -p wardseal-pki --bench est`; `WARDSEAL_BENCH_EST_DEVICES` (default 2,000)
//! and `WARDSEAL_BENCH_EST_CONCURRENCY` (default 32) change the counts.
#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark reports by printing and stops on failure"
)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId};
use wardseal_net::client::Endpoint;
use wardseal_net::est_client::{Basic, EstClient, new_key_and_csr};
use wardseal_pki::ca::{Ca, InitOptions, Secrets, SubjectKey};
use wardseal_pki::est::{EstOptions, Registration, TlsFiles};
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;

const TARGET: f64 = 1_000.0;

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

struct Device {
    user: String,
    secret: String,
    csr: Vec<u8>,
}

fn main() {
    let devices = count("WARDSEAL_BENCH_EST_DEVICES", 2_000);
    let concurrency = count("WARDSEAL_BENCH_EST_CONCURRENCY", 32).max(1);
    let temp = tempfile::tempdir().unwrap();
    let passphrase = temp.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple").unwrap();
    let secrets = Secrets {
        passphrase: Some(SecretSource::File(passphrase)),
        pin: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ca = Ca::init(
            &InitOptions::new(temp.path().join("ca"), "Bench Hospital"),
            &secrets,
            "bench",
        )
        .await
        .unwrap();
        let signing = ca.unlock(&secrets).unwrap();
        let mut server = Request::new(Identity::storage(None, None));
        server.ip_addresses = vec![IpAddr::from([127, 0, 0, 1])];
        let key = temp.path().join("est.key");
        let issued = signing
            .issue(
                &server,
                &SubjectKey::Generate {
                    algorithm: KeyAlgorithm::EcdsaP256,
                    path: key.clone(),
                },
                "bench",
            )
            .await
            .unwrap();
        let certificate = temp.path().join("est.pem");
        std::fs::write(&certificate, &issued.pem).unwrap();

        let started = Instant::now();
        let mut queue = Vec::with_capacity(devices);
        for serial in 0..devices {
            let epc: Sgtin96 = format!("urn:epc:tag:sgtin-96:3.0614141.812345.{serial}")
                .parse()
                .unwrap();
            let secret = wardseal_pki::est::register(
                &ca,
                &Registration {
                    epc: epc.clone(),
                    group_id: GroupId(3),
                    rule_id: RuleId(128),
                    ward: Some("ward-7".into()),
                    secret: true,
                    manufacturer_serial: None,
                },
                false,
                "bench",
            )
            .await
            .unwrap()
            .unwrap();
            let (_, csr) = new_key_and_csr("device").unwrap();
            queue.push(Device {
                user: epc.to_hex(),
                secret: secret.expose().to_owned(),
                csr,
            });
        }
        println!(
            "registered {devices} devices and made their CSRs in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint: Endpoint = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        )
        .parse()
        .unwrap();
        let files = TlsFiles {
            certificate,
            key,
            manufacturer_cas: Vec::new(),
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.settings().root_certificate.clone()))
            .unwrap();
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = EstOptions {
            max_connections: 1024,
            ..EstOptions::default()
        };
        let server = wardseal_pki::est::serve(&signing, &files, listener, options, "est", async {
            let _ = stopped.await;
        });
        let clients = async move {
            let queue = Arc::new(Mutex::new(queue));
            let started = Instant::now();
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let queue = Arc::clone(&queue);
                let endpoint = endpoint.clone();
                let tls = Arc::clone(&tls);
                workers.spawn(async move {
                    let mut enrolled = 0_usize;
                    loop {
                        let Some(device) = queue.lock().unwrap().pop() else {
                            return enrolled;
                        };
                        // A new client per device: a fresh connection and handshake.
                        let client = EstClient::new(&endpoint, Arc::clone(&tls));
                        let basic = Basic {
                            user: &device.user,
                            password: &device.secret,
                        };
                        client
                            .simple_enroll(&device.csr, Some(&basic))
                            .await
                            .unwrap();
                        enrolled += 1;
                    }
                });
            }
            let mut enrolled = 0;
            while let Some(done) = workers.join_next().await {
                enrolled += done.unwrap();
            }
            let seconds = started.elapsed().as_secs_f64();
            stop.send(()).unwrap();
            (enrolled, seconds)
        };
        let (served, (enrolled, seconds)) = tokio::join!(server, clients);
        served.unwrap();
        assert_eq!(enrolled, devices);
        let rate = enrolled as f64 / seconds;
        println!(
            "EST simpleenroll, {enrolled} devices, {concurrency} at a time, fresh TLS each: \
             {seconds:.2} s, {rate:.0} enrollments/s (target {TARGET:.0})"
        );
        // Machine-readable figures for scripts/bench-report (`BENCH <name> <value> <unit>`).
        println!("BENCH est_enrollments_per_s {rate:.1} enrollments/s");
        println!("BENCH est_enrollments_target {TARGET:.1} enrollments/s");
    });
}
