//! The FHIR XML format (R4 xml.html) in both directions, driven by the structure definitions:
//! element order, which elements repeat, which primitives are numbers or booleans, nested
//! resources and the XHTML narrative (kept byte for byte in both directions).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Number, Value};

use crate::definitions::{Definitions, ElementDef, Max};

const FHIR_NS: &str = "http://hl7.org/fhir";
const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("XML syntax error at byte {position}: {message}")]
    Syntax { position: u64, message: String },
    #[error("{0}")]
    Structure(String),
}

fn structure(message: impl Into<String>) -> XmlError {
    XmlError::Structure(message.into())
}

// ---------------------------------------------------------------- JSON → XML

/// Render a resource as FHIR XML.
pub fn json_to_xml(defs: &Definitions, resource: &Value, pretty: bool) -> Result<String, XmlError> {
    let mut writer = XmlWriter {
        defs,
        out: String::with_capacity(1024),
        pretty,
    };
    writer
        .out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    writer.resource(resource, 0, true)?;
    if pretty {
        writer.out.push('\n');
    }
    Ok(writer.out)
}

struct XmlWriter<'d> {
    defs: &'d Definitions,
    out: String,
    pretty: bool,
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Attribute-value normalisation would turn these into spaces.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl XmlWriter<'_> {
    fn newline(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn resource(&mut self, value: &Value, depth: usize, root: bool) -> Result<(), XmlError> {
        let object = value
            .as_object()
            .ok_or_else(|| structure("a resource must be a JSON object"))?;
        let rt = object
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| structure("resourceType is missing"))?;
        if !self.defs.is_resource_type(rt) {
            return Err(structure(format!("{rt:?} is not an R4 resource type")));
        }
        if depth > MAX_DEPTH {
            return Err(structure("nesting too deep"));
        }
        self.newline(depth);
        self.out.push('<');
        self.out.push_str(rt);
        if root {
            self.out.push_str(" xmlns=\"");
            self.out.push_str(FHIR_NS);
            self.out.push('"');
        }
        self.out.push('>');
        let elements = self.defs.elements_of_type(rt);
        self.children(object, elements, rt, depth + 1, &[])?;
        self.newline(depth);
        self.out.push_str("</");
        self.out.push_str(rt);
        self.out.push('>');
        Ok(())
    }

    /// Write an object's properties in definition order; `skip` names those written as attributes.
    fn children(
        &mut self,
        object: &Map<String, Value>,
        elements: &[ElementDef],
        type_name: &str,
        depth: usize,
        skip: &[&str],
    ) -> Result<(), XmlError> {
        for key in object.keys() {
            let name = key.strip_prefix('_').unwrap_or(key);
            if key != "resourceType"
                && !skip.contains(&name)
                && self.defs.match_key(elements, name).is_none()
            {
                return Err(structure(format!("unknown element {key:?} in {type_name}")));
            }
        }
        for element in elements {
            if skip.contains(&element.name.as_str()) {
                continue;
            }
            let keys: Vec<(&str, &str)> = if element.is_choice {
                object
                    .keys()
                    .map(|k| k.strip_prefix('_').unwrap_or(k))
                    .filter_map(|k| {
                        self.defs
                            .match_key(std::slice::from_ref(element), k)
                            .map(|m| (k, m.type_code))
                    })
                    .fold(Vec::new(), |mut acc, kv| {
                        if !acc.contains(&kv) {
                            acc.push(kv);
                        }
                        acc
                    })
            } else if object.contains_key(&element.name)
                || object.contains_key(&format!("_{}", element.name))
            {
                vec![(
                    element.name.as_str(),
                    element.types.first().map(String::as_str).unwrap_or(""),
                )]
            } else {
                Vec::new()
            };
            for (key, type_code) in keys {
                let value = object.get(key);
                let extension = object.get(&format!("_{key}"));
                self.element(key, element, type_code, value, extension, depth)?;
            }
        }
        Ok(())
    }

    fn element(
        &mut self,
        name: &str,
        element: &ElementDef,
        type_code: &str,
        value: Option<&Value>,
        extension: Option<&Value>,
        depth: usize,
    ) -> Result<(), XmlError> {
        match (value, extension) {
            (Some(Value::Array(values)), ext) => {
                let exts = ext.and_then(Value::as_array);
                for (i, v) in values.iter().enumerate() {
                    let e = exts.and_then(|e| e.get(i)).filter(|e| !e.is_null());
                    self.single(
                        name,
                        element,
                        type_code,
                        Some(v).filter(|v| !v.is_null()),
                        e,
                        depth,
                    )?;
                }
                Ok(())
            }
            (None, Some(Value::Array(exts))) => {
                for e in exts {
                    self.single(
                        name,
                        element,
                        type_code,
                        None,
                        Some(e).filter(|e| !e.is_null()),
                        depth,
                    )?;
                }
                Ok(())
            }
            (value, ext) => self.single(name, element, type_code, value, ext, depth),
        }
    }

    fn single(
        &mut self,
        name: &str,
        element: &ElementDef,
        type_code: &str,
        value: Option<&Value>,
        extension: Option<&Value>,
        depth: usize,
    ) -> Result<(), XmlError> {
        if value.is_none() && extension.is_none() {
            return Ok(());
        }
        if type_code == "xhtml" {
            let div = value
                .and_then(Value::as_str)
                .ok_or_else(|| structure("narrative div must be a string"))?;
            self.newline(depth);
            if div.contains("xmlns=") {
                self.out.push_str(div);
            } else {
                let rest = div
                    .trim_start()
                    .strip_prefix("<div")
                    .ok_or_else(|| structure("narrative must start with <div"))?;
                self.out.push_str("<div xmlns=\"");
                self.out.push_str(XHTML_NS);
                self.out.push('"');
                self.out.push_str(rest);
            }
            return Ok(());
        }
        if type_code == "Resource" || self.defs.is_resource_type(type_code) {
            let inner = value.ok_or_else(|| structure(format!("{name} needs a resource")))?;
            self.newline(depth);
            self.out.push('<');
            self.out.push_str(name);
            self.out.push('>');
            self.resource(inner, depth + 1, false)?;
            self.newline(depth);
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
            return Ok(());
        }
        self.newline(depth);
        self.out.push('<');
        self.out.push_str(name);
        if self.defs.is_primitive(type_code) {
            let ext = extension.and_then(Value::as_object);
            if let Some(id) = ext.and_then(|e| e.get("id")).and_then(Value::as_str) {
                self.out.push_str(" id=\"");
                escape_into(&mut self.out, id);
                self.out.push('"');
            }
            if let Some(v) = value {
                let text = scalar_text(v)
                    .ok_or_else(|| structure(format!("{name} must be a primitive value")))?;
                self.out.push_str(" value=\"");
                escape_into(&mut self.out, &text);
                self.out.push('"');
            }
            match ext.and_then(|e| e.get("extension")) {
                Some(extensions) => {
                    self.out.push('>');
                    let ext_def = &self.defs.elements_of_type("Element")[1];
                    self.element(
                        "extension",
                        ext_def,
                        "Extension",
                        Some(extensions),
                        None,
                        depth + 1,
                    )?;
                    self.newline(depth);
                    self.out.push_str("</");
                    self.out.push_str(name);
                    self.out.push('>');
                }
                None => self.out.push_str("/>"),
            }
            return Ok(());
        }
        let object = value
            .and_then(Value::as_object)
            .ok_or_else(|| structure(format!("{name} must be an object")))?;
        let mut skip = vec![];
        if let Some(id) = object.get("id").and_then(Value::as_str) {
            self.out.push_str(" id=\"");
            escape_into(&mut self.out, id);
            self.out.push('"');
            skip.push("id");
        }
        if type_code == "Extension"
            && let Some(url) = object.get("url").and_then(Value::as_str)
        {
            self.out.push_str(" url=\"");
            escape_into(&mut self.out, url);
            self.out.push('"');
            skip.push("url");
        }
        self.out.push('>');
        let children = if element.children.is_empty() && element.content_ref.is_none() {
            self.defs.elements_of_type(type_code)
        } else {
            self.defs.children_of(element)
        };
        self.children(object, children, type_code, depth + 1, &skip)?;
        self.newline(depth);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        Ok(())
    }
}

