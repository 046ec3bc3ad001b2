//! Record layouts as data (`profiles/jp/municipal/`): which columns a municipal file has, in
//! which order, how each is checked, and which semantic field it fills; plus per-municipality
//! override files that absorb a municipality's differences without code changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use identifiers::MunicipalityCode;
use serde::Deserialize;
use serde_json::Value;

use crate::MunicipalError;
use crate::encoding::Encoding;

/// What one record of a layout is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// 予防接種 (one Immunization per dose).
    Vaccination,
    /// 乳幼児健診 (an Encounter plus body-measurement Observations).
    InfantCheckup,
    /// 妊婦健診 (an Encounter plus Observations).
    PregnancyCheckup,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vaccination => "vaccination",
            Kind::InfantCheckup => "infant-checkup",
            Kind::PregnancyCheckup => "pregnancy-checkup",
        }
    }
}

/// The semantic fields a column can fill. The list per kind is fixed; which columns carry them
/// is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// 宛名番号: the person's number in the municipality's system.
    ResidentNumber,
    Name,
    NameKana,
    Sex,
    BirthDate,
    Address,
    PostalCode,
    VaccinationDate,
    Vaccine,
    ProductCode,
    DoseNumber,
    LotNumber,
    DoctorName,
    InstitutionCode,
    InstitutionName,
    VaccinatingMunicipality,
    RegisteredAt,
    Manufacturer,
    /// 接種券の券番号 (VRS).
    TicketNumber,
    CheckupKind,
    CheckupDate,
    AgeInMonths,
    Height,
    Weight,
    HeadCircumference,
    ChestCircumference,
    Judgement,
    GestationalWeek,
}

use ColumnType as T;
use Kind::{InfantCheckup as I, PregnancyCheckup as P, Vaccination as V};

/// (field, id in the data files, kinds that may use it, column types it accepts)
const FIELDS: &[(Field, &str, &[Kind], &[ColumnType])] = &[
    (
        Field::ResidentNumber,
        "resident-number",
        &[V, I, P],
        &[T::Text, T::Digits],
    ),
    (Field::Name, "name", &[V, I, P], &[T::Text]),
    (Field::NameKana, "name-kana", &[V, I, P], &[T::Text]),
    (Field::Sex, "sex", &[V, I, P], &[T::Code]),
    (Field::BirthDate, "birth-date", &[V, I, P], &[T::Date]),
    (Field::Address, "address", &[V, I, P], &[T::Text]),
    (
        Field::PostalCode,
        "postal-code",
        &[V, I, P],
        &[T::Text, T::Digits],
    ),
    (Field::VaccinationDate, "vaccination-date", &[V], &[T::Date]),
    (Field::Vaccine, "vaccine", &[V], &[T::Code]),
    (
        Field::ProductCode,
        "product-code",
        &[V],
        &[T::Text, T::Digits],
    ),
    (Field::DoseNumber, "dose-number", &[V], &[T::Digits]),
    (Field::LotNumber, "lot-number", &[V], &[T::Text]),
    (Field::DoctorName, "doctor-name", &[V], &[T::Text]),
    (
        Field::InstitutionCode,
        "institution-code",
        &[V],
        &[T::Digits],
    ),
    (Field::InstitutionName, "institution-name", &[V], &[T::Text]),
    (
        Field::VaccinatingMunicipality,
        "vaccinating-municipality",
        &[V],
        &[T::Digits],
    ),
    (
        Field::RegisteredAt,
        "registered-at",
        &[V],
        &[T::Date, T::DateTime],
    ),
    (Field::Manufacturer, "manufacturer", &[V], &[T::Text]),
    (
        Field::TicketNumber,
        "ticket-number",
        &[V],
        &[T::Digits, T::Text],
    ),
    (Field::CheckupKind, "checkup-kind", &[I, P], &[T::Code]),
    (Field::CheckupDate, "checkup-date", &[I, P], &[T::Date]),
    (Field::AgeInMonths, "age-in-months", &[I], &[T::Digits]),
    (Field::Height, "height", &[I, P], &[T::Decimal, T::Digits]),
    (Field::Weight, "weight", &[I, P], &[T::Decimal, T::Digits]),
    (
        Field::HeadCircumference,
        "head-circumference",
        &[I],
        &[T::Decimal, T::Digits],
    ),
    (
        Field::ChestCircumference,
        "chest-circumference",
        &[I],
        &[T::Decimal, T::Digits],
    ),
    (Field::Judgement, "judgement", &[I, P], &[T::Code]),
    (
        Field::GestationalWeek,
        "gestational-week",
        &[P],
        &[T::Digits],
    ),
];

