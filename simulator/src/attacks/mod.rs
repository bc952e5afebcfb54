//! Attack mode: every attack the two papers (and the ward's threat model) name, each a
//! [`Scenario`] performed for real against a [`RunningWard`] — over the collector's and
//! storage's real mutual-TLS ports, with real certificates from the ward's CA (or from
//! somewhere else), the ward's ledger and the patient's own card — and the refusal it
//! meets compared with the one the design promises ([`Scenario::expected`]).
//!
//! | attack | scenarios |
//! |---|---|
//! | spoofing | [`Scenario::SelfSignedDevice`], [`Scenario::ForeignCaDevice`], [`Scenario::ImpostorCaDevice`], [`Scenario::CollectorAsDevice`] |
//! | eavesdropping | [`Scenario::PlainHttp`], [`Scenario::Tls10`], [`Scenario::Tls11`] |
//! | false data injection | [`Scenario::TypeNotAllowed`], [`Scenario::OutOfRange`], [`Scenario::ImplausibleRate`] |
//! | replay | [`Scenario::ReplayedSequence`], [`Scenario::OldTimestamp`], [`Scenario::ReplayedBatch`] |
//! | compromised collector | [`Scenario::TamperedReadingAtStorage`], [`Scenario::ForgedPatientSignature`] |
//! | sinkhole | [`Scenario::SinkholeDrop`], [`Scenario::SinkholeReorder`], [`Scenario::SinkholeAlter`] |
//! | data access | [`Scenario::UnauthorisedClinicianRead`] |
//! | node capture | [`Scenario::DeactivatedDevice`], [`Scenario::RevokedDevice`] |
//!
//! The attacker works with devices of its own ([`Attacker::prepare`]): a thermometer
//! certified by the ward's CA, registered on the ledger and assigned to the first patient,
//! so the attacks neither depend on nor disturb the ward's simulated devices (their
//! sequence numbers and rate windows stay theirs). Attacks that change a device for good
//! (deactivation, revocation) each take a fresh device. The scenarios that act as a
//! compromised collector hold the patient's real card (the one the collector signs with)
//! and the collector's real certificate, and wait until the real collector has delivered
//! everything before they read the patient's chain tip, so that their batch meets exactly
//! the check it is aimed at.
//!
//! Every [`Outcome`] carries [`Evidence`]: the leaf hashes of the readings and the header
//! hashes of the batches the attack sent, none of which may end up in storage's database
//! (the end-to-end suite checks it).
//!
//! ```no_run
//! # async fn example(ward: &wardseal_sim::ward::RunningWard) -> Result<(), wardseal_sim::Error> {
//! for outcome in wardseal_sim::attacks::run_all(ward).await? {
//!     println!("{outcome}");
//!     assert!(outcome.refused_as_expected);
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use wardseal_core::epc::Sgtin96;
use wardseal_core::hash::Hash;
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::{Reading, Timestamp, json};

use crate::error::Error;
use crate::kinds::DeviceKind;
use crate::ward::RunningWard;
use wardseal_testkit::pki::CertificateFiles;

mod compromised_collector;
mod data_access;
mod eavesdropping;
mod enrollment;
mod false_data;
mod node_capture;
mod outcome;
mod replay;
mod sinkhole;
mod spoofing;
mod wire;

pub use outcome::{Evidence, Expected, Observed, Outcome, Server};

use eavesdropping::OldTls;
use wire::{answer, post_request, send, tls_request};

