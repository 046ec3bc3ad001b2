//! Checking one resource against one compiled profile; every failed rule becomes an
//! `fhir::validate::Issue` whose diagnostics name the profile and the rule.

use std::sync::OnceLock;

use fhir::validate::{Issue, IssueType, Severity};
use regex::Regex;
use serde_json::{Map, Value};

use crate::data::{Origin, Strength};
use crate::navigate::{Node, child_expr, count, navigate, step};
use crate::profile::{Binding, Invariant, InvariantCheck, Matcher, Meta, Profile, Rule, Slice};
use crate::{CodeCheck, Terminology};

/// Check `resource` (already known to be of the profile's type) and append every issue found.
pub(crate) fn check_profile(
    profile: &Profile,
    resource: &Value,
    terminology: &dyn Terminology,
    issues: &mut Vec<Issue>,
) {
    let mut checker = Checker {
        profile,
        terminology,
        resource,
        issues,
    };
    let root = Node::root(resource, &profile.resource_type);
    checker.rules(std::slice::from_ref(&root), &profile.rules);
    for invariant in &profile.invariants {
        checker.invariant(&root, invariant);
    }
}

struct Checker<'a> {
    profile: &'a Profile,
    terminology: &'a dyn Terminology,
    resource: &'a Value,
    issues: &'a mut Vec<Issue>,
}

fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(117).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn show_max(max: Option<u32>) -> String {
    max.map_or_else(|| "*".to_owned(), |m| m.to_string())
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        code: IssueType,
        expression: String,
        id: &str,
        message: String,
        meta: &Meta,
    ) {
        let mut diagnostics = if id.is_empty() {
            format!("{}: {message}", self.profile.name)
        } else {
            format!("{}: {id}: {message}", self.profile.name)
        };
        if meta.origin == Origin::Musubi && self.profile.origin != Origin::Musubi {
            diagnostics.push_str(" (Musubi tightening)");
        }
        if meta.inferred && !self.profile.inferred {
            diagnostics.push_str(" (inferred rule)");
        }
        self.issues.push(Issue {
            severity,
            code,
            expression,
            diagnostics,
        });
    }

    fn rules(&mut self, contexts: &[Node<'_>], rules: &[Rule]) {
        for rule in rules {
            for context in contexts {
                self.rule(context, rule);
            }
        }
    }

    fn rule(&mut self, context: &Node<'_>, rule: &Rule) {
        let (last, parent_segs) = rule.segs.split_last().expect("paths are never empty");
        for parent in navigate(context, parent_segs) {
            let n = count(&parent, last);
            if let Some(min) = rule.min
                && n < min as usize
            {
                self.push(
                    rule.meta.severity,
                    IssueType::Required,
                    child_expr(&parent, last),
                    &rule.id,
                    format!("min {min}, found {n}"),
                    &rule.meta,
                );
            }
            if let Some(max) = rule.max
                && let Some(m) = max
                && n > m as usize
            {
                self.push(
                    rule.meta.severity,
                    IssueType::Structure,
                    child_expr(&parent, last),
                    &rule.id,
                    format!("max {m}, found {n}"),
                    &rule.meta,
                );
            }
            let items = step(&parent, last);
            for item in &items {
                self.values(item, rule);
            }
            if !rule.slices.is_empty() {
                self.slices(&child_expr(&parent, last), &items, rule);
            }
        }
    }

    /// Checks on one value at the rule's path.
    fn values(&mut self, node: &Node<'_>, rule: &Rule) {
        let meta = &rule.meta;
        if let (Some(allowed), Some(found)) = (&rule.types, &node.choice_type)
            && !allowed.contains(found)
        {
            self.push(
                meta.severity,
                IssueType::Structure,
                node.expr.clone(),
                &rule.id,
                format!(
                    "type {found} is not allowed (allowed: {})",
                    allowed.join(", ")
                ),
                meta,
            );
        }
        if let Some(fixed) = &rule.fixed
            && !self.same(fixed, node.value, is_system_path(rule))
        {
            self.push(
                meta.severity,
                IssueType::Value,
                node.expr.clone(),
                &rule.id,
                format!("must be {}, found {}", show(fixed), show(node.value)),
                meta,
            );
        }
        if let Some(pattern) = &rule.pattern
            && !self.contains(pattern, node.value, is_system_path(rule))
        {
            self.push(
                meta.severity,
                IssueType::Value,
                node.expr.clone(),
                &rule.id,
                format!(
                    "must match pattern {}, found {}",
                    show(pattern),
                    show(node.value)
                ),
                meta,
            );
        }
        if let Some(binding) = &rule.binding {
            let type_code = node
                .choice_type
                .clone()
                .or_else(|| rule.element_types.first().cloned())
                .unwrap_or_default();
            self.binding(node, &type_code, binding, rule);
        }
        if let Some(targets) = &rule.targets {
            self.reference(node, targets, rule);
        }
        if let Some(text) = node.value.as_str() {
            if let Some(format) = &rule.format
                && let Err(problem) = self.terminology.check_identifier(format, text)
            {
                self.push(
                    meta.severity,
                    IssueType::Value,
                    node.expr.clone(),
                    &rule.id,
                    format!("{text:?} is not a valid {format}: {problem}"),
                    meta,
                );
            }
            if let Some(regex) = &rule.regex
                && !regex.is_match(text)
            {
                self.push(
                    meta.severity,
                    IssueType::Value,
                    node.expr.clone(),
                    &rule.id,
                    format!("{text:?} does not match {}", regex.as_str()),
                    meta,
                );
            }
        }
    }

    fn slices(&mut self, expr: &str, items: &[Node<'_>], rule: &Rule) {
        let mut matched: Vec<Vec<Node<'_>>> = vec![Vec::new(); rule.slices.len()];
        for item in items {
            // An item belongs to the first slice it matches; unmatched items are allowed
            // (open slicing, as in every JP Core profile).
            if let Some(i) = rule
                .slices
                .iter()
                .position(|s| self.matches(&s.matcher, item.value))
            {
                matched[i].push(item.clone());
            }
        }
        for (slice, members) in rule.slices.iter().zip(&matched) {
            self.slice_counts(slice, expr, members.len());
            self.rules(members, &slice.rules);
        }
    }

    fn slice_counts(&mut self, slice: &Slice, expr: &str, n: usize) {
        if n < slice.min as usize {
            self.push(
                slice.meta.severity,
                IssueType::Required,
                expr.to_owned(),
                &slice.id,
                format!("min {}, found {n}", slice.min),
                &slice.meta,
            );
        }
        if let Some(max) = slice.max
            && n > max as usize
        {
            self.push(
                slice.meta.severity,
                IssueType::Structure,
                expr.to_owned(),
                &slice.id,
                format!("max {}, found {n}", show_max(slice.max)),
                &slice.meta,
            );
        }
    }

    fn canonical(&self, system: &str) -> String {
        self.terminology.canonical_system(system).into_owned()
    }

    fn same_system(&self, a: &str, b: &str) -> bool {
        a == b || self.canonical(a) == self.canonical(b)
    }

    fn matches(&self, matcher: &Matcher, item: &Value) -> bool {
        match matcher {
            Matcher::Url(url) => item.get("url").and_then(Value::as_str) == Some(url.as_str()),
            Matcher::System(system) => item
                .get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| self.same_system(s, system)),
            Matcher::Coding {
                path, system, code, ..
            } => {
                let start = Node::root(item, "");
                navigate(&start, path).iter().any(|concept| {
                    concept
                        .value
                        .get("coding")
                        .and_then(Value::as_array)
                        .is_some_and(|codings| {
                            codings.iter().any(|c| {
                                c.get("system")
                                    .and_then(Value::as_str)
                                    .is_some_and(|s| self.same_system(s, system))
                                    && code.as_deref().is_none_or(|code| {
                                        c.get("code").and_then(Value::as_str) == Some(code)
                                    })
                            })
                        })
                })
            }
        }
    }

    /// Equality as for `fixed[x]`, except that code and identifier systems compare in canonical
    /// form (an OID and its URL are the same system).
    fn same(&self, expected: &Value, actual: &Value, is_system: bool) -> bool {
        match (expected, actual) {
            (Value::String(e), Value::String(a)) if is_system => self.same_system(e, a),
            (Value::Object(e), Value::Object(a)) => {
                e.len() == a.len()
                    && e.iter()
                        .all(|(k, ev)| a.get(k).is_some_and(|av| self.same(ev, av, k == "system")))
            }
            (Value::Array(e), Value::Array(a)) => {
                e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| self.same(ev, av, is_system))
            }
            _ => expected == actual,
        }
    }

    /// Containment as for `pattern[x]`: every property of the pattern is present with a matching
    /// value; every array item of the pattern matches some item of the instance's array.
    fn contains(&self, pattern: &Value, actual: &Value, is_system: bool) -> bool {
        match (pattern, actual) {
            (Value::String(p), Value::String(a)) if is_system => self.same_system(p, a),
            (Value::Object(p), Value::Object(a)) => p.iter().all(|(k, pv)| {
                a.get(k)
                    .is_some_and(|av| self.contains(pv, av, k == "system"))
            }),
            (Value::Array(p), Value::Array(a)) => p
                .iter()
                .all(|pv| a.iter().any(|av| self.contains(pv, av, is_system))),
            _ => pattern == actual,
        }
    }

    fn binding(&mut self, node: &Node<'_>, type_code: &str, binding: &Binding, rule: &Rule) {
        let severity = match binding.strength {
            Strength::Required => Severity::Error,
            Strength::Extensible => Severity::Warning,
            // Preferred and example bindings are advice; nothing to report.
            Strength::Preferred | Strength::Example => return,
        };
        let codes: Vec<(Option<String>, String)> = match type_code {
            "code" | "string" | "uri" => match node.value.as_str() {
                Some(code) => vec![(None, code.to_owned())],
                None => return,
            },
            "Coding" => coding_of(node.value).into_iter().collect(),
            "CodeableConcept" => node
                .value
                .get("coding")
                .and_then(Value::as_array)
                .map(|codings| codings.iter().filter_map(coding_of).collect())
                .unwrap_or_default(),
            _ => return,
        };
        let vs = &binding.value_set;
        if codes.is_empty() {
            // Text only: allowed for extensible (no code applies), not for required.
            if binding.strength == Strength::Required && type_code == "CodeableConcept" {
                self.push(
                    severity,
                    IssueType::CodeInvalid,
                    node.expr.clone(),
                    &rule.id,
                    format!("no coding from the required value set {vs}"),
                    &rule.meta,
                );
            }
            return;
        }
        let results: Vec<CodeCheck> = codes
            .iter()
            .map(|(system, code)| self.check_code(binding, system.as_deref(), code))
            .collect();
        if results.contains(&CodeCheck::Member) {
            return;
        }
        let shown: Vec<String> = codes
            .iter()
            .map(|(s, c)| match s {
                Some(s) => format!("{s}#{c}"),
                None => c.clone(),
            })
            .collect();
        let unknown = results
            .iter()
            .any(|r| matches!(r, CodeCheck::UnknownValueSet | CodeCheck::UnknownSystem));
        if unknown {
            self.push(
                Severity::Information,
                IssueType::Informational,
                node.expr.clone(),
                &rule.id,
                format!(
                    "{} binding to {vs} not checked: the value set or code system is not known here ({})",
                    binding.strength.code(),
                    shown.join(", ")
                ),
                &rule.meta,
            );
            return;
        }
        let message = match binding.strength {
            Strength::Required => {
                format!("{} is not in the required value set {vs}", shown.join(", "))
            }
            _ => format!(
                "{} is not in the extensible value set {vs} (use its code when one applies)",
                shown.join(", ")
            ),
        };
        self.push(
            severity,
            IssueType::CodeInvalid,
            node.expr.clone(),
            &rule.id,
            message,
            &rule.meta,
        );
    }

    fn check_code(&self, binding: &Binding, system: Option<&str>, code: &str) -> CodeCheck {
        let canonical = system.map(|s| self.canonical(s));
        let answer = self
            .terminology
            .check_code(&binding.value_set, canonical.as_deref(), code);
        match (&answer, &binding.codes) {
            (CodeCheck::UnknownValueSet, Some(codes)) => {
                let member = codes.iter().any(|c| {
                    c.code == code
                        && match (&c.system, system) {
                            (Some(expected), Some(found)) => self.same_system(expected, found),
                            // A bare `code` element carries no system: the element fixes it.
                            _ => true,
                        }
                });
                if member {
                    CodeCheck::Member
                } else {
                    CodeCheck::NotMember
                }
            }
            _ => answer,
        }
    }

    fn reference(&mut self, node: &Node<'_>, targets: &[crate::profile::Target], rule: &Rule) {
        let Some(found) = reference_type(node.value, self.resource) else {
            // urn:uuid, logical or unresolvable references: the target type cannot be told.
            return;
        };
        if targets.iter().any(|t| t.resource_type == found) {
            return;
        }
        let allowed: Vec<&str> = targets.iter().map(|t| t.resource_type.as_str()).collect();
        self.push(
            rule.meta.severity,
            IssueType::Structure,
            node.expr.clone(),
            &rule.id,
            format!(
                "reference to {found} is not allowed (allowed: {})",
                allowed.join(", ")
            ),
            &rule.meta,
        );
    }

    fn invariant(&mut self, root: &Node<'_>, invariant: &Invariant) {
        let nodes = navigate(root, &invariant.segs);
        let label = format!("{} ({})", invariant.key, invariant.human);
        match &invariant.check {
            InvariantCheck::Regex(regex) => {
                for node in nodes {
                    if let Some(text) = node.value.as_str()
                        && !regex.is_match(text)
                    {
                        self.push(
                            invariant.meta.severity,
                            IssueType::Invariant,
                            node.expr.clone(),
                            &invariant.id,
                            format!("{label}: {text:?} does not match {}", regex.as_str()),
                            &invariant.meta,
                        );
                    }
                }
            }
            InvariantCheck::AnyOf(paths) => {
                for node in nodes {
                    let present = paths.iter().any(|(_, segs)| {
                        let (last, parents) = segs.split_last().expect("paths are never empty");
                        navigate(&node, parents).iter().any(|p| count(p, last) > 0)
                    });
                    if !present {
                        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
                        self.push(
                            invariant.meta.severity,
                            IssueType::Invariant,
                            node.expr.clone(),
                            &invariant.id,
                            format!("{label}: none of {} is present", names.join(", ")),
                            &invariant.meta,
                        );
                    }
                }
            }
        }
    }
}

