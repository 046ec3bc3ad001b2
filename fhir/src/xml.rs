//! The FHIR XML format (<http://hl7.org/fhir/R4/xml.html>) to and from FHIR JSON, driven only by
//! the R4 structure definitions.
//!
//! The definitions decide everything the two formats disagree on: the element order XML requires,
//! which elements are JSON arrays, which primitives are JSON numbers or booleans, where a nested
//! resource sits inside a wrapper element (`<contained><Patient>…`), and where `id` and
//! `Extension.url` are XML attributes. The narrative `div` is XHTML and travels as text in JSON:
//! it is written into the XML as it is and read back as the exact span of the input document, so
//! whitespace, comments and entity references survive a round trip unchanged.
//!
//! Reading is a single streaming pass over the document (no DOM, no recursion), so hostile input
//! can neither overflow the stack nor expand entities: DOCTYPE declarations are refused outright
//! and nesting is capped at [`MAX_DEPTH`].

use std::fmt;
use std::str::FromStr;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::{NsReader, Reader, XmlVersion};
use serde_json::{Map, Number, Value};

use crate::definitions::{Definitions, ElementDef, Max};

/// Namespace of every FHIR element.
pub const FHIR_NS: &str = "http://hl7.org/fhir";
/// Namespace of the narrative `div`.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
/// Deepest element nesting accepted in either direction (the root resource is level 1).
///
/// Far beyond real resources (the official examples nest at most about 15 levels), and low enough
/// that the JSON produced from such XML — which nests up to twice as deep, arrays included — still
/// parses under serde_json's default recursion limit of 128.
pub const MAX_DEPTH: usize = 64;

/// More attributes than any FHIR element has (`value`, `id`, a few namespace declarations);
/// the cap bounds the quadratic duplicate-attribute check on hostile input.
const MAX_ATTRIBUTES: usize = 64;

/// Why a conversion failed. XML errors carry the 1-based line and column (in characters) of the
/// offending markup; JSON errors carry the FHIRPath-like location of the offending property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The input is not well-formed XML.
    #[error("XML is not well-formed at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A DOCTYPE declaration: refused because it can declare entities (XXE, entity expansion).
    #[error(
        "line {line}, column {column}: DOCTYPE declarations are not accepted (they can declare entities)"
    )]
    Doctype { line: usize, column: usize },
    /// An element that the R4 definitions do not allow at this place.
    #[error("line {line}, column {column}: unknown element <{name}> in {path}")]
    UnknownElement {
        line: usize,
        column: usize,
        name: String,
        path: String,
    },
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("line {line}, column {column}: elements nest deeper than {limit} levels")]
    TooDeep {
        line: usize,
        column: usize,
        limit: usize,
    },
    /// Well-formed XML that is not FHIR XML (wrong namespace, repeated element, bad value, …).
    #[error("line {line}, column {column}, in {path}: {message}")]
    Invalid {
        line: usize,
        column: usize,
        path: String,
        message: String,
    },
    /// JSON → XML: the JSON is not FHIR JSON that XML can carry.
    #[error("cannot write {path} as XML: {message}")]
    Json { path: String, message: String },
}

// ============================================================================ JSON → XML

/// Render a FHIR JSON resource as FHIR XML (with an XML declaration). `pretty` indents nested
/// elements by two spaces, one per line; otherwise the output has no whitespace between tags.
pub fn json_to_xml(defs: &Definitions, resource: &Value, pretty: bool) -> Result<String, XmlError> {
    let mut writer = Writer {
        defs,
        out: String::with_capacity(1024),
        pretty,
    };
    writer
        .out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let type_name = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("resource");
    writer.resource(resource, &JsonPath::root(type_name), 0, None)?;
    if pretty {
        writer.out.push('\n');
    }
    Ok(writer.out)
}

/// A location in the JSON input, built on the stack and formatted only for errors.
#[derive(Clone, Copy)]
struct JsonPath<'a> {
    parent: Option<&'a JsonPath<'a>>,
    name: &'a str,
    index: Option<usize>,
}

impl<'a> JsonPath<'a> {
    fn root(name: &'a str) -> Self {
        JsonPath {
            parent: None,
            name,
            index: None,
        }
    }

    fn child(&'a self, name: &'a str, index: Option<usize>) -> JsonPath<'a> {
        JsonPath {
            parent: Some(self),
            name,
            index,
        }
    }

    fn error(&self, message: impl Into<String>) -> XmlError {
        XmlError::Json {
            path: self.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for JsonPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}.")?;
        }
        f.write_str(self.name)?;
        if let Some(index) = self.index {
            write!(f, "[{index}]")?;
        }
        Ok(())
    }
}

/// One property of a JSON object matched to its element: `name` and `_name` together.
struct Property<'v, 'd> {
    order: usize,
    name: &'v str,
    element: &'d ElementDef,
    type_code: &'d str,
    value: Option<&'v Value>,
    extension: Option<&'v Value>,
}

struct Writer<'d> {
    defs: &'d Definitions,
    out: String,
    pretty: bool,
}

