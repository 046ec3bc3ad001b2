//! GS1 element strings as printed on Japanese vaccine packages and sent by scanners: the
//! parenthesised human-readable form `(01)04987…(17)270331(10)AB123` and the raw scanner form
//! with a symbology identifier (`]C1` GS1-128, `]e0` GS1 DataBar, `]d2` GS1 DataMatrix, `]Q3` GS1
//! QR Code) and the ASCII GS character (0x1D) standing for FNC1 after variable-length fields.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month};

use crate::IdError;
use crate::digits::{digit_char, normalize};

/// The ASCII group separator a scanner sends for FNC1.
const GS: char = '\u{1D}';

/// A GTIN-14 (Global Trade Item Number), valid by construction (14 digits, check digit holds).
/// Shorter GTINs (a 13-digit JAN code, GTIN-12, GTIN-8) are stored with leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtin(String);

impl Gtin {
    /// Parses a GTIN of 8, 12, 13 or 14 digits (full-width accepted) and checks its check digit.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = normalize(text);
        if let Some((i, c)) = text.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(IdError::NonDigit {
                what: "GTIN",
                position: i + 1,
                found: c,
            });
        }
        if ![8, 12, 13, 14].contains(&text.len()) {
            return Err(IdError::GtinLength {
                found: text.chars().count(),
            });
        }
        let padded = format!("{text:0>14}");
        let d: Vec<u8> = padded.bytes().map(|b| b - b'0').collect();
        let expected = check_digit(&d[..13]);
        if d[13] != expected {
            return Err(IdError::CheckDigit {
                what: "GTIN",
                expected: digit_char(expected),
                found: digit_char(d[13]),
            });
        }
        Ok(Self(padded))
    }

    /// The 14 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The indicator digit (packaging level; in Japanese pharmaceutical codes 0 is the 調剤包装単位
    /// and 1 the 販売包装単位).
    pub fn indicator(&self) -> u8 {
        self.0.as_bytes()[0] - b'0'
    }
}

/// The GS1 check digit of the data digits: weights 3, 1, 3, … from the rightmost digit, and the
/// check digit brings the weighted sum up to a multiple of 10.
pub fn check_digit(data: &[u8]) -> u8 {
    let sum: u32 = data
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Gtin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Gtin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where the data came from, as told by the symbology identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbology {
    /// `]C1`
    Gs1_128,
    /// `]e0` (also GS1 DataBar with a composite component)
    DataBar,
    /// `]d2`
    DataMatrix,
    /// `]Q3`
    QrCode,
    /// `]E0`: a plain EAN-13 (JAN) symbol carrying only a GTIN-13.
    Ean13,
    /// No symbology identifier: typed or printed text.
    None,
}

/// An element string kept without interpretation: an AI this crate knows the shape of but does
/// not map to a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementString {
    pub ai: String,
    pub value: String,
}

/// The content of a scanned or typed GS1 barcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gs1Data {
    pub symbology: Symbology,
    /// AI (01).
    pub gtin: Gtin,
    /// AI (17) expiration date; `00` as the day means the last day of the month.
    pub expiry: Option<Date>,
    /// AI (10) batch or lot number (製造番号).
    pub lot: Option<String>,
    /// AI (21) serial number.
    pub serial: Option<String>,
    /// AI (11) production date (製造年月日).
    pub production_date: Option<Date>,
    /// AI (30) count of items.
    pub count: Option<u32>,
    /// AI (240) additional product identification.
    pub additional_product_id: Option<String>,
    /// Every other recognised element string, in input order.
    pub other: Vec<ElementString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Numeric,
    /// GS1 AI encodable character set 82.
    Alphanumeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Fixed(usize),
    Variable(usize),
}

