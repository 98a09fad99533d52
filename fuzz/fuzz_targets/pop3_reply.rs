//! Fuzz target: POP3 status lines and multi-line bodies must never panic, and a body decoded in two pieces must equal it decoded whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry::pop3::dot::{unstuff, BodyDecoder, Step};
use mailferry::pop3::reply::{status_line, Parse};

fuzz_target!(|data: &[u8]| {
    // A reply as the session reads it: a status line, then maybe a body.
    let mut rest = data;
    if let Ok(Parse::Done(_, used)) = status_line(rest) {
        assert!(used <= rest.len());
        rest = &rest[used..];
    }

    // The first byte picks a split point and a size limit.
    let Some((&seed, body)) = rest.split_first() else {
        return;
    };
    let whole = unstuff(body);
    let cut = usize::from(seed) % (body.len() + 1);
    let limit = u64::from(seed) * 4;
    let mut decoder = BodyDecoder::new(u64::MAX);
    let mut capped = BodyDecoder::new(limit);
    let mut out = Vec::new();
    let mut capped_out = Vec::new();
    let mut start = 0;
    let mut done = None;
    for end in [cut, body.len()] {
        if end < start {
            continue;
        }
        let piece = &body[start..end];
        let _ = capped.decode(piece, &mut capped_out);
        match decoder.decode(piece, &mut out) {
            Step::Done { consumed } => {
                done = Some(start + consumed);
                break;
            }
            Step::NeedMore { consumed } => start += consumed,
        }
    }
    match whole {
        Some((expected, used)) => {
            assert_eq!(done, Some(used));
            assert_eq!(out, expected);
        }
        None => assert_eq!(done, None),
    }
    assert!(capped_out.len() as u64 <= limit);
});
