//! Text normalisation and digit-string parsing shared by the identifier newtypes.

use crate::IdError;

/// Maps full-width ASCII (U+FF01–U+FF5E, e.g. `１３１０１６`, `（０１）`) to ASCII and the
/// ideographic space to a space, then trims. Japanese forms and OCR output often carry
/// full-width digits; everything downstream works on ASCII.
pub(crate) fn normalize(input: &str) -> String {
    input
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => {
                char::from_u32(c as u32 - 0xFEE0).expect("the full-width block maps onto ASCII")
            }
            '\u{3000}' => ' ',
            other => other,
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Checks that `text` (already normalised) is exactly `expected` ASCII digits and returns their
/// values. Positions in errors are 1-based character positions.
pub(crate) fn digits(what: &'static str, text: &str, expected: usize) -> Result<Vec<u8>, IdError> {
    let found = text.chars().count();
    if found != expected {
        return Err(IdError::Length {
            what,
            expected,
            found,
        });
    }
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            c.to_digit(10)
                .filter(|_| c.is_ascii_digit())
                .map(|d| d as u8)
                .ok_or(IdError::NonDigit {
                    what,
                    position: i + 1,
                    found: c,
                })
        })
        .collect()
}

/// The digit character of a value 0–9.
pub(crate) fn digit_char(value: u8) -> char {
    char::from(b'0' + value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_maps_full_width_and_trims() {
        let cases = [
            ("１３１０１６", "131016"),
            ("（０１）０４９", "(01)049"),
            ("\u{3000}131016 ", "131016"),
            ("ＡＢ１２３", "AB123"),
            ("131016", "131016"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), expected, "{input}");
        }
    }

    #[test]
    fn digits_reports_length_then_position() {
        assert_eq!(digits("x", "0123", 4), Ok(vec![0, 1, 2, 3]));
        assert_eq!(
            digits("x", "012", 4),
            Err(IdError::Length {
                what: "x",
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            digits("x", "01a3", 4),
            Err(IdError::NonDigit {
                what: "x",
                position: 3,
                found: 'a'
            })
        );
        // Non-ASCII digits such as Arabic-Indic ones are not digits here.
        assert_eq!(
            digits("x", "01\u{0663}3", 4),
            Err(IdError::NonDigit {
                what: "x",
                position: 3,
                found: '\u{0663}'
            })
        );
    }
}
