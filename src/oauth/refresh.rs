//! A fresh access token at every login: from the token file while it has
//! more than 5 minutes left, else refreshed at the token endpoint and the
//! file rewritten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oauth2::RefreshToken;

use super::client::{client, client_secret, endpoint_error, http, stored};
use super::{store, OAuthError};
use crate::config::OAuthSettings;
use crate::secret::Secret;

/// An access token with less than this left is refreshed first: a login
/// takes seconds, and clocks drift.
const MARGIN: Duration = Duration::from_secs(300);

/// A fresh access token for `account`. Logins of one account in one
/// process take turns here, so parallel routes refresh once, not once each.
pub async fn access_token(settings: &OAuthSettings, account: &str) -> Result<Secret, OAuthError> {
    let lock = file_lock(&settings.token_file);
    let _turn = lock.lock().await;
    let path = &settings.token_file;
    let Some(token) = store::read(path)? else {
        return Err(OAuthError::NoTokenFile { path: path.clone() });
    };
    if let Some(fresh) = token.fresh_access_token(MARGIN) {
        tracing::trace!(account, "OAuth access token from the token file");
        return Ok(fresh.clone());
    }
    let Some(refresh) = token.refresh_token.clone() else {
        return Err(OAuthError::NoRefreshToken { path: path.clone() });
    };
    let secret = client_secret(settings, account).await?;
    let client = client(settings, secret.as_ref())?;
    let response = client
        .exchange_refresh_token(&RefreshToken::new(refresh.expose().to_string()))
        .request_async(http()?)
        .await
        .map_err(|e| endpoint_error(&settings.token_url, e))?;
    let mut renewed = stored(&response, Some(&refresh));
    if renewed.scopes.is_empty() {
        renewed.scopes = token.scopes;
    }
    store::write(path, &renewed)?;
    tracing::debug!(
        account,
        expires_in = ?renewed.expires_at.and_then(|t| t.duration_since(std::time::SystemTime::now()).ok()),
        "OAuth access token refreshed"
    );
    renewed
        .access_token
        .ok_or_else(|| OAuthError::Setup("the token endpoint gave no access token".into()))
}

/// The turn-taking lock of one token file.
fn file_lock(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    locks.entry(path.to_path_buf()).or_default().clone()
}
