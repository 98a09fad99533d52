//! mailferry moves mail from POP3 mailboxes into IMAP mailboxes, exactly once.
//!
//! # Layout
//!
//! Data flows one way: source bytes -> message identity -> ledger decision ->
//! target append -> ledger commit -> (maybe) source delete.
//!
//! ```text
//!  POP3 --> pop3 (source connector) --+--> imap (target connector) --> IMAP
//!                                     |
//!                             ledger (SQLite)   keyed by message::identity
//!                                     |
//!                             sync (one pass of one route)
//!                                     |
//!                             daemon (routes over time)
//! ```
//!
//! - [`config`]: the TOML model and its validation; [`secret`] keeps passwords
//!   out of logs.
//! - [`net`]: connect with deadlines, TLS (implicit or upgraded), the bounded
//!   buffered reader both protocols share. The only module that touches
//!   sockets and rustls.
//! - [`pop3`]: the POP3 client — sans-I/O reply parsing plus a thin session.
//! - [`imap`]: the IMAP client — command encoding, response framing, session.
//! - [`message`]: the message identity (BLAKE3 of the normalised message) and
//!   header lookups.
//! - [`ledger`]: the only code that speaks SQL.
//! - [`sync`]: one pass of one route; [`daemon`]: many routes over time.
//! - [`shard`]: `--shard i/N`, which routes one process of N takes.
//! - [`commands`]: what each CLI command does and prints.
//! - [`retry`]: the one place that decides how long to wait before retrying.
//! - [`oauth`]: token files, refresh at every login, `auth login` flows.
//!
//! docs/ARCHITECTURE.md describes the pipeline, the message identity, the
//! exactly-once protocol and the ledger schema as built.
//!
//! Protocol parsing never does I/O: parsers take `&[u8]` and say "need more
//! bytes" as a state, not an error.

pub mod commands;
pub mod config;
pub mod daemon;
pub mod imap;
pub mod ledger;
pub mod message;
pub mod net;
pub mod oauth;
pub mod pop3;
pub mod retry;
pub mod secret;
pub mod shard;
pub mod sync;
