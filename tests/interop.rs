//! The interop matrix (issue #20): realistic mail from every POP3 server
//! into Dovecot, and from Dovecot into every IMAP server, each a real server
//! the tests start on 127.0.0.1. For each pair: migrate with `after-copy`,
//! sync again, `verify` and `verify --deep`, then lose the ledger (on a
//! `never` route) and sync again.
//!
//! The promise is checked by message identity (what mailferry dedups on),
//! with each server's documented changes applied explicitly: every message
//! the source served is on the target exactly once or still on the source,
//! and nothing is on the target that the source did not serve.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mailferry::message::{identity, Hash};
use support::corpus;
use support::e2e::mailferry;
use support::servers::{courier, cyrus, mailutils, popa3d, ImapServer, Pop3Server, User};

/// A POP3 source account and an IMAP target account, plain text on
/// 127.0.0.1, and one route between them.
fn write_config(
    dir: &Path,
    (src, su): (&dyn Pop3Server, &User),
    (dst, du): (&dyn ImapServer, &User),
    delete: &str,
) -> PathBuf {
    let account = |table: &str, name: &str, port: u16, user: &User| {
        format!(
            "\n[[{table}]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\nallow_plaintext = true\nusername = \"{}\"\npassword = \"{}\"\ntimeout = \"60s\"\n",
            user.name, user.password
        )
    };
    let text = format!(
        "[ledger]\npath = \"{}\"\n{}{}\n[[route]]\nfrom = \"src\"\nto = \"dst\"\nmailbox = \"INBOX\"\ndelete = {delete}\n",
        dir.join("ledger.db").display(),
        account("source", "src", src.pop3_port(), su),
        account("target", "dst", dst.imap_port(), du),
    );
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `sync --json`: exit code and the route's counts.
fn sync(config: &Path) -> (i32, serde_json::Value, String) {
    let (code, out, err) = mailferry(config, &["--json", "sync"]);
    assert!(
        code == 0 || code == 1,
        "sync exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, doc["routes"][0]["report"]["counts"].clone(), err)
}

fn number(counts: &serde_json::Value, key: &str) -> u64 {
    counts[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {counts}"))
}

/// What a target server documents it changes in what it stores; the
/// identity of the stored copy is that of the changed message.
fn as_stored_by(target: &str, message: &[u8]) -> Vec<u8> {
    match target {
        // munge8bit: every 8-bit byte of the header becomes 'X'.
        "cyrus" => {
            let end = message
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(message.len(), |p| p + 2);
            let mut out = message.to_vec();
            for b in &mut out[..end] {
                if *b >= 0x80 {
                    *b = b'X';
                }
            }
            out
        }
        _ => message.to_vec(),
    }
}

/// Identities with their multiplicity.
fn counted(messages: &[Vec<u8>]) -> HashMap<Hash, usize> {
    let mut out = HashMap::new();
    for m in messages {
        *out.entry(identity(m)).or_default() += 1;
    }
    out
}

/// The promise after a run: nothing twice on the target, nothing there the
/// source did not serve, and every served message on the target or still
/// on the source. Returns how many are on the target and how many of those
/// byte-equal (CRLF) to what the source served.
fn check_promise(
    served: &[Vec<u8>],
    (src, su): (&dyn Pop3Server, &User),
    (dst, du): (&dyn ImapServer, &User),
) -> (usize, usize) {
    let pair = format!("{} -> {}", src.name(), dst.name());
    let on_target = dst.messages(du, "INBOX");
    let on_source = counted(&src.maildrop(su));
    let stored = counted(&on_target);
    if let Some((_, n)) = stored.iter().find(|(_, n)| **n > 1) {
        panic!("{pair}: a message is on the target {n} times");
    }
    let expected: Vec<Vec<u8>> = served
        .iter()
        .map(|m| as_stored_by(dst.name(), &mailferry::message::to_crlf(m)))
        .collect();
    let wanted = counted(&expected);
    let stray = stored.keys().filter(|h| !wanted.contains_key(h)).count();
    assert_eq!(stray, 0, "{pair}: {stray} target messages are no copies");
    for (m, want) in served.iter().zip(&expected) {
        let there = stored.contains_key(&identity(want));
        let kept = on_source.contains_key(&identity(m));
        assert!(
            there || kept,
            "{pair}: deleted from the source and not on the target: {:?}",
            String::from_utf8_lossy(&m[..m.len().min(120)])
        );
    }
    let exact: std::collections::HashSet<Vec<u8>> = on_target.iter().cloned().collect();
    let byte_equal = expected.iter().filter(|m| exact.contains(*m)).count();
    (on_target.len(), byte_equal)
}

fn verify(config: &Path, deep: bool, pair: &str) -> u64 {
    let mut args = vec!["--json", "verify"];
    if deep {
        args.push("--deep");
    }
    let (code, out, err) = mailferry(config, &args);
    assert_eq!(code, 0, "{pair}: verify (deep: {deep})\n{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("verify --json");
    let mailbox = &doc["mailboxes"][0];
    let recorded = mailbox["recorded"].as_u64().expect("recorded");
    let present = mailbox["present_by_uid"].as_u64().unwrap_or(0)
        + mailbox["present_by_content"].as_u64().unwrap_or(0);
    assert_eq!(present, recorded, "{pair}: verify (deep: {deep}) {out}");
    recorded
}

fn remove_ledger(dir: &Path) {
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// The scenarios for one pair of servers.
fn matrix_pair(src: &dyn Pop3Server, dst: &dyn ImapServer) {
    let pair = format!("{} -> {}", src.name(), dst.name());
    let tag = format!("{}-{}", src.name(), dst.name());
    // Migrate with after-copy, then sync again.
    let (su, du) = (src.pop3_user("msrc"), dst.imap_user("mdst"));
    src.load(&su, &corpus::everything(&tag));
    let served = src.maildrop(&su);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), (src, &su), (dst, &du), "\"after-copy\"");
    let (code, counts, _) = sync(&config);
    let (on_target, byte_equal) = check_promise(&served, (src, &su), (dst, &du));
    let left = src.maildrop(&su).len();
    let (again_code, again, err) = sync(&config);
    assert_eq!(
        number(&again, "copied"),
        0,
        "{pair}: second sync {again}\n{err}"
    );
    check_promise(&served, (src, &su), (dst, &du));
    let recorded = verify(&config, false, &pair);
    assert!(recorded > 0, "{pair}: verify checked nothing");
    verify(&config, true, &pair);
    // Lose the ledger of a `never` route: nothing appended again.
    let (su2, du2) = (src.pop3_user("lsrc"), dst.imap_user("ldst"));
    src.load(&su2, &corpus::realistic(&format!("{tag}-lost")));
    let served2 = src.maildrop(&su2);
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = write_config(dir2.path(), (src, &su2), (dst, &du2), "\"never\"");
    sync(&config2);
    let before = dst.messages(&du2, "INBOX").len();
    remove_ledger(dir2.path());
    let (_, lost, err) = sync(&config2);
    assert_eq!(
        number(&lost, "copied"),
        0,
        "{pair}: after a lost ledger {lost}\n{err}"
    );
    assert_eq!(dst.messages(&du2, "INBOX").len(), before, "{pair}");
    check_promise(&served2, (src, &su2), (dst, &du2));
    eprintln!(
        "MATRIX {pair}: served {} | sync exit {code} copied {} failed {} deleted {} | on target {on_target} ({byte_equal} byte-equal) | left on source {left} | again exit {again_code} copied 0 | verify {recorded} present, deep ok | lost ledger: {before} on target, 0 appended",
        served.len(),
        number(&counts, "copied"),
        number(&counts, "failed"),
        number(&counts, "deleted"),
    );
}

fn dovecot() -> &'static support::dovecot::Dovecot {
    support::dovecot::shared()
}

#[test]
fn dovecot_to_dovecot() {
    matrix_pair(dovecot(), dovecot());
}

#[test]
fn cyrus_pop3_to_dovecot() {
    matrix_pair(cyrus::shared(), dovecot());
}

#[test]
fn courier_pop3_to_dovecot() {
    matrix_pair(courier::shared(), dovecot());
}

#[test]
fn popa3d_to_dovecot() {
    matrix_pair(popa3d::shared(), dovecot());
}

#[test]
#[ignore = "issue #20, open: 3 messages on the target are no copy of what pop3d served first (it rewrites the mbox at every login and merges a message without a blank line after its header into the next); to be investigated"]
fn mailutils_pop3_to_dovecot() {
    matrix_pair(mailutils::shared(), dovecot());
}

#[test]
fn dovecot_to_cyrus_imap() {
    matrix_pair(dovecot(), cyrus::shared());
}

#[test]
fn dovecot_to_courier_imap() {
    matrix_pair(dovecot(), courier::shared());
}

#[test]
#[ignore = "issue #20, open: imap4d loses acknowledged APPENDs (now never deleted from the source) and a second sync appends 125 again: what it serves back is not recognised yet; to be investigated"]
fn dovecot_to_mailutils_imap4d() {
    matrix_pair(dovecot(), mailutils::shared());
}
