//! Table tests: every scheme kind, amount rule and claim route; the edges of month close; fee
//! lookup specificity and periods; data validation; the shipped data.

use billing::{
    BillableVaccination, BillingData, ClaimBatch, Eligibility, ExceptionKind, MonthClose,
    YearMonth, claim_resource, close_month,
};
use identifiers::{FacilityCode, MunicipalityCode};
use serde_json::{Value, json};

const A: &str = "131016"; // 千代田区
const B: &str = "131024"; // 中央区
const C: &str = "131032"; // 港区
const CLINIC_B: &str = "1310200223"; // invented, valid check digit

fn fees(code: &str, entries: Value) -> String {
    json!({"kind": "fee-schedule", "municipality": code, "name": code, "illustrative": true,
           "source": "test", "fees": entries})
    .to_string()
}

/// A: mr 10000, hib 8000 (hib dose 4 9000); B: mr 12000, hib 7000, pcv 11000 (product p20 13000);
/// C: mr 9000.
fn standard_fees() -> Vec<(String, String)> {
    vec![
        (
            "fees-a.json".to_owned(),
            fees(
                A,
                json!([
                    {"vaccine_type": "mr", "from": "2025-01-01", "yen": 10000},
                    {"vaccine_type": "hib", "from": "2025-01-01", "yen": 8000},
                    {"vaccine_type": "hib", "dose": 4, "from": "2025-01-01", "yen": 9000}
                ]),
            ),
        ),
        (
            "fees-b.json".to_owned(),
            fees(
                B,
                json!([
                    {"vaccine_type": "mr", "from": "2025-01-01", "yen": 12000},
                    {"vaccine_type": "hib", "from": "2025-01-01", "yen": 7000},
                    {"vaccine_type": "pcv", "from": "2025-01-01", "yen": 11000},
                    {"vaccine_type": "pcv", "product": "p20", "from": "2025-01-01", "yen": 13000}
                ]),
            ),
        ),
        (
            "fees-c.json".to_owned(),
            fees(
                C,
                json!([{"vaccine_type": "mr", "from": "2025-01-01", "yen": 9000}]),
            ),
        ),
    ]
}

fn scheme(id: &str, kind: &str, members: &[&str], amount: &str, route: &str) -> Value {
    let mut s = json!({
        "id": id, "name": id, "kind": kind, "members": members, "amount": amount, "route": route,
        "association_due": {"day": 10, "months_after": 1}
    });
    if route != "direct-to-home" {
        s["settlement_due"] = json!({"day": 20, "months_after": 2});
    }
    if route == "via-kokuho-ren" {
        s["kokuho_ren"] = json!("13");
    }
    s
}

fn data(schemes: Vec<Value>) -> BillingData {
    let mut files = standard_fees();
    files.push((
        "schemes.json".to_owned(),
        json!({"kind": "schemes", "schemes": schemes}).to_string(),
    ));
    BillingData::from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str()))).expect("data")
}

fn local() -> Value {
    scheme("local", "local", &[], "home-municipality", "direct-to-home")
}

fn vaccination(id: &str, home: &str, vaccine: &str, date: &str) -> BillableVaccination {
    BillableVaccination {
        immunization_id: id.to_owned(),
        home_municipality: MunicipalityCode::parse(home).expect("code"),
        clinic: FacilityCode::parse(CLINIC_B).expect("clinic"),
        clinic_municipality: MunicipalityCode::parse(B).expect("code"),
        medical_association: "ma-b".to_owned(),
        vaccine_type: vaccine.to_owned(),
        product: None,
        dose_number: Some(1),
        date: billing::parse_day(date).expect("date"),
        eligibility: Eligibility::PubliclyFunded,
    }
}

fn june() -> YearMonth {
    YearMonth::parse("2025-06").expect("month")
}

/// (claimant, payer, due, [(id, amount)], total) of each batch.
type Summary = Vec<(String, String, String, Vec<(String, u64)>, u64)>;

fn summary(batches: &[ClaimBatch]) -> Summary {
    batches
        .iter()
        .map(|b| {
            (
                b.claimant.key(),
                b.payer.key(),
                billing::format_day(b.due_date),
                b.lines
                    .iter()
                    .map(|l| (l.immunization_id.clone(), l.amount.amount()))
                    .collect(),
                b.total.amount(),
            )
        })
        .collect()
}

