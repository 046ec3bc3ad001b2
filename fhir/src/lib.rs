//! FHIR R4 knowledge that needs no I/O: the structure of every type (from the official
//! definitions, see `profiles`), structural validation, the XML format and OperationOutcome.

pub mod definitions;
pub mod validate;
pub mod xml;

pub use definitions::{Definitions, ElementDef, Max, TypeDef, TypeKind};

/// Whether `text` is a FHIR resource id: 1 to 64 of `A-Z a-z 0-9 - .` (R4 2.24.0.3, the `id`
/// type's regex), checked byte by byte for the callers that test ids on every request.
pub fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_follow_the_id_type_of_the_definitions() {
        let regex = crate::Definitions::r4()
            .type_def("id")
            .and_then(|t| t.regex.clone())
            .expect("the id type has a regex");
        let regex = regex::Regex::new(&format!("^(?:{regex})$")).unwrap();
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for text in [
            "p1", "A-b.9", &long, &too_long, "", "a_b", "a b", "a/b", "日本", "a\0",
        ] {
            assert_eq!(super::is_id(text), regex.is_match(text), "{text:?}");
        }
    }
}
