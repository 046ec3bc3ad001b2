//! The PMH-style JSON form (jp-specs §2.5 conventions: camelCase members, an array of records,
//! `modificationSeg` "1" register/update and "2" delete, `municipalityIdentityKey` as the
//! municipality's person key), read and written through the same layout as the CSV form.

use identifiers::MunicipalityCode;
use serde_json::{Map, Value};

use crate::export::{ExportRecord, row_values};
use crate::layout::{Field, Layout};
use crate::map::{Mapper, Naming, trim};
use crate::{MappedRow, MunicipalError, RowError};

/// One JSON record: its resources, and whether they are to be deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRecord {
    pub row: MappedRow,
    /// `modificationSeg` "2": delete these resources (stubs with type and id only).
    pub delete: bool,
}

const SEG: &str = "modificationSeg";
const KEY: &str = "municipalityIdentityKey";
/// Never read, never stored (番号法; jp-specs §3.2), but accepted so PMH-style bodies that
/// carry it are not refused.
const MY_NUMBER: &str = "myNumber";

fn error(
    line: u64,
    column: Option<&str>,
    value: Option<&str>,
    reason: impl Into<String>,
) -> RowError {
    RowError {
        line,
        column: column.map(str::to_owned),
        value: value.map(str::to_owned),
        reason: reason.into(),
    }
}

fn check_layout(layout: &Layout) -> Result<(), MunicipalError> {
    if layout.blocks > 1 {
        return Err(MunicipalError::Unsupported {
            layout: layout.name().to_owned(),
            what: "the JSON form (it has repeated dose blocks)".to_owned(),
        });
    }
    Ok(())
}

/// Reads a `{"records": [...]}` body (a bare array is accepted too). Each record is checked and
/// mapped exactly as a CSV row of the same layout; `line` is the 1-based record number.
pub fn json_import(
    layout: &Layout,
    municipality: &MunicipalityCode,
    body: &[u8],
) -> Result<Vec<Result<JsonRecord, RowError>>, MunicipalError> {
    check_layout(layout)?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| MunicipalError::Json(e.to_string()))?;
    let records = match &value {
        Value::Array(records) => records,
        Value::Object(o) => o
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| MunicipalError::Json("expected {\"records\": [...]}".to_owned()))?,
        _ => {
            return Err(MunicipalError::Json(
                "expected {\"records\": [...]}".to_owned(),
            ));
        }
    };
    let mapper = Mapper::new(layout, municipality);
    Ok(records
        .iter()
        .enumerate()
        .map(|(i, record)| one(&mapper, i as u64 + 1, record))
        .collect())
}

fn text_of(line: u64, key: &str, value: &Value) -> Result<String, RowError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(error(line, Some(key), None, "expected a string")),
    }
}

fn one(mapper: &Mapper, line: u64, record: &Value) -> Result<JsonRecord, RowError> {
    let object = record
        .as_object()
        .ok_or_else(|| error(line, None, None, "a record must be a JSON object"))?;
    let layout = &mapper.layout;
    for key in object.keys() {
        let known = key == SEG
            || key == KEY
            || key == MY_NUMBER
            || layout
                .columns()
                .iter()
                .any(|c| c.field.is_some() && c.json_key == *key);
        if !known {
            return Err(error(line, Some(key), None, "not a member of this layout"));
        }
    }
    let seg = match object.get(SEG) {
        Some(v) => text_of(line, SEG, v)?,
        None => return Err(error(line, Some(SEG), None, "missing required value")),
    };
    let delete = match seg.as_str() {
        "1" => false,
        "2" => true,
        other => {
            return Err(error(
                line,
                Some(SEG),
                Some(other),
                "must be \"1\" (register or update) or \"2\" (delete)",
            ));
        }
    };
    let person_key = match object.get(KEY) {
        Some(v) => text_of(line, KEY, v)?,
        None => String::new(),
    };
    let mut texts = Vec::with_capacity(layout.columns().len());
    for column in layout.columns() {
        let text = match column.field {
            None => String::new(),
            Some(Field::ResidentNumber) => {
                let own = object
                    .get(&column.json_key)
                    .map(|v| text_of(line, &column.json_key, v))
                    .transpose()?;
                match own {
                    Some(own) if !person_key.is_empty() && trim(&own) != trim(&person_key) => {
                        return Err(error(
                            line,
                            Some(&column.json_key),
                            Some(&own),
                            format!("differs from {KEY}"),
                        ));
                    }
                    Some(own) if person_key.is_empty() => own,
                    _ => person_key.clone(),
                }
            }
            Some(_) => match object.get(&column.json_key) {
                Some(v) => text_of(line, &column.json_key, v)?,
                None => String::new(),
            },
        };
        texts.push(text);
    }
    let values: Vec<&str> = texts.iter().map(|t| trim(t)).collect();
    let row = if delete {
        mapper.delete(line, &values, Naming::Json)?
    } else {
        mapper.map(line, &values, Naming::Json)?
    };
    // The resident-number column is named by the PMH member in errors.
    Ok(JsonRecord { row, delete })
}

/// Stored resources in the same JSON shape: `{"records": [{"modificationSeg": "1",
/// "municipalityIdentityKey": …, <members>}]}`. Dates are `YYYY-MM-DD`; coded values use the
/// layout's file codes (e.g. sex "1"/"2").
pub fn json_export(layout: &Layout, records: &[ExportRecord<'_>]) -> Result<Value, RowError> {
    if layout.blocks > 1 {
        return Err(error(
            0,
            None,
            None,
            format!(
                "layout {} has no JSON form (repeated dose blocks)",
                layout.name()
            ),
        ));
    }
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let (_, values) = row_values(layout, record, true)?;
        let mut object = Map::new();
        object.insert(SEG.into(), "1".into());
        for (column, value) in layout.columns().iter().zip(values) {
            match column.field {
                None => {}
                Some(Field::ResidentNumber) => {
                    object.insert(KEY.into(), value.into());
                }
                Some(_) if value.is_empty() => {}
                Some(_) => {
                    object.insert(column.json_key.clone(), value.into());
                }
            }
        }
        out.push(Value::Object(object));
    }
    let mut body = Map::new();
    body.insert("records".into(), Value::Array(out));
    Ok(Value::Object(body))
}
