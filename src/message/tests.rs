//! Unit and property tests of the message identity.

use proptest::prelude::*;

use super::*;

const BASE: &[u8] = b"Return-Path: <a@example.org>\r\n\
Received: from x by y; Tue, 1 Jul 2003 10:52:37 +0200\r\n\
From: Alice <a@example.org>\r\n\
To: b@example.net\r\n\
Subject: hello\r\n\
Message-ID: <1@example.org>\r\n\
Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
\r\n\
Body line one.\r\n\
Status: this is body, not header\r\n";

fn lf(raw: &[u8]) -> Vec<u8> {
    raw.iter().copied().filter(|&b| b != b'\r').collect()
}

/// Inserts `field` as a header line before the `line`-th line (0 = first).
fn with_field(raw: &[u8], line: usize, field: &[u8]) -> Vec<u8> {
    let at = match line.checked_sub(1) {
        None => 0,
        Some(n) => raw
            .windows(2)
            .enumerate()
            .filter(|(_, w)| *w == b"\r\n")
            .map(|(i, _)| i + 2)
            .nth(n)
            .unwrap_or(0),
    };
    [&raw[..at], field, &raw[at..]].concat()
}

#[test]
fn known_answers() {
    assert_eq!(identity(b""), Hash(*blake3::hash(b"").as_bytes()));
    assert_eq!(identity(b"\n"), Hash(*blake3::hash(b"").as_bytes()));
    assert_eq!(
        identity(b"Status: RO\nSubject: x\n\nbody"),
        Hash(*blake3::hash(b"Subject: x\r\n\r\nbody\r\n").as_bytes())
    );
}

#[test]
fn lf_and_crlf_agree() {
    assert_eq!(identity(BASE), identity(&lf(BASE)));
    let cr: Vec<u8> = lf(BASE)
        .iter()
        .map(|&b| if b == b'\n' { b'\r' } else { b })
        .collect();
    assert_eq!(identity(BASE), identity(&cr));
}

#[test]
fn added_store_fields_do_not_change_identity() {
    let h = identity(BASE);
    for field in [
        &b"Status: RO\r\n"[..],
        b"X-UIDL: 0123456789abcdef\r\n",
        b"X-Mozilla-Status: 0001\r\n",
        b"x-mozilla-status2: 00000000\r\n",
        b"Content-Length: 1234\r\n",
        b"Lines: 3\r\n",
        b"X-Keywords: $Forwarded\r\n\tNonJunk\r\n",
        b"X-Yahoo-Newman-Property: ymail-3\r\n  more\r\n more again\r\n",
    ] {
        for line in 0..=7 {
            assert_eq!(
                identity(&with_field(BASE, line, field)),
                h,
                "{field:?} at {line}"
            );
        }
    }
    let without_return_path = &BASE[BASE.iter().position(|&b| b == b'\n').unwrap_or(0) + 1..];
    assert_eq!(identity(without_return_path), h);
}

#[test]
fn real_changes_change_identity() {
    let h = identity(BASE);
    let mut body = BASE.to_vec();
    let last = body.len() - 3;
    body[last] ^= 1;
    assert_ne!(identity(&body), h);
    assert_ne!(identity(&with_field(BASE, 2, b"Subject: other\r\n")), h);
    let subject = String::from_utf8_lossy(BASE).replace("hello", "hellp");
    assert_ne!(identity(subject.as_bytes()), h);
    assert_ne!(identity(&with_field(BASE, 2, b"X-Spam: yes\r\n")), h);
    // An ignored name in the body is body text.
    assert_ne!(identity(&[BASE, b"Status: RO\r\n"].concat()), h);
    // A missing final line ending, or trailing empty lines, are not
    // content (stores add them); any other line is.
    assert_eq!(identity(&BASE[..BASE.len() - 2]), h);
    assert_eq!(identity(&[BASE, b"\r\n\r\n"].concat()), h);
    assert_ne!(identity(&[BASE, b" \r\n"].concat()), h);
}

#[test]
fn odd_messages_do_not_panic() {
    for raw in [
        &b""[..],
        b"\r\n",
        b"\r",
        b"\n\n\n",
        b"\0\0\0",
        b"\xff\xfe: \x80\r\n\r\n\xc3",
        b"no header at all",
        b"Subject: header only",
        b": empty name\r\n",
        b"\t\r\n",
    ] {
        let _ = identity(raw);
        let _ = message_id_identity(raw);
        let _ = to_crlf(raw);
        let _ = header(raw, "Subject");
        let _ = arrival_date(raw);
    }
}

