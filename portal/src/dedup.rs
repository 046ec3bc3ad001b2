//! De-duplication of portal vaccinations against the Immunizations Musubi already holds (from
//! clinics, municipal imports or an earlier pull), pure: one vaccination is one Immunization,
//! whatever road it came by. The key is (person, vaccine type, date, lot); the lot is compared
//! normalised, and a lot missing on one side does not prevent a match (see [`reconcile`]).

use std::collections::{HashMap, HashSet};
use std::fmt;

use fhir::validate::{Issue, IssueType, Severity};
use serde_json::{Value, json};
use time::{Date, Month, OffsetDateTime};

use crate::map::{MappedCheckup, MappedVaccination, provenance};
use crate::tables::{PortalTables, VACCINE_TYPE_SYSTEM};
use crate::text::normalise_lot;

/// What makes two vaccination records the same vaccination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey {
    /// The local Patient id.
    pub person: String,
    /// Musubi vaccine-type code.
    pub vaccine_type: String,
    pub date: Date,
    /// The lot number normalised ([`normalise_lot`]); `None` when not recorded.
    pub lot: Option<String>,
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}|{:04}-{:02}-{:02}|{}",
            self.person,
            self.vaccine_type,
            self.date.year(),
            u8::from(self.date.month()),
            self.date.day(),
            self.lot.as_deref().unwrap_or("")
        )
    }
}

/// The de-duplication key of a vaccination; the lot is normalised here.
pub fn dedup_key(person: &str, vaccine_type: &str, date: Date, lot: Option<&str>) -> DedupKey {
    DedupKey {
        person: person.to_owned(),
        vaccine_type: vaccine_type.to_owned(),
        date,
        lot: lot.and_then(normalise_lot),
    }
}

/// How the lots of a match compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LotMatch {
    Same,
    MissingOnPortal,
    MissingOnExisting,
    MissingOnBoth,
}

/// A portal vaccination already held as `existing_id`: only a Provenance is added (none when
/// the existing resource is this very portal record from an earlier pull).
#[derive(Debug, Clone)]
pub struct Matched {
    pub portal: MappedVaccination,
    pub existing_id: String,
    pub lot: LotMatch,
    pub provenance: Option<Value>,
}

/// A portal vaccination with the same person, vaccine and date as `existing_id` but another
/// lot: one of the two records is probably mistyped, so neither a new Immunization nor a
/// Provenance is written; the conflict is reported for review.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub portal: MappedVaccination,
    pub existing_id: String,
    pub portal_lot: String,
    pub existing_lot: String,
}

/// The outcome of de-duplication.
#[derive(Debug, Clone, Default)]
pub struct Reconciliation {
    /// To store as new Immunizations (with their Provenance).
    pub new: Vec<MappedVaccination>,
    pub matched: Vec<Matched>,
    pub conflicts: Vec<Conflict>,
    /// Portal records repeated within the pull (same key), dropped.
    pub repeated: usize,
}

impl Reconciliation {
    /// The conflicts as issues for the gateway's OperationOutcome.
    pub fn issues(&self) -> Vec<Issue> {
        self.conflicts
            .iter()
            .map(|c| Issue {
                severity: Severity::Warning,
                code: IssueType::BusinessRule,
                expression: format!("Immunization/{}.lotNumber", c.existing_id),
                diagnostics: format!(
                    "My Number Portal record {} has lot {:?} where the stored Immunization has {:?} for the same person, vaccine and date; the portal record was not imported",
                    c.portal.record.pointer, c.portal_lot, c.existing_lot
                ),
            })
            .collect()
    }
}

/// What an existing Immunization contributes to matching.
struct Held<'a> {
    id: &'a str,
    lot_written: Option<&'a str>,
    lot: Option<String>,
}

fn reference_id<'a>(reference: &'a str, kind: &str) -> Option<&'a str> {
    // Relative (`Patient/1`) or absolute (`https://…/Patient/1`) references.
    let mut parts = reference.rsplitn(3, '/');
    let id = parts.next()?;
    (parts.next()? == kind && !id.is_empty()).then_some(id)
}

