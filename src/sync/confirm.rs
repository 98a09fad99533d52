//! Seeing copies again before their source messages may go
//! (docs/ARCHITECTURE.md, "Exactly once", step 4): a server may acknowledge
//! an APPEND and then
//! lose it (GNU Mailutils' imap4d answered 146 APPENDs with OK into an mbox
//! that was empty at SELECT and kept one at LOGOUT). A copy is durable only
//! once a target session opened after the appending one ended shows it: by
//! its UID and size where APPENDUID gave a UID, else by content. A copy not
//! there is forgotten and its source message decided again: copied again,
//! never deleted on the word of the lost copy.

use std::collections::{HashMap, HashSet};

use std::num::NonZeroU32;

use crate::ledger::{TargetMessage, Unconfirmed};
use crate::message::Hash;
use crate::sync::index::hash_bodies;
use crate::sync::plan::{PassReport, RoutePlan};
use crate::sync::ports::{MailTarget, RouteError};
use crate::sync::SharedLedger;

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
    let mut found = HashMap::new();
    // False when some body could not be read (expunged meanwhile, or the
    // server cannot send it): a copy not found may be that one.
    let mut complete = true;
    if !open.is_empty() {
        let known: HashSet<u32> = seen.iter().filter_map(|c| c.uid).map(|u| u.get()).collect();
        found = by_content(plan, target, &open, &sizes, &known, &mut complete).await?;
        let (yes, no): (Vec<Unconfirmed>, Vec<Unconfirmed>) = std::mem::take(&mut open)
            .into_iter()
            .partition(|c| found.contains_key(&c.target_hash));
        // Found by content: recorded again under the UID they have now (a
        // renumbered mailbox forgot them).
        let records: Vec<TargetMessage> = yes
            .iter()
            .filter_map(|c| {
                let &(uid, size) = found.get(&c.target_hash)?;
                Some(TargetMessage {
                    hash: c.target_hash,
                    uid: NonZeroU32::new(uid),
                    size: Some(size),
                })
            })
            .collect();
        let key = &plan.key;
        ledger.call(|l| l.record_target_messages(&key.target, &key.mailbox, &records))?;
        seen.extend(yes);
        lost = no;
    }
    let seen_uidls: Vec<&str> = seen.iter().map(|c| c.uidl.as_str()).collect();
    ledger.call(|l| l.confirm_copies(&plan.key, &seen_uidls))?;
    tracing::debug!(route = %plan.name, confirmed = seen.len(), lost = lost.len(), "copies seen again");
    if lost.is_empty() {
        return Ok(());
    }
    if !complete {
        tracing::warn!(route = %plan.name, count = lost.len(), "copies not found while some messages of the mailbox could not be read: they stay unconfirmed (not deleted from the source, not copied again) until a later look");
        return Ok(());
    }
    let uidls: Vec<&str> = lost.iter().map(|c| c.uidl.as_str()).collect();
    if strangers(plan, ledger, found.keys())? == 0 {
        tracing::warn!(route = %plan.name, count = lost.len(), "the target acknowledged copies that a later session does not show; they will be copied again and are not deleted from the source");
        ledger.call(|l| l.copies_lost(&plan.key, &uidls))?;
        report.copies_lost += lost.len() as u64;
    } else {
        tracing::warn!(route = %plan.name, count = lost.len(), "the target stored something other than the copies it acknowledged (it altered them); they are not copied again and not deleted from the source");
        ledger.call(|l| l.copies_altered(&plan.key, &uidls))?;
        report.copies_altered += lost.len() as u64;
    }
    Ok(())
}

/// Messages of the mailbox (as hashed while looking) that the ledger knows
/// nothing of. A copy that is not found while such a message appeared was
/// most likely stored altered (GNU Mailutils cuts a message at its first
/// NUL): appending it again would only add another altered copy. None: the
/// copies were lost, and are made again.
fn strangers<'a>(
    plan: &RoutePlan,
    ledger: &SharedLedger,
    found: impl Iterator<Item = &'a Hash>,
) -> Result<usize, RouteError> {
    let key = &plan.key;
    let found: Vec<Hash> = found.copied().collect();
    let known = ledger.call(|l| l.hashes_present(&key.target, &key.mailbox, &found))?;
    Ok(found.len() - known.len())
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

/// The dedup keys among the mailbox's messages, with the UID and size of a
/// message that has each: those of the copies' sizes first, then, while
/// one is still not found, every other message not already known (a server
/// may store a copy under another size).
async fn by_content<T: MailTarget>(
    plan: &RoutePlan,
    target: &mut T,
    open: &[Unconfirmed],
    sizes: &HashMap<u32, u64>,
    known: &HashSet<u32>,
    complete: &mut bool,
) -> Result<HashMap<Hash, (u32, u64)>, RouteError> {
    let (first, rest) = by_size_first(sizes, open.iter().map(|c| c.size), known);
    let mut found = HashMap::new();
    for batch in [first, rest] {
        if open.iter().all(|c| found.contains_key(&c.target_hash)) {
            break;
        }
        let hashed = hash_bodies(plan.identity, target, &batch).await?;
        *complete &= hashed.complete;
        for m in hashed.messages {
            let uid = m.uid.map_or(0, NonZeroU32::get);
            let size = sizes.get(&uid).copied().or(m.size).unwrap_or(0);
            found.entry(m.hash).or_insert((uid, size));
        }
    }
    Ok(found)
}
