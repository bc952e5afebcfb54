//! CA keys on a PKCS#11 token, addressed by an RFC 7512 `pkcs11:` URI.
//!
//! ```text
//! pkcs11:token=hospital-ca;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so
//! ```
//!
//! The token is found by label (slot numbers change when tokens are added), the private
//! key by `object` (label) or `id`, its public key from the matching public-key object.
//! Only EC P-256 and P-384 keys are used; the message is hashed here and signed with raw
//! `CKM_ECDSA` (SoftHSM 2.6 has no hash-and-sign ECDSA), and the raw `r‖s` the token
//! returns is re-encoded as the DER `SEQUENCE { r, s }` X.509 needs.
//!
//! This is the [`CaSigner`] seam's token side. When `wardseal-card`'s `Pkcs11Signer`
//! lands, [`TokenKey`] becomes a thin adapter over it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::Digest;

use crate::error::{Cause, Error, TokenError};
use crate::key::SecretSource;
use crate::signer::CaSigner;

/// DER of the P-256 curve OID, as in `CKA_EC_PARAMS`.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the P-384 curve OID.
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A parsed `pkcs11:` URI naming a token key. Never holds a PIN: `pin-value` is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token label (`token=`).
    pub token: String,
    /// The key's label (`object=`), if given.
    pub object: Option<String>,
    /// The key's `CKA_ID` (`id=`, percent-encoded bytes), if given.
    pub id: Option<Vec<u8>>,
    /// The module to load (`module-path=`).
    pub module_path: Option<PathBuf>,
    /// A file holding the PIN (`pin-source=file:…` or a plain path).
    pub pin_source: Option<PathBuf>,
    text: String,
}

impl Pkcs11Uri {
    /// Parses a URI. Attributes other than those above are ignored, as RFC 7512 allows.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let bad = |reason: &str| TokenError::BadUri {
            uri: redact(text),
            reason: reason.to_owned(),
        };
        let rest = text
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("it does not start with \"pkcs11:\""))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Self {
            token: String::new(),
            object: None,
            id: None,
            module_path: None,
            pin_source: None,
            text: text.to_owned(),
        };
        let mut token = None;
        for attribute in path.split(';').filter(|part| !part.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| bad("a path attribute has no '='"))?;
            let value = percent_decode(value).ok_or_else(|| bad("bad percent-encoding"))?;
            match name {
                "token" => token = Some(utf8(value).ok_or_else(|| bad("token is not UTF-8"))?),
                "object" => {
                    uri.object = Some(utf8(value).ok_or_else(|| bad("object is not UTF-8"))?);
                }
                "id" => uri.id = Some(value),
                _ => {}
            }
        }
        for attribute in query.split('&').filter(|part| !part.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| bad("a query attribute has no '='"))?;
            let value = percent_decode(value).ok_or_else(|| bad("bad percent-encoding"))?;
            let value = utf8(value).ok_or_else(|| bad("query value is not UTF-8"))?;
            match name {
                "module-path" => uri.module_path = Some(PathBuf::from(value)),
                "pin-source" => {
                    let path = value.strip_prefix("file:").unwrap_or(&value);
                    uri.pin_source = Some(PathBuf::from(path));
                }
                "pin-value" => {
                    return Err(bad(
                        "a PIN in the URI is refused (it ends up in shell history and process \
                         lists); use pin-source=file:…, --pin-file or --pin-env",
                    ));
                }
                _ => {}
            }
        }
        uri.token = token.ok_or_else(|| bad("it names no token (token=…)"))?;
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad("it names no key (object=… or id=…)"));
        }
        Ok(uri)
    }

    fn object_description(&self) -> String {
        match (&self.object, &self.id) {
            (Some(label), _) => format!("{label:?}"),
            (None, Some(id)) => format!("id {}", hex::encode(id)),
            (None, None) => "(unnamed)".to_owned(),
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn redact(text: &str) -> String {
    match text.find("pin-value=") {
        Some(at) => format!("{}pin-value=[secret elided]", &text[..at]),
        None => text.to_owned(),
    }
}

fn utf8(bytes: Vec<u8>) -> Option<String> {
    String::from_utf8(bytes).ok()
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let digits = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            index += 3;
        } else {
            out.push(byte);
            index += 1;
        }
    }
    Some(out)
}

