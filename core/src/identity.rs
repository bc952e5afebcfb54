//! The wardseal identity extension: who a certificate belongs to, in the hospital's terms.
//!
//! Every wardseal certificate carries one non-critical X.509 extension,
//! [`IDENTITY_EXTENSION_OID`], whose value is the DER encoding of the ASN.1 module below.
//! It says which [`Role`] the holder plays and carries the fields that role needs: a
//! device's EPC, group and rule; a ward's pseudonymous id; the Ethereum account an
//! administrator, collector or storage server acts with on chain; the kind of
//! organisation an authority is (seed 2's layer 2: laboratories, insurers, pharmacies,
//! other hospitals).
//!
//! The extension is non-critical because openssl and webpki reject certificates with a
//! critical extension they do not know; wardseal's own verifiers require it by policy.
//!
//! ```text
//! WardsealIdentity DEFINITIONS IMPLICIT TAGS ::= BEGIN
//!   id-wardseal OBJECT IDENTIFIER ::= { 1 2 840 113556 1 8000 2554 1820 48732 25317 17402 36803 3040821 308419 }
//!   id-wardseal-identity OBJECT IDENTIFIER ::= { id-wardseal 1 }
//!   id-wardseal-kp-patientDataSigning OBJECT IDENTIFIER ::= { id-wardseal 2 }
//!   WardsealIdentity ::= SEQUENCE {
//!     version          INTEGER { v1(1) },
//!     role             ENUMERATED { device(0), collector(1), storage(2), staff(3), patient(4), admin(5),
//!                                   authority(6) },
//!     deviceId         [0] OCTET STRING (SIZE (12)) OPTIONAL,   -- SGTIN-96 EPC, binary
//!     groupId          [1] INTEGER (0..4294967295) OPTIONAL,
//!     ruleId           [2] INTEGER (0..4294967295) OPTIONAL,
//!     subjectId        [3] UTF8String (SIZE (1..64)) OPTIONAL,
//!     ethereumAddress  [4] OCTET STRING (SIZE (20)) OPTIONAL,
//!     authorityKind    [5] ENUMERATED { laboratory(0), insurer(1), pharmacy(2), hospital(3) } OPTIONAL }
//! END
//! ```
//!
//! Which optional fields a role must have (R), may have (O) or must not have (-):
//!
//! | role | deviceId | groupId | ruleId | subjectId | ethereumAddress | authorityKind |
//! |---|---|---|---|---|---|---|
//! | device | R | R | R | - | - | - |
//! | collector | - | O | O | R (its ward) | O | - |
//! | storage | - | - | - | O | O | - |
//! | staff | - | - | - | R | - | - |
//! | patient | - | - | - | R | - | - |
//! | admin | - | - | - | O | O | - |
//! | authority | - | - | - | R (its certificate subject) | - | R |
//!
//! An authority's kind is in the extension, not in a subject attribute such as OU: it is
//! read by the same strict decoder as the role, and a name attribute is free text that
//! profiles and tools treat as display only. Which organisation a subject belongs to, and
//! whether it is active, is the on-chain authority registry's to say, not the
//! certificate's: a renewed or additional certificate of the same organisation keeps the
//! patients' consent.
//!
//! [`Identity::from_der`] is strict: one DER encoding per value, no trailing bytes, fields
//! in order and at most once, every range and size checked, and the table above enforced.
//! Anything else is an [`ExtensionError`] naming the field at fault.
//!
//! ```
//! use wardseal_core::epc::Sgtin96;
//! use wardseal_core::identity::{GroupId, Identity, Role, RuleId};
//!
//! let epc: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789".parse()?;
//! let identity = Identity::device(epc, GroupId(3), RuleId(128));
//! let der = identity.to_der();
//! let decoded = Identity::from_der(&der)?;
//! assert_eq!(decoded, identity);
//! assert_eq!(decoded.role(), Role::Device);
//! # Ok::<(), wardseal_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use der::asn1::ObjectIdentifier;
use der::{Decode, Header, Reader, SliceReader};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha3::{Digest, Keccak256};

use crate::epc::{EpcError, SGTIN96_BYTES, Sgtin96};

/// The wardseal OID arc, derived from a UUID under the registration-free GUID arc
/// `1.2.840.113556.1.8000.2554` (a deployment with its own IANA Private Enterprise Number
/// may configure another).
pub const WARDSEAL_ARC: &str =
    "1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419";

/// `id-wardseal-identity` in dotted form.
pub const IDENTITY_EXTENSION_OID_STRING: &str =
    "1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419.1";

/// `id-wardseal-identity`: the OID of the identity extension.
pub const IDENTITY_EXTENSION_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(IDENTITY_EXTENSION_OID_STRING);

/// `id-wardseal-identity` as components, the form rcgen takes for custom extensions.
pub const IDENTITY_EXTENSION_OID_COMPONENTS: &[u64] = &[
    1, 2, 840, 113556, 1, 8000, 2554, 1820, 48732, 25317, 17402, 36803, 3040821, 308419, 1,
];

/// Whether the identity extension is marked critical: never (see the module docs).
pub const IDENTITY_EXTENSION_CRITICAL: bool = false;

/// `id-wardseal-kp-patientDataSigning` in dotted form.
pub const PATIENT_DATA_SIGNING_OID_STRING: &str =
    "1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419.2";

/// `id-wardseal-kp-patientDataSigning`: the extended key usage of patient cards, which
/// sign the Merkle roots of their patient's readings.
pub const PATIENT_DATA_SIGNING_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap(PATIENT_DATA_SIGNING_OID_STRING);

/// `id-wardseal-kp-patientDataSigning` as components, the form rcgen takes.
pub const PATIENT_DATA_SIGNING_OID_COMPONENTS: &[u64] = &[
    1, 2, 840, 113556, 1, 8000, 2554, 1820, 48732, 25317, 17402, 36803, 3040821, 308419, 2,
];

/// The local code system (`id-wardseal 3`) that readings use for data types without a
/// standard LOINC or IEEE 11073 code (insulin dose, EEG, EMG), in dotted form.
pub const LOCAL_CODE_SYSTEM_OID: &str =
    "1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419.3";

/// The only version of the extension this code reads and writes (`v1`).
pub const IDENTITY_VERSION: u32 = 1;

/// Longest subject id, in bytes (= characters: subject ids are ASCII).
pub const MAX_SUBJECT_ID_LENGTH: usize = 64;

/// Length of an Ethereum address in bytes.
pub const ETHEREUM_ADDRESS_BYTES: usize = 20;

// DER identifier octets used by the extension.
const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_ENUMERATED: u8 = 0x0A;
/// Context-specific, primitive, tag number 0; fields [0] to [5] follow.
const TAG_CONTEXT_PRIMITIVE: u8 = 0x80;
/// The constructed bit: a constructed [n] is a BER-only way to split a string.
const TAG_CONSTRUCTED: u8 = 0x20;

/// What a wardseal certificate holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A medical IoT device (identified by its SGTIN-96 EPC).
    Device,
    /// A ward's collector, which accepts readings from devices.
    Collector,
    /// The application-layer storage server.
    Storage,
    /// A clinician or other staff member.
    Staff,
    /// A patient; the patient's smart card signs the patient's readings.
    Patient,
    /// An administrator of the CA or of the rules on chain.
    Admin,
    /// An outside organisation (laboratory, insurer, pharmacy, other hospital) that reads a
    /// patient's records with the patient's on-chain consent and records visits.
    Authority,
}

impl Role {
    /// Every role, in the order of their ASN.1 values.
    pub const ALL: [Self; 7] = [
        Self::Device,
        Self::Collector,
        Self::Storage,
        Self::Staff,
        Self::Patient,
        Self::Admin,
        Self::Authority,
    ];

    /// The lowercase name used in text, JSON and the ASN.1 module.
    pub fn name(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Collector => "collector",
            Self::Storage => "storage",
            Self::Staff => "staff",
            Self::Patient => "patient",
            Self::Admin => "admin",
            Self::Authority => "authority",
        }
    }

    /// Whether this role must, may or must not have `field` (see the table in the module
    /// docs). `version` and `role` are always required.
    pub fn field_presence(self, field: IdentityField) -> Presence {
        use IdentityField as F;
        use Presence::{Forbidden, Optional, Required};
        match (self, field) {
            (_, F::WardsealIdentity | F::Version | F::Role) => Required,
            (Self::Authority, F::SubjectId | F::AuthorityKind) => Required,
            (Self::Authority, F::DeviceId | F::GroupId | F::RuleId | F::EthereumAddress) => {
                Forbidden
            }
            (_, F::AuthorityKind) => Forbidden,
            (Self::Device, F::DeviceId | F::GroupId | F::RuleId) => Required,
            (Self::Device, F::SubjectId | F::EthereumAddress) => Forbidden,
            (Self::Collector, F::SubjectId) => Required,
            (Self::Collector, F::GroupId | F::RuleId | F::EthereumAddress) => Optional,
            (Self::Collector, F::DeviceId) => Forbidden,
            (Self::Storage | Self::Admin, F::SubjectId | F::EthereumAddress) => Optional,
            (Self::Storage | Self::Admin, F::DeviceId | F::GroupId | F::RuleId) => Forbidden,
            (Self::Staff | Self::Patient, F::SubjectId) => Required,
            (
                Self::Staff | Self::Patient,
                F::DeviceId | F::GroupId | F::RuleId | F::EthereumAddress,
            ) => Forbidden,
        }
    }

    fn asn1_value(self) -> u8 {
        match self {
            Self::Device => 0,
            Self::Collector => 1,
            Self::Storage => 2,
            Self::Staff => 3,
            Self::Patient => 4,
            Self::Admin => 5,
            Self::Authority => 6,
        }
    }

    fn from_asn1_value(value: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|role| u32::from(role.asn1_value()) == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = ExtensionError;

    /// Reads a lowercase role name (`device`, `collector`, `storage`, `staff`, `patient`,
    /// `admin`, `authority`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| ExtensionError::UnknownRoleName {
                name: text.to_owned(),
            })
    }
}

