//! Certificate revocation lists: RFC 5280 v2 CRLs of the issuing CA.
//!
//! Each CRL has a CRL number one above the last (kept in the database, so numbers rise
//! across processes), `nextUpdate` the configured number of days ahead, an authority key
//! identifier, and — when the CA has a CRL URL — an issuing distribution point with that
//! URL and `onlyContainsUserCerts`, matching the CRL distribution point every certificate
//! carries (openssl and webpki check that they match). Entries carry the reason code
//! (omitted for `unspecified`, as RFC 5280 §5.3.1 asks) and the invalidity date.

use std::fmt;
use std::str::FromStr;

use pkcs8::der::pem::LineEnding;
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    KeyIdMethod, RevokedCertParams,
};
use time::OffsetDateTime;

use crate::error::{Cause, Error, InventoryError};
use crate::inventory::{Revocation, format_time};
use crate::serial::SerialNumber;
use crate::signer::CaKey;

/// Why a certificate was revoked (RFC 5280 §5.3.1 `CRLReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given (written as no reason code at all).
    #[default]
    Unspecified,
    /// The subject's private key was compromised.
    KeyCompromise,
    /// The CA's key was compromised.
    CaCompromise,
    /// The subject's name or other information changed.
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// No longer needed (device retired, staff left).
    CessationOfOperation,
    /// Temporarily on hold.
    CertificateHold,
    /// A privilege the certificate granted was withdrawn.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    const ALL: [Self; 8] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::PrivilegeWithdrawn,
    ];

    /// The kebab-case name used on the command line and in the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::CaCompromise => "ca-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::CertificateHold => "certificate-hold",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// The RFC 5280 code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
        }
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            Self::Unspecified => rcgen::RevocationReason::Unspecified,
            Self::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Self::CaCompromise => rcgen::RevocationReason::CaCompromise,
            Self::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            Self::Superseded => rcgen::RevocationReason::Superseded,
            Self::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            Self::CertificateHold => rcgen::RevocationReason::CertificateHold,
            Self::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }

    /// The reason for an RFC 5280 code, if it is one of ours.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = InventoryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let normalised = text.to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|reason| {
                reason.name() == normalised || reason.name().replace('-', "") == normalised
            })
            .ok_or_else(|| InventoryError::UnknownReason {
                name: text.to_owned(),
            })
    }
}

impl serde::Serialize for RevocationReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// A signed CRL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Crl {
    /// The CRL number.
    pub number: u64,
    /// When it was signed.
    #[serde(serialize_with = "time_text")]
    pub this_update: OffsetDateTime,
    /// When the next one is due (verifiers reject it after this).
    #[serde(serialize_with = "time_text")]
    pub next_update: OffsetDateTime,
    /// How many certificates it lists.
    pub entries: usize,
    /// The CRL (DER).
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// Its number, size and next update (`wardseal-pki crl` adds where it was written).
impl fmt::Display for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CRL number {} with {} entries, next update {}",
            self.number,
            self.entries,
            format_time(self.next_update)
        )
    }
}

impl Crl {
    /// PEM (`X509 CRL`).
    pub fn pem(&self) -> Result<String, Error> {
        pkcs8::der::pem::encode_string("X509 CRL", LineEnding::LF, &self.der).map_err(|error| {
            Error::encoding("encode the CRL as PEM", Cause::message(error.to_string()))
        })
    }
}

fn time_text<S: serde::Serializer>(
    time: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(*time))
}

/// Signs a CRL listing `revoked`.
pub(crate) fn sign(
    issuer: &rcgen::Issuer<'_, CaKey>,
    revoked: &[(SerialNumber, Revocation)],
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    url: Option<&str>,
    key_identifier: &[u8],
) -> Result<Crl, Error> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: rcgen::SerialNumber::from(number),
        issuing_distribution_point: url.map(|url| CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![url.to_owned()],
            },
            scope: Some(CrlScope::UserCertsOnly),
        }),
        revoked_certs: revoked
            .iter()
            .map(|(serial, revocation)| RevokedCertParams {
                serial_number: serial.to_rcgen(),
                revocation_time: revocation.revoked_at,
                reason_code: Some(revocation.reason.to_rcgen()),
                invalidity_date: revocation.invalidity_date,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(key_identifier.to_vec()),
    };
    let crl = params
        .signed_by(issuer)
        .map_err(|error| Error::encoding("sign the CRL", error))?;
    Ok(Crl {
        number,
        this_update,
        next_update,
        entries: revoked.len(),
        der: crl.der().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_name_and_code() {
        assert_eq!(
            "key-compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            "keyCompromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            RevocationReason::from_code(9),
            Some(RevocationReason::PrivilegeWithdrawn)
        );
        assert_eq!(RevocationReason::from_code(7), None);
        assert!("stolen".parse::<RevocationReason>().is_err());
    }
}
