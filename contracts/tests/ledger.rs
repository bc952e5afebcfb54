//! The Ledger's behaviour, run once per backend: the embedded revm chain and a real anvil.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failure is a failing test"
)]

mod common;

use alloy::primitives::{Address, B256};
use common::{address, signer};
use wardseal_contracts::{
    AlarmLimit, Anchor, Backend, CheckInput, ContractError, Decision, Device, Error, EventFollower,
    Ledger, LedgerEvent, LimitSource, PatientKey, PatientLimits, Priority, Range, Role, RuleBook,
    TypeRule, Verdict, WideDecimal,
};

fn d(text: &str) -> WideDecimal {
    WideDecimal::parse(text).unwrap()
}

fn heart_rate() -> TypeRule {
    TypeRule::new(1, "/min", vec![Range::new(d("30"), d("220")).unwrap()], 6).unwrap()
}

fn blood_pressure() -> TypeRule {
    TypeRule::new(
        4,
        "mm[Hg]",
        vec![
            Range::new(d("60"), d("250")).unwrap(),
            Range::new(d("30"), d("150")).unwrap(),
        ],
        0,
    )
    .unwrap()
}

fn epc(n: u8) -> [u8; 12] {
    let mut e = [
        0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0, 0, 0x1A, 0,
    ];
    e[11] = n;
    e
}

fn contract_error<T: std::fmt::Debug>(result: Result<T, Error>) -> ContractError {
    match result {
        Err(Error::Contract(e)) => e,
        other => panic!("expected a contract error, got {other:?}"),
    }
}

async fn non_admin_rule_change_reverts_with_custom_error<B: Backend>(admin: &Ledger<B>) {
    admin.create_rule(7).await.unwrap();
    let intruder = admin.with_signer(signer(1));
    let expected = ContractError::Unauthorized {
        account: address(1),
        role: Role::RuleAdmin.id(),
    };
    assert_eq!(
        contract_error(intruder.set_group_rule(3, 7).await),
        expected
    );
    assert_eq!(
        contract_error(intruder.set_type_rule(7, &heart_rate()).await),
        expected
    );
    assert_eq!(contract_error(intruder.create_rule(8).await), expected);
    assert_eq!(
        contract_error(intruder.remove_type_rule(7, 1).await),
        expected
    );
    // The refused changes left nothing behind.
    assert_eq!(admin.group_rule(3).await.unwrap(), None);
    assert!(admin.rule(7).await.unwrap().unwrap().types.is_empty());

    // Granted the role (which proves the role ids match the contract's), it may.
    assert!(admin.has_role(Role::RuleAdmin, address(0)).await.unwrap());
    admin.grant_role(Role::RuleAdmin, address(1)).await.unwrap();
    intruder.set_type_rule(7, &heart_rate()).await.unwrap();
    intruder.set_group_rule(3, 7).await.unwrap();
    assert_eq!(admin.group_rule(3).await.unwrap(), Some(7));
    // A rule id registers once.
    assert_eq!(
        contract_error(admin.create_rule(7).await),
        ContractError::RuleAlreadyRegistered(7)
    );
    assert_eq!(
        contract_error(admin.set_group_rule(3, 99).await),
        ContractError::UnknownRule(99)
    );
}

async fn rules_read_back_and_check<B: Backend>(admin: &Ledger<B>) {
    admin.create_rule(7).await.unwrap();
    admin.set_type_rule(7, &heart_rate()).await.unwrap();
    admin.set_type_rule(7, &blood_pressure()).await.unwrap();
    admin.set_group_rule(3, 7).await.unwrap();
    let rule = admin.rule(7).await.unwrap().unwrap();
    assert_eq!(rule.types, vec![heart_rate(), blood_pressure()]);
    assert_eq!(admin.group_rules().await.unwrap(), vec![(3, 7)]);

    let bp = |sys: &str, dia: &str| CheckInput {
        group: 3,
        data_type: 4,
        unit: "mm[Hg]".into(),
        components: vec![d(sys), d(dia)],
        per_minute: 1,
        patient: None,
    };
    let decision = admin.check(&bp("120", "80")).await.unwrap();
    assert_eq!(decision.verdict(), Verdict::Allowed);
    let decision = admin.check(&bp("120", "150.001")).await.unwrap();
    assert_eq!(
        (decision.verdict(), decision.component()),
        (Verdict::AboveMaximum, 1)
    );

    // Invalid settings are refused by the contract too, with its errors.
    let reversed = TypeRule {
        ranges: vec![Range {
            min: d("2"),
            max: d("1"),
        }],
        ..heart_rate()
    };
    assert_eq!(
        contract_error(admin.set_type_rule(7, &reversed).await),
        ContractError::InvalidRange(0)
    );
    admin.remove_type_rule(7, 1).await.unwrap();
    assert_eq!(
        contract_error(admin.remove_type_rule(7, 1).await),
        ContractError::DataTypeNotSet(1)
    );

    // The replica built from events equals the one built from reads.
    let mut from_events = RuleBook::new();
    for e in admin.events(0, admin.head().await.unwrap()).await.unwrap() {
        from_events.apply(&e.event);
    }
    let rules = admin.rules().await.unwrap();
    let groups = admin.group_rules().await.unwrap();
    assert_eq!(from_events, RuleBook::from_parts(&rules, &groups));
    assert!(from_events.type_rule(7, 1).is_none());
}

