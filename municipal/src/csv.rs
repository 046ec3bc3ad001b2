//! RFC 4180 records read incrementally from a byte stream, with bounded buffers: quoted fields
//! with delimiters, doubled quotes and line ends inside; CRLF or LF; the physical line where
//! each record starts. Splitting works on bytes, which is safe for UTF-8 and CP932 alike: the
//! quote, the delimiter and the line end are ASCII, and CP932 trail bytes are 0x40 or above.

use std::io::Read;

/// Bytes read from the input at a time.
pub(crate) const CHUNK: usize = 64 * 1024;
/// A record longer than this is reported and skipped, so a runaway quote cannot make the reader
/// hold the rest of the file.
pub(crate) const MAX_RECORD: usize = 1024 * 1024;

/// What [`RecordReader::next_record`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Raw {
    /// A record; its fields are in [`RecordReader::field`].
    Record {
        line: u64,
    },
    /// The record was longer than [`MAX_RECORD`]; skipped up to the next line end.
    TooLong {
        line: u64,
    },
    /// The file ended inside a quoted field: the last record was cut off.
    Truncated {
        line: u64,
    },
    /// A quoted field was followed by something other than a delimiter or line end.
    Malformed {
        line: u64,
        field: usize,
    },
    Io(String),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: either the closing quote or the first of a doubled pair.
    QuoteInQuoted,
    /// After a closing quote, before the delimiter.
    AfterQuote,
}

