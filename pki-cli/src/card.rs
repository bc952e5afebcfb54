//! Patients' smart cards (or SoftHSM tokens standing in for them): what `wardseal-pki card`
//! does, over wardseal-card.
//!
//! - [`list`]: the tokens of a PKCS#11 module (label, serial, manufacturer, PIN flags, the
//!   public keys and certificates anyone may read) and the PC/SC readers with the ATR of
//!   the card in each. pcscd not running is reported in the listing, not as a failure.
//! - [`SigningCa::enroll_card`]: a P-256 key generated on the card, a CSR the card signs,
//!   a `patient` certificate issued by this CA from that CSR (the profile decides the
//!   certificate, never the CSR), written back to the card next to the key (same label
//!   and CKA_ID), recorded in the inventory with a `card-enroll` audit entry that names
//!   the token.
//! - [`open_signer`] / [`verify_signature`]: sign a file with a card key (or an encrypted
//!   key file) and check such a signature against a certificate with wardseal-core's
//!   [`VerifyingKey`], the verifier storage uses.
//!
//! Tokens are chosen by label, serial or `pkcs11:` URI, never by slot number. PINs come
//! from a file, an environment variable or a prompt ([`SecretSource`]).

use std::fmt;
use std::path::{Path, PathBuf};

use wardseal_card::pkcs11::{EnrollmentRequest, Module, Pkcs11Uri, PublicObjectKind};
use wardseal_card::{
    CardWatcher, KeySelector, Pkcs11Signer, Pkcs11Token, Signer, SoftwareSigner, TokenSelector,
};
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_core::signature::{SignatureAlgorithm, VerifyingKey};

use crate::ca::{Issued, SigningCa, now};
use crate::error::{Cause, Error, TokenError, VerifyError};
use crate::key::SecretSource;
use crate::profile::Request;
use crate::token::{MODULE_ENVIRONMENT_VARIABLE, card_secret_source};

/// OpenSC's module, for real smart cards, when neither `--module` nor
/// [`MODULE_ENVIRONMENT_VARIABLE`] says otherwise.
pub const DEFAULT_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

/// The module to load: the one given, else [`MODULE_ENVIRONMENT_VARIABLE`], else
/// [`DEFAULT_MODULE`].
pub fn module_path(given: Option<&Path>) -> PathBuf {
    given.map(Path::to_owned).unwrap_or_else(|| {
        std::env::var_os(MODULE_ENVIRONMENT_VARIABLE)
            .map_or_else(|| PathBuf::from(DEFAULT_MODULE), PathBuf::from)
    })
}

/// A token as the user names it: a label, a serial number or a `pkcs11:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChoice {
    /// The module the token is reached through.
    pub module: PathBuf,
    /// Label, serial or `pkcs11:` URI (whose `module-path`, if any, wins over `module`).
    pub token: String,
}

impl TokenChoice {
    /// The module and selector: a URI as it says; otherwise the token whose label is
    /// `token`, else the one whose serial is.
    fn resolve(&self) -> Result<(PathBuf, TokenSelector), Error> {
        if self
            .token
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
        {
            let uri = Pkcs11Uri::parse(&self.token)?;
            let module = uri
                .module_path
                .clone()
                .unwrap_or_else(|| self.module.clone());
            return Ok((module, TokenSelector::Uri(Box::new(uri))));
        }
        let tokens = Module::load(&self.module)?.tokens()?;
        if tokens.iter().any(|token| token.label == self.token) {
            return Ok((
                self.module.clone(),
                TokenSelector::Label(self.token.clone()),
            ));
        }
        if tokens.iter().any(|token| token.serial == self.token) {
            return Ok((
                self.module.clone(),
                TokenSelector::Serial(self.token.clone()),
            ));
        }
        let present: Vec<String> = tokens
            .iter()
            .map(|token| format!("{:?} (serial {})", token.label, token.serial))
            .collect();
        Err(TokenError::NotFound {
            wanted: format!("labelled {:?} or with that serial", self.token),
            present: if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(", ")
            },
        }
        .into())
    }

    /// Opens and logs in to the token with the PIN from `pin` (a prompt when `None`).
    pub fn open(&self, pin: Option<&SecretSource>) -> Result<Pkcs11Token, Error> {
        let (module, selector) = self.resolve()?;
        let pin = card_secret_source(pin.unwrap_or(&SecretSource::Prompt), &self.token);
        Ok(Pkcs11Token::open(&module, &selector, Some(&pin))?)
    }
}

