//! Conversions between API values and SQLite values, in one place.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{LedgerError, Result};
use crate::message::Hash;

/// Unix milliseconds now (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn time_from_ms(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Sizes and counts are stored as SQLite's signed 64-bit integers.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(path: &Path, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| bad_row(path, format!("negative count or size {n}")))
}

pub(crate) fn hash_from_blob(path: &Path, blob: &[u8]) -> Result<Hash> {
    <[u8; 32]>::try_from(blob)
        .map(Hash)
        .map_err(|_| bad_row(path, format!("hash of {} bytes", blob.len())))
}

pub(crate) fn nz_from_sql(path: &Path, value: Option<i64>) -> Result<Option<NonZeroU32>> {
    value
        .map(|v| {
            u32::try_from(v)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| bad_row(path, format!("UID or UIDVALIDITY {v}")))
        })
        .transpose()
}

pub(crate) fn nz_to_sql(value: Option<NonZeroU32>) -> Option<i64> {
    value.map(|v| i64::from(v.get()))
}

pub(crate) fn bad_row(path: &Path, detail: String) -> LedgerError {
    LedgerError::BadRow {
        path: path.to_path_buf(),
        detail,
    }
}

/// A JSON array of strings, for `json_each(?)`: lets one statement take a
/// whole batch of keys (no per-key round trip, no temporary table).
pub(crate) fn json_strings<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}
