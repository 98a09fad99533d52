//! Resolving leftover append intents (docs/ARCHITECTURE.md, "Exactly once", step 3): an intent left by
//! a crash or a cut connection means "this APPEND may have happened". Before
//! new work, look for it on the mailbox by content: found, it is settled as
//! appended; not found, the intent is dropped and the message will be
//! appended again.
//!
//! A size is only ever a hint to choose which bodies to fetch first, never
//! proof that a message is absent: servers store a message under another
//! size than the one appended (Courier and GNU Mailutils compare the stored
//! LF size in `SEARCH LARGER/SMALLER`, Mailutils strips `Status:` on
//! APPEND). So the messages of the intent's exact size (as `FETCH
//! RFC822.SIZE` reports it) are hashed first, then, where the mailbox is
//! unchanged, every message stored since the intent was made.

use std::collections::HashMap;
use std::num::NonZeroU32;

use crate::ledger::Intent;
use crate::message::Hash;
use crate::sync::plan::{PassReport, RoutePlan};
use crate::sync::ports::{MailTarget, MailboxState, RouteError};
use crate::sync::SharedLedger;

/// Resolves every leftover intent of the route's mailbox.
pub async fn resolve<T: MailTarget>(
    plan: &RoutePlan,
    state: &MailboxState,
    target: &mut T,
    ledger: &SharedLedger,
    report: &mut PassReport,
    grace: std::time::Duration,
) -> Result<(), RouteError> {
    let key = &plan.key;
    let mut open = ledger.call(|l| l.pending_intents(&key.target, &key.mailbox))?;
    if open.is_empty() {
        return Ok(());
    }
    tracing::info!(route = %plan.name, count = open.len(), "resolving append intents left by an interrupted pass");
    look(plan, state, target, ledger, &mut open, report).await?;
    if open.is_empty() {
        return Ok(());
    }
    // An APPEND a killed process had already sent can still be on its way
    // (in the kernel's socket buffer, or in the server's queue) and be
    // stored a moment after the look above. Give it time, make the server
    // show what arrived, and look again before deciding it never happened.
    tokio::time::sleep(grace).await;
    target.refresh().await?;
    look(plan, state, target, ledger, &mut open, report).await?;
    for intent in open {
        ledger.call(|l| l.drop_intent(intent.id))?;
        report.intents_dropped += 1;
    }
    Ok(())
}

/// The lowest UID the intent's message can have: from UIDNEXT before the
/// APPEND when the mailbox is unchanged (same UIDVALIDITY); else any.
fn min_uid(intent: &Intent, state: &MailboxState) -> Option<u32> {
    let same_mailbox = intent.uidvalidity.map(NonZeroU32::get) == Some(state.uidvalidity);
    same_mailbox
        .then(|| intent.uidnext_before.map(NonZeroU32::get))
        .flatten()
}

/// Settles every intent of `open` whose message is on the mailbox and
/// leaves the others in `open`. A message the server stored altered (Cyrus
/// munge8bit) is not found, and is appended again: taking an unknown
/// message of the same size for it could take another client's message
/// and delete the original on its word.
async fn look<T: MailTarget>(
    plan: &RoutePlan,
    state: &MailboxState,
    target: &mut T,
    ledger: &SharedLedger,
    open: &mut Vec<Intent>,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    let floors: Vec<Option<u32>> = open.iter().map(|i| min_uid(i, state)).collect();
    let from = floors.iter().copied().min().flatten();
    let sizes = target.sizes(from).await?;
    let may_be = |uid: u32, i: usize| floors[i].is_none_or(|floor| uid >= floor);
    // First the messages of an intent's exact size: the usual case.
    let exact: Vec<(u32, u64)> = sizes
        .iter()
        .copied()
        .filter(|&(uid, size)| (0..open.len()).any(|i| open[i].size == size && may_be(uid, i)))
        .collect();
    let mut hashes = HashMap::new();
    hash_bodies(plan, target, &exact, &mut hashes).await?;
    settle_found(ledger, open, &floors, &hashes, report)?;
    if open.is_empty() {
        return Ok(());
    }
    // Then everything stored since an unchanged mailbox's intent was made.
    let floors: Vec<Option<u32>> = open.iter().map(|i| min_uid(i, state)).collect();
    let since: Vec<(u32, u64)> = sizes
        .iter()
        .copied()
        .filter(|(uid, _)| !hashes.contains_key(uid))
        .filter(|&(uid, _)| floors.iter().any(|f| f.is_some_and(|floor| uid >= floor)))
        .collect();
    hash_bodies(plan, target, &since, &mut hashes).await?;
    settle_found(ledger, open, &floors, &hashes, report)
}

/// Fetches `messages` and records each one's identity under its UID.
async fn hash_bodies<T: MailTarget>(
    plan: &RoutePlan,
    target: &mut T,
    messages: &[(u32, u64)],
    hashes: &mut HashMap<u32, Hash>,
) -> Result<(), RouteError> {
    let hashed = crate::sync::index::hash_bodies(plan.identity, target, messages).await?;
    for m in hashed.messages {
        if let Some(uid) = m.uid {
            hashes.insert(uid.get(), m.hash);
        }
    }
    Ok(())
}

/// Settles each intent of `open` whose hash is among `hashes` at a UID it
/// can have (each UID settles one intent at most); keeps the rest open.
fn settle_found(
    ledger: &SharedLedger,
    open: &mut Vec<Intent>,
    floors: &[Option<u32>],
    hashes: &HashMap<u32, Hash>,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    let mut by_uid: Vec<(&u32, &Hash)> = hashes.iter().collect();
    by_uid.sort_unstable();
    let mut claimed = std::collections::HashSet::new();
    let mut still = Vec::new();
    for (intent, floor) in std::mem::take(open).into_iter().zip(floors) {
        let found = by_uid.iter().find(|(uid, hash)| {
            **hash == intent.hash && floor.is_none_or(|f| **uid >= f) && !claimed.contains(*uid)
        });
        match found.and_then(|(uid, _)| NonZeroU32::new(**uid)) {
            Some(uid) => {
                claimed.insert(uid.get());
                ledger.call(|l| l.settle_appended(&[(intent.id, Some(uid))], true))?;
                report.intents_found += 1;
            }
            None => still.push(intent),
        }
    }
    *open = still;
    Ok(())
}
