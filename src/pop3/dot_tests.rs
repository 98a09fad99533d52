//! Tests of the body decoder: a byte table, every split point, 1-byte pieces, a naive reference on random input, the size cap.

use super::*;
use proptest::prelude::*;

/// The RFC 1939 §3 rule written the obvious way, on a whole body: split at
/// LF, drop one CR before it, stop at a line that is exactly ".", strip one
/// leading dot from every other line, end every line with CRLF.
fn naive(body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(lf) = body[pos..].iter().position(|&b| b == b'\n') {
        let raw = &body[pos..pos + lf];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += lf + 1;
        if line == b"." {
            return Some((out, pos));
        }
        // A stuffed line starts with two dots; a single dot before content
        // was not stuffed (a server that forgot) and is kept.
        out.extend_from_slice(if line.starts_with(b"..") {
            &line[1..]
        } else {
            line
        });
        out.extend_from_slice(b"\r\n");
    }
    None
}

/// Decodes `input` delivered in pieces ending at `cuts`, the way the
/// session does: unconsumed bytes stay in the buffer and more are added.
fn decode_in_pieces(input: &[u8], cuts: &[usize], limit: u64) -> (Option<usize>, Vec<u8>, bool) {
    let mut decoder = BodyDecoder::new(limit);
    let mut out = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        if end < start {
            continue;
        }
        match decoder.decode(&input[start..end], &mut out) {
            Step::Done { consumed } => return (Some(start + consumed), out, decoder.overflowed()),
            Step::NeedMore { consumed } => start += consumed,
        }
    }
    (None, out, decoder.overflowed())
}

/// (wire body, expected content and bytes used, or `None`: incomplete).
type Case = (&'static [u8], Option<(&'static [u8], usize)>);

fn table() -> Vec<Case> {
    vec![
        (b".\r\n", Some((b"", 3))),
        (b".\n", Some((b"", 2))),
        (b"a\r\n.\r\n", Some((b"a\r\n", 6))),
        (b"a\r\n.\r\n+OK next", Some((b"a\r\n", 6))),
        (b"..\r\n.\r\n", Some((b".\r\n", 7))),
        (b"...x\r\n.\r\n", Some((b"..x\r\n", 9))),
        // An unstuffed leading dot is stripped, as RFC 1939 says.
        // Not stuffed by the server (Dovecot 2.3 on a first line): kept.
        (b".x\r\n.\r\n", Some((b".x\r\n", 7))),
        // Bare LF line ends come out as CRLF.
        (b"a\nb\n.\n", Some((b"a\r\nb\r\n", 6))),
        (b"a\r\nb\n.\r\n", Some((b"a\r\nb\r\n", 8))),
        // NUL, 8-bit, bare CR inside a line: kept as they are.
        (b"\0\xff\xfe\rz\r\n.\r\n", Some((b"\0\xff\xfe\rz\r\n", 10))),
        (b"a\r\r\n.\r\n", Some((b"a\r\r\n", 7))),
        (b".\r\r\n.\r\n", Some((b".\r\r\n", 7))),
        (b"\r\n\r\n.\r\n", Some((b"\r\n\r\n", 7))),
        (b" .\r\n.\r\n", Some((b" .\r\n", 7))),
        (b"a.\r\n.\r\n", Some((b"a.\r\n", 7))),
        // No terminating line: never complete.
        (b"", None),
        (b"a\r\n", None),
        (b"a\r\n.", None),
        (b"a\r\n.\r", None),
        (b"a\r\n. \r\n", None),
        (b"a\r\n.\r\n"[..5].as_ref(), None),
    ]
}

#[test]
fn byte_table() {
    for (input, expected) in table() {
        let got = unstuff(input);
        let expected = expected.map(|(out, used)| (out.to_vec(), used));
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(naive(input), expected, "reference disagrees on {input:?}");
    }
}

