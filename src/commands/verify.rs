//! `mailferry verify`: proves against the live targets that every message
//! the ledger records on a target mailbox is there.
//!
//! Cheap first: a message still under its recorded UID (same UIDVALIDITY)
//! with its recorded size counts as present. Only the rest are looked for by
//! content: bodies of the target messages of the same size are fetched and
//! hashed with the route's identity. `--deep` checks every one by content.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::commands::{exit, print_json};
use crate::config::{Config, IdentityRule, Route};
use crate::imap::ImapSession;
use crate::ledger::{Ledger, LedgerError, TargetMessage};
use crate::message::dedup_key;
use crate::message::Hash;
use crate::sync::confirm::by_size_first;

/// What `verify` found for one target mailbox.
#[derive(Debug, Default, serde::Serialize)]
struct MailboxVerdict {
    target: String,
    mailbox: String,
    recorded: u64,
    present_by_uid: u64,
    present_by_content: u64,
    bodies_fetched: u64,
    /// Copies mailferry made into the mailbox of which the ledger holds no
    /// record on it any more (the mailbox was renumbered since): they
    /// cannot be checked, and verify does not pass by checking nothing.
    unverifiable: u64,
    missing: Vec<Missing>,
    error: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct Missing {
    hash: String,
    uid: Option<u32>,
    size: Option<u64>,
}

/// Verifies the mailboxes of the selected routes.
pub async fn run(
    config: &Config,
    routes: &[&Route],
    json: bool,
    deep: bool,
) -> Result<u8, LedgerError> {
    let ledger = Ledger::open_read_only(&config.ledger_path)?;
    // One check per target mailbox, however many routes feed it.
    let mut mailboxes: BTreeMap<(usize, String), IdentityRule> = BTreeMap::new();
    for r in routes {
        mailboxes
            .entry((r.target, r.mailbox.clone()))
            .or_insert(r.identity);
    }
    let mut verdicts = Vec::new();
    for ((target, mailbox), rule) in mailboxes {
        let account = &config.targets[target];
        let records = ledger.target_messages(&account.name, &mailbox)?;
        let copies = ledger.copies_into(&account.name, &mailbox)?;
        let uidvalidity = ledger
            .uidvalidity(&account.name, &mailbox)?
            .map(|v| v.get());
        let mut verdict = MailboxVerdict {
            target: account.name.clone(),
            mailbox: mailbox.clone(),
            recorded: records.len() as u64,
            unverifiable: if records.is_empty() { copies } else { 0 },
            ..Default::default()
        };
        let check = Check {
            rule,
            deep,
            uidvalidity,
        };
        if let Err(e) = check
            .mailbox(account, &mailbox, &records, &mut verdict)
            .await
        {
            verdict.error = Some(e);
        }
        verdicts.push(verdict);
    }
    if json {
        print_json(&serde_json::json!({ "mailboxes": verdicts }));
    } else {
        print_human(&verdicts);
    }
    Ok(if verdicts.iter().any(|v| v.error.is_some()) {
        exit::ROUTE_FAILED
    } else if verdicts
        .iter()
        .any(|v| !v.missing.is_empty() || v.unverifiable > 0)
    {
        exit::SOME_FAILED
    } else {
        exit::DONE
    })
}

struct Check {
    rule: IdentityRule,
    deep: bool,
    /// The UIDVALIDITY the ledger's UIDs belong to.
    uidvalidity: Option<u32>,
}

impl Check {
    async fn mailbox(
        &self,
        account: &crate::config::Account,
        mailbox: &str,
        records: &[TargetMessage],
        verdict: &mut MailboxVerdict,
    ) -> Result<(), String> {
        let mut session = ImapSession::connect(account)
            .await
            .map_err(|e| format!("target {}: {e}", account.name))?;
        let fail = |e: crate::imap::ImapError| format!("target {}: {e}", account.name);
        let info = session.examine(mailbox).await.map_err(fail)?;
        let sizes: HashMap<u32, u64> = session
            .uid_fetch_sizes_from(None, info.exists)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|(uid, size)| (uid, u64::from(size)))
            .collect();
        let uids_valid = self.uidvalidity == Some(info.uidvalidity);
        let mut unresolved: Vec<&TargetMessage> = Vec::new();
        for record in records {
            let by_uid = uids_valid
                && !self.deep
                && record.uid.is_some_and(|uid| {
                    let on_target = sizes.get(&uid.get());
                    on_target.is_some()
                        && (record.size.is_none() || on_target == record.size.as_ref())
                });
            if by_uid {
                verdict.present_by_uid += 1;
            } else {
                unresolved.push(record);
            }
        }
        if !unresolved.is_empty() {
            let found = self
                .by_content(&mut session, &unresolved, &sizes, verdict)
                .await
                .map_err(fail)?;
            for record in unresolved {
                if found.contains(&record.hash) {
                    verdict.present_by_content += 1;
                } else {
                    verdict.missing.push(Missing {
                        hash: record.hash.to_hex(),
                        uid: record.uid.map(|u| u.get()),
                        size: record.size,
                    });
                }
            }
        }
        let _ = session.logout().await;
        Ok(())
    }

