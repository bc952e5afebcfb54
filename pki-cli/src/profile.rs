//! Certificate profiles: what each role's certificate contains, whatever a CSR asks for.
//!
//! | profile | extended key usage | key usage | names | default / maximum days |
//! |---|---|---|---|---|
//! | device | clientAuth | digitalSignature | URI `urn:epc:id:sgtin:…` (from the EPC) | 730 / 3650 |
//! | collector | serverAuth, clientAuth | digitalSignature | DNS and/or IP (at least one) | 397 / 825 |
//! | storage | serverAuth, clientAuth | digitalSignature | DNS and/or IP (at least one) | 397 / 825 |
//! | staff | clientAuth | digitalSignature | optional email | 365 / 825 |
//! | patient | wardseal patient data signing | digitalSignature, nonRepudiation | none | 1095 / 3650 |
//! | admin | clientAuth | digitalSignature | optional email | 365 / 825 |
//! | authority | clientAuth | digitalSignature | none | 365 / 825 |
//!
//! An authority (laboratory, insurer, pharmacy, other hospital) is a TLS client of
//! storage like staff; its kind of organisation is the identity extension's
//! `authorityKind`, so the subject stays `O=<CA organisation>, CN=<subject id>` as for
//! every other profile.
//! Every certificate also gets: the wardseal identity extension (non-critical), basic
//! constraints `cA=FALSE` (critical), subject and authority key identifiers, and the CRL
//! distribution point of the CA when one is configured. The subject is `O=<CA
//! organisation>, CN=<name>` with the name taken from the identity unless given; `notBefore`
//! is 5 minutes before the moment of issue, for devices whose clocks lag.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use wardseal_core::identity::{
    IDENTITY_EXTENSION_CRITICAL, IDENTITY_EXTENSION_OID_COMPONENTS, Identity,
    PATIENT_DATA_SIGNING_OID_COMPONENTS, Role,
};

use crate::error::{Error, ProfileError};
use crate::serial::SerialNumber;

/// How far `notBefore` is set before the moment of issue, for clock skew.
pub const BACKDATE_SECONDS: i64 = 300;

/// A certificate profile: one per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Profile(Role);

impl Profile {
    /// Every profile.
    pub const ALL: [Self; 7] = [
        Self(Role::Device),
        Self(Role::Collector),
        Self(Role::Storage),
        Self(Role::Staff),
        Self(Role::Patient),
        Self(Role::Admin),
        Self(Role::Authority),
    ];

    /// The profile for `role`.
    pub const fn for_role(role: Role) -> Self {
        Self(role)
    }

    /// The role.
    pub fn role(self) -> Role {
        self.0
    }

    /// Validity when the request does not say.
    pub fn default_days(self) -> u32 {
        match self.0 {
            Role::Device => 730,
            Role::Collector | Role::Storage => 397,
            Role::Patient => 1095,
            Role::Staff | Role::Admin | Role::Authority => 365,
        }
    }

    /// The longest validity a request may ask for.
    pub fn maximum_days(self) -> u32 {
        match self.0 {
            Role::Device | Role::Patient => 3650,
            Role::Collector | Role::Storage | Role::Staff | Role::Admin | Role::Authority => 825,
        }
    }

    /// Whether the holder is a TLS server (and so needs DNS or IP names).
    pub fn is_server(self) -> bool {
        matches!(self.0, Role::Collector | Role::Storage)
    }

    /// Extended key usages, as rcgen writes them.
    pub(crate) fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self.0 {
            Role::Device | Role::Staff | Role::Admin | Role::Authority => {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
            Role::Collector | Role::Storage => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Patient => vec![ExtendedKeyUsagePurpose::Other(
                PATIENT_DATA_SIGNING_OID_COMPONENTS.to_vec(),
            )],
        }
    }

    /// Key usages.
    pub(crate) fn key_usages(self) -> Vec<KeyUsagePurpose> {
        match self.0 {
            Role::Patient => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            _ => vec![KeyUsagePurpose::DigitalSignature],
        }
    }

    /// Extended key usages in words, for `show`.
    pub fn extended_key_usage_names(self) -> &'static [&'static str] {
        match self.0 {
            Role::Device | Role::Staff | Role::Admin | Role::Authority => &["clientAuth"],
            Role::Collector | Role::Storage => &["serverAuth", "clientAuth"],
            Role::Patient => &["wardseal patient data signing"],
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Profile {
    type Err = ProfileError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.parse::<Role>()?))
    }
}