/// Heart rate after NEWS2's bands: plausible 0–350 /min; ≤ 40 high, 41–50 low,
/// 91–110 low, 111–130 medium, ≥ 131 high.
fn heart_rate_with_alarms() -> TypeRule {
    TypeRule::new(1, "/min", vec![Range::new(d("0"), d("350")).unwrap()], 0)
        .unwrap()
        .with_alarms(vec![
            AlarmLimit::low(0, d("40"), true, Priority::High),
            AlarmLimit::low(0, d("50"), true, Priority::Low),
            AlarmLimit::high(0, d("91"), true, Priority::Low),
            AlarmLimit::high(0, d("111"), true, Priority::Medium),
            AlarmLimit::high(0, d("131"), true, Priority::High),
        ])
        .unwrap()
}

fn heart(value: &str, patient: Option<PatientKey>) -> CheckInput {
    CheckInput {
        group: 3,
        data_type: 1,
        unit: "/min".into(),
        components: vec![d(value)],
        per_minute: 1,
        patient,
    }
}

/// (interpretation code, priority) of an accepted reading's alarm; panics if refused.
async fn alarm_of<B: Backend>(
    ledger: &Ledger<B>,
    input: &CheckInput,
) -> Option<(&'static str, Priority, LimitSource)> {
    match ledger.check(input).await.unwrap() {
        Decision::Accepted { alarm } => {
            alarm.map(|a| (a.interpretation().code(), a.priority(), a.source))
        }
        refused => panic!("{input:?} refused: {refused:?}"),
    }
}

/// Rule 7 allows heart rate with alarm limits, and group 3 follows it.
async fn group_3_follows_heart_rate_with_alarms<B: Backend>(admin: &Ledger<B>) {
    admin.create_rule(7).await.unwrap();
    admin
        .set_type_rule(7, &heart_rate_with_alarms())
        .await
        .unwrap();
    admin.set_group_rule(3, 7).await.unwrap();
}

async fn abnormal_readings_are_accepted_with_an_alarm<B: Backend>(admin: &Ledger<B>) {
    group_3_follows_heart_rate_with_alarms(admin).await;
    let rule = admin.rule(7).await.unwrap().unwrap();
    assert_eq!(
        rule.types,
        vec![heart_rate_with_alarms()],
        "alarms read back"
    );

    // Heart rate 25: accepted, critical low, high priority.
    assert_eq!(
        alarm_of(admin, &heart("25", None)).await,
        Some(("LL", Priority::High, LimitSource::Rule))
    );
    // Heart rate 400: no working monitor measures it — refused as false data.
    assert_eq!(
        admin.check(&heart("400", None)).await.unwrap(),
        Decision::Refused {
            verdict: Verdict::AboveMaximum,
            component: 0
        }
    );
    assert_eq!(alarm_of(admin, &heart("72", None)).await, None);
    assert_eq!(
        alarm_of(admin, &heart("45", None)).await,
        Some(("L", Priority::Low, LimitSource::Rule))
    );
    assert_eq!(
        alarm_of(admin, &heart("120", None)).await,
        Some(("H", Priority::Medium, LimitSource::Rule)),
        "the highest crossed tier wins"
    );
    assert_eq!(
        alarm_of(admin, &heart("131", None)).await,
        Some(("HH", Priority::High, LimitSource::Rule))
    );
    // A limit on a component the rule lacks is refused by the contract too.
    let mut bad = heart_rate_with_alarms();
    bad.alarms[0].component = 1;
    assert_eq!(
        contract_error(admin.set_type_rule(7, &bad).await),
        ContractError::InvalidAlarmLimit(0)
    );
}

