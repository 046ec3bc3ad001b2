//! One record's column values → FHIR resources (Patient, Immunization or Encounter +
//! Observations) with deterministic ids, shared by the CSV and the JSON forms.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use identifiers::{FacilityCode, MunicipalityCode};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::{Date, Month};
use unicode_normalization::UnicodeNormalization;

use crate::layout::{Codes, Column, ColumnType, FIELD_COUNT, Field, Kind, Layout};
use crate::{MappedResource, MappedRow, RowError};

pub(crate) const RESIDENT_SYSTEM_BASE: &str =
    "https://musubi.example.org/fhir/IdSystem/resident-number/";
pub(crate) const TICKET_SYSTEM_BASE: &str =
    "https://musubi.example.org/fhir/IdSystem/vaccination-ticket/";
/// Extension on Immunization: the municipality where the dose was given (接種自治体コード,
/// jp-specs §3.3), which may differ from the person's home municipality.
pub const VACCINATING_MUNICIPALITY_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/vaccinating-municipality";
pub(crate) const NAME_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
pub(crate) const HOT9: &str = "http://medis.or.jp/CodeSystem/master-HOT9";
pub(crate) const HOT13: &str = "http://medis.or.jp/CodeSystem/master-HOT13";
pub(crate) const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
pub(crate) const JP_PATIENT: &str = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient";
pub(crate) const JP_IMMUNIZATION: &str =
    "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

/// Fields that become an Observation of a check-up.
pub(crate) const OBSERVATION_FIELDS: &[Field] = &[
    Field::AgeInMonths,
    Field::Height,
    Field::Weight,
    Field::HeadCircumference,
    Field::ChestCircumference,
    Field::GestationalWeek,
    Field::Judgement,
];

/// The identifier system of 宛名番号 in `municipality`: the number is only unique inside one
/// municipality's system, so the municipality code is part of the system.
pub fn resident_identifier_system(municipality: &MunicipalityCode) -> String {
    format!("{RESIDENT_SYSTEM_BASE}{}", municipality.as_str())
}

/// The vaccine-type coding and the target diseases of one vaccine type, built once from the
/// embedded terminology.
#[derive(Debug)]
pub(crate) struct VaccineInfo {
    pub coding: Value,
    pub target_disease: Value,
}

pub(crate) fn vaccine_info(code: &str) -> Option<&'static VaccineInfo> {
    static TABLE: OnceLock<HashMap<String, VaccineInfo>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let Ok(terminology) = terminology::Terminology::embedded() else {
                return HashMap::new();
            };
            let codes: Vec<String> = terminology
                .code_system(mappers::immunization::VACCINE_TYPE_SYSTEM)
                .and_then(|cs| cs.get("concept"))
                .and_then(Value::as_array)
                .map(|concepts| {
                    concepts
                        .iter()
                        .filter_map(|c| c.get("code").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            codes
                .iter()
                .filter_map(|code| {
                    let lookup = terminology
                        .lookup(mappers::immunization::VACCINE_TYPE_SYSTEM, code)
                        .ok()?;
                    let diseases: Vec<Value> = terminology
                        .target_diseases_of(code)
                        .into_iter()
                        .map(|c| json!({"coding": [c]}))
                        .collect();
                    Some((
                        code.clone(),
                        VaccineInfo {
                            coding: json!({
                                "system": mappers::immunization::VACCINE_TYPE_SYSTEM,
                                "code": code,
                                "display": lookup.display,
                            }),
                            target_disease: Value::Array(diseases),
                        },
                    ))
                })
                .collect()
        })
        .get(code)
}

/// A deterministic resource id: the first 32 hex digits (128 bits) of the SHA-256 of the
/// natural key, so re-importing a record writes the same resource.
pub(crate) fn resource_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 15)] as char);
    }
    out
}

/// An object built with its final capacity (no rehashing while it grows), from values that are
/// already `Value`s (no serde round trip as `json!` does for non-literal values). Rows are
/// mapped at hundreds of thousands per second, so this matters.
fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut map = Map::with_capacity(N);
    for (key, value) in entries {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// Sub-trees that are the same in every row, built once and cloned (a clone copies the hash
/// index instead of rebuilding it).
struct Templates {
    patient_meta: Value,
    immunization_meta: Value,
    administering_provider: Value,
    kanji: Value,
    kana: Value,
}

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let representation = |code: &str| {
            Value::Array(vec![obj([("url", s(NAME_REPRESENTATION)), ("valueCode", s(code))])])
        };
        Templates {
            patient_meta: json!({"profile": [JP_PATIENT]}),
            immunization_meta: json!({"profile": [JP_IMMUNIZATION]}),
            administering_provider: json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "AP", "display": "Administering Provider"}]}),
            kanji: representation("IDE"),
            kana: representation("SYL"),
        }
    })
}

