//! The R4 patient compartment as data (profiles/r4/patient-compartment.json): which search
//! parameters tie each type to a Patient, evaluated with the same index extraction searches use,
//! so "inside the compartment" means exactly what a compartment search would return.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct File {
    members: HashMap<String, Vec<String>>,
    shared: Shared,
}

#[derive(Deserialize)]
struct Shared {
    types: Vec<String>,
}

pub struct Compartments {
    members: HashMap<String, Vec<String>>,
    shared: HashSet<String>,
}

impl Compartments {
    pub fn r4() -> &'static Compartments {
        static PARSED: OnceLock<Compartments> = OnceLock::new();
        PARSED.get_or_init(|| {
            let file: File = serde_json::from_str(profiles::R4_PATIENT_COMPARTMENT_JSON)
                .expect("profiles/r4/patient-compartment.json is valid (checked by a test)");
            Compartments {
                members: file.members,
                shared: file.shared.types.into_iter().collect(),
            }
        })
    }

    /// `Patient` itself, or a type the compartment definition lists.
    pub fn is_member_type(&self, resource_type: &str) -> bool {
        resource_type == "Patient" || self.members.contains_key(resource_type)
    }

    /// A type outside the compartment that holds no patient data.
    pub fn is_shared(&self, resource_type: &str) -> bool {
        self.shared.contains(resource_type)
    }

    /// Whether the resource belongs to the compartment of any of `patients`.
    pub fn contains(
        &self,
        resource_type: &str,
        resource: &Value,
        patients: &BTreeSet<String>,
    ) -> bool {
        if resource_type == "Patient" {
            return resource
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| patients.contains(id));
        }
        let Some(params) = self.members.get(resource_type) else {
            return false;
        };
        let value = references(patients);
        params
            .iter()
            .any(|param| matches(resource_type, resource, &[(param.clone(), value.clone())]))
    }

    /// The search parameter that restricts a search of `resource_type` to the compartment.
    pub fn search_param(
        &self,
        resource_type: &str,
        patients: &BTreeSet<String>,
    ) -> (String, String) {
        if resource_type == "Patient" {
            let ids: Vec<&str> = patients.iter().map(String::as_str).collect();
            return ("_id".into(), ids.join(","));
        }
        let param = self
            .members
            .get(resource_type)
            .and_then(|p| p.first())
            .cloned()
            .unwrap_or_else(|| "patient".into());
        (param, references(patients))
    }
}

fn references(patients: &BTreeSet<String>) -> String {
    patients
        .iter()
        .map(|id| format!("Patient/{id}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the resource satisfies every `param=value` of the conjunction, as a search would
/// decide it. Parameters this server cannot evaluate never match (fail closed).
pub fn matches(resource_type: &str, resource: &Value, conjunction: &[(String, String)]) -> bool {
    let registry = search::Registry::r4();
    let Ok(query) = search::parse_query(registry, resource_type, conjunction, true) else {
        return false;
    };
    if query.criteria.is_empty() {
        return conjunction.is_empty();
    }
    let entries = search::extract(registry, resource_type, resource);
    query.criteria.iter().all(|c| c.matches(&entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_member_parameter_is_a_known_search_parameter() {
        let registry = search::Registry::r4();
        for (rt, params) in &Compartments::r4().members {
            for param in params {
                assert!(
                    registry.param(rt, param).is_some(),
                    "{rt}.{param} is not an R4 search parameter"
                );
            }
        }
    }

    #[test]
    fn membership_follows_the_reference_parameters() {
        let c = Compartments::r4();
        let mine = set(&["child-1", "child-2"]);
        let cases = [
            (
                "Immunization",
                json!({"resourceType": "Immunization", "patient": {"reference": "Patient/child-1"}}),
                true,
            ),
            (
                "Immunization",
                json!({"resourceType": "Immunization", "patient": {"reference": "Patient/other"}}),
                false,
            ),
            (
                "Observation",
                json!({"resourceType": "Observation", "subject": {"reference": "Patient/child-2"}}),
                true,
            ),
            (
                "Observation",
                json!({"resourceType": "Observation", "performer": [{"reference": "Patient/child-2"}]}),
                true,
            ),
            (
                "Observation",
                json!({"resourceType": "Observation", "subject": {"reference": "Group/child-2"}}),
                false,
            ),
            (
                "Patient",
                json!({"resourceType": "Patient", "id": "child-1"}),
                true,
            ),
            (
                "Patient",
                json!({"resourceType": "Patient", "id": "child-3"}),
                false,
            ),
            (
                "Organization",
                json!({"resourceType": "Organization", "id": "child-1"}),
                false,
            ),
            (
                "Immunization",
                json!({"resourceType": "Immunization"}),
                false,
            ),
        ];
        for (rt, resource, expected) in cases {
            assert_eq!(c.contains(rt, &resource, &mine), expected, "{resource}");
        }
    }

    #[test]
    fn search_parameters_name_every_patient() {
        let c = Compartments::r4();
        let mine = set(&["a", "b"]);
        assert_eq!(
            c.search_param("Immunization", &mine),
            ("patient".into(), "Patient/a,Patient/b".into())
        );
        assert_eq!(
            c.search_param("Observation", &mine),
            ("subject".into(), "Patient/a,Patient/b".into())
        );
        assert_eq!(
            c.search_param("Patient", &mine),
            ("_id".into(), "a,b".into())
        );
        assert!(c.is_shared("Organization") && !c.is_member_type("Organization"));
        assert!(!c.is_shared("Task") && !c.is_member_type("Task"));
    }

    #[test]
    fn granular_conjunctions_match_like_searches() {
        let lab = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": "x"}});
        let conj = |v: &str| vec![("category".to_string(), v.to_string())];
        assert!(matches(
            "Observation",
            &lab,
            &conj("http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
        ));
        assert!(!matches(
            "Observation",
            &lab,
            &conj("http://terminology.hl7.org/CodeSystem/observation-category|vital-signs")
        ));
        assert!(!matches(
            "Observation",
            &lab,
            &[("no-such-param".into(), "x".into())]
        ));
    }
}
