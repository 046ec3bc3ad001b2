//! FHIR R4 knowledge that needs no I/O: the structure of every type (from the official
//! definitions, see `profiles`), structural validation, the XML format and OperationOutcome.

pub mod definitions;
pub mod validate;
pub mod xml;

pub use definitions::{Definitions, ElementDef, Max, TypeDef, TypeKind};
