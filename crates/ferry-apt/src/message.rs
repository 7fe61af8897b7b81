//! apt's method protocol on the wire: a message is a status line (`600 URI Acquire`),
//! then `Name: value` fields (a value goes on over lines that start with a space), ended
//! by an empty line. apt looks fields up by name ignoring case; so does [`Message::get`].
//!
//! May use: std only.

use std::io::{self, BufRead};

/// One message, to or from apt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The status code: 1xx information, 2xx success, 4xx failure, 6xx from apt.
    pub code: u16,
    /// The words after the code (`URI Acquire`), for people reading a log.
    pub text: String,
    /// The fields in order; a name may come more than once (`Config-Item`).
    pub fields: Vec<(String, String)>,
}

/// A message that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The first line does not start with a three-digit code.
    #[error("a method message must start with a status code, got '{0}'")]
    NoCode(String),
    /// A field line has no colon.
    #[error("a field line must be 'Name: value', got '{0}'")]
    NoColon(String),
}

impl Message {
    /// A message with no fields yet.
    pub fn new(code: u16, text: &str) -> Message {
        Message {
            code,
            text: text.to_string(),
            fields: Vec::new(),
        }
    }

    /// Adds a field; an empty value is left out, as apt's own methods do.
    pub fn with(mut self, name: &str, value: impl ToString) -> Message {
        let value = value.to_string();
        if !value.is_empty() {
            self.fields.push((name.to_string(), value));
        }
        self
    }

    /// The first value of the field `name` (case ignored).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the field `name` (case ignored), in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A yes/no field as apt reads one (`true`, `yes`, `on`, `1`…); `false` when absent.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "true" | "yes" | "on" | "1" | "with" | "enable"
            )
        })
    }

    /// Reads a message from its lines (without the empty line that ends it).
    pub fn parse(text: &str) -> Result<Message, ParseError> {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let code_end = first
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(first.len());
        let code = first[..code_end]
            .parse::<u16>()
            .ok()
            .filter(|_| code_end == 3)
            .ok_or_else(|| ParseError::NoCode(first.to_string()))?;
        let mut message = Message::new(code, first[code_end..].trim());
        for line in lines {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = message.fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim_start());
                    continue;
                }
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::NoColon(line.to_string()))?;
            message
                .fields
                .push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(message)
    }

    /// The message as apt reads it: status line, fields, an empty line. Control
    /// characters apt refuses (anything below 32 but a tab or a line break, and DEL)
    /// become spaces; a line break in a value goes on with a space, as in apt's own
    /// methods; a line break in a name is impossible (names are ours).
    pub fn to_wire(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '\n' | '\t' => c,
                    c if (c as u32) < 32 || c as u32 == 127 => ' ',
                    c => c,
                })
                .collect()
        };
        let mut out = format!("{} {}\n", self.code, clean(&self.text).replace('\n', " "));
        for (name, value) in &self.fields {
            let value = clean(value);
            let value = value.trim_end_matches('\n');
            if value.is_empty() {
                continue;
            }
            out.push_str(&clean(name).replace('\n', " "));
            out.push_str(": ");
            out.push_str(&value.replace('\n', "\n "));
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// Reads messages one after another from apt (the method's standard input).
pub struct Reader<R> {
    input: R,
}

impl<R: BufRead> Reader<R> {
    /// Messages from `input`.
    pub fn new(input: R) -> Reader<R> {
        Reader { input }
    }

    /// The next message; `None` when apt closed the pipe. Empty lines between messages
    /// are skipped.
    pub fn next_message(&mut self) -> io::Result<Option<Result<Message, ParseError>>> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            if self.input.read_line(&mut line)? == 0 {
                return Ok((!text.is_empty()).then(|| Message::parse(&text)));
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if text.is_empty() {
                    continue;
                }
                return Ok(Some(Message::parse(&text)));
            }
            text.push_str(line);
            text.push('\n');
        }
    }
}

