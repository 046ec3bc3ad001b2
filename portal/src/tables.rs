//! The portal's data files (profiles/jp/portal plus extra files supplied at run time), parsed
//! once into typed tables: the response layout, the vaccine name/code table and the check-up
//! kind and item table. The layout is a guess (the API schema is not public), so everything the
//! mapper reads from an answer is located through these files.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;
use time::Date;
use time::format_description::OwnedFormatItem;

use crate::error::PortalError;
use crate::text::normalise_name;

/// Musubi's vaccine-type CodeSystem (docs/terminology.md).
pub const VACCINE_TYPE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";

/// Where the answers of one record endpoint keep their fields (JSON pointers, RFC 6901,
/// relative to one record).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaccinationFields {
    pub record_id: Option<String>,
    pub vaccine_name: Option<String>,
    pub vaccine_code: Option<String>,
    pub date: String,
    pub dose: Option<String>,
    pub lot: Option<String>,
    pub facility_name: Option<String>,
    pub facility_code: Option<String>,
    pub municipality_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckupFields {
    pub record_id: Option<String>,
    pub kind_name: Option<String>,
    pub kind_code: Option<String>,
    pub date: String,
    pub facility_name: Option<String>,
    pub facility_code: Option<String>,
    pub items: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemFields {
    pub code: Option<String>,
    pub name: Option<String>,
    pub value: String,
    pub unit: Option<String>,
}

/// One record endpoint family: the paths to pull (each paged), where the record array is in a
/// page, and the record's fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint<F> {
    pub paths: Vec<String>,
    pub records: String,
    pub fields: F,
    #[serde(default)]
    pub item_fields: Option<ItemFields>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorisation {
    pub authorize_path: String,
    pub token_path: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The portal's error codes, read from an error answer at `code_pointer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorCodes {
    pub code_pointer: String,
    pub consent_expired: Vec<String>,
    pub consent_revoked: Vec<String>,
    pub invalid_token: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pagination {
    /// Query parameter carrying the cursor of the next page.
    pub cursor_param: String,
    /// Pointer (in a page) to the next page's cursor; absent or null on the last page.
    pub next_cursor: String,
}

/// How Provenance names the portal (Musubi's own encoding, kept as data).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceNames {
    pub agent_system: String,
    pub agent_value: String,
    pub agent_display: String,
    pub record_system: String,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LayoutFile {
    #[serde(rename = "kind")]
    _kind: String,
    status: String,
    #[serde(default)]
    note: Option<String>,
    authorisation: Authorisation,
    continuous_access_days: u32,
    errors: ErrorCodes,
    pagination: Pagination,
    date_formats: Vec<String>,
    vaccination: Endpoint<VaccinationFields>,
    checkup: Endpoint<CheckupFields>,
    source: SourceNames,
}

/// The response layout: endpoints, field locations, date formats, error codes.
#[derive(Debug)]
pub struct Layout {
    /// The file it came from (reported in errors and docs).
    pub file: String,
    /// "inferred" until the layout is confirmed against the real API.
    pub status: String,
    pub note: Option<String>,
    pub authorisation: Authorisation,
    /// Days one consent allows continuous access (期間連携, jp-specs §2.1).
    pub continuous_access_days: u32,
    pub errors: ErrorCodes,
    pub pagination: Pagination,
    date_formats: Vec<(String, OwnedFormatItem)>,
    pub vaccination: Endpoint<VaccinationFields>,
    pub checkup: Endpoint<CheckupFields>,
    pub source: SourceNames,
}

impl Layout {
    /// A date as the layout's formats allow (tried in order), or `None`.
    pub fn parse_date(&self, text: &str) -> Option<Date> {
        self.date_formats
            .iter()
            .find_map(|(_, format)| Date::parse(text, format).ok())
    }

    /// The date formats as written in the file.
    pub fn date_formats(&self) -> impl Iterator<Item = &str> {
        self.date_formats.iter().map(|(text, _)| text.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VaccineFile {
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(rename = "status")]
    _status: String,
    #[serde(default, rename = "note")]
    _note: Option<String>,
    vaccines: Vec<VaccineEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VaccineEntry {
    vaccine_type: String,
    names: Vec<String>,
    codes: Vec<String>,
}

/// A code of Musubi's vaccine-type CodeSystem, checked against that CodeSystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaccineType {
    pub code: String,
    pub display: String,
}

/// The value of a check-up item: a quantity with a unit, or a code from a list.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ValueKind {
    Quantity,
    Coded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Unit {
    /// UCUM code.
    pub code: String,
    pub display: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodedValue {
    pub code: String,
    pub display: String,
    pub names: Vec<String>,
}

/// One check-up result item and its FHIR Observation coding.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemDef {
    pub key: String,
    pub names: Vec<String>,
    pub codes: Vec<String>,
    pub value: ValueKind,
    #[serde(default)]
    pub unit: Option<Unit>,
    #[serde(default)]
    pub unit_aliases: Vec<String>,
    #[serde(default)]
    pub value_system: Option<String>,
    #[serde(default)]
    pub values: Vec<CodedValue>,
    #[serde(default)]
    pub profile: Option<String>,
    pub category: Vec<Value>,
    pub coding: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KindDef {
    pub code: String,
    pub display: String,
    pub names: Vec<String>,
    pub codes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckupFile {
    #[serde(rename = "kind")]
    _kind: String,
    #[serde(rename = "status")]
    _status: String,
    #[serde(default, rename = "note")]
    _note: Option<String>,
    kind_system: String,
    kinds: Vec<KindDef>,
    items: Vec<ItemDef>,
}

/// Every portal table, parsed and cross-checked.
#[derive(Debug)]
pub struct PortalTables {
    pub layout: Layout,
    vaccine_by_name: HashMap<String, VaccineType>,
    vaccine_by_code: HashMap<String, VaccineType>,
    vaccine_types: BTreeMap<String, VaccineType>,
    pub kind_system: String,
    kinds: Vec<KindDef>,
    kind_by_name: HashMap<String, usize>,
    kind_by_code: HashMap<String, usize>,
    items: Vec<ItemDef>,
    item_by_name: HashMap<String, usize>,
    item_by_code: HashMap<String, usize>,
}

impl PortalTables {
    /// The embedded files of profiles/jp/portal plus `extra` `(file name, text)` files. An
    /// extra file with the name of an embedded one replaces it (so a corrected layout needs no
    /// rebuild); other extra files add entries. Exactly one layout must remain.
    pub fn load(extra: &[(&str, &str)]) -> Result<Self, PortalError> {
        Self::load_from(profiles::JP_PORTAL, profiles::JP_TERMINOLOGY, extra)
    }

    /// As [`PortalTables::load`], from explicit file lists (tests).
    pub fn load_from(
        portal_files: &[(&str, &str)],
        terminology_files: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Result<Self, PortalError> {
        let mut files: BTreeMap<&str, &str> = portal_files.iter().copied().collect();
        for (name, text) in extra {
            files.insert(name, text);
        }
        let vaccine_types = vaccine_type_codes(terminology_files)?;

        let mut layout = None;
        let mut vaccine_by_name = HashMap::new();
        let mut vaccine_by_code = HashMap::new();
        let mut kind_system: Option<String> = None;
        let mut kinds: Vec<KindDef> = Vec::new();
        let mut items: Vec<ItemDef> = Vec::new();

        for (name, text) in files {
            let data_err = |reason: String| PortalError::Data {
                file: name.to_owned(),
                reason,
            };
            let value: Value =
                serde_json::from_str(text).map_err(|e| data_err(format!("not JSON: {e}")))?;
            let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
            match kind {
                "portal-layout" => {
                    let file: LayoutFile = serde_json::from_value(value)
                        .map_err(|e| data_err(format!("not a portal layout: {e}")))?;
                    if layout.is_some() {
                        return Err(data_err(
                            "a second portal-layout file; give the extra file the embedded file's name to replace it".into(),
                        ));
                    }
                    layout = Some(layout_from(name, file).map_err(data_err)?);
                }
                "portal-vaccines" => {
                    let file: VaccineFile = serde_json::from_value(value)
                        .map_err(|e| data_err(format!("not a portal vaccine table: {e}")))?;
                    for entry in file.vaccines {
                        let Some(vt) = vaccine_types.get(&entry.vaccine_type) else {
                            return Err(data_err(format!(
                                "vaccineType {:?} is not a code of {VACCINE_TYPE_SYSTEM}",
                                entry.vaccine_type
                            )));
                        };
                        for n in &entry.names {
                            insert_unique(&mut vaccine_by_name, normalise_name(n), vt, "name", n)
                                .map_err(data_err)?;
                        }
                        for c in &entry.codes {
                            insert_unique(&mut vaccine_by_code, c.trim().to_owned(), vt, "code", c)
                                .map_err(data_err)?;
                        }
                    }
                }
                "portal-checkups" => {
                    let file: CheckupFile = serde_json::from_value(value)
                        .map_err(|e| data_err(format!("not a portal check-up table: {e}")))?;
                    match &kind_system {
                        Some(s) if *s != file.kind_system => {
                            return Err(data_err(format!(
                                "kindSystem {:?} differs from {s:?} of another file",
                                file.kind_system
                            )));
                        }
                        _ => kind_system = Some(file.kind_system.clone()),
                    }
                    for item in &file.items {
                        check_item(item).map_err(data_err)?;
                    }
                    kinds.extend(file.kinds);
                    items.extend(file.items);
                }
                other => {
                    return Err(data_err(format!(
                        "unknown kind {other:?} (expected portal-layout, portal-vaccines or portal-checkups)"
                    )));
                }
            }
        }

        // Every vaccine type is also known by its own code and its CodeSystem display, so the
        // table only needs the portal's other spellings.
        for vt in vaccine_types.values() {
            vaccine_by_name
                .entry(normalise_name(&vt.display))
                .or_insert_with(|| vt.clone());
            vaccine_by_name
                .entry(normalise_name(&vt.code))
                .or_insert_with(|| vt.clone());
        }

        let layout = layout.ok_or_else(|| PortalError::Data {
            file: "profiles/jp/portal".into(),
            reason: "no file of kind portal-layout".into(),
        })?;
        let kind_system = kind_system.ok_or_else(|| PortalError::Data {
            file: "profiles/jp/portal".into(),
            reason: "no file of kind portal-checkups".into(),
        })?;
        let (kind_by_name, kind_by_code) = index(
            kinds.iter().map(|k| (&k.code, &k.names, &k.codes)),
            "check-up kind",
        )?;
        let (item_by_name, item_by_code) = index(
            items.iter().map(|i| (&i.key, &i.names, &i.codes)),
            "check-up item",
        )?;
        Ok(PortalTables {
            layout,
            vaccine_by_name,
            vaccine_by_code,
            vaccine_types,
            kind_system,
            kinds,
            kind_by_name,
            kind_by_code,
            items,
            item_by_name,
            item_by_code,
        })
    }

    /// The vaccine type a portal record names, by its code first, then by its name.
    pub fn vaccine_type(&self, code: Option<&str>, name: Option<&str>) -> Option<&VaccineType> {
        code.and_then(|c| self.vaccine_by_code.get(c.trim()))
            .or_else(|| name.and_then(|n| self.vaccine_by_name.get(&normalise_name(n))))
    }

    /// A vaccine type by its Musubi code.
    pub fn vaccine_type_by_code(&self, code: &str) -> Option<&VaccineType> {
        self.vaccine_types.get(code)
    }

    /// The check-up kind a portal record names, by its code first, then by its name.
    pub fn checkup_kind(&self, code: Option<&str>, name: Option<&str>) -> Option<&KindDef> {
        code.and_then(|c| self.kind_by_code.get(c.trim()))
            .or_else(|| name.and_then(|n| self.kind_by_name.get(&normalise_name(n))))
            .map(|&i| &self.kinds[i])
    }

    /// The check-up item a portal result names, by its code first, then by its name.
    pub fn checkup_item(&self, code: Option<&str>, name: Option<&str>) -> Option<&ItemDef> {
        code.and_then(|c| self.item_by_code.get(c.trim()))
            .or_else(|| name.and_then(|n| self.item_by_name.get(&normalise_name(n))))
            .map(|&i| &self.items[i])
    }
}

fn insert_unique(
    map: &mut HashMap<String, VaccineType>,
    key: String,
    vt: &VaccineType,
    what: &str,
    written: &str,
) -> Result<(), String> {
    match map.get(&key) {
        Some(existing) if existing.code != vt.code => Err(format!(
            "{what} {written:?} maps to both {} and {}",
            existing.code, vt.code
        )),
        _ => {
            map.insert(key, vt.clone());
            Ok(())
        }
    }
}

type Index = HashMap<String, usize>;

fn index<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Vec<String>, &'a Vec<String>)>,
    what: &str,
) -> Result<(Index, Index), PortalError> {
    let mut by_name = HashMap::new();
    let mut by_code = HashMap::new();
    for (i, (key, names, codes)) in entries.enumerate() {
        for n in names {
            if by_name.insert(normalise_name(n), i).is_some_and(|j| j != i) {
                return Err(PortalError::Data {
                    file: "profiles/jp/portal".into(),
                    reason: format!("{what} name {n:?} is listed twice (last for {key:?})"),
                });
            }
        }
        for c in codes {
            if by_code
                .insert(c.trim().to_owned(), i)
                .is_some_and(|j| j != i)
            {
                return Err(PortalError::Data {
                    file: "profiles/jp/portal".into(),
                    reason: format!("{what} code {c:?} is listed twice (last for {key:?})"),
                });
            }
        }
    }
    Ok((by_name, by_code))
}

fn check_item(item: &ItemDef) -> Result<(), String> {
    match item.value {
        ValueKind::Quantity if item.unit.is_none() => {
            Err(format!("item {:?} is a quantity without a unit", item.key))
        }
        ValueKind::Coded if item.value_system.is_none() || item.values.is_empty() => Err(format!(
            "item {:?} is coded without valueSystem and values",
            item.key
        )),
        _ if item.coding.is_empty() => Err(format!("item {:?} has no coding", item.key)),
        _ => Ok(()),
    }
}

fn pointer_ok(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

fn layout_from(name: &str, file: LayoutFile) -> Result<Layout, String> {
    let mut pointers: Vec<(&str, &str)> = vec![
        ("errors.codePointer", &file.errors.code_pointer),
        ("pagination.nextCursor", &file.pagination.next_cursor),
        ("vaccination.records", &file.vaccination.records),
        ("vaccination.fields.date", &file.vaccination.fields.date),
        ("checkup.records", &file.checkup.records),
        ("checkup.fields.date", &file.checkup.fields.date),
        ("checkup.fields.items", &file.checkup.fields.items),
    ];
    let v = &file.vaccination.fields;
    for (n, p) in [
        ("recordId", &v.record_id),
        ("vaccineName", &v.vaccine_name),
        ("vaccineCode", &v.vaccine_code),
        ("dose", &v.dose),
        ("lot", &v.lot),
        ("facilityName", &v.facility_name),
        ("facilityCode", &v.facility_code),
        ("municipalityCode", &v.municipality_code),
    ] {
        if let Some(p) = p {
            pointers.push((n, p));
        }
    }
    let c = &file.checkup.fields;
    for (n, p) in [
        ("recordId", &c.record_id),
        ("kindName", &c.kind_name),
        ("kindCode", &c.kind_code),
        ("facilityName", &c.facility_name),
        ("facilityCode", &c.facility_code),
    ] {
        if let Some(p) = p {
            pointers.push((n, p));
        }
    }
    let Some(item_fields) = &file.checkup.item_fields else {
        return Err("checkup.itemFields is required".into());
    };
    pointers.push(("itemFields.value", &item_fields.value));
    for (n, p) in [
        ("itemFields.code", &item_fields.code),
        ("itemFields.name", &item_fields.name),
        ("itemFields.unit", &item_fields.unit),
    ] {
        if let Some(p) = p {
            pointers.push((n, p));
        }
    }
    if let Some((n, p)) = pointers.iter().find(|(_, p)| !pointer_ok(p)) {
        return Err(format!(
            "{n}: {p:?} is not a JSON pointer (empty or starting with '/')"
        ));
    }
    if v.vaccine_name.is_none() && v.vaccine_code.is_none() {
        return Err("vaccination.fields needs vaccineName or vaccineCode".into());
    }
    if c.kind_name.is_none() && c.kind_code.is_none() {
        return Err("checkup.fields needs kindName or kindCode".into());
    }
    if item_fields.name.is_none() && item_fields.code.is_none() {
        return Err("checkup.itemFields needs name or code".into());
    }
    for (what, paths) in [
        ("vaccination.paths", &file.vaccination.paths),
        ("checkup.paths", &file.checkup.paths),
    ] {
        if paths.is_empty() || paths.iter().any(|p| !p.starts_with('/')) {
            return Err(format!(
                "{what}: give at least one path, each starting with '/'"
            ));
        }
    }
    for (what, p) in [
        (
            "authorisation.authorizePath",
            &file.authorisation.authorize_path,
        ),
        ("authorisation.tokenPath", &file.authorisation.token_path),
    ] {
        if !p.starts_with('/') {
            return Err(format!("{what}: {p:?} must start with '/'"));
        }
    }
    if file.continuous_access_days == 0 {
        return Err("continuousAccessDays must be at least 1".into());
    }
    if file.date_formats.is_empty() {
        return Err("dateFormats: give at least one format".into());
    }
    let mut date_formats = Vec::new();
    for f in &file.date_formats {
        let item = time::format_description::parse_owned::<2>(f)
            .map_err(|e| format!("dateFormats: {f:?} is not a time format description: {e}"))?;
        date_formats.push((f.clone(), item));
    }
    Ok(Layout {
        file: name.to_owned(),
        status: file.status,
        note: file.note,
        authorisation: file.authorisation,
        continuous_access_days: file.continuous_access_days,
        errors: file.errors,
        pagination: file.pagination,
        date_formats,
        vaccination: file.vaccination,
        checkup: file.checkup,
        source: file.source,
    })
}

/// The codes and displays of Musubi's vaccine-type CodeSystem, from the terminology files.
fn vaccine_type_codes(
    terminology_files: &[(&str, &str)],
) -> Result<BTreeMap<String, VaccineType>, PortalError> {
    for (name, text) in terminology_files {
        // Cheap pre-filter: only the one CodeSystem is parsed.
        if !text.contains(VACCINE_TYPE_SYSTEM) {
            continue;
        }
        let value: Value = serde_json::from_str(text).map_err(|e| PortalError::Data {
            file: (*name).to_owned(),
            reason: format!("not JSON: {e}"),
        })?;
        if value.get("resourceType").and_then(Value::as_str) != Some("CodeSystem")
            || value.get("url").and_then(Value::as_str) != Some(VACCINE_TYPE_SYSTEM)
        {
            continue;
        }
        let concepts = value
            .get("concept")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for c in concepts {
            if let Some(code) = c.get("code").and_then(Value::as_str) {
                let display = c
                    .get("display")
                    .and_then(Value::as_str)
                    .unwrap_or(code)
                    .to_owned();
                out.insert(
                    code.to_owned(),
                    VaccineType {
                        code: code.to_owned(),
                        display,
                    },
                );
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Err(PortalError::Data {
        file: "profiles/jp/terminology".into(),
        reason: format!("no CodeSystem {VACCINE_TYPE_SYSTEM} with concepts"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminology() -> Vec<(&'static str, &'static str)> {
        profiles::JP_TERMINOLOGY.to_vec()
    }

    #[test]
    fn embedded_tables_load() {
        let t = PortalTables::load(&[]).expect("embedded portal tables load");
        assert_eq!(t.layout.continuous_access_days, 90);
        assert_eq!(t.layout.status, "inferred");
        assert_eq!(
            t.layout.parse_date("20240401"),
            Some(time::macros::date!(2024 - 04 - 01))
        );
        assert_eq!(
            t.layout.parse_date("2024-04-01"),
            Some(time::macros::date!(2024 - 04 - 01))
        );
        assert_eq!(t.layout.parse_date("2024/04/01"), None);
        assert_eq!(t.layout.parse_date("20240231"), None);
    }

    #[test]
    fn vaccine_lookup_by_name_code_and_display() {
        let t = PortalTables::load(&[]).unwrap();
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (None, Some("四種混合"), Some("dpt-ipv")),
            (None, Some("５種混合"), Some("dpt-ipv-hib")),
            (None, Some(" 麻しん風しん混合 "), Some("mr")),
            (None, Some("ＨＰＶ（９価）"), Some("hpv-9")),
            // The CodeSystem display and the code itself are matched without being listed.
            (None, Some("ヒブ（Hib）"), Some("hib")),
            (None, Some("bcg"), Some("bcg")),
            (None, Some("おたふくかぜ"), None),
            (Some("unknown-code"), None, None),
        ];
        for (code, name, want) in cases {
            let got = t.vaccine_type(*code, *name).map(|v| v.code.as_str());
            assert_eq!(got, *want, "{code:?} {name:?}");
        }
    }

    #[test]
    fn extra_file_adds_codes_and_replaces_layout() {
        let extra_vaccines = r#"{"kind":"portal-vaccines","status":"confirmed","vaccines":[
            {"vaccineType":"je","names":[],"codes":["V-JE"]}]}"#;
        let t = PortalTables::load(&[("site-vaccines.json", extra_vaccines)]).unwrap();
        assert_eq!(
            t.vaccine_type(Some("V-JE"), Some("unknown")).unwrap().code,
            "je"
        );

        let layout = profiles::JP_PORTAL
            .iter()
            .find(|(n, _)| *n == "myna-portal-layout.json")
            .unwrap()
            .1
            .replace("\"/vaccinationDate\"", "\"/date\"");
        let t = PortalTables::load(&[("myna-portal-layout.json", &layout)]).unwrap();
        assert_eq!(t.layout.vaccination.fields.date, "/date");
    }

    #[test]
    fn bad_files_are_named_with_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            ("x.json", "{", "not JSON"),
            ("x.json", r#"{"kind":"other"}"#, "unknown kind"),
            (
                "x.json",
                r#"{"kind":"portal-vaccines","status":"s","vaccines":[{"vaccineType":"mumps","names":[],"codes":[]}]}"#,
                "is not a code of",
            ),
            (
                "x.json",
                r#"{"kind":"portal-vaccines","status":"s","vaccines":[{"vaccineType":"je","names":["4種混合"],"codes":[]}]}"#,
                "maps to both",
            ),
            (
                "x.json",
                r#"{"kind":"portal-layout"}"#,
                "not a portal layout",
            ),
        ];
        for (name, text, want) in cases {
            let err = PortalTables::load_from(profiles::JP_PORTAL, &terminology(), &[(name, text)])
                .expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(name) && msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn layout_checks_pointers_and_formats() {
        let original = profiles::JP_PORTAL
            .iter()
            .find(|(n, _)| *n == "myna-portal-layout.json")
            .unwrap()
            .1;
        let cases = [
            (
                "\"/vaccinationDate\"",
                "\"vaccinationDate\"",
                "not a JSON pointer",
            ),
            (
                "\"[year][month][day]\"",
                "\"[yaer]\"",
                "not a time format description",
            ),
            (
                "\"continuousAccessDays\": 90",
                "\"continuousAccessDays\": 0",
                "at least 1",
            ),
        ];
        for (from, to, want) in cases {
            let text = original.replace(from, to);
            assert_ne!(text, original, "{from} must occur in the layout");
            let err = PortalTables::load(&[("myna-portal-layout.json", &text)]).expect_err(want);
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn missing_vaccine_type_codesystem_is_an_error() {
        let err = PortalTables::load_from(profiles::JP_PORTAL, &[], &[]).unwrap_err();
        assert!(err.to_string().contains(VACCINE_TYPE_SYSTEM), "{err}");
    }
}
