//! The Japanese domain knowledge the gateway applies: the reference data (terminology, profiles,
//! routine-vaccination rules, 予診票 forms, vaccine barcodes) loaded once at start-up from the
//! built-in tables plus `profiles.extra_dir`, and the checks every write goes through.
//!
//! The pure crates decide; this module only fetches what they need from the store (the patient,
//! their other vaccinations) and reads the extra data files, so the I/O stays at the edge.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fhir::validate::{Issue, IssueType, Severity};
use serde_json::Value;
use store::{SearchRequest, Store, StoredVersion};

use crate::error::ApiError;

/// Every loaded table, immutable after start-up.
pub struct Domain {
    pub terminology: terminology::Terminology,
    pub profiles: conform::ProfileSet,
    pub rules: vaccination::RuleSet,
    pub forms: prevaccination::Forms,
    pub products: identifiers::ProductTable,
    pub layouts: municipal::Layouts,
    /// Stored doses already decoded, by a hash of their covered members (see
    /// [`DecodedDoses`]).
    decoded_doses: DecodedDoses,
}

/// Doses decoded from covered members, by the 128-bit hash of those bytes. Decoding is a pure
/// function of the bytes (and of the terminology, fixed at start-up), and each stored dose of a
/// child is decoded again on every later write for that child: parsing and mapping were ~half
/// of a transaction's server CPU (docs/performance.md). Bounded: emptied when full.
#[derive(Default)]
struct DecodedDoses(Mutex<HashMap<u128, Option<vaccination::DoseRecord>>>);

/// At most this many decoded doses are kept (~150 bytes each).
const DECODED_DOSES_MAX: usize = 50_000;

impl DecodedDoses {
    fn get_or_decode(
        &self,
        json: &[u8],
        decode: impl FnOnce() -> Result<Option<vaccination::DoseRecord>, ApiError>,
    ) -> Result<Option<vaccination::DoseRecord>, ApiError> {
        let key = xxhash_rust::xxh3::xxh3_128(json);
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dose) = lock().get(&key) {
            return Ok(dose.clone());
        }
        let dose = decode()?;
        let mut cache = lock();
        if cache.len() >= DECODED_DOSES_MAX {
            cache.clear();
        }
        cache.insert(key, dose.clone());
        Ok(dose)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("cannot read the data folder {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reference data ({part}): {message}")]
    Data { part: &'static str, message: String },
}

fn data_error(part: &'static str) -> impl Fn(String) -> DomainError {
    move |message| DomainError::Data { part, message }
}

