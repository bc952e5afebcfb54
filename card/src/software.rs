//! [`SoftwareSigner`]: a key kept in an encrypted PKCS#8 file, the embedded default when
//! no token or card is present.
//!
//! Files are `ENCRYPTED PRIVATE KEY` PEM (PBES2: scrypt N=2^14 r=8 + AES-256-CBC), created with mode
//! 0600 and never overwritten; openssl reads them (`openssl pkey -in F -passin …`), and
//! keys openssl writes with `openssl pkcs8 -topk8 -v2 aes-256-cbc` open here.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use pkcs8::der::Decode as _;
use pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rand_core::{OsRng, RngCore as _};
use sha2::Sha256;
use signature::hazmat::PrehashSigner as _;
use signature::{SignatureEncoding as _, Signer as _};
use wardseal_core::hash::Hash;
use zeroize::Zeroizing;

use crate::Error;
use crate::algorithm::{EcdsaEncoding, SignatureAlgorithm};
use crate::secret::Passphrase;
use crate::signer::Signer;

/// The kinds of key a [`SoftwareSigner`] can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA on NIST P-256 (the default; what PIV cards and SoftHSM do).
    EcdsaP256,
    /// RSA with this many bits (2048 or more), signing with PSS.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// Ed25519.
    Ed25519,
    /// DSA with FIPS 186-4 (L, N) = (2048, 256) parameters. Generating the parameters
    /// takes seconds.
    Dsa2048,
}

enum Key {
    EcdsaP256(p256::ecdsa::SigningKey),
    Rsa(rsa::RsaPrivateKey),
    Ed25519(ed25519_dalek::SigningKey),
    Dsa(dsa::SigningKey),
}

/// A private key held in memory, loaded from (or saved to) an encrypted PKCS#8 file.
pub struct SoftwareSigner {
    key: Key,
    algorithm: SignatureAlgorithm,
    public_key: Vec<u8>,
    certificate: Option<Vec<u8>>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("algorithm", &self.algorithm)
            .field("key", &"[secret elided]")
            .field("has_certificate", &self.certificate.is_some())
            .finish()
    }
}

const OID_EC_PUBLIC_KEY: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_DSA: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");

impl SoftwareSigner {
    /// Generates a new key of `kind` from the operating system's random source.
    pub fn generate(kind: KeyKind) -> Result<Self, Error> {
        let key = match kind {
            KeyKind::EcdsaP256 => Key::EcdsaP256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyKind::Rsa { bits } if bits >= 2048 => Key::Rsa(
                rsa::RsaPrivateKey::new(&mut OsRng, bits)
                    .map_err(|error| Error::KeyEncoding(error.to_string()))?,
            ),
            KeyKind::Rsa { bits } => {
                return Err(Error::UnsupportedKey(format!(
                    "RSA-{bits} is too short; use 2048 bits or more"
                )));
            }
            KeyKind::Ed25519 => Key::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyKind::Dsa2048 => {
                let components = dsa::Components::generate(&mut OsRng, dsa::KeySize::DSA_2048_256);
                Key::Dsa(dsa::SigningKey::generate(&mut OsRng, components))
            }
        };
        Self::from_key(key)
    }

    fn from_key(key: Key) -> Result<Self, Error> {
        let encoding = |error: pkcs8::spki::Error| Error::KeyEncoding(error.to_string());
        let (algorithm, public_key) = match &key {
            Key::EcdsaP256(key) => (
                SignatureAlgorithm::EcdsaP256Sha256,
                key.verifying_key().to_public_key_der().map_err(encoding)?,
            ),
            Key::Rsa(key) => (
                SignatureAlgorithm::RsaPssSha256,
                key.to_public_key().to_public_key_der().map_err(encoding)?,
            ),
            Key::Ed25519(key) => (
                SignatureAlgorithm::Ed25519,
                key.verifying_key().to_public_key_der().map_err(encoding)?,
            ),
            Key::Dsa(key) => (
                SignatureAlgorithm::DsaSha256,
                key.verifying_key().to_public_key_der().map_err(encoding)?,
            ),
        };
        Ok(Self {
            key,
            algorithm,
            public_key: public_key.into_vec(),
            certificate: None,
        })
    }

