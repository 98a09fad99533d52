//! The `oauth = { .. }` key of an account: the OAuth client, its endpoints,
//! and the token file `mailferry auth login` fills and every login refreshes.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::provider::OAuthPreset;
use super::raw::{password, warn_if_readable_by_others, Invalid, RawPassword};
use super::PasswordSource;

/// An account's OAuth 2.0 client, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    pub client_id: String,
    /// Google's "installed app" clients have one (not really secret);
    /// public clients (Microsoft's usual registration) have none.
    pub client_secret: Option<Box<PasswordSource>>,
    /// Refresh token, access token and expiry (JSON, mode 0600).
    pub token_file: PathBuf,
    /// Authorisation endpoint (browser sign-in); `None`: device flow only.
    pub auth_url: Option<String>,
    pub token_url: String,
    /// Device authorisation endpoint (RFC 8628), for `auth login --device`.
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
    /// Loopback port for the browser redirect; 0 picks a free one.
    pub redirect_port: u16,
    /// Extra authorisation-request parameters a provider preset needs.
    pub auth_params: Vec<(String, String)>,
}

impl fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_file", &self.token_file)
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

/// `oauth = { client_id = "..", client_secret = .., token_file = "..", .. }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth {
    client_id: Spanned<String>,
    client_secret: Option<Spanned<RawPassword>>,
    token_file: Option<Spanned<String>>,
    auth_url: Option<Spanned<String>>,
    token_url: Option<Spanned<String>>,
    device_url: Option<Spanned<String>>,
    scopes: Option<Spanned<Vec<String>>>,
    redirect_port: Option<u16>,
}

/// Validates `oauth` of account `name`, filling gaps from `preset`.
/// `whose` names a key for messages; `span` is the whole `oauth` value.
pub(super) fn validate(
    raw: RawOAuth,
    span: Range<usize>,
    preset: Option<&OAuthPreset>,
    base: &Path,
    name: &str,
    whose: &dyn Fn(&str) -> String,
) -> Result<OAuthSettings, Invalid> {
    let client_id = raw.client_id.get_ref().trim().to_string();
    if client_id.is_empty() {
        return super::raw::invalid(
            raw.client_id.span(),
            format!("{}: empty", whose("oauth.client_id")),
        );
    }
    let client_secret = match raw.client_secret {
        None => None,
        Some(secret) => Some(Box::new(password(
            secret,
            base,
            &whose("oauth.client_secret"),
        )?)),
    };
    let url = |key: &str, raw: Option<Spanned<String>>, preset: Option<&'static str>| {
        endpoint(raw, preset, &whose(key))
    };
    let auth_url = url("oauth.auth_url", raw.auth_url, preset.map(|p| p.auth_url))?;
    let device_url = url(
        "oauth.device_url",
        raw.device_url,
        preset.and_then(|p| p.device_url),
    )?;
    let Some(token_url) = url(
        "oauth.token_url",
        raw.token_url,
        preset.map(|p| p.token_url),
    )?
    else {
        let why = "required (or set `provider` for a known one)";
        return super::raw::invalid(span, format!("{}: {why}", whose("oauth.token_url")));
    };
    if auth_url.is_none() && device_url.is_none() {
        let why = "needs `auth_url` (browser sign-in) or `device_url` (device flow) to sign in";
        return super::raw::invalid(span, format!("{}: {why}", whose("oauth")));
    }
    let scopes = match raw.scopes {
        Some(s) if s.get_ref().iter().any(|x| x.is_empty() || x.contains(' ')) => {
            return super::raw::invalid(
                s.span(),
                format!("{}: a scope is empty or has a space", whose("oauth.scopes")),
            )
        }
        Some(s) => s.into_inner(),
        None => preset.map_or_else(Vec::new, |p| {
            p.scopes.iter().map(|s| s.to_string()).collect()
        }),
    };
    let token_file = match raw.token_file {
        Some(f) if f.get_ref().trim().is_empty() => {
            return super::raw::invalid(f.span(), format!("{}: empty", whose("oauth.token_file")))
        }
        Some(f) => base.join(f.get_ref()),
        None => base.join(format!("state/{name}.oauth.json")),
    };
    match std::fs::File::open(&token_file) {
        Ok(file) => warn_if_readable_by_others(&file, &token_file, "OAuth token file"),
        // `mailferry auth login` creates it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let why = format!("cannot read {}: {e}", token_file.display());
            return super::raw::invalid(span, format!("{}: {why}", whose("oauth.token_file")));
        }
    }
    let auth_params = preset.map_or_else(Vec::new, |p| {
        p.auth_params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    Ok(OAuthSettings {
        client_id,
        client_secret,
        token_file,
        auth_url,
        token_url,
        device_url,
        scopes,
        redirect_port: raw.redirect_port.unwrap_or(0),
        auth_params,
    })
}

/// An endpoint URL: https, or http to a loopback address only (a token
/// endpoint sees the refresh token; plain http is for local test servers).
fn endpoint(
    raw: Option<Spanned<String>>,
    preset: Option<&'static str>,
    key: &str,
) -> Result<Option<String>, Invalid> {
    let Some(raw) = raw else {
        return Ok(preset.map(str::to_string));
    };
    let text = raw.get_ref().trim();
    let ok = match oauth2::url::Url::parse(text) {
        Ok(url) if url.scheme() == "https" => true,
        Ok(url) if url.scheme() == "http" => {
            matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        }
        _ => false,
    };
    if !ok {
        return super::raw::invalid(
            raw.span(),
            format!(
                "{key}: {text:?} is not an https:// URL (http:// only to 127.0.0.1 or localhost)"
            ),
        );
    }
    Ok(Some(text.to_string()))
}
