//! The streaming reader at scale (bounded memory), header checks, idempotent ids, My Number
//! never kept, and the PMH-style JSON form.

mod support;

use std::io::Read;

use municipal::{
    EncodingChoice, ExportRecord, Import, Layouts, MunicipalError, json_export, json_import,
};
use serde_json::{Value, json};
use support::{Store, golden, import_all, muni, stored_records};

const HEADER: &str = "宛名番号,氏名,氏名カナ,性別,生年月日,郵便番号,住所,個人番号,接種日,ワクチン種類,医薬品コード,接種回数,ロット番号,接種医師名,医療機関コード,医療機関名,接種地自治体コード,登録日時\r\n";

fn row(i: usize) -> String {
    format!(
        "{i:07},山田　太郎,ﾔﾏﾀﾞ ﾀﾛｳ,1,20230101,102-8688,\"東京都千代田区九段南1-2-1, {i}号\",123456789012,2024{:02}{:02},pcv,,1,LOT{i},佐藤　一郎,0110113719,こどもクリニック,131016,\r\n",
        1 + i % 12,
        1 + i % 28
    )
}

/// Generates the file row by row as it is read, so the test itself holds no large buffer, and
/// records how many bytes the import has pulled.
struct Generated {
    next: usize,
    rows: usize,
    pending: Vec<u8>,
    offset: usize,
    produced: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.offset == self.pending.len() {
            if self.next == self.rows {
                return Ok(0);
            }
            self.pending = if self.next == 0 && self.produced == 0 {
                HEADER.as_bytes().to_vec()
            } else {
                let r = row(self.next).into_bytes();
                self.next += 1;
                r
            };
            self.offset = 0;
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        self.produced += n as u64;
        Ok(n)
    }
}

#[test]
fn two_hundred_thousand_rows_stream_with_bounded_memory() {
    let rows = 200_000;
    let layout = Layouts::embedded()
        .unwrap()
        .resolve("musubi-vaccination", &muni())
        .unwrap();
    let input = Generated {
        next: 0,
        rows,
        pending: Vec::new(),
        offset: 0,
        produced: 0,
    };
    let mut import = Import::new(&layout, &muni(), input, EncodingChoice::Auto).unwrap();
    let mut consumed = HEADER.len() as u64;
    let mut max_capacity = 0;
    let mut count = 0;
    while let Some(item) = import.next() {
        let mapped = item.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mapped.line, count as u64 + 2);
        consumed += row(count).len() as u64;
        count += 1;
        // The reader is never more than one input chunk (64 KiB) ahead of the rows handed out.
        assert!(import.bytes_read() <= consumed + 64 * 1024, "row {count}");
        max_capacity = max_capacity.max(import.buffered_capacity());
    }
    assert_eq!(count, rows);
    assert_eq!(import.bytes_read(), consumed);
    assert!(
        max_capacity < 256 * 1024,
        "buffers grew to {max_capacity} bytes"
    );
}

#[test]
fn a_wrong_header_is_a_whole_file_error_naming_the_columns() {
    let layout = Layouts::embedded()
        .unwrap()
        .resolve("musubi-pregnancy-checkup", &muni())
        .unwrap();
    let cases: &[(&str, Option<Vec<&str>>)] = &[
        (
            "宛名番号,氏名,カナ,生年月日,診察月日,妊娠週数\n",
            Some(vec![
                "column 3 is \"カナ\", expected \"氏名カナ\"",
                "column 7 \"体重\" is missing",
            ]),
        ),
        (
            "宛名番号,氏名,氏名カナ,生年月日,診察月日,妊娠週数,体重,備考\n",
            Some(vec!["column 8 \"備考\" is not in the layout"]),
        ),
        (
            "宛名番号,氏名,氏名カナ,生年月日,診察月日,妊娠週数,体重\n",
            None,
        ),
    ];
    for (header, expected) in cases {
        let result = Import::new(&layout, &muni(), header.as_bytes(), EncodingChoice::Auto);
        match (result, expected) {
            (Ok(_), None) => {}
            (Err(MunicipalError::Header { problems, .. }), Some(expected)) => {
                assert_eq!(&problems, expected, "{header}");
            }
            (other, _) => panic!("{header}: {other:?}"),
        }
    }
    let empty = Import::new(&layout, &muni(), &b""[..], EncodingChoice::Auto);
    assert!(matches!(empty, Err(MunicipalError::EmptyFile { .. })));
}

