//! Pure parsers for the contents of POP3 replies: CAPA lines, scan listings (LIST), unique-id listings (UIDL), STAT.
//!
//! They take the already unstuffed body (or the text after `+OK`) and never
//! do I/O. A line that does not fit its grammar is an error naming it: a
//! listing the client misreads would pair the wrong message with a UIDL.

use std::time::Duration;

/// What the server offers (RFC 2449 §5-6, RFC 2595 §4, RFC 5034 §3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// False when the server did not answer CAPA: nothing is known, and the
    /// session probes (UIDL) or refuses (STLS) accordingly.
    pub known: bool,
    pub stls: bool,
    pub user: bool,
    pub top: bool,
    pub uidl: bool,
    pub pipelining: bool,
    pub resp_codes: bool,
    /// RFC 6856 §2: the server has a UTF-8 mode (the `UTF8` command).
    pub utf8: bool,
    /// SASL mechanisms, upper-cased.
    pub sasl: Vec<String>,
    /// RFC 2449 §6.5: the minimum time between logins, when advertised.
    pub login_delay: Option<Duration>,
    /// RFC 2449 §6.9, for `mailferry check`.
    pub implementation: Option<String>,
    /// Every line as sent, for `mailferry check`.
    pub lines: Vec<String>,
}

impl Capabilities {
    /// True when the server lists this SASL mechanism.
    pub fn has_sasl(&self, mechanism: &str) -> bool {
        self.sasl.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }
}

/// RFC 2449 §5: `capa-resp = tag *(SP param) CRLF`, one capability a line;
/// tags are case-insensitive. Unknown tags are kept in `lines` only.
pub fn capabilities(body: &[u8]) -> Capabilities {
    let mut caps = Capabilities {
        known: true,
        ..Capabilities::default()
    };
    for line in text_lines(body) {
        let mut words = line.split_ascii_whitespace();
        let Some(tag) = words.next() else { continue };
        match tag.to_ascii_uppercase().as_str() {
            "STLS" => caps.stls = true,
            "USER" => caps.user = true,
            "TOP" => caps.top = true,
            "UIDL" => caps.uidl = true,
            "PIPELINING" => caps.pipelining = true,
            "RESP-CODES" => caps.resp_codes = true,
            "UTF8" => caps.utf8 = true,
            "SASL" => caps.sasl.extend(words.map(|m| m.to_ascii_uppercase())),
            "LOGIN-DELAY" => {
                caps.login_delay = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_secs)
            }
            "IMPLEMENTATION" => caps.implementation = Some(line[tag.len()..].trim().to_string()),
            _ => {}
        }
        caps.lines.push(line.to_string());
    }
    caps
}

/// A listing line that does not fit its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {line:?}")]
pub struct ListingError {
    pub what: &'static str,
    pub line: String,
}

/// RFC 1939 §5 STAT: `+OK nn mm` — message count and maildrop size. Text
/// after the two numbers is allowed ("Responses to the STAT command [...]
/// MAY be followed by additional information").
pub fn stat(text: &str) -> Result<(u32, u64), ListingError> {
    let fail = || ListingError {
        what: "STAT reply",
        line: text.to_string(),
    };
    let mut words = text.split_ascii_whitespace();
    let count = words.next().and_then(|w| w.parse().ok()).ok_or_else(fail)?;
    let size = words.next().and_then(|w| w.parse().ok()).ok_or_else(fail)?;
    Ok((count, size))
}

/// RFC 1939 §5 LIST: a scan listing, `msg-number SP size` (more text may
/// follow). Message numbers start at 1.
pub fn scan_line(line: &str) -> Result<(u32, u64), ListingError> {
    let fail = || ListingError {
        what: "LIST line",
        line: line.to_string(),
    };
    let mut words = line.split_ascii_whitespace();
    let msgno = msg_number(words.next()).ok_or_else(fail)?;
    let size = words.next().and_then(|w| w.parse().ok()).ok_or_else(fail)?;
    Ok((msgno, size))
}

/// RFC 1939 §7 UIDL: `msg-number SP unique-id`, the id being 1-70
/// characters in 0x21-0x7E. Longer ids (seen in the wild) are accepted up
/// to [`MAX_UIDL`] bytes of UTF-8, and so are ids with spaces inside: GNU
/// Mailutils takes a message's own (folded) `X-UIDL:` header as its UIDL,
/// and serves `45 1f2e3d folded-continuation`. The id is the rest of the
/// line, trimmed, kept whole (a lossy id could collide with another
/// message's); it is never sent back to the server.
pub fn uid_line(line: &str) -> Result<(u32, String), ListingError> {
    let fail = || ListingError {
        what: "UIDL line",
        line: line.to_string(),
    };
    let line_trimmed = line.trim_ascii();
    let (number, rest) = line_trimmed
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(fail)?;
    let msgno = msg_number(Some(number)).ok_or_else(fail)?;
    let uid = rest.trim_ascii();
    if uid.is_empty() || uid.len() > MAX_UIDL {
        return Err(fail());
    }
    Ok((msgno, uid.to_string()))
}

