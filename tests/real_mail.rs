//! Mail as people have it, against a real Dovecot (which offers BINARY):
//! regressions for the defects of issue #20 that Dovecot alone shows.

mod support;

use support::dovecot::shared;
use support::e2e::{count, mailferry, remove_ledger, sync, write_config, RouteSpec};

/// Small MIME mail with encoded parts: what a server's `BINARY[]` decodes.
fn encoded_mail(tag: &str) -> Vec<Vec<u8>> {
    let qp = format!(
        "From: a@example.org\nSubject: {tag} qp\nMIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
         Gr=C3=BC=C3=9Fe, a soft=\nbreak and =3D sign.\n"
    );
    let b64 = format!(
        "From: b@example.org\nSubject: {tag} base64\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n\
         Content-Type: text/plain\n\nsee attachment\n--b1\n\
         Content-Type: application/octet-stream; name=\"x.bin\"\n\
         Content-Transfer-Encoding: base64\n\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n--b1--\n"
    );
    let both = format!(
        "From: c@example.org\nSubject: {tag} alternative\nMIME-Version: 1.0\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\n\n--alt\n\
         Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n\
         caf=E9\n--alt\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n\
         PGI+Y2Fmw6k8L2I+Cg==\n--alt--\n"
    );
    vec![qp.into_bytes(), b64.into_bytes(), both.into_bytes()]
}

/// A stored message whose base64 part is cut short: Dovecot refuses to
/// decode it for `BINARY[]` ("NO [Parse] Invalid data in MIME part").
fn truncated_base64(tag: &str) -> Vec<u8> {
    format!(
        "From: d@example.org\nSubject: {tag} truncated\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"t\"\n\n--t\n\
         Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n\
         iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABXvMqGgAAAABJRU5ErkJggg\n\
         --t--\n"
    )
    .into_bytes()
}

/// Issue #20 defect 1: with BINARY offered, target bodies were fetched with
/// `BINARY.PEEK[]`, which decodes encoded parts, so after a lost ledger
/// every message with a quoted-printable or base64 part was appended again.
#[test]
fn encoded_parts_are_recognised_after_a_lost_ledger() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("encsrc"), dovecot.user("encdst"));
    let mut mail = encoded_mail("enc");
    mail.push(truncated_base64("enc"));
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let routes = [RouteSpec::new(&src, &dst, "INBOX", "\"never\"")];
    let config = write_config(dir.path(), dovecot, &routes);
    sync(&config, &[], 0);
    remove_ledger(dir.path());
    let reports = sync(&config, &[], 0);
    assert_eq!(count(&reports[0], "copied"), 0, "{reports:?}");
    assert_eq!(count(&reports[0], "duplicates"), mail.len() as u64);
    assert_eq!(dovecot.count(&dst, "INBOX"), mail.len());
}

/// Issue #20 defect 5: `verify --deep` fetched bodies with `BINARY.PEEK[]`;
/// one stored message with a truncated base64 part made Dovecot refuse the
/// whole range and verify reported nothing present (exit 3).
#[test]
fn verify_deep_checks_mail_with_a_truncated_base64_part() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("vdsrc"), dovecot.user("vddst"));
    let mut mail = encoded_mail("vdeep");
    mail.push(truncated_base64("vdeep"));
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let routes = [RouteSpec::new(&src, &dst, "INBOX", "\"never\"")];
    let config = write_config(dir.path(), dovecot, &routes);
    sync(&config, &[], 0);
    let (code, out, err) = mailferry(&config, &["--json", "verify", "--deep"]);
    assert_eq!(code, 0, "verify --deep\n{out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("verify --json");
    let mailbox = &json["mailboxes"][0];
    assert_eq!(mailbox["recorded"], mail.len() as u64, "{out}");
    assert_eq!(mailbox["present_by_content"], mail.len() as u64, "{out}");
}

/// Issue #20: once a sync noticed that a mailbox was renumbered, the ledger
/// forgot its records of it, and `verify` checked "0 of 0" and passed,
/// although every copy made into it was gone.
#[test]
fn verify_does_not_pass_by_checking_nothing() {
    let dovecot = shared();
    let (src, dst) = (dovecot.user("vnsrc"), dovecot.user("vndst"));
    let mail = encoded_mail("vnothing");
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().unwrap();
    let routes = [RouteSpec::new(&src, &dst, "Archive", "\"after-copy\"")];
    let config = write_config(dir.path(), dovecot, &routes);
    sync(&config, &[], 0);
    assert_eq!(dovecot.count(&src, "INBOX"), 0, "migrated");
    let deleted = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(dovecot.config_file())
        .args(["mailbox", "delete", "-u", &dst.name, "Archive"])
        .output()
        .expect("run doveadm");
    assert!(deleted.status.success(), "{deleted:?}");
    // The next sync recreates the mailbox and notices the new UIDVALIDITY.
    sync(&config, &[], 0);
    let (code, out, err) = mailferry(&config, &["--json", "verify"]);
    assert_eq!(code, 1, "verify\n{out}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("verify --json");
    assert_eq!(
        json["mailboxes"][0]["unverifiable"],
        mail.len() as u64,
        "{out}"
    );
}