async fn patient_override_changes_the_verdict_and_only_responsible_may_set_it<B: Backend>(
    admin: &Ledger<B>,
) {
    group_3_follows_heart_rate_with_alarms(admin).await;
    let patient = PatientKey::for_subject("P-0001");
    let other = PatientKey::for_subject("P-0002");
    // An athlete resting at 38 /min: the clinician lowers the critical limit to 30.
    let athlete = PatientLimits::new(
        patient,
        1,
        vec![
            AlarmLimit::low(0, d("30"), false, Priority::High),
            AlarmLimit::low(0, d("36"), false, Priority::Low),
            AlarmLimit::high(0, d("131"), true, Priority::High),
        ],
    )
    .unwrap();

    let clinician = admin.with_signer(signer(1));
    let stranger = admin.with_signer(signer(2));
    // Neither a rule admin nor responsible: refused by the contract, nothing recorded.
    for ledger in [&clinician, &stranger] {
        assert_eq!(
            contract_error(ledger.set_patient_limits(&athlete).await),
            ContractError::NotResponsible {
                caller: ledger.account(),
                patient: patient.0
            }
        );
    }
    assert!(matches!(
        contract_error(
            clinician
                .set_responsible_clinician(patient, address(1), true)
                .await
        ),
        ContractError::Unauthorized { .. }
    ));
    assert_eq!(admin.patient_limits(patient, 1).await.unwrap(), None);

    // The admin makes clinician 1 responsible for this patient (only).
    admin
        .set_responsible_clinician(patient, address(1), true)
        .await
        .unwrap();
    assert!(admin.is_responsible(patient, address(1)).await.unwrap());
    let set = clinician.set_patient_limits(&athlete).await.unwrap();
    assert!(set.gas_used > 0);
    let other_limits = PatientLimits {
        patient: other,
        ..athlete.clone()
    };
    assert!(matches!(
        contract_error(clinician.set_patient_limits(&other_limits).await),
        ContractError::NotResponsible { .. }
    ));
    assert!(matches!(
        contract_error(stranger.set_patient_limits(&athlete).await),
        ContractError::NotResponsible { .. }
    ));
    assert_eq!(
        admin.patient_limits(patient, 1).await.unwrap(),
        Some(athlete.clone())
    );

    // The override changes the verdict for this patient only.
    assert_eq!(
        alarm_of(admin, &heart("38", Some(patient))).await,
        None,
        "38 is normal for this patient"
    );
    assert_eq!(
        alarm_of(admin, &heart("38", Some(other))).await,
        Some(("LL", Priority::High, LimitSource::Rule))
    );
    assert_eq!(
        alarm_of(admin, &heart("34", Some(patient))).await,
        Some(("L", Priority::Low, LimitSource::Patient))
    );
    assert_eq!(
        alarm_of(admin, &heart("29", Some(patient))).await,
        Some(("LL", Priority::High, LimitSource::Patient))
    );
    // Plausibility stays the rule's.
    assert!(
        !admin
            .check(&heart("400", Some(patient)))
            .await
            .unwrap()
            .is_allowed()
    );

    // A rule admin may set it too; the replica (bootstrapped or followed) agrees.
    admin.set_patient_limits(&athlete).await.unwrap();
    let mut followed = RuleBook::new();
    for e in admin.events(0, admin.head().await.unwrap()).await.unwrap() {
        followed.apply(&e.event);
    }
    let queried = admin.rule_book().await.unwrap();
    assert_eq!(followed, queried);
    for value in ["25", "34", "38", "72", "140"] {
        for who in [Some(patient), Some(other), None] {
            let input = heart(value, who);
            assert_eq!(
                followed.check(&input),
                admin.check(&input).await.unwrap(),
                "{input:?}"
            );
        }
    }
    // The events record who set the limits.
    let setters: Vec<Address> = admin
        .events(0, admin.head().await.unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            LedgerEvent::PatientLimitsSet { by, .. } => Some(by),
            _ => None,
        })
        .collect();
    assert_eq!(setters, vec![address(1), address(0)]);

    // Cleared, the rule's limits apply again; responsibility can be withdrawn.
    clinician.clear_patient_limits(patient, 1).await.unwrap();
    assert_eq!(
        alarm_of(admin, &heart("38", Some(patient))).await,
        Some(("LL", Priority::High, LimitSource::Rule))
    );
    assert_eq!(
        contract_error(clinician.clear_patient_limits(patient, 1).await),
        ContractError::PatientLimitsNotSet {
            patient: patient.0,
            data_type: 1
        }
    );
    admin
        .set_responsible_clinician(patient, address(1), false)
        .await
        .unwrap();
    assert!(matches!(
        contract_error(clinician.set_patient_limits(&athlete).await),
        ContractError::NotResponsible { .. }
    ));
    assert_eq!(admin.all_patient_limits().await.unwrap(), vec![]);
}