/// How many fields exist (array sizes in the mapper).
pub(crate) const FIELD_COUNT: usize = FIELDS.len();

impl Field {
    fn entry(self) -> &'static (Field, &'static str, &'static [Kind], &'static [ColumnType]) {
        &FIELDS[self as usize]
    }

    /// The id used in the data files, e.g. `vaccination-date`.
    pub fn id(self) -> &'static str {
        self.entry().1
    }

    pub fn parse(id: &str) -> Option<Field> {
        FIELDS.iter().find(|f| f.1 == id).map(|f| f.0)
    }

    /// The JSON member name of the field (camelCase of the id, jp-specs §2.5 conventions).
    pub fn json_key(self) -> String {
        let mut out = String::new();
        let mut upper = false;
        for c in self.id().chars() {
            if c == '-' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Fields that describe the person (the Patient) rather than the record.
    pub(crate) fn is_personal(self) -> bool {
        matches!(
            self,
            Field::ResidentNumber
                | Field::Name
                | Field::NameKana
                | Field::Sex
                | Field::BirthDate
                | Field::Address
                | Field::PostalCode
        )
    }
}

/// How a column's text is checked and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    /// Half-width digits only (full-width digits are folded first).
    Digits,
    /// A day, in any accepted Western or Japanese-era form.
    Date,
    /// `YYYYMMDDHHMMSS` (Japan time) or a date.
    DateTime,
    /// A decimal number with at most `maxDecimals` decimals.
    Decimal,
    /// A value looked up in the column's code table.
    Code,
}

impl ColumnType {
    fn parse(text: &str) -> Option<ColumnType> {
        Some(match text {
            "text" => T::Text,
            "digits" => T::Digits,
            "date" => T::Date,
            "datetime" => T::DateTime,
            "decimal" => T::Decimal,
            "code" => T::Code,
            _ => return None,
        })
    }
}

/// How dates are written on export (import accepts every form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DateFormat {
    /// `20240401`
    #[serde(rename = "yyyymmdd")]
    Compact,
    /// `2024-04-01`
    #[serde(rename = "yyyy-mm-dd")]
    Iso,
    /// `令和6年4月1日`
    #[serde(rename = "wareki")]
    Wareki,
}

/// The line end written on export (import accepts both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineEnd {
    Crlf,
    Lf,
}

impl LineEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            LineEnd::Crlf => "\r\n",
            LineEnd::Lf => "\n",
        }
    }
}

/// One column of a resolved layout.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header as it appears in the file.
    pub header: String,
    /// `None` for an ignored column (e.g. 個人番号, which Musubi never keeps).
    pub field: Option<Field>,
    /// The dose block the column belongs to (0 unless the layout repeats blocks).
    pub block: usize,
    pub column_type: ColumnType,
    pub required: bool,
    /// In characters.
    pub max_length: Option<usize>,
    pub max_decimals: Option<u8>,
    /// File value → canonical code, in file order; the first entry for a canonical code is the
    /// one written on export.
    pub codes: Vec<(String, String)>,
    pub(crate) code_index: HashMap<String, usize>,
    pub(crate) json_key: String,
}

/// A layout with any municipality override applied; everything an import or export needs.
#[derive(Debug, Clone)]
pub struct Layout {
    name: String,
    kind: Kind,
    encoding: Encoding,
    pub(crate) header: bool,
    pub(crate) delimiter: u8,
    pub(crate) line_end: LineEnd,
    pub(crate) date_format: DateFormat,
    pub(crate) import_only: bool,
    pub(crate) columns: Vec<Column>,
    pub(crate) blocks: usize,
    pub(crate) dose_from_block: bool,
    /// Canonical values for fields no column carries (e.g. sex `female` for 妊婦健診).
    pub(crate) fixed: Vec<(Field, String)>,
    pub(crate) codes: Arc<Codes>,
    override_file: Option<String>,
    /// The municipality the layout was resolved for.
    pub(crate) municipality: Option<MunicipalityCode>,
}

