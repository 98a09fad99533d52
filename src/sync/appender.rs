//! The append side of a pass: batches downloaded messages, dedups them
//! against the target, and appends the rest under durable intents, settling
//! each in the ledger as the server confirms it (DESIGN.md §5 steps 1–2).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use tokio_util::sync::CancellationToken;

use crate::ledger::{NewIntent, Outcome, SeenMessage};
use crate::message::{self, Hash};
use crate::retry::ErrorClass;
use crate::sync::budget::{self, Fetched, Problem};
use crate::sync::index::TargetIndex;
use crate::sync::pass::{dedup_key, PassOptions, PassReport, RoutePlan};
use crate::sync::ports::{Appended, MailTarget, MailboxState, Outgoing, RouteError};
use crate::sync::SharedLedger;

/// The append side of a pass: batches downloaded messages, dedups them, and
/// appends them under durable intents.
pub(super) struct Appender<'a, T> {
    pub(super) plan: &'a RoutePlan,
    pub(super) state: MailboxState,
    pub(super) target: &'a mut T,
    pub(super) ledger: &'a SharedLedger,
    pub(super) options: &'a PassOptions,
    pub(super) uidl_of: &'a HashMap<u32, &'a str>,
    pub(super) report: &'a mut PassReport,
    pub(super) index: TargetIndex,
    /// When appending began, for pacing.
    pub(super) started: std::time::Instant,
}

/// A message ready to append.
struct Ready {
    uidl: String,
    bytes: Vec<u8>,
    hash: Hash,
    /// Its share of the byte budget, held until it is appended and settled,
    /// so memory stays bounded by the budget whatever the batch holds.
    _budget: budget::Reservation,
}