/// How column names appear in errors: file headers for CSV, member names for JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Naming {
    Header,
    Json,
}

pub(crate) fn column_name(column: &Column, naming: Naming) -> String {
    match naming {
        Naming::Header => column.header.clone(),
        Naming::Json => column.json_key.clone(),
    }
}

/// Values of one block, by field, in their FHIR-ready canonical form.
type Values<'a> = [Option<Cow<'a, str>>; FIELD_COUNT];

fn empty_values<'a>() -> Values<'a> {
    std::array::from_fn(|_| None)
}

/// Trims the half-width and full-width spaces municipal systems pad with.
pub(crate) fn trim(text: &str) -> &str {
    text.trim_matches(|c| c == ' ' || c == '\t' || c == '\u{3000}')
}

/// Full-width digits and letters folded to ASCII, only when there is something to fold.
fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    }
}

/// Half-width katakana (U+FF61–U+FF9F) turned into full-width; everything else (including the
/// full-width space between family and given name) is kept as written.
pub(crate) fn full_width_kana(text: &str) -> Cow<'_, str> {
    let half = |c: char| ('\u{FF61}'..='\u{FF9F}').contains(&c);
    if !text.chars().any(half) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars() {
        if half(c) {
            run.push(c);
        } else {
            out.extend(run.nfkc());
            run.clear();
            out.push(c);
        }
    }
    out.extend(run.nfkc());
    Cow::Owned(out)
}

pub(crate) fn iso_date(date: Date) -> String {
    let mut s = String::with_capacity(10);
    push_padded(&mut s, date.year() as u32, 4);
    s.push('-');
    push_padded(&mut s, u32::from(u8::from(date.month())), 2);
    s.push('-');
    push_padded(&mut s, u32::from(date.day()), 2);
    s
}

fn push_padded(s: &mut String, value: u32, width: usize) {
    let text = value.to_string();
    for _ in text.len()..width {
        s.push('0');
    }
    s.push_str(&text);
}

fn digits_value(text: &str, from: usize, to: usize) -> u32 {
    text.as_bytes()[from..to]
        .iter()
        .fold(0, |n, b| n * 10 + u32::from(b - b'0'))
}

/// Reads a date: the common `YYYYMMDD` and `YYYY-MM-DD` forms directly, every other form
/// (和暦 included) through `mappers::wareki`.
fn parse_day(text: &str) -> Result<Date, String> {
    let b = text.as_bytes();
    let fast = if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
        Some((0, 4, 6))
    } else if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        Some((0, 5, 8))
    } else {
        None
    };
    if let Some((y, m, d)) = fast {
        let year = digits_value(text, y, y + 4) as i32;
        let month = digits_value(text, m, m + 2) as u8;
        let day = digits_value(text, d, d + 2) as u8;
        return Month::try_from(month)
            .ok()
            .and_then(|month| Date::from_calendar_date(year, month, day).ok())
            .ok_or_else(|| "impossible date (no such day)".to_owned());
    }
    mappers::wareki::parse_date(text).map_err(|e| match e {
        mappers::wareki::WarekiError::Unrecognised(_) => {
            "not a date (expected e.g. 20240401, 2024-04-01, 令和6年4月1日 or R6.4.1)".to_owned()
        }
        mappers::wareki::WarekiError::NoSuchDay(_) => "impossible date (no such day)".to_owned(),
        other @ mappers::wareki::WarekiError::OutsideEra { .. } => {
            format!("impossible date: {other}")
        }
    })
}

/// An RFC 3339 date-time as Japan time (`+09:00`), the form Musubi stores.
pub(crate) fn jst_date_time(text: &str) -> Result<String, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            "not a date-time (expected YYYYMMDDHHMMSS or 2024-04-01T10:00:00+09:00)".to_owned()
        })?;
    let jst = parsed.to_offset(time::macros::offset!(+9));
    Ok(format!(
        "{}T{:02}:{:02}:{:02}+09:00",
        iso_date(jst.date()),
        jst.hour(),
        jst.minute(),
        jst.second()
    ))
}