fn batch(
    claimant: &str,
    payer: &str,
    due: &str,
    lines: &[(&str, u64)],
) -> (String, String, String, Vec<(String, u64)>, u64) {
    (
        claimant.to_owned(),
        payer.to_owned(),
        due.to_owned(),
        lines.iter().map(|(i, a)| ((*i).to_owned(), *a)).collect(),
        lines.iter().map(|(_, a)| a).sum(),
    )
}

#[test]
fn each_scheme_prices_and_routes_a_cross_municipality_vaccination() {
    // A resident of A (千代田) vaccinated at a clinic in B (中央) with mr: A's price 10000,
    // B's price 12000.
    struct Case {
        name: &'static str,
        scheme: Value,
        first: Summary,
        second: Summary,
    }
    let cases = [
        Case {
            name: "Tokyo default: B's price; association bills B, B bills A",
            scheme: scheme(
                "m",
                "mutual",
                &[A, B],
                "clinic-municipality",
                "via-clinic-municipality",
            ),
            first: vec![batch(
                "medical-association:ma-b",
                "municipality:131024",
                "2025-07-10",
                &[("v", 12000)],
            )],
            second: vec![batch(
                "municipality:131024",
                "municipality:131016",
                "2025-08-20",
                &[("v", 12000)],
            )],
        },
        Case {
            name: "home price (Chiba): A's price, billed to A directly",
            scheme: scheme(
                "m",
                "mutual",
                &[A, B],
                "home-municipality",
                "direct-to-home",
            ),
            first: vec![batch(
                "medical-association:ma-b",
                "municipality:131016",
                "2025-07-10",
                &[("v", 10000)],
            )],
            second: vec![],
        },
        Case {
            name: "via 国保連: A's price; association submits to 国保連, which bills A",
            scheme: scheme(
                "m",
                "mutual",
                &[A, B],
                "home-municipality",
                "via-kokuho-ren",
            ),
            first: vec![batch(
                "medical-association:ma-b",
                "kokuho-ren:13",
                "2025-07-10",
                &[("v", 10000)],
            )],
            second: vec![batch(
                "kokuho-ren:13",
                "municipality:131016",
                "2025-08-20",
                &[("v", 10000)],
            )],
        },
        Case {
            name: "capped at A's unit price: min(12000, 10000)",
            scheme: scheme(
                "m",
                "mutual",
                &[A, B],
                "clinic-capped-at-home",
                "direct-to-home",
            ),
            first: vec![batch(
                "medical-association:ma-b",
                "municipality:131016",
                "2025-07-10",
                &[("v", 10000)],
            )],
            second: vec![],
        },
        Case {
            name: "outside scheme applies when no mutual scheme lists both",
            scheme: scheme(
                "o",
                "outside",
                &[A],
                "clinic-capped-at-home",
                "direct-to-home",
            ),
            first: vec![batch(
                "medical-association:ma-b",
                "municipality:131016",
                "2025-07-10",
                &[("v", 10000)],
            )],
            second: vec![],
        },
    ];
    for case in cases {
        let data = data(vec![local(), case.scheme]);
        let close = close_month(june(), &[vaccination("v", A, "mr", "2025-06-10")], &data);
        assert_eq!(
            summary(&close.association_claims),
            case.first,
            "{}",
            case.name
        );
        assert_eq!(
            summary(&close.settlement_claims),
            case.second,
            "{}",
            case.name
        );
        assert!(
            close.exceptions.is_empty(),
            "{}: {:?}",
            case.name,
            close.exceptions
        );
    }
}

#[test]
fn the_cap_only_lowers_and_records_the_uncapped_price() {
    // hib: B 7000 is below A's 8000, so the cap does not bite; mr: B 12000 capped to A 10000.
    let data = data(vec![
        local(),
        scheme(
            "o",
            "outside",
            &[A],
            "clinic-capped-at-home",
            "direct-to-home",
        ),
    ]);
    let close = close_month(
        june(),
        &[
            vaccination("hib", A, "hib", "2025-06-01"),
            vaccination("mr", A, "mr", "2025-06-02"),
        ],
        &data,
    );
    let lines = &close.association_claims[0].lines;
    let got: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.immunization_id.as_str(),
                l.amount.amount(),
                l.capped_from.map(billing::Yen::amount),
                l.priced_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("hib", 7000, None, B), ("mr", 10000, Some(12000), A)]
    );
}