/// The `*.json` files directly inside `dir`, in name order; a missing folder holds none.
pub(crate) fn read_folder(dir: &Path) -> Result<Vec<(String, String)>, DomainError> {
    let read_error = |source| DomainError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).map_err(|source| DomainError::Read {
                path: path.clone(),
                source,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

impl Domain {
    /// The built-in tables plus the files of `extra_dir` (laid out like `profiles/jp/`).
    pub fn load(extra_dir: Option<&Path>) -> Result<Domain, DomainError> {
        let extra = |folder: &str| match extra_dir {
            Some(dir) if !dir.as_os_str().is_empty() => read_folder(&dir.join(folder)),
            _ => Ok(Vec::new()),
        };
        let terminology_files = extra("terminology")?;
        let (gtin_files, code_files): (Vec<_>, Vec<_>) = terminology_files
            .into_iter()
            .partition(|(name, _)| name.starts_with("gtin-"));
        let domain = Domain {
            terminology: terminology::Terminology::load(&code_files)
                .map_err(|e| e.to_string())
                .map_err(data_error("terminology"))?,
            products: identifiers::ProductTable::load(&gtin_files)
                .map_err(|e| e.to_string())
                .map_err(data_error("vaccine barcodes"))?,
            profiles: conform::ProfileSet::load(&extra("structure")?)
                .map_err(|e| e.to_string())
                .map_err(data_error("profiles"))?,
            rules: vaccination::RuleSet::load(&extra("vaccination")?)
                .map_err(|e| e.to_string())
                .map_err(data_error("vaccination rules"))?,
            decoded_doses: DecodedDoses::default(),
            forms: prevaccination::Forms::load(&extra("questionnaires")?)
                .map_err(|e| e.to_string())
                .map_err(data_error("予診票 questionnaires"))?,
            layouts: municipal::Layouts::load(&extra("municipal")?)
                .map_err(|e| e.to_string())
                .map_err(data_error("municipal layouts"))?,
        };
        domain.check_vaccine_types()?;
        Ok(domain)
    }

    /// Every vaccine type the rules, the 予診票 form map and the barcode table name must exist in
    /// the vaccine-type CodeSystem: the tables are edited separately, and a typo would otherwise
    /// silently switch a rule or a form off.
    fn check_vaccine_types(&self) -> Result<(), DomainError> {
        let system = mappers::immunization::VACCINE_TYPE_SYSTEM;
        let named = self
            .rules
            .vaccines()
            .iter()
            .map(|v| ("vaccination rules", v.code().to_owned()))
            .chain(
                self.forms
                    .vaccine_types()
                    .into_iter()
                    .map(|code| ("予診票 form map", code.to_owned())),
            )
            .chain(
                self.products
                    .products()
                    .map(|p| ("vaccine barcodes", p.vaccine_type.clone())),
            );
        for (part, code) in named {
            if self.terminology.lookup(system, &code).is_err() {
                return Err(DomainError::Data {
                    part,
                    message: format!("vaccine type {code:?} is not in the CodeSystem {system}"),
                });
            }
        }
        Ok(())
    }

    /// The definitional resources behind the tables, as (type, id, resource): CodeSystems,
    /// ValueSets, the profiles as StructureDefinitions and the 予診票 Questionnaires.
    pub fn definitional_resources(&self) -> Vec<(String, String, Value)> {
        let mut resources: Vec<Value> = self.terminology.resources().cloned().collect();
        resources.extend(
            self.profiles
                .profiles()
                .map(conform::Profile::to_structure_definition),
        );
        resources.extend(self.forms.all().iter().cloned());
        resources
            .into_iter()
            .filter_map(|resource| {
                let resource_type = resource.get("resourceType")?.as_str()?.to_owned();
                let id = resource.get("id")?.as_str()?.to_owned();
                Some((resource_type, id, resource))
            })
            .collect()
    }

    /// What the profile validator asks of terminology and identifier formats.
    pub fn checker(&self) -> Checker<'_> {
        Checker {
            terminology: &self.terminology,
        }
    }

    /// Profile issues of a resource: every known profile it claims, `also`, and its type's
    /// default profile when the type is one of `enforce` (`profiles.enforce`).
    pub fn profile_issues(
        &self,
        resource: &Value,
        also: &[&str],
        enforce: &[String],
    ) -> Vec<Issue> {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut profiles = also.to_vec();
        if enforce.iter().any(|t| t == resource_type)
            && let Some(default) = self.profiles.default_for_type(resource_type)
        {
            profiles.push(default.url());
        }
        self.profiles.validate(resource, &profiles, &self.checker())
    }

    /// The vaccine type a coding names (a product code in any system form, or a vaccine type).
    pub fn vaccine_type_of(&self, system: &str, code: &str) -> Option<String> {
        self.terminology
            .vaccine_type_of(system, code)
            .map(str::to_owned)
    }

    /// The routine-vaccination findings for an Immunization about to be written, as warnings
    /// (the caller turns them into errors when the configuration rejects violations). Reasons
    /// the rules could not be applied come back as information, never as errors.
    pub fn vaccination_issues(
        &self,
        store: &dyn Store,
        pending: &Pending<'_>,
        immunization: &Value,
    ) -> Result<Vec<Issue>, ApiError> {
        let note = |diagnostics: String| {
            vec![Issue {
                severity: Severity::Information,
                code: IssueType::Informational,
                expression: "Immunization".into(),
                diagnostics,
            }]
        };
        let dose = match mappers::immunization::dose_record(immunization, |s, c| {
            self.vaccine_type_of(s, c)
        }) {
            Ok(dose) => dose,
            Err(mappers::immunization::NotCheckable::NotCompleted(_)) => return Ok(Vec::new()),
            Err(why) => return Ok(note(why.to_string())),
        };
        let Some(patient_id) = mappers::immunization::patient_id(immunization) else {
            return Ok(note(
                mappers::immunization::NotCheckable::NoPatient.to_string(),
            ));
        };
        let patient = match pending.get("Patient", patient_id) {
            Some(written) => written.cloned(),
            None => live_resource(store, "Patient", patient_id)?,
        };
        let Some(patient) = patient else {
            return Ok(note(format!(
                "Patient/{patient_id} is not on this server, so the routine rules were not checked"
            )));
        };
        let person = match mappers::immunization::person(&patient, None) {
            Ok(person) => person,
            Err(why) => {
                return Ok(note(format!("{why}; the routine rules were not checked")));
            }
        };
        let history = self.dose_history(store, pending, patient_id)?;
        let findings = vaccination::check_dose(&self.rules, &person, &history, &dose);
        Ok(findings.iter().map(finding_issue).collect())
    }

    /// Every completed, checkable vaccination of a patient on this server, as it will be once
    /// `pending` is written.
    pub fn dose_history(
        &self,
        store: &dyn Store,
        pending: &Pending<'_>,
        patient_id: &str,
    ) -> Result<Vec<vaccination::DoseRecord>, ApiError> {
        let stored = pending.stored_doses(patient_id, || self.stored_doses(store, patient_id))?;
        let still_stored = stored
            .iter()
            .filter(|(id, _)| pending.get("Immunization", id).is_none())
            .map(|(_, dose)| dose.clone());
        let reference = format!("Patient/{patient_id}");
        let written = pending
            .resources_of("Immunization")
            .filter(|immunization| {
                immunization
                    .pointer("/patient/reference")
                    .and_then(Value::as_str)
                    == Some(reference.as_str())
            })
            .filter_map(|immunization| {
                mappers::immunization::dose_record(immunization, |s, c| self.vaccine_type_of(s, c))
                    .ok()
            });
        Ok(still_stored.chain(written).collect())
    }

    /// The checkable doses among a patient's stored Immunizations, with the id each is stored
    /// under. A child's history is read on every dose written for them, so it comes from the
    /// covering index on `patient` ([`covering_indexes`]): one range scan, no body read.
    fn stored_doses(
        &self,
        store: &dyn Store,
        patient_id: &str,
    ) -> Result<Vec<(String, vaccination::DoseRecord)>, ApiError> {
        let patient = search::IndexValue::Reference(format!("Patient/{patient_id}"));
        let mut doses = Vec::new();
        for covered in store.covered("Immunization", "patient", &patient)? {
            let dose = self
                .decoded_doses
                .get_or_decode(&covered.members, || self.stored_dose(&covered.members))?;
            if let Some(dose) = dose {
                doses.push((covered.id, dose));
            }
        }
        Ok(doses)
    }

    /// The dose a stored Immunization records, from its covered members (or, in the tests, its
    /// whole body); `None` when it is not a checkable dose.
    fn stored_dose(&self, json: &[u8]) -> Result<Option<vaccination::DoseRecord>, ApiError> {
        let immunization: Value = serde_json::from_slice(json)
            .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}")))?;
        Ok(
            mappers::immunization::dose_record(&immunization, |s, c| self.vaccine_type_of(s, c))
                .ok(),
        )
    }
}

