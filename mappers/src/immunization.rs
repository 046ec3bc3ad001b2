//! Immunization and Patient resources read into the routine-vaccination engine's terms, and the
//! engine's schedule written back as an R4 ImmunizationRecommendation
//! (<http://hl7.org/fhir/R4/immunizationrecommendation.html>).
//!
//! Which product code means which vaccine type is terminology's business; callers pass that
//! knowledge in as a function so this mapping stays a pure function of its inputs.

use serde_json::{Value, json};
use time::{Date, Month};
use vaccination::{DoseRecord, DoseStatus, Person, Schedule, ScheduleItem, Sex};

/// Musubi's vaccine-type CodeSystem (docs/terminology.md).
pub const VACCINE_TYPE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";
/// Musubi's forecast statuses, finer than the R4 ones (R4 has no "not publicly funded").
pub const RECOMMENDATION_STATUS_SYSTEM: &str =
    "https://musubi.example.org/fhir/CodeSystem/recommendation-status";
/// The R4 forecast-status CodeSystem (immunization-recommendation-status, example binding).
const R4_STATUS_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status";
/// The extension naming the municipality (6-digit 全国地方公共団体コード) a home address
/// belongs to; it selects per-municipality schedule overrides.
pub const MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/municipality-code";

/// Why an Immunization cannot be checked against the routine rules; none of these is an error
/// in the resource itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCheckable {
    #[error("status is {0:?}; only completed vaccinations are checked against the routine rules")]
    NotCompleted(String),
    #[error(
        "no vaccineCode coding is a vaccine product or vaccine type known to Musubi's code tables, so the routine rules were not checked"
    )]
    UnknownVaccine,
    #[error(
        "the vaccination date is not a full date (occurrenceString or a partial date), so the routine rules were not checked"
    )]
    NoDate,
    #[error(
        "patient is not a reference to a Patient on this server, so the routine rules were not checked"
    )]
    NoPatient,
}

/// Why a Patient cannot anchor a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    #[error("the Patient has no birthDate; ages cannot be computed")]
    NoBirthDate,
    #[error("the Patient's birthDate {0:?} is not a full date; ages cannot be computed exactly")]
    PartialBirthDate(String),
}

/// A FHIR `date` or the date part of a `dateTime`, when it names a whole day. The date is taken
/// as written: Japanese records carry +09:00, and converting to UTC would move evening
/// vaccinations to the previous day.
pub fn full_date(text: &str) -> Option<Date> {
    let day = text.get(..10)?;
    let bytes = day.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i32 = day[..4].parse().ok()?;
    let month: u8 = day[5..7].parse().ok()?;
    let dom: u8 = day[8..10].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, dom).ok()
}

