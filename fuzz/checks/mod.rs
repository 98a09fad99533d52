//! The fuzz targets' bodies, shared with `tests/fuzz_regressions.rs` so the stored inputs replay through exactly what the fuzzer ran.
//!
//! Each function takes the fuzzer's bytes, feeds them to the crate and
//! asserts the properties that must hold for any input; a panic (from the
//! crate or from an assertion here) is a finding.
#![allow(dead_code)] // each target uses one of these; the replay test all.

use std::path::Path;

use mailferry::config::Config;
use mailferry::imap::frame::{frame_len, FrameLimits};
use mailferry::imap::{internaldate, response, utf7};
use mailferry::message;
use mailferry::pop3::dot::{unstuff, BodyDecoder, Step};
use mailferry::pop3::reply::{status_line, Parse};

/// POP3 status lines and multi-line bodies never panic, and a body decoded
/// in two pieces equals it decoded whole.
pub fn pop3_reply(data: &[u8]) {
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
}

/// IMAP response framing and decoding never panic, whatever the server sends.
pub fn imap_response(data: &[u8]) {
    let limits = FrameLimits {
        max_line: 4096,
        max_literal: 1 << 20,
    };
    let mut rest = data;
    let mut first = true;
    while let Ok(Some(n)) = frame_len(rest, limits) {
        assert!(
            n > 0 && n <= rest.len(),
            "frame of {n} bytes in {}",
            rest.len()
        );
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
}

/// The message identity and header lookups never panic, and none of them
/// depends on the line endings a store chose: the raw bytes and their
/// CRLF form give the same answers. `to_crlf` is idempotent and leaves no
/// bare CR or LF. The fields stores add (X-UIDL, Status, ...) never change
/// the identity.
pub fn message_identity(raw: &[u8]) {
    let crlf = message::to_crlf(raw);
    assert_eq!(message::to_crlf(&crlf), crlf, "to_crlf is idempotent");
    assert_no_bare_line_ends(&crlf);

    let id = message::identity(raw);
    assert_eq!(
        message::identity(&crlf),
        id,
        "identity ignores line endings"
    );
    assert_eq!(
        message::message_id_identity(raw),
        message::message_id_identity(&crlf),
        "message-id identity ignores line endings"
    );
    assert_eq!(
        message::arrival_date(raw),
        message::arrival_date(&crlf),
        "arrival date ignores line endings"
    );
    assert_eq!(message::message_id(raw), message::message_id(&crlf));
    for name in ["Subject", "From", "Date", "Received", "Message-ID", ""] {
        let _ = message::header(raw, name);
    }
    if let Ok(text) = std::str::from_utf8(raw) {
        let _ = message::parse_rfc5322_date(text);
    }

    // A field a maildrop adds on top of the header changes nothing, when the
    // message's first line is a field (not a continuation, not the blank
    // line that starts a header-less body).
    if !matches!(raw.first(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        let mut stamped = b"X-UIDL: 0000fuzz\r\nStatus: RO\n".to_vec();
        stamped.extend_from_slice(raw);
        assert_eq!(
            message::identity(&stamped),
            id,
            "added store fields ignored"
        );
    }
}

fn assert_no_bare_line_ends(crlf: &[u8]) {
    for (i, &b) in crlf.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(crlf.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && crlf[i - 1] == b'\r', "bare LF at {i}"),
            _ => {}
        }
    }
}

/// The config loader never panics on any text, and an error it gives names
/// a place inside the text.
pub fn config_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A path that does not exist: relative file names resolve under it and
    // are never found, so nothing outside is read.
    let path = Path::new("/nonexistent/mailferry-fuzz/mailferry.toml");
    match Config::from_str(text, path) {
        Ok(config) => {
            let _ = format!("{config:?}");
            let _ = config.select_routes(&[]);
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            if let mailferry::config::ConfigError::Invalid {
                location: Some((line, col)),
                ..
            } = e
            {
                let lines = text.split('\n').count();
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                assert!(col >= 1, "column {col}");
            }
        }
    }
}