/// The covering indexes the gateway opens its store with: each Immunization's `patient` entry
/// also holds [`DOSE_MEMBERS`], so the routine-vaccination check of a write reads the child's
/// stored doses from one index range scan.
pub fn covering_indexes() -> Vec<store::CoveringIndex> {
    vec![store::CoveringIndex {
        resource_type: "Immunization".into(),
        param: "patient".into(),
        members: DOSE_MEMBERS.iter().map(|m| (*m).to_owned()).collect(),
    }]
}

/// The members of an Immunization that `mappers::immunization::dose_record` reads (the store
/// answers entries written before the declaration from the body, so adding one here is safe).
const DOSE_MEMBERS: [&str; 5] = [
    "id",
    "status",
    "vaccineCode",
    "occurrenceDateTime",
    "protocolApplied",
];

/// The stored doses of one patient as read for a transaction: (stored id, dose).
type StoredDoses = std::sync::Arc<Vec<(String, vaccination::DoseRecord)>>;

/// What a transaction is about to write or delete, so that the checks of each entry see the
/// others as if they were stored (a clinic often sends the Patient with its Immunization).
#[derive(Default)]
pub struct Pending<'a> {
    /// (type, id) → the new content, or `None` for a delete.
    resources: HashMap<(&'a str, &'a str), Option<&'a Value>>,
    /// Each patient's stored doses, read once per transaction however many of its entries
    /// vaccinate that patient (a clinic sends a visit's doses together).
    stored_doses: Mutex<HashMap<String, StoredDoses>>,
}