/// How long one request or handshake may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the collector may take to learn a ledger change or an assignment, and the
/// ward to deliver the attacker's legitimate readings to storage.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// One attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scenario {
    /// Spoofing: a device certificate that names a real device's EPC but is self-signed.
    SelfSignedDevice,
    /// Spoofing: a device certificate with a real device's identity, issued by another
    /// hospital's CA.
    ForeignCaDevice,
    /// Spoofing: a device certificate with a real device's identity, issued by a CA that
    /// copies the names of the hospital's own CAs (so the path is built to the ward's
    /// issuing CA, and its signature check fails).
    ImpostorCaDevice,
    /// Eavesdropping: readings sent as plain HTTP to the collector's TLS port.
    PlainHttp,
    /// Eavesdropping: a client that offers TLS 1.0 only. Such a ClientHello carries no
    /// `signature_algorithms` extension (TLS 1.2 introduced it), and rustls refuses it for
    /// that with `handshake_failure`, a check it makes before comparing versions (which
    /// would send `protocol_version`).
    Tls10,
    /// Eavesdropping: a client that offers TLS 1.1 only (refused as [`Scenario::Tls10`]).
    Tls11,
    /// Spoofing: the collector's own (valid) certificate used to send readings as a device.
    CollectorAsDevice,
    /// False data injection: a thermometer sends a heart rate, a type its group's rule
    /// does not allow.
    TypeNotAllowed,
    /// False data injection: a body temperature of 50 °C, outside the rule's plausible range (25–45 °C).
    OutOfRange,
    /// False data injection: an insulin pen reports more doses in a minute than its rule
    /// allows.
    ImplausibleRate,
    /// Replay: a reading re-sent with a sequence number the collector already accepted.
    ReplayedSequence,
    /// Replay: a reading stamped two hours ago (outside the collector's skew window).
    OldTimestamp,
    /// A compromised collector (or the path to storage) alters a reading of a batch the
    /// patient's card signed.
    TamperedReadingAtStorage,
    /// A compromised collector signs a batch header with a key that is not the patient's
    /// card, sending the patient's real certificate.
    ForgedPatientSignature,
    /// Replay: a batch storage already holds, captured and re-sent — byte-identical
    /// (acknowledged again, stored once) and re-sealed by the card at its old place in
    /// the patient's chain (refused).
    ReplayedBatch,
    /// Sinkhole: the collector drops a patient's batch and delivers the next one.
    SinkholeDrop,
    /// Sinkhole: the collector reorders the readings of a batch the card signed.
    SinkholeReorder,
    /// Sinkhole: the collector alters a reading to a forbidden value and has the patient's
    /// card re-sign the batch.
    SinkholeAlter,
    /// A nurse who is not assigned to the patient and has no consent reads their data.
    UnauthorisedClinicianRead,
    /// Node capture: a device deactivated on the ledger keeps sending (with a still valid
    /// certificate).
    DeactivatedDevice,
    /// Node capture: a device whose certificate the CA revoked keeps connecting.
    RevokedDevice,
}

impl Scenario {
    /// Every scenario, in the order [`run_all`] performs them: those that change the
    /// ward for good (deactivation, revocation; each on a fresh device) come last.
    pub const ALL: [Scenario; 21] = [
        Scenario::SelfSignedDevice,
        Scenario::ForeignCaDevice,
        Scenario::ImpostorCaDevice,
        Scenario::CollectorAsDevice,
        Scenario::PlainHttp,
        Scenario::Tls10,
        Scenario::Tls11,
        Scenario::TypeNotAllowed,
        Scenario::OutOfRange,
        Scenario::ImplausibleRate,
        Scenario::ReplayedSequence,
        Scenario::OldTimestamp,
        Scenario::TamperedReadingAtStorage,
        Scenario::ForgedPatientSignature,
        Scenario::ReplayedBatch,
        Scenario::SinkholeDrop,
        Scenario::SinkholeReorder,
        Scenario::SinkholeAlter,
        Scenario::UnauthorisedClinicianRead,
        Scenario::DeactivatedDevice,
        Scenario::RevokedDevice,
    ];

