//! Helpers shared by the per-vaccine tests.

use time::Date;
use vaccination::{
    DoseRecord, DoseStatus, Finding, FindingKind, Person, RuleSet, Schedule, ScheduleItem, Sex,
};

pub fn rules() -> &'static RuleSet {
    RuleSet::embedded().expect("embedded rules parse")
}

pub fn child(birth: Date) -> Person {
    Person {
        birth_date: birth,
        sex: None,
        municipality: None,
    }
}

pub fn person(birth: Date, sex: Sex) -> Person {
    Person {
        birth_date: birth,
        sex: Some(sex),
        municipality: None,
    }
}

pub fn dose(vaccine: &str, date: Date) -> DoseRecord {
    DoseRecord {
        id: None,
        vaccine: vaccine.to_owned(),
        product: None,
        date,
        dose_number: None,
    }
}

pub fn numbered(vaccine: &str, date: Date, n: u32) -> DoseRecord {
    DoseRecord {
        dose_number: Some(n),
        ..dose(vaccine, date)
    }
}

pub fn check(person: &Person, history: &[DoseRecord], candidate: &DoseRecord) -> Vec<Finding> {
    vaccination::check_dose(rules(), person, history, candidate)
}

pub fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

/// Asserts the findings are exactly `expected` kinds (in any order), with a readable failure.
pub fn assert_kinds(findings: &[Finding], expected: &[FindingKind], case: &str) {
    let mut got = kinds(findings);
    let mut want = expected.to_vec();
    let key = |k: &FindingKind| format!("{k:?}");
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want, "{case}: {findings:#?}");
}

/// Asserts some finding of `kind` mentions `text`.
pub fn assert_message(findings: &[Finding], kind: FindingKind, text: &str, case: &str) {
    assert!(
        findings
            .iter()
            .any(|f| f.kind == kind && f.message.contains(text)),
        "{case}: no {kind:?} finding mentioning {text:?} in {findings:#?}"
    );
}

pub fn schedule(person: &Person, history: &[DoseRecord], as_of: Date) -> Schedule {
    vaccination::schedule(rules(), person, history, as_of)
}

pub fn items<'s>(schedule: &'s Schedule, vaccine: &str) -> Vec<&'s ScheduleItem> {
    schedule
        .items
        .iter()
        .filter(|i| i.vaccine == vaccine)
        .collect()
}

pub fn statuses(schedule: &Schedule, vaccine: &str) -> Vec<DoseStatus> {
    items(schedule, vaccine).iter().map(|i| i.status).collect()
}