impl<'a> Pending<'a> {
    pub fn from_writes(writes: &'a [store::Write]) -> Pending<'a> {
        let resources = writes
            .iter()
            .map(|w| {
                let content = match &w.action {
                    store::WriteAction::Put(resource) => Some(resource),
                    store::WriteAction::Delete => None,
                };
                ((w.resource_type.as_str(), w.id.as_str()), content)
            })
            .collect();
        Pending {
            resources,
            stored_doses: Mutex::default(),
        }
    }

    /// The patient's stored doses, from `read` the first time they are asked for.
    fn stored_doses(
        &self,
        patient_id: &str,
        read: impl FnOnce() -> Result<Vec<(String, vaccination::DoseRecord)>, ApiError>,
    ) -> Result<StoredDoses, ApiError> {
        let cached = |cache: &HashMap<String, StoredDoses>| cache.get(patient_id).cloned();
        if let Some(doses) = cached(&self.stored_doses.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(doses);
        }
        let doses = std::sync::Arc::new(read()?);
        self.stored_doses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(patient_id.to_owned(), doses.clone());
        Ok(doses)
    }

    /// `Some(content)` when the transaction writes the resource (`Some(None)`: deletes it).
    /// Whether the pending writes delete the resource (or, for an operation, hide it).
    pub fn hides(&self, resource_type: &str, id: &str) -> bool {
        self.get(resource_type, id) == Some(None)
    }

    fn get(&self, resource_type: &str, id: &str) -> Option<Option<&'a Value>> {
        self.resources.get(&(resource_type, id)).copied()
    }

    fn resources_of(&self, resource_type: &'a str) -> impl Iterator<Item = &'a Value> + '_ {
        self.resources
            .iter()
            .filter(move |((t, _), _)| *t == resource_type)
            .filter_map(|(_, content)| *content)
    }
}

/// Where a finding points in the Immunization.
fn finding_expression(kind: &vaccination::FindingKind) -> &'static str {
    use vaccination::FindingKind as K;
    match kind {
        K::DoseNumber => "Immunization.protocolApplied[0].doseNumberPositiveInt",
        K::NotRoutine => "Immunization.vaccineCode",
        _ => "Immunization.occurrenceDateTime",
    }
}

pub fn finding_issue(finding: &vaccination::Finding) -> Issue {
    Issue {
        severity: Severity::Warning,
        code: IssueType::BusinessRule,
        expression: finding_expression(&finding.kind).into(),
        diagnostics: format!(
            "{} [rule {}; source: {}]",
            finding.message, finding.rule_id, finding.source
        ),
    }
}

pub(crate) fn parse_stored(version: &StoredVersion) -> Result<Value, ApiError> {
    serde_json::from_slice(&version.body)
        .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}")))
}

/// The live (not deleted) current version of a resource, parsed.
pub fn live_resource(
    store: &dyn Store,
    resource_type: &str,
    id: &str,
) -> Result<Option<Value>, ApiError> {
    match store.read(resource_type, id)? {
        Some(version) if !version.is_deleted() => Ok(Some(parse_stored(&version)?)),
        _ => Ok(None),
    }
}

/// A process-wide cache of data parsed from a folder, one entry per folder.
pub(crate) type FolderCache<T> = std::sync::OnceLock<Mutex<HashMap<PathBuf, &'static T>>>;

/// Data of this process's configuration that the embedded files and the `*.json` files of
/// `{profiles.extra_dir}/{folder}/` make together: the embedded data alone without such a
/// folder; otherwise `load(extra files)`, parsed once per folder. Like the embedded tables it
/// lives as long as the process (the configuration, and so the folder, does not change while it
/// runs).
pub(crate) fn folder_data<T: Sync + 'static>(
    extra_dir: Option<&Path>,
    folder: &str,
    cache: &'static FolderCache<T>,
    embedded: impl FnOnce() -> Result<&'static T, ApiError>,
    load: impl FnOnce(&[(String, String)]) -> Result<T, String>,
) -> Result<&'static T, ApiError> {
    let dir = extra_dir
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(folder))
        .filter(|d| d.is_dir());
    let Some(dir) = dir else {
        return embedded();
    };
    let mut loaded = cache
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(data) = loaded.get(&dir) {
        return Ok(data);
    }
    let extra = read_folder(&dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let data: &'static T = Box::leak(Box::new(load(&extra).map_err(ApiError::internal)?));
    loaded.insert(dir, data);
    Ok(data)
}

