//! `mailferry check`: validate the config, then log in to every account and
//! show what each server offers, changing nothing.

use crate::commands::{exit, print_json};
use crate::config::{Account, Config};
use crate::imap::ImapSession;
use crate::net::TlsInfo;
use crate::pop3::Pop3Session;

/// What one account's login showed.
#[derive(Debug, serde::Serialize)]
struct AccountCheck {
    kind: &'static str,
    name: String,
    server: String,
    ok: bool,
    tls: Option<String>,
    capabilities: Vec<String>,
    /// Route mailboxes on a target: name and whether it exists already.
    mailboxes: Vec<(String, bool)>,
    error: Option<String>,
}

/// Checks every account; `offline` stops after validating the config.
pub async fn run(config: &Config, json: bool, offline: bool) -> u8 {
    let mut checks = Vec::new();
    if !offline {
        for account in &config.sources {
            checks.push(check_source(account).await);
        }
        for (i, account) in config.targets.iter().enumerate() {
            let mut mailboxes: Vec<&str> = config
                .routes
                .iter()
                .filter(|r| r.target == i)
                .map(|r| r.mailbox.as_str())
                .collect();
            mailboxes.sort_unstable();
            mailboxes.dedup();
            checks.push(check_target(account, &mailboxes).await);
        }
    }
    if json {
        print_json(&serde_json::json!({
            "config": config.path,
            "ledger": config.ledger_path,
            "valid": true,
            "routes": config.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
            "accounts": checks,
        }));
    } else {
        print_human(config, &checks, offline);
    }
    if checks.iter().all(|c| c.ok) {
        exit::DONE
    } else {
        exit::ROUTE_FAILED
    }
}

fn base(kind: &'static str, account: &Account) -> AccountCheck {
    AccountCheck {
        kind,
        name: account.name.clone(),
        server: format!(
            "{}@{}:{} ({:?})",
            account.username, account.host, account.port, account.security
        )
        .to_lowercase(),
        ok: false,
        tls: None,
        capabilities: Vec::new(),
        mailboxes: Vec::new(),
        error: None,
    }
}

fn tls_text(info: Option<TlsInfo>) -> Option<String> {
    info.map(|t| format!("{} {}", t.version, t.cipher))
}

async fn check_source(account: &Account) -> AccountCheck {
    let mut check = base("source", account);
    match Pop3Session::connect(account).await {
        Ok(session) => {
            let caps = session.capabilities();
            let mut list = Vec::new();
            for (on, name) in [
                (caps.uidl, "UIDL"),
                (caps.top, "TOP"),
                (caps.pipelining, "PIPELINING"),
                (caps.resp_codes, "RESP-CODES"),
                (caps.stls, "STLS"),
                (caps.user, "USER"),
            ] {
                if on {
                    list.push(name.to_string());
                }
            }
            if !caps.sasl.is_empty() {
                list.push(format!("SASL({})", caps.sasl.join(" ")));
            }
            check.capabilities = list;
            check.tls = tls_text(session.connection().tls_info());
            check.ok = true;
            let _ = session.quit().await;
        }
        Err(e) => check.error = Some(e.to_string()),
    }
    check
}

async fn check_target(account: &Account, mailboxes: &[&str]) -> AccountCheck {
    let mut check = base("target", account);
    match ImapSession::connect(account).await {
        Ok(mut session) => {
            check.capabilities = session.capabilities().iter().map(str::to_string).collect();
            check.tls = tls_text(session.tls_info());
            check.ok = true;
            for mailbox in mailboxes {
                match session.list(mailbox).await {
                    Ok(found) => check
                        .mailboxes
                        .push((mailbox.to_string(), !found.is_empty())),
                    Err(e) => {
                        check.ok = false;
                        check.error = Some(e.to_string());
                        break;
                    }
                }
            }
            let _ = session.logout().await;
        }
        Err(e) => check.error = Some(e.to_string()),
    }
    check
}

fn print_human(config: &Config, checks: &[AccountCheck], offline: bool) {
    println!("config {} is valid", config.path.display());
    println!("ledger {}", config.ledger_path.display());
    for r in &config.routes {
        let from = &config.sources[r.source].name;
        let to = &config.targets[r.target].name;
        println!(
            "route {:?}: {from} -> {to} mailbox {:?}, delete {}",
            r.name, r.mailbox, r.delete
        );
    }
    if offline {
        return;
    }
    for c in checks {
        match &c.error {
            None => println!("{} {:?}: ok, {}", c.kind, c.name, c.server),
            Some(e) if c.ok => println!("{} {:?}: logged in, but {e}", c.kind, c.name),
            Some(e) => println!("{} {:?}: FAILED: {e}", c.kind, c.name),
        }
        if let Some(tls) = &c.tls {
            println!("  tls: {tls}");
        } else if c.ok {
            println!("  tls: none (plain text)");
        }
        if !c.capabilities.is_empty() {
            println!("  capabilities: {}", c.capabilities.join(" "));
        }
        for (mailbox, exists) in &c.mailboxes {
            let state = if *exists { "exists" } else { "will be created" };
            println!("  mailbox {mailbox:?}: {state}");
        }
    }
}