    /// Which of the records' hashes are on the mailbox: first the bodies
    /// whose size matches one of them (all, when a size is unknown), then,
    /// while some record is still not found, every other body. A size is
    /// only a hint: a server may store a message under another size than
    /// the one appended (GNU Mailutils strips `Status:` on APPEND), and a
    /// copy must never be reported missing for that.
    async fn by_content(
        &self,
        session: &mut ImapSession,
        records: &[&TargetMessage],
        sizes: &HashMap<u32, u64>,
        verdict: &mut MailboxVerdict,
    ) -> Result<HashSet<Hash>, crate::imap::ImapError> {
        let (first, rest) = by_size_first(sizes, records.iter().map(|r| r.size), &HashSet::new());
        let mut found = HashSet::new();
        self.hash_bodies(session, &first, &mut found, verdict)
            .await?;
        if records.iter().any(|r| !found.contains(&r.hash)) {
            self.hash_bodies(session, &rest, &mut found, verdict)
                .await?;
        }
        Ok(found)
    }

    async fn hash_bodies(
        &self,
        session: &mut ImapSession,
        messages: &[(u32, u64)],
        found: &mut HashSet<Hash>,
        verdict: &mut MailboxVerdict,
    ) -> Result<(), crate::imap::ImapError> {
        for chunk in messages.chunks(100) {
            for message in session.uid_fetch_sized(chunk).await? {
                verdict.bodies_fetched += 1;
                found.insert(dedup_key(self.rule, &message.body));
            }
        }
        Ok(())
    }
}

fn print_human(verdicts: &[MailboxVerdict]) {
    for v in verdicts {
        let present = v.present_by_uid + v.present_by_content;
        println!(
            "{}/{}: {present} of {} recorded messages present ({} by UID and size, {} by content, {} bodies fetched)",
            v.target, v.mailbox, v.recorded, v.present_by_uid, v.present_by_content, v.bodies_fetched
        );
        for m in &v.missing {
            let uid = m.uid.map_or("unknown".into(), |u| u.to_string());
            let size = m.size.map_or("unknown".into(), |s| s.to_string());
            println!(
                "  MISSING: identity {} (was uid {uid}, {size} bytes)",
                m.hash
            );
        }
        if v.unverifiable > 0 {
            println!(
                "  NOT CHECKED: {} messages were copied into this mailbox, but it was renumbered since (its UIDVALIDITY changed) and the ledger holds no record of them on it; run `mailferry sync` with the source still holding them, or check the mailbox by hand",
                v.unverifiable
            );
        }
        if let Some(e) = &v.error {
            println!("  could not verify: {e}");
        }
    }
}
