//! The ward screen in a real browser: a whole ward (storage, the collector and its
//! devices, started through the libraries' start-up paths) and Debian's Chromium,
//! headless under `chromium-driver`, signed in with the nurse's, another nurse's and a
//! patient's certificates (PKCS#12 imported into the browser's NSS database, selected by
//! policy, as a hospital's managed browsers do).
//!
//! Needs `chromium`, `chromium-driver` and `libnss3-tools` (`scripts/lib.sh` installs
//! them for CI) and root (the managed policy file); without them the test fails.
//!
//! `WARDSEAL_UI_SCREENSHOTS=1` also writes the screenshots it takes to `docs/`
//! (`docs/ui-overview.png`, `docs/ui-patient.png`), where the README shows them.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "the test fails by panicking and prints where its screenshots are"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wardseal_sim::kinds::DeviceKind;
use wardseal_sim::ward::{CardBackend, RunningWard, WardFiles, WardOptions};
use wardseal_testkit::{Browser, BrowserOptions, CertificateFiles};

/// The bound on a page's first load (certificates, the ward's FHIR reads).
const LOADS_WITHIN: Duration = Duration::from_secs(20);

async fn ward(dir: &Path) -> RunningWard {
    let mut options = WardOptions::new(dir.join("ward"));
    options.cards = CardBackend::Software;
    options.kinds = vec![
        DeviceKind::Ecg,
        DeviceKind::PulseOximeter,
        DeviceKind::Thermometer,
        DeviceKind::BloodPressure,
    ];
    let files = WardFiles::prepare(&options).await.unwrap();
    RunningWard::start(&files).await.unwrap()
}

async fn browser(ward: &RunningWard, identity: &CertificateFiles) -> Browser {
    Browser::start(&BrowserOptions::new(&ward.files().ca_bundle, identity))
        .await
        .unwrap()
}

/// Opens the ward screen and waits until it has drawn its first view.
async fn open(browser: &Browser, ward: &RunningWard, fragment: &str) {
    browser
        .open(&format!("{}/ui/{fragment}", ward.files().storage_url()))
        .await
        .unwrap();
    browser
        .wait_for(
            "the ward screen's first view",
            LOADS_WITHIN,
            "return document.body.getAttribute('data-ready');",
            vec![],
        )
        .await
        .unwrap();
}

async fn text(browser: &Browser, selector: &str) -> String {
    browser
        .run(
            "const node = document.querySelector(arguments[0]); return node ? node.textContent : null;",
            vec![json!(selector)],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn screenshot_path(name: &str) -> PathBuf {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    if std::env::var_os("WARDSEAL_UI_SCREENSHOTS").is_some() {
        docs.join(name)
    } else {
        std::env::temp_dir().join(name)
    }
}

async fn save_screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = screenshot_path(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ward_screen_signs_staff_in_by_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ward = ward(dir.path()).await;
    let nurse = browser(&ward, &ward.files().nurse.files).await;
    open(&nurse, &ward, "").await;
    assert_eq!(text(&nurse, "#who").await, "Signed in as nurse-1 (staff)");
    let policy: Value = nurse
        .run(
            "return document.querySelector('link[rel=stylesheet]').sheet !== null;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        policy,
        json!(true),
        "the style sheet loaded under the policy"
    );
    save_screenshot(&nurse, "ui-overview.png").await;
    nurse.close().await.unwrap();
    ward.shutdown().await;
}
