//! Response framing: where one server response ends in a byte buffer, literals included, bounded.
//!
//! RFC 3501 §4.3 / §7: a response is a line; when a line ends with a literal
//! announcement `{n}` (or `~{n}`, RFC 3516 literal8) CRLF, exactly `n` octets
//! follow and the response continues on the line after them. The framer only
//! finds boundaries — the grammar is imap-codec's job — so a malformed
//! response still has a clear end and cannot make us read literal data as a
//! response. No I/O: [`frame_len`] looks at bytes and says "complete at n" or
//! "need more".

/// Bounds on what one response may make us buffer: at most `max_line`
/// bytes of text plus `max_literal` bytes of literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// The most text one response may hold: its lines before, between and
    /// after its literals together (line feeds not counted). Bounding each
    /// line alone would let a response of endless `{0}` literals grow
    /// without end.
    pub max_line: usize,
    /// The most literal octets one response may announce, in total. Bigger
    /// is an error before anything is allocated.
    pub max_literal: u64,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_line: 64 * 1024,
            // Providers' biggest message limits are 150 MB (Microsoft 365,
            // raised by an admin); a body fetched whole must fit.
            max_literal: 200 * 1024 * 1024,
        }
    }
}

/// Why a response cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    LineTooLong { limit: usize },
    LiteralTooLarge { size: u64, limit: u64 },
}

/// The length of the first complete response in `buf`, `None` when more
/// bytes are needed.
pub fn frame_len(buf: &[u8], limits: FrameLimits) -> Result<Option<usize>, FrameError> {
    let too_long = FrameError::LineTooLong {
        limit: limits.max_line,
    };
    let mut pos: usize = 0;
    let mut text_total: usize = 0;
    let mut literal_total: u64 = 0;
    loop {
        // The text this response may still hold; no need to look further
        // for the line feed.
        let budget = limits.max_line - text_total;
        let window_end = buf.len().min(pos.saturating_add(budget).saturating_add(1));
        let Some(lf) = buf[pos..window_end].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > budget {
                return Err(too_long);
            }
            return Ok(None);
        };
        // `lf <= budget`: the window ends there.
        text_total += lf;
        let line_end = pos + lf;
        let line = &buf[pos..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let after_line = line_end + 1;
        let Some(size) = literal_announced(line) else {
            return Ok(Some(after_line));
        };
        literal_total = literal_total.saturating_add(size);
        if literal_total > limits.max_literal {
            return Err(FrameError::LiteralTooLarge {
                size,
                limit: limits.max_literal,
            });
        }
        // `size` <= max_literal, which the caller chose to fit in memory.
        let end = after_line.saturating_add(size as usize);
        if buf.len() < end {
            return Ok(None);
        }
        pos = end;
    }
}

/// The `n` of a trailing `{n}` (server literals are never `{n+}`).
fn literal_announced(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // More digits than u64 holds is "too large", not "not a literal".
    Some(
        std::str::from_utf8(digits)
            .ok()?
            .parse::<u64>()
            .unwrap_or(u64::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_line: 200,
        max_literal: 1000,
    };

    /// A script of responses, each split at every byte offset: the framer
    /// must say "need more" before the end and find exactly the end.
    #[test]
    fn finds_every_boundary_at_every_split() {
        let responses: [&[u8]; 6] = [
            b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
            b"* 1 FETCH (UID 7 BODY[] {11}\r\nhello\r\nworld)\r\n",
            b"* 2 FETCH (BODY[HEADER] {3}\r\n}\r\n BODY[] {0}\r\n)\r\n",
            b"* LIST () \"/\" {4}\r\nab{}\r\n",
            b"A1 OK done\n",
            b"+ \r\n",
        ];
        let script: Vec<u8> = responses.concat();
        for split in 0..=script.len() {
            let mut seen = Vec::new();
            let mut buf: Vec<u8> = script[..split].to_vec();
            let mut rest = &script[split..];
            loop {
                match frame_len(&buf, LIMITS).unwrap() {
                    Some(n) => {
                        seen.push(buf[..n].to_vec());
                        buf.drain(..n);
                    }
                    None if rest.is_empty() => break,
                    None => {
                        buf.push(rest[0]);
                        rest = &rest[1..];
                    }
                }
            }
            assert!(buf.is_empty(), "split {split}: left {buf:?}");
            assert_eq!(seen, responses.map(<[u8]>::to_vec), "split {split}");
        }
    }

    #[test]
    fn bounds_lines_and_literals() {
        let endless = vec![b'x'; 201];
        assert_eq!(
            frame_len(&endless, LIMITS),
            Err(FrameError::LineTooLong { limit: 200 })
        );
        assert_eq!(frame_len(&endless[..200], LIMITS), Ok(None));
        assert_eq!(
            frame_len(b"* 1 FETCH (BODY[] {1001}\r\n", LIMITS),
            Err(FrameError::LiteralTooLarge {
                size: 1001,
                limit: 1000
            })
        );
        assert_eq!(
            frame_len(b"* 1 FETCH (BODY[] {99999999999999999999999}\r\n", LIMITS),
            Err(FrameError::LiteralTooLarge {
                size: u64::MAX,
                limit: 1000
            })
        );
        // Two literals of 600 each exceed the per-response total.
        let two = b"* 1 FETCH (A {600}\r\n";
        let mut buf = two.to_vec();
        buf.extend(vec![b'a'; 600]);
        buf.extend_from_slice(b" B {600}\r\n");
        assert!(matches!(
            frame_len(&buf, LIMITS),
            Err(FrameError::LiteralTooLarge { .. })
        ));
    }

    /// Regression: each line was bounded alone, so a response that goes
    /// on with short lines and empty literals (`{0}`) was buffered without
    /// end, and re-walked from its start at every read.
    #[test]
    fn bounds_the_text_of_a_response_across_its_literals() {
        let mut endless = b"* 1 FETCH (BODY[] {0}\r\n".to_vec();
        while endless.len() <= 300 {
            endless.extend_from_slice(b" BODY[] {0}\r\n");
        }
        assert_eq!(
            frame_len(&endless, LIMITS),
            Err(FrameError::LineTooLong { limit: 200 })
        );
        // Just within: 200 bytes of text (line feeds aside) around literals.
        let head = b"* 1 FETCH (A {3}\r\n";
        let mut within = head.to_vec();
        within.extend_from_slice(b"abc");
        within.extend(vec![b'x'; 200 - (head.len() - 1)]);
        within.push(b'\n');
        assert_eq!(frame_len(&within, LIMITS), Ok(Some(within.len())));
        within.insert(within.len() - 1, b'y');
        assert_eq!(
            frame_len(&within, LIMITS),
            Err(FrameError::LineTooLong { limit: 200 })
        );
        // The same, still arriving: refused once the text is over, not later.
        let open = &within[..within.len() - 1];
        assert_eq!(
            frame_len(open, LIMITS),
            Err(FrameError::LineTooLong { limit: 200 })
        );
        assert_eq!(frame_len(&open[..open.len() - 1], LIMITS), Ok(None));
    }

    #[test]
    fn braces_that_are_not_literals() {
        for line in [
            &b"* OK {x}\r\n"[..],
            b"* OK {}\r\n",
            b"* OK }\r\n",
            b"* OK {5\r\n",
        ] {
            assert_eq!(frame_len(line, LIMITS), Ok(Some(line.len())));
        }
    }
}
