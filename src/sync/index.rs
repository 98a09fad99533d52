//! What is on the target mailbox beyond what the ledger knows (docs/ARCHITECTURE.md, "Exactly once"
//! step 5): a lost or restored ledger, a mailbox recreated behind our back,
//! mail copied by another tool. Built cheaply and lazily: the sizes and
//! Message-IDs of the unknown messages first (UID FETCH of RFC822.SIZE and
//! of the Message-ID header field), bodies only when a downloaded source
//! message has the same size or the same Message-ID (a copy another tool
//! made can differ in size by a header field the identity ignores).

use std::collections::{BTreeMap, HashMap, HashSet};

/// How many bytes of header fields another tool may have added to a copy
/// (`Status:`, `X-UIDL:`, `X-Mozilla-Status:`…): a message without a
/// Message-ID is compared with unknown target messages up to this much larger.
const HEADER_SLACK: u64 = 512;
use std::num::NonZeroU32;

use crate::ledger::{TargetMessage, UidValidityChange};
use crate::message::dedup_key;
use crate::message::Hash;
use crate::sync::plan::{PassReport, RoutePlan};
use crate::sync::ports::{MailTarget, MailboxState, RouteError};
use crate::sync::SharedLedger;

/// The target mailbox as this pass knows it.
pub struct TargetIndex {
    /// Whether the ledger's record of the mailbox can be believed. Not after
    /// the mailbox was renumbered (recreated), nor for a non-empty mailbox the
    /// ledger never saw: then only what this pass verified counts.
    trust_ledger: bool,
    /// Sizes of messages the ledger does not know, not yet hashed.
    unhashed: HashMap<u64, Vec<u32>>,
    /// Their Message-IDs, likewise.
    by_message_id: HashMap<String, Vec<u32>>,
    /// By size, those without a Message-ID: a copy of a message without one
    /// is looked for among these, up to [`HEADER_SLACK`] bytes larger.
    without_id: BTreeMap<u64, Vec<u32>>,
    /// The size of each message indexed.
    size_of: HashMap<u32, u64>,
    /// UIDs whose bodies were fetched and hashed already.
    hashed: HashSet<u32>,
    /// Identities verified on the mailbox during this pass.
    verified: HashSet<Hash>,
    /// Target messages indexed by size.
    indexed: u64,
}

impl TargetIndex {
    /// An index that trusts the ledger and knows of nothing else.
    pub fn trusting() -> TargetIndex {
        TargetIndex {
            trust_ledger: true,
            unhashed: HashMap::new(),
            by_message_id: HashMap::new(),
            without_id: BTreeMap::new(),
            size_of: HashMap::new(),
            hashed: HashSet::new(),
            verified: HashSet::new(),
            indexed: 0,
        }
    }

    /// Reads the sizes of the messages the ledger cannot vouch for.
    /// With `full`, every message whose UID the ledger does not record is
    /// indexed, wherever it is (`mailferry reconcile`).
    pub async fn build<T: MailTarget>(
        plan: &RoutePlan,
        change: UidValidityChange,
        state: &MailboxState,
        target: &mut T,
        ledger: &SharedLedger,
        full: bool,
    ) -> Result<TargetIndex, RouteError> {
        let key = &plan.key;
        if full && state.exists > 0 {
            let known = ledger.call(|l| l.target_messages(&key.target, &key.mailbox))?;
            let known: std::collections::HashSet<u32> = known
                .iter()
                .filter_map(|m| m.uid)
                .map(NonZeroU32::get)
                .collect();
            let trust_ledger = change == UidValidityChange::Unchanged;
            let sizes = target.sizes(None).await?;
            let unknown = sizes
                .into_iter()
                .filter(|(uid, _)| !trust_ledger || !known.contains(uid))
                .collect();
            return TargetIndex::index_of(plan, trust_ledger, unknown, target).await;
        }
        let (trust_ledger, from_uid) = match change {
            UidValidityChange::Unchanged if state.exists == 0 => return Ok(TargetIndex::trusting()),
            UidValidityChange::First | UidValidityChange::Changed { .. } if state.exists == 0 => {
                let mut empty = TargetIndex::trusting();
                empty.trust_ledger = false;
                return Ok(empty);
            }
            UidValidityChange::Unchanged => {
                // Only UIDs above the highest one recorded can be unknown to
                // us (a restored ledger, another client's appends).
                let top = ledger
                    .call(|l| l.highest_uid(&key.target, &key.mailbox))?
                    .map(NonZeroU32::get);
                if top.is_some() && top.map(|t| t + 1) >= state.uidnext {
                    return Ok(TargetIndex::trusting());
                }
                (true, top.map(|t| t + 1))
            }
            UidValidityChange::First | UidValidityChange::Changed { .. } => (false, None),
        };
        let sizes = target.sizes(from_uid).await?;
        TargetIndex::index_of(plan, trust_ledger, sizes, target).await
    }