/// What `card list` shows.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct CardListing {
    /// The module's canonical path.
    pub module: PathBuf,
    /// Its tokens.
    pub tokens: Vec<TokenEntry>,
    /// The PC/SC readers, or why they cannot be listed (pcscd not running).
    pub readers: Result<Vec<ReaderEntry>, String>,
}

/// The module's tokens with their public objects, then the PC/SC readers and their cards.
impl fmt::Display for CardListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "PKCS#11 tokens in {}:", self.module.display())?;
        if self.tokens.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for token in &self.tokens {
            let flags = if token.flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", token.flags.join(", "))
            };
            writeln!(
                f,
                "  {:?} serial {} ({} {}) in {:?}{flags}",
                token.label, token.serial, token.manufacturer, token.model, token.slot
            )?;
            for object in &token.objects {
                writeln!(
                    f,
                    "    {:<11} {:?} id {}",
                    object.kind, object.label, object.id
                )?;
            }
            if let Some(error) = &token.objects_error {
                writeln!(f, "    (objects unreadable: {error})")?;
            }
        }
        writeln!(f, "PC/SC readers:")?;
        match &self.readers {
            Ok(readers) if readers.is_empty() => writeln!(f, "  (none)"),
            Ok(readers) => {
                for reader in readers {
                    match &reader.atr {
                        Some(atr) => writeln!(f, "  {}: card present, ATR {atr}", reader.reader)?,
                        None => writeln!(f, "  {}: no card", reader.reader)?,
                    }
                }
                Ok(())
            }
            Err(reason) => writeln!(f, "  (cannot list readers: {reason})"),
        }
    }
}

/// One token in a [`CardListing`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct TokenEntry {
    /// Token label.
    pub label: String,
    /// Serial number.
    pub serial: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Model.
    pub model: String,
    /// The slot (reader) it is in.
    pub slot: String,
    /// Flags: `not-initialised` (a free slot), `pin-locked`, `pin-count-low`,
    /// `pin-final-try`, `pinpad`.
    pub flags: Vec<&'static str>,
    /// Public keys and certificates (readable without the PIN).
    pub objects: Vec<ObjectEntry>,
    /// Why the objects could not be read, if they could not.
    pub objects_error: Option<String>,
}

/// A public key or certificate on a token.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct ObjectEntry {
    /// `public-key` or `certificate`.
    pub kind: &'static str,
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID in hex.
    pub id: String,
}

/// A PC/SC reader in a [`CardListing`].
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct ReaderEntry {
    /// Reader name.
    pub reader: String,
    /// The ATR (hex) of the card in it, if there is one.
    pub atr: Option<String>,
}

