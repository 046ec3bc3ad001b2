//! Typed `value[x]` / `answer[x]` values and the comparisons enableWhen and the rule extension
//! share (R4 QuestionnaireItemOperator).

use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

/// One choice-typed element: the type suffix of its name (`Boolean` for `valueBoolean`) and its
/// JSON value, borrowed from the resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Typed<'a> {
    pub ty: &'a str,
    pub value: &'a Value,
}

/// Every `<prefix>X` key of an object, e.g. all `valueX` of an answer. More than one is a shape
/// error the caller reports.
pub(crate) fn choice_elements<'a>(object: &'a Map<String, Value>, prefix: &str) -> Vec<Typed<'a>> {
    object
        .iter()
        .filter_map(|(key, value)| {
            let ty = key.strip_prefix(prefix)?;
            ty.starts_with(|c: char| c.is_ascii_uppercase())
                .then_some(Typed { ty, value })
        })
        .collect()
}

/// R4 QuestionnaireItemOperator (used by `enableWhen` and by Musubi's rule extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Exists,
    Equals,
    NotEquals,
    GreaterThan,
    LessThan,
    GreaterOrEquals,
    LessOrEquals,
}

impl Operator {
    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "exists" => Operator::Exists,
            "=" => Operator::Equals,
            "!=" => Operator::NotEquals,
            ">" => Operator::GreaterThan,
            "<" => Operator::LessThan,
            ">=" => Operator::GreaterOrEquals,
            "<=" => Operator::LessOrEquals,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Operator::Exists => "exists",
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::GreaterOrEquals => ">=",
            Operator::LessOrEquals => "<=",
        }
    }
}

/// The result of testing a question's answers against an operator and a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Test {
    True,
    False,
    /// Answers exist but none has a type the value can be compared with (e.g. a boolean
    /// answer against a decimal threshold); the condition is treated as not met.
    Incomparable,
}

impl Test {
    pub fn holds(self) -> bool {
        self == Test::True
    }
}

/// Test `answers` against `operator` and `target` with the R4/R5 definitions: `exists` compares
/// "has an answer" with the boolean; `=` holds if at least one answer equals; `!=` holds if no
/// answer equals (so it holds for an unanswered question); the ordered operators hold if at
/// least one answer compares so.
pub(crate) fn test(operator: Operator, answers: &[Typed<'_>], target: Typed<'_>) -> Test {
    if operator == Operator::Exists {
        let wanted = target.value.as_bool().unwrap_or(true);
        return bool_test(answers.is_empty() != wanted);
    }
    let mut comparable = answers.is_empty();
    let mut matched = false;
    for answer in answers {
        let outcome = match operator {
            Operator::Equals | Operator::NotEquals => equals(*answer, target),
            _ => order(*answer, target).map(|ordering| match operator {
                Operator::GreaterThan => ordering == Ordering::Greater,
                Operator::LessThan => ordering == Ordering::Less,
                Operator::GreaterOrEquals => ordering != Ordering::Less,
                _ => ordering != Ordering::Greater,
            }),
        };
        if let Some(hit) = outcome {
            comparable = true;
            matched |= hit;
        }
    }
    if !comparable {
        return Test::Incomparable;
    }
    bool_test(if operator == Operator::NotEquals {
        !matched
    } else {
        matched
    })
}

fn bool_test(value: bool) -> Test {
    if value { Test::True } else { Test::False }
}

fn number(typed: Typed<'_>) -> Option<f64> {
    matches!(typed.ty, "Decimal" | "Integer")
        .then(|| typed.value.as_f64())
        .flatten()
}

fn quantity_unit(value: &Value) -> Option<&str> {
    str_field(value, "code").or_else(|| str_field(value, "unit"))
}

fn str_field<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// Equality of two values, `None` when their types cannot be compared.
pub(crate) fn equals(a: Typed<'_>, b: Typed<'_>) -> Option<bool> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return Some(x == y);
    }
    if a.ty != b.ty {
        return None;
    }
    match a.ty {
        "Coding" => {
            let code = str_field(a.value, "code")? == str_field(b.value, "code")?;
            let system = match (str_field(a.value, "system"), str_field(b.value, "system")) {
                (Some(x), Some(y)) => x == y,
                // A value without a system matches on the code alone (answerOption lists
                // written by hand often omit it).
                _ => true,
            };
            Some(code && system)
        }
        "Quantity" => order(a, b).map(|o| o == Ordering::Equal),
        "Reference" => Some(str_field(a.value, "reference")? == str_field(b.value, "reference")?),
        "Attachment" => None,
        _ => Some(a.value == b.value),
    }
}