impl<'d> Writer<'d> {
    fn indent(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn check_depth(depth: usize, path: &JsonPath<'_>) -> Result<(), XmlError> {
        if depth >= MAX_DEPTH {
            return Err(path.error(format!("elements nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// `<name>` has been written up to its attributes: write `>`, the children and the end tag,
    /// or `/>` when there are no children.
    fn children_and_close(
        &mut self,
        name: &str,
        write_children: impl FnOnce(&mut Self) -> Result<(), XmlError>,
        depth: usize,
    ) -> Result<(), XmlError> {
        self.out.push('>');
        let mark = self.out.len();
        write_children(self)?;
        if self.out.len() == mark {
            self.out.pop();
            self.out.push_str("/>");
        } else {
            self.indent(depth);
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
        Ok(())
    }

    /// A resource as the root element or inside a wrapper; `expected` is the resource type the
    /// wrapper requires, if it names one (`Bundle.entry.response.outcome`).
    fn resource(
        &mut self,
        value: &Value,
        path: &JsonPath<'_>,
        depth: usize,
        expected: Option<&str>,
    ) -> Result<(), XmlError> {
        Self::check_depth(depth, path)?;
        let object = value
            .as_object()
            .ok_or_else(|| path.error("a resource must be a JSON object"))?;
        let type_name = object
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| path.error("resourceType is missing or not a string"))?;
        if !self.defs.is_resource_type(type_name) {
            return Err(path.error(format!("{type_name:?} is not an R4 resource type")));
        }
        if let Some(expected) = expected
            && expected != type_name
        {
            return Err(path.error(format!("expected a {expected}, found a {type_name}")));
        }
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(type_name);
        if depth == 0 {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(FHIR_NS);
            self.out.push('"');
        }
        let elements = self.defs.elements_of_type(type_name);
        self.children_and_close(
            type_name,
            |w| w.body(object, elements, true, false, path, depth + 1),
            depth,
        )
    }

    /// The child elements of a resource or complex value, in definition order. Properties written
    /// as attributes (`id` of a complex value, `url` of an Extension) are skipped here.
    fn body(
        &mut self,
        object: &Map<String, Value>,
        elements: &'d [ElementDef],
        is_resource: bool,
        is_extension: bool,
        path: &JsonPath<'_>,
        depth: usize,
    ) -> Result<(), XmlError> {
        let mut properties: Vec<Property<'_, 'd>> = Vec::with_capacity(object.len());
        for (key, value) in object {
            let (name, is_underscore) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            if is_resource && key == "resourceType" {
                continue;
            }
            if (!is_resource && name == "id") || (is_extension && name == "url") {
                if is_underscore {
                    return Err(path.error(format!(
                        "{key:?}: {name} is an XML attribute and cannot carry an id or extensions"
                    )));
                }
                continue;
            }
            let Some((order, element, type_code)) = find_element(self.defs, elements, name) else {
                return Err(path.error(format!("unknown property {key:?}")));
            };
            let property = match properties.iter_mut().find(|p| p.name == name) {
                Some(existing) => existing,
                None => {
                    properties.push(Property {
                        order,
                        name,
                        element,
                        type_code,
                        value: None,
                        extension: None,
                    });
                    let last = properties.len() - 1;
                    &mut properties[last]
                }
            };
            if is_underscore {
                property.extension = Some(value);
            } else {
                property.value = Some(value);
            }
        }
        // Stable: two types of one choice element (itself an error in FHIR) keep their JSON order.
        properties.sort_by_key(|p| p.order);
        for property in &properties {
            self.property(property, path, depth)?;
        }
        Ok(())
    }

    fn property(
        &mut self,
        p: &Property<'_, 'd>,
        path: &JsonPath<'_>,
        depth: usize,
    ) -> Result<(), XmlError> {
        let here = path.child(p.name, None);
        if p.extension.is_some() && !self.defs.is_primitive(p.type_code) {
            return Err(here.error(format!(
                "_{} is only allowed for primitive elements",
                p.name
            )));
        }
        if p.value.is_some_and(Value::is_null) || p.extension.is_some_and(Value::is_null) {
            return Err(here.error("null is only allowed inside arrays"));
        }
        if !p.element.max.is_array() {
            if p.value.is_some_and(Value::is_array) || p.extension.is_some_and(Value::is_array) {
                return Err(here.error("a single value was expected, not an array"));
            }
            return self.single(p, p.value, p.extension, &here, depth);
        }
        let values = array_items(p.value, p.name, &here)?;
        let extensions = array_items(p.extension, &format!("_{}", p.name), &here)?;
        let count = match (values, extensions) {
            (Some(v), Some(e)) if v.len() != e.len() => {
                return Err(here.error(format!(
                    "{} has {} items but _{} has {}: they must align",
                    p.name,
                    v.len(),
                    p.name,
                    e.len()
                )));
            }
            (Some(v), _) => v.len(),
            (None, Some(e)) => e.len(),
            (None, None) => 0,
        };
        for i in 0..count {
            let at = path.child(p.name, Some(i));
            let value = values.and_then(|v| v.get(i)).filter(|v| !v.is_null());
            let extension = extensions.and_then(|e| e.get(i)).filter(|e| !e.is_null());
            if value.is_none() && extension.is_none() {
                return Err(at.error("null without an extension in _name"));
            }
            self.single(p, value, extension, &at, depth)?;
        }
        Ok(())
    }

    /// One occurrence of an element.
    fn single(
        &mut self,
        p: &Property<'_, 'd>,
        value: Option<&Value>,
        extension: Option<&Value>,
        path: &JsonPath<'_>,
        depth: usize,
    ) -> Result<(), XmlError> {
        Self::check_depth(depth, path)?;
        let (name, type_code) = (p.name, p.type_code);
        if type_code == "xhtml" {
            if extension.is_some() {
                return Err(path.error("the narrative div cannot carry an id or extensions in XML"));
            }
            let div = value
                .and_then(Value::as_str)
                .ok_or_else(|| path.error("the narrative div must be a string"))?;
            let (tag_end, has_xmlns) = check_div(div).map_err(|m| path.error(m))?;
            self.indent(depth);
            if has_xmlns {
                self.out.push_str(div);
            } else {
                // The namespace is what makes the div XHTML inside a FHIR document.
                self.out.push_str(&div[..tag_end]);
                self.out.push_str(" xmlns=\"");
                self.out.push_str(XHTML_NS);
                self.out.push('"');
                self.out.push_str(&div[tag_end..]);
            }
            return Ok(());
        }
        if is_resource_slot(self.defs, type_code) {
            let inner = value.ok_or_else(|| path.error("a resource is required"))?;
            self.indent(depth);
            self.out.push('<');
            self.out.push_str(name);
            self.out.push('>');
            let expected = (type_code != "Resource").then_some(type_code);
            self.resource(inner, path, depth + 1, expected)?;
            self.indent(depth);
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
            return Ok(());
        }
        if self.defs.is_primitive(type_code) {
            return self.primitive(name, type_code, value, extension, path, depth);
        }
        let object = value
            .and_then(Value::as_object)
            .ok_or_else(|| path.error(format!("a JSON object ({type_code}) is required")))?;
        let children = children_for(self.defs, p.element, type_code);
        self.complex(name, type_code, children, object, path, depth)
    }

    /// A complex value: `id` (and an Extension's `url`) as attributes, then the children.
    fn complex(
        &mut self,
        name: &str,
        type_code: &str,
        children: &'d [ElementDef],
        object: &Map<String, Value>,
        path: &JsonPath<'_>,
        depth: usize,
    ) -> Result<(), XmlError> {
        Self::check_depth(depth, path)?;
        let is_extension = type_code == "Extension";
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(name);
        self.attribute("id", object.get("id"), path)?;
        if is_extension {
            self.attribute("url", object.get("url"), path)?;
        }
        self.children_and_close(
            name,
            |w| w.body(object, children, false, is_extension, path, depth + 1),
            depth,
        )
    }

    fn attribute(
        &mut self,
        name: &str,
        value: Option<&Value>,
        path: &JsonPath<'_>,
    ) -> Result<(), XmlError> {
        match value {
            None => Ok(()),
            Some(Value::String(text)) => {
                self.out.push(' ');
                self.out.push_str(name);
                self.out.push_str("=\"");
                escape_attribute(&mut self.out, text)
                    .map_err(|m| path.child(name, None).error(m))?;
                self.out.push('"');
                Ok(())
            }
            Some(_) => Err(path.child(name, None).error("must be a string")),
        }
    }

    /// `<name id="…" value="…"/>`, with the extensions of `_name` as children.
    fn primitive(
        &mut self,
        name: &str,
        type_code: &str,
        value: Option<&Value>,
        extension: Option<&Value>,
        path: &JsonPath<'_>,
        depth: usize,
    ) -> Result<(), XmlError> {
        let (id, extensions) = match extension {
            None => (None, None),
            Some(Value::Object(object)) => {
                if let Some(key) = object.keys().find(|k| *k != "id" && *k != "extension") {
                    return Err(path.error(format!(
                        "_{name} may hold only id and extension, not {key:?}"
                    )));
                }
                let extensions = match object.get("extension") {
                    None => None,
                    Some(Value::Array(items)) if !items.is_empty() => Some(items),
                    Some(_) => {
                        return Err(
                            path.error(format!("_{name}.extension must be a non-empty array"))
                        );
                    }
                };
                (object.get("id"), extensions)
            }
            Some(_) => return Err(path.error(format!("_{name} must be an object"))),
        };
        let text = value
            .map(|v| primitive_text(type_code, v))
            .transpose()
            .map_err(|m| path.error(m))?;
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(name);
        self.attribute("id", id, path)?;
        if let Some(text) = text {
            self.out.push_str(" value=\"");
            escape_attribute(&mut self.out, text).map_err(|m| path.error(m))?;
            self.out.push('"');
        }
        let Some(extensions) = extensions else {
            self.out.push_str("/>");
            return Ok(());
        };
        self.out.push('>');
        let extension_elements = self.defs.elements_of_type("Extension");
        for (i, item) in extensions.iter().enumerate() {
            let at = path.child("extension", Some(i));
            let object = item
                .as_object()
                .ok_or_else(|| at.error("an extension must be a JSON object"))?;
            self.complex(
                "extension",
                "Extension",
                extension_elements,
                object,
                &at,
                depth + 1,
            )?;
        }
        self.indent(depth);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        Ok(())
    }
}

/// The items of a repeating element's `name` or `_name` array.
fn array_items<'v>(
    value: Option<&'v Value>,
    what: &str,
    path: &JsonPath<'_>,
) -> Result<Option<&'v Vec<Value>>, XmlError> {
    match value {
        None => Ok(None),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(path.error(format!("{what}: empty arrays are not allowed in FHIR JSON")))
        }
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(path.error(format!("{what} must be an array"))),
    }
}

/// The XML text of a JSON primitive, checking that its JSON type suits the FHIR type.
fn primitive_text<'v>(type_code: &str, value: &'v Value) -> Result<&'v str, String> {
    match (type_code, value) {
        ("boolean", Value::Bool(true)) => Ok("true"),
        ("boolean", Value::Bool(false)) => Ok("false"),
        ("boolean", _) => Err("a boolean must be JSON true or false".into()),
        ("decimal", Value::Number(n)) => Ok(n.as_str()),
        ("integer" | "positiveInt" | "unsignedInt", Value::Number(n)) => {
            let text = n.as_str();
            if is_integer_text(text) {
                Ok(text)
            } else {
                Err(format!("{text} is not an integer"))
            }
        }
        ("decimal" | "integer" | "positiveInt" | "unsignedInt", _) => {
            Err(format!("a {type_code} must be a JSON number"))
        }
        (_, Value::String(text)) => Ok(text),
        _ => Err(format!("a {type_code} must be a JSON string")),
    }
}

fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Escape an attribute value. Newlines, carriage returns and tabs become character references
/// because a parser would otherwise normalise them to spaces (XML 1.0 §3.3.3).
fn escape_attribute(out: &mut String, text: &str) -> Result<(), String> {
    if let Some(c) = illegal_xml_char(text) {
        return Err(format!(
            "the character U+{:04X} cannot be represented in XML 1.0",
            u32::from(c)
        ));
    }
    let mut last = 0;
    for (i, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\n' => "&#10;",
            b'\r' => "&#13;",
            b'\t' => "&#9;",
            _ => continue,
        };
        // Every replaced byte is ASCII, so `i` and `i + 1` are character boundaries.
        out.push_str(&text[last..i]);
        out.push_str(replacement);
        last = i + 1;
    }
    out.push_str(&text[last..]);
    Ok(())
}

