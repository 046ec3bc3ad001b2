//! Pseudonymised research exports (docs/consent.md, "Research exports"): the records of every
//! person whose research consent names the project, each person under a keyed HMAC pseudonym
//! per project and purpose, direct identifiers removed, as FHIR NDJSON, with one AuditEvent per
//! export that lists pseudonymous counts and no identities.
//!
//! The `consent` crate decides and pseudonymises; this module finds the candidates, reads their
//! records, and writes the answer and its audit record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use actix_web::{HttpRequest, HttpResponse, web};
use consent::{
    LinkageRequest, Party, PatientRef, Policy, ProjectId, Pseudonym, PseudonymKey, Purpose,
};
use serde::Deserialize;
use serde_json::{Value, json};
use store::StoredVersion;
use time::OffsetDateTime;

use crate::access::Compartments;
use crate::config::ReadAudit;
use crate::disclosure::{Event, Exit};
use crate::domain::{parse_stored, search_all_versions};
use crate::error::{ApiError, ErrorKind};
use crate::http::error_response;
use crate::rest::Ctx;
use crate::state::AppState;

/// The insurance member id of JP-CLINS (`保険者番号:記号:番号:枝番`, jp-specs §0 item 5): the
/// same person in the national insurance database and in a PHR, so the default linkage key.
const INSURANCE_MEMBER_ID_SYSTEM: &str =
    "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";

/// Research exports: the pseudonymisation key and the projects that may export.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchConfig {
    /// A file whose bytes (at least 32) are the HMAC key of every pseudonym. Kept out of the
    /// configuration itself so the key never appears in it, in its dumps or in logs. Required
    /// when a project is configured.
    #[serde(default)]
    pub pseudonym_key_file: Option<PathBuf>,
    #[serde(default)]
    pub projects: Vec<ProjectConfig>,
}

/// One research or evaluation project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The project id a research consent names (actor identifier
    /// `https://musubi.example.org/fhir/IdSystem/research-project`).
    pub id: String,
    /// The registered clients that may export it.
    pub clients: Vec<String>,
    /// The purposes of use it exports for; the first is the default.
    #[serde(default = "default_purposes")]
    pub purposes: Vec<String>,
    /// The Patient identifier system whose value is the person's linkage key.
    #[serde(default = "default_linkage_system")]
    pub linkage_system: String,
    /// The record types exported besides the Patient.
    #[serde(default = "default_resource_types")]
    pub resource_types: Vec<String>,
}

fn default_purposes() -> Vec<String> {
    vec!["HRESCH".to_owned()]
}

fn default_linkage_system() -> String {
    INSURANCE_MEMBER_ID_SYSTEM.to_owned()
}

