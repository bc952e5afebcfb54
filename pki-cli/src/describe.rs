//! A certificate in words: what `show` prints, with the wardseal identity extension
//! decoded (role, EPC, group, rule, subject, Ethereum account, authority kind).

use std::fmt;

use wardseal_core::identity::{
    IDENTITY_EXTENSION_OID_STRING, Identity, PATIENT_DATA_SIGNING_OID_STRING,
};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::error::VerifyError;
use crate::inventory::format_time;
use crate::serial::SerialNumber;

/// The identity extension, field by field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdentityDescription {
    /// The role.
    pub role: String,
    /// The device EPC as a pure identity URI (`urn:epc:id:sgtin:…`).
    pub epc: Option<String>,
    /// The device EPC as a tag URI (with filter).
    pub epc_tag_uri: Option<String>,
    /// The device EPC's 12 bytes in hex.
    pub epc_hex: Option<String>,
    /// The group id.
    pub group_id: Option<u32>,
    /// The rule id.
    pub rule_id: Option<u32>,
    /// The subject id (staff, patient, ward).
    pub subject_id: Option<String>,
    /// The Ethereum account (EIP-55).
    pub ethereum_address: Option<String>,
    /// The kind of organisation (authorities).
    pub authority_kind: Option<String>,
}

impl IdentityDescription {
    /// Describes an identity.
    pub fn new(identity: &Identity) -> Self {
        Self {
            role: identity.role().to_string(),
            epc: identity.device_id().map(|epc| epc.pure_identity_uri()),
            epc_tag_uri: identity.device_id().map(|epc| epc.tag_uri()),
            epc_hex: identity.device_id().map(|epc| epc.to_hex()),
            group_id: identity.group_id().map(|id| id.0),
            rule_id: identity.rule_id().map(|id| id.0),
            subject_id: identity.subject_id().map(ToString::to_string),
            ethereum_address: identity.ethereum_address().map(|a| a.to_checksum_string()),
            authority_kind: identity.authority_kind().map(|kind| kind.to_string()),
        }
    }
}

impl fmt::Display for IdentityDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  role:             {}", self.role)?;
        if let (Some(uri), Some(tag), Some(hex)) = (&self.epc, &self.epc_tag_uri, &self.epc_hex) {
            writeln!(f, "  device EPC:       {uri}")?;
            writeln!(f, "                    {tag} (0x{hex})")?;
        }
        if let Some(group) = self.group_id {
            writeln!(f, "  group:            {group}")?;
        }
        if let Some(rule) = self.rule_id {
            writeln!(f, "  rule:             {rule}")?;
        }
        if let Some(subject) = &self.subject_id {
            writeln!(f, "  subject id:       {subject}")?;
        }
        if let Some(address) = &self.ethereum_address {
            writeln!(f, "  Ethereum account: {address}")?;
        }
        if let Some(kind) = &self.authority_kind {
            writeln!(f, "  authority kind:   {kind}")?;
        }
        Ok(())
    }
}

/// A certificate's fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateDescription {
    /// Serial number (hex).
    pub serial: SerialNumber,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Subject alternative names, as `DNS:…`, `IP:…`, `URI:…`, `email:…`.
    pub names: Vec<String>,
    /// Extended key usages in words.
    pub extended_key_usages: Vec<String>,
    /// CRL distribution point URLs.
    pub crl_distribution_points: Vec<String>,
    /// The wardseal identity, if the extension is present and valid.
    pub identity: Option<IdentityDescription>,
    /// Why the extension does not decode, if it does not.
    pub identity_error: Option<String>,
}

