//! The crate's one error type: refusals of a batch (each with a stable code), access
//! refusals, and failures of the database, the ledger or the configuration.

use wardseal_core::hash::Hash;

/// Everything that can go wrong in `wardseal-storage`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch was refused; nothing of it was stored but the refusal record.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A request was refused by access control.
    #[error(transparent)]
    Access(#[from] AccessRefusal),
    /// A request body could not be read (too large, or the connection failed).
    #[error(transparent)]
    Body(#[from] wardseal_net::wire::BodyError),
    /// A request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// What was asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database failed, or holds a row the schema never writes.
    #[error("database error while trying to {action}: {source}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The driver's error (or what is wrong with the row).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The ledger (rules, registry, consent, anchors) failed.
    #[error("ledger error while trying to {action}: {source}")]
    Ledger {
        /// What was being done.
        action: &'static str,
        /// The ledger's error.
        source: wardseal_contracts::Error,
    },
    /// A server setting is unusable (the message names the flag to change).
    #[error("{0}")]
    Setting(String),
    /// The database URL names no database storage can use.
    #[error("database URL {0:?} is neither sqlite://PATH nor postgres://…")]
    DatabaseUrl(String),
    /// The SQLite database file (or its directory) could not be created.
    #[error("cannot create {}: {source}", .path.display())]
    DatabaseFile {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server cannot listen on its address.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Net(#[from] wardseal_net::Error),
    /// A proof file does not verify.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A FHIR request cannot be answered as asked (`/fhir`).
    #[error(transparent)]
    Fhir(#[from] FhirError),
}

impl Error {
    pub(crate) fn database(
        action: &'static str,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Database {
            action,
            source: error.into(),
        }
    }

    /// A stored row the schema never writes (`what` says what is wrong with it).
    pub(crate) fn corrupt_row(what: String) -> Self {
        Self::database("decode a stored row", what)
    }

    pub(crate) fn ledger(action: &'static str, source: wardseal_contracts::Error) -> Self {
        Self::Ledger { action, source }
    }
}

/// Why a batch was refused. [`Refusal::code`] is the stable machine code on the wire and in
/// the rejection records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The body is not a batch submission.
    #[error("the body is not a batch submission: {0}")]
    Malformed(String),
    /// The patient certificate does not chain to the hospital CA, is expired, or lacks the
    /// patient-data-signing usage.
    #[error("the patient certificate is not valid: {0}")]
    PatientCertificateInvalid(String),
    /// The patient certificate is on the current CRL.
    #[error("the patient certificate has been revoked")]
    PatientCertificateRevoked,
    /// The patient certificate is not a patient's, or not this batch's patient's.
    #[error("the signing certificate belongs to {certificate}, not to batch patient {patient}")]
    PatientMismatch {
        /// Who the certificate names (role and subject id).
        certificate: String,
        /// The header's patient.
        patient: String,
    },
    /// The header names another collector than the one delivering it.
    #[error("the batch names collector {named}, but collector {delivering} delivered it")]
    CollectorMismatch {
        /// The header's collector.
        named: String,
        /// The client certificate's ward.
        delivering: String,
    },
    /// The card's signature over the header does not verify.
    #[error("the patient card's signature over the batch header does not verify: {0}")]
    BadSignature(String),
    /// The header's count is not the number of readings sent.
    #[error("the header counts {header} readings but {sent} were sent")]
    CountMismatch {
        /// The header's count.
        header: u64,
        /// Readings in the body.
        sent: u64,
    },
    /// A reading's canonical bytes do not decode.
    #[error("reading {index} is not a canonical reading: {reason}")]
    MalformedReading {
        /// Its position.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The readings' Merkle root is not the signed root: a reading was altered, added,
    /// dropped or reordered.
    #[error("the readings' Merkle root {computed} is not the signed root {signed}")]
    RootMismatch {
        /// Recomputed from the readings.
        computed: Hash,
        /// In the signed header.
        signed: Hash,
    },
    /// A reading's time is outside the header's time range.
    #[error("reading {index} was measured outside the batch's signed time range")]
    OutsideTimeRange {
        /// Its position.
        index: usize,
    },
    /// Batches are missing between the stored chain and this one.
    #[error("batch {got} leaves a gap: the next batch in this patient's chain is {expected}")]
    ChainGap {
        /// The sequence expected.
        expected: u64,
        /// The sequence received.
        got: u64,
    },
    /// The batch names another predecessor than the stored one.
    #[error("batch {sequence} forks the patient's chain")]
    ChainFork {
        /// The sequence received.
        sequence: u64,
    },
    /// The batch takes an old place in the chain.
    #[error("batch {sequence} replays an old place in the chain (the chain is at {tip})")]
    Replay {
        /// The sequence received.
        sequence: u64,
        /// The stored tip.
        tip: u64,
    },
    /// A reading's device is not in the on-chain registry.
    #[error("device {device} is not registered")]
    DeviceNotRegistered {
        /// The EPC (pure identity URI).
        device: String,
    },
    /// A reading's device was deactivated.
    #[error("device {device} is deactivated")]
    DeviceInactive {
        /// The EPC.
        device: String,
    },
    /// A reading's device was not assigned to the patient when it measured.
    #[error("device {device} was not assigned to patient {patient} at the reading's time")]
    DeviceNotAssigned {
        /// The EPC.
        device: String,
        /// The patient.
        patient: String,
    },
    /// A reading breaks its device's rule (a compromised collector cannot push it).
    #[error("reading {index} breaks the rule for its device: {verdict}")]
    RuleViolation {
        /// Its position.
        index: usize,
        /// The rule's verdict.
        verdict: String,
    },
}

impl Refusal {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_batch",
            Self::PatientCertificateInvalid(_) => "patient_certificate_invalid",
            Self::PatientCertificateRevoked => "patient_certificate_revoked",
            Self::PatientMismatch { .. } => "patient_mismatch",
            Self::CollectorMismatch { .. } => "collector_mismatch",
            Self::BadSignature(_) => "bad_signature",
            Self::CountMismatch { .. } => "count_mismatch",
            Self::MalformedReading { .. } => "malformed_reading",
            Self::RootMismatch { .. } => "root_mismatch",
            Self::OutsideTimeRange { .. } => "reading_outside_time_range",
            Self::ChainGap { .. } => "chain_gap",
            Self::ChainFork { .. } => "chain_fork",
            Self::Replay { .. } => "replayed_batch",
            Self::DeviceNotRegistered { .. } => "device_not_registered",
            Self::DeviceInactive { .. } => "device_inactive",
            Self::DeviceNotAssigned { .. } => "device_not_assigned",
            Self::RuleViolation { .. } => "rule_violation",
        }
    }

    /// Every machine code [`Refusal::code`] gives, in the variants' order (for clients that
    /// check codes against storage's, such as the simulator's attacks).
    pub const CODES: [&'static str; 17] = [
        "malformed_batch",
        "patient_certificate_invalid",
        "patient_certificate_revoked",
        "patient_mismatch",
        "collector_mismatch",
        "bad_signature",
        "count_mismatch",
        "malformed_reading",
        "root_mismatch",
        "reading_outside_time_range",
        "chain_gap",
        "chain_fork",
        "replayed_batch",
        "device_not_registered",
        "device_inactive",
        "device_not_assigned",
        "rule_violation",
    ];
}

/// Why a request for data or an administrative action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessRefusal {
    /// The certificate's role cannot use this route.
    #[error(transparent)]
    Role(#[from] wardseal_net::AccessError),
    /// The staff member is neither assigned to the patient nor granted consent.
    #[error("{staff} is not assigned to patient {patient} and has no consent from them")]
    NotResponsible {
        /// The staff member.
        staff: String,
        /// The patient.
        patient: String,
    },
    /// A certificate lacks the subject id the route needs.
    #[error("the certificate carries no subject id")]
    NoSubject,
    /// A patient's card certificate asked for another patient's records.
    #[error("{reader}'s card reads {reader}'s own records only, not patient {patient}'s")]
    NotOwnRecord {
        /// The patient whose card asked.
        reader: String,
        /// The patient asked about.
        patient: String,
    },
    /// An authority (laboratory, insurer, pharmacy, other hospital) may not read the
    /// patient's records: see [`crate::access::AuthorityRefusal`] for each reason.
    #[error(transparent)]
    Authority(#[from] crate::access::AuthorityRefusal),
}

/// Why a FHIR request (`/fhir`) cannot be answered as asked. Each becomes an
/// `OperationOutcome` with the status [`crate::api::to_wire`] gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// A search parameter this server does not support for the resource type (strict
    /// handling, the default; `Prefer: handling=lenient` ignores it instead).
    #[error(
        "{resource} does not support the search parameter `{parameter}` (see /fhir/metadata; \
         send `Prefer: handling=lenient` to have unknown parameters ignored)"
    )]
    UnknownParameter {
        /// The resource type searched.
        resource: &'static str,
        /// The parameter as sent.
        parameter: String,
    },
    /// A supported parameter with a value it cannot take.
    #[error("search parameter `{parameter}`: {reason}")]
    BadParameter {
        /// The parameter.
        parameter: String,
        /// What is wrong and what it accepts.
        reason: String,
    },
    /// A paging link that this server did not issue for this search, or that was altered,
    /// or whose server process has restarted since.
    #[error(
        "the paging cursor is not valid for this search ({0}); search again from the first page"
    )]
    BadCursor(&'static str),
    /// `_format` (or `Accept`) asks for a format other than JSON.
    #[error("format {0:?} is not supported: this server speaks application/fhir+json only")]
    UnsupportedFormat(String),
    /// A resource type or an interaction this server does not offer.
    #[error("{0} is not supported (see /fhir/metadata)")]
    NotSupported(String),
}