/// The first character XML 1.0 cannot carry at all, not even as a character reference.
fn illegal_xml_char(text: &str) -> Option<char> {
    // Fast path: the only candidates are ASCII controls and U+FFFE/U+FFFF (UTF-8 lead byte EF).
    if !text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF)
    {
        return None;
    }
    text.chars().find(|&c| !is_xml_char(c))
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Check that a JSON narrative is one well-formed XHTML `<div>` (surrounding whitespace and
/// comments allowed). Returns the byte offset just after `<div`, where a missing namespace
/// declaration goes, and whether the div declares its namespace itself.
fn check_div(div: &str) -> Result<(usize, bool), String> {
    let mut reader = Reader::from_str(div);
    let mut found: Option<(usize, bool)> = None;
    let mut depth = 0usize;
    loop {
        let position = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            format!(
                "the narrative is not well-formed XHTML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        if depth > 0 {
            check_xhtml_event(&event, &mut depth)?;
            continue;
        }
        match event {
            Event::Eof => break,
            Event::Comment(_) => {}
            Event::Text(text) if is_xml_whitespace(&text) => {}
            Event::Start(ref start) | Event::Empty(ref start) if found.is_none() => {
                if start.name().as_ref() != "div" {
                    return Err(format!(
                        "the narrative must be a <div>, not <{}>",
                        start.name().as_ref()
                    ));
                }
                check_xhtml_attributes(start)?;
                let mut has_xmlns = false;
                for attribute in start.attributes().flatten() {
                    if attribute.key.as_ref() == "xmlns" {
                        if attribute.value.as_ref() != XHTML_NS {
                            return Err(format!(
                                "the narrative <div> must be in the XHTML namespace {XHTML_NS}"
                            ));
                        }
                        has_xmlns = true;
                    }
                }
                found = Some((position + "<div".len(), has_xmlns));
                if matches!(event, Event::Start(_)) {
                    depth = 1;
                }
            }
            _ => {
                return Err(if found.is_some() {
                    "the narrative has content after its </div>".into()
                } else {
                    "the narrative must be a single XHTML <div> element".into()
                });
            }
        }
    }
    if depth > 0 {
        return Err("the narrative ends before its </div>".into());
    }
    found.ok_or_else(|| "the narrative is empty".into())
}

/// Inside a narrative: no DOCTYPE, only the entities XML predefines, attribute values that
/// unescape. `depth` counts open elements; returns when it falls back to zero.
fn check_xhtml_event(event: &Event<'_>, depth: &mut usize) -> Result<(), String> {
    match event {
        Event::Start(start) => {
            check_xhtml_attributes(start)?;
            *depth += 1;
        }
        Event::Empty(start) => check_xhtml_attributes(start)?,
        Event::End(_) => *depth = depth.saturating_sub(1),
        Event::GeneralRef(reference) => check_reference(reference)?,
        Event::DocType(_) => return Err("the narrative contains a DOCTYPE".into()),
        Event::Eof => return Err("the narrative ends before its </div>".into()),
        Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
    }
    Ok(())
}

fn check_xhtml_attributes(start: &BytesStart<'_>) -> Result<(), String> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("narrative: {e}"))?;
        attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("narrative attribute {}: {e}", attribute.key.as_ref()))?;
    }
    Ok(())
}

fn check_reference(reference: &BytesRef<'_>) -> Result<(), String> {
    let name: &str = reference;
    match reference.resolve_char_ref() {
        Ok(Some(c)) if is_xml_char(c) => Ok(()),
        Ok(Some(_)) => Err(format!("&{name}; is a character XML 1.0 does not allow")),
        Ok(None) if matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") => Ok(()),
        Ok(None) => Err(format!(
            "undefined entity &{name}; (XML predefines only &lt; &gt; &amp; &apos; &quot;; \
             use a character reference such as &#160; for &nbsp;)"
        )),
        Err(e) => Err(format!("&{name};: {e}")),
    }
}

// ============================================================================ XML → JSON

/// Parse a FHIR XML resource into FHIR JSON: keys in definition order with `resourceType` first,
/// repeating elements as arrays, `_name` objects for primitive ids and extensions, and numbers
/// and booleans as JSON numbers and booleans (decimal text kept exactly).
///
/// Elements that appear out of definition order are accepted and put in order.
pub fn xml_to_json(defs: &Definitions, xml: &str) -> Result<Value, XmlError> {
    let mut reader = NsReader::from_str(xml);
    // Comments that contain `--` are not well-formed; check them like a strict parser would.
    reader.config_mut().check_comments = true;
    Parser {
        defs,
        xml,
        reader,
        stack: Vec::new(),
        root: None,
    }
    .run()
}

/// Where a finished child element goes in its parent's JSON object.
struct Slot {
    /// Index of the element in the parent's definition: the JSON key order.
    order: usize,
    /// JSON key: the element name, or the typed name of a choice (`valueQuantity`).
    key: String,
    many: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Resource,
    Complex,
    /// A primitive with child elements: its extensions.
    Primitive,
}

enum Kind<'d> {
    /// A resource, a complex value or a primitive: collects child elements into `body`.
    Object {
        shape: Shape,
        /// The resource type or data type (`Extension` decides whether `url` is an attribute).
        type_name: &'d str,
        elements: &'d [ElementDef],
        body: Body,
        /// The `value` attribute of a primitive.
        value: Option<Value>,
    },
    /// `<contained>`, `<resource>`, …: holds exactly one resource.
    Wrapper {
        expected: Option<&'d str>,
        resource: Option<Value>,
    },
}

/// An element whose end tag has not been read yet.
struct Frame<'d> {
    /// None for a resource (the root, or the one inside a wrapper).
    slot: Option<Slot>,
    kind: Kind<'d>,
}