impl<T: MailTarget> Appender<'_, T> {
    pub(super) async fn run(
        &mut self,
        mut rx: budget::Receiver,
        cancel: &CancellationToken,
    ) -> Result<(), RouteError> {
        let mut batch: Vec<Fetched> = Vec::new();
        loop {
            // Wait for one message, then take whatever else already arrived.
            let first = tokio::select! {
                m = rx.recv() => m,
                () = cancel.cancelled() => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            let mut bytes = batch_bytes(&batch);
            while batch.len() < self.options.batch_messages && bytes < self.options.batch_bytes {
                match rx.try_recv() {
                    Some(m) => {
                        bytes += m.bytes.as_ref().map_or(0, |b| b.len() as u64);
                        batch.push(m);
                    }
                    None => break,
                }
            }
            self.process(std::mem::take(&mut batch)).await?;
            // A safe point: everything appended so far is settled.
            if cancel.is_cancelled() {
                break;
            }
        }
        Ok(())
    }

    /// Hashes, records, dedups and appends one batch of downloads.
    async fn process(&mut self, batch: Vec<Fetched>) -> Result<(), RouteError> {
        let (count, bytes) = (batch.len() as u64, batch_bytes(&batch));
        let result = self.process_inner(batch).await;
        if let Some(p) = &self.options.progress {
            p.advance(&self.plan.name, count, bytes);
        }
        result
    }

    async fn process_inner(&mut self, batch: Vec<Fetched>) -> Result<(), RouteError> {
        let mut problems: Vec<(String, Problem)> = Vec::new();
        let mut ready: Vec<Ready> = Vec::new();
        for fetched in batch {
            let (msgno, bytes, reservation) = fetched.into_parts();
            let Some(uidl) = self.uidl_of.get(&msgno) else {
                continue;
            };
            match bytes {
                Err(problem) => problems.push((uidl.to_string(), problem)),
                Ok(raw) => {
                    self.report.downloaded += raw.len() as u64;
                    // POP3 already serves CRLF: keep the download, copy only
                    // when something needs fixing.
                    let bytes = match message::to_crlf(&raw) {
                        std::borrow::Cow::Borrowed(_) => raw,
                        std::borrow::Cow::Owned(fixed) => fixed,
                    };
                    let hash = dedup_key(self.plan.identity, &bytes);
                    ready.push(Ready {
                        uidl: uidl.to_string(),
                        bytes,
                        hash,
                        _budget: reservation,
                    });
                }
            }
        }
        if !problems.is_empty() {
            let outcomes: Vec<(&str, Outcome<'_>)> = problems
                .iter()
                .map(|(u, p)| match p {
                    Problem::Failed(reason) => (u.as_str(), Outcome::Failed { reason }),
                    Problem::Skipped(reason) => (u.as_str(), Outcome::Skipped { reason }),
                })
                .collect();
            self.ledger
                .call(|l| l.record_outcomes(&self.plan.key, &outcomes))?;
            for (_, outcome) in &outcomes {
                match outcome {
                    Outcome::Skipped { .. } => self.report.counts.skipped += 1,
                    _ => self.report.counts.failed += 1,
                }
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        let seen: Vec<SeenMessage<'_>> = ready
            .iter()
            .map(|r| SeenMessage {
                uidl: &r.uidl,
                size: r.bytes.len() as u64,
                hash: r.hash,
            })
            .collect();
        self.ledger.call(|l| l.record_seen(&self.plan.key, &seen))?;
        // Split where a hash repeats, so a repeat is judged only after the
        // first copy is durably settled (a duplicate may gate a DELE).
        let mut start = 0;
        while start < ready.len() {
            let mut hashes = HashSet::new();
            let end = ready[start..]
                .iter()
                .position(|r| !hashes.insert(r.hash))
                .map_or(ready.len(), |i| start + i);
            self.append_unique(&ready[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    /// Appends messages whose hashes are distinct: those already on the
    /// mailbox are recorded as duplicates, the rest appended under intents.
    async fn append_unique(&mut self, ready: &[Ready]) -> Result<(), RouteError> {
        let key = &self.plan.key;
        let candidates: Vec<(Hash, u64, Option<String>)> = ready
            .iter()
            // The Message-ID only matters while some target message is unknown.
            .map(|r| {
                let id = self
                    .index
                    .has_unknown()
                    .then(|| message::message_id(&r.bytes))
                    .flatten();
                (r.hash, r.bytes.len() as u64, id)
            })
            .collect();
        let present = self
            .index
            .present(
                self.plan,
                &candidates,
                self.target,
                self.ledger,
                self.report,
            )
            .await?;
        let (dups, fresh): (Vec<&Ready>, Vec<&Ready>) =
            ready.iter().partition(|r| present.contains(&r.hash));
        if !dups.is_empty() {
            let outcomes: Vec<(&str, Outcome<'_>)> = dups
                .iter()
                .map(|r| (r.uidl.as_str(), Outcome::Duplicate))
                .collect();
            self.ledger.call(|l| l.record_outcomes(key, &outcomes))?;
            self.report.counts.duplicates += dups.len() as u64;
            self.report.pending = self.report.pending.saturating_sub(dups.len() as u64);
        }
        if fresh.is_empty() || self.options.reconcile {
            return Ok(());
        }
        let (fresh, over_budget) = self.within_budget(fresh)?;
        if fresh.is_empty() {
            return if over_budget {
                Err(over_budget_error())
            } else {
                Ok(())
            };
        }
        let uidvalidity = NonZeroU32::new(self.state.uidvalidity);
        let uidnext_before = self.state.uidnext.and_then(NonZeroU32::new);
        let intents: Vec<NewIntent<'_>> = fresh
            .iter()
            .map(|r| NewIntent {
                route: key,
                uidl: &r.uidl,
                hash: r.hash,
                size: r.bytes.len() as u64,
                uidvalidity,
                uidnext_before,
            })
            .collect();
        let ids = self.ledger.call(|l| l.add_intents(&intents))?;
        let outgoing: Vec<Outgoing<'_>> = fresh
            .iter()
            .map(|r| Outgoing {
                bytes: &r.bytes,
                seen: self.plan.mark_seen,
            })
            .collect();
        let outcome = self.target.append(&key.mailbox, &outgoing).await;
        self.settle(&fresh, &ids, &outcome.results)?;
        match outcome.error {
            Some(e) => Err(e),
            None if outcome.results.len() < fresh.len() => Err(RouteError::new(
                ErrorClass::Fatal,
                "target answered fewer appends than were sent",
            )),
            None if over_budget => Err(over_budget_error()),
            None => {
                self.pace().await;
                Ok(())
            }
        }
    }

    /// The messages of `fresh` that fit in what is left of the byte budget
    /// (in order), and whether some did not. A message larger than a whole
    /// window's budget is recorded as skipped: waiting would never help.
    fn within_budget<'r>(
        &mut self,
        fresh: Vec<&'r Ready>,
    ) -> Result<(Vec<&'r Ready>, bool), RouteError> {
        let Some(budget) = self.options.byte_budget else {
            return Ok((fresh, false));
        };
        let used = self.report.counts.bytes;
        crate::sync::quota::apply_budget(
            fresh,
            |r| r.bytes.len() as u64,
            |r| &r.uidl,
            budget,
            used,
            "the target's",
            (self.plan, self.ledger, self.report),
        )
    }

    /// Waits as long as `bytes_per_second` asks for what was appended so far.
    async fn pace(&self) {
        let Some(rate) = self.options.bytes_per_second.filter(|r| *r > 0) else {
            return;
        };
        let due = std::time::Duration::from_secs_f64(self.report.counts.bytes as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Records what the target said about each append of a batch.
    fn settle(
        &mut self,
        fresh: &[&Ready],
        ids: &[crate::ledger::IntentId],
        results: &[Appended],
    ) -> Result<(), RouteError> {
        let key = &self.plan.key;
        let mut stored = Vec::new();
        let mut refused: Vec<(&str, Outcome<'_>)> = Vec::new();
        let mut to_drop = Vec::new();
        let mut stop: Option<RouteError> = None;
        for ((ready, id), result) in fresh.iter().zip(ids).zip(results) {
            match result {
                Appended::Stored { uid } => {
                    stored.push((*id, uid.and_then(NonZeroU32::new)));
                    self.index.stored([ready.hash]);
                    self.report.counts.copied += 1;
                    self.report.counts.bytes += ready.bytes.len() as u64;
                }
                Appended::Refused { reason, class } => {
                    to_drop.push(*id);
                    match class {
                        ErrorClass::Message => {
                            refused.push((&ready.uidl, Outcome::Failed { reason }))
                        }
                        other => {
                            stop.get_or_insert_with(|| RouteError::new(*other, reason.clone()));
                        }
                    }
                }
                Appended::Skipped { reason } => {
                    to_drop.push(*id);
                    refused.push((&ready.uidl, Outcome::Skipped { reason }));
                }
                // Stays an intent: resolved against the mailbox next time.
                Appended::Unknown => {}
            }
        }
        // Never sent, so certainly not stored: no intent to resolve later.
        to_drop.extend(ids.iter().skip(results.len()).copied());
        self.ledger.call(|l| l.settle_appended(&stored))?;
        self.report.pending = self.report.pending.saturating_sub(stored.len() as u64);
        if !refused.is_empty() {
            for (_, outcome) in &refused {
                match outcome {
                    Outcome::Skipped { .. } => self.report.counts.skipped += 1,
                    _ => self.report.counts.failed += 1,
                }
            }
            self.ledger.call(|l| l.record_outcomes(key, &refused))?;
        }
        for id in to_drop {
            self.ledger.call(|l| l.drop_intent(id))?;
        }
        stop.map_or(Ok(()), Err)
    }
}

/// The pass used up its byte budget; the runner adds when it may resume.
fn over_budget_error() -> RouteError {
    let mut e = RouteError::new(
        ErrorClass::Quota,
        "the upload budget for this window is spent",
    );
    e.budget = Some(crate::sync::ports::Budget::Upload);
    e
}

fn batch_bytes(batch: &[Fetched]) -> u64 {
    batch
        .iter()
        .map(|m| m.bytes.as_ref().map_or(0, |b| b.len() as u64))
        .sum()
}