/// Why a proof file does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The file is not a proof document.
    #[error("not a proof document: {0}")]
    Malformed(String),
    /// The patient certificate does not chain to the given CA certificate.
    #[error("the patient certificate does not chain to the CA certificate: {0}")]
    Certificate(String),
    /// The header signature does not verify.
    #[error("the batch header signature does not verify: {0}")]
    Signature(String),
    /// The reading is not in the signed tree.
    #[error("the reading is not included under the signed root: {0}")]
    Inclusion(String),
    /// The batch's header hash is not in the anchored batch-log tree.
    #[error("the batch is not included under the anchored batch-log root: {0}")]
    AnchorInclusion(String),
    /// The document is pending: its batch was not anchored when it was fetched.
    #[error(
        "the batch is not anchored yet (anchor_status pending): fetch the proof again after \
         storage's next anchoring"
    )]
    NotAnchored,
    /// The chain holds no anchor of the document's root.
    #[error("the anchored root {root} is not on chain")]
    NotOnChain {
        /// The document's root.
        root: Hash,
    },
    /// The chain's anchor of the root says something else than the document.
    #[error("the chain's anchor differs from the document's: {0}")]
    AnchorMismatch(String),
    /// The chain could not be asked.
    #[error("the chain could not be asked about the anchor: {0}")]
    Chain(String),
}

