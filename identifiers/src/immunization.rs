//! What a scanned vaccine barcode contributes to an Immunization resource, and its rendering as
//! the R4 `Parameters` answer of the gateway's barcode operation.

use serde_json::{Value, json};

use crate::gs1::{Gs1Data, Gtin};
use crate::products::ProductTable;

/// GTIN code system (urn:oid:2.51.1.1, the ePrescription IG table 19 identifier namespace).
pub const GTIN_SYSTEM: &str = "urn:oid:2.51.1.1";
/// MEDIS HOT9.
pub const HOT9_SYSTEM: &str = "http://medis.or.jp/CodeSystem/master-HOT9";
/// MEDIS HOT13.
pub const HOT13_SYSTEM: &str = "http://medis.or.jp/CodeSystem/master-HOT13";
/// YJ code.
pub const YJ_SYSTEM: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
/// Musubi's vaccine-type CodeSystem.
pub const VACCINE_TYPE_SYSTEM: &str = "https://musubi.example.org/fhir/CodeSystem/vaccine-type";

/// A FHIR Coding, the subset used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coding {
    pub system: &'static str,
    pub code: String,
    pub display: Option<String>,
}

impl Coding {
    fn to_json(&self) -> Value {
        let mut coding = json!({ "system": self.system, "code": self.code });
        if let Some(display) = &self.display {
            coding["display"] = json!(display);
        }
        coding
    }
}

/// The Immunization fields a barcode fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarcodeImmunization {
    pub gtin: Gtin,
    /// `Immunization.lotNumber` (AI 10).
    pub lot_number: Option<String>,
    /// `Immunization.expirationDate`, `YYYY-MM-DD` (AI 17).
    pub expiration_date: Option<String>,
    /// JP Core extension `JP_Immunization_ManufacturedDate` (製造年月日), `YYYY-MM-DD` (AI 11).
    pub manufactured_date: Option<String>,
    /// `Immunization.vaccineCode.coding`: always the GTIN; HOT13, HOT9 and YJ when the product
    /// table knows them.
    pub vaccine_codes: Vec<Coding>,
    /// `Immunization.vaccineCode.text`: the product name, when known.
    pub product_name: Option<String>,
    /// The vaccine type in Musubi's CodeSystem, when the product is known.
    pub vaccine_type: Option<Coding>,
    /// Whether the GTIN was found in the product table.
    pub product_known: bool,
}

/// Maps barcode data to Immunization fields. The GTIN coding is always present: it identifies
/// the product even when the table does not know it, and `Immunization.vaccineCode` is required.
pub fn immunization_fields(data: &Gs1Data, products: &ProductTable) -> BarcodeImmunization {
    let product = products.product(&data.gtin);
    let mut vaccine_codes = vec![Coding {
        system: GTIN_SYSTEM,
        code: data.gtin.as_str().to_owned(),
        display: product.map(|p| p.name.clone()),
    }];
    if let Some(p) = product {
        let known = [
            (HOT13_SYSTEM, &p.hot13),
            (HOT9_SYSTEM, &p.hot9),
            (YJ_SYSTEM, &p.yj),
        ];
        vaccine_codes.extend(known.into_iter().filter_map(|(system, code)| {
            code.as_ref().map(|code| Coding {
                system,
                code: code.clone(),
                display: Some(p.name.clone()),
            })
        }));
    }
    let iso = |date: &Option<time::Date>| {
        date.map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
    };
    BarcodeImmunization {
        gtin: data.gtin.clone(),
        lot_number: data.lot.clone(),
        expiration_date: iso(&data.expiry),
        manufactured_date: iso(&data.production_date),
        vaccine_codes,
        product_name: product.map(|p| p.name.clone()),
        vaccine_type: product.map(|p| Coding {
            system: VACCINE_TYPE_SYSTEM,
            code: p.vaccine_type.clone(),
            display: None,
        }),
        product_known: product.is_some(),
    }
}

