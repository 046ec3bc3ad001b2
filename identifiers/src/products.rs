//! The GTIN → vaccine product table, read from `profiles/jp/terminology/gtin-*.json` plus files
//! supplied at run time, so adding or correcting a product is a data change.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::IdError;
use crate::gs1::Gtin;

/// One vaccine product (one packaging level: one GTIN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub gtin: Gtin,
    /// 販売名 (brand name) in Japanese.
    pub name: String,
    /// Code in Musubi's vaccine-type CodeSystem.
    pub vaccine_type: String,
    /// MEDIS HOT9 code, when known.
    pub hot9: Option<String>,
    /// MEDIS HOT13 code (基準番号), when known.
    pub hot13: Option<String>,
    /// YJ code (個別医薬品コード), when known.
    pub yj: Option<String>,
    /// 製造販売業者, when known.
    pub manufacturer: Option<String>,
    /// Where the GTIN was read (document, page, date).
    pub source: String,
}

/// Products by GTIN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductTable {
    products: BTreeMap<Gtin, Product>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    /// What the file holds and how to extend it; required so every table explains itself.
    #[serde(rename = "description")]
    _description: String,
    products: Vec<ProductDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProductDoc {
    gtin: String,
    name: String,
    vaccine_type: String,
    #[serde(default)]
    hot9: Option<String>,
    #[serde(default)]
    hot13: Option<String>,
    #[serde(default)]
    yj: Option<String>,
    #[serde(default)]
    manufacturer: Option<String>,
    source: String,
}

/// Whether a data file is a product table.
fn is_table(name: &str) -> bool {
    name.starts_with("gtin-") && name.ends_with(".json")
}

