//! Smoke tests of the interop servers Courier (IMAP and POP3) and popa3d: each starts, makes users, takes mail and serves it back as asserted here, byte for byte or with its own changes spelled out.

mod support;

use support::servers::courier::{self, Courier};
use support::servers::popa3d::{self, Popa3d};
use support::servers::readers::{self, Pop3};
use support::servers::smoke::{self, find, show, within_deadline};
use support::servers::{ImapServer, Pop3Server};

/// Raw UTF-8 bytes in the header (no RFC 2047 encoding) and in the body,
/// LF line ends.
const EIGHT_BIT: &[u8] = b"From: J\xc3\xb6rg <joerg@example.test>\n\
To: someone@example.test\n\
Subject: caf\xc3\xa9 cr\xc3\xa8me\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
Message-ID: <8bit@example.test>\n\
\n\
Gr\xc3\xbc\xc3\x9fe.\n\
.a line with a leading dot\n";

/// A MIME message with a base64 part, CRLF line ends.
fn base64_sample() -> Vec<u8> {
    smoke::base64_message(Some("Mon, 1 Jan 2024 11:00:00 +0000"))
}

/// Plain ASCII, LF line ends.
fn plain_sample() -> Vec<u8> {
    smoke::plain_message(Some("Mon, 1 Jan 2024 12:00:00 +0000"))
}

fn loaded() -> Vec<Vec<u8>> {
    vec![EIGHT_BIT.to_vec(), base64_sample(), plain_sample()]
}

/// Asserts byte equality, showing both as text on failure.
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}:\n--- got ---\n{}\n--- want ---\n{}",
        show(got),
        show(want)
    );
}

#[test]
fn courier_pop3_serves_loaded_mail_and_wraps_8bit_headers_without_utf8() {
    within_deadline(|| {
        let courier = courier::shared();
        eprintln!("courier ready in {:?}", courier.started_in());
        let pop3: &dyn Pop3Server = courier;
        assert_eq!(pop3.name(), "courier");
        let alice = pop3.pop3_user("alice");
        assert!(
            pop3.maildrop(&alice).is_empty(),
            "a new user's maildrop is empty"
        );
        pop3.load(&alice, &loaded());

        // A minimal client's session: no UTF8 (mailferry sends it).
        let plain = |user: &support::servers::User| {
            readers::pop3_maildrop_plain(pop3.pop3_port(), &user.name, &user.password)
                .expect("POP3 maildrop")
        };
        let served = plain(&alice);
        assert_eq!(served.len(), 3, "three messages in POP3 order");
        // 7-bit messages: byte-exact (LF stored, CRLF served), whatever
        // line ends they were loaded with.
        assert_bytes(
            &served[1],
            &readers::crlf(&base64_sample()),
            "base64 message",
        );
        assert_bytes(&served[2], &readers::crlf(&plain_sample()), "plain message");
        assert!(
            !Courier::as_stored(&base64_sample()).contains(&b'\r'),
            "loaded as LF"
        );

        // 8-bit header without UTF8: a generated wrapper, the original
        // attached as message/global.
        let wrapper = &served[0];
        let original = readers::crlf(EIGHT_BIT);
        assert_ne!(wrapper, &original, "the 8-bit message is not served as is");
        assert!(
            find(wrapper, b"Cannot display Unicode content").is_some(),
            "wrapper text:\n{}",
            show(wrapper)
        );
        assert!(
            find(wrapper, b"message/global").is_some(),
            "the original is attached as message/global:\n{}",
            show(wrapper)
        );
        assert!(
            find(wrapper, &original).is_some(),
            "the original is inside the wrapper, byte for byte:\n{}",
            show(wrapper)
        );
        // Its boundary is new in every session.
        let again = plain(&alice);
        assert_ne!(&again[0], wrapper, "a new wrapper (boundary) per session");
        assert_eq!(again[1..], served[1..]);

        // With UTF8 (RFC 6856) the same message is byte-exact.
        let mut session =
            Pop3::login(pop3.pop3_port(), &alice.name, &alice.password).expect("POP3 login");
        let capa = session.multiline("CAPA").expect("CAPA");
        assert!(find(&capa, b"UTF8").is_some(), "{}", show(&capa));
        session.command("UTF8").expect("UTF8 accepted");
        assert_bytes(
            &session.retr(1).expect("RETR 1"),
            &original,
            "8-bit message after UTF8",
        );
        // UIDLs: UID<n>-<uidvalidity>, unique.
        let uidls = session.uidl().expect("UIDL");
        session.quit().expect("QUIT");
        assert_eq!(uidls.len(), 3);
        let mut seen = std::collections::HashSet::new();
        for (i, (n, uidl)) in uidls.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
            let rest = uidl.strip_prefix("UID").unwrap_or_else(|| panic!("{uidl}"));
            let (uid, validity) = rest.split_once('-').unwrap_or_else(|| panic!("{uidl}"));
            assert!(
                uid.parse::<u32>().is_ok() && validity.parse::<u64>().is_ok(),
                "{uidl}"
            );
            assert!(seen.insert(uidl.clone()), "UIDL {uidl} twice");
        }

        // A file stored with CRLF comes back with CR CR LF.
        let bob = pop3.pop3_user("bob");
        courier.load_unconverted(&bob, b"Subject: crlf\r\n\r\nbody\r\n");
        assert_bytes(
            &pop3.maildrop(&bob)[0],
            b"Subject: crlf\r\r\n\r\r\nbody\r\r\n",
            "CRLF file",
        );
        // 8-bit bytes in the body only: served as stored, without UTF8.
        let body_only = b"Subject: body only\n\nGr\xc3\xbc\xc3\x9fe \xe9t\xe9.\n".to_vec();
        pop3.load(&bob, std::slice::from_ref(&body_only));
        assert_bytes(
            &pop3.maildrop(&bob)[1],
            &readers::crlf(&body_only),
            "8-bit body only",
        );
    });
}

