//! Streaming decoder for POP3 multi-line bodies: dot-unstuffing, the terminating ".", line ends made CRLF, a size cap.
//!
//! RFC 1939 §3: "Responses to certain commands are multi-line. [...] each
//! line is terminated by a CRLF pair. If any line of the multi-line response
//! begins with the termination octet, the line is "byte-stuffed" by
//! pre-pending the termination octet to that line of the response. Hence a
//! multi-line response is terminated with the five octets "CRLF.CRLF". When
//! examining a multi-line response, the client checks to see if the line
//! begins with the termination octet. If so and if octets other than CRLF
//! follow, the first octet of the line (the termination octet) is stripped
//! away. If so and if CRLF immediately follows the termination character,
//! then the response from the POP server is ended."
//!
//! Choices where servers stray from that:
//! - A bare LF ends a line like CRLF, and the line is handed on ending in
//!   CRLF (so ".\n" also ends the body). Bytes are otherwise kept exactly:
//!   8-bit, NUL, and a bare CR inside a line (which [`crate::message`]
//!   treats as a line end when it normalises) pass through untouched.
//! - A line starting with a single "." followed by other text (a server that
//!   forgot to stuff) loses that dot, as the RFC says.
//!
//! The decoder is incremental: [`BodyDecoder::decode`] takes whatever bytes
//! have arrived, appends the unstuffed content to the caller's `Vec`, and
//! says how much input it used. It never needs a whole line in one piece and
//! never looks at a byte twice (at most 3 bytes at a line start are held back
//! until the next call), so a 20 MB message costs one pass.

/// What one [`BodyDecoder::decode`] call ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// All usable input was taken (`consumed` bytes); call again with more.
    NeedMore { consumed: usize },
    /// The terminating line was seen; `consumed` includes it. Bytes after it
    /// belong to the next reply.
    Done { consumed: usize },
}

/// Decodes one multi-line body, the status line already taken off.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    /// The next byte starts a line.
    line_start: bool,
    /// Most content bytes to keep; past it the rest is only counted.
    limit: u64,
    /// Content bytes produced so far (also once past the limit).
    size: u64,
}

impl BodyDecoder {
    /// A decoder that keeps at most `limit` bytes of content.
    pub fn new(limit: u64) -> BodyDecoder {
        BodyDecoder {
            line_start: true,
            limit,
            size: 0,
        }
    }

    /// Content bytes of the body so far, after unstuffing and CRLF line ends.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True once the content went past the limit: `out` was cleared and the
    /// rest of the body is skipped, so the session stays usable.
    pub fn overflowed(&self) -> bool {
        self.size > self.limit
    }

    /// Decodes as much of `input` as possible into `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Step {
        let mut pos = 0;
        while pos < input.len() {
            if self.line_start {
                match line_start(&input[pos..]) {
                    Start::NeedMore => return Step::NeedMore { consumed: pos },
                    Start::End(n) => return Step::Done { consumed: pos + n },
                    Start::Content(skip) => pos += skip,
                }
                self.line_start = false;
            }
            let rest = &input[pos..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    let content = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
                    self.emit(content, out);
                    self.emit(b"\r\n", out);
                    pos += lf + 1;
                    self.line_start = true;
                }
                None => {
                    // Hold a trailing CR back: it may be half of a CRLF.
                    let keep = rest.len() - usize::from(rest.ends_with(b"\r"));
                    self.emit(&rest[..keep], out);
                    return Step::NeedMore {
                        consumed: pos + keep,
                    };
                }
            }
        }
        Step::NeedMore { consumed: pos }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let was_over = self.overflowed();
        self.size += bytes.len() as u64;
        if self.overflowed() {
            if !was_over {
                // Free the memory now rather than after a 2 GB body.
                *out = Vec::new();
            }
            return;
        }
        out.extend_from_slice(bytes);
    }
}

/// What the first bytes of a line say.
enum Start {
    NeedMore,
    /// The terminating line, this many bytes long.
    End(usize),
    /// A content line; skip this many bytes (the stuffed dot) first.
    Content(usize),
}

fn line_start(input: &[u8]) -> Start {
    match input {
        [] | [b'.'] | [b'.', b'\r'] => Start::NeedMore,
        [b'.', b'\n', ..] => Start::End(2),
        [b'.', b'\r', b'\n', ..] => Start::End(3),
        [b'.', b'.', ..] => Start::Content(1),
        // A single dot before other content was not stuffed: a correct
        // server doubles it (RFC 1939 §3), so this is a server that forgot
        // (Dovecot 2.3 does, on a message's first line). Keep the dot rather
        // than copy the line damaged.
        _ => Start::Content(0),
    }
}

/// Decodes a complete body in one call: the content, and the bytes the body
/// took including its terminating line; `None` when the terminator is
/// missing. The pure form of [`BodyDecoder`] for tests and small replies.
pub fn unstuff(body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    match BodyDecoder::new(u64::MAX).decode(body, &mut out) {
        Step::Done { consumed } => Some((out, consumed)),
        Step::NeedMore { .. } => None,
    }
}

#[cfg(test)]
#[path = "dot_tests.rs"]
mod tests;