/// The AIs this crate reads. Dates and GTINs are interpreted; the rest is kept in
/// [`Gs1Data::other`].
const KNOWN_AIS: &[(&str, Length, Charset)] = &[
    ("00", Length::Fixed(18), Charset::Numeric),
    ("01", Length::Fixed(14), Charset::Numeric),
    ("02", Length::Fixed(14), Charset::Numeric),
    ("10", Length::Variable(20), Charset::Alphanumeric),
    ("11", Length::Fixed(6), Charset::Numeric),
    ("12", Length::Fixed(6), Charset::Numeric),
    ("13", Length::Fixed(6), Charset::Numeric),
    ("15", Length::Fixed(6), Charset::Numeric),
    ("16", Length::Fixed(6), Charset::Numeric),
    ("17", Length::Fixed(6), Charset::Numeric),
    ("20", Length::Fixed(2), Charset::Numeric),
    ("21", Length::Variable(20), Charset::Alphanumeric),
    ("22", Length::Variable(20), Charset::Alphanumeric),
    ("240", Length::Variable(30), Charset::Alphanumeric),
    ("241", Length::Variable(30), Charset::Alphanumeric),
    ("30", Length::Variable(8), Charset::Numeric),
    ("37", Length::Variable(8), Charset::Numeric),
    ("7003", Length::Fixed(10), Charset::Numeric),
    ("710", Length::Variable(20), Charset::Alphanumeric),
    ("711", Length::Variable(20), Charset::Alphanumeric),
    ("712", Length::Variable(20), Charset::Alphanumeric),
    ("713", Length::Variable(20), Charset::Alphanumeric),
    ("714", Length::Variable(20), Charset::Alphanumeric),
    ("715", Length::Variable(20), Charset::Alphanumeric),
];

/// The GS1 table of element strings with a predefined length, by the first two digits of the
/// AI: (prefix, AI length, data length). GS1 declares this table closed, so data starting with
/// one of these prefixes can be delimited (and kept in `other`) even when the AI itself is not
/// in [`KNOWN_AIS`].
const PREDEFINED_LENGTH: &[(&str, usize, usize)] = &[
    ("03", 2, 14),
    ("04", 2, 16),
    ("14", 2, 6),
    ("18", 2, 6),
    ("19", 2, 6),
    ("31", 4, 6),
    ("32", 4, 6),
    ("33", 4, 6),
    ("34", 4, 6),
    ("35", 4, 6),
    ("36", 4, 6),
    ("41", 3, 13),
];

/// Finds the AI at the start of `rest`: its text and shape.
fn lookup_ai(rest: &[char]) -> Option<(String, Length, Charset)> {
    let starts_with =
        |ai: &str| ai.len() <= rest.len() && ai.chars().zip(rest).all(|(a, &b)| a == b);
    if let Some(&(ai, length, charset)) = KNOWN_AIS.iter().find(|(ai, ..)| starts_with(ai)) {
        return Some((ai.to_owned(), length, charset));
    }
    let &(_, ai_len, data_len) = PREDEFINED_LENGTH
        .iter()
        .find(|(prefix, ..)| starts_with(prefix))?;
    let ai: String = rest.iter().take(ai_len).collect();
    (ai.len() == ai_len && ai.chars().all(|c| c.is_ascii_digit())).then_some((
        ai,
        Length::Fixed(data_len),
        Charset::Numeric,
    ))
}

/// Parses a GS1 barcode's content, resolving two-digit years against today's date (UTC).
pub fn parse(input: &str) -> Result<Gs1Data, IdError> {
    parse_at(input, time::OffsetDateTime::now_utc().date())
}

/// Parses a GS1 barcode's content; two-digit years are resolved against `today` by the GS1
/// century rule (a year 51 or more ahead is in the previous century, 50 or more behind in the
/// next).
pub fn parse_at(input: &str, today: Date) -> Result<Gs1Data, IdError> {
    let text = normalize(input);
    if text.is_empty() {
        return Err(IdError::Gs1Empty);
    }
    let chars: Vec<char> = text.chars().collect();
    let (symbology, body_start) = symbology(&chars)?;
    let body = &chars[body_start..];
    let all_digits = !body.is_empty() && body.iter().all(char::is_ascii_digit);
    // A JAN (EAN-13) symbol, or a bare GTIN typed by hand, carries only the item number.
    if symbology == Symbology::Ean13
        || (symbology == Symbology::None && all_digits && matches!(body.len(), 13 | 14))
    {
        let gtin = Gtin::parse(&body.iter().collect::<String>())?;
        return Ok(empty_data(symbology, gtin));
    }
    let elements = if body.first() == Some(&'(') {
        split_parenthesised(body, body_start)?
    } else {
        split_raw(body, body_start)?
    };
    interpret(symbology, elements, today)
}

