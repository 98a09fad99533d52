//! The POP3 source connector: a sans-I/O reply parser and a thin async session over [`crate::net`].
//!
//! # Layout
//!
//! - [`reply`]: status lines (`+OK`, `-ERR`, RFC 2449 response codes, SASL
//!   continuations) — pure, `&[u8]` in, value and bytes used out.
//! - [`dot`]: the streaming multi-line body decoder (dot-unstuffing, the
//!   terminating line, CRLF line ends, the size cap) — pure.
//! - [`listing`]: CAPA, STAT, LIST and UIDL contents — pure.
//! - [`command`]: one type for every command: its wire line and its log
//!   line (secrets as `***`).
//! - `md5`: the APOP digest (RFC 1321), pure.
//! - `session`: connect, greeting, CAPA, STLS, and the only code that reads
//!   and writes the [`crate::net::Connection`]; `auth`: the logins;
//!   `transaction`: STAT .. QUIT and pipelined batches; `retrieve`: the
//!   pipelined RETR stream the sync engine pulls from.
//! - [`error`]: [`Pop3Error`] and its [`crate::retry::ErrorClass`].
//!
//! ```no_run
//! # async fn demo(account: &mailferry::config::Account) -> Result<(), mailferry::pop3::Pop3Error> {
//! use mailferry::pop3::Pop3Session;
//! let mut pop = Pop3Session::connect(account).await?;
//! let uids = pop.uidl().await?.unwrap_or_default();
//! let wanted: Vec<u32> = uids.iter().map(|(n, _)| *n).collect();
//! let mut stream = pop.retrieve(wanted);
//! while let Some(result) = stream.next().await {
//!     match result {
//!         Ok(message) => { /* append message.bytes, settle message.msgno */ }
//!         Err(err) if err.is_per_message() => { /* record the failure, go on */ }
//!         Err(err) => return Err(err),
//!     }
//! }
//! drop(stream);
//! pop.dele_many(&[1, 2]).await?;
//! pop.quit().await?; // deletions happen only if this returns Ok
//! # Ok(()) }
//! ```

mod auth;
pub mod command;
pub mod dot;
pub mod error;
pub mod listing;
mod md5;
pub mod reply;
mod retrieve;
mod session;
mod transaction;

pub use error::{Pop3Error, Refusal};
pub use listing::Capabilities;
pub use reply::{RespCode, Response};
pub use retrieve::{Retrieval, Retrieved};
pub use session::{Pop3Options, Pop3Session};
pub use transaction::BatchResults;
