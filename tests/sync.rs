//! End to end: the real `mailferry` binary against a real Dovecot, over TLS.
//! Each test ends by comparing the target with the source: nothing missing,
//! nothing twice, bytes equal; and nothing deleted without its copy.

mod support;

use support::dovecot::shared;
use support::e2e::{as_copied, corpus, count, mailferry, sorted, sync, write_config, RouteSpec};

#[test]
fn migrate_after_copy_moves_everything_exactly_once() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("msrc"), dovecot.user("mdst"));
    let mail = corpus("migrate", 500);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        dovecot,
        &[RouteSpec::new(&src, &dst, "INBOX", "\"after-copy\"")],
    );
    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "copied"),
        mail.len() as u64,
        "{reports:?}"
    );
    assert_eq!(count(&reports[0], "deleted"), mail.len() as u64);
    let want = sorted(mail.iter().map(|m| as_copied(m)).collect());
    assert_eq!(
        sorted(dovecot.messages(&dst, "INBOX")),
        want,
        "target = source, byte for byte, once each"
    );
    assert_eq!(dovecot.count(&src, "INBOX"), 0, "source emptied");

    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "copied"),
        0,
        "second pass copies nothing"
    );
    assert_eq!(dovecot.count(&dst, "INBOX"), mail.len());

    let (code, out, _) = mailferry(&config, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{}", mail.len())),
        "status shows the copies:\n{out}"
    );
}

#[test]
fn consolidating_overlapping_sources_stores_each_message_once() {
    let dovecot = shared();
    let (a, b, dst) = (dovecot.user("ca"), dovecot.user("cb"), dovecot.user("cdst"));
    let shared_mail = corpus("both", 20);
    let mut mail_a = corpus("onlya", 10);
    mail_a.extend(shared_mail.iter().cloned());
    let mut mail_b = shared_mail.clone();
    mail_b.extend(corpus("onlyb", 5));
    dovecot.load(&a, "INBOX", &mail_a);
    dovecot.load(&b, "INBOX", &mail_b);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        dovecot,
        &[
            RouteSpec::new(&a, &dst, "Merged", "\"never\""),
            RouteSpec::new(&b, &dst, "Merged", "\"never\""),
        ],
    );
    let reports = sync(&config, &[], 0);
    let copied: u64 = reports.iter().map(|r| count(r, "copied")).sum();
    let dups: u64 = reports.iter().map(|r| count(r, "duplicates")).sum();
    let mut want: Vec<Vec<u8>> = mail_a
        .iter()
        .chain(mail_b.iter())
        .map(|m| as_copied(m))
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(copied, want.len() as u64, "{reports:?}");
    assert_eq!(dups, (mail_a.len() + mail_b.len() - want.len()) as u64);
    assert_eq!(sorted(dovecot.messages(&dst, "Merged")), want);
}

#[test]
fn uidl_reset_copies_nothing_twice() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("usrc"), dovecot.user("udst"));
    let mail = corpus("reset", 30);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        dovecot,
        &[RouteSpec::new(&src, &dst, "INBOX", "\"never\"")],
    );
    sync(&config, &[], 0);
    // Recreate the maildrop with the same mail: new UIDVALIDITY, new UIDLs.
    // Dovecot takes UIDVALIDITY from the clock in seconds, so a maildrop
    // recreated within the same second would keep its UIDLs.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::remove_dir_all(dovecot.maildir_root(&src)).unwrap();
    dovecot.load(&src, "INBOX", &mail);
    let reports = sync(&config, &[], 0);
    assert_eq!(count(&reports[0], "copied"), 0, "{reports:?}");
    assert_eq!(count(&reports[0], "duplicates"), mail.len() as u64);
    assert_eq!(dovecot.count(&dst, "INBOX"), mail.len());
}

