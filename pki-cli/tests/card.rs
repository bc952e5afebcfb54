//! `wardseal-pki card …` against a real SoftHSM2 token, checked by pkcs11-tool and openssl.
//!
//! Each test has its own token store (wardseal-softhsm, in a temporary directory) and
//! its own CA; the binary is the only process that loads the module, with
//! `SOFTHSM2_CONF` naming the store. Missing tools fail the test, never skip it.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestCa, assert_says, openssl, openssl_verify, require_tool, run, succeeded, text};
use secrecy::ExposeSecret;
use wardseal_core::identity::PATIENT_DATA_SIGNING_OID_STRING;
use wardseal_softhsm::{SoftHsm, Token, TokenSpec};

struct Card {
    hsm: SoftHsm,
    token: Token,
    ca: TestCa,
    pin_file: PathBuf,
}

impl Card {
    fn new() -> Self {
        require_tool(
            "pkcs11-tool",
            "run `apt-get install opensc` (or ./scripts/test, which installs it)",
        );
        let hsm = SoftHsm::new().unwrap();
        let token = hsm.init_token(&TokenSpec::new("patient-0001")).unwrap();
        let mut ca = TestCa::new();
        ca.environment.push((
            "SOFTHSM2_CONF".into(),
            hsm.conf_path().display().to_string(),
        ));
        let pin_file = ca.path("card.pin");
        std::fs::write(&pin_file, format!("{}\n", token.user_pin().expose_secret())).unwrap();
        Self {
            hsm,
            token,
            ca,
            pin_file,
        }
    }

    fn module(&self) -> String {
        self.hsm.module_path().display().to_string()
    }

    /// `wardseal-pki card --module … --card-pin-file PIN_FILE ARGS…`.
    fn card(&self, pin_file: &Path, args: &[&str]) -> Output {
        let mut command = self.ca.command(&["card", "--module", &self.module()]);
        command.arg("--card-pin-file").arg(pin_file).args(args);
        run(&mut command)
    }

    fn card_ok(&self, args: &[&str]) -> String {
        succeeded(&format!("card {args:?}"), &self.card(&self.pin_file, args))
    }

    /// Enrolls the patient; returns the certificate's path and the command's JSON.
    fn enroll(&self) -> (PathBuf, serde_json::Value) {
        let certificate = self.ca.path("patient.crt");
        let output = self.card(
            &self.pin_file,
            &[
                "--json",
                "enroll",
                "--patient",
                "patient-7f3a",
                "--token",
                "patient-0001",
                "--ward",
                "ward-7",
                "--out",
                certificate.to_str().unwrap(),
            ],
        );
        succeeded("card enroll", &output);
        (certificate, serde_json::from_slice(&output.stdout).unwrap())
    }
}

fn openssl_ok(args: &[&str]) -> String {
    succeeded(
        &format!("openssl {args:?}"),
        &run(Command::new(openssl()).args(args)),
    )
}

/// `openssl dgst -sha256 -verify`: whether `signature` over `data` verifies with
/// `public_key` (PEM).
fn openssl_dgst_verify(public_key: &Path, signature: &Path, data: &Path) -> Output {
    run(Command::new(openssl())
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(signature)
        .arg(data))
}

