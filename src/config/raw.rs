//! The config file as written (serde model with spans) and its validation
//! into [`super::Config`].

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::account::{account_one, RawAccount};
use super::{
    parse_duration, Account, Config, DeletePolicy, IdentityRule, PasswordSource, Route, Security,
};
use crate::secret::Secret;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    source: Vec<RawAccount>,
    #[serde(default)]
    target: Vec<RawAccount>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    metrics: Option<Spanned<String>>,
    max_parallel_routes: Option<Spanned<usize>>,
    unhealthy_after: Option<Spanned<String>>,
    notify_command: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<Spanned<String>>,
    from: Spanned<String>,
    to: Spanned<String>,
    mailbox: Option<Spanned<String>>,
    delete: Option<RawDelete>,
    interval: Option<Spanned<String>>,
    mark_seen: Option<bool>,
    identity: Option<IdentityRule>,
    max_attempts: Option<Spanned<u32>>,
}

/// A validation failure: where, and what.
pub(super) struct Invalid {
    pub span: Option<Range<usize>>,
    pub message: String,
}

pub(super) fn invalid<T>(span: Range<usize>, message: String) -> Result<T, Invalid> {
    Err(Invalid {
        span: Some(span),
        message,
    })
}

/// The kinds of account, for defaults and messages.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Source,
    Target,
}

impl Kind {
    pub(super) fn table(self) -> &'static str {
        match self {
            Kind::Source => "[[source]]",
            Kind::Target => "[[target]]",
        }
    }

    pub(super) fn default_port(self, security: Security) -> u16 {
        match (self, security) {
            (Kind::Source, Security::Tls) => 995,
            (Kind::Source, _) => 110,
            (Kind::Target, Security::Tls) => 993,
            (Kind::Target, _) => 143,
        }
    }
}

const DEFAULT_LEDGER: &str = "state/mailferry.db";
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Routes at once: enough to keep servers busy, few enough for 2 cores and
/// a provider's per-IP connection limits.
const DEFAULT_PARALLEL_ROUTES: usize = 8;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// How long a route may keep failing before `/healthz` says so.
const DEFAULT_UNHEALTHY_AFTER: Duration = Duration::from_secs(1800);
/// Passes that may try a message before it is given up (see `Route::max_attempts`).
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

pub(super) fn validate(raw: RawConfig, path: &Path) -> Result<Config, Invalid> {
    let base = path.parent().unwrap_or(Path::new("."));
    let ledger_path = match &raw.ledger.path {
        Some(p) if p.get_ref().trim().is_empty() => {
            return invalid(p.span(), "key `ledger.path` is empty".into())
        }
        Some(p) => base.join(p.get_ref()),
        None => base.join(DEFAULT_LEDGER),
    };
    let metrics = match &raw.daemon.metrics {
        None => None,
        Some(addr) => Some(addr.get_ref().parse().or_else(|_| {
            invalid(
                addr.span(),
                format!(
                    "key `daemon.metrics`: {:?} is not an address like \"127.0.0.1:9898\"",
                    addr.get_ref()
                ),
            )
        })?),
    };
    let mut names = HashMap::new();
    let sources = accounts(raw.source, Kind::Source, base, &mut names)?;
    let targets = accounts(raw.target, Kind::Target, base, &mut names)?;
    let routes = routes(raw.route, &sources, &targets)?;
    let max_parallel_routes = match &raw.daemon.max_parallel_routes {
        None => DEFAULT_PARALLEL_ROUTES,
        Some(n) if *n.get_ref() == 0 => {
            return invalid(
                n.span(),
                "key `daemon.max_parallel_routes`: must be at least 1".into(),
            )
        }
        Some(n) => *n.get_ref(),
    };
    let unhealthy_after = duration_key(
        raw.daemon.unhealthy_after.as_ref(),
        DEFAULT_UNHEALTHY_AFTER,
        "key `daemon.unhealthy_after`",
    )?;
    let notify_command = match &raw.daemon.notify_command {
        None => None,
        Some(c) if c.get_ref().is_empty() || c.get_ref()[0].trim().is_empty() => {
            return invalid(
                c.span(),
                "key `daemon.notify_command`: give the program and its arguments, e.g. [\"/usr/local/bin/page-me\"]".into(),
            )
        }
        Some(c) => Some(c.get_ref().clone()),
    };
    Ok(Config {
        path: path.to_path_buf(),
        ledger_path,
        metrics,
        max_parallel_routes,
        unhealthy_after,
        notify_command,
        sources,
        targets,
        routes,
    })
}

