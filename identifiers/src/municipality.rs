//! The local-government code (全国地方公共団体コード, JIS X 0402 + 総務省 check digit) and the
//! prefecture code (都道府県コード, JIS X 0401).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::IdError;
use crate::digits::{digit_char, digits, normalize};

/// Japanese names of the prefectures, indexed by code − 1 (JIS X 0401; docs/identifiers.md).
const PREFECTURE_NAMES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];

/// A prefecture code (都道府県コード), `01` (北海道) to `47` (沖縄県).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrefectureCode(u8);

impl PrefectureCode {
    /// Parses the two-digit form (`"13"`, also full-width `"１３"`).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let d = digits("prefecture code", &normalize(text), 2)?;
        Self::from_digits("prefecture code", d[0], d[1])
    }

    /// The prefecture with this number, 1–47.
    pub fn from_number(number: u8) -> Option<Self> {
        (1..=47).contains(&number).then_some(Self(number))
    }

    pub(crate) fn from_digits(what: &'static str, tens: u8, units: u8) -> Result<Self, IdError> {
        Self::from_number(tens * 10 + units).ok_or_else(|| IdError::UnknownPrefecture {
            what,
            code: format!("{}{}", digit_char(tens), digit_char(units)),
        })
    }

    /// The number, 1–47.
    pub fn number(self) -> u8 {
        self.0
    }

    /// The Japanese name, e.g. `東京都`.
    pub fn name_ja(self) -> &'static str {
        PREFECTURE_NAMES[usize::from(self.0) - 1]
    }
}

impl fmt::Display for PrefectureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

/// A 6-digit local-government code (全国地方公共団体コード): prefecture (2) + municipality (3) +
/// check digit (検査数字, 1). Valid by construction: the prefecture is 01–47 and the check digit
/// holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MunicipalityCode(String);

const MUNICIPALITY: &str = "municipality code";

impl MunicipalityCode {
    /// Parses the 6-digit form; full-width digits are accepted and surrounding spaces ignored.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = normalize(text);
        let d = digits(MUNICIPALITY, &text, 6)?;
        PrefectureCode::from_digits(MUNICIPALITY, d[0], d[1])?;
        let expected = check_digit(d[..5].try_into().expect("six digits were checked"));
        if d[5] != expected {
            return Err(IdError::CheckDigit {
                what: MUNICIPALITY,
                expected: digit_char(expected),
                found: digit_char(d[5]),
            });
        }
        Ok(Self(text))
    }

    /// Builds the code from the 5-digit form (as used by statistics and JIS X 0402), computing the
    /// check digit.
    pub fn from_five_digits(text: &str) -> Result<Self, IdError> {
        let text = normalize(text);
        let d = digits(MUNICIPALITY, &text, 5)?;
        PrefectureCode::from_digits(MUNICIPALITY, d[0], d[1])?;
        let check = check_digit(d[..].try_into().expect("five digits were checked"));
        Ok(Self(format!("{text}{}", digit_char(check))))
    }

    /// The six digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The five digits without the check digit.
    pub fn five_digits(&self) -> &str {
        &self.0[..5]
    }

    /// The prefecture the municipality belongs to.
    pub fn prefecture(&self) -> PrefectureCode {
        let b = self.0.as_bytes();
        PrefectureCode((b[0] - b'0') * 10 + (b[1] - b'0'))
    }
}