    /// Indexes `sizes` and the Message-IDs of the same messages.
    async fn index_of<T: MailTarget>(
        plan: &RoutePlan,
        trust_ledger: bool,
        sizes: Vec<(u32, u64)>,
        target: &mut T,
    ) -> Result<TargetIndex, RouteError> {
        let uids: Vec<u32> = sizes.iter().map(|(uid, _)| *uid).collect();
        let size_of: HashMap<u32, u64> = sizes.iter().copied().collect();
        let mut unhashed: HashMap<u64, Vec<u32>> = HashMap::new();
        for (uid, size) in sizes {
            unhashed.entry(size).or_default().push(uid);
        }
        let mut by_message_id: HashMap<String, Vec<u32>> = HashMap::new();
        let mut without_id: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        if !uids.is_empty() {
            for (uid, id) in target.message_ids(&uids).await? {
                match id {
                    Some(id) => by_message_id.entry(id).or_default().push(uid),
                    None => {
                        if let Some(size) = size_of.get(&uid) {
                            without_id.entry(*size).or_default().push(uid);
                        }
                    }
                }
            }
        }
        tracing::info!(
            route = %plan.name,
            messages = uids.len(),
            trust_ledger,
            "indexing target messages the ledger does not know (sizes and Message-IDs)"
        );
        Ok(TargetIndex {
            trust_ledger,
            unhashed,
            by_message_id,
            without_id,
            size_of,
            hashed: HashSet::new(),
            verified: HashSet::new(),
            indexed: uids.len() as u64,
        })
    }

    /// Whether any target message is still unknown (so a candidate's
    /// Message-ID could matter).
    pub fn has_unknown(&self) -> bool {
        !self.unhashed.is_empty() || !self.by_message_id.is_empty() || !self.without_id.is_empty()
    }

    /// How many target messages were indexed by size.
    pub fn indexed(&self) -> u64 {
        self.indexed
    }

    /// Which of `candidates` (identity, exact size, Message-ID) are on the
    /// mailbox.
    /// Fetches and hashes the unknown target messages of a matching size
    /// first, recording what it finds in the ledger.
    pub async fn present<T: MailTarget>(
        &mut self,
        plan: &RoutePlan,
        candidates: &[(Hash, u64, Option<String>)],
        target: &mut T,
        ledger: &SharedLedger,
        report: &mut PassReport,
    ) -> Result<HashSet<Hash>, RouteError> {
        let key = &plan.key;
        let hashes: Vec<Hash> = candidates.iter().map(|(h, _, _)| *h).collect();
        let mut present: HashSet<Hash> = if self.trust_ledger {
            ledger.call(|l| l.hashes_present(&key.target, &key.mailbox, &hashes))?
        } else {
            HashSet::new()
        };
        let mut uids = Vec::new();
        for (hash, size, message_id) in candidates {
            if present.contains(hash) || self.verified.contains(hash) {
                continue;
            }
            if let Some(same_size) = self.unhashed.remove(size) {
                uids.extend(same_size);
            }
            match message_id {
                Some(id) => uids.extend(self.by_message_id.remove(id).unwrap_or_default()),
                None => {
                    let near: Vec<u64> = self
                        .without_id
                        .range(*size..=size + HEADER_SLACK)
                        .map(|(s, _)| *s)
                        .collect();
                    for s in near {
                        uids.extend(self.without_id.remove(&s).unwrap_or_default());
                    }
                }
            }
        }
        uids.sort_unstable();
        uids.dedup();
        uids.retain(|uid| self.hashed.insert(*uid));
        if !uids.is_empty() {
            let sized: Vec<(u32, u64)> = uids
                .iter()
                .map(|uid| (*uid, self.size_of.get(uid).copied().unwrap_or(0)))
                .collect();
            let hashed = hash_bodies(plan.identity, target, &sized).await?;
            report.target_bodies_fetched += hashed.messages.len() as u64;
            report.target_bytes_fetched += hashed.bytes;
            let found = hashed.messages;
            ledger.call(|l| l.record_target_messages(&key.target, &key.mailbox, &found))?;
            self.verified.extend(found.iter().map(|m| m.hash));
        }
        present.extend(hashes.iter().filter(|h| self.verified.contains(h)));
        Ok(present)
    }

    /// Notes identities this pass stored on the mailbox.
    pub fn stored(&mut self, hashes: impl IntoIterator<Item = Hash>) {
        self.verified.extend(hashes);
    }
}

/// Bodies asked for in one fetch while looking by content: bounds the
/// bodies held at once.
const BODIES_PER_FETCH: usize = 16;

/// Target messages read back and hashed: each one's dedup key with its UID
/// and size, the bytes read, and whether every body asked for came back.
pub struct Hashed {
    pub messages: Vec<TargetMessage>,
    pub bytes: u64,
    /// False when some body did not come back (expunged meanwhile, or one
    /// the server cannot send): a message looked for may be that one.
    pub complete: bool,
}

/// Fetches `messages` (UID, size) and hashes each under `rule`: the one way
/// the engine looks at a target by content (the index, intent resolution,
/// confirmation).
pub async fn hash_bodies<T: MailTarget>(
    rule: crate::config::IdentityRule,
    target: &mut T,
    messages: &[(u32, u64)],
) -> Result<Hashed, RouteError> {
    let mut out = Hashed {
        messages: Vec::with_capacity(messages.len()),
        bytes: 0,
        complete: true,
    };
    for chunk in messages.chunks(BODIES_PER_FETCH) {
        let got = target.fetch(chunk).await?;
        out.complete &= got.len() == chunk.len();
        for (uid, bytes) in got {
            out.bytes += bytes.len() as u64;
            out.messages.push(TargetMessage {
                hash: dedup_key(rule, &bytes),
                uid: NonZeroU32::new(uid),
                size: Some(bytes.len() as u64),
            });
        }
    }
    Ok(out)
}
