//! Streaming import of a municipal CSV file: encoding detection, decoding record by record,
//! the header check, and each row mapped to resources or reported, never stopping at a bad row.

use std::io::Read;

use identifiers::MunicipalityCode;

use crate::csv::{Raw, RecordReader};
use crate::encoding::{BOM, Encoding, EncodingChoice, detect};
use crate::layout::Layout;
use crate::map::{Mapper, Naming, trim};
use crate::{MappedRow, MunicipalError, RowError};

/// An import in progress: an iterator of mapped rows and row errors, in file order.
#[derive(Debug)]
pub struct Import<R: Read> {
    reader: RecordReader<R>,
    mapper: Mapper,
    /// `None` while every line so far was ASCII (auto-detection only).
    encoding: Option<Encoding>,
    text: String,
    bounds: Vec<(usize, usize)>,
    finished: bool,
}

/// One decoded record: `text` with per-field byte ranges.
fn decode(
    encoding: Encoding,
    reader: &RecordReader<impl Read>,
    text: &mut String,
    bounds: &mut Vec<(usize, usize)>,
) -> Result<(), (usize, String)> {
    text.clear();
    bounds.clear();
    let bytes = reader.record_bytes();
    let ends = reader.field_ends();
    match encoding {
        Encoding::Utf8 | Encoding::Utf8Bom => match std::str::from_utf8(bytes) {
            Ok(all) => {
                text.push_str(all);
                let mut from = 0;
                for &end in ends {
                    bounds.push((from, end));
                    from = end;
                }
                Ok(())
            }
            Err(e) => {
                let at = e.valid_up_to();
                let field = ends.iter().position(|&end| end > at).unwrap_or(0);
                Err((
                    field,
                    "not valid UTF-8 (a line in another encoding, e.g. CP932, in a UTF-8 file?)"
                        .to_owned(),
                ))
            }
        },
        Encoding::Cp932 => {
            // CP932 text is almost never valid multi-byte UTF-8, so a line that is must have
            // been written by another program: reading it as CP932 would give garbage.
            if !bytes.is_ascii() && std::str::from_utf8(bytes).is_ok() {
                let field = (0..ends.len())
                    .find(|&i| !reader.field(i).is_ascii())
                    .unwrap_or(0);
                return Err((
                    field,
                    "this line is UTF-8 in a CP932 file (mixed encodings)".to_owned(),
                ));
            }
            for i in 0..ends.len() {
                let field = reader.field(i);
                let from = text.len();
                if field.is_ascii() {
                    // ASCII is the same in CP932, and cheap to copy.
                    text.push_str(std::str::from_utf8(field).unwrap_or_default());
                } else {
                    let mut decoder = encoding_rs::SHIFT_JIS.new_decoder_without_bom_handling();
                    text.reserve(field.len() * 3 / 2 + 4);
                    let (result, _) =
                        decoder.decode_to_string_without_replacement(field, text, true);
                    if !matches!(result, encoding_rs::DecoderResult::InputEmpty) {
                        return Err((
                            i,
                            "not valid CP932 (a line in another encoding in a CP932 file?)"
                                .to_owned(),
                        ));
                    }
                }
                bounds.push((from, text.len()));
            }
            Ok(())
        }
    }
}

impl<R: Read> Import<R> {
    /// Starts an import: detects the encoding (unless chosen) and, when the layout has a header
    /// line, reads and checks it. A header that does not match is an error for the whole file.
    pub fn new(
        layout: &Layout,
        municipality: &MunicipalityCode,
        input: R,
        encoding: EncodingChoice,
    ) -> Result<Self, MunicipalError> {
        let mut reader = RecordReader::new(input, layout.delimiter);
        let start = reader.peek();
        let has_bom = start.starts_with(BOM);
        let detected = match encoding {
            EncodingChoice::Exactly(e) => Some(e),
            EncodingChoice::Auto => {
                let complete = reader.at_eof();
                detect(reader.peek(), complete)
            }
        };
        if has_bom {
            // A BOM is dropped whatever the choice (JP Core: receivers may ignore it).
            reader.skip(BOM.len());
        }
        let mut import = Import {
            reader,
            mapper: Mapper::new(layout, municipality),
            encoding: detected,
            text: String::new(),
            bounds: Vec::new(),
            finished: false,
        };
        if layout.header {
            import.check_header()?;
        }
        Ok(import)
    }

    /// The encoding in use (UTF-8 while every line so far was ASCII).
    pub fn encoding(&self) -> Encoding {
        self.encoding.unwrap_or(Encoding::Utf8)
    }

    /// Bytes pulled from the input so far, for a progress bar.
    pub fn bytes_read(&self) -> u64 {
        self.reader.bytes_read
    }

