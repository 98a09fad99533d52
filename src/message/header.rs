//! Header field lookups that never fail on 8-bit, unfolded or broken headers.

use std::iter::Peekable;

use super::lines::Lines;

/// One header field: its name and its raw value (everything after the colon,
/// folded continuation lines and their line endings included), both slices of
/// the original message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl Field<'_> {
    /// The value unfolded (line endings removed, RFC 5322 §2.2.3), decoded as
    /// lossy UTF-8, trimmed.
    pub(crate) fn text(&self) -> String {
        let unfolded: Vec<u8> = self
            .value
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        String::from_utf8_lossy(&unfolded).trim().to_owned()
    }
}

/// Iterator over the fields of the header block (up to the first empty line).
/// Lines without a colon, and continuation lines with no field before them,
/// are not fields and are passed over.
pub(crate) struct Fields<'a> {
    raw: &'a [u8],
    lines: Peekable<Lines<'a>>,
}

/// The header fields of `raw`, in order.
pub(crate) fn fields(raw: &[u8]) -> Fields<'_> {
    Fields {
        raw,
        lines: Lines::new(raw).peekable(),
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            let line = self.lines.next()?;
            if line.content.is_empty() {
                // End of the header block: nothing after it is a field.
                self.lines = Lines::new(&[]).peekable();
                return None;
            }
            if line.is_continuation() {
                continue;
            }
            let Some(colon) = line.content.iter().position(|&b| b == b':') else {
                continue;
            };
            let mut value_end = line.content_end();
            while let Some(next) = self.lines.next_if(|l| l.is_continuation()) {
                value_end = next.content_end();
            }
            let value_start = line.start + colon + 1;
            return Some(Field {
                name: line.content[..colon].trim_ascii_end(),
                value: self.raw.get(value_start..value_end).unwrap_or_default(),
            });
        }
    }
}

/// The first field called `name` (ASCII case-insensitive), unfolded, lossy
/// UTF-8, trimmed. `None` when the header block has no such field.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    fields(raw)
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.text())
}

/// The Message-ID, normalised: the first `<...>` of the field with all
/// whitespace removed (folding may split long ids), brackets kept; a field
/// without brackets gives its whitespace-free text. Case is kept (the local
/// part is case-sensitive). `None` when absent or empty.
pub fn message_id(raw: &[u8]) -> Option<String> {
    let text = header(raw, "Message-ID")?;
    let id = text
        .find('<')
        .and_then(|open| text[open..].find('>').map(|len| &text[open..=open + len]))
        .unwrap_or(&text);
    let id: String = id.chars().filter(|c| !c.is_whitespace()).collect();
    (!id.is_empty() && id != "<>").then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_table() {
        let raw = b"From: a@b\r\nSubject: hello\r\n  world\r\nsubject: second\r\nX-8: caf\xe9\r\n\r\nSubject: body\r\n";
        assert_eq!(header(raw, "subject").as_deref(), Some("hello  world"));
        assert_eq!(header(raw, "FROM").as_deref(), Some("a@b"));
        assert_eq!(header(raw, "X-8").as_deref(), Some("caf\u{fffd}"));
        assert_eq!(header(raw, "To"), None);
        assert_eq!(header(b"\r\nSubject: x\r\n", "Subject"), None);
        assert_eq!(header(b"Subject:", "Subject").as_deref(), Some(""));
        assert_eq!(
            header(b"Subject : x\n\ty", "Subject").as_deref(),
            Some("x\ty")
        );
    }

    #[test]
    fn broken_lines_are_skipped() {
        let raw = b"  leading continuation\r\nno colon here\r\n\tcont\r\nTo: x\r\n";
        let names: Vec<&[u8]> = fields(raw).map(|f| f.name).collect();
        assert_eq!(names, vec![&b"To"[..]]);
    }

    #[test]
    fn message_id_table() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"Message-ID: <a@b>\r\n", Some("<a@b>")),
            (b"message-id:   <a@\r\n b>  (comment)\r\n", Some("<a@b>")),
            (b"Message-Id: <x@y> <z@w>\r\n", Some("<x@y>")),
            (b"Message-ID: bare@id\r\n", Some("bare@id")),
            (b"Message-ID: \r\n", None),
            (b"Message-ID: <>\r\n", None),
            (b"Subject: x\r\n", None),
        ];
        for (raw, want) in cases {
            assert_eq!(message_id(raw).as_deref(), *want, "{raw:?}");
        }
    }
}
