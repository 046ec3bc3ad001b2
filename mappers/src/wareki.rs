//! Dates written in the Japanese calendar (和暦: 令和6年4月1日, R6.4.1, 5060401) or the Western
//! calendar (2024-04-01, 2024/4/1, 20240401), read into FHIR `date` values and written back.
//! The eras come from `profiles/jp/eras.json`, so a correction is a data change.

use std::sync::OnceLock;

use serde::Deserialize;
use time::{Date, Month};
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarekiError {
    #[error(
        "{0:?} is not a date in a known form (令和6年4月1日, R6.4.1, 5060401, 2024-04-01, 2024/4/1, 20240401)"
    )]
    Unrecognised(String),
    #[error("{0:?} names a day that does not exist")]
    NoSuchDay(String),
    #[error("{text:?} is outside the {era} era, which starts on {start}")]
    OutsideEra {
        text: String,
        era: String,
        start: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
struct Era {
    name: String,
    letter: String,
    code: String,
    start: String,
}

#[derive(Deserialize)]
struct EraFile {
    eras: Vec<Era>,
}

struct EraTable {
    eras: Vec<(Era, Date)>,
}

fn eras() -> &'static EraTable {
    static ERAS: OnceLock<EraTable> = OnceLock::new();
    ERAS.get_or_init(|| {
        let file: EraFile =
            serde_json::from_str(profiles::JP_ERAS_JSON).expect("profiles/jp/eras.json must parse");
        let eras = file
            .eras
            .into_iter()
            .map(|era| {
                let start = parse_iso(&era.start).expect("era start dates are ISO dates");
                (era, start)
            })
            .collect();
        EraTable { eras }
    })
}

fn parse_iso(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = Month::try_from(parts.next()?.parse::<u8>().ok()?).ok()?;
    let day = parts.next()?.parse().ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// Read a date in any accepted form. Full-width digits and letters are folded first (NFKC).
pub fn parse_date(text: &str) -> Result<Date, WarekiError> {
    let folded: String = text.nfkc().filter(|c| !c.is_whitespace()).collect();
    let unrecognised = || WarekiError::Unrecognised(text.to_owned());
    if let Some((era_index, rest)) = strip_era(&folded) {
        let (year, month, day) = split_ymd(rest).ok_or_else(unrecognised)?;
        return era_date(era_index, year, month, day, text);
    }
    // 7 digits: era code + YYMMDD (municipal systems).
    if folded.len() == 7 && folded.bytes().all(|b| b.is_ascii_digit()) {
        let era_index = eras()
            .eras
            .iter()
            .position(|(e, _)| e.code == folded[..1])
            .ok_or_else(unrecognised)?;
        let num = |r: std::ops::Range<usize>| folded[r].parse::<u32>().map_err(|_| unrecognised());
        return era_date(era_index, num(1..3)?, num(3..5)?, num(5..7)?, text);
    }
    if folded.len() == 8 && folded.bytes().all(|b| b.is_ascii_digit()) {
        let num = |r: std::ops::Range<usize>| folded[r].parse::<u32>().map_err(|_| unrecognised());
        return gregorian(num(0..4)?, num(4..6)?, num(6..8)?, text);
    }
    let (year, month, day) = split_ymd(&folded).ok_or_else(unrecognised)?;
    if year < 1000 {
        return Err(unrecognised());
    }
    gregorian(year, month, day, text)
}

/// The era named at the start of the text (漢字 name or letter) and the rest.
fn strip_era(text: &str) -> Option<(usize, &str)> {
    for (i, (era, _)) in eras().eras.iter().enumerate() {
        if let Some(rest) = text.strip_prefix(era.name.as_str()) {
            return Some((i, rest));
        }
        let upper_or_lower = [era.letter.clone(), era.letter.to_lowercase()];
        for letter in &upper_or_lower {
            if let Some(rest) = text.strip_prefix(letter.as_str())
                && rest.starts_with(|c: char| c.is_ascii_digit())
            {
                return Some((i, rest));
            }
        }
    }
    None
}

/// `6年4月1日`, `元年5月1日`, `6.4.1`, `06/04/01`, `2024-04-01` → numbers.
fn split_ymd(text: &str) -> Option<(u32, u32, u32)> {
    let text = text
        .strip_suffix('日')
        .unwrap_or(text)
        .replacen("元年", "1年", 1);
    let parts: Vec<&str> = text.split(['年', '月', '.', '/', '-']).collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    Some((y.parse().ok()?, m.parse().ok()?, d.parse().ok()?))
}

fn gregorian(year: u32, month: u32, day: u32, text: &str) -> Result<Date, WarekiError> {
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| WarekiError::NoSuchDay(text.to_owned()))?;
    let day = u8::try_from(day).map_err(|_| WarekiError::NoSuchDay(text.to_owned()))?;
    let year = i32::try_from(year).map_err(|_| WarekiError::NoSuchDay(text.to_owned()))?;
    Date::from_calendar_date(year, month, day).map_err(|_| WarekiError::NoSuchDay(text.to_owned()))
}