impl Layout {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The layout's default encoding (an override may change it).
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The resource type that is the record (one per row or dose block).
    pub fn record_type(&self) -> &str {
        match self.kind {
            Kind::Vaccination => "Immunization",
            Kind::InfantCheckup | Kind::PregnancyCheckup => "Encounter",
        }
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn has_header(&self) -> bool {
        self.header
    }

    pub fn line_end(&self) -> LineEnd {
        self.line_end
    }

    pub fn date_format(&self) -> DateFormat {
        self.date_format
    }

    /// The override file applied, if any.
    pub fn override_file(&self) -> Option<&str> {
        self.override_file.as_deref()
    }

    /// Whether rows can be exported in this layout (layouts with repeated dose blocks are
    /// import-only: one exported row would need all of a person's doses).
    pub fn exportable(&self) -> bool {
        !self.import_only
    }

    /// Whether the Patient this layout produces lacks the person's name and birth date (e.g.
    /// VRS rows carry only the 宛名番号). Writing such a Patient over a fuller one would lose
    /// data, so callers should create it only when absent.
    pub fn patient_is_partial(&self) -> bool {
        !(self.has_field(Field::Name) && self.has_field(Field::BirthDate))
    }

    pub(crate) fn headers(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.header.as_str())
    }

    pub(crate) fn fixed(&self, field: Field) -> Option<&str> {
        self.fixed
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn has_field(&self, field: Field) -> bool {
        self.columns.iter().any(|c| c.field == Some(field)) || self.fixed(field).is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// The codes file: FHIR codings for check-up kinds and observations.

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct CodingData {
    pub system: String,
    pub code: String,
    pub display: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CheckupKindData {
    pub code: String,
    pub display: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UnitData {
    pub code: String,
    pub unit: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "inferred and note document the data file")]
pub(crate) struct ObservationData {
    pub field: String,
    #[serde(default)]
    pub profile: Option<String>,
    pub category: Vec<CodingData>,
    pub code: Vec<CodingData>,
    #[serde(default)]
    pub unit: Option<UnitData>,
    #[serde(default)]
    pub value_code_system: Option<String>,
    #[serde(default)]
    pub inferred: bool,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConceptData {
    pub code: String,
    pub display: String,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code, reason = "inferred and note document the data file only")]
pub(crate) struct CodeSystemData {
    pub system: String,
    #[serde(default)]
    pub inferred: bool,
    #[serde(default)]
    pub note: Option<String>,
    pub concepts: Vec<ConceptData>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodesFile {
    #[allow(dead_code, reason = "checked by the loader before this struct is read")]
    kind: String,
    #[allow(dead_code, reason = "documents the data file")]
    source: String,
    checkup_kind_system: String,
    checkup_kinds: Vec<CheckupKindData>,
    code_systems: BTreeMap<String, CodeSystemData>,
    observations: Vec<ObservationData>,
}

/// Parsed codes file, with the observation definitions keyed by field.
#[derive(Debug)]
pub(crate) struct Codes {
    pub checkup_kind_system: String,
    pub checkup_kinds: Vec<CheckupKindData>,
    pub code_systems: BTreeMap<String, CodeSystemData>,
    pub observations: Vec<(Field, ObservationData)>,
}

impl Codes {
    pub(crate) fn observation(&self, field: Field) -> Option<&ObservationData> {
        self.observations
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, o)| o)
    }

    pub(crate) fn checkup_kind(&self, code: &str) -> Option<&CheckupKindData> {
        self.checkup_kinds.iter().find(|k| k.code == code)
    }
}

// ---------------------------------------------------------------------------------------------
// Layout and override files.

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ColumnFile {
    header: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default, rename = "type")]
    column_type: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    max_decimals: Option<u8>,
    #[serde(default)]
    codes: Vec<(String, String)>,
    #[serde(default)]
    ignore: bool,
    #[serde(default)]
    #[allow(dead_code, reason = "documents the data file")]
    note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RepeatFile {
    count: usize,
    #[serde(default)]
    dose_number_from_block: bool,
    columns: Vec<ColumnFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "title, inferred and source document the data file"
)]
struct LayoutFile {
    kind: String,
    name: String,
    record_kind: Kind,
    title: String,
    #[serde(default)]
    inferred: bool,
    source: String,
    encoding: Encoding,
    header: bool,
    delimiter: String,
    line_end: LineEnd,
    date_format: DateFormat,
    #[serde(default)]
    import_only: bool,
    #[serde(default)]
    fixed: BTreeMap<String, String>,
    columns: Vec<ColumnFile>,
    #[serde(default)]
    repeat: Option<RepeatFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OverrideColumn {
    header: String,
    #[serde(default)]
    ignore: bool,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    max_length: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CodeOverride {
    /// Replace the whole table instead of merging.
    #[serde(default)]
    replace: bool,
    /// File value → canonical code; `null` removes the file value.
    entries: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code, reason = "example and description document the data file")]
struct OverrideFile {
    kind: String,
    layout: String,
    municipality: String,
    #[serde(default)]
    example: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    header: Option<bool>,
    #[serde(default)]
    line_end: Option<LineEnd>,
    #[serde(default)]
    date_format: Option<DateFormat>,
    #[serde(default)]
    delimiter: Option<String>,
    /// Old header → new header.
    #[serde(default)]
    rename: Vec<(String, String)>,
    /// The full column order (after renaming); new entries must be ignored columns.
    #[serde(default)]
    columns: Option<Vec<OverrideColumn>>,
    /// Field id → code-table change.
    #[serde(default)]
    codes: BTreeMap<String, CodeOverride>,
}

/// Every layout and override, parsed and checked once.
#[derive(Debug)]
pub struct Layouts {
    layouts: BTreeMap<String, Layout>,
    /// (layout name, municipality code) → (file, override)
    overrides: BTreeMap<(String, String), (String, OverrideFile)>,
}

static EMBEDDED: OnceLock<Result<Layouts, MunicipalError>> = OnceLock::new();

impl Layouts {
    /// The layouts shipped in `profiles/jp/municipal/`, parsed on first use.
    pub fn embedded() -> Result<&'static Layouts, MunicipalError> {
        EMBEDDED
            .get_or_init(|| build(profiles::JP_MUNICIPAL, &[]))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The shipped layouts plus extra `(file name, JSON text)` files: new layouts, override
    /// files, or a codes file replacing the shipped one. A layout with a shipped name replaces
    /// it.
    pub fn load(extra: &[(String, String)]) -> Result<Layouts, MunicipalError> {
        build(profiles::JP_MUNICIPAL, extra)
    }