/// Validates one list of accounts; `seen` collects names across both lists.
fn accounts(
    raw: Vec<RawAccount>,
    kind: Kind,
    base: &Path,
    seen: &mut HashMap<String, &'static str>,
) -> Result<Vec<Account>, Invalid> {
    let mut out = Vec::with_capacity(raw.len());
    for account in raw {
        let name = account.name.get_ref().clone();
        if name.trim().is_empty() {
            return invalid(
                account.name.span(),
                format!("key `name` in {} is empty", kind.table()),
            );
        }
        if let Some(first) = seen.insert(name.clone(), kind.table()) {
            return invalid(
                account.name.span(),
                format!(
                    "key `name` of {}: duplicate account name {name:?} (already used by a {first})",
                    kind.table()
                ),
            );
        }
        out.push(account_one(account, kind, base)?);
    }
    Ok(out)
}

pub(super) fn duration_key(
    raw: Option<&Spanned<String>>,
    default: Duration,
    key: &str,
) -> Result<Duration, Invalid> {
    let Some(raw) = raw else { return Ok(default) };
    match parse_duration(raw.get_ref()) {
        Ok(d) if d.is_zero() => invalid(raw.span(), format!("{key}: must be more than zero")),
        Ok(d) => Ok(d),
        Err(e) => invalid(raw.span(), format!("{key}: {e}")),
    }
}

pub(super) fn password(
    raw: Spanned<RawPassword>,
    base: &Path,
    key: &str,
) -> Result<PasswordSource, Invalid> {
    let span = raw.span();
    match raw.into_inner() {
        RawPassword::Inline(text) => Ok(PasswordSource::Inline(Secret::new(text))),
        RawPassword::Env(var) if var.is_empty() => invalid(span, format!("{key}: `env` is empty")),
        RawPassword::Env(var) => Ok(PasswordSource::Env(var)),
        RawPassword::Command(argv) if argv.first().is_none_or(|p| p.is_empty()) => invalid(
            span,
            format!("{key}: `command` needs a program, e.g. [\"pass\", \"show\", \"mail\"]"),
        ),
        RawPassword::Command(argv) => Ok(PasswordSource::Command(argv)),
        RawPassword::File(path) => {
            let full = base.join(path);
            match std::fs::File::open(&full) {
                Ok(file) => {
                    warn_if_readable_by_others(&file, &full, "password file");
                    Ok(PasswordSource::File(full))
                }
                Err(e) => invalid(span, format!("{key}: cannot read {}: {e}", full.display())),
            }
        }
    }
}

/// Warns when `file` (a `what`, e.g. "password file") is open to others.
pub(super) fn warn_if_readable_by_others(file: &std::fs::File, path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "{what} is readable by other users; run chmod 600 on it"
            );
        }
    }
}

fn by_name(list: &[Account]) -> HashMap<&str, usize> {
    list.iter()
        .enumerate()
        .map(|(i, a)| (a.name.as_str(), i))
        .collect()
}

/// The account a route's `from` or `to` names; an unknown name is an error
/// listing the known ones.
fn find(
    by_name: &HashMap<&str, usize>,
    list: &[Account],
    name: &Spanned<String>,
    key: &str,
    table: &str,
) -> Result<usize, Invalid> {
    by_name
        .get(name.get_ref().as_str())
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = list.iter().map(|a| a.name.as_str()).take(20).collect();
            let known = match known.len() {
                0 => "none".to_string(),
                _ if list.len() > known.len() => format!("{}, …", known.join(", ")),
                _ => known.join(", "),
            };
            Invalid {
                span: Some(name.span()),
                message: format!(
                    "key `{key}` of [[route]]: no {table} named {:?} (known: {known})",
                    name.get_ref()
                ),
            }
        })
}

