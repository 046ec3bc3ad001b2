//! Validation of a QuestionnaireResponse against its Questionnaire (R4 questionnaireresponse.html):
//! linkIds and nesting, answer types, answer options, required and repeating items, maxLength
//! and enableWhen. The walk it builds is reused by the assessment.

use std::cell::RefCell;
use std::collections::HashMap;

use fhir::validate::{Issue, IssueType, Severity};
use serde_json::Value;

use crate::questionnaire::{Index, ItemType, QItem, index};
use crate::value::{Typed, choice_elements, equals, shape_problem, test};

/// Deeper nesting than this is refused rather than risking the stack (a 予診票 has three levels).
pub(crate) const MAX_DEPTH: usize = 64;

/// Validate `response` against `questionnaire` and return every issue, each located by a
/// FHIRPath-style expression in the response and naming the item by its text and linkId.
///
/// Missing required answers are errors when the response is `completed` or `amended`, and
/// warnings while it is `in-progress` or `stopped` (a partly filled form is legitimate then).
pub fn validate_response(questionnaire: &Value, response: &Value) -> Vec<Issue> {
    Walk::new(questionnaire, response)
        .findings
        .into_iter()
        .map(|f| f.issue)
        .collect()
}

/// One issue plus what the assessment needs to turn it into a reason.
#[derive(Debug)]
pub(crate) struct Finding {
    pub issue: Issue,
    /// The Questionnaire item concerned, if the issue is about one.
    pub item: Option<usize>,
    pub missing_required: bool,
}

/// One QuestionnaireResponse item, placed in the Questionnaire.
#[derive(Debug)]
pub(crate) struct Node<'r> {
    /// The Questionnaire item (`None` for linkIds the Questionnaire does not know here).
    pub item: Option<usize>,
    pub parent: Option<usize>,
    pub path: String,
    /// Answers whose value has the right type and shape.
    pub answers: Vec<Typed<'r>>,
    /// Every answer given, valid or not (for `repeats`, `required` and disabled checks).
    pub answer_count: usize,
    pub children: Vec<usize>,
}

/// A response read against its Questionnaire.
pub(crate) struct Walk<'q, 'r> {
    pub index: Index<'q>,
    pub nodes: Vec<Node<'r>>,
    pub findings: Vec<Finding>,
    /// Nodes by their Questionnaire item.
    by_item: HashMap<usize, Vec<usize>>,
    root_nodes: Vec<usize>,
    /// Memo for `node_enabled`: `None` unknown, `Some(None)` being computed (a cycle reads as
    /// disabled), `Some(Some(b))` known.
    enabled: RefCell<Vec<Option<Option<bool>>>>,
    required_severity: Severity,
}

impl<'q, 'r> Walk<'q, 'r> {
    pub fn new(questionnaire: &'q Value, response: &'r Value) -> Self {
        // Problems in the Questionnaire itself are validate_questionnaire's business; here it
        // is read as well as it can be.
        let (index, _) = index(questionnaire, false);
        let status = response.get("status").and_then(Value::as_str);
        let mut walk = Walk {
            index,
            nodes: Vec::new(),
            findings: Vec::new(),
            by_item: HashMap::new(),
            root_nodes: Vec::new(),
            enabled: RefCell::new(Vec::new()),
            required_severity: match status {
                Some("completed" | "amended") => Severity::Error,
                _ => Severity::Warning,
            },
        };
        if questionnaire.get("resourceType").and_then(Value::as_str) != Some("Questionnaire") {
            walk.error(
                IssueType::Invalid,
                "QuestionnaireResponse".into(),
                "the form to validate against is not a Questionnaire".into(),
                None,
            );
            return walk;
        }
        if response.get("resourceType").and_then(Value::as_str) != Some("QuestionnaireResponse") {
            walk.error(
                IssueType::Invalid,
                "QuestionnaireResponse".into(),
                "not a QuestionnaireResponse (resourceType must be \"QuestionnaireResponse\")"
                    .into(),
                None,
            );
            return walk;
        }
        walk.header(response, status);
        let roots = walk.index.roots.clone();
        walk.root_nodes = walk.items(response.get("item"), "QuestionnaireResponse", None, &roots);
        *walk.enabled.borrow_mut() = vec![None; walk.nodes.len()];
        walk.check_nodes();
        walk.check_required();
        walk
    }

