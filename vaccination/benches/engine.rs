//! Cost of the rules engine on the write path: one dose check and one schedule, for a child with
//! a realistic history (the routine doses of the first year) and for a pathological one (200
//! doses of one vaccine), which bounds what a hostile or broken client can make a write cost.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use time::macros::date;
use vaccination::{DoseRecord, Person, RuleSet, Sex, check_dose, schedule};

fn dose(vaccine: &str, date: time::Date, n: u32) -> DoseRecord {
    DoseRecord {
        id: Some(format!("{vaccine}-{n}")),
        vaccine: vaccine.to_owned(),
        product: None,
        date,
        dose_number: Some(n),
    }
}

fn bench(c: &mut Criterion) {
    let rules = RuleSet::embedded().expect("embedded rules");
    let person = Person {
        birth_date: date!(2024 - 01 - 10),
        sex: Some(Sex::Female),
        municipality: None,
    };
    let realistic = vec![
        dose("dpt-ipv-hib", date!(2024 - 03 - 11), 1),
        dose("pcv", date!(2024 - 03 - 11), 1),
        dose("hepb", date!(2024 - 03 - 11), 1),
        dose("rota-1", date!(2024 - 03 - 11), 1),
        dose("dpt-ipv-hib", date!(2024 - 04 - 15), 2),
        dose("pcv", date!(2024 - 04 - 15), 2),
        dose("hepb", date!(2024 - 04 - 15), 2),
        dose("rota-1", date!(2024 - 04 - 15), 2),
        dose("dpt-ipv-hib", date!(2024 - 05 - 20), 3),
        dose("pcv", date!(2024 - 05 - 20), 3),
        dose("bcg", date!(2024 - 07 - 01), 1),
        dose("hepb", date!(2024 - 09 - 02), 3),
    ];
    let candidate = dose("mr", date!(2025 - 01 - 10), 1);
    c.bench_function("check_dose, 12 prior doses", |b| {
        b.iter(|| check_dose(rules, &person, black_box(&realistic), &candidate))
    });
    c.bench_function("schedule, 12 prior doses", |b| {
        b.iter(|| schedule(rules, &person, black_box(&realistic), date!(2025 - 01 - 10)))
    });
    let long: Vec<DoseRecord> = (1..=200)
        .map(|n| dose("dpt-ipv-hib", date!(2024 - 06 - 03), n))
        .collect();
    let next = dose("dpt-ipv-hib", date!(2024 - 06 - 03), 201);
    c.bench_function("check_dose, 200 prior doses of one vaccine", |b| {
        b.iter(|| check_dose(rules, &person, black_box(&long), &next))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
