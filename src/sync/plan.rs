//! What a pass is about and what it did: the engine's plan and report
//! types ([`RoutePlan`], [`PassOptions`], [`PassReport`]), which the pass and
//! its parts import from here, and the step from a configured route to its
//! plan and ledger key.

use crate::config::{Config, DeletePolicy, IdentityRule, Route};
use crate::ledger::{RouteKey, RunCounts};

/// Told how a pass advances, for a progress bar. Called from the pass's task;
/// keep it cheap.
pub trait Progress: Send + Sync {
    /// The source is listed: this many messages (and bytes) to fetch.
    fn start(&self, route: &str, messages: u64, bytes: u64);
    /// This many more messages (and bytes) are decided.
    fn advance(&self, route: &str, messages: u64, bytes: u64);
}

/// How a pass behaves; the defaults suit a real run.
#[derive(Clone)]
pub struct PassOptions {
    /// Where progress goes (none: nowhere).
    pub progress: Option<std::sync::Arc<dyn Progress>>,
    /// Report what would be copied and deleted; change nothing anywhere.
    pub dry_run: bool,
    /// Only find out which source messages are already on the target
    /// (settling them as duplicates); append and delete nothing.
    pub reconcile: bool,
    /// What this pass may append of the target's daily budget; the pass
    /// stops with a quota error before going over.
    pub byte_budget: Option<ByteBudget>,
    /// Appends are paced to at most this many bytes per second.
    pub bytes_per_second: Option<u64>,
    /// What this pass may download of the source's daily budget.
    pub download_budget: Option<ByteBudget>,
    /// How long to wait for a late APPEND of a killed process before an
    /// append intent that was not found is given up (see `intents`).
    pub late_append_grace: std::time::Duration,
    /// A message that failed this many times is left as failed.
    pub max_attempts: u32,
    /// Bytes of downloaded messages held in memory at once.
    pub budget_bytes: u64,
    /// Messages per append batch (and its intents transaction).
    pub batch_messages: usize,
    /// Bytes per append batch.
    pub batch_bytes: u64,
    /// Log in to the source and the target at once. Off after a failed
    /// pass: then the target first, and the source only once the target is
    /// there, so a target outage does not cost a POP3 login per retry (a
    /// server with LOGIN-DELAY would refuse the next one).
    pub logins_at_once: bool,
}

impl std::fmt::Debug for PassOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassOptions")
            .field("dry_run", &self.dry_run)
            .field("max_attempts", &self.max_attempts)
            .field("budget_bytes", &self.budget_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            progress: None,
            dry_run: false,
            reconcile: false,
            byte_budget: None,
            bytes_per_second: None,
            download_budget: None,
            late_append_grace: std::time::Duration::from_secs(3),
            max_attempts: 3,
            budget_bytes: 16 * 1024 * 1024,
            batch_messages: 64,
            batch_bytes: 8 * 1024 * 1024,
            logins_at_once: true,
        }
    }
}

impl PassReport {
    /// Counts a message not copied in this pass, once however often.
    pub fn not_copied(&mut self, key: &str, outcome: &crate::ledger::Outcome<'_>) {
        let keys = match outcome {
            crate::ledger::Outcome::Skipped { .. } => &mut self.skipped_keys,
            crate::ledger::Outcome::Failed { .. } => &mut self.failed_keys,
            crate::ledger::Outcome::Duplicate { .. } => return,
        };
        keys.insert(key.to_string());
        self.counts.failed = self.failed_keys.len() as u64;
        self.counts.skipped = self.skipped_keys.len() as u64;
    }
}

/// A transfer budget for one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteBudget {
    /// Bytes left in the current window.
    pub left: u64,
    /// The whole window's budget: a message larger than this can never be
    /// sent and is skipped instead of waited for.
    pub max: u64,
}

/// What a route's pass is about, resolved from the config.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub name: String,
    pub key: RouteKey,
    pub delete: DeletePolicy,
    pub mark_seen: bool,
    pub identity: IdentityRule,
    /// Every route fed by the same source (this one included): a message is
    /// deleted only once it is settled on all of them.
    pub siblings: Vec<RouteKey>,
}

