//! `scripts/bench` (issue #9): mailferry against the raw server limits, a naive copier and getmail6 + mbsync, one run, one table.
//!
//! Run with `scripts/bench [--messages N] [--repoll N] [--no-scaling] [--json]`
//! (or `cargo bench --bench pipeline -- ...` once the tools are installed).
//! It starts a private Dovecot (fsync on) on 127.0.0.1, loads a generated
//! corpus and measures, on that same data:
//!
//! 1. the raw limits: pipelined POP3 RETR of everything, bytes discarded;
//!    IMAP MULTIAPPEND + LITERAL+ of everything from memory;
//! 2. `mailferry sync` (release binary, fresh ledger and target);
//! 3. a naive copier: RETR one, APPEND it waiting for `+`, repeat;
//! 4. getmail6 (POP3 -> Maildir) then mbsync (Maildir -> IMAP);
//! 5. a no-op re-poll of a settled leave-on-server maildrop next to a bare
//!    login + UIDL of it.
//!
//! Rows that use the crate's sessions run in a child process (this binary
//! with `child <job>`) so that every row's peak RSS comes from
//! `/usr/bin/time -v` of its own process. Nothing here asserts a timing:
//! the targets are reported, met or missed.

#[path = "pipeline/corpus.rs"]
mod corpus;
#[path = "pipeline/jobs.rs"]
mod jobs;
#[path = "pipeline/report.rs"]
mod report;
#[path = "pipeline/rows.rs"]
mod rows;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "pipeline/tools.rs"]
mod tools;

use std::process::ExitCode;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Args {
    /// Messages in the main corpus.
    pub messages: usize,
    /// Small messages in the re-poll maildrop.
    pub repoll: usize,
    /// Also measure mailferry's peak RSS at 1,000 and 10,000 messages.
    pub scaling: bool,
    pub json: bool,
}

const USAGE: &str = "usage: scripts/bench [--messages N] [--repoll N] [--no-scaling] [--json]";

fn parse_args(raw: &[String]) -> Result<Args, String> {
    let mut args = Args {
        messages: 2_000,
        repoll: 100_000,
        scaling: true,
        json: false,
    };
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} needs a positive number\n{USAGE}"))
        };
        match arg.as_str() {
            "--messages" => args.messages = number("--messages")?,
            "--repoll" => args.repoll = number("--repoll")?,
            "--no-scaling" => args.scaling = false,
            "--json" => args.json = true,
            // cargo bench passes --bench; cargo test passes nothing.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("child") {
        return child(raw.get(1).map_or("", String::as_str));
    }
    if !raw.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets too: stay quick.
        eprintln!("pipeline: a benchmark, not a test; run scripts/bench");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&raw) {
        Ok(args) => args,
        Err(why) => {
            eprintln!("{why}");
            return ExitCode::from(2);
        }
    };
    let report = rows::run_all(&args);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("JSON of the report")
        );
    } else {
        report.print_table();
    }
    let failed: Vec<_> = report.rows.iter().filter(|r| r.error.is_some()).collect();
    for row in &failed {
        eprintln!(
            "\n{} FAILED:\n{}",
            row.label.trim(),
            row.error.as_deref().unwrap_or("")
        );
    }
    if !failed.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A child: run one job, print its result as JSON.
fn child(spec: &str) -> ExitCode {
    let result = serde_json::from_str::<jobs::Job>(spec)
        .map_err(|e| format!("bad job {spec:?}: {e}"))
        .and_then(|job| jobs::run(&job));
    match result {
        Ok(done) => {
            println!(
                "{}",
                serde_json::to_string(&done).expect("JSON of a job result")
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}
