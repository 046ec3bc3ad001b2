//! PHR app payloads without I/O: JSON Schemas, validation with JSON pointers, and mappers between
//! the app shapes and FHIR.
//!
//! An app posts plain JSON (camelCase, ISO dates, units named); [`Phr::validate`] checks it
//! against the JSON Schemas in `profiles/jp/phr/` and the rules a schema cannot express, each
//! problem located by a JSON pointer; [`Phr::to_fhir`] turns it into FHIR R4 resources with
//! deterministic ids, and [`Phr::from_fhir`] turns stored resources back into the app shape.
//! Shapes, codes and sources: docs/phr-api.md.

mod error;
mod ids;
mod openapi;
mod prevaccination_form;
mod readback;
mod records;
mod tables;
mod validate;
mod vitals;

use std::sync::OnceLock;

use serde_json::Value;

pub use error::PhrError;
pub use ids::resource_id;
pub use tables::{CodeSystemAlias, Coding, VACCINE_TYPE_SYSTEM, VitalKind, VitalUnit};
pub use validate::{MAX_VIOLATIONS, SchemaViolation};

/// Musubi's canonical base (a placeholder domain).
pub const MUSUBI_BASE: &str = "https://musubi.example.org/fhir";
/// `meta.source` of every resource an app sent: this prefix plus the app's OAuth client id.
pub const CLIENT_SOURCE_PREFIX: &str = "https://musubi.example.org/fhir/phr-client/";
/// Identifier system of an app's own record id (`recordId`) on Condition, MedicationStatement
/// and AllergyIntolerance.
pub const RECORD_ID_SYSTEM: &str = "https://musubi.example.org/fhir/IdSystem/phr-record";

/// The app payload shapes, one JSON Schema each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// 予診票 (yoshinhyō) answers for a child and vaccine → QuestionnaireResponse.
    Prevaccination,
    /// Vital-sign time series → one Observation per point.
    Vitals,
    /// Conditions → Condition.
    Conditions,
    /// Medications → MedicationStatement.
    Medications,
    /// Allergies → AllergyIntolerance.
    Allergies,
    /// A child's vaccination history, read from Immunization (read-only).
    Vaccinations,
    /// A child's routine schedule, read from the ImmunizationRecommendation of
    /// `$immunization-schedule` (read-only).
    Schedule,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Prevaccination,
        Kind::Vitals,
        Kind::Conditions,
        Kind::Medications,
        Kind::Allergies,
        Kind::Vaccinations,
        Kind::Schedule,
    ];

    /// The name used in file names, ids and docs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prevaccination => "prevaccination",
            Kind::Vitals => "vitals",
            Kind::Conditions => "conditions",
            Kind::Medications => "medications",
            Kind::Allergies => "allergies",
            Kind::Vaccinations => "vaccinations",
            Kind::Schedule => "schedule",
        }
    }

    /// The schema's file in `profiles/jp/phr/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            Kind::Prevaccination => "prevaccination.schema.json",
            Kind::Vitals => "vitals.schema.json",
            Kind::Conditions => "conditions.schema.json",
            Kind::Medications => "medications.schema.json",
            Kind::Allergies => "allergies.schema.json",
            Kind::Vaccinations => "vaccinations.schema.json",
            Kind::Schedule => "schedule.schema.json",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether apps post this shape (the read-back shapes are made from FHIR only).
    pub fn is_writable(self) -> bool {
        !matches!(self, Kind::Vaccinations | Kind::Schedule)
    }
}

/// Who posts, for whom: what `to_fhir` needs besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct MappingContext<'a> {
    /// The Musubi Patient id from the request path; the payload's `personId` must equal it.
    pub patient_id: &'a str,
    /// The app's OAuth client id: part of every resource id and of `meta.source`.
    pub client_id: &'a str,
    /// The 予診票 forms to answer against; `None` uses the embedded ones.
    pub forms: Option<&'a prevaccination::Forms>,
}