/// What kind of organisation an authority is: the `authorityKind` of its certificate and
/// the kind the on-chain authority registry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthorityKind {
    /// A medical laboratory.
    Laboratory,
    /// A health insurer.
    Insurer,
    /// A pharmacy.
    Pharmacy,
    /// Another hospital.
    Hospital,
}

impl AuthorityKind {
    /// Every kind, in the order of their ASN.1 values (also the registry's numbers).
    pub const ALL: [Self; 4] = [
        Self::Laboratory,
        Self::Insurer,
        Self::Pharmacy,
        Self::Hospital,
    ];

    /// The lowercase name used in text, JSON and the ASN.1 module.
    pub fn name(self) -> &'static str {
        match self {
            Self::Laboratory => "laboratory",
            Self::Insurer => "insurer",
            Self::Pharmacy => "pharmacy",
            Self::Hospital => "hospital",
        }
    }

    /// The ASN.1 ENUMERATED value, which is also the authority registry's `kind`.
    pub fn code(self) -> u8 {
        match self {
            Self::Laboratory => 0,
            Self::Insurer => 1,
            Self::Pharmacy => 2,
            Self::Hospital => 3,
        }
    }

    /// The kind with ASN.1 value (registry number) `code`, if any.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| u32::from(kind.code()) == code)
    }
}

impl fmt::Display for AuthorityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AuthorityKind {
    type Err = ExtensionError;

    /// Reads `laboratory`, `insurer`, `pharmacy` or `hospital`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| ExtensionError::UnknownAuthorityKindName {
                name: text.to_owned(),
            })
    }
}

/// Whether a role must, may or must not carry a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    /// The field must be present.
    Required,
    /// The field may be present.
    Optional,
    /// The field must be absent.
    Forbidden,
}

/// A component of the `WardsealIdentity` SEQUENCE, named as in the ASN.1 module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityField {
    /// The SEQUENCE itself.
    WardsealIdentity,
    /// `version`.
    Version,
    /// `role`.
    Role,
    /// `deviceId`, tagged `[0]`.
    DeviceId,
    /// `groupId`, tagged `[1]`.
    GroupId,
    /// `ruleId`, tagged `[2]`.
    RuleId,
    /// `subjectId`, tagged `[3]`.
    SubjectId,
    /// `ethereumAddress`, tagged `[4]`.
    EthereumAddress,
    /// `authorityKind`, tagged `[5]`.
    AuthorityKind,
}

impl IdentityField {
    /// The optional fields in tag order: index = context-specific tag number.
    const OPTIONAL: [Self; 6] = [
        Self::DeviceId,
        Self::GroupId,
        Self::RuleId,
        Self::SubjectId,
        Self::EthereumAddress,
        Self::AuthorityKind,
    ];

    /// The name used in the ASN.1 module.
    pub fn name(self) -> &'static str {
        match self {
            Self::WardsealIdentity => "WardsealIdentity",
            Self::Version => "version",
            Self::Role => "role",
            Self::DeviceId => "deviceId",
            Self::GroupId => "groupId",
            Self::RuleId => "ruleId",
            Self::SubjectId => "subjectId",
            Self::EthereumAddress => "ethereumAddress",
            Self::AuthorityKind => "authorityKind",
        }
    }
}

impl fmt::Display for IdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an identity extension, or one of its values written as text, is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The input ends before the field it announces.
    #[error("identity extension is truncated: {field} runs past the end of the input")]
    Truncated {
        /// The field being read.
        field: IdentityField,
    },
    /// A field has another tag than the ASN.1 module gives it.
    #[error("identity extension {field}: expected {expected}, found tag 0x{found:02X}")]
    UnexpectedTag {
        /// The field being read.
        field: IdentityField,
        /// What the module allows at this point.
        expected: &'static str,
        /// The identifier octet found.
        found: u8,
    },
    /// A length uses the BER indefinite form, which DER forbids.
    #[error(
        "identity extension {field} has an indefinite length (BER); DER needs a definite length"
    )]
    IndefiniteLength {
        /// The field being read.
        field: IdentityField,
    },
    /// A length is written with more octets than needed, which DER forbids.
    #[error("identity extension {field} has a length encoded in more octets than DER allows")]
    NonCanonicalLength {
        /// The field being read.
        field: IdentityField,
    },
    /// A length is too large to be represented.
    #[error("identity extension {field} has a length of 256 MiB or more")]
    LengthTooLarge {
        /// The field being read.
        field: IdentityField,
    },
    /// Bytes follow the `WardsealIdentity` SEQUENCE.
    #[error(
        "identity extension has {count} bytes after the WardsealIdentity SEQUENCE; it must end there"
    )]
    TrailingBytes {
        /// How many bytes follow.
        count: usize,
    },
    /// An optional field appears after one that the module places after it.
    #[error(
        "identity extension {field} appears after {after}; fields must be in the order of the ASN.1 module"
    )]
    FieldOutOfOrder {
        /// The field out of place.
        field: IdentityField,
        /// The field it follows.
        after: IdentityField,
    },
    /// An optional field appears twice.
    #[error("identity extension has {field} twice")]
    DuplicateField {
        /// The repeated field.
        field: IdentityField,
    },
    /// The version is not v1.
    #[error("identity extension version {version} is not supported; this software reads version 1")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The role value is not one of those in the ASN.1 module.
    #[error("identity extension role {value} is unknown; roles are 0 (device) to 6 (authority)")]
    UnknownRole {
        /// The ENUMERATED value found.
        value: u32,
    },
    /// An INTEGER or ENUMERATED has no content octets.
    #[error("identity extension {field} is an empty INTEGER; DER needs at least one octet")]
    EmptyInteger {
        /// The field at fault.
        field: IdentityField,
    },
    /// An INTEGER or ENUMERATED starts with a redundant 0x00 or 0xFF octet.
    #[error(
        "identity extension {field} is an INTEGER with redundant leading octets; DER needs the minimal encoding"
    )]
    NonMinimalInteger {
        /// The field at fault.
        field: IdentityField,
    },
    /// An INTEGER or ENUMERATED is negative.
    #[error("identity extension {field} is negative; it must be from 0 to 4294967295")]
    NegativeInteger {
        /// The field at fault.
        field: IdentityField,
    },
    /// An INTEGER or ENUMERATED is larger than 4294967295.
    #[error("identity extension {field} is larger than 4294967295")]
    IntegerTooLarge {
        /// The field at fault.
        field: IdentityField,
    },
    /// `deviceId` is not 12 bytes long.
    #[error("identity extension deviceId has {length} bytes; an SGTIN-96 EPC has 12")]
    DeviceIdLength {
        /// Bytes found.
        length: usize,
    },
    /// `deviceId` holds 12 bytes that are not a valid SGTIN-96.
    #[error("identity extension deviceId is not a valid SGTIN-96 EPC: {0}")]
    InvalidDeviceId(EpcError),
    /// `ethereumAddress` is not 20 bytes long.
    #[error("identity extension ethereumAddress has {length} bytes; an Ethereum address has 20")]
    EthereumAddressLength {
        /// Bytes found.
        length: usize,
    },
    /// `subjectId` holds bytes that are not UTF-8.
    #[error("subject id is not valid UTF-8")]
    SubjectIdNotUtf8,
    /// A subject id is empty or longer than 64 characters.
    #[error("subject id has {length} characters; it needs 1 to 64")]
    SubjectIdLength {
        /// Characters found.
        length: usize,
    },
    /// A subject id holds a character other than printable ASCII without space.
    #[error(
        "subject id has {character:?} at position {position}; use printable ASCII without spaces, e.g. P-000123 or ward-3A"
    )]
    SubjectIdCharacter {
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
    /// The role requires a field that is absent.
    #[error("a {role} identity needs {field}")]
    FieldMissing {
        /// The role.
        role: Role,
        /// The missing field.
        field: IdentityField,
    },
    /// The role forbids a field that is present.
    #[error("a {role} identity must not have {field}")]
    FieldNotAllowed {
        /// The role.
        role: Role,
        /// The field present.
        field: IdentityField,
    },
    /// A role name is not one of the seven roles.
    #[error(
        "role {name:?} is unknown; roles are device, collector, storage, staff, patient, admin and authority"
    )]
    UnknownRoleName {
        /// The name given.
        name: String,
    },
    /// The `authorityKind` value is not one of those in the ASN.1 module.
    #[error(
        "identity extension authorityKind {value} is unknown; kinds are 0 (laboratory) to 3 (hospital)"
    )]
    UnknownAuthorityKind {
        /// The ENUMERATED value found.
        value: u32,
    },
    /// An authority kind written as text is not one of the four kinds.
    #[error(
        "authority kind {name:?} is unknown; kinds are laboratory, insurer, pharmacy and hospital"
    )]
    UnknownAuthorityKindName {
        /// The name given.
        name: String,
    },
    /// A group or rule id written as text is not a number from 0 to 4294967295.
    #[error("{field} must be a decimal number from 0 to 4294967295")]
    InvalidNumber {
        /// The field being read.
        field: IdentityField,
    },
    /// An Ethereum address written as text does not start with `0x`.
    #[error("an Ethereum address starts with 0x")]
    EthereumAddressPrefix,
    /// An Ethereum address written as text does not have 40 hexadecimal digits after `0x`.
    #[error("an Ethereum address has 40 hexadecimal digits after 0x, got {digits} characters")]
    EthereumAddressDigits {
        /// Characters found after `0x`.
        digits: usize,
    },
    /// An Ethereum address written as text holds a character that is not a hex digit.
    #[error("an Ethereum address has the hexadecimal digits 0-9 and a-f (or A-F) only")]
    EthereumAddressNotHex,
    /// A mixed-case Ethereum address does not match its EIP-55 checksum: it was mistyped.
    #[error(
        "Ethereum address {expected_checksum} was written with a mixed-case spelling that fails its EIP-55 checksum; check it for typos"
    )]
    EthereumAddressChecksum {
        /// The address with its correct EIP-55 capitalisation, to compare against.
        expected_checksum: String,
    },
}

