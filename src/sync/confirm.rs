//! Seeing copies again before their source messages may go (DESIGN.md §5
//! step 4; docs/ARCHITECTURE.md): a server may acknowledge an APPEND and then
//! lose it (GNU Mailutils' imap4d answered 146 APPENDs with OK into an mbox
//! that was empty at SELECT and kept one at LOGOUT). A copy is durable only
//! once a target session opened after the appending one ended shows it: by
//! its UID and size where APPENDUID gave a UID, else by content. A copy not
//! there is forgotten and its source message decided again: copied again,
//! never deleted on the word of the lost copy.

use std::collections::{HashMap, HashSet};

use crate::ledger::Unconfirmed;
use crate::message::Hash;
use crate::sync::pass::{dedup_key, PassReport, RoutePlan};
use crate::sync::ports::{MailTarget, RouteError};
use crate::sync::SharedLedger;

/// Bodies per fetch while looking for copies by content.
const BODIES_PER_FETCH: usize = 16;

/// Confirms (or finds lost) every copy of the route not yet seen again, in
/// the target session `target` has open now, which must have been opened
/// after the copies' own session ended.
pub async fn confirm<T: MailTarget>(
    plan: &RoutePlan,
    target: &mut T,
    ledger: &SharedLedger,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    let copies = ledger.call(|l| l.unconfirmed(&plan.key))?;
    if copies.is_empty() {
        return Ok(());
    }
    let from = if copies.iter().all(|c| c.uid.is_some()) {
        copies.iter().filter_map(|c| c.uid).min().map(|u| u.get())
    } else {
        None
    };
    let sizes: HashMap<u32, u64> = target.sizes(from).await?.into_iter().collect();
    let (mut seen, mut open): (Vec<Unconfirmed>, Vec<Unconfirmed>) =
        copies.into_iter().partition(|c| {
            c.uid.is_some_and(|uid| {
                sizes
                    .get(&uid.get())
                    .is_some_and(|&size| c.size.is_none_or(|want| want == size))
            })
        });
    let mut lost = Vec::new();
    if !open.is_empty() {
        let known: HashSet<u32> = seen.iter().filter_map(|c| c.uid).map(|u| u.get()).collect();
        let found = by_content(plan, target, &open, &sizes, &known).await?;
        let (yes, no): (Vec<Unconfirmed>, Vec<Unconfirmed>) = std::mem::take(&mut open)
            .into_iter()
            .partition(|c| found.contains(&c.target_hash));
        seen.extend(yes);
        lost = no;
    }
    let seen: Vec<&str> = seen.iter().map(|c| c.uidl.as_str()).collect();
    ledger.call(|l| l.confirm_copies(&plan.key, &seen))?;
    tracing::debug!(route = %plan.name, confirmed = seen.len(), lost = lost.len(), "copies seen again");
    if !lost.is_empty() {
        let uidls: Vec<&str> = lost.iter().map(|c| c.uidl.as_str()).collect();
        tracing::warn!(route = %plan.name, count = lost.len(), "the target acknowledged copies that a later session does not show; they will be copied again and are not deleted from the source");
        ledger.call(|l| l.copies_lost(&plan.key, &uidls))?;
        report.copies_lost += lost.len() as u64;
    }
    Ok(())
}

/// Messages (UID, size) to fetch bodies of when looking for records by
/// content: first those of a wanted size (all, when some size is unknown),
/// then the rest; each in UID order, without the `known` UIDs. A size only
/// says where to look first: a server may store a message under another
/// size than the one appended.
pub type BySize = (Vec<(u32, u64)>, Vec<(u32, u64)>);

pub fn by_size_first(
    sizes: &HashMap<u32, u64>,
    wanted: impl Iterator<Item = Option<u64>>,
    known: &HashSet<u32>,
) -> BySize {
    let mut any_size = false;
    let wanted: HashSet<u64> = wanted
        .filter_map(|size| {
            any_size |= size.is_none();
            size
        })
        .collect();
    let (mut first, mut rest): BySize = sizes
        .iter()
        .map(|(&uid, &size)| (uid, size))
        .filter(|(uid, _)| !known.contains(uid))
        .partition(|(_, size)| any_size || wanted.contains(size));
    first.sort_unstable();
    rest.sort_unstable();
    (first, rest)
}

/// The dedup keys among the mailbox's messages: those of the copies' sizes
/// first, then, while one is still not found, every other message not
/// already known (a server may store a copy under another size).
async fn by_content<T: MailTarget>(
    plan: &RoutePlan,
    target: &mut T,
    open: &[Unconfirmed],
    sizes: &HashMap<u32, u64>,
    known: &HashSet<u32>,
) -> Result<HashSet<Hash>, RouteError> {
    let (first, rest) = by_size_first(sizes, open.iter().map(|c| c.size), known);
    let mut found = HashSet::new();
    for batch in [first, rest] {
        if open.iter().all(|c| found.contains(&c.target_hash)) {
            break;
        }
        for chunk in batch.chunks(BODIES_PER_FETCH) {
            for (_, bytes) in target.fetch(chunk).await? {
                found.insert(dedup_key(plan.identity, &bytes));
            }
        }
    }
    Ok(found)
}