    /// The scenario's name (`self-signed-device`).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::SelfSignedDevice => "self-signed-device",
            Scenario::ForeignCaDevice => "foreign-ca-device",
            Scenario::ImpostorCaDevice => "impostor-ca-device",
            Scenario::PlainHttp => "plain-http",
            Scenario::Tls10 => "tls-1.0",
            Scenario::Tls11 => "tls-1.1",
            Scenario::CollectorAsDevice => "collector-as-device",
            Scenario::TypeNotAllowed => "type-not-allowed",
            Scenario::OutOfRange => "out-of-range",
            Scenario::ImplausibleRate => "implausible-rate",
            Scenario::ReplayedSequence => "replayed-sequence",
            Scenario::OldTimestamp => "old-timestamp",
            Scenario::TamperedReadingAtStorage => "tampered-reading-at-storage",
            Scenario::ForgedPatientSignature => "forged-patient-signature",
            Scenario::ReplayedBatch => "replayed-batch",
            Scenario::SinkholeDrop => "sinkhole-drop",
            Scenario::SinkholeReorder => "sinkhole-reorder",
            Scenario::SinkholeAlter => "sinkhole-alter",
            Scenario::UnauthorisedClinicianRead => "unauthorised-clinician-read",
            Scenario::DeactivatedDevice => "deactivated-device",
            Scenario::RevokedDevice => "revoked-device",
        }
    }

    /// One line saying what the attacker does.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::SelfSignedDevice => {
                "a self-signed certificate claiming a real device's EPC connects to the collector"
            }
            Scenario::ForeignCaDevice => {
                "a device certificate from another hospital's CA connects to the collector"
            }
            Scenario::ImpostorCaDevice => {
                "a device certificate from a CA that copies the hospital CA's names connects"
            }
            Scenario::PlainHttp => "readings sent as plain HTTP to the collector's port",
            Scenario::Tls10 => "a client offering only TLS 1.0 connects to the collector",
            Scenario::Tls11 => "a client offering only TLS 1.1 connects to the collector",
            Scenario::CollectorAsDevice => {
                "the collector's valid certificate sends readings as if it were a device"
            }
            Scenario::TypeNotAllowed => {
                "a thermometer sends a heart rate, which its group's rule does not allow"
            }
            Scenario::OutOfRange => {
                "a thermometer reports 50 °C, outside its rule's plausible range"
            }
            Scenario::ImplausibleRate => {
                "an insulin pen reports more doses in a minute than its rule allows"
            }
            Scenario::ReplayedSequence => {
                "a reading re-sent with a sequence number the collector already accepted"
            }
            Scenario::OldTimestamp => "a reading measured two hours ago is sent now",
            Scenario::TamperedReadingAtStorage => {
                "a reading of a card-signed batch is altered on its way to storage"
            }
            Scenario::ForgedPatientSignature => {
                "a batch signed by a key that is not the patient's card, with the patient's certificate"
            }
            Scenario::ReplayedBatch => {
                "a stored batch re-sent as captured, then re-sealed at its old chain place"
            }
            Scenario::SinkholeDrop => {
                "the collector drops a patient's batch and delivers the next one"
            }
            Scenario::SinkholeReorder => {
                "the collector reorders the readings of a batch the card signed"
            }
            Scenario::SinkholeAlter => {
                "the collector alters a reading to 50 °C and has the card re-sign the batch"
            }
            Scenario::UnauthorisedClinicianRead => {
                "a nurse not assigned to the patient, without consent, reads their observations"
            }
            Scenario::DeactivatedDevice => {
                "a device deactivated on the ledger keeps sending with its valid certificate"
            }
            Scenario::RevokedDevice => {
                "a device whose certificate the CA revoked (CRL republished, servers reloaded) connects"
            }
        }
    }

    /// The refusal the design promises.
    pub fn expected(self) -> Expected {
        use Server::{Collector, Storage};
        let refusal = |server, status, code| Expected::Refusal {
            server,
            status,
            code,
        };
        match self {
            Scenario::SelfSignedDevice | Scenario::ForeignCaDevice => {
                Expected::TlsAlert { alert: "UnknownCA" }
            }
            // The path ends at the ward's issuing CA by name; its signature does not
            // verify, which rustls reports as `decrypt_error`.
            Scenario::ImpostorCaDevice => Expected::TlsAlert {
                alert: "DecryptError",
            },
            Scenario::PlainHttp => Expected::NoHttpAnswer,
            Scenario::Tls10 | Scenario::Tls11 => Expected::TlsAlert {
                alert: "HandshakeFailure",
            },
            Scenario::CollectorAsDevice => refusal(Collector, 403, "not_a_device"),
            Scenario::TypeNotAllowed => refusal(Collector, 403, "data_type_not_allowed"),
            Scenario::OutOfRange => refusal(Collector, 422, "value_out_of_range"),
            Scenario::ImplausibleRate => refusal(Collector, 429, "rate_exceeded"),
            Scenario::ReplayedSequence => refusal(Collector, 409, "replay"),
            Scenario::OldTimestamp => refusal(Collector, 422, "timestamp_skew"),
            Scenario::TamperedReadingAtStorage | Scenario::SinkholeReorder => {
                refusal(Storage, 422, "root_mismatch")
            }
            Scenario::ForgedPatientSignature => refusal(Storage, 422, "bad_signature"),
            Scenario::ReplayedBatch => refusal(Storage, 409, "replayed_batch"),
            Scenario::SinkholeDrop => refusal(Storage, 409, "chain_gap"),
            Scenario::SinkholeAlter => refusal(Storage, 422, "rule_violation"),
            Scenario::UnauthorisedClinicianRead => refusal(Storage, 403, "not_responsible"),
            Scenario::DeactivatedDevice => refusal(Collector, 403, "inactive_device"),
            Scenario::RevokedDevice => Expected::TlsAlert {
                alert: "CertificateRevoked",
            },
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                Error::Options(format!(
                    "unknown attack {text:?}: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Performs one scenario against `ward` (preparing the attacker's devices first; use
/// [`Attacker`] to run several on one preparation).
pub async fn run(ward: &RunningWard, scenario: Scenario) -> Result<Outcome, Error> {
    Attacker::prepare(ward).await?.run(scenario).await
}

/// Performs every scenario against `ward` in [`Scenario::ALL`]'s order.
///
/// Run it while no other devices send: the batch scenarios wait (up to a minute) for the
/// collector to have delivered everything it accepted before each forged batch, so that
/// no genuine batch takes the chain place the forged one aims at.
pub async fn run_all(ward: &RunningWard) -> Result<Vec<Outcome>, Error> {
    let attacker = Attacker::prepare(ward).await?;
    let mut outcomes = Vec::with_capacity(Scenario::ALL.len());
    for scenario in Scenario::ALL {
        outcomes.push(attacker.run(scenario).await?);
    }
    Ok(outcomes)
}

/// A device the attacker certified (and usually registered and assigned).
#[derive(Debug)]
struct AttackDevice {
    kind: DeviceKind,
    epc: Sgtin96,
    files: CertificateFiles,
    sequence: AtomicU64,
}

impl AttackDevice {
    fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }
}

/// What a scenario gathers on its way to an [`Outcome`].
#[derive(Debug, Default)]
struct Findings {
    evidence: Evidence,
    notes: Vec<String>,
    problems: Vec<String>,
}

impl Findings {
    fn finish(self, scenario: Scenario, observed: Observed) -> Outcome {
        let expected = scenario.expected();
        let refused_as_expected = observed.matches(&expected) && self.problems.is_empty();
        Outcome {
            scenario,
            expected,
            observed,
            refused_as_expected,
            evidence: self.evidence,
            notes: self.notes,
            problems: self.problems,
        }
    }
}

/// Where the attacker works: the ward, a directory for its material, its target patient
/// and the serial numbers of its devices.
#[derive(Debug)]
struct Base<'a> {
    ward: &'a RunningWard,
    dir: PathBuf,
    patient: SubjectId,
    serials: AtomicU64,
}

/// The attacker: its own certified devices in the ward and the first patient as target.
#[derive(Debug)]
pub struct Attacker<'a> {
    base: Base<'a>,
    thermometer: AttackDevice,
}

impl<'a> Attacker<'a> {
    /// Certifies, registers and assigns the attacker's thermometer to the ward's first
    /// patient, waits until the collector knows it, and sends one legitimate reading
    /// through the whole path (so the patient has a stored batch to replay). Material
    /// goes to `DIR/attacks/<time>/`.
    pub async fn prepare(ward: &'a RunningWard) -> Result<Self, Error> {
        let files = ward.files();
        let patient = files
            .patients
            .first()
            .ok_or_else(|| Error::Options("the ward has no patient to attack".into()))?;
        let patient = SubjectId::new(patient.id.as_str()).map_err(wardseal_core::Error::from)?;
        let now = Timestamp::now().unix_micros();
        let dir = files.dir.join("attacks").join(now.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        // SGTIN-96 serials have 38 bits; milliseconds modulo 10^11 keep successive
        // preparations on one ward apart.
        let first_serial = u64::try_from(now / 1_000).unwrap_or_default() % 100_000_000_000;
        let base = Base {
            ward,
            dir,
            patient,
            serials: AtomicU64::new(first_serial),
        };
        let thermometer = base
            .enroll(DeviceKind::Thermometer, "thermometer", true)
            .await?;
        let attacker = Self { base, thermometer };
        attacker.warm_up().await?;
        Ok(attacker)
    }

    /// Performs one scenario.
    pub async fn run(&self, scenario: Scenario) -> Result<Outcome, Error> {
        let mut findings = Findings::default();
        let observed = match scenario {
            Scenario::SelfSignedDevice => self.self_signed(&mut findings).await?,
            Scenario::ForeignCaDevice => {
                self.other_ca(spoofing::OTHER_HOSPITAL, "foreign-hospital", &mut findings)
                    .await?
            }
            Scenario::ImpostorCaDevice => {
                self.other_ca(
                    wardseal_testkit::pki::ORGANISATION,
                    "impostor-ca",
                    &mut findings,
                )
                .await?
            }
            Scenario::PlainHttp => self.plain_http(&mut findings).await?,
            Scenario::Tls10 => self.old_tls(OldTls::Tls10).await?,
            Scenario::Tls11 => self.old_tls(OldTls::Tls11).await?,
            Scenario::CollectorAsDevice => self.collector_as_device().await?,
            Scenario::TypeNotAllowed => self.type_not_allowed(&mut findings).await?,
            Scenario::OutOfRange => self.out_of_range(&mut findings).await?,
            Scenario::ImplausibleRate => self.implausible_rate(&mut findings).await?,
            Scenario::ReplayedSequence => self.replayed_sequence(&mut findings).await?,
            Scenario::OldTimestamp => self.old_timestamp(&mut findings).await?,
            Scenario::TamperedReadingAtStorage => self.tampered_reading(&mut findings).await?,
            Scenario::ForgedPatientSignature => self.forged_signature(&mut findings).await?,
            Scenario::ReplayedBatch => self.replayed_batch(&mut findings).await?,
            Scenario::SinkholeDrop => self.sinkhole_drop(&mut findings).await?,
            Scenario::SinkholeReorder => self.sinkhole_reorder(&mut findings).await?,
            Scenario::SinkholeAlter => self.sinkhole_alter(&mut findings).await?,
            Scenario::UnauthorisedClinicianRead => self.unauthorised_read(&mut findings).await?,
            Scenario::DeactivatedDevice => self.deactivated(&mut findings).await?,
            Scenario::RevokedDevice => self.revoked(&mut findings).await?,
        };
        Ok(findings.finish(scenario, observed))
    }

    /// Sends one legitimate reading and waits until storage holds it.
    async fn warm_up(&self) -> Result<(), Error> {
        let device = &self.thermometer;
        let body = quantity(
            "body_temperature",
            "36.7",
            "Cel",
            now(),
            device.next_sequence(),
        );
        let connection = self.base.ward.connect_collector(&device.files).await?;
        let reply = send(
            &connection,
            Method::POST,
            "/v1/readings",
            body.clone().into_bytes(),
        )
        .await?;
        if reply.status != 202 {
            return Err(Error::Request {
                target: "the collector's /v1/readings (the attacker's legitimate reading)".into(),
                reason: format!(
                    "HTTP {}: {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                ),
            });
        }
        let leaves = leaves_of(&device.epc, &body)?;
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        for leaf in &leaves {
            while self
                .base
                .ward
                .storage()
                .store
                .reading_by_leaf(leaf)
                .await?
                .is_none()
            {
                if Instant::now() >= deadline {
                    return Err(timeout(
                        "storage to store the attacker's legitimate reading",
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Sends readings that must be refused whole and records their leaves.
    async fn send_forged(
        &self,
        device: &AttackDevice,
        files: &CertificateFiles,
        body: &str,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        findings
            .evidence
            .leaves
            .extend(leaves_of(&device.epc, body)?);
        let connection = self.base.ward.connect_collector(files).await?;
        let reply = send(
            &connection,
            Method::POST,
            "/v1/readings",
            body.as_bytes().to_vec(),
        )
        .await?;
        Ok(answer(Server::Collector, &reply))
    }

    /// Posts `body` to the collector's `/v1/readings` over a TLS connection made with
    /// `config`; what came back, or how the connection was refused.
    async fn post_reading(&self, config: Arc<rustls::ClientConfig>, body: &str) -> Observed {
        tls_request(
            self.base.ward.collector_addr(),
            config,
            &post_request("/v1/readings", body),
        )
        .await
    }

    fn client_config(
        &self,
        files: &CertificateFiles,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ClientConfig>, Error> {
        Ok(wardseal_net::client::ClientTlsSettings::new(
            &self.base.ward.files().ca_bundle,
            &files.certificate,
            &files.key,
        )
        .client_config(alpn)?)
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn timeout(what: &str) -> Error {
    Error::Timeout {
        what: what.to_owned(),
        seconds: PROPAGATION_TIMEOUT.as_secs(),
    }
}

/// A plausible body temperature (36.9 °C, measured now) from `device` with its next
/// sequence number, as the device sends it.
fn plausible_temperature(device: &AttackDevice) -> String {
    quantity(
        "body_temperature",
        "36.9",
        "Cel",
        now(),
        device.next_sequence(),
    )
}

/// [`plausible_temperature`], its leaf hash recorded as evidence: nothing an attack sends
/// may be stored.
fn temperature_evidence(device: &AttackDevice, findings: &mut Findings) -> Result<String, Error> {
    let body = plausible_temperature(device);
    findings
        .evidence
        .leaves
        .extend(leaves_of(&device.epc, &body)?);
    Ok(body)
}

/// One single-number reading as a device sends it.
fn quantity(data_type: &str, value: &str, unit: &str, time: Timestamp, sequence: u64) -> String {
    format!(
        r#"{{"type":"{data_type}","value":{value},"unit":"{unit}","time":"{time}","seq":{sequence}}}"#
    )
}

/// The leaf hashes the collector would give the readings of `body` from `device`.
fn leaves_of(device: &Sgtin96, body: &str) -> Result<Vec<Hash>, Error> {
    let parsed = json::parse_body(body.as_bytes()).map_err(wardseal_core::Error::from)?;
    let mut leaves = Vec::with_capacity(parsed.len());
    for measurement in parsed {
        let measurement = measurement.map_err(wardseal_core::Error::from)?;
        leaves.push(Reading::new(device.clone(), measurement).leaf_hash());
    }
    Ok(leaves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut names = std::collections::HashSet::new();
        for scenario in Scenario::ALL {
            assert!(names.insert(scenario.name()), "{scenario} twice");
            assert_eq!(scenario.name().parse::<Scenario>().unwrap(), scenario);
            assert!(!scenario.description().is_empty());
        }
        assert!("teleport".parse::<Scenario>().is_err());
    }

    #[test]
    fn expected_codes_are_the_servers_codes() {
        for scenario in Scenario::ALL {
            if let Expected::Refusal { server, code, .. } = scenario.expected() {
                match server {
                    Server::Collector => assert!(
                        wardseal_collector::Rejection::CODES.contains(&code),
                        "{scenario}: {code} is not a collector code"
                    ),
                    // `not_responsible` is storage's access refusal (its `to_wire`), not
                    // a batch refusal.
                    Server::Storage => assert!(
                        code == "not_responsible"
                            || wardseal_storage::Refusal::CODES.contains(&code),
                        "{scenario}: {code} is not a storage code"
                    ),
                }
            }
        }
    }
}
