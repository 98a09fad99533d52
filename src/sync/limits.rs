//! Concurrency limits of one process: how many routes run at once
//! (`[daemon] max_parallel_routes`) and how many connections each mail host
//! gets (`max_connections` of its accounts), so a migration of many accounts
//! doesn't trip a provider's abuse limits (Gmail: 15 per account).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, Route};

/// The semaphores, built from the config.
#[derive(Clone)]
pub struct Limits {
    routes: Arc<Semaphore>,
    /// Lower-cased host -> (capacity, semaphore), for hosts with a limit.
    hosts: Arc<HashMap<String, (u32, Arc<Semaphore>)>>,
}

/// What a running pass holds; dropping it lets the next one in.
pub struct Permits {
    _held: Vec<OwnedSemaphorePermit>,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let mut caps: HashMap<String, u32> = HashMap::new();
        for account in config.sources.iter().chain(&config.targets) {
            if let Some(max) = account.max_connections {
                let cap = caps.entry(account.host.to_ascii_lowercase()).or_insert(max);
                *cap = (*cap).min(max);
            }
        }
        let hosts = caps
            .into_iter()
            .map(|(host, cap)| (host, (cap, Arc::new(Semaphore::new(cap as usize)))))
            .collect();
        Limits {
            routes: Arc::new(Semaphore::new(config.max_parallel_routes)),
            hosts: Arc::new(hosts),
        }
    }

    /// Waits for a route slot and for the connections a pass of `route` opens
    /// (one to its source's host, one to its target's). Hosts are taken in
    /// name order, so passes cannot deadlock each other.
    pub async fn acquire(&self, config: &Config, route: &Route) -> Permits {
        let mut held = Vec::new();
        if let Ok(p) = self.routes.clone().acquire_owned().await {
            held.push(p);
        }
        let mut wanted: BTreeMap<String, u32> = BTreeMap::new();
        for host in [
            &config.sources[route.source].host,
            &config.targets[route.target].host,
        ] {
            *wanted.entry(host.to_ascii_lowercase()).or_default() += 1;
        }
        for (host, count) in wanted {
            if let Some((cap, sem)) = self.hosts.get(&host) {
                if let Ok(p) = sem.clone().acquire_many_owned(count.min(*cap)).await {
                    held.push(p);
                }
            }
        }
        Permits { _held: held }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(extra_daemon: &str, max_connections: &str) -> Config {
        let text = format!(
            "[daemon]\n{extra_daemon}\n\
             [[source]]\nname = \"a\"\nhost = \"Mail.example\"\nusername = \"u\"\npassword = \"p\"\n{max_connections}\n\
             [[source]]\nname = \"b\"\nhost = \"mail.example\"\nusername = \"v\"\npassword = \"p\"\n\
             [[target]]\nname = \"t\"\nhost = \"mail.example\"\nusername = \"w\"\npassword = \"p\"\n\
             [[route]]\nfrom = \"a\"\nto = \"t\"\nmailbox = \"A\"\n[[route]]\nfrom = \"b\"\nto = \"t\"\nmailbox = \"B\"\n"
        );
        Config::from_str(&text, std::path::Path::new("l.toml")).unwrap()
    }

    async fn second_waits(config: &Config) -> bool {
        let limits = Limits::new(config);
        let _first = limits.acquire(config, &config.routes[0]).await;
        let second = limits.acquire(config, &config.routes[1]);
        tokio::time::timeout(Duration::from_millis(50), second)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn host_and_route_limits_hold_passes_back() {
        assert!(!second_waits(&config("", "")).await, "no limit, no wait");
        // Two connections per pass on one host (names compared without case),
        // at most two at once: the second pass waits.
        assert!(second_waits(&config("", "max_connections = 2")).await);
        // A limit below one pass's needs still lets one pass run.
        let c = config("", "max_connections = 1");
        let limits = Limits::new(&c);
        let only =
            tokio::time::timeout(Duration::from_millis(50), limits.acquire(&c, &c.routes[0])).await;
        assert!(only.is_ok());
        assert!(second_waits(&config("max_parallel_routes = 1", "")).await);
    }
}
