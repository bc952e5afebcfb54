//! FHIR Observation search on a PostgreSQL store of 10⁷ readings: p50 and p99 of the
//! search the ward screen makes (24 h of one vital of one patient, newest first), its
//! first page and the whole result paged by `next` links, against the target p99 ≤ 50 ms.
//!
//! `cargo bench -p wardseal-storage --bench fhir_search` (PostgreSQL: a throwaway cluster,
//! or `DATABASE_URL`, which must then be an empty database). `FHIR_BENCH_READINGS` sets the
//! store's size (default 10,000,000).
//!
//! The readings are real: canonical bytes and leaf hashes of heart-rate and SpO₂ readings
//! of 50 patients, one reading a second per patient, types alternating, in batches of 1,000.
//! They are loaded with binary `COPY` (sqlx's `copy_in_raw`) with the readings table's
//! indexes and constraints dropped and rebuilt afterwards, exactly as the migrations define
//! them (read back from the catalogue). The searches go through the whole server: mutual
//! TLS (pooled connections), access check and access-log entry, SQL, rendering.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark reports on stdout and fails by panicking"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::World;
use sqlx::Connection as _;
use wardseal_core::decimal::Decimal;
use wardseal_core::epc::Sgtin96;
use wardseal_core::hash::Hash;
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_core::reading::{DataType, Measurement, Reading, Timestamp, Unit, Value};
use wardseal_net::client::{Client, ClientOptions, ClientTlsSettings, Endpoint};
use wardseal_testkit::Postgres;

const PATIENTS: usize = 50;
const BATCH: usize = 1000;
const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;
/// 2027-01-15T08:00:00Z: the first reading of every patient.
const T0: i64 = 1_800_000_000_000_000;
/// Rows per COPY message.
const CHUNK: usize = 10_000;
/// The target: p99 of the first page.
const TARGET_MS: f64 = 50.0;

fn patient(index: usize) -> String {
    format!("bench-{index:03}")
}

fn device(index: usize) -> Sgtin96 {
    common::epc(10_000 + index as u64)
}

/// Reading `i` of patient `p`: at T0 + i s, heart rate on even i, SpO₂ on odd.
fn reading(p: usize, i: usize) -> Reading {
    let (data_type, value) = if i.is_multiple_of(2) {
        (DataType::HeartRate, 55 + (i / 2 + p) % 60)
    } else {
        (DataType::OxygenSaturation, 90 + (i / 2) % 10)
    };
    let measurement = Measurement::new(
        data_type,
        Unit::of(data_type),
        Value::Quantity(Decimal::parse(&value.to_string()).unwrap()),
        Timestamp::from_unix_micros(T0 + i as i64 * SECOND).unwrap(),
        i as u64,
    )
    .unwrap();
    Reading::new(device(p), measurement)
}

fn batch_hash(p: usize, b: usize) -> Hash {
    Hash::sha256(format!("fhir-search bench batch {p} {b}").as_bytes())
}

/// PostgreSQL's binary COPY format (the file layout of `COPY … (FORMAT binary)`).
struct CopyBinary(Vec<u8>);

impl CopyBinary {
    fn header() -> Self {
        let mut bytes = b"PGCOPY\n\xff\r\n\0".to_vec();
        bytes.extend_from_slice(&0_i32.to_be_bytes());
        bytes.extend_from_slice(&0_i32.to_be_bytes());
        Self(bytes)
    }

    fn empty() -> Self {
        Self(Vec::with_capacity(CHUNK * 256))
    }

    fn row(&mut self, fields: usize) {
        self.0.extend_from_slice(&(fields as i16).to_be_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        self.0
            .extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.0.extend_from_slice(value);
    }

    fn int(&mut self, value: i64) {
        self.bytes(&value.to_be_bytes());
    }

    fn trailer(&mut self) {
        self.0.extend_from_slice(&(-1_i16).to_be_bytes());
    }
}

/// The readings table's indexes and constraints, as the migrations made them.
async fn readings_schema(
    connection: &mut sqlx::PgConnection,
) -> (Vec<String>, Vec<(String, String)>) {
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'readings' \
         AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'readings'::regclass)",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'readings'::regclass ORDER BY contype DESC",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    (indexes, constraints)
}

