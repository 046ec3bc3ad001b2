//! The shipped forms: valid R4 shape, Musubi's form rules, the vaccine-type map, and a golden
//! listing of every item (tests/golden/forms.txt; regenerate with UPDATE_GOLDEN=1).

mod common;

use std::collections::HashSet;

use prevaccination::{
    Forms, PrevaccinationError, RULE_EXTENSION, questionnaires, validate_questionnaire,
};
use serde_json::{Value, json};

/// The codes of Musubi's vaccine-type CodeSystem, read from the embedded terminology data (the
/// one list every table is checked against).
fn vaccine_types() -> Vec<String> {
    let (_, text) = profiles::JP_TERMINOLOGY
        .iter()
        .find(|(name, _)| *name == "CodeSystem-musubi-vaccine-type.json")
        .expect("the vaccine-type CodeSystem is embedded");
    let code_system: Value = serde_json::from_str(text).unwrap();
    code_system["concept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect()
}

fn walk<'a>(items: &'a Value, out: &mut Vec<(usize, &'a Value)>, depth: usize) {
    for item in items.as_array().into_iter().flatten() {
        out.push((depth, item));
        walk(&item["item"], out, depth + 1);
    }
}

fn flat(q: &Value) -> Vec<(usize, &Value)> {
    let mut out = Vec::new();
    walk(&q["item"], &mut out, 0);
    out
}

#[test]
fn every_shipped_form_passes_the_form_rules() {
    let forms = questionnaires().unwrap();
    assert_eq!(forms.len(), 7);
    for q in forms {
        let url = q["url"].as_str().unwrap();
        assert_eq!(validate_questionnaire(q), Vec::new(), "{url}");
        assert!(url.starts_with("https://musubi.example.org/fhir/Questionnaire/prevaccination-"));
        assert_eq!(q["id"].as_str(), url.rsplit('/').next());
        assert_eq!(q["status"], "active");
        assert!(q["version"].is_string());
        let description = q["description"].as_str().unwrap();
        assert!(
            description.contains("予防接種法施行規則 第2条"),
            "{url} cites its source"
        );
        // linkIds unique, enableWhen targets earlier in document order.
        let items = flat(q);
        let mut seen = HashSet::new();
        for (_, item) in &items {
            let link = item["linkId"].as_str().unwrap();
            for condition in item["enableWhen"].as_array().into_iter().flatten() {
                assert!(
                    seen.contains(condition["question"].as_str().unwrap()),
                    "{url} {link}"
                );
            }
            assert!(seen.insert(link), "{url}: duplicate {link}");
            assert!(
                item["text"].as_str().is_some_and(|t| !t.is_empty()),
                "{url} {link} has text"
            );
        }
    }
}

#[test]
fn every_form_has_the_fever_rule_and_the_doctor_and_consent_sections() {
    for q in questionnaires().unwrap() {
        let items = flat(q);
        let find = |link: &str| {
            items
                .iter()
                .find(|(_, i)| i["linkId"] == link)
                .map(|(_, i)| *i)
        };
        let temperature = find("body-temperature").expect("temperature item");
        assert_eq!(temperature["type"], "decimal");
        assert_eq!(temperature["required"], true);
        assert_eq!(temperature["code"][0]["code"], "8310-5");
        let rule = temperature["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == RULE_EXTENSION)
            .unwrap();
        let parts = rule["extension"].as_array().unwrap();
        let part = |name: &str| parts.iter().find(|p| p["url"] == name).unwrap();
        assert_eq!(part("operator")["valueCode"], ">=");
        assert_eq!(part("answer")["valueDecimal"].to_string(), "37.5");
        assert_eq!(part("kind")["valueCode"], "contraindication");
        assert_eq!(
            find("doctor-decision").unwrap()["answerOption"][1]["valueCoding"]["display"],
            "否"
        );
        assert!(find("doctor-explained").is_some() && find("doctor-signature").is_some());
        assert!(find("guardian-consent").is_some() || find("self-consent").is_some());
        assert!(find("anaphylaxis").is_some());
    }
}

#[test]
fn live_and_specific_forms_have_their_extra_questions() {
    let has = |family: &str, link: &str| {
        flat(common::form(family))
            .iter()
            .any(|(_, i)| i["linkId"] == link)
    };
    let cases = [
        ("child", "q13-family-immunodeficiency", false),
        ("child", "q14-transfusion-globulin", false),
        ("child", "pregnancy", false),
        ("child-live", "q13-family-immunodeficiency", true),
        ("child-live", "q14-transfusion-globulin", true),
        ("child-live", "immunodeficiency", true),
        ("varicella", "q7-varicella-history", true),
        ("mr", "q7-measles-history", true),
        ("mr", "pregnancy", true),
        ("rota", "q16-rota-first-dose-window", true),
        ("rota", "q16-previous-rota-date", true),
        ("adult", "guardian-name", false),
        ("adult", "pregnancy", false),
        ("adult", "immunodeficiency", false),
        ("adult-live", "immunodeficiency", true),
    ];
    for (family, link, expected) in cases {
        assert_eq!(has(family, link), expected, "{family} {link}");
    }
}

#[test]
fn japanese_texts_are_the_standard_wording() {
    let child = flat(common::form("child"));
    let text = |link: &str| {
        child.iter().find(|(_, i)| i["linkId"] == link).unwrap().1["text"]
            .as_str()
            .unwrap()
    };
    let cases = [
        (
            "q1-read-explanation",
            "今日受ける予防接種について市町村から配られている説明書を読みましたか",
        ),
        ("q3-unwell-today", "今日体に具合の悪いところがありますか"),
        ("q4-recent-illness", "最近1か月以内に病気にかかりましたか"),
        (
            "q5-contact",
            "1か月以内に家族や遊び仲間に麻しん・風しん・水痘・おたふくかぜなどの病気の方がいましたか",
        ),
        ("q6-recent-vaccination", "1か月以内に予防接種を受けましたか"),
        (
            "q8-underlying-disease",
            "生まれてから今までに先天性異常、心臓、腎臓、肝臓、脳神経、免疫不全症その他の病気にかかり医師の診察を受けていますか",
        ),
        (
            "q8-physician-approved",
            "その病気の主治医から今日の予防接種を受けてよいと言われましたか",
        ),
        ("q9-seizure", "ひきつけ(けいれん)を起こしたことがありますか"),
        ("q9-seizure-fever", "そのとき熱は出ましたか"),
        (
            "q10-allergy",
            "薬や食品で皮膚に発疹やじんましんが出たり、体の具合が悪くなったことがありますか",
        ),
        (
            "q11-vaccine-reaction",
            "これまでに予防接種を受けて具合が悪くなったことがありますか",
        ),
        (
            "q12-relative-reaction",
            "近親者に予防接種を受けて具合が悪くなった人はいますか",
        ),
        ("q15-questions", "今日の予防接種について質問がありますか"),
        (
            "doctor-explained",
            "効果・副反応・健康被害救済制度について説明した",
        ),
        ("guardian-name", "保護者氏名"),
        ("body-temperature", "診察前の体温"),
    ];
    for (link, expected) in cases {
        assert_eq!(text(link), expected, "{link}");
    }
}

#[test]
fn every_vaccine_type_has_a_form() {
    let forms = Forms::embedded().unwrap();
    let mut mapped = forms.vaccine_types();
    mapped.sort_unstable();
    let mut expected = vaccine_types();
    expected.sort_unstable();
    assert_eq!(mapped, expected);
    let cases = [
        ("dpt-ipv-hib", "child"),
        ("je", "child"),
        ("rota-1", "rota"),
        ("rota-5", "rota"),
        ("bcg", "child-live"),
        ("mr", "mr"),
        ("varicella", "varicella"),
        ("influenza", "adult"),
        ("zoster-live", "adult-live"),
        ("zoster-recombinant", "adult"),
    ];
    for (vaccine, family) in cases {
        let q = forms.for_vaccine(vaccine).unwrap();
        assert_eq!(q["id"], format!("prevaccination-{family}"), "{vaccine}");
    }
    assert!(forms.for_vaccine("smallpox").is_none());
}

#[test]
fn canonical_lookup_takes_url_or_url_and_version() {
    let forms = Forms::embedded().unwrap();
    let url = "https://musubi.example.org/fhir/Questionnaire/prevaccination-child";
    assert!(forms.questionnaire(url).is_some());
    assert!(forms.questionnaire(&format!("{url}|1.0.0")).is_some());
    assert!(forms.questionnaire(&format!("{url}|9.9.9")).is_none());
    assert!(
        forms
            .questionnaire("https://musubi.example.org/fhir/Questionnaire/other")
            .is_none()
    );
}

fn corrected_child(version: &str, temperature_threshold: f64) -> String {
    let mut q = common::form("child").clone();
    q["version"] = json!(version);
    let temperature = &mut q["item"][0]["item"][7];
    assert_eq!(temperature["linkId"], "body-temperature");
    temperature["extension"][1]["extension"][2]["valueDecimal"] = json!(temperature_threshold);
    q.to_string()
}

#[test]
fn a_municipality_adds_a_version_and_remaps_by_data() {
    let url = "https://musubi.example.org/fhir/Questionnaire/prevaccination-child";
    let extra = vec![
        ("prevaccination-child-1.1.json".to_owned(), corrected_child("1.1.0", 37.3)),
        (
            "vaccine-forms-local.json".to_owned(),
            json!({"vaccineForms": [{"vaccineType": "bcg", "questionnaire": format!("{url}|1.1.0")}]}).to_string(),
        ),
    ];
    let forms = Forms::load(&extra).unwrap();
    assert_eq!(forms.all().len(), 8);
    assert_eq!(
        forms.questionnaire(url).unwrap()["version"],
        "1.1.0",
        "bare url → latest"
    );
    assert_eq!(
        forms.questionnaire(&format!("{url}|1.0.0")).unwrap()["version"],
        "1.0.0"
    );
    assert_eq!(forms.for_vaccine("bcg").unwrap()["version"], "1.1.0");
    assert_eq!(
        forms.for_vaccine("mr").unwrap()["id"],
        "prevaccination-mr",
        "other mappings stay"
    );
    // The corrected threshold is data: 37.3 now makes the child not eligible.
    let q = forms.questionnaire(url).unwrap();
    let qr = common::fill(q, &[("body-temperature", json!([{"valueDecimal": 37.3}]))]);
    assert_eq!(
        prevaccination::assess(q, &qr).outcome,
        prevaccination::Outcome::NotEligibleToday
    );
}

#[test]
fn a_supplied_file_replaces_the_same_version() {
    let extra = vec![("fix.json".to_owned(), corrected_child("1.0.0", 38.0))];
    let forms = Forms::load(&extra).unwrap();
    assert_eq!(forms.all().len(), 7);
}

/// Recognises the expected error variant.
type ErrorKind = fn(&PrevaccinationError) -> bool;

#[test]
fn bad_files_are_refused_with_their_name() {
    let url = "https://musubi.example.org/fhir/Questionnaire/prevaccination-child";
    let broken_rule =
        corrected_child("2.0.0", 38.0).replace("\"contraindication\"", "\"forbidden\"");
    let cases: Vec<(String, ErrorKind)> = vec![
        ("{not json".into(), |e| matches!(e, PrevaccinationError::Parse { .. })),
        ("{\"resourceType\": \"Patient\"}".into(), |e| matches!(e, PrevaccinationError::Parse { .. })),
        (broken_rule, |e| matches!(e, PrevaccinationError::InvalidQuestionnaire { .. })),
        (
            json!({"vaccineForms": [{"vaccineType": "bcg", "questionnaire": format!("{url}|7")}]}).to_string(),
            |e| matches!(e, PrevaccinationError::UnknownQuestionnaire { .. }),
        ),
        (
            json!({"vaccineForms": [{"vaccineType": "bcg", "questionnaire": url}, {"vaccineType": "bcg", "questionnaire": url}]}).to_string(),
            |e| matches!(e, PrevaccinationError::Duplicate { .. }),
        ),
        (
            json!({"vaccineForms": [{"vaccineType": "bcg", "form": url}]}).to_string(),
            |e| matches!(e, PrevaccinationError::Parse { .. }),
        ),
    ];
    for (text, expected) in cases {
        let error = Forms::load(&[("local.json".to_owned(), text.clone())]).unwrap_err();
        assert!(expected(&error), "{text:.80}: {error}");
        assert!(error.to_string().starts_with("local.json: "), "{error}");
    }
}

/// One line per item: depth, linkId, type, required, text, rules, enableWhen.
fn listing(q: &Value) -> String {
    let mut out = format!(
        "## {}|{}  {}\n",
        q["url"].as_str().unwrap(),
        q["version"].as_str().unwrap(),
        q["title"].as_str().unwrap()
    );
    for (depth, item) in flat(q) {
        let mut line = format!(
            "{}{} [{}{}] {}",
            "  ".repeat(depth),
            item["linkId"].as_str().unwrap(),
            item["type"].as_str().unwrap(),
            if item["required"] == true {
                ", required"
            } else {
                ""
            },
            item["text"].as_str().unwrap()
        );
        for condition in item["enableWhen"].as_array().into_iter().flatten() {
            let answer = condition
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.starts_with("answer"))
                .unwrap()
                .1;
            line += &format!(
                " ⟨enableWhen {} {} {answer}⟩",
                condition["question"].as_str().unwrap(),
                condition["operator"].as_str().unwrap()
            );
        }
        for rule in item["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["url"] == RULE_EXTENSION)
        {
            let parts = rule["extension"].as_array().unwrap();
            let part = |name: &str| parts.iter().find(|p| p["url"] == name).unwrap();
            let answer = part("answer")
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .unwrap()
                .1;
            let answer = answer.get("code").unwrap_or(answer);
            line += &format!(
                " ⟨{} {} {answer}⟩",
                part("kind")["valueCode"].as_str().unwrap(),
                part("operator")["valueCode"].as_str().unwrap()
            );
        }
        out += &line;
        out.push('\n');
    }
    out
}

#[test]
fn golden_item_listing() {
    let actual: String = questionnaires()
        .unwrap()
        .iter()
        .map(listing)
        .collect::<Vec<_>>()
        .join("\n");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/forms.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "the forms changed; review tests/golden/forms.txt (UPDATE_GOLDEN=1 rewrites it)"
    );
}
