//! QuestionnaireResponse validation against a Questionnaire: one table of cases over a form that
//! uses every R4 item type and enableWhen operator, then cases on the shipped 予診票.

mod common;

use fhir::validate::{Issue, IssueType, Severity};
use prevaccination::validate_response;
use serde_json::{Value, json};

const URL: &str = "https://musubi.example.org/fhir/Questionnaire/test-all-types";

fn questionnaire() -> Value {
    let when = |question: &str, operator: &str, answer: Value| {
        let mut c = json!({"question": question, "operator": operator});
        let (key, value) = answer.as_object().unwrap().iter().next().unwrap();
        c[key] = value.clone();
        c
    };
    json!({
        "resourceType": "Questionnaire", "url": URL, "version": "2", "status": "active",
        "contained": [{"resourceType": "ValueSet", "id": "vs", "status": "active",
            "compose": {"include": [{"system": "urn:test", "concept": [{"code": "x"}, {"code": "y"}]}]}}],
        "item": [
            {"linkId": "g", "text": "基本", "type": "group", "required": true, "item": [
                {"linkId": "b", "text": "はい・いいえ", "type": "boolean", "required": true},
                {"linkId": "d", "text": "体温", "type": "decimal"},
                {"linkId": "i", "text": "回数", "type": "integer", "repeats": true},
                {"linkId": "dt", "text": "日付", "type": "date"},
                {"linkId": "dtt", "text": "日時", "type": "dateTime"},
                {"linkId": "t", "text": "時刻", "type": "time"},
                {"linkId": "s", "text": "短文", "type": "string", "maxLength": 5},
                {"linkId": "tx", "text": "長文", "type": "text"},
                {"linkId": "u", "text": "URL", "type": "url"},
                {"linkId": "c", "text": "選択", "type": "choice", "answerOption": [
                    {"valueCoding": {"system": "urn:test", "code": "a", "display": "甲"}},
                    {"valueCoding": {"system": "urn:test", "code": "b", "display": "乙"}}]},
                {"linkId": "oc", "text": "自由選択", "type": "open-choice", "answerOption": [{"valueString": "初回"}]},
                {"linkId": "vs", "text": "値集合", "type": "choice", "answerValueSet": "#vs"},
                {"linkId": "q", "text": "量", "type": "quantity"},
                {"linkId": "att", "text": "添付", "type": "attachment"},
                {"linkId": "ref", "text": "参照", "type": "reference"},
                {"linkId": "disp", "text": "説明", "type": "display"}
            ]},
            {"linkId": "e-exists", "text": "体温あり", "type": "string", "enableWhen": [when("d", "exists", json!({"answerBoolean": true}))]},
            {"linkId": "e-eq", "text": "はいのとき", "type": "string", "required": true, "enableWhen": [when("b", "=", json!({"answerBoolean": true}))]},
            {"linkId": "e-ne", "text": "甲以外", "type": "string", "enableWhen": [when("c", "!=", json!({"answerCoding": {"system": "urn:test", "code": "a"}}))]},
            {"linkId": "e-gt", "text": "発熱", "type": "string", "enableWhen": [when("d", ">", json!({"answerDecimal": 37.5}))]},
            {"linkId": "e-lt", "text": "低体温", "type": "string", "enableWhen": [when("d", "<", json!({"answerDecimal": 35}))]},
            {"linkId": "e-ge", "text": "2回目以降", "type": "string", "enableWhen": [when("i", ">=", json!({"answerInteger": 2}))]},
            {"linkId": "e-le", "text": "2025年以前", "type": "string", "enableWhen": [when("dt", "<=", json!({"answerDate": "2025-01-01"}))]},
            {"linkId": "e-any", "text": "どちらか", "type": "string", "enableBehavior": "any",
             "enableWhen": [when("b", "=", json!({"answerBoolean": true})), when("d", ">", json!({"answerDecimal": 40}))]},
            {"linkId": "e-all", "text": "両方", "type": "string", "enableBehavior": "all",
             "enableWhen": [when("b", "=", json!({"answerBoolean": true})), when("d", ">", json!({"answerDecimal": 40}))]},
            {"linkId": "p", "text": "病気がありますか", "type": "boolean", "item": [
                {"linkId": "p-name", "text": "病名", "type": "string", "required": true, "enableWhen": [when("p", "=", json!({"answerBoolean": true}))]}
            ]}
        ]
    })
}

const ORDER: [&str; 16] = [
    "b", "d", "i", "dt", "dtt", "t", "s", "tx", "u", "c", "oc", "vs", "q", "att", "ref", "disp",
];
const TOP: [&str; 10] = [
    "e-exists", "e-eq", "e-ne", "e-gt", "e-lt", "e-ge", "e-le", "e-any", "e-all", "p",
];