    fn push(
        &mut self,
        severity: Severity,
        code: IssueType,
        expression: String,
        diagnostics: String,
        item: Option<usize>,
    ) {
        self.findings.push(Finding {
            issue: Issue {
                severity,
                code,
                expression,
                diagnostics,
            },
            item,
            missing_required: false,
        });
    }

    fn error(
        &mut self,
        code: IssueType,
        expression: String,
        diagnostics: String,
        item: Option<usize>,
    ) {
        self.push(Severity::Error, code, expression, diagnostics, item);
    }

    fn describe(&self, item: usize) -> String {
        self.index.items[item].describe()
    }

    /// QuestionnaireResponse.questionnaire and .status.
    fn header(&mut self, response: &Value, status: Option<&str>) {
        match response.get("questionnaire").and_then(Value::as_str) {
            None => self.push(
                Severity::Warning,
                IssueType::Required,
                "QuestionnaireResponse.questionnaire".into(),
                format!(
                    "the response does not say which Questionnaire it answers (expected {})",
                    self.index.url.unwrap_or("the form's url")
                ),
                None,
            ),
            Some(canonical) => {
                let (url, version) = match canonical.split_once('|') {
                    Some((url, version)) => (url, Some(version)),
                    None => (canonical, None),
                };
                let url_ok = self.index.url.is_none_or(|u| u == url);
                let version_ok = version.is_none_or(|v| self.index.version.is_none_or(|w| w == v));
                if !url_ok || !version_ok {
                    let expected = match (self.index.url, self.index.version) {
                        (Some(u), Some(v)) => format!("{u} or {u}|{v}"),
                        (Some(u), None) => u.to_owned(),
                        _ => String::new(),
                    };
                    self.error(
                        IssueType::Invalid,
                        "QuestionnaireResponse.questionnaire".into(),
                        format!(
                            "the response answers {canonical}, not this Questionnaire ({expected})"
                        ),
                        None,
                    );
                }
            }
        }
        const STATUSES: [&str; 5] = [
            "in-progress",
            "completed",
            "amended",
            "entered-in-error",
            "stopped",
        ];
        match status {
            Some(s) if STATUSES.contains(&s) => {}
            Some(s) => self.error(
                IssueType::CodeInvalid,
                "QuestionnaireResponse.status".into(),
                format!("status {s:?} is not one of {}", STATUSES.join(", ")),
                None,
            ),
            None => self.error(
                IssueType::Required,
                "QuestionnaireResponse.status".into(),
                "status is required (in-progress, completed, amended, entered-in-error or stopped)"
                    .into(),
                None,
            ),
        }
    }