/// Order of two values, `None` when the types have no common order. Dates, date-times and
/// times compare as text when written to the same precision (ISO 8601 text orders like the
/// instants it names when the zone is the same); quantities compare when the units agree.
pub(crate) fn order(a: Typed<'_>, b: Typed<'_>) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return x.partial_cmp(&y);
    }
    if a.ty != b.ty {
        return None;
    }
    match a.ty {
        "Date" | "DateTime" | "Time" => {
            let (x, y) = (a.value.as_str()?, b.value.as_str()?);
            (x.len() == y.len()).then(|| x.cmp(y))
        }
        "Quantity" => {
            if quantity_unit(a.value) != quantity_unit(b.value) {
                return None;
            }
            a.value
                .get("value")?
                .as_f64()?
                .partial_cmp(&b.value.get("value")?.as_f64()?)
        }
        _ => None,
    }
}

impl fmt::Display for Typed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ty, self.value) {
            ("Coding", v) => {
                let code = str_field(v, "code").unwrap_or("?");
                match str_field(v, "display") {
                    Some(display) => write!(f, "{code} ({display})"),
                    None => f.write_str(code),
                }
            }
            ("Quantity", v) => {
                let value = v.get("value").map(Value::to_string).unwrap_or_default();
                match str_field(v, "code").or_else(|| str_field(v, "unit")) {
                    Some(unit) => write!(f, "{value} {unit}"),
                    None => f.write_str(&value),
                }
            }
            ("Reference", v) => f.write_str(str_field(v, "reference").unwrap_or("?")),
            (_, Value::String(s)) => f.write_str(s),
            (_, v) => write!(f, "{v}"),
        }
    }
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("the pattern is a constant"))
}

