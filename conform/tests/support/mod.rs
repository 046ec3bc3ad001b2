//! A small terminology for the tests: real OID→URL aliases, a few enumerated value sets and the
//! two check-digit algorithms, so the validator's calls are answered by logic, not constants.

use std::borrow::Cow;
use std::collections::HashMap;

use conform::{CodeCheck, Terminology};

pub struct TestTerminology {
    aliases: HashMap<&'static str, &'static str>,
    value_sets: HashMap<&'static str, Vec<(&'static str, String)>>,
}

const MLC: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicalLicenseCertificate_CS";
const SIMPLE: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS";
const PREF: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/PrefectureNo-2digits";
const FEE: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationFeeScoreType";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const NAME_USE: &str = "http://terminology.hl7.org/CodeSystem/v3-EntityNameUseR2";

impl TestTerminology {
    pub fn new() -> Self {
        let aliases = HashMap::from([
            (
                "urn:oid:1.2.392.100495.20.3.31",
                "http://jpfhir.jp/fhir/core/mhlw/IdSystem/medicalRegistrationNumber",
            ),
            (
                "urn:oid:1.2.392.100495.20.3.23",
                "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID",
            ),
            (
                "urn:oid:1.2.392.100495.20.3.61",
                "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber",
            ),
            ("urn:oid:1.2.392.100495.20.3.21", PREF),
            ("urn:oid:1.2.392.100495.20.3.22", FEE),
            ("urn:oid:2.16.840.1.113883.5.8", ACT_REASON),
            (
                "http://jpfhir.jp/fhir/Common/IdSystem/insurance-medical-institution-no",
                "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no",
            ),
        ]);
        let of = |system: &'static str, codes: &[&str]| -> Vec<(&'static str, String)> {
            codes.iter().map(|c| (system, (*c).to_owned())).collect()
        };
        let prefectures: Vec<String> = (1..=47).map(|n| format!("{n:02}")).collect();
        let prefectures: Vec<&str> = prefectures.iter().map(String::as_str).collect();
        let value_sets = HashMap::from([
            (
                "http://hl7.org/fhir/ValueSet/name-v3-representation",
                of(NAME_USE, &["ABC", "IDE", "SYL"]),
            ),
            (
                "http://jpfhir.jp/fhir/core/ValueSet/JP_MedicalLicenseCertificate_VS",
                of(MLC, &["medical-registration", "narcotics-practitioner"]),
            ),
            (
                "http://jpfhir.jp/fhir/core/ValueSet/JP_SimpleObservationCategory_VS",
                of(
                    SIMPLE,
                    &[
                        "vital-signs",
                        "body-measurement",
                        "laboratory",
                        "exam",
                        "survey",
                    ],
                ),
            ),
            (
                "http://jpfhir.jp/fhir/core/ValueSet/JP_PrefectureNumber_VS",
                of(PREF, &prefectures),
            ),
            (
                "http://jpfhir.jp/fhir/core/ValueSet/JP_MedicalFeeScoreType_VS",
                of(FEE, &["1", "2", "3", "4", "6"]),
            ),
            (
                "http://terminology.hl7.org/ValueSet/v3-PurposeOfUse",
                of(
                    ACT_REASON,
                    &["TREAT", "PUBHLTH", "HPAYMT", "PATRQT", "HRESCH"],
                ),
            ),
        ]);
        TestTerminology {
            aliases,
            value_sets,
        }
    }

    /// The same terminology without one value set (to see unknown value sets handled).
    #[allow(
        dead_code,
        reason = "support is shared by several test binaries; not all use this"
    )]
    pub fn without(mut self, value_set: &str) -> Self {
        self.value_sets.remove(value_set);
        self
    }
}

/// The 10-digit medical-institution code: a Luhn-style check over the first nine digits
/// (weights 2,1,2,… from the right, two-digit products summed by digit).
pub fn medical_institution_code(value: &str) -> Result<(), String> {
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("10 ASCII digits expected".to_owned());
    }
    let digits: Vec<u32> = value.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = digits[..9]
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let p = if i % 2 == 0 { d * 2 } else { d };
            p / 10 + p % 10
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    if check == digits[9] {
        Ok(())
    } else {
        Err(format!(
            "check digit {} expected, found {}",
            check, digits[9]
        ))
    }
}

/// The 6-digit local-government code: weights 6,5,4,3,2, check = last digit of 11 − sum mod 11.
pub fn municipality_code(value: &str) -> Result<(), String> {
    if value.len() != 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("6 ASCII digits expected".to_owned());
    }
    let digits: Vec<u32> = value.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = digits[..5]
        .iter()
        .zip([6, 5, 4, 3, 2])
        .map(|(d, w)| d * w)
        .sum();
    let check = (11 - sum % 11) % 10;
    if check == digits[5] {
        Ok(())
    } else {
        Err(format!(
            "check digit {} expected, found {}",
            check, digits[5]
        ))
    }
}

impl Terminology for TestTerminology {
    fn canonical_system<'a>(&'a self, system: &'a str) -> Cow<'a, str> {
        match self.aliases.get(system) {
            Some(url) => Cow::Borrowed(url),
            None => Cow::Borrowed(system),
        }
    }

    fn check_code(&self, value_set: &str, system: Option<&str>, code: &str) -> CodeCheck {
        let Some(members) = self.value_sets.get(value_set) else {
            return CodeCheck::UnknownValueSet;
        };
        let found = members
            .iter()
            .any(|(s, c)| c == code && system.is_none_or(|system| system == *s));
        if found {
            CodeCheck::Member
        } else {
            CodeCheck::NotMember
        }
    }

    fn check_identifier(&self, format: &str, value: &str) -> Result<(), String> {
        match format {
            "medical-institution-code" => medical_institution_code(value),
            "municipality-code" => municipality_code(value),
            other => Err(format!("unknown format {other}")),
        }
    }
}