/// A rule on a `system` element (Identifier.system, Coding.system): compare canonical forms.
fn is_system_path(rule: &Rule) -> bool {
    rule.segs.last().is_some_and(|s| s.name == "system")
}

fn coding_of(value: &Value) -> Option<(Option<String>, String)> {
    let code = value.get("code")?.as_str()?;
    let system = value
        .get("system")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some((system, code.to_owned()))
}

/// The resource type a Reference points to, when it can be told: a contained resource (`#id`),
/// a relative or absolute RESTful URL (`Patient/123`, `https://…/Patient/123/_history/2`), or
/// the explicit `type`.
fn reference_type(reference: &Value, resource: &Value) -> Option<String> {
    static LITERAL: OnceLock<Regex> = OnceLock::new();
    let literal = LITERAL.get_or_init(|| {
        Regex::new(
            r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$",
        )
        .expect("static regex")
    });
    let object: &Map<String, Value> = reference.as_object()?;
    if let Some(text) = object.get("reference").and_then(Value::as_str) {
        if let Some(id) = text.strip_prefix('#') {
            return resource
                .get("contained")
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                .and_then(|c| c.get("resourceType"))
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if let Some(found) = literal.captures(text) {
            return Some(found[1].to_owned());
        }
    }
    object
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::reference_type;

    #[test]
    fn reference_types_are_told_where_possible() {
        let resource = json!({"contained": [{"resourceType": "Patient", "id": "p1"}]});
        let cases = [
            (json!({"reference": "Patient/123"}), Some("Patient")),
            (
                json!({"reference": "https://fhir.example.jp/r4/Practitioner/a-1/_history/3"}),
                Some("Practitioner"),
            ),
            (json!({"reference": "#p1"}), Some("Patient")),
            (json!({"reference": "#missing"}), None),
            (
                json!({"reference": "urn:uuid:8f9c7a2e-1b3d-4c5e-9f60-123456789abc"}),
                None,
            ),
            (
                json!({"reference": "urn:uuid:8f9c7a2e-1b3d-4c5e-9f60-123456789abc", "type": "Organization"}),
                Some("Organization"),
            ),
            (
                json!({"identifier": {"value": "1"}, "type": "Patient"}),
                Some("Patient"),
            ),
            (json!({"display": "山田 太郎"}), None),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                reference_type(&reference, &resource).as_deref(),
                expected,
                "{reference}"
            );
        }
    }
}