/// The check digit (検査数字) of a 5-digit local-government code: the digits weighted 6, 5, 4, 3,
/// 2 from the left are summed, the sum is taken modulo 11, and the check digit is the last digit
/// of 11 minus that remainder (so remainder 0 gives 1 and remainder 1 gives 0).
pub fn check_digit(five: [u8; 5]) -> u8 {
    let sum: u32 = five
        .iter()
        .zip([6u32, 5, 4, 3, 2])
        .map(|(&d, w)| u32::from(d) * w)
        .sum();
    ((11 - sum % 11) % 10) as u8
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MunicipalityCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MunicipalityCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PrefectureCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PrefectureCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real codes (総務省 全国地方公共団体コード; see docs/identifiers.md for the sources), chosen
    /// so that every remainder case of the check digit appears, including remainder 0 (新宿区,
    /// check 1) and remainder 1 (渋谷区, check 0).
    const REAL: &[(&str, &str, &str)] = &[
        ("131016", "千代田区", "東京都"),
        ("131059", "文京区", "東京都"),
        ("131041", "新宿区", "東京都"),
        ("131130", "渋谷区", "東京都"),
        ("011002", "札幌市", "北海道"),
        ("271004", "大阪市", "大阪府"),
        ("141003", "横浜市", "神奈川県"),
        ("401307", "福岡市", "福岡県"),
        ("130001", "東京都", "東京都"),
        ("472018", "那覇市", "沖縄県"),
    ];

    #[test]
    fn real_codes_parse_and_round_trip_from_five_digits() {
        for &(code, name, prefecture) in REAL {
            let parsed = MunicipalityCode::parse(code).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.as_str(), code, "{name}");
            assert_eq!(parsed.prefecture().name_ja(), prefecture, "{name}");
            let built = MunicipalityCode::from_five_digits(&code[..5]).expect(name);
            assert_eq!(built, parsed, "{name}");
        }
    }

    #[test]
    fn every_wrong_check_digit_is_rejected_with_the_expected_one() {
        for &(code, name, _) in REAL {
            let right = code.as_bytes()[5] as char;
            for wrong in ('0'..='9').filter(|&c| c != right) {
                let input = format!("{}{wrong}", &code[..5]);
                assert_eq!(
                    MunicipalityCode::parse(&input),
                    Err(IdError::CheckDigit {
                        what: MUNICIPALITY,
                        expected: right,
                        found: wrong
                    }),
                    "{name} {input}"
                );
            }
        }
    }

    #[test]
    fn malformed_input_says_what_is_wrong() {
        let cases = [
            (
                "13101",
                "municipality code: expected 6 digits, found 5 characters",
            ),
            (
                "1310166",
                "municipality code: expected 6 digits, found 7 characters",
            ),
            ("13a016", "municipality code: non-digit 'a' at position 3"),
            (
                "481003",
                "municipality code: unknown prefecture code 48 (expected 01–47)",
            ),
            (
                "001007",
                "municipality code: unknown prefecture code 00 (expected 01–47)",
            ),
            (
                "",
                "municipality code: expected 6 digits, found 0 characters",
            ),
            (
                "131017",
                "municipality code: bad check digit: expected 6, found 7",
            ),
        ];
        for (input, message) in cases {
            let err = MunicipalityCode::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input}");
        }
    }

    #[test]
    fn full_width_digits_and_spaces_are_normalised() {
        let code = MunicipalityCode::parse(" １３１０１６\u{3000}").expect("full-width");
        assert_eq!(code.as_str(), "131016");
        assert_eq!(code.five_digits(), "13101");
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let code = MunicipalityCode::parse("131016").expect("valid");
        assert_eq!(
            serde_json::to_string(&code).expect("serialise"),
            "\"131016\""
        );
        let back: MunicipalityCode = serde_json::from_str("\"131016\"").expect("deserialise");
        assert_eq!(back, code);
        let err = serde_json::from_str::<MunicipalityCode>("\"131017\"").expect_err("bad digit");
        assert!(err.to_string().contains("expected 6, found 7"), "{err}");
        let pref: PrefectureCode = serde_json::from_str("\"01\"").expect("prefecture");
        assert_eq!(serde_json::to_string(&pref).expect("serialise"), "\"01\"");
    }

    #[test]
    fn prefecture_codes_cover_01_to_47() {
        let cases = [
            ("01", Some("北海道")),
            ("13", Some("東京都")),
            ("47", Some("沖縄県")),
        ];
        for (input, name) in cases {
            assert_eq!(
                PrefectureCode::parse(input)
                    .ok()
                    .map(PrefectureCode::name_ja),
                name
            );
        }
        assert_eq!(PrefectureCode::parse("13").expect("13").to_string(), "13");
        assert_eq!(PrefectureCode::from_number(0), None);
        assert_eq!(PrefectureCode::from_number(48), None);
        assert_eq!(
            PrefectureCode::from_number(47).map(PrefectureCode::number),
            Some(47)
        );
        assert!(PrefectureCode::parse("1").is_err());
        assert!(PrefectureCode::parse("00").is_err());
    }
}