// ---------------------------------------------------------------- XML → JSON

/// A parsed element: name, attributes, children; `raw` holds an XHTML div verbatim.
#[derive(Debug, Default)]
struct XNode {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<XNode>,
    raw: Option<String>,
}

impl XNode {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn syntax(reader: &Reader<&[u8]>, message: impl Into<String>) -> XmlError {
    XmlError::Syntax {
        position: reader.buffer_position(),
        message: message.into(),
    }
}

fn start_node(reader: &Reader<&[u8]>, e: &BytesStart<'_>) -> Result<XNode, XmlError> {
    let name = String::from_utf8(e.local_name().as_ref().to_vec())
        .map_err(|_| syntax(reader, "element name is not UTF-8"))?;
    let mut attrs = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| syntax(reader, err.to_string()))?;
        let key = String::from_utf8(attr.key.as_ref().to_vec())
            .map_err(|_| syntax(reader, "attribute name is not UTF-8"))?;
        let value = attr
            .unescape_value()
            .map_err(|err| syntax(reader, err.to_string()))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(XNode {
        name,
        attrs,
        children: Vec::new(),
        raw: None,
    })
}

fn parse_tree(xml: &str) -> Result<XNode, XmlError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<XNode> = Vec::new();
    let mut root = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| syntax(&reader, e.to_string()))?;
        match event {
            Event::DocType(_) => {
                return Err(syntax(&reader, "DOCTYPE declarations are not accepted"));
            }
            Event::Start(e) => {
                if stack.len() > MAX_DEPTH {
                    return Err(syntax(&reader, "nesting too deep"));
                }
                let mut node = start_node(&reader, &e)?;
                if node.name == "div" && node.attr("xmlns") == Some(XHTML_NS) {
                    // Keep the narrative exactly as written: from its `<` to its end tag.
                    let end = e.name().as_ref().to_vec();
                    reader
                        .read_to_end(quick_xml::name::QName(&end))
                        .map_err(|err| syntax(&reader, err.to_string()))?;
                    let start = xml[before..]
                        .find('<')
                        .map_or(before, |offset| before + offset);
                    node.raw = Some(xml[start..reader.buffer_position() as usize].to_owned());
                    attach(&mut stack, &mut root, node);
                } else {
                    stack.push(node);
                }
            }
            Event::Empty(e) => {
                let node = start_node(&reader, &e)?;
                if node.name == "div" {
                    let start = xml[before..]
                        .find('<')
                        .map_or(before, |offset| before + offset);
                    let mut div = node;
                    div.raw = Some(xml[start..reader.buffer_position() as usize].to_owned());
                    attach(&mut stack, &mut root, div);
                } else {
                    attach(&mut stack, &mut root, node);
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| syntax(&reader, "unexpected end tag"))?;
                attach(&mut stack, &mut root, node);
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| syntax(&reader, e.to_string()))?;
                if !text.trim().is_empty() {
                    return Err(syntax(
                        &reader,
                        format!(
                            "unexpected text {:?}: FHIR XML carries values in value attributes",
                            text.trim()
                        ),
                    ));
                }
            }
            Event::CData(_) => {
                return Err(syntax(
                    &reader,
                    "CDATA is not allowed outside the narrative",
                ));
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(structure("the XML ends before all elements are closed"));
    }
    root.ok_or_else(|| structure("the XML document has no root element"))
}

