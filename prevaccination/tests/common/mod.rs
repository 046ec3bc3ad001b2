//! Test helpers: fill a shipped 予診票 with harmless answers, overriding chosen items.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the helpers"
)]

use serde_json::{Value, json};

/// The embedded form with this family name (`child`, `rota`, …).
pub fn form(family: &str) -> &'static Value {
    let url = format!("https://musubi.example.org/fhir/Questionnaire/prevaccination-{family}");
    prevaccination::Forms::embedded()
        .expect("the embedded forms load")
        .questionnaire(&url)
        .unwrap_or_else(|| panic!("no form {url}"))
}

/// A completed response to `q`: every required, unconditional item gets an answer that no rule
/// flags; `overrides` set an item's `answer` list (`Value::Null` leaves the item out). Items
/// nested under a question, and items with enableWhen, appear only when overridden.
pub fn fill(q: &Value, overrides: &[(&str, Value)]) -> Value {
    let url = q["url"].as_str().unwrap();
    let version = q["version"].as_str().unwrap();
    json!({
        "resourceType": "QuestionnaireResponse",
        "questionnaire": format!("{url}|{version}"),
        "status": "completed",
        "item": items(q["item"].as_array().unwrap(), overrides, false),
    })
}

fn items(defs: &[Value], overrides: &[(&str, Value)], under_question: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for def in defs {
        let link = def["linkId"].as_str().unwrap();
        let overridden = overrides.iter().find(|(l, _)| *l == link).map(|(_, v)| v);
        if overridden == Some(&Value::Null) {
            continue;
        }
        let children = def
            .get("item")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if def["type"] == "group" {
            let nested = items(children, overrides, false);
            let wanted = def["required"] == true || !nested.is_empty() && mentions(def, overrides);
            if wanted && !nested.is_empty() {
                out.push(json!({"linkId": link, "item": nested}));
            }
            continue;
        }
        let conditional = def.get("enableWhen").is_some() || under_question;
        let answers = match overridden {
            Some(answers) => answers.clone(),
            None if def["required"] == true && !conditional => json!([default_answer(def)]),
            None => continue,
        };
        let nested = items(children, overrides, true);
        let mut answers = answers;
        if !nested.is_empty()
            && let Some(first) = answers.as_array_mut().and_then(|a| a.first_mut())
        {
            first["item"] = Value::Array(nested);
        }
        out.push(json!({"linkId": link, "answer": answers}));
    }
    out
}

fn mentions(def: &Value, overrides: &[(&str, Value)]) -> bool {
    let link = def["linkId"].as_str().unwrap();
    overrides.iter().any(|(l, v)| *l == link && !v.is_null())
        || def
            .get("item")
            .and_then(Value::as_array)
            .is_some_and(|kids| kids.iter().any(|k| mentions(k, overrides)))
}

/// An answer no rule flags: for booleans the opposite of what a rule tests for.
fn default_answer(def: &Value) -> Value {
    match def["type"].as_str().unwrap() {
        "boolean" => {
            let flagged_true = rules(def).iter().any(|r| r == &json!(true));
            json!({"valueBoolean": !flagged_true})
        }
        "decimal" => json!({"valueDecimal": 36.5}),
        "integer" => json!({"valueInteger": 1}),
        "date" => json!({"valueDate": "2025-05-01"}),
        "choice" | "open-choice" => def["answerOption"][0].clone(),
        "quantity" => {
            json!({"valueQuantity": {"value": 0.5, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"}})
        }
        _ => json!({"valueString": "記入"}),
    }
}

/// The answer values of the item's rule extensions.
fn rules(def: &Value) -> Vec<Value> {
    def.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == prevaccination::RULE_EXTENSION)
        .filter_map(|e| {
            e["extension"]
                .as_array()?
                .iter()
                .find(|p| p["url"] == "answer")
                .and_then(|p| {
                    p.as_object()?
                        .iter()
                        .find(|(k, _)| k.starts_with("value"))
                        .map(|(_, v)| v.clone())
                })
        })
        .collect()
}

pub fn yes() -> Value {
    json!([{"valueBoolean": true}])
}

pub fn no() -> Value {
    json!([{"valueBoolean": false}])
}