fn default_resource_types() -> Vec<String> {
    [
        "Immunization",
        "Observation",
        "Encounter",
        "QuestionnaireResponse",
        "Condition",
        "MedicationStatement",
        "AllergyIntolerance",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl ResearchConfig {
    /// Checks the projects against the consent policy and that the key can be read.
    pub fn validate(&self, policy: &Policy) -> Result<(), String> {
        if self.projects.is_empty() {
            return Ok(());
        }
        self.key()?;
        let mut seen = BTreeSet::new();
        for project in &self.projects {
            ProjectId::new(&project.id).map_err(|e| format!("research.projects: {e}"))?;
            if !seen.insert(project.id.as_str()) {
                return Err(format!(
                    "research.projects: the id {:?} is listed twice",
                    project.id
                ));
            }
            let name = format!("research.projects[{}]", project.id);
            if project.clients.is_empty() {
                return Err(format!("{name}.clients must name at least one client"));
            }
            if project.purposes.is_empty() {
                return Err(format!("{name}.purposes must name at least one purpose"));
            }
            for code in &project.purposes {
                let known = Purpose::new(code)
                    .ok()
                    .is_some_and(|p| policy.purpose(&p).is_some());
                if !known {
                    return Err(format!(
                        "{name}.purposes: {code:?} is not a purpose of use configured in profiles/jp/consent/purposes.json"
                    ));
                }
            }
            let refused = policy
                .pseudonymisation()
                .map(|rules| rules.not_exported.clone())
                .unwrap_or_default();
            for rt in &project.resource_types {
                if rt == "Patient" || refused.contains(rt) {
                    return Err(format!(
                        "{name}.resource_types: {rt:?} cannot be listed (the Patient is always exported pseudonymised; {} are never exported)",
                        refused.join(", ")
                    ));
                }
                if !fhir::Definitions::r4().is_resource_type(rt) {
                    return Err(format!(
                        "{name}.resource_types: {rt:?} is not an R4 resource type"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The key, read from its file now. Errors name the file, never its content.
    fn key(&self) -> Result<PseudonymKey, String> {
        let path = self.pseudonym_key_file.as_ref().ok_or(
            "research.pseudonym_key_file is required when research.projects are configured",
        )?;
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "research.pseudonym_key_file {} cannot be read: {e}",
                path.display()
            )
        })?;
        PseudonymKey::new(&bytes)
            .map_err(|e| format!("research.pseudonym_key_file {}: {e}", path.display()))
    }
}

/// `GET /research/v1/projects/{project}/export[?purpose=HRESCH]`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/research/v1")
            .wrap(actix_web::middleware::from_fn(
                crate::access::guard::require_token,
            ))
            .route("/projects/{project}/export", web::get().to(export)),
    );
}

async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let result = async {
        let ctx = crate::http::ctx(&state, &req);
        let project = project_for(&ctx, &path)?;
        let pairs = crate::rest::parse_query_string(req.query_string());
        let asked = pairs
            .iter()
            .find(|(name, _)| name == "purpose")
            .map(|(_, value)| value.as_str());
        let purpose = match asked {
            None => project.purposes[0].as_str(),
            Some(code) if project.purposes.iter().any(|p| p == code) => code,
            Some(code) => {
                return Err(ApiError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "project {} does not export for purpose {code:?}; its purposes: {}",
                        project.id,
                        project.purposes.join(", ")
                    ),
                ));
            }
        };
        let purpose = Purpose::new(purpose).map_err(|e| ApiError::bad_request(e.to_string()))?;
        run(&ctx, project, &purpose).await
    }
    .await;
    match result {
        Ok(answer) => HttpResponse::Ok()
            .content_type("application/fhir+ndjson")
            .insert_header(("x-musubi-research-persons", answer.persons.to_string()))
            .body(answer.body),
        Err(error) => error_response(&error, None),
    }
}

/// The project the caller may export: 404 for a project not configured, 403 for a caller not
/// listed on it.
fn project_for<'a>(ctx: &Ctx<'a>, id: &str) -> Result<&'a ProjectConfig, ApiError> {
    let project = ctx
        .state
        .config
        .research
        .projects
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no research project {id:?}")))?;
    let client = ctx.access.client_id();
    if !project.clients.iter().any(|c| c == client) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "client {client:?} may not export research project {id:?} (research.projects.clients)"
            ),
        ));
    }
    Ok(project)
}

/// An export's body and how many persons it carries.
struct Answer {
    body: String,
    persons: usize,
}

/// What the export did, in numbers only (the audit record).
#[derive(Default)]
struct Tally {
    /// Pseudonym → records exported under it (its Patient included).
    exported: BTreeMap<String, usize>,
    without_consent: usize,
    without_linkage_key: usize,
    records_withheld: usize,
}

