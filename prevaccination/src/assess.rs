//! The "not eligible today" assessment of a filled 予診票, driven only by the rule extensions in
//! the Questionnaire (docs/prevaccination.md, "Assessment").

use serde_json::{Number, Value, json};

use crate::questionnaire::RuleKind;
use crate::response::Walk;
use crate::value::{Test, test};

/// The CodeSystem of assessment outcomes (Musubi-owned).
pub const OUTCOME_SYSTEM: &str =
    "https://musubi.example.org/fhir/CodeSystem/prevaccination-outcome";

/// What the answers mean for vaccinating today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one 接種不適当者 answer (fever, contraindication, the doctor's 否, …).
    NotEligibleToday,
    /// No contraindication, but answers the doctor must look at, or the response is incomplete.
    DoctorReview,
    /// Every required answer is present and none needs attention. The doctor still examines
    /// and decides; this is not a permission to vaccinate.
    NoObstacleFound,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::NotEligibleToday => "not-eligible-today",
            Outcome::DoctorReview => "doctor-review",
            Outcome::NoObstacleFound => "no-obstacle-found",
        }
    }

    /// The Japanese display used in the Parameters result.
    pub fn display(self) -> &'static str {
        match self {
            Outcome::NotEligibleToday => "本日は接種できない",
            Outcome::DoctorReview => "医師の確認が必要",
            Outcome::NoObstacleFound => "予診票の回答に接種の支障なし",
        }
    }
}

/// Why a reason was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonKind {
    /// 接種不適当者: makes the outcome `NotEligibleToday`.
    Contraindication,
    /// 要注意: needs the doctor's attention.
    Caution,
    /// A required answer is missing or an answer is not usable, so the form cannot be judged.
    Incomplete,
}

impl ReasonKind {
    pub fn code(self) -> &'static str {
        match self {
            ReasonKind::Contraindication => "contraindication",
            ReasonKind::Caution => "caution",
            ReasonKind::Incomplete => "incomplete",
        }
    }
}

/// One reason behind the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    /// The item concerned (empty when the problem is not about one item).
    pub link_id: String,
    /// The rule's label (e.g. 「明らかな発熱(37.5℃以上)」), or for `Incomplete` the item's text.
    pub text: String,
    pub kind: ReasonKind,
    /// What matched, e.g. `body-temperature >= 37.5 Cel`, or what is wrong.
    pub rule: String,
    /// The rule's source as the Questionnaire gives it.
    pub source: String,
}

/// The result of `assess`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub outcome: Outcome,
    pub reasons: Vec<Reason>,
    /// The answer to the item whose rule is marked `measure = body-temperature`, in that item's
    /// unit (℃ in Musubi's forms).
    pub body_temperature: Option<f64>,
}

/// Assess a response: any matching contraindication rule → not eligible today; otherwise any
/// caution, missing required answer or unusable answer → doctor review; otherwise no obstacle.
/// Only enabled items count. Which items carry which rules is data in the Questionnaire.
pub fn assess(questionnaire: &Value, response: &Value) -> Assessment {
    let walk = Walk::new(questionnaire, response);
    let mut reasons = Vec::new();
    let mut body_temperature = None;

    for (q, item) in walk.index.items.iter().enumerate() {
        if item.rules.is_empty() {
            continue;
        }
        let answers: Vec<_> = walk
            .enabled_nodes(q)
            .into_iter()
            .flat_map(|n| walk.nodes[n].answers.iter().copied())
            .collect();
        for rule in &item.rules {
            if rule.measure == Some("body-temperature") && body_temperature.is_none() {
                body_temperature = answers.iter().find_map(|a| a.value.as_f64());
            }
            let unit = item.unit.map(|u| format!(" {u}")).unwrap_or_default();
            let expression = format!(
                "{} {} {}{unit}",
                item.link_id,
                rule.operator.code(),
                rule.answer
            );
            let (kind, rule_text) = match test(rule.operator, &answers, rule.answer) {
                Test::False => continue,
                Test::True => (
                    match rule.kind {
                        RuleKind::Contraindication => ReasonKind::Contraindication,
                        RuleKind::Caution => ReasonKind::Caution,
                    },
                    expression,
                ),
                Test::Incomparable => (
                    ReasonKind::Incomplete,
                    format!("cannot evaluate {expression}: the answer has another type"),
                ),
            };
            reasons.push(Reason {
                link_id: item.link_id.to_owned(),
                text: rule.label.to_owned(),
                kind,
                rule: rule_text,
                source: rule.source.to_owned(),
            });
        }
    }

    for finding in &walk.findings {
        let item = finding.item.map(|q| &walk.index.items[q]);
        if finding.missing_required {
            reasons.push(Reason {
                link_id: item.map(|i| i.link_id.to_owned()).unwrap_or_default(),
                text: item.map(|i| i.text.to_owned()).unwrap_or_default(),
                kind: ReasonKind::Incomplete,
                rule: "required answer missing".to_owned(),
                source: "Questionnaire.item.required".to_owned(),
            });
        } else if finding.issue.severity.is_error() {
            reasons.push(Reason {
                link_id: item.map(|i| i.link_id.to_owned()).unwrap_or_default(),
                text: item.map(|i| i.text.to_owned()).unwrap_or_default(),
                kind: ReasonKind::Incomplete,
                rule: format!(
                    "{}: {}",
                    finding.issue.expression, finding.issue.diagnostics
                ),
                source: "QuestionnaireResponse validation".to_owned(),
            });
        }
    }

    let has = |kind: ReasonKind| reasons.iter().any(|r| r.kind == kind);
    let outcome = if has(ReasonKind::Contraindication) {
        Outcome::NotEligibleToday
    } else if reasons.is_empty() {
        Outcome::NoObstacleFound
    } else {
        Outcome::DoctorReview
    };
    Assessment {
        outcome,
        reasons,
        body_temperature,
    }
}

/// The assessment as the R4 Parameters resource the `$assess` operation returns:
/// `outcome` (valueCoding from `OUTCOME_SYSTEM`), `bodyTemperature` (valueQuantity in ℃, UCUM
/// `Cel`, when answered) and one `reason` per reason with parts `linkId`, `text`, `kind`
/// (valueCode contraindication | caution | incomplete), `rule` and `source`.
pub fn assessment_parameters(assessment: &Assessment) -> Value {
    let mut parameters = vec![json!({
        "name": "outcome",
        "valueCoding": {
            "system": OUTCOME_SYSTEM,
            "code": assessment.outcome.code(),
            "display": assessment.outcome.display(),
        }
    })];
    if let Some(number) = assessment.body_temperature.and_then(Number::from_f64) {
        parameters.push(json!({
            "name": "bodyTemperature",
            "valueQuantity": {
                "value": number,
                "unit": "℃",
                "system": "http://unitsofmeasure.org",
                "code": "Cel",
            }
        }));
    }
    for reason in &assessment.reasons {
        let mut parts = Vec::new();
        if !reason.link_id.is_empty() {
            parts.push(json!({"name": "linkId", "valueString": reason.link_id}));
        }
        if !reason.text.is_empty() {
            parts.push(json!({"name": "text", "valueString": reason.text}));
        }
        parts.push(json!({"name": "kind", "valueCode": reason.kind.code()}));
        parts.push(json!({"name": "rule", "valueString": reason.rule}));
        parts.push(json!({"name": "source", "valueString": reason.source}));
        parameters.push(json!({"name": "reason", "part": parts}));
    }
    json!({"resourceType": "Parameters", "parameter": parameters})
}
