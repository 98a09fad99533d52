//! Smoke tests of the interop servers themselves (Cyrus, GNU Mailutils): each starts, makes users, takes mail over POP3 and IMAP, and serves it back as asserted here, byte for byte or with its own changes spelled out.

mod support;

use std::time::Duration;

use support::servers::readers::{self, Imap, Pop3};
use support::servers::smoke::{self, find, show, within_deadline};
use support::servers::{cyrus, mailutils, ImapServer, Pop3Server};

/// A message with raw 8-bit (UTF-8 and Latin-1) bytes in its header and
/// body, LF line ends, a body line starting with `From ` and one with a dot.
const EIGHT_BIT: &[u8] = b"From: J\xc3\xb6rg <joerg@example.test>\n\
To: someone@example.test\n\
Subject: caf\xc3\xa9 \xe9t\xe9\n\
Message-ID: <8bit@example.test>\n\
\n\
Gr\xc3\xbc\xc3\x9fe, \xe9t\xe9.\n\
From the body, not an envelope.\n\
.a line with a leading dot\n";

/// A MIME message with a base64 part, CRLF line ends.
fn base64_sample() -> Vec<u8> {
    smoke::base64_message(None)
}

/// Plain ASCII, LF line ends.
fn plain_sample() -> Vec<u8> {
    smoke::plain_message(None)
}

fn loaded() -> Vec<Vec<u8>> {
    vec![EIGHT_BIT.to_vec(), base64_sample(), plain_sample()]
}

/// Cyrus's munge8bit: every byte >= 0x80 in the header (up to the first
/// empty line) becomes `X`; the body is kept.
fn munge8bit(message: &[u8]) -> Vec<u8> {
    let end = find(message, b"\r\n\r\n").map_or(message.len(), |at| at + 4);
    let mut out: Vec<u8> = message[..end]
        .iter()
        .map(|&b| if b >= 0x80 { b'X' } else { b })
        .collect();
    out.extend_from_slice(&message[end..]);
    out
}

/// Asserts `served` is `original` (CRLF) with header lines inserted right
/// before the header's end, and returns those lines.
fn added_header_lines(original: &[u8], served: &[u8]) -> Vec<String> {
    let original = readers::crlf(original);
    let split = find(&original, b"\r\n\r\n").expect("loaded message has a header end") + 2;
    let (head, body) = original.split_at(split);
    assert!(
        served.starts_with(head) && served.ends_with(body) && served.len() >= original.len(),
        "served message is not the loaded one plus header lines:\n--- loaded ---\n{}\n--- served ---\n{}",
        show(&original),
        show(served)
    );
    let added = &served[head.len()..served.len() - body.len()];
    show(added).lines().map(str::to_string).collect()
}