#[test]
fn reimport_gives_the_same_ids_and_my_number_is_never_kept() {
    let layout = Layouts::embedded()
        .unwrap()
        .resolve("musubi-vaccination", &muni())
        .unwrap();
    let input = format!("{HEADER}{}", row(7));
    let (first, errors, _) = import_all(&layout, input.as_bytes(), EncodingChoice::Auto);
    assert!(errors.is_empty());
    let (second, _, _) = import_all(&layout, input.as_bytes(), EncodingChoice::Auto);
    assert_eq!(first, second);
    // A corrected lot number keeps the ids (same person, vaccine and day): an update.
    let corrected = input.replace("LOT7", "LOT7B");
    let (third, _, _) = import_all(&layout, corrected.as_bytes(), EncodingChoice::Auto);
    let ids = |rows: &[municipal::MappedRow]| {
        rows[0]
            .resources
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ids(&third));
    assert!(first[0].key.starts_with("Immunization/"));
    for r in &first[0].resources {
        let text = r.resource.to_string();
        assert!(
            !text.contains("123456789012"),
            "My Number leaked into {text}"
        );
        assert!(r.id.len() <= 64 && r.id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    // Half-width kana became full-width; kanji and kana are separate JP Core names.
    let patient = &first[0].resources[0].resource;
    assert_eq!(patient["name"][1]["text"], "ヤマダ タロウ");
    assert_eq!(patient["name"][1]["extension"][0]["valueCode"], "SYL");
    assert_eq!(patient["name"][0]["family"], "山田");
    assert_eq!(patient["address"][0]["state"], "東京都");
    assert_eq!(patient["address"][0]["extension"][0]["valueCode"], "131016");
}

fn vaccination_body() -> Value {
    json!({"records": [
        {"modificationSeg": "1", "municipalityIdentityKey": "0000101", "name": "山田　花子",
         "nameKana": "ヤマダ　ハナコ", "sex": "2", "birthDate": "2024-01-15", "postalCode": "102-8688",
         "address": "東京都千代田区九段南1-2-1", "vaccinationDate": "2024-03-20", "vaccine": "dpt-ipv-hib",
         "productCode": "636140FG1020", "doseNumber": "1", "lotNumber": "AB123", "doctorName": "佐藤　一郎",
         "institutionCode": "0110113719", "institutionName": "こども\"ひかり\"クリニック",
         "vaccinatingMunicipality": "131016", "registeredAt": "2024-03-20T10:30:00+09:00"},
        {"modificationSeg": "1", "municipalityIdentityKey": "0000303", "name": "高橋", "sex": "1",
         "birthDate": "2023-03-01", "address": "東京都千代田区", "vaccinationDate": "2023-06-01",
         "vaccine": "bcg", "doseNumber": "1"}
    ]})
}

#[test]
fn json_records_map_like_csv_rows_and_export_back_to_the_same_body() {
    let layout = Layouts::embedded()
        .unwrap()
        .resolve("musubi-vaccination", &muni())
        .unwrap();
    let body = vaccination_body();
    let results = json_import(&layout, &muni(), body.to_string().as_bytes()).unwrap();
    let rows: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(rows.iter().all(|r| !r.delete));
    // The same records as the CSV golden file give the same resources.
    let (csv_rows, _, _) = import_all(
        &layout,
        &golden("musubi-vaccination.utf-8.csv"),
        EncodingChoice::Auto,
    );
    let csv = Store::from_rows(&csv_rows);
    for row in &rows {
        for r in &row.row.resources {
            assert_eq!(
                csv.0.get(&(r.resource_type.to_owned(), r.id.clone())),
                Some(&r.resource),
                "{}",
                r.id
            );
        }
    }
    let store = Store::from_rows(&rows.iter().map(|r| r.row.clone()).collect::<Vec<_>>());
    support::validate_all(&store);
    let records = stored_records(&layout, &store);
    let mut export: Vec<ExportRecord<'_>> = records
        .iter()
        .map(|(p, r, o)| ExportRecord {
            patient: p,
            record: r,
            observations: o,
        })
        .collect();
    // Store order is by id; the body lists 0000101 first.
    export.sort_by_key(|e| {
        e.patient["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    let exported = json_export(&layout, &export).unwrap();
    assert_eq!(exported, body);
}

#[test]
fn json_deletes_name_the_record_resources_and_bad_records_are_reported() {
    let layout = Layouts::embedded()
        .unwrap()
        .resolve("musubi-infant-checkup", &muni())
        .unwrap();
    let body = json!({"records": [
        {"modificationSeg": "2", "municipalityIdentityKey": "0000101", "checkupKind": "1", "checkupDate": "2024-05-20", "myNumber": "123456789012"},
        {"modificationSeg": "3", "municipalityIdentityKey": "0000101"},
        {"modificationSeg": "1", "municipalityIdentityKey": "0000101", "name": "山田　花子", "sex": "2",
         "birthDate": "2024-01-15", "checkupKind": "1", "checkupDate": "2024-02-30"},
        {"modificationSeg": "1", "municipalityIdentityKey": "0000101", "shoeSize": "12"},
        {"modificationSeg": "2", "checkupKind": "1", "checkupDate": "2024-05-20"}
    ]});
    let results = json_import(&layout, &muni(), body.to_string().as_bytes()).unwrap();
    let deleted = results[0].as_ref().unwrap();
    assert!(deleted.delete);
    // The Encounter and one Observation per observation column, never the Patient.
    let types: Vec<&str> = deleted
        .row
        .resources
        .iter()
        .map(|r| r.resource_type)
        .collect();
    assert_eq!(types[0], "Encounter");
    assert_eq!(types.len(), 1 + 7 - 1, "{types:?}");
    assert!(!types.contains(&"Patient"));
    // The ids are the ones the CSV import gave the same check-up.
    let (csv_rows, _, _) = import_all(
        &layout,
        &golden("musubi-infant-checkup.utf-8.csv"),
        EncodingChoice::Auto,
    );
    let csv_ids: Vec<&str> = csv_rows[0].resources[1..]
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    let delete_ids: Vec<&str> = deleted
        .row
        .resources
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(csv_ids, delete_ids);
    assert!(
        !deleted
            .row
            .resources
            .iter()
            .any(|r| r.resource.to_string().contains("123456789012"))
    );
    let errors: Vec<String> = results[1..]
        .iter()
        .map(|r| r.as_ref().unwrap_err().to_string())
        .collect();
    assert_eq!(
        errors,
        [
            "line 2, column modificationSeg (\"3\"): must be \"1\" (register or update) or \"2\" (delete)",
            "line 3, column checkupDate (\"2024-02-30\"): impossible date (no such day)",
            "line 4, column shoeSize: not a member of this layout",
            "line 5, column residentNumber: missing required value",
        ]
    );
    assert!(matches!(
        json_import(&layout, &muni(), b"{\"rows\": []}"),
        Err(MunicipalError::Json(_))
    ));
    let vrs = Layouts::embedded()
        .unwrap()
        .resolve("vrs-vaccination", &muni())
        .unwrap();
    assert!(vrs.patient_is_partial());
    assert!(!layout.patient_is_partial());
    assert!(matches!(
        json_import(&vrs, &muni(), b"[]"),
        Err(MunicipalError::Unsupported { .. })
    ));
}
