//! Helpers shared by the integration tests: a CA made by the real binary in a temporary
//! directory, and the external tools the interop tests call.

#![allow(dead_code, reason = "each test file uses a different subset")]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test helper fails the test by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) const PASSPHRASE: &str = "correct horse battery staple";

/// The binary under test.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wardseal-pki"))
}

/// Fails (never skips) when a tool the test needs is missing, naming the fix.
pub(crate) fn require_tool(tool: &str, fix: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| panic!("`{tool}` is not installed; {fix}"))
}

pub(crate) fn openssl() -> PathBuf {
    require_tool(
        "openssl",
        "run `apt-get install openssl` (or ./scripts/test, which installs it)",
    )
}

/// The directory with pkilint's `lint_pkix_cert` and `lint_crl`.
pub(crate) fn pkilint_bin() -> PathBuf {
    let dir = std::env::var_os("WARDSEAL_PKILINT_BIN").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            );
            target.join("pkilint-venv/bin")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("lint_pkix_cert").is_file() && dir.join("lint_crl").is_file(),
        "pkilint is not installed in {}; run ./scripts/test once (it installs pkilint, pinned, into a \
         venv) or set WARDSEAL_PKILINT_BIN to the directory holding lint_pkix_cert",
        dir.display()
    );
    dir
}

/// pkilint 0.13 checks URIs with `validators.url` 0.22 (pinned by pkilint), which only
/// accepts URLs with an authority (`scheme://host`) and so flags every URN, including
/// RFC 3986/8141-conformant ones like `urn:uuid:…` and the device SAN
/// `urn:epc:id:sgtin:…` that DESIGN.md requires. That one finding is expected, and only
/// that one; everything else must be clean.
pub(crate) const PKILINT_URN_FALSE_POSITIVE: &str =
    "pkix.invalid_uri_syntax (ERROR): Invalid URI syntax: \"urn:epc:id:sgtin:";

/// pkilint's ERROR, WARNING and FATAL findings on `file`, trimmed; its exit code must agree.
pub(crate) fn pkilint_findings(tool: &str, args: &[&str], file: &Path) -> Vec<String> {
    let output = run(Command::new(pkilint_bin().join(tool)).args(args).arg(file));
    let report = text(&output.stdout);
    assert!(
        output.status.code().is_some(),
        "{tool} crashed: {}",
        text(&output.stderr)
    );
    let findings: Vec<String> = report
        .lines()
        .filter(|line| {
            line.contains("(ERROR)") || line.contains("(WARNING)") || line.contains("(FATAL)")
        })
        .map(|line| line.trim().to_owned())
        .collect();
    // Exit code = number of findings at or above the level: the two must agree.
    assert_eq!(
        output.status.code(),
        Some(i32::try_from(findings.len()).unwrap()),
        "{tool} {}: {report}{}",
        file.display(),
        text(&output.stderr)
    );
    findings
}

/// Runs a command and returns its output, with stdout and stderr as text for messages.
pub(crate) fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A CA created with `wardseal-pki init` in a temporary directory.
pub(crate) struct TestCa {
    pub(crate) temp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) passphrase_file: PathBuf,
    pub(crate) environment: Vec<(String, String)>,
}

impl TestCa {
    /// A CA with a CRL URL (so certificates carry a distribution point).
    pub(crate) fn new() -> Self {
        Self::with_init_args(&["--crl-url", "http://127.0.0.1:8099/crl/issuing.crl"])
    }

    pub(crate) fn with_init_args(extra: &[&str]) -> Self {
        let ca = Self::uninitialised();
        let mut args = vec!["init", "--organisation", "St Example Hospital"];
        args.extend_from_slice(extra);
        ca.ok(&args);
        ca
    }

    pub(crate) fn uninitialised() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("ca");
        let passphrase_file = temp.path().join("passphrase");
        std::fs::write(&passphrase_file, format!("{PASSPHRASE}\n")).unwrap();
        Self {
            temp,
            dir,
            passphrase_file,
            environment: Vec::new(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--ca-dir")
            .arg(&self.dir)
            .arg("--passphrase-file")
            .arg(&self.passphrase_file)
            .arg("--actor")
            .arg("test")
            .args(args)
            .env_remove("WARDSEAL_CA_DIR")
            .current_dir(self.temp.path());
        for (name, value) in &self.environment {
            command.env(name, value);
        }
        command
    }

    pub(crate) fn output(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Runs and requires success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "wardseal-pki {args:?} failed: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs and requires failure; returns stderr + stdout.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            !output.status.success(),
            "wardseal-pki {args:?} should have failed: {}",
            text(&output.stdout)
        );
        format!("{}{}", text(&output.stderr), text(&output.stdout))
    }

