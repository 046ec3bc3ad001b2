//! Text normalisation for matching the portal's free text against the tables (names, lot
//! numbers) and the deterministic ids.

use ring::digest::{SHA256, digest};
use unicode_normalization::UnicodeNormalization;

/// A name as the tables compare it: NFKC (full-width letters and digits become half-width,
/// half-width kana full-width), wave dash and tilde made one, white space removed, ASCII
/// lower-cased. Portal spellings differ in exactly these ways from one screen to another.
pub fn normalise_name(text: &str) -> String {
    text.nfkc()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{301C}' | '\u{FF5E}' => '~',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A lot number (接種液の製造番号) as de-duplication compares it: NFKC, upper case, without
/// white space and hyphen-like separators, which are written inconsistently between a clinic's
/// EMR and the municipal register. `None` when nothing is left.
pub fn normalise_lot(text: &str) -> Option<String> {
    let lot: String = text
        .nfkc()
        .filter(|c| {
            !c.is_whitespace()
                && !matches!(
                    c,
                    '-' | '\u{2010}'
                        | '\u{2011}'
                        | '\u{2012}'
                        | '\u{2013}'
                        | '\u{2014}'
                        | '\u{2015}'
                        | '\u{2212}'
                        | '\u{30FC}'
                        | '\u{FF70}'
                )
        })
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (!lot.is_empty()).then_some(lot)
}

/// A FHIR id from a natural key: the first 32 hex digits of its SHA-256, the convention the
/// municipal adapter uses too, so a re-pull writes the same resources.
pub fn resource_id(key: &str) -> String {
    let hash = digest(&SHA256, key.as_bytes());
    hash.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let cases = [
            ("４種混合", "4種混合"),
            (" ＭＲ ", "mr"),
            ("3〜4か月児健診", "3~4か月児健診"),
            ("3～4か月児健診", "3~4か月児健診"),
            ("ﾛﾀﾘｯｸｽ", "ロタリックス"),
            ("HPV（9価）", "hpv(9価)"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_name(input), want, "{input}");
        }
    }

    #[test]
    fn lots() {
        let cases = [
            ("AB12-3", Some("AB123")),
            ("ab 123", Some("AB123")),
            ("ＡＢ１２３", Some("AB123")),
            ("AB‐123", Some("AB123")),
            ("AB－123", Some("AB123")),
            (" - ", None),
            ("", None),
            ("X1", Some("X1")),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_lot(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn ids_are_stable_and_fhir_shaped() {
        let a = resource_id("portal|Immunization|p1|mr|2024-04-01|AB123");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, resource_id("portal|Immunization|p1|mr|2024-04-01|AB123"));
        assert_ne!(a, resource_id("portal|Immunization|p1|mr|2024-04-01|AB124"));
    }
}
