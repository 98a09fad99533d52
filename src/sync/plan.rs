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
