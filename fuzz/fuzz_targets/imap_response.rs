//! Fuzz target: IMAP response framing and decoding must never panic, whatever the server sends (body in `fuzz/checks`, replayed by `tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::imap_response(data));
