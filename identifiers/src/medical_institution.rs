//! The 10-digit medical-institution code (医療機関コード): prefecture (2) + 点数表番号 (1) +
//! 郡市区番号 (2) + 医療機関等番号 (4) + 検証番号 (1), and the `9` + telephone-number form used
//! by facilities that have no code.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::IdError;
use crate::digits::{digit_char, digits, normalize};
use crate::municipality::PrefectureCode;

/// The 点数表番号 (fee-schedule number, JP Core `MedicationFeeScoreType`): which kind of
/// facility the code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeeScoreCategory {
    /// 1 医科 (medical).
    Medical,
    /// 2 非保険の健診施設 (health-checkup institution outside insurance, e.g. 特定健診).
    HealthCheckup,
    /// 3 歯科 (dental).
    Dental,
    /// 4 調剤 (pharmacy).
    Pharmacy,
    /// 6 訪問看護ステーション (home-visit nursing station).
    VisitingNursing,
}

impl FeeScoreCategory {
    fn from_digit(digit: u8) -> Option<Self> {
        match digit {
            1 => Some(Self::Medical),
            2 => Some(Self::HealthCheckup),
            3 => Some(Self::Dental),
            4 => Some(Self::Pharmacy),
            6 => Some(Self::VisitingNursing),
            _ => None,
        }
    }

    /// The code in JP Core's `MedicationFeeScoreType` code system (`"1"`, `"2"`, …).
    pub fn code(self) -> &'static str {
        match self {
            Self::Medical => "1",
            Self::HealthCheckup => "2",
            Self::Dental => "3",
            Self::Pharmacy => "4",
            Self::VisitingNursing => "6",
        }
    }

    /// Whether the 検証番号 of this category is checked. The Luhn rule over the first nine digits
    /// is sourced for insurance codes (医科, 歯科, 調剤, 訪問看護); for 健診機関 codes no source
    /// was found, so their last digit is accepted as it is (docs/identifiers.md).
    pub fn check_digit_verified(self) -> bool {
        self != Self::HealthCheckup
    }
}

/// A 10-digit 医療機関コード, valid by construction: the prefecture is 01–47, the 点数表番号 is
/// known, and (for insurance categories) the 検証番号 holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MedicalInstitutionCode(String);

const MEDICAL: &str = "medical-institution code";

impl MedicalInstitutionCode {
    /// Parses the 10-digit form; full-width digits are accepted and surrounding spaces ignored.
    /// A code starting with `9` is the telephone-number form: use [`FacilityCode::parse`] to
    /// accept both.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = normalize(text);
        let d = digits(MEDICAL, &text, 10)?;
        if d[0] == 9 {
            return Err(IdError::PhoneBasedFacility { what: MEDICAL });
        }
        PrefectureCode::from_digits(MEDICAL, d[0], d[1])?;
        let category = FeeScoreCategory::from_digit(d[2]).ok_or(IdError::UnknownCategory {
            what: MEDICAL,
            found: digit_char(d[2]),
        })?;
        if category.check_digit_verified() {
            let expected = check_digit(d[..9].try_into().expect("ten digits were checked"));
            if d[9] != expected {
                return Err(IdError::CheckDigit {
                    what: MEDICAL,
                    expected: digit_char(expected),
                    found: digit_char(d[9]),
                });
            }
        }
        Ok(Self(text))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefecture (都道府県番号), digits 1–2.
    pub fn prefecture(&self) -> PrefectureCode {
        PrefectureCode::parse(&self.0[..2]).expect("validated at parse")
    }

    /// The 点数表番号, digit 3.
    pub fn category(&self) -> FeeScoreCategory {
        FeeScoreCategory::from_digit(self.0.as_bytes()[2] - b'0').expect("validated at parse")
    }

    /// The 7-digit 医療機関コード proper (JP Core `MedicalOrganizationID`): 郡市区番号 (2) +
    /// 医療機関等番号 (4) + 検証番号 (1).
    pub fn institution_number(&self) -> &str {
        &self.0[3..]
    }

