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
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wardseal_card::{KeyKind, Signer, SoftwareSigner};
use wardseal_collector::batcher::Card;
use wardseal_collector::client::{Connection, Reply};
use wardseal_contracts::Device;
use wardseal_core::batch::{BatchHeader, BatchHeaderParts, ChainTip};
use wardseal_core::decimal::Decimal;
use wardseal_core::epc::Sgtin96;
use wardseal_core::exchange::{BatchReceipt, BatchSubmission};
use wardseal_core::hash::Hash;
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_core::reading::{DataType, Measurement, Reading, Timestamp, Unit, Value, json};

use crate::error::Error;
use crate::kinds::DeviceKind;
use crate::pki::{CertificateFiles, WardPki};
use crate::ward::{COMPANY_PREFIX, RunningWard};

/// How long one request or handshake may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the collector may take to learn a ledger change or an assignment, and the
/// ward to deliver the attacker's legitimate readings to storage.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// The organisation of [`Scenario::ForeignCaDevice`]'s CA.
const OTHER_HOSPITAL: &str = "Elsewhere General Hospital";
/// How old the replayed reading of [`Scenario::OldTimestamp`] is: twice the collector's
/// default skew window (one hour).
const OLD_READING_AGE_MICROS: i64 = 2 * 3_600_000_000;

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
    /// False data injection: a body temperature of 45 °C, above the rule's range.
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
            Scenario::OutOfRange => "a thermometer reports 45 °C, above its rule's range",
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
                "the collector alters a reading to 45 °C and has the card re-sign the batch"
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

/// Which server refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    /// The ward's collector (`POST /v1/readings`).
    Collector,
    /// Storage (`POST /v1/batches`, the FHIR routes).
    Storage,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Collector => "collector",
            Server::Storage => "storage",
        })
    }
}

/// How an attack must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expected {
    /// An HTTP answer with this status and machine code.
    Refusal {
        /// The refusing server.
        server: Server,
        /// The HTTP status.
        status: u16,
        /// The machine code in the JSON error body.
        code: &'static str,
    },
    /// The TLS handshake ends with this alert from the server (rustls'
    /// `AlertDescription` name: `UnknownCA`, `CertificateRevoked`, `HandshakeFailure`).
    TlsAlert {
        /// The alert's name.
        alert: &'static str,
    },
    /// No HTTP answer at all (the bytes never reach HTTP).
    NoHttpAnswer,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Refusal {
                server,
                status,
                code,
            } => write!(f, "{server} {status} {code}"),
            Expected::TlsAlert { alert } => write!(f, "TLS alert {alert}"),
            Expected::NoHttpAnswer => f.write_str("no HTTP answer"),
        }
    }
}

/// What the attack met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// An HTTP answer.
    Answer {
        /// The answering server.
        server: Server,
        /// The HTTP status.
        status: u16,
        /// The machine code of the JSON error body, if it has one.
        code: Option<String>,
    },
    /// The server ended the TLS handshake with an alert.
    TlsAlert {
        /// The alert's name (rustls' `AlertDescription`, or mapped from OpenSSL's reason).
        alert: String,
    },
    /// The connection failed otherwise (no alert seen).
    ConnectionFailed {
        /// What the client saw.
        reason: String,
    },
    /// The connection ended without an HTTP answer.
    NoHttpAnswer {
        /// What came back instead.
        detail: String,
    },
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Answer {
                server,
                status,
                code,
            } => write!(
                f,
                "{server} {status} {}",
                code.as_deref().unwrap_or("(no code)")
            ),
            Observed::TlsAlert { alert } => write!(f, "TLS alert {alert}"),
            Observed::ConnectionFailed { reason } => write!(f, "connection failed: {reason}"),
            Observed::NoHttpAnswer { detail } => write!(f, "no HTTP answer ({detail})"),
        }
    }
}

impl Observed {
    /// Whether this is the refusal `expected` describes.
    pub fn matches(&self, expected: &Expected) -> bool {
        match (expected, self) {
            (
                Expected::Refusal {
                    server,
                    status,
                    code,
                },
                Observed::Answer {
                    server: answered,
                    status: got,
                    code: Some(got_code),
                },
            ) => server == answered && status == got && code == got_code,
            (Expected::TlsAlert { alert }, Observed::TlsAlert { alert: got }) => alert == got,
            (Expected::NoHttpAnswer, Observed::NoHttpAnswer { .. }) => true,
            _ => false,
        }
    }
}

/// What an attack sent that storage must never hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Leaf hashes of the forged or refused readings.
    pub leaves: Vec<Hash>,
    /// Header hashes of the forged or refused batches.
    pub headers: Vec<Hash>,
}

