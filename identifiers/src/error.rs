//! The crate's single error type: every parse and data-loading failure, each saying exactly what
//! is wrong.

/// Why an identifier, a GS1 element string or a data file was rejected.
///
/// Positions are 1-based character positions in the input after full-width characters were
/// mapped to ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what}: expected {expected} digits, found {found} characters")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{what}: non-digit {found:?} at position {position}")]
    NonDigit {
        what: &'static str,
        position: usize,
        found: char,
    },
    #[error("{what}: unknown prefecture code {code} (expected 01–47)")]
    UnknownPrefecture { what: &'static str, code: String },
    #[error("{what}: bad check digit: expected {expected}, found {found}")]
    CheckDigit {
        what: &'static str,
        expected: char,
        found: char,
    },
    /// The third digit of a 医療機関コード is not a known 点数表番号.
    #[error("{what}: unknown 点数表番号 {found} at position 3 (expected 1, 2, 3, 4 or 6)")]
    UnknownCategory { what: &'static str, found: char },
    #[error("{what}: expected {expected} at position {position}, found {found:?}")]
    UnexpectedDigit {
        what: &'static str,
        position: usize,
        expected: &'static str,
        found: char,
    },
    /// A 10-digit code starting with 9 is the telephone-number form, not a 医療機関コード.
    #[error(
        "{what}: starts with 9, the form for facilities without a code (9 + the last 9 digits of \
         the telephone number), not a 医療機関コード"
    )]
    PhoneBasedFacility { what: &'static str },

    #[error("GTIN: expected 8, 12, 13 or 14 digits, found {found} characters")]
    GtinLength { found: usize },

    #[error("GS1: empty input")]
    Gs1Empty,
    #[error("GS1: symbology identifier {0} does not carry GS1 element strings")]
    Gs1UnsupportedSymbology(String),
    #[error("GS1: unknown application identifier at position {position} (data begins {found:?})")]
    Gs1UnknownAi { position: usize, found: String },
    #[error("GS1 ({ai}): truncated: needs {expected} characters, found {found}")]
    Gs1Truncated {
        ai: String,
        expected: usize,
        found: usize,
    },
    #[error("GS1 ({ai}): {found} characters, at most {max} allowed")]
    Gs1TooLong {
        ai: String,
        max: usize,
        found: usize,
    },
    #[error("GS1 ({ai}): empty value")]
    Gs1EmptyValue { ai: String },
    #[error("GS1 ({ai}): invalid character {found:?} at position {position}")]
    Gs1InvalidCharacter {
        ai: String,
        position: usize,
        found: char,
    },
    #[error("GS1 ({ai}): impossible date {value:?}: {reason}")]
    Gs1InvalidDate {
        ai: String,
        value: String,
        reason: String,
    },
    #[error("GS1 ({ai}) appears twice with different values: {first:?} and {second:?}")]
    Gs1DuplicateAi {
        ai: String,
        first: String,
        second: String,
    },
    #[error("GS1: no GTIN (AI 01) in the data")]
    Gs1MissingGtin,
    #[error("GS1: {0}")]
    Gs1Syntax(String),

    /// A data file (embedded or supplied at run time) could not be used.
    #[error("{file}: {message}")]
    Data { file: String, message: String },
}
