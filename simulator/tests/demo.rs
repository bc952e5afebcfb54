//! The demo's script (`wardseal-sim demo` without its re-execution under SoftHSM) on a ward
//! with software cards: every expectation it prints holds, and what it prints names each
//! step, every attack scenario and the proof checked against the chain.

use wardseal_sim::attacks::Scenario;
use wardseal_sim::demo;
use wardseal_sim::ward::{CardBackend, RunningWard, WardFiles, WardOptions};

#[test]
fn the_demo_script_meets_every_expectation() {
    let runtime = wardseal_testkit::runtime().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut options = WardOptions::new(dir.path().join("ward"));
        options.cards = CardBackend::Software;
        let files = WardFiles::prepare(&options).await.unwrap();
        let ward = RunningWard::start(&files).await.unwrap();
        let mut printed = Vec::new();
        let outcome = demo::run(&ward, &mut printed).await.unwrap();
        ward.shutdown().await;
        let printed = String::from_utf8(printed).unwrap();
        assert!(outcome.failures.is_empty(), "{printed}");
        for step in [
            "1. ",
            "2. card-signed batches",
            "3. ",
            "4. FHIR reads",
            "5. roots anchored",
            "6. one reading's proof",
        ] {
            assert!(printed.contains(step), "no step {step:?} in:\n{printed}");
        }
        for scenario in Scenario::ALL {
            assert!(
                printed.contains(scenario.name()),
                "attack {} not reported in:\n{printed}",
                scenario.name()
            );
        }
        assert!(printed.contains("was anchored in block"), "{printed}");
        // The clinical step: alerted, acknowledged, quarantined while data flows.
        for shown in [
            "a critical reading, its alert acknowledged, and a quarantined batch",
            "heart rate 25 is accepted (not refused) and flagged LL, high priority",
            "the responsible nurse acknowledges the alert",
            "quarantined: batch",
            "the patient's later readings are stored past the quarantined batch",
        ] {
            assert!(printed.contains(shown), "{shown:?} not in:\n{printed}");
        }
        assert!(!printed.contains("[FAIL]"), "{printed}");
    });
}
