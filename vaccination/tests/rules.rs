//! Golden, table-driven tests of the routine vaccination rules, one module per vaccine. Every
//! expected date is derived in a comment from the rule wording and the legal age/interval
//! arithmetic (docs/vaccination-rules.md), not from the implementation's output.

#[path = "rules/common.rs"]
mod common;

#[path = "rules/data.rs"]
mod data;

#[path = "rules/dpt_ipv_hib.rs"]
mod dpt_ipv_hib;

#[path = "rules/hib.rs"]
mod hib;

#[path = "rules/pcv.rs"]
mod pcv;

#[path = "rules/hepb.rs"]
mod hepb;

#[path = "rules/rota.rs"]
mod rota;

#[path = "rules/bcg.rs"]
mod bcg;

#[path = "rules/mr.rs"]
mod mr;

#[path = "rules/varicella.rs"]
mod varicella;

#[path = "rules/live_interval.rs"]
mod live_interval;

#[path = "rules/je.rs"]
mod je;

#[path = "rules/dt.rs"]
mod dt;

#[path = "rules/hpv.rs"]
mod hpv;

#[path = "rules/b_class.rs"]
mod b_class;

#[path = "rules/municipality.rs"]
mod municipality;