async fn run(
    ctx: &Ctx<'_>,
    project: &ProjectConfig,
    purpose: &Purpose,
) -> Result<Answer, ApiError> {
    let state = ctx.state;
    let key = state.config.research.key().map_err(|e| {
        tracing::error!(error = %e, "research export: the pseudonym key is unusable");
        ApiError::internal("the pseudonymisation key cannot be used")
    })?;
    let project_id = ProjectId::new(&project.id).map_err(|e| ApiError::internal(e.to_string()))?;
    let policy = crate::disclosure::policy(state)?;
    let mut exit = Exit::for_recipient(ctx, Party::research_project(&project_id), purpose.clone())?;
    let now = OffsetDateTime::now_utc();
    let mut body = String::new();
    let mut tally = Tally::default();
    for patient_id in consenting_patients(state)? {
        let Some(patient) = state
            .store
            .read("Patient", &patient_id)?
            .filter(|v| !v.is_deleted())
        else {
            continue;
        };
        let patient_body = parse_stored(&patient)?;
        let Some(person) = linkage_key(&patient_body, &project.linkage_system) else {
            tally.without_linkage_key += 1;
            continue;
        };
        let reference = PatientRef::parse(&format!("Patient/{patient_id}"))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let records = records_of(state, project, &patient_id)?;
        let Some(consents) = exit.consents_of(&reference)? else {
            tally.without_consent += 1;
            continue;
        };
        // A consent may name the PHR vendor the data comes from; each vendor among the
        // person's records is tried, and the records are decided one by one below anyway.
        let mut sources: Vec<Option<Party>> = vec![None];
        for record in &records {
            if let Some(vendor) = crate::disclosure::source_of(&parse_stored(record)?)
                .filter(|s| s.kind == consent::RecipientKind::PhrApp)
                && !sources.contains(&Some(vendor.clone()))
            {
                sources.push(Some(vendor));
            }
        }
        let pseudonym = sources.iter().find_map(|source| {
            consent::issue_pseudonym(
                policy,
                &key,
                &LinkageRequest {
                    project: &project_id,
                    purpose,
                    patient: &reference,
                    person,
                    source_vendor: source.as_ref(),
                },
                consents,
                now,
            )
            .pseudonym
        });
        let Some(pseudonym) = pseudonym else {
            tally.without_consent += 1;
            continue;
        };
        let mut exported = 0;
        for version in std::iter::once(&patient).chain(&records) {
            if !exit.permits(version)? {
                tally.records_withheld += 1;
                continue;
            }
            body.push_str(&pseudonymised(policy, version, &pseudonym)?.to_string());
            body.push('\n');
            exported += 1;
        }
        tally
            .exported
            .insert(pseudonym.as_str().to_owned(), exported);
    }
    if state.config.audit.reads != ReadAudit::Off {
        let event = audit_record(ctx, &project.id, purpose, &tally);
        state.store.commit(vec![event]).await?;
    }
    Ok(Answer {
        body,
        persons: tally.exported.len(),
    })
}

/// The patients of every active Consent: the candidates, each decided with
/// `issue_pseudonym` (a consent that names another project or purpose issues nothing).
fn consenting_patients(state: &AppState) -> Result<BTreeSet<String>, ApiError> {
    let consents = search_all_versions(state.store.as_ref(), "Consent", "status", "active")?;
    let mut patients = BTreeSet::new();
    for consent in &consents {
        let body = parse_stored(consent)?;
        if let Some(patient) = body
            .pointer("/patient/reference")
            .and_then(Value::as_str)
            .and_then(|r| PatientRef::parse(r).ok())
        {
            patients.insert(patient.as_str().trim_start_matches("Patient/").to_owned());
        }
    }
    Ok(patients)
}

/// The person's linkage key: the value of the Patient's identifier in the project's system.
fn linkage_key<'v>(patient: &'v Value, system: &str) -> Option<&'v str> {
    patient
        .get("identifier")?
        .as_array()?
        .iter()
        .find(|i| i.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .filter(|v| !v.trim().is_empty())
}

/// The patient's records of the project's types, through the R4 Patient compartment.
fn records_of(
    state: &AppState,
    project: &ProjectConfig,
    patient_id: &str,
) -> Result<Vec<StoredVersion>, ApiError> {
    let patients = BTreeSet::from([patient_id.to_owned()]);
    let mut records = Vec::new();
    for rt in project.resource_types.iter().filter(|rt| state.serves(rt)) {
        let (param, value) = Compartments::r4().search_param(rt, &patients);
        records.extend(search_all_versions(
            state.store.as_ref(),
            rt,
            &param,
            &value,
        )?);
    }
    Ok(records)
}

fn pseudonymised(
    policy: &Policy,
    version: &StoredVersion,
    pseudonym: &Pseudonym,
) -> Result<Value, ApiError> {
    consent::pseudonymise(policy, &parse_stored(version)?, pseudonym).map_err(|e| {
        ApiError::internal(format!(
            "{} could not be pseudonymised: {e}",
            version.resource_type
        ))
    })
}

