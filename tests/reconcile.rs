//! State you can lose, against a real Dovecot: a deleted ledger, a ledger
//! restored from an old backup, a target half-filled by another tool, a
//! target mailbox recreated behind mailferry's back. Each ends exactly once.

mod support;

use support::dovecot::shared;
use support::e2e::{
    as_copied, corpus, count, remove_ledger, sorted, sync, write_config, RouteSpec,
};

fn route<'a>(
    from: &'a support::dovecot::User,
    to: &'a support::dovecot::User,
) -> [RouteSpec<'a>; 1] {
    [RouteSpec::new(from, to, "INBOX", "\"never\"")]
}

#[test]
fn deleted_ledger_appends_nothing() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("lsrc"), dovecot.user("ldst"));
    let mail = corpus("lost", 60);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    sync(&config, &[], 0);
    remove_ledger(dir.path());
    let reports = sync(&config, &[], 0);
    assert_eq!(count(&reports[0], "copied"), 0, "{reports:?}");
    assert_eq!(count(&reports[0], "duplicates"), mail.len() as u64);
    assert_eq!(dovecot.count(&dst, "INBOX"), mail.len());
}

#[test]
fn half_copied_by_another_tool_is_completed_exactly_once() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("hsrc"), dovecot.user("hdst"));
    let mail = corpus("half", 60);
    dovecot.load(&src, "INBOX", &mail);
    // Another tool copied every third message already.
    let earlier: Vec<Vec<u8>> = mail.iter().step_by(3).map(|m| as_copied(m)).collect();
    dovecot.load(&dst, "INBOX", &earlier);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "duplicates"),
        earlier.len() as u64,
        "{reports:?}"
    );
    assert_eq!(
        count(&reports[0], "copied"),
        (mail.len() - earlier.len()) as u64
    );
    let want = sorted(mail.iter().map(|m| as_copied(m)).collect());
    assert_eq!(sorted(dovecot.messages(&dst, "INBOX")), want);
}

#[test]
fn ledger_restored_from_an_old_backup_appends_only_what_is_missing() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("bsrc"), dovecot.user("bdst"));
    let first = corpus("backup-a", 20);
    dovecot.load(&src, "INBOX", &first);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    sync(&config, &[], 0);
    let backup = tempfile::tempdir().unwrap();
    for name in ["ledger.db", "ledger.db-wal"] {
        if dir.path().join(name).exists() {
            std::fs::copy(dir.path().join(name), backup.path().join(name)).unwrap();
        }
    }
    let later = corpus("backup-b", 15);
    dovecot.load(&src, "INBOX", &later);
    sync(&config, &[], 0);
    // Restore the old ledger: it knows nothing of the 15 later copies.
    remove_ledger(dir.path());
    for name in ["ledger.db", "ledger.db-wal"] {
        if backup.path().join(name).exists() {
            std::fs::copy(backup.path().join(name), dir.path().join(name)).unwrap();
        }
    }
    let reports = sync(&config, &[], 0);
    assert_eq!(count(&reports[0], "copied"), 0, "{reports:?}");
    assert_eq!(count(&reports[0], "duplicates"), later.len() as u64);
    assert_eq!(dovecot.count(&dst, "INBOX"), first.len() + later.len());
}

#[test]
fn mailbox_recreated_with_the_same_mail_appends_nothing() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("rsrc"), dovecot.user("rdst"));
    let mail = corpus("recreated", 25);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    sync(&config, &[], 0);
    // The target mailbox is rebuilt from its own messages: new UIDVALIDITY.
    let held = dovecot.messages(&dst, "INBOX");
    std::fs::remove_dir_all(dovecot.maildir_root(&dst)).unwrap();
    dovecot.load(&dst, "INBOX", &held);
    let more = corpus("recreated-more", 5);
    dovecot.load(&src, "INBOX", &more);
    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "copied"),
        more.len() as u64,
        "{reports:?}"
    );
    let mut want: Vec<Vec<u8>> = mail
        .iter()
        .chain(more.iter())
        .map(|m| as_copied(m))
        .collect();
    want.sort();
    assert_eq!(sorted(dovecot.messages(&dst, "INBOX")), want);
}

