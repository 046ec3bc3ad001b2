//! Parsed search queries (R4 3.1.1) and matching against a resource's index entries.

use crate::date::{DateRange, parse_date_range};
use crate::index::{IndexEntry, IndexValue};
use crate::normalize::normalize_text;
use crate::registry::{ParamKind, Registry};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("unknown search parameter {param:?} for {resource_type}")]
    UnknownParameter {
        resource_type: String,
        param: String,
    },
    #[error("search parameter {param:?}: modifier {modifier:?} is not supported")]
    UnknownModifier { param: String, modifier: String },
    #[error("search parameter {param:?}: {message}")]
    InvalidValue { param: String, message: String },
}

/// Modifiers (R4 3.1.1.5.5) Musubi evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    Exact,
    Contains,
    Not,
    Text,
    Missing(bool),
    Below,
    Above,
    /// `subject:Patient=123`: the reference's target type.
    Type(String),
}

/// Comparison prefixes for ordered values (R4 3.1.1.4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    Text(String),
    /// `system|code`: `system` is `Some("")` for `|code` (no system), `None` when absent.
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    Reference {
        resource_type: Option<String>,
        id: String,
    },
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    /// Numbers and quantities: `[low, high)` is the precision range of the written value.
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub param: String,
    pub kind: ParamKind,
    pub modifier: Option<Modifier>,
    /// Alternatives (comma-separated): any may match.
    pub values: Vec<SearchValue>,
    targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortSpec {
    pub param: String,
    pub descending: bool,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    pub param: String,
    pub target_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    Count,
    Data,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalMode {
    None,
    Estimate,
    Accurate,
}

/// Result parameters (R4 3.1.1.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Control {
    pub sort: Vec<SortSpec>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    pub summary: Option<Summary>,
    pub total: Option<TotalMode>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// All must match.
    pub criteria: Vec<Criterion>,
    pub control: Control,
    /// Parameters ignored under lenient handling, one message each.
    pub warnings: Vec<String>,
}

/// Parameters handled outside the criteria (paging is done by the caller).
const RESULT_PARAMS: [&str; 5] = ["_count", "_offset", "_format", "_pretty", "_elements"];

/// Parse URL-decoded query pairs for a search on `resource_type`. `strict` turns unknown
/// parameters into errors instead of warnings (`Prefer: handling=strict`).
pub fn parse_query(
    registry: &Registry,
    resource_type: &str,
    params: &[(String, String)],
    strict: bool,
) -> Result<Query, QueryError> {
    let mut query = Query::default();
    for (name, raw) in params {
        let (code, modifier) = match name.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (name.as_str(), None),
        };
        let invalid = |message: String| QueryError::InvalidValue {
            param: name.clone(),
            message,
        };
        match code {
            c if RESULT_PARAMS.contains(&c) => continue,
            "_sort" => {
                for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (descending, param) = match item.strip_prefix('-') {
                        Some(p) => (true, p),
                        None => (false, item),
                    };
                    if param != "_id" && registry.param(resource_type, param).is_none() {
                        let error = invalid(format!("cannot sort by unknown parameter {param:?}"));
                        if strict {
                            return Err(error);
                        }
                        query.warnings.push(error.to_string());
                        continue;
                    }
                    query.control.sort.push(SortSpec {
                        param: param.to_owned(),
                        descending,
                    });
                }
                continue;
            }
            "_include" | "_revinclude" => {
                let include = parse_include(registry, raw, modifier).map_err(invalid)?;
                if code == "_include" {
                    query.control.include.push(include);
                } else {
                    query.control.revinclude.push(include);
                }
                continue;
            }
            "_summary" => {
                query.control.summary = match raw.as_str() {
                    "count" => Some(Summary::Count),
                    "data" => Some(Summary::Data),
                    "text" => Some(Summary::Text),
                    "false" => None,
                    other => {
                        return Err(invalid(format!(
                            "_summary={other} is not supported (count, data, text, false)"
                        )));
                    }
                };
                continue;
            }
            "_total" => {
                query.control.total = Some(match raw.as_str() {
                    "none" => TotalMode::None,
                    "estimate" => TotalMode::Estimate,
                    "accurate" => TotalMode::Accurate,
                    other => {
                        return Err(invalid(format!(
                            "_total={other} must be none, estimate or accurate"
                        )));
                    }
                });
                continue;
            }
            _ => {}
        }
        let Some(def) = registry.param(resource_type, code) else {
            let error = QueryError::UnknownParameter {
                resource_type: resource_type.to_owned(),
                param: name.clone(),
            };
            if strict {
                return Err(error);
            }
            query.warnings.push(format!("{error}; it was ignored"));
            continue;
        };
        let modifier = match modifier {
            None => None,
            Some(m) => match parse_modifier(def.kind, m, raw, registry) {
                Some(Ok(m)) => Some(m),
                Some(Err(message)) => return Err(invalid(message)),
                None => {
                    let error = QueryError::UnknownModifier {
                        param: code.to_owned(),
                        modifier: m.to_owned(),
                    };
                    if strict {
                        return Err(error);
                    }
                    query
                        .warnings
                        .push(format!("{error}; the parameter was ignored"));
                    continue;
                }
            },
        };
        let values = if matches!(modifier, Some(Modifier::Missing(_))) {
            Vec::new()
        } else {
            split_values(raw)
                .iter()
                .map(|v| parse_value(def.kind, v, modifier.as_ref()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?
        };
        if values.is_empty() && !matches!(modifier, Some(Modifier::Missing(_))) {
            return Err(invalid("a value is required".into()));
        }
        query.criteria.push(Criterion {
            param: code.to_owned(),
            kind: def.kind,
            modifier,
            values,
            targets: def.targets.clone(),
        });
    }
    Ok(query)
}

