//! Pure translations between the conventions of Japanese municipal systems and apps and FHIR
//! values. No I/O: callers (the municipal adapter, app APIs) hand in text and get typed values.

pub mod immunization;
pub mod wareki;
