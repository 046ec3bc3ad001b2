//! The 18-digit OCR line of a vaccination ticket (接種券): 券種 (1) + 回数 (1) + 市町村コード (6)
//! + 券番号 (10), as printed for VRS input (jp-specs §3.4).

use crate::IdError;
use crate::digits::{digits, normalize};
use crate::municipality::MunicipalityCode;

/// A parsed 接種券 OCR line. The municipality code is validated (prefecture and check digit); the
/// other parts are digits whose meaning the issuing system defines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaccinationTicket {
    /// 券種 (ticket kind), digit 1.
    pub ticket_kind: u8,
    /// 回数 (dose number the ticket is for), digit 2.
    pub dose_number: u8,
    /// 市町村コード of the issuing municipality, digits 3–8.
    pub municipality: MunicipalityCode,
    /// 券番号 (ticket number), digits 9–18.
    pub ticket_number: String,
}

const TICKET: &str = "vaccination ticket OCR line";

impl VaccinationTicket {
    /// Parses the 18 digits; full-width digits are accepted and surrounding spaces ignored.
    /// Errors in the municipality code name its position within the line.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = normalize(text);
        let d = digits(TICKET, &text, 18)?;
        let municipality = MunicipalityCode::parse(&text[2..8]).map_err(|e| match e {
            IdError::CheckDigit {
                expected, found, ..
            } => IdError::CheckDigit {
                what: "vaccination ticket municipality code (digits 3–8)",
                expected,
                found,
            },
            IdError::UnknownPrefecture { code, .. } => IdError::UnknownPrefecture {
                what: "vaccination ticket municipality code (digits 3–8)",
                code,
            },
            other => other,
        })?;
        Ok(Self {
            ticket_kind: d[0],
            dose_number: d[1],
            municipality,
            ticket_number: text[8..].to_owned(),
        })
    }

    /// The 18-digit line.
    pub fn to_line(&self) -> String {
        format!(
            "{}{}{}{}",
            self.ticket_kind, self.dose_number, self.municipality, self.ticket_number
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_into_their_parts() {
        let cases = [
            ("111310161234567890", 1, 1, "131016", "1234567890"),
            (
                "２３０１１００２０００００００００１",
                2,
                3,
                "011002",
                "0000000001",
            ),
            (" 104013070000012345 ", 1, 0, "401307", "0000012345"),
        ];
        for (input, kind, dose, municipality, number) in cases {
            let ticket = VaccinationTicket::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ticket.ticket_kind, kind, "{input}");
            assert_eq!(ticket.dose_number, dose, "{input}");
            assert_eq!(ticket.municipality.as_str(), municipality, "{input}");
            assert_eq!(ticket.ticket_number, number, "{input}");
            assert_eq!(ticket.to_line(), crate::digits::normalize(input));
        }
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let cases = [
            (
                "11131016123456789",
                "vaccination ticket OCR line: expected 18 digits, found 17 characters",
            ),
            (
                "1113101612345678901",
                "vaccination ticket OCR line: expected 18 digits, found 19 characters",
            ),
            (
                "11131016123456789O",
                "vaccination ticket OCR line: non-digit 'O' at position 18",
            ),
            (
                "111310171234567890",
                "vaccination ticket municipality code (digits 3–8): bad check digit: expected 6, found 7",
            ),
            (
                "114810031234567890",
                "vaccination ticket municipality code (digits 3–8): unknown prefecture code 48 (expected 01–47)",
            ),
        ];
        for (input, message) in cases {
            let err = VaccinationTicket::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input}");
        }
    }
}