/// Checks and reads one value per its column; the result is the canonical text Musubi puts in
/// the resource.
fn parse_value<'a>(column: &'a Column, text: &'a str) -> Result<Cow<'a, str>, String> {
    if let Some(max) = column.max_length
        && text.chars().count() > max
    {
        return Err(format!("too long: more than {max} characters"));
    }
    let value: Cow<'a, str> = match column.column_type {
        ColumnType::Text => Cow::Borrowed(text),
        ColumnType::Digits => {
            let folded = fold(text);
            if !folded.bytes().all(|b| b.is_ascii_digit()) {
                return Err("not digits".to_owned());
            }
            folded
        }
        ColumnType::Date => Cow::Owned(iso_date(parse_day(&fold(text))?)),
        ColumnType::DateTime => {
            let folded = fold(text);
            let b = folded.as_bytes();
            if folded.contains('T') {
                Cow::Owned(jst_date_time(&folded)?)
            } else if b.len() == 14 && b.iter().all(u8::is_ascii_digit) {
                let date = parse_day(&folded[..8])?;
                let (h, m, s) = (
                    digits_value(&folded, 8, 10),
                    digits_value(&folded, 10, 12),
                    digits_value(&folded, 12, 14),
                );
                if h > 23 || m > 59 || s > 59 {
                    return Err("impossible time".to_owned());
                }
                Cow::Owned(format!(
                    "{}T{}:{}:{}+09:00",
                    iso_date(date),
                    &folded[8..10],
                    &folded[10..12],
                    &folded[12..14]
                ))
            } else {
                Cow::Owned(iso_date(parse_day(&folded)?))
            }
        }
        ColumnType::Decimal => {
            let folded = fold(text);
            let max = usize::from(column.max_decimals.unwrap_or(0));
            let (whole, decimals) = match folded.split_once('.') {
                Some((w, d)) => (w, Some(d)),
                None => (folded.as_ref(), None),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(whole) || decimals.is_some_and(|d| !digits(d)) {
                return Err("not a decimal number (e.g. 65.4)".to_owned());
            }
            if decimals.is_some_and(|d| d.len() > max) {
                return Err(format!("more than {max} decimals"));
            }
            folded
        }
        ColumnType::Code => match column.code_index.get(text) {
            Some(&i) => Cow::Borrowed(column.codes[i].1.as_str()),
            None => return Err("unknown code".to_owned()),
        },
    };
    check_field(column.field, value)
}

/// Field-specific checks beyond the column type.
fn check_field(field: Option<Field>, value: Cow<'_, str>) -> Result<Cow<'_, str>, String> {
    Ok(match field {
        Some(Field::NameKana) => match value {
            Cow::Borrowed(v) => full_width_kana(v),
            Cow::Owned(v) => Cow::Owned(full_width_kana(&v).into_owned()),
        },
        Some(Field::InstitutionCode) => {
            FacilityCode::parse(&value).map_err(|e| e.to_string())?;
            value
        }
        Some(Field::VaccinatingMunicipality) => {
            MunicipalityCode::parse(&value).map_err(|e| e.to_string())?;
            value
        }
        Some(Field::PostalCode) => {
            let folded = fold(&value);
            let digits: String = folded.chars().filter(|c| *c != '-').collect();
            if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 3 | 7) {
                return Err("not a postal code (NNN-NNNN or NNN)".to_owned());
            }
            if digits.len() == 7 {
                Cow::Owned(format!("{}-{}", &digits[..3], &digits[3..]))
            } else {
                Cow::Owned(digits)
            }
        }
        Some(Field::ProductCode) => {
            let folded = fold(&value).into_owned();
            product_system(&folded).ok_or_else(|| {
                "not a product code (9-digit HOT9, 13-digit HOT13 or 12-character YJ code)"
                    .to_owned()
            })?;
            Cow::Owned(folded)
        }
        Some(Field::DoseNumber | Field::AgeInMonths | Field::GestationalWeek) => {
            let n: u32 = value.parse().map_err(|_| "not a number".to_owned())?;
            if n == 0 && field == Some(Field::DoseNumber) {
                return Err("the dose number starts at 1".to_owned());
            }
            Cow::Owned(n.to_string())
        }
        _ => value,
    })
}