/// Undoes apt's quoting of configuration names and values (`%XX` for a byte), as
/// `DeQuoteString` does; a `%` not followed by two hex digits stays as it is.
pub fn dequote(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acquire_message_is_read_with_its_fields_case_ignored() {
        let m = Message::parse(
            "600 URI Acquire\nURI: ferry+http://deb.example/pool/a.deb\n\
             Filename: /var/cache/apt/archives/partial/a.deb\n\
             Expected-SHA256: abc\nExpected-Checksum-FileSize: 12\n",
        )
        .unwrap();
        assert_eq!(m.code, 600);
        assert_eq!(m.text, "URI Acquire");
        assert_eq!(m.get("uri"), Some("ferry+http://deb.example/pool/a.deb"));
        assert_eq!(
            m.get("FileName"),
            Some("/var/cache/apt/archives/partial/a.deb")
        );
        assert_eq!(m.get("Expected-Checksum-FileSize"), Some("12"));
        assert_eq!(m.get("Last-Modified"), None);
    }

    #[test]
    fn repeated_fields_and_continuation_lines_are_kept() {
        let m = Message::parse(
            "601 Configuration\nConfig-Item: a=1\nConfig-Item: b=2\nMessage: one\n two\n",
        )
        .unwrap();
        assert_eq!(m.all("config-item").collect::<Vec<_>>(), ["a=1", "b=2"]);
        assert_eq!(m.get("Message"), Some("one\ntwo"));
    }

    #[test]
    fn a_message_without_a_code_or_with_a_field_without_colon_is_refused() {
        assert_eq!(
            Message::parse("URI Acquire\n"),
            Err(ParseError::NoCode("URI Acquire".into()))
        );
        assert_eq!(
            Message::parse("6000 x\n"),
            Err(ParseError::NoCode("6000 x".into()))
        );
        assert_eq!(
            Message::parse("600 URI Acquire\nno colon here\n"),
            Err(ParseError::NoColon("no colon here".into()))
        );
    }

    #[test]
    fn flags_read_as_apt_reads_them() {
        let m = Message::parse("600 x\nIndex-File: true\nFail-Ignore: no\n").unwrap();
        assert!(m.flag("index-file"));
        assert!(!m.flag("Fail-Ignore"));
        assert!(!m.flag("Absent"));
    }

    #[test]
    fn written_messages_end_with_an_empty_line_and_skip_empty_values() {
        let m = Message::new(201, "URI Done")
            .with("URI", "ferry+http://h/a.deb")
            .with("Filename", "/p/a.deb")
            .with("Last-Modified", "")
            .with("Size", 12);
        assert_eq!(
            m.to_wire(),
            "201 URI Done\nURI: ferry+http://h/a.deb\nFilename: /p/a.deb\nSize: 12\n\n"
        );
    }

    #[test]
    fn written_values_never_carry_control_characters_and_go_on_over_lines() {
        let m = Message::new(400, "URI Failure").with("Message", "bad\r\x07 thing\nsecond");
        assert_eq!(
            m.to_wire(),
            "400 URI Failure\nMessage: bad   thing\n second\n\n"
        );
    }

    #[test]
    fn a_written_message_reads_back_the_same() {
        let m = Message::new(102, "Status")
            .with("URI", "ferry+https://h/x")
            .with("Message", "line one\nline two");
        assert_eq!(Message::parse(m.to_wire().trim_end_matches('\n')), Ok(m));
    }

    #[test]
    fn the_reader_splits_messages_on_empty_lines_and_ends_at_eof() {
        let input = "\n601 Configuration\nConfig-Item: a=1\n\n600 URI Acquire\nURI: x\n\n\n\
                     600 URI Acquire\nURI: y\n";
        let mut r = Reader::new(input.as_bytes());
        assert_eq!(r.next_message().unwrap().unwrap().unwrap().code, 601);
        let second = r.next_message().unwrap().unwrap().unwrap();
        assert_eq!(second.get("URI"), Some("x"));
        // The last message lacks its empty line: apt went away; what came is read.
        let third = r.next_message().unwrap().unwrap().unwrap();
        assert_eq!(third.get("URI"), Some("y"));
        assert!(r.next_message().unwrap().is_none());
    }

    #[test]
    fn quoted_configuration_text_is_unquoted() {
        assert_eq!(
            dequote("Acquire::ferry::Socket=/run/x%20y"),
            "Acquire::ferry::Socket=/run/x y"
        );
        assert_eq!(dequote("100%"), "100%");
        assert_eq!(dequote("%zz%4"), "%zz%4");
        assert_eq!(dequote("%22q%22"), "\"q\"");
    }
}