    /// The layout `name` for `municipality`, with that municipality's override applied when one
    /// exists.
    pub fn resolve(
        &self,
        name: &str,
        municipality: &MunicipalityCode,
    ) -> Result<Layout, MunicipalError> {
        let base = self
            .layouts
            .get(name)
            .ok_or_else(|| MunicipalError::UnknownLayout {
                name: name.to_owned(),
                known: self.layouts.keys().cloned().collect(),
            })?;
        let mut layout = match self
            .overrides
            .get(&(name.to_owned(), municipality.as_str().to_owned()))
        {
            Some((file, o)) => apply_override(base, file, o)?,
            None => base.clone(),
        };
        layout.municipality = Some(municipality.clone());
        Ok(layout)
    }

    /// Layout names, in name order.
    pub fn names(&self) -> Vec<&str> {
        self.layouts.keys().map(String::as_str).collect()
    }

    /// `(layout, municipality code, file)` of every override, for listing.
    pub fn overrides(&self) -> Vec<(&str, &str, &str)> {
        self.overrides
            .iter()
            .map(|((l, m), (f, _))| (l.as_str(), m.as_str(), f.as_str()))
            .collect()
    }
}

fn build(embedded: &[(&str, &str)], extra: &[(String, String)]) -> Result<Layouts, MunicipalError> {
    let files = embedded
        .iter()
        .map(|(n, t)| (*n, *t))
        .chain(extra.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let mut codes: Option<(String, Value)> = None;
    let mut layout_files = Vec::new();
    let mut override_files = Vec::new();
    for (name, text) in files {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| MunicipalError::data(name, format!("not JSON: {e}")))?;
        match value.get("kind").and_then(Value::as_str) {
            Some("codes") => codes = Some((name.to_owned(), value)),
            Some("layout") => layout_files.push((name.to_owned(), value)),
            Some("override") => override_files.push((name.to_owned(), value)),
            other => {
                return Err(MunicipalError::data(
                    name,
                    format!(
                        "\"kind\" must be \"layout\", \"override\" or \"codes\", found {other:?}"
                    ),
                ));
            }
        }
    }
    let (codes_name, codes_value) =
        codes.ok_or_else(|| MunicipalError::data("(municipal data)", "no codes file"))?;
    let codes = Arc::new(parse_codes(&codes_name, codes_value)?);
    let mut layouts = BTreeMap::new();
    for (name, value) in layout_files {
        let file: LayoutFile = serde_json::from_value(value)
            .map_err(|e| MunicipalError::data(&name, e.to_string()))?;
        let layout = build_layout(&name, file, &codes)?;
        layouts.insert(layout.name.clone(), layout);
    }
    let mut overrides = BTreeMap::new();
    for (name, value) in override_files {
        let file: OverrideFile = serde_json::from_value(value)
            .map_err(|e| MunicipalError::data(&name, e.to_string()))?;
        let municipality = MunicipalityCode::parse(&file.municipality)
            .map_err(|e| MunicipalError::data(&name, e.to_string()))?;
        let base = layouts.get(&file.layout).ok_or_else(|| {
            MunicipalError::data(&name, format!("unknown layout {:?}", file.layout))
        })?;
        // Applied once here so a broken override fails at load, not at the first import.
        apply_override(base, &name, &file)?;
        let key = (file.layout.clone(), municipality.as_str().to_owned());
        if let Some((other, _)) = overrides.get(&key) {
            return Err(MunicipalError::data(
                &name,
                format!("a second override for the same layout and municipality (first: {other})"),
            ));
        }
        overrides.insert(key, (name, file));
    }
    Ok(Layouts { layouts, overrides })
}

fn parse_codes(file: &str, value: Value) -> Result<Codes, MunicipalError> {
    let parsed: CodesFile =
        serde_json::from_value(value).map_err(|e| MunicipalError::data(file, e.to_string()))?;
    let mut observations = Vec::new();
    for o in parsed.observations {
        let field = Field::parse(&o.field)
            .ok_or_else(|| MunicipalError::data(file, format!("unknown field {:?}", o.field)))?;
        match (&o.unit, &o.value_code_system) {
            (Some(_), None) => {}
            (None, Some(system)) if parsed.code_systems.contains_key(system) => {}
            _ => {
                return Err(MunicipalError::data(
                    file,
                    format!(
                        "observation {}: give either \"unit\" or a known \"valueCodeSystem\"",
                        o.field
                    ),
                ));
            }
        }
        if o.code.is_empty() {
            return Err(MunicipalError::data(
                file,
                format!("observation {}: \"code\" is empty", o.field),
            ));
        }
        observations.push((field, o));
    }
    Ok(Codes {
        checkup_kind_system: parsed.checkup_kind_system,
        checkup_kinds: parsed.checkup_kinds,
        code_systems: parsed.code_systems,
        observations,
    })
}

fn delimiter_byte(file: &str, text: &str) -> Result<u8, MunicipalError> {
    match text.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\r' | b'\n') => Ok(*b),
        _ => Err(MunicipalError::data(
            file,
            format!(
                "delimiter must be one ASCII character other than a quote or line end, found {text:?}"
            ),
        )),
    }
}

fn build_column(
    file: &str,
    kind: Kind,
    c: ColumnFile,
    header: String,
    block: usize,
) -> Result<Column, MunicipalError> {
    let problem = |p: String| MunicipalError::data(file, format!("column {header:?}: {p}"));
    if c.ignore {
        if c.field.is_some() || c.required || !c.codes.is_empty() {
            return Err(problem(
                "an ignored column has no field, codes or required flag".into(),
            ));
        }
        return Ok(Column {
            json_key: String::new(),
            header,
            field: None,
            block,
            column_type: ColumnType::Text,
            required: false,
            max_length: None,
            max_decimals: None,
            codes: Vec::new(),
            code_index: HashMap::new(),
        });
    }
    let field_id = c
        .field
        .ok_or_else(|| problem("needs a \"field\" or \"ignore\": true".into()))?;
    let field =
        Field::parse(&field_id).ok_or_else(|| problem(format!("unknown field {field_id:?}")))?;
    let (_, _, kinds, types) = field.entry();
    if !kinds.contains(&kind) {
        return Err(problem(format!(
            "field {field_id} is not used by {} layouts",
            kind.as_str()
        )));
    }
    let type_text = c.column_type.unwrap_or_else(|| "text".to_owned());
    let column_type = ColumnType::parse(&type_text)
        .ok_or_else(|| problem(format!("unknown type {type_text:?}")))?;
    if !types.contains(&column_type) {
        return Err(problem(format!(
            "type {type_text} does not fit field {field_id}"
        )));
    }
    if (column_type == ColumnType::Code) == c.codes.is_empty() {
        return Err(problem(
            "code columns, and only they, have a code table".into(),
        ));
    }
    if (column_type == ColumnType::Decimal) != c.max_decimals.is_some() {
        return Err(problem(
            "decimal columns, and only they, give maxDecimals".into(),
        ));
    }
    let mut column = Column {
        json_key: field.json_key(),
        header,
        field: Some(field),
        block,
        column_type,
        required: c.required,
        max_length: c.max_length,
        max_decimals: c.max_decimals,
        codes: c.codes,
        code_index: HashMap::new(),
    };
    index_codes(file, &mut column)?;
    Ok(column)
}

/// Builds the lookup index and checks the canonical codes.
fn index_codes(file: &str, column: &mut Column) -> Result<(), MunicipalError> {
    column.code_index.clear();
    for (i, (from, to)) in column.codes.iter().enumerate() {
        if column.code_index.insert(from.clone(), i).is_some() {
            return Err(MunicipalError::data(
                file,
                format!(
                    "column {:?}: file value {from:?} appears twice",
                    column.header
                ),
            ));
        }
        let known = match column.field {
            Some(Field::Sex) => matches!(to.as_str(), "male" | "female" | "other" | "unknown"),
            Some(Field::Vaccine) => crate::map::vaccine_info(to).is_some(),
            // Check-up kinds and judgement codes are checked against the codes file later.
            _ => true,
        };
        if !known {
            return Err(MunicipalError::data(
                file,
                format!("column {:?}: unknown canonical code {to:?}", column.header),
            ));
        }
    }
    Ok(())
}

fn build_layout(file: &str, f: LayoutFile, codes: &Arc<Codes>) -> Result<Layout, MunicipalError> {
    if f.name.is_empty()
        || !f
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(MunicipalError::data(
            file,
            format!("bad layout name {:?}", f.name),
        ));
    }
    let kind = f.record_kind;
    let mut columns = Vec::new();
    for c in f.columns {
        let header = c.header.clone();
        columns.push(build_column(file, kind, c, header, 0)?);
    }
    let (blocks, dose_from_block) = match f.repeat {
        None => (1, false),
        Some(r) => {
            if r.count == 0 || r.count > 99 {
                return Err(MunicipalError::data(file, "repeat.count must be 1–99"));
            }
            for n in 1..=r.count {
                for c in &r.columns {
                    if !c.header.contains("{n}") {
                        return Err(MunicipalError::data(
                            file,
                            format!("repeated column {:?} needs {{n}} in its header", c.header),
                        ));
                    }
                    let header = c.header.replace("{n}", &n.to_string());
                    let column = build_column(file, kind, c.clone(), header, n - 1)?;
                    if column.field.is_some_and(Field::is_personal) {
                        return Err(MunicipalError::data(
                            file,
                            format!(
                                "repeated column {:?} cannot carry a personal field",
                                c.header
                            ),
                        ));
                    }
                    columns.push(column);
                }
            }
            (r.count, r.dose_number_from_block)
        }
    };
    let mut fixed = Vec::new();
    for (id, value) in f.fixed {
        let field = Field::parse(&id)
            .ok_or_else(|| MunicipalError::data(file, format!("fixed: unknown field {id:?}")))?;
        fixed.push((field, value));
    }
    let layout = Layout {
        name: f.name,
        kind,
        encoding: f.encoding,
        header: f.header,
        delimiter: delimiter_byte(file, &f.delimiter)?,
        line_end: f.line_end,
        date_format: f.date_format,
        import_only: f.import_only || blocks > 1,
        columns,
        blocks,
        dose_from_block,
        fixed,
        codes: Arc::clone(codes),
        override_file: None,
        municipality: None,
    };
    check_layout(file, &layout)?;
    Ok(layout)
}

