//! Private keys: algorithms, generation, passphrases, and the files they live in.
//!
//! CA keys are stored as encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`: PBES2 with scrypt
//! N=2^14, r=8, p=1 and AES-256-CBC), which openssl reads with
//! `openssl pkey -in issuing.key -passin file:…`. Keys generated for subjects are written
//! as plain PKCS#8 PEM, since devices load them unattended. Every private-key file is
//! created new with mode 0600 and never overwritten.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use pkcs8::der::Decode;
use pkcs8::der::pem::LineEnding;
use pkcs8::{EncodePublicKey, EncryptedPrivateKeyInfo, PrivateKeyInfo, SecretDocument};
use rand_core::{OsRng, RngCore};
use rcgen::KeyPair;
use zeroize::Zeroizing;

use crate::error::{Cause, Error, KeyError};
use crate::public_key::{CertifiedKey, SubjectPublicKey};

/// log2 of the scrypt cost N used for CA key files.
pub const SCRYPT_LOG_N: u8 = 14;

/// The shortest passphrase accepted for a new CA key.
pub const MINIMUM_PASSPHRASE_LENGTH: usize = 12;

/// A key algorithm: what the CA's own keys and the keys it generates for subjects use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default; what PIV cards and SoftHSM do).
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// RSA with a 3072-bit modulus, PKCS#1 v1.5 signatures with SHA-256.
    Rsa3072,
    /// Ed25519 (subject keys only: not every verifier accepts Ed25519 CAs).
    Ed25519,
    /// DSA with FIPS 186-4 (L, N) = (2048, 256) domain parameters, signing with SHA-256
    /// (subject keys only: DSA is for devices that have nothing else, never for a CA).
    /// Generating the domain parameters takes seconds.
    Dsa2048,
}

impl KeyAlgorithm {
    /// The names accepted by [`FromStr`].
    pub const NAMES: &'static str = "p256, p384, rsa3072, ed25519, dsa2048";

    /// The name used on the command line and in the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "p256",
            Self::EcdsaP384 => "p384",
            Self::Rsa3072 => "rsa3072",
            Self::Ed25519 => "ed25519",
            Self::Dsa2048 => "dsa2048",
        }
    }

    /// Whether the CA's own keys may use this algorithm.
    pub fn suits_ca(self) -> bool {
        !matches!(self, Self::Ed25519 | Self::Dsa2048)
    }

    /// Generates a key pair that can sign with rcgen: any algorithm but DSA, which rcgen
    /// does not know (use [`SubjectKeyPair::generate`] for subject keys).
    ///
    /// RSA keys come from the `rsa` crate (ring cannot generate them) and take seconds.
    pub fn generate(self) -> Result<KeyPair, Error> {
        let generation = |source| KeyError::Generation {
            algorithm: self.name(),
            source,
        };
        match self {
            Self::Dsa2048 => Err(KeyError::UnsupportedAlgorithm {
                name: self.name().to_owned(),
                supported: "p256, p384, rsa3072, ed25519 (DSA keys are for subjects only)",
            }
            .into()),
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|error| generation(Cause::new(error)).into()),
            Self::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
                .map_err(|error| generation(Cause::new(error)).into()),
            Self::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .map_err(|error| generation(Cause::new(error)).into()),
            Self::Rsa3072 => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut OsRng, 3072)
                    .map_err(|error| generation(Cause::new(error)))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|error| generation(Cause::new(error)))?;
                KeyPair::try_from(der.as_bytes())
                    .map_err(|error| generation(Cause::new(error)).into())
            }
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ec" | "ecdsa" | "ecdsa-p256" => Ok(Self::EcdsaP256),
            "p384" | "p-384" | "ecdsa-p384" => Ok(Self::EcdsaP384),
            "rsa3072" | "rsa-3072" | "rsa" => Ok(Self::Rsa3072),
            "ed25519" => Ok(Self::Ed25519),
            "dsa2048" | "dsa-2048" | "dsa" => Ok(Self::Dsa2048),
            _ => Err(KeyError::UnsupportedAlgorithm {
                name: text.to_owned(),
                supported: Self::NAMES,
            }),
        }
    }
}

