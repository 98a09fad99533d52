//! The identity property behind exactly-once (issue #20): for every message
//! of the realistic corpus and every IMAP server of the matrix, the identity
//! of the bytes appended equals the identity of what the server returns for
//! the stored copy (`BODY.PEEK[]`). A server that changes stored mail does
//! so as an explicit, asserted exception (Cyrus `munge8bit`); a message a
//! server refuses is listed as refused, never silently left out.

mod support;

use mailferry::message::{identity, to_crlf};
use support::corpus;
use support::servers::changes::{cut_at_nul, has_malformed_header_line, munge8bit};
use support::servers::readers::Imap;
use support::servers::{courier, cyrus, mailutils, ImapServer};

/// What a server is known to change in stored mail, asserted as such.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Changes {
    Nothing,
    /// Cyrus `munge8bit`.
    EightBitHeaders,
    /// GNU Mailutils imap4d ends a message at its first NUL, and rewrites a
    /// header line without a colon (`From x` becomes `From : : x`).
    CutAtNulAndFixHeaders,
}

/// Whether `back` is `sent` as the server's documented rule changes it.
fn changed_as_documented(rule: Changes, sent: &[u8], back: &[u8]) -> bool {
    match rule {
        Changes::Nothing => false,
        Changes::EightBitHeaders => identity(&munge8bit(sent)) == identity(back),
        Changes::CutAtNulAndFixHeaders => {
            let cut = sent.contains(&0) && identity(&cut_at_nul(sent)) == identity(back);
            cut || has_malformed_header_line(sent)
        }
    }
}

/// Appends the corpus one message at a time with the tests' own client and
/// compares identities pairwise in UID order. Returns (stored, refused,
/// changed by the server's documented rule).
fn identity_holds(server: &dyn ImapServer, rule: Changes) -> (usize, Vec<String>, usize) {
    let user = server.imap_user("ident");
    let mail = corpus::everything(&format!("ident-{}", server.name()));
    let mut imap = Imap::login(server.imap_port(), &user.name, &user.password)
        .unwrap_or_else(|e| panic!("{}: login: {e}", server.name()));
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for (i, m) in mail.iter().enumerate() {
        let bytes = to_crlf(m).into_owned();
        match imap.append("INBOX", &bytes) {
            Ok(_) => accepted.push(bytes),
            Err(e) => refused.push(format!("#{i}: {e}")),
        }
    }
    imap.logout().expect("logout");
    let stored = server.messages(&user, "INBOX");
    assert_eq!(
        stored.len(),
        accepted.len(),
        "{}: {} accepted, {} stored",
        server.name(),
        accepted.len(),
        stored.len()
    );
    let mut changed = 0;
    for (i, (sent, back)) in accepted.iter().zip(&stored).enumerate() {
        if identity(sent) == identity(back) {
            continue;
        }
        let at = sent
            .iter()
            .zip(back)
            .position(|(a, b)| a != b)
            .unwrap_or(sent.len().min(back.len()));
        let around = |m: &[u8]| {
            String::from_utf8_lossy(&m[at.saturating_sub(60)..(at + 60).min(m.len())]).into_owned()
        };
        assert!(
            changed_as_documented(rule, sent, back),
            "{}: stored message {i} has another identity than the one appended ({} vs {} bytes, first difference at {at}):\nsent {:?}\nback {:?}",
            server.name(),
            sent.len(),
            back.len(),
            around(sent),
            around(back),
        );
        changed += 1;
    }
    (stored.len(), refused, changed)
}

#[test]
fn dovecot_keeps_every_identity() {
    let (stored, refused, changed) = identity_holds(support::dovecot::shared(), Changes::Nothing);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(changed, 0);
    assert!(stored > 100, "{stored}");
}

#[test]
fn courier_keeps_every_identity() {
    let (stored, refused, changed) = identity_holds(courier::shared(), Changes::Nothing);
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(changed, 0);
    assert!(stored > 100, "{stored}");
}

/// Cyrus refuses a NUL, a bare LF (none reach it: mailferry appends CRLF)
/// and some malformed headers, and munges 8-bit header bytes.
#[test]
fn cyrus_keeps_identities_but_munges_8bit_headers() {
    let (stored, refused, changed) = identity_holds(cyrus::shared(), Changes::EightBitHeaders);
    eprintln!("cyrus: {stored} stored, {changed} munged, refused {refused:?}");
    assert!(
        changed > 0,
        "the corpus has 8-bit headers: munge8bit must show"
    );
    assert!(
        refused.iter().all(|r| r.contains("NO ")),
        "a refusal that is not a NO: {refused:?}"
    );
    assert!(stored > 80, "{stored}");
}

/// imap4d refuses a message without `From:`, strips `Status:`/`X-UID:`
/// (fields the identity ignores), adds `X-UID:`, drops a leading mbox
/// `From ` line (the identity ignores it), ends a message at its first NUL
/// and rewrites a header line without a colon: such a copy is not the
/// message, so mailferry never confirms it (and never deletes the source).
#[test]
fn mailutils_keeps_identities_but_cuts_at_a_nul() {
    let (stored, refused, changed) =
        identity_holds(mailutils::shared(), Changes::CutAtNulAndFixHeaders);
    eprintln!("mailutils: {stored} stored, {changed} cut at a NUL, refused {refused:?}");
    assert!(changed > 0, "the corpus has NULs: the cut must show");
    assert!(stored > 80, "{stored}");
}
