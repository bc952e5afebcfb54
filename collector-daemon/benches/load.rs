//! The collector's load generator: a whole ward on this machine (hospital CA, embedded
//! chain, collector over real mutual TLS) driven by simulated devices. Prints:
//!
//! 1. N = 10, 100, 1000 simultaneous devices, each opening a fresh mTLS connection and
//!    sending one reading: time until all are acknowledged (the seed paper's load test);
//! 2. sustained readings/s over keep-alive connections (1 and 20 readings per request);
//! 3. one patient card throttled to 5 signatures/s: readings/s it seals and the p99
//!    latency from arrival to sealed batch.
//!
//! `cargo bench -p wardseal-collector --bench load` (environment: `WARDSEAL_LOAD_N`,
//! e.g. `10,100`; `WARDSEAL_LOAD_SECONDS`, default 5).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark prints its figures and fails loudly"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{GROUP, RULE, Ward, epc, heart_rate};
use wardseal_card::{KeyKind, Signer, SoftwareSigner};
use wardseal_collector::batcher::Card;
use wardseal_collector::client::Connection;
use wardseal_collector::daemon::Daemon;
use wardseal_core::hash::Hash;
use wardseal_core::identity::{GroupId, Identity, RuleId};
use wardseal_core::reading::Timestamp;
use wardseal_pki::ca::{Secrets, SubjectKey};
use wardseal_pki::key::{KeyAlgorithm, SecretSource};
use wardseal_pki::profile::Request;

const PAPER: [(usize, f64); 3] = [(10, 5.72), (100, 10.81), (1000, 30.25)];
const CARD_DEVICES: u64 = 8;
const CARD_BASE: u64 = 5000;
const KEEPALIVE_BASE: u64 = 6000;
const KEEPALIVE_CONNECTIONS: u64 = 16;

/// A patient card as slow as a real one: 200 ms per signature (5/s).
struct Throttled(SoftwareSigner);