#[test]
fn every_split_point_and_one_byte_pieces() {
    for (input, expected) in table() {
        let expected_used = expected.map(|(_, used)| used);
        let expected_out = expected.map(|(out, _)| out.to_vec());
        for cut in 0..=input.len() {
            let (used, out, _) = decode_in_pieces(input, &[cut], u64::MAX);
            assert_eq!(used, expected_used, "{input:?} cut at {cut}");
            if let Some(expected_out) = &expected_out {
                assert_eq!(&out, expected_out, "{input:?} cut at {cut}");
            }
        }
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let (used, out, _) = decode_in_pieces(input, &bytewise, u64::MAX);
        assert_eq!(used, expected_used, "{input:?} in 1-byte pieces");
        if let Some(expected_out) = expected_out {
            assert_eq!(out, expected_out);
        }
    }
}

#[test]
fn over_the_limit_the_body_is_drained_and_dropped() {
    let body = b"0123456789\r\n..more\r\n.\r\n+OK next\r\n";
    let (used, out, overflowed) = decode_in_pieces(body, &[3, 15], 5);
    assert_eq!(used, Some(23));
    assert!(overflowed);
    assert!(out.is_empty());
    let mut decoder = BodyDecoder::new(19);
    let mut out = Vec::new();
    assert_eq!(decoder.decode(body, &mut out), Step::Done { consumed: 23 });
    assert_eq!(decoder.size(), 19);
    assert!(!decoder.overflowed(), "exactly at the limit is allowed");
    assert_eq!(out, b"0123456789\r\n.more\r\n");
}

#[test]
fn a_long_line_is_streamed_not_waited_for() {
    let mut decoder = BodyDecoder::new(u64::MAX);
    let mut out = Vec::new();
    let chunk = vec![b'x'; 1000];
    for _ in 0..100 {
        assert_eq!(
            decoder.decode(&chunk, &mut out),
            Step::NeedMore { consumed: 1000 }
        );
    }
    assert_eq!(out.len(), 100_000);
    assert_eq!(
        decoder.decode(b"\r\n.\r\n", &mut out),
        Step::Done { consumed: 5 }
    );
}

/// Bytes that matter to the decoder, often; others sometimes.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => Just(b'.'),
        3 => Just(b'\r'),
        3 => Just(b'\n'),
        2 => Just(b'a'),
        1 => Just(0u8),
        1 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..80)
}

proptest! {
    #[test]
    fn matches_the_naive_reference(body in body_bytes(), cuts in proptest::collection::vec(0usize..90, 0..6)) {
        let mut cuts = cuts;
        cuts.retain(|&c| c <= body.len());
        cuts.sort_unstable();
        let expected = naive(&body);
        let (used, out, _) = decode_in_pieces(&body, &cuts, u64::MAX);
        prop_assert_eq!(used, expected.as_ref().map(|(_, u)| *u));
        if let Some((expected_out, _)) = expected {
            prop_assert_eq!(out, expected_out);
        }
    }

    #[test]
    fn every_split_of_a_stuffed_message_round_trips(lines in proptest::collection::vec("[.a-z\u{0}]{0,6}", 0..8)) {
        // Stuff like a server, then decode at every split point.
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for line in &lines {
            if line.starts_with('.') {
                wire.push(b'.');
            }
            wire.extend_from_slice(line.as_bytes());
            wire.extend_from_slice(b"\r\n");
            expected.extend_from_slice(line.as_bytes());
            expected.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b".\r\n");
        for cut in 0..=wire.len() {
            let (used, out, _) = decode_in_pieces(&wire, &[cut], u64::MAX);
            prop_assert_eq!(used, Some(wire.len()));
            prop_assert_eq!(&out, &expected);
        }
    }

    #[test]
    fn no_panic_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..300), limit in 0u64..64) {
        let (used, out, overflowed) = decode_in_pieces(&body, &[body.len() / 2], limit);
        prop_assert!(used.is_none_or(|u| u <= body.len()));
        prop_assert!(out.len() as u64 <= limit);
        if overflowed {
            prop_assert!(out.is_empty());
        }
    }
}
