//! The crate's one error type and its sub-enums by domain.

use std::path::PathBuf;

use alloy::primitives::{Address, B256, Bytes};

/// Everything that can go wrong in wardseal-contracts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A contract refused the transaction or call (it reverted with one of its errors).
    #[error("the contract refused: {0}")]
    Contract(#[from] ContractError),
    /// The node, the connection to it or the embedded chain failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A rule, range or value is not valid; nothing was sent.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The chain answered something that does not decode as the suite's ABI: the address
    /// is probably not a wardseal contract (check suite.json).
    #[error("unexpected answer from the chain for {what}: is the suite address right?")]
    UnexpectedAnswer {
        /// What was asked.
        what: &'static str,
    },
    /// The account key file could not be used.
    #[error(transparent)]
    AccountKey(#[from] AccountKeyError),
    /// The ledger's location is missing or named twice.
    #[error("{0}")]
    Location(String),
    /// A suite file could not be read or written.
    #[error("suite file {path}: {reason}")]
    SuiteFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The custom errors of the wardseal contracts (and OpenZeppelin AccessControl's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The account lacks the role the function needs (`AccessControlUnauthorizedAccount`).
    #[error("account {account} lacks role {role}: grant it with `wardseal-ledger role grant`")]
    Unauthorized {
        /// The calling account.
        account: Address,
        /// The role it needs.
        role: B256,
    },
    /// A rule is already registered under this id (`RuleAlreadyRegistered`).
    #[error("rule {0} is already registered")]
    RuleAlreadyRegistered(u32),
    /// No rule is registered under this id (`UnknownRule`).
    #[error("rule {0} is not registered: create it first")]
    UnknownRule(u32),
    /// The rule contract names another manager or rule id (`RuleNotManaged`).
    #[error("rule contract {0} does not belong to this RuleManager")]
    RuleNotManaged(Address),
    /// A rule contract was called by someone other than its manager (`NotManager`).
    #[error("only the RuleManager may change a rule contract, not {0}")]
    NotManager(Address),
    /// A type rule needs 1 to 8 ranges (`ComponentCount`).
    #[error("a type rule needs 1 to 8 ranges, not {0}")]
    ComponentCount(u64),
    /// A range has a scale above 18 or min above max (`InvalidRange`).
    #[error("range {0} is invalid (scale above 18 or minimum above maximum)")]
    InvalidRange(u64),
    /// The unit is empty or longer than 32 bytes (`InvalidUnit`).
    #[error("the unit must have 1 to 32 bytes")]
    InvalidUnit,
    /// The rule does not allow this data type, so there is nothing to remove (`DataTypeNotSet`).
    #[error("the rule does not allow data type {0}")]
    DataTypeNotSet(u16),
    /// A type rule's alarm limit is invalid (`RangeRule.InvalidAlarmLimit`), or a
    /// patient's override is (`RuleManager.InvalidAlarmLimit`; index = count when there
    /// are none or too many).
    #[error(
        "alarm limit {0} is invalid (missing component, no priority, scale above 18, or too many)"
    )]
    InvalidAlarmLimit(u64),
    /// The caller is neither a rule admin nor responsible for the patient (`NotResponsible`).
    #[error(
        "account {caller} is neither a rule admin nor a clinician responsible for patient {patient}"
    )]
    NotResponsible {
        /// The calling account.
        caller: Address,
        /// The patient key.
        patient: B256,
    },
    /// The patient key is zero (`InvalidPatient`).
    #[error("the patient key must not be zero")]
    InvalidPatient,
    /// The patient has no override for this data type (`PatientLimitsNotSet`).
    #[error("patient {patient} has no alarm limits of their own for data type {data_type}")]
    PatientLimitsNotSet {
        /// The patient key.
        patient: B256,
        /// The data type code.
        data_type: u16,
    },
    /// The EPC is already registered, active or not (`DeviceAlreadyRegistered`).
    #[error("device {} is already registered (a deactivated device needs a new EPC)", hex::encode(.0))]
    DeviceAlreadyRegistered([u8; 12]),
    /// The EPC is not registered (`UnknownDevice`).
    #[error("device {} is not registered", hex::encode(.0))]
    UnknownDevice([u8; 12]),
    /// The device is already inactive (`DeviceInactive`).
    #[error("device {} is already inactive", hex::encode(.0))]
    DeviceInactive([u8; 12]),
    /// The ward id is empty or longer than 64 bytes (`InvalidWard`).
    #[error("the ward id must have 1 to 64 bytes")]
    InvalidWard,
    /// Only the patient's own account changes their consent (`NotPatient`).
    #[error("account {caller} may not change the consent of patient {patient}")]
    NotPatient {
        /// The calling account.
        caller: Address,
        /// The patient named.
        patient: Address,
    },
    /// The authority is the zero address (`ZeroAuthority`).
    #[error("the authority must not be the zero address")]
    ZeroAuthority,
    /// The authority already has the patient's consent (`AlreadyGranted`).
    #[error("{authority} already has the consent of {patient}")]
    AlreadyGranted {
        /// The patient.
        patient: Address,
        /// The authority.
        authority: Address,
    },
    /// The authority does not have the patient's consent (`NotGranted`).
    #[error("{authority} does not have the consent of {patient}")]
    NotGranted {
        /// The patient.
        patient: Address,
        /// The authority.
        authority: Address,
    },
    /// An authority or subject id is empty or longer than 64 bytes (`InvalidId`).
    #[error("authority and subject ids must have 1 to 64 bytes")]
    InvalidAuthorityId,
    /// The authority kind is not 0 to 3 (`InvalidKind`).
    #[error(
        "authority kind {0} is unknown; kinds are 0 laboratory, 1 insurer, 2 pharmacy, 3 hospital"
    )]
    InvalidAuthorityKind(u8),
    /// The authority is already registered (`OrganisationAlreadyRegistered`).
    #[error("authority {0} is already registered")]
    AuthorityAlreadyRegistered(String),
    /// The authority is not registered (`UnknownOrganisation`).
    #[error("authority {0} is not registered: register it first")]
    UnknownAuthority(String),
    /// The authority is already active or already inactive (`OrganisationActiveAlready`).
    #[error("authority {organisation} is already {}", if *.active { "active" } else { "inactive" })]
    AuthorityActiveAlready {
        /// The authority.
        organisation: String,
        /// The state it is already in.
        active: bool,
    },
    /// The subject is already bound to an authority (`SubjectAlreadyBound`).
    #[error("subject {subject} is already bound to authority {organisation}: unbind it first")]
    SubjectAlreadyBound {
        /// The certificate subject id.
        subject: String,
        /// The authority it is bound to.
        organisation: String,
    },
    /// The subject is bound to no authority (`UnknownSubject`).
    #[error("subject {0} is bound to no authority")]
    UnknownAuthoritySubject(String),
    /// The authority already has the patient's consent (`AccessAlreadyGranted`).
    #[error("authority {organisation} already has the consent of {patient}")]
    AuthorityAccessAlreadyGranted {
        /// The patient's account.
        patient: Address,
        /// The authority.
        organisation: String,
    },
    /// The authority does not have the patient's consent (`AccessNotGranted`).
    #[error("authority {organisation} does not have the consent of {patient}")]
    AuthorityAccessNotGranted {
        /// The patient's account.
        patient: Address,
        /// The authority.
        organisation: String,
    },
    /// The root is already anchored (`RootAlreadyAnchored`).
    #[error("root {0} is already anchored")]
    RootAlreadyAnchored(B256),
    /// An anchor must cover at least one entry (`EmptyAnchor`).
    #[error("an anchor must cover at least one entry")]
    EmptyAnchor,
    /// The first time is after the last (`TimeRangeReversed`).
    #[error("first time {first} is after last time {last}")]
    TimeRangeReversed {
        /// The first time given.
        first: u64,
        /// The last time given.
        last: u64,
    },
    /// A revert this crate does not know (a panic, a require message, another contract).
    #[error("reverted with data 0x{}", hex::encode(.0))]
    Other(Bytes),
}

