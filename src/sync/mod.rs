//! The sync engine: one pass of one route ([`pass::run_pass`]), and (for
//! now, see docs/ARCHITECTURE.md "Scheduling routes") the running of many.
//!
//! One pass:
//! - [`plan`]: what a pass is about and what it did (`RoutePlan`,
//!   `PassOptions`, `PassReport`), imported by all the others;
//! - [`pass`]: the pass, step by step: intents, confirmation, listing,
//!   transfer, the delete step;
//! - [`ports`]: the two traits sources and targets are driven through;
//!   [`adapters`]: the real POP3 and IMAP sessions behind them;
//! - `appender`: dedup, intents, APPEND batches, settling;
//! - [`byte_channel`]: the channel bounded by bytes between fetch and append;
//! - [`index`]: what is on the target beyond what the ledger knows;
//! - [`intents`]: leftover append intents after a crash;
//! - [`confirm`]: copies seen again before their originals may go;
//! - [`quota`]: daily transfer budgets.
//!
//! Many routes: [`runner`] (`sync`: groups, retries, sessions) and
//! [`limits`] (parallel routes, connections per host).

pub mod adapters;
mod appender;
pub mod byte_channel;
pub mod confirm;
pub mod index;
pub mod intents;
pub mod limits;
pub mod pass;
pub mod plan;
pub mod ports;
pub mod quota;
pub mod runner;

use std::sync::{Arc, Mutex};

use crate::ledger::{Ledger, LedgerError};
use crate::retry::ErrorClass;
use ports::RouteError;

/// The ledger, shared by the routes of one process. Calls are short and
/// synchronous; the lock is never held across an await.
#[derive(Clone)]
pub struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    pub fn new(ledger: Ledger) -> SharedLedger {
        SharedLedger(Arc::new(Mutex::new(ledger)))
    }

    /// Runs one ledger operation. A ledger failure is fatal for the route:
    /// nothing may be appended or deleted that the ledger cannot record.
    pub fn call<R>(
        &self,
        op: impl FnOnce(&mut Ledger) -> Result<R, LedgerError>,
    ) -> Result<R, RouteError> {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        op(&mut guard).map_err(|e| RouteError::new(ErrorClass::Fatal, e.to_string()))
    }
}

#[cfg(test)]
mod tests;
