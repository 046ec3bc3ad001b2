//! Japanese identifiers and vaccine barcodes without I/O: the local-government code and the
//! medical-institution code with their check digits, the vaccination-ticket OCR line, and GS1
//! element strings (GTIN, expiry, lot) as scanned from vaccine packages.
//!
//! Every value is parsed once into a newtype that is valid afterwards. Parse errors say exactly
//! what is wrong (length, which character, which check digit was expected). The algorithms and
//! their sources are documented in `docs/identifiers.md`.

mod digits;
mod error;
pub mod gs1;
mod immunization;
mod medical_institution;
mod municipality;
mod products;
mod ticket;

pub use error::IdError;
pub use gs1::{Gs1Data, Gtin};
pub use immunization::{
    BarcodeImmunization, Coding, GTIN_SYSTEM, HOT9_SYSTEM, HOT13_SYSTEM, VACCINE_TYPE_SYSTEM,
    YJ_SYSTEM, immunization_fields,
};
pub use medical_institution::{
    FacilityCode, FeeScoreCategory, MedicalInstitutionCode, PhoneBasedFacilityCode,
    check_digit as medical_institution_check_digit,
};
pub use municipality::{MunicipalityCode, PrefectureCode, check_digit as municipality_check_digit};
pub use products::{Product, ProductTable};
pub use ticket::VaccinationTicket;

/// Identifier system of the 6-digit local-government code (全国地方公共団体コード). JP Core
/// defines none, so Musubi mints its own (docs/identifiers.md).
pub const MUNICIPALITY_CODE_SYSTEM: &str =
    "https://musubi.example.org/fhir/IdSystem/municipality-code";

/// JP Core's identifier system of the 10-digit medical-institution code (JP_Organization,
/// slice `medicalInstitutionCode`).
pub const MEDICAL_INSTITUTION_CODE_SYSTEM: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";

/// The variant of [`MEDICAL_INSTITUTION_CODE_SYSTEM`] used by the ePrescription IG; accepted on
/// input only.
pub const MEDICAL_INSTITUTION_CODE_SYSTEM_COMMON: &str =
    "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no";

/// Checks `value` against a named identifier format; the profile validator calls this through the
/// gateway. Formats: `municipality-code` (6 digits with check digit), `medical-institution-code`
/// (10-digit 医療機関コード, or the `9` + telephone-number form for facilities without one),
/// `prefecture-code` (`01`–`47`). The error is the human-readable reason.
pub fn check_format(format: &str, value: &str) -> Result<(), String> {
    let result = match format {
        "municipality-code" => MunicipalityCode::parse(value).map(drop),
        "medical-institution-code" => FacilityCode::parse(value).map(drop),
        "prefecture-code" => PrefectureCode::parse(value).map(drop),
        other => return Err(format!("unknown identifier format {other:?}")),
    };
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::check_format;

    #[test]
    fn check_format_dispatches_on_the_format_name() {
        let cases: &[(&str, &str, Result<(), &str>)] = &[
            ("municipality-code", "131016", Ok(())),
            (
                "municipality-code",
                "131017",
                Err("municipality code: bad check digit: expected 6, found 7"),
            ),
            ("medical-institution-code", "0110113719", Ok(())),
            ("medical-institution-code", "9312345678", Ok(())),
            (
                "medical-institution-code",
                "011011371",
                Err("medical-institution code: expected 10 digits, found 9 characters"),
            ),
            ("prefecture-code", "47", Ok(())),
            (
                "prefecture-code",
                "48",
                Err("prefecture code: unknown prefecture code 48 (expected 01–47)"),
            ),
            (
                "postal-code",
                "1000001",
                Err("unknown identifier format \"postal-code\""),
            ),
        ];
        for (format, value, expected) in cases {
            let got = check_format(format, value);
            assert_eq!(got, expected.map_err(str::to_owned), "{format} {value}");
        }
    }
}
