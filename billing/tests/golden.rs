//! Golden test: a month of vaccinations across three municipalities and two medical
//! associations, closed against fixture data; the totals were computed by hand
//! (tests/golden/2025-06/expected.json, `_computation`).

use billing::{BillableVaccination, BillingData, YearMonth, claim_resource, close_month};
use fhir::Definitions;
use serde_json::{Value, json};

const FILES: &[(&str, &str)] = &[
    (
        "fees-131016.json",
        include_str!("golden/2025-06/fees-131016.json"),
    ),
    (
        "fees-131024.json",
        include_str!("golden/2025-06/fees-131024.json"),
    ),
    (
        "fees-132039.json",
        include_str!("golden/2025-06/fees-132039.json"),
    ),
    ("schemes.json", include_str!("golden/2025-06/schemes.json")),
];
const VACCINATIONS: &str = include_str!("golden/2025-06/vaccinations.json");
const EXPECTED: &str = include_str!("golden/2025-06/expected.json");

fn fixture() -> (YearMonth, Vec<BillableVaccination>, BillingData) {
    let data = BillingData::from_files(FILES.iter().copied()).expect("fixture data loads");
    let input: Value = serde_json::from_str(VACCINATIONS).expect("json");
    let month = YearMonth::parse(input["month"].as_str().expect("month")).expect("month");
    let vaccinations = input["vaccinations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v.as_object_mut().expect("object").remove("note");
            serde_json::from_value(v).expect("a billable vaccination")
        })
        .collect();
    (month, vaccinations, data)
}

fn project_batches(batches: &[billing::ClaimBatch]) -> Value {
    batches
        .iter()
        .map(|b| {
            json!({
                "claimant": b.claimant.key(),
                "payer": b.payer.key(),
                "due_date": billing::format_day(b.due_date),
                "lines": b.lines.iter().map(|l| json!([
                    l.immunization_id,
                    l.scheme,
                    l.amount.amount(),
                    l.capped_from.map(billing::Yen::amount)
                ])).collect::<Vec<_>>(),
                "total": b.total.amount()
            })
        })
        .collect()
}

#[test]
fn month_close_matches_the_hand_computed_golden_file() {
    let (month, vaccinations, data) = fixture();
    let close = close_month(month, &vaccinations, &data);
    let mut expected: Value = serde_json::from_str(EXPECTED).expect("json");
    expected
        .as_object_mut()
        .expect("object")
        .remove("_computation");
    let got = json!({
        "association_claims": project_batches(&close.association_claims),
        "association_total": close.association_total().amount(),
        "settlement_claims": project_batches(&close.settlement_claims),
        "not_billed": close.not_billed.iter().map(|n| n.immunization_id.clone()).collect::<Vec<_>>(),
        "exceptions": close.exceptions.iter().map(|e| json!([
            e.immunization_id,
            serde_json::to_value(e.kind).expect("kind")
        ])).collect::<Vec<_>>()
    });
    assert_eq!(
        got,
        expected,
        "got:\n{}",
        serde_json::to_string_pretty(&got).expect("json")
    );
    // Every input is accounted for: billed once, not billed, or an exception.
    let billed: usize = close.association_claims.iter().map(|b| b.lines.len()).sum();
    assert_eq!(
        billed + close.not_billed.len() + close.exceptions.len(),
        vaccinations.len()
    );
    // Each settlement line is the same line its association claim carried.
    for settlement in &close.settlement_claims {
        for line in &settlement.lines {
            let first = close
                .association_claims
                .iter()
                .flat_map(|b| &b.lines)
                .find(|l| l.immunization_id == line.immunization_id)
                .expect("billed first by an association");
            assert_eq!(first, line);
        }
    }
}

#[test]
fn month_close_is_deterministic_and_ids_are_unique() {
    let (month, vaccinations, data) = fixture();
    let a = close_month(month, &vaccinations, &data);
    let mut reversed = vaccinations.clone();
    // Reversing the input changes which imm-01 counts as the duplicate, but the two are
    // identical, so the claims stay the same.
    reversed.reverse();
    let b = close_month(month, &reversed, &data);
    assert_eq!(a.association_claims, b.association_claims);
    assert_eq!(a.settlement_claims, b.settlement_claims);
    let mut ids: Vec<&str> = a
        .association_claims
        .iter()
        .chain(&a.settlement_claims)
        .map(|b| b.id.as_str())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn every_batch_maps_to_a_structurally_valid_r4_claim() {
    let (month, vaccinations, data) = fixture();
    let close = close_month(month, &vaccinations, &data);
    let defs = Definitions::r4();
    for batch in close
        .association_claims
        .iter()
        .chain(&close.settlement_claims)
    {
        let claim = claim_resource(batch, &data);
        let issues: Vec<_> = fhir::validate::validate_resource(defs, &claim)
            .into_iter()
            .filter(|i| i.severity.is_error())
            .collect();
        assert!(issues.is_empty(), "{}: {issues:?}", batch.id);
        assert_eq!(claim["id"], json!(batch.id));
        assert_eq!(claim["use"], json!("claim"));
        assert_eq!(
            claim["total"],
            json!({"value": batch.total.amount(), "currency": "JPY"})
        );
        let items = claim["item"].as_array().expect("items");
        assert_eq!(items.len(), batch.lines.len());
        let sum: u64 = items
            .iter()
            .map(|i| i["net"]["value"].as_u64().expect("integer yen"))
            .sum();
        assert_eq!(sum, batch.total.amount());
        // Money values are written as JSON integers, never as decimals.
        assert!(!claim.to_string().contains(".0,"), "{claim}");
    }
    // The first batch, checked field by field.
    let first = &close.association_claims[0];
    let claim = claim_resource(first, &data);
    assert_eq!(
        claim["provider"],
        json!({"reference": "Organization/ma-chiyoda"})
    );
    assert_eq!(
        claim["insurer"],
        json!({
            "type": "Organization",
            "identifier": {"system": "https://musubi.example.org/fhir/IdSystem/municipality-code", "value": "131016"},
            "display": "千代田区"
        })
    );
    assert_eq!(
        claim["billablePeriod"],
        json!({"start": "2025-06-01", "end": "2025-06-30"})
    );
    assert_eq!(claim["created"], json!("2025-07-01"));
    assert_eq!(claim["careTeam"].as_array().map(Vec::len), Some(1));
    let item = &claim["item"][0];
    assert_eq!(item["net"], json!({"value": 10000, "currency": "JPY"}));
    assert_eq!(item["servicedDate"], json!("2025-06-02"));
    assert_eq!(
        item["productOrService"]["coding"][0],
        json!({"system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": "mr"})
    );
    assert_eq!(
        claim["supportingInfo"][0]["valueReference"],
        json!({"reference": "Immunization/imm-01"})
    );
    // The settlement claim is from the clinic ward to the home ward.
    let settlement = claim_resource(&close.settlement_claims[0], &data);
    assert_eq!(
        settlement["provider"]["identifier"]["value"],
        json!("131016")
    );
    assert_eq!(
        settlement["insurer"]["identifier"]["value"],
        json!("131024")
    );
    assert_eq!(settlement["insurer"]["display"], json!("中央区"));
}
