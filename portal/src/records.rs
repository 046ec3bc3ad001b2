//! One page of a portal answer read into typed records through the layout file: every field is
//! found by the layout's JSON pointer, so a corrected layout needs no code change. A page whose
//! shape contradicts the layout is an error naming the JSON pointer; a record the tables cannot
//! place (an unknown vaccine, item or unit) is skipped with an issue, so one gap in the tables
//! does not block the person's other records.

use fhir::validate::{Issue, IssueType, Severity};
use serde_json::{Number, Value};
use time::Date;
use unicode_normalization::UnicodeNormalization;

use crate::error::PortalError;
use crate::tables::{ItemDef, KindDef, PortalTables, VaccineType, ValueKind};
use crate::text::normalise_name;

/// Where the vaccination was given, as the portal names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facility {
    pub name: Option<String>,
    /// The 10-digit 医療機関コード (medical-institution code), when the portal gives one.
    pub code: Option<String>,
}

/// The dose number as the portal writes it: a count, or text such as "1期2回" that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dose {
    Number(u32),
    Text(String),
}

/// One vaccination record (予防接種記録) of the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaccinationRecord {
    /// The endpoint path it was read from.
    pub endpoint: String,
    /// JSON pointer of the record inside its page.
    pub pointer: String,
    pub record_id: Option<String>,
    pub vaccine_type: VaccineType,
    pub vaccine_name: Option<String>,
    pub vaccine_code: Option<String>,
    pub date: Date,
    pub dose: Option<Dose>,
    /// 接種液の製造番号 (lot number) as written.
    pub lot: Option<String>,
    pub facility: Facility,
    pub municipality_code: Option<String>,
}

/// A check-up result value, typed by the item table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemValue {
    /// A decimal kept as written, with its UCUM unit.
    Quantity {
        value: Number,
        unit_code: String,
        unit_display: String,
    },
    Coded {
        system: String,
        code: String,
        display: String,
        text: String,
    },
}

/// One check-up result item.
#[derive(Debug, Clone)]
pub struct CheckupItem {
    pub pointer: String,
    pub def: ItemDef,
    pub value: ItemValue,
}

/// One check-up (健診) record of the portal: 乳幼児健診 or 妊婦健診.
#[derive(Debug, Clone)]
pub struct CheckupRecord {
    pub endpoint: String,
    pub pointer: String,
    pub record_id: Option<String>,
    pub kind: KindDef,
    pub kind_name: Option<String>,
    pub date: Date,
    pub facility: Facility,
    pub items: Vec<CheckupItem>,
}

/// The records of one page, the ones skipped (as issues, `expression` the JSON pointer in the
/// page) and the cursor of the next page.
#[derive(Debug)]
pub struct Page<T> {
    pub records: Vec<T>,
    pub skipped: Vec<Issue>,
    pub next_cursor: Option<String>,
}

fn skip(pointer: String, code: IssueType, diagnostics: String) -> Issue {
    Issue {
        severity: Severity::Warning,
        code,
        expression: pointer,
        diagnostics,
    }
}

/// Reads fields of one answer, naming `context` (the endpoint) in its errors.
struct Reader<'a> {
    tables: &'a PortalTables,
    context: &'a str,
}