/// Why a value does not have the JSON shape or lexical form its type requires, if it does not.
/// Patterns follow R4 datatypes.html.
pub(crate) fn shape_problem(typed: Typed<'_>) -> Option<String> {
    static DATE: OnceLock<Regex> = OnceLock::new();
    static DATE_TIME: OnceLock<Regex> = OnceLock::new();
    static TIME: OnceLock<Regex> = OnceLock::new();
    let v = typed.value;
    let ok = match typed.ty {
        "Boolean" => v.is_boolean(),
        "Decimal" => v.is_number(),
        "Integer" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        "Date" => v.as_str().is_some_and(|s| {
            regex(&DATE, r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$").is_match(s)
                && calendar_day_exists(s)
        }),
        "DateTime" => v.as_str().is_some_and(|s| {
            regex(
                &DATE_TIME,
                r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$",
            )
            .is_match(s)
                && calendar_day_exists(s)
        }),
        "Time" => v.as_str().is_some_and(|s| {
            regex(&TIME, r"^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?$").is_match(s)
        }),
        "String" | "Uri" => v.as_str().is_some_and(|s| !s.trim().is_empty()),
        "Coding" => {
            v.is_object()
                && str_field(v, "code").is_some()
                && ["system", "display", "version"]
                    .iter()
                    .all(|f| v.get(f).is_none_or(Value::is_string))
        }
        "Quantity" => v.is_object() && v.get("value").is_none_or(Value::is_number),
        "Reference" => v.is_object() && v.get("reference").is_none_or(Value::is_string),
        "Attachment" => v.is_object(),
        _ => return Some(format!("value{} is not an R4 answer type", typed.ty)),
    };
    (!ok).then(|| match typed.ty {
        "Boolean" => "expected true or false".to_owned(),
        "Decimal" => "expected a JSON number".to_owned(),
        "Integer" => "expected a 32-bit whole number".to_owned(),
        "Date" => "expected a date YYYY, YYYY-MM or YYYY-MM-DD that exists".to_owned(),
        "DateTime" => "expected a dateTime (YYYY-MM-DDThh:mm:ss with a zone, or a date)".to_owned(),
        "Time" => "expected a time hh:mm:ss".to_owned(),
        "String" | "Uri" => "expected a non-empty string".to_owned(),
        "Coding" => "expected a Coding with a code".to_owned(),
        "Quantity" => "expected a Quantity whose value is a number".to_owned(),
        "Reference" => "expected a Reference object".to_owned(),
        _ => "expected an Attachment object".to_owned(),
    })
}

/// A full `YYYY-MM-DD` prefix must name a real day (the regex admits 2月30日).
fn calendar_day_exists(text: &str) -> bool {
    let Some(day) = text
        .get(..10)
        .filter(|d| d.len() == 10 && d.as_bytes()[7] == b'-')
    else {
        return true;
    };
    let parse = |range: std::ops::Range<usize>| day[range].parse::<u16>().ok();
    let (Some(year), Some(month), Some(dom)) = (parse(0..4), parse(5..7), parse(8..10)) else {
        return false;
    };
    time::Month::try_from(month as u8)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(i32::from(year), m, dom as u8).ok())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t<'a>(ty: &'a str, value: &'a Value) -> Typed<'a> {
        Typed { ty, value }
    }

    #[test]
    fn operators_follow_the_r4_definitions() {
        let (a, b, c) = (json!(37.4), json!(37.5), json!(37.6));
        let (threshold, yes) = (json!(37.5), json!(true));
        let none: Vec<Typed<'_>> = Vec::new();
        let cases: &[(Operator, &[Typed<'_>], Test)] = &[
            (Operator::GreaterOrEquals, &[t("Decimal", &a)], Test::False),
            (Operator::GreaterOrEquals, &[t("Decimal", &b)], Test::True),
            (Operator::GreaterThan, &[t("Decimal", &b)], Test::False),
            (Operator::GreaterThan, &[t("Decimal", &c)], Test::True),
            (Operator::LessThan, &[t("Decimal", &a)], Test::True),
            (Operator::LessOrEquals, &[t("Decimal", &b)], Test::True),
            (Operator::LessOrEquals, &[t("Decimal", &c)], Test::False),
            (
                Operator::Equals,
                &[t("Decimal", &a), t("Decimal", &b)],
                Test::True,
            ),
            (
                Operator::NotEquals,
                &[t("Decimal", &a), t("Decimal", &b)],
                Test::False,
            ),
            (Operator::NotEquals, &[t("Decimal", &a)], Test::True),
            (Operator::Equals, &none, Test::False),
            (Operator::NotEquals, &none, Test::True),
            (Operator::GreaterThan, &none, Test::False),
            (Operator::Equals, &[t("Boolean", &yes)], Test::Incomparable),
        ];
        for (i, (op, given, expected)) in cases.iter().enumerate() {
            assert_eq!(
                test(*op, given, t("Decimal", &threshold)),
                *expected,
                "case {i}"
            );
        }
        // Written precision does not matter: 37.50 equals 37.5.
        let precise: Value = serde_json::from_str("37.50").unwrap();
        assert!(
            test(
                Operator::Equals,
                &[t("Decimal", &precise)],
                t("Decimal", &threshold)
            )
            .holds()
        );
        // exists compares "answered" with the boolean.
        assert!(test(Operator::Exists, &none, t("Boolean", &json!(false))).holds());
        assert!(!test(Operator::Exists, &none, t("Boolean", &yes)).holds());
    }

    #[test]
    fn codings_dates_and_quantities_compare() {
        let x = json!({"system": "s", "code": "a"});
        let y = json!({"code": "a"});
        let z = json!({"system": "t", "code": "a"});
        assert_eq!(equals(t("Coding", &x), t("Coding", &y)), Some(true));
        assert_eq!(equals(t("Coding", &x), t("Coding", &z)), Some(false));
        let (d1, d2, m) = (json!("2025-01-31"), json!("2025-02-01"), json!("2025-02"));
        assert_eq!(order(t("Date", &d1), t("Date", &d2)), Some(Ordering::Less));
        assert_eq!(order(t("Date", &d1), t("Date", &m)), None);
        let (q1, q2) = (
            json!({"value": 0.5, "code": "mL"}),
            json!({"value": 0.25, "code": "mL"}),
        );
        let q3 = json!({"value": 0.5, "code": "L"});
        assert_eq!(
            order(t("Quantity", &q1), t("Quantity", &q2)),
            Some(Ordering::Greater)
        );
        assert_eq!(order(t("Quantity", &q1), t("Quantity", &q3)), None);
        assert_eq!(
            equals(t("Integer", &json!(1)), t("Decimal", &json!(1.0))),
            Some(true)
        );
    }

    #[test]
    fn shapes_are_checked() {
        let cases = [
            ("Boolean", json!("true"), false),
            ("Boolean", json!(false), true),
            ("Integer", json!(1.5), false),
            ("Integer", json!(3), true),
            ("Date", json!("2024-02-29"), true),
            ("Date", json!("2023-02-29"), false),
            ("Date", json!("2024-13"), false),
            ("Date", json!("2024"), true),
            ("DateTime", json!("2024-05-01T09:30:00+09:00"), true),
            ("DateTime", json!("2024-05-01T09:30:00"), false),
            ("Time", json!("09:30:00"), true),
            ("Time", json!("9:30"), false),
            ("String", json!(""), false),
            ("Coding", json!({"system": "s"}), false),
            ("Quantity", json!({"value": "0.5"}), false),
        ];
        for (ty, value, ok) in cases {
            assert_eq!(shape_problem(t(ty, &value)).is_none(), ok, "{ty} {value}");
        }
    }
}
