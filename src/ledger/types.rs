//! The small types the ledger's API speaks in; no SQL or rows leak out.

use std::fmt;
use std::num::NonZeroU32;
use std::time::SystemTime;

use serde::Serialize;

use crate::message::Hash;

/// One route: a source account feeding one mailbox of one target account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RouteKey {
    pub source: String,
    pub target: String,
    pub mailbox: String,
}

impl RouteKey {
    pub fn new(
        source: impl Into<String>,
        target: impl Into<String>,
        mailbox: impl Into<String>,
    ) -> Self {
        RouteKey {
            source: source.into(),
            target: target.into(),
            mailbox: mailbox.into(),
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}/{}", self.source, self.target, self.mailbox)
    }
}

/// Where one source message stands on one route (docs/ARCHITECTURE.md, "Ledger schema").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Known, not yet decided.
    Seen,
    /// Appended by us; durable on the target.
    Copied,
    /// Its identity was already on the target mailbox.
    Duplicate,
    /// Deliberately not copied (the reason is recorded).
    Skipped,
    /// Tried and failed; retried until its attempts reach the caller's max.
    Failed,
}

impl DeliveryState {
    /// The spelling in the ledger's `delivery.state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Seen => "seen",
            DeliveryState::Copied => "copied",
            DeliveryState::Duplicate => "duplicate",
            DeliveryState::Skipped => "skipped",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        [
            Self::Seen,
            Self::Copied,
            Self::Duplicate,
            Self::Skipped,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One source message on one route, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub state: DeliveryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Reason of the last skip or failure.
    pub last_error: Option<String>,
}

/// A source message downloaded and hashed, for [`Ledger::record_seen`](super::Ledger::record_seen).
#[derive(Clone, Copy, Debug)]
pub struct SeenMessage<'a> {
    pub uidl: &'a str,
    /// Octets as downloaded.
    pub size: u64,
    /// `message::identity` of it (at `message::HASH_VERSION`).
    pub hash: Hash,
}

/// A decision about one source message on one route other than "copied"
/// (which only [`Ledger::settle_appended`](super::Ledger::settle_appended) records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Already on the target mailbox, under this dedup key (`None`: not
    /// known; such a duplicate is trusted as before ledger version 4).
    Duplicate { of: Option<Hash> },
    /// Not to be copied, for this reason (too big, refused by policy…).
    Skipped { reason: &'a str },
    /// One more failed attempt, for this reason.
    Failed { reason: &'a str },
}

/// Names a committed append intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct IntentId(pub i64);

/// What to commit before an APPEND (docs/ARCHITECTURE.md, "Exactly once", step 2).
#[derive(Clone, Copy, Debug)]
pub struct NewIntent<'a> {
    pub route: &'a RouteKey,
    pub uidl: &'a str,
    pub hash: Hash,
    /// Exact octets to be appended.
    pub size: u64,
    /// The mailbox's UIDVALIDITY at SELECT, if the server gave one.
    pub uidvalidity: Option<NonZeroU32>,
    /// The mailbox's UIDNEXT before the APPEND, if the server gave one.
    pub uidnext_before: Option<NonZeroU32>,
}

/// A committed append intent whose outcome is not yet recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub id: IntentId,
    pub route: RouteKey,
    pub uidl: String,
    pub hash: Hash,
    pub size: u64,
    pub uidvalidity: Option<NonZeroU32>,
    pub uidnext_before: Option<NonZeroU32>,
    pub created: SystemTime,
}

/// A message of a route that is not copied: failed or skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outstanding {
    /// Its ledger key: the UIDL (or UIDL and content, `UIDL #…`).
    pub uidl: String,
    pub state: DeliveryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The server's reason, or the rule's.
    pub reason: Option<String>,
    pub first_seen: SystemTime,
    pub last_try: SystemTime,
    /// Octets as downloaded, when it was.
    pub size: Option<u64>,
    /// `Date · From · Subject`, when known (see `message::summary`).
    pub summary: Option<String>,
}

/// A message the ledger knows is on a target mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetMessage {
    pub hash: Hash,
    /// Valid under the mailbox's current UIDVALIDITY; `None` when unknown.
    pub uid: Option<NonZeroU32>,
    /// RFC822.SIZE, when known.
    pub size: Option<u64>,
}

/// What [`Ledger::set_uidvalidity`](super::Ledger::set_uidvalidity) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UidValidityChange {
    /// The ledger had no UIDVALIDITY for this mailbox: reconcile if it is not empty.
    First,
    Unchanged,
    /// The mailbox was recreated or renumbered: what was recorded of its
    /// messages was forgotten; reconcile it.
    Changed {
        old: NonZeroU32,
    },
}

/// Names one pass of one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RunId(pub i64);

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub copied: u64,
    pub duplicates: u64,
    pub skipped: u64,
    pub failed: u64,
    pub deleted: u64,
    /// Octets appended.
    pub bytes: u64,
}

/// One recorded pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub started: SystemTime,
    /// `None` while running, or when the process died during the pass.
    pub finished: Option<SystemTime>,
    pub counts: RunCounts,
    pub error: Option<String>,
}

/// How many of a route's source messages are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub seen: u64,
    pub copied: u64,
    pub duplicate: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Of those, how many the source has deleted.
    pub deleted: u64,
}

/// Everything `status` shows for one route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteStatus {
    pub route: RouteKey,
    pub states: StateCounts,
    /// Append intents not yet resolved.
    pub pending_intents: u64,
    /// Messages not copied (failed, however many attempts, or skipped)
    /// still on the source as far as the ledger knows: while there are
    /// any, `sync` and `status` exit 1.
    pub outstanding: u64,
    pub last_run: Option<RunRecord>,
    /// The most recent skip or failure reason on this route.
    pub last_message_error: Option<String>,
}
