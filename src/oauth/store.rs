//! The token file: refresh token, access token and its expiry, as JSON,
//! mode 0600, replaced atomically (write a temporary file, fsync, rename)
//! so a crash mid-write leaves the old tokens, never half of the new.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::OAuthError;
use crate::secret::Secret;

/// The tokens of one account.
#[derive(Debug, Clone, Default)]
pub struct StoredToken {
    pub refresh_token: Option<Secret>,
    pub access_token: Option<Secret>,
    /// When the access token stops working; `None`: unknown (refreshed at
    /// every login).
    pub expires_at: Option<SystemTime>,
    /// The scopes granted, as the server said.
    pub scopes: Vec<String>,
}

impl StoredToken {
    /// The access token, if it is still good for `margin`.
    pub fn fresh_access_token(&self, margin: Duration) -> Option<&Secret> {
        let expires = self.expires_at?;
        (expires > SystemTime::now() + margin)
            .then_some(self.access_token.as_ref())
            .flatten()
    }
}

/// On disk. Field names are the file format: keep them stable.
#[derive(Serialize, Deserialize)]
struct FileFormat {
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
}

fn fail(path: &Path, reason: impl Into<String>) -> OAuthError {
    OAuthError::TokenFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the token file; `None` when there is none yet.
pub fn read(path: &Path) -> Result<Option<StoredToken>, OAuthError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(path, format!("cannot read: {e}"))),
    };
    // serde_json's messages can quote the offending value: only its
    // position is reported, so no token leaks into an error.
    let raw: FileFormat = serde_json::from_slice(&bytes).map_err(|e| {
        let at = format!("line {}, column {}", e.line(), e.column());
        fail(
            path,
            format!("not a token file written by mailferry ({at})"),
        )
    })?;
    Ok(Some(StoredToken {
        refresh_token: raw.refresh_token.map(Secret::new),
        access_token: raw.access_token.map(Secret::new),
        expires_at: raw.expires_at.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        scopes: raw.scopes,
    }))
}

/// Replaces the token file with `token`, mode 0600, creating its directory
/// (mode 0700) if needed. Small and rare: plain blocking I/O.
pub fn write(path: &Path, token: &StoredToken) -> Result<(), OAuthError> {
    let raw = FileFormat {
        refresh_token: token.refresh_token.as_ref().map(|s| s.expose().to_string()),
        access_token: token.access_token.as_ref().map(|s| s.expose().to_string()),
        expires_at: token
            .expires_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        scopes: token.scopes.clone(),
    };
    let mut json = serde_json::to_vec_pretty(&raw).map_err(|e| fail(path, e.to_string()))?;
    json.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(path, format!("cannot create {}: {e}", dir.display())))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_new(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(path, format!("cannot write: {e}")));
    }
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new file, 0600 from its first byte (never briefly world-readable).
fn write_new(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(tmp); // a leftover of a crashed write
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_is_0600_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/t.json");
        assert!(read(&path).unwrap().is_none());
        let token = StoredToken {
            refresh_token: Some(Secret::new("r1")),
            access_token: Some(Secret::new("a1")),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
            scopes: vec!["mail".into()],
        };
        write(&path, &token).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.refresh_token.unwrap().expose(), "r1");
        assert_eq!(back.expires_at, token.expires_at);
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn a_garbled_file_is_reported_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        // serde_json alone would say: invalid type: string "SECRET-TOKEN".
        std::fs::write(&path, r#"{"expires_at": "SECRET-TOKEN"}"#).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("not a token file"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[test]
    fn freshness_keeps_a_margin() {
        let mut t = StoredToken {
            access_token: Some(Secret::new("a")),
            expires_at: Some(SystemTime::now() + Duration::from_secs(600)),
            ..Default::default()
        };
        assert!(t.fresh_access_token(Duration::from_secs(300)).is_some());
        t.expires_at = Some(SystemTime::now() + Duration::from_secs(200));
        assert!(t.fresh_access_token(Duration::from_secs(300)).is_none());
        t.expires_at = None;
        assert!(t.fresh_access_token(Duration::ZERO).is_none());
    }
}