/// `Name: value` lines, the value checked by `ok`.
fn assert_header(lines: &[String], name: &str, ok: impl Fn(&str) -> bool) {
    let value = lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} header among {lines:?}"));
    assert!(ok(value), "{name}: {value:?} is not as expected");
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn cyrus_serves_pop3_and_imap_with_munge8bit() {
    within_deadline(|| {
        let started = std::time::Instant::now();
        let cyrus = cyrus::shared();
        eprintln!("cyrus ready in {:?}", started.elapsed());
        let pop3: &dyn Pop3Server = cyrus;
        let imap: &dyn ImapServer = cyrus;
        assert_eq!(pop3.name(), "cyrus");

        // POP3: loaded over IMAP APPEND, served by pop3d.
        let alice = pop3.pop3_user("alice");
        pop3.load(&alice, &loaded());
        let expected: Vec<Vec<u8>> = loaded()
            .iter()
            .map(|m| munge8bit(&readers::crlf(m)))
            .collect();
        let served = pop3.maildrop(&alice);
        assert_eq!(served.len(), 3);
        for (got, want) in served.iter().zip(&expected) {
            assert_eq!(show(got), show(want));
            assert_eq!(got, want);
        }
        // munge8bit, spelled out: two X for each UTF-8 letter, one for é in Latin-1.
        assert!(find(&served[0], b"From: JXXrg <joerg@example.test>\r\n").is_some());
        assert!(find(&served[0], b"Subject: cafXX XtX\r\n").is_some());
        assert!(find(&served[0], b"Gr\xc3\xbc\xc3\x9fe, \xe9t\xe9.\r\n").is_some());
        // The second session serves the same (Cyrus keeps no per-session headers).
        assert_eq!(pop3.maildrop(&alice), served);
        // UIDLs: <uidvalidity>.<uid>.
        let mut session =
            Pop3::login(pop3.pop3_port(), &alice.name, &alice.password).expect("POP3 login");
        let uidls = session.uidl().expect("UIDL");
        session.quit().expect("QUIT");
        assert_eq!(uidls.len(), 3);
        for (i, (n, uid)) in uidls.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
            let (validity, uid) = uid.split_once('.').expect("UIDL has a dot");
            assert!(all_digits(validity), "{uid}");
            assert_eq!(uid, (i + 1).to_string());
        }

        // IMAP: two messages into a new folder, read back by UID FETCH.
        let bob = imap.imap_user("bob");
        let stored = vec![EIGHT_BIT.to_vec(), base64_sample()];
        imap.store(&bob, "Archive", &stored);
        let back = imap.messages(&bob, "Archive");
        assert_eq!(back.len(), 2);
        assert_eq!(show(&back[0]), show(&munge8bit(&readers::crlf(EIGHT_BIT))));
        assert_eq!(
            back[1],
            readers::crlf(&base64_sample()),
            "base64 message byte-exact"
        );
        assert!(imap.messages(&bob, "INBOX").is_empty());
        // Storing again appends (the folder exists now).
        imap.store(&bob, "Archive", &[plain_sample()]);
        assert_eq!(
            imap.messages(&bob, "Archive")[2],
            readers::crlf(&plain_sample())
        );

        // What Cyrus refuses, as the module doc says.
        let mut session =
            Imap::login(imap.imap_port(), &bob.name, &bob.password).expect("IMAP login");
        let bare_lf = session.append("INBOX", b"Subject: x\n\nbody\n");
        assert!(
            bare_lf.as_ref().is_err_and(|e| e.contains("bare newlines")),
            "{bare_lf:?}"
        );
        let nul = session.append("INBOX", b"Subject: x\r\n\r\nb\0dy\r\n");
        assert!(nul.as_ref().is_err_and(|e| e.contains("NUL")), "{nul:?}");
        let no_colon = session.append("INBOX", b"Subject: x\r\nbogus\r\n\r\nbody\r\n");
        assert!(
            no_colon
                .as_ref()
                .is_err_and(|e| e.contains("invalid header")),
            "{no_colon:?}"
        );
        let ok = session
            .append("INBOX", b"Subject: x\r\n\r\nno final line end")
            .expect("a message without a final CRLF is taken");
        assert!(ok.contains("APPENDUID"), "{ok}");
        session
            .append("INBOX", b"Subject: x\r\n\r\nb\rc\r\n")
            .expect("a bare CR is taken");
        session.logout().expect("LOGOUT");
        assert_eq!(
            imap.messages(&bob, "INBOX"),
            vec![
                b"Subject: x\r\n\r\nno final line end".to_vec(),
                b"Subject: x\r\n\r\nb\rc\r\n".to_vec(),
            ]
        );
    });
}

