//! Ingest throughput: batches/s and readings/s verified (patient certificate with CRL,
//! card signature, Merkle root, chain, registry, assignment, rules) and stored, for
//! batches of 1, 64 and 1024 readings, on SQLite and PostgreSQL.
//!
//! `cargo bench -p wardseal-storage --bench ingest` (PostgreSQL: a throwaway cluster, or
//! `DATABASE_URL`). Measures `Ingest::submit` on the request body, without TLS.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and fails by panicking"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{World, batch, epc, heart_rate};
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_net::peer::PeerIdentity;
use wardseal_storage::ingest::Ingest;
use wardseal_testkit::Postgres;

const T0: i64 = 1_800_000_000_000_000;
const SECOND: i64 = 1_000_000;

/// Admits a patient with its own registered device, and builds and signs `batches`
/// batches of `size` readings for it (the card's work is not storage's).
async fn prepare(
    world: &World,
    name: &str,
    device_serial: u64,
    size: usize,
    batches: usize,
) -> Vec<Vec<u8>> {
    world
        .ledger
        .register_device(&common::ward_device(device_serial))
        .await
        .unwrap();
    world
        .storage
        .store
        .admit(&SubjectId::new(name).unwrap(), common::WARD, "1", "A", None)
        .await
        .unwrap();
    world
        .storage
        .store
        .assign_device(&epc(device_serial).pure_identity_uri(), name, 0)
        .await
        .unwrap();
    let patient = world
        .pki
        .issue(Identity::patient(SubjectId::new(name).unwrap()))
        .await
        .unwrap();
    let mut tip = None;
    let mut bodies = Vec::with_capacity(batches);
    let mut index = 0_i64;
    for _ in 0..batches {
        let readings = (0..size)
            .map(|_| {
                index += 1;
                heart_rate(device_serial, "72", T0 + index * SECOND, index as u64)
            })
            .collect::<Vec<_>>();
        let submission = batch(name, tip.as_ref(), &readings, &patient, &patient.key);
        tip = Some(submission.header.tip());
        bodies.push(serde_json::to_vec(&submission).unwrap());
    }
    bodies
}

async fn submit_all(ingest: Ingest<'_>, collector: &PeerIdentity, bodies: &[Vec<u8>]) {
    for body in bodies {
        let receipt = ingest.submit(collector, body).await.unwrap();
        assert!(receipt.newly_stored);
    }
}

/// Prints one figure for people and, as `BENCH <figure> <value> readings/s`, for
/// scripts/bench-report.
fn report(label: &str, what: &str, figure: &str, batches: usize, size: usize, seconds: f64) {
    println!(
        "{label:<10} {what:<26} {batches:>4} batches in {seconds:6.2} s = {:>8.0} batches/s, {:>8.0} readings/s",
        batches as f64 / seconds,
        (batches * size) as f64 / seconds
    );
    println!(
        "BENCH {label}_{figure}_readings_per_s {:.1} readings/s",
        (batches * size) as f64 / seconds
    );
}

async fn run(label: &str, url: &str) {
    let world = World::new(url).await;
    let collector = PeerIdentity::from_certificate(&rustls::pki_types::CertificateDer::from(
        world.collector.der().unwrap(),
    ))
    .unwrap();
    let ingest = Ingest {
        store: &world.storage.store,
        chain: &world.storage.chain,
        tls: &world.storage.tls,
    };
    for (size, batches) in [(1_usize, 400_usize), (64, 200), (1024, 100)] {
        let bodies = prepare(
            &world,
            &format!("bench-{size}"),
            100 + size as u64,
            size,
            batches,
        )
        .await;
        let started = Instant::now();
        submit_all(ingest, &collector, &bodies).await;
        report(
            label,
            &format!("batch {size:>4}, 1 submitter"),
            &format!("batch_{size}"),
            batches,
            size,
            started.elapsed().as_secs_f64(),
        );
    }
    // Two collectors delivering at once (two patients): database I/O of one overlaps the
    // verification of the other.
    let first = prepare(&world, "bench-a", 200, 1024, 50).await;
    let second = prepare(&world, "bench-b", 201, 1024, 50).await;
    let started = Instant::now();
    tokio::join!(
        submit_all(ingest, &collector, &first),
        submit_all(ingest, &collector, &second)
    );
    report(
        label,
        "batch 1024, 2 submitters",
        "batch_1024_2_submitters",
        100,
        1024,
        started.elapsed().as_secs_f64(),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        run("sqlite", &common::sqlite_url(dir.path(), "bench.db")).await;
        let cluster = Postgres::start().unwrap();
        run("postgres", cluster.url()).await;
    });
}