fn symbology(chars: &[char]) -> Result<(Symbology, usize), IdError> {
    if chars.first() != Some(&']') {
        return Ok((Symbology::None, 0));
    }
    let id: String = chars.iter().take(3).collect();
    let symbology = match id.as_str() {
        "]C1" => Symbology::Gs1_128,
        "]e0" => Symbology::DataBar,
        "]d2" => Symbology::DataMatrix,
        "]Q3" => Symbology::QrCode,
        "]E0" => Symbology::Ean13,
        _ => return Err(IdError::Gs1UnsupportedSymbology(id)),
    };
    Ok((symbology, 3))
}

fn empty_data(symbology: Symbology, gtin: Gtin) -> Gs1Data {
    Gs1Data {
        symbology,
        gtin,
        expiry: None,
        lot: None,
        serial: None,
        production_date: None,
        count: None,
        additional_product_id: None,
        other: Vec::new(),
    }
}

/// One element string as found.
struct Found {
    ai: String,
    value: String,
}

/// Splits the scanner form. `offset` is the number of characters before `body` (for positions).
fn split_raw(body: &[char], offset: usize) -> Result<Vec<Found>, IdError> {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        if body[pos] == GS {
            pos += 1;
            continue;
        }
        let rest = &body[pos..];
        let Some((ai, length, charset)) = lookup_ai(rest) else {
            return Err(IdError::Gs1UnknownAi {
                position: offset + pos + 1,
                found: rest.iter().take(4).collect(),
            });
        };
        let start = pos + ai.len();
        let field_end = body[start..]
            .iter()
            .position(|&c| c == GS)
            .map_or(body.len(), |i| start + i);
        let end = match length {
            Length::Fixed(n) => {
                if field_end - start < n {
                    return Err(IdError::Gs1Truncated {
                        ai,
                        expected: n,
                        found: field_end - start,
                    });
                }
                start + n
            }
            Length::Variable(max) => {
                if field_end - start > max {
                    return Err(IdError::Gs1TooLong {
                        ai,
                        max,
                        found: field_end - start,
                    });
                }
                field_end
            }
        };
        let value: String = body[start..end].iter().collect();
        check_value(&ai, &value, charset, offset + start + 1)?;
        found.push(Found { ai, value });
        pos = end;
    }
    Ok(found)
}

/// Splits the human-readable form `(AI)value(AI)value…`. A value runs to the next `(`; spaces
/// around values (as printed under barcodes) are ignored.
fn split_parenthesised(body: &[char], offset: usize) -> Result<Vec<Found>, IdError> {
    let mut found = Vec::new();
    let mut pos = 0;
    // Each iteration starts at a '(' (the body starts with one and every value runs up to the
    // next), so spaces and separators between elements end up trimmed off the values.
    while pos < body.len() {
        let close = body[pos..]
            .iter()
            .position(|&c| c == ')')
            .map(|i| pos + i)
            .ok_or_else(|| {
                IdError::Gs1Syntax(format!("unclosed '(' at position {}", offset + pos + 1))
            })?;
        let ai: String = body[pos + 1..close].iter().collect();
        if !(2..=4).contains(&ai.len()) || !ai.chars().all(|c| c.is_ascii_digit()) {
            return Err(IdError::Gs1Syntax(format!(
                "({ai}) at position {} is not an application identifier of 2–4 digits",
                offset + pos + 1
            )));
        }
        let (known, length, charset) = match lookup_ai(&body[pos + 1..close]) {
            Some(spec) if spec.0 == ai => spec,
            _ => {
                return Err(IdError::Gs1UnknownAi {
                    position: offset + pos + 2,
                    found: ai,
                });
            }
        };
        let start = close + 1;
        let end = body[start..]
            .iter()
            .position(|&c| c == '(')
            .map_or(body.len(), |i| start + i);
        let value: String = body[start..end]
            .iter()
            .collect::<String>()
            .trim()
            .to_owned();
        let n = value.chars().count();
        match length {
            Length::Fixed(expected) if n < expected => {
                return Err(IdError::Gs1Truncated {
                    ai: known,
                    expected,
                    found: n,
                });
            }
            Length::Fixed(max) | Length::Variable(max) if n > max => {
                return Err(IdError::Gs1TooLong {
                    ai: known,
                    max,
                    found: n,
                });
            }
            _ => {}
        }
        check_value(&known, &value, charset, offset + start + 1)?;
        found.push(Found { ai: known, value });
        pos = end;
    }
    Ok(found)
}