/// Which product code system a code belongs to, told apart by shape.
pub(crate) fn product_system(code: &str) -> Option<&'static str> {
    let b = code.as_bytes();
    match b.len() {
        9 if b.iter().all(u8::is_ascii_digit) => Some(HOT9),
        13 if b.iter().all(u8::is_ascii_digit) => Some(HOT13),
        12 if b.iter().all(u8::is_ascii_alphanumeric) => Some(YJ),
        _ => None,
    }
}

/// Maps rows of one layout for one municipality.
#[derive(Debug)]
pub(crate) struct Mapper {
    pub layout: Layout,
    pub municipality: MunicipalityCode,
    resident_system: String,
    /// The prefecture name the importing municipality belongs to, for `address.state`.
    prefecture: &'static str,
}

fn row_error(
    line: u64,
    column: Option<&Column>,
    naming: Naming,
    value: Option<&str>,
    reason: String,
) -> RowError {
    RowError {
        line,
        column: column.map(|c| column_name(c, naming)),
        value: value.map(str::to_owned),
        reason,
    }
}

impl Mapper {
    pub fn new(layout: &Layout, municipality: &MunicipalityCode) -> Self {
        Mapper {
            layout: layout.clone(),
            municipality: municipality.clone(),
            resident_system: resident_identifier_system(municipality),
            prefecture: municipality.prefecture().name_ja(),
        }
    }

    /// Which blocks hold any value (a block with every column empty is no record).
    fn used_blocks(&self, values: &[&str]) -> Vec<bool> {
        let mut used = vec![self.layout.blocks == 1; self.layout.blocks];
        if self.layout.blocks > 1 {
            for (column, value) in self.layout.columns.iter().zip(values) {
                if column.field.is_some_and(|f| !f.is_personal()) && !value.is_empty() {
                    used[column.block] = true;
                }
            }
        }
        used
    }

    /// Checks every value (already trimmed) and reads them into per-block field arrays.
    /// `only` limits the work to some fields (deletes need only the key).
    fn read<'a>(
        &'a self,
        line: u64,
        values: &[&'a str],
        naming: Naming,
        only: Option<&[Field]>,
    ) -> Result<(Values<'a>, Vec<Option<Values<'a>>>), RowError> {
        let used = self.used_blocks(values);
        let mut person = empty_values();
        let mut blocks: Vec<Option<Values<'a>>> =
            used.iter().map(|u| u.then(empty_values)).collect();
        for (column, &text) in self.layout.columns.iter().zip(values) {
            let Some(field) = column.field else { continue };
            if only.is_some_and(|o| !o.contains(&field)) {
                continue;
            }
            let target = if field.is_personal() {
                &mut person
            } else {
                match &mut blocks[column.block] {
                    Some(b) => b,
                    None => continue,
                }
            };
            if text.is_empty() {
                if column.required {
                    return Err(row_error(
                        line,
                        Some(column),
                        naming,
                        None,
                        "missing required value".to_owned(),
                    ));
                }
                continue;
            }
            let value = parse_value(column, text)
                .map_err(|reason| row_error(line, Some(column), naming, Some(text), reason))?;
            target[field as usize] = Some(value);
        }
        for (field, value) in &self.layout.fixed {
            let target = if field.is_personal() {
                &mut person
            } else {
                for block in blocks.iter_mut().flatten() {
                    block[*field as usize] = Some(Cow::Borrowed(value.as_str()));
                }
                continue;
            };
            target[*field as usize] = Some(Cow::Borrowed(value.as_str()));
        }
        if self.layout.dose_from_block {
            for (i, block) in blocks.iter_mut().enumerate() {
                if let Some(b) = block {
                    b[Field::DoseNumber as usize] = Some(Cow::Owned((i + 1).to_string()));
                }
            }
        }
        Ok((person, blocks))
    }