#[derive(Debug)]
pub(crate) struct RecordReader<R> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    pub bytes_read: u64,
    /// Physical line of the next unread byte (1-based).
    line: u64,
    delimiter: u8,
    data: Vec<u8>,
    ends: Vec<usize>,
    io_error: Option<String>,
    /// The record read so far is a blank line.
    blank: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(input: R, delimiter: u8) -> Self {
        RecordReader {
            input,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
            bytes_read: 0,
            line: 1,
            delimiter,
            data: Vec::new(),
            ends: Vec::new(),
            io_error: None,
            blank: true,
        }
    }

    /// Fills the buffer (up to its size, or the end of the input) and returns the unread bytes,
    /// so the caller can look at the start of the file (encoding detection).
    pub fn peek(&mut self) -> &[u8] {
        while !self.eof && self.end < self.buf.len() {
            if !self.fill_more() {
                break;
            }
        }
        &self.buf[self.start..self.end]
    }

    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Skips `n` bytes already seen with [`Self::peek`] (a byte-order mark).
    pub fn skip(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Reads more input after the unread bytes; false at the end of input or on error.
    fn fill_more(&mut self) -> bool {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return true;
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return false;
                }
                Ok(n) => {
                    self.end += n;
                    self.bytes_read += n as u64;
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.io_error = Some(e.to_string());
                    self.eof = true;
                    return false;
                }
            }
        }
    }

    /// Number of fields of the last record.
    pub fn field_count(&self) -> usize {
        self.ends.len()
    }

    /// Raw bytes of field `i` of the last record (quotes removed, doubled quotes undone).
    pub fn field(&self, i: usize) -> &[u8] {
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[from..self.ends[i]]
    }

    /// All field bytes of the last record, concatenated.
    pub fn record_bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn field_ends(&self) -> &[usize] {
        &self.ends
    }

    /// Bytes held in buffers now: the input buffer and the record buffers.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity() + self.data.capacity() + self.ends.capacity() * size_of::<usize>()
    }

    /// The next record. Blank lines are skipped.
    pub fn next_record(&mut self) -> Raw {
        loop {
            let outcome = self.scan();
            match outcome {
                // A blank line is one empty field with nothing in it.
                Raw::Record { .. }
                    if self.ends.len() == 1 && self.data.is_empty() && self.blank =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }
}

/// Per-record scanning state kept outside the struct for the borrow checker's sake.
impl<R: Read> RecordReader<R> {
    fn scan(&mut self) -> Raw {
        self.data.clear();
        self.ends.clear();
        self.blank = true;
        let line = self.line;
        let mut state = State::FieldStart;
        let mut pending_cr = false;
        let mut too_long = false;
        let mut malformed: Option<usize> = None;
        let mut started = false;
        loop {
            if self.start == self.end {
                if self.eof || !self.fill_more() {
                    if let Some(e) = self.io_error.take() {
                        return Raw::Io(e);
                    }
                    // End of input.
                    if !started {
                        return Raw::End;
                    }
                    if matches!(state, State::Quoted) {
                        return Raw::Truncated { line };
                    }
                    if pending_cr {
                        self.data.push(b'\r');
                    }
                    self.ends.push(self.data.len());
                    return self.finish(line, too_long, malformed);
                }
                continue;
            }
            let chunk_start = self.start;
            let mut i = chunk_start;
            let end = self.end;
            let mut done = false;
            while i < end {
                let b = self.buf[i];
                i += 1;
                started = true;
                if b == b'\n' {
                    self.line += 1;
                }
                if pending_cr {
                    pending_cr = false;
                    if b == b'\n' {
                        done = true;
                        break;
                    }
                    self.data.push(b'\r');
                    self.blank = false;
                }
                match state {
                    State::FieldStart | State::Unquoted | State::AfterQuote => {
                        if b == b'\n' {
                            done = true;
                            break;
                        } else if b == b'\r' {
                            pending_cr = true;
                        } else if b == self.delimiter {
                            self.ends.push(self.data.len());
                            self.blank = false;
                            state = State::FieldStart;
                        } else if b == b'"' && state == State::FieldStart {
                            self.blank = false;
                            state = State::Quoted;
                        } else {
                            if state == State::AfterQuote {
                                malformed.get_or_insert(self.ends.len());
                            }
                            self.data.push(b);
                            self.blank = false;
                            if state == State::FieldStart {
                                state = State::Unquoted;
                            }
                        }
                    }
                    State::Quoted => {
                        if b == b'"' {
                            state = State::QuoteInQuoted;
                        } else {
                            self.data.push(b);
                        }
                    }
                    State::QuoteInQuoted => {
                        if b == b'"' {
                            self.data.push(b'"');
                            state = State::Quoted;
                        } else if b == b'\n' {
                            done = true;
                            break;
                        } else if b == b'\r' {
                            state = State::AfterQuote;
                            pending_cr = true;
                        } else if b == self.delimiter {
                            self.ends.push(self.data.len());
                            state = State::FieldStart;
                        } else {
                            malformed.get_or_insert(self.ends.len());
                            self.data.push(b);
                            state = State::AfterQuote;
                        }
                    }
                }
                if self.data.len() > MAX_RECORD {
                    // Keep scanning for the line end outside quotes, holding nothing.
                    too_long = true;
                    self.data.clear();
                    self.ends.clear();
                    if state == State::Quoted {
                        state = State::Unquoted;
                    }
                }
            }
            self.start = i;
            if done {
                self.ends.push(self.data.len());
                return self.finish(line, too_long, malformed);
            }
        }
    }

    fn finish(&mut self, line: u64, too_long: bool, malformed: Option<usize>) -> Raw {
        if too_long {
            self.data.clear();
            self.ends.clear();
            self.data.shrink_to(CHUNK);
            return Raw::TooLong { line };
        }
        if let Some(field) = malformed {
            return Raw::Malformed { line, field };
        }
        Raw::Record { line }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(input: &[u8]) -> Vec<(Raw, Vec<String>)> {
        let mut reader = RecordReader::new(input, b',');
        let mut out = Vec::new();
        loop {
            let raw = reader.next_record();
            if raw == Raw::End {
                return out;
            }
            let fields = (0..reader.field_count())
                .map(|i| String::from_utf8_lossy(reader.field(i)).into_owned())
                .collect();
            out.push((raw, fields));
        }
    }

    #[test]
    fn rfc4180_records_and_physical_lines() {
        let input = b"a,b,c\r\n\"x,1\",\"say \"\"hi\"\"\",\"two\r\nlines\"\r\n\n1,,3\nlast,no,end";
        let got = records(input);
        let expected: Vec<(Raw, Vec<&str>)> = vec![
            (Raw::Record { line: 1 }, vec!["a", "b", "c"]),
            (
                Raw::Record { line: 2 },
                vec!["x,1", "say \"hi\"", "two\r\nlines"],
            ),
            (Raw::Record { line: 5 }, vec!["1", "", "3"]),
            (Raw::Record { line: 6 }, vec!["last", "no", "end"]),
        ];
        assert_eq!(got.len(), expected.len(), "{got:?}");
        for ((raw, fields), (eraw, efields)) in got.iter().zip(&expected) {
            assert_eq!(raw, eraw);
            assert_eq!(fields, efields);
        }
    }

    #[test]
    fn a_quote_left_open_at_the_end_is_a_truncated_record() {
        let got = records(b"a,b\n1,\"open\nstill open");
        assert_eq!(got[1].0, Raw::Truncated { line: 2 });
    }

    #[test]
    fn text_after_a_closing_quote_is_malformed() {
        let got = records(b"\"a\"x,b\nc,d\n");
        assert_eq!(got[0].0, Raw::Malformed { line: 1, field: 0 });
        assert_eq!(got[1].0, Raw::Record { line: 2 });
    }

    #[test]
    fn records_split_across_reads_and_lone_cr() {
        // A reader returning one byte at a time exercises every buffer boundary.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.split_first() {
                    Some((b, rest)) if !buf.is_empty() => {
                        buf[0] = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let mut reader = RecordReader::new(OneByte(b"\"a\"\"\",b\r\nc\rd,e\r\n"), b',');
        assert_eq!(reader.next_record(), Raw::Record { line: 1 });
        assert_eq!(reader.field(0), b"a\"");
        assert_eq!(reader.next_record(), Raw::Record { line: 2 });
        assert_eq!(reader.field(0), b"c\rd");
        assert_eq!(reader.next_record(), Raw::End);
    }

    #[test]
    fn an_overlong_record_is_skipped_with_bounded_memory() {
        let mut input = b"a,\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_RECORD + 10));
        input.extend_from_slice(b"\nnext,row\n");
        let mut reader = RecordReader::new(&input[..], b',');
        assert_eq!(reader.next_record(), Raw::TooLong { line: 1 });
        assert!(reader.buffered_capacity() < 4 * MAX_RECORD);
        assert_eq!(reader.next_record(), Raw::Record { line: 2 });
        assert_eq!(reader.field(1), b"row");
    }
}
