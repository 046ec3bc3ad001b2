//! The crate's one error type: problems that stop a whole file or a whole request. Problems
//! with one row are [`crate::RowError`]s and never stop an import.

/// Why a layout could not be loaded or a file or body could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MunicipalError {
    /// A layout, override or code file is malformed; names the file.
    #[error("municipal data {file}: {problem}")]
    Data { file: String, problem: String },
    #[error("unknown layout {name:?} (known: {})", known.join(", "))]
    UnknownLayout { name: String, known: Vec<String> },
    /// The header line does not match the layout; every difference is listed.
    #[error("the header does not match layout {layout}: {}", problems.join("; "))]
    Header {
        layout: String,
        problems: Vec<String>,
    },
    #[error("the file is empty (layout {layout} expects a header line)")]
    EmptyFile { layout: String },
    #[error("reading the input failed: {0}")]
    Io(String),
    /// The JSON body is not the `{"records": [...]}` shape.
    #[error("the JSON body is not valid: {0}")]
    Json(String),
    /// The layout cannot do this (e.g. export a layout with repeated dose blocks).
    #[error("layout {layout} does not support {what}")]
    Unsupported { layout: String, what: String },
}

impl MunicipalError {
    pub(crate) fn data(file: &str, problem: impl Into<String>) -> Self {
        MunicipalError::Data {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}