/// What a certificate is asked for: the identity and the names. The key comes separately
/// (a CSR or a generated key); nothing else a CSR asks for is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The identity; its role selects the profile.
    pub identity: Identity,
    /// The subject common name; defaults from the identity.
    pub common_name: Option<String>,
    /// DNS names (collector and storage only).
    pub dns_names: Vec<String>,
    /// IP addresses (collector and storage only).
    pub ip_addresses: Vec<IpAddr>,
    /// Email addresses (staff and admin only).
    pub emails: Vec<String>,
    /// The ward, recorded in the inventory (for devices and collectors).
    pub ward: Option<String>,
    /// Validity in days; defaults per profile.
    pub validity_days: Option<u32>,
}

impl Request {
    /// A request for `identity` with no names and the profile's validity.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            common_name: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            emails: Vec::new(),
            ward: None,
            validity_days: None,
        }
    }

    /// The profile the identity's role selects.
    pub fn profile(&self) -> Profile {
        Profile::for_role(self.identity.role())
    }

    /// The common name: the one given, else the EPC URI, subject id, first DNS name or role.
    pub fn subject_common_name(&self) -> String {
        if let Some(name) = &self.common_name {
            return name.clone();
        }
        if let Some(epc) = self.identity.device_id() {
            return epc.pure_identity_uri();
        }
        if let Some(name) = self.dns_names.first() {
            return name.clone();
        }
        if let Some(id) = self.identity.subject_id() {
            return id.to_string();
        }
        if let Some(ip) = self.ip_addresses.first() {
            return ip.to_string();
        }
        format!("wardseal {}", self.identity.role())
    }

    /// Checks the names and validity against the profile.
    pub fn check(&self) -> Result<(), ProfileError> {
        let profile = self.profile();
        let role = profile.role();
        if !profile.is_server() {
            if !self.dns_names.is_empty() {
                return Err(ProfileError::NameNotAllowed {
                    role,
                    kind: "DNS",
                    hint: "only collector and storage certificates name servers",
                });
            }
            if !self.ip_addresses.is_empty() {
                return Err(ProfileError::NameNotAllowed {
                    role,
                    kind: "IP address",
                    hint: "only collector and storage certificates name servers",
                });
            }
        } else if self.dns_names.is_empty() && self.ip_addresses.is_empty() {
            return Err(ProfileError::ServerNameMissing { role });
        }
        if !self.emails.is_empty() && !matches!(role, Role::Staff | Role::Admin) {
            return Err(ProfileError::NameNotAllowed {
                role,
                kind: "email",
                hint: "only staff and admin certificates carry email addresses",
            });
        }
        for name in &self.dns_names {
            check_dns_name(name)?;
        }
        for email in &self.emails {
            check_email(email)?;
        }
        if let Some(name) = &self.common_name {
            check_text("common name", name, 64)?;
        }
        if let Some(ward) = &self.ward {
            check_text("ward", ward, 64)?;
        }
        let days = self.days();
        if days == 0 || days > profile.maximum_days() {
            return Err(ProfileError::Validity {
                role,
                days,
                maximum: profile.maximum_days(),
            });
        }
        Ok(())
    }

    /// Validity in days.
    pub fn days(&self) -> u32 {
        self.validity_days
            .unwrap_or_else(|| self.profile().default_days())
    }

    /// The rcgen parameters of the certificate: everything but the key and the issuer.
    pub(crate) fn certificate_params(
        &self,
        serial: &SerialNumber,
        now: OffsetDateTime,
        organisation: &str,
        crl_url: Option<&str>,
    ) -> Result<CertificateParams, Error> {
        self.check()?;
        let profile = self.profile();
        let mut params = CertificateParams::default();
        params.serial_number = Some(serial.to_rcgen());
        // Backdated a little so that a device whose clock runs slightly behind the CA's
        // accepts a certificate it just received.
        params.not_before = now - Duration::seconds(BACKDATE_SECONDS);
        params.not_after = now + Duration::days(i64::from(self.days()));
        params
            .distinguished_name
            .push(DnType::OrganizationName, organisation);
        params
            .distinguished_name
            .push(DnType::CommonName, self.subject_common_name());
        let mut names = Vec::new();
        if let Some(epc) = self.identity.device_id() {
            names.push(SanType::URI(ia5("URI", epc.pure_identity_uri())?));
        }
        for name in &self.dns_names {
            names.push(SanType::DnsName(ia5(
                "DNS name",
                name.to_ascii_lowercase(),
            )?));
        }
        for ip in &self.ip_addresses {
            names.push(SanType::IpAddress(*ip));
        }
        for email in &self.emails {
            names.push(SanType::Rfc822Name(ia5("email", email.clone())?));
        }
        params.subject_alt_names = names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = profile.key_usages();
        params.extended_key_usages = profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.to_owned()],
            }];
        }
        let mut extension = CustomExtension::from_oid_content(
            IDENTITY_EXTENSION_OID_COMPONENTS,
            self.identity.to_der(),
        );
        extension.set_criticality(IDENTITY_EXTENSION_CRITICAL);
        params.custom_extensions = vec![extension];
        Ok(params)
    }
}

