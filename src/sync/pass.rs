//! One pass of one route: resolve leftover intents, list the source, fetch
//! what is unsettled, dedup, append with intents, settle, then delete what
//! the policy allows. The exactly-once protocol of docs/ARCHITECTURE.md, step by step.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::config::DeletePolicy;
use crate::ledger::UidValidityChange;
use crate::message;
use crate::message::dedup_key;
use crate::retry::ErrorClass;
use crate::sync::appender::Appender;
use crate::sync::byte_channel;
use crate::sync::index::TargetIndex;
use crate::sync::plan::{PassOptions, PassReport, RoutePlan};
use crate::sync::ports::{
    Budget, Listed, MailSource, MailTarget, MailboxState, RouteError, NO_UIDL,
};
use crate::sync::SharedLedger;

/// Runs one pass. `connect_source` is called after the target is ready and
/// leftover intents are resolved (a caller that would rather not wait for
/// the POP3 login then, like the runner, logs in beforehand and hands the
/// session over).
pub async fn run_pass<S, T, C>(
    plan: &RoutePlan,
    target: &mut T,
    connect_source: C,
    ledger: &SharedLedger,
    options: &PassOptions,
    cancel: &CancellationToken,
    report: &mut PassReport,
) -> Result<(), RouteError>
where
    S: MailSource,
    T: MailTarget,
    C: AsyncFnOnce() -> Result<S, RouteError>,
{
    let started = Instant::now();
    report.route = plan.name.clone();
    let state = target.open_mailbox(&plan.key.mailbox).await?;
    let mut change = UidValidityChange::Unchanged;
    if !options.dry_run {
        change = note_uidvalidity(plan, &state, ledger)?;
        let grace = options.late_append_grace;
        crate::sync::intents::resolve(plan, &state, target, ledger, report, grace).await?;
        if !options.reconcile {
            crate::sync::confirm::confirm(plan, target, ledger, report).await?;
        }
    }
    let mut source = connect_source().await?;
    report.login_delay = source.login_delay();
    let result = transfer(
        plan,
        &(state, change),
        &mut source,
        target,
        ledger,
        options,
        cancel,
        report,
    )
    .await;
    let result = match result {
        Ok((listing, downloaded)) => {
            match confirm_before_delete(plan, target, ledger, options, report).await {
                Ok(()) => {
                    let seen = (listing.as_slice(), &downloaded);
                    finish_source(plan, source, seen, ledger, options, report).await
                }
                Err(e) => {
                    source.quit().await;
                    Err(e)
                }
            }
        }
        Err(e) => {
            source.quit().await;
            Err(e)
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    result
}

/// Before a DELE in this pass: the copies it made are seen again in a new
/// target session (the appending one ended first), so an acknowledged
/// APPEND the server then lost is never the reason a source message goes.
async fn confirm_before_delete<T: MailTarget>(
    plan: &RoutePlan,
    target: &mut T,
    ledger: &SharedLedger,
    options: &PassOptions,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    let deleting = !matches!(plan.delete, DeletePolicy::Never);
    if options.dry_run || options.reconcile || !deleting || report.counts.copied == 0 {
        return Ok(());
    }
    let state = target.reopen(&plan.key.mailbox).await?;
    note_uidvalidity(plan, &state, ledger)?;
    crate::sync::confirm::confirm(plan, target, ledger, report).await
}

/// Keeps the messages of `todo` (in order) whose LIST sizes fit in what is
/// left of the source's download budget; says whether some did not. A
/// message larger than a whole window's budget is recorded as skipped.
fn within_download_budget(
    plan: &RoutePlan,
    todo: &mut Vec<Listed>,
    ledger: &SharedLedger,
    options: &PassOptions,
    report: &mut PassReport,
) -> Result<bool, RouteError> {
    let Some(budget) = options.download_budget else {
        return Ok(false);
    };
    let (kept, held_back) = crate::sync::quota::apply_budget(
        std::mem::take(todo),
        |m| m.size,
        |m| &m.uidl,
        budget,
        0,
        "the source's",
        (plan, ledger, report),
    )?;
    *todo = kept;
    Ok(held_back)
}

/// The pass stopped at the source's download budget; the runner adds when
/// it may resume.
pub fn download_spent() -> RouteError {
    let mut e = RouteError::new(
        ErrorClass::Quota,
        "the download budget for this window is spent",
    );
    e.budget = Some(Budget::Download);
    e
}

/// Records the mailbox's UIDVALIDITY; says whether the ledger knew it. A
/// server that gives none (0) is taken as unchanged.
fn note_uidvalidity(
    plan: &RoutePlan,
    state: &MailboxState,
    ledger: &SharedLedger,
) -> Result<UidValidityChange, RouteError> {
    let Some(uidvalidity) = NonZeroU32::new(state.uidvalidity) else {
        return Ok(UidValidityChange::Unchanged);
    };
    let change =
        ledger.call(|l| l.set_uidvalidity(&plan.key.target, &plan.key.mailbox, uidvalidity))?;
    tracing::debug!(route = %plan.name, ?change, "target mailbox selected");
    Ok(change)
}

#[allow(clippy::too_many_arguments)]
async fn transfer<S: MailSource, T: MailTarget>(
    plan: &RoutePlan,
    (state, change): &(MailboxState, UidValidityChange),
    source: &mut S,
    target: &mut T,
    ledger: &SharedLedger,
    options: &PassOptions,
    cancel: &CancellationToken,
    report: &mut PassReport,
) -> Result<(Vec<Listed>, HashSet<u32>), RouteError> {
    let mut listing = source.list().await?;
    let uidls: Vec<&str> = listing.iter().map(|m| m.uidl.as_str()).collect();
    let settled = ledger.call(|l| l.settled(&plan.key, &uidls, options.max_attempts))?;
    let repeated = repeated_uidls(&listing);
    let mut todo: Vec<Listed> = listing
        .iter()
        .filter(|m| repeated.contains(&m.uidl) || !settled.contains(&m.uidl))
        .cloned()
        .collect();
    let by_content = told_apart_by_content(plan, &todo, (&repeated, &settled), ledger)?;
    let mut keys = HashMap::new();
    let result = transfer_todo(
        plan,
        (state, change),
        (source, &mut todo, &by_content, &mut keys),
        target,
        ledger,
        options,
        cancel,
        report,
    )
    .await;
    let downloaded: HashSet<u32> = keys.keys().copied().collect();
    // A message told apart by content is deleted only under the key its
    // downloaded content gave it in this very session.
    for m in &mut listing {
        if by_content.contains(&m.msgno) {
            m.uidl = keys
                .remove(&m.msgno)
                .unwrap_or_else(|| format!("{} #undecided", m.uidl));
        }
    }
    result.map(|()| (listing, downloaded))
}

/// UIDLs the listing gives to more than one message (RFC 1939 says they are
/// unique; popa3d derives them from headers, GNU Mailutils takes a
/// message's own `X-UIDL:`), and [`NO_UIDL`] of a server without UIDL.
fn repeated_uidls(listing: &[Listed]) -> HashSet<String> {
    let mut once = HashSet::new();
    listing
        .iter()
        .filter(|m| !once.insert(m.uidl.as_str()) || m.uidl == NO_UIDL)
        .map(|m| m.uidl.clone())
        .collect()
}

/// Message numbers among `todo` whose UIDL cannot name them alone: listed
/// twice, or once a deleted message's. They are keyed by UIDL and content.
fn told_apart_by_content(
    plan: &RoutePlan,
    todo: &[Listed],
    (repeated, settled): (&HashSet<String>, &HashSet<String>),
    ledger: &SharedLedger,
) -> Result<HashSet<u32>, RouteError> {
    let uidls: Vec<&str> = todo.iter().map(|m| m.uidl.as_str()).collect();
    let deleted = if uidls.is_empty() {
        HashSet::new()
    } else {
        ledger.call(|l| l.deleted_among(&plan.key.source, &uidls))?
    };
    let by_content: HashSet<u32> = todo
        .iter()
        .filter(|m| repeated.contains(&m.uidl) || deleted.contains(&m.uidl))
        .map(|m| m.msgno)
        .collect();
    // What the ledger settled under a repeated UIDL stands for none of the
    // messages now listed under it (retired once: then it settles nothing).
    let plain: Vec<&str> = repeated
        .iter()
        .filter(|u| settled.contains(*u))
        .map(String::as_str)
        .collect();
    ledger.call(|l| l.retire(&plan.key.source, &plain))?;
    if !by_content.is_empty() {
        tracing::warn!(route = %plan.name, messages = by_content.len(), repeated = repeated.len(), "the source gives one UIDL to several messages (or reuses a deleted message's): they are told apart by content and downloaded at every pass");
    }
    Ok(by_content)
}

#[allow(clippy::too_many_arguments)]
async fn transfer_todo<S: MailSource, T: MailTarget>(
    plan: &RoutePlan,
    (state, change): (&MailboxState, &UidValidityChange),
    (source, todo, by_content, keys): (
        &mut S,
        &mut Vec<Listed>,
        &HashSet<u32>,
        &mut HashMap<u32, String>,
    ),
    target: &mut T,
    ledger: &SharedLedger,
    options: &PassOptions,
    cancel: &CancellationToken,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    if !todo.is_empty() {
        // Sizes only for what will be downloaded: a no-op poll of a large
        // leave-on-server maildrop costs one UIDL and the ledger lookup.
        let msgnos: Vec<u32> = todo.iter().map(|m| m.msgno).collect();
        let sizes = source.sizes(&msgnos).await?;
        for m in todo.iter_mut() {
            m.size = sizes.get(&m.msgno).copied().unwrap_or(m.size);
        }
    }
    report.pending = todo.len() as u64;
    tracing::info!(route = %plan.name, to_fetch = todo.len(), "source listed");
    if options.dry_run {
        report.would_copy = todo.len() as u64;
        report.would_copy_bytes = todo.iter().map(|m| m.size).sum();
        return Ok(());
    }
    if todo.is_empty() {
        return Ok(());
    }
    // Stopping at the download budget still lets this pass settle and delete
    // what it did: the runner turns the flag into a pause afterwards.
    report.download_spent = within_download_budget(plan, todo, ledger, options, report)?;
    if todo.is_empty() {
        return Ok(());
    }
    if let Some(p) = &options.progress {
        p.start(
            &plan.name,
            todo.len() as u64,
            todo.iter().map(|m| m.size).sum(),
        );
    }
    let index = TargetIndex::build(plan, *change, state, target, ledger, options.reconcile).await?;
    let todo = &*todo;
    report.target_indexed = index.indexed();
    let uidl_of: HashMap<u32, &str> = todo.iter().map(|m| (m.msgno, m.uidl.as_str())).collect();
    let wanted: Vec<(u32, u64)> = todo.iter().map(|m| (m.msgno, m.size)).collect();
    let (tx, rx) = byte_channel::channel(options.budget_bytes);
    let mut appender = Appender {
        plan,
        state: *state,
        target,
        ledger,
        options,
        uidl_of: &uidl_of,
        by_content,
        keys: HashMap::new(),
        report,
        index,
        started: std::time::Instant::now(),
        inflight: None,
    };
    let fetch = async {
        let result = source.retrieve(&wanted, &tx).await;
        drop(tx);
        result
    };
    let (fetched, appended) = tokio::join!(fetch, appender.run(rx, cancel));
    *keys = std::mem::take(&mut appender.keys);
    appended?;
    fetched?;
    if cancel.is_cancelled() {
        return Err(RouteError::new(
            ErrorClass::Transient,
            "stopped by a signal",
        ));
    }
    Ok(())
}

/// Of the messages about to be deleted, those this session downloaded were
/// decided on their own content; the others (settled in an earlier pass)
/// are downloaded now, and kept unless their content is the one the ledger
/// recorded under their key: a UIDL may since name another message (popa3d
/// derives it from headers; the one it named may have been deleted by
/// another client). Such a key is retired: the message is then told apart
/// by content and copied. Costs one download per message deleted in a
/// later pass than the one that copied it (`after_days`, a failed pass).
async fn same_content<S: MailSource>(
    plan: &RoutePlan,
    source: &mut S,
    (listing, downloaded): (&[Listed], &HashSet<u32>),
    msgnos: Vec<u32>,
    ledger: &SharedLedger,
) -> Result<Vec<u32>, RouteError> {
    let key_of: HashMap<u32, &str> = listing
        .iter()
        .filter(|m| msgnos.contains(&m.msgno) && !downloaded.contains(&m.msgno))
        .map(|m| (m.msgno, m.uidl.as_str()))
        .collect();
    if key_of.is_empty() {
        return Ok(msgnos);
    }
    let keys: Vec<&str> = key_of.values().copied().collect();
    let recorded = ledger.call(|l| l.source_hashes(&plan.key.source, &keys))?;
    let mut check: Vec<u32> = key_of.keys().copied().collect();
    check.sort_unstable();
    let sizes = source.sizes(&check).await?;
    let wanted: Vec<(u32, u64)> = check
        .iter()
        .map(|&n| (n, sizes.get(&n).copied().unwrap_or(0)))
        .collect();
    let (tx, mut rx) = byte_channel::channel(PassOptions::default().budget_bytes);
    let fetch = async {
        let result = source.retrieve(&wanted, &tx).await;
        drop(tx);
        result
    };
    let mut same = HashSet::new();
    let mut other = Vec::new();
    let compare = async {
        while let Some(fetched) = rx.recv().await {
            let (msgno, bytes, _reservation) = fetched.into_parts();
            let (Ok(raw), Some(&key)) = (bytes, key_of.get(&msgno)) else {
                continue;
            };
            let crlf = message::to_crlf(&raw);
            match recorded.get(key) {
                Some((h, _))
                    if *h == message::identity(&crlf) || *h == dedup_key(plan.identity, &crlf) =>
                {
                    same.insert(msgno);
                }
                // Recorded by an older identity (before HASH_VERSION 2): it
                // may be this message all the same; kept, not retired.
                Some((_, false)) => {}
                Some((_, true)) => other.push(key),
                None => {}
            }
        }
    };
    let (fetched, ()) = tokio::join!(fetch, compare);
    fetched?;
    if !other.is_empty() {
        tracing::warn!(route = %plan.name, count = other.len(), "a UIDL now names a message other than the one copied under it: not deleted; it will be told apart by content");
        ledger.call(|l| l.retire(&plan.key.source, &other))?;
    }
    Ok(msgnos
        .into_iter()
        .filter(|n| downloaded.contains(n) || same.contains(n))
        .collect())
}

/// Applies the delete policy, then ends the POP3 session. Only messages
/// whose copy the ledger holds as durably settled on every route from this
/// source are deleted, and only at QUIT (RFC 1939 §6).
async fn finish_source<S: MailSource>(
    plan: &RoutePlan,
    mut source: S,
    (listing, downloaded): (&[Listed], &HashSet<u32>),
    ledger: &SharedLedger,
    options: &PassOptions,
    report: &mut PassReport,
) -> Result<(), RouteError> {
    let min_age = match plan.delete {
        _ if options.reconcile => {
            source.quit().await;
            return Ok(());
        }
        DeletePolicy::Never => {
            source.quit().await;
            return Ok(());
        }
        DeletePolicy::AfterCopy => None,
        DeletePolicy::AfterDays(days) => {
            Some(std::time::Duration::from_secs(u64::from(days) * 86_400))
        }
    };
    let key = &plan.key;
    let deletable: HashSet<String> = ledger
        .call(|l| l.deletable(&key.source, &plan.siblings, min_age))?
        .into_iter()
        .collect();
    // Only what this session lists can be deleted in it; a UIDL not listed
    // may be gone already or hidden (a provider listing a window per session).
    let msgnos: Vec<u32> = listing
        .iter()
        .filter(|m| deletable.contains(&m.uidl))
        .map(|m| m.msgno)
        .collect();
    if options.dry_run || msgnos.is_empty() {
        if options.dry_run {
            report.would_delete = msgnos.len() as u64;
        }
        source.quit().await;
        return Ok(());
    }
    let msgnos = match same_content(plan, &mut source, (listing, downloaded), msgnos, ledger).await
    {
        Ok(msgnos) => msgnos,
        Err(e) => {
            source.quit().await;
            return Err(e);
        }
    };
    if msgnos.is_empty() {
        source.quit().await;
        return Ok(());
    }
    let marked: HashSet<u32> = source.delete_and_quit(&msgnos).await?.into_iter().collect();
    let uidls: Vec<&str> = listing
        .iter()
        .filter(|m| marked.contains(&m.msgno) && deletable.contains(&m.uidl))
        .map(|m| m.uidl.as_str())
        .collect();
    ledger.call(|l| l.mark_deleted(&key.source, &uidls))?;
    report.counts.deleted += uidls.len() as u64;
    tracing::info!(route = %plan.name, deleted = uidls.len(), "deleted from the source");
    Ok(())
}
