//! FHIR formats on the wire (R4 3.1.0.1.10): request bodies in JSON or XML, responses in the
//! format the client asked for by `_format` or `Accept`, compact or `_pretty`.

use bytes_body::Body;
use serde_json::Value;

use crate::error::{ApiError, ErrorKind};

/// Wire formats Musubi reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// The response representation chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub format: Format,
    pub pretty: bool,
    /// Clients that ask for `application/json` get that media type back (some check it).
    pub plain_json: bool,
}

impl Negotiated {
    pub fn content_type(&self) -> &'static str {
        match (self.format, self.plain_json) {
            (Format::Xml, _) => "application/fhir+xml; charset=utf-8",
            (Format::Json, true) => "application/json; charset=utf-8",
            (Format::Json, false) => "application/fhir+json; charset=utf-8",
        }
    }
}

/// Choose the response format from `_format` (wins) or `Accept`.
pub fn negotiate(
    format_param: Option<&str>,
    pretty_param: Option<&str>,
    accept: Option<&str>,
) -> Result<Negotiated, ApiError> {
    let pretty = matches!(pretty_param, Some("true"));
    if let Some(f) = format_param {
        let f = f.trim();
        return match media_format(f).or(match f {
            "json" => Some((Format::Json, false)),
            "xml" => Some((Format::Xml, false)),
            _ => None,
        }) {
            Some((format, plain_json)) => Ok(Negotiated {
                format,
                pretty,
                plain_json,
            }),
            None => Err(ApiError::new(
                ErrorKind::NotAcceptable,
                format!("_format {f:?} is not supported; use json or xml"),
            )),
        };
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Negotiated {
            format: Format::Json,
            pretty,
            plain_json: false,
        });
    };
    let mut best: Option<(f32, Format, bool)> = None;
    let mut wildcard = false;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        if media == "*/*" || media == "application/*" {
            wildcard = true;
            continue;
        }
        if let Some((format, plain)) = media_format(media)
            && best.is_none_or(|(bq, _, _)| q > bq)
        {
            best = Some((q, format, plain));
        }
    }
    match best {
        Some((_, format, plain_json)) => Ok(Negotiated {
            format,
            pretty,
            plain_json,
        }),
        None if wildcard => Ok(Negotiated {
            format: Format::Json,
            pretty,
            plain_json: false,
        }),
        // Browsers send text/html with */*; a client asking only for types we cannot produce
        // gets 406.
        None => Err(ApiError::new(
            ErrorKind::NotAcceptable,
            format!(
                "none of the accepted media types ({accept}) is supported; use application/fhir+json or application/fhir+xml"
            ),
        )),
    }
}

fn media_format(media: &str) -> Option<(Format, bool)> {
    match media.trim().to_ascii_lowercase().as_str() {
        "application/fhir+json" | "application/json+fhir" => Some((Format::Json, false)),
        "application/json" | "text/json" => Some((Format::Json, true)),
        "application/fhir+xml" | "application/xml+fhir" | "application/xml" | "text/xml" => {
            Some((Format::Xml, false))
        }
        _ => None,
    }
}

/// The format of a request body from its `Content-Type` (JSON when absent, as real clients
/// often omit it).
pub fn body_format(content_type: Option<&str>) -> Result<Format, ApiError> {
    let Some(ct) = content_type else {
        return Ok(Format::Json);
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        return Ok(Format::Json);
    }
    media_format(media).map(|(f, _)| f).ok_or_else(|| {
        ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!(
                "Content-Type {media:?} is not supported; send application/fhir+json, application/json or application/fhir+xml"
            ),
        )
    })
}

/// Parse a resource body; errors say where the text is broken.
pub fn parse_resource(bytes: &[u8], format: Format) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty; a resource is required",
        ));
    }
    let value = match format {
        Format::Json => {
            let value = serde_json::from_slice::<Value>(bytes).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body is not valid JSON: {e} (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
            // serde_json keeps the last of two equal keys; FHIR JSON forbids duplicates, and
            // silently dropping a value would lose data.
            serde_json::from_slice::<NoDuplicateKeys>(bytes).map_err(|e| {
                ApiError::bad_request(format!("the body is not valid FHIR JSON: {e}"))
            })?;
            value
        }
        Format::Xml => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                ApiError::bad_request(format!("the XML body is not valid UTF-8: {e}"))
            })?;
            fhir::xml::xml_to_json(fhir::Definitions::r4(), text).map_err(|e| {
                ApiError::bad_request(format!("the body is not valid FHIR XML: {e}"))
            })?
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object holding one resource",
        ));
    }
    Ok(value)
}