/// The group a device or collector belongs to; rules are kept per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

/// The rule a device's readings are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleId(pub u32);

macro_rules! number_text {
    ($type:ident, $field:expr) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $type {
            type Err = ExtensionError;

            /// Reads a decimal number from 0 to 4294967295.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                // u32::from_str also takes a leading '+'; ids are written as plain digits.
                if !text.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(ExtensionError::InvalidNumber { field: $field });
                }
                text.parse()
                    .map(Self)
                    .map_err(|_| ExtensionError::InvalidNumber { field: $field })
            }
        }
    };
}

number_text!(GroupId, IdentityField::GroupId);
number_text!(RuleId, IdentityField::RuleId);

/// A pseudonymous subject id: a patient (`P-000123`), staff member (`nurse-0042`) or ward
/// (`ward-3A`). Never a name or other patient data: ids reach logs and the chain.
///
/// 1 to 64 characters of printable ASCII without space (0x21 to 0x7E).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId(String);

impl SubjectId {
    /// Checks and wraps a subject id.
    pub fn new(id: impl Into<String>) -> Result<Self, ExtensionError> {
        let id = id.into();
        if let Some((position, character)) = id
            .chars()
            .enumerate()
            .find(|(_, character)| !matches!(character, '!'..='~'))
        {
            return Err(ExtensionError::SubjectIdCharacter {
                character,
                position,
            });
        }
        // All ASCII from here on: bytes are characters.
        if id.is_empty() || id.len() > MAX_SUBJECT_ID_LENGTH {
            return Err(ExtensionError::SubjectIdLength { length: id.len() });
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SubjectId {
    type Err = ExtensionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

impl AsRef<str> for SubjectId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for SubjectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SubjectId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

/// A 20-byte Ethereum account address.
///
/// Printed as `0x` and 40 lowercase hexadecimal digits. Parsing accepts all-lowercase and
/// all-uppercase digits as they are, and verifies the EIP-55 checksum of a mixed-case
/// spelling, so a mistyped checksummed address is refused rather than bound to a
/// certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EthereumAddress([u8; ETHEREUM_ADDRESS_BYTES]);

impl EthereumAddress {
    /// Wraps 20 raw bytes.
    pub const fn from_bytes(bytes: [u8; ETHEREUM_ADDRESS_BYTES]) -> Self {
        Self(bytes)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; ETHEREUM_ADDRESS_BYTES] {
        &self.0
    }

    /// The EIP-55 mixed-case checksum spelling, e.g.
    /// `0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed`.
    pub fn to_checksum_string(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = Keccak256::digest(lower.as_bytes());
        let mut text = String::with_capacity(2 + lower.len());
        text.push_str("0x");
        for (index, digit) in lower.chars().enumerate() {
            // Nibble `index` of the hash decides the case of hex digit `index`.
            let byte = hash.get(index / 2).copied().unwrap_or(0);
            let nibble = if index % 2 == 0 {
                byte >> 4
            } else {
                byte & 0x0F
            };
            text.push(if nibble >= 8 {
                digit.to_ascii_uppercase()
            } else {
                digit
            });
        }
        text
    }
}

impl From<[u8; ETHEREUM_ADDRESS_BYTES]> for EthereumAddress {
    fn from(bytes: [u8; ETHEREUM_ADDRESS_BYTES]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for EthereumAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for EthereumAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthereumAddress({self})")
    }
}

impl FromStr for EthereumAddress {
    type Err = ExtensionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text
            .strip_prefix("0x")
            .ok_or(ExtensionError::EthereumAddressPrefix)?;
        if digits.len() != 2 * ETHEREUM_ADDRESS_BYTES {
            return Err(ExtensionError::EthereumAddressDigits {
                digits: digits.chars().count(),
            });
        }
        let mut bytes = [0u8; ETHEREUM_ADDRESS_BYTES];
        hex::decode_to_slice(digits, &mut bytes)
            .map_err(|_| ExtensionError::EthereumAddressNotHex)?;
        let address = Self(bytes);
        let has_lower = digits.bytes().any(|byte| byte.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|byte| byte.is_ascii_uppercase());
        if has_lower && has_upper {
            let expected = address.to_checksum_string();
            if expected.get(2..) != Some(digits) {
                return Err(ExtensionError::EthereumAddressChecksum {
                    expected_checksum: expected,
                });
            }
        }
        Ok(address)
    }
}

impl Serialize for EthereumAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EthereumAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The optional fields of an identity, for [`Identity::new`]: a plain bag of values that
/// is checked against the role only when the identity is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityFields {
    /// `deviceId`: the device's EPC.
    pub device_id: Option<Sgtin96>,
    /// `groupId`.
    pub group_id: Option<GroupId>,
    /// `ruleId`.
    pub rule_id: Option<RuleId>,
    /// `subjectId`: patient, staff member or ward.
    pub subject_id: Option<SubjectId>,
    /// `ethereumAddress`: the on-chain account bound to the certificate.
    pub ethereum_address: Option<EthereumAddress>,
    /// `authorityKind`: what kind of organisation an authority is.
    pub authority_kind: Option<AuthorityKind>,
}

/// The content of a wardseal identity extension: a role and the fields it carries.
///
/// Every value satisfies the role table in the module docs: the per-role constructors
/// take exactly the fields the role allows, and [`Identity::new`] and
/// [`Identity::from_der`] check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    role: Role,
    fields: IdentityFields,
}

impl Identity {
    /// A device: its EPC, group and rule.
    pub fn device(device_id: Sgtin96, group_id: GroupId, rule_id: RuleId) -> Self {
        Self {
            role: Role::Device,
            fields: IdentityFields {
                device_id: Some(device_id),
                group_id: Some(group_id),
                rule_id: Some(rule_id),
                ..IdentityFields::default()
            },
        }
    }

    /// A ward's collector: the ward's subject id, and optionally the group and rule it
    /// serves and its Ethereum account.
    pub fn collector(
        ward: SubjectId,
        group_id: Option<GroupId>,
        rule_id: Option<RuleId>,
        ethereum_address: Option<EthereumAddress>,
    ) -> Self {
        Self {
            role: Role::Collector,
            fields: IdentityFields {
                subject_id: Some(ward),
                group_id,
                rule_id,
                ethereum_address,
                ..IdentityFields::default()
            },
        }
    }

    /// A storage server, optionally with a subject id and an Ethereum account.
    pub fn storage(
        subject_id: Option<SubjectId>,
        ethereum_address: Option<EthereumAddress>,
    ) -> Self {
        Self {
            role: Role::Storage,
            fields: IdentityFields {
                subject_id,
                ethereum_address,
                ..IdentityFields::default()
            },
        }
    }

    /// A staff member.
    pub fn staff(subject_id: SubjectId) -> Self {
        Self {
            role: Role::Staff,
            fields: IdentityFields {
                subject_id: Some(subject_id),
                ..IdentityFields::default()
            },
        }
    }

    /// A patient (the identity of the patient's card).
    pub fn patient(subject_id: SubjectId) -> Self {
        Self {
            role: Role::Patient,
            fields: IdentityFields {
                subject_id: Some(subject_id),
                ..IdentityFields::default()
            },
        }
    }

    /// An administrator, optionally with a subject id and an Ethereum account.
    pub fn admin(subject_id: Option<SubjectId>, ethereum_address: Option<EthereumAddress>) -> Self {
        Self {
            role: Role::Admin,
            fields: IdentityFields {
                subject_id,
                ethereum_address,
                ..IdentityFields::default()
            },
        }
    }

    /// An authority (laboratory, insurer, pharmacy, other hospital): the subject id of its
    /// certificate, which the on-chain registry binds to the organisation, and its kind.
    pub fn authority(subject_id: SubjectId, kind: AuthorityKind) -> Self {
        Self {
            role: Role::Authority,
            fields: IdentityFields {
                subject_id: Some(subject_id),
                authority_kind: Some(kind),
                ..IdentityFields::default()
            },
        }
    }

