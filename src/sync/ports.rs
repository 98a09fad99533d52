//! What the engine needs from a source and a target: two small traits, so the
//! pass logic reads as the protocol of docs/ARCHITECTURE.md ("Exactly once") and not as POP3 or IMAP.
//!
//! [`crate::sync::adapters`] implements them for the real POP3 and IMAP
//! sessions. Errors cross this boundary as [`RouteError`]: a class (what to do)
//! and a message (what happened), never parsed again.

use std::time::Duration;

use crate::retry::ErrorClass;
use crate::sync::byte_channel;

/// A failure that ends or suspends a route's pass.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RouteError {
    pub class: ErrorClass,
    pub message: String,
    /// For a spent transfer budget: when the route may run again.
    pub resume_at: Option<std::time::SystemTime>,
    /// Which of our own budgets ran out, when that is what stopped the pass.
    pub budget: Option<Budget>,
}

/// A transfer budget of mailferry's own (`max_bytes_per_day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Bytes appended to the target.
    Upload,
    /// Bytes downloaded from the source.
    Download,
}

impl RouteError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> RouteError {
        RouteError {
            class,
            message: message.into(),
            resume_at: None,
            budget: None,
        }
    }

    /// The server asked for this wait before the next try, if it did.
    pub fn suggested_wait(&self) -> Option<Duration> {
        match self.class {
            ErrorClass::Throttled { wait } => wait,
            _ => None,
        }
    }
}

/// The UIDL of every message of a server without UIDL (RFC 1939 makes it
/// optional). No real UIDL starts with a space (listing lines are
/// trimmed), so this never names a real message; such messages are told
/// apart by content (see `sync::pass`).
pub const NO_UIDL: &str = " no-uidl";

/// One message a POP3 server offers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub msgno: u32,
    pub uidl: String,
    /// The server's size (a hint: mbox servers count LF line ends).
    pub size: u64,
}

/// A POP3 maildrop, as the engine uses it.
#[allow(async_fn_in_trait)]
pub trait MailSource {
    /// Every message on the server now, with its UIDL (sizes may be 0 here:
    /// a poll that finds nothing new never needs them).
    async fn list(&mut self) -> Result<Vec<Listed>, RouteError>;

    /// The server's sizes of these messages (by message number).
    async fn sizes(
        &mut self,
        msgnos: &[u32],
    ) -> Result<std::collections::HashMap<u32, u64>, RouteError>;

    /// Downloads `messages` (message number, expected size) in order, sending
    /// each into `tx` as it arrives (reserving its size first, so memory stays
    /// bounded). A per-message failure is sent as an `Err`; a connection
    /// failure ends the call. Stops early when the receiver is gone.
    async fn retrieve(
        &mut self,
        messages: &[(u32, u64)],
        tx: &byte_channel::Sender,
    ) -> Result<(), RouteError>;

    /// Marks `msgnos` for deletion, then QUITs. `Ok` only when the server
    /// confirmed the update (deletion happens at QUIT, RFC 1939 §6), with
    /// the message numbers it accepted DELE for.
    async fn delete_and_quit(self, msgnos: &[u32]) -> Result<Vec<u32>, RouteError>;

    /// Ends the session without deleting anything.
    async fn quit(self);

    /// The shortest time the server allows between logins (RFC 2449 §6.5
    /// LOGIN-DELAY), when it says.
    fn login_delay(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A selected target mailbox's identity, as SELECT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxState {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub exists: u32,
}

/// One message to append.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// CRLF-normalised raw message.
    pub bytes: &'a [u8],
    pub seen: bool,
}

/// What became of one append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The server confirmed it; the UID when the server said (APPENDUID).
    Stored { uid: Option<u32> },
    /// The server refused this message (the reason, with its response code).
    Refused { reason: String, class: ErrorClass },
    /// Not sent, and sending it again won't help (larger than the server's
    /// APPENDLIMIT): recorded as skipped with the reason.
    Skipped { reason: String },
    /// No answer arrived: it may or may not be stored.
    Unknown,
    /// Never sent (the batch stopped before it): certainly not stored. May
    /// sit between answered messages: a refused MULTIAPPEND is retried one
    /// by one after the batch's later commands were already sent.
    NotSent,
}

/// The result of appending a batch: one entry per message, in order, and the
/// error that cut the batch short, if any. `results` may be shorter than the
/// batch only when the rest was never sent (so certainly not stored); a
/// message that was sent but not answered is [`Appended::Unknown`].
#[derive(Debug)]
pub struct AppendOutcome {
    pub results: Vec<Appended>,
    pub error: Option<RouteError>,
}

/// An IMAP mailbox, as the engine uses it.
#[allow(async_fn_in_trait)]
pub trait MailTarget {
    /// Creates the mailbox if missing, then selects it.
    async fn open_mailbox(&mut self, mailbox: &str) -> Result<MailboxState, RouteError>;

    /// A batch sent by [`MailTarget::start_append`], not yet answered.
    type Pending;

    /// Sends a batch to the selected mailbox as fast as the server allows,
    /// without waiting for the answers where the protocol lets it (the
    /// engine then prepares and sends the next batch meanwhile). Every
    /// started batch must be passed, with the same `batch`, to
    /// [`MailTarget::finish_append`].
    async fn start_append(&mut self, mailbox: &str, batch: &[Outgoing<'_>]) -> Self::Pending;

    /// Reads what became of a batch [`MailTarget::start_append`] sent.
    async fn finish_append(
        &mut self,
        pending: Self::Pending,
        batch: &[Outgoing<'_>],
    ) -> AppendOutcome;

    /// The full bytes of these messages, given as (UID, size the server
    /// reported), so a large batch can be split by bytes.
    async fn fetch(&mut self, messages: &[(u32, u64)]) -> Result<Vec<(u32, Vec<u8>)>, RouteError>;

    /// UID and size of every message in the selected mailbox (with UID ≥
    /// `from_uid` when given).
    async fn sizes(&mut self, from_uid: Option<u32>) -> Result<Vec<(u32, u64)>, RouteError>;

    /// The Message-ID of each of these messages (`None`: it has none).
    async fn message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, RouteError> {
        Ok(uids.iter().map(|&u| (u, None)).collect())
    }

    /// Ends this session (LOGOUT) and logs in again with `mailbox`
    /// selected: what the new session shows was stored, not only
    /// acknowledged.
    async fn reopen(&mut self, mailbox: &str) -> Result<MailboxState, RouteError>;

    /// Makes the server report what changed in the selected mailbox (NOOP),
    /// so a search sees messages other sessions stored meanwhile.
    async fn refresh(&mut self) -> Result<(), RouteError> {
        Ok(())
    }

    /// Ends the session.
    async fn logout(self);
}