#[test]
fn message_id_identity_rules() {
    let base =
        b"Message-ID: <1@x>\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\nFrom: A <a@x>\r\n\r\none";
    let h = message_id_identity(base);
    assert!(h.is_some());
    let same = b"From:  A\r\n <a@x>\r\nDate: Tue, 1 Jul 2003 08:52:37 GMT\r\nX: y\r\nMessage-Id:<1@x>\r\n\r\ntwo";
    assert_eq!(message_id_identity(same), h);
    let other_id =
        b"Message-ID: <2@x>\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\nFrom: A <a@x>\r\n\r\none";
    assert_ne!(message_id_identity(other_id), h);
    let no_date = b"Message-ID: <1@x>\r\nFrom: A <a@x>\r\n\r\n";
    let empty_date = b"Message-ID: <1@x>\r\nDate:\r\nFrom: A <a@x>\r\n\r\n";
    assert_ne!(
        message_id_identity(no_date),
        message_id_identity(empty_date)
    );
    assert_eq!(message_id_identity(b"From: a\r\n\r\nbody"), None);
    assert_ne!(message_id_identity(base), Some(identity(base)));
}

/// A header field name from the ignored set, in random case.
fn ignored_name() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
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
    ]);
    (names, prop::collection::vec(any::<bool>(), 32)).prop_map(|(name, upper)| {
        name.chars()
            .zip(upper.into_iter().cycle())
            .map(|(c, up)| {
                if up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// An ignored field with random value text and random folding.
fn ignored_field() -> impl Strategy<Value = Vec<u8>> {
    let piece = "[ -~]{0,12}";
    let ending = prop::sample::select(vec!["\r\n", "\n"]);
    let folds = prop::collection::vec((prop::sample::select(vec![" ", "\t", "  "]), piece), 0..3);
    (ignored_name(), piece, folds, ending).prop_map(|(name, first, folds, end)| {
        let mut field = format!("{name}: {first}");
        for (ws, text) in folds {
            field.push_str(end);
            field.push_str(ws);
            field.push_str(&text);
        }
        field.push_str(end);
        field.into_bytes()
    })
}

proptest! {
    #[test]
    fn identity_stable_under_ignored_fields(field in ignored_field(), line in 0usize..=7) {
        prop_assert_eq!(identity(&with_field(BASE, line, &field)), identity(BASE));
    }

    #[test]
    fn to_crlf_idempotent_and_identity_preserving(raw in prop::collection::vec(
        prop::sample::select(vec![b'\r', b'\n', b'a', b':', b' ', b'\t', 0, 0xff]), 0..64)) {
        let once = to_crlf(&raw).into_owned();
        let twice = to_crlf(&once);
        prop_assert_eq!(&*twice, &once[..]);
        prop_assert!(matches!(twice, std::borrow::Cow::Borrowed(_)));
        prop_assert_eq!(identity(&raw), identity(&once));
    }

    #[test]
    fn never_panics(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = identity(&raw);
        let _ = message_id_identity(&raw);
        let _ = to_crlf(&raw);
        let _ = arrival_date(&raw);
    }

    #[test]
    fn date_parser_never_panics(text in "\\PC{0,48}") {
        let _ = parse_rfc5322_date(&text);
    }
}

/// A plain IMAP literal may not carry a NUL (Dovecot serves 0x80 for it in
/// `BODY[]`): the identity of a stored copy must equal the original's.
#[test]
fn a_nul_hashes_as_0x80_and_nothing_else_changes() {
    let with_nul = b"Subject: n\r\nX-Nul: a\0b\r\n\r\nbody\0\0end\r\n";
    let as_served = b"Subject: n\r\nX-Nul: a\x80b\r\n\r\nbody\x80\x80end\r\n";
    assert_eq!(identity(with_nul), identity(as_served));
    let dropped = b"Subject: n\r\nX-Nul: ab\r\n\r\nbodyend\r\n";
    assert_ne!(identity(with_nul), identity(dropped));
    // A NUL in a piece longer than the hasher's buffer.
    let mut long = b"Subject: l\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', 20_000));
    let mut served = long.clone();
    long.push(0);
    served.push(0x80);
    assert_eq!(identity(&long), identity(&served));
}

/// mbox stores strip or keep the envelope line; it is not the message.
#[test]
fn a_leading_mbox_envelope_line_is_not_part_of_the_identity() {
    let base = b"Subject: s\r\n\r\nbody\r\n";
    let with = [
        &b"From sender@example.org Mon Mar  2 10:00:00 2020\r\n"[..],
        base,
    ]
    .concat();
    assert_eq!(identity(&with), identity(base));
    // Only as the first line: in the body it is text.
    assert_ne!(
        identity(&[base, &b"From x\r\n"[..]].concat()),
        identity(base)
    );
    // A `From :` header field (obsolete syntax) is a field, not an envelope.
    let a = b"From : alice@example.org\r\nSubject: s\r\n\r\nbody\r\n";
    let b = b"From : bob@example.org\r\nSubject: s\r\n\r\nbody\r\n";
    assert_ne!(identity(a), identity(b));
}