    /// Builds an identity for `role` from any combination of fields, refusing one that
    /// does not fit the role (useful where the role is only known at run time).
    pub fn new(role: Role, fields: IdentityFields) -> Result<Self, ExtensionError> {
        let present = [
            (IdentityField::DeviceId, fields.device_id.is_some()),
            (IdentityField::GroupId, fields.group_id.is_some()),
            (IdentityField::RuleId, fields.rule_id.is_some()),
            (IdentityField::SubjectId, fields.subject_id.is_some()),
            (
                IdentityField::EthereumAddress,
                fields.ethereum_address.is_some(),
            ),
            (
                IdentityField::AuthorityKind,
                fields.authority_kind.is_some(),
            ),
        ];
        for (field, is_present) in present {
            match (role.field_presence(field), is_present) {
                (Presence::Required, false) => {
                    return Err(ExtensionError::FieldMissing { role, field });
                }
                (Presence::Forbidden, true) => {
                    return Err(ExtensionError::FieldNotAllowed { role, field });
                }
                _ => {}
            }
        }
        Ok(Self { role, fields })
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The device's EPC (devices only).
    pub fn device_id(&self) -> Option<&Sgtin96> {
        self.fields.device_id.as_ref()
    }

    /// The group id (devices; collectors optionally).
    pub fn group_id(&self) -> Option<GroupId> {
        self.fields.group_id
    }

    /// The rule id (devices; collectors optionally).
    pub fn rule_id(&self) -> Option<RuleId> {
        self.fields.rule_id
    }

    /// The subject id (staff, patients, collectors' wards; optional for storage, admin).
    pub fn subject_id(&self) -> Option<&SubjectId> {
        self.fields.subject_id.as_ref()
    }

    /// The Ethereum account (collectors, storage and admins, optionally).
    pub fn ethereum_address(&self) -> Option<EthereumAddress> {
        self.fields.ethereum_address
    }

    /// The kind of organisation (authorities only).
    pub fn authority_kind(&self) -> Option<AuthorityKind> {
        self.fields.authority_kind
    }

    /// All optional fields.
    pub fn fields(&self) -> &IdentityFields {
        &self.fields
    }

    /// The DER encoding of the `WardsealIdentity` SEQUENCE: the extension's value, to be
    /// wrapped in the certificate's extension OCTET STRING.
    pub fn to_der(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(128);
        push_tlv(&mut body, TAG_INTEGER, &unsigned_integer(IDENTITY_VERSION));
        push_tlv(&mut body, TAG_ENUMERATED, &[self.role.asn1_value()]);
        if let Some(epc) = &self.fields.device_id {
            push_tlv(
                &mut body,
                context_tag(IdentityField::DeviceId),
                &epc.to_bytes(),
            );
        }
        if let Some(GroupId(group)) = self.fields.group_id {
            push_tlv(
                &mut body,
                context_tag(IdentityField::GroupId),
                &unsigned_integer(group),
            );
        }
        if let Some(RuleId(rule)) = self.fields.rule_id {
            push_tlv(
                &mut body,
                context_tag(IdentityField::RuleId),
                &unsigned_integer(rule),
            );
        }
        if let Some(subject) = &self.fields.subject_id {
            push_tlv(
                &mut body,
                context_tag(IdentityField::SubjectId),
                subject.as_str().as_bytes(),
            );
        }
        if let Some(address) = &self.fields.ethereum_address {
            push_tlv(
                &mut body,
                context_tag(IdentityField::EthereumAddress),
                address.as_bytes(),
            );
        }
        if let Some(kind) = self.fields.authority_kind {
            push_tlv(
                &mut body,
                context_tag(IdentityField::AuthorityKind),
                &unsigned_integer(u32::from(kind.code())),
            );
        }
        let mut der = Vec::with_capacity(body.len() + 4);
        push_tlv(&mut der, TAG_SEQUENCE, &body);
        der
    }

    /// Decodes and checks the DER encoding of a `WardsealIdentity` (the extension's value,
    /// without the certificate's OCTET STRING wrapper).
    pub fn from_der(der: &[u8]) -> Result<Self, ExtensionError> {
        let mut outer = reader(der, IdentityField::WardsealIdentity)?;
        let body = read_tlv(
            &mut outer,
            IdentityField::WardsealIdentity,
            TAG_SEQUENCE,
            "a SEQUENCE (0x30)",
        )?;
        let trailing = usize::try_from(outer.remaining_len()).unwrap_or(usize::MAX);
        if trailing != 0 {
            return Err(ExtensionError::TrailingBytes { count: trailing });
        }

        let mut fields = reader(body, IdentityField::WardsealIdentity)?;
        let version = read_tlv(
            &mut fields,
            IdentityField::Version,
            TAG_INTEGER,
            "an INTEGER (0x02)",
        )?;
        let version = decode_unsigned(IdentityField::Version, version)?;
        if version != IDENTITY_VERSION {
            return Err(ExtensionError::UnsupportedVersion { version });
        }
        let role = read_tlv(
            &mut fields,
            IdentityField::Role,
            TAG_ENUMERATED,
            "an ENUMERATED (0x0A)",
        )?;
        let role = decode_unsigned(IdentityField::Role, role)?;
        let role =
            Role::from_asn1_value(role).ok_or(ExtensionError::UnknownRole { value: role })?;

        let mut decoded = IdentityFields::default();
        let mut previous: Option<usize> = None;
        while !fields.is_finished() {
            let tag = fields.peek_byte().unwrap_or(0);
            // Tag numbers [0]..[5] (the low five bits) map to the optional fields in order.
            let number = usize::from(tag & 0x1F);
            let Some(&field) = IdentityField::OPTIONAL
                .get(number)
                .filter(|_| tag & 0xC0 == TAG_CONTEXT_PRIMITIVE)
            else {
                return Err(ExtensionError::UnexpectedTag {
                    field: IdentityField::WardsealIdentity,
                    expected: "an optional field [0] to [5] (0x80 to 0x85) or the end of the SEQUENCE",
                    found: tag,
                });
            };
            if tag & TAG_CONSTRUCTED != 0 {
                return Err(ExtensionError::UnexpectedTag {
                    field,
                    expected: "a primitive context-specific tag (0x80 to 0x85); constructed strings are BER",
                    found: tag,
                });
            }
            match previous {
                Some(previous) if previous == number => {
                    return Err(ExtensionError::DuplicateField { field });
                }
                Some(previous) if previous > number => {
                    let after = IdentityField::OPTIONAL
                        .get(previous)
                        .copied()
                        .unwrap_or(IdentityField::WardsealIdentity);
                    return Err(ExtensionError::FieldOutOfOrder { field, after });
                }
                _ => previous = Some(number),
            }
            let content = read_tlv(&mut fields, field, tag, "")?;
            decode_optional_field(&mut decoded, field, content)?;
        }
        Self::new(role, decoded)
    }
}

fn decode_optional_field(
    decoded: &mut IdentityFields,
    field: IdentityField,
    content: &[u8],
) -> Result<(), ExtensionError> {
    match field {
        IdentityField::DeviceId => {
            let bytes: &[u8; SGTIN96_BYTES] =
                content
                    .try_into()
                    .map_err(|_| ExtensionError::DeviceIdLength {
                        length: content.len(),
                    })?;
            let epc = Sgtin96::from_bytes(bytes).map_err(ExtensionError::InvalidDeviceId)?;
            decoded.device_id = Some(epc);
        }
        IdentityField::GroupId => {
            decoded.group_id = Some(GroupId(decode_unsigned(field, content)?));
        }
        IdentityField::RuleId => {
            decoded.rule_id = Some(RuleId(decode_unsigned(field, content)?));
        }
        IdentityField::SubjectId => {
            let text =
                std::str::from_utf8(content).map_err(|_| ExtensionError::SubjectIdNotUtf8)?;
            decoded.subject_id = Some(SubjectId::new(text)?);
        }
        IdentityField::EthereumAddress => {
            let bytes: [u8; ETHEREUM_ADDRESS_BYTES] =
                content
                    .try_into()
                    .map_err(|_| ExtensionError::EthereumAddressLength {
                        length: content.len(),
                    })?;
            decoded.ethereum_address = Some(EthereumAddress(bytes));
        }
        IdentityField::AuthorityKind => {
            let value = decode_unsigned(field, content)?;
            decoded.authority_kind = Some(
                AuthorityKind::from_code(value)
                    .ok_or(ExtensionError::UnknownAuthorityKind { value })?,
            );
        }
        // Only optional fields reach this function.
        IdentityField::WardsealIdentity | IdentityField::Version | IdentityField::Role => {}
    }
    Ok(())
}

fn reader(bytes: &[u8], field: IdentityField) -> Result<SliceReader<'_>, ExtensionError> {
    SliceReader::new(bytes).map_err(|_| ExtensionError::LengthTooLarge { field })
}

/// Reads one TLV whose identifier octet must be `tag`, and returns its content octets.
fn read_tlv<'a>(
    reader: &mut SliceReader<'a>,
    field: IdentityField,
    tag: u8,
    expected: &'static str,
) -> Result<&'a [u8], ExtensionError> {
    // Compare the raw identifier octet first: der's tag parser rejects some octets
    // outright, and the error must name the field and the octet found.
    match reader.peek_byte() {
        None => return Err(ExtensionError::Truncated { field }),
        Some(found) if found != tag => {
            return Err(ExtensionError::UnexpectedTag {
                field,
                expected,
                found,
            });
        }
        Some(_) => {}
    }
    let header = Header::decode(reader).map_err(|error| length_error(field, error.kind()))?;
    reader
        .read_slice(header.length)
        .map_err(|error| length_error(field, error.kind()))
}