    /// Issues a certificate with a generated key; returns (serial, certificate path, key path).
    pub(crate) fn issue(&self, name: &str, args: &[&str]) -> (String, PathBuf, PathBuf) {
        let certificate = self.path(&format!("{name}.crt"));
        let key = self.path(&format!("{name}.key"));
        let mut all = vec!["--json", "issue"];
        all.extend_from_slice(args);
        let certificate_arg = certificate.to_str().unwrap().to_owned();
        let key_arg = key.to_str().unwrap().to_owned();
        all.extend_from_slice(&["--out", &certificate_arg, "--key-out", &key_arg]);
        let json: serde_json::Value = serde_json::from_str(&self.ok(&all)).unwrap();
        (
            json["serial"].as_str().unwrap().to_owned(),
            certificate,
            key,
        )
    }

    pub(crate) fn issue_device(&self, name: &str, epc: &str) -> (String, PathBuf, PathBuf) {
        let mut args = device_args(epc);
        args.extend(["--ward", "ward-7"]);
        self.issue(name, &args)
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn list(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["--json", "list"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

/// Makes a P-256 key (`key`) and a CSR for it (`csr`) with `openssl req`; `options` give
/// the subject and anything else.
pub(crate) fn openssl_p256_csr(key: &Path, csr: &Path, options: &[&str]) {
    let output = run(Command::new(openssl())
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(options)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(csr));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Fails the test unless `output` succeeded, showing what `what` printed; returns its
/// standard output.
pub(crate) fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Fails the test unless openssl verifies `certificate` with the CA's chain (and `crl`).
pub(crate) fn assert_openssl_verifies(ca: &TestCa, certificate: &Path, crl: Option<&Path>) {
    succeeded("openssl verify", &openssl_verify(ca, certificate, crl));
}

/// Fails the test unless `output` (a command's stdout or stderr) says `needle`.
pub(crate) fn assert_says(output: &[u8], needle: &str) {
    let said = text(output);
    assert!(said.contains(needle), "expected {needle:?} in: {said}");
}

/// `issue` arguments for device `epc` in group 3 under rule 128.
pub(crate) fn device_args(epc: &str) -> Vec<&str> {
    vec![
        "--profile",
        "device",
        "--epc",
        epc,
        "--group",
        "3",
        "--rule",
        "128",
    ]
}

/// `openssl verify` with the CA chain, optionally checking the CRL.
pub(crate) fn openssl_verify(ca: &TestCa, certificate: &Path, crl: Option<&Path>) -> Output {
    let mut command = Command::new(openssl());
    command
        .arg("verify")
        .arg("-CAfile")
        .arg(ca.file("root.crt"))
        .arg("-untrusted")
        .arg(ca.file("issuing.crt"));
    if let Some(crl) = crl {
        command.arg("-crl_check").arg("-CRLfile").arg(crl);
    }
    command.arg(certificate);
    run(&mut command)
}

/// One identity per profile, as `issue` arguments.
pub(crate) fn profiles() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "device",
            vec![
                "--profile",
                "device",
                "--epc",
                "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
                "--group",
                "3",
                "--rule",
                "128",
            ],
        ),
        (
            "collector",
            vec![
                "--profile",
                "collector",
                "--subject-id",
                "ward-7",
                "--group",
                "3",
                "--rule",
                "128",
                "--dns",
                "collector.ward-7.hospital.example",
                "--ip",
                "127.0.0.1",
            ],
        ),
        (
            "storage",
            vec!["--profile", "storage", "--dns", "storage.hospital.example"],
        ),
        (
            "staff",
            vec![
                "--profile",
                "staff",
                "--subject-id",
                "staff-0042",
                "--email",
                "a.doctor@hospital.example",
            ],
        ),
        (
            "patient",
            vec!["--profile", "patient", "--subject-id", "patient-7f3a"],
        ),
        (
            "admin",
            vec![
                "--profile",
                "admin",
                "--subject-id",
                "it-admin-1",
                "--ethereum-address",
                "0x52908400098527886E0F7030069857D2E4169EE7",
            ],
        ),
        (
            "authority",
            vec![
                "--profile",
                "authority",
                "--subject-id",
                "lab-0007",
                "--authority-kind",
                "laboratory",
            ],
        ),
    ]
}