/// Where the module is when the URI does not say.
pub const MODULE_ENVIRONMENT_VARIABLE: &str = "WARDSEAL_PKCS11_MODULE";

/// A private key on a token, logged in and ready to sign.
pub struct TokenKey {
    // Session is Send but not Sync; signing is serialised, which is what one session
    // allows anyway.
    session: Mutex<Session>,
    key: ObjectHandle,
    public_key: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
    // Keeps the module loaded for as long as the session lives.
    _context: Pkcs11,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn call(operation: &'static str) -> impl Fn(CryptokiError) -> TokenError {
    move |error| TokenError::Call {
        operation,
        source: Cause::new(error),
    }
}

impl TokenKey {
    /// Loads the module, finds the token by label, checks it is not locked, logs in with
    /// the PIN from `pin` (or the URI's `pin-source`), and finds the key.
    pub fn open(uri: &Pkcs11Uri, pin: Option<&SecretSource>) -> Result<Self, Error> {
        let module = match (
            &uri.module_path,
            std::env::var_os(MODULE_ENVIRONMENT_VARIABLE),
        ) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) => PathBuf::from(path),
            (None, None) => {
                return Err(TokenError::BadUri {
                    uri: uri.to_string(),
                    reason: format!(
                        "no module: add ?module-path=… or set {MODULE_ENVIRONMENT_VARIABLE}"
                    ),
                }
                .into());
            }
        };
        let module_error = |source: CryptokiError| TokenError::Module {
            module: module.display().to_string(),
            source: Cause::new(source),
        };
        let context = Pkcs11::new(&module).map_err(module_error)?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(module_error)?;
        let mut present = Vec::new();
        let mut found = None;
        for slot in context
            .get_slots_with_token()
            .map_err(call("C_GetSlotList"))?
        {
            let info = context
                .get_token_info(slot)
                .map_err(call("C_GetTokenInfo"))?;
            let label = info.label().trim_end().to_owned();
            if label == uri.token {
                found = Some((slot, info));
                break;
            }
            present.push(format!("{label:?}"));
        }
        let Some((slot, info)) = found else {
            return Err(TokenError::NotFound {
                label: uri.token.clone(),
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            }
            .into());
        };
        let label = uri.token.clone();
        if info.user_pin_locked() {
            return Err(TokenError::Locked { label }.into());
        }
        let pin_source = match (pin, &uri.pin_source) {
            (Some(source), _) => source.clone(),
            (None, Some(path)) => SecretSource::File(path.clone()),
            (None, None) => SecretSource::Prompt,
        };
        let pin = pin_source.read(&format!("PIN of token {label:?}"), false)?;
        let session = context
            .open_ro_session(slot)
            .map_err(call("C_OpenSession"))?;
        let auth = AuthPin::from(pin.as_str());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) => {}
            Err(CryptokiError::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            )) => {
                return Err(TokenError::WrongPin { label }.into());
            }
            Err(CryptokiError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(TokenError::Locked { label }.into());
            }
            Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(error) => return Err(call("C_Login")(error).into()),
        }
        let selector = |class| {
            let mut template = vec![Attribute::Class(class)];
            if let Some(object) = &uri.object {
                template.push(Attribute::Label(object.as_bytes().to_vec()));
            }
            if let Some(id) = &uri.id {
                template.push(Attribute::Id(id.clone()));
            }
            template
        };
        let not_found = || TokenError::KeyNotFound {
            label: label.clone(),
            object: uri.object_description(),
        };
        let key = *session
            .find_objects(&selector(ObjectClass::PRIVATE_KEY))
            .map_err(call("C_FindObjects"))?
            .first()
            .ok_or_else(not_found)?;
        let public = *session
            .find_objects(&selector(ObjectClass::PUBLIC_KEY))
            .map_err(call("C_FindObjects"))?
            .first()
            .ok_or_else(not_found)?;
        let unsupported = || TokenError::UnsupportedKey {
            label: label.clone(),
            object: uri.object_description(),
        };
        let attributes = session
            .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(call("C_GetAttributeValue"))?;
        let (mut params, mut point) = (None, None);
        for attribute in attributes {
            match attribute {
                Attribute::EcParams(value) => params = Some(value),
                Attribute::EcPoint(value) => point = Some(value),
                _ => {}
            }
        }
        let algorithm = match params.as_deref() {
            Some(P256_PARAMS) => &rcgen::PKCS_ECDSA_P256_SHA256,
            Some(P384_PARAMS) => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => return Err(unsupported().into()),
        };
        let public_key =
            unwrap_ec_point(&point.ok_or_else(unsupported)?).ok_or_else(unsupported)?;
        Ok(Self {
            session: Mutex::new(session),
            key,
            public_key,
            algorithm,
            _context: context,
        })
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the uncompressed point (SoftHSM, most
/// modules); some modules return the bare point.
fn unwrap_ec_point(value: &[u8]) -> Option<Vec<u8>> {
    match value {
        [0x04, 0x41 | 0x61, rest @ ..]
            if rest.len() + 2 == value.len() && rest.first() == Some(&0x04) =>
        {
            Some(rest.to_vec())
        }
        [0x04, 0x81, length, rest @ ..] if usize::from(*length) == rest.len() => {
            Some(rest.to_vec())
        }
        [0x04, ..] if value.len() == 65 || value.len() == 97 => Some(value.to_vec()),
        _ => None,
    }
}

impl CaSigner for TokenKey {
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let digest = if self.algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
            sha2::Sha384::digest(message).to_vec()
        } else {
            sha2::Sha256::digest(message).to_vec()
        };
        let session = self.session.lock().map_err(|_| TokenError::Call {
            operation: "C_Sign",
            source: Cause::message("a previous signature panicked"),
        })?;
        let raw = session
            .sign(&Mechanism::Ecdsa, self.key, &digest)
            .map_err(call("C_Sign"))?;
        ecdsa_raw_to_der(&raw).ok_or_else(|| {
            TokenError::Call {
                operation: "C_Sign",
                source: Cause::message(format!(
                    "the token returned a {}-byte signature",
                    raw.len()
                )),
            }
            .into()
        })
    }
}

