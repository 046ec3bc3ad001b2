//! Routine vaccination (定期接種) rules without I/O: the legal age and interval arithmetic
//! (`calendar`), the schedule rules as data from `profiles/jp/vaccination` (`rules`), and the
//! engine that checks a dose and computes a schedule from them (`engine`). Sources for each
//! rule: docs/vaccination-rules.md.

pub mod calendar;
pub mod engine;
pub mod rules;

pub use engine::{
    DoseRecord, DoseStatus, Finding, FindingKind, Person, Schedule, ScheduleItem, Sex, check_dose,
    schedule,
};
pub use rules::{RuleSet, RulesError, Vaccine};
