//! A Questionnaire read once into an index of its items (types, enableWhen, answer options,
//! Musubi's rule extension), plus the checks every form must pass before Musubi serves it.

use std::collections::HashMap;

use fhir::validate::{Issue, IssueType, Severity};
use serde_json::Value;

use crate::value::{Operator, Typed, choice_elements, shape_problem};

/// Musubi's item extension marking answers that make a person not eligible today or that need
/// the doctor's attention (docs/prevaccination.md, "The rule extension").
pub const RULE_EXTENSION: &str =
    "https://musubi.example.org/fhir/StructureDefinition/prevaccination-rule";

/// The standard extension giving a numeric item's unit (used for the rule's text).
const UNIT_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit";

/// R4 Questionnaire.item.type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemType {
    Group,
    Display,
    Boolean,
    Decimal,
    Integer,
    Date,
    DateTime,
    Time,
    String,
    Text,
    Url,
    Choice,
    OpenChoice,
    Attachment,
    Reference,
    Quantity,
}

impl ItemType {
    fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "group" => ItemType::Group,
            "display" => ItemType::Display,
            "boolean" => ItemType::Boolean,
            "decimal" => ItemType::Decimal,
            "integer" => ItemType::Integer,
            "date" => ItemType::Date,
            "dateTime" => ItemType::DateTime,
            "time" => ItemType::Time,
            "string" => ItemType::String,
            "text" => ItemType::Text,
            "url" => ItemType::Url,
            "choice" => ItemType::Choice,
            "open-choice" => ItemType::OpenChoice,
            "attachment" => ItemType::Attachment,
            "reference" => ItemType::Reference,
            "quantity" => ItemType::Quantity,
            _ => return None,
        })
    }

    /// The `answer.valueX` suffixes an answer to this item may use (R4 questionnaire.html,
    /// "answer types by item type"; answerOption values for choice items are integer, date,
    /// time, string, Coding or Reference).
    pub fn answer_types(self) -> &'static [&'static str] {
        match self {
            ItemType::Group | ItemType::Display => &[],
            ItemType::Boolean => &["Boolean"],
            ItemType::Decimal => &["Decimal"],
            ItemType::Integer => &["Integer"],
            ItemType::Date => &["Date"],
            ItemType::DateTime => &["DateTime"],
            ItemType::Time => &["Time"],
            ItemType::String | ItemType::Text => &["String"],
            ItemType::Url => &["Uri"],
            ItemType::Choice | ItemType::OpenChoice => {
                &["Coding", "String", "Integer", "Date", "Time", "Reference"]
            }
            ItemType::Attachment => &["Attachment"],
            ItemType::Reference => &["Reference"],
            ItemType::Quantity => &["Quantity"],
        }
    }

    pub fn takes_answers(self) -> bool {
        !matches!(self, ItemType::Group | ItemType::Display)
    }
}

/// One enableWhen condition.
#[derive(Debug, Clone)]
pub(crate) struct Condition<'q> {
    pub question: &'q str,
    pub operator: Operator,
    pub answer: Typed<'q>,
}

/// What a matching rule means for today's vaccination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// 接種不適当者: not eligible today.
    Contraindication,
    /// 要注意: the doctor must look at it.
    Caution,
}

/// One parsed rule extension.
#[derive(Debug, Clone)]
pub(crate) struct Rule<'q> {
    pub kind: RuleKind,
    pub operator: Operator,
    pub answer: Typed<'q>,
    pub label: &'q str,
    pub source: &'q str,
    pub measure: Option<&'q str>,
}

/// One Questionnaire item with everything validation and assessment need.
#[derive(Debug)]
pub(crate) struct QItem<'q> {
    pub link_id: &'q str,
    pub text: &'q str,
    pub item_type: Option<ItemType>,
    pub required: bool,
    pub repeats: bool,
    pub max_length: Option<usize>,
    pub enable_when: Vec<Condition<'q>>,
    /// `enableBehavior = any`; `all` (or absent with one condition) otherwise.
    pub enable_any: bool,
    pub children: Vec<usize>,
    /// answerOption values, or the codes of a contained answerValueSet. An answerValueSet
    /// outside the Questionnaire cannot be expanded without a terminology service, so its
    /// membership is not checked here.
    pub options: Vec<Typed<'q>>,
    pub rules: Vec<Rule<'q>>,
    pub unit: Option<&'q str>,
    /// Where the item sits in the Questionnaire, e.g. `Questionnaire.item[1].item[3]`.
    pub path: String,
}

