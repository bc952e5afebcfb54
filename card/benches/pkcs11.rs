//! ECDSA P-256 signatures per second through `Pkcs11Signer` on SoftHSM, beside a raw
//! cryptoki loop on the same key and `openssl speed ecdsap256` on the same machine.
//!
//! Run: `cargo bench -p wardseal-card --bench pkcs11` (needs softhsm2, opensc, openssl).
//! The benchmark re-runs itself in a child process with a private SoftHSM store.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use secrecy::SecretString;
use wardseal_card::pkcs11::TokenSelector;
use wardseal_card::{EcdsaEncoding, KeySelector, Pkcs11Signer, Pkcs11Token, SecretSource, Signer};
use wardseal_core::hash::Hash;
use wardseal_softhsm::{SoftHsm, TokenSpec, run_isolated};

const RUN: Duration = Duration::from_secs(3);
const LABEL: &str = "bench";

/// Runs `sign` on `threads` threads for `RUN`; returns signatures per second.
fn rate(threads: usize, sign: impl Fn(usize) -> Box<dyn FnMut() + Send> + Sync) -> f64 {
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let mut one = sign(thread);
                scope.spawn(move || {
                    let mut count = 0u64;
                    while started.elapsed() < RUN {
                        one();
                        count += 1;
                    }
                    count
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64()
}

fn bench(hsm: &SoftHsm) {
    let token = hsm.init_token(&TokenSpec::new(LABEL)).unwrap();
    hsm.generate_ec_p256(&token, "bench key", &[0x01]).unwrap();
    let card = Pkcs11Token::open(
        hsm.module_path(),
        &TokenSelector::Label(LABEL.into()),
        Some(&SecretSource::Value(token.user_pin().clone())),
    )
    .unwrap();
    let signer = Arc::new(
        Pkcs11Signer::new(&card, &KeySelector::Id(vec![0x01]), EcdsaEncoding::Raw).unwrap(),
    );
    let digest = Hash::sha256(b"batch header");

    // The raw loop: cryptoki alone, one session per thread, same key, same digest.
    // (C_Initialize again on the already-initialised module is refused harmlessly;
    // nothing initialises in parallel.)
    let raw = Pkcs11::new(hsm.module_path()).unwrap();
    let _ = raw.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = raw
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|slot| raw.get_token_info(*slot).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let pin = SecretString::from(token.user_pin().clone());
    let raw_rate = |threads| {
        rate(threads, |_| {
            let session = raw.open_ro_session(slot).unwrap();
            let _ = session.login(UserType::User, Some(&pin));
            let key = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(vec![1]),
                ])
                .unwrap()[0];
            Box::new(move || {
                session
                    .sign(&Mechanism::Ecdsa, key, digest.as_bytes())
                    .unwrap();
            })
        })
    };
    let signer_rate = |threads| {
        rate(threads, |_| {
            let signer = Arc::clone(&signer);
            Box::new(move || {
                signer.sign_digest(&digest).unwrap();
            })
        })
    };

    // Warm up, then alternate so drift on a shared machine hits both alike.
    signer_rate(1);
    let raw_1 = raw_rate(1);
    let signer_1 = signer_rate(1);
    let raw_2 = raw_rate(2);
    let signer_2 = signer_rate(2);
    let der = Arc::new(
        Pkcs11Signer::new(&card, &KeySelector::Id(vec![0x01]), EcdsaEncoding::Der).unwrap(),
    );
    let der_1 = rate(1, |_| {
        let der = Arc::clone(&der);
        Box::new(move || {
            der.sign_digest(&digest).unwrap();
        })
    });

    let openssl = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256"])
        .output()
        .expect("openssl must be installed");
    let openssl_line = String::from_utf8_lossy(&openssl.stdout)
        .lines()
        .find(|line| line.contains("ecdsa (nistp256)"))
        .unwrap_or("(no ecdsa line in openssl output)")
        .to_owned();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "ECDSA P-256 signatures/s, SoftHSM {} ({cores} cores, {cpu})",
        hsm.module_path().display()
    );
    println!("  raw cryptoki loop, 1 thread:           {raw_1:>9.0}");
    println!(
        "  Pkcs11Signer raw r||s, 1 thread:        {signer_1:>9.0}  ({:+.1}% vs raw)",
        (signer_1 / raw_1 - 1.0) * 100.0
    );
    println!(
        "  Pkcs11Signer DER, 1 thread:             {der_1:>9.0}  ({:+.1}% vs raw)",
        (der_1 / raw_1 - 1.0) * 100.0
    );
    println!("  raw cryptoki loop, 2 threads:          {raw_2:>9.0}");
    println!(
        "  Pkcs11Signer raw r||s, 2 threads:       {signer_2:>9.0}  ({:+.1}% vs raw)",
        (signer_2 / raw_2 - 1.0) * 100.0
    );
    println!("  openssl speed -seconds 3 ecdsap256 (sign/s, verify/s): {openssl_line}");

    // Machine-readable figures for scripts/bench-report (`BENCH <name> <value> <unit>`).
    let figures = [
        ("pkcs11_raw_1_thread_sig_per_s", raw_1),
        ("signer_raw_1_thread_sig_per_s", signer_1),
        ("signer_der_1_thread_sig_per_s", der_1),
        ("pkcs11_raw_2_threads_sig_per_s", raw_2),
        ("signer_raw_2_threads_sig_per_s", signer_2),
    ];
    for (name, value) in figures {
        println!("BENCH {name} {value:.1} signatures/s");
    }
    // openssl's line ends with sign/s and verify/s; a line it did not print is left out
    // (the report says "not measured") rather than guessed.
    let mut rates = openssl_line.split_whitespace().rev().map(str::parse::<f64>);
    if let (Some(Ok(verify)), Some(Ok(sign))) = (rates.next(), rates.next()) {
        println!("BENCH openssl_ecdsap256_sign_per_s {sign:.1} signatures/s");
        println!("BENCH openssl_ecdsap256_verify_per_s {verify:.1} signatures/s");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the child gets the same.
    run_isolated("pkcs11-bench", &["--bench"], bench).unwrap();
}
