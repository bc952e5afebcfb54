use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn figure(name: &str, value: f64, unit: &str) -> Figure {
    Figure {
        name: name.into(),
        value,
        unit: unit.into(),
    }
}

fn component(key: &str) -> &'static Component {
    COMPONENTS
        .iter()
        .find(|component| component.key == key)
        .unwrap()
}

fn measurement(runs: Vec<Vec<Figure>>) -> Measurement {
    Measurement {
        date: "2026-11-21 10:00 UTC".into(),
        machine: Machine {
            cpu: "Intel(R) Xeon(R) Processor".into(),
            cores: 2,
            memory_gib: 24.0,
            kernel: "6.1.0".into(),
            rustc: "rustc 1.95.0".into(),
        },
        command: "cargo bench -p wardseal-pki --bench batch".into(),
        load_before: runs.iter().map(|_| "0.50 0.40 0.30".to_owned()).collect(),
        runs,
    }
}

#[test]
fn bench_lines_are_read_and_other_lines_ignored() {
    let stdout = "machine: 2 cores\n\
                  BENCH certificates_per_s 4363.2 certificates/s\n\
                  ratio: 27.1x\n\
                  BENCH   speedup_vs_openssl  27.1   x  \n\
                  BENCHMARK is not a bench line\n";
    assert_eq!(
        parse_bench_lines(stdout).unwrap(),
        vec![
            figure("certificates_per_s", 4363.2, "certificates/s"),
            figure("speedup_vs_openssl", 27.1, "x"),
        ]
    );
    assert!(parse_bench_lines("no figures here\n").unwrap().is_empty());
}

#[test]
fn malformed_bench_lines_name_the_line_and_the_problem() {
    for (stdout, problem) in [
        ("x\nBENCH a 1\n", "not four words"),
        ("BENCH a 1 s extra\n", "not four words"),
        ("BENCH Load_10 1 s\n", "snake_case"),
        ("BENCH 10_load 1 s\n", "snake_case"),
        ("BENCH a one s\n", "not a number"),
        ("BENCH a NaN s\n", "not finite"),
        ("BENCH a inf s\n", "not finite"),
    ] {
        let error = parse_bench_lines(stdout).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(problem), "{stdout:?}: {message}");
        assert!(matches!(error, Error::MalformedLine { .. }), "{stdout:?}");
    }
    let error = parse_bench_lines("x\nBENCH a one s\n").unwrap_err();
    assert!(matches!(error, Error::MalformedLine { line: 2, .. }));
    assert!(matches!(
        parse_bench_lines("BENCH a 1 s\nBENCH a 2 s\n"),
        Err(Error::DuplicateFigure { name }) if name == "a"
    ));
}