fn date_part(text: &str) -> Option<Date> {
    // The date as written: Japanese records carry +09:00, and converting to UTC would move
    // evening vaccinations to the previous day.
    let day = text.get(..10)?;
    let b = day.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    Date::from_calendar_date(
        day[..4].parse().ok()?,
        Month::try_from(day[5..7].parse::<u8>().ok()?).ok()?,
        day[8..10].parse().ok()?,
    )
    .ok()
}

/// The key of a stored Immunization, or `None` when it cannot be a duplicate of a portal
/// record: not given (`not-done`), entered in error, no full date, no local patient, or no
/// vaccine type Musubi knows. `vaccine_type_of(system, code)` maps product codings (HOT, YJ)
/// to a Musubi vaccine type, as terminology knows it; Musubi's own vaccine-type coding is read
/// directly.
pub fn existing_key(
    immunization: &Value,
    vaccine_type_of: &impl Fn(&str, &str) -> Option<String>,
) -> Option<DedupKey> {
    if immunization.get("resourceType").and_then(Value::as_str) != Some("Immunization") {
        return None;
    }
    if let Some("not-done" | "entered-in-error") =
        immunization.get("status").and_then(Value::as_str)
    {
        return None;
    }
    let person = reference_id(
        immunization.pointer("/patient/reference")?.as_str()?,
        "Patient",
    )?;
    let date = date_part(immunization.get("occurrenceDateTime")?.as_str()?)?;
    let codings = immunization.pointer("/vaccineCode/coding")?.as_array()?;
    let vaccine_type = codings
        .iter()
        .filter_map(|c| Some((c.get("system")?.as_str()?, c.get("code")?.as_str()?)))
        .find_map(|(system, code)| {
            if system == VACCINE_TYPE_SYSTEM {
                Some(code.to_owned())
            } else {
                vaccine_type_of(system, code)
            }
        })?;
    Some(dedup_key(
        person,
        &vaccine_type,
        date,
        immunization.get("lotNumber").and_then(Value::as_str),
    ))
}

/// Sort the portal's mapped vaccinations against the `existing` Immunizations of the same
/// person(s):
/// - same person, vaccine type and date, and both lots present and equal after normalisation
///   → matched;
/// - same person, vaccine type and date, and the lot missing on either side → matched (the same
///   vaccine twice on one day is not a valid schedule, and the register often lacks the lot the
///   clinic recorded, or the reverse); an existing record with an equal lot is preferred, then
///   one without a lot;
/// - same person, vaccine type and date but both lots present and different → conflict;
/// - otherwise → new.
///
/// A match gets a Provenance adding the portal as a source of the existing Immunization (none
/// when the existing one is this portal record from an earlier pull).
pub fn reconcile(
    tables: &PortalTables,
    portal: Vec<MappedVaccination>,
    existing: &[Value],
    vaccine_type_of: impl Fn(&str, &str) -> Option<String>,
    pulled_at: OffsetDateTime,
) -> Reconciliation {
    let mut held: HashMap<(String, String, Date), Vec<Held<'_>>> = HashMap::new();
    for imm in existing {
        let (Some(key), Some(id)) = (
            existing_key(imm, &vaccine_type_of),
            imm.get("id").and_then(Value::as_str),
        ) else {
            continue;
        };
        held.entry((key.person, key.vaccine_type, key.date))
            .or_default()
            .push(Held {
                id,
                lot_written: imm.get("lotNumber").and_then(Value::as_str),
                lot: key.lot,
            });
    }

    let mut out = Reconciliation::default();
    let mut seen = HashSet::new();
    for mapped in portal {
        if !seen.insert(mapped.key.clone()) {
            out.repeated += 1;
            continue;
        }
        let k = &mapped.key;
        let candidates = held
            .get(&(k.person.clone(), k.vaccine_type.clone(), k.date))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let same_lot = candidates
            .iter()
            .find(|h| h.lot.is_some() && h.lot == k.lot);
        let chosen = match (&k.lot, same_lot) {
            (_, Some(h)) => Some((h, LotMatch::Same)),
            (None, None) => candidates.first().map(|h| {
                let lot = if h.lot.is_some() {
                    LotMatch::MissingOnPortal
                } else {
                    LotMatch::MissingOnBoth
                };
                (h, lot)
            }),
            (Some(_), None) => candidates
                .iter()
                .find(|h| h.lot.is_none())
                .map(|h| (h, LotMatch::MissingOnExisting)),
        };
        if let Some((h, lot)) = chosen {
            let provenance = (h.id != mapped.id()).then(|| {
                let target = format!("Immunization/{}", h.id);
                provenance(
                    &tables.layout.source,
                    &target,
                    std::slice::from_ref(&target),
                    mapped.record.record_id.as_deref(),
                    &mapped.record.endpoint,
                    pulled_at,
                    None,
                )
            });
            out.matched.push(Matched {
                existing_id: h.id.to_owned(),
                lot,
                provenance,
                portal: mapped,
            });
        } else if let Some(h) = candidates.first() {
            out.conflicts.push(Conflict {
                existing_id: h.id.to_owned(),
                portal_lot: mapped.record.lot.clone().unwrap_or_default(),
                existing_lot: h.lot_written.unwrap_or_default().to_owned(),
                portal: mapped,
            });
        } else {
            out.new.push(mapped);
        }
    }
    out
}