/// The content of the newest version before `version` that is not a deletion: what a deleted
/// record said last.
pub fn last_content_before(
    store: &dyn Store,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<Value>, ApiError> {
    let mut number = version;
    while number > 1 {
        number -= 1;
        if let Some(found) = store
            .vread(resource_type, id, number)?
            .filter(|v| !v.is_deleted())
        {
            return Ok(Some(parse_stored(&found)?));
        }
    }
    Ok(None)
}

/// Every live resource of a type matching one search criterion, page by page.
pub fn search_all(
    store: &dyn Store,
    resource_type: &str,
    param: &str,
    value: &str,
) -> Result<Vec<Value>, ApiError> {
    let mut resources = Vec::new();
    for_each_live(store, resource_type, param, value, |version| {
        resources.push(parse_stored(version)?);
        Ok(())
    })?;
    Ok(resources)
}

/// Every live resource of a type matching one search criterion, as stored (id and version
/// beside the body, for a consent decision).
pub fn search_all_versions(
    store: &dyn Store,
    resource_type: &str,
    param: &str,
    value: &str,
) -> Result<Vec<StoredVersion>, ApiError> {
    let mut versions = Vec::new();
    for_each_live(store, resource_type, param, value, |version| {
        versions.push(version.clone());
        Ok(())
    })?;
    Ok(versions)
}

/// Call `each` with the stored version of every live resource of a type matching one search
/// criterion, page by page, in the store's order.
pub(crate) fn for_each_live(
    store: &dyn Store,
    resource_type: &str,
    param: &str,
    value: &str,
    mut each: impl FnMut(&StoredVersion) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    const PAGE: usize = 1000;
    let criteria = [(param.to_owned(), value.to_owned())];
    let query = search::parse_query(search::Registry::r4(), resource_type, &criteria, true)?;
    let mut offset = 0;
    loop {
        let page = store.search(&SearchRequest {
            resource_type,
            query: &query,
            offset,
            count: PAGE,
            need_total: false,
        })?;
        let found = page.matches.len();
        for version in &page.matches {
            each(version)?;
        }
        if found < PAGE {
            return Ok(());
        }
        offset += found;
    }
}

/// Every Immunization whose `patient` is `Patient/{patient_id}`.
pub fn patient_immunizations(store: &dyn Store, patient_id: &str) -> Result<Vec<Value>, ApiError> {
    search_all(
        store,
        "Immunization",
        "patient",
        &format!("Patient/{patient_id}"),
    )
}

/// The profile validator's view of terminology and identifier formats.
pub struct Checker<'a> {
    terminology: &'a terminology::Terminology,
}