/// A response with the given answers in Questionnaire order; `b` defaults to false. Answers are
/// `answer` arrays; for `p` a full item object may be given.
fn response(answers: &[(&str, Value)]) -> Value {
    let get = |link: &str| {
        answers
            .iter()
            .find(|(l, _)| *l == link)
            .map(|(_, v)| v.clone())
    };
    let mut group = Vec::new();
    for link in ORDER {
        let answer = get(link).or_else(|| (link == "b").then(|| json!([{"valueBoolean": false}])));
        if let Some(answer) = answer {
            group.push(json!({"linkId": link, "answer": answer}));
        }
    }
    let mut items = vec![json!({"linkId": "g", "item": group})];
    for link in TOP {
        if let Some(answer) = get(link) {
            items.push(if answer.is_object() {
                answer
            } else {
                json!({"linkId": link, "answer": answer})
            });
        }
    }
    json!({"resourceType": "QuestionnaireResponse", "questionnaire": URL, "status": "completed", "item": items})
}

fn text(s: &str) -> Value {
    json!([{"valueString": s}])
}

/// (severity, code, expression, a part of the diagnostics)
type Expected = (Severity, IssueType, &'static str, &'static str);

fn check(name: &str, issues: &[Issue], expected: &[Expected]) {
    assert_eq!(
        issues.len(),
        expected.len(),
        "{name}: expected {} issues, got {issues:#?}",
        expected.len()
    );
    for (issue, (severity, code, expression, diagnostic)) in issues.iter().zip(expected) {
        assert_eq!(
            (issue.severity, issue.code),
            (*severity, *code),
            "{name}: {issue:?}"
        );
        assert_eq!(issue.expression, *expression, "{name}");
        assert!(
            issue.diagnostics.contains(diagnostic),
            "{name}: {:?} lacks {diagnostic:?}",
            issue.diagnostics
        );
    }
}

use IssueType::*;
use Severity::{Error as E, Warning as W};

#[test]
fn a_response_using_every_type_correctly_is_clean() {
    let r = response(&[
        ("b", json!([{"valueBoolean": true}])),
        ("d", json!([{"valueDecimal": 38.2}])),
        ("i", json!([{"valueInteger": 1}, {"valueInteger": 3}])),
        ("dt", json!([{"valueDate": "2024-12-31"}])),
        (
            "dtt",
            json!([{"valueDateTime": "2025-05-01T09:30:00+09:00"}]),
        ),
        ("t", json!([{"valueTime": "09:30:00"}])),
        ("s", text("あいうえお")),
        ("tx", text("長い文章")),
        ("u", json!([{"valueUri": "https://example.org"}])),
        (
            "c",
            json!([{"valueCoding": {"system": "urn:test", "code": "b"}}]),
        ),
        ("oc", text("自由記入")),
        (
            "vs",
            json!([{"valueCoding": {"system": "urn:test", "code": "y"}}]),
        ),
        (
            "q",
            json!([{"valueQuantity": {"value": 0.5, "unit": "mL", "system": "http://unitsofmeasure.org", "code": "mL"}}]),
        ),
        (
            "att",
            json!([{"valueAttachment": {"contentType": "image/png", "data": "AAAA"}}]),
        ),
        (
            "ref",
            json!([{"valueReference": {"reference": "Practitioner/1"}}]),
        ),
        ("e-exists", text("x")),
        ("e-eq", text("x")),
        ("e-ne", text("x")),
        ("e-gt", text("x")),
        ("e-ge", text("x")),
        ("e-le", text("x")),
        ("e-any", text("x")),
        (
            "p",
            json!({"linkId": "p", "answer": [{"valueBoolean": true, "item": [{"linkId": "p-name", "answer": [{"valueString": "喘息"}]}]}]}),
        ),
    ]);
    check("clean", &validate_response(&questionnaire(), &r), &[]);
}