#[test]
fn mailutils_serves_pop3_and_imap_with_added_headers() {
    within_deadline(|| {
        let started = std::time::Instant::now();
        let mu = mailutils::shared();
        eprintln!("mailutils ready in {:?}", started.elapsed());
        let pop3: &dyn Pop3Server = mu;
        let imap: &dyn ImapServer = mu;
        assert_eq!(pop3.name(), "mailutils");

        // POP3: loaded straight into the mbox, served by pop3d.
        let alice = pop3.pop3_user("alice");
        assert!(alice.name.ends_with("@mailferry.test"), "{}", alice.name);
        pop3.load(&alice, &loaded());
        // First session: byte for byte (CRLF), 8-bit header bytes, the
        // body's "From " line and the leading dot included.
        let first = readers::pop3_maildrop_plain(pop3.pop3_port(), &alice.name, &alice.password)
            .expect("POP3 maildrop");
        let expected: Vec<Vec<u8>> = loaded().iter().map(|m| readers::crlf(m)).collect();
        assert_eq!(first.len(), 3);
        for (got, want) in first.iter().zip(&expected) {
            assert_eq!(show(got), show(want));
            assert_eq!(got, want);
        }
        // Its QUIT rewrote the mbox; a session that asks UIDL also gets the
        // X-UIDL headers, and every later one serves all of them.
        let mut session =
            Pop3::login(pop3.pop3_port(), &alice.name, &alice.password).expect("POP3 login");
        let uidls = session.uidl().expect("UIDL");
        let mut second = Vec::new();
        for n in 1..=3 {
            second.push(session.retr(n).expect("RETR"));
        }
        session.quit().expect("QUIT");
        let third = readers::pop3_maildrop_plain(pop3.pop3_port(), &alice.name, &alice.password)
            .expect("POP3 maildrop");
        for (label, served) in [("UIDL session", &second), ("next session", &third)] {
            assert_eq!(served.len(), 3, "{label}");
            for (i, (got, original)) in served.iter().zip(loaded()).enumerate() {
                let added = added_header_lines(&original, got);
                let names: Vec<&str> = added
                    .iter()
                    .map(|l| l.split(':').next().unwrap_or(""))
                    .collect();
                // In the UIDL session X-UIDL comes last (added on the
                // wire); the rewrite at its QUIT puts it first in the file.
                let mut want = vec!["X-IMAPbase", "X-UID", "Status"];
                if i > 0 {
                    want.remove(0);
                }
                if label == "UIDL session" {
                    want.push("X-UIDL");
                } else {
                    want.insert(0, "X-UIDL");
                }
                assert_eq!(names, want, "{label}, message {i}: {added:?}");
                assert_header(&added, "X-UIDL", |v| v == uidls[i].1);
                assert_header(&added, "X-UID", |v| v == (i + 1).to_string());
                assert_header(&added, "Status", |v| v == "OR");
                if i == 0 {
                    assert_header(&added, "X-IMAPbase", |v| {
                        let fields: Vec<&str> = v.split_whitespace().collect();
                        fields.len() == 2 && all_digits(fields[0]) && fields[1] == "4"
                    });
                }
            }
        }
        // UIDL: <md5 hex>.<uidvalidity>.<n>.
        for (i, (n, uid)) in uidls.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
            let parts: Vec<&str> = uid.split('.').collect();
            assert_eq!(parts.len(), 3, "{uid}");
            assert!(parts[0].len() == 32 && parts[0].bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(all_digits(parts[1]), "{uid}");
            assert_eq!(parts[2], (i + 1).to_string());
        }
        let file = std::fs::read(mu.inbox_file(&alice)).expect("read the mbox");
        assert!(file.starts_with(b"From MAILER-DAEMON "), "{}", show(&file));
        assert!(
            find(&file, b"\n>From the body").is_some(),
            "{}",
            show(&file)
        );

        // IMAP: APPEND adds X-IMAPbase (first message) and X-UID.
        let bob = imap.imap_user("bob");
        let stored = vec![EIGHT_BIT.to_vec(), base64_sample()];
        imap.store(&bob, "Archive", &stored);
        let back = imap.messages(&bob, "Archive");
        assert_eq!(back.len(), 2);
        for (i, (got, original)) in back.iter().zip(&stored).enumerate() {
            let added = added_header_lines(original, got);
            let names: Vec<&str> = added
                .iter()
                .map(|l| l.split(':').next().unwrap_or(""))
                .collect();
            let want: &[&str] = if i == 0 {
                &["X-IMAPbase", "X-UID"]
            } else {
                &["X-UID"]
            };
            assert_eq!(names, want, "message {i}: {added:?}");
            assert_header(&added, "X-UID", |v| v == (i + 1).to_string());
        }
        assert!(imap.messages(&bob, "INBOX").is_empty());
        // A message without From: is refused, with a misleading TRYCREATE.
        let mut session =
            Imap::login(imap.imap_port(), &bob.name, &bob.password).expect("IMAP login");
        let refused = session.append("INBOX", b"Subject: no sender\r\n\r\nbody\r\n");
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("TRYCREATE")),
            "{refused:?}"
        );
        session.logout().expect("LOGOUT");
        assert!(imap.messages(&bob, "INBOX").is_empty());
    });
}

