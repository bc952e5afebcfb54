//! The native evaluator against the contract: 10,000 random readings must get the same
//! decision (verdict and failing component, or the alarm: limit, priority, source) from
//! `RuleBook::check`, built from followed events as a collector builds it, and from the
//! RuleManager's `check`, on each backend. Rules carry random alarm limits and some
//! patients their own (set by a responsible clinician), so every alarm path is compared.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a failing test"
)]

mod common;

use common::Rng;
use wardseal_contracts::{
    AlarmLimit, Backend, CheckInput, Decision, EventFollower, Ledger, LimitSource, PatientKey,
    PatientLimits, Priority, Range, RuleBook, Trigger, TypeRule, Verdict, WideDecimal,
};
use wardseal_core::reading::{DataType, ValueShape};

const READINGS: usize = 10_000;
const PARALLEL: usize = 8;

fn random_decimal(rng: &mut Rng) -> WideDecimal {
    let scale = rng.below(19) as u8;
    let magnitude = rng.below(1_000_000_000) as i128;
    let mantissa = if rng.chance(30) {
        -magnitude
    } else {
        magnitude
    };
    WideDecimal::new(mantissa, scale)
}

/// A value at, just inside or just outside `bound`, written at a random scale.
fn near(rng: &mut Rng, bound: WideDecimal) -> WideDecimal {
    let scale = rng.below(19) as u8;
    let mantissa = if scale >= bound.scale {
        bound.mantissa * 10i128.pow(u32::from(scale - bound.scale))
    } else {
        bound.mantissa / 10i128.pow(u32::from(bound.scale - scale))
    };
    let delta = rng.below(3) as i128 - 1;
    WideDecimal::new(mantissa + delta, scale)
}

fn components_of(data_type: DataType) -> usize {
    match data_type.shape() {
        ValueShape::Quantity => 1,
        _ => 2,
    }
}

fn random_type_rule(rng: &mut Rng, data_type: DataType) -> TypeRule {
    let ranges = (0..components_of(data_type))
        .map(|_| {
            let (a, b) = (random_decimal(rng), random_decimal(rng));
            if a.compare(b) == Some(std::cmp::Ordering::Greater) {
                Range::new(b, a).unwrap()
            } else {
                Range::new(a, b).unwrap()
            }
        })
        .collect();
    let max = if rng.chance(25) {
        0
    } else {
        rng.below(20) as u32 + 1
    };
    let rule = TypeRule::new(data_type.code(), data_type.ucum_unit(), ranges, max).unwrap();
    let components = rule.ranges.len();
    let alarms = random_limits(rng, &rule.ranges, components, 6);
    rule.with_alarms(alarms).unwrap()
}

/// Up to `most` limits on the first `components` components, their bounds near the
/// plausibility bounds or inside them, so readings cross some and not others.
fn random_limits(rng: &mut Rng, ranges: &[Range], components: usize, most: u64) -> Vec<AlarmLimit> {
    let count = rng.below(most + 1);
    (0..count)
        .map(|_| {
            let component = rng.below(components as u64) as usize;
            let range = ranges[component.min(ranges.len() - 1)];
            let bound = match rng.below(3) {
                0 => near(rng, range.min),
                1 => near(rng, range.max),
                _ => random_decimal(rng),
            };
            let trigger = Trigger::from_code(rng.below(4) as u8).unwrap();
            let priority = Priority::from_code(rng.below(3) as u8 + 1).unwrap();
            AlarmLimit::new(component as u8, trigger, priority, bound).unwrap()
        })
        .collect()
}

fn patient(n: u64) -> PatientKey {
    PatientKey::for_subject(&format!("P-{n}"))
}

fn random_input(rng: &mut Rng, book: &RuleBook) -> CheckInput {
    // Patients 0 to 3; some have their own limits; a fifth of readings have no patient.
    let who = rng.below(5);
    let patient_key = (who < 4).then(|| patient(who));
    let group = rng.below(6) as u32 + 1;
    let data_type = DataType::ALL[rng.below(DataType::ALL.len() as u64) as usize];
    let rule = book
        .group_rule(group)
        .and_then(|r| book.type_rule(r, data_type.code()))
        .cloned();
    let unit = match (&rule, rng.below(10)) {
        (_, 0) => "mmHg".to_owned(),
        (_, 1) => "".to_owned(),
        (Some(rule), _) => rule.unit.clone(),
        (None, _) => data_type.ucum_unit().to_owned(),
    };
    let expected = rule
        .as_ref()
        .map_or(components_of(data_type), |r| r.ranges.len());
    let count = if rng.chance(8) {
        rng.below(4) as usize
    } else {
        expected
    };
    let own = patient_key.and_then(|p| book.patient_limits(p, data_type.code()));
    let limits: Vec<AlarmLimit> = match (own, &rule) {
        (Some(own), _) => own.to_vec(),
        (None, Some(rule)) => rule.alarms.clone(),
        (None, None) => Vec::new(),
    };
    let components = (0..count)
        .map(|i| {
            let range = rule.as_ref().and_then(|r| r.ranges.get(i));
            let limit = limits
                .iter()
                .filter(|l| usize::from(l.component) == i)
                .nth(rng.below(3) as usize);
            match (range, limit, rng.below(20)) {
                (_, _, 0) => WideDecimal::new(rng.below(1000) as i128, 19 + rng.below(3) as u8),
                (Some(r), _, 1..=2) => near(rng, r.min),
                (Some(r), _, 3..=4) => near(rng, r.max),
                (_, Some(l), 5..=17) => near(rng, l.bound),
                _ => random_decimal(rng),
            }
        })
        .collect();
    let per_minute = match rule.as_ref().map(|r| r.max_per_minute) {
        Some(max) if max > 0 && rng.chance(60) => max + rng.below(3) as u32 - 1,
        _ => rng.below(25) as u32,
    };
    CheckInput {
        group,
        data_type: data_type.code(),
        unit,
        components,
        per_minute,
        patient: patient_key,
    }
}

