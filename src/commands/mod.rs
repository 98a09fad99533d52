//! The commands behind the CLI: each runs against a validated config and
//! prints its human summary (or one JSON document) on stdout, returning the
//! exit code. Logs go to stderr; nothing here parses flags.

pub mod auth;
pub mod check;
pub mod import;
pub mod ledger;
pub mod status;
pub mod sync;
mod time;
pub mod verify;

/// Exit codes, as documented in the README.
pub mod exit {
    /// Everything done.
    pub const DONE: u8 = 0;
    /// Some messages failed or were skipped.
    pub const SOME_FAILED: u8 = 1;
    /// Usage or config error.
    pub const USAGE: u8 = 2;
    /// A route could not run.
    pub const ROUTE_FAILED: u8 = 3;
}

/// Prints a JSON document on stdout.
fn print_json(doc: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".into())
    );
}