    /// The 郡市区番号 (area number within the prefecture), digits 4–5.
    pub fn area_number(&self) -> &str {
        &self.0[3..5]
    }
}

/// The 検証番号 of a medical-institution code over its first nine digits (prefecture, 点数表番号
/// and the first six digits of the 7-digit number): the Luhn rule. From the rightmost digit
/// leftwards the digits are weighted 2, 1, 2, 1, …; a two-digit product counts as the sum of its
/// digits; the check digit is 10 minus the last digit of the total, and 0 when that last digit
/// is 0.
pub fn check_digit(nine: [u8; 9]) -> u8 {
    let sum: u32 = nine
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let product = u32::from(d) * if i % 2 == 0 { 2 } else { 1 };
            product / 10 + product % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// The code of a facility without a 医療機関コード: `9` followed by the last nine digits of its
/// telephone number (JP Core JP_Organization notes). It carries no check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneBasedFacilityCode(String);

const PHONE_BASED: &str = "telephone-based facility code";

impl PhoneBasedFacilityCode {
    /// Parses `9` + nine digits.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = normalize(text);
        let d = digits(PHONE_BASED, &text, 10)?;
        if d[0] != 9 {
            return Err(IdError::UnexpectedDigit {
                what: PHONE_BASED,
                position: 1,
                expected: "9",
                found: digit_char(d[0]),
            });
        }
        Ok(Self(text))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last nine digits of the telephone number.
    pub fn phone_digits(&self) -> &str {
        &self.0[1..]
    }
}

/// Either kind of 10-digit facility code: what JP Core puts in the medical-institution slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FacilityCode {
    /// A 医療機関コード issued by a 地方厚生局.
    Insurance(MedicalInstitutionCode),
    /// `9` + the last nine digits of the telephone number.
    PhoneBased(PhoneBasedFacilityCode),
}

impl FacilityCode {
    /// Parses either form: a leading `9` selects the telephone-number form.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let normalized = normalize(text);
        if normalized.starts_with('9') {
            PhoneBasedFacilityCode::parse(&normalized).map(Self::PhoneBased)
        } else {
            MedicalInstitutionCode::parse(&normalized).map(Self::Insurance)
        }
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Insurance(code) => code.as_str(),
            Self::PhoneBased(code) => code.as_str(),
        }
    }
}