impl conform::Terminology for Checker<'_> {
    fn canonical_system<'a>(&'a self, system: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(self.terminology.canonical_system(system))
    }

    fn check_code(&self, value_set: &str, system: Option<&str>, code: &str) -> conform::CodeCheck {
        use terminology::Membership as M;
        match self.terminology.in_value_set(value_set, system, code) {
            M::Member => conform::CodeCheck::Member,
            M::NotMember => conform::CodeCheck::NotMember,
            M::UnknownValueSet => conform::CodeCheck::UnknownValueSet,
            M::UnknownSystem => conform::CodeCheck::UnknownSystem,
        }
    }

    fn check_identifier(&self, format: &str, value: &str) -> Result<(), String> {
        identifiers::check_format(format, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use store::{FjallStore, Precondition, StoreOptions, Write, WriteAction};

    #[test]
    fn decoded_doses_are_decoded_once_per_content_and_stay_bounded() {
        let cache = DecodedDoses::default();
        let decodes = std::cell::Cell::new(0);
        let decode = |number: u32| {
            decodes.set(decodes.get() + 1);
            Ok(Some(vaccination::DoseRecord {
                id: None,
                vaccine: "dpt-ipv-hib".into(),
                product: None,
                date: time::macros::date!(2024 - 06 - 03),
                dose_number: Some(number),
            }))
        };
        let first = cache
            .get_or_decode(b"{\"id\":\"a\"}", || decode(1))
            .unwrap();
        let again = cache
            .get_or_decode(b"{\"id\":\"a\"}", || decode(9))
            .unwrap();
        assert_eq!(
            first, again,
            "the same bytes give the decoded dose of the first time"
        );
        assert_eq!(decodes.get(), 1);
        let other = cache
            .get_or_decode(b"{\"id\":\"b\"}", || decode(2))
            .unwrap();
        assert_eq!(other.and_then(|d| d.dose_number), Some(2));
        assert_eq!(decodes.get(), 2);
        for n in 0..DECODED_DOSES_MAX {
            let bytes = format!("{{\"id\":\"x{n}\"}}");
            cache.get_or_decode(bytes.as_bytes(), || Ok(None)).unwrap();
        }
        let held = cache.0.lock().unwrap().len();
        assert!(held <= DECODED_DOSES_MAX, "{held} decoded doses held");
    }

    fn immunization(id: &str, patient: &str, status: &str, date: &str, number: u32) -> Value {
        json!({
            "resourceType": "Immunization", "id": id, "status": status,
            "vaccineCode": {"coding": [{"system": "urn:oid:1.2.392.100495.20.1.73", "code": "636140FG1020", "display": "ゴービック水性懸濁注シリンジ"}]},
            "patient": {"reference": patient},
            "occurrenceDateTime": date, "lotNumber": "A123B",
            "protocolApplied": [{"doseNumberPositiveInt": number}]
        })
    }

    fn dose(id: &str, patient: &str, status: &str, date: &str, number: u32) -> Write {
        Write {
            resource_type: "Immunization".into(),
            id: id.into(),
            precondition: Precondition::None,
            action: WriteAction::Put(immunization(id, patient, status, date, number)),
        }
    }

    fn commit(store: &FjallStore, writes: Vec<Write>) {
        futures_executor::block_on(store.commit(writes)).unwrap();
    }

    /// The stored doses as read before the covering index: every live match's whole body.
    fn doses_from_bodies(
        domain: &Domain,
        store: &dyn Store,
        patient_id: &str,
    ) -> Vec<(String, vaccination::DoseRecord)> {
        let mut doses = Vec::new();
        let reference = format!("Patient/{patient_id}");
        for_each_live(store, "Immunization", "patient", &reference, |version| {
            if let Some(dose) = domain.stored_dose(&version.body)? {
                doses.push((version.id.clone(), dose));
            }
            Ok(())
        })
        .unwrap();
        doses
    }

    #[test]
    fn the_rules_see_the_same_history_through_the_covering_index_as_through_bodies() {
        let domain = Domain::load(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Doses written by a store without the covering index (entries without members)...
        {
            let old = FjallStore::open(dir.path(), &StoreOptions::default()).unwrap();
            let child = json!({"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "2024-01-10"});
            commit(
                &old,
                vec![
                    Write {
                        resource_type: "Patient".into(),
                        id: "p1".into(),
                        precondition: Precondition::None,
                        action: WriteAction::Put(child),
                    },
                    dose(
                        "d1",
                        "Patient/p1",
                        "completed",
                        "2024-03-10T10:00:00+09:00",
                        1,
                    ),
                    dose("d2", "Patient/p1", "completed", "2024-04-01", 2),
                    dose("d3", "Patient/p1", "completed", "2024-05-01", 3),
                    dose("d4", "Patient/p1", "entered-in-error", "2024-05-02", 3),
                    dose("other", "Patient/p10", "completed", "2024-05-03", 1),
                ],
            );
            futures_executor::block_on(old.shutdown()).unwrap();
        }
        // ...and by the gateway's store after it: new doses, an update and a delete.
        let options = StoreOptions {
            covering: covering_indexes(),
            ..StoreOptions::default()
        };
        let store = FjallStore::open(dir.path(), &options).unwrap();
        commit(
            &store,
            vec![
                dose("d5", "Patient/p1", "completed", "2024-06-01", 4),
                dose("d2", "Patient/p1", "completed", "2024-04-02", 2),
                Write {
                    resource_type: "Immunization".into(),
                    id: "d3".into(),
                    precondition: Precondition::None,
                    action: WriteAction::Delete,
                },
            ],
        );

        let covered = domain.stored_doses(&store, "p1").unwrap();
        let ids: Vec<&str> = covered.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["d1", "d2", "d5"]);
        let from_bodies = doses_from_bodies(&domain, &store, "p1");
        assert_eq!(covered, from_bodies);

        // A proposed dose gets the findings the body-read history gives.
        let proposed = immunization("new", "Patient/p1", "completed", "2024-06-05", 2);
        let issues = domain
            .vaccination_issues(&store, &Pending::default(), &proposed)
            .unwrap();
        let person = mappers::immunization::person(
            &live_resource(&store, "Patient", "p1").unwrap().unwrap(),
            None,
        )
        .unwrap();
        let history: Vec<_> = from_bodies.into_iter().map(|(_, dose)| dose).collect();
        let candidate = domain
            .stored_dose(proposed.to_string().as_bytes())
            .unwrap()
            .unwrap();
        let expected: Vec<Issue> =
            vaccination::check_dose(&domain.rules, &person, &history, &candidate)
                .iter()
                .map(finding_issue)
                .collect();
        assert!(!expected.is_empty(), "the proposed dose breaks the rules");
        assert_eq!(issues, expected);
    }
}
