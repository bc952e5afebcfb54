//! The issuing CA key on a SoftHSM2 token, addressed by a `pkcs11:` URI.
//!
//! Each test makes its own token store (private `SOFTHSM2_CONF`, given only to the child
//! processes), generates the key with OpenSC's pkcs11-tool, and drives the binary, so
//! every PKCS#11 module instance lives in its own process.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{
    TestCa, assert_openssl_verifies, assert_says, device_args, require_tool, run, succeeded, text,
};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "246810";

struct Token {
    ca: TestCa,
    conf: PathBuf,
    tokens: PathBuf,
    pin_file: PathBuf,
}

impl Token {
    fn new() -> Self {
        require_tool(
            "softhsm2-util",
            "run `apt-get install softhsm2` (or ./scripts/test, which installs it)",
        );
        require_tool(
            "pkcs11-tool",
            "run `apt-get install opensc` (or ./scripts/test, which installs it)",
        );
        assert!(
            std::path::Path::new(MODULE).is_file(),
            "{MODULE} is missing; run `apt-get install softhsm2` (or ./scripts/test, which installs it)"
        );
        let mut ca = TestCa::uninitialised();
        let tokens = ca.path("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = ca.path("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\n",
                tokens.display()
            ),
        )
        .unwrap();
        ca.environment
            .push(("SOFTHSM2_CONF".into(), conf.display().to_string()));
        let pin_file = ca.path("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        let token = Self {
            ca,
            conf,
            tokens,
            pin_file,
        };
        token.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                "hospital-ca",
                "--pin",
                PIN,
                "--so-pin",
                "13579246",
            ],
        );
        token.generate_key("EC:prime256v1", "issuing", "01");
        token
    }

    fn tool(&self, tool: &str, args: &[&str]) -> String {
        let output = run(Command::new(tool)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf));
        succeeded(&format!("{tool} {args:?}"), &output)
    }

    /// Generates an EC key pair on the token.
    fn generate_key(&self, key_type: &str, label: &str, id: &str) {
        self.tool(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                "hospital-ca",
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                id,
            ],
        );
    }

    /// Issues a staff certificate with a generated key `k`, logging in with `pin_file`.
    fn issue_staff_key(&self, pin_file: &std::path::Path) -> std::process::Output {
        self.command(
            &[
                "issue",
                "--profile",
                "staff",
                "--subject-id",
                "s-1",
                "--key-out",
                "k",
            ],
            pin_file,
        )
    }

    /// Creates the CA with its issuing key at `uri` (`extra` options added).
    fn init(&self, uri: &str, extra: &[&str]) {
        let mut args = vec![
            "init",
            "--organisation",
            "St Example Hospital",
            "--issuing-key",
            uri,
        ];
        args.extend_from_slice(extra);
        let output = self.command(&args, &self.pin_file);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    /// Issues a device certificate for `epc` with a generated key (`extra` options
    /// added), written to `NAME.key` and `NAME.crt`; returns the certificate's path.
    fn issue_device(&self, name: &str, epc: &str, extra: &[&str]) -> PathBuf {
        let certificate = self.ca.path(&format!("{name}.crt"));
        let key = self.ca.path(&format!("{name}.key"));
        let mut args = vec!["issue"];
        args.extend(device_args(epc));
        args.extend_from_slice(extra);
        args.extend([
            "--key-out",
            key.to_str().unwrap(),
            "--out",
            certificate.to_str().unwrap(),
        ]);
        let output = self.command(&args, &self.pin_file);
        assert!(output.status.success(), "{}", text(&output.stderr));
        certificate
    }

    fn uri(&self) -> String {
        format!("pkcs11:token=hospital-ca;object=issuing?module-path={MODULE}")
    }

    fn command(&self, args: &[&str], pin_file: &std::path::Path) -> std::process::Output {
        run(self.ca.command(args).arg("--pin-file").arg(pin_file))
    }

    /// Sets CKF_USER_PIN_LOCKED in the token's object store, as a real token does after
    /// too many wrong PINs (SoftHSM 2.6 never locks by itself).
    fn lock(&self) {
        const FLAGS_RECORD: [u8; 16] = [0, 0, 0, 0, 0x80, 0, 0x53, 0x4b, 0, 0, 0, 0, 0, 0, 0, 2];
        const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;
        let mut locked = false;
        for entry in std::fs::read_dir(&self.tokens).unwrap() {
            let file = entry.unwrap().path().join("token.object");
            let Ok(mut bytes) = std::fs::read(&file) else {
                continue;
            };
            let at = bytes
                .windows(16)
                .position(|window| window == FLAGS_RECORD)
                .unwrap()
                + 16;
            let flags =
                u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()) | CKF_USER_PIN_LOCKED;
            bytes[at..at + 8].copy_from_slice(&flags.to_be_bytes());
            std::fs::write(&file, bytes).unwrap();
            locked = true;
        }
        assert!(
            locked,
            "no token.object found under {}",
            self.tokens.display()
        );
    }
}

