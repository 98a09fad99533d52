//! One per-test deadline for the async tests: a hang fails the test instead of stalling CI.

use std::future::Future;
use std::time::Duration;

/// How long one async test may run. Every network wait inside has its own,
/// shorter, timeout; this catches what would otherwise hang.
pub const TEST_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `test`, failing it if it does not end within [`TEST_DEADLINE`].
pub async fn within<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_DEADLINE, test)
        .await
        .unwrap_or_else(|_| panic!("test exceeded its deadline of {TEST_DEADLINE:?}"))
}