#[test]
fn courier_imap_stores_and_serves_byte_exact() {
    within_deadline(|| {
        let courier = courier::shared();
        let imap: &dyn ImapServer = courier;
        assert_eq!(imap.name(), "courier");
        let carol = imap.imap_user("carol");
        assert!(imap.messages(&carol, "INBOX").is_empty());
        imap.store(&carol, "INBOX", &loaded());
        let back = imap.messages(&carol, "INBOX");
        assert_eq!(back.len(), 3);
        for (got, sent) in back.iter().zip(loaded()) {
            assert_bytes(got, &readers::crlf(&sent), "IMAP BODY[] after APPEND");
        }
        // A folder: created as INBOX.Archive, stored LF on disk.
        imap.store(&carol, "Archive", &[EIGHT_BIT.to_vec(), plain_sample()]);
        let archive = imap.messages(&carol, "Archive");
        assert_eq!(archive.len(), 2);
        assert_bytes(
            &archive[0],
            &readers::crlf(EIGHT_BIT),
            "8-bit message in a folder",
        );
        assert_eq!(imap.messages(&carol, "INBOX.Archive"), archive);
        let folder = courier.maildir_root(&carol.name).join(".Archive");
        assert!(folder.join("cur").is_dir() || folder.join("new").is_dir());
        let on_disk: Vec<Vec<u8>> = ["cur", "new"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(folder.join(sub)).ok())
            .flatten()
            .flatten()
            .map(|entry| std::fs::read(entry.path()).expect("read a stored message"))
            .collect();
        assert_eq!(on_disk.len(), 2);
        assert!(
            on_disk.iter().all(|m| !m.contains(&b'\r')),
            "Courier stores LF"
        );
        // Mail loaded for POP3 is the same INBOX over IMAP, in load order
        // both ways (in two loads, enough files for readdir order to differ).
        let dave = courier.user("dave");
        let numbered: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                format!("Subject: n{i}\nMessage-ID: <n{i}@example.test>\n\nbody {i}\n").into_bytes()
            })
            .collect();
        Pop3Server::load(courier, &dave, &numbered[..25]);
        Pop3Server::load(courier, &dave, &numbered[25..]);
        let want: Vec<Vec<u8>> = numbered.iter().map(|m| readers::crlf(m)).collect();
        assert_eq!(Pop3Server::maildrop(courier, &dave), want, "POP3 order");
        assert_eq!(imap.messages(&dave, "INBOX"), want, "IMAP UID order");
    });
}

/// A body with a `From ` line after an empty line (an mbox separator if
/// unquoted) and one `From ` line inside a paragraph.
const FROM_LINES: &[u8] = b"Subject: from lines\n\
Date: Mon, 1 Jan 2024 13:00:00 +0000\n\
Message-ID: <from@example.test>\n\
\n\
para\n\
From inside a paragraph\n\
\n\
From after an empty line\n\
>From already quoted\n";

/// No empty line: a header only.
const HEADER_ONLY: &[u8] = b"Subject: header only\nMessage-ID: <ho@example.test>\n";