async fn native_and_contract_agree<B: Backend>(admin: Ledger<B>, seed: u64) {
    let mut rng = Rng::new(seed);
    // Rules 1 to 3 over random data types; groups 1 to 4 follow them, 5 and 6 have none.
    let mut set: Vec<TypeRule> = Vec::new();
    for rule_id in 1..=3u32 {
        admin.create_rule(rule_id).await.unwrap();
        for &data_type in DataType::ALL {
            if rng.chance(70) {
                let rule = random_type_rule(&mut rng, data_type);
                admin.set_type_rule(rule_id, &rule).await.unwrap();
                set.push(rule);
            }
        }
    }
    for group in 1..=4u32 {
        admin
            .set_group_rule(group, (group - 1) % 3 + 1)
            .await
            .unwrap();
    }
    // Patients 0 to 2 have their own limits for most data types, set by clinician 1
    // (responsible for them); patient 3 follows the rules'.
    let clinician = admin.with_signer(common::signer(1));
    for n in 0..3 {
        admin
            .set_responsible_clinician(patient(n), common::address(1), true)
            .await
            .unwrap();
        for &data_type in DataType::ALL {
            if rng.chance(80) {
                // Bounds near some rule's plausibility bounds for the type, so that
                // plausible readings cross them.
                let some_rule = set
                    .iter()
                    .filter(|t| t.data_type == data_type.code())
                    .nth(rng.below(3) as usize);
                let ranges = match some_rule {
                    Some(t) => t.ranges.clone(),
                    None => random_type_rule(&mut rng, data_type).ranges,
                };
                let mut limits = random_limits(&mut rng, &ranges, components_of(data_type), 5);
                if limits.is_empty() {
                    limits.push(AlarmLimit::low(0, ranges[0].max, true, Priority::Medium));
                }
                let own = PatientLimits::new(patient(n), data_type.code(), limits).unwrap();
                clinician.set_patient_limits(&own).await.unwrap();
            }
        }
    }
    // The collector's replica, from events.
    let mut book = RuleBook::new();
    for event in EventFollower::from_deployment(admin.clone())
        .poll()
        .await
        .unwrap()
    {
        book.apply(&event.event);
    }

    let inputs: Vec<CheckInput> = (0..READINGS)
        .map(|_| random_input(&mut rng, &book))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, chunk) in inputs.chunks(READINGS / PARALLEL).enumerate() {
        let ledger = admin.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            let mut decisions = Vec::with_capacity(chunk.len());
            for input in &chunk {
                decisions.push(ledger.check(input).await.unwrap());
            }
            (worker, decisions)
        });
    }
    let mut on_chain: Vec<(usize, Vec<Decision>)> = tasks.join_all().await;
    on_chain.sort_by_key(|(worker, _)| *worker);
    let on_chain: Vec<Decision> = on_chain.into_iter().flat_map(|(_, d)| d).collect();
    assert_eq!(on_chain.len(), READINGS);

    let mut seen = [0usize; 9];
    let mut alarms = std::collections::BTreeMap::new();
    for (input, contract) in inputs.iter().zip(&on_chain) {
        let native = book.check(input);
        assert_eq!(native, *contract, "seed {seed}: {input:?}");
        seen[native.verdict() as usize] += 1;
        if let Decision::Accepted { alarm } = native {
            let key = alarm.map(|a| {
                (
                    a.interpretation().code(),
                    a.priority(),
                    a.source == LimitSource::Patient,
                )
            });
            *alarms.entry(key).or_insert(0usize) += 1;
        }
    }
    // Every interpretation and every priority, from rules and from patients' own
    // limits, and readings with no alarm, were compared.
    for own in [false, true] {
        for code in ["L", "H", "LL", "HH"] {
            assert!(
                alarms
                    .keys()
                    .flatten()
                    .any(|&(c, _, o)| (c, o) == (code, own)),
                "seed {seed}: no {code} alarm (own limits: {own}): {alarms:?}"
            );
        }
        for priority in [Priority::Low, Priority::Medium, Priority::High] {
            assert!(
                alarms
                    .keys()
                    .flatten()
                    .any(|&(_, p, o)| (p, o) == (priority, own)),
                "seed {seed}: no {priority:?} alarm (own limits: {own}): {alarms:?}"
            );
        }
    }
    assert!(
        alarms.contains_key(&None),
        "seed {seed}: no reading without an alarm"
    );
    // The generator reaches every verdict, so agreement means something.
    for (code, count) in seen.iter().enumerate() {
        assert!(
            *count > 0,
            "seed {seed}: verdict {:?} never produced: {seen:?}",
            Verdict::from_code(code as u8)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_native_and_contract_agree() {
    let fixture = common::embedded().await;
    native_and_contract_agree(fixture.ledger.clone(), 0x5EED_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anvil_native_and_contract_agree() {
    let fixture = common::anvil().await;
    native_and_contract_agree(fixture.ledger.clone(), 0x5EED_0002).await;
}