fn length_error(field: IdentityField, kind: der::ErrorKind) -> ExtensionError {
    match kind {
        der::ErrorKind::IndefiniteLength => ExtensionError::IndefiniteLength { field },
        der::ErrorKind::Length { .. } | der::ErrorKind::Overlength => {
            ExtensionError::NonCanonicalLength { field }
        }
        der::ErrorKind::Overflow => ExtensionError::LengthTooLarge { field },
        // Incomplete, and anything a newer der may add: the bytes ran out.
        _ => ExtensionError::Truncated { field },
    }
}

/// Decodes the content octets of a DER INTEGER (or ENUMERATED) that must lie in 0..=u32::MAX.
fn decode_unsigned(field: IdentityField, content: &[u8]) -> Result<u32, ExtensionError> {
    let (&first, rest) = content
        .split_first()
        .ok_or(ExtensionError::EmptyInteger { field })?;
    if first & 0x80 != 0 {
        return Err(ExtensionError::NegativeInteger { field });
    }
    let magnitude = if first == 0 {
        // A leading zero is only allowed to keep the next octet's high bit from reading as
        // a sign bit.
        if rest.first().is_some_and(|next| next & 0x80 == 0) {
            return Err(ExtensionError::NonMinimalInteger { field });
        }
        rest
    } else {
        content
    };
    if magnitude.len() > 4 {
        return Err(ExtensionError::IntegerTooLarge { field });
    }
    Ok(magnitude
        .iter()
        .fold(0u32, |value, &byte| (value << 8) | u32::from(byte)))
}

/// The minimal two's-complement content octets of a non-negative INTEGER.
fn unsigned_integer(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first_significant = bytes.iter().position(|&byte| byte != 0).unwrap_or(3);
    let mut content = Vec::with_capacity(5);
    if bytes
        .get(first_significant)
        .is_some_and(|byte| byte & 0x80 != 0)
    {
        content.push(0);
    }
    content.extend_from_slice(bytes.get(first_significant..).unwrap_or(&[0]));
    content
}

fn context_tag(field: IdentityField) -> u8 {
    let number = IdentityField::OPTIONAL
        .iter()
        .position(|&optional| optional == field)
        .unwrap_or(0);
    // At most 5: fits the low bits of the identifier octet.
    TAG_CONTEXT_PRIMITIVE | number as u8
}

