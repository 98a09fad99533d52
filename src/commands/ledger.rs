//! `mailferry ledger backup FILE` and `mailferry ledger check`.

use std::path::Path;

use crate::commands::{exit, print_json};
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError};

/// What to do with the ledger.
pub enum LedgerAction<'a> {
    Backup(&'a Path),
    Check,
}

/// Runs a ledger command; the ledger is opened read-only, so both work while
/// a daemon writes it.
pub fn run(config: &Config, action: LedgerAction<'_>, json: bool) -> Result<u8, LedgerError> {
    let ledger = Ledger::open_read_only(&config.ledger_path)?;
    match action {
        LedgerAction::Backup(file) => {
            ledger.backup_to(file)?;
            if json {
                print_json(&serde_json::json!({ "ledger": config.ledger_path, "backup": file }));
            } else {
                println!(
                    "backed up {} to {}",
                    config.ledger_path.display(),
                    file.display()
                );
            }
            Ok(exit::DONE)
        }
        LedgerAction::Check => {
            let check = ledger.check()?;
            if json {
                print_json(&serde_json::json!({ "ledger": config.ledger_path, "check": check }));
            } else {
                println!(
                    "{}: {} (schema {}): {} source messages, {} deliveries, {} target messages, {} pending intents, {} runs",
                    config.ledger_path.display(),
                    if check.ok { "ok" } else { "DAMAGED" },
                    check.schema_version,
                    check.source_messages,
                    check.deliveries,
                    check.target_messages,
                    check.pending_intents,
                    check.runs
                );
                for problem in &check.problems {
                    println!("  {problem}");
                }
                if !check.ok {
                    println!(
                        "  move the file away and run `mailferry reconcile` then `mailferry sync`: nothing is copied twice"
                    );
                }
            }
            Ok(if check.ok {
                exit::DONE
            } else {
                exit::SOME_FAILED
            })
        }
    }
}
