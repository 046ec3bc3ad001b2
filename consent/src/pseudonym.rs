//! Pseudonymised linkage for research and evaluation: a keyed HMAC-SHA256 pseudonym per
//! (project, purpose, person), issued only under a research consent, and the export helper that
//! replaces direct identifiers with it.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::decide::{Data, Decision, Outcome, ReasonCode, Request, decide, resource_patient};
use crate::model::{PSEUDONYM_SYSTEM, Party, PatientRef, ProjectId, Purpose};
use crate::record::ConsentRecord;
use crate::{ConsentError, Policy};

/// Shortest key accepted: HMAC-SHA256 gains nothing from more than its 32-byte output, and a
/// shorter key would be the weakest link.
const MIN_KEY_BYTES: usize = 32;
/// Domain separation, so the same key could never produce a pseudonym of another scheme.
const DOMAIN: &[u8] = b"musubi-pseudonym-v1";

/// The secret pseudonymisation key. Its `Debug` never shows the bytes; keep it out of logs and
/// configuration dumps.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl PseudonymKey {
    /// At least 32 bytes, e.g. from the gateway's secret store.
    pub fn new(bytes: &[u8]) -> Result<PseudonymKey, ConsentError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConsentError::Invalid {
                what: "pseudonym key",
                problem: format!(
                    "{} bytes given, at least {MIN_KEY_BYTES} needed",
                    bytes.len()
                ),
            });
        }
        Ok(PseudonymKey(bytes.to_vec()))
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// A pseudonym: 64 lower-case hex digits, also a valid FHIR id. Only [`issue_pseudonym`] makes
/// one, so holding a pseudonym proves a research consent was checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pseudonym(String);

impl Pseudonym {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request for a person's pseudonym in a project.
#[derive(Debug, Clone)]
pub struct LinkageRequest<'a> {
    pub project: &'a ProjectId,
    /// Usually `HRESCH`.
    pub purpose: &'a Purpose,
    /// The patient whose consents decide.
    pub patient: &'a PatientRef,
    /// The person's stable linkage key, the same for every source joined in the project (e.g.
    /// the insurance member id `保険者番号:記号:番号:枝番`). Only its HMAC leaves Musubi.
    pub person: &'a str,
    /// The PHR vendor the data comes from, when it does: the consent must name it.
    pub source_vendor: Option<&'a Party>,
}

/// The answer to a [`LinkageRequest`]: the decision to audit, and the pseudonym when a research
/// consent permits.
#[derive(Debug, Clone)]
pub struct Linkage {
    pub decision: Decision,
    pub pseudonym: Option<Pseudonym>,
}

/// Issues the pseudonym only where an active consent of the patient permits this project and
/// purpose for at least one data class (and names the PHR vendor when `source_vendor` is given).
/// A legal basis or an opt-out base policy never issues one: linkage needs an actual consent.
/// Each exported resource must still be decided on with [`decide`] (recipient
/// [`Party::research_project`]).
pub fn issue_pseudonym(
    policy: &Policy,
    key: &PseudonymKey,
    request: &LinkageRequest<'_>,
    consents: &[ConsentRecord],
    now: OffsetDateTime,
) -> Linkage {
    let recipient = Party::research_project(request.project);
    let decisions: Vec<Decision> = policy
        .data_classes()
        .iter()
        .map(|class| {
            decide(
                policy,
                &Request {
                    recipient: &recipient,
                    source: request.source_vendor,
                    purpose: request.purpose,
                    patient: request.patient,
                    home_municipality: None,
                    data: Data::Class(class),
                },
                consents,
                now,
            )
        })
        .collect();
    if request.person.trim().is_empty() {
        let mut refused = fallback(request, "the person's linkage key is empty");
        refused.reason = ReasonCode::NoResearchConsent;
        return Linkage {
            decision: refused,
            pseudonym: None,
        };
    }
    if let Some(permit) = decisions
        .iter()
        .find(|d| d.reason == ReasonCode::ConsentPermit)
    {
        return Linkage {
            decision: permit.clone(),
            pseudonym: Some(compute(
                key,
                request.project,
                request.purpose,
                request.person,
            )),
        };
    }
    // Report the most telling refusal: a vendor not named, then an explicit deny.
    let refusal = [ReasonCode::SourceNotNamed, ReasonCode::ConsentDeny]
        .iter()
        .find_map(|code| decisions.iter().find(|d| d.reason == *code).cloned())
        .unwrap_or_else(|| {
            fallback(
                request,
                "no research consent permits this project and purpose (legal bases and opt-out base policies do not issue pseudonyms)",
            )
        });
    Linkage {
        decision: refusal,
        pseudonym: None,
    }
}

