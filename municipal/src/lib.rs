//! Municipal health-management records (予防接種台帳, 乳幼児健診, 妊婦健診) without I/O: record
//! layouts as data (`profiles/jp/municipal/`), streaming CSV import in UTF-8, UTF-8 with BOM or
//! CP932, mapping to JP Core-shaped FHIR resources with deterministic ids, export back to the
//! same byte-exact canonical file, and the PMH-style JSON form. See docs/municipal.md.
//!
//! The caller does all I/O: it hands in a `std::io::Read` or a JSON body and gets resources and
//! per-row reports back. My Number (個人番号) is never read into any value this crate returns.

mod csv;
mod encoding;
mod error;
mod export;
mod import;
mod json;
mod layout;
mod map;

use std::fmt;

pub use encoding::{Encoding, EncodingChoice};
pub use error::MunicipalError;
pub use export::{ExportRecord, export_file, export_row};
pub use import::Import;
pub use json::{JsonRecord, json_export, json_import};
pub use layout::{Column, ColumnType, DateFormat, Field, Kind, Layout, Layouts, LineEnd};
pub use map::{VACCINATING_MUNICIPALITY_EXTENSION, resident_identifier_system};

/// One good row (or JSON record): the resources it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedRow {
    /// Physical line where the record starts (CSV), or the 1-based record number (JSON).
    pub line: u64,
    /// `{record type}/{id}` of the row's (first) record resource: names the row in reports
    /// without personal data.
    pub key: String,
    /// The Patient first, then the record (Immunization, or Encounter and its Observations).
    /// For a JSON delete: the record resources only, each a stub with `resourceType` and `id`.
    pub resources: Vec<MappedResource>,
}

/// One resource with its deterministic id.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedResource {
    pub resource_type: &'static str,
    pub id: String,
    pub resource: serde_json::Value,
}

/// Why one row was not mapped. The import goes on with the next row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Physical line where the record starts (CSV), or the 1-based record number (JSON).
    pub line: u64,
    /// The column header (CSV) or member name (JSON), when one column is at fault.
    pub column: Option<String>,
    /// The offending value as written (never the value of an ignored column).
    pub value: Option<String>,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = &self.column {
            write!(f, ", column {column}")?;
            if let Some(value) = &self.value {
                write!(f, " ({value:?})")?;
            }
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for RowError {}

#[cfg(test)]
mod tests {
    use super::RowError;

    #[test]
    fn row_errors_read_well() {
        let full = RowError {
            line: 12,
            column: Some("接種日".into()),
            value: Some("2024-02-30".into()),
            reason: "impossible date (no such day)".into(),
        };
        assert_eq!(
            full.to_string(),
            "line 12, column 接種日 (\"2024-02-30\"): impossible date (no such day)"
        );
        let bare = RowError {
            line: 3,
            column: None,
            value: None,
            reason: "wrong column count: expected 18, found 17".into(),
        };
        assert_eq!(
            bare.to_string(),
            "line 3: wrong column count: expected 18, found 17"
        );
    }
}
