//! Stored resources → rows of a layout, and rows → a file in the layout's canonical form
//! (header, rows in sort-key order, quoted only when needed, the layout's line end), which
//! re-imports to the same resources.

use serde_json::Value;
use time::{Date, Month};

use crate::RowError;
use crate::encoding::{BOM, Encoding};
use crate::layout::{ColumnType, DateFormat, FIELD_COUNT, Field, Kind, Layout};
use crate::map::{
    DOSE_UNKNOWN, HOT9, HOT13, NAME_REPRESENTATION, OBSERVATION_FIELDS, RESIDENT_SYSTEM_BASE,
    TICKET_SYSTEM_BASE, VACCINATING_MUNICIPALITY_EXTENSION, YJ, resident_identifier_system,
};

/// The resources behind one exported row: the Patient and the record (an Immunization, or a
/// check-up Encounter with its Observations).
#[derive(Debug, Clone, Copy)]
pub struct ExportRecord<'a> {
    pub patient: &'a Value,
    pub record: &'a Value,
    pub observations: &'a [Value],
}

fn fail(reason: impl Into<String>) -> RowError {
    RowError {
        line: 0,
        column: None,
        value: None,
        reason: reason.into(),
    }
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The canonical (FHIR-side) value of every field the resources hold.
fn extract(layout: &Layout, record: &ExportRecord<'_>) -> Result<Vec<Option<String>>, RowError> {
    let mut v: Vec<Option<String>> = vec![None; FIELD_COUNT];
    let mut set = |f: Field, value: Option<&str>| v[f as usize] = value.map(str::to_owned);
    let patient = record.patient;
    let system = layout.municipality.as_ref().map(resident_identifier_system);
    let resident = array(patient, "identifier").iter().find(|i| {
        let s = str_at(i, &["system"]).unwrap_or_default();
        match &system {
            Some(system) => s == system,
            None => s.starts_with(RESIDENT_SYSTEM_BASE),
        }
    });
    set(
        Field::ResidentNumber,
        resident.and_then(|i| str_at(i, &["value"])),
    );
    for name in array(patient, "name") {
        let representation = array(name, "extension")
            .iter()
            .find(|e| str_at(e, &["url"]) == Some(NAME_REPRESENTATION))
            .and_then(|e| str_at(e, &["valueCode"]));
        let field = if representation == Some("SYL") {
            Field::NameKana
        } else {
            Field::Name
        };
        if v[field as usize].is_none() {
            v[field as usize] = str_at(name, &["text"]).map(str::to_owned);
        }
    }
    let mut set = |f: Field, value: Option<&str>| {
        if value.is_some() {
            v[f as usize] = value.map(str::to_owned);
        }
    };
    set(Field::Sex, str_at(patient, &["gender"]));
    set(Field::BirthDate, str_at(patient, &["birthDate"]));
    let addresses = array(patient, "address");
    let address = addresses
        .iter()
        .find(|a| str_at(a, &["use"]) == Some("home"))
        .or(addresses.first());
    if let Some(a) = address {
        set(Field::Address, str_at(a, &["text"]));
        set(Field::PostalCode, str_at(a, &["postalCode"]));
    }
    let r = record.record;
    match layout.kind() {
        Kind::Vaccination => {
            if str_at(r, &["resourceType"]) != Some("Immunization") {
                return Err(fail("the record is not an Immunization"));
            }
            let occurrence = str_at(r, &["occurrenceDateTime"]);
            set(
                Field::VaccinationDate,
                occurrence.map(|d| d.get(..10).unwrap_or(d)),
            );
            let codings = r
                .get("vaccineCode")
                .map(|c| array(c, "coding"))
                .unwrap_or_default();
            let terminology = terminology::Terminology::embedded().ok();
            let canonical = |s: &'_ str| -> String {
                terminology.map_or(s, |t| t.canonical_system(s)).to_owned()
            };
            let mut vaccine = None;
            for c in codings {
                let (Some(s), Some(code)) = (str_at(c, &["system"]), str_at(c, &["code"])) else {
                    continue;
                };
                let s = canonical(s);
                if s == mappers::immunization::VACCINE_TYPE_SYSTEM {
                    vaccine = Some(code.to_owned());
                } else if [HOT9, HOT13, YJ].contains(&s.as_str()) {
                    set(Field::ProductCode, Some(code));
                    if vaccine.is_none() {
                        vaccine = terminology
                            .and_then(|t| t.vaccine_type_of(&s, code))
                            .map(str::to_owned);
                    }
                }
            }
            set(Field::Vaccine, vaccine.as_deref());
            if let Some(protocol) = array(r, "protocolApplied").first() {
                let dose = protocol.get("doseNumberPositiveInt").map(Value::to_string);
                set(Field::DoseNumber, dose.as_deref());
                if let Some(text) = str_at(protocol, &["doseNumberString"])
                    && text != DOSE_UNKNOWN
                {
                    set(Field::DoseNumber, Some(text));
                }
            }
            set(Field::LotNumber, str_at(r, &["lotNumber"]));
            for performer in array(r, "performer") {
                let actor = performer.get("actor");
                let identifier = actor.and_then(|a| a.get("identifier"));
                match identifier {
                    Some(i)
                        if [
                            Some(identifiers::MEDICAL_INSTITUTION_CODE_SYSTEM),
                            Some(identifiers::MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON),
                        ]
                        .contains(&str_at(i, &["system"])) =>
                    {
                        set(Field::InstitutionCode, str_at(i, &["value"]));
                    }
                    Some(_) => {}
                    None => set(
                        Field::DoctorName,
                        actor.and_then(|a| str_at(a, &["display"])),
                    ),
                }
            }
            set(Field::InstitutionName, str_at(r, &["location", "display"]));
            set(Field::Manufacturer, str_at(r, &["manufacturer", "display"]));
            set(Field::RegisteredAt, str_at(r, &["recorded"]));
            let vaccinating = array(r, "extension")
                .iter()
                .find(|e| str_at(e, &["url"]) == Some(VACCINATING_MUNICIPALITY_EXTENSION))
                .and_then(|e| str_at(e, &["valueCode"]));
            set(Field::VaccinatingMunicipality, vaccinating);
            let ticket = array(r, "identifier").iter().find(|i| {
                str_at(i, &["system"]).is_some_and(|s| s.starts_with(TICKET_SYSTEM_BASE))
            });
            set(
                Field::TicketNumber,
                ticket.and_then(|i| str_at(i, &["value"])),
            );
        }
        Kind::InfantCheckup | Kind::PregnancyCheckup => {
            if str_at(r, &["resourceType"]) != Some("Encounter") {
                return Err(fail("the record is not an Encounter"));
            }
            let codes = &layout.codes;
            let kind = array(r, "type")
                .iter()
                .flat_map(|t| array(t, "coding"))
                .find(|c| str_at(c, &["system"]) == Some(codes.checkup_kind_system.as_str()))
                .and_then(|c| str_at(c, &["code"]));
            set(Field::CheckupKind, kind);
            let start = str_at(r, &["period", "start"]);
            set(Field::CheckupDate, start.map(|d| d.get(..10).unwrap_or(d)));
            for field in OBSERVATION_FIELDS {
                let Some(def) = codes.observation(*field) else {
                    continue;
                };
                let key = &def.code[0];
                let observation = record.observations.iter().find(|o| {
                    o.get("code").is_some_and(|c| {
                        array(c, "coding").iter().any(|c| {
                            str_at(c, &["system"]) == Some(key.system.as_str())
                                && str_at(c, &["code"]) == Some(key.code.as_str())
                        })
                    })
                });
                let Some(o) = observation else { continue };
                let value = if def.unit.is_some() {
                    o.get("valueQuantity")
                        .and_then(|q| q.get("value"))
                        .map(Value::to_string)
                } else {
                    o.get("valueCodeableConcept")
                        .map(|c| array(c, "coding"))
                        .and_then(|c| c.first())
                        .and_then(|c| str_at(c, &["code"]))
                        .map(str::to_owned)
                };
                set(*field, value.as_deref());
            }
        }
    }
    Ok(v)
}

