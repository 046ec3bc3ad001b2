//! Musubi's reference data, embedded so that the binary needs no files at run time.
//!
//! The tables are generated from the official FHIR 4.0.1 definitions by
//! `profiles/tools/gen_r4_definitions.py`; see `profiles/README.md` for how to regenerate them.

/// Every R4 resource and data type: elements in canonical order, cardinalities, types,
/// reference targets and the codes of enumerable required bindings.
pub const R4_STRUCTURE_JSON: &str = include_str!("../r4/structure.json");

/// Every R4 SearchParameter (code, base, type, FHIRPath expression, targets).
pub const R4_SEARCH_PARAMETERS_JSON: &str = include_str!("../r4/search-parameters.json");

/// The R4 patient compartment (which search parameters link each type to a Patient) and the
/// types without patient data that patient-context tokens may read.
pub const R4_PATIENT_COMPARTMENT_JSON: &str = include_str!("../r4/patient-compartment.json");

/// Japanese eras (元号): names, letters, municipal era codes and first days.
pub const JP_ERAS_JSON: &str = include_str!("../jp/eras.json");

// Each folder below is embedded whole as `(file name, contents)` pairs in name order
// (`build.rs`): `JP_TERMINOLOGY` (CodeSystems, ValueSets, system aliases, product tables),
// `JP_STRUCTURE` (profile constraints), `JP_VACCINATION` (routine schedule rules and municipal
// overrides), `JP_QUESTIONNAIRES` (the digital 予診票 Questionnaires), `JP_MUNICIPAL` (municipal record
// layouts and per-municipality overrides), `JP_CONSENT` (consent policy and legal bases),
// `JP_ROUTING` (routing rules), `JP_BILLING` (fee schedules and cross-municipality schemes),
// `JP_PHR` (PHR app payload schemas and the OpenAPI document), `JP_PORTAL` (the My Number
// Portal response layout).
include!(concat!(env!("OUT_DIR"), "/jp_data.rs"));