/// One attack's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The attack.
    pub scenario: Scenario,
    /// The refusal the design promises.
    pub expected: Expected,
    /// What the attack met.
    pub observed: Observed,
    /// Whether the observed refusal is the expected one and every other check of the
    /// scenario held (see [`Outcome::problems`]).
    pub refused_as_expected: bool,
    /// What the attack sent that must not be stored.
    pub evidence: Evidence,
    /// Facts the scenario established on the way (what was accepted legitimately, what
    /// was acknowledged).
    pub notes: Vec<String>,
    /// Checks of the scenario besides the refusal that failed (empty when all held).
    pub problems: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.refused_as_expected {
            "refused"
        } else {
            "NOT AS EXPECTED"
        };
        write!(
            f,
            "{:<28} {mark:<15} expected {}; observed {}",
            self.scenario.name(),
            self.expected,
            self.observed
        )?;
        for problem in &self.problems {
            write!(f, "; problem: {problem}")?;
        }
        Ok(())
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
                self.other_ca(OTHER_HOSPITAL, "foreign-hospital", &mut findings)
                    .await?
            }
            Scenario::ImpostorCaDevice => {
                self.other_ca(crate::pki::ORGANISATION, "impostor-ca", &mut findings)
                    .await?
            }
            Scenario::PlainHttp => self.plain_http(&mut findings).await?,
            Scenario::Tls10 => self.old_tls(OldTls::Tls10).await?,
            Scenario::Tls11 => self.old_tls(OldTls::Tls11).await?,
            Scenario::CollectorAsDevice => self.collector_as_device().await?,
            Scenario::TypeNotAllowed => {
                let device = &self.thermometer;
                let body = quantity("heart_rate", "72", "/min", now(), device.next_sequence());
                self.send_forged(device, &device.files, &body, &mut findings)
                    .await?
            }
            Scenario::OutOfRange => {
                let device = &self.thermometer;
                let body = quantity(
                    "body_temperature",
                    "45",
                    "Cel",
                    now(),
                    device.next_sequence(),
                );
                self.send_forged(device, &device.files, &body, &mut findings)
                    .await?
            }
            Scenario::ImplausibleRate => self.implausible_rate(&mut findings).await?,
            Scenario::ReplayedSequence => self.replayed_sequence(&mut findings).await?,
            Scenario::OldTimestamp => {
                let device = &self.thermometer;
                let time =
                    Timestamp::from_unix_micros(now().unix_micros() - OLD_READING_AGE_MICROS)
                        .map_err(wardseal_core::Error::from)?;
                let body = quantity(
                    "body_temperature",
                    "36.8",
                    "Cel",
                    time,
                    device.next_sequence(),
                );
                self.send_forged(device, &device.files, &body, &mut findings)
                    .await?
            }
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

    // ----- the collector's door -----

    async fn self_signed(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let files = self_signed_device(&self.base.dir, &device.epc, device.kind)?;
        let body = temperature_evidence(device, findings)?;
        let config = self.client_config(&files, &[b"http/1.1"])?;
        Ok(self.post_reading(config, &body).await)
    }

    /// A device certificate with the attacker's thermometer's identity from a real
    /// wardseal CA, as the ward's own, that the ward does not trust: `organisation` names
    /// its CAs.
    async fn other_ca(
        &self,
        organisation: &str,
        label: &str,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let foreign_dir = self.base.dir.join(label);
        std::fs::create_dir_all(&foreign_dir).map_err(|e| Error::io("create", &foreign_dir, e))?;
        let foreign = WardPki::create_for(&foreign_dir, organisation).await?;
        let files = foreign
            .issue(
                Identity::device(
                    device.epc.clone(),
                    GroupId(device.kind.group()),
                    RuleId(device.kind.group()),
                ),
                &foreign_dir,
                "thermometer",
                &self.base.ward.files().ward,
            )
            .await?;
        let body = temperature_evidence(device, findings)?;
        let config = self.client_config(&files, &[b"http/1.1"])?;
        Ok(self.post_reading(config, &body).await)
    }

    async fn plain_http(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let body = temperature_evidence(device, findings)?;
        let request = post_request("/v1/readings", &body);
        let address = self.base.ward.collector_addr();
        let exchange = async {
            let mut tcp = tokio::net::TcpStream::connect(address).await?;
            tcp.write_all(&request).await?;
            let mut answer = Vec::new();
            // The server may reset the connection after its alert: what was read counts.
            let _ = tcp.read_to_end(&mut answer).await;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => {
                return Ok(Observed::NoHttpAnswer {
                    detail: format!("nothing within {} s", REQUEST_TIMEOUT.as_secs()),
                });
            }
            Ok(Err(error)) => {
                return Ok(Observed::ConnectionFailed {
                    reason: error.to_string(),
                });
            }
            Ok(Ok(answer)) => answer,
        };
        if answer.starts_with(b"HTTP/") {
            let (status, code) = parse_http_answer(&answer);
            return Ok(Observed::Answer {
                server: Server::Collector,
                status,
                code,
            });
        }
        let detail = match answer.first() {
            None => "the connection was closed".to_owned(),
            // 0x15: a TLS alert record; plain text never starts with it.
            Some(0x15) => format!("a {}-byte TLS alert record, then closed", answer.len()),
            Some(_) => format!("{} bytes that are not HTTP", answer.len()),
        };
        Ok(Observed::NoHttpAnswer { detail })
    }

    async fn old_tls(&self, version: OldTls) -> Result<Observed, Error> {
        let address = self.base.ward.collector_addr();
        let files = self.thermometer.files.clone();
        let probe = tokio::task::spawn_blocking(move || offer_old_tls(address, version, &files));
        match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), probe).await {
            Ok(Ok(observed)) => Ok(observed),
            Ok(Err(error)) => Err(Error::Request {
                target: "the TLS 1.0/1.1 client".into(),
                reason: error.to_string(),
            }),
            Err(_) => Err(timeout("the TLS 1.0/1.1 handshake")),
        }
    }

    async fn collector_as_device(&self) -> Result<Observed, Error> {
        let body = quantity("body_temperature", "36.9", "Cel", now(), 1);
        let connection = self
            .base
            .ward
            .connect_collector(&self.base.ward.files().collector)
            .await?;
        let reply = send(&connection, Method::POST, "/v1/readings", body.into_bytes()).await?;
        Ok(answer(Server::Collector, &reply))
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

    async fn implausible_rate(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let pen = self
            .base
            .enroll(DeviceKind::InsulinPen, "insulin-pen", true)
            .await?;
        let per_minute = DeviceKind::InsulinPen
            .types()
            .first()
            .map_or(0, |limits| limits.per_minute);
        // The rule allows ten times the nominal rate (kinds::DeviceKind::type_rules).
        let limit = usize::try_from(per_minute.saturating_mul(10)).unwrap_or(usize::MAX);
        let start = now().unix_micros();
        let mut readings = Vec::with_capacity(limit + 1);
        for index in 0..=limit {
            let time = Timestamp::from_unix_micros(start + i64::try_from(index).unwrap_or(0))
                .map_err(wardseal_core::Error::from)?;
            readings.push(quantity(
                "insulin_dose",
                "4",
                "[IU]",
                time,
                pen.next_sequence(),
            ));
        }
        let body = format!("[{}]", readings.join(","));
        let leaves = leaves_of(&pen.epc, &body)?;
        let connection = self.base.ward.connect_collector(&pen.files).await?;
        let reply = send(&connection, Method::POST, "/v1/readings", body.into_bytes()).await?;
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let results = json["results"].as_array().cloned().unwrap_or_default();
        let accepted = results
            .iter()
            .filter(|result| result["status"] == "accepted")
            .count();
        for (leaf, result) in leaves.iter().zip(&results) {
            if result["status"] != "accepted" {
                findings.evidence.leaves.push(*leaf);
            }
        }
        findings.notes.push(format!(
            "{accepted} doses within the rule's {limit} a minute accepted, {} refused",
            results.len().saturating_sub(accepted)
        ));
        if accepted != limit || results.len() != limit + 1 {
            findings.problems.push(format!(
                "expected the first {limit} of {} doses accepted, got {accepted} of {}",
                limit + 1,
                results.len()
            ));
        }
        Ok(answer(Server::Collector, &reply))
    }

    async fn replayed_sequence(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let sequence = device.next_sequence();
        let original = quantity("body_temperature", "36.6", "Cel", now(), sequence);
        let connection = self.base.ward.connect_collector(&device.files).await?;
        let reply = send(
            &connection,
            Method::POST,
            "/v1/readings",
            original.into_bytes(),
        )
        .await?;
        if reply.status == 202 {
            findings
                .notes
                .push(format!("sequence {sequence} accepted once (HTTP 202)"));
        } else {
            findings.problems.push(format!(
                "the original reading with sequence {sequence} was refused: HTTP {} {}",
                reply.status,
                error_code(&reply).unwrap_or_default()
            ));
        }
        // The replay carries another value, so its leaf differs from the original's.
        let replay = quantity("body_temperature", "39.5", "Cel", now(), sequence);
        self.send_forged(device, &device.files, &replay, findings)
            .await
    }

    async fn deactivated(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = self
            .base
            .enroll(DeviceKind::Thermometer, "captured", true)
            .await?;
        self.base
            .ward
            .ledger()
            .deactivate_device(device.epc.to_bytes())
            .await?;
        self.base.wait_for_code(&device, "inactive_device").await?;
        findings.notes.push(format!(
            "device {} deactivated on the ledger; the collector followed",
            device.epc.pure_identity_uri()
        ));
        let body = quantity(
            "body_temperature",
            "36.9",
            "Cel",
            now(),
            device.next_sequence(),
        );
        self.send_forged(&device, &device.files, &body, findings)
            .await
    }

    async fn revoked(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = self
            .base
            .enroll(DeviceKind::Thermometer, "revoked", true)
            .await?;
        let config = self.client_config(&device.files, &[b"http/1.1"])?;
        let before = tls_request(
            self.base.ward.collector_addr(),
            Arc::clone(&config),
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        match &before {
            Observed::Answer { status: 200, .. } => findings
                .notes
                .push("before revocation the certificate was accepted (GET /healthz: 200)".into()),
            other => findings.problems.push(format!(
                "before revocation the certificate was already refused: {other}"
            )),
        }
        self.base.ward.pki().revoke(&device.files.serial).await?;
        self.base.ward.reload_crls()?;
        findings.notes.push(format!(
            "certificate {} revoked, CRL republished, collector and storage reloaded",
            device.files.serial
        ));
        let body = temperature_evidence(&device, findings)?;
        Ok(self.post_reading(config, &body).await)
    }

    // ----- storage, as a compromised collector -----

    fn card(&self) -> Result<Card, Error> {
        self.base
            .ward
            .collector()
            .cards()
            .card(&self.base.patient)
            .ok_or_else(|| {
                Error::Options(format!(
                    "the collector holds no card for patient {}",
                    self.base.patient.as_str()
                ))
            })
    }

    /// The patient's chain tip once the real collector has delivered everything it
    /// accepted (so no genuine batch takes the place a forged one aims at meanwhile).
    async fn quiet_tip(&self) -> Result<Option<ChainTip>, Error> {
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        while self.base.ward.collector().spool().depth() > 0 {
            if Instant::now() >= deadline {
                return Err(timeout("the collector to deliver its spool to storage"));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(self
            .base
            .ward
            .storage()
            .store
            .tip(self.base.patient.as_str())
            .await?)
    }

    /// Body-temperature readings from the attacker's thermometer, measured now, in
    /// canonical form. Their leaves go to the evidence: none of them was ever accepted.
    fn forged_readings(
        &self,
        values: &[&str],
        findings: &mut Findings,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let start = now().unix_micros();
        let mut readings = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            let time = Timestamp::from_unix_micros(start + i64::try_from(index).unwrap_or(0))
                .map_err(wardseal_core::Error::from)?;
            let reading = body_temperature(
                &self.thermometer.epc,
                value,
                time,
                self.thermometer.next_sequence(),
            )?;
            findings.evidence.leaves.push(reading.leaf_hash());
            readings.push(reading.canonical_bytes());
        }
        Ok(readings)
    }

    /// The header for `readings` after `tip`, signed by `signer`; its hash goes to the
    /// evidence.
    async fn seal(
        &self,
        tip: Option<&ChainTip>,
        readings: &[Vec<u8>],
        signer: Arc<dyn Signer>,
        certificate: Vec<u8>,
        findings: &mut Findings,
    ) -> Result<BatchSubmission, Error> {
        let leaves: Vec<Hash> = readings
            .iter()
            .map(|bytes| wardseal_core::merkle::leaf_hash(bytes))
            .collect();
        let mut times = Vec::with_capacity(readings.len());
        for bytes in readings {
            times.push(
                Reading::from_canonical_bytes(bytes)
                    .map_err(wardseal_core::Error::from)?
                    .measurement()
                    .time(),
            );
        }
        let first = times.iter().copied().min().unwrap_or(Timestamp::MIN);
        let last = times.iter().copied().max().unwrap_or(Timestamp::MIN);
        let header = BatchHeader::for_leaves(
            self.base.patient.clone(),
            collector_id(self.base.ward)?,
            tip,
            &leaves,
            (first, last),
            signer.algorithm(),
        )
        .map_err(wardseal_core::Error::from)?;
        self.sign(header, readings.to_vec(), signer, certificate, findings)
            .await
    }

    async fn sign(
        &self,
        header: BatchHeader,
        readings: Vec<Vec<u8>>,
        signer: Arc<dyn Signer>,
        certificate: Vec<u8>,
        findings: &mut Findings,
    ) -> Result<BatchSubmission, Error> {
        findings.evidence.headers.push(header.hash());
        let message = header.canonical_bytes();
        let signature = tokio::task::spawn_blocking(move || signer.sign_message(&message))
            .await
            .map_err(|e| {
                Error::Card(wardseal_card::Error::Signing(format!(
                    "the signing task failed: {e}"
                )))
            })??;
        Ok(BatchSubmission {
            header,
            signature,
            patient_certificate: certificate,
            readings,
        })
    }

    async fn post_batch(&self, submission: &BatchSubmission) -> Result<Reply, Error> {
        let body = serde_json::to_vec(submission).map_err(|e| Error::Request {
            target: "storage's /v1/batches".into(),
            reason: format!("cannot encode the batch: {e}"),
        })?;
        let connection = self
            .base
            .ward
            .connect_storage(&self.base.ward.files().collector)
            .await?;
        send(&connection, Method::POST, "/v1/batches", body).await
    }

    async fn tampered_reading(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        let readings = self.forged_readings(&["36.7", "36.8"], findings)?;
        let mut submission = self
            .seal(
                tip.as_ref(),
                &readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        // The second reading, 36.8 °C as signed, arrives as 38.8 °C.
        let signed = Reading::from_canonical_bytes(readings.get(1).map_or(&[][..], Vec::as_slice))
            .map_err(wardseal_core::Error::from)?;
        let altered = body_temperature(
            signed.device(),
            "38.8",
            signed.measurement().time(),
            signed.measurement().sequence(),
        )?;
        findings.evidence.leaves.push(altered.leaf_hash());
        if let Some(slot) = submission.readings.get_mut(1) {
            *slot = altered.canonical_bytes();
        }
        Ok(answer(
            Server::Storage,
            &self.post_batch(&submission).await?,
        ))
    }

    async fn forged_signature(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let forger = SoftwareSigner::generate(KeyKind::EcdsaP256)?;
        let tip = self.quiet_tip().await?;
        let readings = self.forged_readings(&["36.9"], findings)?;
        let submission = self
            .seal(
                tip.as_ref(),
                &readings,
                Arc::new(forger),
                card.certificate.clone(),
                findings,
            )
            .await?;
        Ok(answer(
            Server::Storage,
            &self.post_batch(&submission).await?,
        ))
    }

    async fn replayed_batch(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let store = &self.base.ward.storage().store;
        let tip = self
            .quiet_tip()
            .await?
            .ok_or_else(|| Error::Options("the patient has no stored batch to replay".into()))?;
        let (batch, leaves) = store
            .batch(tip.hash.as_bytes())
            .await?
            .ok_or_else(|| Error::Options("the patient's chain tip is not stored".into()))?;
        let mut readings = Vec::with_capacity(leaves.len());
        for leaf in &leaves {
            let stored = store.reading_by_leaf(leaf).await?.ok_or_else(|| {
                Error::Options(format!("reading {leaf} of the stored batch is missing"))
            })?;
            readings.push(stored.canonical);
        }
        let header =
            BatchHeader::from_canonical_bytes(&batch.header).map_err(wardseal_core::Error::from)?;
        // 1. Byte-identical: a repeated delivery, acknowledged again and stored once.
        let captured = BatchSubmission {
            header: header.clone(),
            signature: batch.signature,
            patient_certificate: batch.patient_certificate,
            readings: readings.clone(),
        };
        let (readings_before, batches_before) = store.counts().await?;
        let reply = self.post_batch(&captured).await?;
        let (readings_after, batches_after) = store.counts().await?;
        let receipt: Option<BatchReceipt> = serde_json::from_slice(&reply.body).ok();
        match receipt {
            Some(receipt) if reply.status == 200 && !receipt.newly_stored => findings.notes.push(
                format!("batch {} re-sent as captured: acknowledged again (200, newly_stored false), not stored twice", tip.sequence),
            ),
            _ => findings.problems.push(format!(
                "the byte-identical replay of batch {} got HTTP {} {}",
                tip.sequence,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )),
        }
        if (readings_before, batches_before) != (readings_after, batches_after) {
            findings.problems.push(format!(
                "the byte-identical replay changed the counts: readings {readings_before} → {readings_after}, batches {batches_before} → {batches_after}"
            ));
        }
        // 2. Re-sealed by the card at the same place with a wider time range, so its
        // header hash differs from the stored one: a replay of an old chain place.
        let mut parts: BatchHeaderParts = header.parts().clone();
        let widened = parts.first_time.unix_micros().saturating_sub(1);
        parts.first_time =
            Timestamp::from_unix_micros(widened).map_err(wardseal_core::Error::from)?;
        let resealed = BatchHeader::new(parts).map_err(wardseal_core::Error::from)?;
        let submission = self
            .sign(
                resealed,
                readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        Ok(answer(
            Server::Storage,
            &self.post_batch(&submission).await?,
        ))
    }

    async fn sinkhole_drop(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        let dropped_readings = self.forged_readings(&["36.6"], findings)?;
        let dropped = self
            .seal(
                tip.as_ref(),
                &dropped_readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        let next_readings = self.forged_readings(&["36.7"], findings)?;
        let next = self
            .seal(
                Some(&dropped.header.tip()),
                &next_readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        findings.notes.push(format!(
            "batch {} dropped, batch {} delivered",
            dropped.header.sequence(),
            next.header.sequence()
        ));
        Ok(answer(Server::Storage, &self.post_batch(&next).await?))
    }

    async fn sinkhole_reorder(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        let readings = self.forged_readings(&["36.6", "36.7", "36.8"], findings)?;
        let mut submission = self
            .seal(
                tip.as_ref(),
                &readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        submission.readings.reverse();
        Ok(answer(
            Server::Storage,
            &self.post_batch(&submission).await?,
        ))
    }

    async fn sinkhole_alter(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        // Everything about this batch is genuine — the card's signature, the chain
        // place, the registered and assigned device — except that 45 °C breaks the rule.
        let readings = self.forged_readings(&["36.6", "45"], findings)?;
        let submission = self
            .seal(
                tip.as_ref(),
                &readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        Ok(answer(
            Server::Storage,
            &self.post_batch(&submission).await?,
        ))
    }

    async fn unauthorised_read(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let files = self.base.ward.files();
        let connection = self
            .base
            .ward
            .connect_storage(&files.other_nurse.files)
            .await?;
        let path = format!("/v1/patients/{}/observations", self.base.patient.as_str());
        let reply = send(&connection, Method::GET, &path, Vec::new()).await?;
        if String::from_utf8_lossy(&reply.body).contains("Observation") {
            findings
                .problems
                .push("the refusal's body discloses observations".into());
        }
        findings.notes.push(format!(
            "{} asked for {}'s observations",
            files.other_nurse.id,
            self.base.patient.as_str()
        ));
        Ok(answer(Server::Storage, &reply))
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

impl Base<'_> {
    /// Certifies a new device of `kind`; with `register`, registers it on the ledger,
    /// assigns it to the patient in storage and waits until the collector knows both.
    async fn enroll(
        &self,
        kind: DeviceKind,
        label: &str,
        register: bool,
    ) -> Result<AttackDevice, Error> {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let epc: Sgtin96 = format!(
            "urn:epc:tag:sgtin-96:3.{COMPANY_PREFIX}.{}.{serial}",
            kind.item_reference()
        )
        .parse()
        .map_err(wardseal_core::Error::from)?;
        let ward_id = self.ward.files().ward.as_str();
        let files = self
            .ward
            .pki()
            .issue(
                Identity::device(epc.clone(), GroupId(kind.group()), RuleId(kind.group())),
                &self.dir,
                &format!("{label}-{serial}"),
                ward_id,
            )
            .await?;
        let device = AttackDevice {
            kind,
            epc,
            files,
            sequence: AtomicU64::new(1),
        };
        if register {
            self.ward
                .ledger()
                .register_device(&Device {
                    epc: device.epc.to_bytes(),
                    group: kind.group(),
                    rule_id: kind.group(),
                    ward: ward_id.to_owned(),
                    active: true,
                })
                .await?;
            let since = wardseal_storage::store::now_micros() - 3_600_000_000;
            self.ward
                .storage()
                .store
                .assign_device(
                    &device.epc.pure_identity_uri(),
                    self.patient.as_str(),
                    since,
                )
                .await?;
            self.wait_until_known(&device).await?;
        }
        Ok(device)
    }

    /// Waits until the collector has learnt the device's registration (a probe of a type
    /// no group allows is refused `data_type_not_allowed` rather than `unknown_device`;
    /// probes are refused either way, so nothing is stored) and its assignment.
    async fn wait_until_known(&self, device: &AttackDevice) -> Result<(), Error> {
        self.wait_for_code(device, "data_type_not_allowed").await?;
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        while self
            .ward
            .collector()
            .replica()
            .patient(&device.epc)
            .is_none()
        {
            if Instant::now() >= deadline {
                return Err(timeout(
                    "the collector to learn the attacker's device assignment",
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Sends probes (a `glucose` reading, which no device group may send) until the
    /// collector answers with `code`.
    async fn wait_for_code(&self, device: &AttackDevice, code: &str) -> Result<(), Error> {
        let connection = self.ward.connect_collector(&device.files).await?;
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        loop {
            let probe = quantity("glucose", "100", "mg/dL", now(), device.next_sequence());
            let reply = send(
                &connection,
                Method::POST,
                "/v1/readings",
                probe.into_bytes(),
            )
            .await?;
            if error_code(&reply).as_deref() == Some(code) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(timeout(&format!(
                    "the collector to answer {code} to the attacker's device (last: HTTP {} {})",
                    reply.status,
                    error_code(&reply).unwrap_or_default()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn collector_id(ward: &RunningWard) -> Result<SubjectId, Error> {
    Ok(SubjectId::new(ward.files().ward.as_str()).map_err(wardseal_core::Error::from)?)
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

/// One single-number reading as a device sends it.
/// A plausible temperature from `device` with its next sequence number, its leaf hash
/// recorded as evidence: nothing an attack sends may be stored.
fn temperature_evidence(device: &AttackDevice, findings: &mut Findings) -> Result<String, Error> {
    let body = quantity(
        "body_temperature",
        "36.9",
        "Cel",
        now(),
        device.next_sequence(),
    );
    findings
        .evidence
        .leaves
        .extend(leaves_of(&device.epc, &body)?);
    Ok(body)
}

fn quantity(data_type: &str, value: &str, unit: &str, time: Timestamp, sequence: u64) -> String {
    format!(
        r#"{{"type":"{data_type}","value":{value},"unit":"{unit}","time":"{time}","seq":{sequence}}}"#
    )
}

/// A body-temperature reading of `device`.
fn body_temperature(
    device: &Sgtin96,
    value: &str,
    time: Timestamp,
    sequence: u64,
) -> Result<Reading, Error> {
    let value = Decimal::parse(value)
        .map_err(|source| wardseal_core::reading::ReadingError::Decimal {
            field: "value",
            source,
        })
        .map_err(wardseal_core::Error::from)?;
    let measurement = Measurement::new(
        DataType::BodyTemperature,
        Unit::of(DataType::BodyTemperature),
        Value::Quantity(value),
        time,
        sequence,
    )
    .map_err(wardseal_core::Error::from)?;
    Ok(Reading::new(device.clone(), measurement))
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

async fn send(
    connection: &Connection,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, Error> {
    tokio::time::timeout(REQUEST_TIMEOUT, connection.send(method, path, body))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("an answer to {path}"),
            seconds: REQUEST_TIMEOUT.as_secs(),
        })?
        .map_err(|error| Error::Request {
            target: path.to_owned(),
            reason: error.to_string(),
        })
}

fn error_code(reply: &Reply) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|json| json["code"].as_str().map(str::to_owned))
}

fn answer(server: Server, reply: &Reply) -> Observed {
    Observed::Answer {
        server,
        status: reply.status,
        code: error_code(reply),
    }
}

/// An HTTP/1.1 POST of a JSON body, closing the connection after the answer.
fn post_request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status and the JSON body's `code` of a raw HTTP/1.1 answer.
fn parse_http_answer(answer: &[u8]) -> (u16, Option<String>) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let code = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body.trim()).ok())
        .and_then(|json| json["code"].as_str().map(str::to_owned));
    (status, code)
}

/// Connects with rustls, sends `request` and reads the answer; a server alert during the
/// handshake — or, in TLS 1.3, right after it, where the server judges the client's
/// certificate — becomes [`Observed::TlsAlert`].
async fn tls_request(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> Observed {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let name = ServerName::IpAddress(address.ip().into());
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        tls.write_all(request).await?;
        tls.flush().await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => Observed::ConnectionFailed {
            reason: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        },
        Ok(Ok(answer)) if answer.starts_with(b"HTTP/") => {
            let (status, code) = parse_http_answer(&answer);
            Observed::Answer {
                server: Server::Collector,
                status,
                code,
            }
        }
        Ok(Ok(answer)) => Observed::NoHttpAnswer {
            detail: format!("{} bytes that are not HTTP", answer.len()),
        },
        Ok(Err(error)) => {
            let alert = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(|tls| match tls {
                    rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
                    _ => None,
                });
            match alert {
                Some(alert) => Observed::TlsAlert { alert },
                None => Observed::ConnectionFailed {
                    reason: error.to_string(),
                },
            }
        }
    }
}

/// The protocol versions rustls does not implement, offered by OpenSSL.
#[derive(Debug, Clone, Copy)]
enum OldTls {
    Tls10,
    Tls11,
}

/// Offers only `version` (OpenSSL at security level 0, so that OpenSSL itself agrees to
/// send such a ClientHello) with the device's certificate, and reports how the server
/// answered.
fn offer_old_tls(address: SocketAddr, version: OldTls, files: &CertificateFiles) -> Observed {
    use openssl::ssl::{
        HandshakeError, SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion,
    };
    let version = match version {
        OldTls::Tls10 => SslVersion::TLS1,
        OldTls::Tls11 => SslVersion::TLS1_1,
    };
    let setup = || -> Result<SslConnector, openssl::error::ErrorStack> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        builder.set_security_level(0);
        builder.set_cipher_list("DEFAULT:@SECLEVEL=0")?;
        builder.set_min_proto_version(Some(version))?;
        builder.set_max_proto_version(Some(version))?;
        // The point is to see whether the server refuses; the client checks nothing.
        builder.set_verify(SslVerifyMode::NONE);
        builder.set_certificate_chain_file(&files.certificate)?;
        builder.set_private_key_file(&files.key, SslFiletype::PEM)?;
        Ok(builder.build())
    };
    let connector = match setup() {
        Ok(connector) => connector,
        Err(error) => {
            return Observed::ConnectionFailed {
                reason: format!("OpenSSL refused to set up the client: {error}"),
            };
        }
    };
    let tcp = match std::net::TcpStream::connect_timeout(&address, REQUEST_TIMEOUT) {
        Ok(tcp) => tcp,
        Err(error) => {
            return Observed::ConnectionFailed {
                reason: error.to_string(),
            };
        }
    };
    let _ = tcp.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(REQUEST_TIMEOUT));
    let configured = match connector.configure() {
        Ok(mut configured) => {
            configured.set_verify_hostname(false);
            configured
        }
        Err(error) => {
            return Observed::ConnectionFailed {
                reason: error.to_string(),
            };
        }
    };
    match configured.connect("127.0.0.1", tcp) {
        Ok(mut stream) => {
            // The server agreed to an old protocol: say so by what it answers.
            let _ = stream.write_all(
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            let (status, code) = parse_http_answer(&answer);
            Observed::Answer {
                server: Server::Collector,
                status,
                code,
            }
        }
        Err(HandshakeError::Failure(failed)) => {
            let reasons: Vec<String> = failed
                .error()
                .ssl_error()
                .map(|stack| {
                    stack
                        .errors()
                        .iter()
                        .filter_map(|error| error.reason().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            // OpenSSL names a received alert "sslv3 alert <description>" (alerts SSL 3
            // had) or "tlsv1 alert <description>" (alerts TLS added).
            let alert = reasons.iter().find_map(|reason| {
                reason
                    .strip_prefix("sslv3 alert ")
                    .or_else(|| reason.strip_prefix("tlsv1 alert "))
            });
            match alert {
                Some(description) => Observed::TlsAlert {
                    alert: alert_name(description),
                },
                None => Observed::ConnectionFailed {
                    reason: if reasons.is_empty() {
                        failed.error().to_string()
                    } else {
                        reasons.join("; ")
                    },
                },
            }
        }
        Err(other) => Observed::ConnectionFailed {
            reason: other.to_string(),
        },
    }
}

/// OpenSSL's alert description ("protocol version") in rustls' naming
/// ("ProtocolVersion"), so both clients' observations compare with one expectation.
fn alert_name(description: &str) -> String {
    description
        .split([' ', '_'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            if word == "ca" {
                return "CA".to_owned();
            }
            let mut letters = word.chars();
            letters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + letters.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A self-signed certificate carrying a real device's identity (EPC, group, rule) and a
/// new P-256 key, written next to the attacker's other material.
fn self_signed_device(
    dir: &Path,
    epc: &Sgtin96,
    kind: DeviceKind,
) -> Result<CertificateFiles, Error> {
    let identity = Identity::device(epc.clone(), GroupId(kind.group()), RuleId(kind.group()));
    let failed = |reason: String| {
        Error::Options(format!("cannot make the self-signed certificate: {reason}"))
    };
    let key = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| failed(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, epc.tag_uri());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        wardseal_core::identity::IDENTITY_EXTENSION_OID_COMPONENTS,
        identity.to_der(),
    )];
    let certificate = params
        .self_signed(&key)
        .map_err(|e| failed(e.to_string()))?;
    let files = CertificateFiles {
        certificate: dir.join("self-signed.pem"),
        key: dir.join("self-signed.key"),
        serial: String::new(),
    };
    std::fs::write(&files.certificate, certificate.pem())
        .map_err(|e| Error::io("write", &files.certificate, e))?;
    wardseal_pki::key::write_private_file(&files.key, key.serialize_pem().as_bytes())?;
    Ok(files)
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
                    Server::Storage => assert!(
                        code == "not_responsible" || STORAGE_BATCH_CODES.contains(&code),
                        "{scenario}: {code} is not a storage code"
                    ),
                }
            }
        }
    }

    /// storage::error::Refusal::code's codes the scenarios use.
    const STORAGE_BATCH_CODES: [&str; 5] = [
        "root_mismatch",
        "bad_signature",
        "replayed_batch",
        "chain_gap",
        "rule_violation",
    ];

    #[test]
    fn observations_match_only_their_expectation() {
        let expected = Scenario::ReplayedSequence.expected();
        let right = Observed::Answer {
            server: Server::Collector,
            status: 409,
            code: Some("replay".into()),
        };
        assert!(right.matches(&expected));
        let wrong_code = Observed::Answer {
            server: Server::Collector,
            status: 409,
            code: Some("chain_gap".into()),
        };
        assert!(!wrong_code.matches(&expected));
        let accepted = Observed::Answer {
            server: Server::Collector,
            status: 202,
            code: None,
        };
        assert!(!accepted.matches(&expected));
        assert!(
            Observed::TlsAlert {
                alert: "HandshakeFailure".into()
            }
            .matches(&Scenario::Tls10.expected())
        );
        assert!(
            !Observed::ConnectionFailed {
                reason: "reset".into()
            }
            .matches(&Scenario::Tls10.expected())
        );
    }

    #[test]
    fn openssl_alert_descriptions_take_rustls_names() {
        assert_eq!(alert_name("protocol version"), "ProtocolVersion");
        assert_eq!(alert_name("handshake failure"), "HandshakeFailure");
        assert_eq!(alert_name("unknown ca"), "UnknownCA");
    }
}