    /// Bytes the import holds in its buffers now. Bounded whatever the file size (input chunk,
    /// one record of at most 1 MiB, its decoded text), so callers and tests can check memory.
    pub fn buffered_capacity(&self) -> usize {
        self.reader.buffered_capacity()
            + self.text.capacity()
            + self.bounds.capacity() * size_of::<(usize, usize)>()
    }

    /// The encoding for the record just read, deciding it now if it was left open.
    fn encoding_for_record(&mut self) -> Encoding {
        if let Some(e) = self.encoding {
            return e;
        }
        let bytes = self.reader.record_bytes();
        if bytes.is_ascii() {
            return Encoding::Utf8;
        }
        let e = detect(bytes, true).unwrap_or(Encoding::Utf8);
        self.encoding = Some(e);
        e
    }

    fn check_header(&mut self) -> Result<(), MunicipalError> {
        let layout_name = self.mapper.layout.name().to_owned();
        let line = match self.reader.next_record() {
            Raw::Record { line } => line,
            Raw::End => {
                return Err(MunicipalError::EmptyFile {
                    layout: layout_name,
                });
            }
            Raw::Io(e) => return Err(MunicipalError::Io(e)),
            Raw::TooLong { .. } | Raw::Truncated { .. } | Raw::Malformed { .. } => {
                return Err(MunicipalError::Header {
                    layout: layout_name,
                    problems: vec!["the header line is not a well-formed CSV line".to_owned()],
                });
            }
        };
        let encoding = self.encoding_for_record();
        if decode(encoding, &self.reader, &mut self.text, &mut self.bounds).is_err() {
            return Err(MunicipalError::Header {
                layout: layout_name,
                problems: vec![format!(
                    "line {line}: the header line is not valid {encoding}"
                )],
            });
        }
        let found: Vec<&str> = self
            .bounds
            .iter()
            .map(|&(a, b)| trim(&self.text[a..b]))
            .collect();
        let expected: Vec<&str> = self.mapper.layout.headers().collect();
        let mut problems = Vec::new();
        for i in 0..found.len().max(expected.len()) {
            match (expected.get(i), found.get(i)) {
                (Some(e), Some(f)) if e == f => {}
                (Some(e), Some(f)) => {
                    problems.push(format!("column {} is {f:?}, expected {e:?}", i + 1))
                }
                (Some(e), None) => problems.push(format!("column {} {e:?} is missing", i + 1)),
                (None, Some(f)) => {
                    problems.push(format!("column {} {f:?} is not in the layout", i + 1))
                }
                (None, None) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(MunicipalError::Header {
                layout: layout_name,
                problems,
            })
        }
    }

    fn error(line: u64, reason: impl Into<String>) -> RowError {
        RowError {
            line,
            column: None,
            value: None,
            reason: reason.into(),
        }
    }

    fn row(&mut self, line: u64) -> Result<MappedRow, RowError> {
        let columns = self.mapper.layout.columns();
        if self.reader.field_count() != columns.len() {
            return Err(Self::error(
                line,
                format!(
                    "wrong column count: expected {}, found {}",
                    columns.len(),
                    self.reader.field_count()
                ),
            ));
        }
        let encoding = self.encoding_for_record();
        if let Err((field, reason)) =
            decode(encoding, &self.reader, &mut self.text, &mut self.bounds)
        {
            return Err(RowError {
                line,
                column: Some(self.mapper.layout.columns()[field].header.clone()),
                value: None,
                reason,
            });
        }
        let mut values: [&str; 64] = [""; 64];
        let many;
        let values: &[&str] = if self.bounds.len() <= values.len() {
            for (slot, &(a, b)) in values.iter_mut().zip(&self.bounds) {
                *slot = trim(&self.text[a..b]);
            }
            &values[..self.bounds.len()]
        } else {
            many = self
                .bounds
                .iter()
                .map(|&(a, b)| trim(&self.text[a..b]))
                .collect::<Vec<_>>();
            &many
        };
        self.mapper.map(line, values, Naming::Header)
    }
}

impl<R: Read> Iterator for Import<R> {
    type Item = Result<MappedRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        Some(match self.reader.next_record() {
            Raw::End => {
                self.finished = true;
                return None;
            }
            Raw::Io(e) => {
                self.finished = true;
                Err(Self::error(0, format!("reading the input failed: {e}")))
            }
            Raw::Record { line } => self.row(line),
            Raw::TooLong { line } => Err(Self::error(
                line,
                format!(
                    "record longer than {} bytes (an unclosed quote?); skipped to the next line",
                    crate::csv::MAX_RECORD
                ),
            )),
            Raw::Truncated { line } => {
                self.finished = true;
                Err(Self::error(
                    line,
                    "truncated last line: the file ends inside a quoted field",
                ))
            }
            Raw::Malformed { line, field } => Err(RowError {
                line,
                column: self
                    .mapper
                    .layout
                    .columns()
                    .get(field)
                    .map(|c| c.header.clone()),
                value: None,
                reason: "text after a closing quote".to_owned(),
            }),
        })
    }
}
