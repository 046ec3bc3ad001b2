//! Profile validation without I/O: the JP Core and Musubi profiles, authored as compact data in
//! `profiles/jp/structure/`, checked against resources on top of the base R4 structural
//! validation (`fhir::validate`).
//!
//! The data format and every shipped profile are described in `docs/profiles.md`. Terminology
//! and identifier checks are asked of a [`Terminology`] implementation, so this crate knows no
//! code system content and no check-digit algorithm of its own.

mod check;
mod data;
mod definition;
mod navigate;
mod profile;
mod set;

use std::borrow::Cow;

pub use profile::Profile;
pub use set::ProfileSet;

/// What the validator needs from terminology and identifier checking; the gateway implements it
/// with the terminology and identifiers crates.
pub trait Terminology {
    /// The canonical form of a code or identifier system: legacy OIDs (`urn:oid:…`) and known
    /// variants map to the URL form, anything else comes back unchanged. Systems are always
    /// compared in this form, so both forms are accepted on input.
    fn canonical_system<'a>(&'a self, system: &'a str) -> Cow<'a, str>;
    /// Whether `system#code` is in the value set (`system` is `None` for a bare `code` element).
    fn check_code(&self, value_set: &str, system: Option<&str>, code: &str) -> CodeCheck;
    /// Check an identifier value against a named format (e.g. `municipality-code`,
    /// `medical-institution-code`); `Err` says what is wrong.
    fn check_identifier(&self, format: &str, value: &str) -> Result<(), String>;
}

/// The answer of [`Terminology::check_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Member,
    NotMember,
    /// The value set is not known here: the binding cannot be checked.
    UnknownValueSet,
    /// The value set draws on a code system whose content is not known here.
    UnknownSystem,
}

/// Why profile data could not be loaded. Always names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConformError {
    #[error("profile data {file}: {problem}")]
    Data { file: String, problem: String },
}

impl ConformError {
    pub(crate) fn data(file: &str, problem: impl Into<String>) -> Self {
        ConformError::Data {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}
