//! The IMAP target connector: command encoding, response framing and a session over [`crate::net`].
//!
//! Layout (parsers and encoders never do I/O; only the session touches the
//! [`crate::net::Connection`]):
//! - [`encode`]: the one command encoder (atoms, quoted strings, literals;
//!   LITERAL+/LITERAL- per RFC 7888). No user data reaches the wire any
//!   other way.
//! - [`utf7`]: modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//! - [`frame`]: where a response ends (lines + literals), bounded.
//! - [`response`]: one framed response decoded with imap-codec into owned
//!   values.
//! - [`internaldate`]: the INTERNALDATE a message gets, and its wire form.
//! - [`error`]: server answers as values, [`ImapError`] and its retry class.
//! - `session`: connect, greeting, STARTTLS, and the send/receive core
//!   (tags matched, desync closes the session); `auth`: LOGIN and SASL;
//!   `mailbox`: LIST/CREATE/SELECT; `fetch`: UID SEARCH/FETCH; `append`:
//!   pipelined APPEND and MULTIAPPEND.
//!
//! ```no_run
//! # async fn demo(account: &mailferry::config::Account, raw: &[u8]) -> Result<(), mailferry::imap::ImapError> {
//! use mailferry::imap::{internaldate, AppendMessage, AppendOutcome, ImapSession};
//! let mut imap = ImapSession::connect(account).await?;
//! imap.ensure_mailbox("Archiv/Überweisungen").await?;
//! let before = imap.select("Archiv/Überweisungen").await?;
//! let msg = AppendMessage {
//!     bytes: raw,
//!     seen: true,
//!     internal_date: Some(internaldate::internal_date(raw, internaldate::now())),
//! };
//! let result = imap.append_batch("Archiv/Überweisungen", &[msg]).await;
//! for outcome in &result.outcomes {
//!     if let AppendOutcome::Appended { uid } = outcome { /* settle in the ledger */ }
//! }
//! if let Some(e) = result.error { return Err(e); }
//! imap.logout().await
//! # }
//! ```

mod append;
mod auth;
pub mod encode;
pub mod error;
mod fetch;
pub mod frame;
pub mod internaldate;
mod mailbox;
pub mod response;
mod session;
pub mod utf7;

pub use append::{AppendBatchResult, AppendMessage, AppendOutcome, PendingAppend};
pub use auth::{sasl_oauthbearer, sasl_plain, sasl_xoauth2};
pub use error::{ImapError, Refusal, ResponseCode, ServerStatus, StatusKind};
pub use fetch::{FetchedMessage, SearchKey};
pub use frame::FrameLimits;
pub use mailbox::{MailboxEntry, MailboxInfo};
pub use session::{AppendMode, Capabilities, ImapOptions, ImapSession};
