//! Sharding: which routes one of N processes takes (`--shard i/N`), so a
//! migration of many accounts spreads over a job array (a Kubernetes Indexed
//! Job, a Slurm job array) with one ledger per shard.
//!
//! The unit of sharding is a group of routes that must not run apart: routes
//! that share a source (POP3 locks the maildrop) or a target mailbox (dedup
//! needs one writer), transitively. A group's shard is a stable hash of its
//! smallest route identity (source host, port and user; target host, port
//! and user; mailbox) — never of file order or config names, so reordering
//! or renaming accounts moves nothing.

use std::collections::HashMap;

use crate::config::{Account, Config, Route};

/// One shard of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Why a `--shard` value could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("--shard {0:?}: expected i/N (e.g. 0/4), /N (the index from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID), or auto")]
    Syntax(String),
    #[error("--shard {spec:?}: index {index} is not below the shard count {count}")]
    OutOfRange {
        spec: String,
        index: u32,
        count: u32,
    },
    #[error("--shard {0:?}: no index in the environment (JOB_COMPLETION_INDEX for a Kubernetes Indexed Job, SLURM_ARRAY_TASK_ID for a Slurm job array)")]
    NoIndex(String),
    #[error("--shard {spec:?}: {var}={value} is not below the shard count {count}")]
    Disagrees {
        spec: String,
        var: &'static str,
        value: String,
        count: u32,
    },
    #[error("--shard auto: the shard count is not in the environment (SLURM_ARRAY_TASK_COUNT); give it as --shard /N")]
    NoCount,
    #[error("--shard auto: this Slurm array is not a whole 0..N-1 array (a re-run of some shards?), so N is unknown; give it as --shard /N")]
    PartialArray,
}

impl Shard {
    /// Parses `i/N`, `/N` or `auto`, taking what is missing from `env`
    /// (`std::env::var` in real use).
    pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(spec.to_string());
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| syntax());
        // SLURM_ARRAY_TASK_COUNT counts the tasks of this submission, not N:
        // a re-run of some shards (`--array=2,5`) has its own count, so it
        // only gives N for a whole 0..N-1 array.
        let slurm = |var: &str| env(var).and_then(|v| v.trim().parse::<u32>().ok());
        let (index, count) = match spec.trim().split_once('/') {
            None if spec.trim() == "auto" => {
                let (var, index) =
                    env_index(&env).ok_or_else(|| ShardError::NoIndex(spec.into()))?;
                let (tasks, min, max) = (
                    slurm("SLURM_ARRAY_TASK_COUNT"),
                    slurm("SLURM_ARRAY_TASK_MIN"),
                    slurm("SLURM_ARRAY_TASK_MAX"),
                );
                match (var, tasks, min, max) {
                    ("SLURM_ARRAY_TASK_ID", Some(n), Some(0), Some(max)) if max + 1 == n => {
                        (index, n)
                    }
                    ("SLURM_ARRAY_TASK_ID", Some(_), _, _) => return Err(ShardError::PartialArray),
                    _ => return Err(ShardError::NoCount),
                }
            }
            None => return Err(syntax()),
            Some((i, n)) if !i.trim().is_empty() => (number(i)?, number(n)?),
            Some((_, n)) => {
                let count = number(n)?;
                let (var, index) =
                    env_index(&env).ok_or_else(|| ShardError::NoIndex(spec.into()))?;
                if let Some(max) = slurm("SLURM_ARRAY_TASK_MAX")
                    .filter(|m| var.starts_with("SLURM") && *m >= count)
                {
                    return Err(ShardError::Disagrees {
                        spec: spec.into(),
                        var: "SLURM_ARRAY_TASK_MAX",
                        value: max.to_string(),
                        count,
                    });
                }
                (index, count)
            }
        };
        if count == 0 || index >= count {
            return Err(ShardError::OutOfRange {
                spec: spec.into(),
                index,
                count,
            });
        }
        Ok(Shard { index, count })
    }

    /// The routes of `config` in this shard, as indexes into `config.routes`.
    pub fn routes(&self, config: &Config) -> Vec<usize> {
        let keys = group_keys(config);
        (0..config.routes.len())
            .filter(|&i| shard_of(&keys[i], self.count) == self.index)
            .collect()
    }
}

/// The scheduler's index: Kubernetes first, then Slurm.
fn env_index(env: &impl Fn(&str) -> Option<String>) -> Option<(&'static str, u32)> {
    ["JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"]
        .into_iter()
        .find_map(|var| {
            env(var)
                .and_then(|v| v.trim().parse().ok())
                .map(|i| (var, i))
        })
}

/// Keeps only this shard's routes (and substitutes `{shard}` in the ledger
/// path). Without a shard, `{shard}` becomes `all`.
pub fn apply(config: &mut Config, shard: Option<Shard>) {
    let tag = shard.map_or("all".to_string(), |s| s.index.to_string());
    let path = config
        .ledger_path
        .to_string_lossy()
        .replace("{shard}", &tag);
    config.ledger_path = path.into();
    if let Some(shard) = shard {
        let keep = shard.routes(config);
        let routes = std::mem::take(&mut config.routes);
        config.routes = routes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, r)| r)
            .collect();
    }
}

fn account_identity(a: &Account) -> String {
    format!("{}:{}:{}", a.host.to_ascii_lowercase(), a.port, a.username)
}

fn route_identity(config: &Config, r: &Route) -> String {
    let mailbox = if r.mailbox.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        &r.mailbox
    };
    format!(
        "{}\n{}\n{mailbox}",
        account_identity(&config.sources[r.source]),
        account_identity(&config.targets[r.target])
    )
}

/// For each route, the identity of its group (the smallest identity of the
/// routes it is linked to by a shared source or target mailbox).
fn group_keys(config: &Config) -> Vec<String> {
    let routes = &config.routes;
    let groups = crate::sync::plan::link_groups(routes.len(), |i| {
        let r = &routes[i];
        let source = format!("s {}", account_identity(&config.sources[r.source]));
        let identity = route_identity(config, r);
        let mailbox = format!(
            "m {}",
            identity.split_once('\n').map_or("", |(_, rest)| rest)
        );
        [source, mailbox]
    });
    let ids: Vec<String> = routes.iter().map(|r| route_identity(config, r)).collect();
    let mut smallest: HashMap<usize, &String> = HashMap::new();
    for (id, group) in ids.iter().zip(&groups) {
        let entry = smallest.entry(*group).or_insert(id);
        if id < *entry {
            *entry = id;
        }
    }
    groups.iter().map(|g| smallest[g].clone()).collect()
}

fn shard_of(key: &str, count: u32) -> u32 {
    let hash = blake3::hash(key.as_bytes());
    let first: [u8; 8] = hash.as_bytes()[..8].try_into().unwrap_or([0; 8]);
    (u64::from_le_bytes(first) % u64::from(count)) as u32
}

#[cfg(test)]
mod tests;