#[test]
fn popa3d_serves_loaded_mail_with_mbox_changes() {
    within_deadline(|| {
        let popa3d = popa3d::shared();
        eprintln!("popa3d ready in {:?}", popa3d.started_in());
        let pop3: &dyn Pop3Server = popa3d;
        assert_eq!(pop3.name(), "popa3d");
        let erin = pop3.pop3_user("erin");
        assert!(
            pop3.maildrop(&erin).is_empty(),
            "a new user's maildrop is empty"
        );
        let mut messages = loaded();
        messages.push(FROM_LINES.to_vec());
        messages.push(HEADER_ONLY.to_vec());
        pop3.load(&erin, &messages);

        let served = pop3.maildrop(&erin);
        assert_eq!(served.len(), 5, "five messages, none split or merged");
        // The three ordinary ones: byte-exact, 8-bit header included.
        assert_bytes(&served[0], &readers::crlf(EIGHT_BIT), "8-bit message");
        assert_bytes(
            &served[1],
            &readers::crlf(&base64_sample()),
            "base64 message",
        );
        assert_bytes(&served[2], &readers::crlf(&plain_sample()), "plain message");
        // From lines come back quoted; a >From line stays as it was.
        assert_bytes(
            &served[3],
            b"Subject: from lines\r\n\
Date: Mon, 1 Jan 2024 13:00:00 +0000\r\n\
Message-ID: <from@example.test>\r\n\
\r\n\
para\r\n\
>From inside a paragraph\r\n\
\r\n\
>From after an empty line\r\n\
>From already quoted\r\n",
            "From lines",
        );
        // A header-only message gains an empty line.
        assert_bytes(
            &served[4],
            b"Subject: header only\r\nMessage-ID: <ho@example.test>\r\n\r\n",
            "header-only message",
        );
        // The module's model of all this agrees.
        for (got, sent) in served.iter().zip(&messages) {
            assert_bytes(got, &Popa3d::as_served(sent), "Popa3d::as_served");
        }
        // On disk: envelope lines, quoting, LF only.
        let mbox = std::fs::read(popa3d.mbox(&erin)).expect("read the mbox");
        let expected: Vec<u8> = messages
            .iter()
            .flat_map(|m| Popa3d::mbox_entry(m))
            .collect();
        assert_bytes(&mbox, &expected, "mbox file");
        assert!(mbox.starts_with(popa3d::ENVELOPE));

        // No CAPA; UIDLs here are distinct (distinct Date/Message-ID).
        let mut session =
            Pop3::login(pop3.pop3_port(), &erin.name, &erin.password).expect("POP3 login");
        let capa = session.multiline("CAPA");
        assert!(capa.is_err(), "popa3d has no CAPA: {capa:?}");
        let uidls = session.uidl().expect("UIDL");
        session.quit().expect("QUIT");
        assert_eq!(uidls.len(), 5);

        // Load order is POP3 order, over several loads.
        let gina = pop3.pop3_user("gina");
        let numbered: Vec<Vec<u8>> = (0..30)
            .map(|i| {
                format!("Subject: n{i}\nMessage-ID: <n{i}@example.test>\n\nbody {i}\n").into_bytes()
            })
            .collect();
        pop3.load(&gina, &numbered[..10]);
        pop3.load(&gina, &numbered[10..]);
        let want: Vec<Vec<u8>> = numbered.iter().map(|m| readers::crlf(m)).collect();
        assert_eq!(pop3.maildrop(&gina), want);
    });
}

#[test]
fn popa3d_gives_distinct_messages_with_equal_headers_one_uidl() {
    within_deadline(|| {
        let popa3d = popa3d::shared();
        let pop3: &dyn Pop3Server = popa3d;
        let frank = pop3.pop3_user("frank");
        let header = b"From: a@example.test\n\
To: b@example.test\n\
Subject: same header\n\
Date: Mon, 1 Jan 2024 14:00:00 +0000\n\
Message-ID: <same@example.test>\n\
\n";
        let first = [&header[..], b"first body\n"].concat();
        let second = [&header[..], b"second, different body\n"].concat();
        // Received headers decide when present: equal ones, other Subjects.
        let received = b"Received: from x by y; Mon, 1 Jan 2024 15:00:00 +0000\n";
        let third = [&received[..], b"Subject: one\n\nthree\n"].concat();
        let fourth = [&received[..], b"Subject: two\n\nfour\n"].concat();
        pop3.load(
            &frank,
            &[first.clone(), second.clone(), third.clone(), fourth.clone()],
        );

        let mut session =
            Pop3::login(pop3.pop3_port(), &frank.name, &frank.password).expect("POP3 login");
        let uidls = session.uidl().expect("UIDL");
        let bodies: Vec<Vec<u8>> = (1..=4).map(|n| session.retr(n).expect("RETR")).collect();
        session.quit().expect("QUIT");
        assert_eq!(uidls.len(), 4, "{uidls:?}");
        assert_eq!(
            uidls[0].1, uidls[1].1,
            "distinct messages with equal headers share a UIDL: {uidls:?}"
        );
        assert_eq!(uidls[2].1, uidls[3].1, "equal Received headers: {uidls:?}");
        assert_ne!(uidls[0].1, uidls[2].1, "{uidls:?}");
        let listing: Vec<&str> = uidls.iter().map(|(_, u)| u.as_str()).collect();
        let dup = &uidls[0].1;
        assert_eq!(
            listing.iter().filter(|u| **u == dup).count(),
            2,
            "one UIDL listed twice: {listing:?}"
        );
        // Yet they are different messages, each served as loaded.
        assert_ne!(bodies[0], bodies[1]);
        for (got, sent) in bodies.iter().zip([&first, &second, &third, &fourth]) {
            assert_bytes(got, &readers::crlf(sent), "message with a shared UIDL");
        }
    });
}