#[test]
fn scheme_selection_prefers_local_then_mutual_then_outside() {
    let data = data(vec![
        local(),
        scheme(
            "outside-a",
            "outside",
            &[A],
            "home-municipality",
            "direct-to-home",
        ),
        scheme(
            "mutual-ab",
            "mutual",
            &[A, B],
            "clinic-municipality",
            "via-clinic-municipality",
        ),
        scheme(
            "mutual-template",
            "mutual",
            &[],
            "home-municipality",
            "direct-to-home",
        ),
    ]);
    let code = |c: &str| MunicipalityCode::parse(c).expect("code");
    let cases = [
        (A, A, Some("local")),
        (C, C, Some("local")),
        (A, B, Some("mutual-ab")),
        (B, A, Some("mutual-ab")),
        (A, C, Some("outside-a")),
        (B, C, None),
        (C, A, None),
    ];
    for (home, clinic, expected) in cases {
        assert_eq!(
            data.scheme_for(&code(home), &code(clinic))
                .map(|s| s.id.as_str()),
            expected,
            "{home} at {clinic}"
        );
    }
}

#[test]
fn month_close_edges() {
    let data = data(vec![
        local(),
        scheme(
            "m",
            "mutual",
            &[A, B],
            "clinic-municipality",
            "via-clinic-municipality",
        ),
    ]);
    let not_funded = BillableVaccination {
        eligibility: Eligibility::NotPubliclyFunded,
        ..vaccination("nf", A, "mr", "2025-06-15")
    };
    let with_product = BillableVaccination {
        product: Some("p20".to_owned()),
        ..vaccination("p20", A, "pcv", "2025-06-16")
    };
    let other_product = BillableVaccination {
        product: Some("p15".to_owned()),
        ..vaccination("p15", A, "pcv", "2025-06-16")
    };
    let in_c = BillableVaccination {
        clinic_municipality: MunicipalityCode::parse(C).expect("code"),
        ..vaccination("c-local", C, "hib", "2025-06-16")
    };
    let no_schedule = BillableVaccination {
        home_municipality: MunicipalityCode::parse("131041").expect("新宿区"),
        clinic_municipality: MunicipalityCode::parse("131041").expect("新宿区"),
        ..vaccination("no-schedule", A, "mr", "2025-06-16")
    };
    type Expect = (
        Vec<(&'static str, u64)>,
        Vec<&'static str>,
        Vec<(&'static str, ExceptionKind)>,
    );
    let cases: Vec<(&str, Vec<BillableVaccination>, Expect)> = vec![
        (
            "first day of the month",
            vec![vaccination("d1", A, "mr", "2025-06-01")],
            (vec![("d1", 12000)], vec![], vec![]),
        ),
        (
            "last day of the month",
            vec![vaccination("d30", A, "mr", "2025-06-30")],
            (vec![("d30", 12000)], vec![], vec![]),
        ),
        (
            "the day before and after the month",
            vec![
                vaccination("may", A, "mr", "2025-05-31"),
                vaccination("july", A, "mr", "2025-07-01"),
            ],
            (
                vec![],
                vec![],
                vec![
                    ("may", ExceptionKind::OutsideMonth),
                    ("july", ExceptionKind::OutsideMonth),
                ],
            ),
        ),
        (
            "not eligible is not billed",
            vec![not_funded],
            (vec![], vec!["nf"], vec![]),
        ),
        (
            "a product price",
            vec![with_product],
            (vec![("p20", 13000)], vec![], vec![]),
        ),
        (
            "an unlisted product takes the generic price",
            vec![other_product],
            (vec![("p15", 11000)], vec![], vec![]),
        ),
        (
            "missing fee is an exception",
            vec![vaccination("bcg", A, "bcg", "2025-06-10")],
            (vec![], vec![], vec![("bcg", ExceptionKind::NoFee)]),
        ),
        (
            "missing fee in C's schedule",
            vec![in_c],
            (vec![], vec![], vec![("c-local", ExceptionKind::NoFee)]),
        ),
        (
            "a municipality without a schedule",
            vec![no_schedule],
            (
                vec![],
                vec![],
                vec![("no-schedule", ExceptionKind::NoFeeSchedule)],
            ),
        ),
        (
            "a duplicate id is billed once",
            vec![
                vaccination("dup", A, "mr", "2025-06-03"),
                vaccination("dup", A, "mr", "2025-06-04"),
            ],
            (
                vec![("dup", 12000)],
                vec![],
                vec![("dup", ExceptionKind::DuplicateImmunization)],
            ),
        ),
        (
            "no scheme for C's resident in B",
            vec![vaccination("c", C, "mr", "2025-06-03")],
            (vec![], vec![], vec![("c", ExceptionKind::NoScheme)]),
        ),
    ];
    for (name, input, (billed, not_billed, exceptions)) in cases {
        let close: MonthClose = close_month(june(), &input, &data);
        let got_billed: Vec<(&str, u64)> = close
            .association_claims
            .iter()
            .flat_map(|b| &b.lines)
            .map(|l| (l.immunization_id.as_str(), l.amount.amount()))
            .collect();
        assert_eq!(got_billed, billed, "{name}");
        let got_not: Vec<&str> = close
            .not_billed
            .iter()
            .map(|n| n.immunization_id.as_str())
            .collect();
        assert_eq!(got_not, not_billed, "{name}");
        let got_ex: Vec<(&str, ExceptionKind)> = close
            .exceptions
            .iter()
            .map(|e| (e.immunization_id.as_str(), e.kind))
            .collect();
        assert_eq!(got_ex, exceptions, "{name}");
        for e in &close.exceptions {
            assert!(!e.message.is_empty(), "{name}");
        }
    }
}

#[test]
fn fee_lookup_prefers_the_most_specific_entry_within_its_period() {
    let files = [(
        "fees.json",
        fees(
            A,
            json!([
                {"vaccine_type": "pcv", "from": "2025-04-01", "to": "2025-06-15", "yen": 100},
                {"vaccine_type": "pcv", "from": "2025-06-16", "yen": 110},
                {"vaccine_type": "pcv", "dose": 4, "from": "2025-04-01", "yen": 120},
                {"vaccine_type": "pcv", "product": "p20", "from": "2025-04-01", "yen": 130},
                {"vaccine_type": "pcv", "product": "p20", "dose": 4, "from": "2025-04-01", "yen": 140}
            ]),
        ),
    )];
    let data = BillingData::from_files(files.iter().map(|(n, t)| (*n, t.as_str()))).expect("data");
    let a = MunicipalityCode::parse(A).expect("code");
    let cases = [
        (None, Some(1), "2025-06-15", Some(100)),
        (None, Some(1), "2025-06-16", Some(110)),
        (None, None, "2025-06-16", Some(110)),
        (None, Some(4), "2025-06-01", Some(120)),
        (Some("p20"), Some(1), "2025-06-01", Some(130)),
        (Some("p20"), Some(4), "2025-06-01", Some(140)),
        (Some("p15"), Some(4), "2025-06-01", Some(120)),
        (None, Some(1), "2025-03-31", None),
    ];
    for (product, dose, date, expected) in cases {
        let got = data
            .fee(
                &a,
                "pcv",
                product,
                dose,
                billing::parse_day(date).expect("date"),
            )
            .ok()
            .map(|f| f.yen.amount());
        assert_eq!(got, expected, "{product:?} {dose:?} {date}");
    }
}

#[test]
fn due_dates_roll_over_the_year() {
    let data = data(vec![
        local(),
        scheme(
            "m",
            "mutual",
            &[A, B],
            "clinic-municipality",
            "via-clinic-municipality",
        ),
    ]);
    let december = YearMonth::parse("2025-12").expect("month");
    let close = close_month(december, &[vaccination("v", A, "mr", "2025-12-31")], &data);
    assert_eq!(
        billing::format_day(close.association_claims[0].due_date),
        "2026-01-10"
    );
    assert_eq!(
        billing::format_day(close.settlement_claims[0].due_date),
        "2026-02-20"
    );
    let claim = claim_resource(&close.association_claims[0], &data);
    assert_eq!(claim["created"], json!("2026-01-01"));
    assert_eq!(claim["billablePeriod"]["end"], json!("2025-12-31"));
}

#[test]
fn a_kokuho_ren_claim_names_the_prefecture_union() {
    let data = data(vec![
        local(),
        scheme(
            "k",
            "mutual",
            &[A, B],
            "home-municipality",
            "via-kokuho-ren",
        ),
    ]);
    let close = close_month(june(), &[vaccination("v", A, "mr", "2025-06-10")], &data);
    let claim = claim_resource(&close.association_claims[0], &data);
    assert_eq!(
        claim["insurer"],
        json!({
            "type": "Organization",
            "identifier": {"system": "https://musubi.example.org/fhir/IdSystem/kokuho-ren", "value": "13"},
            "display": "東京都国民健康保険団体連合会"
        })
    );
    let issues: Vec<_> = fhir::validate::validate_resource(fhir::Definitions::r4(), &claim)
        .into_iter()
        .filter(|i| i.severity.is_error())
        .collect();
    assert!(issues.is_empty(), "{issues:?}");
}

#[test]
fn malformed_data_is_rejected_with_file_and_reason() {
    let fee_file = |entries: Value| fees(A, entries);
    let one = |patch: Value| {
        let mut e = json!({"vaccine_type": "mr", "from": "2025-04-01", "yen": 1000});
        for (k, v) in patch.as_object().expect("object") {
            e[k] = v.clone();
        }
        fee_file(json!([e]))
    };
    let schemes = |s: Vec<Value>| json!({"kind": "schemes", "schemes": s}).to_string();
    let patched = |patch: Value| {
        let mut s = scheme(
            "s",
            "mutual",
            &[A, B],
            "home-municipality",
            "direct-to-home",
        );
        for (k, v) in patch.as_object().expect("object") {
            s[k] = v.clone();
        }
        schemes(vec![s])
    };
    let cases: Vec<(String, &str)> = vec![
        ("[".to_owned(), "EOF"),
        (json!({"fees": []}).to_string(), "missing \"kind\""),
        (json!({"kind": "tariff"}).to_string(), "unknown kind \"tariff\""),
        (one(json!({"yen": 1000.5})), "invalid"),
        (one(json!({"yen": -1})), "invalid"),
        (one(json!({"yen": "1000"})), "invalid type"),
        (one(json!({"yen": 1_000_000_001u64})), "above the 1,000,000,000円 limit"),
        (one(json!({"vaccine_type": "smallpox"})), "unknown vaccine type"),
        (one(json!({"dose": 0})), "dose numbers start at 1"),
        (one(json!({"to": "2025-03-31"})), "ends before it starts"),
        (one(json!({"from": "2025/04/01"})), "invalid date"),
        (one(json!({"product": " "})), "an empty product"),
        (one(json!({"price": 1})), "unknown field `price`"),
        (
            fee_file(json!([
                {"vaccine_type": "mr", "from": "2025-04-01", "to": "2025-06-30", "yen": 1000},
                {"vaccine_type": "mr", "from": "2025-06-30", "yen": 1100}
            ])),
            "overlaps fees[0]",
        ),
        (
            json!({"kind": "fee-schedule", "municipality": "131017", "name": "x", "illustrative": true, "source": "s", "fees": []}).to_string(),
            "bad check digit",
        ),
        (
            json!({"kind": "fee-schedule", "municipality": A, "name": "x", "illustrative": true, "source": " ", "fees": []}).to_string(),
            "must name its source",
        ),
        (patched(json!({"association_due": {"day": 31, "months_after": 1}})), "outside 1–28"),
        (patched(json!({"association_due": {"day": 10, "months_after": 0}})), "outside 1–12"),
        (patched(json!({"route": "via-clinic-municipality"})), "needs settlement_due"),
        (
            patched(json!({"settlement_due": {"day": 20, "months_after": 1}})),
            "remove settlement_due",
        ),
        (
            patched(json!({"route": "via-kokuho-ren", "settlement_due": {"day": 20, "months_after": 1}})),
            "kokuho_ren (a prefecture code) is required",
        ),
        (patched(json!({"kokuho_ren": "48"})), "prefecture"),
        (patched(json!({"kind": "local", "route": "via-clinic-municipality", "settlement_due": {"day": 20, "months_after": 1}})), "makes no sense"),
        (patched(json!({"members": [A]})), "at least two members"),
        (patched(json!({"amount": "cheapest"})), "unknown variant `cheapest`"),
        (patched(json!({"id": "with space"})), "letters, digits"),
        (
            schemes(vec![
                scheme("s", "local", &[], "home-municipality", "direct-to-home"),
                scheme("s", "local", &[], "home-municipality", "direct-to-home"),
            ]),
            "appears twice",
        ),
        (
            schemes(vec![
                scheme("one", "mutual", &[A, B, C], "home-municipality", "direct-to-home"),
                scheme("two", "mutual", &[B, C], "home-municipality", "direct-to-home"),
            ]),
            "both cover municipalities 131024, 131032",
        ),
    ];
    for (text, message) in cases {
        let err = BillingData::from_files([("bad.json", text.as_str())]).expect_err(&text);
        let shown = err.to_string();
        assert!(shown.starts_with("bad.json: "), "{shown}");
        assert!(shown.contains(message), "{text}\n→ {shown}");
    }
}

#[test]
fn extra_files_replace_a_schedule_and_a_scheme_in_place() {
    let corrected = fees(
        A,
        json!([{"vaccine_type": "mr", "from": "2025-04-01", "yen": 11111}]),
    );
    let mut replaced = scheme(
        "tokyo-23-mutual",
        "mutual",
        &[A, B],
        "home-municipality",
        "direct-to-home",
    );
    replaced["name"] = json!("corrected");
    let extra = vec![
        ("fees-131016-2025.json".to_owned(), corrected),
        (
            "schemes-local.json".to_owned(),
            json!({"kind": "schemes", "schemes": [replaced]}).to_string(),
        ),
    ];
    let data = BillingData::load(&extra).expect("load");
    let a = MunicipalityCode::parse(A).expect("code");
    let fee = data
        .fee(
            &a,
            "mr",
            None,
            Some(1),
            billing::parse_day("2025-06-01").expect("date"),
        )
        .expect("fee");
    assert_eq!(fee.yen.amount(), 11111);
    // The corrected schedule replaced the whole shipped one: its hib price is gone.
    assert!(
        data.fee(
            &a,
            "hib",
            None,
            Some(1),
            billing::parse_day("2025-06-01").expect("date")
        )
        .is_err()
    );
    let embedded = BillingData::embedded().expect("embedded");
    let position = |d: &BillingData| d.schemes().iter().position(|s| s.id == "tokyo-23-mutual");
    assert_eq!(position(&data), position(embedded));
    assert_eq!(
        data.scheme("tokyo-23-mutual").map(|s| s.name.as_str()),
        Some("corrected")
    );
    assert_eq!(data.schemes().len(), embedded.schemes().len());
}

#[test]
fn shipped_data_is_illustrative_and_selects_the_tokyo_schemes() {
    let data = BillingData::embedded().expect("embedded data loads");
    let codes: Vec<&str> = data.schedules().map(|s| s.municipality.as_str()).collect();
    assert_eq!(codes, vec!["131016", "131024", "131032"]);
    for schedule in data.schedules() {
        assert!(schedule.illustrative, "{}", schedule.municipality);
        assert!(
            schedule.source.contains("ILLUSTRATIVE"),
            "{}",
            schedule.municipality
        );
    }
    let code = |c: &str| MunicipalityCode::parse(c).expect("code");
    let cases = [
        (A, A, Some("local")),
        (A, C, Some("tokyo-23-mutual")),
        ("131237", A, Some("tokyo-23-mutual")),
        (A, "132039", Some("tokyo-23-outside")),
        ("132039", A, None),
    ];
    for (home, clinic, expected) in cases {
        assert_eq!(
            data.scheme_for(&code(home), &code(clinic))
                .map(|s| s.id.as_str()),
            expected,
            "{home} at {clinic}"
        );
    }
    let tokyo = data.scheme("tokyo-23-mutual").expect("tokyo");
    assert_eq!(tokyo.members.len(), 23);
    for field in ["amount", "route", "association_due", "settlement_due"] {
        assert!(
            tokyo.inferred.iter().any(|f| f == field),
            "{field} must be flagged inferred"
        );
    }
    // A 千代田区 resident at a 港区 clinic on the shipped data: 港区's price, billed via 港区.
    let v = BillableVaccination {
        clinic_municipality: code(C),
        ..vaccination("v", A, "mr", "2025-06-10")
    };
    let close = close_month(june(), &[v], data);
    assert_eq!(
        summary(&close.association_claims),
        vec![batch(
            "medical-association:ma-b",
            "municipality:131032",
            "2025-07-10",
            &[("v", 10400)]
        )]
    );
    assert_eq!(
        summary(&close.settlement_claims),
        vec![batch(
            "municipality:131032",
            "municipality:131016",
            "2025-07-20",
            &[("v", 10400)]
        )]
    );
}