impl QItem<'_> {
    /// How a diagnostic names the item: its text and linkId.
    pub fn describe(&self) -> String {
        if self.text.is_empty() {
            format!("item (linkId {})", self.link_id)
        } else {
            format!("「{}」 (linkId {})", self.text, self.link_id)
        }
    }
}

/// The items of one Questionnaire, in document order.
#[derive(Debug)]
pub(crate) struct Index<'q> {
    pub url: Option<&'q str>,
    pub version: Option<&'q str>,
    pub items: Vec<QItem<'q>>,
    pub roots: Vec<usize>,
    pub by_link: HashMap<&'q str, usize>,
}

/// Read a Questionnaire. Problems are returned as issues located in the Questionnaire;
/// `house` adds Musubi's stricter rules for the forms it ships and loads (enableWhen targets
/// precede, rule extensions well-formed, url/version/status present).
pub(crate) fn index(questionnaire: &Value, house: bool) -> (Index<'_>, Vec<Issue>) {
    let mut builder = Builder {
        index: Index {
            url: questionnaire.get("url").and_then(Value::as_str),
            version: questionnaire.get("version").and_then(Value::as_str),
            items: Vec::new(),
            roots: Vec::new(),
            by_link: HashMap::new(),
        },
        issues: Vec::new(),
        house,
        contained: questionnaire.get("contained").and_then(Value::as_array),
    };
    if questionnaire.get("resourceType").and_then(Value::as_str) != Some("Questionnaire") {
        builder.error(
            IssueType::Invalid,
            "Questionnaire".into(),
            "not a Questionnaire (resourceType must be \"Questionnaire\")".into(),
        );
        return (builder.index, builder.issues);
    }
    if house {
        for (field, what) in [
            ("url", "a canonical url"),
            ("version", "a version"),
            ("status", "a status"),
        ] {
            if questionnaire.get(field).and_then(Value::as_str).is_none() {
                builder.error(
                    IssueType::Required,
                    format!("Questionnaire.{field}"),
                    format!("the form needs {what}"),
                );
            }
        }
    }
    let roots = builder.items(questionnaire.get("item"), "Questionnaire");
    builder.index.roots = roots;
    builder.check_enable_when();
    (builder.index, builder.issues)
}

/// Check a Questionnaire the way Musubi checks every form it serves: R4 item rules
/// (que-1, que-5, que-6, que-7, que-10, que-12, unique linkIds, enableWhen targets exist) and
/// Musubi's own (url, version and status present; enableWhen targets precede the item;
/// rule extensions well-formed).
pub fn validate_questionnaire(questionnaire: &Value) -> Vec<Issue> {
    index(questionnaire, true).1
}

struct Builder<'q> {
    index: Index<'q>,
    issues: Vec<Issue>,
    house: bool,
    contained: Option<&'q Vec<Value>>,
}

impl<'q> Builder<'q> {
    fn error(&mut self, code: IssueType, expression: String, diagnostics: String) {
        self.issues.push(Issue {
            severity: Severity::Error,
            code,
            expression,
            diagnostics,
        });
    }