    /// The whole mapping of one record.
    pub fn map(&self, line: u64, values: &[&str], naming: Naming) -> Result<MappedRow, RowError> {
        let (person, blocks) = self.read(line, values, naming, None)?;
        let resident = person[Field::ResidentNumber as usize]
            .as_deref()
            .ok_or_else(|| row_error(line, None, naming, None, "no resident number".into()))?;
        let patient_id = resource_id(&format!(
            "Patient|{}|{resident}",
            self.municipality.as_str()
        ));
        let mut resources = vec![MappedResource {
            resource_type: "Patient",
            resource: self.patient(&patient_id, &person),
            id: patient_id.clone(),
        }];
        let mut key = String::new();
        for block in blocks.iter().flatten() {
            let first = resources.len();
            match self.layout.kind() {
                Kind::Vaccination => {
                    self.immunization(line, naming, resident, &patient_id, block, &mut resources)?
                }
                Kind::InfantCheckup | Kind::PregnancyCheckup => {
                    self.checkup(resident, &patient_id, block, &mut resources)
                }
            }
            if key.is_empty() {
                key = format!("{}/{}", resources[first].resource_type, resources[first].id);
            }
        }
        if key.is_empty() {
            return Err(row_error(
                line,
                None,
                naming,
                None,
                "the row holds no record".into(),
            ));
        }
        Ok(MappedRow {
            line,
            key,
            resources,
        })
    }