/// Walks a JSON document and fails on the first object with a repeated property name.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate property {key:?}"
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
}

/// Render a body in the negotiated representation.
pub fn render(body: &Body, negotiated: Negotiated) -> Result<Vec<u8>, ApiError> {
    match (body, negotiated.format, negotiated.pretty) {
        (Body::Empty, _, _) => Ok(Vec::new()),
        // The stored bytes are already compact JSON of a valid resource: serve them as they are.
        (Body::Stored(bytes), Format::Json, false) => Ok(bytes.to_vec()),
        (Body::Json(value), Format::Json, false) => {
            serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
        }
        (body, Format::Json, true) => serde_json::to_vec_pretty(&body.to_value()?)
            .map_err(|e| ApiError::internal(e.to_string())),
        (body, Format::Xml, pretty) => {
            fhir::xml::json_to_xml(fhir::Definitions::r4(), &body.to_value()?, pretty)
                .map(String::into_bytes)
                .map_err(|e| ApiError::internal(format!("cannot render XML: {e}")))
        }
    }
}

pub mod bytes_body {
    //! Response bodies, keeping stored bytes unparsed until a format needs it.
    use serde_json::Value;

    use crate::error::ApiError;

    #[derive(Debug, Clone)]
    pub enum Body {
        Empty,
        /// Compact JSON of a stored resource.
        Stored(bytes::Bytes),
        Json(Value),
    }

    impl Body {
        pub fn to_value(&self) -> Result<Value, ApiError> {
            match self {
                Body::Empty => Ok(Value::Null),
                Body::Stored(bytes) => serde_json::from_slice(bytes)
                    .map_err(|e| ApiError::internal(format!("stored resource unreadable: {e}"))),
                Body::Json(v) => Ok(v.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_param_wins_over_accept() {
        let n = negotiate(Some("xml"), None, Some("application/fhir+json")).unwrap();
        assert_eq!(n.format, Format::Xml);
    }

    #[test]
    fn accept_is_weighed() {
        let n = negotiate(
            None,
            None,
            Some("application/fhir+xml;q=0.5, application/fhir+json"),
        )
        .unwrap();
        assert_eq!(n.format, Format::Json);
        let n = negotiate(
            None,
            Some("true"),
            Some("text/html,application/xhtml+xml,*/*;q=0.8"),
        )
        .unwrap();
        assert_eq!(n.format, Format::Json);
        assert!(n.pretty);
        assert!(negotiate(None, None, Some("text/html")).is_err());
        assert!(
            negotiate(None, None, Some("application/json"))
                .unwrap()
                .plain_json
        );
    }

    #[test]
    fn body_formats() {
        assert_eq!(
            body_format(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            body_format(Some("application/fhir+xml")).unwrap(),
            Format::Xml
        );
        assert_eq!(body_format(Some("text/plain")).unwrap_err().status(), 415);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_resource(
            br#"{"resourceType": "Patient", "gender": "male", "gender": "female"}"#,
            Format::Json,
        )
        .unwrap_err();
        assert!(
            err.issues[0]
                .diagnostics
                .contains("duplicate property \"gender\""),
            "{:?}",
            err.issues
        );
        let nested = br#"{"resourceType": "Patient", "name": [{"family": "a", "family": "b"}]}"#;
        assert!(parse_resource(nested, Format::Json).is_err());
        let decimals =
            br#"{"resourceType": "Observation", "valueQuantity": {"value": 1.50, "unit": "kg"}}"#;
        assert!(parse_resource(decimals, Format::Json).is_ok());
    }

    #[test]
    fn broken_json_says_where() {
        let err = parse_resource(b"{\"resourceType\": \"Patient\",\n \"id\": }", Format::Json)
            .unwrap_err();
        assert!(
            err.issues[0].diagnostics.contains("line 2"),
            "{:?}",
            err.issues
        );
    }
}
