//! The one command encoder: every byte mailferry sends to an IMAP server is written here.
//!
//! User data (mailbox names, user names, passwords, tokens) is never spliced
//! into a command string: it goes through [`CommandBuilder::string`] (or
//! [`CommandBuilder::mailbox`] / [`CommandBuilder::secret`]), which writes it
//! as an atom, a quoted string or a literal (RFC 3501 §4.1–4.3), and refuses
//! CR, LF and NUL before anything is sent. Message bytes always travel as a
//! literal ([`CommandBuilder::literal`]), non-synchronising when the server
//! allows it (RFC 7888).
//!
//! A command is built into a [`Request`]: wire pieces, where the server must
//! answer `+` before each piece after the first (a synchronising literal).
//! With LITERAL+ a whole command, literal included, is one piece and so one
//! write.

use std::fmt::Write as _;

use super::utf7;
use crate::secret::Secret;

/// Quoted strings longer than this go as literals: some servers cap line
/// length, and a literal is never ambiguous.
const MAX_QUOTED: usize = 1024;

/// RFC 7888 §3: LITERAL- allows non-synchronising literals up to this size.
pub const LITERAL_MINUS_MAX: usize = 4096;

/// Which literals the server accepts without a continuation (RFC 7888).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteralSupport {
    /// Only synchronising literals: wait for `+` before each.
    SyncOnly,
    /// LITERAL-: non-synchronising up to 4096 octets.
    Minus,
    /// LITERAL+: non-synchronising of any size.
    Plus,
}

impl LiteralSupport {
    /// Whether a literal of `len` octets may be sent as `{len+}`.
    pub fn non_sync(self, len: usize) -> bool {
        match self {
            LiteralSupport::SyncOnly => false,
            LiteralSupport::Minus => len <= LITERAL_MINUS_MAX,
            LiteralSupport::Plus => true,
        }
    }
}

/// How mailbox names are written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxEncoding {
    /// Modified UTF-7 (RFC 3501 §5.1.3): every server understands it.
    Utf7,
    /// UTF-8 quoted strings, after `ENABLE UTF8=ACCEPT` (RFC 6855 §3).
    Utf8,
}

/// User data that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} contains a CR, LF or NUL byte and cannot be sent to an IMAP server")]
pub struct EncodeError {
    pub what: &'static str,
}

