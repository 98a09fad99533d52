//! `mailferry auth login ACCOUNT [--device]` signs an OAuth account in once
//! and stores its refresh token; `mailferry auth status` shows which OAuth
//! accounts are signed in and how long their access tokens last. Neither
//! ever prints a token, in either output format.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use crate::commands::time::utc;
use crate::commands::{exit, print_json};
use crate::config::{Account, Config, OAuthSettings, PasswordSource};
use crate::oauth::login::{self, Prompt};
use crate::oauth::{store, OAuthError, StoredToken};

/// Why `auth` could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum AuthCommandError {
    /// The account is unknown or has no `oauth`: a config matter (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The sign-in failed (exit 3).
    #[error("account {account}: {reason}")]
    SignIn { account: String, reason: String },
}

/// Every account (sources first) with `oauth`, and which kind it is.
fn oauth_accounts(config: &Config) -> Vec<(&'static str, &Account, &OAuthSettings)> {
    let sources = config.sources.iter().map(|a| ("source", a));
    let targets = config.targets.iter().map(|a| ("target", a));
    sources
        .chain(targets)
        .filter_map(|(kind, a)| match &a.password {
            PasswordSource::OAuth(settings) => Some((kind, a, settings.as_ref())),
            _ => None,
        })
        .collect()
}

/// Signs `name` in with the browser (or the device flow) and stores the
/// tokens. With `json`, the instructions go to stderr and one JSON document
/// (no token in it) to stdout.
pub async fn login(
    config: &Config,
    name: &str,
    device: bool,
    limit: Duration,
    json: bool,
) -> Result<u8, AuthCommandError> {
    let accounts = oauth_accounts(config);
    let Some((_, account, settings)) = accounts.iter().find(|(_, a, _)| a.name == name) else {
        let known: Vec<&str> = accounts.iter().map(|(_, a, _)| a.name.as_str()).collect();
        let known = if known.is_empty() {
            "none has an `oauth` key".to_string()
        } else {
            format!("accounts with `oauth`: {}", known.join(", "))
        };
        return Err(AuthCommandError::Usage(format!(
            "no OAuth account named {name:?} ({known})"
        )));
    };
    let mut show = |prompt: Prompt<'_>| {
        let text = instructions(account, &prompt, limit);
        if json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    let result = if device {
        login::device(settings, name, limit, &mut show).await
    } else {
        login::browser(settings, name, &account.username, limit, &mut show).await
    };
    let token = result.map_err(|e: OAuthError| AuthCommandError::SignIn {
        account: name.to_string(),
        reason: e.to_string(),
    })?;
    if json {
        print_json(&serde_json::json!({
            "account": name,
            "token_file": settings.token_file,
            "refresh_token": token.refresh_token.is_some(),
            "access_token_expires": token.expires_at.map(utc),
        }));
    } else {
        println!(
            "signed in: account {name}; tokens stored in {} ({})",
            settings.token_file.display(),
            validity(&token)
        );
    }
    Ok(exit::DONE)
}

/// What the person must do now, as printed.
fn instructions(account: &Account, prompt: &Prompt<'_>, limit: Duration) -> String {
    let who = format!("account {} ({})", account.name, account.username);
    match prompt {
        Prompt::OpenUrl { url, redirect } => format!(
            "To sign in {who}, open this URL in a browser on this machine:\n\n  {url}\n\n\
             Waiting up to {limit:?} for the browser to come back to {redirect}\n"
        ),
        Prompt::EnterCode {
            url,
            code,
            complete,
        } => {
            let direct = complete.map_or(String::new(), |c| format!("  (or open {c})\n"));
            format!(
                "To sign in {who}, visit {url} on any device and enter the code\n\n  {code}\n\n{direct}\
                 Waiting up to {limit:?}\n"
            )
        }
    }
}

/// "refresh token kept, access token valid until …".
fn validity(token: &StoredToken) -> String {
    let refresh = if token.refresh_token.is_some() {
        "refresh token kept"
    } else {
        "NO refresh token: sign in again when the access token expires"
    };
    match token.expires_at {
        Some(t) => format!("{refresh}, access token valid until {}", utc(t)),
        None => refresh.to_string(),
    }
}

/// One OAuth account's sign-in state, for `auth status`.
#[derive(serde::Serialize)]
struct AccountStatus {
    name: String,
    kind: &'static str,
    username: String,
    token_file: std::path::PathBuf,
    signed_in: bool,
    refresh_token: bool,
    access_token_expires: Option<String>,
    access_token_valid: bool,
    readable_by_others: bool,
    error: Option<String>,
}

/// Lists the OAuth accounts and their token files.
pub fn status(config: &Config, json: bool) -> u8 {
    let rows: Vec<AccountStatus> = oauth_accounts(config)
        .into_iter()
        .map(|(kind, account, settings)| account_status(kind, account, settings))
        .collect();
    if json {
        print_json(&serde_json::json!({ "accounts": rows }));
        return exit::DONE;
    }
    if rows.is_empty() {
        println!("no account has an `oauth` key");
    }
    for r in &rows {
        let state = match (&r.error, r.signed_in) {
            (Some(e), _) => format!("token file unusable: {e}"),
            (None, false) => format!("not signed in; run `mailferry auth login {}`", r.name),
            (None, true) if !r.refresh_token => "signed in, but no refresh token".to_string(),
            (None, true) => "signed in".to_string(),
        };
        println!("{} {:?} ({}): {state}", r.kind, r.name, r.username);
        println!("  token file: {}", r.token_file.display());
        if let Some(until) = &r.access_token_expires {
            let tense = if r.access_token_valid {
                "valid until"
            } else {
                "expired"
            };
            println!("  access token: {tense} {until} (refreshed at the next login when due)");
        }
        if r.readable_by_others {
            println!("  warning: other users can read the token file; run chmod 600 on it");
        }
    }
    exit::DONE
}

fn account_status(
    kind: &'static str,
    account: &Account,
    settings: &OAuthSettings,
) -> AccountStatus {
    let path = &settings.token_file;
    let readable_by_others = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false);
    let (token, error) = match store::read(path) {
        Ok(token) => (token, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let token = token.as_ref();
    AccountStatus {
        name: account.name.clone(),
        kind,
        username: account.username.clone(),
        token_file: path.clone(),
        signed_in: token.is_some(),
        refresh_token: token.is_some_and(|t| t.refresh_token.is_some()),
        access_token_expires: token.and_then(|t| t.expires_at).map(utc),
        access_token_valid: token
            .and_then(|t| t.expires_at)
            .is_some_and(|t| t > SystemTime::now()),
        readable_by_others,
        error,
    }
}