/// A FHIR transaction Bundle (<http://hl7.org/fhir/R4/http.html#transaction>) storing a pull:
/// new Immunizations with their Provenance, the Provenance of matches, and every check-up's
/// DiagnosticReport, Observations and Provenance, each as a PUT by its deterministic id so a
/// repeated pull changes nothing it already stored.
pub fn transaction(reconciliation: &Reconciliation, checkups: &[MappedCheckup]) -> Value {
    let mut resources: Vec<&Value> = Vec::new();
    for m in &reconciliation.new {
        resources.push(&m.immunization);
        resources.push(&m.provenance);
    }
    for m in &reconciliation.matched {
        if let Some(p) = &m.provenance {
            resources.push(p);
        }
    }
    for c in checkups {
        resources.extend(c.observations.iter());
        resources.push(&c.report);
        resources.push(&c.provenance);
    }
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let kind = r["resourceType"].as_str().unwrap_or_default();
            let id = r["id"].as_str().unwrap_or_default();
            json!({"resource": r, "request": {"method": "PUT", "url": format!("{kind}/{id}")}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn keys_normalise_the_lot() {
        let a = dedup_key("p1", "mr", date!(2024 - 04 - 01), Some("ab-12 3"));
        let b = dedup_key("p1", "mr", date!(2024 - 04 - 01), Some("ＡＢ１２３"));
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "p1|mr|2024-04-01|AB123");
        assert_eq!(
            dedup_key("p1", "mr", date!(2024 - 04 - 01), Some(" ")).lot,
            None
        );
    }

    #[test]
    fn existing_keys() {
        let hot = |system: &str, code: &str| {
            (system == "http://medis.or.jp/CodeSystem/master-HOT9" && code == "1234567")
                .then(|| "je".to_owned())
        };
        let base = json!({
            "resourceType": "Immunization", "id": "c1", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://medis.or.jp/CodeSystem/master-HOT9", "code": "1234567"}]},
            "patient": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2024-04-01T19:30:00+09:00",
            "lotNumber": "X-1"
        });
        let key = existing_key(&base, &hot).unwrap();
        assert_eq!(key.to_string(), "p1|je|2024-04-01|X1");

        let variants: &[(&str, Value, Option<&str>)] = &[
            ("/status", json!("not-done"), None),
            ("/status", json!("entered-in-error"), None),
            ("/occurrenceDateTime", json!("2024-04"), None),
            ("/patient/reference", json!("Group/g"), None),
            (
                "/patient/reference",
                json!("https://musubi.example.org/fhir/Patient/p1"),
                Some("p1|je|2024-04-01|X1"),
            ),
            (
                "/vaccineCode/coding",
                json!([{"system": VACCINE_TYPE_SYSTEM, "code": "bcg"}]),
                Some("p1|bcg|2024-04-01|X1"),
            ),
            (
                "/vaccineCode/coding",
                json!([{"system": "urn:other", "code": "1"}]),
                None,
            ),
        ];
        for (pointer, value, want) in variants {
            let mut imm = base.clone();
            *imm.pointer_mut(pointer).unwrap() = value.clone();
            assert_eq!(
                existing_key(&imm, &hot).map(|k| k.to_string()).as_deref(),
                *want,
                "{pointer} = {value}"
            );
        }
    }
}