/// What `from_fhir` needs besides the resources.
pub struct ReadContext<'a> {
    /// The Musubi Patient id every resource must be about (the result's `personId`).
    pub patient_id: &'a str,
    /// (system, code) of a vaccine product coding → Musubi vaccine-type code, for Immunizations
    /// coded only with HOT/YJ product codes (terminology's `vaccine_type_of`).
    pub vaccine_type_of: &'a dyn Fn(&str, &str) -> Option<String>,
}

impl std::fmt::Debug for ReadContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadContext")
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

/// The PHR tables, compiled schemas and the bundled OpenAPI document.
pub struct Phr {
    tables: tables::Tables,
    validators: Vec<(Kind, jsonschema::Validator)>,
    openapi: Value,
}

impl std::fmt::Debug for Phr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phr")
            .field("vital_kinds", &self.tables.vital_kinds.len())
            .field("code_systems", &self.tables.code_systems.len())
            .finish_non_exhaustive()
    }
}

impl Phr {
    /// The embedded tables, read and compiled once.
    pub fn embedded() -> Result<&'static Phr, PhrError> {
        static EMBEDDED: OnceLock<Result<Phr, PhrError>> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| Phr::load(&[]))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The embedded files plus `extra` `(file name, contents)` files: a `*.schema.json` or
    /// `openapi.json` replaces the file of that name; a `phr-vital-kinds` or `phr-code-systems`
    /// table adds entries or replaces those with the same `kind` / `alias`. Other files are
    /// listed by [`Phr::skipped_files`].
    pub fn load(extra: &[(String, String)]) -> Result<Phr, PhrError> {
        let tables = tables::Tables::load(extra)?;
        let mut validators = Vec::new();
        for kind in Kind::ALL {
            let file = kind.schema_file();
            let schema = &tables.schemas[file];
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(schema)
                .map_err(|e| PhrError::Data {
                    file: file.to_owned(),
                    problem: format!("not a usable JSON Schema: {}", e.masked()),
                })?;
            validators.push((kind, validator));
        }
        let openapi = openapi::bundle(&tables)?;
        Ok(Phr {
            tables,
            validators,
            openapi,
        })
    }

    /// Extra files that were not PHR data (so the caller can log them).
    pub fn skipped_files(&self) -> &[String] {
        &self.tables.skipped
    }

    /// The vital kinds in table order.
    pub fn vital_kinds(&self) -> &[VitalKind] {
        &self.tables.vital_kinds
    }

    /// The code-system aliases apps may use.
    pub fn code_systems(&self) -> &[CodeSystemAlias] {
        &self.tables.code_systems
    }

    /// The JSON Schema of a shape, as in its file.
    pub fn schema(&self, kind: Kind) -> &Value {
        &self.tables.schemas[kind.schema_file()]
    }

    /// The OpenAPI 3.1 document with every schema file inlined under `components.schemas`, as
    /// served at `/phr/v1/openapi.json`.
    pub fn openapi(&self) -> &Value {
        &self.openapi
    }

    /// Check a payload against its schema and the rules a schema cannot express (real dates,
    /// time zones, value ranges, units per kind, duplicates). Problems come sorted by pointer,
    /// at most [`MAX_VIOLATIONS`]. The 予診票 answers are checked against their form by
    /// [`Phr::to_fhir`], which needs the forms.
    pub fn validate(&self, kind: Kind, payload: &Value) -> Result<(), Vec<SchemaViolation>> {
        let validator = self
            .validators
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v)
            .expect("every kind has a compiled validator (checked by load)");
        let mut found = validate::schema_violations(validator, payload);
        if found.is_empty() {
            found = validate::semantic_violations(&self.tables, kind, payload);
        }
        validate::finish(found)
    }

    /// Map a payload to FHIR resources (validated first, including, for the 予診票, the answers
    /// against the form). Equal payloads from the same app give equal resources with equal ids.
    pub fn to_fhir(
        &self,
        kind: Kind,
        payload: &Value,
        ctx: &MappingContext<'_>,
    ) -> Result<Vec<Value>, PhrError> {
        if !kind.is_writable() {
            return Err(PhrError::ReadOnly(kind.name()));
        }
        self.validate(kind, payload).map_err(PhrError::Invalid)?;
        if payload.get("personId").and_then(Value::as_str) != Some(ctx.patient_id) {
            return Err(PhrError::Invalid(vec![SchemaViolation {
                pointer: "/personId".into(),
                message: "personId is not the patient of the request path".into(),
            }]));
        }
        match kind {
            Kind::Prevaccination => {
                let forms = match ctx.forms {
                    Some(forms) => forms,
                    None => prevaccination::Forms::embedded().map_err(|e| PhrError::Data {
                        file: "profiles/jp/questionnaires".into(),
                        problem: e.to_string(),
                    })?,
                };
                prevaccination_form::to_fhir(&self.tables, forms, payload, ctx)
            }
            Kind::Vitals => Ok(vitals::to_fhir(&self.tables, payload, ctx)),
            Kind::Conditions | Kind::Medications | Kind::Allergies => {
                Ok(records::to_fhir(&self.tables, kind, payload, ctx))
            }
            Kind::Vaccinations | Kind::Schedule => Err(PhrError::ReadOnly(kind.name())),
        }
    }

    /// Read stored resources back into the app shape of `kind`, in the normal form of
    /// [`Phr::normalise`]. Resources of other types, and Observations of kinds or units not in
    /// the table, are skipped; a resource about another patient is an error.
    pub fn from_fhir(
        &self,
        kind: Kind,
        resources: &[Value],
        ctx: &ReadContext<'_>,
    ) -> Result<Value, PhrError> {
        match kind {
            Kind::Prevaccination => prevaccination_form::from_fhir(resources, ctx),
            Kind::Vitals => vitals::from_fhir(&self.tables, resources, ctx),
            Kind::Conditions | Kind::Medications | Kind::Allergies => {
                records::from_fhir(&self.tables, kind, resources, ctx)
            }
            Kind::Vaccinations => readback::vaccinations(&self.tables, resources, ctx),
            Kind::Schedule => readback::schedule(resources, ctx),
        }
    }

    /// The normal form of a valid payload, which `from_fhir(to_fhir(payload))` returns: defaults
    /// filled in, one-element answer lists as single values, series merged per kind and unit in
    /// table order with points in time order, list items in `recordId` order.
    pub fn normalise(&self, kind: Kind, payload: &Value) -> Value {
        match kind {
            Kind::Prevaccination => prevaccination_form::normalise(payload),
            Kind::Vitals => vitals::normalise(&self.tables, payload),
            Kind::Conditions | Kind::Medications | Kind::Allergies => {
                records::normalise(kind, payload)
            }
            Kind::Vaccinations | Kind::Schedule => payload.clone(),
        }
    }
}

fn embedded() -> &'static Phr {
    Phr::embedded().expect("the embedded PHR data files load (checked by the crate's tests)")
}

/// [`Phr::validate`] with the embedded tables.
pub fn validate(kind: Kind, payload: &Value) -> Result<(), Vec<SchemaViolation>> {
    embedded().validate(kind, payload)
}

/// [`Phr::to_fhir`] with the embedded tables.
pub fn to_fhir(
    kind: Kind,
    payload: &Value,
    ctx: &MappingContext<'_>,
) -> Result<Vec<Value>, PhrError> {
    embedded().to_fhir(kind, payload, ctx)
}

/// [`Phr::from_fhir`] with the embedded tables.
pub fn from_fhir(
    kind: Kind,
    resources: &[Value],
    ctx: &ReadContext<'_>,
) -> Result<Value, PhrError> {
    embedded().from_fhir(kind, resources, ctx)
}

/// The bundled OpenAPI document of the embedded tables ([`Phr::openapi`]).
pub fn openapi() -> &'static Value {
    embedded().openapi()
}
