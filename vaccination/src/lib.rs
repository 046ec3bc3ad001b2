//! Routine vaccination (定期接種) rules without I/O. This first part is the calendar arithmetic
//! every rule rests on: when a child legally reaches an age, and when the next dose of a series
//! may be given. Sources for each rule: docs/vaccination-rules.md.

pub mod calendar;