#[test]
fn readers_crlf_and_quote() {
    assert_eq!(readers::crlf(b"a\nb\r\nc\rd\n"), b"a\r\nb\r\nc\rd\r\n");
    assert_eq!(readers::crlf(b"\n"), b"\r\n");
    assert_eq!(readers::quote("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
    assert!(readers::quote("caf\u{e9}").is_err());
    assert_eq!(
        mailutils::mbox_entry(b"A: b\r\n\r\nFrom x\r\n>From y\r\nz"),
        b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\nA: b\n\n>From x\n>>From y\nz\n\n"
    );
}

#[test]
fn stop_ends_the_servers_and_removes_their_directories() {
    within_deadline(|| {
        let cyrus = cyrus::Cyrus::start();
        let mu = mailutils::Mailutils::start();
        let mut pids = mu.pids();
        pids.push(cyrus.master_pid().expect("cyrus master pid"));
        let services = pids
            .iter()
            .flat_map(|&p| children_of(p))
            .collect::<Vec<_>>();
        let dirs = [cyrus.dir().to_path_buf(), mu.dir().to_path_buf()];
        assert!(pids.iter().all(|&p| process_exists(p)));
        cyrus.stop();
        mu.stop();
        assert!(mu.pids().is_empty() && cyrus.master_pid().is_none());
        wait_gone(&pids, &dirs);
        wait_gone(&services, &[]);
    });
}

/// Run as a child process by
/// `watchdogs_stop_the_servers_when_the_test_process_is_killed`, which sets
/// `MAILFERRY_SERVERS_CHILD`: starts both servers, reports them, and waits
/// to be killed. Without that variable (a normal run) it returns at once.
#[test]
fn servers_child_helper() {
    if std::env::var_os("MAILFERRY_SERVERS_CHILD").is_none() {
        return;
    }
    let cyrus = cyrus::shared();
    let mu = mailutils::shared();
    let mut pids = mu.pids();
    pids.push(cyrus.master_pid().expect("cyrus master pid"));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!(
        "READY {} {} {}",
        pids.join(","),
        cyrus.dir().display(),
        mu.dir().display()
    );
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn watchdogs_stop_the_servers_when_the_test_process_is_killed() {
    within_deadline(|| {
        use std::io::BufRead;
        let exe = std::env::current_exe().expect("path of this test binary");
        let mut child = std::process::Command::new(exe)
            .args(["--exact", "servers_child_helper", "--nocapture"])
            .env("MAILFERRY_SERVERS_CHILD", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn this test binary as a child");
        let stdout = child.stdout.take().expect("piped stdout");
        let ready = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("READY "));
        let Some(ready) = ready else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not report its servers");
        };
        let fields: Vec<&str> = ready.split(' ').collect();
        let pids: Vec<u32> = fields[1]
            .split(',')
            .map(|p| p.parse().expect("pid"))
            .collect();
        let dirs = [
            std::path::PathBuf::from(fields[2]),
            std::path::PathBuf::from(fields[3]),
        ];
        let services = pids
            .iter()
            .flat_map(|&p| children_of(p))
            .collect::<Vec<_>>();
        for &pid in &pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(process_exists(pid), "{pid} not running: {stat:?} ({ready})");
        }

        child.kill().expect("kill -9 the child test process");
        child.wait().expect("reap the child");
        wait_gone(&pids, &dirs);
        wait_gone(&services, &[]);
    });
}

/// Waits (at most 10 s) until no pid runs and no dir exists, then asserts so.
fn wait_gone(pids: &[u32], dirs: &[std::path::PathBuf]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let left = || {
        let pids: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| process_exists(p))
            .collect();
        let dirs: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
        (pids, dirs)
    };
    while std::time::Instant::now() < deadline {
        let (p, d) = left();
        if p.is_empty() && d.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (p, d) = left();
    panic!("still there after 10 s: processes {p:?}, directories {d:?}");
}

/// Pids whose parent is `pid` (a master's service processes).
fn children_of(pid: u32) -> Vec<u32> {
    let entries = std::fs::read_dir("/proc").expect("list /proc");
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            ppid == Some(pid)
        })
        .collect()
}

/// True while `pid` exists and is not a zombie.
fn process_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}
