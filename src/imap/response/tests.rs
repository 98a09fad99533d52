//! Known answers for response decoding: real Dovecot lines, RFC examples, and what must not decode.

use super::*;

fn tagged(frame: &[u8]) -> (String, ServerStatus) {
    match decode_reply(frame).unwrap() {
        Reply::Tagged { tag, status } => (tag, status),
        other => panic!("not tagged: {other:?}"),
    }
}

#[test]
fn greetings() {
    let g = decode_greeting(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n").unwrap();
    let GreetingReply::Ok(status) = g else {
        panic!("{g:?}")
    };
    let Some(ResponseCode::Capability(caps)) = status.code else {
        panic!()
    };
    assert!(caps.contains(&"STARTTLS".to_string()));
    assert!(caps.contains(&"AUTH=PLAIN".to_string()));
    assert!(caps.contains(&"LITERAL+".to_string()));
    assert!(matches!(
        decode_greeting(b"* PREAUTH welcome\r\n").unwrap(),
        GreetingReply::PreAuth(_)
    ));
    assert!(matches!(
        decode_greeting(b"* BYE too many connections\r\n").unwrap(),
        GreetingReply::Bye(_)
    ));
    assert!(decode_greeting(b"garbage\r\n").is_err());
}

#[test]
fn tagged_statuses_with_codes() {
    let (tag, s) =
        tagged(b"A3 OK [APPENDUID 1700000000 42] Append completed (0.001 + 0.000 secs).\r\n");
    assert_eq!(tag, "A3");
    assert_eq!(
        s.code,
        Some(ResponseCode::AppendUid {
            uidvalidity: 1_700_000_000,
            uids: vec![42]
        })
    );
    let (_, s) = tagged(b"A4 OK [APPENDUID 38505 3955:3957,3960] Completed\r\n");
    assert_eq!(
        s.code,
        Some(ResponseCode::AppendUid {
            uidvalidity: 38505,
            uids: vec![3955, 3956, 3957, 3960]
        })
    );
    let table: [(&[u8], ResponseCode); 8] = [
        (
            b"A1 NO [ALREADYEXISTS] Mailbox already exists\r\n",
            ResponseCode::AlreadyExists,
        ),
        (
            b"A1 NO [TRYCREATE] Mailbox doesn't exist: X\r\n",
            ResponseCode::TryCreate,
        ),
        (
            b"A1 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n",
            ResponseCode::OverQuota,
        ),
        (b"A1 NO [LIMIT] Message too large\r\n", ResponseCode::Limit),
        (
            b"A1 NO [UNAVAILABLE] Temporary authentication failure. [vm:2026-11-26 10:00:00]\r\n",
            ResponseCode::Unavailable,
        ),
        (b"A1 NO [INUSE] Mailbox is locked\r\n", ResponseCode::InUse),
        (
            b"A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            ResponseCode::AuthenticationFailed,
        ),
        (b"A1 NO [TOOBIG] too big\r\n", ResponseCode::TooBig),
    ];
    for (frame, code) in table {
        let (_, s) = tagged(frame);
        assert_eq!(s.kind, StatusKind::No);
        assert_eq!(s.code, Some(code));
    }
    let (_, s) =
        tagged(b"A9 NO Request is throttled. Suggested Backoff Time: 299609 milliseconds\r\n");
    assert_eq!(s.code, None);
    assert_eq!(
        s.text,
        "Request is throttled. Suggested Backoff Time: 299609 milliseconds"
    );
    let (_, s) = tagged(b"A1 BAD Error in IMAP command: Unknown command.\r\n");
    assert_eq!(s.kind, StatusKind::Bad);
}

#[test]
fn eight_bit_status_text_is_masked_not_fatal() {
    let (tag, s) = tagged("A5 NO Nachricht abgelehnt: ungültig\r\n".as_bytes());
    assert_eq!(tag, "A5");
    assert_eq!(s.text, "Nachricht abgelehnt: ung??ltig");
}

/// A frame with a literal is data, never a status line: it stays
/// undecodable rather than being copied whole to be masked and retried.
#[test]
fn eight_bit_data_with_a_literal_is_not_masked() {
    assert!(decode_reply(b"A5 NO ung\xfcltig {3}\r\nabc\r\n").is_err());
    assert!(decode_reply(b"* 1 FETCH (BODY[] {3}\r\n\xe9\xe9\xe9 oops\r\n").is_err());
    assert!(decode_greeting(b"* OK caf\xe9 {3}\r\nabc\r\n").is_err());
    assert!(matches!(
        decode_greeting(b"* OK caf\xe9 ready\r\n"),
        Ok(GreetingReply::Ok(_))
    ));
}

#[test]
fn untagged_data() {
    let r = decode_reply(b"* LIST (\\HasNoChildren) \"/\" Archiv/&ANw-berweisungen\r\n").unwrap();
    let Reply::Untagged(Untagged::List(entry)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(entry.delimiter, Some('/'));
    assert_eq!(entry.name, b"Archiv/&ANw-berweisungen");
    assert_eq!(entry.attributes, vec!["\\HasNoChildren"]);
    let r = decode_reply(b"* LIST (\\Noselect) \".\" \"\"\r\n").unwrap();
    let Reply::Untagged(Untagged::List(entry)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(entry.delimiter, Some('.'));
    assert_eq!(entry.name, b"");
    assert_eq!(
        decode_reply(b"* 17 EXISTS\r\n").unwrap(),
        Reply::Untagged(Untagged::Exists(17))
    );
    assert_eq!(
        decode_reply(b"* SEARCH 2 3 10\r\n").unwrap(),
        Reply::Untagged(Untagged::Search(vec![2, 3, 10]))
    );
    assert_eq!(
        decode_reply(b"* SEARCH\r\n").unwrap(),
        Reply::Untagged(Untagged::Search(vec![]))
    );
    let r = decode_reply(b"* OK [UIDVALIDITY 1700000000] UIDs valid\r\n").unwrap();
    let Reply::Untagged(Untagged::Status(s)) = r else {
        panic!()
    };
    assert_eq!(s.code, Some(ResponseCode::UidValidity(1_700_000_000)));
    let r = decode_reply(b"* BYE Server shutting down.\r\n").unwrap();
    assert!(matches!(r, Reply::Bye(_)));
}

#[test]
fn fetch_with_literal_body() {
    let frame = b"* 3 FETCH (UID 12 RFC822.SIZE 12 FLAGS (\\Seen) INTERNALDATE \"14-Nov-2023 23:13:20 +0100\" BODY[] {12}\r\nhello\r\nworld)\r\n";
    let r = decode_reply(frame).unwrap();
    let Reply::Untagged(Untagged::Fetch(f)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.seq, 3);
    assert_eq!(f.uid, Some(12));
    assert_eq!(f.size, Some(12));
    assert_eq!(f.body.as_deref(), Some(&b"hello\r\nworld"[..]));
    assert_eq!(f.flags, Some(vec!["\\Seen".to_string()]));
    assert_eq!(
        f.internal_date,
        Some(MailDate {
            unix: 1_700_000_000,
            offset_minutes: 60
        })
    );
}

#[test]
fn continuations_keep_their_raw_text() {
    assert_eq!(decode_reply(b"+ \r\n").unwrap(), Reply::Continue(vec![]));
    assert_eq!(decode_reply(b"+\r\n").unwrap(), Reply::Continue(vec![]));
    assert_eq!(
        decode_reply(b"+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n").unwrap(),
        Reply::Continue(b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=".to_vec())
    );
}

#[test]
fn garbage_is_undecodable() {
    for frame in [
        &b"hello there\r\n"[..],
        b"* FETCH nonsense\r\n",
        b"\r\n",
        b"A1 MAYBE ok\r\n",
        b"* LIST () \"/\" \xff\xfe\r\n",
    ] {
        assert!(
            decode_reply(frame).is_err(),
            "{:?}",
            String::from_utf8_lossy(frame)
        );
    }
}

#[test]
fn append_uid_sets() {
    assert_eq!(append_uid("0 1"), None);
    assert_eq!(append_uid("5 0"), None);
    assert_eq!(append_uid("5 x"), None);
    assert_eq!(
        append_uid("5 9:7"),
        Some(ResponseCode::AppendUid {
            uidvalidity: 5,
            uids: vec![7, 8, 9]
        })
    );
    assert_eq!(append_uid("5 1:4294967295"), None);
}

/// Cyrus answers `BODY[]` with a literal8, and Courier sends a NUL in a
/// plain literal: both read as a plain literal, a NUL as 0x80 (issue #20).
#[test]
fn body_in_a_literal8_or_with_a_nul_is_read() {
    for frame in [
        &b"* 32 FETCH (UID 32 BODY[] ~{11}\r\nSubject:\0\r\n)\r\n"[..],
        b"* 32 FETCH (UID 32 BODY[] {11}\r\nSubject:\0\r\n)\r\n",
    ] {
        let Ok(Reply::Untagged(Untagged::Fetch(data))) = decode_reply(frame) else {
            panic!("not read: {frame:?}");
        };
        assert_eq!(data.uid, Some(32));
        assert_eq!(data.body.as_deref(), Some(&b"Subject:\x80\r\n"[..]));
    }
}
