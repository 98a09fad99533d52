//! Known answers for the command encoder: atom / quoted / literal choice, literal modes, refusals.

use super::*;

fn wire(req: &Request) -> Vec<u8> {
    req.parts.concat()
}

fn one_string(value: &[u8], literals: LiteralSupport) -> Request {
    CommandBuilder::new("A1", "LOGIN", literals)
        .string("user name", value)
        .unwrap()
        .finish()
}

#[test]
fn chooses_atom_quoted_or_literal() {
    let table: [(&[u8], &[u8]); 8] = [
        (b"alice", b"A1 LOGIN alice\r\n"),
        (b"alice@example.com", b"A1 LOGIN alice@example.com\r\n"),
        (b"", b"A1 LOGIN \"\"\r\n"),
        (b"two words", b"A1 LOGIN \"two words\"\r\n"),
        (b"q\"uo\\te", b"A1 LOGIN \"q\\\"uo\\\\te\"\r\n"),
        (b"nil", b"A1 LOGIN \"nil\"\r\n"),
        (b"a]b", b"A1 LOGIN \"a]b\"\r\n"),
        ("Über".as_bytes(), b"A1 LOGIN {5+}\r\n\xc3\x9cber\r\n"),
    ];
    for (value, expected) in table {
        let req = one_string(value, LiteralSupport::Plus);
        assert_eq!(wire(&req), expected, "{:?}", String::from_utf8_lossy(value));
    }
}

#[test]
fn sync_literal_splits_the_command_at_the_continuation() {
    let req = one_string("Über".as_bytes(), LiteralSupport::SyncOnly);
    assert_eq!(
        req.parts,
        vec![b"A1 LOGIN {5}\r\n".to_vec(), b"\xc3\x9cber\r\n".to_vec()]
    );
}

#[test]
fn literal_minus_only_up_to_4096() {
    let small = vec![b'x'; 4096];
    let big = vec![b'x'; 4097];
    let req = CommandBuilder::new("A1", "APPEND", LiteralSupport::Minus)
        .syntax("INBOX")
        .literal(&small)
        .finish();
    assert_eq!(req.parts.len(), 1);
    assert!(wire(&req).starts_with(b"A1 APPEND INBOX {4096+}\r\nxxx"));
    let req = CommandBuilder::new("A1", "APPEND", LiteralSupport::Minus)
        .syntax("INBOX")
        .literal(&big)
        .finish();
    assert_eq!(req.parts.len(), 2);
    assert_eq!(req.parts[0], b"A1 APPEND INBOX {4097}\r\n");
    assert_eq!(req.parts[1].len(), 4097 + 2);
}

#[test]
fn long_values_become_literals() {
    let long = vec![b'a'; MAX_QUOTED + 1];
    let mut spaced = long.clone();
    spaced[0] = b' ';
    let req = one_string(&spaced, LiteralSupport::Plus);
    assert!(wire(&req).starts_with(b"A1 LOGIN {1025+}\r\n "));
    // An atom has no length limit worth a literal.
    let req = one_string(&long, LiteralSupport::Plus);
    assert!(wire(&req).starts_with(b"A1 LOGIN aaaa"));
}

#[test]
fn rejects_line_breaks_and_nul_before_sending() {
    for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"\r\n"] {
        let err = CommandBuilder::new("A1", "LOGIN", LiteralSupport::Plus)
            .string("user name", bad)
            .err()
            .expect("refused");
        assert_eq!(err.what, "user name");
    }
    let secret = Secret::new("pass\r\nA2 LOGOUT");
    let err = CommandBuilder::new("A1", "LOGIN", LiteralSupport::Plus)
        .secret("password", &secret)
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "password contains a CR, LF or NUL byte and cannot be sent to an IMAP server"
    );
    assert!(CommandBuilder::new("A1", "CREATE", LiteralSupport::Plus)
        .mailbox("a\nb", MailboxEncoding::Utf7)
        .is_err());
}