/// Prints what setting a rule and an override costs (for the gas table in the report);
/// asserts only what holds on any EVM: alarm limits cost storage, and re-setting the same
/// values is cheaper than the first setting.
#[expect(
    clippy::print_stdout,
    reason = "the gas figures are this test's output"
)]
async fn rule_and_override_gas<B: Backend>(admin: &Ledger<B>) {
    admin.create_rule(7).await.unwrap();
    let plain = admin.set_type_rule(7, &heart_rate()).await.unwrap();
    let replaced = admin.set_type_rule(7, &heart_rate()).await.unwrap();
    let with_alarms = admin
        .set_type_rule(7, &heart_rate_with_alarms())
        .await
        .unwrap();
    let patient = PatientKey::for_subject("P-gas");
    let limits = PatientLimits::new(patient, 1, heart_rate_with_alarms().alarms).unwrap();
    let first = admin.set_patient_limits(&limits).await.unwrap();
    let again = admin.set_patient_limits(&limits).await.unwrap();
    assert!(with_alarms.gas_used > replaced.gas_used);
    assert!(replaced.gas_used < plain.gas_used);
    assert!(again.gas_used < first.gas_used);
    println!(
        "gas: setTypeRule 1 range, no alarms: first {} / replaced {}; with 5 alarm limits {}; \
         setPatientLimits 5 limits: first {} / replaced {}",
        plain.gas_used, replaced.gas_used, with_alarms.gas_used, first.gas_used, again.gas_used
    );
}

async fn duplicate_device_refused<B: Backend>(admin: &Ledger<B>) {
    let device = Device {
        epc: epc(1),
        group: 3,
        rule_id: 7,
        ward: "ward-3A".into(),
        active: true,
    };
    admin.register_device(&device).await.unwrap();
    assert_eq!(
        contract_error(admin.register_device(&device).await),
        ContractError::DeviceAlreadyRegistered(epc(1))
    );
    assert_eq!(admin.device(epc(1)).await.unwrap(), Some(device.clone()));
    assert_eq!(admin.device(epc(2)).await.unwrap(), None);

    let intruder = admin.with_signer(signer(1));
    assert_eq!(
        contract_error(intruder.deactivate_device(epc(1)).await),
        ContractError::Unauthorized {
            account: address(1),
            role: Role::Registrar.id()
        }
    );
    admin.deactivate_device(epc(1)).await.unwrap();
    assert!(!admin.device(epc(1)).await.unwrap().unwrap().active);
    assert_eq!(
        contract_error(admin.deactivate_device(epc(1)).await),
        ContractError::DeviceInactive(epc(1))
    );
    assert_eq!(
        contract_error(admin.deactivate_device(epc(2)).await),
        ContractError::UnknownDevice(epc(2))
    );
    // A deactivated device stays out: its EPC cannot come back.
    assert_eq!(
        contract_error(admin.register_device(&device).await),
        ContractError::DeviceAlreadyRegistered(epc(1))
    );
    let events: Vec<_> = admin.events(0, admin.head().await.unwrap()).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == LedgerEvent::DeviceDeactivated { epc: epc(1) })
    );
    assert_eq!(admin.devices().await.unwrap().len(), 1);
}

