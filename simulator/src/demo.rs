//! The demo: a whole ward on loopback with embedded defaults, simulated devices, attacks,
//! anchoring, a FHIR read by the responsible nurse and a refused one, and one reading's
//! proof verified end to end. Every expectation that fails is reported and makes the
//! demo fail.

use std::io::Write;
use std::time::{Duration, Instant};

use wardseal_collector::client::{Connection, Reply};
use wardseal_core::reading::Timestamp;
use wardseal_storage::proof::{self, ProofDocument};

use crate::error::Error;
use crate::fleet::{Fleet, Summary};
use crate::kinds::DeviceKind;
use crate::ward::{RunningWard, WardFiles};

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
    let first_sequences: Vec<u64> = fleet
        .devices()
        .iter()
        .map(|d| d.simulated.next_sequence())
        .collect();
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

    // 2. The attacks.
    write_line(out, "\n2. attacks")?;
    // CALL POINT: the attack scenarios (crate::attacks, written separately) run here;
    // until they land, the basic ones below cover the seed's list.
    basic_attacks(ward, &mut fleet, &first_sequences, &mut outcome, out).await?;

    // 3. Signed batches.
    write_line(out, "\n3. card-signed batches delivered to storage")?;
    let delivered = wait_for_readings(ward, steady.accepted).await?;
    let (readings, batches) = ward.storage().store.counts().await?;
    write_line(
        out,
        &format!("  {readings} readings stored in {batches} batches signed by the patients' cards"),
    )?;
    outcome.expect(out, delivered, "every accepted reading reached storage")?;
    let refused = ward.storage().store.rejections().await?;
    outcome.expect(out, refused.is_empty(), "storage refused no batch")?;

    // 4. FHIR reads.
    write_line(out, "\n4. FHIR reads")?;
    let patient = files
        .patients
        .first()
        .map(|p| p.id.clone())
        .unwrap_or_default();
    let nurse = ward.connect_storage(&files.nurse.files).await?;
    let path = format!("/v1/patients/{patient}/observations?type=heart_rate");
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
    for entry in entries.iter().rev().take(3) {
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
            json(&reply)["code"].as_str().unwrap_or("")
        ),
    )?;
    outcome.expect(out, reply.status == 403, "another nurse is refused (403)")?;

    // 5. Anchors.
    write_line(out, "\n5. roots anchored on the ledger")?;
    let decisions = ward.anchor_decisions().await?;
    let access = ward.anchor_access_log().await?;
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

    // 6. A proof.
    write_line(
        out,
        "\n6. one reading's proof, checked trusting only the CA root",
    )?;
    match &steady.last_leaf {
        Some(leaf) => {
            let path = format!("/v1/readings/{leaf}/proof");
            let reply = request(&nurse, hyper::Method::GET, &path, Vec::new()).await?;
            let verified = serde_json::from_slice::<ProofDocument>(&reply.body)
                .map_err(|e| e.to_string())
                .and_then(|document| {
                    proof::verify(&document, ward.pki().root_der()).map_err(|e| e.to_string())
                });
            match &verified {
                Ok(verified) => write_line(
                    out,
                    &format!(
                        "  GET {path}: {}; reading {} of patient {}, batch {} signed by the patient's card, chains to the CA",
                        reply.status,
                        verified.reading.measurement().data_type().name(),
                        verified.header.patient().as_str(),
                        verified.header.sequence()
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

fn refused_with(summary: &Summary, code: &str) -> bool {
    summary.accepted == 0 && summary.rejected.contains_key(code)
}

/// The seed's attacks that need no more than a device and a socket: plain HTTP, a
/// self-signed device certificate, false data (out of range), a replay, and (in the FHIR
/// step) an unauthorised read.
async fn basic_attacks(
    ward: &RunningWard,
    fleet: &mut Fleet,
    first_sequences: &[u64],
    outcome: &mut Outcome,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let files = ward.files();
    // Plain HTTP: the collector speaks TLS only.
    let plain = plain_http(ward).await;
    write_line(out, &format!("  plain HTTP to the collector: {plain}"))?;
    outcome.expect(
        out,
        !plain.starts_with("HTTP/1.1 2"),
        "plain HTTP is refused",
    )?;

    // A self-signed certificate claiming to be a device.
    let forged = self_signed_device(ward).await?;
    write_line(out, &format!("  self-signed device certificate: {forged}"))?;
    outcome.expect(
        out,
        forged.starts_with("refused"),
        "a device certificate the hospital CA did not issue is refused",
    )?;

    // False data: an oximeter reporting an SpO2 the rule forbids.
    let oximeter = files
        .devices
        .iter()
        .find(|d| d.kind == DeviceKind::PulseOximeter)
        .ok_or_else(|| Error::Options("the demo ward has no pulse oximeter".into()))?;
    let connection = ward.connect_collector(&oximeter.files).await?;
    let sequence = fleet
        .devices()
        .iter()
        .find(|d| d.name == oximeter.name)
        .map_or(1_000_000, |d| d.simulated.next_sequence());
    let body = format!(
        r#"{{"type":"spo2","value":40,"unit":"%","time":"{}","seq":{sequence}}}"#,
        Timestamp::now()
    );
    let mut summary = Summary::default();
    let reply = request(
        &connection,
        hyper::Method::POST,
        "/v1/readings",
        body.into_bytes(),
    )
    .await?;
    record(&mut summary, &reply);
    write_line(
        out,
        &format!(
            "  SpO2 40 % from {}: {} {}",
            oximeter.name,
            reply.status,
            codes(&summary)
        ),
    )?;
    outcome.expect(
        out,
        refused_with(&summary, "value_out_of_range"),
        "an out-of-range value is refused (value_out_of_range)",
    )?;

    // Replay: the oximeter's first report again, sequence numbers already used.
    if let Some((device, first)) = fleet
        .devices_mut()
        .iter_mut()
        .zip(first_sequences)
        .find(|(d, _)| d.name == oximeter.name)
    {
        let next = device.simulated.next_sequence();
        device.simulated.set_next_sequence(*first);
        let body = device.simulated.report(Timestamp::now());
        device.simulated.set_next_sequence(next);
        let mut summary = Summary::default();
        let reply = request(
            &connection,
            hyper::Method::POST,
            "/v1/readings",
            body.into_bytes(),
        )
        .await?;
        record(&mut summary, &reply);
        write_line(
            out,
            &format!(
                "  its first sequence number again from {}: {} {}",
                oximeter.name,
                reply.status,
                codes(&summary)
            ),
        )?;
        outcome.expect(
            out,
            refused_with(&summary, "replay"),
            "a replayed sequence number is refused (replay)",
        )?;
    }
    Ok(())
}

fn record(summary: &mut Summary, reply: &Reply) {
    let json = json(reply);
    match json["results"].as_array() {
        Some(results) => {
            for result in results {
                match result["status"].as_str() {
                    Some("accepted") => summary.accepted += 1,
                    _ => {
                        *summary
                            .rejected
                            .entry(result["code"].as_str().unwrap_or("unknown").to_owned())
                            .or_default() += 1;
                    }
                }
            }
        }
        None => {
            *summary
                .rejected
                .entry(json["code"].as_str().unwrap_or("unknown").to_owned())
                .or_default() += 1;
        }
    }
}

fn codes(summary: &Summary) -> String {
    summary
        .rejected
        .iter()
        .map(|(code, count)| format!("{code}×{count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends a plain HTTP request to the collector's port; returns the first line answered
/// or how the connection ended.
async fn plain_http(ward: &RunningWard) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(ward.collector_addr()).await?;
        stream
            .write_all(
                b"POST /v1/readings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}",
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Err(_) => "refused: no answer".into(),
        Ok(Err(error)) => format!("refused: {error}"),
        Ok(Ok(answer)) if answer.starts_with(b"HTTP/") => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
        Ok(Ok(answer)) => format!("refused: {} bytes of TLS, no HTTP answer", answer.len()),
    }
}

/// Connects with a certificate the hospital CA did not issue; returns `refused: …` or
/// what was answered.
async fn self_signed_device(ward: &RunningWard) -> Result<String, Error> {
    let dir = ward.files().dir.join("attacker");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["device.attacker.invalid".to_owned()])
            .map_err(|e| Error::Options(format!("cannot make the attacker's certificate: {e}")))?;
    let files = crate::pki::CertificateFiles {
        certificate: dir.join("self-signed.pem"),
        key: dir.join("self-signed.key"),
        serial: String::new(),
    };
    std::fs::write(&files.certificate, cert.pem())
        .map_err(|e| Error::io("write", &files.certificate, e))?;
    if !files.key.exists() {
        wardseal_pki::key::write_private_file(&files.key, signing_key.serialize_pem().as_bytes())?;
    }
    let config = ward.client_config(&files)?;
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        Connection::open(&ward.collector_endpoint(), config),
    )
    .await;
    let connection = match opened {
        Err(_) => return Ok("refused: no handshake".into()),
        Ok(Err(error)) => return Ok(format!("refused: {error}")),
        Ok(Ok(connection)) => connection,
    };
    // TLS 1.3: the server's verdict on the client certificate arrives with the first
    // read, so the request itself fails.
    let body = format!(
        r#"{{"type":"heart_rate","value":72,"unit":"/min","time":"{}","seq":1}}"#,
        Timestamp::now()
    );
    Ok(
        match tokio::time::timeout(
            Duration::from_secs(10),
            connection.send(hyper::Method::POST, "/v1/readings", body.into_bytes()),
        )
        .await
        {
            Err(_) => "refused: no answer".into(),
            // The client's error names the request, not the TLS alert behind it.
            Ok(Err(_)) => "refused: the collector ended the TLS session before any HTTP".into(),
            Ok(Ok(reply)) => format!("answered {}", reply.status),
        },
    )
}

/// What to run to reach the ward by hand, printed by `--keep-running`.
pub fn instructions(files: &WardFiles) -> String {
    let nurse = &files.nurse.files;
    let device = files.devices.first();
    let patient = files.patients.first().map_or("P-0001", |p| p.id.as_str());
    let mut text = format!(
        "\nThe ward stays up until Ctrl-C. Files: {dir}\n\
         \nFHIR, as the responsible nurse:\n  curl --cacert {ca} --cert {cert} --key {key} \\\n    '{storage}/v1/patients/{patient}/observations?type=heart_rate'\n",
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
         \nLoad against this ward, from another terminal:\n  wardseal-sim run --ward {dir} --mode burst --count 100\n\
         \nA browser: import the nurse's certificate, then open {storage}/v1/patients/{patient}/observations\n  openssl pkcs12 -export -in {cert} -inkey {key} -certfile {ca} -out nurse-1.p12 -passout pass:demo\n  (trust {ca} as a certificate authority)\n",
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
    text
}