#[test]
fn one_source_two_targets_deletes_only_when_both_have_it() {
    let dovecot = shared();
    let (src, one, two) = (
        dovecot.user("tsrc"),
        dovecot.user("tone"),
        dovecot.user("ttwo"),
    );
    let mail = corpus("twice", 15);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let routes = [
        RouteSpec::new(&src, &one, "INBOX", "\"after-copy\""),
        RouteSpec::new(&src, &two, "Archive/Über", "\"after-copy\""),
    ];
    let config = write_config(dir.path(), dovecot, &routes);
    let first = format!("{}-{}-INBOX", src.name, one.name);
    let reports = sync(&config, &["--route", &first], 0);
    assert_eq!(
        count(&reports[0], "deleted"),
        0,
        "the other route has not copied yet"
    );
    assert_eq!(dovecot.count(&src, "INBOX"), mail.len());
    let reports = sync(&config, &[], 0);
    let deleted: u64 = reports.iter().map(|r| count(r, "deleted")).sum();
    assert_eq!(deleted, mail.len() as u64, "{reports:?}");
    assert_eq!(dovecot.count(&src, "INBOX"), 0);
    let want = sorted(mail.iter().map(|m| as_copied(m)).collect());
    assert_eq!(sorted(dovecot.messages(&one, "INBOX")), want);
    // On disk: Maildir++ with "." as separator and the name in modified UTF-7.
    assert_eq!(sorted(dovecot.messages(&two, "Archive.&ANw-ber")), want);
}

#[test]
fn dry_run_changes_nothing_anywhere() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("dsrc"), dovecot.user("ddst"));
    let mail = corpus("dry", 12);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        dovecot,
        &[RouteSpec::new(&src, &dst, "INBOX", "\"after-copy\"")],
    );
    let reports = sync(&config, &["--dry-run"], 0);
    assert_eq!(
        reports[0]["report"]["would_copy"].as_u64(),
        Some(mail.len() as u64)
    );
    assert_eq!(dovecot.count(&dst, "INBOX"), 0);
    assert_eq!(dovecot.count(&src, "INBOX"), mail.len());
    assert!(
        !dir.path().join("ledger.db").exists(),
        "a dry run creates no ledger"
    );
}

#[test]
fn verify_finds_a_message_removed_behind_its_back() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("vsrc"), dovecot.user("vdst"));
    let mail = corpus("verify", 20);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        dovecot,
        &[RouteSpec::new(&src, &dst, "INBOX", "\"never\"")],
    );
    sync(&config, &[], 0);
    let (code, out, err) = support::e2e::mailferry(&config, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{n} of {n} recorded messages present",
            n = mail.len()
        )),
        "{out}"
    );
    // Someone deletes one copy on the server, outside mailferry.
    let inbox = dovecot.maildir_root(&dst);
    let victim = ["cur", "new"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(inbox.join(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .find(|e| {
            std::fs::read(e.path()).is_ok_and(|b| b.windows(17).any(|w| w == b"verify message 7\r"))
        })
        .expect("the copy of message 7");
    std::fs::remove_file(victim.path()).unwrap();
    for args in [vec!["--json", "verify"], vec!["--json", "verify", "--deep"]] {
        let (code, out, err) = support::e2e::mailferry(&config, &args);
        assert_eq!(code, 1, "{args:?}: a missing copy is exit 1\n{out}{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let missing = doc["mailboxes"][0]["missing"].as_array().unwrap();
        assert_eq!(missing.len(), 1, "{args:?}: {doc}");
    }
}

#[test]
fn a_message_over_max_message_size_is_skipped_with_its_reason() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("msrc2"), dovecot.user("mdst2"));
    let mail = corpus("limit", 10);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        dovecot,
        &[RouteSpec::new(&src, &dst, "INBOX", "\"after-copy\"")],
    );
    // The corpus's big messages (about 2 and 2.6 MB; every other one is
    // under 600 kB) are over a 1 MB limit.
    let over = mail
        .iter()
        .filter(|m| as_copied(m).len() > 1_000_000)
        .count();
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "\n[[target]]",
        "max_message_size = 1000000\n\n[[target]]",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let reports = sync(&config, &[], 1);
    assert_eq!(count(&reports[0], "skipped"), over as u64, "{reports:?}");
    assert_eq!(count(&reports[0], "copied"), (mail.len() - over) as u64);
    assert_eq!(
        dovecot.count(&src, "INBOX"),
        over,
        "the skipped messages stay on the source"
    );
    let (_, out, _) = support::e2e::mailferry(&config, &["--json", "status"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let why = status["routes"][0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("limit"), "{status}");
}
