//! The one error type of the HTTP edge and its single mapping to status codes and
//! OperationOutcome bodies. Stable `MUSUBI-nnnn` codes are explained in docs/errors.md.

use serde_json::{Value, json};

/// What went wrong, in categories a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request: bad JSON/XML, bad parameter value, id mismatch.
    BadRequest,
    /// The resource violates the R4 structure (unknown elements, wrong types, missing required).
    Invalid,
    /// A business or profile rule rejected an otherwise well-formed resource.
    Unprocessable,
    NotFound,
    /// The resource type is not served here.
    UnsupportedType,
    Gone,
    Conflict,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotAcceptable,
    MethodNotAllowed,
    /// No valid access token (or client certificate) was presented.
    Unauthorized,
    /// The token is valid but its scopes or the patient compartment do not allow the request.
    Forbidden,
    /// The client or address exceeded its rate limit.
    TooManyRequests,
    /// An upstream system (My Number Portal) failed or answered what Musubi cannot read.
    BadGateway,
    /// An upstream system did not answer in time.
    GatewayTimeout,
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// (HTTP status, OperationOutcome issue code, MUSUBI code)
    pub fn table(self) -> (u16, &'static str, &'static str) {
        match self {
            ErrorKind::BadRequest => (400, "invalid", "MUSUBI-0400"),
            ErrorKind::Invalid => (400, "structure", "MUSUBI-0401"),
            ErrorKind::Unprocessable => (422, "processing", "MUSUBI-0422"),
            ErrorKind::NotFound => (404, "not-found", "MUSUBI-0404"),
            ErrorKind::UnsupportedType => (404, "not-supported", "MUSUBI-0405"),
            ErrorKind::Gone => (410, "deleted", "MUSUBI-0410"),
            ErrorKind::Conflict => (409, "conflict", "MUSUBI-0409"),
            ErrorKind::PreconditionFailed => (412, "conflict", "MUSUBI-0412"),
            ErrorKind::PayloadTooLarge => (413, "too-costly", "MUSUBI-0413"),
            ErrorKind::UnsupportedMediaType => (415, "not-supported", "MUSUBI-0415"),
            ErrorKind::NotAcceptable => (406, "not-supported", "MUSUBI-0406"),
            ErrorKind::MethodNotAllowed => (405, "not-supported", "MUSUBI-0407"),
            ErrorKind::Unauthorized => (401, "login", "MUSUBI-0411"),
            ErrorKind::Forbidden => (403, "forbidden", "MUSUBI-0403"),
            ErrorKind::TooManyRequests => (429, "throttled", "MUSUBI-0429"),
            ErrorKind::BadGateway => (502, "transient", "MUSUBI-0502"),
            ErrorKind::GatewayTimeout => (504, "timeout", "MUSUBI-0504"),
            ErrorKind::Unavailable => (503, "transient", "MUSUBI-0503"),
            ErrorKind::Internal => (500, "exception", "MUSUBI-0500"),
        }
    }

    pub fn status(self) -> u16 {
        self.table().0
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone)]
pub struct IssueDetail {
    pub severity: &'static str,
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub issues: Vec<IssueDetail>,
    /// The `WWW-Authenticate` challenge of a 401/403 (RFC 6750 §3).
    pub challenge: Option<String>,
    /// Seconds for `Retry-After` on a 429 or 503.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, diagnostics: impl Into<String>) -> Self {
        let (_, code, _) = kind.table();
        ApiError {
            kind,
            issues: vec![IssueDetail {
                severity: "error",
                code,
                diagnostics: diagnostics.into(),
                expression: None,
            }],
            challenge: None,
            retry_after_secs: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        if let Some(first) = self.issues.first_mut() {
            first.expression = Some(expression.into());
        }
        self
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, diagnostics)
    }

    pub fn internal(diagnostics: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, diagnostics)
    }

    /// Structural validation issues: errors make the request fail, warnings ride along.
    pub fn from_validation(issues: &[fhir::validate::Issue]) -> Self {
        ApiError {
            kind: ErrorKind::Invalid,
            issues: issues.iter().map(issue_detail).collect(),
            challenge: None,
            retry_after_secs: None,
        }
    }

    /// Profile or business-rule issues that refuse an otherwise well-formed resource (422); the
    /// warnings found alongside are reported too.
    pub fn unprocessable(issues: &[fhir::validate::Issue]) -> Self {
        ApiError {
            kind: ErrorKind::Unprocessable,
            issues: issues.iter().map(issue_detail).collect(),
            challenge: None,
            retry_after_secs: None,
        }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The OperationOutcome body; the MUSUBI code goes in `details.coding` so clients can
    /// branch on it without parsing text.
    pub fn to_operation_outcome(&self) -> Value {
        let (_, _, musubi_code) = self.kind.table();
        operation_outcome(&self.issues, Some(musubi_code))
    }
}

pub fn issue_detail(issue: &fhir::validate::Issue) -> IssueDetail {
    IssueDetail {
        severity: issue.severity.code(),
        code: issue.code.code(),
        diagnostics: issue.diagnostics.clone(),
        expression: Some(issue.expression.clone()),
    }
}

/// Build an OperationOutcome from issues.
pub fn operation_outcome(issues: &[IssueDetail], musubi_code: Option<&str>) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut issue = json!({
                "severity": i.severity,
                "code": i.code,
            });
            if let Some(code) = musubi_code {
                issue["details"] = json!({"coding": [{
                    "system": "urn:musubi:error-code",
                    "code": code,
                }]});
            }
            issue["diagnostics"] = Value::String(i.diagnostics.clone());
            if let Some(expression) = &i.expression {
                issue["expression"] = json!([expression]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// An OperationOutcome reporting success, for `Prefer: return=OperationOutcome`.
pub fn informational_outcome(diagnostics: impl Into<String>) -> Value {
    operation_outcome(
        &[IssueDetail {
            severity: "information",
            code: "informational",
            diagnostics: diagnostics.into(),
            expression: None,
        }],
        None,
    )
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> Self {
        use store::StoreError as E;
        match &error {
            E::AlreadyExists { .. } => ApiError::new(ErrorKind::Conflict, error.to_string()),
            E::VersionConflict { .. } => {
                ApiError::new(ErrorKind::PreconditionFailed, error.to_string())
            }
            E::Invalid(_) => ApiError::new(ErrorKind::BadRequest, error.to_string()),
            E::Unavailable(_) => ApiError::new(ErrorKind::Unavailable, error.to_string()),
            E::Corrupt(_) | E::Io(_) => {
                // Details go to the log; clients get no internal paths.
                tracing::error!(%error, "storage failure");
                ApiError::internal("storage failure; the request was not applied")
            }
        }
    }
}

impl From<search::QueryError> for ApiError {
    fn from(error: search::QueryError) -> Self {
        ApiError::bad_request(error.to_string())
    }
}