impl ProductTable {
    /// The table built from the embedded files only. The embedded files are checked by this
    /// crate's tests, so building them cannot fail in a released binary.
    pub fn embedded() -> &'static ProductTable {
        static TABLE: OnceLock<ProductTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            Self::load(&[]).expect("embedded gtin-*.json files are valid (checked by tests)")
        })
    }

    /// The embedded files plus `extra` `(file name, contents)` files; only files named
    /// `gtin-*.json` are read. Files are applied in order (embedded first, in name order), and a
    /// later file's entry replaces an earlier one with the same GTIN, so a run-time file can
    /// correct the embedded table. A GTIN twice in one file is an error.
    pub fn load(extra: &[(String, String)]) -> Result<ProductTable, IdError> {
        let embedded = profiles::JP_TERMINOLOGY.iter().map(|&(n, t)| (n, t));
        let supplied = extra.iter().map(|(n, t)| (n.as_str(), t.as_str()));
        let mut table = ProductTable::default();
        for (name, text) in embedded.chain(supplied).filter(|(name, _)| is_table(name)) {
            table.add_file(name, text)?;
        }
        Ok(table)
    }

    fn add_file(&mut self, file: &str, text: &str) -> Result<(), IdError> {
        let error = |message: String| IdError::Data {
            file: file.to_owned(),
            message,
        };
        let doc: FileDoc = serde_json::from_str(text).map_err(|e| error(e.to_string()))?;
        let mut seen = BTreeMap::new();
        for (i, entry) in doc.products.into_iter().enumerate() {
            let at = |message: String| error(format!("products[{i}]: {message}"));
            let product = Product::from_doc(entry).map_err(at)?;
            if let Some(first) = seen.insert(product.gtin.clone(), i) {
                return Err(at(format!(
                    "GTIN {} already at products[{first}]",
                    product.gtin
                )));
            }
            self.products.insert(product.gtin.clone(), product);
        }
        Ok(())
    }

    /// The product with this GTIN.
    pub fn product(&self, gtin: &Gtin) -> Option<&Product> {
        self.products.get(gtin)
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Every product, in no particular order.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

impl Product {
    fn from_doc(doc: ProductDoc) -> Result<Self, String> {
        let gtin = Gtin::parse(&doc.gtin).map_err(|e| format!("gtin {:?}: {e}", doc.gtin))?;
        if doc.name.trim().is_empty() {
            return Err("name is empty".to_owned());
        }
        // Whether the vaccine type exists is terminology's to say; the gateway checks every
        // table's vaccine types against the vaccine-type CodeSystem when it loads them.
        if doc.vaccine_type.trim().is_empty() {
            return Err("vaccineType is empty".to_owned());
        }
        let digits = |field: &str, value: &Option<String>, len: usize| match value {
            Some(v) if v.len() != len || !v.bytes().all(|b| b.is_ascii_digit()) => {
                Err(format!("{field} {v:?} is not {len} digits"))
            }
            _ => Ok(()),
        };
        digits("hot9", &doc.hot9, 9)?;
        digits("hot13", &doc.hot13, 13)?;
        if let Some(yj) = &doc.yj
            && (yj.len() != 12 || !yj.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(format!("yj {yj:?} is not 12 letters or digits"));
        }
        if doc.source.trim().is_empty() {
            return Err("source is empty: every GTIN must say where it was read".to_owned());
        }
        Ok(Self {
            gtin,
            name: doc.name,
            vaccine_type: doc.vaccine_type,
            hot9: doc.hot9,
            hot13: doc.hot13,
            yj: doc.yj,
            manufacturer: doc.manufacturer,
            source: doc.source,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture table with invented GTINs (valid check digits); never shipped.
    pub(crate) const FIXTURE: &str = r#"{
      "description": "test fixture",
      "products": [
        {"gtin": "14987123456781", "name": "テストワクチンＡ", "vaccineType": "influenza",
         "hot9": "123456701", "hot13": "1234567010101", "yj": "631140XA1010",
         "manufacturer": "テスト製薬", "source": "fixture"},
        {"gtin": "4987123456784", "name": "テストワクチンＢ", "vaccineType": "mr", "source": "fixture"}
      ]
    }"#;

    pub(crate) fn fixture_table() -> ProductTable {
        ProductTable::load(&[("gtin-fixture.json".to_owned(), FIXTURE.to_owned())])
            .expect("fixture is valid")
    }

    #[test]
    fn embedded_tables_load() {
        // The shipped tables must parse; this is what makes `embedded()` infallible.
        let table = ProductTable::load(&[]).expect("embedded gtin-*.json files are valid");
        assert_eq!(&table, ProductTable::embedded());
        assert!(
            profiles::JP_TERMINOLOGY
                .iter()
                .any(|(name, _)| is_table(name))
        );
    }

    #[test]
    fn extra_files_add_products_and_jan_codes_match_their_gtin14() {
        let table = fixture_table();
        let a = table
            .product(&Gtin::parse("14987123456781").expect("valid"))
            .expect("A");
        assert_eq!(a.name, "テストワクチンＡ");
        assert_eq!(a.hot13.as_deref(), Some("1234567010101"));
        let b = table
            .product(&Gtin::parse("04987123456784").expect("valid"))
            .expect("B");
        assert_eq!(b.vaccine_type, "mr");
        assert_eq!(
            table.product(&Gtin::parse("04987123456791").expect("valid")),
            None
        );
    }

    #[test]
    fn later_files_replace_earlier_entries() {
        let fix = r#"{"description": "fix", "products": [
            {"gtin": "14987123456781", "name": "訂正後", "vaccineType": "influenza", "source": "fix"}]}"#;
        let table = ProductTable::load(&[
            ("gtin-a.json".to_owned(), FIXTURE.to_owned()),
            ("gtin-b.json".to_owned(), fix.to_owned()),
        ])
        .expect("valid");
        let gtin = Gtin::parse("14987123456781").expect("valid");
        assert_eq!(
            table.product(&gtin).map(|p| p.name.as_str()),
            Some("訂正後")
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn files_not_named_gtin_are_ignored() {
        let table = ProductTable::load(&[("other.json".to_owned(), "not json".to_owned())])
            .expect("ignored");
        assert_eq!(table, ProductTable::load(&[]).expect("embedded"));
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let entry = |fields: &str| format!(r#"{{"description": "d", "products": [{{{fields}}}]}}"#);
        let cases = [
            (
                "{",
                "gtin-x.json: EOF while parsing an object at line 1 column 1",
            ),
            (
                &*entry(
                    r#""gtin": "14987123456782", "name": "n", "vaccineType": "mr", "source": "s""#,
                ),
                "gtin-x.json: products[0]: gtin \"14987123456782\": GTIN: bad check digit: expected 1, found 2",
            ),
            (
                &*entry(
                    r#""gtin": "14987123456781", "name": "n", "vaccineType": " ", "source": "s""#,
                ),
                "gtin-x.json: products[0]: vaccineType is empty",
            ),
            (
                &*entry(
                    r#""gtin": "14987123456781", "name": "n", "vaccineType": "mr", "source": " ""#,
                ),
                "gtin-x.json: products[0]: source is empty: every GTIN must say where it was read",
            ),
            (
                &*entry(
                    r#""gtin": "14987123456781", "name": "n", "vaccineType": "mr", "hot9": "12", "source": "s""#,
                ),
                "gtin-x.json: products[0]: hot9 \"12\" is not 9 digits",
            ),
        ];
        for (text, message) in cases {
            let err = ProductTable::load(&[("gtin-x.json".to_owned(), text.to_owned())])
                .expect_err(message);
            assert_eq!(err.to_string(), message);
        }
        let twice = r#"{"description": "d", "products": [
            {"gtin": "14987123456781", "name": "n", "vaccineType": "mr", "source": "s"},
            {"gtin": "14987123456781", "name": "n", "vaccineType": "mr", "source": "s"}]}"#;
        let err = ProductTable::load(&[("gtin-x.json".to_owned(), twice.to_owned())])
            .expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "gtin-x.json: products[1]: GTIN 14987123456781 already at products[0]"
        );
    }
}
