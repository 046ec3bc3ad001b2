//! Import throughput: a generated 100 000-row musubi-vaccination file, read, checked and mapped
//! to FHIR resources (criterion). `cargo bench -p municipal --bench import`; the result is in
//! docs/municipal.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use identifiers::MunicipalityCode;
use municipal::{EncodingChoice, Import, Layouts};

const ROWS: usize = 100_000;

fn generated_file() -> Vec<u8> {
    let mut out = "宛名番号,氏名,氏名カナ,性別,生年月日,郵便番号,住所,個人番号,接種日,ワクチン種類,医薬品コード,接種回数,ロット番号,接種医師名,医療機関コード,医療機関名,接種地自治体コード,登録日時\r\n".to_owned();
    let vaccines = ["dpt-ipv-hib", "pcv", "hib", "mr", "influenza"];
    for i in 0..ROWS {
        let day = 1 + i % 28;
        let month = 1 + (i / 28) % 12;
        out.push_str(&format!(
            "{:07},山田　太郎{},ﾔﾏﾀﾞ ﾀﾛｳ,{},2023{month:02}{day:02},102-8688,\"東京都千代田区九段南1-2-{}, 101号\",,2024{month:02}{day:02},{},,{},LOT{i},佐藤　一郎,0110113719,こどもクリニック,131016,2024{month:02}{day:02}103000\r\n",
            i / 3,
            i % 100,
            1 + i % 2,
            i % 50,
            vaccines[i % vaccines.len()],
            1 + i % 4,
        ));
    }
    out.into_bytes()
}

fn import(c: &mut Criterion) {
    let municipality = MunicipalityCode::parse("131016").unwrap();
    let layout = Layouts::embedded()
        .unwrap()
        .resolve("musubi-vaccination", &municipality)
        .unwrap();
    let file = generated_file();
    for (name, bytes) in [
        ("utf-8", file.clone()),
        (
            "cp932",
            encoding_rs::SHIFT_JIS
                .encode(std::str::from_utf8(&file).unwrap())
                .0
                .into_owned(),
        ),
    ] {
        let mut group = c.benchmark_group("import");
        group.sample_size(10);
        group.throughput(Throughput::Elements(ROWS as u64));
        group.bench_function(format!("musubi-vaccination-{name}-100k-rows"), |b| {
            b.iter(|| {
                let import =
                    Import::new(&layout, &municipality, &bytes[..], EncodingChoice::Auto).unwrap();
                let mut ok = 0usize;
                for row in import {
                    ok += usize::from(black_box(row).is_ok());
                }
                assert_eq!(ok, ROWS);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, import);
criterion_main!(benches);