/// Re-encodes a raw ECDSA signature `r‖s` (two equal halves) as DER `SEQUENCE { r, s }`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let integer = |value: &[u8]| {
        let mut start = 0;
        while start + 1 < value.len() && value[start] == 0 {
            start += 1;
        }
        let value = &value[start..];
        let mut out = vec![0x02];
        let pad = value.first().is_some_and(|byte| byte & 0x80 != 0);
        out.push(u8::try_from(value.len() + usize::from(pad)).unwrap_or(0));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
        out
    };
    let body = [integer(r), integer(s)].concat();
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(u8::try_from(body.len()).ok()?);
    out.extend(body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parses_rfc7512_examples_and_refuses_pin_values() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=hospital%20ca;object=issuing;id=%01%02?module-path=/m.so&pin-source=file:/p",
        )
        .unwrap();
        assert_eq!(uri.token, "hospital ca");
        assert_eq!(uri.object.as_deref(), Some("issuing"));
        assert_eq!(uri.id.as_deref(), Some(&[1_u8, 2][..]));
        assert_eq!(uri.module_path, Some(PathBuf::from("/m.so")));
        assert_eq!(uri.pin_source, Some(PathBuf::from("/p")));
        let error = Pkcs11Uri::parse("pkcs11:token=t;object=k?pin-value=1234").unwrap_err();
        assert!(!error.to_string().contains("1234"), "{error}");
        assert!(Pkcs11Uri::parse("pkcs11:object=k").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=t").is_err());
        assert!(Pkcs11Uri::parse("file:token=t;object=k").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=%zz;object=k").is_err());
    }

    #[test]
    fn raw_signatures_become_der() {
        let mut raw = vec![0_u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 1]);
        let p384 = ecdsa_raw_to_der(&[0xff; 96]).unwrap();
        assert_eq!(&p384[..4], &[0x30, 102, 0x02, 49]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }

    #[test]
    fn ec_points_unwrap_from_octet_strings() {
        let mut point = vec![0x04; 65];
        point[1] = 7;
        let wrapped = [&[0x04, 0x41][..], &point].concat();
        assert_eq!(unwrap_ec_point(&wrapped).unwrap(), point);
        assert_eq!(unwrap_ec_point(&point).unwrap(), point);
        assert!(unwrap_ec_point(&[1, 2]).is_none());
    }
}
