//! What can go wrong getting a token, worded for the person who must act.

use std::path::PathBuf;

/// An access token could not be had. The text never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Nobody has signed in yet.
    #[error("no token file at {}", .path.display())]
    NoTokenFile { path: PathBuf },
    /// The token file holds no refresh token and its access token expired.
    #[error("the access token in {} expired and there is no refresh token", .path.display())]
    NoRefreshToken { path: PathBuf },
    /// The token file cannot be read, parsed or written.
    #[error("token file {}: {reason}", .path.display())]
    TokenFile { path: PathBuf, reason: String },
    /// The token endpoint answered with an OAuth error (`invalid_grant`:
    /// the refresh token was revoked or expired).
    #[error("{url} refused: {code}{}", .description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        url: String,
        code: String,
        description: Option<String>,
    },
    /// The endpoint could not be reached, or answered something that is not
    /// an OAuth reply.
    #[error("{url}: {reason}")]
    Endpoint { url: String, reason: String },
    /// The client secret's own source failed.
    #[error("client_secret: {0}")]
    ClientSecret(String),
    /// The user said no in the browser, or the sign-in timed out.
    #[error("sign-in not completed: {0}")]
    SignIn(String),
    /// A setting that cannot work (no auth_url for a browser sign-in, say).
    #[error("{0}")]
    Setup(String),
}

impl OAuthError {
    /// The message with what to do next, for account `account`.
    pub fn with_hint(&self, account: &str) -> String {
        match self {
            OAuthError::NoTokenFile { .. } => {
                format!("{self}; run `mailferry auth login {account}` first")
            }
            OAuthError::Setup(_) | OAuthError::ClientSecret(_) => self.to_string(),
            _ => format!("{self}; run `mailferry auth login {account}` again"),
        }
    }
}
