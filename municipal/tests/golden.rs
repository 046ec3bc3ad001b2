//! Golden tests: each shipped layout in each encoding, CSV in → FHIR Bundle out (compared with
//! `golden/*.bundle.json`), the resources valid against R4 and the JP Core profiles, and the
//! export reproducing the input byte for byte. `UPDATE_GOLDEN=1` rewrites the bundle files.

mod support;

use municipal::{Encoding, EncodingChoice, ExportRecord, Layouts, export_file, export_row};
use support::{Store, golden, import_all, muni, stored_records, validate_all};

const ROUND_TRIP: &[&str] = &[
    "musubi-vaccination",
    "musubi-infant-checkup",
    "musubi-pregnancy-checkup",
];
const ENCODINGS: &[&str] = &["utf-8", "utf-8-bom", "cp932"];

#[test]
fn every_layout_in_every_encoding_maps_to_the_golden_bundle_and_round_trips() {
    let layouts = Layouts::embedded().unwrap();
    for name in ROUND_TRIP {
        let layout = layouts.resolve(name, &muni()).unwrap();
        for enc in ENCODINGS {
            let input = golden(&format!("{name}.{enc}.csv"));
            let (rows, errors, detected) = import_all(&layout, &input, EncodingChoice::Auto);
            assert!(errors.is_empty(), "{name} {enc}: {errors:?}");
            assert_eq!(detected, enc.parse::<Encoding>().unwrap(), "{name} {enc}");
            let store = Store::from_rows(&rows);
            support::check_bundle(&format!("{name}.bundle.json"), &store);
            validate_all(&store);
            let records = stored_records(&layout, &store);
            let mut exported: Vec<(String, String)> = records
                .iter()
                .map(|(p, r, o)| {
                    export_row(
                        &layout,
                        &ExportRecord {
                            patient: p,
                            record: r,
                            observations: o,
                        },
                    )
                    .unwrap()
                })
                .collect();
            exported.sort();
            let bytes = export_file(
                &layout,
                enc.parse().unwrap(),
                exported.into_iter().map(|(_, row)| row),
            );
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&input),
                "{name} {enc}: export differs"
            );
            assert_eq!(bytes, input, "{name} {enc}: export differs in bytes");
        }
    }
}

#[test]
fn vrs_dose_blocks_become_one_immunization_each_and_the_layout_is_import_only() {
    let layouts = Layouts::embedded().unwrap();
    let layout = layouts.resolve("vrs-vaccination", &muni()).unwrap();
    assert_eq!(layout.encoding(), Encoding::Cp932);
    for enc in ["cp932", "utf-8"] {
        let input = golden(&format!("vrs-vaccination.{enc}.csv"));
        let (rows, errors, _) = import_all(&layout, &input, EncodingChoice::Auto);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows.len(), 2);
        // Row 1 holds three doses, row 2 one: Patient + doses.
        assert_eq!(rows[0].resources.len(), 4);
        assert_eq!(rows[1].resources.len(), 2);
        let doses: Vec<u64> = rows[0].resources[1..]
            .iter()
            .map(|r| {
                r.resource["protocolApplied"][0]["doseNumberPositiveInt"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(doses, [1, 2, 3]);
        let store = Store::from_rows(&rows);
        support::check_bundle("vrs-vaccination.bundle.json", &store);
        validate_all(&store);
    }
    let (rows, _, _) = import_all(
        &layout,
        &golden("vrs-vaccination.cp932.csv"),
        EncodingChoice::Auto,
    );
    let record = ExportRecord {
        patient: &rows[0].resources[0].resource,
        record: &rows[0].resources[1].resource,
        observations: &[],
    };
    let err = export_row(&layout, &record).unwrap_err();
    assert!(err.reason.contains("import-only"), "{err}");
}

#[test]
fn a_municipality_override_absorbs_headers_codes_encoding_and_date_format() {
    let extra = vec![(
        "override-musubi-vaccination-131016.json".to_owned(),
        String::from_utf8(support::fixture("override-musubi-vaccination-131016.json")).unwrap(),
    )];
    let layouts = Layouts::load(&extra).unwrap();
    let layout = layouts.resolve("musubi-vaccination", &muni()).unwrap();
    assert_eq!(
        layout.override_file(),
        Some("override-musubi-vaccination-131016.json")
    );
    assert_eq!(layout.encoding(), Encoding::Cp932);
    let input = golden("override-131016.cp932.csv");
    let (rows, errors, detected) = import_all(&layout, &input, EncodingChoice::Auto);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(detected, Encoding::Cp932);
    // Same people and doses as the standard layout's golden file: the difference is absorbed
    // by data alone.
    let store = Store::from_rows(&rows);
    support::check_bundle("musubi-vaccination.bundle.json", &store);
    let records = stored_records(&layout, &store);
    let mut exported: Vec<(String, String)> = records
        .iter()
        .map(|(p, r, o)| {
            export_row(
                &layout,
                &ExportRecord {
                    patient: p,
                    record: r,
                    observations: o,
                },
            )
            .unwrap()
        })
        .collect();
    exported.sort();
    let bytes = export_file(
        &layout,
        Encoding::Cp932,
        exported.into_iter().map(|(_, r)| r),
    );
    assert_eq!(bytes, input);
    // Another municipality still gets the standard layout.
    let other = identifiers::MunicipalityCode::parse("131041").unwrap();
    let standard = layouts.resolve("musubi-vaccination", &other).unwrap();
    assert_eq!(standard.override_file(), None);
    assert_eq!(standard.columns()[0].header, "宛名番号");
}

/// `ok <line> <key>` for a mapped row, the error's Display otherwise.
fn report(layout: &municipal::Layout, input: &[u8]) -> String {
    let import = municipal::Import::new(layout, &muni(), input, EncodingChoice::Auto).unwrap();
    let mut out = String::new();
    for item in import {
        match item {
            Ok(row) => out.push_str(&format!("ok {}\n", row.line)),
            Err(e) => out.push_str(&format!("{e}\n")),
        }
    }
    out
}

fn check_report(file: &str, expected_file: &str) {
    let layouts = Layouts::embedded().unwrap();
    let layout = layouts.resolve("musubi-vaccination", &muni()).unwrap();
    let actual = report(&layout, &golden(file));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(expected_file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(actual, expected, "{file}");
}

#[test]
fn broken_rows_are_reported_exactly_and_every_good_row_is_mapped() {
    check_report(
        "broken-vaccination.utf-8.csv",
        "broken-vaccination.expected.txt",
    );
}

#[test]
fn a_line_in_another_encoding_is_reported_and_the_rest_imported() {
    check_report(
        "mixed.cp932-with-utf-8-line.csv",
        "mixed.cp932-with-utf-8-line.expected.txt",
    );
    check_report(
        "mixed.utf-8-with-cp932-line.csv",
        "mixed.utf-8-with-cp932-line.expected.txt",
    );
}
