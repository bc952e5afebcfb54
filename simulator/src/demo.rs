//! The demo: a whole ward on loopback with embedded defaults, simulated devices, attacks,
//! anchoring, a FHIR read by the responsible nurse and a refused one, one reading's
//! proof verified end to end, and the clinical step (a critical reading alerted and
//! acknowledged, a quarantined batch while the patient's data keeps flowing). Every expectation that fails is reported and makes the
//! demo fail.

use std::io::Write;
use std::time::{Duration, Instant};

use wardseal_collector::client::{Connection, Reply};
use wardseal_storage::proof::{self, ProofDocument};

use crate::attacks;
use crate::error::Error;
use crate::fleet::Fleet;
use crate::ward::{RunningWard, WardFiles};

mod clinical;

/// How long the simulated devices run.
const RUN_FOR: Duration = Duration::from_secs(4);
/// How much faster than nominal the devices report during the demo.
const SPEED: f64 = 5.0;
/// How long accepted readings may take to be signed and stored.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

/// What the demo found, expectation by expectation.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Expectations that failed, each a sentence.
    pub failures: Vec<String>,
}

impl Outcome {
    fn expect(&mut self, out: &mut dyn Write, holds: bool, what: &str) -> Result<(), Error> {
        let mark = if holds { "ok  " } else { "FAIL" };
        write_line(out, &format!("  [{mark}] {what}"))?;
        if !holds {
            self.failures.push(what.to_owned());
        }
        Ok(())
    }
}

fn write_line(out: &mut dyn Write, line: &str) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(|e| Error::io("write to", "standard output", e))
}

async fn request(
    connection: &Connection,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, Error> {
    tokio::time::timeout(Duration::from_secs(30), connection.send(method, path, body))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("an answer to {path}"),
            seconds: 30,
        })?
        .map_err(|error| Error::Request {
            target: path.to_owned(),
            reason: error.to_string(),
        })
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_default()
}

