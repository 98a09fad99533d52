//! Message normalisation: CRLF line endings, and (for the identity) the
//! header fields mail stores add or rewrite dropped — streamed, never copied.

use std::borrow::Cow;

use super::lines::{Ending, Line, Lines};

const CRLF: &[u8] = b"\r\n";

/// Header fields that POP3 maildrops add or rewrite while a message sits in
/// them: the set Dovecot's pop3-migration plugin ignores, plus
/// X-Mozilla-Status, X-Mozilla-Status2 and Lines (docs/ARCHITECTURE.md, "Message identity"). Nothing else:
/// every other byte of the message is part of its identity.
const IGNORED_FIELDS: &[&str] = &[
    "Content-Length",
    "Return-Path",
    "Status",
    "X-IMAP",
    "X-IMAPbase",
    "X-Keywords",
    "X-Message-Flag",
    "X-Status",
    "X-UID",
    "X-UIDL",
    "X-Yahoo-Newman-Property",
    "X-Mozilla-Status",
    "X-Mozilla-Status2",
    "Lines",
];

/// Feeds the normalised message to `emit`, in as few and as large pieces as
/// possible (runs of the original that need no change go out whole), so a
/// hasher sees big slices and nothing is copied.
///
/// Every line ends in CRLF except a last line that had no ending at all,
/// which stays without one (nothing is invented). With `drop_ignored`, the
/// [`IGNORED_FIELDS`] are left out of the header block (the lines before the
/// first empty line; all lines when there is none), their folded
/// continuation lines with them.
pub(crate) fn normalise(raw: &[u8], drop_ignored: bool, emit: &mut impl FnMut(&[u8])) {
    let mut out = Coalescer::new(raw);
    let mut in_header = true;
    let mut dropping = false;
    let mut unended = false;
    // Identity: empty lines held back until a non-empty line follows, so
    // trailing ones are left out (mbox stores add one; GNU Mailutils and
    // popa3d give a header-only message an empty line).
    let mut blank = 0usize;
    for (n, line) in Lines::new(raw).enumerate() {
        unended = false;
        // An mbox envelope line (`From sender date`) is not part of the
        // message: mbox stores strip it (GNU Mailutils on APPEND, popa3d
        // when serving) or keep it (Cyrus, Maildir).
        if drop_ignored && n == 0 && is_envelope_line(line.content) {
            continue;
        }
        if in_header {
            if line.content.is_empty() {
                in_header = false;
                dropping = false;
            } else if !line.is_continuation() {
                dropping = drop_ignored && is_ignored_field(line.content);
            }
            if dropping {
                continue;
            }
        }
        if drop_ignored && line.content.is_empty() {
            blank += 1;
            continue;
        }
        if blank > 0 {
            out.flush(emit);
            for _ in 0..std::mem::take(&mut blank) {
                emit(CRLF);
            }
        }
        unended = matches!(line.ending, Ending::Eof) && !line.content.is_empty();
        out.push_line(&line, emit);
    }
    out.flush(emit);
    // For the identity, a last line without an ending counts as ended:
    // stores add the line break (Courier, GNU Mailutils, POP3 servers).
    if drop_ignored && unended {
        emit(CRLF);
    }
}

/// The message with every line ending made CRLF (the line-ending rule of the
/// [module](crate::message) doc; nothing else changes, no field is dropped);
/// borrowed when it already is, which is the common case on the wire.
pub fn to_crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    if Lines::new(raw).all(|line| line.ending.is_canonical()) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
    normalise(raw, false, &mut |piece| out.extend_from_slice(piece));
    Cow::Owned(out)
}

/// An mbox envelope line, `From sender date`: not a `From :` header field
/// (RFC 5322 §4.5.3 allows blanks before the colon).
fn is_envelope_line(content: &[u8]) -> bool {
    content
        .strip_prefix(b"From ")
        .is_some_and(|rest| !rest.trim_ascii_start().starts_with(b":"))
}