/// Appends a TLV with a DER definite length (short form below 128, long form above).
fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let first_significant = bytes.iter().position(|&byte| byte != 0).unwrap_or(0);
        let significant = bytes.get(first_significant..).unwrap_or(&[]);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epc::tests::any_sgtin96;
    use proptest::prelude::*;

    fn from_hex(text: &str) -> Vec<u8> {
        hex::decode(text.replace(' ', "")).unwrap()
    }

    fn subject(text: &str) -> SubjectId {
        SubjectId::new(text).unwrap()
    }

    fn address(text: &str) -> EthereumAddress {
        text.parse().unwrap()
    }

    fn design_epc() -> Sgtin96 {
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
            .parse()
            .unwrap()
    }

    // EIP-55's own test addresses.
    const EIP55_VECTORS: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    /// One identity per role and its DER, written out by hand from the ASN.1 module and
    /// checked with `openssl asn1parse -inform DER -i`.
    fn role_vectors() -> Vec<(Identity, &'static str)> {
        vec![
            (
                Identity::device(design_epc(), GroupId(3), RuleId(128)),
                // SEQUENCE(27) version 1, role device(0),
                // [0] EPC 3074257BF7194E4000001A85, [1] 3, [2] 128 (0x00 keeps it positive)
                "30 1B 02 01 01 0A 01 00 80 0C 30 74 25 7B F7 19 4E 40 00 00 1A 85 \
                 81 01 03 82 02 00 80",
            ),
            (
                Identity::collector(
                    subject("ward-3A"),
                    Some(GroupId(2)),
                    None,
                    Some(address(EIP55_VECTORS[0])),
                ),
                // SEQUENCE(40) version 1, role collector(1), [1] 2, [3] "ward-3A", [4] address
                "30 28 02 01 01 0A 01 01 81 01 02 83 07 77 61 72 64 2D 33 41 \
                 84 14 5A AE B6 05 3F 3E 94 C9 B9 A0 9F 33 66 94 35 E7 EF 1B EA ED",
            ),
            (
                Identity::storage(None, Some(address(EIP55_VECTORS[1]))),
                // SEQUENCE(28) version 1, role storage(2), [4] address
                "30 1C 02 01 01 0A 01 02 \
                 84 14 FB 69 16 09 5C A1 DF 60 BB 79 CE 92 CE 3E A7 4C 37 C5 D3 59",
            ),
            (
                Identity::staff(subject("nurse-0042")),
                // SEQUENCE(18) version 1, role staff(3), [3] "nurse-0042"
                "30 12 02 01 01 0A 01 03 83 0A 6E 75 72 73 65 2D 30 30 34 32",
            ),
            (
                Identity::patient(subject("P-000123")),
                // SEQUENCE(16) version 1, role patient(4), [3] "P-000123"
                "30 10 02 01 01 0A 01 04 83 08 50 2D 30 30 30 31 32 33",
            ),
            (
                Identity::admin(Some(subject("it-ops")), Some(address(EIP55_VECTORS[2]))),
                // SEQUENCE(36) version 1, role admin(5), [3] "it-ops", [4] address
                "30 24 02 01 01 0A 01 05 83 06 69 74 2D 6F 70 73 \
                 84 14 DB F0 3B 40 7C 01 E7 CD 3C BE A9 95 09 D9 3F 8D DD C8 C6 FB",
            ),
            (
                Identity::authority(subject("lab-0007"), AuthorityKind::Laboratory),
                // SEQUENCE(19) version 1, role authority(6), [3] "lab-0007", [5] laboratory(0)
                "30 13 02 01 01 0A 01 06 83 08 6C 61 62 2D 30 30 30 37 85 01 00",
            ),
        ]
    }

    #[test]
    fn fixed_vectors_encode_and_decode_per_role() {
        let vectors = role_vectors();
        let roles: Vec<Role> = vectors
            .iter()
            .map(|(identity, _)| identity.role())
            .collect();
        assert_eq!(roles, Role::ALL);
        for (identity, hex) in vectors {
            let der = from_hex(hex);
            assert_eq!(identity.to_der(), der, "{}", identity.role());
            assert_eq!(Identity::from_der(&der).unwrap(), identity);
        }
    }

    #[test]
    fn device_vector_fields_read_back() {
        let der = from_hex(role_vectors()[0].1);
        let identity = Identity::from_der(&der).unwrap();
        assert_eq!(identity.role(), Role::Device);
        assert_eq!(identity.device_id(), Some(&design_epc()));
        assert_eq!(identity.group_id(), Some(GroupId(3)));
        assert_eq!(identity.rule_id(), Some(RuleId(128)));
        assert_eq!(identity.subject_id(), None);
        assert_eq!(identity.ethereum_address(), None);
    }

    #[test]
    fn integer_fields_use_minimal_encodings() {
        for (value, content) in [
            (0u32, "00"),
            (127, "7F"),
            (128, "00 80"),
            (255, "00 FF"),
            (256, "01 00"),
            (32_767, "7F FF"),
            (32_768, "00 80 00"),
            (u32::MAX, "00 FF FF FF FF"),
        ] {
            let content = from_hex(content);
            assert_eq!(unsigned_integer(value), content, "{value}");
            assert_eq!(
                decode_unsigned(IdentityField::GroupId, &content),
                Ok(value),
                "{value}"
            );
        }
    }

    #[test]
    fn long_form_lengths_follow_der() {
        let mut out = Vec::new();
        push_tlv(&mut out, 0x04, &[0; 200]);
        assert_eq!(out[..3], [0x04, 0x81, 200]);
        let mut out = Vec::new();
        push_tlv(&mut out, 0x04, &[0; 300]);
        assert_eq!(out[..4], [0x04, 0x82, 0x01, 0x2C]);
        assert_eq!(out.len(), 304);
    }

    #[test]
    fn oids_agree_in_every_form() {
        assert_eq!(IDENTITY_EXTENSION_OID_STRING, format!("{WARDSEAL_ARC}.1"));
        assert_eq!(PATIENT_DATA_SIGNING_OID_STRING, format!("{WARDSEAL_ARC}.2"));
        assert_eq!(LOCAL_CODE_SYSTEM_OID, format!("{WARDSEAL_ARC}.3"));
        for (oid, text, components) in [
            (
                IDENTITY_EXTENSION_OID,
                IDENTITY_EXTENSION_OID_STRING,
                IDENTITY_EXTENSION_OID_COMPONENTS,
            ),
            (
                PATIENT_DATA_SIGNING_OID,
                PATIENT_DATA_SIGNING_OID_STRING,
                PATIENT_DATA_SIGNING_OID_COMPONENTS,
            ),
        ] {
            assert_eq!(oid.to_string(), text);
            assert_eq!(ObjectIdentifier::new(text).unwrap(), oid);
            let arcs: Vec<u64> = oid.arcs().map(u64::from).collect();
            assert_eq!(arcs, components);
            let dotted: Vec<String> = components.iter().map(u64::to_string).collect();
            assert_eq!(dotted.join("."), text);
        }
    }

    #[test]
    fn roles_print_and_parse_lowercase() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.name())
            );
        }
        assert_eq!(Role::Collector.to_string(), "collector");
        assert_eq!(
            "Device".parse::<Role>(),
            Err(ExtensionError::UnknownRoleName {
                name: "Device".into()
            })
        );
        assert!(serde_json::from_str::<Role>("\"nurse\"").is_err());
    }

    #[test]
    fn group_and_rule_ids_parse_plain_decimal() {
        assert_eq!("0".parse::<GroupId>(), Ok(GroupId(0)));
        assert_eq!("4294967295".parse::<RuleId>(), Ok(RuleId(u32::MAX)));
        assert_eq!(GroupId(42).to_string(), "42");
        assert_eq!(serde_json::to_string(&RuleId(7)).unwrap(), "7");
        for bad in ["", "+1", "-1", "4294967296", "1 ", "0x10"] {
            assert_eq!(
                bad.parse::<GroupId>(),
                Err(ExtensionError::InvalidNumber {
                    field: IdentityField::GroupId
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn subject_ids_are_printable_ascii_without_spaces() {
        for good in ["P-000123", "ward-3A", "nurse-0042", "!", "~"] {
            assert_eq!(subject(good).as_str(), good);
        }
        let longest = "x".repeat(64);
        assert_eq!(subject(&longest).as_str(), longest);
        assert_eq!(
            SubjectId::new("x".repeat(65)),
            Err(ExtensionError::SubjectIdLength { length: 65 })
        );
        assert_eq!(
            SubjectId::new(""),
            Err(ExtensionError::SubjectIdLength { length: 0 })
        );
        assert_eq!(
            SubjectId::new("P 000123"),
            Err(ExtensionError::SubjectIdCharacter {
                character: ' ',
                position: 1
            })
        );
        assert_eq!(
            SubjectId::new("Pé"),
            Err(ExtensionError::SubjectIdCharacter {
                character: 'é',
                position: 1
            })
        );
        assert_eq!(
            SubjectId::new("P\n"),
            Err(ExtensionError::SubjectIdCharacter {
                character: '\n',
                position: 1
            })
        );
        let json = serde_json::to_string(&subject("P-000123")).unwrap();
        assert_eq!(json, "\"P-000123\"");
        assert_eq!(
            serde_json::from_str::<SubjectId>(&json).unwrap(),
            subject("P-000123")
        );
        assert!(serde_json::from_str::<SubjectId>("\"a b\"").is_err());
    }

    #[test]
    fn ethereum_addresses_check_eip55() {
        for checksummed in EIP55_VECTORS {
            let parsed = address(checksummed);
            assert_eq!(parsed.to_checksum_string(), checksummed);
            assert_eq!(parsed.to_string(), checksummed.to_lowercase());
            // Single-case spellings carry no checksum and are accepted as they are.
            assert_eq!(address(&checksummed.to_lowercase()), parsed);
            assert_eq!(
                address(&format!("0x{}", checksummed[2..].to_uppercase())),
                parsed
            );
        }
        // One letter's case flipped: a typo the checksum catches.
        let typo = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert_eq!(
            typo.parse::<EthereumAddress>(),
            Err(ExtensionError::EthereumAddressChecksum {
                expected_checksum: EIP55_VECTORS[0].into()
            })
        );
        assert_eq!(
            "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".parse::<EthereumAddress>(),
            Err(ExtensionError::EthereumAddressPrefix)
        );
        assert_eq!(
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea".parse::<EthereumAddress>(),
            Err(ExtensionError::EthereumAddressDigits { digits: 38 })
        );
        assert_eq!(
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beagd".parse::<EthereumAddress>(),
            Err(ExtensionError::EthereumAddressNotHex)
        );
        let parsed = address(EIP55_VECTORS[0]);
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, "\"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed\"");
        assert_eq!(
            serde_json::from_str::<EthereumAddress>(&json).unwrap(),
            parsed
        );
    }

    #[test]
    fn role_table_matches_the_design() {
        use IdentityField as F;
        use Presence::{Forbidden as X, Optional as O, Required as R};
        let fields = [
            F::DeviceId,
            F::GroupId,
            F::RuleId,
            F::SubjectId,
            F::EthereumAddress,
        ];
        let table = [
            (Role::Device, [R, R, R, X, X]),
            (Role::Collector, [X, O, O, R, O]),
            (Role::Storage, [X, X, X, O, O]),
            (Role::Staff, [X, X, X, R, X]),
            (Role::Patient, [X, X, X, R, X]),
            (Role::Admin, [X, X, X, O, O]),
        ];
        for (role, row) in table {
            for (field, presence) in fields.into_iter().zip(row) {
                assert_eq!(role.field_presence(field), presence, "{role} {field}");
            }
        }
    }

    #[test]
    fn new_refuses_fields_that_do_not_fit_the_role() {
        assert_eq!(
            Identity::new(
                Role::Device,
                IdentityFields {
                    device_id: Some(design_epc()),
                    group_id: Some(GroupId(1)),
                    ..IdentityFields::default()
                }
            ),
            Err(ExtensionError::FieldMissing {
                role: Role::Device,
                field: IdentityField::RuleId
            })
        );
        assert_eq!(
            Identity::new(
                Role::Patient,
                IdentityFields {
                    subject_id: Some(subject("P-1")),
                    ethereum_address: Some(address(EIP55_VECTORS[3])),
                    ..IdentityFields::default()
                }
            ),
            Err(ExtensionError::FieldNotAllowed {
                role: Role::Patient,
                field: IdentityField::EthereumAddress
            })
        );
        let error = Identity::new(Role::Staff, IdentityFields::default()).unwrap_err();
        assert_eq!(error.to_string(), "a staff identity needs subjectId");
    }

    /// Decodes `hex` and expects `error`.
    fn rejects(hex: &str, error: ExtensionError) {
        assert_eq!(Identity::from_der(&from_hex(hex)), Err(error), "{hex}");
    }

    const STAFF: &str = "30 12 02 01 01 0A 01 03 83 0A 6E 75 72 73 65 2D 30 30 34 32";

    #[test]
    fn rejects_a_value_that_is_not_a_sequence() {
        // SET instead of SEQUENCE.
        rejects(
            "31 12 02 01 01 0A 01 03 83 0A 6E 75 72 73 65 2D 30 30 34 32",
            ExtensionError::UnexpectedTag {
                field: IdentityField::WardsealIdentity,
                expected: "a SEQUENCE (0x30)",
                found: 0x31,
            },
        );
        // An OCTET STRING wrapper (the certificate's, passed by mistake).
        rejects(
            "04 14 30 12 02 01 01 0A 01 03 83 0A 6E 75 72 73 65 2D 30 30 34 32",
            ExtensionError::UnexpectedTag {
                field: IdentityField::WardsealIdentity,
                expected: "a SEQUENCE (0x30)",
                found: 0x04,
            },
        );
    }

    #[test]
    fn rejects_wrong_tags_naming_the_field() {
        // Role before version.
        rejects(
            "30 06 0A 01 03 02 01 01",
            ExtensionError::UnexpectedTag {
                field: IdentityField::Version,
                expected: "an INTEGER (0x02)",
                found: 0x0A,
            },
        );
        // Role as INTEGER instead of ENUMERATED.
        rejects(
            "30 06 02 01 01 02 01 03",
            ExtensionError::UnexpectedTag {
                field: IdentityField::Role,
                expected: "an ENUMERATED (0x0A)",
                found: 0x02,
            },
        );
        // subjectId as a universal UTF8String instead of [3].
        let error = Identity::from_der(&from_hex("30 09 02 01 01 0A 01 03 0C 01 41")).unwrap_err();
        assert!(matches!(
            error,
            ExtensionError::UnexpectedTag {
                field: IdentityField::WardsealIdentity,
                found: 0x0C,
                ..
            }
        ));
        // [6] does not exist; nor does the high-tag-number form.
        for tag in ["86", "9F", "C3", "43"] {
            let error =
                Identity::from_der(&from_hex(&format!("30 09 02 01 01 0A 01 03 {tag} 01 41")))
                    .unwrap_err();
            assert!(
                matches!(
                    error,
                    ExtensionError::UnexpectedTag {
                        field: IdentityField::WardsealIdentity,
                        ..
                    }
                ),
                "{tag}: {error}"
            );
        }
        // A constructed [3] (BER's segmented string).
        let error =
            Identity::from_der(&from_hex("30 0B 02 01 01 0A 01 03 A3 03 0C 01 41")).unwrap_err();
        assert!(matches!(
            error,
            ExtensionError::UnexpectedTag {
                field: IdentityField::SubjectId,
                found: 0xA3,
                ..
            }
        ));
    }

    #[test]
    fn rejects_trailing_bytes() {
        rejects(
            &format!("{STAFF} 00"),
            ExtensionError::TrailingBytes { count: 1 },
        );
        rejects(
            &format!("{STAFF} {STAFF}"),
            ExtensionError::TrailingBytes { count: 20 },
        );
    }

    #[test]
    fn rejects_fields_out_of_order_or_twice() {
        // [4] then [3].
        rejects(
            "30 24 02 01 01 0A 01 05 \
             84 14 DB F0 3B 40 7C 01 E7 CD 3C BE A9 95 09 D9 3F 8D DD C8 C6 FB \
             83 06 69 74 2D 6F 70 73",
            ExtensionError::FieldOutOfOrder {
                field: IdentityField::SubjectId,
                after: IdentityField::EthereumAddress,
            },
        );
        // [3] twice.
        rejects(
            "30 0C 02 01 01 0A 01 05 83 01 41 83 01 42",
            ExtensionError::DuplicateField {
                field: IdentityField::SubjectId,
            },
        );
    }

    #[test]
    fn rejects_other_versions() {
        for (version, hex) in [(0, "00"), (2, "02")] {
            rejects(
                &format!("30 09 02 01 {hex} 0A 01 03 83 01 41"),
                ExtensionError::UnsupportedVersion { version },
            );
        }
        rejects(
            "30 09 02 01 FF 0A 01 03 83 01 41",
            ExtensionError::NegativeInteger {
                field: IdentityField::Version,
            },
        );
    }

    #[test]
    fn rejects_unknown_roles() {
        rejects(
            "30 09 02 01 01 0A 01 07 83 01 41",
            ExtensionError::UnknownRole { value: 7 },
        );
        rejects(
            "30 09 02 01 01 0A 01 80 83 01 41",
            ExtensionError::NegativeInteger {
                field: IdentityField::Role,
            },
        );
        rejects(
            "30 0A 02 01 01 0A 02 00 03 83 01 41",
            ExtensionError::NonMinimalInteger {
                field: IdentityField::Role,
            },
        );
    }

    /// A collector for ward "A" whose groupId content is `content`.
    fn collector_with_group(content: &str) -> String {
        let content = from_hex(content);
        format!(
            "30 {:02X} 02 01 01 0A 01 01 81 {:02X} {} 83 01 41",
            11 + content.len(),
            content.len(),
            hex::encode(&content)
        )
    }

    #[test]
    fn rejects_integers_out_of_range_or_not_minimal() {
        let group = IdentityField::GroupId;
        assert_eq!(
            Identity::from_der(&from_hex(&collector_with_group("00 FF FF FF FF")))
                .unwrap()
                .group_id(),
            Some(GroupId(u32::MAX))
        );
        rejects(
            &collector_with_group("01 00 00 00 00"),
            ExtensionError::IntegerTooLarge { field: group },
        );
        rejects(
            &collector_with_group("00 80 00 00 00 00"),
            ExtensionError::IntegerTooLarge { field: group },
        );
        rejects(
            &collector_with_group("FF"),
            ExtensionError::NegativeInteger { field: group },
        );
        rejects(
            &collector_with_group("80 00"),
            ExtensionError::NegativeInteger { field: group },
        );
        rejects(
            &collector_with_group("00 01"),
            ExtensionError::NonMinimalInteger { field: group },
        );
        rejects(
            &collector_with_group("00 00"),
            ExtensionError::NonMinimalInteger { field: group },
        );
        rejects(
            &collector_with_group(""),
            ExtensionError::EmptyInteger { field: group },
        );
        // ruleId goes through the same checks.
        rejects(
            "30 0D 02 01 01 0A 01 01 82 02 00 05 83 01 41",
            ExtensionError::NonMinimalInteger {
                field: IdentityField::RuleId,
            },
        );
    }

    #[test]
    fn rejects_bad_device_ids() {
        // 11 bytes.
        rejects(
            "30 1A 02 01 01 0A 01 00 80 0B 30 74 25 7B F7 19 4E 40 00 00 1A 81 01 03 82 02 00 80",
            ExtensionError::DeviceIdLength { length: 11 },
        );
        // 12 bytes but an SGTIN-198 header.
        rejects(
            "30 1B 02 01 01 0A 01 00 80 0C 36 74 25 7B F7 19 4E 40 00 00 1A 85 \
             81 01 03 82 02 00 80",
            ExtensionError::InvalidDeviceId(EpcError::Header { found: 0x36 }),
        );
        // 12 bytes, partition 7.
        rejects(
            "30 1B 02 01 01 0A 01 00 80 0C 30 7C 25 7B F7 19 4E 40 00 00 1A 85 \
             81 01 03 82 02 00 80",
            ExtensionError::InvalidDeviceId(EpcError::InvalidPartition { partition: 7 }),
        );
    }

    #[test]
    fn rejects_bad_ethereum_addresses() {
        rejects(
            "30 1B 02 01 01 0A 01 02 \
             84 13 FB 69 16 09 5C A1 DF 60 BB 79 CE 92 CE 3E A7 4C 37 C5 D3",
            ExtensionError::EthereumAddressLength { length: 19 },
        );
        rejects(
            "30 08 02 01 01 0A 01 02 84 00",
            ExtensionError::EthereumAddressLength { length: 0 },
        );
    }

    #[test]
    fn rejects_bad_subject_ids() {
        rejects(
            "30 08 02 01 01 0A 01 03 83 00",
            ExtensionError::SubjectIdLength { length: 0 },
        );
        rejects(
            "30 0A 02 01 01 0A 01 04 83 02 41 20",
            ExtensionError::SubjectIdCharacter {
                character: ' ',
                position: 1,
            },
        );
        rejects(
            "30 0A 02 01 01 0A 01 04 83 02 41 FF",
            ExtensionError::SubjectIdNotUtf8,
        );
        let long = format!("30 49 02 01 01 0A 01 04 83 41 {}", hex::encode([b'x'; 65]));
        rejects(&long, ExtensionError::SubjectIdLength { length: 65 });
    }

    #[test]
    fn rejects_fields_that_do_not_fit_the_role() {
        // A device without ruleId.
        rejects(
            "30 17 02 01 01 0A 01 00 80 0C 30 74 25 7B F7 19 4E 40 00 00 1A 85 81 01 03",
            ExtensionError::FieldMissing {
                role: Role::Device,
                field: IdentityField::RuleId,
            },
        );
        // A patient with a groupId.
        rejects(
            "30 0C 02 01 01 0A 01 04 81 01 07 83 01 41",
            ExtensionError::FieldNotAllowed {
                role: Role::Patient,
                field: IdentityField::GroupId,
            },
        );
        // A collector without its ward.
        rejects(
            "30 09 02 01 01 0A 01 01 81 01 07",
            ExtensionError::FieldMissing {
                role: Role::Collector,
                field: IdentityField::SubjectId,
            },
        );
    }

    #[test]
    fn authority_kinds_are_checked() {
        // Every kind round-trips, by value and by name.
        for kind in AuthorityKind::ALL {
            let identity = Identity::authority(subject("org-1"), kind);
            let decoded = Identity::from_der(&identity.to_der()).unwrap();
            assert_eq!(decoded.authority_kind(), Some(kind));
            assert_eq!(kind.name().parse::<AuthorityKind>(), Ok(kind));
        }
        assert!(matches!(
            "clinic".parse::<AuthorityKind>(),
            Err(ExtensionError::UnknownAuthorityKindName { .. })
        ));
        // Kind 4 is not in the module.
        rejects(
            "30 0C 02 01 01 0A 01 06 83 01 41 85 01 04",
            ExtensionError::UnknownAuthorityKind { value: 4 },
        );
        // An authority without its kind, and without its subject.
        rejects(
            "30 09 02 01 01 0A 01 06 83 01 41",
            ExtensionError::FieldMissing {
                role: Role::Authority,
                field: IdentityField::AuthorityKind,
            },
        );
        rejects(
            "30 09 02 01 01 0A 01 06 85 01 02",
            ExtensionError::FieldMissing {
                role: Role::Authority,
                field: IdentityField::SubjectId,
            },
        );
        // A staff member may not claim a kind; an authority may not carry an account.
        rejects(
            "30 0C 02 01 01 0A 01 03 83 01 41 85 01 00",
            ExtensionError::FieldNotAllowed {
                role: Role::Staff,
                field: IdentityField::AuthorityKind,
            },
        );
        rejects(
            "30 22 02 01 01 0A 01 06 83 01 41 \
             84 14 FB 69 16 09 5C A1 DF 60 BB 79 CE 92 CE 3E A7 4C 37 C5 D3 59 85 01 00",
            ExtensionError::FieldNotAllowed {
                role: Role::Authority,
                field: IdentityField::EthereumAddress,
            },
        );
        // [5] before [4] is out of order; [6] does not exist.
        rejects(
            "30 1F 02 01 01 0A 01 02 85 01 00 \
             84 14 FB 69 16 09 5C A1 DF 60 BB 79 CE 92 CE 3E A7 4C 37 C5 D3 59",
            ExtensionError::FieldOutOfOrder {
                field: IdentityField::EthereumAddress,
                after: IdentityField::AuthorityKind,
            },
        );
        assert!(matches!(
            Identity::from_der(&from_hex("30 0C 02 01 01 0A 01 06 83 01 41 86 01 00")),
            Err(ExtensionError::UnexpectedTag { found: 0x86, .. })
        ));
    }

    #[test]
    fn rejects_truncated_input_at_every_length() {
        for (_, hex) in role_vectors() {
            let der = from_hex(hex);
            for cut in 0..der.len() {
                let error = Identity::from_der(&der[..cut]).unwrap_err();
                assert!(
                    matches!(error, ExtensionError::Truncated { .. }),
                    "cut at {cut}: {error}"
                );
            }
        }
        // A field whose length runs past the end of the SEQUENCE.
        rejects(
            "30 09 02 01 01 0A 01 03 83 05 41",
            ExtensionError::Truncated {
                field: IdentityField::SubjectId,
            },
        );
        rejects(
            "",
            ExtensionError::Truncated {
                field: IdentityField::WardsealIdentity,
            },
        );
    }

    #[test]
    fn rejects_ber_lengths() {
        rejects(
            "30 80 02 01 01 0A 01 03 83 01 41 00 00",
            ExtensionError::IndefiniteLength {
                field: IdentityField::WardsealIdentity,
            },
        );
        rejects(
            "30 81 09 02 01 01 0A 01 03 83 01 41",
            ExtensionError::NonCanonicalLength {
                field: IdentityField::WardsealIdentity,
            },
        );
        rejects(
            "30 0A 02 01 01 0A 01 03 83 81 01 41",
            ExtensionError::NonCanonicalLength {
                field: IdentityField::SubjectId,
            },
        );
        rejects(
            "30 85 00 00 00 00 09 02 01 01 0A 01 03 83 01 41",
            ExtensionError::NonCanonicalLength {
                field: IdentityField::WardsealIdentity,
            },
        );
        rejects(
            "30 84 FF FF FF FF 02 01 01",
            ExtensionError::LengthTooLarge {
                field: IdentityField::WardsealIdentity,
            },
        );
    }

    /// The DER that the `der` crate's derive produces from the same ASN.1 definition: an
    /// independent encoder to compare against.
    mod reference {
        use der::asn1::{OctetStringRef, Utf8StringRef};

        #[derive(der::Enumerated, Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub(super) enum Role {
            Device = 0,
            Collector = 1,
            Storage = 2,
            Staff = 3,
            Patient = 4,
            Admin = 5,
            Authority = 6,
        }

        #[derive(der::Enumerated, Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub(super) enum AuthorityKind {
            Laboratory = 0,
            Insurer = 1,
            Pharmacy = 2,
            Hospital = 3,
        }

        #[derive(der::Sequence)]
        pub(super) struct WardsealIdentity<'a> {
            pub(super) version: u32,
            pub(super) role: Role,
            #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
            pub(super) device_id: Option<OctetStringRef<'a>>,
            #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
            pub(super) group_id: Option<u32>,
            #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
            pub(super) rule_id: Option<u32>,
            #[asn1(context_specific = "3", tag_mode = "IMPLICIT", optional = "true")]
            pub(super) subject_id: Option<Utf8StringRef<'a>>,
            #[asn1(context_specific = "4", tag_mode = "IMPLICIT", optional = "true")]
            pub(super) ethereum_address: Option<OctetStringRef<'a>>,
            #[asn1(context_specific = "5", tag_mode = "IMPLICIT", optional = "true")]
            pub(super) authority_kind: Option<AuthorityKind>,
        }
    }

    fn reference_der(identity: &Identity) -> Vec<u8> {
        use der::Encode;
        use der::asn1::{OctetStringRef, Utf8StringRef};
        let epc = identity.device_id().map(Sgtin96::to_bytes);
        let address = identity.ethereum_address();
        let role = [
            reference::Role::Device,
            reference::Role::Collector,
            reference::Role::Storage,
            reference::Role::Staff,
            reference::Role::Patient,
            reference::Role::Admin,
            reference::Role::Authority,
        ][usize::from(identity.role().asn1_value())];
        let kind = identity.authority_kind().map(|kind| {
            [
                reference::AuthorityKind::Laboratory,
                reference::AuthorityKind::Insurer,
                reference::AuthorityKind::Pharmacy,
                reference::AuthorityKind::Hospital,
            ][usize::from(kind.code())]
        });
        reference::WardsealIdentity {
            version: 1,
            role,
            device_id: epc
                .as_ref()
                .map(|bytes| OctetStringRef::new(bytes).unwrap()),
            group_id: identity.group_id().map(|GroupId(id)| id),
            rule_id: identity.rule_id().map(|RuleId(id)| id),
            subject_id: identity
                .subject_id()
                .map(|id| Utf8StringRef::new(id.as_str()).unwrap()),
            ethereum_address: address
                .as_ref()
                .map(|address| OctetStringRef::new(address.as_bytes()).unwrap()),
            authority_kind: kind,
        }
        .to_der()
        .unwrap()
    }

    fn any_subject_id() -> impl Strategy<Value = SubjectId> {
        "[!-~]{1,64}".prop_map(|text| SubjectId::new(text).unwrap())
    }

    fn any_address() -> impl Strategy<Value = EthereumAddress> {
        any::<[u8; 20]>().prop_map(EthereumAddress::from_bytes)
    }

    fn any_fields() -> impl Strategy<Value = IdentityFields> {
        (
            proptest::option::of(any_sgtin96()),
            proptest::option::of(any::<u32>().prop_map(GroupId)),
            proptest::option::of(any::<u32>().prop_map(RuleId)),
            proptest::option::of(any_subject_id()),
            proptest::option::of(any_address()),
            proptest::option::of(proptest::sample::select(AuthorityKind::ALL.to_vec())),
        )
            .prop_map(
                |(device_id, group_id, rule_id, subject_id, ethereum_address, authority_kind)| {
                    IdentityFields {
                        device_id,
                        group_id,
                        rule_id,
                        subject_id,
                        ethereum_address,
                        authority_kind,
                    }
                },
            )
    }

    /// Every role, each built through its own constructor with random valid fields.
    fn any_identity() -> impl Strategy<Value = Identity> {
        let maybe_group = proptest::option::of(any::<u32>().prop_map(GroupId));
        let maybe_rule = proptest::option::of(any::<u32>().prop_map(RuleId));
        prop_oneof![
            (any_sgtin96(), any::<u32>(), any::<u32>()).prop_map(|(epc, group, rule)| {
                Identity::device(epc, GroupId(group), RuleId(rule))
            }),
            (
                any_subject_id(),
                maybe_group,
                maybe_rule,
                proptest::option::of(any_address())
            )
                .prop_map(|(ward, group, rule, address)| {
                    Identity::collector(ward, group, rule, address)
                }),
            (
                proptest::option::of(any_subject_id()),
                proptest::option::of(any_address())
            )
                .prop_map(|(id, address)| Identity::storage(id, address)),
            any_subject_id().prop_map(Identity::staff),
            any_subject_id().prop_map(Identity::patient),
            (
                proptest::option::of(any_subject_id()),
                proptest::option::of(any_address())
            )
                .prop_map(|(id, address)| Identity::admin(id, address)),
            (
                any_subject_id(),
                proptest::sample::select(AuthorityKind::ALL.to_vec())
            )
                .prop_map(|(id, kind)| Identity::authority(id, kind)),
        ]
    }

    proptest! {
        #[test]
        fn every_role_round_trips(identity in any_identity()) {
            let der = identity.to_der();
            prop_assert_eq!(Identity::from_der(&der).unwrap(), identity.clone());
            // The der crate's derive encodes the same ASN.1 to the same bytes.
            prop_assert_eq!(der, reference_der(&identity));
        }

        #[test]
        fn new_accepts_exactly_what_the_table_allows(
            role in proptest::sample::select(Role::ALL.to_vec()),
            fields in any_fields(),
        ) {
            let fits = [
                (IdentityField::DeviceId, fields.device_id.is_some()),
                (IdentityField::GroupId, fields.group_id.is_some()),
                (IdentityField::RuleId, fields.rule_id.is_some()),
                (IdentityField::SubjectId, fields.subject_id.is_some()),
                (IdentityField::EthereumAddress, fields.ethereum_address.is_some()),
                (IdentityField::AuthorityKind, fields.authority_kind.is_some()),
            ]
            .into_iter()
            .all(|(field, present)| match role.field_presence(field) {
                Presence::Required => present,
                Presence::Optional => true,
                Presence::Forbidden => !present,
            });
            let built = Identity::new(role, fields);
            prop_assert_eq!(built.is_ok(), fits);
            if let Ok(identity) = built {
                prop_assert_eq!(Identity::from_der(&identity.to_der()).unwrap(), identity);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(identity) = Identity::from_der(&bytes) {
                // DER has one encoding per value: whatever decodes re-encodes identically.
                prop_assert_eq!(identity.to_der(), bytes);
            }
        }

        #[test]
        fn mutated_encodings_decode_canonically_or_fail(
            identity in any_identity(),
            position in any::<proptest::sample::Index>(),
            value in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut der = identity.to_der();
            let index = position.index(der.len());
            der[index] = value;
            der.truncate(cut.index(der.len() + 1));
            if let Ok(decoded) = Identity::from_der(&der) {
                prop_assert_eq!(decoded.to_der(), der);
            }
        }
    }
}
