//! PINs and passphrases: where they come from, and how they are held.
//!
//! Both are [`SecretString`]s (zeroized on drop) inside newtypes whose `Debug` prints
//! `[secret elided]`. They are read from a file, an environment variable or the terminal,
//! never from a sample config.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::Error;

/// A token's user PIN.
#[derive(Clone)]
pub struct Pin(SecretString);

/// The passphrase of an encrypted key file.
#[derive(Clone)]
pub struct Passphrase(SecretString);

macro_rules! secret_newtype {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Wraps a value already held as a secret.
            pub fn new(secret: SecretString) -> Self {
                Self(secret)
            }

            /// Reads it from `source`.
            pub fn read(source: &SecretSource) -> Result<Self, Error> {
                source.read($what).map(Self)
            }

            /// The secret, for handing to the token or the key-file decryptor.
            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(SecretString::from(value))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[secret elided]")
            }
        }
    };
}

secret_newtype!(Pin, "PIN");

impl Pin {
    /// The PIN in the form cryptoki's `login` takes.
    pub(crate) fn secret(&self) -> &SecretString {
        &self.0
    }
}
secret_newtype!(Passphrase, "passphrase");

/// Where a PIN or passphrase comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum SecretSource {
    /// The first line of a file (trailing newline removed).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A prompt on the controlling terminal, without echo.
    Prompt(String),
    /// A value the caller already holds.
    Value(SecretString),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Env(name) => f.debug_tuple("Env").field(name).finish(),
            Self::Prompt(prompt) => f.debug_tuple("Prompt").field(prompt).finish(),
            Self::Value(_) => f.write_str("Value([secret elided])"),
        }
    }
}

impl SecretSource {
    /// Parses the usual command-line forms: `file:PATH`, `env:NAME`, `prompt`.
    ///
    /// There is deliberately no form for a literal value: command lines are visible to
    /// every user of the machine.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(path) = text.strip_prefix("file:") {
            Some(Self::File(PathBuf::from(path)))
        } else if let Some(name) = text.strip_prefix("env:") {
            Some(Self::Env(name.to_owned()))
        } else if text == "prompt" {
            Some(Self::Prompt("PIN: ".to_owned()))
        } else {
            None
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("file {}", path.display()),
            Self::Env(name) => format!("environment variable {name}"),
            Self::Prompt(_) => "the terminal".to_owned(),
            Self::Value(_) => "the caller".to_owned(),
        }
    }

    fn read(&self, what: &'static str) -> Result<SecretString, Error> {
        let unavailable = |reason: String| Error::SecretUnavailable {
            what,
            source_description: self.describe(),
            reason,
        };
        let text: Zeroizing<String> = match self {
            Self::Value(secret) => return Ok(secret.clone()),
            Self::File(path) => Zeroizing::new(
                std::fs::read_to_string(path).map_err(|error| unavailable(error.to_string()))?,
            ),
            Self::Env(name) => {
                Zeroizing::new(std::env::var(name).map_err(|error| unavailable(error.to_string()))?)
            }
            Self::Prompt(prompt) => Zeroizing::new(
                rpassword::prompt_password(prompt)
                    .map_err(|error| unavailable(error.to_string()))?,
            ),
        };
        let value = text.lines().next().unwrap_or("");
        if value.is_empty() {
            return Err(unavailable("it is empty".to_owned()));
        }
        Ok(SecretString::from(value))
    }
}
