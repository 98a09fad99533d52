//! One `[[source]]` or `[[target]]` table as written, and its validation
//! into an [`Account`]: provider presets first, explicit keys over them.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::oauth::{self, RawOAuth};
use super::provider::{Preset, Provider};
use super::raw::{duration_key, invalid, password, Invalid, Kind, RawPassword, DEFAULT_TIMEOUT};
use super::{Account, AuthMechanism, PasswordSource, Security};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub name: Spanned<String>,
    provider: Option<Spanned<Provider>>,
    host: Option<Spanned<String>>,
    port: Option<u16>,
    security: Option<Spanned<Security>>,
    username: Spanned<String>,
    password: Option<Spanned<RawPassword>>,
    oauth: Option<Spanned<RawOAuth>>,
    auth: Option<Spanned<AuthMechanism>>,
    ca_file: Option<Spanned<String>>,
    tls_pin_sha256: Option<Spanned<String>>,
    allow_plaintext: Option<bool>,
    timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<u32>>,
    max_bytes_per_day: Option<Spanned<u64>>,
    max_bytes_per_second: Option<Spanned<u64>>,
    max_message_size: Option<Spanned<u64>>,
    max_line_length: Option<Spanned<u64>>,
}

pub(super) fn account_one(raw: RawAccount, kind: Kind, base: &Path) -> Result<Account, Invalid> {
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    let whose = |key: &str| format!("key `{key}` of {} {name:?}", kind.table());
    let preset = raw
        .provider
        .as_ref()
        .map(|p| p.get_ref().preset(matches!(kind, Kind::Target)));
    let host = host(
        raw.host.as_ref(),
        preset.as_ref(),
        name_span.clone(),
        &whose,
    )?;
    let security = raw
        .security
        .as_ref()
        .map(|s| *s.get_ref())
        .or(preset.as_ref().map(|p| p.security))
        .unwrap_or(Security::Tls);
    let allow_plaintext = raw.allow_plaintext.unwrap_or(false);
    if security == Security::Plain && !allow_plaintext {
        let span = raw.security.as_ref().map(|s| s.span()).unwrap_or_default();
        return invalid(
            span,
            format!(
                "{}: \"plain\" sends the password unencrypted; use \"tls\" or \"starttls\", or set allow_plaintext = true",
                whose("security")
            ),
        );
    }
    let username = raw.username.get_ref().clone();
    if username.is_empty() || username.contains(['\r', '\n', '\0']) {
        return invalid(
            raw.username.span(),
            format!("{}: empty or contains a line break", whose("username")),
        );
    }
    let auth = auth(
        raw.auth.as_ref(),
        raw.oauth.is_some(),
        kind,
        preset.as_ref(),
        &whose,
    )?;
    let password = match (raw.password, raw.oauth) {
        (Some(p), None) => password(p, base, &whose("password"))?,
        (None, Some(o)) => {
            let span = o.span();
            let settings = oauth::validate(
                o.into_inner(),
                span,
                preset.as_ref().map(|p| &p.oauth),
                base,
                &name,
                &whose,
            )?;
            PasswordSource::OAuth(Box::new(settings))
        }
        (Some(_), Some(o)) => {
            let why = "give either `password` or `oauth`, not both";
            return invalid(o.span(), format!("{}: {why}", whose("oauth")));
        }
        (None, None) => {
            let why = "required (or `oauth = { .. }` for OAuth sign-in)";
            return invalid(name_span, format!("{}: {why}", whose("password")));
        }
    };
    let ca_file = match raw.ca_file {
        None => None,
        Some(path) => {
            let full = base.join(path.get_ref());
            if let Err(e) = std::fs::metadata(&full) {
                return invalid(
                    path.span(),
                    format!("{}: cannot read {}: {e}", whose("ca_file"), full.display()),
                );
            }
            Some(full)
        }
    };
    let tls_pin_sha256 = match raw.tls_pin_sha256 {
        None => None,
        Some(pin) => match parse_pin(pin.get_ref()) {
            Some(bytes) => Some(bytes),
            None => {
                let why = "expected 64 hex digits (colons allowed): the SHA-256 of the server certificate";
                return invalid(pin.span(), format!("{}: {why}", whose("tls_pin_sha256")));
            }
        },
    };
    let timeout = duration_key(raw.timeout.as_ref(), DEFAULT_TIMEOUT, &whose("timeout"))?;
    let max_connections = at_least_one(raw.max_connections, "max_connections", &whose)?
        .or(preset.as_ref().and_then(|p| p.max_connections));
    let max_bytes_per_day = at_least_one(raw.max_bytes_per_day, "max_bytes_per_day", &whose)?
        .or(preset.as_ref().and_then(|p| p.max_bytes_per_day));
    let max_bytes_per_second =
        at_least_one(raw.max_bytes_per_second, "max_bytes_per_second", &whose)?;
    let max_message_size = at_least_one(raw.max_message_size, "max_message_size", &whose)?;
    let max_line_length = match raw.max_line_length {
        Some(n) if *n.get_ref() < MIN_LINE_LENGTH => {
            let why = format!("must be at least {MIN_LINE_LENGTH} (a server's status and response lines need room)");
            return invalid(n.span(), format!("{}: {why}", whose("max_line_length")));
        }
        Some(n) => Some(usize::try_from(n.into_inner()).unwrap_or(usize::MAX)),
        None => None,
    };
    Ok(Account {
        port: raw.port.unwrap_or_else(|| kind.default_port(security)),
        name,
        host,
        security,
        username,
        password,
        auth,
        ca_file,
        tls_pin_sha256,
        allow_plaintext,
        timeout,
        max_connections,
        max_bytes_per_day,
        max_bytes_per_second,
        max_message_size,
        max_line_length,
    })
}