#[test]
fn an_issuing_key_on_softhsm_issues_certificates_openssl_verifies() {
    let token = Token::new();
    let ca = &token.ca;
    token.init(&token.uri(), &["--crl-url", "http://127.0.0.1:8099/crl"]);
    assert!(
        !ca.file("issuing.key").exists(),
        "the issuing key must stay on the token"
    );
    assert!(ca.file("root.key").exists());

    let certificate =
        token.issue_device("device", "urn:epc:tag:sgtin-96:3.0614141.812345.6789", &[]);
    assert_openssl_verifies(ca, &certificate, None);

    // A DSA subject key: rcgen builds around a placeholder and the token signs the
    // spliced TBSCertificate.
    let dsa_certificate = token.issue_device(
        "dsa-device",
        "urn:epc:tag:sgtin-96:3.0614141.812345.6790",
        &["--key-algorithm", "dsa2048"],
    );
    assert_openssl_verifies(ca, &dsa_certificate, None);

    // CRLs are signed on the token as well, and openssl takes them.
    let output = token.command(&["crl"], &token.pin_file);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_openssl_verifies(ca, &certificate, Some(&ca.file("crl.pem")));
    // The token's public key is the issuing certificate's.
    let objects = token.tool(
        "pkcs11-tool",
        &[
            "--module",
            MODULE,
            "--token-label",
            "hospital-ca",
            "--list-objects",
        ],
    );
    assert!(objects.contains("issuing"), "{objects}");
}

#[test]
fn a_wrong_pin_and_a_locked_token_get_specific_errors() {
    let token = Token::new();
    token.init(&token.uri(), &[]);

    let wrong = token.ca.path("wrong-pin");
    std::fs::write(&wrong, "000000\n").unwrap();
    let output = token.issue_staff_key(&wrong);
    assert!(!output.status.success());
    assert_says(&output.stderr, "refused the PIN");

    let missing = format!("pkcs11:token=absent;object=issuing?module-path={MODULE}");
    let other = TestCa::uninitialised();
    let output = run(other
        .command(&["init", "--organisation", "X", "--issuing-key", &missing])
        .env("SOFTHSM2_CONF", &token.conf)
        .arg("--pin-file")
        .arg(&token.pin_file));
    assert_says(&output.stderr, "no token labelled \"absent\"");

    token.lock();
    let output = token.issue_staff_key(&token.pin_file);
    assert!(!output.status.success());
    assert_says(&output.stderr, "is locked");
    assert!(!token.ca.path("k").exists());
}

#[test]
fn a_p384_issuing_key_on_softhsm_signs_with_sha384() {
    let token = Token::new();
    token.generate_key("EC:secp384r1", "issuing-384", "02");
    let ca = &token.ca;
    let uri = format!("pkcs11:token=hospital-ca;id=%02?module-path={MODULE}");
    token.init(&uri, &["--algorithm", "p384"]);
    let certificate = ca.path("staff.crt");
    let output = token.command(
        &[
            "issue",
            "--profile",
            "staff",
            "--subject-id",
            "staff-0042",
            "--key-out",
            ca.path("staff.key").to_str().unwrap(),
            "--out",
            certificate.to_str().unwrap(),
        ],
        &token.pin_file,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_openssl_verifies(ca, &certificate, None);
    // Both the issuing certificate (root, P-384 file key) and the leaf (token key) are
    // signed ECDSA with SHA-384.
    for file in [ca.file("issuing.crt"), certificate] {
        let output = run(Command::new(common::openssl())
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&file));
        let described = text(&output.stdout);
        assert!(
            described.contains("Signature Algorithm: ecdsa-with-SHA384"),
            "{}: {described}",
            file.display()
        );
    }
    let issuing = run(Command::new(common::openssl())
        .args(["x509", "-noout", "-text", "-in"])
        .arg(ca.file("issuing.crt")));
    assert_says(&issuing.stdout, "NIST CURVE: P-384");
}