    /// The ids a delete removes: the record (and its Observations), never the Patient, who
    /// may have other records.
    pub fn delete(
        &self,
        line: u64,
        values: &[&str],
        naming: Naming,
    ) -> Result<MappedRow, RowError> {
        let keys = [
            Field::ResidentNumber,
            Field::Vaccine,
            Field::ProductCode,
            Field::VaccinationDate,
            Field::CheckupKind,
            Field::CheckupDate,
        ];
        let (person, blocks) = self.read(line, values, naming, Some(&keys))?;
        let resident = person[Field::ResidentNumber as usize]
            .as_deref()
            .ok_or_else(|| row_error(line, None, naming, None, "no resident number".into()))?;
        let mut resources = Vec::new();
        for block in blocks.iter().flatten() {
            let stub = |resource_type: &'static str, id: String| MappedResource {
                resource_type,
                resource: json!({"resourceType": resource_type, "id": id}),
                id,
            };
            match self.layout.kind() {
                Kind::Vaccination => {
                    let vaccine = self.vaccine_of(line, naming, block)?;
                    let date = block[Field::VaccinationDate as usize]
                        .as_deref()
                        .unwrap_or("");
                    resources.push(stub(
                        "Immunization",
                        self.immunization_id(resident, vaccine, date),
                    ));
                }
                Kind::InfantCheckup | Kind::PregnancyCheckup => {
                    let (kind, date) = checkup_key(block);
                    let encounter_key = self.encounter_key(resident, kind, date);
                    resources.push(stub("Encounter", resource_id(&encounter_key)));
                    for column in &self.layout.columns {
                        if let Some(field) = column.field.filter(|f| OBSERVATION_FIELDS.contains(f))
                        {
                            resources.push(stub(
                                "Observation",
                                resource_id(&format!("{encounter_key}|{}", field.id())),
                            ));
                        }
                    }
                }
            }
        }
        let key = resources
            .first()
            .map(|r| format!("{}/{}", r.resource_type, r.id))
            .ok_or_else(|| row_error(line, None, naming, None, "the row holds no record".into()))?;
        Ok(MappedRow {
            line,
            key,
            resources,
        })
    }

    fn patient(&self, id: &str, v: &Values<'_>) -> Value {
        let get = |f: Field| v[f as usize].as_deref();
        let mut p = Map::with_capacity(8);
        p.insert("resourceType".into(), s("Patient"));
        p.insert("id".into(), s(id));
        p.insert("meta".into(), templates().patient_meta.clone());
        p.insert(
            "identifier".into(),
            Value::Array(vec![obj([
                ("system", s(&self.resident_system)),
                ("value", s(get(Field::ResidentNumber).unwrap_or_default())),
            ])]),
        );
        let mut names = Vec::with_capacity(2);
        for (field, representation) in [
            (Field::Name, &templates().kanji),
            (Field::NameKana, &templates().kana),
        ] {
            if let Some(text) = get(field) {
                names.push(human_name(text, representation));
            }
        }
        if !names.is_empty() {
            p.insert("name".into(), Value::Array(names));
        }
        if let Some(sex) = get(Field::Sex) {
            p.insert("gender".into(), sex.into());
        }
        if let Some(birth) = get(Field::BirthDate) {
            p.insert("birthDate".into(), birth.into());
        }
        let mut address = Map::with_capacity(6);
        address.insert(
            "extension".into(),
            Value::Array(vec![obj([
                ("url", s(mappers::immunization::MUNICIPALITY_EXTENSION)),
                ("valueCode", s(self.municipality.as_str())),
            ])]),
        );
        address.insert("use".into(), "home".into());
        if let Some(text) = get(Field::Address) {
            address.insert("text".into(), text.into());
            if text.starts_with(self.prefecture) {
                address.insert("state".into(), self.prefecture.into());
            }
        }
        if let Some(postal) = get(Field::PostalCode) {
            address.insert("postalCode".into(), postal.into());
        }
        address.insert("country".into(), "JP".into());
        p.insert("address".into(), Value::Array(vec![Value::Object(address)]));
        Value::Object(p)
    }

    fn vaccine_of<'v>(
        &self,
        line: u64,
        naming: Naming,
        v: &'v Values<'_>,
    ) -> Result<&'v str, RowError> {
        if let Some(vaccine) = v[Field::Vaccine as usize].as_deref() {
            return Ok(vaccine);
        }
        let product = v[Field::ProductCode as usize].as_deref();
        let column = self
            .layout
            .columns
            .iter()
            .find(|c| c.field == Some(Field::ProductCode));
        let reason = match product {
            None => "neither a vaccine type nor a product code is given".to_owned(),
            Some(_) => {
                "the product code is not a vaccine Musubi knows, and no vaccine type is given"
                    .to_owned()
            }
        };
        let from_product = product.and_then(|code| {
            let system = product_system(code)?;
            let terminology = terminology::Terminology::embedded().ok()?;
            let vaccine: &'static str = terminology.vaccine_type_of(system, code)?;
            vaccine_info(vaccine).map(|_| vaccine)
        });
        from_product.ok_or_else(|| row_error(line, column, naming, product, reason))
    }

    fn immunization_id(&self, resident: &str, vaccine: &str, date: &str) -> String {
        resource_id(&format!(
            "Immunization|{}|{resident}|{vaccine}|{date}",
            self.municipality.as_str()
        ))
    }

    fn immunization(
        &self,
        line: u64,
        naming: Naming,
        resident: &str,
        patient_id: &str,
        v: &Values<'_>,
        out: &mut Vec<MappedResource>,
    ) -> Result<(), RowError> {
        let get = |f: Field| v[f as usize].as_deref();
        let vaccine = self.vaccine_of(line, naming, v)?;
        let info = vaccine_info(vaccine).ok_or_else(|| {
            row_error(
                line,
                None,
                naming,
                Some(vaccine),
                "unknown vaccine type".into(),
            )
        })?;
        let date = get(Field::VaccinationDate).unwrap_or_default();
        let id = self.immunization_id(resident, vaccine, date);
        let mut r = Map::with_capacity(16);
        r.insert("resourceType".into(), s("Immunization"));
        r.insert("id".into(), s(&id));
        r.insert("meta".into(), templates().immunization_meta.clone());
        if let Some(code) = get(Field::VaccinatingMunicipality) {
            r.insert(
                "extension".into(),
                Value::Array(vec![obj([
                    ("url", s(VACCINATING_MUNICIPALITY_EXTENSION)),
                    ("valueCode", s(code)),
                ])]),
            );
        }
        if let Some(ticket) = get(Field::TicketNumber) {
            r.insert(
                "identifier".into(),
                json!([{"system": format!("{TICKET_SYSTEM_BASE}{}", self.municipality.as_str()), "value": ticket}]),
            );
        }
        r.insert("status".into(), s("completed"));
        let mut codings = Vec::with_capacity(2);
        codings.push(info.coding.clone());
        if let Some(product) = get(Field::ProductCode) {
            let system = product_system(product).unwrap_or(HOT9);
            codings.push(obj([("system", s(system)), ("code", s(product))]));
        }
        r.insert(
            "vaccineCode".into(),
            obj([("coding", Value::Array(codings))]),
        );
        r.insert(
            "patient".into(),
            obj([("reference", Value::String(format!("Patient/{patient_id}")))]),
        );
        r.insert("occurrenceDateTime".into(), s(date));
        if let Some(recorded) = get(Field::RegisteredAt) {
            r.insert("recorded".into(), s(recorded));
        }
        if let Some(name) = get(Field::InstitutionName) {
            r.insert("location".into(), obj([("display", s(name))]));
        }
        if let Some(maker) = get(Field::Manufacturer) {
            r.insert("manufacturer".into(), obj([("display", s(maker))]));
        }
        if let Some(lot) = get(Field::LotNumber) {
            r.insert("lotNumber".into(), s(lot));
        }
        let mut performers = Vec::with_capacity(2);
        if let Some(doctor) = get(Field::DoctorName) {
            performers.push(obj([
                ("function", templates().administering_provider.clone()),
                ("actor", obj([("display", s(doctor))])),
            ]));
        }
        if let Some(code) = get(Field::InstitutionCode) {
            performers.push(obj([(
                "actor",
                obj([
                    ("type", s("Organization")),
                    (
                        "identifier",
                        obj([
                            ("system", s(identifiers::MEDICAL_INSTITUTION_CODE_SYSTEM)),
                            ("value", s(code)),
                        ]),
                    ),
                ]),
            )]));
        }
        if !performers.is_empty() {
            r.insert("performer".into(), Value::Array(performers));
        }
        let mut protocol = Map::with_capacity(2);
        if info
            .target_disease
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            protocol.insert("targetDisease".into(), info.target_disease.clone());
        }
        match get(Field::DoseNumber) {
            Some(n) => {
                let n: u64 = n.parse().unwrap_or(1);
                protocol.insert("doseNumberPositiveInt".into(), n.into());
            }
            // doseNumber[x] is 1..1 in R4 (immunization.html); an unknown count is said so.
            None => {
                protocol.insert("doseNumberString".into(), DOSE_UNKNOWN.into());
            }
        }
        r.insert(
            "protocolApplied".into(),
            Value::Array(vec![Value::Object(protocol)]),
        );
        out.push(MappedResource {
            resource_type: "Immunization",
            id,
            resource: Value::Object(r),
        });
        Ok(())
    }

    fn encounter_key(&self, resident: &str, kind: &str, date: &str) -> String {
        format!(
            "Encounter|{}|{resident}|{kind}|{date}",
            self.municipality.as_str()
        )
    }

    fn checkup(
        &self,
        resident: &str,
        patient_id: &str,
        v: &Values<'_>,
        out: &mut Vec<MappedResource>,
    ) {
        let codes: &Codes = &self.layout.codes;
        let (kind, date) = checkup_key(v);
        let encounter_key = self.encounter_key(resident, kind, date);
        let encounter_id = resource_id(&encounter_key);
        let display = codes
            .checkup_kind(kind)
            .map_or(kind, |k| k.display.as_str());
        let patient_ref = format!("Patient/{patient_id}");
        out.push(MappedResource {
            resource_type: "Encounter",
            resource: json!({
                "resourceType": "Encounter",
                "id": encounter_id,
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "type": [{"coding": [{"system": codes.checkup_kind_system, "code": kind, "display": display}]}],
                "subject": {"reference": patient_ref},
                "period": {"start": date}
            }),
            id: encounter_id.clone(),
        });
        for field in OBSERVATION_FIELDS {
            let Some(value) = v[*field as usize].as_deref() else {
                continue;
            };
            let Some(def) = codes.observation(*field) else {
                continue;
            };
            let id = resource_id(&format!("{encounter_key}|{}", field.id()));
            let mut o = Map::new();
            o.insert("resourceType".into(), "Observation".into());
            o.insert("id".into(), id.as_str().into());
            if let Some(profile) = &def.profile {
                o.insert("meta".into(), json!({"profile": [profile]}));
            }
            o.insert("status".into(), "final".into());
            o.insert(
                "category".into(),
                Value::Array(
                    def.category
                        .iter()
                        .map(|c| json!({"coding": [coding(c)]}))
                        .collect(),
                ),
            );
            o.insert(
                "code".into(),
                json!({"coding": def.code.iter().map(coding).collect::<Vec<_>>()}),
            );
            o.insert("subject".into(), json!({"reference": patient_ref}));
            o.insert(
                "encounter".into(),
                json!({"reference": format!("Encounter/{encounter_id}")}),
            );
            o.insert("effectiveDateTime".into(), date.into());
            if let Some(unit) = &def.unit {
                // Decimals keep their written precision (arbitrary_precision), so 6.50 stays 6.50.
                let number: serde_json::Number = value
                    .parse()
                    .unwrap_or_else(|_| serde_json::Number::from(0));
                o.insert(
                    "valueQuantity".into(),
                    json!({"value": number, "unit": unit.unit, "system": UCUM, "code": unit.code}),
                );
            } else if let Some(system) = def
                .value_code_system
                .as_ref()
                .and_then(|s| codes.code_systems.get(s))
            {
                let display = system
                    .concepts
                    .iter()
                    .find(|c| c.code == value)
                    .map_or(value, |c| c.display.as_str());
                o.insert(
                    "valueCodeableConcept".into(),
                    json!({"coding": [{"system": system.system, "code": value, "display": display}]}),
                );
            }
            out.push(MappedResource {
                resource_type: "Observation",
                id,
                resource: Value::Object(o),
            });
        }
    }
}