fn parse_include(
    registry: &Registry,
    raw: &str,
    modifier: Option<&str>,
) -> Result<Include, String> {
    if modifier.is_some_and(|m| m != "iterate" && m != "recurse") {
        return Err(format!("modifier {modifier:?} is not supported"));
    }
    let mut parts = raw.split(':');
    let source_type = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or("expected Type:param")?;
    let param = parts.next().ok_or("expected Type:param")?;
    let target_type = parts.next().map(str::to_owned);
    if param != "*" {
        match registry.param(source_type, param) {
            Some(def) if def.kind == ParamKind::Reference => {}
            Some(_) => {
                return Err(format!(
                    "{source_type}:{param} is not a reference parameter"
                ));
            }
            None => {
                return Err(format!(
                    "{source_type}:{param} is not a known search parameter"
                ));
            }
        }
    }
    Ok(Include {
        source_type: source_type.to_owned(),
        param: param.to_owned(),
        target_type,
    })
}

/// `Some(Err)` for a known modifier with a bad value, `None` for an unknown modifier.
fn parse_modifier(
    kind: ParamKind,
    modifier: &str,
    raw: &str,
    registry: &Registry,
) -> Option<Result<Modifier, String>> {
    let m = match (kind, modifier) {
        (_, "missing") => {
            return Some(match raw {
                "true" => Ok(Modifier::Missing(true)),
                "false" => Ok(Modifier::Missing(false)),
                other => Err(format!(":missing takes true or false, got {other:?}")),
            });
        }
        (ParamKind::String, "exact") => Modifier::Exact,
        (ParamKind::String, "contains") => Modifier::Contains,
        (ParamKind::Token, "not") => Modifier::Not,
        (ParamKind::Token, "text") => Modifier::Text,
        (ParamKind::Uri, "below") => Modifier::Below,
        (ParamKind::Uri, "above") => Modifier::Above,
        (ParamKind::Reference, t)
            if registry.param(t, "_id").is_some()
                && t.starts_with(|c: char| c.is_ascii_uppercase()) =>
        {
            Modifier::Type(t.to_owned())
        }
        _ => return None,
    };
    Some(Ok(m))
}

/// Split on commas not escaped with a backslash (R4 3.1.1.4.7), unescaping `\,` `\|` `\$` `\\`.
fn split_values(raw: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => values.last_mut().expect("non-empty").push(next),
                None => values.last_mut().expect("non-empty").push('\\'),
            },
            ',' => values.push(String::new()),
            c => values.last_mut().expect("non-empty").push(c),
        }
    }
    values.into_iter().filter(|v| !v.is_empty()).collect()
}

fn split_prefix(raw: &str) -> (Prefix, &str) {
    let prefix = match raw.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, raw),
    };
    (prefix, &raw[2..])
}

/// The half-unit of the last written digit: `5.4` → 0.05, `100` → 0.5 (R4 3.1.1.4.2).
fn precision_range(text: &str, value: f64) -> (f64, f64) {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let decimals = mantissa.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let exponent: i32 = text
        .split_once(['e', 'E'])
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    (value - half, value + half)
}