/// True when a header line starts one of the [`IGNORED_FIELDS`]. The name is
/// what precedes the colon, trailing blanks allowed (RFC 5322 §4.5.3 obsolete
/// syntax), compared without regard to ASCII case.
fn is_ignored_field(content: &[u8]) -> bool {
    let Some(colon) = content.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = content[..colon].trim_ascii_end();
    IGNORED_FIELDS
        .iter()
        .any(|ignored| name.eq_ignore_ascii_case(ignored.as_bytes()))
}

/// Joins adjacent ranges of the raw message so they are emitted as one slice.
struct Coalescer<'a> {
    raw: &'a [u8],
    start: usize,
    end: usize,
}

impl<'a> Coalescer<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Coalescer {
            raw,
            start: 0,
            end: 0,
        }
    }

    fn push_line(&mut self, line: &Line<'_>, emit: &mut impl FnMut(&[u8])) {
        if line.ending.is_canonical() {
            self.push_range(line.start, line.end(), emit);
        } else {
            self.push_range(line.start, line.content_end(), emit);
            self.flush(emit);
            emit(CRLF);
        }
    }

    fn push_range(&mut self, start: usize, end: usize, emit: &mut impl FnMut(&[u8])) {
        if start != self.end {
            self.flush(emit);
            self.start = start;
        }
        self.end = end;
    }

    fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if let Some(run) = self.raw.get(self.start..self.end).filter(|r| !r.is_empty()) {
            emit(run);
        }
        self.start = self.end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(raw: &[u8], drop: bool) -> Vec<u8> {
        let mut out = Vec::new();
        normalise(raw, drop, &mut |p| out.extend_from_slice(p));
        out
    }

    #[test]
    fn to_crlf_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"\r\n", b"\r\n"),
            (b"a", b"a"),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb"),
            (b"a\r\r\nb", b"a\r\n\r\nb"),
            (b"a\n\rb", b"a\r\n\r\nb"),
            (b"\n", b"\r\n"),
            (b"x\0\xff\n", b"x\0\xff\r\n"),
        ];
        for (raw, want) in cases {
            assert_eq!(&*to_crlf(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn to_crlf_borrows_when_clean() {
        assert!(matches!(to_crlf(b"A: b\r\n\r\nbody"), Cow::Borrowed(_)));
        assert!(matches!(to_crlf(b"A: b\n"), Cow::Owned(_)));
    }

    #[test]
    fn drops_ignored_fields_only_in_header() {
        let raw = b"Status: RO\r\nSubject: s\r\nx-uidl : 12\r\n  folded\r\n\tmore\r\nTo: t\r\n\r\nStatus: body\r\n";
        assert_eq!(
            normalised(raw, true),
            b"Subject: s\r\nTo: t\r\n\r\nStatus: body\r\n".to_vec()
        );
        assert_eq!(normalised(raw, false), raw.to_vec());
    }

    #[test]
    fn ignored_field_matching() {
        for yes in [
            &b"Status: RO"[..],
            b"STATUS:",
            b"lines:12",
            b"X-Mozilla-Status2: 0",
            b"Return-Path \t: <a>",
        ] {
            assert!(is_ignored_field(yes), "{yes:?}");
        }
        for no in [
            &b"Statusx: 1"[..],
            b"X-Status-2: 1",
            b"Subject: Status: 1",
            b"Status",
            b" Status: 1",
            b"Return-Paths: x",
        ] {
            assert!(!is_ignored_field(no), "{no:?}");
        }
    }

    #[test]
    fn header_only_message_is_all_header() {
        assert_eq!(
            normalised(b"Subject: a\nStatus: RO", true),
            b"Subject: a\r\n".to_vec()
        );
        assert_eq!(normalised(b"Status: RO", true), b"".to_vec());
    }

    #[test]
    fn leading_empty_line_means_no_header() {
        assert_eq!(
            normalised(b"\nStatus: RO\n", true),
            b"\r\nStatus: RO\r\n".to_vec()
        );
    }
}