impl CertificateDescription {
    /// Reads a certificate (PEM or DER).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifyError> {
        let der = certificate_der(bytes)?;
        let (_, certificate) =
            X509Certificate::from_der(&der).map_err(|error| VerifyError::Malformed {
                reason: error.to_string(),
            })?;
        Ok(Self::new(&certificate))
    }

    pub(crate) fn new(certificate: &X509Certificate<'_>) -> Self {
        let mut description = Self {
            serial: SerialNumber::from_der_content(certificate.raw_serial()),
            subject: certificate.subject().to_string(),
            issuer: certificate.issuer().to_string(),
            not_before: format_time(certificate.validity().not_before.to_datetime()),
            not_after: format_time(certificate.validity().not_after.to_datetime()),
            names: Vec::new(),
            extended_key_usages: Vec::new(),
            crl_distribution_points: Vec::new(),
            identity: None,
            identity_error: None,
        };
        for extension in certificate.extensions() {
            if extension.oid.to_id_string() == IDENTITY_EXTENSION_OID_STRING {
                match Identity::from_der(extension.value) {
                    Ok(identity) => {
                        description.identity = Some(IdentityDescription::new(&identity))
                    }
                    Err(error) => description.identity_error = Some(error.to_string()),
                }
            }
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(names) => {
                    description.names = names.general_names.iter().map(name_text).collect();
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let mut usages = Vec::new();
                    if eku.server_auth {
                        usages.push("serverAuth".to_owned());
                    }
                    if eku.client_auth {
                        usages.push("clientAuth".to_owned());
                    }
                    for oid in &eku.other {
                        let id = oid.to_id_string();
                        usages.push(if id == PATIENT_DATA_SIGNING_OID_STRING {
                            "wardseal patient data signing".to_owned()
                        } else {
                            id
                        });
                    }
                    description.extended_key_usages = usages;
                }
                ParsedExtension::CRLDistributionPoints(points) => {
                    for point in points.iter() {
                        if let Some(x509_parser::extensions::DistributionPointName::FullName(
                            names,
                        )) = &point.distribution_point
                        {
                            description
                                .crl_distribution_points
                                .extend(names.iter().map(name_text));
                        }
                    }
                }
                _ => {}
            }
        }
        description
    }
}

fn name_text(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .map(|octets| format!("IP:{}", std::net::IpAddr::from(octets)))
                .unwrap_or_default(),
            16 => <[u8; 16]>::try_from(*bytes)
                .map(|octets| format!("IP:{}", std::net::IpAddr::from(octets)))
                .unwrap_or_default(),
            _ => format!("IP:{}", hex::encode(bytes)),
        },
        other => format!("{other}"),
    }
}

impl fmt::Display for CertificateDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "serial:     {}", self.serial)?;
        writeln!(f, "subject:    {}", self.subject)?;
        writeln!(f, "issuer:     {}", self.issuer)?;
        writeln!(f, "valid:      {} to {}", self.not_before, self.not_after)?;
        if !self.names.is_empty() {
            writeln!(f, "names:      {}", self.names.join(", "))?;
        }
        if !self.extended_key_usages.is_empty() {
            writeln!(f, "key usage:  {}", self.extended_key_usages.join(", "))?;
        }
        if !self.crl_distribution_points.is_empty() {
            writeln!(f, "CRL:        {}", self.crl_distribution_points.join(", "))?;
        }
        match (&self.identity, &self.identity_error) {
            (Some(identity), _) => {
                writeln!(f, "wardseal identity ({IDENTITY_EXTENSION_OID_STRING}):")?;
                write!(f, "{identity}")
            }
            (None, Some(error)) => writeln!(f, "wardseal identity: INVALID ({error})"),
            (None, None) => writeln!(f, "wardseal identity: none"),
        }
    }
}

/// PEM (`CERTIFICATE`) or DER to DER.
pub(crate) fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, VerifyError> {
    pem_or_der(bytes, "CERTIFICATE")
}

pub(crate) fn pem_or_der(bytes: &[u8], label: &str) -> Result<Vec<u8>, VerifyError> {
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(bytes).map_err(|error| VerifyError::Malformed {
                reason: format!("bad PEM: {error}"),
            })?;
        if pem.label != label {
            return Err(VerifyError::Malformed {
                reason: format!("PEM label is {:?}, expected {label:?}", pem.label),
            });
        }
        Ok(pem.contents)
    } else {
        Ok(bytes.to_vec())
    }
}