/// One AuditEvent for the export: the project, the purpose, and counts per pseudonym; no
/// patient, record id or consent that would name a person.
fn audit_record(ctx: &Ctx<'_>, project: &str, purpose: &Purpose, tally: &Tally) -> store::Write {
    let records: usize = tally.exported.values().sum();
    let detail = |name: &str, value: usize| json!({"type": name, "valueString": value.to_string()});
    let mut entity = vec![json!({
        "what": {"identifier": {"system": consent::RESEARCH_PROJECT_SYSTEM, "value": project}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
        "description": "research project",
        "detail": [
            detail("persons-exported", tally.exported.len()),
            detail("records-exported", records),
            detail("records-withheld", tally.records_withheld),
            detail("persons-without-consent", tally.without_consent),
            detail("persons-without-linkage-key", tally.without_linkage_key),
        ],
    })];
    for (pseudonym, count) in &tally.exported {
        entity.push(json!({
            "what": {"identifier": {"system": consent::PSEUDONYM_SYSTEM, "value": pseudonym}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "detail": [detail("records-exported", *count)],
        }));
    }
    crate::disclosure::anonymous_audit(
        ctx,
        Event::Export,
        if tally.exported.is_empty() { "4" } else { "0" },
        format!(
            "research export of project {project}: {records} records of {} pseudonymous persons",
            tally.exported.len()
        ),
        purpose,
        entity,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str) -> ProjectConfig {
        ProjectConfig {
            id: id.to_owned(),
            clients: vec!["researcher".to_owned()],
            purposes: default_purposes(),
            linkage_system: default_linkage_system(),
            resource_types: default_resource_types(),
        }
    }

    fn config_with_key(key: &[u8]) -> (ResearchConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, key).unwrap();
        let config = ResearchConfig {
            pseudonym_key_file: Some(file),
            projects: vec![project("p1")],
        };
        (config, dir)
    }

    #[test]
    fn the_key_must_be_long_enough_and_is_never_shown() {
        let policy = Policy::embedded().unwrap();
        let secret = b"short-secret-key";
        let (config, _dir) = config_with_key(secret);
        let error = config.validate(policy).unwrap_err();
        assert!(error.contains("at least 32"), "{error}");
        assert!(!error.contains("short-secret-key"), "{error}");
        let (config, _dir) = config_with_key(&[1u8; 32]);
        assert_eq!(config.validate(policy), Ok(()));
        let missing = ResearchConfig {
            pseudonym_key_file: None,
            projects: vec![project("p1")],
        };
        assert!(missing.validate(policy).is_err());
        assert_eq!(ResearchConfig::default().validate(policy), Ok(()));
    }

    #[test]
    fn projects_are_checked_against_the_consent_policy() {
        let policy = Policy::embedded().unwrap();
        let (mut config, _dir) = config_with_key(&[1u8; 32]);
        config.projects.push(project("p1"));
        assert!(config.validate(policy).unwrap_err().contains("twice"));
        config.projects = vec![project("p1")];
        config.projects[0].purposes = vec!["NOPE".to_owned()];
        assert!(config.validate(policy).unwrap_err().contains("NOPE"));
        config.projects = vec![project("p1")];
        config.projects[0].resource_types = vec!["RelatedPerson".to_owned()];
        assert!(
            config
                .validate(policy)
                .unwrap_err()
                .contains("RelatedPerson")
        );
        config.projects = vec![project("not a project id")];
        assert!(config.validate(policy).is_err());
    }

    #[test]
    fn the_linkage_key_is_the_identifier_of_the_project_s_system() {
        let patient = json!({"identifier": [
            {"system": "urn:other", "value": "x"},
            {"system": INSURANCE_MEMBER_ID_SYSTEM, "value": "06139999:1:2:01"}]});
        assert_eq!(
            linkage_key(&patient, INSURANCE_MEMBER_ID_SYSTEM),
            Some("06139999:1:2:01")
        );
        assert_eq!(linkage_key(&patient, "urn:none"), None);
        let blank = json!({"identifier": [{"system": INSURANCE_MEMBER_ID_SYSTEM, "value": " "}]});
        assert_eq!(linkage_key(&blank, INSURANCE_MEMBER_ID_SYSTEM), None);
    }
}
