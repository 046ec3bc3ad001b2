//! parse → validate → serialize for the resources Musubi writes most (criterion).
//!
//! `cargo bench -p fhir --bench pipeline`; results and the command are in docs/performance.md.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fhir::Definitions;
use std::hint::black_box;

const IMMUNIZATION: &str = r#"{"resourceType":"Immunization","id":"imm-1","status":"completed",
"vaccineCode":{"coding":[{"system":"urn:oid:1.2.392.200119.4.403.1","code":"2.1","display":"沈降精製百日せきジフテリア破傷風不活化ポリオ混合ワクチン"}]},
"patient":{"reference":"Patient/p1"},"occurrenceDateTime":"2024-06-03T10:30:00+09:00","primarySource":true,
"lotNumber":"A123B","expirationDate":"2025-03-31","site":{"text":"左上腕"},"route":{"text":"皮下"},
"doseQuantity":{"value":0.5,"unit":"mL","system":"http://unitsofmeasure.org","code":"mL"},
"performer":[{"actor":{"reference":"Practitioner/dr-1"}}],
"protocolApplied":[{"targetDisease":[{"text":"百日せき"},{"text":"ジフテリア"},{"text":"破傷風"},{"text":"ポリオ"}],"doseNumberPositiveInt":1}]}"#;

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1",
"identifier":[{"system":"urn:oid:1.2.392.100495.20.3.51.11310000001","value":"00012345"}],
"name":[{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"IDE"}],"use":"official","text":"山田　太郎","family":"山田","given":["太郎"]},
{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}],"use":"official","text":"ヤマダ　タロウ","family":"ヤマダ","given":["タロウ"]}],
"telecom":[{"system":"phone","value":"03-1234-5678","use":"home"}],"gender":"male","birthDate":"2020-02-29",
"address":[{"text":"東京都新宿区西新宿２－８－１","postalCode":"163-8001","country":"JP"}]}"#;

fn pipeline(c: &mut Criterion) {
    let defs = Definitions::r4();
    let mut group = c.benchmark_group("parse_validate_serialize");
    for (name, text) in [("Immunization", IMMUNIZATION), ("Patient", PATIENT)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let value: serde_json::Value = serde_json::from_str(black_box(text)).unwrap();
                let issues = fhir::validate::validate_resource(defs, &value);
                assert!(issues.is_empty());
                serde_json::to_vec(&value).unwrap()
            })
        });
        group.bench_function(format!("{name}/validate_only"), |b| {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            b.iter(|| fhir::validate::validate_resource(defs, black_box(&value)))
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
