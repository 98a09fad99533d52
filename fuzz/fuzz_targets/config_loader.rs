//! Fuzz target: the config loader never panics on any text and places its errors inside it (body in `fuzz/checks`, replayed by `tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config_loader(data));