fn routes(
    raw: Vec<RawRoute>,
    sources: &[Account],
    targets: &[Account],
) -> Result<Vec<Route>, Invalid> {
    let mut names: HashMap<String, ()> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    // By name, so a config of 10,000 accounts loads in linear time.
    let (sources_by_name, targets_by_name) = (by_name(sources), by_name(targets));
    for r in raw {
        let source = find(&sources_by_name, sources, &r.from, "from", "[[source]]")?;
        let target = find(&targets_by_name, targets, &r.to, "to", "[[target]]")?;
        let mailbox = match &r.mailbox {
            None => "INBOX".to_string(),
            Some(m) if m.get_ref().is_empty() || m.get_ref().contains(['\r', '\n', '\0']) => {
                return invalid(
                    m.span(),
                    "key `mailbox` of [[route]]: empty or contains a line break".into(),
                )
            }
            Some(m) => m.get_ref().clone(),
        };
        let name = match &r.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return invalid(n.span(), "key `name` of [[route]] is empty".into())
            }
            Some(n) => n.get_ref().clone(),
            // "from:to": safe to type in a shell, unlike "->".
            None if mailbox == "INBOX" => format!("{}:{}", r.from.get_ref(), r.to.get_ref()),
            None => format!("{}:{}:{mailbox}", r.from.get_ref(), r.to.get_ref()),
        };
        if names.insert(name.clone(), ()).is_some() {
            let span = r.name.as_ref().map_or(r.from.span(), |n| n.span());
            return invalid(
                span,
                format!("[[route]] {name:?} is defined twice; give one of them a distinct `name`"),
            );
        }
        let key = format!("key `interval` of [[route]] {name:?}");
        let interval = duration_key(r.interval.as_ref(), DEFAULT_INTERVAL, &key)?;
        let max_attempts = match &r.max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
            Some(n) => {
                return invalid(
                    n.span(),
                    format!("key `max_attempts` of [[route]] {name:?} must be at least 1"),
                )
            }
        };
        out.push(Route {
            name,
            source,
            target,
            mailbox,
            delete: r.delete.map_or(DeletePolicy::Never, |d| d.0),
            interval,
            mark_seen: r.mark_seen.unwrap_or(false),
            identity: r.identity.unwrap_or(IdentityRule::Content),
            max_attempts,
        });
    }
    Ok(out)
}

/// `password = "..." | { env = ".." } | { file = ".." } | { command = [..] }`.
pub(super) enum RawPassword {
    Inline(String),
    Env(String),
    File(String),
    Command(Vec<String>),
}

impl<'de> Deserialize<'de> for RawPassword {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPassword;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, or one of { env = \"VAR\" }, { file = \"path\" }, { command = [\"prog\", \"arg\"] }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPassword, E> {
                Ok(RawPassword::Inline(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPassword, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty table: expected one of env, file, command",
                    ));
                };
                let value = match key.as_str() {
                    "env" => RawPassword::Env(map.next_value()?),
                    "file" => RawPassword::File(map.next_value()?),
                    "command" => RawPassword::Command(map.next_value()?),
                    other => {
                        return Err(de::Error::unknown_field(other, &["env", "file", "command"]))
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "`{extra}` given together with `{key}`: use only one password source"
                    )));
                }
                Ok(value)
            }
        }
        d.deserialize_any(V)
    }
}

/// `delete = "never" | "after-copy" | { after_days = N }`.
struct RawDelete(DeletePolicy);

impl<'de> Deserialize<'de> for RawDelete {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDelete;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"never\", \"after-copy\" or { after_days = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDelete, E> {
                match v {
                    "never" => Ok(RawDelete(DeletePolicy::Never)),
                    "after-copy" => Ok(RawDelete(DeletePolicy::AfterCopy)),
                    other => Err(de::Error::custom(format!(
                        "unknown delete policy {other:?}: expected \"never\", \"after-copy\" or {{ after_days = N }}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDelete, A::Error> {
                match map.next_key::<String>()?.as_deref() {
                    Some("after_days") => {
                        let days: u32 = map.next_value()?;
                        if let Some(extra) = map.next_key::<String>()? {
                            return Err(de::Error::unknown_field(&extra, &["after_days"]));
                        }
                        Ok(RawDelete(DeletePolicy::AfterDays(days)))
                    }
                    Some(other) => Err(de::Error::unknown_field(other, &["after_days"])),
                    None => Err(de::Error::custom(
                        "empty table: expected { after_days = N }",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}