/// What one pass did, for the summary and the ledger's run record.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PassReport {
    pub route: String,
    pub counts: RunCounts,
    /// Messages on the source not settled when the pass ended.
    pub pending: u64,
    /// Dry run: messages (and bytes) that would be downloaded and copied
    /// unless found to be duplicates.
    pub would_copy: u64,
    pub would_copy_bytes: u64,
    /// Dry run: messages that would be deleted from the source.
    pub would_delete: u64,
    /// Bytes downloaded from the source (for its daily budget).
    pub downloaded: u64,
    /// The pass left messages behind because the source's download budget
    /// for this window is spent.
    #[serde(skip)]
    pub download_spent: bool,
    /// The source's LOGIN-DELAY: the daemon polls no more often than that.
    #[serde(skip)]
    pub login_delay: Option<std::time::Duration>,
    /// Target messages the ledger did not know, indexed by size.
    pub target_indexed: u64,
    /// Bytes of the target bodies fetched to compare.
    pub target_bytes_fetched: u64,
    /// Target messages the ledger did not know whose bodies were fetched to
    /// compare with a source message of the same size.
    pub target_bodies_fetched: u64,
    /// Leftover append intents resolved at the start: found on the target /
    /// not found (to be appended again).
    pub intents_found: u64,
    pub intents_dropped: u64,
    /// The messages counted as failed and skipped: a message that fails in
    /// each of several sessions of one `sync` is one message.
    #[serde(skip)]
    pub failed_keys: std::collections::BTreeSet<String>,
    #[serde(skip)]
    pub skipped_keys: std::collections::BTreeSet<String>,
    /// Copies the target acknowledged that a later session did not show:
    /// decided again (copied again), never deleted from the source.
    pub copies_lost: u64,
    /// Copies the target stored altered (not found as sent while messages
    /// the ledger does not know appeared): not copied again, kept.
    pub copies_altered: u64,
    pub seconds: f64,
}

/// The plan of a configured route. Siblings come from the whole config, not
/// from the routes selected for this run: a message is deleted only once
/// every route from its source has it.
pub fn plan(config: &Config, route: &Route) -> RoutePlan {
    let key = route_key(config, route);
    let siblings = config
        .routes
        .iter()
        .filter(|r| r.source == route.source)
        .map(|r| route_key(config, r))
        .collect();
    RoutePlan {
        name: route.name.clone(),
        key,
        delete: route.delete,
        mark_seen: route.mark_seen,
        identity: route.identity,
        siblings,
    }
}

/// The ledger's key for a route.
pub fn route_key(config: &Config, route: &Route) -> RouteKey {
    RouteKey::new(
        &config.sources[route.source].name,
        &config.targets[route.target].name,
        &route.mailbox,
    )
}

/// Groups items that share a key, transitively: each item gives its keys,
/// and the result is, for every item, the index of its group's
/// representative. Routes use it to find who must not run apart (a shared
/// source or target mailbox) — in `sync` and for `--shard`.
pub fn link_groups<K, I>(count: usize, keys_of: impl Fn(usize) -> I) -> Vec<usize>
where
    K: std::hash::Hash + Eq,
    I: IntoIterator<Item = K>,
{
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = (0..count).collect();
    let mut first_with: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    for i in 0..count {
        for key in keys_of(i) {
            let first = *first_with.entry(key).or_insert(i);
            let (a, b) = (root(&mut parent, first), root(&mut parent, i));
            parent[a] = b;
        }
    }
    (0..count).map(|i| root(&mut parent, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::link_groups;

    #[test]
    fn items_sharing_a_key_end_up_together_transitively() {
        let keys = [vec!["a"], vec!["b"], vec!["a", "c"], vec!["c"], vec!["d"]];
        let g = link_groups(keys.len(), |i| keys[i].clone());
        assert_eq!(g[0], g[2]);
        assert_eq!(g[2], g[3], "through the shared c");
        assert_ne!(g[0], g[1]);
        assert_ne!(g[1], g[4]);
    }
}