/// Loads `per_patient` readings for each patient; returns the time it took.
async fn load(url: &str, per_patient: usize) -> Duration {
    let started = Instant::now();
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    for setting in [
        "SET maintenance_work_mem = '1GB'",
        "SET synchronous_commit = off",
    ] {
        sqlx::query(setting).execute(&mut connection).await.unwrap();
    }
    let (indexes, constraints) = readings_schema(&mut connection).await;
    for (name, _) in &constraints {
        sqlx::query(&format!("ALTER TABLE readings DROP CONSTRAINT {name}"))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let index_names: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = 'readings'")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    for name in index_names {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut connection)
            .await
            .unwrap();
    }

    // Batches: one row per 1,000 readings.
    let batches_per_patient = per_patient.div_ceil(BATCH);
    let mut copy = CopyBinary::header();
    for p in 0..PATIENTS {
        for b in 0..batches_per_patient {
            let count = BATCH.min(per_patient - b * BATCH);
            copy.row(9);
            copy.bytes(batch_hash(p, b).as_bytes());
            copy.bytes(patient(p).as_bytes());
            copy.int(b as i64 + 1);
            copy.bytes(common::WARD.as_bytes());
            copy.bytes(b"bench header");
            copy.bytes(b"bench signature");
            copy.bytes(b"bench certificate");
            copy.int(count as i64);
            copy.int(T0 + ((b * BATCH + count) as i64 + 1) * SECOND);
        }
    }
    copy.trailer();
    let mut sink = connection
        .copy_in_raw(
            "COPY batches (header_hash, patient, sequence, collector, header, signature, \
             patient_certificate, reading_count, received_at) FROM STDIN (FORMAT binary)",
        )
        .await
        .unwrap();
    sink.send(copy.0).await.unwrap();
    sink.finish().await.unwrap();

    // Readings: generated on a thread, sent as they come.
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let generator = std::thread::spawn(move || {
        let mut copy = CopyBinary::header();
        let mut rows: usize = 0;
        for p in 0..PATIENTS {
            let device = device(p).pure_identity_uri();
            let name = patient(p);
            for i in 0..per_patient {
                let reading = reading(p, i);
                let canonical = reading.canonical_bytes();
                copy.row(8);
                copy.bytes(batch_hash(p, i / BATCH).as_bytes());
                copy.int((i % BATCH) as i64);
                copy.bytes(wardseal_core::merkle::leaf_hash(&canonical).as_bytes());
                copy.bytes(name.as_bytes());
                copy.bytes(device.as_bytes());
                copy.int(i64::from(reading.measurement().data_type().code()));
                copy.int(reading.measurement().time().unix_micros());
                copy.bytes(&canonical);
                rows += 1;
                if rows.is_multiple_of(CHUNK) {
                    let full = std::mem::replace(&mut copy, CopyBinary::empty());
                    chunks.blocking_send(full.0).unwrap();
                }
            }
        }
        copy.trailer();
        chunks.blocking_send(copy.0).unwrap();
    });
    let mut sink = connection
        .copy_in_raw(
            "COPY readings (batch_hash, position, leaf_hash, patient, device, data_type, \
             measured_at, canonical) FROM STDIN (FORMAT binary)",
        )
        .await
        .unwrap();
    while let Some(chunk) = received.recv().await {
        sink.send(chunk).await.unwrap();
    }
    let copied = sink.finish().await.unwrap();
    generator.join().unwrap();
    assert_eq!(copied, (PATIENTS * per_patient) as u64);
    let copied_at = started.elapsed();

    for (name, definition) in constraints {
        sqlx::query(&format!(
            "ALTER TABLE readings ADD CONSTRAINT {name} {definition}"
        ))
        .execute(&mut connection)
        .await
        .unwrap();
    }
    for definition in indexes {
        sqlx::query(&definition)
            .execute(&mut connection)
            .await
            .unwrap();
    }
    sqlx::query("ANALYZE batches")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("ANALYZE readings")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    println!(
        "loaded {} readings in {:.1} s (COPY {:.1} s, indexes and constraints {:.1} s)",
        PATIENTS * per_patient,
        started.elapsed().as_secs_f64(),
        copied_at.as_secs_f64(),
        (started.elapsed() - copied_at).as_secs_f64()
    );
    started.elapsed()
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(name: &str, what: &str, samples: &mut [f64], target: Option<f64>) {
    samples.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(samples, 0.50), percentile(samples, 0.99));
    let target_text = target.map_or_else(String::new, |t| format!("   target p99 <= {t:.0} ms"));
    println!(
        "{what:<58} n={:<4} p50 {p50:8.2} ms   p99 {p99:8.2} ms{target_text}",
        samples.len()
    );
    println!("BENCH {name}_p50_ms {p50:.2} ms");
    println!("BENCH {name}_p99_ms {p99:.2} ms");
}

