//! Nothing silently left behind (issue #22, first part), against Cyrus, a
//! real server that refuses some mail (`NO Message contains invalid
//! header`): `sync` exits 1 while a message is not copied, however many
//! attempts it had, `status` agrees, counts are messages, and the messages
//! are named.

mod support;

use std::path::{Path, PathBuf};

use support::e2e::mailferry;
use support::servers::{cyrus, ImapServer, Pop3Server, User};

fn config(dir: &Path, src: &User, dst: &User) -> PathBuf {
    let dovecot = support::dovecot::shared();
    let text = format!(
        "[ledger]\npath = \"{}\"\n\n[[source]]\nname = \"src\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nallow_plaintext = true\nusername = \"{}\"\npassword = \"{}\"\n\n[[target]]\nname = \"dst\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nallow_plaintext = true\nusername = \"{}\"\npassword = \"{}\"\n\n[[route]]\nfrom = \"src\"\nto = \"dst\"\ndelete = \"after-copy\"\nmax_attempts = 2\n",
        dir.join("ledger.db").display(),
        Pop3Server::pop3_port(dovecot),
        src.name,
        src.password,
        cyrus::shared().imap_port(),
        dst.name,
        dst.password,
    );
    let path = dir.join("mailferry.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn json(config: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = mailferry(config, &all);
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, doc)
}

#[test]
fn a_refused_message_keeps_sync_and_status_at_exit_1_and_is_named() {
    let dovecot = support::dovecot::shared();
    let src = dovecot.user("ncsrc");
    let dst = cyrus::shared().imap_user("ncdst");
    let good = b"From: a@example.org\r\nSubject: fine\r\n\r\nbody\r\n".to_vec();
    let bad = b"From: b@example.org\r\nSubject: bad\r\nnot a header line\r\n\r\nbody\r\n".to_vec();
    dovecot.load(&src, "INBOX", &[good, bad]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &src, &dst);
    // Past the attempts: before, a sync after the third printed "failed 0"
    // and exited 0 with the message still not copied.
    for run in 1..=5 {
        let (code, doc) = json(&config, &["sync"]);
        let route = &doc["routes"][0];
        assert_eq!(code, 1, "sync #{run}: {doc}");
        assert_eq!(route["outstanding"], 1, "sync #{run}: {doc}");
        let named = &route["not_copied"][0];
        assert!(
            named["reason"]
                .as_str()
                .unwrap_or("")
                .contains("invalid header"),
            "sync #{run}: the server's reason: {doc}"
        );
        if run == 1 {
            let counts = &route["report"]["counts"];
            assert_eq!(counts["copied"], 1, "{doc}");
            assert_eq!(counts["failed"], 1, "one message, not its attempts: {doc}");
        }
    }
    assert_eq!(
        dovecot.count(&src, "INBOX"),
        1,
        "the refused one stays on the source"
    );
    let (code, doc) = json(&config, &["status", "--messages"]);
    assert_eq!(code, 1, "status agrees with sync: {doc}");
    let route = &doc["routes"][0];
    assert_eq!(route["outstanding"], 1, "{doc}");
    let listed = route["messages"].as_array().expect("messages");
    assert_eq!(listed.len(), 1, "{doc}");
    assert_eq!(listed[0]["state"], "failed", "{doc}");
    assert_eq!(
        listed[0]["summary"], "- · b@example.org · bad",
        "what the message is: {doc}"
    );
    assert_eq!(
        listed[0]["attempts"], 2,
        "given up after max_attempts: {doc}"
    );
    // The human summary and listing name it too.
    let (code, summary, _) = mailferry(&config, &["sync"]);
    assert_eq!(code, 1);
    assert!(summary.contains("not copied"), "{summary}");
    let (code, out, _) = mailferry(&config, &["status", "--messages"]);
    assert_eq!(code, 1);
    eprintln!("$ mailferry sync\n{summary}$ mailferry status --messages\n{out}");
    assert!(
        out.contains("not copied") && out.contains("invalid header"),
        "{out}"
    );
}