fn attach(stack: &mut [XNode], root: &mut Option<XNode>, node: XNode) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

/// Parse a FHIR XML resource into FHIR JSON.
pub fn xml_to_json(defs: &Definitions, xml: &str) -> Result<Value, XmlError> {
    let root = parse_tree(xml)?;
    if root.attr("xmlns") != Some(FHIR_NS) {
        return Err(structure(format!(
            "the root element must be in the FHIR namespace {FHIR_NS}"
        )));
    }
    resource_to_json(defs, &root, 0)
}

fn resource_to_json(defs: &Definitions, node: &XNode, depth: usize) -> Result<Value, XmlError> {
    if !defs.is_resource_type(&node.name) {
        return Err(structure(format!(
            "<{}> is not an R4 resource type",
            node.name
        )));
    }
    let mut object = Map::new();
    object.insert("resourceType".into(), Value::String(node.name.clone()));
    children_to_json(
        defs,
        &node.children,
        defs.elements_of_type(&node.name),
        &node.name,
        &mut object,
        depth + 1,
    )?;
    Ok(Value::Object(object))
}

fn children_to_json(
    defs: &Definitions,
    children: &[XNode],
    elements: &[ElementDef],
    type_name: &str,
    object: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), XmlError> {
    if depth > MAX_DEPTH {
        return Err(structure("nesting too deep"));
    }
    for child in children {
        if defs.match_key(elements, &child.name).is_none() {
            return Err(structure(format!(
                "unknown element <{}> in {type_name}",
                child.name
            )));
        }
    }
    for element in elements {
        let mut names: Vec<&str> = Vec::new();
        for child in children {
            if let Some(m) = defs.match_key(std::slice::from_ref(element), &child.name) {
                let _ = m;
                if !names.contains(&child.name.as_str()) {
                    names.push(&child.name);
                }
            }
        }
        for name in names {
            let m = defs
                .match_key(std::slice::from_ref(element), name)
                .ok_or_else(|| structure("element lookup"))?;
            let type_code = m.type_code;
            let items: Vec<&XNode> = children.iter().filter(|c| c.name == name).collect();
            if element.max != Max::Many && items.len() > 1 {
                return Err(structure(format!(
                    "<{name}> occurs more than once in {type_name}"
                )));
            }
            let mut values = Vec::with_capacity(items.len());
            let mut extensions = Vec::with_capacity(items.len());
            for item in items {
                let (value, extension) = node_to_json(defs, item, element, type_code, depth)?;
                values.push(value);
                extensions.push(extension);
            }
            let has_values = values.iter().any(Option::is_some);
            let has_extensions = extensions.iter().any(Option::is_some);
            if element.max == Max::Many {
                if has_values {
                    object.insert(
                        name.to_owned(),
                        Value::Array(
                            values
                                .into_iter()
                                .map(|v| v.unwrap_or(Value::Null))
                                .collect(),
                        ),
                    );
                }
                if has_extensions {
                    object.insert(
                        format!("_{name}"),
                        Value::Array(
                            extensions
                                .into_iter()
                                .map(|v| v.unwrap_or(Value::Null))
                                .collect(),
                        ),
                    );
                }
            } else {
                if let Some(Some(v)) = values.into_iter().next() {
                    object.insert(name.to_owned(), v);
                }
                if let Some(Some(e)) = extensions.into_iter().next() {
                    object.insert(format!("_{name}"), e);
                }
            }
        }
    }
    Ok(())
}