/// Runs the demo against a started ward, writing what happens to `out`.
pub async fn run(ward: &RunningWard, out: &mut dyn Write) -> Result<Outcome, Error> {
    let files = ward.files();
    let mut outcome = Outcome::default();
    write_line(
        out,
        &format!(
            "\nward {} in {}\n  CA, {} patients ({}), {} devices, contracts on the {} ledger, storage on {}, collector on {}",
            files.ward,
            files.dir.display(),
            files.patients.len(),
            if files.softhsm_conf.is_some() {
                "cards on SoftHSM tokens"
            } else {
                "cards as software keys: SoftHSM is not installed"
            },
            files.devices.len(),
            if files.ledger.embedded_dir.is_some() {
                "embedded"
            } else {
                "JSON-RPC"
            },
            files.database_url.split(':').next().unwrap_or("?"),
            files.collector_url(),
        ),
    )?;

    // 1. The devices.
    write_line(
        out,
        &format!(
            "\n1. {} simulated devices report over mutual TLS for {} s ({}x their nominal rate)",
            files.devices.len(),
            RUN_FOR.as_secs(),
            SPEED
        ),
    )?;
    let mut fleet = Fleet::new(
        ward.collector_endpoint(),
        &files.ca_bundle,
        &files.devices,
        2026,
    )?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_message("readings sent");
    progress.enable_steady_tick(Duration::from_millis(100));
    let steady = fleet.steady(RUN_FOR, SPEED, Some(progress.clone())).await;
    progress.finish_and_clear();
    write_line(out, &steady.table())?;
    outcome.expect(
        out,
        steady.accepted > 0,
        "the collector accepted the devices' readings",
    )?;
    outcome.expect(
        out,
        steady.rejected_total() == 0 && steady.failed == 0,
        "no genuine reading was refused or lost",
    )?;

    // 2. Signed batches.
    write_line(out, "\n2. card-signed batches delivered to storage")?;
    let delivered = wait_for_readings(ward, steady.accepted).await?;
    let (readings, batches) = ward.storage().store.counts().await?;
    write_line(
        out,
        &format!("  {readings} readings stored in {batches} batches signed by the patients' cards"),
    )?;
    outcome.expect(out, delivered, "every accepted reading reached storage")?;
    let refused = ward.storage().store.rejections().await?;
    outcome.expect(out, refused.is_empty(), "storage refused no batch")?;

    // 3. The attacks, each a named scenario against the running ward.
    write_line(
        out,
        &format!(
            "\n3. {} attacks of the threat model",
            attacks::Scenario::ALL.len()
        ),
    )?;
    let outcomes = attacks::run_all(ward).await?;
    for attack in &outcomes {
        write_line(out, &format!("  {attack}"))?;
    }
    outcome.expect(
        out,
        outcomes.iter().all(|attack| attack.refused_as_expected),
        "every attack is refused with its specific code",
    )?;
    let mut by_code = std::collections::BTreeMap::<String, usize>::new();
    for rejection in ward.storage().store.rejections().await? {
        *by_code.entry(rejection.code.clone()).or_default() += 1;
    }
    write_line(
        out,
        &format!(
            "  storage recorded the refused batches (not their data): {}",
            by_code
                .iter()
                .map(|(code, count)| format!("{code} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )?;

    // 4. FHIR reads.
    write_line(out, "\n4. FHIR reads")?;
    let patient = files
        .patients
        .first()
        .map(|p| p.id.clone())
        .unwrap_or_default();
    let nurse = ward.connect_storage(&files.nurse.files).await?;
    // Heart rate (LOINC 8867-4), newest first; `%7C` is the `|` between system and code.
    let path = format!(
        "/fhir/Observation?patient={patient}&code=http://loinc.org%7C8867-4&_sort=-date&_count=20"
    );
    let reply = request(&nurse, hyper::Method::GET, &path, Vec::new()).await?;
    let bundle = json(&reply);
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    write_line(
        out,
        &format!(
            "  {} (assigned to {patient}) GET {path}: {} ({} observations)",
            files.nurse.id,
            reply.status,
            entries.len()
        ),
    )?;
    for entry in entries.iter().take(3) {
        let resource = &entry["resource"];
        write_line(
            out,
            &format!(
                "    {}  {} {} {}",
                resource["effectiveDateTime"].as_str().unwrap_or("?"),
                resource["code"]["coding"][0]["display"]
                    .as_str()
                    .unwrap_or("?"),
                resource["valueQuantity"]["value"],
                resource["valueQuantity"]["unit"].as_str().unwrap_or(""),
            ),
        )?;
    }
    outcome.expect(
        out,
        reply.status == 200 && !entries.is_empty(),
        "the responsible nurse reads the patient's observations",
    )?;
    let other = ward.connect_storage(&files.other_nurse.files).await?;
    let reply = request(&other, hyper::Method::GET, &path, Vec::new()).await?;
    write_line(
        out,
        &format!(
            "  {} (not assigned) GET {path}: {} {}",
            files.other_nurse.id,
            reply.status,
            json(&reply)["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
        ),
    )?;
    outcome.expect(out, reply.status == 403, "another nurse is refused (403)")?;

    // 5. Anchors.
    write_line(out, "\n5. roots anchored on the ledger")?;
    let decisions = ward.anchor_decisions().await?;
    let access = ward.anchor_access_log().await?;
    let stored = ward.anchor_batches().await?;
    if let Some((root, count)) = &stored {
        write_line(
            out,
            &format!("  batch log: {count} stored batches under root {root}"),
        )?;
    }
    if let Some((root, count)) = &decisions {
        write_line(
            out,
            &format!("  decision log: {count} rule decisions under root {root}"),
        )?;
    }
    if let Some((root, count)) = &access {
        write_line(
            out,
            &format!("  access log: {count} accesses under root {root}"),
        )?;
    }
    outcome.expect(
        out,
        decisions.is_some(),
        "the collector's decision log is anchored",
    )?;
    outcome.expect(out, access.is_some(), "storage's access log is anchored")?;
    outcome.expect(out, stored.is_some(), "storage's batch log is anchored")?;

    // 6. A proof.
    write_line(
        out,
        "\n6. one reading's proof, checked trusting only the CA root and the chain",
    )?;
    match &steady.last_leaf {
        Some(leaf) => {
            let path = format!("/v1/readings/{leaf}/proof");
            let reply = request(&nurse, hyper::Method::GET, &path, Vec::new()).await?;
            let verified = match serde_json::from_slice::<ProofDocument>(&reply.body)
                .map_err(|e| e.to_string())
                .and_then(|document| {
                    proof::verify(&document, ward.pki().root_der()).map_err(|e| e.to_string())
                }) {
                Ok(verified) => proof::check_on_chain(ward.ledger(), &verified)
                    .await
                    .map(|record| (verified, record))
                    .map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            };
            match &verified {
                Ok((verified, record)) => write_line(
                    out,
                    &format!(
                        "  GET {path}: {}; reading {} of patient {}, batch {} signed by the patient's card, chains to the CA;\n  the batch is in the batch log whose root {} was anchored in block {}",
                        reply.status,
                        verified.reading.measurement().data_type().name(),
                        verified.header.patient().as_str(),
                        verified.header.sequence(),
                        record.anchor.root,
                        record.block,
                    ),
                )?,
                Err(reason) => {
                    write_line(out, &format!("  GET {path}: {} — {reason}", reply.status))?
                }
            }
            outcome.expect(out, verified.is_ok(), "the proof verifies end to end")?;
        }
        None => outcome.expect(out, false, "a reading was accepted to prove")?,
    }

    // 7. Clinical safety: a critical reading alerted and acknowledged, a quarantined batch.
    clinical::run(ward, out, &mut outcome, 7).await?;
    Ok(outcome)
}

/// Waits (bounded) until storage holds at least `expected` readings.
async fn wait_for_readings(ward: &RunningWard, expected: u64) -> Result<bool, Error> {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    loop {
        let (readings, _) = ward.storage().store.counts().await?;
        if u64::try_from(readings).unwrap_or(0) >= expected {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What to run to reach the ward by hand, printed by `--keep-running`.
pub fn instructions(files: &WardFiles) -> String {
    let nurse = &files.nurse.files;
    let device = files.devices.first();
    let patient = files.patients.first().map_or("P-0001", |p| p.id.as_str());
    let mut text = format!(
        "\nThe ward stays up until Ctrl-C. Files: {dir}\n\
         \nFHIR, as the responsible nurse:\n  curl --cacert {ca} --cert {cert} --key {key} \\\n    '{storage}/fhir/Observation?patient={patient}&code=http://loinc.org%7C8867-4&_sort=-date&_count=10'\n",
        dir = files.dir.display(),
        ca = files.ca_bundle.display(),
        cert = nurse.certificate.display(),
        key = nurse.key.display(),
        storage = files.storage_url(),
    );
    if let Some(device) = device {
        text.push_str(&format!(
            "\nA reading, as device {name}:\n  curl --cacert {ca} --cert {cert} --key {key} -H 'content-type: application/json' \\\n    --data '{{\"type\":\"heart_rate\",\"value\":72,\"unit\":\"/min\",\"time\":\"'$(date -u +%FT%TZ)'\",\"seq\":99999}}' \\\n    {collector}/v1/readings\n",
            name = device.name,
            ca = files.ca_bundle.display(),
            cert = device.files.certificate.display(),
            key = device.files.key.display(),
            collector = files.collector_url(),
        ));
    }
    text.push_str(&format!(
        "\nThe CA:\n  wardseal-pki --ca-dir {ca_dir} --passphrase-file {pass} inventory\n  wardseal-pki --ca-dir {ca_dir} --passphrase-file {pass} revoke --help\n\
         \nThe ledger (the embedded chain is held by this process: run this after Ctrl-C):\n  wardseal-ledger --embedded {chain} --suite {suite} --key-file {ledger_key} anchors --help\n\
         \nStorage's proof checker:\n  curl --cacert {ca} --cert {cert} --key {key} {storage}/v1/readings/LEAF/proof > proof.json\n  wardseal-storage verify-proof proof.json --ca {ca}\n\
         \nLoad against this ward, from another terminal:\n  wardseal-sim run --ward {dir} --mode burst --count 100\n",
        pass = files.ca_passphrase.display(),
        ca_dir = files.ca_dir.display(),
        suite = files.ledger.suite.display(),
        chain = files
            .ledger
            .embedded_dir
            .as_ref()
            .map_or_else(|| "CHAIN".to_owned(), |d| d.display().to_string()),
        ledger_key = files.ledger.key_file.display(),
        ca = files.ca_bundle.display(),
        cert = nurse.certificate.display(),
        key = nurse.key.display(),
        storage = files.storage_url(),
        dir = files.dir.display(),
    ));
    // The ward screen: the nurse's certificate as a PKCS#12 file for the browser, under
    // a random password kept in a 0600 file beside it.
    let pkcs12 = files.dir.join(format!("{}.p12", files.nurse.id));
    let password = files.dir.join(format!("{}.p12.pass", files.nurse.id));
    let written = if pkcs12.is_file() {
        Ok(())
    } else {
        nurse.write_pkcs12(&files.ca_bundle, &files.nurse.id, &pkcs12, &password)
    };
    text.push_str(&match written {
        Ok(()) => format!(
            "\nThe ward screen, as the responsible nurse ({id}): open {storage}/ui/ in a browser that has\n  1. the nurse's certificate imported: {p12} (PKCS#12; its password is in {pass})\n     Chromium on Linux: pk12util -i {p12} -d sql:$HOME/.pki/nssdb -w {pass}\n     Firefox: Settings > Privacy & Security > Certificates > View Certificates > Your Certificates > Import\n  2. the hospital CA trusted for websites: {ca}\n     Chromium on Linux: certutil -A -d sql:$HOME/.pki/nssdb -n wardseal-ca -t C,, -i {ca}\n",
            id = files.nurse.id,
            storage = files.storage_url(),
            p12 = pkcs12.display(),
            pass = password.display(),
            ca = files.ca_bundle.display(),
        ),
        Err(error) => format!(
            "\nThe ward screen: {storage}/ui/ (the nurse's PKCS#12 file could not be written: {error})\n",
            storage = files.storage_url(),
        ),
    });
    text
}