/// Checks that hold for every layout, before and after an override.
fn check_layout(file: &str, layout: &Layout) -> Result<(), MunicipalError> {
    let problem = |p: String| Err(MunicipalError::data(file, p));
    let mut seen = std::collections::HashSet::new();
    for c in &layout.columns {
        if !seen.insert(c.header.as_str()) {
            return problem(format!("header {:?} appears twice", c.header));
        }
        if c.header.is_empty() || c.header.contains(['\r', '\n', '"']) {
            return problem(format!("bad header {:?}", c.header));
        }
        if let Some(field) = c.field {
            for (_, canonical) in &c.codes {
                let known = match field {
                    Field::CheckupKind => layout
                        .codes
                        .checkup_kind(canonical)
                        .is_some_and(|k| k.kind == layout.kind),
                    Field::Judgement => judgement_known(&layout.codes, canonical),
                    _ => true,
                };
                if !known {
                    return problem(format!(
                        "column {:?}: unknown canonical code {canonical:?}",
                        c.header
                    ));
                }
            }
            if crate::map::OBSERVATION_FIELDS.contains(&field)
                && layout.codes.observation(field).is_none()
            {
                return problem(format!(
                    "field {} has no observation definition in the codes file",
                    field.id()
                ));
            }
        }
        let personal_twice = c.field.is_some_and(Field::is_personal)
            && layout.columns.iter().filter(|o| o.field == c.field).count() > 1;
        let record_twice = c.field.is_some_and(|f| !f.is_personal())
            && layout
                .columns
                .iter()
                .filter(|o| o.field == c.field && o.block == c.block)
                .count()
                > 1;
        if personal_twice || record_twice {
            return problem(format!(
                "two columns carry field {}",
                c.field.map_or("", Field::id)
            ));
        }
    }
    for (field, value) in &layout.fixed {
        let (_, _, kinds, _) = field.entry();
        if !kinds.contains(&layout.kind) {
            return problem(format!(
                "fixed: field {} does not fit this kind",
                field.id()
            ));
        }
        if layout.columns.iter().any(|c| c.field == Some(*field)) {
            return problem(format!("fixed: field {} also has a column", field.id()));
        }
        let ok = match field {
            Field::Vaccine => crate::map::vaccine_info(value).is_some(),
            Field::Sex => matches!(value.as_str(), "male" | "female" | "other" | "unknown"),
            Field::CheckupKind => layout
                .codes
                .checkup_kind(value)
                .is_some_and(|k| k.kind == layout.kind),
            _ => false,
        };
        if !ok {
            return problem(format!("fixed: {} cannot be {value:?}", field.id()));
        }
    }
    let needed: &[Field] = match layout.kind {
        Kind::Vaccination => &[Field::ResidentNumber, Field::VaccinationDate],
        Kind::InfantCheckup | Kind::PregnancyCheckup => &[
            Field::ResidentNumber,
            Field::CheckupDate,
            Field::CheckupKind,
        ],
    };
    for field in needed {
        if !layout.has_field(*field) {
            return problem(format!("the layout has no {} column", field.id()));
        }
    }
    if layout.kind == Kind::Vaccination
        && !layout.has_field(Field::Vaccine)
        && !layout.has_field(Field::ProductCode)
    {
        return problem("a vaccination layout needs a vaccine or product-code column".into());
    }
    for c in &layout.columns {
        let key_field = matches!(
            c.field,
            Some(Field::ResidentNumber | Field::VaccinationDate | Field::CheckupDate)
        );
        if key_field && !c.required {
            return problem(format!("key column {:?} must be required", c.header));
        }
    }
    Ok(())
}