/// One XML element → (JSON value, `_name` extension object).
fn node_to_json(
    defs: &Definitions,
    node: &XNode,
    element: &ElementDef,
    type_code: &str,
    depth: usize,
) -> Result<(Option<Value>, Option<Value>), XmlError> {
    if type_code == "xhtml" {
        return Ok((node.raw.clone().map(Value::String), None));
    }
    if type_code == "Resource" || defs.is_resource_type(type_code) {
        let [inner] = node.children.as_slice() else {
            return Err(structure(format!(
                "<{}> must hold exactly one resource",
                node.name
            )));
        };
        return Ok((Some(resource_to_json(defs, inner, depth + 1)?), None));
    }
    if defs.is_primitive(type_code) {
        let value = match node.attr("value") {
            Some(text) => Some(primitive_json(type_code, text, &node.name)?),
            None => None,
        };
        let mut extension = Map::new();
        if let Some(id) = node.attr("id") {
            extension.insert("id".into(), Value::String(id.to_owned()));
        }
        let element_defs = defs.elements_of_type("Element");
        children_to_json(
            defs,
            &node.children,
            element_defs,
            "Element",
            &mut extension,
            depth + 1,
        )?;
        let extension = (!extension.is_empty()).then_some(Value::Object(extension));
        if value.is_none() && extension.is_none() {
            return Err(structure(format!(
                "<{}> has neither a value nor extensions",
                node.name
            )));
        }
        return Ok((value, extension));
    }
    let mut object = Map::new();
    if let Some(id) = node.attr("id") {
        object.insert("id".into(), Value::String(id.to_owned()));
    }
    if type_code == "Extension"
        && let Some(url) = node.attr("url")
    {
        object.insert("url".into(), Value::String(url.to_owned()));
    }
    let children = if element.children.is_empty() && element.content_ref.is_none() {
        defs.elements_of_type(type_code)
    } else {
        defs.children_of(element)
    };
    let mut body = Map::new();
    children_to_json(
        defs,
        &node.children,
        children,
        type_code,
        &mut body,
        depth + 1,
    )?;
    // Attributes first (id, url), then children in definition order.
    for (k, v) in body {
        if !object.contains_key(&k) {
            object.insert(k, v);
        }
    }
    Ok((Some(Value::Object(object)), None))
}