/// Failures of the node, the connection or the embedded chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The node could not be reached or the connection broke; a retry may succeed.
    #[error("cannot reach the Ethereum node: {0}")]
    Unreachable(String),
    /// The node answered with an error that is not a contract revert.
    #[error("the Ethereum node refused: {0}")]
    Node(String),
    /// A transaction was mined but failed (out of gas or an invalid opcode).
    #[error("transaction {0} failed on chain (out of gas or invalid opcode)")]
    Failed(B256),
    /// The embedded EVM refused to run a transaction.
    #[error("the embedded EVM refused the transaction: {0}")]
    Evm(String),
    /// The embedded chain's files could not be read or written.
    #[error("embedded chain storage {path}: {source}")]
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The embedded chain's log is damaged beyond a torn last record.
    #[error(
        "embedded chain log {path} is damaged at byte {offset}: {reason}; restore it from a backup"
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the embedded chain open.
    #[error("embedded chain {0} is in use by another process")]
    Locked(PathBuf),
}

/// An account key file that cannot be used. The messages never contain the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountKeyError {
    /// The file could not be read.
    #[error("cannot read the account key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Users other than the owner may read or write the file.
    #[error(
        "the account key file {path} has mode {mode:03o}: others may read it; run `chmod 600 {path}` (and replace the key if others did read it)"
    )]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a hex secp256k1 private key.
    #[error(
        "{path} does not hold a hex secp256k1 private key (64 hex digits; `wardseal-ledger key new FILE` writes one)"
    )]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// A new key file could not be created or written.
    #[error("cannot write the new account key file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A node signs nothing for us: sending to it needs the account's key, not only its
    /// address.
    #[error("the node {url} needs the key of account {account} to sign: give its key file")]
    Needed {
        /// The node.
        url: String,
        /// The account given by address.
        account: Address,
    },
}

/// A rule, range or value that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The text is not an exact decimal like `36.6` with at most 18 fractional digits.
    #[error("`{0}` is not a decimal number like 36.6 or -0.05 (at most 18 digits after the point)")]
    InvalidNumber(String),
    /// The minimum is above the maximum, or a scale is above 18.
    #[error("range {min}..{max} is invalid: the minimum must not be above the maximum")]
    InvalidRange {
        /// The minimum given.
        min: String,
        /// The maximum given.
        max: String,
    },
    /// The unit is empty or longer than 32 bytes.
    #[error("unit `{0}` must have 1 to 32 bytes")]
    InvalidUnit(String),
    /// A type rule needs 1 to 8 ranges.
    #[error("a type rule needs 1 to 8 ranges (one per value component), not {0}")]
    ComponentCount(usize),
    /// A waveform's physical sample value (`origin + factor × raw`) needs more than 128
    /// bits, or the block has no samples.
    #[error(
        "a waveform sample's value is out of range (origin + factor × raw needs more than 128 bits)"
    )]
    ValueOutOfRange,
    /// An alarm limit names a component the value lacks, has a bound of scale above 18,
    /// or there are too many (at most 16) or, in an override, none.
    #[error("invalid alarm limit: {0}")]
    InvalidAlarmLimit(String),
    /// The data type name or code is not one wardseal knows.
    #[error("unknown data type `{0}` (use a name like heart_rate or a numeric code)")]
    UnknownDataType(String),
}
