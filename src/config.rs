//! Configuration: the TOML model, its validation, and where secrets come from.
//!
//! [`Config::load`] is the one place raw TOML becomes a validated [`Config`]:
//! every error names the file, the line and column where known, and the key.
//! Relative paths in the file (`ledger.path`, `ca_file`, `password.file`) are
//! resolved against the directory of the config file, so a daemon started from
//! anywhere reads the same files.

mod account;
mod duration;
mod oauth;
mod provider;
mod raw;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;

pub use duration::parse_duration;
pub use oauth::OAuthSettings;
pub use provider::Provider;

/// Where the config file is looked for when `--config` is not given.
pub fn default_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("mailferry.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = xdg {
        paths.push(dir.join("mailferry").join("config.toml"));
    }
    paths
}

/// A config file that could not be found, read or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `--config` was given and none of the default paths exists.
    #[error("no config file found (tried {}); pass --config FILE", list_paths(.tried))]
    NotFound { tried: Vec<PathBuf> },
    /// The file exists (or was named) but could not be read.
    #[error("{}: cannot read config file: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{}{}: {message}", .path.display(), fmt_location(*.location))]
    Invalid {
        path: PathBuf,
        /// 1-based line and column, where known.
        location: Option<(usize, usize)>,
        message: String,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn fmt_location(location: Option<(usize, usize)>) -> String {
    match location {
        Some((line, col)) => format!(":{line}:{col}"),
        None => String::new(),
    }
}

/// A secret that could not be obtained from its configured source.
#[derive(Debug, thiserror::Error)]
#[error("account {account}: {what}: {reason}")]
pub struct SecretError {
    pub account: String,
    /// "password", or "OAuth" for a token from the token file.
    pub what: &'static str,
    pub reason: String,
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS from the first byte (RFC 8314): POP3 995, IMAP 993.
    Tls,
    /// Plain connection upgraded with `STLS` / `STARTTLS` before login; never
    /// downgraded when the server does not offer it.
    Starttls,
    /// No encryption at all; needs `allow_plaintext = true`.
    Plain,
}

/// How mailferry proves who it is to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    /// POP3 `USER`/`PASS`, IMAP `LOGIN`.
    Login,
    /// SASL PLAIN.
    Plain,
    /// SASL XOAUTH2 with an OAuth access token as the password.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth access token as the password.
    Oauthbearer,
    /// POP3 `APOP` (digest of the greeting timestamp).
    Apop,
}

/// Where an account's password (or OAuth access token) comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// Written in the config file itself.
    Inline(Secret),
    /// Read from an environment variable at each login.
    Env(String),
    /// Read from a file at each login (one trailing newline removed).
    File(PathBuf),
    /// The first line of a command's standard output, run at each login
    /// (like mbsync's `PassCmd`): how an OAuth token helper plugs in.
    Command(Vec<String>),
    /// An OAuth access token from the account's token file, refreshed at
    /// the token endpoint when it is about to expire (`oauth = { .. }`).
    OAuth(Box<OAuthSettings>),
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::Inline(_) => f.write_str("Inline(***)"),
            PasswordSource::Env(var) => write!(f, "Env({var})"),
            PasswordSource::File(path) => write!(f, "File({})", path.display()),
            PasswordSource::Command(argv) => write!(f, "Command({argv:?})"),
            PasswordSource::OAuth(settings) => write!(f, "OAuth({settings:?})"),
        }
    }
}

/// How long a password command may run before it is killed.
const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl PasswordSource {
    /// Fetches the secret now. Called at every login, so a rotated token or
    /// password is picked up without a restart. Errors never contain the
    /// secret or the command's output.
    pub async fn resolve(&self, account: &str) -> Result<Secret, SecretError> {
        let fail = |reason: String| SecretError {
            account: account.to_string(),
            what: "password",
            reason,
        };
        let value = match self {
            PasswordSource::Inline(secret) => return Ok(secret.clone()),
            PasswordSource::OAuth(settings) => {
                return crate::oauth::access_token(settings, account)
                    .await
                    .map_err(|e| SecretError {
                        account: account.to_string(),
                        what: "OAuth",
                        reason: e.with_hint(account),
                    })
            }
            PasswordSource::Env(var) => std::env::var(var)
                .map_err(|_| fail(format!("environment variable {var} is not set")))?,
            PasswordSource::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
                strip_one_newline(text)
            }
            PasswordSource::Command(argv) => run_password_command(argv)
                .await
                .map_err(|reason| fail(format!("command {:?}: {reason}", argv[0])))?,
        };
        if value.contains(['\r', '\n', '\0']) {
            return Err(fail("contains a line break or NUL byte".into()));
        }
        Ok(Secret::new(value))
    }
}

fn strip_one_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