/// The doseNumberString written when the file gives no dose number.
pub(crate) const DOSE_UNKNOWN: &str = "不明";

fn checkup_key<'v>(v: &'v Values<'_>) -> (&'v str, &'v str) {
    (
        v[Field::CheckupKind as usize]
            .as_deref()
            .unwrap_or_default(),
        v[Field::CheckupDate as usize]
            .as_deref()
            .unwrap_or_default(),
    )
}

fn coding(c: &crate::layout::CodingData) -> Value {
    json!({"system": c.system, "code": c.code, "display": c.display})
}

/// A JP Core name (JP_HumanName): family and given split on the first half- or full-width
/// space; a name without a space keeps only `text`.
fn human_name(text: &str, representation: &Value) -> Value {
    let mut name = Map::with_capacity(5);
    name.insert("extension".into(), representation.clone());
    name.insert("use".into(), s("official"));
    name.insert("text".into(), s(text));
    if let Some((family, given)) = text.split_once([' ', '\u{3000}']) {
        let family = trim(family);
        let given = trim(given);
        if !family.is_empty() && !given.is_empty() {
            name.insert("family".into(), s(family));
            name.insert("given".into(), Value::Array(vec![s(given)]));
        }
    }
    Value::Object(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_fhir_shaped() {
        let a = resource_id("Patient|131016|000123");
        assert_eq!(a, resource_id("Patient|131016|000123"));
        assert_ne!(a, resource_id("Patient|131016|000124"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn half_width_kana_becomes_full_width_and_spaces_stay() {
        let cases = [
            ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ タロウ"),
            ("ﾔﾏﾀﾞ　ﾀﾛｳ", "ヤマダ　タロウ"),
            ("ヤマダ　タロウ", "ヤマダ　タロウ"),
            ("ｶﾞｯｺｳ", "ガッコウ"),
            ("ﾊﾟﾊﾟ", "パパ"),
        ];
        for (input, expected) in cases {
            assert_eq!(full_width_kana(input), expected, "{input}");
        }
    }

    #[test]
    fn dates_in_every_form() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("20240401", Ok("2024-04-01")),
            ("2024-04-01", Ok("2024-04-01")),
            ("2024/4/1", Ok("2024-04-01")),
            ("令和6年4月1日", Ok("2024-04-01")),
            ("R6.4.1", Ok("2024-04-01")),
            ("5060401", Ok("2024-04-01")),
            ("20240230", Err("impossible date (no such day)")),
            ("2024-02-30", Err("impossible date (no such day)")),
            ("令和6年2月30日", Err("impossible date (no such day)")),
            (
                "2024.04.xx",
                Err("not a date (expected e.g. 20240401, 2024-04-01, 令和6年4月1日 or R6.4.1)"),
            ),
        ];
        for (text, expected) in cases {
            let got = parse_day(text).map(iso_date);
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                expected.map(|s| s),
                "{text}"
            );
        }
    }

    #[test]
    fn product_systems_by_shape() {
        assert_eq!(product_system("182110901"), Some(HOT9));
        assert_eq!(product_system("1820201040101"), Some(HOT13));
        assert_eq!(product_system("6311400A1010"), Some(YJ));
        assert_eq!(product_system("18211090"), None);
    }

    #[test]
    fn names_split_on_either_space() {
        let name = human_name("山田　太郎", &templates().kanji);
        assert_eq!(name["family"], "山田");
        assert_eq!(name["given"][0], "太郎");
        let single = human_name("ヤマダタロウ", &templates().kana);
        assert!(single.get("family").is_none());
        assert_eq!(single["text"], "ヤマダタロウ");
    }
}