fn parse_value(
    kind: ParamKind,
    raw: &str,
    modifier: Option<&Modifier>,
) -> Result<SearchValue, String> {
    match kind {
        ParamKind::String | ParamKind::Uri => Ok(SearchValue::Text(raw.to_owned())),
        ParamKind::Token => {
            if matches!(modifier, Some(Modifier::Text)) {
                return Ok(SearchValue::Text(raw.to_owned()));
            }
            Ok(match raw.split_once('|') {
                Some((system, code)) => SearchValue::Token {
                    system: Some(system.to_owned()),
                    code: (!code.is_empty()).then(|| code.to_owned()),
                },
                None => SearchValue::Token {
                    system: None,
                    code: Some(raw.to_owned()),
                },
            })
        }
        ParamKind::Reference => {
            let forced = match modifier {
                Some(Modifier::Type(t)) => Some(t.clone()),
                _ => None,
            };
            let value = raw.split("/_history/").next().unwrap_or(raw);
            let mut parts = value.rsplit('/');
            let id = parts.next().unwrap_or(value);
            let named_type = parts
                .next()
                .filter(|t| t.starts_with(|c: char| c.is_ascii_uppercase()));
            if value.contains("://") && named_type.is_none() {
                return Ok(SearchValue::Reference {
                    resource_type: None,
                    id: value.to_owned(),
                });
            }
            if id.is_empty() {
                return Err(format!("{raw:?} is not a reference"));
            }
            Ok(SearchValue::Reference {
                resource_type: forced.or(named_type.map(str::to_owned)),
                id: id.to_owned(),
            })
        }
        ParamKind::Date => {
            let (prefix, text) = split_prefix(raw);
            let range = parse_date_range(text)
                .ok_or_else(|| format!("{text:?} is not a valid date, dateTime or instant"))?;
            Ok(SearchValue::Date { prefix, range })
        }
        ParamKind::Number | ParamKind::Quantity => {
            let (prefix, text) = split_prefix(raw);
            let mut parts = text.splitn(3, '|');
            let number_text = parts.next().unwrap_or("");
            let value: f64 = number_text
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("{number_text:?} is not a number"))?;
            let (low, high) = precision_range(number_text, value);
            let system = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
            let code = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
            if kind == ParamKind::Number && (system.is_some() || code.is_some()) {
                return Err(format!("{raw:?}: a number parameter takes no units"));
            }
            Ok(SearchValue::Number {
                prefix,
                value,
                low,
                high,
                system,
                code,
            })
        }
        ParamKind::Composite | ParamKind::Special => {
            Err("this parameter type cannot be searched".into())
        }
    }
}

fn date_matches(prefix: Prefix, range: DateRange, low: i64, high: i64) -> bool {
    match prefix {
        Prefix::Eq => low >= range.low && high <= range.high,
        Prefix::Ne => !(low >= range.low && high <= range.high),
        Prefix::Gt => high > range.high,
        Prefix::Lt => low < range.low,
        Prefix::Ge => high >= range.low,
        Prefix::Le => low <= range.high,
        Prefix::Sa => low > range.high,
        Prefix::Eb => high < range.low,
        Prefix::Ap => low <= range.high && high >= range.low,
    }
}

fn number_matches(prefix: Prefix, value: f64, low: f64, high: f64, n: f64) -> bool {
    match prefix {
        Prefix::Eq => n >= low && n < high,
        Prefix::Ne => !(n >= low && n < high),
        Prefix::Gt | Prefix::Sa => n > value,
        Prefix::Lt | Prefix::Eb => n < value,
        Prefix::Ge => n >= value,
        Prefix::Le => n <= value,
        Prefix::Ap => (n - value).abs() <= (value * 0.1).abs().max(high - low),
    }
}