impl Signer for Throttled {
    fn algorithm(&self) -> wardseal_card::SignatureAlgorithm {
        self.0.algorithm()
    }
    fn certificate_der(&self) -> Option<&[u8]> {
        self.0.certificate_der()
    }
    fn public_key_der(&self) -> &[u8] {
        self.0.public_key_der()
    }
    fn sign_digest(&self, digest: &Hash) -> Result<Vec<u8>, wardseal_card::Error> {
        std::thread::sleep(Duration::from_millis(200));
        self.0.sign_digest(digest)
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let sizes: Vec<usize> = std::env::var("WARDSEAL_LOAD_N")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let seconds: u64 = std::env::var("WARDSEAL_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let fresh = sizes.iter().copied().max().unwrap_or(0) as u64;
    let mut devices: Vec<(u64, u32, bool)> = (1..=fresh).map(|s| (s, GROUP, true)).collect();
    devices.extend((CARD_BASE..CARD_BASE + CARD_DEVICES).map(|s| (s, GROUP, true)));
    devices
        .extend((KEEPALIVE_BASE..KEEPALIVE_BASE + KEEPALIVE_CONNECTIONS).map(|s| (s, GROUP, true)));
    let started = Instant::now();
    let ward = Ward::build(
        &devices,
        "[batch]\nmax_readings = 5000\nlinger_ms = 20\n[ingest]\nskew_past_secs = 86400\n",
        0,
    )
    .await;
    ward.assign(
        &(CARD_BASE..CARD_BASE + CARD_DEVICES)
            .map(|s| (s, "P-bench"))
            .collect::<Vec<_>>(),
    );
    // Device certificates, issued by the CA unlocked once.
    let secrets = Secrets {
        passphrase: Some(SecretSource::File(ward.pki.temp.path().join("passphrase"))),
        pin: None,
    };
    let signing = ward.pki.ca.unlock(&secrets).unwrap();
    let mut configs = std::collections::HashMap::new();
    for &(serial, _, _) in &devices {
        let key = ward.dir.path().join(format!("device-{serial}.key"));
        let mut request = Request::new(Identity::device(epc(serial), GroupId(GROUP), RuleId(RULE)));
        request.ward = Some("ward-7".into());
        let issued = signing
            .issue(
                &request,
                &SubjectKey::Generate {
                    algorithm: KeyAlgorithm::EcdsaP256,
                    path: key.clone(),
                },
                "bench",
            )
            .await
            .unwrap();
        let certificate = ward.dir.path().join(format!("device-{serial}.pem"));
        std::fs::write(&certificate, &issued.pem).unwrap();
        let config =
            wardseal_net::client::ClientTlsSettings::new(ward.pki.ca_bundle(), &certificate, &key)
                .client_config(&[b"http/1.1"])
                .unwrap();
        configs.insert(serial, config);
    }
    println!(
        "setup: {} devices registered and certified in {:.1} s",
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    let card = SoftwareSigner::generate(KeyKind::EcdsaP256).unwrap();
    let cards = vec![(
        "P-bench".parse().unwrap(),
        Card {
            signer: Arc::new(Throttled(card)),
            certificate: Vec::new(),
        },
    )];
    let daemon = Daemon::start(&ward.config(), ward.ledger.clone(), cards)
        .await
        .unwrap();
    let endpoint = common::endpoint(daemon.local_addr().port());

    println!(
        "\n1. simultaneous devices, each a fresh mTLS connection (TLS 1.3 handshake) and one reading"
    );
    println!(
        "   {:>5}  {:>16}  {:>14}  {:>8}",
        "N", "all acknowledged", "paper (5 s blocks)", "202s"
    );
    for (round, &n) in sizes.iter().enumerate() {
        let sequence = round as u64 + 1;
        let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
        let mut tasks = tokio::task::JoinSet::new();
        for serial in 1..=n as u64 {
            let config = Arc::clone(&configs[&serial]);
            let endpoint = endpoint.clone();
            let barrier = Arc::clone(&barrier);
            tasks.spawn(async move {
                barrier.wait().await;
                let connection = Connection::open(&endpoint, config).await.unwrap();
                let reply = connection
                    .send(
                        hyper::Method::POST,
                        "/v1/readings",
                        heart_rate("72", sequence, Timestamp::now()).into_bytes(),
                    )
                    .await
                    .unwrap();
                reply.status
            });
        }
        barrier.wait().await;
        let start = Instant::now();
        let mut accepted = 0;
        while let Some(status) = tasks.join_next().await {
            if status.unwrap() == 202 {
                accepted += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let paper = PAPER
            .iter()
            .find(|(size, _)| *size == n)
            .map_or("-".into(), |(_, s)| format!("{s:.2} s"));
        println!("   {n:>5}  {elapsed:>14.3} s  {paper:>14}  {accepted:>8}");
    }

    println!(
        "\n2. sustained over {KEEPALIVE_CONNECTIONS} keep-alive HTTP/1.1 connections, {seconds} s each"
    );
    let mut next_sequence = 1u64;
    for per_request in [1usize, 20] {
        let accepted = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = tokio::task::JoinSet::new();
        let base = next_sequence;
        for serial in KEEPALIVE_BASE..KEEPALIVE_BASE + KEEPALIVE_CONNECTIONS {
            let config = Arc::clone(&configs[&serial]);
            let endpoint = endpoint.clone();
            let accepted = Arc::clone(&accepted);
            tasks.spawn(async move {
                let connection = Connection::open(&endpoint, config).await.unwrap();
                let mut sequence = base;
                while Instant::now() < deadline {
                    let time = Timestamp::now();
                    let readings: Vec<String> = (0..per_request)
                        .map(|i| heart_rate("72", sequence + i as u64, time))
                        .collect();
                    sequence += per_request as u64;
                    let reply = connection
                        .send(
                            hyper::Method::POST,
                            "/v1/readings",
                            format!("[{}]", readings.join(",")).into_bytes(),
                        )
                        .await
                        .unwrap();
                    if reply.status == 202 {
                        accepted.fetch_add(per_request as u64, Ordering::Relaxed);
                    }
                }
                sequence
            });
        }
        let start = Instant::now();
        while let Some(last) = tasks.join_next().await {
            next_sequence = next_sequence.max(last.unwrap());
        }
        let total = accepted.load(Ordering::Relaxed);
        println!(
            "   {per_request:>2} reading(s)/request: {total} readings acknowledged (durable) in {:.1} s = {:.0} readings/s",
            start.elapsed().as_secs_f64(),
            total as f64 / start.elapsed().as_secs_f64()
        );
    }

    println!(
        "\n3. one patient card throttled to 5 signatures/s, {CARD_DEVICES} devices sending for {seconds} s"
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for serial in CARD_BASE..CARD_BASE + CARD_DEVICES {
        let config = Arc::clone(&configs[&serial]);
        let endpoint = endpoint.clone();
        tasks.spawn(async move {
            let connection = Connection::open(&endpoint, config).await.unwrap();
            let mut sequence = 1u64;
            while Instant::now() < deadline {
                let readings: Vec<String> = (0..10)
                    .map(|i| heart_rate("72", sequence + i, Timestamp::now()))
                    .collect();
                sequence += 10;
                let _ = connection
                    .send(
                        hyper::Method::POST,
                        "/v1/readings",
                        format!("[{}]", readings.join(",")).into_bytes(),
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // Let the card seal what arrived.
    let database = rusqlite::Connection::open(daemon.spool().path()).unwrap();
    let pending = |database: &rusqlite::Connection| -> i64 {
        database
            .query_row(
                "SELECT COUNT(*) FROM readings WHERE patient = 'P-bench' AND batch IS NULL",
                [],
                |row| row.get(0),
            )
            .unwrap()
    };
    for _ in 0..600 {
        if pending(&database) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latencies: Vec<i64> = {
        let mut statement = database
            .prepare(
                "SELECT b.created_us - r.received_us FROM readings r JOIN batches b ON r.batch = b.id
                 WHERE r.patient = 'P-bench'",
            )
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    latencies.sort_unstable();
    let (first, last, batches): (i64, i64, i64) = database
        .query_row(
            "SELECT MIN(r.received_us), MAX(b.created_us), COUNT(DISTINCT b.id) FROM readings r JOIN batches b ON r.batch = b.id WHERE r.patient = 'P-bench'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    let count = latencies.len();
    let p = |q: f64| {
        latencies
            .get(((count as f64 * q) as usize).min(count.saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1e3
    };
    println!(
        "   {count} readings sealed in {batches} card-signed batches over {:.1} s = {:.0} readings/s for one card; arrival→sealed p50 {:.0} ms, p99 {:.0} ms",
        (last - first) as f64 / 1e6,
        count as f64 / ((last - first) as f64 / 1e6),
        p(0.5),
        p(0.99)
    );
    println!("\n(storage is not part of this run: \"stored\" figures need wardseal-storage)");
    daemon.shutdown().await;
}