#[test]
fn enroll_then_sign_with_the_card_and_openssl_agrees() {
    let card = Card::new();
    let ca = &card.ca;
    let (certificate, enrolled) = card.enroll();
    let serial = enrolled["serial"].as_str().unwrap();
    assert_eq!(enrolled["token_label"], "patient-0001");
    assert_eq!(enrolled["key_id"], "01");

    // pkcs11-tool, independently: the key pair and the certificate, tied by label and id.
    let objects = card.hsm.list_objects(&card.token).unwrap();
    for object in [
        "Private Key Object; EC",
        "Public Key Object; EC",
        "Certificate Object; type = X.509 cert",
    ] {
        assert!(objects.contains(object), "{object} missing:\n{objects}");
    }
    assert_eq!(
        objects.matches("label:      wardseal patient").count(),
        3,
        "{objects}"
    );
    assert_eq!(objects.matches("ID:         01").count(), 3, "{objects}");

    // The patient profile: openssl sees nonRepudiation and the patient-data-signing EKU,
    // and verifies the chain; the CA's own verify and inventory agree.
    let described = openssl_ok(&[
        "x509",
        "-in",
        certificate.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(described.contains("Non Repudiation"), "{described}");
    assert!(
        described.contains(PATIENT_DATA_SIGNING_OID_STRING),
        "{described}"
    );
    assert!(described.contains("CN = patient-7f3a"), "{described}");
    let verified = openssl_verify(ca, &certificate, None);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    ca.ok(&["verify", certificate.to_str().unwrap()]);
    let patients = ca.list(&["--role", "patient"]);
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["serial"], serial);
    assert_eq!(patients[0]["ward"], "ward-7");
    let audit = ca.ok(&["audit", "list"]);
    assert!(audit.contains("card-enroll"), "{audit}");
    assert!(audit.contains("patient-0001"), "{audit}");
    ca.ok(&["audit", "verify"]);

    // card list shows the token and what enroll put on it, whether or not pcscd runs.
    let listing = card.card_ok(&["list"]);
    assert!(listing.contains("\"patient-0001\""), "{listing}");
    assert!(listing.contains(card.token.serial()), "{listing}");
    assert!(
        listing.contains("certificate \"wardseal patient\" id 01"),
        "{listing}"
    );
    assert!(listing.contains("PC/SC readers:"), "{listing}");

    // Sign with the card (chosen by serial this time); openssl verifies with the public
    // key of the enrolled certificate, and so does `card verify`.
    let data = ca.path("reading.json");
    std::fs::write(&data, br#"{"spo2":97,"pulse":64}"#).unwrap();
    let signature = ca.path("reading.sig");
    card.card_ok(&[
        "sign",
        data.to_str().unwrap(),
        "--token",
        card.token.serial(),
        "--out",
        signature.to_str().unwrap(),
    ]);
    let public_key = ca.path("patient.pub");
    std::fs::write(
        &public_key,
        openssl_ok(&[
            "x509",
            "-in",
            certificate.to_str().unwrap(),
            "-pubkey",
            "-noout",
        ]),
    )
    .unwrap();
    let checked = succeeded(
        "openssl dgst -verify",
        &openssl_dgst_verify(&public_key, &signature, &data),
    );
    assert!(checked.contains("Verified OK"), "{checked}");
    let ok = card.card_ok(&[
        "verify",
        data.to_str().unwrap(),
        signature.to_str().unwrap(),
        certificate.to_str().unwrap(),
    ]);
    assert!(ok.starts_with("OK: signed by"), "{ok}");
    assert!(ok.contains("ecdsa-p256-sha256"), "{ok}");

    // One byte changed: exit 1, with the reason.
    std::fs::write(&data, br#"{"spo2":91,"pulse":64}"#).unwrap();
    let output = card.card(
        &card.pin_file,
        &[
            "verify",
            data.to_str().unwrap(),
            signature.to_str().unwrap(),
            certificate.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert_says(&output.stdout, "FAILED: the signature does not verify");
    let openssl_rejects = openssl_dgst_verify(&public_key, &signature, &data);
    assert!(!openssl_rejects.status.success());
}

#[test]
fn card_errors_are_specific() {
    let card = Card::new();
    let wrong = card.ca.path("wrong.pin");
    std::fs::write(&wrong, "000000\n").unwrap();
    let enroll = |pin: &Path, token: &str| {
        let output = card.card(
            pin,
            &["enroll", "--patient", "patient-7f3a", "--token", token],
        );
        assert!(!output.status.success(), "{}", text(&output.stdout));
        text(&output.stderr)
    };
    let stderr = enroll(&wrong, "patient-0001");
    assert!(stderr.contains("refused the PIN"), "{stderr}");
    let stderr = enroll(&card.pin_file, "nobody");
    assert!(
        stderr.contains("no token labelled \"nobody\" or with that serial"),
        "{stderr}"
    );
    assert!(stderr.contains("patient-0001"), "{stderr}");
    // Nothing was issued, and the wrong PIN generated no key.
    assert!(card.ca.list(&["--role", "patient"]).is_empty());
    let objects = card.hsm.list_objects(&card.token).unwrap();
    assert!(!objects.contains("Private Key Object"), "{objects}");

    // A second enrollment with the same key id is refused by the card library.
    card.enroll();
    let stderr = enroll(&card.pin_file, "patient-0001");
    assert!(stderr.contains("already has a key with id 01"), "{stderr}");

    // A locked PIN is named as such.
    card.hsm.lock_user_pin(&card.token).unwrap();
    let stderr = enroll(&card.pin_file, "patient-0001");
    assert!(stderr.contains("is locked"), "{stderr}");

    // No module: the message names the package to install.
    let output =
        run(&mut card
            .ca
            .command(&["card", "--module", "/nonexistent/libpkcs11.so", "list"]));
    assert!(!output.status.success());
    assert_says(&output.stderr, "does not exist; install it");
}

#[test]
fn card_sign_takes_an_encrypted_key_file_too() {
    let ca = TestCa::new();
    let key = ca.path("patient.key");
    // openssl writes the encrypted PKCS#8 file; the passphrase is the one the CLI reads.
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-aes-256-cbc",
        "-pass",
        &format!("file:{}", ca.passphrase_file.display()),
        "-out",
        key.to_str().unwrap(),
    ]);
    let public_key = ca.path("patient.pub");
    openssl_ok(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-passin",
        &format!("file:{}", ca.passphrase_file.display()),
        "-pubout",
        "-out",
        public_key.to_str().unwrap(),
    ]);
    let data = ca.path("reading.json");
    std::fs::write(&data, b"{\"temperature\":\"36.9\"}").unwrap();
    let output = ca.ok(&[
        "card",
        "sign",
        data.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(output.contains("ecdsa-p256-sha256"), "{output}");
    let checked = succeeded(
        "openssl dgst -verify",
        &openssl_dgst_verify(&public_key, &ca.path("reading.json.sig"), &data),
    );
    assert!(checked.contains("Verified OK"), "{checked}");
}
