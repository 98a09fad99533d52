//! Signing in once, for `mailferry auth login`: the authorisation-code flow
//! with PKCE and a loopback redirect (RFC 7636, RFC 8252), or the device
//! flow (RFC 8628). Either ends with the tokens in the token file.

use std::time::Duration;

use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
    StandardDeviceAuthorizationResponse,
};

use super::client::{client, client_secret, endpoint_error, http, stored};
use super::loopback::Loopback;
use super::{store, OAuthError, StoredToken};
use crate::config::OAuthSettings;

/// What the person signing in must do, for the command to print.
#[derive(Debug)]
pub enum Prompt<'a> {
    /// Open `url` in a browser; it comes back to `redirect`.
    OpenUrl { url: &'a str, redirect: &'a str },
    /// Visit `url` on any device and enter `code` (`complete` has the code
    /// built in).
    EnterCode {
        url: &'a str,
        code: &'a str,
        complete: Option<&'a str>,
    },
}

/// Browser sign-in for `account` (signing in as `username`); waits up to
/// `limit` for the redirect.
pub async fn browser(
    settings: &OAuthSettings,
    account: &str,
    username: &str,
    limit: Duration,
    show: &mut dyn FnMut(Prompt<'_>),
) -> Result<StoredToken, OAuthError> {
    if settings.auth_url.is_none() {
        return Err(OAuthError::Setup(format!(
            "account {account} has no oauth.auth_url for a browser sign-in; use --device"
        )));
    }
    let secret = client_secret(settings, account).await?;
    let loopback = Loopback::bind(settings.redirect_port).await?;
    let redirect = loopback.redirect_uri();
    let redirect_url =
        RedirectUrl::new(redirect.clone()).map_err(|e| OAuthError::Setup(e.to_string()))?;
    let client = client(settings, secret.as_ref())?.set_redirect_uri(redirect_url);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .map_err(|e| OAuthError::Setup(e.to_string()))?
        .add_scopes(settings.scopes.iter().map(|s| Scope::new(s.clone())))
        .set_pkce_challenge(challenge)
        // Pre-selects the account in the provider's sign-in page.
        .add_extra_param("login_hint", username);
    for (key, value) in &settings.auth_params {
        request = request.add_extra_param(key.as_str(), value.as_str());
    }
    let (url, state) = request.url();
    show(Prompt::OpenUrl {
        url: url.as_str(),
        redirect: &redirect,
    });
    let code = loopback.wait_for_code(state.secret(), limit).await?;
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(http()?)
        .await
        .map_err(|e| endpoint_error(&settings.token_url, e))?;
    save(settings, account, stored(&response, None))
}

/// Device-flow sign-in for `account`; polls up to `limit`.
pub async fn device(
    settings: &OAuthSettings,
    account: &str,
    limit: Duration,
    show: &mut dyn FnMut(Prompt<'_>),
) -> Result<StoredToken, OAuthError> {
    let Some(device_url) = &settings.device_url else {
        return Err(OAuthError::Setup(format!(
            "account {account} has no oauth.device_url for a device sign-in; leave out --device"
        )));
    };
    let secret = client_secret(settings, account).await?;
    let client = client(settings, secret.as_ref())?;
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .map_err(|e| OAuthError::Setup(e.to_string()))?
        .add_scopes(settings.scopes.iter().map(|s| Scope::new(s.clone())))
        .request_async(http()?)
        .await
        .map_err(|e| endpoint_error(device_url, e))?;
    show(Prompt::EnterCode {
        url: details.verification_uri().as_str(),
        code: details.user_code().secret(),
        complete: details
            .verification_uri_complete()
            .map(|c| c.secret().as_str()),
    });
    let response = client
        .exchange_device_access_token(&details)
        .request_async(http()?, tokio::time::sleep, Some(limit))
        .await
        .map_err(|e| endpoint_error(&settings.token_url, e))?;
    save(settings, account, stored(&response, None))
}

/// Writes the new tokens; warns when there is no refresh token (the
/// account then needs a new sign-in when the access token expires).
fn save(
    settings: &OAuthSettings,
    account: &str,
    token: StoredToken,
) -> Result<StoredToken, OAuthError> {
    if token.refresh_token.is_none() {
        tracing::warn!(
            account,
            "the server gave no refresh token: sign in again when the access token expires \
             (check the scopes: Microsoft needs offline_access)"
        );
    }
    store::write(&settings.token_file, &token)?;
    Ok(token)
}