    /// Reads a key file written by [`SoftwareSigner::save`] or by openssl (encrypted
    /// PKCS#8, PEM or DER).
    pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Self, Error> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| Error::KeyFile {
            action: "read",
            path: path.to_owned(),
            source,
        })?);
        let decrypt_error = || Error::KeyDecrypt {
            path: path.to_owned(),
        };
        let der = match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
                let (label, document) =
                    pkcs8::SecretDocument::from_pem(text).map_err(|_| decrypt_error())?;
                if label != "ENCRYPTED PRIVATE KEY" {
                    return Err(decrypt_error());
                }
                document
            }
            _ => pkcs8::SecretDocument::try_from(bytes.as_slice()).map_err(|_| decrypt_error())?,
        };
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::from_der(der.as_bytes())
            .map_err(|_| decrypt_error())?;
        let plain = encrypted
            .decrypt(passphrase.expose().as_bytes())
            .map_err(|_| decrypt_error())?;
        Self::from_pkcs8_der(plain.as_bytes())
    }

    /// Builds a signer from an unencrypted PKCS#8 `PrivateKeyInfo` (DER).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let encoding = |error: pkcs8::Error| Error::KeyEncoding(error.to_string());
        let info = pkcs8::PrivateKeyInfo::from_der(der)
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        let key = match info.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                Key::EcdsaP256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(|_| {
                    Error::UnsupportedKey("EC keys must be on curve P-256".to_owned())
                })?)
            }
            OID_RSA_ENCRYPTION => {
                Key::Rsa(rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(encoding)?)
            }
            OID_ED25519 => {
                Key::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(encoding)?)
            }
            OID_DSA => Key::Dsa(dsa::SigningKey::try_from(info).map_err(encoding)?),
            other => {
                return Err(Error::UnsupportedKey(format!(
                    "key algorithm {other}; wardseal signs with P-256, RSA, Ed25519 or DSA"
                )));
            }
        };
        Self::from_key(key)
    }

    /// Writes the key to `path` as encrypted PKCS#8 PEM, mode 0600. Refuses to replace an
    /// existing file.
    pub fn save(&self, path: &Path, passphrase: &Passphrase) -> Result<(), Error> {
        let encoding = |error: pkcs8::Error| Error::KeyEncoding(error.to_string());
        let plain = match &self.key {
            Key::EcdsaP256(key) => key.to_pkcs8_der(),
            Key::Rsa(key) => key.to_pkcs8_der(),
            Key::Ed25519(key) => ed25519_pkcs8_v1(key),
            Key::Dsa(key) => key.to_pkcs8_der(),
        }
        .map_err(encoding)?;
        let info = pkcs8::PrivateKeyInfo::from_der(plain.as_bytes())
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        // scrypt with N = 2^14, r = 8 (16 MiB): pkcs8's default (2^15, 32 MiB) is over
        // openssl's default scrypt memory limit, and openssl then cannot read the file.
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut iv);
        let scrypt = pkcs8::pkcs5::scrypt::Params::new(14, 8, 1, 32)
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        let parameters = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &salt, &iv)
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        let encrypted = info
            .encrypt_with_params(parameters, passphrase.expose().as_bytes())
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        let pem = encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        let file_error = |source| Error::KeyFile {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(file_error)?;
        file.write_all(pem.as_bytes()).map_err(file_error)?;
        file.sync_all().map_err(file_error)
    }

    /// Attaches the key's certificate (DER), returned by [`Signer::certificate_der`].
    pub fn with_certificate(mut self, certificate_der: Vec<u8>) -> Self {
        self.certificate = Some(certificate_der);
        self
    }

    /// Chooses the ECDSA signature encoding (DER by default). No effect on other keys.
    pub fn with_ecdsa_encoding(mut self, encoding: EcdsaEncoding) -> Self {
        if let Key::EcdsaP256(_) = self.key {
            self.algorithm = encoding.algorithm();
        }
        self
    }
}

impl Signer for SoftwareSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key
    }

    fn sign_digest(&self, digest: &Hash) -> Result<Vec<u8>, Error> {
        let failed = |error: signature::Error| Error::Signing(error.to_string());
        let digest = digest.as_bytes();
        Ok(match &self.key {
            Key::EcdsaP256(key) => {
                let signature: p256::ecdsa::Signature = key.sign_prehash(digest).map_err(failed)?;
                match self.algorithm {
                    SignatureAlgorithm::EcdsaP256Sha256Raw => signature.to_bytes().to_vec(),
                    _ => signature.to_der().as_bytes().to_vec(),
                }
            }
            Key::Rsa(key) => key
                .sign_with_rng(&mut OsRng, rsa::Pss::new_with_salt::<Sha256>(32), digest)
                .map_err(|error| Error::Signing(error.to_string()))?,
            Key::Ed25519(_) => {
                return Err(Error::DigestUnsupported {
                    algorithm: self.algorithm,
                });
            }
            Key::Dsa(key) => key.sign_prehash(digest).map_err(failed)?.to_vec(),
        })
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.key {
            Key::Ed25519(key) => Ok(key
                .try_sign(message)
                .map_err(|error| Error::Signing(error.to_string()))?
                .to_vec()),
            _ => self.sign_digest(&Hash::sha256(message)),
        }
    }
}

/// Ed25519 as PKCS#8 v1 (RFC 8410 `CurvePrivateKey`, no public key), the form openssl
/// writes and reads; ed25519-dalek writes v2 with the public key, which openssl 3.0 refuses
/// inside an encrypted file.
fn ed25519_pkcs8_v1(key: &ed25519_dalek::SigningKey) -> pkcs8::Result<pkcs8::SecretDocument> {
    let mut curve_private_key = Zeroizing::new(Vec::with_capacity(34));
    curve_private_key.extend_from_slice(&[0x04, 0x20]);
    curve_private_key.extend_from_slice(key.as_bytes());
    let algorithm = pkcs8::AlgorithmIdentifierRef {
        oid: OID_ED25519,
        parameters: None,
    };
    pkcs8::SecretDocument::try_from(pkcs8::PrivateKeyInfo::new(algorithm, &curve_private_key))
}
