//! RFC 7512 `pkcs11:` URIs: which token, which object, which module, where the PIN is.
//!
//! Example: `pkcs11:token=patient-0001;object=signing%20key;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`.
//! Values are percent-decoded; `id` is binary. Slot numbers (`slot-id`) are refused:
//! SoftHSM reassigns them when a token is initialised, and readers renumber on hot-plug.
//! `pin-value` is refused too: a PIN never belongs in a URI that ends up in configs and logs.

use std::path::PathBuf;

use crate::Error;

/// A parsed `pkcs11:` URI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `serial`: the token serial number.
    pub serial: Option<String>,
    /// `manufacturer`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `model`: the token model.
    pub model: Option<String>,
    /// `object`: the object label (CKA_LABEL).
    pub object: Option<String>,
    /// `id`: the object id (CKA_ID), binary.
    pub id: Option<Vec<u8>>,
    /// `type`: `private`, `public`, `cert`, `secret-key` or `data`.
    pub object_type: Option<String>,
    /// `module-path` (query): the module file.
    pub module_path: Option<PathBuf>,
    /// `module-name` (query): the module name without directory or suffix.
    pub module_name: Option<String>,
    /// `pin-source` (query): where the PIN is (`file:/path`, a bare path, or `env:NAME`).
    pub pin_source: Option<String>,
}

impl Pkcs11Uri {
    /// Parses a URI. Unknown attributes are refused unless vendor-specific (`x-…`).
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidUri {
            uri: redact_pin(uri),
            reason,
        };
        let rest = uri
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
            .and_then(|_| uri.get(7..))
            .ok_or_else(|| invalid("does not start with `pkcs11:`".to_owned()))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut parsed = Self::default();
        let mut seen = Vec::new();
        let attributes = path
            .split(';')
            .filter(|part| !part.is_empty())
            .map(|part| (part, false))
            .chain(
                query
                    .into_iter()
                    .flat_map(|query| query.split('&'))
                    .filter(|part| !part.is_empty())
                    .map(|part| (part, true)),
            );
        for (attribute, in_query) in attributes {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| invalid(format!("attribute `{attribute}` has no `=`")))?;
            if seen.contains(&name) {
                return Err(invalid(format!("attribute `{name}` appears twice")));
            }
            seen.push(name);
            let bytes =
                percent_decode(value).map_err(|reason| invalid(format!("{name}: {reason}")))?;
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| invalid(format!("{name} is not UTF-8")))
            };
            match (name, in_query) {
                ("token", false) => parsed.token = Some(text()?),
                ("serial", false) => parsed.serial = Some(text()?),
                ("manufacturer", false) => parsed.manufacturer = Some(text()?),
                ("model", false) => parsed.model = Some(text()?),
                ("object", false) => parsed.object = Some(text()?),
                ("id", false) => parsed.id = Some(bytes),
                ("type", false) => {
                    let kind = text()?;
                    if !matches!(
                        &*kind,
                        "private" | "public" | "cert" | "secret-key" | "data"
                    ) {
                        return Err(invalid(format!("unknown object type `{kind}`")));
                    }
                    parsed.object_type = Some(kind);
                }
                ("library-manufacturer" | "library-description" | "library-version", false)
                | ("slot-description" | "slot-manufacturer", false) => {}
                ("slot-id", false) => {
                    return Err(invalid(
                        "slot-id is refused: slot numbers change when tokens are initialised \
                         or readers come and go; select the token by `token=` or `serial=`"
                            .to_owned(),
                    ));
                }
                ("module-path", true) => parsed.module_path = Some(PathBuf::from(text()?)),
                ("module-name", true) => parsed.module_name = Some(text()?),
                ("pin-source", true) => parsed.pin_source = Some(text()?),
                ("pin-value", true) => {
                    return Err(invalid(
                        "pin-value is refused: keep the PIN out of URIs; use pin-source=file:…"
                            .to_owned(),
                    ));
                }
                (vendor, _) if vendor.starts_with("x-") => {}
                (other, true) => return Err(invalid(format!("unknown query attribute `{other}`"))),
                (other, false) => return Err(invalid(format!("unknown path attribute `{other}`"))),
            }
        }
        Ok(parsed)
    }

    /// Whether a token with this label, serial, manufacturer and model matches the URI.
    pub fn matches_token(
        &self,
        label: &str,
        serial: &str,
        manufacturer: &str,
        model: &str,
    ) -> bool {
        let ok = |wanted: &Option<String>, actual: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == actual)
        };
        ok(&self.token, label)
            && ok(&self.serial, serial)
            && ok(&self.manufacturer, manufacturer)
            && ok(&self.model, model)
    }
}

/// The URI with any `pin-value` replaced, for error messages (which end up in logs).
fn redact_pin(uri: &str) -> String {
    match uri.find("pin-value=") {
        Some(at) => {
            let rest = &uri[at + "pin-value=".len()..];
            let end = rest.find('&').unwrap_or(rest.len());
            format!("{}pin-value=[secret elided]{}", &uri[..at], &rest[end..])
        }
        None => uri.to_owned(),
    }
}

/// Decodes `%XX` escapes; any other byte stands for itself.
fn percent_decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("`%` at byte {index} is not followed by two hex digits"))?;
            decoded.push(hex);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn parses_path_and_query_with_percent_decoding() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=patient%200001;serial=0aa0abc7d793a39d;object=signing%20key;id=%01%A0;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("patient 0001"));
        assert_eq!(uri.serial.as_deref(), Some("0aa0abc7d793a39d"));
        assert_eq!(uri.object.as_deref(), Some("signing key"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xa0][..]));
        assert_eq!(uri.object_type.as_deref(), Some("private"));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(uri.pin_source.as_deref(), Some("file:/run/pin"));
        assert!(uri.matches_token("patient 0001", "0aa0abc7d793a39d", "SoftHSM", "v2"));
        assert!(!uri.matches_token("patient 0002", "0aa0abc7d793a39d", "SoftHSM", "v2"));
    }

    #[test]
    fn rfc_7512_examples_parse() {
        for example in [
            "pkcs11:",
            "pkcs11:object=my-pubkey;type=public",
            "pkcs11:object=my-key;type=private?pin-source=file:/etc/token",
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-source=file:/etc/token_pin",
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token;library-version=1",
            "pkcs11:x-vendor-attribute=1?x-other=2",
        ] {
            Pkcs11Uri::parse(example).unwrap();
        }
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("A name with a substring %;"));
    }

    #[test]
    fn refuses_what_it_must() {
        for (uri, expected) in [
            ("pkcs:token=x", "pkcs11:"),
            ("pkcs11:slot-id=3", "slot-id is refused"),
            ("pkcs11:token=x?pin-value=1234", "pin-value is refused"),
            ("pkcs11:token=x;token=y", "twice"),
            ("pkcs11:token=%4", "two hex digits"),
            ("pkcs11:token=%zz", "two hex digits"),
            ("pkcs11:tokn=x", "unknown path attribute"),
            ("pkcs11:token", "no `=`"),
            ("pkcs11:type=secret", "unknown object type"),
            ("pkcs11:token=%FF", "not UTF-8"),
            ("pkcs11:module-path=/x", "unknown path attribute"),
        ] {
            let text = Pkcs11Uri::parse(uri).unwrap_err().to_string();
            assert!(text.contains(expected), "{uri}: {text}");
            assert!(!text.contains("1234"), "{uri}: {text}");
        }
    }
}