/// The smallest `max_line_length` accepted: RFC 5321 §4.5.3.1.6 allows a
/// 1,000-octet line, and a server's response lines are built around that.
const MIN_LINE_LENGTH: u64 = 1024;

/// `host`, else the preset's; one of them is required.
fn host(
    raw: Option<&Spanned<String>>,
    preset: Option<&Preset>,
    name_span: std::ops::Range<usize>,
    whose: &dyn Fn(&str) -> String,
) -> Result<String, Invalid> {
    let Some(raw) = raw else {
        return match preset {
            Some(p) => Ok(p.host.to_string()),
            None => invalid(
                name_span,
                format!("{}: required (or set `provider`)", whose("host")),
            ),
        };
    };
    let host = raw.get_ref().trim().to_string();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return invalid(
            raw.span(),
            format!("{}: {:?} is not a host name", whose("host"), raw.get_ref()),
        );
    }
    Ok(host)
}

/// `auth`, else xoauth2 with `oauth` or a preset, else login; checked
/// against the account kind and the secret's source.
fn auth(
    raw: Option<&Spanned<AuthMechanism>>,
    oauth: bool,
    kind: Kind,
    preset: Option<&Preset>,
    whose: &dyn Fn(&str) -> String,
) -> Result<AuthMechanism, Invalid> {
    let span = raw.map(|a| a.span()).unwrap_or_default();
    let auth = match (raw, preset) {
        (Some(a), _) => *a.get_ref(),
        (None, Some(p)) => p.auth,
        (None, None) if oauth => AuthMechanism::Xoauth2,
        (None, None) => AuthMechanism::Login,
    };
    if let (Kind::Target, AuthMechanism::Apop) = (kind, auth) {
        return invalid(
            span,
            format!(
                "{}: \"apop\" is a POP3 mechanism; an IMAP target cannot use it",
                whose("auth")
            ),
        );
    }
    let bearer = matches!(auth, AuthMechanism::Xoauth2 | AuthMechanism::Oauthbearer);
    if oauth && !bearer {
        let why =
            "with `oauth` it must be \"xoauth2\" or \"oauthbearer\" (the token is no password)";
        return invalid(span, format!("{}: {why}", whose("auth")));
    }
    Ok(auth)
}

/// A positive count, or none.
fn at_least_one<T: Copy + PartialEq + Default>(
    raw: Option<Spanned<T>>,
    key: &str,
    whose: &dyn Fn(&str) -> String,
) -> Result<Option<T>, Invalid> {
    match raw {
        Some(n) if *n.get_ref() == T::default() => {
            invalid(n.span(), format!("{}: must be at least 1", whose(key)))
        }
        other => Ok(other.map(Spanned::into_inner)),
    }
}

/// `aa:bb:…` or `aabb…`, 32 bytes.
fn parse_pin(text: &str) -> Option<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