/// Lists the tokens of `module` and the PC/SC readers.
pub fn list(module: &Path) -> Result<CardListing, Error> {
    let module = Module::load(module)?;
    let mut tokens = Vec::new();
    for token in module.tokens()? {
        // SoftHSM (and some readers) show a free slot as a token with no label and no
        // serial: it has no objects to read.
        let uninitialised = token.label.is_empty() && token.serial.is_empty();
        let flags = [
            (uninitialised, "not-initialised"),
            (token.user_pin_locked, "pin-locked"),
            (token.user_pin_count_low, "pin-count-low"),
            (token.user_pin_final_try, "pin-final-try"),
            (token.protected_authentication_path, "pinpad"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        let listed = if uninitialised {
            Ok(Vec::new())
        } else {
            module.public_objects(&token)
        };
        let (objects, objects_error) = match listed {
            Ok(objects) => (
                objects
                    .into_iter()
                    .map(|object| ObjectEntry {
                        kind: match object.kind {
                            PublicObjectKind::Certificate => "certificate",
                            _ => "public-key",
                        },
                        label: object.label,
                        id: hex::encode(object.id),
                    })
                    .collect(),
                None,
            ),
            Err(error) => (Vec::new(), Some(error.to_string())),
        };
        tokens.push(TokenEntry {
            label: token.label,
            serial: token.serial,
            manufacturer: token.manufacturer,
            model: token.model,
            slot: token.slot_description,
            flags,
            objects,
            objects_error,
        });
    }
    let readers = CardWatcher::reader_status()
        .map(|readers| {
            readers
                .into_iter()
                .map(|status| ReaderEntry {
                    reader: status.reader,
                    atr: status.atr.map(hex::encode),
                })
                .collect()
        })
        .map_err(|error| error.to_string());
    Ok(CardListing {
        module: module.path().to_owned(),
        tokens,
        readers,
    })
}

/// What `card enroll` is asked to do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnrollOptions {
    /// The patient's card.
    pub token: TokenChoice,
    /// The card's PIN (a prompt when `None`).
    pub pin: Option<SecretSource>,
    /// The patient's subject id (also the CSR's and certificate's common name).
    pub patient: String,
    /// CKA_LABEL of the new key and its certificate.
    pub key_label: String,
    /// CKA_ID of the new key and its certificate.
    pub key_id: Vec<u8>,
    /// Ward, recorded in the inventory.
    pub ward: Option<String>,
    /// Validity in days (the patient profile's default when `None`).
    pub validity_days: Option<u32>,
}

impl EnrollOptions {
    /// Options with the default key label (`wardseal patient`) and id (`01`).
    pub fn new(token: TokenChoice, pin: Option<SecretSource>, patient: impl Into<String>) -> Self {
        Self {
            token,
            pin,
            patient: patient.into(),
            key_label: "wardseal patient".to_owned(),
            key_id: vec![0x01],
            ward: None,
            validity_days: None,
        }
    }
}

/// A card just enrolled.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct CardEnrollment {
    /// The certificate issued, as recorded.
    #[serde(flatten)]
    pub issued: Issued,
    /// The token's label.
    pub token_label: String,
    /// The token's serial number.
    pub token_serial: String,
    /// CKA_LABEL of the key and certificate.
    pub key_label: String,
    /// CKA_ID of the key and certificate (hex).
    pub key_id: String,
}

/// Where the key and certificate went: `on token "…" (serial …): key "…" id …,
/// certificate serial …` (`wardseal-pki card enroll` names the patient first).
impl fmt::Display for CardEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "on token {:?} (serial {}): key {:?} id {}, certificate serial {}",
            self.token_label,
            self.token_serial,
            self.key_label,
            self.key_id,
            self.issued.record.serial
        )
    }
}

impl SigningCa<'_> {
    /// Enrolls a patient's card: key on the card, CSR, patient certificate, certificate
    /// back on the card, inventory and audit.
    ///
    /// Everything that can be checked before the card is touched is (profile, CA
    /// validity, PIN). A failure after the key was generated leaves the key on the card
    /// (PKCS#11 keys are deleted with `pkcs11-tool --delete-object`); a failure to write
    /// the certificate back names the serial, which is then issued and recorded.
    pub async fn enroll_card(
        &self,
        options: &EnrollOptions,
        actor: &str,
    ) -> Result<CardEnrollment, Error> {
        let mut request =
            Request::new(Identity::patient(SubjectId::new(options.patient.as_str())?));
        request.ward.clone_from(&options.ward);
        request.validity_days = options.validity_days;
        request.check()?;
        let issued_at = now();
        self.check_valid(issued_at)?;
        let token = options.token.open(options.pin.as_ref())?;
        let enrollment_request = EnrollmentRequest::new(
            &options.key_label,
            &options.key_id,
            &request.subject_common_name(),
        );
        let mut enrollment = token.enroll(&enrollment_request)?;
        // The CA reads the card's CSR like any other: signature checked, only the key kept.
        let csr = crate::csr::read_csr(&enrollment.csr_der)?;
        let built = self.build(&request, csr.public_key().certified(), issued_at, None)?;
        let key_id = hex::encode(&options.key_id);
        self.record_with(
            std::slice::from_ref(&built.record),
            actor,
            "card-enroll",
            &serde_json::json!({
                "token_label": token.label(),
                "token_serial": token.serial(),
                "key_label": options.key_label,
                "key_id": key_id,
            }),
        )
        .await?;
        token
            .install_certificate(&mut enrollment.signer, &built.record.der)
            .map_err(|error| TokenError::CertificateNotWritten {
                serial: built.record.serial.to_string(),
                label: token.label().to_owned(),
                source: Cause::new(error),
            })?;
        Ok(CardEnrollment {
            issued: Issued {
                record: built.record,
                pem: built.pem,
                key_path: None,
            },
            token_label: token.label().to_owned(),
            token_serial: token.serial().to_owned(),
            key_label: options.key_label.clone(),
            key_id,
        })
    }
}