    fn items(&mut self, items: Option<&'q Value>, parent_path: &str) -> Vec<usize> {
        let Some(items) = items else {
            return Vec::new();
        };
        if parent_path.matches(".item[").count() >= crate::response::MAX_DEPTH {
            self.error(
                IssueType::TooCostly,
                format!("{parent_path}.item"),
                "items are nested too deeply".into(),
            );
            return Vec::new();
        }
        let Some(items) = items.as_array() else {
            self.error(
                IssueType::Structure,
                format!("{parent_path}.item"),
                "item must be an array".into(),
            );
            return Vec::new();
        };
        let mut indices = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{parent_path}.item[{i}]");
            if let Some(index) = self.item(item, &path) {
                indices.push(index);
            }
        }
        indices
    }

    fn item(&mut self, item: &'q Value, path: &str) -> Option<usize> {
        let Some(link_id) = item.get("linkId").and_then(Value::as_str) else {
            self.error(
                IssueType::Required,
                path.to_owned(),
                "item has no linkId".into(),
            );
            return None;
        };
        let text = item.get("text").and_then(Value::as_str).unwrap_or("");
        let type_code = item.get("type").and_then(Value::as_str).unwrap_or("");
        let item_type = ItemType::parse(type_code);
        let label = if text.is_empty() {
            format!("item (linkId {link_id})")
        } else {
            format!("「{text}」 (linkId {link_id})")
        };
        if item_type.is_none() {
            self.error(
                IssueType::CodeInvalid,
                format!("{path}.type"),
                format!("{label} has no R4 item type (found {type_code:?})"),
            );
        }
        let flag = |name: &str| item.get(name).and_then(Value::as_bool).unwrap_or(false);
        let (required, repeats) = (flag("required"), flag("repeats"));
        if item_type == Some(ItemType::Display) && (required || repeats) {
            self.error(
                IssueType::Invariant,
                path.to_owned(),
                format!("{label}: display items cannot be required or repeat (que-6)"),
            );
        }
        let max_length = item
            .get("maxLength")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        if max_length.is_some()
            && !matches!(
                item_type,
                Some(ItemType::String | ItemType::Text | ItemType::Url | ItemType::OpenChoice)
                    | None
            )
        {
            self.error(
                IssueType::Invariant,
                format!("{path}.maxLength"),
                format!("{label}: maxLength is only for string, text, url and open-choice items (que-10)"),
            );
        }
        let options = self.options(item, item_type, path, &label);
        let enable_when = self.conditions(item, path, &label);
        let enable_any = item.get("enableBehavior").and_then(Value::as_str) == Some("any");
        if enable_when.len() > 1 && item.get("enableBehavior").is_none() {
            self.error(
                IssueType::Invariant,
                format!("{path}.enableBehavior"),
                format!("{label} has several enableWhen conditions but no enableBehavior (que-12)"),
            );
        }
        let rules = self.rules(item, path, &label);
        for rule in &rules {
            if rule.operator != Operator::Exists && !answer_fits(item_type, rule.answer.ty) {
                self.error(
                    IssueType::Invalid,
                    format!("{path}.extension"),
                    format!(
                        "{label}: the rule compares with value{}, which this item's answers never are",
                        rule.answer.ty
                    ),
                );
            }
        }
        let unit = item
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(UNIT_EXTENSION))
            .and_then(|e| e.pointer("/valueCoding/code"))
            .and_then(Value::as_str);

        let index = self.index.items.len();
        if self.index.by_link.insert(link_id, index).is_some() {
            self.error(
                IssueType::Invalid,
                format!("{path}.linkId"),
                format!("{label}: linkId is used twice in the Questionnaire"),
            );
        }
        self.index.items.push(QItem {
            link_id,
            text,
            item_type,
            required,
            repeats,
            max_length,
            enable_when,
            enable_any,
            children: Vec::new(),
            options,
            rules,
            unit,
            path: path.to_owned(),
        });
        let children = self.items(item.get("item"), path);
        match item_type {
            Some(ItemType::Group) if children.is_empty() => self.error(
                IssueType::Invariant,
                path.to_owned(),
                format!("{label}: a group needs nested items (que-1)"),
            ),
            Some(ItemType::Display) if !children.is_empty() => self.error(
                IssueType::Invariant,
                path.to_owned(),
                format!("{label}: a display item cannot have nested items (que-1)"),
            ),
            _ => {}
        }
        self.index.items[index].children = children;
        Some(index)
    }

    fn options(
        &mut self,
        item: &'q Value,
        item_type: Option<ItemType>,
        path: &str,
        label: &str,
    ) -> Vec<Typed<'q>> {
        let is_choice = matches!(item_type, Some(ItemType::Choice | ItemType::OpenChoice));
        let mut options = Vec::new();
        if let Some(list) = item.get("answerOption").and_then(Value::as_array) {
            if !is_choice {
                self.error(
                    IssueType::Invariant,
                    format!("{path}.answerOption"),
                    format!("{label}: only choice and open-choice items have answerOption (que-5)"),
                );
            }
            for (i, option) in list.iter().enumerate() {
                let values = option
                    .as_object()
                    .map(|o| choice_elements(o, "value"))
                    .unwrap_or_default();
                match values.as_slice() {
                    [one] if shape_problem(*one).is_none() => options.push(*one),
                    _ => self.error(
                        IssueType::Structure,
                        format!("{path}.answerOption[{i}]"),
                        format!("{label}: an answerOption needs exactly one valid value[x]"),
                    ),
                }
            }
        }
        if let Some(reference) = item.get("answerValueSet").and_then(Value::as_str) {
            if !is_choice {
                self.error(
                    IssueType::Invariant,
                    format!("{path}.answerValueSet"),
                    format!(
                        "{label}: only choice and open-choice items have answerValueSet (que-5)"
                    ),
                );
            }
            // Only a contained value set ("#id") can be read here; others need a terminology
            // service, so their membership is not checked.
            if let Some(id) = reference.strip_prefix('#') {
                match self.contained_codes(id) {
                    Some(codes) => options.extend(codes),
                    None => self.error(
                        IssueType::Invalid,
                        format!("{path}.answerValueSet"),
                        format!("{label}: no contained ValueSet with id {id:?}"),
                    ),
                }
            }
        }
        options
    }

    /// The codes of a contained ValueSet: its expansion if it has one, else the concepts listed
    /// in compose.include (a ValueSet defined by filters cannot be expanded here).
    fn contained_codes(&self, id: &str) -> Option<Vec<Typed<'q>>> {
        let value_set = self.contained?.iter().find(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some("ValueSet")
                && r.get("id").and_then(Value::as_str) == Some(id)
        })?;
        let mut codes = Vec::new();
        if let Some(contains) = value_set
            .pointer("/expansion/contains")
            .and_then(Value::as_array)
        {
            codes.extend(contains.iter().map(|c| Typed {
                ty: "Coding",
                value: c,
            }));
        } else {
            // A compose concept carries its system one level up; Musubi compares codes and
            // systems, so a concept without system matches on the code (value::equals).
            for include in value_set
                .pointer("/compose/include")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for concept in include
                    .get("concept")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    codes.push(Typed {
                        ty: "Coding",
                        value: concept,
                    });
                }
            }
        }
        Some(codes)
    }

    fn conditions(&mut self, item: &'q Value, path: &str, label: &str) -> Vec<Condition<'q>> {
        let mut conditions = Vec::new();
        let Some(list) = item.get("enableWhen").and_then(Value::as_array) else {
            return conditions;
        };
        for (i, condition) in list.iter().enumerate() {
            let at = format!("{path}.enableWhen[{i}]");
            let question = condition.get("question").and_then(Value::as_str);
            let operator = condition
                .get("operator")
                .and_then(Value::as_str)
                .and_then(Operator::parse);
            let answers = condition
                .as_object()
                .map(|o| choice_elements(o, "answer"))
                .unwrap_or_default();
            match (question, operator, answers.as_slice()) {
                (Some(question), Some(operator), [answer]) => {
                    if operator == Operator::Exists && answer.ty != "Boolean" {
                        self.error(
                            IssueType::Invariant,
                            at,
                            format!("{label}: an exists condition takes answerBoolean (que-7)"),
                        );
                        continue;
                    }
                    conditions.push(Condition {
                        question,
                        operator,
                        answer: *answer,
                    });
                }
                _ => self.error(
                    IssueType::Structure,
                    at,
                    format!("{label}: enableWhen needs question, an R4 operator and exactly one answer[x]"),
                ),
            }
        }
        conditions
    }

    fn rules(&mut self, item: &'q Value, path: &str, label: &str) -> Vec<Rule<'q>> {
        let mut rules = Vec::new();
        let Some(extensions) = item.get("extension").and_then(Value::as_array) else {
            return rules;
        };
        for (i, extension) in extensions.iter().enumerate() {
            if extension.get("url").and_then(Value::as_str) != Some(RULE_EXTENSION) {
                continue;
            }
            let at = format!("{path}.extension[{i}]");
            match parse_rule(extension) {
                Ok(rule) => rules.push(rule),
                Err(problem) => self.error(
                    IssueType::Invalid,
                    at,
                    format!("{label}: malformed rule extension: {problem}"),
                ),
            }
        }
        rules
    }

    /// enableWhen targets must exist (R4); in Musubi's forms they must also come earlier in the
    /// form, so a form reads top to bottom and has no cycles.
    fn check_enable_when(&mut self) {
        let mut problems = Vec::new();
        for (index, item) in self.index.items.iter().enumerate() {
            for condition in &item.enable_when {
                match self.index.by_link.get(condition.question) {
                    None => problems.push((
                        index,
                        format!(
                            "{}: enableWhen refers to linkId {}, which the Questionnaire does not have",
                            item.describe(),
                            condition.question
                        ),
                    )),
                    Some(&target) if self.house && target >= index => problems.push((
                        index,
                        format!(
                            "{}: enableWhen refers to linkId {}, which does not come before it",
                            item.describe(),
                            condition.question
                        ),
                    )),
                    Some(&target) => {
                        let target = &self.index.items[target];
                        if target.item_type.is_some_and(|t| !t.takes_answers()) {
                            problems.push((
                                index,
                                format!(
                                    "{}: enableWhen refers to {}, which takes no answers",
                                    item.describe(),
                                    target.describe()
                                ),
                            ));
                        } else if condition.operator != Operator::Exists
                            && !answer_fits(target.item_type, condition.answer.ty)
                        {
                            problems.push((
                                index,
                                format!(
                                    "{}: enableWhen compares {} with answer{}, which its answers never are",
                                    item.describe(),
                                    target.describe(),
                                    condition.answer.ty
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for (index, diagnostics) in problems {
            let expression = format!("{}.enableWhen", self.index.items[index].path);
            self.error(IssueType::Invalid, expression, diagnostics);
        }
    }
}

/// Whether an answer to an item of `item_type` can have type `ty` (integer and decimal compare
/// with each other).
fn answer_fits(item_type: Option<ItemType>, ty: &str) -> bool {
    let Some(item_type) = item_type else {
        return true;
    };
    let allowed = item_type.answer_types();
    allowed.contains(&ty)
        || (matches!(ty, "Decimal" | "Integer")
            && allowed.iter().any(|t| matches!(*t, "Decimal" | "Integer")))
}

/// Read one rule extension (format in docs/prevaccination.md).
fn parse_rule(extension: &Value) -> Result<Rule<'_>, String> {
    let parts = extension
        .get("extension")
        .and_then(Value::as_array)
        .ok_or("it needs nested extensions")?;
    let part = |name: &str| {
        let found: Vec<&Value> = parts
            .iter()
            .filter(|p| p.get("url").and_then(Value::as_str) == Some(name))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(format!("{name} is given more than once")),
        }
    };
    for p in parts {
        let url = p.get("url").and_then(Value::as_str).unwrap_or("");
        if ![
            "kind", "operator", "answer", "label", "source", "measure", "inferred",
        ]
        .contains(&url)
        {
            return Err(format!("unknown part {url:?}"));
        }
    }
    let text = |name: &str, ty: &str| -> Result<Option<&str>, String> {
        part(name)?
            .map(|p| {
                p.get(ty)
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .ok_or(format!("{name} needs a non-empty {ty}"))
            })
            .transpose()
    };
    let kind = match text("kind", "valueCode")?.ok_or("kind is missing")? {
        "contraindication" => RuleKind::Contraindication,
        "caution" => RuleKind::Caution,
        other => return Err(format!("kind {other:?} is not contraindication or caution")),
    };
    let operator_code = text("operator", "valueCode")?.ok_or("operator is missing")?;
    let operator = Operator::parse(operator_code).ok_or(format!(
        "operator {operator_code:?} is not an R4 enableWhen operator"
    ))?;
    let answer_part = part("answer")?.ok_or("answer is missing")?;
    let answers = answer_part
        .as_object()
        .map(|o| choice_elements(o, "value"))
        .unwrap_or_default();
    let [answer] = answers.as_slice() else {
        return Err("answer needs exactly one value[x]".into());
    };
    if let Some(problem) = shape_problem(*answer) {
        return Err(format!("answer value{}: {problem}", answer.ty));
    }
    if operator == Operator::Exists && answer.ty != "Boolean" {
        return Err("an exists rule takes valueBoolean".into());
    }
    if let Some(inferred) = part("inferred")?
        && !inferred.get("valueBoolean").is_some_and(Value::is_boolean)
    {
        return Err("inferred needs valueBoolean".into());
    }
    let measure = text("measure", "valueCode")?;
    if measure.is_some_and(|m| m != "body-temperature") {
        return Err("measure must be body-temperature".into());
    }
    Ok(Rule {
        kind,
        operator,
        answer: *answer,
        label: text("label", "valueString")?.ok_or("label is missing")?,
        source: text("source", "valueString")?.ok_or("source is missing")?,
        measure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diagnostics(q: &Value) -> Vec<String> {
        validate_questionnaire(q)
            .into_iter()
            .map(|i| i.diagnostics)
            .collect()
    }

    fn form(items: Value) -> Value {
        json!({"resourceType": "Questionnaire", "url": "https://x/Q", "version": "1",
               "status": "active", "item": items})
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut item = json!({"linkId": "leaf", "type": "boolean"});
        for level in 0..70 {
            item = json!({"linkId": format!("g{level}"), "type": "group", "item": [item]});
        }
        let issues = validate_questionnaire(&form(json!([item])));
        assert!(
            issues.iter().any(|i| i.code == IssueType::TooCostly),
            "{issues:?}"
        );
    }

    #[test]
    fn a_minimal_form_is_clean() {
        let q = form(json!([{"linkId": "a", "text": "熱", "type": "decimal"}]));
        assert_eq!(diagnostics(&q), Vec::<String>::new());
    }

    #[test]
    fn structural_problems_are_found() {
        let rule = |parts: Value| json!({"url": RULE_EXTENSION, "extension": parts});
        let cases: Vec<(Value, &str)> = vec![
            (
                json!([{"linkId": "a", "type": "boolean"}, {"linkId": "a", "type": "boolean"}]),
                "used twice",
            ),
            (json!([{"text": "x", "type": "boolean"}]), "no linkId"),
            (
                json!([{"linkId": "a", "type": "question"}]),
                "no R4 item type",
            ),
            (json!([{"linkId": "g", "type": "group"}]), "que-1"),
            (
                json!([{"linkId": "b", "type": "boolean", "enableWhen": [{"question": "zz", "operator": "=", "answerBoolean": true}]}]),
                "does not have",
            ),
            (
                json!([{"linkId": "b", "type": "boolean", "enableWhen": [{"question": "c", "operator": "=", "answerBoolean": true}]},
                    {"linkId": "c", "type": "boolean"}]),
                "does not come before",
            ),
            (
                json!([{"linkId": "c", "type": "boolean"},
                    {"linkId": "b", "type": "boolean", "enableWhen": [
                        {"question": "c", "operator": "=", "answerBoolean": true},
                        {"question": "c", "operator": "exists", "answerBoolean": true}]}]),
                "que-12",
            ),
            (
                json!([{"linkId": "c", "type": "boolean"},
                    {"linkId": "b", "type": "boolean", "enableWhen": [{"question": "c", "operator": "exists", "answerString": "x"}]}]),
                "que-7",
            ),
            (
                json!([{"linkId": "c", "type": "boolean", "enableWhen": [{"question": "c", "operator": "~", "answerBoolean": true}]}]),
                "R4 operator",
            ),
            (
                json!([{"linkId": "c", "type": "boolean", "answerOption": [{"valueString": "x"}]}]),
                "que-5",
            ),
            (
                json!([{"linkId": "c", "type": "integer", "maxLength": 3}]),
                "que-10",
            ),
            (
                json!([{"linkId": "c", "type": "display", "required": true}]),
                "que-6",
            ),
            (
                json!([{"linkId": "c", "type": "boolean", "extension": [rule(json!([
                {"url": "kind", "valueCode": "fatal"}]))]}]),
                "kind \"fatal\"",
            ),
            (
                json!([{"linkId": "c", "type": "boolean", "extension": [rule(json!([
                {"url": "kind", "valueCode": "caution"}, {"url": "operator", "valueCode": "="},
                {"url": "answer", "valueBoolean": true}, {"url": "label", "valueString": "x"}]))]}]),
                "source is missing",
            ),
            (
                json!([{"linkId": "c", "type": "boolean", "extension": [rule(json!([
                {"url": "kind", "valueCode": "caution"}, {"url": "operator", "valueCode": "="},
                {"url": "answer", "valueBoolean": true}, {"url": "label", "valueString": "x"},
                {"url": "source", "valueString": "s"}, {"url": "threshold", "valueString": "s"}]))]}]),
                "unknown part",
            ),
        ];
        for (items, expected) in cases {
            let found = diagnostics(&form(items.clone()));
            assert!(
                found.iter().any(|d| d.contains(expected)),
                "{items}: expected {expected:?}, got {found:?}"
            );
        }
        let no_version = json!({"resourceType": "Questionnaire", "url": "u", "status": "active"});
        assert!(
            diagnostics(&no_version)
                .iter()
                .any(|d| d.contains("version"))
        );
        assert!(
            diagnostics(&json!({"resourceType": "Patient"}))[0].contains("not a Questionnaire")
        );
    }
}
