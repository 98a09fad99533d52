//! What each server is known to change in mail it stores, as functions the
//! interop and identity tests assert against (issue #20). A change listed
//! here is a server's, documented in its module, never mailferry's.

/// Cyrus `munge8bit`: every raw 8-bit byte of the header becomes `X`.
pub fn munge8bit(message: &[u8]) -> Vec<u8> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let mut out = message.to_vec();
    for b in &mut out[..end] {
        if *b >= 0x80 {
            *b = b'X';
        }
    }
    out
}

/// GNU Mailutils imap4d ends a stored message at its first NUL.
pub fn cut_at_nul(message: &[u8]) -> Vec<u8> {
    match message.iter().position(|&b| b == 0) {
        Some(nul) => message[..nul].to_vec(),
        None => message.to_vec(),
    }
}

/// A header line (after the first) that is neither a field (a name without
/// blanks, then a colon) nor folded: GNU Mailutils imap4d rewrites such a
/// line (`From x` becomes `From : : x`) in a way not modelled here.
pub fn has_malformed_header_line(message: &[u8]) -> bool {
    message
        .split(|&b| b == b'\n')
        .skip(1)
        .take_while(|l| !l.is_empty() && *l != b"\r")
        .filter(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
        .any(|l| match l.iter().position(|&b| b == b':') {
            None => true,
            Some(colon) => l[..colon].trim_ascii_end().contains(&b' '),
        })
}

/// `message` (CRLF) as the IMAP server `target` stores it, where the change
/// is modelled.
pub fn as_stored_by(target: &str, message: &[u8]) -> Vec<u8> {
    match target {
        "cyrus" => munge8bit(message),
        "mailutils" => cut_at_nul(message),
        _ => message.to_vec(),
    }
}