    /// Read one `item` array whose Questionnaire counterparts are `expected`.
    fn items(
        &mut self,
        items: Option<&'r Value>,
        parent_path: &str,
        parent: Option<usize>,
        expected: &[usize],
    ) -> Vec<usize> {
        let Some(items) = items else {
            return Vec::new();
        };
        if parent_path.matches(".item[").count() >= MAX_DEPTH {
            self.error(
                IssueType::TooCostly,
                format!("{parent_path}.item"),
                format!("items are nested deeper than {MAX_DEPTH} levels"),
                None,
            );
            return Vec::new();
        }
        let Some(items) = items.as_array() else {
            self.error(
                IssueType::Structure,
                format!("{parent_path}.item"),
                "item must be an array".into(),
                None,
            );
            return Vec::new();
        };
        let mut placed = Vec::new();
        let mut last_position = 0;
        let mut seen: HashMap<usize, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{parent_path}.item[{i}]");
            let Some(link_id) = item.get("linkId").and_then(Value::as_str) else {
                self.error(IssueType::Required, path, "item has no linkId".into(), None);
                continue;
            };
            let Some(position) = expected
                .iter()
                .position(|&e| self.index.items[e].link_id == link_id)
            else {
                let diagnostics = match self.index.by_link.get(link_id) {
                    Some(&elsewhere) => format!(
                        "{} is not expected here; in the Questionnaire it is at {}",
                        self.describe(elsewhere),
                        self.index.items[elsewhere].path
                    ),
                    None => format!("linkId {link_id} does not exist in the Questionnaire"),
                };
                self.error(
                    IssueType::Structure,
                    format!("{path}.linkId"),
                    diagnostics,
                    None,
                );
                continue;
            };
            let q = expected[position];
            if position < last_position {
                self.push(
                    Severity::Warning,
                    IssueType::Structure,
                    path.clone(),
                    format!(
                        "{} comes out of the Questionnaire's order",
                        self.describe(q)
                    ),
                    Some(q),
                );
            }
            last_position = position;
            let count = seen.entry(q).or_insert(0);
            *count += 1;
            let repeating_group = self.index.items[q].item_type == Some(ItemType::Group)
                && self.index.items[q].repeats;
            if *count > 1 && !repeating_group {
                self.error(
                    IssueType::Structure,
                    path.clone(),
                    format!(
                        "{} appears more than once; only a repeating group may, and repeated answers belong in one item's answer list",
                        self.describe(q)
                    ),
                    Some(q),
                );
            }
            placed.push(self.item(item, path, q, parent));
        }
        placed
    }

    fn item(&mut self, item: &'r Value, path: String, q: usize, parent: Option<usize>) -> usize {
        let node = self.nodes.len();
        self.nodes.push(Node {
            item: Some(q),
            parent,
            path: path.clone(),
            answers: Vec::new(),
            answer_count: 0,
            children: Vec::new(),
        });
        self.by_item.entry(q).or_default().push(node);
        let item_type = self.index.items[q].item_type;
        let expected_children = self.index.items[q].children.clone();
        let mut children = Vec::new();
        if let Some(answers) = item.get("answer") {
            let answers = answers.as_array().map(Vec::as_slice).unwrap_or_default();
            if item_type.is_some_and(|t| !t.takes_answers()) {
                self.error(
                    IssueType::Structure,
                    format!("{path}.answer"),
                    format!(
                        "{} is a {} and takes no answers",
                        self.describe(q),
                        type_name(item_type)
                    ),
                    Some(q),
                );
            } else {
                for (j, answer) in answers.iter().enumerate() {
                    let answer_path = format!("{path}.answer[{j}]");
                    self.nodes[node].answer_count += 1;
                    if let Some(typed) = self.answer(answer, &answer_path, q) {
                        self.nodes[node].answers.push(typed);
                    }
                    let nested = answer.get("item");
                    if nested.is_some() && expected_children.is_empty() {
                        self.error(
                            IssueType::Structure,
                            format!("{answer_path}.item"),
                            format!(
                                "{} has no nested items in the Questionnaire",
                                self.describe(q)
                            ),
                            Some(q),
                        );
                    } else {
                        children.extend(self.items(
                            nested,
                            &answer_path,
                            Some(node),
                            &expected_children,
                        ));
                    }
                }
            }
        }
        if let Some(nested) = item.get("item") {
            if item_type == Some(ItemType::Group) || item_type.is_none() {
                children.extend(self.items(Some(nested), &path, Some(node), &expected_children));
            } else {
                self.error(
                    IssueType::Structure,
                    format!("{path}.item"),
                    format!(
                        "{} is a question: items nested under it belong in answer[].item, not item[].item",
                        self.describe(q)
                    ),
                    Some(q),
                );
            }
        }
        self.nodes[node].children = children;
        node
    }

    /// Check one answer's value against the item; return it if usable.
    fn answer(&mut self, answer: &'r Value, path: &str, q: usize) -> Option<Typed<'r>> {
        let values = answer
            .as_object()
            .map(|o| choice_elements(o, "value"))
            .unwrap_or_default();
        let item: &QItem<'q> = &self.index.items[q];
        let describe = item.describe();
        let typed = match values.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    IssueType::Required,
                    path.to_owned(),
                    format!("an answer to {describe} has no value[x]"),
                    Some(q),
                );
                return None;
            }
            _ => {
                self.error(
                    IssueType::Structure,
                    path.to_owned(),
                    format!("an answer to {describe} has more than one value[x]"),
                    Some(q),
                );
                return None;
            }
        };
        let at = format!("{path}.value{}", typed.ty);
        if let Some(item_type) = item.item_type {
            let allowed = item_type.answer_types();
            if !allowed.contains(&typed.ty) {
                let expected: Vec<String> = allowed.iter().map(|t| format!("value{t}")).collect();
                self.error(
                    IssueType::Value,
                    at,
                    format!(
                        "{describe} is a {} item: the answer must be {}, not value{}",
                        type_name(Some(item_type)),
                        expected.join(" or "),
                        typed.ty
                    ),
                    Some(q),
                );
                return None;
            }
        }
        if let Some(problem) = shape_problem(typed) {
            self.error(
                IssueType::Value,
                at,
                format!("the answer to {describe}: {problem}"),
                Some(q),
            );
            return None;
        }
        if let (Some(max), Some(text)) = (item.max_length, typed.value.as_str())
            && matches!(typed.ty, "String" | "Uri")
        {
            let length = text.chars().count();
            if length > max {
                self.error(
                    IssueType::Value,
                    at,
                    format!(
                        "the answer to {describe} is {length} characters long; maxLength is {max}"
                    ),
                    Some(q),
                );
                return None;
            }
        }
        let item: &QItem<'q> = &self.index.items[q];
        let listed = !item.options.is_empty();
        if listed && !item.options.iter().any(|o| equals(typed, *o) == Some(true)) {
            let choices: Vec<String> = item.options.iter().map(ToString::to_string).collect();
            match item.item_type {
                // open-choice admits free text; a coded value outside the list is suspicious
                // but allowed.
                Some(ItemType::OpenChoice) if typed.ty == "String" => {}
                Some(ItemType::OpenChoice) => self.push(
                    Severity::Warning,
                    IssueType::CodeInvalid,
                    at,
                    format!(
                        "the answer {typed} to {describe} is not one of its options ({})",
                        choices.join(", ")
                    ),
                    Some(q),
                ),
                _ => {
                    self.error(
                        IssueType::CodeInvalid,
                        at,
                        format!(
                            "the answer {typed} to {describe} is not one of its options ({})",
                            choices.join(", ")
                        ),
                        Some(q),
                    );
                    return None;
                }
            }
        }
        Some(typed)
    }

    /// Answers to disabled items, and too many answers to a non-repeating item.
    fn check_nodes(&mut self) {
        for node in 0..self.nodes.len() {
            let Some(q) = self.nodes[node].item else {
                continue;
            };
            let parent_enabled = self.nodes[node].parent.is_none_or(|p| self.node_enabled(p));
            // Report only the outermost disabled item: everything below it is disabled too.
            if parent_enabled && !self.node_enabled(node) && self.has_content(node) {
                let conditions: Vec<String> = self.index.items[q]
                    .enable_when
                    .iter()
                    .map(|c| format!("{} {} {}", c.question, c.operator.code(), c.answer))
                    .collect();
                let joiner = if self.index.items[q].enable_any {
                    " or "
                } else {
                    " and "
                };
                let diagnostics = format!(
                    "{} is answered but not enabled: its enableWhen ({}) is not met",
                    self.describe(q),
                    conditions.join(joiner)
                );
                let path = self.nodes[node].path.clone();
                self.error(IssueType::Invalid, path, diagnostics, Some(q));
            }
            let item = &self.index.items[q];
            if !item.repeats && self.nodes[node].answer_count > 1 {
                let diagnostics = format!(
                    "{} does not repeat but has {} answers",
                    item.describe(),
                    self.nodes[node].answer_count
                );
                let path = format!("{}.answer[1]", self.nodes[node].path);
                self.error(IssueType::Structure, path, diagnostics, Some(q));
            }
        }
    }

    fn has_content(&self, node: usize) -> bool {
        self.nodes[node].answer_count > 0
            || self.nodes[node]
                .children
                .iter()
                .any(|&c| self.has_content(c))
    }

    /// Required items that are enabled but unanswered, in every context the response has.
    fn check_required(&mut self) {
        let mut contexts: Vec<(Option<usize>, Vec<usize>, String)> = vec![(
            None,
            self.index.roots.clone(),
            "QuestionnaireResponse".to_owned(),
        )];
        for (node, n) in self.nodes.iter().enumerate() {
            let Some(q) = n.item else { continue };
            let item = &self.index.items[q];
            let opened = match item.item_type {
                Some(ItemType::Group) => true,
                // Items nested under a question are due once the question is answered.
                _ => n.answer_count > 0,
            };
            if opened && !item.children.is_empty() {
                contexts.push((Some(node), item.children.clone(), n.path.clone()));
            }
        }
        for (context, expected, path) in contexts {
            if context.is_some_and(|c| !self.node_enabled(c)) {
                continue;
            }
            for q in expected {
                let item = &self.index.items[q];
                if !item.required {
                    continue;
                }
                let siblings: Vec<usize> = match context {
                    None => self.root_nodes.clone(),
                    Some(c) => self.nodes[c].children.clone(),
                };
                let answered = siblings
                    .iter()
                    .any(|&s| self.nodes[s].item == Some(q) && self.has_content(s));
                if answered || !self.enabled_in(q, context) {
                    continue;
                }
                let diagnostics = format!("required {} has no answer", self.describe(q));
                self.findings.push(Finding {
                    issue: Issue {
                        severity: self.required_severity,
                        code: IssueType::Required,
                        expression: path.clone(),
                        diagnostics,
                    },
                    item: Some(q),
                    missing_required: true,
                });
            }
        }
    }

    /// Whether a response item is enabled: its parent is, and its enableWhen holds in its context.
    pub fn node_enabled(&self, node: usize) -> bool {
        if let Some(known) = self.enabled.borrow().get(node).copied().flatten() {
            // A cycle (being computed) reads as disabled.
            return known.unwrap_or(false);
        }
        if let Some(slot) = self.enabled.borrow_mut().get_mut(node) {
            *slot = Some(None);
        }
        let result = match self.nodes[node].item {
            Some(q) => self.enabled_in(q, self.nodes[node].parent),
            None => true,
        };
        if let Some(slot) = self.enabled.borrow_mut().get_mut(node) {
            *slot = Some(Some(result));
        }
        result
    }

    /// Whether Questionnaire item `q` is enabled when placed under `context` (a response item,
    /// or the top level).
    pub fn enabled_in(&self, q: usize, context: Option<usize>) -> bool {
        if context.is_some_and(|c| !self.node_enabled(c)) {
            return false;
        }
        let item = &self.index.items[q];
        if item.enable_when.is_empty() {
            return true;
        }
        let mut results = item.enable_when.iter().map(|condition| {
            let answers = self.answers_in_scope(condition.question, context);
            test(condition.operator, &answers, condition.answer).holds()
        });
        if item.enable_any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }

    /// The answers to `link_id` that an item in `context` sees: those in the nearest enclosing
    /// scope that contains the question (R4: with repeating groups, the nearest ancestor's
    /// occurrence), counting only enabled occurrences (a disabled item has no value).
    fn answers_in_scope(&self, link_id: &str, context: Option<usize>) -> Vec<Typed<'r>> {
        let Some(&q) = self.index.by_link.get(link_id) else {
            return Vec::new();
        };
        let candidates = self.by_item.get(&q).map(Vec::as_slice).unwrap_or_default();
        let mut scope = context;
        loop {
            let in_scope: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&c| scope.is_none_or(|s| self.is_within(c, s)))
                .collect();
            if !in_scope.is_empty() || scope.is_none() {
                return in_scope
                    .into_iter()
                    .filter(|&c| self.node_enabled(c))
                    .flat_map(|c| self.nodes[c].answers.iter().copied())
                    .collect();
            }
            scope = scope.and_then(|s| self.nodes[s].parent);
        }
    }

    fn is_within(&self, node: usize, ancestor: usize) -> bool {
        let mut current = Some(node);
        while let Some(n) = current {
            if n == ancestor {
                return true;
            }
            current = self.nodes[n].parent;
        }
        false
    }

    /// Enabled response items for Questionnaire item `q`.
    pub fn enabled_nodes(&self, q: usize) -> Vec<usize> {
        self.by_item
            .get(&q)
            .map(|nodes| {
                nodes
                    .iter()
                    .copied()
                    .filter(|&n| self.node_enabled(n))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn type_name(item_type: Option<ItemType>) -> &'static str {
    match item_type {
        Some(ItemType::Group) => "group",
        Some(ItemType::Display) => "display item",
        Some(ItemType::Boolean) => "boolean",
        Some(ItemType::Decimal) => "decimal",
        Some(ItemType::Integer) => "integer",
        Some(ItemType::Date) => "date",
        Some(ItemType::DateTime) => "dateTime",
        Some(ItemType::Time) => "time",
        Some(ItemType::String) => "string",
        Some(ItemType::Text) => "text",
        Some(ItemType::Url) => "url",
        Some(ItemType::Choice) => "choice",
        Some(ItemType::OpenChoice) => "open-choice",
        Some(ItemType::Attachment) => "attachment",
        Some(ItemType::Reference) => "reference",
        Some(ItemType::Quantity) => "quantity",
        None => "item of unknown type",
    }
}
