//! Tests of the status-line parser: a byte table, every split point, response codes, no panic on any input.

use super::*;
use proptest::prelude::*;

fn ok(code: Option<RespCode>, text: &str) -> Status {
    Status::Ok(Response {
        code,
        text: text.into(),
    })
}

fn err(code: Option<RespCode>, text: &str) -> Status {
    Status::Err(Response {
        code,
        text: text.into(),
    })
}

/// (input, expected status, bytes used).
fn table() -> Vec<(&'static [u8], Status, usize)> {
    vec![
        (b"+OK\r\n", ok(None, ""), 5),
        (b"+OK\n", ok(None, ""), 4),
        (b"+OK 2 320\r\n", ok(None, "2 320"), 11),
        (b"+ok lower case\r\n", ok(None, "lower case"), 16),
        (
            b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
            ok(None, "POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            57,
        ),
        (b"-ERR\r\n", err(None, ""), 6),
        (
            b"-ERR no such message\r\nnext",
            err(None, "no such message"),
            22,
        ),
        (
            b"-ERR [IN-USE] Do you have another POP session running?\r\n",
            err(
                Some(RespCode::InUse),
                "Do you have another POP session running?",
            ),
            56,
        ),
        (
            b"-ERR [LOGIN-DELAY] wait\r\n",
            err(Some(RespCode::LoginDelay), "wait"),
            25,
        ),
        (
            b"-ERR [SYS/TEMP] Temporary authentication failure. [vm:2024]\r\n",
            err(
                Some(RespCode::SysTemp),
                "Temporary authentication failure. [vm:2024]",
            ),
            61,
        ),
        (
            b"-ERR [SYS/PERM] gone\r\n",
            err(Some(RespCode::SysPerm), "gone"),
            22,
        ),
        (
            b"-ERR [AUTH] Authentication failed.\r\n",
            err(Some(RespCode::Auth), "Authentication failed."),
            36,
        ),
        (
            b"-ERR [X-SOMETHING/NEW] odd\r\n",
            err(Some(RespCode::Other("X-SOMETHING/NEW".into())), "odd"),
            28,
        ),
        // Not a code: unclosed, empty, or with a space inside.
        (b"-ERR [oops\r\n", err(None, "[oops"), 12),
        (b"-ERR [] x\r\n", err(None, "[] x"), 11),
        (b"-ERR [a b] x\r\n", err(None, "[a b] x"), 14),
        // 8-bit and NUL text is kept lossily, never rejected.
        (b"-ERR caf\xe9\0\r\n", err(None, "caf\u{fffd}\0"), 12),
        (b"+ \r\n", Status::Continue(String::new()), 4),
        (b"+\r\n", Status::Continue(String::new()), 3),
        (
            b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n",
            Status::Continue("eyJzdGF0dXMiOiI0MDEifQ==".into()),
            28,
        ),
    ]
}

#[test]
fn byte_table() {
    for (input, expected, used) in table() {
        assert_eq!(
            status_line(input),
            Ok(Parse::Done(expected, used)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// Feeds `input` as it would arrive in pieces ending at `cuts`, parsing
/// after each piece like the session does: the result must be the same as
/// for the whole input, and "need more" until the line is complete.
fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Result<Parse<Status>, ReplyError> {
    for &cut in cuts {
        match status_line(&input[..cut])? {
            Parse::NeedMore => continue,
            done => return Ok(done),
        }
    }
    status_line(input)
}

#[test]
fn every_split_point_and_one_byte_pieces() {
    for (input, expected, used) in table() {
        for cut in 0..input.len() {
            let result = parse_in_pieces(input, &[cut]);
            assert_eq!(result, Ok(Parse::Done(expected.clone(), used)), "cut {cut}");
        }
        let bytewise: Vec<usize> = (0..input.len()).collect();
        assert_eq!(
            parse_in_pieces(input, &bytewise),
            Ok(Parse::Done(expected, used))
        );
    }
}

#[test]
fn incomplete_lines_need_more() {
    for input in [&b""[..], b"+", b"+OK", b"-ERR [IN-USE] busy", b"+OK 1 2\r"] {
        assert_eq!(status_line(input), Ok(Parse::NeedMore), "{input:?}");
    }
}

#[test]
fn garbage_is_an_error() {
    for input in [
        &b"+OKAY\r\n"[..],
        b"-ERROR\r\n",
        b"* OK IMAP\r\n",
        b"220 smtp ready\r\n",
        b"\r\n",
        b"\0\0\0\n",
        b"+x\r\n",
    ] {
        assert!(
            matches!(status_line(input), Err(ReplyError::Garbage { .. })),
            "{input:?}"
        );
    }
}

#[test]
fn an_endless_line_is_an_error_not_a_wait() {
    let endless = vec![b'a'; MAX_STATUS_LINE];
    assert_eq!(
        status_line(&endless),
        Err(ReplyError::TooLong {
            limit: MAX_STATUS_LINE
        })
    );
    assert_eq!(
        status_line(&endless[..MAX_STATUS_LINE - 1]),
        Ok(Parse::NeedMore)
    );
}

#[test]
fn apop_timestamps() {
    let cases = [
        (
            "POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            Some("<1896.697170952@dbc.mtview.ca.us>"),
        ),
        ("Dovecot ready.", None),
        ("ready <>", None),
        ("ready <a b@c>", None),
        ("ready <unclosed", None),
    ];
    for (greeting, expected) in cases {
        assert_eq!(apop_timestamp(greeting).as_deref(), expected, "{greeting}");
    }
}

proptest! {
    #[test]
    fn no_panic_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Parse::Done(_, used)) = status_line(&input) {
            prop_assert!(used <= input.len());
            prop_assert_eq!(input[used - 1], b'\n');
        }
    }

    #[test]
    fn codes_round_trip_through_display(code in "[A-Z][A-Z0-9-]{0,10}(/[A-Z0-9-]{1,8}){0,2}") {
        let line = format!("-ERR [{code}] text\r\n");
        let Ok(Parse::Done(Status::Err(response), _)) = status_line(line.as_bytes()) else {
            panic!("{line:?} did not parse");
        };
        let shown = response.code.expect("a code").to_string();
        let bracketed = format!("[{}]", code);
        // Known codes with extra levels show the levels that matter.
        let known = ["SYS/", "AUTH", "IN-USE", "LOGIN-DELAY"].iter().any(|k| code.starts_with(k));
        prop_assert!(shown == bracketed || known, "{} shown as {}", code, shown);
    }
}