/// One encoded command, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub tag: String,
    /// Wire pieces; before each piece after the first the server must send
    /// a continuation request.
    pub parts: Vec<Vec<u8>>,
    /// The command as it may be logged: secrets as `***`, literals as sizes.
    pub redacted: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Request {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Never true: a request has at least its tag; for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds one command: `tag SP name *(SP argument) CRLF`.
pub struct CommandBuilder {
    tag: String,
    parts: Vec<Vec<u8>>,
    current: Vec<u8>,
    log: String,
    literals: LiteralSupport,
    utf8_quoted: bool,
}

impl CommandBuilder {
    /// Starts `tag NAME`; `name` is a protocol keyword, never user data.
    pub fn new(tag: &str, name: &'static str, literals: LiteralSupport) -> Self {
        let mut current = Vec::with_capacity(64);
        current.extend_from_slice(tag.as_bytes());
        current.push(b' ');
        current.extend_from_slice(name.as_bytes());
        CommandBuilder {
            tag: tag.to_string(),
            parts: Vec::new(),
            current,
            log: format!("{tag} {name}"),
            literals,
            utf8_quoted: false,
        }
    }

    /// Lets quoted strings carry UTF-8 (after `ENABLE UTF8=ACCEPT`).
    pub fn utf8_quoted(mut self, allowed: bool) -> Self {
        self.utf8_quoted = allowed;
        self
    }

    /// Appends protocol syntax this module or the session generated (a
    /// keyword, a number, a sequence set, a flag list) — never user data.
    pub fn syntax(mut self, text: &str) -> Self {
        debug_assert!(!text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
        self.current.push(b' ');
        self.current.extend_from_slice(text.as_bytes());
        let _ = write!(self.log, " {text}");
        self
    }

    /// Appends user data as an `astring`: an atom when every byte is an
    /// atom character, else a quoted string, else a literal.
    pub fn string(mut self, what: &'static str, value: &[u8]) -> Result<Self, EncodeError> {
        check(what, value)?;
        self.current.push(b' ');
        self.push_astring(value);
        let _ = write!(self.log, " {:?}", String::from_utf8_lossy(value));
        Ok(self)
    }

    /// Appends a credential; logged as `***`.
    pub fn secret(mut self, what: &'static str, value: &Secret) -> Result<Self, EncodeError> {
        check(what, value.expose().as_bytes())?;
        self.current.push(b' ');
        self.push_astring(value.expose().as_bytes());
        self.log.push_str(" ***");
        Ok(self)
    }

    /// Appends a SASL initial response (base64, RFC 4959); logged as `***`.
    pub fn sasl_initial_response(mut self, base64: &str) -> Self {
        debug_assert!(base64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
        self.current.push(b' ');
        // RFC 4959 §3: an empty initial response is sent as "=".
        let value = if base64.is_empty() { "=" } else { base64 };
        self.current.extend_from_slice(value.as_bytes());
        self.log.push_str(" ***");
        self
    }

    /// Appends a mailbox name (RFC 3501 §5.1): `INBOX` in any case is the
    /// inbox; others in modified UTF-7 or UTF-8 as the session agreed.
    pub fn mailbox(self, name: &str, encoding: MailboxEncoding) -> Result<Self, EncodeError> {
        // Checked before mUTF-7 would hide a line break inside base64.
        check("mailbox name", name.as_bytes())?;
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(self.syntax("INBOX"));
        }
        match encoding {
            MailboxEncoding::Utf7 => self.string("mailbox name", utf7::encode(name).as_bytes()),
            MailboxEncoding::Utf8 => self.string("mailbox name", name.as_bytes()),
        }
    }

    /// Appends message bytes as a literal (RFC 3501 §4.3), non-synchronising
    /// when the server allows it (RFC 7888).
    pub fn literal(mut self, data: &[u8]) -> Self {
        self.current.push(b' ');
        self.push_literal(data);
        let _ = write!(self.log, " {{{} bytes}}", data.len());
        self
    }

    /// Appends message bytes as a literal8 (`~{n}`, RFC 3516 §4.4), for a
    /// message with NUL bytes to a server that offers BINARY.
    pub fn literal8(mut self, data: &[u8]) -> Self {
        self.current.extend_from_slice(b" ~");
        self.push_literal(data);
        let _ = write!(self.log, " ~{{{} bytes}}", data.len());
        self
    }

    /// Ends the command with CRLF.
    pub fn finish(mut self) -> Request {
        self.current.extend_from_slice(b"\r\n");
        self.parts.push(self.current);
        Request {
            tag: self.tag,
            parts: self.parts,
            redacted: self.log,
        }
    }

    fn push_astring(&mut self, value: &[u8]) {
        if !value.is_empty() && value.iter().all(|&b| is_astring_char(b)) && !is_nil(value) {
            self.current.extend_from_slice(value);
        } else if value.len() <= MAX_QUOTED && value.iter().all(|&b| self.is_quotable(b)) {
            self.current.push(b'"');
            for &b in value {
                if b == b'"' || b == b'\\' {
                    self.current.push(b'\\');
                }
                self.current.push(b);
            }
            self.current.push(b'"');
        } else {
            self.push_literal(value);
        }
    }

    fn push_literal(&mut self, data: &[u8]) {
        if self.literals.non_sync(data.len()) {
            let _ = write!(ByteWriter(&mut self.current), "{{{}+}}\r\n", data.len());
        } else {
            let _ = write!(ByteWriter(&mut self.current), "{{{}}}\r\n", data.len());
            self.parts.push(std::mem::take(&mut self.current));
        }
        self.current.extend_from_slice(data);
    }

    fn is_quotable(&self, b: u8) -> bool {
        // TEXT-CHAR (RFC 3501 §9); 8-bit only as utf8-quoted (RFC 6855 §3).
        (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n' || (self.utf8_quoted && b >= 0x80)
    }
}

/// The response to a SASL challenge (RFC 3501 §6.2.2): base64 and CRLF;
/// an empty line cancels nothing, it answers an error challenge (RFC 7628 §3.2.3).
pub fn sasl_response(base64: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(base64.len() + 2);
    line.extend_from_slice(base64.as_bytes());
    line.extend_from_slice(b"\r\n");
    line
}

/// A UID set (RFC 3501 §9 `sequence-set`) for `uids`, runs folded into ranges.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.iter().copied().filter(|&u| u > 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

fn check(what: &'static str, value: &[u8]) -> Result<(), EncodeError> {
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(EncodeError { what });
    }
    Ok(())
}

/// ASTRING-CHAR minus `]` (RFC 3501 §9): printable ASCII except
/// `( ) { SP % * " \ ]`. `]` is allowed by the grammar but trips servers.
fn is_astring_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

fn is_nil(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"NIL")
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