impl Criterion {
    fn value_matches(&self, search: &SearchValue, entry: &IndexValue) -> bool {
        match (search, entry) {
            (SearchValue::Text(text), IndexValue::String { normalized, exact }) => {
                match self.modifier {
                    Some(Modifier::Exact) => exact == text,
                    Some(Modifier::Contains) => normalized.contains(&normalize_text(text)),
                    _ => normalized.starts_with(&normalize_text(text)),
                }
            }
            (SearchValue::Text(text), IndexValue::Token { text: Some(t), .. }) => {
                normalize_text(t).starts_with(&normalize_text(text))
            }
            (SearchValue::Text(text), IndexValue::Uri(uri)) => match self.modifier {
                Some(Modifier::Below) => uri.starts_with(text.as_str()),
                Some(Modifier::Above) => text.starts_with(uri.as_str()),
                _ => uri == text,
            },
            (
                SearchValue::Token { system, code },
                IndexValue::Token {
                    system: s, code: c, ..
                },
            ) => {
                let code_ok = code.as_ref().is_none_or(|code| code == c);
                let system_ok = match system.as_deref() {
                    None => true,
                    Some("") => s.is_none(),
                    Some(system) => s.as_deref() == Some(system),
                };
                code_ok && system_ok
            }
            (SearchValue::Reference { resource_type, id }, IndexValue::Reference(r)) => {
                match resource_type {
                    Some(t) => {
                        r.len() == t.len() + 1 + id.len()
                            && r.starts_with(t.as_str())
                            && r.ends_with(id.as_str())
                            && r.as_bytes()[t.len()] == b'/'
                    }
                    None if id.contains("://") => r == id,
                    None => r.rsplit_once('/').is_some_and(|(t, rid)| {
                        rid == id
                            && (self.targets.is_empty() || self.targets.iter().any(|x| x == t))
                    }),
                }
            }
            (SearchValue::Date { prefix, range }, IndexValue::Date { low, high }) => {
                date_matches(*prefix, *range, *low, *high)
            }
            (
                SearchValue::Number {
                    prefix,
                    value,
                    low,
                    high,
                    ..
                },
                IndexValue::Number { number, .. },
            ) => number_matches(*prefix, *value, *low, *high, *number),
            (
                SearchValue::Number {
                    prefix,
                    value,
                    low,
                    high,
                    system,
                    code,
                },
                IndexValue::Quantity {
                    number,
                    system: s,
                    code: c,
                    ..
                },
            ) => {
                code.as_ref().is_none_or(|code| c.as_ref() == Some(code))
                    && system
                        .as_ref()
                        .is_none_or(|system| s.as_ref() == Some(system))
                    && number_matches(*prefix, *value, *low, *high, *number)
            }
            _ => false,
        }
    }

    /// Whether a resource with these index entries satisfies this criterion.
    pub fn matches(&self, entries: &[IndexEntry]) -> bool {
        let mut own = entries.iter().filter(|e| e.param == self.param);
        match self.modifier {
            Some(Modifier::Missing(missing)) => own.next().is_none() == missing,
            Some(Modifier::Not) => {
                !own.any(|e| self.values.iter().any(|v| self.value_matches(v, &e.value)))
            }
            _ => own.any(|e| self.values.iter().any(|v| self.value_matches(v, &e.value))),
        }
    }

    /// Index-value prefixes that together cover every entry that can match, or `None` when the
    /// criterion needs a scan (`:not`, `:missing`, `:contains`, ranges). May over-approximate:
    /// callers verify candidates with [`Criterion::matches`].
    pub fn seek(&self) -> Option<Vec<Seek>> {
        if matches!(
            self.modifier,
            Some(
                Modifier::Not
                    | Modifier::Missing(_)
                    | Modifier::Contains
                    | Modifier::Text
                    | Modifier::Above
            )
        ) {
            return None;
        }
        let mut prefixes = Vec::new();
        for value in &self.values {
            match value {
                SearchValue::Text(text) => match self.kind {
                    ParamKind::String => {
                        prefixes.push(Seek::prefix(normalize_text(text).into_bytes()))
                    }
                    ParamKind::Uri => prefixes.push(Seek::prefix(text.as_bytes().to_vec())),
                    _ => return None,
                },
                SearchValue::Token {
                    code: Some(code),
                    system,
                } => {
                    let mut key = code.as_bytes().to_vec();
                    key.push(0x1f);
                    match system.as_deref().filter(|s| !s.is_empty()) {
                        // `system|code` names one exact value.
                        Some(system) => {
                            key.extend_from_slice(system.as_bytes());
                            prefixes.push(Seek::exact(key));
                        }
                        None => prefixes.push(Seek::prefix(key)),
                    }
                }
                SearchValue::Reference {
                    resource_type: Some(t),
                    id,
                } => prefixes.push(Seek::exact(format!("{t}/{id}").into_bytes())),
                SearchValue::Reference {
                    resource_type: None,
                    id,
                } if id.contains("://") => prefixes.push(Seek::exact(id.as_bytes().to_vec())),
                SearchValue::Reference {
                    resource_type: None,
                    id,
                } if !self.targets.is_empty() => {
                    prefixes.extend(
                        self.targets
                            .iter()
                            .map(|t| Seek::exact(format!("{t}/{id}").into_bytes())),
                    );
                }
                _ => return None,
            }
        }
        Some(prefixes)
    }
}

