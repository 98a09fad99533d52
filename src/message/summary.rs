//! A one-line description of a message for people: `Date · From · Subject`,
//! RFC 2047 encoded-words decoded (UTF-8, US-ASCII, ISO-8859-1; others left
//! as they are), control characters replaced, each part shortened. What
//! `status --messages` shows for a message that was not copied.

use base64::Engine;

use super::header::header;

/// Longest part, in characters.
const PART: usize = 80;

/// `Date · From · Subject` of `raw` (a missing one shown as `-`).
pub fn summary(raw: &[u8]) -> String {
    ["Date", "From", "Subject"]
        .iter()
        .map(|name| header(raw, name).map_or("-".to_string(), |v| clean(&decode_words(&v))))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Control characters (a terminal's escape sequences among them) become
/// `?`; the text is cut at [`PART`] characters.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(PART)
        .collect();
    if text.chars().count() > PART {
        out.push('…');
    }
    out
}

/// RFC 2047 §2: `=?charset?B|Q?text?=` words decoded; whitespace between
/// two encoded words dropped (§6.2).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, from) = rest.split_at(start);
        let decoded = from[2..].find("?=").and_then(|end| {
            let word = &from[2..2 + end];
            decode_word(word).map(|text| (text, 2 + end + 2))
        });
        match decoded {
            Some((text, len)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &from[len..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &from[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `charset?encoding?text` → text, when the charset is one we can read.
fn decode_word(word: &str) -> Option<String> {
    let mut parts = word.splitn(3, '?');
    let charset = parts.next()?.split('*').next()?.to_ascii_lowercase();
    let encoding = parts.next()?.to_ascii_uppercase();
    let text = parts.next()?;
    let bytes = match encoding.as_str() {
        "B" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "Q" => decode_q(text)?,
        _ => return None,
    };
    match charset.as_str() {
        "utf-8" | "us-ascii" => Some(String::from_utf8_lossy(&bytes).into_owned()),
        "iso-8859-1" | "latin1" => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// RFC 2047 §4.2: `_` is a space, `=XX` a byte.
fn decode_q(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_decode_and_sanitise() {
        let raw = b"Date: Mon, 2 Mar 2020 10:00:00 +0100\r\nFrom: =?utf-8?B?R3LDvMOfZQ==?= <a@example.org>\r\nSubject: =?iso-8859-1?Q?caf=E9_?= =?utf-8?Q?ol=C3=A9?= \x1b[31mred\r\n\r\nbody\r\n";
        assert_eq!(
            summary(raw),
            "Mon, 2 Mar 2020 10:00:00 +0100 · Grüße <a@example.org> · café olé ?[31mred"
        );
        assert_eq!(summary(b"no header at all"), "- · - · -");
        // Unknown charsets and broken words stay as they are.
        assert_eq!(
            decode_words("=?koi8-r?B?abc?= x =?bad"),
            "=?koi8-r?B?abc?= x =?bad"
        );
        let long = format!("Subject: {}\r\n\r\n", "x".repeat(200));
        assert!(summary(long.as_bytes()).ends_with('…'));
    }
}