impl ProofError {
    /// The exit status of `wardseal-storage verify-proof` for this failure: 3 the proof is
    /// bad (malformed, certificate, signature, inclusion of the reading or of the batch),
    /// 4 the batch is not anchored yet, 5 the anchor is not on chain or differs, 1 the chain
    /// could not be asked (clap's usage errors are 2).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Malformed(_)
            | Self::Certificate(_)
            | Self::Signature(_)
            | Self::Inclusion(_)
            | Self::AnchorInclusion(_) => 3,
            Self::NotAnchored => 4,
            Self::NotOnChain { .. } | Self::AnchorMismatch(_) => 5,
            Self::Chain(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One refusal of every kind; the exhaustive match makes a new variant fail to compile
    /// here until it is added.
    fn every_refusal() -> Vec<Refusal> {
        let hash = Hash::from([0; 32]);
        let text = || String::from("x");
        let all = vec![
            Refusal::Malformed(text()),
            Refusal::PatientCertificateInvalid(text()),
            Refusal::PatientCertificateRevoked,
            Refusal::PatientMismatch {
                certificate: text(),
                patient: text(),
            },
            Refusal::CollectorMismatch {
                named: text(),
                delivering: text(),
            },
            Refusal::BadSignature(text()),
            Refusal::CountMismatch { header: 1, sent: 2 },
            Refusal::MalformedReading {
                index: 0,
                reason: text(),
            },
            Refusal::RootMismatch {
                computed: hash,
                signed: hash,
            },
            Refusal::OutsideTimeRange { index: 0 },
            Refusal::ChainGap {
                expected: 1,
                got: 2,
            },
            Refusal::ChainFork { sequence: 1 },
            Refusal::Replay {
                sequence: 1,
                tip: 2,
            },
            Refusal::DeviceNotRegistered { device: text() },
            Refusal::DeviceInactive { device: text() },
            Refusal::DeviceNotAssigned {
                device: text(),
                patient: text(),
            },
            Refusal::RuleViolation {
                index: 0,
                verdict: text(),
            },
        ];
        for refusal in &all {
            match refusal {
                Refusal::Malformed(_)
                | Refusal::PatientCertificateInvalid(_)
                | Refusal::PatientCertificateRevoked
                | Refusal::PatientMismatch { .. }
                | Refusal::CollectorMismatch { .. }
                | Refusal::BadSignature(_)
                | Refusal::CountMismatch { .. }
                | Refusal::MalformedReading { .. }
                | Refusal::RootMismatch { .. }
                | Refusal::OutsideTimeRange { .. }
                | Refusal::ChainGap { .. }
                | Refusal::ChainFork { .. }
                | Refusal::Replay { .. }
                | Refusal::DeviceNotRegistered { .. }
                | Refusal::DeviceInactive { .. }
                | Refusal::DeviceNotAssigned { .. }
                | Refusal::RuleViolation { .. } => {}
            }
        }
        all
    }

    #[test]
    fn codes_lists_every_refusals_code_once_in_order() {
        let codes: Vec<&str> = every_refusal().iter().map(Refusal::code).collect();
        assert_eq!(codes, Refusal::CODES);
    }
}