async fn get(client: &Client, path: &str) -> serde_json::Value {
    let reply = client
        .send(hyper::Method::GET, path, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).unwrap()
}

fn next_link(bundle: &serde_json::Value) -> Option<String> {
    let url = bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == "next")?["url"]
        .as_str()?;
    Some(url[url.find("/fhir/")?..].to_owned())
}

async fn run(url: &str, per_patient: usize) {
    let world = World::new(url).await;
    let load_time = load(url, per_patient).await;
    println!("BENCH fhir_load_s {:.1} s", load_time.as_secs_f64());
    let nurse_id = SubjectId::new("nurse-bench").unwrap();
    for p in 0..PATIENTS {
        let id = SubjectId::new(patient(p)).unwrap();
        world
            .storage
            .store
            .admit(&id, common::WARD, "1", &format!("{p}"), None)
            .await
            .unwrap();
        world
            .storage
            .store
            .assign_staff(&nurse_id, &id, "nurse")
            .await
            .unwrap();
    }
    let nurse = world.pki.issue(Identity::staff(nurse_id)).await.unwrap();
    let tls = ClientTlsSettings::new(world.pki.ca_bundle(), &nurse.certificate, &nurse.key)
        .client_config(&[b"http/1.1"])
        .unwrap();
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port: world.address.port(),
    };
    let client = Client::new(&endpoint, tls, ClientOptions::default());

    // 24 h of heart rate of one patient, newest first, ending somewhere in the patient's
    // history (windows and patients vary, so no two searches are alike).
    let span = per_patient as i64 * SECOND;
    let day = 24 * HOUR;
    let window = |k: usize| {
        let p = (k * 7) % PATIENTS;
        let room = (span - day).max(SECOND);
        let end = T0 + day.min(span) + (k as i64 * 7_919 * SECOND) % room;
        let format = |micros: i64| {
            Timestamp::from_unix_micros(micros)
                .unwrap()
                .to_datetime()
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        format!(
            "/fhir/Observation?patient=Patient/{}&code=http://loinc.org|8867-4&date=gt{}&date=le{}&_sort=-date",
            patient(p),
            format(end - day),
            format(end)
        )
    };
    // Warm the connection pool and the caches once.
    get(&client, &format!("{}&_count=50", window(0))).await;

    let mut first = Vec::new();
    for k in 0..300 {
        let path = format!("{}&_count=50", window(k));
        let started = Instant::now();
        let bundle = get(&client, &path).await;
        first.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(bundle["entry"].as_array().map_or(0, Vec::len), 50);
    }
    report(
        "fhir_search_first_page_50",
        "first page, 50 Observations (24 h of heart rate)",
        &mut first,
        Some(TARGET_MS),
    );

    let mut pages = Vec::new();
    let mut walks = Vec::new();
    let mut entries = 0;
    for k in 0..20 {
        let mut path = Some(format!("{}&_count=1000", window(k)));
        let started = Instant::now();
        entries = 0;
        while let Some(next) = path {
            let page_started = Instant::now();
            let bundle = get(&client, &next).await;
            pages.push(page_started.elapsed().as_secs_f64() * 1000.0);
            entries += bundle["entry"].as_array().map_or(0, Vec::len);
            path = next_link(&bundle);
        }
        walks.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    report(
        "fhir_search_page_1000",
        "each page of 1,000 while paging by next links",
        &mut pages,
        None,
    );
    report(
        "fhir_search_all_pages",
        &format!(
            "whole 24 h ({entries} Observations, {} pages of 1,000)",
            entries.div_ceil(1000)
        ),
        &mut walks,
        None,
    );
}

fn main() {
    let per_patient = std::env::var("FHIR_BENCH_READINGS")
        .ok()
        .and_then(|text| text.parse::<usize>().ok())
        .unwrap_or(10_000_000)
        / PATIENTS;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cluster = Postgres::start().unwrap();
        run(cluster.url(), per_patient).await;
    });
}