fn era_date(
    era_index: usize,
    year: u32,
    month: u32,
    day: u32,
    text: &str,
) -> Result<Date, WarekiError> {
    let table = &eras().eras;
    let (era, start) = &table[era_index];
    if year == 0 {
        return Err(WarekiError::NoSuchDay(text.to_owned()));
    }
    let date = gregorian(start.year() as u32 + year - 1, month, day, text)?;
    let next_start = table.get(era_index + 1).map(|(_, s)| *s);
    if date < *start || next_start.is_some_and(|n| date >= n) {
        return Err(WarekiError::OutsideEra {
            text: text.to_owned(),
            era: era.name.clone(),
            start: era.start.clone(),
        });
    }
    Ok(date)
}

/// Write a date the way forms print it: `令和6年4月1日` (`元年` for year 1).
pub fn to_wareki(date: Date) -> Option<String> {
    let (era, start) = eras().eras.iter().rev().find(|(_, start)| date >= *start)?;
    let year = date.year() - start.year() + 1;
    let year = if year == 1 {
        "元".to_owned()
    } else {
        year.to_string()
    };
    Some(format!(
        "{}{}年{}月{}日",
        era.name,
        year,
        u8::from(date.month()),
        date.day()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> String {
        let date = parse_date(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        )
    }

    #[test]
    fn era_forms_read_the_same_day() {
        for text in [
            "令和6年4月1日",
            "令和６年４月１日",
            "R6.4.1",
            "r06/04/01",
            "R06.04.01",
            "5060401",
            "2024-04-01",
            "2024/4/1",
            "20240401",
            "２０２４－０４－０１",
        ] {
            assert_eq!(d(text), "2024-04-01", "{text}");
        }
    }

    #[test]
    fn era_boundaries() {
        assert_eq!(d("令和元年5月1日"), "2019-05-01");
        assert_eq!(d("平成31年4月30日"), "2019-04-30");
        assert!(matches!(
            parse_date("平成31年5月1日"),
            Err(WarekiError::OutsideEra { .. })
        ));
        assert!(matches!(
            parse_date("令和1年4月30日"),
            Err(WarekiError::OutsideEra { .. })
        ));
        assert_eq!(d("平成元年1月8日"), "1989-01-08");
        assert!(
            parse_date("昭和64年1月8日").is_err(),
            "Showa ended on 1989-01-07"
        );
        assert_eq!(d("昭和64年1月7日"), "1989-01-07");
        assert_eq!(d("H12.2.29"), "2000-02-29");
    }

    #[test]
    fn impossible_and_unknown_dates_are_errors() {
        assert!(matches!(
            parse_date("令和5年2月29日"),
            Err(WarekiError::NoSuchDay(_))
        ));
        assert!(matches!(
            parse_date("2024-13-01"),
            Err(WarekiError::NoSuchDay(_))
        ));
        assert!(matches!(
            parse_date("令和0年5月1日"),
            Err(WarekiError::NoSuchDay(_))
        ));
        assert!(matches!(
            parse_date("yesterday"),
            Err(WarekiError::Unrecognised(_))
        ));
        assert!(matches!(
            parse_date("9060401"),
            Err(WarekiError::Unrecognised(_))
        ));
    }

    #[test]
    fn dates_are_written_back_in_wareki() {
        assert_eq!(
            to_wareki(parse_date("2019-05-01").unwrap()).unwrap(),
            "令和元年5月1日"
        );
        assert_eq!(
            to_wareki(parse_date("2024-04-01").unwrap()).unwrap(),
            "令和6年4月1日"
        );
        assert_eq!(
            to_wareki(parse_date("1989-01-07").unwrap()).unwrap(),
            "昭和64年1月7日"
        );
    }
}
