//! The message identity: BLAKE3 of the normalised message, and header lookups.
//!
//! Everything here is a pure function of the raw bytes: no I/O, no panics on
//! any input (8-bit, NUL, invalid UTF-8, no header, header only, empty).
//!
//! - [`identity`]: the content key the ledger and the target dedup on
//!   (docs/ARCHITECTURE.md, "Message identity"), computed in one streaming pass without copying.
//! - [`message_id_identity`]: the wider key for `identity = "message-id"`.
//! - [`to_crlf`]: the bytes to append to a target.
//! - [`header`], [`message_id`], [`arrival_date`], [`parse_rfc5322_date`]:
//!   lookups for dedup and INTERNALDATE.
//!
//! # Line endings
//! One rule everywhere: a line ends at CRLF, at a bare LF, or at a bare CR,
//! and each ending becomes CRLF. So `a\r\r\nb` is `a`, an empty line, `b`.
//! Treating a bare CR as a line break (rather than as data) is what keeps the
//! identity a function of the text's lines, whichever store converted the line
//! endings; a last line without an ending keeps none.

mod date;
mod hash;
mod header;
mod lines;
mod normalise;
mod summary;

pub use date::{arrival_date, parse_rfc5322_date, MailDate};
pub(crate) use date::{civil_from_days, days_from_civil};
pub use hash::Hash;
pub use header::{header, message_id};
pub use normalise::to_crlf;
pub use summary::summary;

/// Version of the [`identity`] normalisation. Stored beside every hash in the
/// ledger; bump it whenever `identity` would give a different value for some
/// message, so old and new hashes are never compared as equals.
///
/// 2: a NUL byte counts as 0x80 (version 1 hashed it as itself), a last
/// line without a line ending counts as ended, and trailing empty lines and
/// a leading mbox `From ` line are left out. Only messages with a NUL, no
/// final line break, trailing empty lines or a leading `From ` line hash
/// differently; see [`identity`].
pub const HASH_VERSION: u32 = 2;

/// BLAKE3 of the normalised message: line endings made CRLF (see the module
/// doc), and the header fields mail stores add or rewrite dropped wherever
/// they appear in the header block (names compared case-insensitively,
/// folded continuation lines included): Content-Length, Return-Path, Status,
/// X-IMAP, X-IMAPbase, X-Keywords, X-Message-Flag, X-Status, X-UID, X-UIDL,
/// X-Yahoo-Newman-Property, X-Mozilla-Status, X-Mozilla-Status2, Lines.
/// A NUL byte is hashed as 0x80, a last line without an ending as ended
/// with CRLF; empty lines at the end and a first line starting `From ` (an
/// mbox envelope line) are left out. Nothing else is changed. The header block
/// ends at the first empty line; a message without one is all header.
///
/// Why these rules, and not others: the identity of a target copy is
/// computed from what the server returns for `BODY.PEEK[]`, the stored bytes
/// unaltered, except where servers legitimately change them on the way in or
/// out: line endings (Courier stores LF and, like GNU Mailutils and POP3
/// servers, ends a last line that had no line break), the store-added fields above
/// (GNU Mailutils strips `Status:`/`X-UID:` on APPEND and adds `X-UIDL:` in
/// a maildrop), and a NUL, which IMAP forbids in a plain literal (Dovecot
/// sends 0x80 instead). Each rule maps a server's change back to one value,
/// and none can make two messages equal that a server could store apart,
/// except messages differing only in NUL against 0x80 at the same places.
/// `BINARY[]` is never used for identity: it decodes quoted-printable and
/// base64 parts (RFC 3516), so the bytes differ from what was appended.
pub fn identity(raw: &[u8]) -> Hash {
    let mut hasher = BufferedHasher::new();
    normalise::normalise(raw, true, &mut |piece| {
        let mut rest = piece;
        while let Some(nul) = rest.iter().position(|&b| b == 0) {
            hasher.update(&rest[..nul]);
            hasher.update(&[0x80]);
            rest = &rest[nul + 1..];
        }
        hasher.update(rest);
    });
    hasher.finalize()
}

/// Gathers small pieces so BLAKE3 sees large updates (its SIMD paths want
/// several KiB at a time): a message with bare LF endings otherwise arrives as
/// one short piece per line. Measured ~3x faster on such messages.
struct BufferedHasher {
    hasher: blake3::Hasher,
    buf: [u8; 8192],
    len: usize,
}

impl BufferedHasher {
    fn new() -> Self {
        BufferedHasher {
            hasher: blake3::Hasher::new(),
            buf: [0; 8192],
            len: 0,
        }
    }

    fn update(&mut self, piece: &[u8]) {
        if self.len + piece.len() > self.buf.len() {
            self.flush();
        }
        match self.buf.get_mut(self.len..self.len + piece.len()) {
            Some(room) => {
                room.copy_from_slice(piece);
                self.len += piece.len();
            }
            None => {
                self.hasher.update(piece);
            }
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn finalize(mut self) -> Hash {
        self.flush();
        self.hasher.finalize().into()
    }
}

/// What makes two messages "the same" for deduplication (a route's
/// `identity` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityRule {
    /// BLAKE3 of the normalised message bytes ([`identity`]).
    Content,
    /// Message-ID + Date + From (for list mail reaching several accounts).
    MessageId,
}

/// The dedup key of a message under a route's identity rule: what the
/// ledger and the target index compare (falls back to [`identity`] for a
/// message without a Message-ID).
pub fn dedup_key(rule: IdentityRule, crlf: &[u8]) -> Hash {
    match rule {
        IdentityRule::Content => identity(crlf),
        IdentityRule::MessageId => message_id_identity(crlf).unwrap_or_else(|| identity(crlf)),
    }
}

/// BLAKE3 key derivation context for [`message_id_identity`]: a different
/// BLAKE3 mode from the plain hash, so this key can never equal an
/// [`identity`] whatever the bytes.
const MESSAGE_ID_CONTEXT: &str = "mailferry 2026-11 message-id identity v1";

/// The key for `identity = "message-id"`: Message-ID + Date + From, so copies
/// of one message that differ in their bytes (list mail reaching two
/// accounts) are one message. `None` without a Message-ID: the caller falls
/// back to [`identity`].
///
/// Normalisation: the Message-ID as [`message_id`] gives it (first `<...>`,
/// whitespace removed, case kept); the Date as the instant it denotes when it
/// parses (so `+0100` and the same instant in `GMT` agree), else its text;
/// the From unfolded with runs of whitespace collapsed to one space and
/// trimmed. Each part is length-prefixed, and a missing Date or From is
/// distinct from an empty one.
pub fn message_id_identity(raw: &[u8]) -> Option<Hash> {
    let id = message_id(raw)?;
    let date = header(raw, "Date").map(|text| match parse_rfc5322_date(&text) {
        Some(d) => format!("unix:{}", d.unix),
        None => format!("text:{}", collapse_whitespace(&text)),
    });
    let from = header(raw, "From").map(|text| collapse_whitespace(&text));
    let mut hasher = blake3::Hasher::new_derive_key(MESSAGE_ID_CONTEXT);
    for part in [Some(id), date, from] {
        match part {
            None => hasher.update(&[0]),
            Some(text) => {
                hasher.update(&[1]);
                hasher.update(&(text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes())
            }
        };
    }
    Some(hasher.finalize().into())
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
