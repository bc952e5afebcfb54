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

use common::{Postgres, World, batch, epc, heart_rate};
use wardseal_contracts::Device;
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_net::peer::PeerIdentity;
use wardseal_storage::ingest::Ingest;

const T0: i64 = 1_800_000_000_000_000;
const SECOND: i64 = 1_000_000;

async fn run(label: &str, url: &str) {
    let world = World::new(url).await;
    let collector = PeerIdentity::from_certificate(&rustls::pki_types::CertificateDer::from(
        world.collector.der.clone(),
    ))
    .unwrap();
    for (size, batches) in [(1_usize, 400_usize), (64, 100), (1024, 40)] {
        let patient_id = format!("bench-{size}");
        let device_serial = 100 + size as u64;
        world
            .ledger
            .register_device(&Device {
                epc: epc(device_serial).to_bytes(),
                group: common::GROUP,
                rule_id: common::RULE,
                ward: common::WARD.into(),
                active: true,
            })
            .await
            .unwrap();
        world
            .storage
            .store
            .admit(&patient_id, common::WARD, "1", "A", None)
            .await
            .unwrap();
        world
            .storage
            .store
            .assign_device(&epc(device_serial).pure_identity_uri(), &patient_id, 0)
            .await
            .unwrap();
        let patient = world
            .pki
            .issue(Identity::patient(
                SubjectId::new(patient_id.clone()).unwrap(),
            ))
            .await;
        // Build and sign every batch first: the card's work is not storage's.
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
            let submission = batch(&patient_id, tip.as_ref(), &readings, &patient, &patient.key);
            tip = Some(submission.header.tip());
            bodies.push(serde_json::to_vec(&submission).unwrap());
        }
        let ingest = Ingest {
            store: &world.storage.store,
            chain: &world.storage.chain,
            tls: &world.storage.tls,
        };
        let started = Instant::now();
        for body in &bodies {
            let receipt = ingest.submit(&collector, body).await.unwrap();
            assert!(receipt.newly_stored);
        }
        let seconds = started.elapsed().as_secs_f64();
        let readings = (batches * size) as f64;
        println!(
            "{label:<10} batch {size:>4} readings: {batches:>4} batches in {seconds:6.2} s = {:>8.0} batches/s, {:>8.0} readings/s",
            batches as f64 / seconds,
            readings / seconds
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        run(
            "sqlite",
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
        )
        .await;
        let cluster = Postgres::start();
        run("postgres", &cluster.url).await;
    });
}