/// Checks the characters of a value; `position` is where the value starts (1-based).
fn check_value(ai: &str, value: &str, charset: Charset, position: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Gs1EmptyValue { ai: ai.to_owned() });
    }
    let allowed = |c: char| match charset {
        Charset::Numeric => c.is_ascii_digit(),
        Charset::Alphanumeric => c.is_ascii_alphanumeric() || "!\"%&'()*+,-./:;<=>?_".contains(c),
    };
    match value.chars().enumerate().find(|&(_, c)| !allowed(c)) {
        Some((i, c)) => Err(IdError::Gs1InvalidCharacter {
            ai: ai.to_owned(),
            position: position + i,
            found: c,
        }),
        None => Ok(()),
    }
}

fn interpret(symbology: Symbology, found: Vec<Found>, today: Date) -> Result<Gs1Data, IdError> {
    // Drop exact repeats (some labels print an element twice); different values are an error.
    let mut elements: Vec<Found> = Vec::with_capacity(found.len());
    for element in found {
        match elements.iter().find(|e| e.ai == element.ai) {
            Some(first) if first.value == element.value => {}
            Some(first) => {
                return Err(IdError::Gs1DuplicateAi {
                    ai: element.ai,
                    first: first.value.clone(),
                    second: element.value,
                });
            }
            None => elements.push(element),
        }
    }
    let gtin_element = elements
        .iter()
        .find(|e| e.ai == "01")
        .ok_or(IdError::Gs1MissingGtin)?;
    let gtin = Gtin::parse(&gtin_element.value).map_err(|e| match e {
        IdError::CheckDigit {
            expected, found, ..
        } => IdError::CheckDigit {
            what: "GS1 (01) GTIN",
            expected,
            found,
        },
        other => other,
    })?;
    let mut data = empty_data(symbology, gtin);
    for element in elements {
        let Found { ai, value } = element;
        match ai.as_str() {
            "01" => {}
            "17" => data.expiry = Some(date(&ai, &value, today)?),
            "11" => data.production_date = Some(date(&ai, &value, today)?),
            "10" => data.lot = Some(value),
            "21" => data.serial = Some(value),
            "30" => {
                data.count = Some(value.parse().expect("checked numeric, at most 8 digits"));
            }
            "240" => data.additional_product_id = Some(value),
            "12" | "13" | "15" | "16" => {
                // Not mapped to a field, but an impossible date is still an error.
                date(&ai, &value, today)?;
                data.other.push(ElementString { ai, value });
            }
            _ => data.other.push(ElementString { ai, value }),
        }
    }
    Ok(data)
}