fn fallback(request: &LinkageRequest<'_>, why: &str) -> Decision {
    Decision {
        outcome: Outcome::Deny,
        reason: ReasonCode::NoResearchConsent,
        explanation: format!(
            "pseudonym for project {} ({}): {why}",
            request.project.as_str(),
            request.purpose
        ),
        consents_used: Vec::new(),
        provision: None,
        legal_basis: None,
        data_class: None,
    }
}

/// HMAC-SHA256(key, domain ‖ project ‖ purpose ‖ person), each part length-prefixed so that no
/// two different inputs share a message.
fn compute(key: &PseudonymKey, project: &ProjectId, purpose: &Purpose, person: &str) -> Pseudonym {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC accepts any key length");
    for part in [
        DOMAIN,
        project.as_str().as_bytes(),
        purpose.as_str().as_bytes(),
        person.as_bytes(),
    ] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(part);
    }
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    Pseudonym(hex)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A copy of `resource` for a research export, direct identifiers replaced by `pseudonym`
/// (pseudonymisation.json; docs/consent.md, "Pseudonymised export"):
///
/// - Patient: `id` and the only `identifier` become the pseudonym; only the elements of
///   `patientKeep` remain; `meta` keeps `profile` only; `birthDate` and `deceasedDateTime`
///   become year-month; each address keeps `addressKeep` (no lines, text or postal code);
/// - any other resource: `dropElements` are removed (id, narrative, identifiers, contained
///   resources, notes, source/author), `meta` keeps `profile` only, a `subjectElements`
///   reference to a Patient becomes `Patient/{pseudonym}`, and in a QuestionnaireResponse the
///   items of `questionnaireDropItems` are removed and the dates of `questionnaireMonthItems` cut
///   to year-month;
/// - `notExported` types (RelatedPerson, Consent, AuditEvent, …) are refused.
///
/// A resource that concerns another patient than the pseudonym's is the caller's mistake and
/// cannot be detected here; call it per resource after [`decide`] permitted it.
pub fn pseudonymise(
    policy: &Policy,
    resource: &Value,
    pseudonym: &Pseudonym,
) -> Result<Value, ConsentError> {
    let rules = policy
        .pseudonymisation
        .as_ref()
        .ok_or_else(|| ConsentError::Data {
            file: "pseudonymisation".to_owned(),
            problem: "no pseudonymisation rules".to_owned(),
        })?;
    let object = resource.as_object().ok_or_else(|| ConsentError::Resource {
        expression: String::new(),
        problem: "not a JSON object".to_owned(),
    })?;
    let kind = object
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| ConsentError::Resource {
            expression: String::new(),
            problem: "no resourceType".to_owned(),
        })?;
    if rules.not_exported.iter().any(|t| t == kind) {
        return Err(ConsentError::Resource {
            expression: kind.to_owned(),
            problem: format!("{kind} is never part of a research export"),
        });
    }
    let mut out = Map::new();
    out.insert("resourceType".into(), kind.into());
    if kind == "Patient" {
        out.insert("id".into(), pseudonym.as_str().into());
        for (name, value) in object {
            if !rules.patient_keep.iter().any(|k| k == name) {
                continue;
            }
            let value = match name.as_str() {
                "meta" => profile_only(value),
                "birthDate" | "deceasedDateTime" => year_month(value),
                "address" => addresses(value, &rules.address_keep),
                _ => Some(value.clone()),
            };
            if let Some(value) = value {
                out.insert(name.clone(), value);
            }
        }
        out.insert(
            "identifier".into(),
            json!([{"system": PSEUDONYM_SYSTEM, "value": pseudonym.as_str()}]),
        );
        return Ok(Value::Object(out));
    }
    for (name, value) in object {
        if name == "resourceType" || rules.drop_elements.iter().any(|d| d == name) {
            continue;
        }
        let value = if name == "meta" {
            profile_only(value)
        } else if rules.subject_elements.iter().any(|s| s == name) && value_points_at_patient(value)
        {
            Some(json!({"reference": format!("Patient/{pseudonym}")}))
        } else if name == "item" && kind == "QuestionnaireResponse" {
            Some(items(value, rules))
        } else {
            Some(value.clone())
        };
        if let Some(value) = value {
            out.insert(name.clone(), value);
        }
    }
    Ok(Value::Object(out))
}

