//! Character encodings of municipal files: UTF-8, UTF-8 with a byte-order mark, and CP932
//! (Windows-31J, the Shift_JIS variant Japanese municipal systems and Excel write).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The encoding of a municipal CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum Encoding {
    Utf8,
    /// UTF-8 preceded by the byte-order mark EF BB BF (as Excel writes "CSV UTF-8").
    Utf8Bom,
    /// CP932 / Windows-31J, decoded and encoded with the WHATWG Shift_JIS tables
    /// (`encoding_rs`), which are CP932's.
    Cp932,
}

/// How [`crate::Import`] picks the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingChoice {
    /// A BOM means UTF-8 BOM; otherwise valid UTF-8 means UTF-8; otherwise CP932.
    Auto,
    Exactly(Encoding),
}

impl FromStr for Encoding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "utf-8-bom" | "utf8-bom" | "utf-8-sig" => Ok(Encoding::Utf8Bom),
            "cp932" | "shift_jis" | "shift-jis" | "sjis" | "windows-31j" => Ok(Encoding::Cp932),
            _ => Err(format!(
                "unknown encoding {text:?} (expected utf-8, utf-8-bom or cp932)"
            )),
        }
    }
}

impl TryFrom<String> for Encoding {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf8Bom => "utf-8-bom",
            Encoding::Cp932 => "cp932",
        })
    }
}

pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Encoding {
    /// Whether every character of `text` can be written in this encoding. CP932 lacks many
    /// characters (e.g. 𠮷, emoji); [`crate::export_file`] would write those as `&#NNNN;`, so a
    /// caller that must not lose characters checks rows with this first.
    pub fn can_encode(self, text: &str) -> bool {
        match self {
            Encoding::Utf8 | Encoding::Utf8Bom => true,
            Encoding::Cp932 => {
                let (_, _, had_errors) = encoding_rs::SHIFT_JIS.encode(text);
                !had_errors
            }
        }
    }

    /// `text` in this encoding (a BOM is not added here).
    pub(crate) fn encode_into(self, text: &str, out: &mut Vec<u8>) {
        match self {
            Encoding::Utf8 | Encoding::Utf8Bom => out.extend_from_slice(text.as_bytes()),
            Encoding::Cp932 => {
                let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(text);
                out.extend_from_slice(&bytes);
            }
        }
    }
}

/// Guess from the start of a file. `None` when the bytes seen so far are plain ASCII (both
/// encodings read them the same), so the guess is put off until a non-ASCII line arrives.
/// Each line with non-ASCII bytes votes: valid UTF-8 for UTF-8, anything else for CP932 (CP932
/// text is almost never valid multi-byte UTF-8). The majority wins, so one line in the other
/// encoding is reported as such instead of condemning the whole file; a tie goes to UTF-8.
pub(crate) fn detect(start: &[u8], complete: bool) -> Option<Encoding> {
    if start.starts_with(BOM) {
        return Some(Encoding::Utf8Bom);
    }
    let (mut utf8, mut cp932) = (0usize, 0usize);
    let mut lines = start.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if line.is_ascii() {
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(_) => utf8 += 1,
            // A multi-byte character cut off by the end of the buffer is still UTF-8.
            Err(e) if last && !complete && e.error_len().is_none() => utf8 += 1,
            Err(_) => cp932 += 1,
        }
    }
    match (utf8, cp932) {
        (0, 0) => None,
        (u, c) if c > u => Some(Encoding::Cp932),
        _ => Some(Encoding::Utf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_display() {
        for (text, expected) in [
            ("utf-8", Encoding::Utf8),
            ("UTF8", Encoding::Utf8),
            ("utf-8-bom", Encoding::Utf8Bom),
            ("cp932", Encoding::Cp932),
            ("Shift_JIS", Encoding::Cp932),
        ] {
            assert_eq!(text.parse::<Encoding>(), Ok(expected), "{text}");
        }
        assert!("latin-1".parse::<Encoding>().is_err());
        assert_eq!(Encoding::Cp932.to_string(), "cp932");
        assert_eq!(Encoding::Utf8Bom.to_string(), "utf-8-bom");
    }

    #[test]
    fn detection() {
        let sjis = encoding_rs::SHIFT_JIS.encode("山田").0.into_owned();
        let utf8 = "山田".as_bytes();
        let cases: &[(&[u8], bool, Option<Encoding>)] = &[
            (b"\xEF\xBB\xBFabc", true, Some(Encoding::Utf8Bom)),
            (b"abc,def\n", true, None),
            (utf8, true, Some(Encoding::Utf8)),
            // The second character cut in half at the end of the buffer.
            (&utf8[..4], false, Some(Encoding::Utf8)),
            (&utf8[..4], true, Some(Encoding::Cp932)),
            (&sjis, true, Some(Encoding::Cp932)),
        ];
        let mut mostly_sjis = sjis.clone();
        mostly_sjis.extend_from_slice(b"\n");
        mostly_sjis.extend_from_slice(utf8);
        mostly_sjis.extend_from_slice(b"\n");
        mostly_sjis.extend_from_slice(&sjis);
        assert_eq!(detect(&mostly_sjis, true), Some(Encoding::Cp932));
        let mut mostly_utf8 = utf8.to_vec();
        mostly_utf8.extend_from_slice(b"\n");
        mostly_utf8.extend_from_slice(&sjis);
        mostly_utf8.extend_from_slice(b"\n");
        mostly_utf8.extend_from_slice(utf8);
        assert_eq!(detect(&mostly_utf8, true), Some(Encoding::Utf8));
        for (bytes, complete, expected) in cases {
            assert_eq!(detect(bytes, *complete), *expected, "{bytes:?}");
        }
    }

    #[test]
    fn cp932_cannot_encode_every_character() {
        assert!(Encoding::Cp932.can_encode("山田　太郎①"));
        assert!(!Encoding::Cp932.can_encode("𠮷野"));
        assert!(Encoding::Utf8.can_encode("𠮷野"));
    }
}