async fn consent_change_by_non_owner_refused<B: Backend>(admin: &Ledger<B>) {
    let (patient, authority) = (address(2), address(3));
    let patient_ledger = admin.with_signer(signer(2));
    let other = admin.with_signer(signer(1));
    assert_eq!(
        contract_error(other.grant_consent(patient, authority).await),
        ContractError::NotPatient {
            caller: address(1),
            patient
        }
    );
    assert!(!admin.consent(patient, authority).await.unwrap());
    patient_ledger
        .grant_consent(patient, authority)
        .await
        .unwrap();
    assert!(admin.consent(patient, authority).await.unwrap());
    assert_eq!(
        contract_error(patient_ledger.grant_consent(patient, authority).await),
        ContractError::AlreadyGranted { patient, authority }
    );
    // The admin is no more the patient's owner than anyone else.
    assert_eq!(
        contract_error(admin.revoke_consent(patient, authority).await),
        ContractError::NotPatient {
            caller: address(0),
            patient
        }
    );
    assert!(admin.consent(patient, authority).await.unwrap());
    patient_ledger
        .revoke_consent(patient, authority)
        .await
        .unwrap();
    assert!(!admin.consent(patient, authority).await.unwrap());
    assert_eq!(
        contract_error(patient_ledger.grant_consent(patient, Address::ZERO).await),
        ContractError::ZeroAuthority
    );
}

fn anchor(n: u8) -> Anchor {
    Anchor {
        log_id: B256::repeat_byte(0xAA),
        root: B256::repeat_byte(n),
        count: 1_000,
        first_time: 1_700_000_000_000_000,
        last_time: 1_700_000_005_000_000,
    }
}

async fn only_anchorers_anchor<B: Backend>(admin: &Ledger<B>) {
    let collector = admin.with_signer(signer(1));
    assert_eq!(
        contract_error(collector.anchor(&anchor(1)).await),
        ContractError::Unauthorized {
            account: address(1),
            role: Role::Anchorer.id()
        }
    );
    admin.grant_role(Role::Anchorer, address(1)).await.unwrap();
    let outcome = collector.anchor(&anchor(1)).await.unwrap();
    let record = admin.anchored(anchor(1).root).await.unwrap().unwrap();
    assert_eq!(record.anchor, anchor(1));
    assert_eq!(record.anchorer, address(1));
    assert_eq!(record.block, outcome.block);
    assert_eq!(admin.anchored(anchor(2).root).await.unwrap(), None);
    assert_eq!(
        contract_error(collector.anchor(&anchor(1)).await),
        ContractError::RootAlreadyAnchored(anchor(1).root)
    );
    let empty = Anchor {
        count: 0,
        ..anchor(3)
    };
    assert_eq!(
        contract_error(collector.anchor(&empty).await),
        ContractError::EmptyAnchor
    );
    collector.anchor(&anchor(2)).await.unwrap();
    let listed = admin.anchors(0, admin.head().await.unwrap()).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.anchor).collect::<Vec<_>>(),
        vec![anchor(1), anchor(2)]
    );
    assert_eq!(admin.anchor_count().await.unwrap(), 2);
    // Revoked, the collector may no longer anchor.
    admin.revoke_role(Role::Anchorer, address(1)).await.unwrap();
    assert!(matches!(
        contract_error(collector.anchor(&anchor(4)).await),
        ContractError::Unauthorized { .. }
    ));
}

async fn follower_delivers_each_event_once<B: Backend>(admin: &Ledger<B>) {
    admin.grant_role(Role::Anchorer, address(0)).await.unwrap();
    let mut follower = EventFollower::from_deployment(admin.clone());
    let mut seen = Vec::new();
    for n in 1..=3u8 {
        admin.anchor(&anchor(n)).await.unwrap();
    }
    seen.extend(follower.poll().await.unwrap());
    assert!(
        follower.poll().await.unwrap().is_empty(),
        "nothing new, nothing twice"
    );
    for n in 4..=5u8 {
        admin.anchor(&anchor(n)).await.unwrap();
    }
    seen.extend(follower.poll().await.unwrap());
    let sequences: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e.event {
            LedgerEvent::Anchored { sequence, .. } => Some(sequence),
            _ => None,
        })
        .collect();
    assert_eq!(sequences, vec![0, 1, 2, 3, 4]);
    let positions: Vec<_> = seen.iter().map(|e| e.position).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(positions, sorted, "in chain order, no duplicates");
}

macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::common::embedded().await;
                    super::$name(&fixture.ledger).await;
                }
            )*
        }
        mod anvil {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = super::common::anvil().await;
                    super::$name(&fixture.ledger).await;
                }
            )*
        }
    };
}

per_backend!(
    non_admin_rule_change_reverts_with_custom_error,
    rules_read_back_and_check,
    duplicate_device_refused,
    consent_change_by_non_owner_refused,
    only_anchorers_anchor,
    follower_delivers_each_event_once,
    abnormal_readings_are_accepted_with_an_alarm,
    patient_override_changes_the_verdict_and_only_responsible_may_set_it,
    rule_and_override_gas,
);