fn value_points_at_patient(value: &Value) -> bool {
    let probe = json!({"resourceType": "Probe", "subject": value});
    resource_patient(&probe).is_some()
}

fn profile_only(meta: &Value) -> Option<Value> {
    meta.get("profile").map(|p| json!({"profile": p}))
}

/// `YYYY-MM-DD…` → `YYYY-MM`; a value already at year or year-month precision stays.
fn year_month(value: &Value) -> Option<Value> {
    let text = value.as_str()?;
    Some(Value::String(text.chars().take(7).collect()))
}

fn addresses(value: &Value, keep: &[String]) -> Option<Value> {
    let list = value.as_array()?;
    let reduced: Vec<Value> = list
        .iter()
        .filter_map(|a| {
            let kept: Map<String, Value> = a
                .as_object()?
                .iter()
                .filter(|(k, _)| keep.iter().any(|x| x == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        })
        .collect();
    (!reduced.is_empty()).then_some(Value::Array(reduced))
}

fn items(value: &Value, rules: &crate::policy::PseudonymisationRules) -> Value {
    let Some(list) = value.as_array() else {
        return value.clone();
    };
    let kept = list
        .iter()
        .filter(|item| {
            let link = item.get("linkId").and_then(Value::as_str).unwrap_or("");
            !rules.questionnaire_drop_items.iter().any(|d| d == link)
        })
        .map(|item| {
            let mut item = item.clone();
            let link = item
                .get("linkId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if let Some(children) = item.get("item").cloned() {
                item["item"] = items(&children, rules);
            }
            if rules.questionnaire_month_items.contains(&link)
                && let Some(Value::Array(answers)) = item.get_mut("answer")
            {
                for answer in answers {
                    if let Some(cut) = answer.get("valueDate").and_then(year_month) {
                        answer["valueDate"] = cut;
                    }
                }
            }
            if let Some(Value::Array(answers)) = item.get_mut("answer") {
                for answer in answers {
                    if let Some(children) = answer.get("item").cloned() {
                        answer["item"] = items(&children, rules);
                    }
                }
            }
            item
        })
        .collect();
    Value::Array(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PseudonymKey {
        PseudonymKey::new(&[byte; 32]).expect("32-byte key")
    }

    #[test]
    fn pseudonym_is_stable_and_separates_projects_purposes_people_and_keys() {
        let hresch = Purpose::new("HRESCH").expect("code");
        let houtcoms = Purpose::new("HOUTCOMS").expect("code");
        let persons = [
            "06139999:はけんけん:12345:01",
            "06139999:はけんけん:12345:02",
            "p",
            "pp",
        ];
        let projects = ["ndb-phr-2025", "ndb-phr-2026", "a", "ab"];
        let mut seen = std::collections::HashSet::new();
        for project in projects {
            let project = ProjectId::new(project).expect("project id");
            for purpose in [&hresch, &houtcoms] {
                for person in persons {
                    let a = compute(&key(7), &project, purpose, person);
                    assert_eq!(a, compute(&key(7), &project, purpose, person), "stable");
                    assert_eq!(a.as_str().len(), 64);
                    assert!(a.as_str().bytes().all(|b| HEX.contains(&b)));
                    assert_ne!(
                        a,
                        compute(&key(8), &project, purpose, person),
                        "key matters"
                    );
                    assert!(seen.insert(a), "distinct per (project, purpose, person)");
                }
            }
        }
        assert_eq!(seen.len(), projects.len() * 2 * persons.len());
    }

    #[test]
    fn length_prefixes_prevent_boundary_collisions() {
        let purpose = Purpose::new("HRESCH").expect("code");
        let a = compute(&key(1), &ProjectId::new("ab").expect("id"), &purpose, "c");
        let b = compute(&key(1), &ProjectId::new("a").expect("id"), &purpose, "bc");
        assert_ne!(a, b);
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert!(PseudonymKey::new(&[0; 31]).is_err());
        let k = PseudonymKey::new(&[0xAB; 32]).expect("key");
        let shown = format!("{k:?}");
        assert_eq!(shown, "PseudonymKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }
}