/// Where a search can start in the index: the entries whose value key starts with `value`, or,
/// when `exact`, only those whose value key is exactly `value` (a reference `Patient/1` must not
/// scan the entries of `Patient/10` … `Patient/199`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seek {
    pub value: Vec<u8>,
    pub exact: bool,
}

impl Seek {
    fn prefix(value: Vec<u8>) -> Seek {
        Seek {
            value,
            exact: false,
        }
    }

    fn exact(value: Vec<u8>) -> Seek {
        Seek { value, exact: true }
    }
}

impl Query {
    /// Whether any `_include` is requested.
    pub fn has_includes(&self) -> bool {
        !self.control.include.is_empty()
    }

    /// The `Type/id` references `_include` asks for, from one matched resource's entries.
    pub fn include_references(&self, resource_type: &str, entries: &[IndexEntry]) -> Vec<String> {
        let mut out = Vec::new();
        for include in self
            .control
            .include
            .iter()
            .filter(|i| i.source_type == resource_type || i.source_type == "*")
        {
            for entry in entries
                .iter()
                .filter(|e| include.param == "*" || e.param == include.param)
            {
                if let IndexValue::Reference(r) = &entry.value {
                    let Some((t, _)) = r.split_once('/') else {
                        continue;
                    };
                    if r.contains("://")
                        || include
                            .target_type
                            .as_deref()
                            .is_some_and(|target| target != t)
                    {
                        continue;
                    }
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        out
    }

    /// `(source_type, param)` of each `_revinclude`.
    pub fn revincludes(&self) -> Vec<(String, String)> {
        self.control
            .revinclude
            .iter()
            .map(|i| (i.source_type.clone(), i.param.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::extract;
    use serde_json::json;

    fn q(rt: &str, query: &str) -> Result<Query, QueryError> {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        parse_query(Registry::r4(), rt, &pairs, true)
    }

    fn matches(rt: &str, resource: serde_json::Value, query: &str) -> bool {
        let entries = extract(Registry::r4(), rt, &resource);
        q(rt, query)
            .unwrap()
            .criteria
            .iter()
            .all(|c| c.matches(&entries))
    }

    #[test]
    fn date_prefixes_follow_the_range_rules() {
        let p = json!({"resourceType": "Patient", "birthDate": "2020-02-29"});
        for (query, expected) in [
            ("birthdate=2020-02-29", true),
            ("birthdate=2020-02", true),
            ("birthdate=2020", true),
            ("birthdate=2020-03", false),
            ("birthdate=ge2020-02-29", true),
            ("birthdate=gt2020-02-29", false),
            ("birthdate=le2020-02-29", true),
            ("birthdate=lt2020-02-29", false),
            ("birthdate=sa2020-02-28", true),
            ("birthdate=eb2020-03-01", true),
            ("birthdate=ne2020-02-29", false),
            ("birthdate=ge2020-02-29T12:00:00Z", true),
        ] {
            assert_eq!(matches("Patient", p.clone(), query), expected, "{query}");
        }
    }

    #[test]
    fn open_periods_and_tokens() {
        let e = json!({"resourceType": "Encounter", "status": "finished", "period": {"start": "2024-01-01"},
            "identifier": [{"system": "urn:x", "value": "42"}]});
        assert!(matches("Encounter", e.clone(), "date=ge2030-01-01"));
        assert!(!matches("Encounter", e.clone(), "date=lt2023-12-31"));
        assert!(matches("Encounter", e.clone(), "identifier=urn:x|42"));
        assert!(matches("Encounter", e.clone(), "identifier=42"));
        assert!(!matches("Encounter", e.clone(), "identifier=|42"));
        assert!(matches("Encounter", e.clone(), "identifier=urn:x|"));
        assert!(matches("Encounter", e.clone(), "status:not=planned"));
        assert!(!matches("Encounter", e, "status:not=finished"));
    }

    #[test]
    fn quantities_honour_precision() {
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org", "code": "mg"}});
        assert!(matches("Observation", o.clone(), "value-quantity=5.4"));
        assert!(matches(
            "Observation",
            o.clone(),
            "value-quantity=5.40|http://unitsofmeasure.org|mg"
        ));
        assert!(!matches("Observation", o.clone(), "value-quantity=5.41"));
        assert!(matches("Observation", o.clone(), "value-quantity=5"));
        assert!(matches("Observation", o.clone(), "value-quantity=gt5"));
        assert!(!matches("Observation", o, "value-quantity=5.4||kg"));
    }

    #[test]
    fn references_by_id_type_and_modifier() {
        let i = json!({"resourceType": "Immunization", "patient": {"reference": "Patient/p1"}});
        assert!(matches("Immunization", i.clone(), "patient=p1"));
        assert!(matches("Immunization", i.clone(), "patient=Patient/p1"));
        assert!(matches("Immunization", i.clone(), "patient:Patient=p1"));
        assert!(!matches("Immunization", i, "patient=p10"));
    }

    #[test]
    fn errors_and_warnings() {
        assert!(matches!(
            q("Patient", "foo=bar"),
            Err(QueryError::UnknownParameter { .. })
        ));
        assert!(matches!(
            q("Patient", "birthdate=2020-13"),
            Err(QueryError::InvalidValue { .. })
        ));
        assert!(matches!(
            q("Patient", "name:fuzzy=x"),
            Err(QueryError::UnknownModifier { .. })
        ));
        assert!(q("Observation", "value-quantity=abc").is_err());
        let lenient = parse_query(
            Registry::r4(),
            "Patient",
            &[("foo".into(), "bar".into())],
            false,
        )
        .unwrap();
        assert_eq!(lenient.warnings.len(), 1);
        let include = q(
            "Immunization",
            "_include=Immunization:patient&_sort=-date,_id&_summary=count",
        )
        .unwrap();
        assert_eq!(include.control.include[0].param, "patient");
        assert_eq!(include.control.sort.len(), 2);
        assert!(q("Immunization", "_include=Immunization:status").is_err());
    }

    #[test]
    fn seek_prefixes_cover_matches() {
        let query = q("Immunization", "patient=p1,p2").unwrap();
        let prefixes = query.criteria[0].seek().unwrap();
        assert!(prefixes.contains(&Seek::exact(b"Patient/p1".to_vec())));
        let token = q("Immunization", "vaccine-code=http://x|1")
            .unwrap()
            .criteria[0]
            .seek()
            .unwrap();
        assert!(token[0].exact, "system|code is one exact value");
        let any_system = q("Immunization", "vaccine-code=1").unwrap().criteria[0]
            .seek()
            .unwrap();
        assert!(!any_system[0].exact, "a code in any system is a prefix");
        assert!(
            q("Patient", "gender:not=male").unwrap().criteria[0]
                .seek()
                .is_none()
        );
        assert!(
            q("Patient", "birthdate=2020").unwrap().criteria[0]
                .seek()
                .is_none()
        );
    }

    #[test]
    fn only_seekable_values_are_sought_in_the_index() {
        // The store writes index keys for seekable values only: a criterion that seeks must
        // find its values among them, one that does not seek may leave them out.
        let observation = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-06-03",
            "valueQuantity": {"value": 80.5, "system": "http://unitsofmeasure.org", "code": "cm"}});
        let entries = extract(Registry::r4(), "Observation", &observation);
        for (query, seeks) in [
            ("code=http://loinc.org|8302-2", true),
            ("status=final", true),
            ("subject=Patient/p1", true),
            ("date=2024-06-03", false),
            ("value-quantity=80.5", false),
        ] {
            let criterion = &q("Observation", query).unwrap().criteria[0];
            assert_eq!(criterion.seek().is_some(), seeks, "{query}");
            let own: Vec<_> = entries
                .iter()
                .filter(|e| e.param == criterion.param)
                .collect();
            assert!(!own.is_empty(), "{query}");
            assert!(
                own.iter().all(|e| e.value.is_seekable() == seeks),
                "{query}"
            );
        }
        let patient = json!({"resourceType": "Patient", "name": [{"family": "山田"}],
            "birthDate": "2020-02-29"});
        let entries = extract(Registry::r4(), "Patient", &patient);
        for (query, seeks) in [("family=山田", true), ("birthdate=2020", false)] {
            let criterion = &q("Patient", query).unwrap().criteria[0];
            assert_eq!(criterion.seek().is_some(), seeks, "{query}");
            assert!(
                entries
                    .iter()
                    .filter(|e| e.param == criterion.param)
                    .all(|e| e.value.is_seekable() == seeks),
                "{query}"
            );
        }
    }

    #[test]
    fn escaped_commas_are_one_value() {
        assert_eq!(
            split_values(r"a\,b,c"),
            vec!["a,b".to_string(), "c".to_string()]
        );
    }
}