impl Reader<'_> {
    /// A scalar field as text: strings trimmed, numbers as written; absent, null or blank is
    /// `None`; an object, array or boolean is malformed.
    fn text(
        &self,
        record: &Value,
        base: &str,
        pointer: Option<&str>,
    ) -> Result<Option<String>, PortalError> {
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        match record.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_owned()))
            }
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(PortalError::malformed(
                self.context,
                format!("{base}{pointer}"),
                format!("expected a string or number, found {}", kind_of(other)),
            )),
        }
    }

    fn date(&self, record: &Value, base: &str, pointer: &str) -> Result<Date, PortalError> {
        let at = format!("{base}{pointer}");
        let text = self
            .text(record, base, Some(pointer))?
            .ok_or_else(|| PortalError::malformed(self.context, &at, "missing date"))?;
        let folded: String = text.nfkc().collect();
        self.tables.layout.parse_date(&folded).ok_or_else(|| {
            PortalError::malformed(
                self.context,
                &at,
                format!(
                    "{text:?} is not a date in the layout's formats ({})",
                    self.tables
                        .layout
                        .date_formats()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    fn records<'p>(&self, page: &'p Value, pointer: &str) -> Result<&'p [Value], PortalError> {
        match page.pointer(pointer) {
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(PortalError::malformed(
                self.context,
                pointer,
                format!("expected an array of records, found {}", kind_of(other)),
            )),
            None => Err(PortalError::malformed(
                self.context,
                pointer,
                "missing array of records",
            )),
        }
    }

    fn next_cursor(&self, page: &Value) -> Result<Option<String>, PortalError> {
        let pointer = &self.tables.layout.pagination.next_cursor;
        match page.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok((!s.is_empty()).then(|| s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(PortalError::malformed(
                self.context,
                pointer.as_str(),
                format!("expected a cursor string, found {}", kind_of(other)),
            )),
        }
    }

    fn facility(
        &self,
        record: &Value,
        base: &str,
        name: Option<&str>,
        code: Option<&str>,
        skipped: &mut Vec<Issue>,
    ) -> Result<Facility, PortalError> {
        let name = self.text(record, base, name)?;
        let code = match self.text(record, base, code)? {
            Some(raw) => {
                let digits: String = raw.nfkc().collect();
                if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    Some(digits)
                } else {
                    skipped.push(Issue {
                        severity: Severity::Information,
                        code: IssueType::Value,
                        expression: format!("{base}{}", code.unwrap_or_default()),
                        diagnostics: format!(
                            "{raw:?} is not a 10-digit medical-institution code; only the name is kept"
                        ),
                    });
                    None
                }
            }
            None => None,
        };
        Ok(Facility { name, code })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The dose as written: a plain count ("2", "２", "第2回", "2回目", "2回") is a number;
/// anything else is kept as text: a period such as "1期" or "1期2回" (期 counts periods of a
/// schedule, not doses), "追加", or zero.
pub fn parse_dose(text: &str) -> Dose {
    let folded: String = text.nfkc().filter(|c| !c.is_whitespace()).collect();
    let body = folded.strip_prefix('第').unwrap_or(&folded);
    let body = body
        .strip_suffix("回目")
        .or_else(|| body.strip_suffix('回'))
        .unwrap_or(body);
    if !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n @ 1..) = body.parse::<u32>()
    {
        return Dose::Number(n);
    }
    Dose::Text(text.to_owned())
}

/// The vaccination records of one page. `endpoint` names the answer in errors and records.
pub fn parse_vaccination_page(
    tables: &PortalTables,
    endpoint: &str,
    page: &Value,
) -> Result<Page<VaccinationRecord>, PortalError> {
    let reader = Reader {
        tables,
        context: endpoint,
    };
    let layout = &tables.layout.vaccination;
    let f = &layout.fields;
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for (i, record) in reader.records(page, &layout.records)?.iter().enumerate() {
        let base = format!("{}/{i}", layout.records);
        if !record.is_object() {
            return Err(PortalError::malformed(
                endpoint,
                base,
                format!("expected a record object, found {}", kind_of(record)),
            ));
        }
        let date = reader.date(record, &base, &f.date)?;
        let vaccine_name = reader.text(record, &base, f.vaccine_name.as_deref())?;
        let vaccine_code = reader.text(record, &base, f.vaccine_code.as_deref())?;
        let lot = reader.text(record, &base, f.lot.as_deref())?;
        let dose = reader
            .text(record, &base, f.dose.as_deref())?
            .map(|d| parse_dose(&d));
        let record_id = reader.text(record, &base, f.record_id.as_deref())?;
        let municipality_code = match reader.text(record, &base, f.municipality_code.as_deref())? {
            Some(raw) => {
                let digits: String = raw.nfkc().collect();
                if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    Some(digits)
                } else {
                    skipped.push(Issue {
                        severity: Severity::Information,
                        code: IssueType::Value,
                        expression: format!(
                            "{base}{}",
                            f.municipality_code.as_deref().unwrap_or_default()
                        ),
                        diagnostics: format!(
                            "{raw:?} is not a 6-digit local-government code; it is left out"
                        ),
                    });
                    None
                }
            }
            None => None,
        };
        let facility = reader.facility(
            record,
            &base,
            f.facility_name.as_deref(),
            f.facility_code.as_deref(),
            &mut skipped,
        )?;
        let Some(vaccine_type) =
            tables.vaccine_type(vaccine_code.as_deref(), vaccine_name.as_deref())
        else {
            let pointer = f
                .vaccine_name
                .as_deref()
                .filter(|_| vaccine_name.is_some())
                .or(f.vaccine_code.as_deref())
                .unwrap_or_default();
            skipped.push(skip(
                format!("{base}{pointer}"),
                IssueType::CodeInvalid,
                format!(
                    "vaccine {:?} (code {:?}) is not in the portal vaccine table; the record was not imported",
                    vaccine_name.as_deref().unwrap_or(""),
                    vaccine_code.as_deref().unwrap_or("")
                ),
            ));
            continue;
        };
        records.push(VaccinationRecord {
            endpoint: endpoint.to_owned(),
            pointer: base,
            record_id,
            vaccine_type: vaccine_type.clone(),
            vaccine_name,
            vaccine_code,
            date,
            dose,
            lot,
            facility,
            municipality_code,
        });
    }
    Ok(Page {
        records,
        skipped,
        next_cursor: reader.next_cursor(page)?,
    })
}

/// The check-up records of one page.
pub fn parse_checkup_page(
    tables: &PortalTables,
    endpoint: &str,
    page: &Value,
) -> Result<Page<CheckupRecord>, PortalError> {
    let reader = Reader {
        tables,
        context: endpoint,
    };
    let layout = &tables.layout.checkup;
    let f = &layout.fields;
    let Some(item_fields) = layout.item_fields.as_ref() else {
        return Err(PortalError::Data {
            file: tables.layout.file.clone(),
            reason: "checkup.itemFields is required".into(),
        });
    };
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for (i, record) in reader.records(page, &layout.records)?.iter().enumerate() {
        let base = format!("{}/{i}", layout.records);
        if !record.is_object() {
            return Err(PortalError::malformed(
                endpoint,
                base,
                format!("expected a record object, found {}", kind_of(record)),
            ));
        }
        let date = reader.date(record, &base, &f.date)?;
        let kind_name = reader.text(record, &base, f.kind_name.as_deref())?;
        let kind_code = reader.text(record, &base, f.kind_code.as_deref())?;
        let record_id = reader.text(record, &base, f.record_id.as_deref())?;
        let facility = reader.facility(
            record,
            &base,
            f.facility_name.as_deref(),
            f.facility_code.as_deref(),
            &mut skipped,
        )?;
        let items_at = format!("{base}{}", f.items);
        let raw_items = match record.pointer(&f.items) {
            Some(Value::Array(items)) => items.as_slice(),
            None | Some(Value::Null) => &[],
            Some(other) => {
                return Err(PortalError::malformed(
                    endpoint,
                    items_at,
                    format!("expected an array of results, found {}", kind_of(other)),
                ));
            }
        };
        let Some(kind) = tables.checkup_kind(kind_code.as_deref(), kind_name.as_deref()) else {
            skipped.push(skip(
                base.clone(),
                IssueType::CodeInvalid,
                format!(
                    "check-up kind {:?} (code {:?}) is not in the portal check-up table; the record was not imported",
                    kind_name.as_deref().unwrap_or(""),
                    kind_code.as_deref().unwrap_or("")
                ),
            ));
            continue;
        };
        let mut items = Vec::new();
        for (j, item) in raw_items.iter().enumerate() {
            let item_base = format!("{items_at}/{j}");
            if !item.is_object() {
                return Err(PortalError::malformed(
                    endpoint,
                    item_base,
                    format!("expected a result object, found {}", kind_of(item)),
                ));
            }
            let code = reader.text(item, &item_base, item_fields.code.as_deref())?;
            let name = reader.text(item, &item_base, item_fields.name.as_deref())?;
            let value = reader.text(item, &item_base, Some(&item_fields.value))?;
            let unit = reader.text(item, &item_base, item_fields.unit.as_deref())?;
            let Some(def) = tables.checkup_item(code.as_deref(), name.as_deref()) else {
                skipped.push(skip(
                    item_base,
                    IssueType::CodeInvalid,
                    format!(
                        "result item {:?} (code {:?}) is not in the portal check-up table; it was not imported",
                        name.as_deref().unwrap_or(""),
                        code.as_deref().unwrap_or("")
                    ),
                ));
                continue;
            };
            let value_at = format!("{item_base}{}", item_fields.value);
            let Some(value) = value else {
                skipped.push(Issue {
                    severity: Severity::Information,
                    code: IssueType::Required,
                    expression: value_at,
                    diagnostics: format!("{} has no value; it was not imported", def.key),
                });
                continue;
            };
            match item_value(def, &value, unit.as_deref()) {
                Ok(value) => items.push(CheckupItem {
                    pointer: item_base,
                    def: def.clone(),
                    value,
                }),
                Err(reason) => skipped.push(skip(value_at, IssueType::Value, reason)),
            }
        }
        records.push(CheckupRecord {
            endpoint: endpoint.to_owned(),
            pointer: base,
            record_id,
            kind: kind.clone(),
            kind_name,
            date,
            facility,
            items,
        });
    }
    Ok(Page {
        records,
        skipped,
        next_cursor: reader.next_cursor(page)?,
    })
}

/// A result value typed by its item definition, or why it cannot be.
fn item_value(def: &ItemDef, value: &str, unit: Option<&str>) -> Result<ItemValue, String> {
    match def.value {
        ValueKind::Quantity => {
            let Some(expected) = &def.unit else {
                return Err(format!("item {} has no unit in the table", def.key));
            };
            if let Some(unit) = unit {
                let given = normalise_name(unit);
                let known = std::iter::once(&expected.code)
                    .chain(&def.unit_aliases)
                    .any(|a| normalise_name(a) == given);
                if !known {
                    return Err(format!(
                        "{}: unit {unit:?} is not {} or one of its aliases; not imported",
                        def.key, expected.code
                    ));
                }
            }
            let folded: String = value.nfkc().collect();
            let number = decimal(&folded).ok_or_else(|| {
                format!(
                    "{}: {value:?} is not a decimal number; not imported",
                    def.key
                )
            })?;
            Ok(ItemValue::Quantity {
                value: number,
                unit_code: expected.code.clone(),
                unit_display: expected.display.clone(),
            })
        }
        ValueKind::Coded => {
            let given = normalise_name(value);
            let coded = def
                .values
                .iter()
                .find(|v| {
                    normalise_name(&v.code) == given
                        || v.names.iter().any(|n| normalise_name(n) == given)
                })
                .ok_or_else(|| {
                    format!(
                        "{}: {value:?} is not one of the table's values; not imported",
                        def.key
                    )
                })?;
            Ok(ItemValue::Coded {
                system: def.value_system.clone().unwrap_or_default(),
                code: coded.code.clone(),
                display: coded.display.clone(),
                text: value.to_owned(),
            })
        }
    }
}

/// A plain decimal (`-?digits(.digits)?`) as a JSON number keeping its written precision.
fn decimal(text: &str) -> Option<Number> {
    let t = text.trim();
    let body = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    let ok = !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::date;

    fn tables() -> PortalTables {
        PortalTables::load(&[]).unwrap()
    }

    #[test]
    fn doses() {
        let cases = [
            ("1", Dose::Number(1)),
            ("２", Dose::Number(2)),
            ("第3回", Dose::Number(3)),
            ("2回目", Dose::Number(2)),
            ("1期2回", Dose::Text("1期2回".into())),
            ("1期", Dose::Text("1期".into())),
            ("２回", Dose::Number(2)),
            ("第1期", Dose::Text("第1期".into())),
            ("追加", Dose::Text("追加".into())),
            ("0", Dose::Text("0".into())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_dose(input), want, "{input}");
        }
    }

    #[test]
    fn decimals_keep_their_text() {
        let cases = [
            ("9.20", Some("9.20")),
            ("-1.5", Some("-1.5")),
            ("75", Some("75")),
            ("1e3", None),
            (".5", None),
            ("5.", None),
            ("abc", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                decimal(input).map(|n| n.to_string()).as_deref(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn vaccination_page_fields_and_skips() {
        let page = json!({
            "vaccinations": [
                {"recordId": "R1", "vaccineName": "ＭＲ", "vaccinationDate": "20240401",
                 "doseNumber": 1, "lotNumber": " Y123 ",
                 "medicalInstitution": {"name": "結びクリニック", "code": "1312345678"},
                 "municipalityCode": "131016"},
                {"vaccineName": "おたふくかぜ", "vaccinationDate": "2024-05-01"},
                {"vaccineName": "日本脳炎", "vaccinationDate": "２０２４０６０１",
                 "medicalInstitution": {"code": "12-34"}}
            ],
            "nextCursor": "c2"
        });
        let p = parse_vaccination_page(&tables(), "/v", &page).unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("c2"));
        assert_eq!(p.records.len(), 2);
        let r = &p.records[0];
        assert_eq!(r.vaccine_type.code, "mr");
        assert_eq!(r.date, date!(2024 - 04 - 01));
        assert_eq!(r.dose, Some(Dose::Number(1)));
        assert_eq!(r.lot.as_deref(), Some("Y123"));
        assert_eq!(r.facility.code.as_deref(), Some("1312345678"));
        assert_eq!(r.pointer, "/vaccinations/0");
        assert_eq!(p.records[1].date, date!(2024 - 06 - 01));
        assert_eq!(p.records[1].facility, Facility::default());
        let expressions: Vec<&str> = p.skipped.iter().map(|i| i.expression.as_str()).collect();
        assert_eq!(
            expressions,
            [
                "/vaccinations/1/vaccineName",
                "/vaccinations/2/medicalInstitution/code"
            ]
        );
    }

    #[test]
    fn malformed_pages_name_the_pointer() {
        let cases = [
            (json!({}), "/vaccinations", "missing array"),
            (json!({"vaccinations": {}}), "/vaccinations", "an object"),
            (json!({"vaccinations": [7]}), "/vaccinations/0", "a number"),
            (
                json!({"vaccinations": [{"vaccineName": "BCG"}]}),
                "/vaccinations/0/vaccinationDate",
                "missing date",
            ),
            (
                json!({"vaccinations": [{"vaccineName": "BCG", "vaccinationDate": "2024/04/01"}]}),
                "/vaccinations/0/vaccinationDate",
                "not a date",
            ),
            (
                json!({"vaccinations": [{"vaccineName": ["BCG"], "vaccinationDate": "20240401"}]}),
                "/vaccinations/0/vaccineName",
                "an array",
            ),
            (
                json!({"vaccinations": [], "nextCursor": {"a": 1}}),
                "/nextCursor",
                "cursor",
            ),
        ];
        for (page, pointer, reason) in cases {
            match parse_vaccination_page(&tables(), "/v", &page) {
                Err(PortalError::Malformed {
                    pointer: p,
                    reason: r,
                    context,
                }) => {
                    assert_eq!(p, pointer, "{page}");
                    assert!(r.contains(reason), "{page}: {r}");
                    assert_eq!(context, "/v");
                }
                other => panic!("{page}: {other:?}"),
            }
        }
    }

    #[test]
    fn checkup_page_items() {
        let page = json!({
            "checkups": [
                {"checkupName": "1歳6か月児健診", "checkupDate": "20250110",
                 "results": [
                    {"itemName": "体重", "value": "10.40", "unit": "kg"},
                    {"itemName": "身長", "value": 80.5, "unit": "ｃｍ"},
                    {"itemName": "頭囲", "value": "46", "unit": "mm"},
                    {"itemName": "胸囲", "value": "測定不能", "unit": "cm"},
                    {"itemName": "判定", "value": "要観察"},
                    {"itemName": "視力", "value": "1.0"},
                    {"itemName": "月齢", "value": null}
                 ]},
                {"checkupName": "5歳児健診", "checkupDate": "20250110", "results": []}
            ]
        });
        let p = parse_checkup_page(&tables(), "/c", &page).unwrap();
        assert_eq!(p.records.len(), 1);
        let r = &p.records[0];
        assert_eq!(r.kind.code, "infant-1y6m");
        let got: Vec<(&str, &ItemValue)> = r
            .items
            .iter()
            .map(|i| (i.def.key.as_str(), &i.value))
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "weight");
        match got[0].1 {
            ItemValue::Quantity {
                value, unit_code, ..
            } => {
                assert_eq!(value.to_string(), "10.40");
                assert_eq!(unit_code, "kg");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[1].0, "height");
        assert_eq!(got[2].0, "judgement");
        match got[2].1 {
            ItemValue::Coded { code, .. } => assert_eq!(code, "observe"),
            other => panic!("{other:?}"),
        }
        let skipped: Vec<&str> = p.skipped.iter().map(|i| i.expression.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "/checkups/0/results/2/value",
                "/checkups/0/results/3/value",
                "/checkups/0/results/5",
                "/checkups/0/results/6/value",
                "/checkups/1"
            ]
        );
    }
}
