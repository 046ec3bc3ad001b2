//! The digital 予診票 (yoshinhyō, pre-vaccination questionnaire) without I/O: Musubi's
//! Questionnaires and the vaccine-type → form map (`profiles/jp/questionnaires/`), generic R4
//! QuestionnaireResponse validation against a Questionnaire, and the "not eligible today"
//! assessment driven by the rule extensions in the form. Sources and formats:
//! docs/prevaccination.md.

mod assess;
mod error;
mod forms;
mod questionnaire;
mod response;
mod value;

pub use assess::{
    Assessment, OUTCOME_SYSTEM, Outcome, Reason, ReasonKind, assess, assessment_parameters,
};
pub use error::PrevaccinationError;
pub use forms::{Forms, questionnaires};
pub use questionnaire::{RULE_EXTENSION, validate_questionnaire};
pub use response::validate_response;