/// A key that signs files.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SigningKeySource {
    /// A key on a token.
    Token {
        /// The token.
        token: TokenChoice,
        /// Its PIN (a prompt when `None`).
        pin: Option<SecretSource>,
        /// Which key (the token's only private key when `None`).
        key: Option<KeySelector>,
    },
    /// An encrypted PKCS#8 key file.
    File {
        /// The file.
        path: PathBuf,
        /// Its passphrase.
        passphrase: SecretSource,
    },
}

/// Opens the key `source` names.
pub fn open_signer(source: &SigningKeySource) -> Result<Box<dyn Signer>, Error> {
    match source {
        SigningKeySource::Token { token, pin, key } => {
            let opened = token.open(pin.as_ref())?;
            let selector = match key {
                Some(selector) => selector.clone(),
                None => only_key(&opened)?,
            };
            Ok(Box::new(Pkcs11Signer::new(
                &opened,
                &selector,
                wardseal_card::EcdsaEncoding::Der,
            )?))
        }
        SigningKeySource::File { path, passphrase } => {
            let passphrase = wardseal_card::Passphrase::read(&card_secret_source(
                passphrase,
                &path.display().to_string(),
            ))?;
            Ok(Box::new(SoftwareSigner::open(path, &passphrase)?))
        }
    }
}

/// The token's one signing key, or an error listing the keys to choose from.
fn only_key(token: &Pkcs11Token) -> Result<KeySelector, Error> {
    let keys = token.private_keys()?;
    match keys.as_slice() {
        [key] => Ok(KeySelector::Id(key.id.clone())),
        _ => Err(TokenError::KeyNotFound {
            label: token.label().to_owned(),
            object: format!(
                "to choose by default ({} keys; give --key-id or --key-label)",
                keys.len()
            ),
            present: keys
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into()),
    }
}

/// A signature that verified.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct VerifiedSignature {
    /// The algorithm it was checked as.
    pub algorithm: SignatureAlgorithm,
    /// The certificate's key (`ECDSA P-256`, `RSA 3072`, …).
    pub key: String,
    /// The certificate's subject.
    pub subject: String,
}

/// `signed by SUBJECT (KEY, ALGORITHM)`.
impl fmt::Display for VerifiedSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "signed by {} ({}, {})",
            self.subject, self.key, self.algorithm
        )
    }
}

/// Checks `signature` over `message` with the key of `certificate` (PEM or DER). The
/// algorithm is the key's first ([`VerifyingKey::algorithms`]: DER ECDSA for P-256)
/// unless `algorithm` says otherwise.
pub fn verify_signature(
    message: &[u8],
    signature: &[u8],
    certificate: &[u8],
    algorithm: Option<SignatureAlgorithm>,
) -> Result<VerifiedSignature, Error> {
    let malformed = |reason: String| VerifyError::Malformed { reason };
    let der = crate::describe::certificate_der(certificate)?;
    let key =
        VerifyingKey::from_certificate_der(&der).map_err(|error| malformed(error.to_string()))?;
    let subject = x509_parser::parse_x509_certificate(&der)
        .map(|(_, parsed)| parsed.subject().to_string())
        .map_err(|error| malformed(error.to_string()))?;
    let algorithm = match algorithm {
        Some(algorithm) => algorithm,
        None => *key.algorithms().first().ok_or_else(|| {
            malformed(format!(
                "no signature algorithm for a {} key",
                key.description()
            ))
        })?,
    };
    key.verify(algorithm, message, signature)
        .map_err(|error| VerifyError::FileSignature {
            algorithm: algorithm.to_string(),
            key: key.description(),
            reason: Cause::new(error),
        })?;
    Ok(VerifiedSignature {
        algorithm,
        key: key.description(),
        subject,
    })
}
