//! Replays the stored fuzz inputs (`tests/fuzz_inputs/<target>/`) through the same checks the cargo-fuzz targets run (`fuzz/checks`): the short corpus replay CI runs.
//!
//! Each directory holds the inputs that once crashed a target (named
//! `crash-*`, kept after the fix) and a few corpus entries that reach deep
//! paths. A failure names the file; to reproduce it under the fuzzer:
//! `cd fuzz && cargo +nightly fuzz run <target> ../tests/fuzz_inputs/<target>/<file>`.

#[path = "../fuzz/checks/mod.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The replay is part of the default test run: keep it fast.
const BUDGET: Duration = Duration::from_secs(5);

/// The stored inputs of one target, sorted by name.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_inputs")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no stored inputs in {}", dir.display());
    files
}

/// Runs `check` on every stored input of `target`; a panic names the file.
fn replay(target: &str, check: fn(&[u8])) {
    let started = Instant::now();
    let files = inputs(target);
    for file in &files {
        let data = std::fs::read(file).expect("read input");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {} fails: {why}", file.display());
        }
    }
    let took = started.elapsed();
    assert!(took < BUDGET, "{target}: replay took {took:?}");
    eprintln!("{target}: {} inputs in {took:?}", files.len());
}

#[test]
fn pop3_reply_inputs() {
    replay("pop3_reply", checks::pop3_reply);
}

#[test]
fn imap_response_inputs() {
    replay("imap_response", checks::imap_response);
}

#[test]
fn message_identity_inputs() {
    replay("message_identity", checks::message_identity);
}

#[test]
fn config_loader_inputs() {
    replay("config_loader", checks::config_loader);
}
