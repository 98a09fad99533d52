//! Modified UTF-7 (RFC 3501 §5.1.3): how mailbox names travel when the server has not accepted UTF-8.
//!
//! RFC 3501 §5.1.3: printable US-ASCII except `&` (0x20–0x25, 0x27–0x7e)
//! represents itself; `&` is `&-`; every other run of characters is
//! `&` + modified BASE64 (`,` instead of `/`, no padding) of its UTF-16BE +
//! `-`. Encodings are unique: the decoder rejects anything the encoder would
//! not have produced (printable ASCII inside a shift, `&&`, an empty shift
//! other than `&-`, non-zero trailing bits, unpaired surrogates), so a name
//! read from a server compares equal to the name we would send.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const MUTF7: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

fn is_direct(c: char) -> bool {
    matches!(c, '\x20'..='\x25' | '\x27'..='\x7e')
}

/// Encodes a mailbox name in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u8> = Vec::new();
    for c in name.chars() {
        if is_direct(c) || c == '&' {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                run.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

fn flush(run: &mut Vec<u8>, out: &mut String) {
    if !run.is_empty() {
        out.push('&');
        out.push_str(&MUTF7.encode(&run));
        out.push('-');
        run.clear();
    }
}

/// Decodes a modified UTF-7 mailbox name; `None` when it is not the unique
/// encoding of some string.
pub fn decode(encoded: &str) -> Option<String> {
    let mut out = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(amp) = rest.find('&') {
        let (direct, tail) = rest.split_at(amp);
        if !direct.chars().all(is_direct) {
            return None;
        }
        out.push_str(direct);
        let tail = &tail[1..];
        let end = tail.find('-')?;
        let (b64, after) = (&tail[..end], &tail[end + 1..]);
        if b64.is_empty() {
            out.push('&');
        } else {
            let decoded = decode_shift(b64)?;
            // Two shifts back to back would have been one when encoded.
            if after.starts_with('&') && !after.starts_with("&-") {
                return None;
            }
            out.push_str(&decoded);
        }
        rest = after;
    }
    if !rest.chars().all(is_direct) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

fn decode_shift(b64: &str) -> Option<String> {
    let bytes = MUTF7.decode(b64).ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let text = String::from_utf16(&units).ok()?;
    // Characters that could have been written directly must not be shifted.
    if text.chars().any(|c| is_direct(c) || c == '&') {
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Known answers: RFC 3501 §5.1.3's example and common folder names.
    #[test]
    fn known_answers() {
        let table = [
            ("INBOX", "INBOX"),
            ("~peter/mail/日本語/台北", "~peter/mail/&ZeVnLIqe-/&U,BTFw-"),
            ("Archiv/Überweisungen", "Archiv/&ANw-berweisungen"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            ("😀", "&2D3eAA-"),
            ("", ""),
        ];
        for (plain, wire) in table {
            assert_eq!(encode(plain), wire, "encode {plain:?}");
            assert_eq!(decode(wire).as_deref(), Some(plain), "decode {wire:?}");
        }
    }

    /// RFC 3501 §5.1.3: "&Jjo!" (missing shift-out) and "&U,BTFw-&ZeVnLIqe-"
    /// (two adjacent shifts) are not valid modified UTF-7.
    #[test]
    fn rejects_non_canonical_forms() {
        for bad in [
            "&Jjo!",
            "&U,BTFw-&ZeVnLIqe-",
            "&AGE-",
            "&ACY-",
            "&",
            "a\u{e9}b",
            "&2D0-",
            "&AN-",
            "&ANx-",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(name in any::<String>()) {
            let wire = encode(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..0x7f).contains(&b)));
            prop_assert_eq!(decode(&wire), Some(name));
        }
    }
}