/// The rcgen parameters of a CA certificate (root: `path_length` None; issuing: Some(0)).
pub(crate) fn ca_params(
    common_name: &str,
    organisation: &str,
    path_length: Option<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: &SerialNumber,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(serial.to_rcgen());
    params.not_before = not_before;
    params.not_after = not_after;
    params
        .distinguished_name
        .push(DnType::OrganizationName, organisation);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(match path_length {
        Some(length) => BasicConstraints::Constrained(length),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.use_authority_key_identifier_extension = path_length.is_some();
    params
}

fn ia5(what: &'static str, text: String) -> Result<rcgen::string::Ia5String, ProfileError> {
    rcgen::string::Ia5String::try_from(text.clone()).map_err(|_| ProfileError::BadValue {
        what,
        value: text,
        reason: "only ASCII characters are allowed",
    })
}

pub(crate) fn check_text(
    what: &'static str,
    text: &str,
    maximum: usize,
) -> Result<(), ProfileError> {
    if text.trim().is_empty()
        || text.chars().count() > maximum
        || text.chars().any(char::is_control)
    {
        return Err(ProfileError::BadValue {
            what,
            value: text.to_owned(),
            reason: "must be 1 to 64 printable characters",
        });
    }
    Ok(())
}

fn check_dns_name(name: &str) -> Result<(), ProfileError> {
    let bad = |reason| ProfileError::BadValue {
        what: "DNS name",
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("must be 1 to 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad("labels hold letters, digits and inner hyphens only"));
        }
    }
    Ok(())
}

fn check_email(email: &str) -> Result<(), ProfileError> {
    let valid = email.is_ascii()
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && check_dns_name(domain).is_ok()
        });
    if valid {
        Ok(())
    } else {
        Err(ProfileError::BadValue {
            what: "email address",
            value: email.to_owned(),
            reason: "expected local-part@domain in ASCII",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardseal_core::identity::{Identity, SubjectId};

    #[test]
    fn server_profiles_need_names_and_others_refuse_them() {
        let mut request = Request::new(Identity::collector(
            SubjectId::new("ward-3").unwrap(),
            None,
            None,
            None,
        ));
        assert!(matches!(
            request.check(),
            Err(ProfileError::ServerNameMissing { .. })
        ));
        request.dns_names.push("collector.ward-3.example".into());
        request.check().unwrap();
        let mut staff = Request::new(Identity::staff(SubjectId::new("dr-who").unwrap()));
        staff.dns_names.push("x.example".into());
        assert!(matches!(
            staff.check(),
            Err(ProfileError::NameNotAllowed { .. })
        ));
    }

    #[test]
    fn validity_is_bounded_per_profile() {
        let mut request = Request::new(Identity::staff(SubjectId::new("dr-who").unwrap()));
        request.validity_days = Some(0);
        assert!(matches!(
            request.check(),
            Err(ProfileError::Validity { .. })
        ));
        request.validity_days = Some(826);
        assert!(matches!(
            request.check(),
            Err(ProfileError::Validity { .. })
        ));
        request.validity_days = Some(30);
        request.check().unwrap();
    }

    #[test]
    fn authority_profile_is_a_client_without_names() {
        let identity = Identity::authority(
            SubjectId::new("lab-0007").unwrap(),
            wardseal_core::identity::AuthorityKind::Laboratory,
        );
        let mut request = Request::new(identity);
        request.check().unwrap();
        let profile = request.profile();
        assert_eq!(profile.role(), Role::Authority);
        assert!(!profile.is_server());
        assert_eq!(profile.extended_key_usage_names(), ["clientAuth"]);
        assert_eq!(request.days(), 365);
        assert_eq!(request.subject_common_name(), "lab-0007");
        assert_eq!("authority".parse::<Profile>().unwrap(), profile);
        request.emails.push("lab@lab.example".into());
        assert!(matches!(
            request.check(),
            Err(ProfileError::NameNotAllowed { .. })
        ));
    }

    #[test]
    fn bad_dns_names_and_emails_are_refused() {
        for name in ["", "a..b", "-a.example", "a_b.example", "é.example"] {
            assert!(check_dns_name(name).is_err(), "{name:?}");
        }
        assert!(check_email("a@b.example").is_ok());
        assert!(check_email("a@@b").is_err());
        assert!(check_email("@b.example").is_err());
    }
}