macro_rules! string_newtype_impls {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_newtype_impls!(MedicalInstitutionCode, PhoneBasedFacilityCode, FacilityCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_codes_parse_with_their_parts() {
        // (code, prefecture, category, 7-digit number, source)
        let cases = [
            // The example of the ja.wikipedia article 処方箋発行医療機関コード.
            ("0110113719", "01", FeeScoreCategory::Medical, "0113719"),
            // 徳島大学病院: 郡市区番号 80, 医療機関番号 1001, 検証番号 5 in the 四国厚生支局
            // 全医療機関一覧表, as quoted by myozai119.jp (docs/identifiers.md).
            ("3618010015", "36", FeeScoreCategory::Medical, "8010015"),
        ];
        for (input, prefecture, category, number) in cases {
            let code = MedicalInstitutionCode::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(code.as_str(), input);
            assert_eq!(code.prefecture().to_string(), prefecture, "{input}");
            assert_eq!(code.category(), category, "{input}");
            assert_eq!(code.institution_number(), number, "{input}");
            assert_eq!(code.area_number(), &number[..2], "{input}");
        }
    }

    #[test]
    fn the_check_digit_covers_prefecture_and_category() {
        // The 7-digit part alone (0113719) would give check digit 2 under the same rule; the real
        // code ends in 9, which only the 9-digit computation yields.
        assert_eq!(check_digit([0, 1, 1, 0, 1, 1, 3, 7, 1]), 9);
        assert_eq!(check_digit([3, 6, 1, 8, 0, 1, 0, 0, 1]), 5);
        // Hand-computed: 5×2→1, 4, 3×2→6, 2, 1×2→2, 0, 4×2→8, 3, 1×2→2 = 28 → 2.
        assert_eq!(check_digit([1, 3, 4, 0, 1, 2, 3, 4, 5]), 2);
        // Sum ending in 0 gives 0: 0,0,…,0 → 0.
        assert_eq!(check_digit([0; 9]), 0);
    }

    #[test]
    fn jp_core_example_has_a_dummy_check_digit() {
        // JP Core's JP_Organization example uses 1311234567; by the rule its check digit is 9.
        assert_eq!(
            MedicalInstitutionCode::parse("1311234567"),
            Err(IdError::CheckDigit {
                what: MEDICAL,
                expected: '9',
                found: '7'
            })
        );
        assert!(MedicalInstitutionCode::parse("1311234569").is_ok());
    }

    #[test]
    fn categories_are_read_from_the_third_digit() {
        let cases = [
            ("1340123452", FeeScoreCategory::Pharmacy, "4"),
            ("1330123454", FeeScoreCategory::Dental, "3"),
            ("1360123457", FeeScoreCategory::VisitingNursing, "6"),
        ];
        for (input, category, code) in cases {
            let parsed = MedicalInstitutionCode::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.category(), category);
            assert_eq!(parsed.category().code(), code);
        }
    }

    #[test]
    fn health_checkup_codes_are_not_check_digit_verified() {
        for last in '0'..='9' {
            let input = format!("132012345{last}");
            let code = MedicalInstitutionCode::parse(&input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(code.category(), FeeScoreCategory::HealthCheckup);
            assert!(!code.category().check_digit_verified());
        }
    }

    #[test]
    fn malformed_codes_say_what_is_wrong() {
        let cases = [
            (
                "011011371",
                "medical-institution code: expected 10 digits, found 9 characters",
            ),
            (
                "01101137190",
                "medical-institution code: expected 10 digits, found 11 characters",
            ),
            (
                "01101X3719",
                "medical-institution code: non-digit 'X' at position 6",
            ),
            (
                "4910113719",
                "medical-institution code: unknown prefecture code 49 (expected 01–47)",
            ),
            (
                "0150113719",
                "medical-institution code: unknown 点数表番号 5 at position 3 (expected 1, 2, 3, 4 or 6)",
            ),
            (
                "0110113718",
                "medical-institution code: bad check digit: expected 9, found 8",
            ),
            (
                "9312345678",
                "medical-institution code: starts with 9, the form for facilities without a code \
                 (9 + the last 9 digits of the telephone number), not a 医療機関コード",
            ),
        ];
        for (input, message) in cases {
            let err = MedicalInstitutionCode::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input}");
        }
    }

    #[test]
    fn facility_code_accepts_both_forms() {
        match FacilityCode::parse("９３１２３４５６７８").expect("phone form") {
            FacilityCode::PhoneBased(code) => assert_eq!(code.phone_digits(), "312345678"),
            other => panic!("{other:?}"),
        }
        match FacilityCode::parse("0110113719").expect("insurance form") {
            FacilityCode::Insurance(code) => assert_eq!(code.as_str(), "0110113719"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            PhoneBasedFacilityCode::parse("1312345678")
                .expect_err("not 9")
                .to_string(),
            "telephone-based facility code: expected 9 at position 1, found '1'"
        );
        assert!(FacilityCode::parse("93123").is_err());
    }

    #[test]
    fn serde_uses_the_string_form() {
        let code: MedicalInstitutionCode = serde_json::from_str("\"0110113719\"").expect("valid");
        assert_eq!(
            serde_json::to_string(&code).expect("serialise"),
            "\"0110113719\""
        );
        assert!(serde_json::from_str::<MedicalInstitutionCode>("\"0110113718\"").is_err());
        let facility: FacilityCode = serde_json::from_str("\"9312345678\"").expect("phone form");
        assert_eq!(facility.to_string(), "9312345678");
    }
}