#[test]
fn secrets_are_sent_but_not_logged() {
    let secret = Secret::new("hunter 2");
    let req = CommandBuilder::new("A1", "LOGIN", LiteralSupport::Plus)
        .string("user name", b"bob")
        .unwrap()
        .secret("password", &secret)
        .unwrap()
        .finish();
    assert_eq!(wire(&req), b"A1 LOGIN bob \"hunter 2\"\r\n");
    assert_eq!(req.redacted, "A1 LOGIN \"bob\" ***");
    assert_eq!(format!("{req:?}"), "A1 LOGIN \"bob\" ***");
    let req = CommandBuilder::new("A2", "AUTHENTICATE", LiteralSupport::Plus)
        .syntax("XOAUTH2")
        .sasl_initial_response("dXNlcj1h")
        .finish();
    assert_eq!(wire(&req), b"A2 AUTHENTICATE XOAUTH2 dXNlcj1h\r\n");
    assert_eq!(req.redacted, "A2 AUTHENTICATE XOAUTH2 ***");
}

#[test]
fn mailbox_names() {
    let enc = |name: &str, e| {
        let req = CommandBuilder::new("A1", "SELECT", LiteralSupport::Plus)
            .mailbox(name, e)
            .unwrap()
            .finish();
        String::from_utf8(wire(&req)).unwrap()
    };
    assert_eq!(enc("inbox", MailboxEncoding::Utf7), "A1 SELECT INBOX\r\n");
    assert_eq!(
        enc("Archiv/Überweisungen", MailboxEncoding::Utf7),
        "A1 SELECT Archiv/&ANw-berweisungen\r\n"
    );
    assert_eq!(
        enc("Tom & Jerry", MailboxEncoding::Utf7),
        "A1 SELECT \"Tom &- Jerry\"\r\n"
    );
    // UTF-8 names go as literals unless the session allows utf8-quoted.
    assert_eq!(
        enc("Überweisungen", MailboxEncoding::Utf8),
        "A1 SELECT {14+}\r\nÜberweisungen\r\n"
    );
    let req = CommandBuilder::new("A1", "SELECT", LiteralSupport::Plus)
        .utf8_quoted(true)
        .mailbox("Überweisungen", MailboxEncoding::Utf8)
        .unwrap()
        .finish();
    assert_eq!(wire(&req), "A1 SELECT \"Überweisungen\"\r\n".as_bytes());
}

#[test]
fn message_literals_carry_any_bytes() {
    let msg = b"Subject: x\r\n\r\nbody\r\n";
    let req = CommandBuilder::new("A7", "APPEND", LiteralSupport::Plus)
        .syntax("INBOX (\\Seen)")
        .literal(msg)
        .finish();
    assert_eq!(
        wire(&req),
        b"A7 APPEND INBOX (\\Seen) {20+}\r\nSubject: x\r\n\r\nbody\r\n\r\n"
    );
    assert_eq!(req.redacted, "A7 APPEND INBOX (\\Seen) {20 bytes}");
}

#[test]
fn literal8_carries_nul_bytes() {
    let msg = b"a\0b\r\n";
    let req = CommandBuilder::new("A8", "APPEND", LiteralSupport::Plus)
        .syntax("INBOX")
        .literal8(msg)
        .finish();
    assert_eq!(wire(&req), b"A8 APPEND INBOX ~{5+}\r\na\0b\r\n\r\n");
    let req = CommandBuilder::new("A9", "APPEND", LiteralSupport::SyncOnly)
        .syntax("INBOX")
        .literal8(msg)
        .finish();
    assert_eq!(req.parts[0], b"A9 APPEND INBOX ~{5}\r\n");
}

#[test]
fn uid_sets_fold_runs() {
    assert_eq!(uid_set(&[]), "");
    assert_eq!(uid_set(&[5]), "5");
    assert_eq!(uid_set(&[3, 1, 2, 7, 9, 8, 8, 11]), "1:3,7:9,11");
    assert_eq!(uid_set(&[0, 4]), "4");
}
