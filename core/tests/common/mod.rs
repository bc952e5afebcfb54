//! Helpers shared by the interop tests: a scratch directory, and an openssl runner that
//! fails the test (never skips it) when openssl is missing.
#![allow(
    dead_code,
    reason = "each test file uses its own part of these helpers"
)]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test helper fails the test by panicking"
)]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory under the system temporary directory, removed when dropped.
pub(crate) struct Scratch(tempfile::TempDir);

impl Scratch {
    pub(crate) fn new(purpose: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wardseal-{purpose}-"))
            .tempdir()
            .expect("cannot create a temporary directory");
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    pub(crate) fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    /// Runs openssl in this directory and returns its standard output; fails the test if
    /// openssl is missing or reports an error.
    pub(crate) fn openssl(&self, args: &[&str]) -> Vec<u8> {
        let output = match Command::new("openssl")
            .args(args)
            .current_dir(self.0.path())
            .output()
        {
            Ok(output) => output,
            Err(error) if error.kind() == ErrorKind::NotFound => panic!(
                "openssl is not installed; these interop tests need it: install the Debian \
                 package `openssl` (apt-get install openssl)"
            ),
            Err(error) => panic!("cannot run openssl: {error}"),
        };
        assert!(
            output.status.success(),
            "openssl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Generates new FIPS 186-4 DSA domain parameters (p 2048 bits, q 256 bits) into `name`.
    pub(crate) fn dsa_2048_256_params(&self, name: &str) {
        self.openssl(&[
            "genpkey",
            "-quiet",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-pkeyopt",
            "dsa_paramgen_q_bits:256",
            "-out",
            name,
        ]);
    }

    /// [`openssl`](Self::openssl) for commands that print text.
    pub(crate) fn openssl_text(&self, args: &[&str]) -> String {
        String::from_utf8(self.openssl(args)).expect("openssl printed UTF-8")
    }
}

/// A path as openssl's command line takes it.
pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8 here")
}
