//! The retry policy: the one place that decides what an error means for the
//! route (its [`ErrorClass`]) and how long to wait before trying again.
//!
//! Every layer's error type answers `class()`; the engine and the daemon act
//! on the class, never on error text. The `backoff` crate (unmaintained
//! upstream, RUSTSEC-2025-0012) is used only here, so it can be swapped
//! without touching callers.

use std::time::Duration;

/// What an error means for the route that met it (docs/ARCHITECTURE.md, "Error classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network, timeout, `BYE`, `[IN-USE]`, `[SYS/TEMP]`: retry the route
    /// with backoff.
    Transient,
    /// Bad credentials, `[AUTH]`: back off long, report loudly, no retry storm.
    Auth,
    /// One message refused or malformed: record it, go on with the others.
    Message,
    /// The server asks to slow down; `wait` is its suggested back-off time.
    /// Never counted as a message failure.
    Throttled { wait: Option<Duration> },
    /// A transfer budget is spent: pause the route until the window resets.
    Quota,
    /// Configuration, ledger, or a server that cannot be used safely (TLS
    /// refused, protocol desync): stop before touching any source.
    Fatal,
}

/// Exponential backoff with jitter for one route: `next()` gives the wait
/// before the next attempt, `None` once `max_elapsed` has passed.
pub struct RouteBackoff {
    inner: backoff::ExponentialBackoff,
}

impl RouteBackoff {
    /// Starts at `initial`, doubles up to `max_interval`, gives up after
    /// `max_elapsed` (none: never).
    pub fn new(initial: Duration, max_interval: Duration, max_elapsed: Option<Duration>) -> Self {
        let inner = backoff::ExponentialBackoff {
            initial_interval: initial,
            current_interval: initial,
            max_interval,
            max_elapsed_time: max_elapsed,
            multiplier: 2.0,
            randomization_factor: 0.3,
            ..Default::default()
        };
        RouteBackoff { inner }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Option<Duration> {
        backoff::backoff::Backoff::next_backoff(&mut self.inner)
    }

    /// Back to the initial wait, after a success.
    pub fn reset(&mut self) {
        backoff::backoff::Backoff::reset(&mut self.inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stay_capped() {
        let mut b = RouteBackoff::new(Duration::from_millis(100), Duration::from_secs(1), None);
        let waits: Vec<Duration> = (0..10).map(|_| b.next_wait().unwrap()).collect();
        assert!(waits[0] <= Duration::from_millis(130), "{waits:?}");
        assert!(waits[3] > waits[0], "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_millis(1300)),
            "{waits:?}"
        );
        b.reset();
        assert!(b.next_wait().unwrap() <= Duration::from_millis(130));
    }
}