#[test]
fn reconcile_finds_what_is_there_and_copies_nothing() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("qsrc"), dovecot.user("qdst"));
    let mail = corpus("reconcile", 40);
    dovecot.load(&src, "INBOX", &mail);
    // Half of it is on the target already, copied by some other tool.
    let earlier: Vec<Vec<u8>> = mail.iter().step_by(2).map(|m| as_copied(m)).collect();
    dovecot.load(&dst, "INBOX", &earlier);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    let (code, out, err) = support::e2e::mailferry(&config, &["--json", "reconcile"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let report = &doc["routes"][0]["report"];
    assert_eq!(
        report["counts"]["duplicates"],
        earlier.len() as u64,
        "{doc}"
    );
    assert_eq!(report["counts"]["copied"], 0, "{doc}");
    assert_eq!(report["target_indexed"], earlier.len() as u64, "{doc}");
    assert_eq!(
        dovecot.count(&dst, "INBOX"),
        earlier.len(),
        "reconcile appends nothing"
    );
    assert_eq!(
        dovecot.count(&src, "INBOX"),
        mail.len(),
        "reconcile deletes nothing"
    );
    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "copied"),
        (mail.len() - earlier.len()) as u64
    );
    assert_eq!(
        count(&reports[0], "duplicates"),
        0,
        "already settled by reconcile"
    );
    assert_eq!(dovecot.count(&dst, "INBOX"), mail.len());
}

#[test]
fn ledger_backup_and_check() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("ksrc"), dovecot.user("kdst"));
    let mail = corpus("keep", 10);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    sync(&config, &[], 0);
    let backup = dir.path().join("backup.db");
    let (code, out, err) =
        support::e2e::mailferry(&config, &["ledger", "backup", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) =
        support::e2e::mailferry(&config, &["ledger", "backup", backup.to_str().unwrap()]);
    assert_ne!(code, 0, "never overwrites");
    assert!(err.contains("backup.db"), "{err}");
    let (code, out, _) = support::e2e::mailferry(&config, &["--json", "ledger", "check"]);
    assert_eq!(code, 0, "{out}");
    let live: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(live["check"]["ok"], true);
    assert_eq!(live["check"]["source_messages"], mail.len());
    // The backup holds the same, and a sync against it copies nothing.
    remove_ledger(dir.path());
    std::fs::copy(&backup, dir.path().join("ledger.db")).unwrap();
    let (_, out, _) = support::e2e::mailferry(&config, &["--json", "ledger", "check"]);
    let restored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(restored["check"], live["check"]);
    let reports = sync(&config, &[], 0);
    assert_eq!(count(&reports[0], "copied"), 0);
    // A damaged file is refused, naming it.
    std::fs::write(
        dir.path().join("ledger.db"),
        b"not a database at all, just text",
    )
    .unwrap();
    let (code, _, err) = support::e2e::mailferry(&config, &["ledger", "check"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ledger.db"), "{err}");
}

/// Makes the source and the target message number `i`.
type MakePair = dyn Fn(usize) -> (Vec<u8>, Vec<u8>);

/// Measurement, not a test: what reconciling a 5,000-message target costs
/// when the ledger is lost. Run with
/// `cargo test --release --test reconcile -- --ignored --nocapture`.
#[test]
#[ignore]
fn reconcile_costs() {
    let dovecot = shared();
    let n = 5_000;
    // A message of exactly `size` bytes, distinguished by `tag`.
    let sized = |tag: &str, i: usize, size: usize| -> Vec<u8> {
        let head = format!("Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@x>\r\n\r\n");
        let mut m = head.into_bytes();
        m.resize(size.max(m.len() + 2) - 2, b'x');
        m.extend_from_slice(b"\r\n");
        m
    };
    let cases: [(&str, Box<MakePair>); 3] = [
        // (a) the target holds other mail, every size distinct from the source's
        (
            "a: disjoint, distinct sizes",
            Box::new(move |i| {
                (
                    sized("src", i, 2_000 + 2 * i),
                    sized("dst", i, 2_001 + 2 * i),
                )
            }),
        ),
        // (b) the target holds the same mail (a realistic lost ledger)
        (
            "b: same mail on both sides",
            Box::new(move |i| {
                let m = sized("same", i, 1_500 + (i * 7919) % 40_000);
                (m.clone(), m)
            }),
        ),
        // (c) worst case: every message of one size, half of them on the target
        (
            "c: all one size, half present",
            Box::new(move |i| (sized("one", i, 3_000), sized("one", i + (i % 2) * n, 3_000))),
        ),
    ];
    for (label, make) in cases {
        let (src, dst) = (dovecot.user("rcsrc"), dovecot.user("rcdst"));
        let (source, target): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (0..n).map(&make).unzip();
        dovecot.load(&src, "INBOX", &source);
        dovecot.load(&dst, "INBOX", &target);
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), dovecot, &route(&src, &dst));
        let started = std::time::Instant::now();
        let (code, out, err) = support::e2e::mailferry(&config, &["--json", "reconcile"]);
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(code, 0, "{err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let r = &doc["routes"][0]["report"];
        println!(
            "{label}: {n} target messages indexed {}, bodies fetched {} ({:.1} MB), matches {}, in {secs:.1} s",
            r["target_indexed"],
            r["target_bodies_fetched"],
            r["target_bytes_fetched"].as_u64().unwrap_or(0) as f64 / 1e6,
            r["counts"]["duplicates"]
        );
    }
}

#[test]
fn a_message_already_twice_on_the_target_is_not_added_a_third_time() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("twsrc"), dovecot.user("twdst"));
    let mail = corpus("twice", 10);
    dovecot.load(&src, "INBOX", &mail);
    // Another tool copied message 3 twice, and left mail of its own.
    let copy = as_copied(&mail[3]);
    let foreign = b"Subject: not from this source\r\n\r\nleave me alone\r\n".to_vec();
    dovecot.load(
        &dst,
        "INBOX",
        &[copy.clone(), copy.clone(), foreign.clone()],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    let reports = sync(&config, &[], 0);
    assert_eq!(count(&reports[0], "duplicates"), 1, "{reports:?}");
    assert_eq!(count(&reports[0], "copied"), (mail.len() - 1) as u64);
    let on_target = dovecot.messages(&dst, "INBOX");
    assert_eq!(
        on_target.iter().filter(|m| **m == copy).count(),
        2,
        "the two copies stay; none added"
    );
    assert_eq!(
        on_target.iter().filter(|m| **m == foreign).count(),
        1,
        "foreign mail untouched"
    );
    assert_eq!(on_target.len(), mail.len() + 2);
}

