//! Fuzz target: the message identity, CRLF normalisation and header lookups never panic and ignore line endings (body in `fuzz/checks`, replayed by `tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::message_identity(data));