#[test]
fn validation_cases() {
    let q = questionnaire();
    let g = "QuestionnaireResponse.item[0]";
    let cases: Vec<(&str, Value, Vec<Expected>)> = vec![
        (
            "wrong type: string for boolean",
            response(&[("b", text("はい"))]),
            vec![(
                E,
                Value,
                "QuestionnaireResponse.item[0].item[0].answer[0].valueString",
                "「はい・いいえ」 (linkId b) is a boolean item: the answer must be valueBoolean, not valueString",
            )],
        ),
        (
            "wrong JSON kind: quoted boolean",
            response(&[("b", json!([{"valueBoolean": "true"}]))]),
            vec![(
                E,
                Value,
                "QuestionnaireResponse.item[0].item[0].answer[0].valueBoolean",
                "expected true or false",
            )],
        ),
        (
            "decimal given as integer type",
            response(&[("d", json!([{"valueInteger": 37}]))]),
            vec![(
                E,
                Value,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueInteger",
                "must be valueDecimal",
            )],
        ),
        (
            "impossible date",
            response(&[("dt", json!([{"valueDate": "2025-02-30"}]))]),
            vec![(
                E,
                Value,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueDate",
                "that exists",
            )],
        ),
        (
            "dateTime without zone",
            response(&[("dtt", json!([{"valueDateTime": "2025-05-01T09:30:00"}]))]),
            vec![(
                E,
                Value,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueDateTime",
                "with a zone",
            )],
        ),
        (
            "two values in one answer",
            response(&[("d", json!([{"valueDecimal": 36.5, "valueString": "x"}]))]),
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[0].item[1].answer[0]",
                "more than one value[x]",
            )],
        ),
        (
            "answer without value",
            response(&[("d", json!([{}]))]),
            vec![(
                E,
                Required,
                "QuestionnaireResponse.item[0].item[1].answer[0]",
                "has no value[x]",
            )],
        ),
        (
            "missing required",
            json!({"resourceType": "QuestionnaireResponse", "questionnaire": URL, "status": "completed", "item": [{"linkId": "g", "item": [{"linkId": "d", "answer": [{"valueDecimal": 36.5}]}]}]}),
            vec![(
                E,
                Required,
                g,
                "required 「はい・いいえ」 (linkId b) has no answer",
            )],
        ),
        (
            "missing required group",
            json!({"resourceType": "QuestionnaireResponse", "questionnaire": URL, "status": "completed"}),
            vec![(
                E,
                Required,
                "QuestionnaireResponse",
                "required 「基本」 (linkId g) has no answer",
            )],
        ),
        (
            "missing required while in progress is a warning",
            json!({"resourceType": "QuestionnaireResponse", "questionnaire": URL, "status": "in-progress"}),
            vec![(W, Required, "QuestionnaireResponse", "(linkId g)")],
        ),
        (
            "required when enabled: b = true needs e-eq",
            response(&[("b", json!([{"valueBoolean": true}]))]),
            vec![(
                E,
                Required,
                "QuestionnaireResponse",
                "required 「はいのとき」 (linkId e-eq) has no answer",
            )],
        ),
        (
            "disabled but answered (=)",
            response(&[("e-eq", text("x"))]),
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.item[1]",
                "「はいのとき」 (linkId e-eq) is answered but not enabled: its enableWhen (b = true) is not met",
            )],
        ),
        (
            "exists: no temperature",
            response(&[("e-exists", text("x"))]),
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.item[1]",
                "(d exists true)",
            )],
        ),
        (
            "!= holds for an unanswered question",
            response(&[("e-ne", text("x"))]),
            vec![],
        ),
        (
            "!= fails when the answer equals",
            response(&[
                (
                    "c",
                    json!([{"valueCoding": {"system": "urn:test", "code": "a"}}]),
                ),
                ("e-ne", text("x")),
            ]),
            vec![(E, Invalid, "QuestionnaireResponse.item[1]", "(c != a)")],
        ),
        (
            "> boundary: 37.5 is not > 37.5",
            response(&[("d", json!([{"valueDecimal": 37.5}])), ("e-gt", text("x"))]),
            vec![(E, Invalid, "QuestionnaireResponse.item[1]", "(d > 37.5)")],
        ),
        (
            "> holds at 37.6",
            response(&[("d", json!([{"valueDecimal": 37.6}])), ("e-gt", text("x"))]),
            vec![],
        ),
        (
            "< holds at 34.9",
            response(&[("d", json!([{"valueDecimal": 34.9}])), ("e-lt", text("x"))]),
            vec![],
        ),
        (
            "< fails at 35",
            response(&[("d", json!([{"valueDecimal": 35}])), ("e-lt", text("x"))]),
            vec![(E, Invalid, "QuestionnaireResponse.item[1]", "(d < 35)")],
        ),
        (
            ">= holds at 2 exactly",
            response(&[("i", json!([{"valueInteger": 2}])), ("e-ge", text("x"))]),
            vec![],
        ),
        (
            ">= fails at 1",
            response(&[("i", json!([{"valueInteger": 1}])), ("e-ge", text("x"))]),
            vec![(E, Invalid, "QuestionnaireResponse.item[1]", "(i >= 2)")],
        ),
        (
            "<= holds on the day",
            response(&[
                ("dt", json!([{"valueDate": "2025-01-01"}])),
                ("e-le", text("x")),
            ]),
            vec![],
        ),
        (
            "<= fails the day after",
            response(&[
                ("dt", json!([{"valueDate": "2025-01-02"}])),
                ("e-le", text("x")),
            ]),
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.item[1]",
                "(dt <= 2025-01-01)",
            )],
        ),
        (
            "any: one condition suffices",
            response(&[("d", json!([{"valueDecimal": 40.5}])), ("e-any", text("x"))]),
            vec![],
        ),
        (
            "all: both conditions needed",
            response(&[("d", json!([{"valueDecimal": 40.5}])), ("e-all", text("x"))]),
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.item[1]",
                "(b = true and d > 40)",
            )],
        ),
        (
            "unknown linkId",
            response(&[("zz", text("x"))])
                .as_object()
                .map(|_| {
                    let mut r = response(&[]);
                    r["item"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"linkId": "zz", "answer": [{"valueString": "x"}]}));
                    r
                })
                .unwrap(),
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[1].linkId",
                "linkId zz does not exist in the Questionnaire",
            )],
        ),
        (
            "wrong nesting",
            {
                let mut r = response(&[]);
                r["item"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"linkId": "d", "answer": [{"valueDecimal": 36.5}]}));
                r
            },
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[1].linkId",
                "「体温」 (linkId d) is not expected here; in the Questionnaire it is at Questionnaire.item[0].item[1]",
            )],
        ),
        (
            "nested under item instead of answer",
            response(&[(
                "p",
                json!({"linkId": "p", "answer": [{"valueBoolean": true}], "item": [{"linkId": "p-name", "answer": [{"valueString": "喘息"}]}]}),
            )]),
            vec![
                (
                    E,
                    Structure,
                    "QuestionnaireResponse.item[1].item",
                    "belong in answer[].item",
                ),
                (
                    E,
                    Required,
                    "QuestionnaireResponse.item[1]",
                    "required 「病名」 (linkId p-name)",
                ),
            ],
        ),
        (
            "nested answer to a disabled follow-up",
            response(&[(
                "p",
                json!({"linkId": "p", "answer": [{"valueBoolean": false, "item": [{"linkId": "p-name", "answer": [{"valueString": "喘息"}]}]}]}),
            )]),
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.item[1].answer[0].item[0]",
                "「病名」 (linkId p-name) is answered but not enabled",
            )],
        ),
        (
            "repeats false: two answers",
            response(&[("d", json!([{"valueDecimal": 36.5}, {"valueDecimal": 36.6}]))]),
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[0].item[1].answer[1]",
                "does not repeat but has 2 answers",
            )],
        ),
        (
            "repeats true: two answers fine",
            response(&[("i", json!([{"valueInteger": 1}, {"valueInteger": 2}]))]),
            vec![],
        ),
        (
            "same linkId twice",
            {
                let mut r = response(&[]);
                r["item"][0]["item"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"linkId": "b", "answer": [{"valueBoolean": false}]}));
                r
            },
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[0].item[1]",
                "appears more than once",
            )],
        ),
        (
            "choice outside answerOption",
            response(&[(
                "c",
                json!([{"valueCoding": {"system": "urn:test", "code": "z"}}]),
            )]),
            vec![(
                E,
                CodeInvalid,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueCoding",
                "the answer z to 「選択」 (linkId c) is not one of its options (a (甲), b (乙))",
            )],
        ),
        (
            "choice with the wrong system",
            response(&[(
                "c",
                json!([{"valueCoding": {"system": "urn:other", "code": "a"}}]),
            )]),
            vec![(
                E,
                CodeInvalid,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueCoding",
                "not one of its options",
            )],
        ),
        (
            "choice outside a contained value set",
            response(&[(
                "vs",
                json!([{"valueCoding": {"system": "urn:test", "code": "a"}}]),
            )]),
            vec![(
                E,
                CodeInvalid,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueCoding",
                "(linkId vs) is not one of its options (x, y)",
            )],
        ),
        (
            "open-choice admits free text",
            response(&[("oc", text("2期"))]),
            vec![],
        ),
        (
            "open-choice coded value outside the list warns",
            response(&[("oc", json!([{"valueCoding": {"code": "zz"}}]))]),
            vec![(
                W,
                CodeInvalid,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueCoding",
                "not one of its options",
            )],
        ),
        (
            "maxLength",
            response(&[("s", text("あいうえおか"))]),
            vec![(
                E,
                Value,
                "QuestionnaireResponse.item[0].item[1].answer[0].valueString",
                "6 characters long; maxLength is 5",
            )],
        ),
        (
            "display takes no answers",
            response(&[("disp", text("x"))]),
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[0].item[1].answer",
                "display item and takes no answers",
            )],
        ),
        (
            "group takes no answers",
            {
                let mut r = response(&[]);
                r["item"][0]["answer"] = text("x");
                r
            },
            vec![(
                E,
                Structure,
                "QuestionnaireResponse.item[0].answer",
                "is a group and takes no answers",
            )],
        ),
        (
            "out of order",
            {
                let mut r = response(&[("d", json!([{"valueDecimal": 36.5}]))]);
                r["item"][0]["item"].as_array_mut().unwrap().reverse();
                r
            },
            vec![(
                W,
                Structure,
                "QuestionnaireResponse.item[0].item[1]",
                "out of the Questionnaire's order",
            )],
        ),
        (
            "questionnaire with matching version",
            {
                let mut r = response(&[]);
                r["questionnaire"] = json!(format!("{URL}|2"));
                r
            },
            vec![],
        ),
        (
            "questionnaire with another version",
            {
                let mut r = response(&[]);
                r["questionnaire"] = json!(format!("{URL}|3"));
                r
            },
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.questionnaire",
                "not this Questionnaire",
            )],
        ),
        (
            "questionnaire of another form",
            {
                let mut r = response(&[]);
                r["questionnaire"] = json!("https://musubi.example.org/fhir/Questionnaire/other");
                r
            },
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse.questionnaire",
                "answers https://musubi.example.org/fhir/Questionnaire/other",
            )],
        ),
        (
            "bad status",
            {
                let mut r = response(&[]);
                r["status"] = json!("done");
                r
            },
            vec![(E, CodeInvalid, "QuestionnaireResponse.status", "not one of")],
        ),
        (
            "not a QuestionnaireResponse",
            json!({"resourceType": "Patient"}),
            vec![(
                E,
                Invalid,
                "QuestionnaireResponse",
                "not a QuestionnaireResponse",
            )],
        ),
    ];
    for (name, r, expected) in cases {
        check(name, &validate_response(&q, &r), &expected);
    }
}