/// A passphrase protecting a key file, wiped from memory when dropped.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Refuses a passphrase too short to protect a CA key.
    pub fn check_strength(&self) -> Result<(), KeyError> {
        let length = self.0.chars().count();
        if length < MINIMUM_PASSPHRASE_LENGTH {
            return Err(KeyError::PassphraseTooShort {
                length,
                minimum: MINIMUM_PASSPHRASE_LENGTH,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret elided]")
    }
}

/// Where a secret (a key passphrase or a token PIN) comes from: never a command-line value,
/// which other users can read from the process list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The first line of a file.
    File(PathBuf),
    /// An environment variable.
    Environment(String),
    /// A prompt on the terminal (asked twice when creating a key).
    Prompt,
}

impl SecretSource {
    /// Reads the secret. `what` names it in prompts and errors ("CA key passphrase");
    /// `confirm` asks twice at a prompt.
    pub fn read(&self, what: &str, confirm: bool) -> Result<Zeroizing<String>, KeyError> {
        let unavailable = |reason: String| KeyError::SecretUnavailable {
            what: what.to_owned(),
            source_description: self.to_string(),
            reason,
        };
        let secret = match self {
            Self::File(path) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|error| unavailable(error.to_string()))?,
                );
                Zeroizing::new(text.lines().next().unwrap_or_default().to_owned())
            }
            Self::Environment(name) => {
                Zeroizing::new(std::env::var(name).map_err(|error| unavailable(error.to_string()))?)
            }
            Self::Prompt => {
                let first = Zeroizing::new(
                    rpassword::prompt_password(format!("{what}: "))
                        .map_err(|error| unavailable(error.to_string()))?,
                );
                if confirm {
                    let second = Zeroizing::new(
                        rpassword::prompt_password(format!("{what} (again): "))
                            .map_err(|error| unavailable(error.to_string()))?,
                    );
                    if first != second {
                        return Err(unavailable("the two entries differ".into()));
                    }
                }
                first
            }
        };
        if secret.is_empty() {
            return Err(unavailable("it is empty".into()));
        }
        Ok(secret)
    }

    /// Reads a key passphrase.
    pub fn passphrase(&self, confirm: bool) -> Result<Passphrase, KeyError> {
        let text = self.read("CA key passphrase", confirm)?;
        Ok(Passphrase::new(text.as_str()))
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Environment(name) => write!(f, "environment variable {name}"),
            Self::Prompt => f.write_str("the terminal prompt"),
        }
    }
}

/// Creates `path` for writing with mode 0600; fails if it exists.
pub fn create_private_file(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Key(KeyError::KeyFileExists {
                    path: path.to_owned(),
                })
            } else {
                Error::io("create", path, error)
            }
        })
}

/// Writes `contents` to a new 0600 file.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut file = create_private_file(path)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| Error::io("write", path, error))
}

/// Writes `key` to a new 0600 file as plain PKCS#8 PEM.
pub fn write_plain_key(path: &Path, key: &SubjectKeyPair) -> Result<(), Error> {
    let pem = key.to_pkcs8_pem()?;
    let mut file = create_private_file(path)?;
    file.write_all(pem.as_bytes())
        .map_err(|error| Error::io("write", path, error))
}

/// Generates subject keys of one algorithm.
///
/// DSA keys from one generator share their domain parameters (p, q, g), which FIPS 186-4
/// allows for a group of keys and which take seconds to generate: they are generated with
/// the first key, and each key has its own private value. A generator made for one key
/// generates fresh parameters for it.
#[derive(Debug)]
pub struct SubjectKeyGenerator {
    algorithm: KeyAlgorithm,
    dsa_parameters: OnceLock<dsa::Components>,
}

