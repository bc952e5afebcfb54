//! `batch` throughput: 10,000 devices with generated P-256 keys, against the same work
//! done with one `openssl req -x509 -CA …` call per device (1,000 of them, scaled), in the
//! same run. Prints the figures; asserts nothing about speed.
//!
//! `cargo bench -p wardseal-pki --bench batch`; `WARDSEAL_BENCH_DEVICES` and
//! `WARDSEAL_BENCH_OPENSSL` change the counts.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark reports by printing and stops on failure"
)]

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId};
use wardseal_pki::batch::BatchOptions;
use wardseal_pki::ca::{Ca, InitOptions, Secrets};
use wardseal_pki::key::{KeyAlgorithm, SecretSource};

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn epc(serial: usize) -> Sgtin96 {
    format!("urn:epc:tag:sgtin-96:3.0614141.812345.{serial}")
        .parse()
        .unwrap()
}

fn main() {
    let devices = count("WARDSEAL_BENCH_DEVICES", 10_000);
    let openssl_devices = count("WARDSEAL_BENCH_OPENSSL", 1_000);
    let temp = tempfile::tempdir().unwrap();
    let passphrase = temp.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple").unwrap();
    let secrets = Secrets {
        passphrase: Some(SecretSource::File(passphrase.clone())),
        pin: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = temp.path().join("ca");
    let mut options = InitOptions::new(&dir, "Bench Hospital");
    options.crl_url = Some("http://127.0.0.1:8099/crl".into());
    let ca = runtime
        .block_on(Ca::init(&options, &secrets, "bench"))
        .unwrap();

    let mut csv = String::from("epc,group,rule,ward\n");
    for i in 0..devices {
        writeln!(csv, "{},3,128,ward-{}", epc(i).tag_uri(), i % 12).unwrap();
    }
    let csv_path = temp.path().join("fleet.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let batch = BatchOptions {
        csv: csv_path,
        out_dir: temp.path().join("fleet"),
        algorithm: KeyAlgorithm::EcdsaP256,
        validity_days: None,
        threads: 0,
    };
    let started = Instant::now();
    let signing = ca.unlock(&secrets).unwrap();
    let report = runtime.block_on(signing.batch(&batch, "bench")).unwrap();
    let ours = started.elapsed().as_secs_f64();
    assert_eq!(report.issued, devices);
    let ours_rate = devices as f64 / ours;

    // openssl: the same certificate content (SAN URI, EKU, KU, identity extension, CDP),
    // key generated and signed by the same issuing CA key, one process per device.
    let plain_key = temp.path().join("issuing-plain.pem");
    let output = Command::new("openssl")
        .args(["pkey", "-passin"])
        .arg(format!("file:{}", passphrase.display()))
        .arg("-in")
        .arg(dir.join("issuing.key"))
        .arg("-out")
        .arg(&plain_key)
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = temp.path().join("openssl");
    std::fs::create_dir(&out).unwrap();
    let started = Instant::now();
    for i in 0..openssl_devices {
        let epc = epc(devices + i);
        let identity = Identity::device(epc.clone(), GroupId(3), RuleId(128));
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "730",
            ])
            .arg("-CA")
            .arg(dir.join("issuing.crt"))
            .arg("-CAkey")
            .arg(&plain_key)
            .arg("-keyout")
            .arg(out.join(format!("{i}.key")))
            .arg("-out")
            .arg(out.join(format!("{i}.crt")))
            .args([
                "-subj",
                &format!("/O=Bench Hospital/CN={}", epc.pure_identity_uri()),
            ])
            .args([
                "-addext",
                &format!("subjectAltName=URI:{}", epc.pure_identity_uri()),
            ])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .args(["-addext", "extendedKeyUsage=clientAuth"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args([
                "-addext",
                "crlDistributionPoints=URI:http://127.0.0.1:8099/crl",
            ])
            .args([
                "-addext",
                &format!(
                    "{}=DER:{}",
                    wardseal_core::identity::IDENTITY_EXTENSION_OID_STRING,
                    hex::encode(identity.to_der())
                ),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let theirs = started.elapsed().as_secs_f64();
    let theirs_rate = openssl_devices as f64 / theirs;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .map(|line| line.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    println!(
        "machine: {} cores ({}), {cpu}",
        std::thread::available_parallelism().map_or(1, usize::from),
        std::env::consts::ARCH
    );
    println!(
        "wardseal-pki batch: {devices} devices with generated P-256 keys in {ours:.2} s = {ours_rate:.0} certificates/s"
    );
    println!(
        "openssl req -x509 -CA, one call per device: {openssl_devices} in {theirs:.2} s = {theirs_rate:.0} certificates/s \
         ({:.1} s for {devices}, scaled)",
        devices as f64 / theirs_rate
    );
    println!("ratio: {:.1}x", ours_rate / theirs_rate);
    // Machine-readable figures for scripts/bench-report (`BENCH <name> <value> <unit>`).
    println!("BENCH certificates_per_s {ours_rate:.1} certificates/s");
    println!("BENCH openssl_per_s {theirs_rate:.1} certificates/s");
    println!("BENCH speedup_vs_openssl {:.2} x", ours_rate / theirs_rate);
}
