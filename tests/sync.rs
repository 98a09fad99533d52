//! End to end: the real `mailferry` binary against a real Dovecot, over TLS.
//! Each test ends by comparing the target with the source: nothing missing,
//! nothing twice, bytes equal; and nothing deleted without its copy.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::dovecot::{shared, Dovecot, User};

/// A route in a test config.
struct RouteSpec<'a> {
    from: &'a User,
    to: &'a User,
    mailbox: &'a str,
    delete: &'a str,
}

/// Writes a config for these routes (every account over implicit TLS,
/// trusting the test CA) and returns its path.
fn write_config(dir: &Path, dovecot: &Dovecot, routes: &[RouteSpec<'_>]) -> PathBuf {
    let ca = dovecot.ca_file();
    let mut text = format!("[ledger]\npath = \"{}\"\n", dir.join("ledger.db").display());
    let mut sources = Vec::new();
    let mut targets = Vec::new();
    for r in routes {
        if !sources.contains(&r.from.name) {
            sources.push(r.from.name.clone());
            text += &format!(
                "\n[[source]]\nname = \"{n}\"\nhost = \"localhost\"\nport = {p}\nusername = \"{n}\"\npassword = \"{pw}\"\nca_file = \"{ca}\"\ntimeout = \"20s\"\n",
                n = r.from.name,
                p = dovecot.pop3s_port(),
                pw = r.from.password,
                ca = ca.display()
            );
        }
    }
    for r in routes {
        if !targets.contains(&r.to.name) {
            targets.push(r.to.name.clone());
            text += &format!(
                "\n[[target]]\nname = \"{n}\"\nhost = \"localhost\"\nport = {p}\nusername = \"{n}\"\npassword = \"{pw}\"\nca_file = \"{ca}\"\ntimeout = \"20s\"\n",
                n = r.to.name,
                p = dovecot.imaps_port(),
                pw = r.to.password,
                ca = ca.display()
            );
        }
    }
    for r in routes {
        text += &format!(
            "\n[[route]]\nname = \"{}-{}-{}\"\nfrom = \"{}\"\nto = \"{}\"\nmailbox = \"{}\"\ndelete = {}\n",
            r.from.name, r.to.name, r.mailbox, r.from.name, r.to.name, r.mailbox, r.delete
        );
    }
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs mailferry with a deadline; returns (exit code, stdout, stderr).
fn mailferry(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailferry");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailferry {args:?} did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sync --json`, asserting the exit code; the per-route reports.
fn sync(config: &Path, extra: &[&str], want: i32) -> Vec<serde_json::Value> {
    let mut args = vec!["--json", "sync"];
    args.extend_from_slice(extra);
    let (code, out, err) = mailferry(config, &args);
    assert_eq!(code, want, "sync exit code\nstdout:\n{out}\nstderr:\n{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    doc["routes"].as_array().expect("routes").clone()
}

fn count(report: &serde_json::Value, key: &str) -> u64 {
    report["report"]["counts"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// What a source message looks like once copied: as POP3 serves it (CRLF,
/// a final line break added), CRLF-normalised by mailferry.
fn as_copied(message: &[u8]) -> Vec<u8> {
    let mut served = Dovecot::as_served(message);
    if !served.ends_with(b"\r\n") {
        served.extend_from_slice(b"\r\n");
    }
    mailferry::message::to_crlf(&served).into_owned()
}

fn sorted(mut messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    messages.sort();
    messages
}

/// `n` ordinary messages plus the edge cases a migration meets.
fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    let mut mail: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!(
                "From: sender{i}@example.org\nTo: someone@example.com\nSubject: {tag} message {i}\nMessage-ID: <{tag}-{i}@example.org>\nDate: Mon, 2 Mar 2020 10:{:02}:00 +0100\n\nBody of {tag} {i}.\n{}\n",
                i % 60,
                "x".repeat(i % 300)
            )
            .into_bytes()
        })
        .collect();
    mail.push(format!("Subject: {tag} no message-id\n\nNo Message-ID here.\n").into_bytes());
    let mut eight_bit = format!("Subject: {tag} 8-bit ").into_bytes();
    eight_bit.extend_from_slice(b"\xc3\xa4\xff header\nX-Nul: a\0b\n\nbody \xe9\n");
    mail.push(eight_bit);
    mail.push(
        format!("Subject: {tag} dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n")
            .into_bytes(),
    );
    mail.push(format!("Subject: {tag} header only\n").into_bytes());
    mail.push(format!("Subject: {tag} no final newline\n\nlast line").into_bytes());
    let mut big = format!("Subject: {tag} big\n\n").into_bytes();
    big.extend(
        std::iter::repeat_n(
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n",
            40_000,
        )
        .flatten(),
    );
    mail.push(big);
    mail
}

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
        &[RouteSpec {
            from: &src,
            to: &dst,
            mailbox: "INBOX",
            delete: "\"after-copy\"",
        }],
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
            RouteSpec {
                from: &a,
                to: &dst,
                mailbox: "Merged",
                delete: "\"never\"",
            },
            RouteSpec {
                from: &b,
                to: &dst,
                mailbox: "Merged",
                delete: "\"never\"",
            },
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
        &[RouteSpec {
            from: &src,
            to: &dst,
            mailbox: "INBOX",
            delete: "\"never\"",
        }],
    );
    sync(&config, &[], 0);
    // Recreate the maildrop with the same mail: new UIDVALIDITY, new UIDLs.
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
        RouteSpec {
            from: &src,
            to: &one,
            mailbox: "INBOX",
            delete: "\"after-copy\"",
        },
        RouteSpec {
            from: &src,
            to: &two,
            mailbox: "Archive/Über",
            delete: "\"after-copy\"",
        },
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
        &[RouteSpec {
            from: &src,
            to: &dst,
            mailbox: "INBOX",
            delete: "\"after-copy\"",
        }],
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