impl SubjectKeyGenerator {
    /// A generator of `algorithm` keys.
    pub fn new(algorithm: KeyAlgorithm) -> Self {
        Self {
            algorithm,
            dsa_parameters: OnceLock::new(),
        }
    }

    /// The algorithm of the keys generated.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Generates a key pair.
    pub fn generate(&self) -> Result<SubjectKeyPair, Error> {
        let key = match self.algorithm {
            KeyAlgorithm::Dsa2048 => {
                let parameters = self.dsa_parameters.get_or_init(|| {
                    dsa::Components::generate(&mut OsRng, dsa::KeySize::DSA_2048_256)
                });
                let key = dsa::SigningKey::generate(&mut OsRng, parameters.clone());
                let spki_der = key.verifying_key().to_public_key_der().map_err(|error| {
                    KeyError::Generation {
                        algorithm: self.algorithm.name(),
                        source: Cause::new(error),
                    }
                })?;
                let public_key = SubjectPublicKey::from_der(spki_der.as_bytes()).map_err(|_| {
                    KeyError::Generation {
                        algorithm: self.algorithm.name(),
                        source: Cause::message("the DSA key generated fails its own checks"),
                    }
                })?;
                Subject::Dsa { key, public_key }
            }
            other => Subject::Rcgen(other.generate()?),
        };
        Ok(SubjectKeyPair(key))
    }
}

/// A key pair generated for a subject: its certificate certifies the public key, and the
/// subject receives the private key as plain PKCS#8 PEM.
pub struct SubjectKeyPair(Subject);

enum Subject {
    /// A key rcgen knows.
    Rcgen(KeyPair),
    /// A DSA key, with its public key as certificates carry it.
    Dsa {
        key: dsa::SigningKey,
        public_key: SubjectPublicKey,
    },
}

impl SubjectKeyPair {
    /// Generates one key pair of `algorithm`.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, Error> {
        SubjectKeyGenerator::new(algorithm).generate()
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        match &self.0 {
            Subject::Rcgen(key) => rcgen::PublicKeyData::subject_public_key_info(key),
            Subject::Dsa { public_key, .. } => public_key.der().to_vec(),
        }
    }

    /// The public key as the certificate builder takes it.
    pub(crate) fn certified(&self) -> CertifiedKey<'_> {
        match &self.0 {
            Subject::Rcgen(key) => CertifiedKey::Rcgen(key),
            Subject::Dsa { public_key, .. } => public_key.certified(),
        }
    }

    /// The private key as unencrypted PKCS#8 PEM (`PRIVATE KEY`), as openssl reads it.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        match &self.0 {
            Subject::Rcgen(key) => Ok(Zeroizing::new(key.serialize_pem())),
            Subject::Dsa { key, .. } => {
                use pkcs8::EncodePrivateKey;
                key.to_pkcs8_pem(LineEnding::LF)
                    .map_err(|error| Error::encoding("encode the DSA key as PKCS#8", error))
            }
        }
    }
}

impl fmt::Debug for SubjectKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKeyPair([secret elided])")
    }
}

/// Writes `key` to a new 0600 file as encrypted PKCS#8 PEM.
pub fn write_encrypted_key(
    path: &Path,
    key: &KeyPair,
    passphrase: &Passphrase,
) -> Result<(), Error> {
    let der = Zeroizing::new(key.serialize_der());
    let info = PrivateKeyInfo::from_der(&der)
        .map_err(|error| Error::encoding("encode the CA key as PKCS#8", error))?;
    let mut salt = [0_u8; 16];
    let mut iv = [0_u8; 16];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut iv);
    // N=2^14, r=8 needs 16 MiB: OpenSSL 3 refuses scrypt above 32 MiB by default, and
    // N=2^15 (the pkcs8 crate's default) is just over it with OpenSSL's accounting.
    let cost = pkcs8::pkcs5::scrypt::Params::new(SCRYPT_LOG_N, 8, 1, 32).map_err(|error| {
        Error::encoding(
            "choose scrypt parameters",
            Cause::message(error.to_string()),
        )
    })?;
    let params =
        pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(cost, &salt, &iv).map_err(|error| {
            Error::encoding(
                "choose scrypt parameters",
                Cause::message(error.to_string()),
            )
        })?;
    let encrypted = info
        .encrypt_with_params(params, passphrase.as_bytes())
        .map_err(|error| Error::encoding("encrypt the CA key", error))?;
    let pem = encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|error| Error::encoding("encode the CA key as PEM", error))?;
    write_private_file(path, pem.as_bytes())
}