#[test]
fn shipped_form_issues_quote_the_japanese_text() {
    let q = common::form("child");
    let r = common::fill(q, &[("q3-unwell-today", json!([{"valueString": "はい"}]))]);
    let issues = validate_response(q, &r);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(
        issues[0].expression,
        "QuestionnaireResponse.item[1].item[2].answer[0].valueString"
    );
    assert_eq!(
        issues[0].diagnostics,
        "「今日体に具合の悪いところがありますか」 (linkId q3-unwell-today) is a boolean item: the answer must be valueBoolean, not valueString"
    );

    // A filled form with every default answer is valid, and so is one with a follow-up.
    assert_eq!(validate_response(q, &common::fill(q, &[])), Vec::new());
    let with_detail = common::fill(
        q,
        &[
            ("q4-recent-illness", common::yes()),
            ("q4-disease-name", json!([{"valueString": "かぜ"}])),
        ],
    );
    assert_eq!(validate_response(q, &with_detail), Vec::new());
    let detail_without_yes =
        common::fill(q, &[("q4-disease-name", json!([{"valueString": "かぜ"}]))]);
    let issues = validate_response(q, &detail_without_yes);
    assert_eq!(issues.len(), 1);
    assert_eq!(
        issues[0].expression,
        "QuestionnaireResponse.item[1].item[3].answer[0].item[0]"
    );
    assert!(
        issues[0]
            .diagnostics
            .contains("「病名」 (linkId q4-disease-name) is answered but not enabled")
    );
}

#[test]
fn rota_follow_ups_depend_on_the_dose_number() {
    let q = common::form("rota");
    let first = common::fill(q, &[("q16-rota-first-dose-window", common::yes())]);
    assert_eq!(validate_response(q, &first), Vec::new());
    let second = common::fill(q, &[("dose-number", json!([{"valueInteger": 2}]))]);
    let issues = validate_response(q, &second);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert!(
        issues[0]
            .diagnostics
            .contains("required 「前回のロタウイルスワクチンの接種日」")
    );
    let second_with_date = common::fill(
        q,
        &[
            ("dose-number", json!([{"valueInteger": 2}])),
            (
                "q16-previous-rota-date",
                json!([{"valueDate": "2025-04-01"}]),
            ),
        ],
    );
    assert_eq!(validate_response(q, &second_with_date), Vec::new());
}
