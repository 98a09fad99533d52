//! Fuzz target: POP3 status lines and multi-line bodies must never panic, and a body decoded in two pieces must equal it decoded whole (body in `fuzz/checks`, replayed by `tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::pop3_reply(data));
