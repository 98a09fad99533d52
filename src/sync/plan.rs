//! From a configured route to the engine's [`RoutePlan`] and ledger key.

use crate::config::{Config, Route};
use crate::ledger::RouteKey;
use crate::sync::pass::RoutePlan;

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
