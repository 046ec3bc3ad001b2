//! Loading layouts and overrides: the shipped files load, and broken files fail with an error
//! that names the file and the problem.

use identifiers::MunicipalityCode;
use municipal::{Encoding, Kind, Layouts, MunicipalError};

#[test]
fn shipped_layouts_load() {
    let layouts = Layouts::embedded().unwrap();
    assert_eq!(
        layouts.names(),
        [
            "musubi-infant-checkup",
            "musubi-pregnancy-checkup",
            "musubi-vaccination",
            "vrs-vaccination"
        ]
    );
    let code = MunicipalityCode::parse("131016").unwrap();
    let cases = [
        (
            "musubi-vaccination",
            Kind::Vaccination,
            "Immunization",
            Encoding::Utf8,
            18,
        ),
        (
            "musubi-infant-checkup",
            Kind::InfantCheckup,
            "Encounter",
            Encoding::Utf8,
            13,
        ),
        (
            "musubi-pregnancy-checkup",
            Kind::PregnancyCheckup,
            "Encounter",
            Encoding::Utf8,
            7,
        ),
        (
            "vrs-vaccination",
            Kind::Vaccination,
            "Immunization",
            Encoding::Cp932,
            41,
        ),
    ];
    for (name, kind, record, encoding, columns) in cases {
        let layout = layouts.resolve(name, &code).unwrap();
        assert_eq!(layout.name(), name);
        assert_eq!(layout.kind(), kind);
        assert_eq!(layout.record_type(), record);
        assert_eq!(layout.encoding(), encoding);
        assert_eq!(layout.columns().len(), columns, "{name}");
    }
    assert!(matches!(
        layouts.resolve("nope", &code),
        Err(MunicipalError::UnknownLayout { .. })
    ));
}

#[test]
fn broken_files_are_refused_with_the_file_named() {
    let override_with = |body: &str| {
        format!(
            r#"{{"kind": "override", "layout": "musubi-vaccination", "municipality": "131016", {body}}}"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("{".to_owned(), "not JSON"),
        (r#"{"kind": "table"}"#.to_owned(), "\"kind\" must be"),
        (
            r#"{"kind": "override", "layout": "musubi-vaccination", "municipality": "131017"}"#.to_owned(),
            "bad check digit",
        ),
        (
            r#"{"kind": "override", "layout": "no-such", "municipality": "131016"}"#.to_owned(),
            "unknown layout \"no-such\"",
        ),
        (override_with(r#""rename": [["存在しない", "x"]]"#), "rename: no column \"存在しない\""),
        (
            override_with(r#""columns": [{"header": "新しい列"}]"#),
            "new columns must be \"ignore\": true",
        ),
        (
            override_with(r#""columns": [{"header": "氏名"}]"#),
            "the layout has no resident-number column",
        ),
        (
            override_with(r#""codes": {"vaccine": {"entries": [["X", "smallpox"]]}}"#),
            "unknown canonical code \"smallpox\"",
        ),
        (
            override_with(r#""codes": {"sex": {"replace": true, "entries": [["1", null], ["2", null]]}}"#),
            "would be empty",
        ),
        (override_with(r#""encoding": "latin-1""#), "unknown encoding"),
        (
            r#"{"kind": "layout", "name": "x", "recordKind": "vaccination", "title": "t", "source": "s",
                "encoding": "utf-8", "header": true, "delimiter": ",", "lineEnd": "lf", "dateFormat": "yyyymmdd",
                "columns": [{"header": "宛名番号", "field": "resident-number", "required": true},
                            {"header": "身長", "field": "height", "type": "decimal", "maxDecimals": 1}]}"#
                .to_owned(),
            "field height is not used by vaccination layouts",
        ),
    ];
    for (text, expected) in cases {
        let err = Layouts::load(&[("extra-file.json".to_owned(), text.clone())]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("municipal data extra-file.json: ") && message.contains(expected),
            "{text}\n→ {message}"
        );
    }
}
