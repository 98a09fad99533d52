//! The append side of a pass: batches downloaded messages, dedups them
//! against the target, and appends the rest under durable intents, settling
//! each in the ledger as the server confirms it (docs/ARCHITECTURE.md, "Exactly once", steps 2–3).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use tokio_util::sync::CancellationToken;

use crate::ledger::{NewIntent, Outcome, SeenMessage};
use crate::message::dedup_key;
use crate::message::{self, Hash};
use crate::retry::ErrorClass;
use crate::sync::byte_channel::{self, Fetched, Problem};
use crate::sync::index::TargetIndex;
use crate::sync::plan::{PassOptions, PassReport, RoutePlan};
use crate::sync::ports::{Appended, MailTarget, MailboxState, Outgoing, RouteError};
use crate::sync::SharedLedger;

/// The append side of a pass: batches downloaded messages, dedups them, and
/// appends them under durable intents.
///
/// One batch may be in flight while the next is prepared: its intents are
/// durable before it is sent, so sending batch k+1 before batch k is
/// answered changes nothing in what a crash can leave behind; it only keeps
/// the server busy while the ledger settles batch k (issue #9).
pub(super) struct Appender<'a, T: MailTarget> {
    pub(super) plan: &'a RoutePlan,
    pub(super) state: MailboxState,
    pub(super) target: &'a mut T,
    pub(super) ledger: &'a SharedLedger,
    pub(super) options: &'a PassOptions,
    pub(super) uidl_of: &'a HashMap<u32, &'a str>,
    /// Messages whose UIDL cannot name them alone (listed twice, or once a
    /// deleted message's): recorded under UIDL and content, see
    /// [`content_key`].
    pub(super) by_content: &'a HashSet<u32>,
    /// The key of every message downloaded in this session, by message
    /// number (for those: UIDL and content).
    pub(super) keys: HashMap<u32, String>,
    pub(super) report: &'a mut PassReport,
    pub(super) index: TargetIndex,
    /// When appending began, for pacing.
    pub(super) started: std::time::Instant,
    /// The batch sent and not yet answered.
    pub(super) inflight: Option<InFlight<T::Pending>>,
}

/// A batch sent to the target, waiting for its answers. Its messages keep
/// their budget reservations until then.
pub(super) struct InFlight<P> {
    fresh: Vec<Ready>,
    ids: Vec<crate::ledger::IntentId>,
    pending: P,
}

/// A message ready to append.
struct Ready {
    uidl: String,
    bytes: Vec<u8>,
    hash: Hash,
    /// Its share of the byte budget, held until it is appended and settled,
    /// so memory stays bounded by the budget whatever the batch holds.
    _budget: byte_channel::Reservation,
}

