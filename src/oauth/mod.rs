//! OAuth 2.0 for accounts with `oauth = { .. }`: the token file, the
//! refresh at every login, and the two sign-in flows of `mailferry auth login`.
//!
//! - [`store`]: the token file (JSON, mode 0600, replaced atomically).
//! - `refresh`: [`access_token`], called by `PasswordSource::resolve` at
//!   every login; refreshes when the access token expires within 5 minutes.
//! - [`login`]: the authorisation-code flow with PKCE and a loopback
//!   redirect (RFC 8252), and the device flow (RFC 8628).
//! - `client`: the `oauth2` client, its HTTP client, and how the token
//!   endpoint's answers become an [`OAuthError`].
//! - `loopback`: the one-request HTTP listener the browser is sent back to.
//!
//! No token ever reaches a log line or an error: tokens live in
//! [`Secret`](crate::secret::Secret)s, and errors about the token file or
//! the endpoint's answer describe, never quote.

mod client;
mod error;
pub mod login;
mod loopback;
mod refresh;
pub mod store;

pub use error::OAuthError;
pub use refresh::access_token;
pub use store::StoredToken;