/// The id of the local Patient an Immunization (or any resource with `patient`) refers to.
pub fn patient_id(resource: &Value) -> Option<&str> {
    let reference = resource.pointer("/patient/reference")?.as_str()?;
    let id = reference.strip_prefix("Patient/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Read an Immunization as a dose for the rules engine. `vaccine_type_of(system, code)` maps a
/// coding to a Musubi vaccine-type code.
pub fn dose_record(
    immunization: &Value,
    vaccine_type_of: impl Fn(&str, &str) -> Option<String>,
) -> Result<DoseRecord, NotCheckable> {
    let status = immunization
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("");
    if status != "completed" {
        return Err(NotCheckable::NotCompleted(status.to_owned()));
    }
    let codings = immunization
        .pointer("/vaccineCode/coding")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut vaccine = None;
    let mut product = None;
    for coding in codings {
        let (Some(system), Some(code)) = (
            coding.get("system").and_then(Value::as_str),
            coding.get("code").and_then(Value::as_str),
        ) else {
            continue;
        };
        if system != VACCINE_TYPE_SYSTEM && product.is_none() {
            product = Some(code.to_owned());
        }
        if vaccine.is_none() {
            vaccine = vaccine_type_of(system, code);
        }
    }
    let vaccine = vaccine.ok_or(NotCheckable::UnknownVaccine)?;
    let date = immunization
        .get("occurrenceDateTime")
        .and_then(Value::as_str)
        .and_then(full_date)
        .ok_or(NotCheckable::NoDate)?;
    let dose_number = immunization
        .get("protocolApplied")
        .and_then(Value::as_array)
        .and_then(|applied| {
            applied.iter().find_map(|p| {
                p.get("doseNumberPositiveInt")
                    .and_then(Value::as_u64)
                    .or_else(|| {
                        p.get("doseNumberString")
                            .and_then(Value::as_str)
                            .and_then(|s| s.trim().parse().ok())
                    })
            })
        })
        .and_then(|n| u32::try_from(n).ok());
    Ok(DoseRecord {
        id: immunization
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        vaccine,
        product,
        date,
        dose_number,
    })
}

/// The municipality code of the Patient's home address, from [`MUNICIPALITY_EXTENSION`].
pub fn home_municipality(patient: &Value) -> Option<String> {
    let addresses = patient.get("address")?.as_array()?;
    let mut home_first: Vec<&Value> = addresses.iter().collect();
    home_first.sort_by_key(|a| a.get("use").and_then(Value::as_str) != Some("home"));
    home_first.into_iter().find_map(|address| {
        address
            .get("extension")?
            .as_array()?
            .iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(MUNICIPALITY_EXTENSION))
            .and_then(|e| {
                e.get("valueCode")
                    .or_else(|| e.get("valueString"))
                    .and_then(Value::as_str)
            })
            .map(str::to_owned)
    })
}

/// A Patient as the person the rules are about; `municipality` overrides the address's.
pub fn person(patient: &Value, municipality: Option<&str>) -> Result<Person, PersonError> {
    let birth = patient
        .get("birthDate")
        .and_then(Value::as_str)
        .ok_or(PersonError::NoBirthDate)?;
    let birth_date = full_date(birth)
        .filter(|_| birth.len() == 10)
        .ok_or_else(|| PersonError::PartialBirthDate(birth.to_owned()))?;
    let sex = match patient.get("gender").and_then(Value::as_str) {
        Some("male") => Some(Sex::Male),
        Some("female") => Some(Sex::Female),
        Some("other") => Some(Sex::Other),
        _ => None,
    };
    Ok(Person {
        birth_date,
        sex,
        municipality: municipality
            .map(str::to_owned)
            .or_else(|| home_municipality(patient)),
    })
}

fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// (Musubi status code, its display in profiles/jp/terminology, the R4 status code where one
/// means the same)
fn status_codes(status: &DoseStatus) -> (&'static str, &'static str, Option<&'static str>) {
    match status {
        DoseStatus::Complete => ("complete", "接種済", Some("complete")),
        DoseStatus::Due => ("due", "接種可能", Some("due")),
        DoseStatus::Overdue => ("overdue", "標準的な接種期間を過ぎた", Some("overdue")),
        DoseStatus::Upcoming => ("upcoming", "まだ接種できない", None),
        DoseStatus::NotEligible => ("not-eligible", "定期接種の対象外", None),
    }
}

fn date_criterion(code: &str, display: &str, date: Date) -> Value {
    json!({
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "value": date_text(date),
    })
}

fn recommendation_entry(
    item: &ScheduleItem,
    target_diseases: &dyn Fn(&str) -> Vec<Value>,
    supporting: &dyn Fn(&ScheduleItem) -> Option<String>,
) -> Value {
    let (code, display, r4) = status_codes(&item.status);
    let mut status_coding = vec![json!({
        "system": RECOMMENDATION_STATUS_SYSTEM, "code": code, "display": display,
    })];
    if let Some(r4) = r4 {
        status_coding.push(json!({"system": R4_STATUS_SYSTEM, "code": r4}));
    }
    let mut entry = json!({
        "vaccineCode": [{"coding": [{
            "system": VACCINE_TYPE_SYSTEM,
            "code": item.vaccine,
            "display": item.vaccine_display,
        }]}],
    });
    let diseases = target_diseases(&item.vaccine);
    if let Some(first) = diseases.into_iter().next() {
        entry["targetDisease"] = json!({"coding": [first]});
    }
    entry["forecastStatus"] = json!({"coding": status_coding});
    let mut criteria = Vec::new();
    // LOINC codes of the R4 date-criterion value set (immunization-recommendation-date-criterion).
    if let Some(d) = item.earliest {
        criteria.push(date_criterion("30981-5", "Earliest date to give", d));
    }
    if let Some(d) = item.recommended_from {
        criteria.push(date_criterion("30980-7", "Date vaccine due", d));
    }
    if let Some(d) = item.recommended_to {
        criteria.push(date_criterion(
            "59778-1",
            "Date when overdue for immunization",
            d,
        ));
    }
    if let Some(d) = item.latest {
        criteria.push(date_criterion(
            "59777-3",
            "Latest date to give immunization",
            d,
        ));
    }
    if !criteria.is_empty() {
        entry["dateCriterion"] = Value::Array(criteria);
    }
    let mut description = format!("rule {} (source: {})", item.rule_id, item.source);
    if let Some(given) = item.given {
        description = format!("given {}; {description}", date_text(given));
    }
    if let Some(note) = &item.note {
        description = format!("{note}; {description}");
    }
    entry["description"] = json!(description);
    entry["series"] = json!(item.series);
    entry["doseNumberPositiveInt"] = json!(item.dose_number);
    if let Some(reference) = supporting(item) {
        entry["supportingImmunization"] = json!([{"reference": reference}]);
    }
    entry
}

/// The schedule as an ImmunizationRecommendation for `patient_reference` ("Patient/id"), made on
/// `date`. `target_diseases(vaccine_type)` gives the target-disease codings;
/// `supporting(item)` the Immunization reference behind a given dose.
pub fn recommendation(
    schedule: &Schedule,
    patient_reference: &str,
    date: Date,
    target_diseases: &dyn Fn(&str) -> Vec<Value>,
    supporting: &dyn Fn(&ScheduleItem) -> Option<String>,
) -> Value {
    let entries: Vec<Value> = schedule
        .items
        .iter()
        .map(|item| recommendation_entry(item, target_diseases, supporting))
        .collect();
    let mut resource = json!({
        "resourceType": "ImmunizationRecommendation",
        "patient": {"reference": patient_reference},
        "date": date_text(date),
        "authority": {"display": "Musubi routine vaccination (定期接種) rules"},
    });
    // R4 requires at least one recommendation; a person with nothing routine left gets none,
    // which the caller reports instead of an invalid resource.
    if !entries.is_empty() {
        resource["recommendation"] = Value::Array(entries);
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vaccine_types(system: &str, code: &str) -> Option<String> {
        match (system, code) {
            (VACCINE_TYPE_SYSTEM, c) => Some(c.to_owned()),
            ("http://medis.or.jp/CodeSystem/master-HOT9", "123456789") => Some("hib".into()),
            _ => None,
        }
    }

    #[test]
    fn full_dates_are_read_as_written() {
        assert_eq!(
            full_date("2024-05-10T23:30:00+09:00").map(date_text),
            Some("2024-05-10".into())
        );
        assert_eq!(full_date("2024-05"), None);
        assert_eq!(full_date("2023-02-29"), None);
        assert_eq!(
            full_date("2024-02-29").map(date_text),
            Some("2024-02-29".into())
        );
    }

    #[test]
    fn immunization_becomes_a_dose_record() {
        let immunization = json!({
            "resourceType": "Immunization", "id": "imm-1", "status": "completed",
            "vaccineCode": {"coding": [
                {"system": "http://medis.or.jp/CodeSystem/master-HOT9", "code": "123456789"}
            ]},
            "patient": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2024-06-03T10:15:00+09:00",
            "protocolApplied": [{"doseNumberPositiveInt": 2}]
        });
        let dose = dose_record(&immunization, vaccine_types).unwrap();
        assert_eq!(dose.vaccine, "hib");
        assert_eq!(dose.product.as_deref(), Some("123456789"));
        assert_eq!(date_text(dose.date), "2024-06-03");
        assert_eq!(dose.dose_number, Some(2));
        assert_eq!(dose.id.as_deref(), Some("imm-1"));
        assert_eq!(patient_id(&immunization), Some("p1"));
    }

    #[test]
    fn uncheckable_immunizations_say_why() {
        let base = json!({
            "resourceType": "Immunization", "status": "not-done",
            "vaccineCode": {"coding": [{"system": VACCINE_TYPE_SYSTEM, "code": "bcg"}]},
            "occurrenceDateTime": "2024-06-03"
        });
        assert_eq!(
            dose_record(&base, vaccine_types).unwrap_err(),
            NotCheckable::NotCompleted("not-done".into())
        );
        let mut unknown = base.clone();
        unknown["status"] = json!("completed");
        unknown["vaccineCode"] = json!({"coding": [{"system": "urn:x", "code": "1"}]});
        assert_eq!(
            dose_record(&unknown, vaccine_types).unwrap_err(),
            NotCheckable::UnknownVaccine
        );
        let mut undated = base.clone();
        undated["status"] = json!("completed");
        undated
            .as_object_mut()
            .unwrap()
            .remove("occurrenceDateTime");
        undated["occurrenceString"] = json!("６才頃");
        assert_eq!(
            dose_record(&undated, vaccine_types).unwrap_err(),
            NotCheckable::NoDate
        );
        assert_eq!(
            patient_id(&json!({"patient": {"reference": "http://other/Patient/1"}})),
            None
        );
    }

    #[test]
    fn person_reads_birth_date_sex_and_home_municipality() {
        let patient = json!({
            "resourceType": "Patient", "gender": "female", "birthDate": "2020-02-29",
            "address": [
                {"use": "work", "extension": [{"url": MUNICIPALITY_EXTENSION, "valueCode": "131041"}]},
                {"use": "home", "extension": [{"url": MUNICIPALITY_EXTENSION, "valueCode": "131016"}]}
            ]
        });
        let person = person(&patient, None).unwrap();
        assert_eq!(date_text(person.birth_date), "2020-02-29");
        assert_eq!(person.sex, Some(Sex::Female));
        assert_eq!(person.municipality.as_deref(), Some("131016"));
        assert_eq!(
            super::person(&json!({"birthDate": "2020-02"}), None).unwrap_err(),
            PersonError::PartialBirthDate("2020-02".into())
        );
        assert_eq!(
            super::person(&json!({}), None).unwrap_err(),
            PersonError::NoBirthDate
        );
    }
}