fn judgement_known(codes: &Codes, code: &str) -> bool {
    codes
        .observation(Field::Judgement)
        .and_then(|o| o.value_code_system.as_ref())
        .and_then(|s| codes.code_systems.get(s))
        .is_some_and(|s| s.concepts.iter().any(|c| c.code == code))
}

fn apply_override(base: &Layout, file: &str, o: &OverrideFile) -> Result<Layout, MunicipalError> {
    let mut layout = base.clone();
    layout.override_file = Some(file.to_owned());
    if let Some(e) = o.encoding {
        layout.encoding = e;
    }
    if let Some(h) = o.header {
        layout.header = h;
    }
    if let Some(l) = o.line_end {
        layout.line_end = l;
    }
    if let Some(d) = o.date_format {
        layout.date_format = d;
    }
    if let Some(d) = &o.delimiter {
        layout.delimiter = delimiter_byte(file, d)?;
    }
    for (from, to) in &o.rename {
        let column = layout
            .columns
            .iter_mut()
            .find(|c| &c.header == from)
            .ok_or_else(|| MunicipalError::data(file, format!("rename: no column {from:?}")))?;
        column.header = to.clone();
    }
    if let Some(order) = &o.columns {
        let mut old = std::mem::take(&mut layout.columns);
        for entry in order {
            let position = old.iter().position(|c| c.header == entry.header);
            let mut column = match (position, entry.ignore) {
                (Some(i), false) => old.remove(i),
                (None, true) => Column {
                    json_key: String::new(),
                    header: entry.header.clone(),
                    field: None,
                    block: 0,
                    column_type: ColumnType::Text,
                    required: false,
                    max_length: None,
                    max_decimals: None,
                    codes: Vec::new(),
                    code_index: HashMap::new(),
                },
                (Some(_), true) => {
                    return Err(MunicipalError::data(
                        file,
                        format!(
                            "columns: {:?} is a layout column; to stop reading it, leave it out and add an ignored column with another header",
                            entry.header
                        ),
                    ));
                }
                (None, false) => {
                    return Err(MunicipalError::data(
                        file,
                        format!(
                            "columns: no column {:?} in layout {} (new columns must be \"ignore\": true)",
                            entry.header, base.name
                        ),
                    ));
                }
            };
            if let Some(r) = entry.required {
                column.required = r;
            }
            if let Some(m) = entry.max_length {
                column.max_length = Some(m);
            }
            layout.columns.push(column);
        }
    }
    for (field_id, change) in &o.codes {
        let field = Field::parse(field_id).ok_or_else(|| {
            MunicipalError::data(file, format!("codes: unknown field {field_id:?}"))
        })?;
        let mut found = false;
        for column in layout.columns.iter_mut().filter(|c| c.field == Some(field)) {
            found = true;
            let mut table: Vec<(String, String)> = change
                .entries
                .iter()
                .filter_map(|(from, to)| to.as_ref().map(|t| (from.clone(), t.clone())))
                .collect();
            if !change.replace {
                // Municipality entries first, so export writes the municipality's own values.
                table.extend(
                    column
                        .codes
                        .iter()
                        .filter(|(from, _)| !change.entries.iter().any(|(f, _)| f == from))
                        .cloned(),
                );
            }
            if table.is_empty() {
                return Err(MunicipalError::data(
                    file,
                    format!("codes: the table of {field_id} would be empty"),
                ));
            }
            column.codes = table;
            index_codes(file, column)?;
        }
        if !found {
            return Err(MunicipalError::data(
                file,
                format!("codes: the layout has no {field_id} code column"),
            ));
        }
    }
    check_layout(file, &layout)?;
    Ok(layout)
}