/// Reads an encrypted PKCS#8 PEM key file.
pub fn read_encrypted_key(path: &Path, passphrase: &Passphrase) -> Result<KeyPair, Error> {
    let bad = |reason: String| KeyError::BadKeyFile {
        path: path.to_owned(),
        reason,
    };
    let pem = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|error| Error::io("read", path, error))?,
    );
    let (label, document) =
        SecretDocument::from_pem(&pem).map_err(|error| bad(format!("not PEM: {error}")))?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(bad(format!(
            "PEM label is {label:?}, expected \"ENCRYPTED PRIVATE KEY\""
        ))
        .into());
    }
    let encrypted = EncryptedPrivateKeyInfo::try_from(document.as_bytes())
        .map_err(|error| bad(format!("not encrypted PKCS#8: {error}")))?;
    let wrong = || KeyError::WrongPassphrase {
        path: path.to_owned(),
    };
    // A wrong passphrase almost always fails the CBC padding check; when the padding
    // happens to pass, the plaintext is garbage and fails to parse as a key instead.
    let plain = encrypted
        .decrypt(passphrase.as_bytes())
        .map_err(|_| wrong())?;
    KeyPair::try_from(plain.as_bytes()).map_err(|_| wrong().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_key_round_trips_and_wrong_passphrase_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let passphrase = Passphrase::new("correct horse battery");
        write_encrypted_key(&path, &key, &passphrase).unwrap();
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let back = read_encrypted_key(&path, &passphrase).unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        let error = read_encrypted_key(&path, &Passphrase::new("wrong horse battery")).unwrap_err();
        assert!(
            matches!(error, Error::Key(KeyError::WrongPassphrase { .. })),
            "{error}"
        );
        let error = write_encrypted_key(&path, &key, &passphrase).unwrap_err();
        assert!(
            matches!(error, Error::Key(KeyError::KeyFileExists { .. })),
            "{error}"
        );
    }

    #[test]
    fn passphrase_debug_is_elided_and_short_ones_refused() {
        let passphrase = Passphrase::new("hunter2");
        assert_eq!(format!("{passphrase:?}"), "[secret elided]");
        assert!(passphrase.check_strength().is_err());
    }

    #[test]
    fn algorithm_names_parse() {
        assert_eq!(
            "P-384".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP384
        );
        assert_eq!(
            "dsa2048".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::Dsa2048
        );
        assert!("dsa1024".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn dsa_is_for_subjects_and_its_key_file_is_pkcs8() {
        assert!(!KeyAlgorithm::Dsa2048.suits_ca());
        assert!(matches!(
            KeyAlgorithm::Dsa2048.generate(),
            Err(Error::Key(KeyError::UnsupportedAlgorithm { .. }))
        ));
        let generator = SubjectKeyGenerator::new(KeyAlgorithm::Dsa2048);
        let (first, second) = (generator.generate().unwrap(), generator.generate().unwrap());
        assert_ne!(first.public_key_der(), second.public_key_der());
        let pem = first.to_pkcs8_pem().unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            pem.as_str()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dsa.key");
        write_plain_key(&path, &first).unwrap();
        let mode = std::fs::metadata(&path).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        assert_eq!(format!("{first:?}"), "SubjectKeyPair([secret elided])");
    }
}
