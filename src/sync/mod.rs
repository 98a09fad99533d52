//! The sync engine: one pass of one route ([`pass::run_pass`]), with its
//! byte-bounded fetch/append overlap ([`budget`]), intent resolution
//! ([`intents`]) and the traits it drives sources and targets through
//! ([`ports`]).

pub mod adapters;
mod appender;
pub mod budget;
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
