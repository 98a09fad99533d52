//! Splits raw message bytes into lines, recording how each line ended.
//!
//! Line endings are the one thing mail stores rewrite freely, so every
//! normalisation in this module works from this one splitter. A line ends at
//! CRLF, at a bare LF, or at a bare CR (a CR not followed by LF, as in old
//! Mac files): CR CR LF is therefore two line endings, an empty line between.

/// How one line ended in the raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    CrLf,
    Lf,
    Cr,
    /// The last line of a message without a final line ending.
    Eof,
}

impl Ending {
    pub(crate) fn len(self) -> usize {
        match self {
            Ending::CrLf => 2,
            Ending::Lf | Ending::Cr => 1,
            Ending::Eof => 0,
        }
    }

    /// True when the ending is already what goes on the wire.
    pub(crate) fn is_canonical(self) -> bool {
        matches!(self, Ending::CrLf | Ending::Eof)
    }
}

/// One line: `content` excludes the ending; `start` is its offset in the raw
/// message, so callers can hand contiguous ranges of the original on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    pub start: usize,
    pub content: &'a [u8],
    pub ending: Ending,
}

impl Line<'_> {
    /// Offset just past the line's content (where its ending starts).
    pub(crate) fn content_end(&self) -> usize {
        self.start + self.content.len()
    }

    /// Offset just past the line's ending.
    pub(crate) fn end(&self) -> usize {
        self.content_end() + self.ending.len()
    }

    /// A folded continuation line starts with a space or a tab (RFC 5322 §2.2.3).
    pub(crate) fn is_continuation(&self) -> bool {
        matches!(self.content.first(), Some(b' ' | b'\t'))
    }
}

/// Iterator over the lines of a raw message. An empty input has no lines.
pub(crate) struct Lines<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        Lines { raw, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let rest = self.raw.get(self.pos..).filter(|r| !r.is_empty())?;
        let start = self.pos;
        let (len, ending) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => (rest.len(), Ending::Eof),
            Some(i) if rest[i] == b'\n' => (i, Ending::Lf),
            Some(i) if rest.get(i + 1) == Some(&b'\n') => (i, Ending::CrLf),
            Some(i) => (i, Ending::Cr),
        };
        let line = Line {
            start,
            content: &rest[..len],
            ending,
        };
        self.pos = line.end();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Split<'a> = (&'a [u8], Ending);

    fn split(raw: &[u8]) -> Vec<Split<'_>> {
        Lines::new(raw).map(|l| (l.content, l.ending)).collect()
    }

    #[test]
    fn table() {
        use Ending::*;
        let cases: &[(&[u8], &[Split<'_>])] = &[
            (b"", &[]),
            (b"a", &[(b"a", Eof)]),
            (b"a\r\n", &[(b"a", CrLf)]),
            (b"a\nb", &[(b"a", Lf), (b"b", Eof)]),
            (b"a\rb\r", &[(b"a", Cr), (b"b", Cr)]),
            (b"\r\r\n", &[(b"", Cr), (b"", CrLf)]),
            (b"\n\r", &[(b"", Lf), (b"", Cr)]),
            (b"a\0\xff\r\n\r\n", &[(b"a\0\xff", CrLf), (b"", CrLf)]),
        ];
        for (raw, want) in cases {
            assert_eq!(split(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn lines_tile_the_input() {
        let raw = b"x\r\ny\nz\rw\r\n\n\r\rend";
        let mut pos = 0;
        for line in Lines::new(raw) {
            assert_eq!(line.start, pos);
            pos = line.end();
        }
        assert_eq!(pos, raw.len());
    }
}