impl BarcodeImmunization {
    /// Renders the fields as an R4 `Parameters` resource. Parameter names: `gtin` (valueString),
    /// `productKnown` (valueBoolean), `vaccineCode` (valueCodeableConcept), `vaccineType`
    /// (valueCoding, when known), `lotNumber` (valueString), `expirationDate` (valueDate),
    /// `manufacturedDate` (valueDate); absent values are omitted.
    pub fn to_parameters(&self) -> Value {
        let mut parameters = vec![
            json!({ "name": "gtin", "valueString": self.gtin.as_str() }),
            json!({ "name": "productKnown", "valueBoolean": self.product_known }),
        ];
        let mut concept = json!({
            "coding": self.vaccine_codes.iter().map(Coding::to_json).collect::<Vec<_>>()
        });
        if let Some(name) = &self.product_name {
            concept["text"] = json!(name);
        }
        parameters.push(json!({ "name": "vaccineCode", "valueCodeableConcept": concept }));
        if let Some(vaccine_type) = &self.vaccine_type {
            parameters
                .push(json!({ "name": "vaccineType", "valueCoding": vaccine_type.to_json() }));
        }
        let optional = [
            ("lotNumber", "valueString", &self.lot_number),
            ("expirationDate", "valueDate", &self.expiration_date),
            ("manufacturedDate", "valueDate", &self.manufactured_date),
        ];
        for (name, kind, value) in optional {
            if let Some(value) = value {
                parameters.push(json!({ "name": name, kind: value }));
            }
        }
        json!({ "resourceType": "Parameters", "parameter": parameters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gs1::parse_at;
    use crate::products::tests::fixture_table;
    use time::macros::date;

    #[test]
    fn known_product_fills_every_field_golden() {
        let data = parse_at(
            "]d201149871234567811727030011250115\u{1D}10AB123",
            date!(2025 - 06 - 15),
        )
        .expect("valid");
        let fields = immunization_fields(&data, &fixture_table());
        assert!(fields.product_known);
        assert_eq!(fields.expiration_date.as_deref(), Some("2027-03-31"));
        assert_eq!(fields.lot_number.as_deref(), Some("AB123"));
        let expected = json!({
            "resourceType": "Parameters",
            "parameter": [
                { "name": "gtin", "valueString": "14987123456781" },
                { "name": "productKnown", "valueBoolean": true },
                { "name": "vaccineCode", "valueCodeableConcept": {
                    "coding": [
                        { "system": "urn:oid:2.51.1.1", "code": "14987123456781", "display": "テストワクチンＡ" },
                        { "system": "http://medis.or.jp/CodeSystem/master-HOT13", "code": "1234567010101", "display": "テストワクチンＡ" },
                        { "system": "http://medis.or.jp/CodeSystem/master-HOT9", "code": "123456701", "display": "テストワクチンＡ" },
                        { "system": "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code", "code": "631140XA1010", "display": "テストワクチンＡ" }
                    ],
                    "text": "テストワクチンＡ"
                } },
                { "name": "vaccineType", "valueCoding": {
                    "system": "https://musubi.example.org/fhir/CodeSystem/vaccine-type", "code": "influenza"
                } },
                { "name": "lotNumber", "valueString": "AB123" },
                { "name": "expirationDate", "valueDate": "2027-03-31" },
                { "name": "manufacturedDate", "valueDate": "2025-01-15" }
            ]
        });
        assert_eq!(fields.to_parameters(), expected);
    }

    #[test]
    fn unknown_product_keeps_the_gtin_and_the_barcode_fields() {
        let data = parse_at("(01)04987123456791(10)L1", date!(2025 - 06 - 15)).expect("valid");
        let fields = immunization_fields(&data, &fixture_table());
        assert!(!fields.product_known);
        assert_eq!(fields.vaccine_type, None);
        let expected = json!({
            "resourceType": "Parameters",
            "parameter": [
                { "name": "gtin", "valueString": "04987123456791" },
                { "name": "productKnown", "valueBoolean": false },
                { "name": "vaccineCode", "valueCodeableConcept": {
                    "coding": [ { "system": "urn:oid:2.51.1.1", "code": "04987123456791" } ]
                } },
                { "name": "lotNumber", "valueString": "L1" }
            ]
        });
        assert_eq!(fields.to_parameters(), expected);
    }

    #[test]
    fn product_without_master_codes_has_only_the_gtin_coding() {
        let data = parse_at("4987123456784", date!(2025 - 06 - 15)).expect("valid");
        let fields = immunization_fields(&data, &fixture_table());
        assert!(fields.product_known);
        let systems: Vec<&str> = fields.vaccine_codes.iter().map(|c| c.system).collect();
        assert_eq!(systems, [GTIN_SYSTEM]);
        assert_eq!(fields.vaccine_type.map(|c| c.code).as_deref(), Some("mr"));
    }
}