#[test]
fn copies_another_tool_made_with_an_extra_ignored_header_are_recognised() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("xsrc"), dovecot.user("xdst"));
    let mail = corpus("xuidl", 12);
    dovecot.load(&src, "INBOX", &mail);
    // The other tool stored its copies with a header of its own (one the
    // identity ignores), so their sizes differ from the source's. Its
    // fields go at the top of the header: after an mbox envelope line
    // (`From sender date`, not a header field) where a message has one.
    let earlier: Vec<Vec<u8>> = mail
        .iter()
        .step_by(2)
        .map(|m| {
            let copy = as_copied(m);
            let at = match copy.windows(2).position(|w| w == b"\r\n") {
                Some(eol) if copy.starts_with(b"From ") => eol + 2,
                _ => 0,
            };
            [
                &copy[..at],
                b"X-UIDL: 0123456789abcdef\r\nStatus: RO\r\n".as_slice(),
                &copy[at..],
            ]
            .concat()
        })
        .collect();
    dovecot.load(&dst, "INBOX", &earlier);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    let reports = sync(&config, &[], 0);
    assert_eq!(
        count(&reports[0], "duplicates"),
        earlier.len() as u64,
        "{reports:?}"
    );
    assert_eq!(dovecot.count(&dst, "INBOX"), mail.len());
}

/// Regression: merging into a mailbox of more than ~12,800 messages the
/// ledger doesn't know failed (their sizes were read with one `UID SEARCH
/// ALL` answer, a line over the 64 KiB limit). Also `verify` of it.
#[test]
fn merging_into_a_large_existing_mailbox_works() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("bigsrc"), dovecot.user("bigdst"));
    let mail = corpus("merge-into-big", 20);
    dovecot.load(&src, "INBOX", &mail);
    // 14,000 messages already there; two of them are copies of ours.
    let mut there: Vec<Vec<u8>> = (0..14_000)
        .map(|n| format!("Subject: old {n}\r\n\r\nold mail {n}\r\n").into_bytes())
        .collect();
    there.extend(mail.iter().take(2).map(|m| as_copied(m)));
    dovecot.load(&dst, "INBOX", &there);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), dovecot, &route(&src, &dst));
    let reports = sync(&config, &[], 0);
    let copied = mail.len() as u64 - 2;
    assert_eq!(count(&reports[0], "copied"), copied, "{reports:?}");
    assert_eq!(count(&reports[0], "duplicates"), 2, "{reports:?}");
    assert_eq!(dovecot.count(&dst, "INBOX"), 14_000 + mail.len());
    let (code, out, err) = support::e2e::mailferry(&config, &["--json", "verify"]);
    assert_eq!(code, 0, "verify\n{out}\n{err}");
}
