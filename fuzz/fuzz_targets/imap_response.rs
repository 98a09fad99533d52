//! Fuzz target: IMAP response framing and decoding must never panic, whatever the server sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailferry::imap::frame::{frame_len, FrameLimits};
use mailferry::imap::{internaldate, response, utf7};

fuzz_target!(|data: &[u8]| {
    let limits = FrameLimits {
        max_line: 4096,
        max_literal: 1 << 20,
    };
    let mut rest = data;
    let mut first = true;
    while let Ok(Some(n)) = frame_len(rest, limits) {
        let frame = &rest[..n];
        if first {
            let _ = response::decode_greeting(frame);
            first = false;
        }
        let _ = response::decode_reply(frame);
        rest = &rest[n..];
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(name) = utf7::decode(text) {
            assert_eq!(utf7::encode(&name), text, "modified UTF-7 is unique");
        }
        let _ = internaldate::parse_date_time(text);
    }
});
