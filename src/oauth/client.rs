//! The `oauth2` client for one account's settings, the HTTP client under
//! it, and how the endpoints' answers become tokens or [`OAuthError`]s.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, ErrorResponseType, HttpClientError, RequestTokenError,
    StandardErrorResponse, TokenResponse, TokenUrl,
};

use super::{OAuthError, StoredToken};
use crate::config::OAuthSettings;
use crate::secret::Secret;

/// A client with maybe an authorisation URL, maybe a device URL, and a
/// token URL.
pub(super) type Client =
    BasicClient<EndpointMaybeSet, EndpointMaybeSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

pub(super) type Http = oauth2::reqwest::Client;

/// Every request to an endpoint ends within this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP client per process (connection reuse). Redirects are not
/// followed: a token endpoint that redirects could send the refresh token
/// elsewhere (the `oauth2` crate's advice).
pub(super) fn http() -> Result<&'static Http, OAuthError> {
    static HTTP: OnceLock<Http> = OnceLock::new();
    if let Some(h) = HTTP.get() {
        return Ok(h);
    }
    let built = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| OAuthError::Setup(format!("cannot set up the HTTP client: {e}")))?;
    Ok(HTTP.get_or_init(|| built))
}

/// The client for `settings`, with the client secret when there is one.
pub(super) fn client(
    settings: &OAuthSettings,
    secret: Option<&Secret>,
) -> Result<Client, OAuthError> {
    let bad = |key: &str, e: oauth2::url::ParseError| OAuthError::Setup(format!("{key}: {e}"));
    let auth_url = settings
        .auth_url
        .as_ref()
        .map(|u| AuthUrl::new(u.clone()).map_err(|e| bad("auth_url", e)))
        .transpose()?;
    let device_url = settings
        .device_url
        .as_ref()
        .map(|u| DeviceAuthorizationUrl::new(u.clone()).map_err(|e| bad("device_url", e)))
        .transpose()?;
    let token_url = TokenUrl::new(settings.token_url.clone()).map_err(|e| bad("token_url", e))?;
    // Client id (and secret) in the form body: what Google and Microsoft
    // accept for both public and confidential clients.
    let client = BasicClient::new(ClientId::new(settings.client_id.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_auth_uri_option(auth_url)
        .set_device_authorization_url_option(device_url)
        .set_token_uri(token_url);
    Ok(match secret {
        Some(s) => client.set_client_secret(ClientSecret::new(s.expose().to_string())),
        None => client,
    })
}

/// The client secret, from its own source, when there is one.
pub(super) async fn client_secret(
    settings: &OAuthSettings,
    account: &str,
) -> Result<Option<Secret>, OAuthError> {
    match &settings.client_secret {
        None => Ok(None),
        Some(source) => Box::pin(source.resolve(account))
            .await
            .map(Some)
            .map_err(|e| OAuthError::ClientSecret(e.reason)),
    }
}

/// A token response as stored; `previous` supplies the refresh token when
/// the server did not rotate it.
pub(super) fn stored(response: &BasicTokenResponse, previous: Option<&Secret>) -> StoredToken {
    StoredToken {
        access_token: Some(Secret::new(response.access_token().secret().clone())),
        refresh_token: response
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()))
            .or_else(|| previous.cloned()),
        expires_at: response.expires_in().map(|d| SystemTime::now() + d),
        scopes: response
            .scopes()
            .map(|s| s.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default(),
    }
}

/// An endpoint's failure, described without the body (a reply that fails to
/// parse may be a token response) and without any token.
pub(super) fn endpoint_error<T: ErrorResponseType + std::fmt::Display>(
    url: &str,
    error: RequestTokenError<HttpClientError<oauth2::reqwest::Error>, StandardErrorResponse<T>>,
) -> OAuthError {
    let endpoint = |reason: String| OAuthError::Endpoint {
        url: url.to_string(),
        reason,
    };
    match error {
        RequestTokenError::ServerResponse(e) => {
            let code = e.error().to_string();
            // RFC 6749 §5.2: the grant (here the refresh token) is no good.
            let meaning = (code == "invalid_grant")
                .then(|| "the refresh token was revoked or has expired".to_string());
            OAuthError::Refused {
                url: url.to_string(),
                code,
                description: e.error_description().map(|d| one_line(d, 200)).or(meaning),
            }
        }
        RequestTokenError::Request(e) => endpoint(format!("unreachable: {}", cause_chain(&e))),
        RequestTokenError::Parse(..) => {
            endpoint("answered with something that is not an OAuth token reply".into())
        }
        RequestTokenError::Other(what) => {
            endpoint(format!("unexpected answer: {}", one_line(&what, 200)))
        }
    }
}

/// The error and its causes on one line (connection refused, timeout…).
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Server text for a log line: one line, bounded.
fn one_line(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}