fn primitive_json(type_code: &str, text: &str, name: &str) -> Result<Value, XmlError> {
    match type_code {
        "boolean" => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            other => Err(structure(format!(
                "<{name} value={other:?}> is not a boolean"
            ))),
        },
        "integer" | "positiveInt" | "unsignedInt" | "decimal" => text
            .parse::<Number>()
            .map(Value::Number)
            .map_err(|_| structure(format!("<{name} value={text:?}> is not a number"))),
        _ => Ok(Value::String(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) {
        let defs = Definitions::r4();
        let value: Value = serde_json::from_str(json).unwrap();
        for pretty in [false, true] {
            let xml = json_to_xml(defs, &value, pretty).unwrap();
            let back = xml_to_json(defs, &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
            assert_eq!(back, value, "{xml}");
        }
    }

    #[test]
    fn japanese_patient_round_trips() {
        round_trip(
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1"},
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>山田　太郎 <b>様</b></p></div>"},
            "contained":[{"resourceType":"Organization","id":"o1","name":"新宿区"}],
            "name":[{"text":"山田　太郎","family":"山田","given":["太郎","一"],"_given":[null,{"extension":[{"url":"http://x","valueCode":"SYL"}]}]}],
            "birthDate":"2020-02-29","_birthDate":{"id":"b","extension":[{"url":"http://example.org/t","valueTime":"09:30:00"}]},
            "multipleBirthInteger":2,"active":true}"#,
        );
    }

    #[test]
    fn decimals_questionnaires_and_bundles_round_trip() {
        round_trip(
            r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"valueQuantity":{"value":36.50,"unit":"℃","system":"http://unitsofmeasure.org","code":"Cel"}}"#,
        );
        round_trip(
            r#"{"resourceType":"Questionnaire","status":"active","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","text":"今日の体温","type":"decimal"}]}]}"#,
        );
        round_trip(
            r#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","gender":"female"}}]}"#,
        );
    }

    #[test]
    fn hostile_and_wrong_input_is_refused() {
        let defs = Definitions::r4();
        let doctype = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><Patient xmlns="http://hl7.org/fhir"/>"#;
        assert!(xml_to_json(defs, doctype).is_err());
        let unknown = r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#;
        assert!(
            xml_to_json(defs, unknown)
                .unwrap_err()
                .to_string()
                .contains("foo")
        );
        let no_ns = r#"<Patient><gender value="male"/></Patient>"#;
        assert!(xml_to_json(defs, no_ns).is_err());
        let commented = "<Patient xmlns=\"http://hl7.org/fhir\">\n  <!-- a comment -->\n  <gender value=\"male\"/>\n</Patient>";
        assert_eq!(xml_to_json(defs, commented).unwrap()["gender"], "male");
    }
}
