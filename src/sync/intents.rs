//! Resolving leftover append intents (DESIGN.md §5 step 3): an intent left by
//! a crash or a cut connection means "this APPEND may have happened". Before
//! new work, look for it on the mailbox by size and identity: found, it is
//! settled as appended; not found, the intent is dropped and the message will
//! be appended again.

use std::num::NonZeroU32;

use crate::ledger::Intent;
use crate::sync::pass::{dedup_key, PassReport, RoutePlan};
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
    let intents = ledger.call(|l| l.pending_intents(&key.target, &key.mailbox))?;
    if intents.is_empty() {
        return Ok(());
    }
    tracing::info!(route = %plan.name, count = intents.len(), "resolving append intents left by an interrupted pass");
    let mut unresolved = Vec::new();
    for intent in intents {
        match find(plan, state, target, &intent).await? {
            Some(uid) => settle(ledger, &intent, uid, report)?,
            None => unresolved.push(intent),
        }
    }
    if unresolved.is_empty() {
        return Ok(());
    }
    // An APPEND a killed process had already sent can still be on its way
    // (in the kernel's socket buffer, or in the server's queue) and be
    // stored a moment after the search above. Give it time, make the server
    // show what arrived, and look again before deciding it never happened.
    tokio::time::sleep(grace).await;
    target.refresh().await?;
    for intent in unresolved {
        match find(plan, state, target, &intent).await? {
            Some(uid) => settle(ledger, &intent, uid, report)?,
            None => {
                ledger.call(|l| l.drop_intent(intent.id))?;
                report.intents_dropped += 1;
            }
        }
    }
    Ok(())
}

fn settle(
    ledger: &SharedLedger,
    intent: &Intent,
    uid: NonZeroU32,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    ledger.call(|l| l.settle_appended(&[(intent.id, Some(uid))]))?;
    report.intents_found += 1;
    Ok(())
}

/// The UID of the message the intent was for, if it is on the mailbox.
async fn find<T: MailTarget>(
    plan: &RoutePlan,
    state: &MailboxState,
    target: &mut T,
    intent: &Intent,
) -> Result<Option<NonZeroU32>, RouteError> {
    // Same UIDVALIDITY: only UIDs from UIDNEXT-before-the-APPEND on can be it.
    // Otherwise the mailbox was renumbered: search all of it by size.
    let same_mailbox = intent.uidvalidity.map(NonZeroU32::get) == Some(state.uidvalidity);
    let min_uid = if same_mailbox {
        intent.uidnext_before.map(NonZeroU32::get)
    } else {
        None
    };
    let candidates = target.search_size(intent.size, min_uid).await?;
    for chunk in candidates.chunks(16) {
        let chunk: Vec<(u32, u64)> = chunk.iter().map(|&uid| (uid, intent.size)).collect();
        for (uid, bytes) in target.fetch(&chunk).await? {
            if dedup_key(plan.identity, &bytes) == intent.hash {
                return Ok(NonZeroU32::new(uid));
            }
        }
    }
    Ok(None)
}