/// The longest unique-id accepted (RFC 1939 allows 70).
pub const MAX_UIDL: usize = 512;

/// Every line of a multi-line LIST body.
pub fn scan_listing(body: &[u8]) -> Result<Vec<(u32, u64)>, ListingError> {
    utf8_lines(body, "LIST line")?
        .into_iter()
        .map(scan_line)
        .collect()
}

/// Every line of a multi-line UIDL body.
pub fn uid_listing(body: &[u8]) -> Result<Vec<(u32, String)>, ListingError> {
    utf8_lines(body, "UIDL line")?
        .into_iter()
        .map(uid_line)
        .collect()
}

fn msg_number(word: Option<&str>) -> Option<u32> {
    word?.parse().ok().filter(|&n| n > 0)
}

/// Lines of a decoded body (CRLF ends), lossy: for CAPA only.
fn text_lines(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Lines of a decoded listing; 8-bit is an error, not guessed at.
fn utf8_lines<'a>(body: &'a [u8], what: &'static str) -> Result<Vec<&'a str>, ListingError> {
    let text = std::str::from_utf8(body).map_err(|_| ListingError {
        what,
        line: String::from_utf8_lossy(body).chars().take(200).collect(),
    })?;
    Ok(text
        .split("\r\n")
        .filter(|l| !l.trim().is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_capa() {
        let body = b"CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN login\r\n";
        let caps = capabilities(body);
        assert!(caps.known && caps.top && caps.uidl && caps.resp_codes);
        assert!(caps.pipelining && caps.stls && caps.user);
        assert_eq!(caps.sasl, ["PLAIN", "LOGIN"]);
        assert!(caps.has_sasl("plain"));
        assert!(!caps.has_sasl("XOAUTH2"));
        assert_eq!(caps.lines.len(), 9);
    }

    /// Courier's CAPA, as it answered on 127.0.0.1 (issue #20 notes).
    #[test]
    fn courier_capa_offers_utf8() {
        let body = b"STLS\r\nTOP\r\nUSER\r\nLOGIN-DELAY 10\r\nPIPELINING\r\nUIDL\r\nUTF8 USER\r\nIMPLEMENTATION Courier Mail Server\r\n";
        let caps = capabilities(body);
        assert!(caps.utf8 && caps.pipelining && caps.uidl);
        assert!(!capabilities(b"TOP\r\nUIDL\r\n").utf8);
    }

    #[test]
    fn login_delay_and_implementation() {
        let caps = capabilities(b"login-delay 900 USER\r\nIMPLEMENTATION Shlemazle Plotz v302\r\n");
        assert_eq!(caps.login_delay, Some(Duration::from_secs(900)));
        assert_eq!(caps.implementation.as_deref(), Some("Shlemazle Plotz v302"));
        assert!(!caps.uidl);
    }

    #[test]
    fn stat_replies() {
        assert_eq!(stat("2 320"), Ok((2, 320)));
        assert_eq!(stat("0 0 messages"), Ok((0, 0)));
        assert!(stat("two 320").is_err());
        assert!(stat("2").is_err());
        assert!(stat("").is_err());
    }

    #[test]
    fn scan_listings() {
        assert_eq!(
            scan_listing(b"1 120\r\n2 200 extra\r\n"),
            Ok(vec![(1, 120), (2, 200)])
        );
        assert_eq!(scan_listing(b""), Ok(vec![]));
        assert_eq!(
            scan_listing(b"1 18446744073709551615\r\n"),
            Ok(vec![(1, u64::MAX)])
        );
        for bad in [
            &b"1\r\n"[..],
            b"0 12\r\n",
            b"x 12\r\n",
            b"1 -3\r\n",
            b"1 99999999999999999999\r\n",
            b"1 1\xff\r\n",
        ] {
            assert!(scan_listing(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uid_listings() {
        assert_eq!(
            uid_listing(b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n"),
            Ok(vec![
                (1, "whqtswO00WBw418f9t5JxYwZ".to_string()),
                (2, "QhdPYR:00WBw1Ph7x7".to_string()),
            ])
        );
        let long = format!("1 {}\r\n", "a".repeat(MAX_UIDL + 1));
        for bad in [&b"1\r\n"[..], b"1 \r\n", b"0 a\r\n", long.as_bytes()] {
            assert!(uid_listing(bad).is_err(), "{bad:?}");
        }
        // GNU Mailutils serves a message's own folded X-UIDL header.
        assert_eq!(
            uid_listing(b"45 1f2e3d4c5b6a folded-uidl-continuation\r\n"),
            Ok(vec![(
                45,
                "1f2e3d4c5b6a folded-uidl-continuation".to_string()
            )])
        );
    }
}