impl<T: MailTarget> Appender<'_, T> {
    pub(super) async fn run(
        &mut self,
        rx: byte_channel::Receiver,
        cancel: &CancellationToken,
    ) -> Result<(), RouteError> {
        let result = self.run_batches(rx, cancel).await;
        // Whatever ended the run, read the answers to the batch in flight:
        // what the server confirmed is settled now, not resolved next pass.
        let drained = self.drain().await;
        result.and(drained)
    }

    async fn run_batches(
        &mut self,
        mut rx: byte_channel::Receiver,
        cancel: &CancellationToken,
    ) -> Result<(), RouteError> {
        let mut batch: Vec<Fetched> = Vec::new();
        loop {
            // Nothing downloaded yet: settle the batch in flight rather than
            // wait with it (its reservations may be what the download waits for).
            let first = match rx.try_recv() {
                Some(m) => Some(m),
                None => {
                    self.drain().await?;
                    tokio::select! {
                        m = rx.recv() => m,
                        () = cancel.cancelled() => None,
                    }
                }
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
            // A safe point: every batch but the one in flight is settled, and
            // `run` settles that one.
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
            let Some(&uidl) = self.uidl_of.get(&msgno) else {
                continue;
            };
            let by_content = self.by_content.contains(&msgno);
            match bytes {
                Err(problem) if by_content => problems.push((format!("{uidl} #unread"), problem)),
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
                    let key = if by_content {
                        content_key(uidl, &bytes)
                    } else {
                        uidl.to_string()
                    };
                    self.keys.insert(msgno, key.clone());
                    ready.push(Ready {
                        uidl: key,
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
            for (key, outcome) in &outcomes {
                self.report.not_copied(key, outcome);
            }
        }
        self.drop_settled_by_content(&mut ready)?;
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
        let mut rest = ready;
        while !rest.is_empty() {
            let mut hashes = HashSet::new();
            let end = rest
                .iter()
                .position(|r| !hashes.insert(r.hash))
                .unwrap_or(rest.len());
            let tail = rest.split_off(end);
            self.append_unique(rest).await?;
            rest = tail;
        }
        Ok(())
    }

    /// Appends messages whose hashes are distinct: those already on the
    /// mailbox are recorded as duplicates, the rest appended under intents.
    async fn append_unique(&mut self, ready: Vec<Ready>) -> Result<(), RouteError> {
        // Judge with nothing in flight when the judgement could depend on it:
        // a repeat of a message in flight waits until that one is settled,
        // and looking at unknown target messages talks to the server.
        let repeats_inflight = self.inflight.as_ref().is_some_and(|f| {
            ready
                .iter()
                .any(|r| f.fresh.iter().any(|g| g.hash == r.hash))
        });
        if repeats_inflight || self.index.has_unknown() {
            self.drain().await?;
        }
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
        let (dups, fresh): (Vec<Ready>, Vec<Ready>) =
            ready.into_iter().partition(|r| present.contains(&r.hash));
        if !dups.is_empty() {
            let outcomes: Vec<(&str, Outcome<'_>)> = dups
                .iter()
                .map(|r| (r.uidl.as_str(), Outcome::Duplicate { of: Some(r.hash) }))
                .collect();
            self.ledger.call(|l| l.record_outcomes(key, &outcomes))?;
            self.report.counts.duplicates += dups.len() as u64;
            self.report.pending = self.report.pending.saturating_sub(dups.len() as u64);
        }
        if fresh.is_empty() || self.options.reconcile {
            return Ok(());
        }
        // A budget or a pace counts what is settled: no batch in flight then.
        let pipelined =
            self.options.byte_budget.is_none() && self.options.bytes_per_second.is_none();
        if !pipelined {
            self.drain().await?;
        }
        let (fresh, over_budget) = self.within_budget(fresh)?;
        if fresh.is_empty() {
            return if over_budget {
                Err(over_budget_error())
            } else {
                Ok(())
            };
        }
        let sent = self.send(fresh).await?;
        if pipelined {
            // The server works on this batch while the previous one settles.
            match self.inflight.replace(sent) {
                Some(previous) => self.finish(previous).await,
                None => Ok(()),
            }
        } else {
            self.finish(sent).await?;
            if over_budget {
                return Err(over_budget_error());
            }
            self.pace().await;
            Ok(())
        }
    }

    /// Records the intents of `fresh` durably, then sends it.
    async fn send(&mut self, fresh: Vec<Ready>) -> Result<InFlight<T::Pending>, RouteError> {
        let key = &self.plan.key;
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
        let outgoing = outgoing(&fresh, self.plan.mark_seen);
        let pending = self.target.start_append(&key.mailbox, &outgoing).await;
        drop(outgoing);
        Ok(InFlight {
            fresh,
            ids,
            pending,
        })
    }

    /// Reads the answers to a batch sent and settles it.
    async fn finish(&mut self, sent: InFlight<T::Pending>) -> Result<(), RouteError> {
        let InFlight {
            fresh,
            ids,
            pending,
        } = sent;
        let outgoing = outgoing(&fresh, self.plan.mark_seen);
        let outcome = self.target.finish_append(pending, &outgoing).await;
        self.settle(&fresh, &ids, &outcome.results)?;
        match outcome.error {
            Some(e) => Err(e),
            None if outcome.results.len() < fresh.len() => Err(RouteError::new(
                ErrorClass::Fatal,
                "target answered fewer appends than were sent",
            )),
            None => Ok(()),
        }
    }

    /// Settles the batch in flight, if there is one.
    async fn drain(&mut self) -> Result<(), RouteError> {
        match self.inflight.take() {
            Some(sent) => self.finish(sent).await,
            None => Ok(()),
        }
    }

    /// The messages of `fresh` that fit in what is left of the byte budget
    /// (in order), and whether some did not. A message larger than a whole
    /// window's budget is recorded as skipped: waiting would never help.
    fn within_budget(&mut self, fresh: Vec<Ready>) -> Result<(Vec<Ready>, bool), RouteError> {
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
        fresh: &[Ready],
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
                Appended::NotSent => to_drop.push(*id),
            }
        }
        // Never sent, so certainly not stored: no intent to resolve later.
        to_drop.extend(ids.iter().skip(results.len()).copied());
        self.ledger.call(|l| l.settle_appended(&stored, false))?;
        self.report.pending = self.report.pending.saturating_sub(stored.len() as u64);
        if !refused.is_empty() {
            for (key, outcome) in &refused {
                self.report.not_copied(key, outcome);
            }
            self.ledger.call(|l| l.record_outcomes(key, &refused))?;
            // Named by `status --messages`: what it is, not only its key.
            let refused_keys: std::collections::HashSet<&str> =
                refused.iter().map(|(k, _)| *k).collect();
            let summaries: Vec<(&str, String)> = fresh
                .iter()
                .filter(|r| refused_keys.contains(r.uidl.as_str()))
                .map(|r| (r.uidl.as_str(), message::summary(&r.bytes)))
                .collect();
            self.ledger
                .call(|l| l.record_summaries(&key.source, &summaries))?;
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

/// The target's view of a batch.
fn outgoing(fresh: &[Ready], seen: bool) -> Vec<Outgoing<'_>> {
    fresh
        .iter()
        .map(|r| Outgoing {
            bytes: &r.bytes,
            seen,
        })
        .collect()
}

fn batch_bytes(batch: &[Fetched]) -> u64 {
    batch
        .iter()
        .map(|m| m.bytes.as_ref().map_or(0, |b| b.len() as u64))
        .sum()
}

impl<T: MailTarget> Appender<'_, T> {
    /// Messages told apart by content are downloaded at every pass; those
    /// already settled under their content key are done (their key stays
    /// known for the delete step) and are not counted again.
    fn drop_settled_by_content(&mut self, ready: &mut Vec<Ready>) -> Result<(), RouteError> {
        if self.by_content.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = ready
            .iter()
            .filter(|r| r.uidl.contains(" #"))
            .map(|r| r.uidl.as_str())
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let (route, max) = (&self.plan.key, self.options.max_attempts);
        self.ledger.call(|l| l.reappeared(&route.source, &keys))?;
        let settled = self.ledger.call(|l| l.settled(route, &keys, max))?;
        ready.retain(|r| !settled.contains(&r.uidl));
        Ok(())
    }
}

/// The ledger key of a message whose UIDL cannot name it alone: the UIDL and
/// the first 64 bits of its content identity, so one message's state never
/// stands for another's. Such messages are downloaded at every pass (their
/// key is known only from their content).
pub(crate) fn content_key(uidl: &str, bytes: &[u8]) -> String {
    let hex = message::identity(bytes).to_hex();
    format!("{uidl} #{}", &hex[..16])
}