fn date_of(iso: &str) -> Option<Date> {
    let b = iso.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = iso[..4].parse().ok()?;
    let month = Month::try_from(iso[5..7].parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year, month, iso[8..10].parse().ok()?).ok()
}

fn format_date(format: DateFormat, iso: &str) -> Option<String> {
    let date = date_of(iso)?;
    Some(match format {
        DateFormat::Iso => iso[..10].to_owned(),
        DateFormat::Compact => format!("{}{}{}", &iso[..4], &iso[5..7], &iso[8..10]),
        DateFormat::Wareki => mappers::wareki::to_wareki(date)?,
    })
}

/// `2024-04-01T10:00:00+09:00` → `20240401100000` (Japan time).
fn compact_date_time(text: &str) -> Option<String> {
    let jst = crate::map::jst_date_time(text).ok()?;
    let digits: String = jst[..19].chars().filter(char::is_ascii_digit).collect();
    Some(digits)
}

/// The values of one row, in column order, as they appear in the file (before quoting), plus
/// the sort key.
pub(crate) fn row_values(
    layout: &Layout,
    record: &ExportRecord<'_>,
    json: bool,
) -> Result<(String, Vec<String>), RowError> {
    if !layout.exportable() {
        return Err(fail(format!(
            "layout {} is import-only (one row holds several doses)",
            layout.name()
        )));
    }
    let v = extract(layout, record)?;
    let mut out = Vec::with_capacity(layout.columns.len());
    for column in &layout.columns {
        let Some(field) = column.field else {
            out.push(String::new());
            continue;
        };
        let Some(value) = v[field as usize].as_deref() else {
            if column.required {
                return Err(RowError {
                    line: 0,
                    column: Some(column.header.clone()),
                    value: None,
                    reason: "the resources hold no value for this required column".to_owned(),
                });
            }
            out.push(String::new());
            continue;
        };
        let bad = |reason: &str| RowError {
            line: 0,
            column: Some(column.header.clone()),
            value: Some(value.to_owned()),
            reason: reason.to_owned(),
        };
        let text = match column.column_type {
            ColumnType::Date if json => value.get(..10).unwrap_or(value).to_owned(),
            ColumnType::Date => {
                format_date(layout.date_format, value).ok_or_else(|| bad("not a full date"))?
            }
            ColumnType::DateTime if json => value.to_owned(),
            ColumnType::DateTime if value.contains('T') => {
                compact_date_time(value).ok_or_else(|| bad("not a date-time"))?
            }
            ColumnType::DateTime => {
                format_date(layout.date_format, value).ok_or_else(|| bad("not a full date"))?
            }
            ColumnType::Code => column
                .codes
                .iter()
                .find(|(_, canonical)| canonical == value)
                .map(|(file, _)| file.clone())
                .ok_or_else(|| bad("the layout's code table has no file value for this code"))?,
            ColumnType::Text | ColumnType::Digits | ColumnType::Decimal => value.to_owned(),
        };
        out.push(text);
    }
    let (date, code) = match layout.kind() {
        Kind::Vaccination => (Field::VaccinationDate, Field::Vaccine),
        Kind::InfantCheckup | Kind::PregnancyCheckup => (Field::CheckupDate, Field::CheckupKind),
    };
    let part = |f: Field| v[f as usize].as_deref().unwrap_or_default();
    let key = format!(
        "{}\u{1f}{}\u{1f}{}",
        part(Field::ResidentNumber),
        part(date),
        part(code)
    );
    Ok((key, out))
}

