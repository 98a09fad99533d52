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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailferry::message::{identity, Hash};
use support::corpus;

use support::e2e::{mailferry, remove_ledger, spawn_mailferry};
use support::servers::changes::{as_stored_by, has_malformed_header_line};
use support::servers::readers::Imap;
use support::servers::{courier, cyrus, mailutils, popa3d, ImapServer, Pop3Server, User};

/// A POP3 source account and an IMAP target account, plain text on
/// 127.0.0.1, and one route between them.
fn write_config(
    dir: &Path,
    (src, su): (&dyn Pop3Server, &User),
    (dst, du): (&dyn ImapServer, &User),
    (delete, target_extra): (&str, &str),
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
        account("target", "dst", dst.imap_port(), du) + target_extra,
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
    let report = &doc["routes"][0]["report"];
    eprintln!("sync {}: exit {code} {report}", config.display());
    (code, report.clone(), err)
}

/// A count of a route report (`copied`, ...) or a figure of the report
/// itself (`copies_lost`, ...).
fn number(report: &serde_json::Value, key: &str) -> u64 {
    report["counts"][key]
        .as_u64()
        .or_else(|| report[key].as_u64())
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// Identities with their multiplicity.
fn counted(messages: &[Vec<u8>]) -> HashMap<Hash, usize> {
    let mut out = HashMap::new();
    for m in messages {
        *out.entry(identity(m)).or_default() += 1;
    }
    out
}

/// Whether the target stores `message` so that its identity changes: such a
/// copy cannot be recognised once the ledger is lost (Cyrus munge8bit,
/// Mailutils' cut at a NUL and rewritten header lines).
fn altered_by(target: &str, message: &[u8]) -> bool {
    let crlf = mailferry::message::to_crlf(message);
    identity(&as_stored_by(target, &crlf)) != identity(&crlf)
        || (target == "mailutils" && has_malformed_header_line(message))
}

/// The promise after a run: nothing twice on the target, nothing there the
/// source did not serve, and every served message on the target or still
/// on the source. After a lost ledger or a kill, a message the target stores
/// altered may be there twice (documented: nothing recognises it as the
/// copy, and taking a look-alike for it could delete an original). Returns how
/// many are on the target and how many of those byte-equal (CRLF) to what
/// the source served.
fn check_promise(
    (served, unstable): (&[Vec<u8>], &HashSet<Hash>),
    (src, su): (&dyn Pop3Server, &User),
    (dst, du): (&dyn ImapServer, &User),
    altered_may_repeat: bool,
) -> (usize, usize) {
    let pair = format!("{} -> {}", src.name(), dst.name());
    let on_target = dst.messages(du, "INBOX");
    let on_source = counted(&src.maildrop(su));
    let stored = counted(&on_target);
    let expected: Vec<Vec<u8>> = served
        .iter()
        .map(|m| as_stored_by(dst.name(), &mailferry::message::to_crlf(m)))
        .collect();
    let may_repeat: HashSet<Hash> = served
        .iter()
        .zip(&expected)
        .filter(|(m, _)| altered_may_repeat && altered_by(dst.name(), m))
        .map(|(_, e)| identity(e))
        .collect();
    if let Some((_, n)) = stored
        .iter()
        .find(|(h, n)| **n > 1 && !may_repeat.contains(*h))
    {
        panic!("{pair}: a message is on the target {n} times");
    }
    let wanted = counted(&expected);
    let stray = stored.keys().filter(|h| !wanted.contains_key(h)).count();
    // imap4d rewrites a malformed header line (not modelled): such a copy
    // is not the message, so mailferry keeps it on the source.
    let unmodelled = if dst.name() == "mailutils" {
        let factor = if altered_may_repeat { 2 } else { 1 };
        factor
            * served
                .iter()
                .filter(|m| has_malformed_header_line(m) && on_source.contains_key(&identity(m)))
                .count()
    } else {
        0
    };
    let first_stray = on_target
        .iter()
        .find(|m| !wanted.contains_key(&identity(m)))
        .map(|m| String::from_utf8_lossy(&m[..m.len().min(400)]).into_owned());
    let unmodelled = unmodelled + unstable.len();
    assert!(
        stray <= unmodelled,
        "{pair}: {stray} target messages are no copies ({unmodelled} explained), e.g. {first_stray:?}"
    );
    for (m, want) in served.iter().zip(&expected) {
        let there = stored.contains_key(&identity(want));
        let kept = on_source.contains_key(&identity(m)) || unstable.contains(&identity(m));
        assert!(
            there || kept,
            "{pair}: deleted from the source and not on the target: {:?}",
            String::from_utf8_lossy(&m[..m.len().min(120)])
        );
    }
    let exact: HashSet<Vec<u8>> = on_target.iter().cloned().collect();
    let byte_equal = expected.iter().filter(|m| exact.contains(*m)).count();
    (on_target.len(), byte_equal)
}

/// `verify` (with `--deep`: every copy by content): every recorded copy
/// present, except, by content, those the target stored altered (at most
/// `altered`; Cyrus munge8bit keeps UID and size, so only `--deep` sees it).
fn verify(config: &Path, deep: bool, pair: &str, altered: u64) -> u64 {
    let mut args = vec!["--json", "verify"];
    if deep {
        args.push("--deep");
    }
    let (code, out, err) = mailferry(config, &args);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("verify --json");
    let mailbox = &doc["mailboxes"][0];
    let recorded = mailbox["recorded"].as_u64().expect("recorded");
    let present = mailbox["present_by_uid"].as_u64().unwrap_or(0)
        + mailbox["present_by_content"].as_u64().unwrap_or(0);
    let missing = recorded - present;
    let allowed = if deep { altered } else { 0 };
    assert!(
        missing <= allowed,
        "{pair}: verify (deep: {deep}): {missing} missing, {allowed} altered by the target\n{out}\n{err}"
    );
    assert_eq!(
        code,
        i32::from(missing > 0),
        "{pair}: verify (deep: {deep})\n{out}\n{err}"
    );
    recorded
}

/// What the source serves once its first login has passed: GNU Mailutils'
/// pop3d rewrites the mbox at a login (adding X-UID, Status, X-UIDL, and
/// merging a message with CR-only line ends into the next one), so the
/// mail mailferry meets is the second reading, not the first. Also returns
/// the identities that still change from one login to the next (Mailutils
/// writes its fields into the *body* of a message whose header it cannot
/// find, with a new timestamp each time): a copy of such a message is of
/// the version served when it was copied.
fn settled_maildrop(src: &dyn Pop3Server, user: &User) -> (Vec<Vec<u8>>, HashSet<Hash>) {
    let first = src.maildrop(user);
    let second = src.maildrop(user);
    let third = counted(&src.maildrop(user));
    let unstable: HashSet<Hash> = second
        .iter()
        .map(|m| identity(m))
        .filter(|h| !third.contains_key(h))
        .collect();
    if src.name() != "mailutils" {
        assert_eq!(
            first.len(),
            second.len(),
            "{} changed between logins",
            src.name()
        );
        assert!(
            unstable.is_empty(),
            "{} changed mail between logins",
            src.name()
        );
    }
    (second, unstable)
}

/// The target INBOX's message count (0 when it cannot be read now).
fn exists(dst: &dyn ImapServer, user: &User) -> u32 {
    Imap::login(dst.imap_port(), &user.name, &user.password)
        .and_then(|mut imap| {
            let n = imap.examine("INBOX");
            let _ = imap.logout();
            n
        })
        .unwrap_or(0)
}

/// kill -9 of a `sync` once the target holds some of the mail (appends
/// paced so that the run is still going), then syncs until one copies
/// nothing: the promise holds right after the kill and at the end.
/// Returns a line for the matrix table.
fn kill_and_resume(src: &dyn Pop3Server, dst: &dyn ImapServer, tag: &str) -> String {
    let pair = format!("{} -> {}", src.name(), dst.name());
    let (su, du) = (src.pop3_user("ksrc"), dst.imap_user("kdst"));
    src.load(&su, &corpus::everything(&format!("{tag}-kill")));
    let (served, unstable) = settled_maildrop(src, &su);
    let dir = tempfile::tempdir().unwrap();
    let paced = "max_bytes_per_second = 600000\n";
    let config = write_config(
        dir.path(),
        (src, &su),
        (dst, &du),
        ("\"after-copy\"", paced),
    );
    let mut child = spawn_mailferry(&config, &["--json", "sync"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while Instant::now() < deadline && seen < 10 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "{pair}: the paced run ended before the kill"
        );
        seen = exists(dst, &du);
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The killed process's last APPEND may still be stored: look once the
    // mailbox stops changing (bounded).
    let mut last = (u32::MAX, 0);
    for _ in 0..50 {
        let now = exists(dst, &du);
        last = if now == last.0 {
            (now, last.1 + 1)
        } else {
            (now, 0)
        };
        if last.1 >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check_promise((&served, &unstable), (src, &su), (dst, &du), true);
    // Resume without the pacing.
    let config = write_config(dir.path(), (src, &su), (dst, &du), ("\"after-copy\"", ""));
    let mut runs = 0;
    loop {
        let (_, report, err) = sync(&config);
        runs += 1;
        if number(&report, "copied") == 0 {
            break;
        }
        assert!(
            runs < 4,
            "{pair}: still copying after {runs} syncs: {report}\n{err}"
        );
    }
    check_promise((&served, &unstable), (src, &su), (dst, &du), true);
    format!("kill -9 with {seen} on the target, {runs} syncs to finish")
}

/// The scenarios for one pair of servers.
fn matrix_pair(src: &dyn Pop3Server, dst: &dyn ImapServer) {
    let pair = format!("{} -> {}", src.name(), dst.name());
    let tag = format!("{}-{}", src.name(), dst.name());
    // Migrate with after-copy, then sync again.
    let (su, du) = (src.pop3_user("msrc"), dst.imap_user("mdst"));
    src.load(&su, &corpus::everything(&tag));
    let (served, unstable) = settled_maildrop(src, &su);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), (src, &su), (dst, &du), ("\"after-copy\"", ""));
    let (code, counts, _) = sync(&config);
    let (on_target, byte_equal) =
        check_promise((&served, &unstable), (src, &su), (dst, &du), false);
    let left = src.maildrop(&su).len();
    // A target that lost acknowledged copies gets them again in the next
    // runs; then (and at once, on a target that keeps what it acknowledges)
    // a sync copies nothing.
    let lost = number(&counts, "copies_lost");
    let (mut again_code, mut again, mut err) = sync(&config);
    let mut runs = 2;
    while number(&again, "copied") > 0 && runs < 4 && lost > 0 {
        check_promise((&served, &unstable), (src, &su), (dst, &du), false);
        (again_code, again, err) = sync(&config);
        runs += 1;
    }
    assert_eq!(
        number(&again, "copied"),
        0,
        "{pair}: sync #{runs} {again}\n{err}"
    );
    check_promise((&served, &unstable), (src, &su), (dst, &du), false);
    let altered_here = served.iter().filter(|m| altered_by(dst.name(), m)).count() as u64;
    let recorded = verify(&config, false, &pair, altered_here);
    assert!(recorded > 0, "{pair}: verify checked nothing");
    verify(&config, true, &pair, altered_here);
    // Lose the ledger of a `never` route: nothing appended again.
    let (su2, du2) = (src.pop3_user("lsrc"), dst.imap_user("ldst"));
    src.load(&su2, &corpus::realistic(&format!("{tag}-lost")));
    let (served2, unstable2) = settled_maildrop(src, &su2);
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = write_config(dir2.path(), (src, &su2), (dst, &du2), ("\"never\"", ""));
    sync(&config2);
    let before = dst.messages(&du2, "INBOX").len();
    remove_ledger(dir2.path());
    let (_, relost, err) = sync(&config2);
    // Only a copy the target stored altered can be appended again.
    let altered = served2.iter().filter(|m| altered_by(dst.name(), m)).count() as u64;
    let again = number(&relost, "copied");
    assert!(
        again <= altered,
        "{pair}: after a lost ledger {again} appended, {altered} altered by the target: {relost}\n{err}"
    );
    assert_eq!(
        dst.messages(&du2, "INBOX").len() as u64,
        before as u64 + again,
        "{pair}"
    );
    check_promise((&served2, &unstable2), (src, &su2), (dst, &du2), true);
    let killed = kill_and_resume(src, dst, &tag);
    eprintln!(
        "MATRIX {pair}: served {} | sync exit {code} copied {} failed {} deleted {} lost {lost} | on target {on_target} ({byte_equal} byte-equal) | left on source {left} | sync #{runs} exit {again_code} copied 0 | verify {recorded} present, deep ok | lost ledger: {before} on target, {again} appended ({altered} altered by the target) | {killed}",
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
fn dovecot_to_mailutils_imap4d() {
    matrix_pair(dovecot(), mailutils::shared());
}