async fn run_password_command(argv: &[String]) -> Result<String, String> {
    let child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let output = tokio::time::timeout(PASSWORD_COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("no answer within {PASSWORD_COMMAND_TIMEOUT:?}"))?
        .map_err(|e| format!("failed: {e}"))?;
    if !output.status.success() {
        return Err(format!("exited with {}", output.status));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| "output is not UTF-8".to_string())?;
    let first = text.lines().next().unwrap_or("").to_string();
    if first.is_empty() {
        return Err("printed nothing".into());
    }
    Ok(first)
}

/// One mail account: a POP3 source or an IMAP target.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: PasswordSource,
    pub auth: AuthMechanism,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server's end-entity certificate (DER). When set, the
    /// certificate must match it and the chain is not checked.
    pub tls_pin_sha256: Option<[u8; 32]>,
    pub allow_plaintext: bool,
    /// Deadline for connecting and for every read and write.
    pub timeout: Duration,
    /// At most this many connections to this account's host at once.
    pub max_connections: Option<u32>,
    /// At most this many message bytes to or from this account per day
    /// (Gmail: 500 MB of IMAP upload); enforced by the engine.
    pub max_bytes_per_day: Option<u64>,
    /// At most this many message bytes per second to or from this account.
    pub max_bytes_per_second: Option<u64>,
    /// On a source: messages larger than this are skipped (recorded with the
    /// reason) instead of downloaded; the default is the POP3 client's.
    pub max_message_size: Option<u64>,
    /// Longest protocol text accepted from the server, not message bodies: a
    /// POP3 status line (default 16 KiB), an IMAP response's text outside
    /// its literals (default 64 KiB).
    pub max_line_length: Option<usize>,
}

/// When a source message may be deleted from the POP3 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    /// Leave everything on the server.
    Never,
    /// Delete once the copy is durably settled on every route from the source.
    AfterCopy,
    /// Delete once settled and first seen at least this many days ago.
    AfterDays(u32),
}

impl fmt::Display for DeletePolicy {
    /// As written in the config file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeletePolicy::Never => f.write_str("never"),
            DeletePolicy::AfterCopy => f.write_str("after-copy"),
            DeletePolicy::AfterDays(days) => write!(f, "{{ after_days = {days} }}"),
        }
    }
}

pub use crate::message::IdentityRule;

/// One route: a POP3 source feeding one mailbox of an IMAP target.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Index into [`Config::sources`].
    pub source: usize,
    /// Index into [`Config::targets`].
    pub target: usize,
    pub mailbox: String,
    pub delete: DeletePolicy,
    pub interval: Duration,
    pub mark_seen: bool,
    pub identity: IdentityRule,
    /// Passes that may try a message the target refuses (or a download that
    /// fails) before it is given up: still not copied, still listed, never
    /// deleted from the source.
    pub max_attempts: u32,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from.
    pub path: PathBuf,
    pub ledger_path: PathBuf,
    pub metrics: Option<std::net::SocketAddr>,
    /// Routes that run at once in one process.
    pub max_parallel_routes: usize,
    /// How long a route may keep failing before the daemon's `/healthz`
    /// answers 503 (a route recovering within it is healthy).
    pub unhealthy_after: std::time::Duration,
    /// `run`: a command told (JSON on stdin) when a route has been failing
    /// longer than `unhealthy_after`, and when it recovers.
    pub notify_command: Option<Vec<String>>,
    pub sources: Vec<Account>,
    pub targets: Vec<Account>,
    pub routes: Vec<Route>,
}

impl Config {
    /// Loads `explicit`, or the first existing default path.
    pub fn locate_and_load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Config::load(path),
            None => {
                let tried = default_paths();
                match tried.iter().find(|p| p.is_file()) {
                    Some(path) => Config::load(path),
                    None => Err(ConfigError::NotFound { tried }),
                }
            }
        }
    }

    /// Reads and validates one config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Validates config text as if read from `path` (used for messages and
    /// for resolving relative paths).
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid =
            |span: Option<std::ops::Range<usize>>, message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                location: span.map(|s| line_col(text, s.start)),
                message,
            };
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_string()))?;
        raw::validate(raw, path).map_err(|e| invalid(e.span, e.message))
    }

    /// The routes selected by `--route` names (all when empty); an unknown
    /// name is an error naming it.
    pub fn select_routes(&self, names: &[String]) -> Result<Vec<&Route>, String> {
        if names.is_empty() {
            return Ok(self.routes.iter().collect());
        }
        let mut seen = HashSet::new();
        let mut selected = Vec::new();
        for name in names {
            let route = self
                .routes
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = self.routes.iter().map(|r| r.name.as_str()).collect();
                    format!("no route named {name:?} (routes: {})", known.join(", "))
                })?;
            if seen.insert(name) {
                selected.push(route);
            }
        }
        Ok(selected)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_oauth;