/// One row of `layout` from stored resources: the sort key (resident number, record date,
/// vaccine or check-up kind) and the row text without a line end.
pub fn export_row(
    layout: &Layout,
    record: &ExportRecord<'_>,
) -> Result<(String, String), RowError> {
    let (key, values) = row_values(layout, record, false)?;
    let delimiter = char::from(layout.delimiter);
    let mut row = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            row.push(delimiter);
        }
        let needs_quotes = value.contains([delimiter, '"', '\r', '\n']);
        if needs_quotes {
            row.push('"');
            row.push_str(&value.replace('"', "\"\""));
            row.push('"');
        } else {
            row.push_str(value);
        }
    }
    Ok((key, row))
}

/// The file: a BOM for `utf-8-bom`, the header line when the layout has one, then `rows` in the
/// order given (sort them by key for the canonical form), each ending with the layout's line
/// end. Characters CP932 cannot hold are written as `&#NNNN;` (check with
/// [`Encoding::can_encode`] first when that matters).
pub fn export_file(
    layout: &Layout,
    encoding: Encoding,
    rows: impl Iterator<Item = String>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if encoding == Encoding::Utf8Bom {
        out.extend_from_slice(BOM);
    }
    let end = layout.line_end.as_str();
    let delimiter = char::from(layout.delimiter).to_string();
    if layout.header {
        let header = layout.headers().collect::<Vec<_>>().join(&delimiter);
        encoding.encode_into(&header, &mut out);
        out.extend_from_slice(end.as_bytes());
    }
    for row in rows {
        encoding.encode_into(&row, &mut out);
        out.extend_from_slice(end.as_bytes());
    }
    out
}