impl Frame<'_> {
    fn name(&self) -> &str {
        match (&self.slot, &self.kind) {
            (Some(slot), _) => &slot.key,
            (None, Kind::Object { type_name, .. }) => type_name,
            (None, Kind::Wrapper { .. }) => "?",
        }
    }
}

/// The JSON properties of one object, collected as child elements arrive.
#[derive(Default)]
struct Body {
    entries: Vec<Entry>,
}

struct Entry {
    order: usize,
    key: String,
    many: bool,
    /// One item per occurrence; `Null` where an occurrence had no value (or no extension).
    values: Vec<Value>,
    extensions: Vec<Value>,
    any_value: bool,
    any_extension: bool,
}

impl Body {
    fn push(
        &mut self,
        slot: Slot,
        value: Option<Value>,
        extension: Option<Value>,
    ) -> Result<(), String> {
        // Repeats are adjacent in valid XML, so the entry is almost always the last one.
        let entry = match self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.order == slot.order)
        {
            Some(entry) if entry.key != slot.key => {
                return Err(format!(
                    "<{}> and <{}> are two types for one choice element",
                    entry.key, slot.key
                ));
            }
            Some(entry) if !entry.many => {
                return Err(format!("<{}> may occur only once here", slot.key));
            }
            Some(entry) => entry,
            None => {
                self.entries.push(Entry {
                    order: slot.order,
                    key: slot.key,
                    many: slot.many,
                    values: Vec::with_capacity(1),
                    extensions: Vec::new(),
                    any_value: false,
                    any_extension: false,
                });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        };
        if extension.is_some() && !entry.any_extension {
            // Extensions arrived late: earlier occurrences had none.
            entry.extensions.resize(entry.values.len(), Value::Null);
        }
        entry.any_value |= value.is_some();
        entry.values.push(value.unwrap_or(Value::Null));
        if entry.any_extension || extension.is_some() {
            entry.any_extension = true;
            entry.extensions.push(extension.unwrap_or(Value::Null));
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn into_map(mut self, map: &mut Map<String, Value>) {
        self.entries.sort_by_key(|e| e.order);
        for entry in self.entries {
            let Entry {
                key,
                many,
                values,
                extensions,
                any_value,
                any_extension,
                ..
            } = entry;
            let extension_key = any_extension.then(|| format!("_{key}"));
            if many {
                if any_value {
                    map.insert(key, Value::Array(values));
                }
                if let Some(extension_key) = extension_key {
                    map.insert(extension_key, Value::Array(extensions));
                }
            } else {
                if let Some(value) = values.into_iter().next().filter(|_| any_value) {
                    map.insert(key, value);
                }
                if let (Some(extension_key), Some(extension)) =
                    (extension_key, extensions.into_iter().next())
                {
                    map.insert(extension_key, extension);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Fhir,
    Xhtml,
    Other,
}

fn classify(resolved: &ResolveResult<'_>) -> Ns {
    match resolved {
        ResolveResult::Bound(Namespace(ns)) if *ns == FHIR_NS => Ns::Fhir,
        ResolveResult::Bound(Namespace(ns)) if *ns == XHTML_NS => Ns::Xhtml,
        _ => Ns::Other,
    }
}

/// The FHIR attributes of an element; namespace declarations and attributes in other namespaces
/// (such as `xsi:schemaLocation`) are ignored.
#[derive(Default)]
struct Attributes {
    value: Option<String>,
    id: Option<String>,
    url: Option<String>,
}

struct Parser<'d, 'x> {
    defs: &'d Definitions,
    xml: &'x str,
    reader: NsReader<&'x [u8]>,
    stack: Vec<Frame<'d>>,
    root: Option<Value>,
}

impl<'d, 'x> Parser<'d, 'x> {
    fn run(mut self) -> Result<Value, XmlError> {
        loop {
            // Text is its own event, so between events the reader stands on the next `<`.
            let start = self.reader.buffer_position() as usize;
            let (resolved, event) = match self.reader.read_resolved_event() {
                Ok(read) => read,
                Err(e) => return Err(self.syntax(e.to_string())),
            };
            let ns = classify(&resolved);
            match event {
                Event::Start(e) => self.open(&e, ns, start, false)?,
                Event::Empty(e) => self.open(&e, ns, start, true)?,
                Event::End(_) => {
                    let frame = self
                        .stack
                        .pop()
                        .ok_or_else(|| self.invalid(start, "end tag without a start tag"))?;
                    self.close(frame, start)?;
                }
                Event::Text(text) => {
                    if !is_xml_whitespace(&text) {
                        return Err(self.invalid(
                            start,
                            "text content is not allowed here: FHIR XML carries values in \
                             value attributes",
                        ));
                    }
                }
                Event::GeneralRef(_) | Event::CData(_) => {
                    return Err(self.invalid(
                        start,
                        "text content is not allowed here: FHIR XML carries values in value \
                         attributes",
                    ));
                }
                Event::DocType(_) => {
                    let (line, column) = line_column(self.xml, start);
                    return Err(XmlError::Doctype { line, column });
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
                Event::Eof => break,
            }
        }
        if let Some(frame) = self.stack.last() {
            return Err(self.syntax(format!(
                "the document ends before </{}>",
                frame.name().to_owned()
            )));
        }
        match self.root.take() {
            Some(root) => Ok(root),
            None => Err(self.syntax("the document has no root element".into())),
        }
    }

    // ------------------------------------------------------------------ errors

    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(frame.name());
        }
        if path.is_empty() {
            path.push_str("the document");
        }
        path
    }

    fn syntax(&self, message: String) -> XmlError {
        let (line, column) = line_column(self.xml, self.reader.error_position() as usize);
        XmlError::Syntax {
            line,
            column,
            message,
        }
    }

    fn invalid(&self, at: usize, message: impl Into<String>) -> XmlError {
        let (line, column) = line_column(self.xml, at);
        XmlError::Invalid {
            line,
            column,
            path: self.path(),
            message: message.into(),
        }
    }

    // ------------------------------------------------------------------ events

    fn open(
        &mut self,
        e: &BytesStart<'_>,
        ns: Ns,
        start: usize,
        empty: bool,
    ) -> Result<(), XmlError> {
        if self.stack.len() >= MAX_DEPTH {
            let (line, column) = line_column(self.xml, start);
            return Err(XmlError::TooDeep {
                line,
                column,
                limit: MAX_DEPTH,
            });
        }
        let local = e.local_name();
        let name = local.as_ref();

        let (elements, shape, parent_type) = match self.stack.last() {
            None => {
                if self.root.is_some() {
                    return Err(self.invalid(start, "content after the root element"));
                }
                return self.open_resource(e, ns, name, start, empty, None);
            }
            Some(Frame {
                kind: Kind::Wrapper { expected, resource },
                ..
            }) => {
                if resource.is_some() {
                    return Err(self.invalid(start, "only one resource is allowed here"));
                }
                let expected = *expected;
                return self.open_resource(e, ns, name, start, empty, expected);
            }
            Some(Frame {
                kind:
                    Kind::Object {
                        shape,
                        type_name,
                        elements,
                        ..
                    },
                ..
            }) => (*elements, *shape, *type_name),
        };

        let Some((order, element, type_code)) = find_element(self.defs, elements, name) else {
            let (line, column) = line_column(self.xml, start);
            return Err(XmlError::UnknownElement {
                line,
                column,
                name: e.name().as_ref().to_owned(),
                path: self.path(),
            });
        };
        if (shape != Shape::Resource && element.name == "id")
            || (parent_type == "Extension" && element.name == "url")
        {
            return Err(self.invalid(
                start,
                format!("{name} is written as an attribute here, not as an element"),
            ));
        }
        let slot = Slot {
            order,
            key: name.to_owned(),
            many: element.max == Max::Many,
        };

        if type_code == "xhtml" {
            let div = self.read_div(e, ns, start, empty)?;
            return self.deliver(Some(slot), Some(Value::String(div)), None, start);
        }
        if ns != Ns::Fhir {
            return Err(self.invalid(
                start,
                format!("<{name}> is not in the FHIR namespace {FHIR_NS}"),
            ));
        }

        if is_resource_slot(self.defs, type_code) {
            self.attributes(e, start, false, false, false)?;
            if empty {
                return Err(self.invalid(start, format!("<{name}> must contain a resource")));
            }
            self.stack.push(Frame {
                slot: Some(slot),
                kind: Kind::Wrapper {
                    expected: (type_code != "Resource").then_some(type_code),
                    resource: None,
                },
            });
            return Ok(());
        }

        if self.defs.is_primitive(type_code) {
            let attributes = self.attributes(e, start, true, true, false)?;
            let value = match attributes.value {
                Some(text) => Some(
                    primitive_value(type_code, text)
                        .map_err(|m| self.invalid(start, format!("<{name}>: {m}")))?,
                ),
                None => None,
            };
            let element_elements = self.defs.elements_of_type("Element");
            let mut body = Body::default();
            if let Some(id) = attributes.id {
                self.push_attribute(&mut body, element_elements, "id", id, start)?;
            }
            if empty {
                if value.is_none() && body.is_empty() {
                    return Err(self.invalid(
                        start,
                        format!("<{name}> has neither a value attribute nor extensions"),
                    ));
                }
                let extension = (!body.is_empty()).then(|| {
                    let mut map = Map::new();
                    body.into_map(&mut map);
                    Value::Object(map)
                });
                return self.deliver(Some(slot), value, extension, start);
            }
            self.stack.push(Frame {
                slot: Some(slot),
                kind: Kind::Object {
                    shape: Shape::Primitive,
                    type_name: type_code,
                    elements: element_elements,
                    body,
                    value,
                },
            });
            return Ok(());
        }

        let children = children_for(self.defs, element, type_code);
        let is_extension = type_code == "Extension";
        let attributes = self.attributes(e, start, false, true, is_extension)?;
        let mut body = Body::default();
        if let Some(id) = attributes.id {
            self.push_attribute(&mut body, children, "id", id, start)?;
        }
        if let Some(url) = attributes.url {
            self.push_attribute(&mut body, children, "url", url, start)?;
        }
        if empty {
            let mut map = Map::new();
            body.into_map(&mut map);
            return self.deliver(Some(slot), Some(Value::Object(map)), None, start);
        }
        self.stack.push(Frame {
            slot: Some(slot),
            kind: Kind::Object {
                shape: Shape::Complex,
                type_name: type_code,
                elements: children,
                body,
                value: None,
            },
        });
        Ok(())
    }

    fn open_resource(
        &mut self,
        e: &BytesStart<'_>,
        ns: Ns,
        name: &str,
        start: usize,
        empty: bool,
        expected: Option<&str>,
    ) -> Result<(), XmlError> {
        if ns != Ns::Fhir {
            return Err(self.invalid(
                start,
                format!("<{name}> is not in the FHIR namespace {FHIR_NS}"),
            ));
        }
        let Some(type_def) = self
            .defs
            .type_def(name)
            .filter(|_| self.defs.is_resource_type(name))
        else {
            return Err(self.invalid(start, format!("<{name}> is not an R4 resource type")));
        };
        if let Some(expected) = expected
            && expected != name
        {
            return Err(self.invalid(start, format!("expected a {expected}, found <{name}>")));
        }
        self.attributes(e, start, false, false, false)?;
        let frame = Frame {
            slot: None,
            kind: Kind::Object {
                shape: Shape::Resource,
                type_name: type_def.name.as_str(),
                elements: type_def.elements.as_slice(),
                body: Body::default(),
                value: None,
            },
        };
        if empty {
            self.close(frame, start)
        } else {
            self.stack.push(frame);
            Ok(())
        }
    }

    /// An attribute-borne property (`id`, `url`) takes its element's place in the key order.
    fn push_attribute(
        &self,
        body: &mut Body,
        elements: &[ElementDef],
        name: &str,
        value: String,
        start: usize,
    ) -> Result<(), XmlError> {
        let order = elements
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| self.invalid(start, format!("no {name} attribute is allowed here")))?;
        let slot = Slot {
            order,
            key: name.to_owned(),
            many: false,
        };
        body.push(slot, Some(Value::String(value)), None)
            .map_err(|m| self.invalid(start, m))
    }

    fn attributes(
        &self,
        e: &BytesStart<'_>,
        start: usize,
        allow_value: bool,
        allow_id: bool,
        allow_url: bool,
    ) -> Result<Attributes, XmlError> {
        let mut found = Attributes::default();
        for (count, attribute) in e.attributes().enumerate() {
            if count >= MAX_ATTRIBUTES {
                return Err(self.invalid(start, "too many attributes"));
            }
            let attribute = attribute.map_err(|err| self.syntax_at(start, err.to_string()))?;
            let key = attribute.key.as_ref();
            // `xmlns`, `xmlns:…` and any other prefixed attribute.
            if key == "xmlns" || key.contains(':') {
                continue;
            }
            let slot = match key {
                "value" if allow_value => &mut found.value,
                "id" if allow_id => &mut found.id,
                "url" if allow_url => &mut found.url,
                _ => {
                    return Err(self.invalid(
                        start,
                        format!(
                            "attribute {:?} is not allowed on <{}>",
                            key,
                            e.name().as_ref()
                        ),
                    ));
                }
            };
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| self.syntax_at(start, err.to_string()))?;
            if let Some(c) = illegal_xml_char(&value) {
                return Err(self.invalid(
                    start,
                    format!(
                        "the character U+{:04X} is not allowed in XML 1.0",
                        u32::from(c)
                    ),
                ));
            }
            *slot = Some(value.into_owned());
        }
        Ok(found)
    }

    fn syntax_at(&self, at: usize, message: String) -> XmlError {
        let (line, column) = line_column(self.xml, at);
        XmlError::Syntax {
            line,
            column,
            message,
        }
    }

    /// The narrative: the exact text of the `<div>` element in the input.
    fn read_div(
        &mut self,
        e: &BytesStart<'_>,
        ns: Ns,
        start: usize,
        empty: bool,
    ) -> Result<String, XmlError> {
        if ns != Ns::Xhtml || e.name().as_ref() != "div" {
            return Err(self.invalid(
                start,
                format!(
                    "the narrative must be <div xmlns=\"{XHTML_NS}\">, found <{}>",
                    e.name().as_ref()
                ),
            ));
        }
        check_xhtml_attributes(e).map_err(|m| self.invalid(start, m))?;
        if !empty {
            let mut depth = 1usize;
            while depth > 0 {
                let at = self.reader.buffer_position() as usize;
                let event = match self.reader.read_event() {
                    Ok(event) => event,
                    Err(err) => return Err(self.syntax(err.to_string())),
                };
                if let Event::DocType(_) = event {
                    let (line, column) = line_column(self.xml, at);
                    return Err(XmlError::Doctype { line, column });
                }
                check_xhtml_event(&event, &mut depth).map_err(|m| self.invalid(at, m))?;
            }
        }
        let end = self.reader.buffer_position() as usize;
        let raw = self
            .xml
            .get(start..end)
            .filter(|raw| raw.starts_with("<div"))
            .ok_or_else(|| self.invalid(start, "cannot locate the narrative in the input"))?;
        let declares = e.attributes().flatten().any(|a| a.key.as_ref() == "xmlns");
        if declares {
            return Ok(raw.to_owned());
        }
        // The namespace was declared on an ancestor: JSON needs it on the div itself.
        let tag_end = "<div".len();
        Ok(format!(
            "{} xmlns=\"{XHTML_NS}\"{}",
            &raw[..tag_end],
            &raw[tag_end..]
        ))
    }

    fn close(&mut self, frame: Frame<'d>, at: usize) -> Result<(), XmlError> {
        let name = frame.name().to_owned();
        let (value, extension) = match frame.kind {
            Kind::Wrapper { resource, .. } => match resource {
                Some(resource) => (Some(resource), None),
                None => {
                    return Err(self.invalid(at, format!("<{name}> must contain a resource")));
                }
            },
            Kind::Object {
                shape: Shape::Resource,
                type_name,
                body,
                ..
            } => {
                let mut map = Map::new();
                map.insert("resourceType".into(), Value::String(type_name.to_owned()));
                body.into_map(&mut map);
                (Some(Value::Object(map)), None)
            }
            Kind::Object {
                shape: Shape::Complex,
                body,
                ..
            } => {
                let mut map = Map::new();
                body.into_map(&mut map);
                (Some(Value::Object(map)), None)
            }
            Kind::Object {
                shape: Shape::Primitive,
                body,
                value,
                ..
            } => {
                let extension = (!body.is_empty()).then(|| {
                    let mut map = Map::new();
                    body.into_map(&mut map);
                    Value::Object(map)
                });
                if value.is_none() && extension.is_none() {
                    return Err(self.invalid(
                        at,
                        format!("<{name}> has neither a value attribute nor extensions"),
                    ));
                }
                (value, extension)
            }
        };
        self.deliver(frame.slot, value, extension, at)
    }

    /// Hand a finished element to its parent (or make it the result).
    fn deliver(
        &mut self,
        slot: Option<Slot>,
        value: Option<Value>,
        extension: Option<Value>,
        at: usize,
    ) -> Result<(), XmlError> {
        let result = match self.stack.last_mut() {
            None => {
                self.root = value;
                Ok(())
            }
            Some(Frame {
                kind: Kind::Wrapper { resource, .. },
                ..
            }) => {
                *resource = value;
                Ok(())
            }
            Some(Frame {
                kind: Kind::Object { body, .. },
                ..
            }) => match slot {
                Some(slot) => body.push(slot, value, extension),
                None => Err("a resource is not allowed here".into()),
            },
        };
        result.map_err(|m| self.invalid(at, m))
    }
}

/// The JSON value of a primitive's `value` attribute.
fn primitive_value(type_code: &str, text: String) -> Result<Value, String> {
    match type_code {
        "boolean" => match text.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean (true or false)")),
        },
        "decimal" | "integer" | "positiveInt" | "unsignedInt" => {
            // JSON's number grammar is FHIR's decimal grammar; serde_json alone would also skip
            // surrounding whitespace, so the first and last characters are checked here.
            let shaped = text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
                && text.ends_with(|c: char| c.is_ascii_digit())
                && (type_code == "decimal" || is_integer_text(&text));
            let number = shaped
                .then(|| Number::from_str(&text).ok())
                .flatten()
                .ok_or_else(|| format!("{text:?} is not a valid {type_code}"))?;
            Ok(Value::Number(number))
        }
        _ => Ok(Value::String(text)),
    }
}

// ============================================================================ shared

/// The element of `elements` that an XML element name or JSON key (without `_`) refers to, with
/// its index (the definition order) and, for choice elements, the chosen type.
fn find_element<'d>(
    defs: &'d Definitions,
    elements: &'d [ElementDef],
    name: &str,
) -> Option<(usize, &'d ElementDef, &'d str)> {
    elements.iter().enumerate().find_map(|(i, element)| {
        defs.match_key(std::slice::from_ref(element), name)
            .map(|m| (i, m.element, m.type_code))
    })
}

/// The children of a complex element of the given type: inline (BackboneElement), by content
/// reference, or those of the data type (also for a choice element, whose type was chosen).
fn children_for<'d>(
    defs: &'d Definitions,
    element: &'d ElementDef,
    type_code: &str,
) -> &'d [ElementDef] {
    if element.children.is_empty() && element.content_ref.is_none() {
        defs.elements_of_type(type_code)
    } else {
        defs.children_of(element)
    }
}