/// A GS1 `YYMMDD` date. Day `00` means the last day of the month.
fn date(ai: &str, value: &str, today: Date) -> Result<Date, IdError> {
    let invalid = |reason: String| IdError::Gs1InvalidDate {
        ai: ai.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let number = |range: std::ops::Range<usize>| -> u8 {
        value[range].parse().expect("checked numeric, six digits")
    };
    let (yy, mm, dd) = (i32::from(number(0..2)), number(2..4), number(4..6));
    let month =
        Month::try_from(mm).map_err(|_| invalid(format!("month {mm:02} does not exist")))?;
    let year = century_year(yy, today);
    let last = month.length(year);
    let day = if dd == 0 { last } else { dd };
    if day > last {
        return Err(invalid(format!(
            "{year:04}-{mm:02} has {last} days, not {dd}"
        )));
    }
    Date::from_calendar_date(year, month, day).map_err(|e| invalid(e.to_string()))
}

/// The full year of a two-digit year by the GS1 rule (General Specifications, "Determination of
/// century in dates"): compared with today's year, a difference of 51 to 99 means the previous
/// century, −99 to −50 the next, anything else the current one.
fn century_year(yy: i32, today: Date) -> i32 {
    let current = today.year();
    let century = current.div_euclid(100);
    let difference = yy - current.rem_euclid(100);
    let century = if difference >= 51 {
        century - 1
    } else if difference <= -50 {
        century + 1
    } else {
        century
    };
    century * 100 + yy
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2025 - 06 - 15);
    /// Invented GTINs with valid check digits (the check digit of 0498712345678 is 4).
    const G0: &str = "04987123456784";
    const G1: &str = "14987123456781";

    fn ok(input: &str) -> Gs1Data {
        parse_at(input, TODAY).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn err(input: &str) -> String {
        parse_at(input, TODAY).expect_err(input).to_string()
    }

    /// (input, symbology, gtin, expiry, lot)
    type Case = (
        String,
        Symbology,
        &'static str,
        Option<Date>,
        Option<&'static str>,
    );

    #[test]
    fn good_strings_in_every_form() {
        // (input, symbology, gtin, expiry, lot)
        let cases: &[Case] = &[
            (
                format!("(01){G0}(17)270331(10)AB123"),
                Symbology::None,
                G0,
                Some(date!(2027 - 03 - 31)),
                Some("AB123"),
            ),
            (
                format!("(01) {G0} (17) 270331 (10) AB123"),
                Symbology::None,
                G0,
                Some(date!(2027 - 03 - 31)),
                Some("AB123"),
            ),
            (
                "（０１）０４９８７１２３４５６７８４（１７）２７０３３１（１０）ＡＢ１２３"
                    .to_owned(),
                Symbology::None,
                G0,
                Some(date!(2027 - 03 - 31)),
                Some("AB123"),
            ),
            // GS1 DataMatrix, day 00 = last day of the month.
            (
                format!("]d201{G0}1727030010AB123"),
                Symbology::DataMatrix,
                G0,
                Some(date!(2027 - 03 - 31)),
                Some("AB123"),
            ),
            // GS1-128 with a GS-terminated lot followed by the expiry.
            (
                format!("]C101{G1}10LOT42\u{1D}17270331"),
                Symbology::Gs1_128,
                G1,
                Some(date!(2027 - 03 - 31)),
                Some("LOT42"),
            ),
            // GS1 DataBar (composite): lot at the end, special characters allowed.
            (
                format!("]e001{G0}1727033110X-9/1"),
                Symbology::DataBar,
                G0,
                Some(date!(2027 - 03 - 31)),
                Some("X-9/1"),
            ),
            // A trailing GS and no symbology identifier.
            (
                format!("01{G0}10AB\u{1D}"),
                Symbology::None,
                G0,
                None,
                Some("AB"),
            ),
            (
                format!("]Q301{G0}17270331"),
                Symbology::QrCode,
                G0,
                Some(date!(2027 - 03 - 31)),
                None,
            ),
            // A JAN (EAN-13) scan and bare GTINs carry only the item number.
            (
                "]E04987123456784".to_owned(),
                Symbology::Ean13,
                G0,
                None,
                None,
            ),
            ("4987123456784".to_owned(), Symbology::None, G0, None, None),
            (G1.to_owned(), Symbology::None, G1, None, None),
        ];
        for (input, symbology, gtin, expiry, lot) in cases {
            let data = ok(input);
            assert_eq!(data.symbology, *symbology, "{input:?}");
            assert_eq!(data.gtin.as_str(), *gtin, "{input:?}");
            assert_eq!(data.expiry, *expiry, "{input:?}");
            assert_eq!(data.lot.as_deref(), *lot, "{input:?}");
        }
    }

    #[test]
    fn day_00_is_the_last_day_of_the_month() {
        let cases = [
            ("270200", date!(2027 - 02 - 28)),
            ("280200", date!(2028 - 02 - 29)),
            ("270400", date!(2027 - 04 - 30)),
            ("271200", date!(2027 - 12 - 31)),
        ];
        for (yymmdd, expected) in cases {
            assert_eq!(
                ok(&format!("01{G0}17{yymmdd}")).expiry,
                Some(expected),
                "{yymmdd}"
            );
        }
    }

    #[test]
    fn two_digit_years_follow_the_gs1_century_rule() {
        // (today, YY, expected year)
        let cases = [
            (date!(2025 - 06 - 15), "75", 2075), // 50 ahead: this century
            (date!(2025 - 06 - 15), "76", 1976), // 51 ahead: previous century
            (date!(2025 - 06 - 15), "00", 2000),
            (date!(2099 - 01 - 01), "50", 2050), // 49 behind: this century
            (date!(2099 - 01 - 01), "49", 2149), // 50 behind: next century
            (date!(2099 - 01 - 01), "01", 2101), // 98 behind: next century
            (date!(2060 - 01 - 01), "10", 2110), // 50 behind: next century
        ];
        for (today, yy, year) in cases {
            let data = parse_at(&format!("01{G0}17{yy}0101"), today).expect("valid");
            assert_eq!(data.expiry.map(Date::year), Some(year), "{today} {yy}");
        }
    }

    #[test]
    fn other_fields_are_read() {
        let data = ok(&format!(
            "]d201{G0}11250101172703312112345\u{1D}30100\u{1D}240ADD-1\u{1D}10L9"
        ));
        assert_eq!(data.production_date, Some(date!(2025 - 01 - 01)));
        assert_eq!(data.serial.as_deref(), Some("12345"));
        assert_eq!(data.count, Some(100));
        assert_eq!(data.additional_product_id.as_deref(), Some("ADD-1"));
        assert_eq!(data.lot.as_deref(), Some("L9"));
        assert!(data.other.is_empty());
    }

    #[test]
    fn predefined_length_and_other_known_ais_are_kept_aside() {
        // (3103) net weight is outside the known table but has a predefined length; (7003) is
        // fixed-length and terminated by GS.
        let data = ok(&format!("]C101{G0}310300012370032704011700\u{1D}10L"));
        let other: Vec<(&str, &str)> = data
            .other
            .iter()
            .map(|e| (e.ai.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(other, [("3103", "000123"), ("7003", "2704011700")]);
        assert_eq!(data.lot.as_deref(), Some("L"));
    }

    #[test]
    fn parse_reads_the_clock_only_for_the_century() {
        let data = parse(&format!("(01){G0}(10)A")).expect("valid");
        assert_eq!((data.gtin.as_str(), data.lot.as_deref()), (G0, Some("A")));
    }

    #[test]
    fn identical_repeats_are_accepted() {
        let data = ok(&format!("(01){G0}(10)A(10)A"));
        assert_eq!(data.lot.as_deref(), Some("A"));
    }

    #[test]
    fn bad_strings_say_what_is_wrong() {
        let cases: &[(String, &str)] = &[
            (
                "(01)04987123456789(17)270331(10)AB123".to_owned(),
                "GS1 (01) GTIN: bad check digit: expected 4, found 9",
            ),
            (
                format!("(01){G0}(17)270231"),
                "GS1 (17): impossible date \"270231\": 2027-02 has 28 days, not 31",
            ),
            (
                format!("01{G0}17271301"),
                "GS1 (17): impossible date \"271301\": month 13 does not exist",
            ),
            (
                format!("01{G0}11250230"),
                "GS1 (11): impossible date \"250230\": 2025-02 has 28 days, not 30",
            ),
            (
                "]d2010498712345".to_owned(),
                "GS1 (01): truncated: needs 14 characters, found 10",
            ),
            (
                format!("]d201{G0}172703\u{1D}10A"),
                "GS1 (17): truncated: needs 6 characters, found 4",
            ),
            (
                format!("(01){G0}(17)2703"),
                "GS1 (17): truncated: needs 6 characters, found 4",
            ),
            (
                format!("(01){G0}(17)2703311"),
                "GS1 (17): 7 characters, at most 6 allowed",
            ),
            (
                format!("]C101{G0}10ABCDEFGHIJKLMNOPQRSTU"),
                "GS1 (10): 21 characters, at most 20 allowed",
            ),
            (
                format!("(01){G0}(10)ABCDEFGHIJKLMNOPQRSTU"),
                "GS1 (10): 21 characters, at most 20 allowed",
            ),
            (
                format!("(01){G0}(10)A(10)B"),
                "GS1 (10) appears twice with different values: \"A\" and \"B\"",
            ),
            (
                format!("]d201{G0}99XYZ"),
                "GS1: unknown application identifier at position 20 (data begins \"99XY\")",
            ),
            (
                format!("(01){G0}(99)X"),
                "GS1: unknown application identifier at position 20 (data begins \"99\")",
            ),
            (
                "(17)270331(10)A".to_owned(),
                "GS1: no GTIN (AI 01) in the data",
            ),
            (
                format!("]A001{G0}"),
                "GS1: symbology identifier ]A0 does not carry GS1 element strings",
            ),
            (
                format!("01{G0}10AB#1"),
                "GS1 (10): invalid character '#' at position 21",
            ),
            (
                format!("(01){G0}(30)1A"),
                "GS1 (30): invalid character 'A' at position 24",
            ),
            (format!("(01){G0}(10)"), "GS1 (10): empty value"),
            (format!("(01){G0}(10"), "GS1: unclosed '(' at position 19"),
            (
                format!("(01){G0}x(10)A"),
                "GS1 (01): 15 characters, at most 14 allowed",
            ),
            (
                "(1)2".to_owned(),
                "GS1: (1) at position 1 is not an application identifier of 2–4 digits",
            ),
            ("  ".to_owned(), "GS1: empty input"),
            (
                "]E04987123456785".to_owned(),
                "GTIN: bad check digit: expected 4, found 5",
            ),
            (
                "498712345678".to_owned(),
                "GS1: unknown application identifier at position 1 (data begins \"4987\")",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(err(input), *message, "{input:?}");
        }
    }

    #[test]
    fn gtin_accepts_jan_and_checks_the_digit() {
        let cases = [
            ("4987123456784", Ok(G0)),
            (G0, Ok(G0)),
            ("１４９８７１２３４５６７８１", Ok(G1)),
            (
                "14987123456782",
                Err("GTIN: bad check digit: expected 1, found 2"),
            ),
            ("498712345678", Ok("00498712345678")),
            (
                "498712345679",
                Err("GTIN: bad check digit: expected 8, found 9"),
            ),
            (
                "49871234567",
                Err("GTIN: expected 8, 12, 13 or 14 digits, found 11 characters"),
            ),
            ("4987-123", Err("GTIN: non-digit '-' at position 5")),
            (
                "123",
                Err("GTIN: expected 8, 12, 13 or 14 digits, found 3 characters"),
            ),
        ];
        for (input, expected) in cases {
            let got = Gtin::parse(input)
                .map(|g| g.as_str().to_owned())
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                expected.map(str::to_owned).map_err(str::to_owned),
                "{input}"
            );
        }
        assert_eq!(Gtin::parse(G1).expect("valid").indicator(), 1);
        let gtin: Gtin = serde_json::from_str("\"4987123456784\"").expect("serde");
        assert_eq!(
            serde_json::to_string(&gtin).expect("serialise"),
            format!("\"{G0}\"")
        );
    }
}
