//! The native evaluator against the contract: 10,000 random readings must get the same
//! decision (verdict and failing component) from `RuleBook::check`, built from followed
//! events as a collector builds it, and from the RuleManager's `check`, on each backend.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a failing test"
)]

mod common;

use common::Rng;
use wardseal_contracts::{
    Backend, CheckInput, Decision, EventFollower, Ledger, Range, RuleBook, TypeRule, Verdict,
    WideDecimal,
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
    TypeRule::new(data_type.code(), data_type.ucum_unit(), ranges, max).unwrap()
}

fn random_input(rng: &mut Rng, book: &RuleBook) -> CheckInput {
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
    let components = (0..count)
        .map(|i| {
            let range = rule.as_ref().and_then(|r| r.ranges.get(i));
            match (range, rng.below(10)) {
                (_, 0) => WideDecimal::new(rng.below(1000) as i128, 19 + rng.below(3) as u8),
                (Some(r), 1..=4) => near(rng, r.min),
                (Some(r), 5..=8) => near(rng, r.max),
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
    }
}

async fn native_and_contract_agree<B: Backend>(admin: Ledger<B>, seed: u64) {
    let mut rng = Rng::new(seed);
    // Rules 1 to 3 over random data types; groups 1 to 4 follow them, 5 and 6 have none.
    for rule_id in 1..=3u32 {
        admin.create_rule(rule_id).await.unwrap();
        for &data_type in DataType::ALL {
            if rng.chance(70) {
                let rule = random_type_rule(&mut rng, data_type);
                admin.set_type_rule(rule_id, &rule).await.unwrap();
            }
        }
    }
    for group in 1..=4u32 {
        admin
            .set_group_rule(group, (group - 1) % 3 + 1)
            .await
            .unwrap();
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
    for (input, contract) in inputs.iter().zip(&on_chain) {
        let native = book.check(input);
        assert_eq!(native, *contract, "seed {seed}: {input:?}");
        seen[native.verdict as usize] += 1;
    }
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