#[test]
fn median_of_odd_and_even_counts() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0]), Some(3.0));
    assert_eq!(median(&[9.0, 1.0, 5.0]), Some(5.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
}

#[test]
fn summaries_take_medians_ranges_and_counts_per_figure() {
    let runs = vec![
        vec![figure("a", 10.0, "s"), figure("b", 1.0, "ms")],
        vec![figure("a", 30.0, "s")],
        vec![figure("a", 20.0, "s"), figure("b", 3.0, "ms")],
    ];
    let summaries = summarize(&runs).unwrap();
    assert_eq!(
        summaries,
        vec![
            Summary {
                name: "a".into(),
                unit: "s".into(),
                median: 20.0,
                min: 10.0,
                max: 30.0,
                count: 3
            },
            Summary {
                name: "b".into(),
                unit: "ms".into(),
                median: 2.0,
                min: 1.0,
                max: 3.0,
                count: 2
            },
        ]
    );
    let mixed = vec![vec![figure("a", 1.0, "s")], vec![figure("a", 1.0, "ms")]];
    assert!(matches!(
        summarize(&mixed),
        Err(Error::UnitMismatch { name, .. }) if name == "a"
    ));
}

#[test]
fn criterion_median_is_read_from_estimates() {
    let json = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":139.0,"upper_bound":142.0},"point_estimate":140.5,"standard_error":0.7},
                  "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":139.5,"upper_bound":141.0},"point_estimate":140123456.0,"standard_error":0.4},
                  "median_abs_dev":null,"slope":null,"std_dev":null}"#;
    assert_eq!(parse_criterion_estimates(json).unwrap(), 140_123_456.0);
    assert!(
        parse_criterion_estimates("{}")
            .unwrap_err()
            .contains("median")
    );
    assert!(parse_criterion_estimates("not json").is_err());
    assert!(parse_criterion_estimates(r#"{"median":{"point_estimate":-1.0}}"#).is_err());
}

#[test]
fn criterion_figures_convert_units_and_name_a_missing_file() {
    let home = std::env::temp_dir().join(format!("wardseal-report-test-{}", std::process::id()));
    let dir = home.join("merkle/root_1m_leaves/new");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("estimates.json"),
        r#"{"median":{"point_estimate":140500000.0}}"#,
    )
    .unwrap();
    let specs = [criterion(
        "merkle/root_1m_leaves",
        "merkle_1m_root_ms",
        TimeUnit::Milliseconds,
    )];
    assert_eq!(
        criterion_figures(&home, &specs).unwrap(),
        vec![figure("merkle_1m_root_ms", 140.5, "ms")]
    );
    let missing = [criterion(
        "canonical/nothing",
        "x_ns",
        TimeUnit::Nanoseconds,
    )];
    let error = criterion_figures(&home, &missing).unwrap_err();
    assert!(error.to_string().contains("canonical/nothing"), "{error}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn machine_facts_are_read_from_proc_text() {
    let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: sha_ni\n";
    assert_eq!(
        cpu_model(cpuinfo).as_deref(),
        Some("Intel(R) Xeon(R) Processor")
    );
    assert_eq!(cpu_model("processor : 0\n"), None);
    assert_eq!(
        memory_gib("MemTotal:       25165824 kB\nMemFree: 1 kB\n"),
        Some(24.0)
    );
    assert_eq!(memory_gib("MemFree: 1 kB\n"), None);
    assert_eq!(
        load_average("0.52 0.58 0.59 1/467 12345\n").as_deref(),
        Some("0.52 0.58 0.59")
    );
    assert_eq!(load_average(""), None);
}

#[test]
fn values_are_formatted_for_reading() {
    assert_eq!(format_value(4363.2), "4,363");
    assert_eq!(format_value(45_763_000.0), "45,763,000");
    assert_eq!(format_value(140.4), "140");
    assert_eq!(format_value(8.04), "8.04");
    assert_eq!(format_value(27.06), "27.1");
    assert_eq!(format_value(0.00512), "0.00512");
    assert_eq!(format_value(1.244), "1.24");
    assert_eq!(format_value(0.0), "0");
    assert_eq!(format_value(-1234.0), "-1,234");
}

#[test]
fn a_section_lists_expected_figures_extras_and_what_was_not_measured() {
    let runs = vec![
        vec![
            figure("certificates_per_s", 4000.0, "certificates/s"),
            figure("openssl_per_s", 160.0, "certificates/s"),
            figure("batch_devices", 10000.0, "devices"),
        ],
        vec![
            figure("certificates_per_s", 4400.0, "certificates/s"),
            figure("openssl_per_s", 150.0, "certificates/s"),
            figure("batch_devices", 10000.0, "devices"),
        ],
        vec![
            figure("certificates_per_s", 4363.0, "certificates/s"),
            figure("openssl_per_s", 161.0, "certificates/s"),
            figure("batch_devices", 10000.0, "devices"),
        ],
    ];
    let body = render_section(component("pki"), &measurement(runs)).unwrap();
    assert!(
        body.starts_with("## wardseal-pki: certificate issuance\n"),
        "{body}"
    );
    assert!(body.contains("2026-11-21 10:00 UTC"), "{body}");
    assert!(
        body.contains("3 runs of `cargo bench -p wardseal-pki --bench batch`"),
        "{body}"
    );
    assert!(
        body.contains("Intel(R) Xeon(R) Processor, 2 CPUs, 24.0 GiB, Linux 6.1.0, rustc 1.95.0")
    );
    assert!(body.contains("0.50 0.40 0.30; 0.50 0.40 0.30; 0.50 0.40 0.30"));
    assert!(
        body.contains(
            "| `wardseal-pki batch`, 10,000 devices, P-256 keys generated | 4,363 certificates/s | 4,000–4,400 |"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "| ratio, `wardseal-pki batch` over one openssl process per device | not measured | |"
        ),
        "{body}"
    );
    assert!(
        body.contains("| `batch_devices` | 10,000 devices | 10,000–10,000 |"),
        "{body}"
    );
    assert_eq!(
        section_figures(&body),
        BTreeMap::from([
            ("batch_devices".to_owned(), 10000.0),
            ("certificates_per_s".to_owned(), 4363.0),
            ("openssl_per_s".to_owned(), 160.0),
        ])
    );
}

#[test]
fn the_collector_section_sets_the_load_test_beside_the_paper() {
    let runs = vec![vec![
        figure("load_10_acknowledged_s", 0.005, "s"),
        figure("load_100_acknowledged_s", 0.051, "s"),
        figure("load_1000_acknowledged_s", 1.244, "s"),
        figure("load_1000_stored_s", 1.9, "s"),
        figure("card_throttled_p99_ms", 1572.0, "ms"),
    ]];
    let body = render_section(component("collector"), &measurement(runs)).unwrap();
    assert!(
        body.contains("| 10 | 0.00500 s | not measured | 5.72 s |"),
        "{body}"
    );
    assert!(
        body.contains("| 1000 | 1.24 s | 1.90 s | 30.25 s |"),
        "{body}"
    );
    assert!(body.contains("](docs/latency-vs-devices.svg)"), "{body}");
    assert!(body.contains("| one throttled card: sent → stored, p99 | 1,572 ms | – |"));
    assert!(
        body.contains("| same ward: acknowledged (durable in the spool) | not measured | |"),
        "{body}"
    );
}

#[test]
fn a_failed_run_keeps_the_previous_figures_under_one_notice() {
    let error = Error::BenchFailed {
        component: "storage".into(),
        command: "cargo bench -p wardseal-storage --bench ingest".into(),
        problem: "exited with exit status: 101".into(),
    };
    let previous = "## wardseal-storage: verified and stored batches\n\n\
                    > **Re-run of 2026-11-20 09:00 UTC failed**: older.\n\n\
                    | run | figure |\n|---|---|\n| A | 53,304 |\n";
    let body = render_failure(
        component("storage"),
        "2026-11-21 10:00 UTC",
        &error,
        Some(previous),
    );
    assert!(
        body.contains("**Re-run of 2026-11-21 10:00 UTC failed**: bench `storage`"),
        "{body}"
    );
    assert!(body.contains("exited with exit status: 101"), "{body}");
    assert!(!body.contains("older"), "{body}");
    assert_eq!(body.matches("## wardseal-storage").count(), 1, "{body}");
    assert!(body.contains("| A | 53,304 |"), "{body}");
    let fresh = render_failure(component("storage"), "2026-11-21 10:00 UTC", &error, None);
    assert!(fresh.contains("No earlier figures."), "{fresh}");
}

#[test]
fn the_document_replaces_only_re_run_sections_and_keeps_the_notes() {
    let text = format!(
        "# Benchmarks\n\nold header\n\n<!-- generated: core -->\n## core\nold core\n<!-- end generated: core -->\n\n\
         <!-- generated: storage -->\n## storage\n| A | 53,304 |\n<!-- end generated: storage -->\n\n\
         <!-- generated: legacy -->\nkept too\n<!-- end generated: legacy -->\n\n\
         {NOTES_MARKER}\n\n## Notes\n\nHand-written, <!-- generated: x --> even this.\n"
    );
    let mut document = Document::parse(&text, Path::new("BENCHMARKS.md")).unwrap();
    assert_eq!(
        document.section("storage"),
        Some("## storage\n| A | 53,304 |\n")
    );
    document.replace("core", "## core\nnew core\n".into());
    let rendered = document.render(COMPONENTS);
    assert!(rendered.starts_with("# Benchmarks\n"));
    assert!(!rendered.contains("old header"));
    assert!(!rendered.contains("old core"));
    assert!(
        rendered
            .contains("<!-- generated: core -->\n## core\nnew core\n<!-- end generated: core -->")
    );
    assert!(rendered.contains("| A | 53,304 |"));
    assert!(rendered.contains("kept too"));
    assert!(rendered.contains("Not measured yet: `scripts/bench-report --only card`."));
    assert!(rendered.ends_with(&format!(
        "{NOTES_MARKER}\n\n## Notes\n\nHand-written, <!-- generated: x --> even this.\n"
    )));
    // Components in COMPONENTS order, then unknown sections.
    let core = rendered.find("generated: core").unwrap();
    let storage = rendered.find("generated: storage").unwrap();
    let legacy = rendered.find("generated: legacy").unwrap();
    assert!(core < storage && storage < legacy);
    // Rendering is stable: parsing the output and rendering again changes nothing.
    let again = Document::parse(&rendered, Path::new("BENCHMARKS.md")).unwrap();
    assert_eq!(again.render(COMPONENTS), rendered);
}

#[test]
fn a_document_without_notes_marker_or_with_open_sections_is_refused() {
    assert!(matches!(
        Document::parse("# Benchmarks\n\nprose\n", Path::new("B.md")),
        Err(Error::MissingNotesMarker { .. })
    ));
    for text in [
        format!("<!-- generated: core -->\nx\n{NOTES_MARKER}\n"),
        format!("x\n<!-- end generated: core -->\n{NOTES_MARKER}\n"),
        format!("<!-- generated: core -->\n<!-- generated: pki -->\n{NOTES_MARKER}\n"),
        format!("<!-- generated: core -->\n<!-- end generated: pki -->\n{NOTES_MARKER}\n"),
    ] {
        assert!(
            matches!(
                Document::parse(&text, Path::new("B.md")),
                Err(Error::UnbalancedSection { .. })
            ),
            "{text}"
        );
    }
}

#[test]
fn load_points_come_from_the_collector_figures() {
    let figures = BTreeMap::from([
        ("load_1000_acknowledged_s".to_owned(), 1.244),
        ("load_10_acknowledged_s".to_owned(), 0.005),
        ("load_100_stored_s".to_owned(), 0.2),
        ("load_x_acknowledged_s".to_owned(), 1.0),
        ("load_10_acknowledged_p99".to_owned(), 1.0),
        ("sustained_e2e_readings_per_s".to_owned(), 35_000.0),
    ]);
    assert_eq!(
        LoadPoints::from_figures(&figures),
        LoadPoints {
            acknowledged: vec![(10, 0.005), (1000, 1.244)],
            stored: vec![(100, 0.2)],
        }
    );
}

#[test]
fn the_chart_draws_the_paper_beside_ours() {
    let points = LoadPoints {
        acknowledged: vec![(10, 0.005), (100, 0.051), (1000, 1.244)],
        stored: Vec::new(),
    };
    let svg = render_chart(&points).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    assert!(svg.contains("Kul et al. 2019"));
    assert!(svg.contains("wardseal: all acknowledged"));
    assert!(
        !svg.contains("wardseal: all stored"),
        "no stored series when not measured"
    );
    assert!(svg.contains("simultaneous devices (log scale)"));
    // Decades as plain numbers on the seconds axis.
    for tick in [
        ">\n0.01\n<",
        ">\n0.1\n<",
        ">\n1\n<",
        ">\n10\n<",
        ">\n100\n<",
    ] {
        assert!(svg.contains(tick), "{tick} missing");
    }
    // Three points per series, drawn as circles.
    assert_eq!(svg.matches("<circle").count(), 6, "{svg}");

    let with_stored = LoadPoints {
        stored: vec![(10, 0.01), (100, 0.1), (1000, 2.0)],
        ..points
    };
    let svg = render_chart(&with_stored).unwrap();
    assert!(svg.contains("wardseal: all stored"));
    assert_eq!(svg.matches("<circle").count(), 9);

    // Only the paper's figures: still a chart (the seed's curve alone).
    let svg = render_chart(&LoadPoints::default()).unwrap();
    assert_eq!(svg.matches("<circle").count(), 3);
}

#[test]
fn commands_are_shown_as_typed() {
    assert_eq!(
        component("collector").command(),
        "WARDSEAL_LOAD_N=10,100,1000 WARDSEAL_LOAD_SECONDS=5 cargo bench -p wardseal-collector --bench load"
    );
    assert_eq!(
        component("contracts").command(),
        "contracts/setup.sh && WARDSEAL_BENCH_DECISIONS=1000 WARDSEAL_BENCH_BLOCK_TIME=5 cargo bench -p wardseal-contracts --bench anchoring"
    );
    let keys: Vec<&str> = COMPONENTS.iter().map(|component| component.key).collect();
    assert_eq!(
        keys,
        ["core", "card", "pki", "contracts", "collector", "storage"]
    );
}

#[test]
fn the_card_bench_output_of_a_real_run_parses() {
    // stdout of `cargo bench -p wardseal-card --bench pkcs11`, 2026-11-21 (shortened).
    let stdout = "ECDSA P-256 signatures/s, SoftHSM /usr/lib/softhsm/libsofthsm2.so (2 cores, model name\t: Intel(R) Xeon(R) Processor)\n  \
raw cryptoki loop, 1 thread:              7738\n  \
openssl speed -seconds 3 ecdsap256 (sign/s, verify/s):  256 bits ecdsa (nistp256)   0.0000s   0.0001s  48601.7  15427.4\n\
BENCH pkcs11_raw_1_thread_sig_per_s 7738.3 signatures/s\n\
BENCH signer_der_1_thread_sig_per_s 11343.2 signatures/s\n\
BENCH openssl_ecdsap256_sign_per_s 48601.7 signatures/s\n\
BENCH openssl_ecdsap256_verify_per_s 15427.4 signatures/s\n";
    let figures = parse_bench_lines(stdout).unwrap();
    let names: Vec<&str> = figures.iter().map(|figure| figure.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pkcs11_raw_1_thread_sig_per_s",
            "signer_der_1_thread_sig_per_s",
            "openssl_ecdsap256_sign_per_s",
            "openssl_ecdsap256_verify_per_s"
        ]
    );
    // Every name the bench prints is one the card section expects.
    for name in names {
        assert!(
            component("card")
                .expected
                .iter()
                .any(|expected| expected.name == name),
            "{name}"
        );
    }
}