/// Elements that hold a whole resource, wrapped in an element of their own name.
fn is_resource_slot(defs: &Definitions, type_code: &str) -> bool {
    type_code == "Resource" || defs.is_resource_type(type_code)
}

/// XML's whitespace (not Unicode's, nor Rust's ASCII set, which has form feed).
fn is_xml_whitespace(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> &'static Definitions {
        Definitions::r4()
    }

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("test JSON parses")
    }

    /// JSON → XML → JSON in both layouts; returns the compact XML.
    fn round_trip(value: &Value) -> String {
        let mut compact = String::new();
        for pretty in [false, true] {
            let xml = json_to_xml(defs(), value, pretty).unwrap_or_else(|e| panic!("{e}"));
            let back = xml_to_json(defs(), &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
            if let Some(difference) = difference(value, &back, "") {
                panic!("{difference}\n{xml}");
            }
            if !pretty {
                compact = xml;
            }
        }
        compact
    }

    /// The first semantic difference between two JSON values: object key order is ignored,
    /// numbers compare by their text (arbitrary_precision keeps it).
    fn difference(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => {
                            if let Some(d) = difference(v, w, &format!("{path}.{k}")) {
                                return Some(d);
                            }
                        }
                        None => return Some(format!("{path}.{k}: missing after the round trip")),
                    }
                }
                y.keys()
                    .find(|k| !x.contains_key(*k))
                    .map(|k| format!("{path}.{k}: appeared in the round trip"))
            }
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return Some(format!("{path}: {} items became {}", x.len(), y.len()));
                }
                x.iter()
                    .zip(y)
                    .enumerate()
                    .find_map(|(i, (v, w))| difference(v, w, &format!("{path}[{i}]")))
            }
            _ if a == b => None,
            _ => Some(format!("{path}: {a} became {b}")),
        }
    }

    #[test]
    fn japanese_patient_round_trips_with_extensions_and_contained() {
        let patient = json(
            r##"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>山田　太郎 <b>様</b> &amp; &#160;<!-- note --></p>\n  <br/></div>"},
            "contained":[{"resourceType":"Organization","id":"o1","name":"新宿区　保健所"}],
            "extension":[{"url":"http://example.org/ext","valueString":"a\"b<c>&d\ne\tf"}],
            "name":[
              {"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"IDE"}],
               "use":"official","text":"山田　太郎","family":"山田","given":["太郎"]},
              {"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation","valueCode":"SYL"}],
               "use":"official","text":"ヤマダ　タロウ","family":"ヤマダ","given":["タロウ","イチ"],
               "_given":[null,{"id":"g2","extension":[{"url":"http://example.org/note","valueBoolean":true}]}]}],
            "gender":"male",
            "birthDate":"2020-02-29",
            "_birthDate":{"id":"b","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"2020-02-29T09:30:00+09:00"}]},
            "multipleBirthInteger":2,"active":true,
            "managingOrganization":{"reference":"#o1"}}"##,
        );
        let xml = round_trip(&patient);
        // Japanese text and U+3000 pass through unescaped; control characters do not.
        assert!(xml.contains("<text value=\"山田　太郎\"/>"), "{xml}");
        assert!(
            xml.contains("value=\"a&quot;b&lt;c&gt;&amp;d&#10;e&#9;f\""),
            "{xml}"
        );
        assert!(xml.contains(
            "<contained><Organization><id value=\"o1\"/><name value=\"新宿区　保健所\"/></Organization></contained>"
        ));
        assert!(xml.contains(
            "<birthDate id=\"b\" value=\"2020-02-29\"><extension url=\"http://hl7.org/fhir/StructureDefinition/patient-birthTime\">"
        ));
        assert!(xml.contains("<given value=\"タロウ\"/><given id=\"g2\" value=\"イチ\">"));
        // Definition order, whatever the JSON order: text before contained before extension.
        let order = [
            "<id ",
            "<meta>",
            "<text>",
            "<contained>",
            "<extension ",
            "<name>",
        ];
        let positions: Vec<usize> = order.iter().map(|t| xml.find(t).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{xml}");
        // The narrative is written verbatim.
        assert!(xml.contains(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>山田　太郎 <b>様</b> &amp; &#160;<!-- note --></p>\n  <br/></div>"
        ));
    }

    #[test]
    fn json_keys_come_back_in_definition_order() {
        let xml = r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/><name><family value="山田"/></name><birthDate value="1970-01-01"/></Patient>"#;
        let value = xml_to_json(defs(), xml).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "active", "name", "birthDate"]);
        assert_eq!(
            value["name"][0]["family"], "山田",
            "max-* elements are arrays"
        );
        assert_eq!(value["active"], Value::Bool(true));
    }

    #[test]
    fn observation_decimal_keeps_its_text() {
        let observation = json(
            r#"{"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"3141-9","display":"体重"}]},
            "effectiveDateTime":"2024-04-01T10:00:00+09:00",
            "valueQuantity":{"value":1.50,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"},
            "component":[{"code":{"text":"x"},"valueInteger":-3},{"code":{"text":"y"},"extension":[{"url":"http://example.org/e","valueDecimal":1.0e-7}]}]}"#,
        );
        let xml = round_trip(&observation);
        assert!(
            xml.contains("<valueQuantity><value value=\"1.50\"/>"),
            "{xml}"
        );
        let back = xml_to_json(defs(), &xml).unwrap();
        assert_eq!(back["valueQuantity"]["value"].to_string(), "1.50");
        assert_eq!(
            back["component"][1]["extension"][0]["valueDecimal"].to_string(),
            "1.0e-7"
        );
    }

    #[test]
    fn questionnaire_items_nest_through_the_content_reference() {
        let questionnaire = json(
            r#"{"resourceType":"Questionnaire","status":"active","item":[
              {"linkId":"1","text":"問診","type":"group","item":[
                {"linkId":"1.1","text":"今日の体温","type":"decimal","required":true,
                 "item":[{"linkId":"1.1.1","type":"display","text":"腋窩で測ってください"}]},
                {"linkId":"1.2","type":"choice","answerOption":[{"valueCoding":{"code":"y","display":"はい"}},{"valueString":"いいえ"}],
                 "enableWhen":[{"question":"1.1","operator":">","answerDecimal":37.50}]}]}]}"#,
        );
        let xml = round_trip(&questionnaire);
        assert!(xml.contains("<item><linkId value=\"1.1.1\"/>"), "{xml}");
        assert!(xml.contains("<operator value=\"&gt;\"/><answerDecimal value=\"37.50\"/>"));
    }

    #[test]
    fn bundle_entries_wrap_their_resources() {
        let bundle = json(
            r#"{"resourceType":"Bundle","id":"b","type":"transaction-response","entry":[
              {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","id":"1","gender":"female"},
               "response":{"status":"201 Created","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}}},
              {"resource":{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Basic","code":{"text":"x"}}}]}}]}"#,
        );
        let xml = round_trip(&bundle);
        assert!(
            xml.contains("<resource><Patient><id value=\"1\"/>"),
            "{xml}"
        );
        assert!(xml.contains("<outcome><OperationOutcome>"), "{xml}");
        assert!(xml.contains("<resource><Basic>"), "{xml}");
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Bundle xmlns=\"http://hl7.org/fhir\">"
        ));
    }

    #[test]
    fn pretty_output_indents_by_two_spaces() {
        let value = json(r#"{"resourceType":"Patient","name":[{"family":"山田"}]}"#);
        let xml = json_to_xml(defs(), &value, true).unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Patient xmlns=\"http://hl7.org/fhir\">\n  <name>\n    <family value=\"山田\"/>\n  </name>\n</Patient>\n"
        );
    }

    #[test]
    fn hand_written_xml_with_comments_and_whitespace_parses() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- leading comment -->\n\
            <Patient xmlns=\"http://hl7.org/fhir\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n\
                     xsi:schemaLocation=\"http://hl7.org/fhir ../patient.xsd\">\r\n\
              <id value=\"x\"/>   <!-- a comment -->\n\
              <text>\n    <status value=\"generated\"/>\n\
                <div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p>改行\n&amp; <!--c--> <i>i</i></p>\n</div>\n\
              </text>\n\
              <name id=\"n1\">\n    <given value=\"a&#10;b\"/>\n    <given value=\"c\n d\">\n<extension url=\"u\"><valueInteger value=\"007\"/></extension></given>\n  </name>\n\
            </Patient>\n<!-- trailing -->\n";
        let error = xml_to_json(defs(), xml).unwrap_err();
        assert!(
            error.to_string().contains("\"007\" is not a valid integer"),
            "{error}"
        );
        let xml = xml.replace("007", "7");
        let value = xml_to_json(defs(), &xml).unwrap();
        assert_eq!(value["id"], "x");
        assert_eq!(
            value["text"]["div"],
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p>改行\n&amp; <!--c--> <i>i</i></p>\n</div>"
        );
        assert_eq!(value["name"][0]["id"], "n1");
        // A character reference keeps its newline; a literal one is normalised to a space.
        assert_eq!(value["name"][0]["given"], json(r#"["a\nb","c  d"]"#));
        assert_eq!(
            value["name"][0]["_given"],
            json(r#"[null,{"extension":[{"url":"u","valueInteger":7}]}]"#)
        );
    }

    #[test]
    fn narrative_without_xmlns_gets_it() {
        let value = json(
            r#"{"resourceType":"Basic","code":{"text":"x"},"text":{"status":"generated","div":"<div class=\"a\">x</div>"}}"#,
        );
        let xml = json_to_xml(defs(), &value, false).unwrap();
        assert!(xml.contains("<div xmlns=\"http://www.w3.org/1999/xhtml\" class=\"a\">x</div>"));
        let back = xml_to_json(defs(), &xml).unwrap();
        assert_eq!(
            back["text"]["div"],
            "<div xmlns=\"http://www.w3.org/1999/xhtml\" class=\"a\">x</div>"
        );
        for bad in [
            "<p>x</p>",
            "<div>x",
            "<div>&nbsp;</div>",
            "<div/><div/>",
            "text <div/>",
            "<div xmlns=\"http://example.org\"/>",
        ] {
            let value = json(&format!(
                r#"{{"resourceType":"Basic","code":{{"text":"x"}},"text":{{"status":"generated","div":{}}}}}"#,
                Value::String(bad.into())
            ));
            let error = json_to_xml(defs(), &value, false).unwrap_err();
            assert!(
                error.to_string().contains("Basic.text.div"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn doctype_is_rejected() {
        let xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE Patient [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n\
                   <Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&xxe;\"/></Patient>";
        assert_eq!(
            xml_to_json(defs(), xml).unwrap_err(),
            XmlError::Doctype { line: 2, column: 1 }
        );
    }

    #[test]
    fn unknown_elements_are_rejected_by_name() {
        let xml = "<Patient xmlns=\"http://hl7.org/fhir\">\n  <name>\n    <nickname value=\"タロ\"/>\n  </name>\n</Patient>";
        let error = xml_to_json(defs(), xml).unwrap_err();
        assert_eq!(
            error,
            XmlError::UnknownElement {
                line: 3,
                column: 5,
                name: "nickname".into(),
                path: "Patient.name".into(),
            }
        );
        assert_eq!(
            error.to_string(),
            "line 3, column 5: unknown element <nickname> in Patient.name"
        );
        let error = json_to_xml(
            defs(),
            &json(r#"{"resourceType":"Patient","nickname":"x"}"#),
            false,
        )
        .unwrap_err();
        assert!(error.to_string().contains("\"nickname\""), "{error}");
    }

    #[test]
    fn malformed_and_non_fhir_xml_is_rejected_with_positions() {
        let cases: &[(&str, &str)] = &[
            (
                "<Patient><active value=\"true\"/></Patient>",
                "FHIR namespace",
            ),
            (
                "<Foo xmlns=\"http://hl7.org/fhir\"/>",
                "not an R4 resource type",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>",
                "not a boolean",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\"/><active value=\"true\"/></Patient>",
                "only once",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"male\">text</gender></Patient>",
                "text content",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><name><id value=\"x\"/></name></Patient>",
                "attribute here",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><gender valu=\"male\"/></Patient>",
                "\"valu\" is not allowed",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><contained/></Patient>",
                "must contain a resource",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><gender/></Patient>",
                "neither a value",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><text><div>x</div></text></Patient>",
                "narrative must be",
            ),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"><name></Patient>",
                "not well-formed",
            ),
            ("", "no root element"),
            (
                "<Patient xmlns=\"http://hl7.org/fhir\"/><Patient xmlns=\"http://hl7.org/fhir\"/>",
                "after the root",
            ),
            (
                "<Observation xmlns=\"http://hl7.org/fhir\"><valueQuantity><value value=\"1.\"/></valueQuantity></Observation>",
                "not a valid decimal",
            ),
            (
                "<Observation xmlns=\"http://hl7.org/fhir\"><valueString value=\"a\"/><valueBoolean value=\"true\"/></Observation>",
                "two types",
            ),
        ];
        for (xml, expected) in cases {
            let error = xml_to_json(defs(), xml).expect_err(xml).to_string();
            assert!(error.contains(expected), "{xml}: {error}");
        }
        let error = xml_to_json(
            defs(),
            "<Patient xmlns=\"http://hl7.org/fhir\">\n <name>\n </nam>\n</Patient>",
        )
        .unwrap_err();
        assert!(
            matches!(error, XmlError::Syntax { line: 3, .. }),
            "{error:?}"
        );
    }

    #[test]
    fn invalid_json_is_rejected_with_its_path() {
        let cases: &[(&str, &str)] = &[
            (r#"{"name":[]}"#, "empty arrays"),
            (r#"{"name":{"family":"x"}}"#, "must be an array"),
            (r#"{"active":"true"}"#, "JSON true or false"),
            (r#"{"multipleBirthInteger":1.5}"#, "not an integer"),
            (
                r#"{"name":[{"given":["a"],"_given":[null,null]}]}"#,
                "align",
            ),
            (
                r#"{"name":[{"_family":{"foo":1}}]}"#,
                "only id and extension",
            ),
            (r#"{"gender":"\u0001"}"#, "U+0001"),
            (r#"{"name":[{"_id":{"id":"x"}}]}"#, "attribute"),
        ];
        for (body, expected) in cases {
            let mut value = json(body);
            value
                .as_object_mut()
                .unwrap()
                .insert("resourceType".into(), "Patient".into());
            let error = json_to_xml(defs(), &value, false)
                .expect_err(body)
                .to_string();
            assert!(
                error.contains(expected) && error.contains("Patient"),
                "{body}: {error}"
            );
        }
        let error = json_to_xml(
            defs(),
            &json(r#"{"resourceType":"Patient","name":[{"given":["a",1]}]}"#),
            false,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot write Patient.name[0].given[1] as XML: a string must be a JSON string"
        );
    }

    #[test]
    fn hostile_nesting_is_refused_without_recursion() {
        let depth = 100_000;
        let xml = format!(
            "<Questionnaire xmlns=\"http://hl7.org/fhir\">{}{}</Questionnaire>",
            "<item>".repeat(depth),
            "</item>".repeat(depth)
        );
        let error = xml_to_json(defs(), &xml).unwrap_err();
        assert!(
            matches!(
                error,
                XmlError::TooDeep {
                    limit: MAX_DEPTH,
                    ..
                }
            ),
            "{error:?}"
        );

        // The writer refuses the same depth, so everything it writes can be read back.
        let mut item = json(r#"{"linkId":"x","type":"group"}"#);
        for _ in 0..MAX_DEPTH {
            let mut parent = json(r#"{"linkId":"x","type":"group"}"#);
            parent["item"] = Value::Array(vec![item]);
            item = parent;
        }
        let mut questionnaire = json(r#"{"resourceType":"Questionnaire","status":"draft"}"#);
        questionnaire["item"] = Value::Array(vec![item]);
        let error = json_to_xml(defs(), &questionnaire, false).unwrap_err();
        assert!(error.to_string().contains("deeper"), "{error}");
    }

    /// Every official R4 JSON example: JSON → XML → JSON must give the same resource.
    /// Run with `FHIR_R4_EXAMPLES_DIR=…/package cargo test -p fhir --release -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs the R4 examples; set FHIR_R4_EXAMPLES_DIR"]
    fn official_examples_round_trip() {
        let Some(dir) = std::env::var_os("FHIR_R4_EXAMPLES_DIR") else {
            eprintln!("FHIR_R4_EXAMPLES_DIR is not set: skipping the example corpus");
            return;
        };
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .expect("FHIR_R4_EXAMPLES_DIR is readable")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        let (mut passed, mut skipped, mut failures) = (0usize, Vec::new(), Vec::new());
        let (mut json_bytes, mut xml_bytes) = (0usize, 0usize);
        let (mut to_xml, mut to_json) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for path in &paths {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let text = std::fs::read_to_string(path).expect("example is readable");
            let value: Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(e) => {
                    skipped.push(format!("{name}: not JSON: {e}"));
                    continue;
                }
            };
            if value.get("resourceType").is_none() {
                skipped.push(format!("{name}: not a resource"));
                continue;
            }
            let mut result = Ok(());
            for pretty in [false, true] {
                let started = std::time::Instant::now();
                let xml = match json_to_xml(defs(), &value, pretty) {
                    Ok(xml) => xml,
                    Err(e) => {
                        result = Err(format!("JSON→XML: {e}"));
                        break;
                    }
                };
                let written = std::time::Instant::now();
                let back = xml_to_json(defs(), &xml);
                let read = std::time::Instant::now();
                if !pretty {
                    json_bytes += text.len();
                    xml_bytes += xml.len();
                    to_xml += written - started;
                    to_json += read - written;
                }
                match back {
                    Err(e) => result = Err(format!("XML→JSON: {e}")),
                    Ok(back) => {
                        if let Some(d) = difference(&value, &back, "") {
                            result = Err(format!("differs: {d}"));
                        }
                    }
                }
                if result.is_err() {
                    break;
                }
            }
            match result {
                Ok(()) => passed += 1,
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        let mb = |bytes: usize| bytes as f64 / 1e6;
        eprintln!(
            "{} files: {passed} round-tripped, {} failed, {} skipped",
            paths.len(),
            failures.len(),
            skipped.len()
        );
        for line in skipped.iter().chain(&failures) {
            eprintln!("  {line}");
        }
        eprintln!(
            "JSON→XML (compact): {:.1} MB JSON in {:.2} s = {:.1} MB/s of JSON ({:.1} MB/s of XML written)",
            mb(json_bytes),
            to_xml.as_secs_f64(),
            mb(json_bytes) / to_xml.as_secs_f64(),
            mb(xml_bytes) / to_xml.as_secs_f64()
        );
        eprintln!(
            "XML→JSON: {:.1} MB XML in {:.2} s = {:.1} MB/s of XML",
            mb(xml_bytes),
            to_json.as_secs_f64(),
            mb(xml_bytes) / to_json.as_secs_f64()
        );
        assert!(failures.is_empty(), "{} examples failed", failures.len());
    }
}
