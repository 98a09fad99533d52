//! IMAP target connector against real Dovecot and against scripted fake servers that misbehave.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailferry::config::{Account, AuthMechanism, PasswordSource, Security};
use mailferry::imap::{
    internaldate, AppendMessage, AppendMode, AppendOutcome, ImapError, ImapOptions, ImapSession,
    ResponseCode, SearchKey,
};
use mailferry::message::MailDate;
use mailferry::net::NetError;
use mailferry::retry::ErrorClass;
use mailferry::secret::Secret;
use support::deadline::within;
use support::dovecot::{self, Dovecot, User};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn dovecot_account(dovecot: &Dovecot, user: &User, security: Security) -> Account {
    let port = match security {
        Security::Tls => dovecot.imaps_port(),
        Security::Starttls | Security::Plain => dovecot.imap_port(),
    };
    let name = format!("target-{}", user.name);
    Account {
        ca_file: Some(dovecot.ca_file()),
        ..support::account::account(&name, port, security, &user.name, &user.password)
    }
}

/// A message whose first Received: date is `unix` in zone +0100.
fn message(n: usize, unix: i64) -> Vec<u8> {
    let date = internaldate::format_date_time(MailDate {
        unix,
        offset_minutes: 60,
    })
    .unwrap();
    // "dd-Mon-yyyy hh:mm:ss +zzzz" -> RFC 5322 "dd Mon yyyy hh:mm:ss +zzzz"
    let rfc5322 = date.trim().replacen('-', " ", 2);
    format!(
        "Received: from a by b; {rfc5322}\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\
         Subject: message {n}\r\nMessage-ID: <{n}@example.com>\r\n\r\nbody {n}\r\n{}\r\n",
        "x".repeat(n % 200)
    )
    .into_bytes()
}

// ----- real Dovecot -----

#[tokio::test]
async fn logs_in_over_tls_starttls_and_plain() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("imap-login");
        for security in [Security::Tls, Security::Starttls, Security::Plain] {
            let account = dovecot_account(dovecot, &user, security);
            let mut imap = ImapSession::connect(&account)
                .await
                .unwrap_or_else(|e| panic!("{security:?}: {e}"));
            assert_eq!(imap.tls_info().is_some(), security != Security::Plain);
            assert!(
                imap.capabilities().has("UIDPLUS"),
                "{:?}",
                imap.capabilities()
            );
            imap.noop().await.unwrap();
            imap.logout().await.unwrap();
        }
        let mut account = dovecot_account(dovecot, &user, Security::Tls);
        account.auth = AuthMechanism::Plain;
        let imap = ImapSession::connect(&account)
            .await
            .expect("AUTHENTICATE PLAIN");
        imap.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_naming_the_account() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("imap-wrong");
        let mut account = dovecot_account(dovecot, &user, Security::Tls);
        account.password = PasswordSource::Inline(Secret::new("not-the-password"));
        let err = ImapSession::connect(&account).await.expect_err("refused");
        assert_eq!(err.class(), ErrorClass::Auth, "{err}");
        assert!(err.to_string().contains(&account.name), "{err}");
        assert!(!err.to_string().contains("not-the-password"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn creates_nested_non_ascii_mailboxes() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("imap-create");
        let account = dovecot_account(dovecot, &user, Security::Tls);
        let mut imap = ImapSession::connect(&account).await.unwrap();
        for name in ["Archiv/Überweisungen", "Tom & Jerry/日本語/台北", "INBOX"] {
            imap.ensure_mailbox(name).await.unwrap();
            imap.ensure_mailbox(name)
                .await
                .expect("second time is a no-op");
            let info = imap.select(name).await.unwrap();
            assert_eq!(info.exists, 0);
            assert!(info.uidvalidity > 0);
        }
        let names: Vec<String> = imap
            .list("*")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        for name in [
            "Archiv",
            "Archiv/Überweisungen",
            "Tom & Jerry/日本語",
            "Tom & Jerry/日本語/台北",
        ] {
            assert!(names.contains(&name.to_string()), "{name} not in {names:?}");
        }
        let err = imap
            .select("Nope/Missing")
            .await
            .expect_err("no such mailbox");
        assert!(matches!(err, ImapError::Command { .. }), "{err}");
        imap.noop().await.expect("a NO leaves the session usable");
        imap.logout().await.unwrap();
    })
    .await;
}

async fn append_and_verify(mode: AppendMode, count: usize) {
    let dovecot = dovecot::shared();
    let user = dovecot.user("imap-append");
    let account = dovecot_account(dovecot, &user, Security::Tls);
    let options = ImapOptions {
        append_mode: mode,
        ..ImapOptions::default()
    };
    let mut imap = ImapSession::connect_with(&account, options).await.unwrap();
    let mailbox = "Archiv/Überweisungen";
    imap.ensure_mailbox(mailbox).await.unwrap();
    let raws: Vec<Vec<u8>> = (0..count)
        .map(|n| message(n, 1_600_000_000 + n as i64 * 3600))
        .collect();
    let now = internaldate::now();
    let msgs: Vec<AppendMessage<'_>> = raws
        .iter()
        .enumerate()
        .map(|(n, raw)| AppendMessage {
            bytes: raw,
            seen: n % 2 == 0,
            internal_date: Some(internaldate::internal_date(raw, now)),
        })
        .collect();
    let result = imap.append_batch(mailbox, &msgs).await;
    assert!(result.error.is_none(), "{mode:?}: {:?}", result.error);
    let uids: Vec<u32> = result
        .outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Appended { uid: Some(uid) } => *uid,
            other => panic!("{mode:?}: {other:?}"),
        })
        .collect();
    let info = imap.select(mailbox).await.unwrap();
    assert_eq!(Some(info.uidvalidity), result.uidvalidity);
    assert_eq!(info.exists as usize, count);
    let searched = imap.uid_search(&[SearchKey::UidFrom(1)]).await.unwrap();
    assert_eq!(searched, uids, "{mode:?}: APPENDUID vs UID SEARCH");
    let fetched = imap.uid_fetch(&uids).await.unwrap();
    assert_eq!(fetched.len(), count);
    for (n, got) in fetched.iter().enumerate() {
        assert_eq!(got.uid, uids[n]);
        assert_eq!(got.body, raws[n], "{mode:?}: message {n} bytes");
        assert_eq!(got.size as usize, raws[n].len());
        assert_eq!(
            got.internal_date.map(|d| d.unix),
            Some(1_600_000_000 + n as i64 * 3600),
            "{mode:?}: message {n} INTERNALDATE"
        );
        assert_eq!(
            got.flags.iter().any(|f| f == "\\Seen"),
            n % 2 == 0,
            "{mode:?}: {:?}",
            got.flags
        );
    }
    // Intent resolution's narrowing: exact size, UIDs from a point.
    let size = raws[7].len() as u64;
    let by_size = imap
        .uid_search(&[
            SearchKey::UidFrom(uids[5]),
            SearchKey::Larger(size - 1),
            SearchKey::Smaller(size + 1),
        ])
        .await
        .unwrap();
    assert!(by_size.contains(&uids[7]) && by_size.iter().all(|u| *u >= uids[5]));
    let beyond = imap
        .uid_search(&[SearchKey::UidFrom(uids[count - 1] + 1)])
        .await
        .unwrap();
    assert!(
        beyond.is_empty(),
        "n:* past the end must not return the last UID: {beyond:?}"
    );
    imap.logout().await.unwrap();
}

/// Regression: the sizes of a mailbox's messages were read with `UID SEARCH
/// ALL`, whose one `* SEARCH` line passes the 64 KiB line limit at some
/// 12,800 messages, so adopting or reconciling such a mailbox failed. Now a
/// line per message, in windows of UIDs, and bodies in chunks by size.
#[tokio::test]
async fn sizes_of_a_mailbox_of_14000_messages_in_windows() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("imap-14k");
        let raws: Vec<Vec<u8>> = (0..14_000)
            .map(|n| format!("Subject: {n}\r\n\r\n{}\r\n", "y".repeat(n % 97)).into_bytes())
            .collect();
        dovecot.load(&user, "INBOX", &raws);
        let account = dovecot_account(dovecot, &user, Security::Tls);
        let mut imap = ImapSession::connect(&account).await.unwrap();
        let info = imap.select("INBOX").await.unwrap();
        assert_eq!(info.exists, 14_000);
        match imap.uid_search(&[]).await {
            Ok(uids) => panic!("SEARCH ALL of {} UIDs fit in one line", uids.len()),
            Err(e) => assert!(e.to_string().contains("line"), "{e}"),
        }
        // Windows of message numbers from the end, 256, 2,048, then 5,000 at
        // most: five for this mailbox.
        let options = ImapOptions {
            size_window: 5_000,
            ..ImapOptions::default()
        };
        let mut imap = ImapSession::connect_with(&account, options).await.unwrap();
        let info = imap.select("INBOX").await.unwrap();
        let top = imap.uid_fetch_sizes_from(None, info.exists).await.unwrap();
        assert_eq!(top.len(), 14_000);
        let mut want: Vec<u32> = raws.iter().map(|r| r.len() as u32).collect();
        let mut got: Vec<u32> = top.iter().map(|(_, size)| *size).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
        let last = top.last().unwrap().0;
        for from in [last - 9, last - 3_000, last - 9_000] {
            let tail = imap
                .uid_fetch_sizes_from(Some(from), info.exists)
                .await
                .unwrap();
            assert_eq!(
                tail,
                top[top.len() - (last - from + 1) as usize..],
                "from {from}"
            );
        }
        let beyond = imap
            .uid_fetch_sizes_from(Some(last + 1), info.exists)
            .await
            .unwrap();
        assert!(beyond.is_empty(), "past the end: {beyond:?}");
        let none = imap.uid_fetch_sizes_from(None, 0).await.unwrap();
        assert!(none.is_empty(), "an empty mailbox is not asked");
        let sized: Vec<(u32, u64)> = top[..300].iter().map(|&(u, s)| (u, u64::from(s))).collect();
        let bodies = imap.uid_fetch_sized(&sized).await.unwrap();
        assert_eq!(bodies.len(), 300);
        assert!(bodies
            .iter()
            .zip(&top)
            .all(|(b, (uid, size))| b.uid == *uid && b.body.len() == *size as usize));
        imap.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn appends_500_pipelined_and_reads_them_back_identical() {
    within(append_and_verify(AppendMode::Pipelined, 500)).await;
}

#[tokio::test]
async fn appends_with_multiappend_and_one_at_a_time() {
    within(async {
        append_and_verify(AppendMode::MultiAppend, 250).await;
        append_and_verify(AppendMode::OneAtATime, 20).await;
        append_and_verify(AppendMode::Auto, 20).await;
    })
    .await;
}

// ----- scripted fake servers -----

/// What the fake server does in answer to a command.
enum Act {
    Send(Vec<u8>),
    Close,
    Stall,
}

fn send(text: &str) -> Act {
    Act::Send(text.as_bytes().to_vec())
}

type Handler = Arc<dyn Fn(&str, &str) -> Vec<Act> + Send + Sync>;

/// A one-connection IMAP server on 127.0.0.1 playing `handler` (given each
/// command's tag and text, literals inline). Records every byte received.
struct Fake {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Fake {
    async fn start(greeting: &str, close_on_sync_literal: bool, handler: Handler) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let greeting = greeting.as_bytes().to_vec();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            if write.write_all(&greeting).await.is_err() {
                return;
            }
            loop {
                let mut command = Vec::new();
                loop {
                    let mut line = Vec::new();
                    if read.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    log.lock().unwrap().extend_from_slice(&line);
                    command.extend_from_slice(&line);
                    let Some((size, sync)) = literal_of(&line) else {
                        break;
                    };
                    if sync {
                        if close_on_sync_literal {
                            return;
                        }
                        let _ = write.write_all(b"+ go ahead\r\n").await;
                    }
                    let mut data = vec![0; size];
                    if read.read_exact(&mut data).await.is_err() {
                        return;
                    }
                    log.lock().unwrap().extend_from_slice(&data);
                    command.extend_from_slice(&data);
                }
                let text = String::from_utf8_lossy(&command).into_owned();
                let (tag, rest) = text.split_once(' ').unwrap_or((&text, ""));
                for act in handler(tag, rest.trim_end()) {
                    match act {
                        Act::Send(bytes) => {
                            if write.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Act::Close => return,
                        Act::Stall => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                }
            }
        });
        Fake { port, received }
    }

    fn account(&self) -> Account {
        Account {
            timeout: Duration::from_millis(700),
            ..support::account::account("fake-target", self.port, Security::Plain, "bob", "s3cret")
        }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// `{n}` or `{n+}` at the end of a line: (n, synchronising).
fn literal_of(line: &[u8]) -> Option<(usize, bool)> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    let digits = &inner[open + 1..];
    let (digits, sync) = match digits.strip_suffix('+') {
        Some(d) => (d, false),
        None => (digits, true),
    };
    Some((digits.parse().ok()?, sync))
}

const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] fake ready\r\n";

/// Logs in (LOGIN OK), then hands every other command to `rest`.
fn after_login(
    caps: &'static str,
    rest: impl Fn(&str, &str) -> Vec<Act> + Send + Sync + 'static,
) -> Handler {
    Arc::new(move |tag: &str, text: &str| {
        if text.starts_with("LOGIN") {
            vec![send(&format!(
                "{tag} OK [CAPABILITY IMAP4rev1 {caps}] Logged in\r\n"
            ))]
        } else if text.starts_with("LOGOUT") {
            vec![send(&format!("* BYE bye\r\n{tag} OK bye\r\n")), Act::Close]
        } else {
            rest(tag, text)
        }
    })
}

fn msgs(raws: &[Vec<u8>]) -> Vec<AppendMessage<'_>> {
    raws.iter()
        .map(|r| AppendMessage {
            bytes: r,
            seen: false,
            internal_date: None,
        })
        .collect()
}

fn raws(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect()
}

async fn session(fake: &Fake) -> ImapSession {
    ImapSession::connect(&fake.account())
        .await
        .expect("fake login")
}

#[tokio::test]
async fn plaintext_login_refused_before_the_password_is_sent() {
    within(async {
        let fake = Fake::start(GREETING, false, after_login("LITERAL+", |_, _| vec![])).await;
        let mut account = fake.account();
        account.allow_plaintext = false;
        let err = ImapSession::connect(&account).await.expect_err("refused");
        assert!(matches!(err, ImapError::PlaintextRefused { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Fatal);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!fake.received().contains("s3cret"), "{}", fake.received());
        assert!(!fake.received().contains("LOGIN"), "{}", fake.received());
    })
    .await;
}

#[tokio::test]
async fn starttls_not_offered_is_refused_not_downgraded() {
    within(async {
        let fake = Fake::start(GREETING, false, after_login("", |_, _| vec![])).await;
        let mut account = fake.account();
        account.security = Security::Starttls;
        let err = ImapSession::connect(&account).await.expect_err("refused");
        assert!(
            matches!(
                err,
                ImapError::Unsupported {
                    capability: "STARTTLS",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!fake.received().contains("s3cret"));
    })
    .await;
}

#[tokio::test]
async fn greeting_bye_is_transient() {
    within(async {
        let fake = Fake::start(
            "* BYE Too many connections\r\n",
            false,
            Arc::new(|_, _| vec![]),
        )
        .await;
        let err = ImapSession::connect(&fake.account())
            .await
            .expect_err("refused");
        assert!(matches!(err, ImapError::Bye { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Transient);
    })
    .await;
}

#[tokio::test]
async fn xoauth2_error_challenge_is_answered_and_becomes_an_auth_error() {
    within(async {
        let handler: Handler = Arc::new(|tag: &str, text: &str| {
            if text.starts_with("AUTHENTICATE XOAUTH2 ") {
                vec![send(
                    "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n",
                )]
            } else if text.is_empty() {
                // The empty answer line arrives as a command with an empty tag.
                vec![send(
                    "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                )]
            } else {
                vec![send(&format!("{tag} BAD unexpected\r\n"))]
            }
        });
        let fake = Fake::start(
            "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\n",
            false,
            handler,
        )
        .await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Xoauth2;
        let err = ImapSession::connect(&account).await.expect_err("refused");
        assert_eq!(err.class(), ErrorClass::Auth, "{err}");
        assert!(err.to_string().contains("fake-target"), "{err}");
        let wire = fake.received();
        assert!(
            wire.starts_with(
                "A1 AUTHENTICATE XOAUTH2 dXNlcj1ib2IBYXV0aD1CZWFyZXIgczNjcmV0AQE=\r\n\r\n"
            ),
            "{wire:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn untagged_garbage_is_a_desync_and_poisons_the_session() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("", |_, _| vec![send("* this is not imap (\r\n")]),
        )
        .await;
        let mut imap = session(&fake).await;
        let err = imap.noop().await.expect_err("desync");
        assert!(matches!(err, ImapError::Protocol { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Fatal);
        assert!(imap.is_broken());
        let again = imap.noop().await.expect_err("not reused");
        assert!(matches!(again, ImapError::Poisoned { .. }), "{again}");
    })
    .await;
}

#[tokio::test]
async fn unknown_tag_is_a_desync() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("", |_, _| vec![send("Z99 OK who asked\r\n")]),
        )
        .await;
        let mut imap = session(&fake).await;
        let err = imap.noop().await.expect_err("desync");
        assert!(matches!(err, ImapError::Protocol { .. }), "{err}");
        assert!(matches!(imap.noop().await, Err(ImapError::Poisoned { .. })));
    })
    .await;
}

#[tokio::test]
async fn literal_longer_than_the_data_then_close() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("", |_, _| {
                vec![send("* 1 FETCH (UID 1 BODY[] {5000}\r\nshort"), Act::Close]
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let err = imap.uid_fetch(&[1]).await.expect_err("closed");
        assert!(
            matches!(err, ImapError::Net(NetError::Closed { .. })),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
        assert!(imap.is_broken());
    })
    .await;
}

#[tokio::test]
async fn huge_literal_is_refused_without_allocating() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("", |_, _| {
                vec![
                    send("* 1 FETCH (UID 1 BODY[] {999999999999}\r\n"),
                    Act::Stall,
                ]
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let err = imap.uid_fetch(&[1]).await.expect_err("too large");
        assert!(matches!(err, ImapError::LiteralTooLarge { .. }), "{err}");
    })
    .await;
}

#[tokio::test]
async fn endless_line_is_bounded() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("", |_, _| vec![Act::Send(vec![b'x'; 200_000]), Act::Stall]),
        )
        .await;
        let mut imap = session(&fake).await;
        let err = imap.noop().await.expect_err("too long");
        assert!(
            matches!(err, ImapError::Net(NetError::LineTooLong { .. })),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    within(async {
        let fake = Fake::start(GREETING, false, after_login("", |_, _| vec![Act::Stall])).await;
        let mut imap = session(&fake).await;
        let err = imap.noop().await.expect_err("timeout");
        assert!(
            matches!(err, ImapError::Net(NetError::Timeout { .. })),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
    })
    .await;
}

#[tokio::test]
async fn refused_message_is_reported_and_the_others_go_through() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+ UIDPLUS", |tag, text| {
                let n: u32 = tag[1..].parse().unwrap();
                if text.contains("Subject: 2\r\n") {
                    vec![send(&format!(
                        "{tag} NO Message contains invalid header\r\n"
                    ))]
                } else {
                    vec![send(&format!(
                        "{tag} OK [APPENDUID 77 {}] done\r\n",
                        n * 10
                    ))]
                }
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let raws = raws(4);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        assert!(result.error.is_none(), "{:?}", result.error);
        assert_eq!(result.uidvalidity, Some(77));
        assert_eq!(
            result.outcomes[0],
            AppendOutcome::Appended { uid: Some(20) }
        );
        assert_eq!(
            result.outcomes[1],
            AppendOutcome::Appended { uid: Some(30) }
        );
        let AppendOutcome::Refused(refusal) = &result.outcomes[2] else {
            panic!("{:?}", result.outcomes)
        };
        assert_eq!(refusal.text, "Message contains invalid header");
        assert_eq!(refusal.class(), ErrorClass::Message);
        assert_eq!(
            result.outcomes[3],
            AppendOutcome::Appended { uid: Some(50) }
        );
        // LITERAL+: all four went as non-synchronising literals.
        assert_eq!(fake.received().matches("+}\r\n").count(), 4);
    })
    .await;
}

/// Regression: a batch's MULTIAPPEND commands all go out before the answers
/// are read, so when the first is refused for one message's sake and its
/// one-by-one retry stops at a refusal that concerns the mailbox, the
/// second command is already stored. Its outcomes must say so (they were
/// cut off as "not sent", and their copies were appended again later).
#[tokio::test]
async fn a_later_multiappend_stays_answered_when_an_earlier_ones_retry_stops() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+ UIDPLUS MULTIAPPEND", |tag, text| {
                let multi = text.matches("+}").count() > 1;
                let reply = match (multi, text.contains("Subject: 0\r\n")) {
                    (true, true) => format!("{tag} NO Message 1 has a bad header\r\n"),
                    (true, false) => format!("{tag} OK [APPENDUID 77 30:31] done\r\n"),
                    (false, _) => format!("{tag} NO [OVERQUOTA] Mailbox is full\r\n"),
                };
                vec![send(&reply)]
            }),
        )
        .await;
        let options = ImapOptions {
            append_mode: AppendMode::MultiAppend,
            multiappend_messages: 2,
            // The retry sends one at a time, so it stops before message 1.
            append_window: 1,
            ..ImapOptions::default()
        };
        let mut imap = ImapSession::connect_with(&fake.account(), options)
            .await
            .unwrap();
        let raws = raws(4);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        assert!(result.error.is_none(), "{:?}", result.error);
        let AppendOutcome::Refused(refusal) = &result.outcomes[0] else {
            panic!("{:?}", result.outcomes)
        };
        assert_ne!(refusal.class(), ErrorClass::Message, "{refusal:?}");
        assert_eq!(result.outcomes[1], AppendOutcome::NotSent);
        assert_eq!(
            result.outcomes[2..],
            [
                AppendOutcome::Appended { uid: Some(30) },
                AppendOutcome::Appended { uid: Some(31) }
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn over_appendlimit_is_refused_locally() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+ APPENDLIMIT=40", |tag, _| {
                vec![send(&format!("{tag} OK done\r\n"))]
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let raws = vec![b"Subject: small\r\n\r\nx\r\n".to_vec(), vec![b'y'; 41]];
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        assert_eq!(result.outcomes[0], AppendOutcome::Appended { uid: None });
        let AppendOutcome::Refused(refusal) = &result.outcomes[1] else {
            panic!()
        };
        assert_eq!(refusal.code, Some(ResponseCode::Limit));
        assert_eq!(refusal.class(), ErrorClass::Message);
        assert!(!fake.received().contains("yyyy"), "never sent");
    })
    .await;
}

#[tokio::test]
async fn drop_after_continuation_leaves_the_message_unknown() {
    within(async {
        // No LITERAL+: the client must wait for "+"; the server closes instead.
        let fake = Fake::start(
            "* OK [CAPABILITY IMAP4rev1] ready\r\n",
            true,
            after_login("", |_, _| vec![]),
        )
        .await;
        let mut imap = session(&fake).await;
        let raws = raws(3);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        let err = result.error.expect("connection lost");
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        assert_eq!(
            result.outcomes,
            vec![
                AppendOutcome::Unknown,
                AppendOutcome::NotSent,
                AppendOutcome::NotSent
            ]
        );
        assert!(imap.is_broken());
    })
    .await;
}

#[tokio::test]
async fn bye_mid_append_marks_in_flight_unknown() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+", |tag, _| {
                if tag == "A3" {
                    vec![send("* BYE Server shutting down\r\n"), Act::Close]
                } else {
                    vec![send(&format!("{tag} OK done\r\n"))]
                }
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let raws = raws(4);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        let err = result.error.expect("bye");
        assert!(matches!(err, ImapError::Bye { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(result.outcomes[0], AppendOutcome::Appended { uid: None });
        assert_eq!(result.outcomes[1], AppendOutcome::Unknown);
        assert!(matches!(
            result.outcomes[2],
            AppendOutcome::Unknown | AppendOutcome::NotSent
        ));
        assert!(matches!(imap.noop().await, Err(ImapError::Poisoned { .. })));
    })
    .await;
}

#[tokio::test]
async fn throttling_stops_the_batch_with_the_suggested_wait() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+", |tag, text| {
                if tag == "A2" || text.starts_with("NOOP") {
                    vec![send(&format!("{tag} OK done\r\n"))]
                } else {
                    vec![send(&format!(
                    "{tag} NO Request is throttled. Suggested Backoff Time: 299609 milliseconds\r\n"
                ))]
                }
            }),
        )
        .await;
        let options = ImapOptions {
            append_mode: AppendMode::OneAtATime,
            ..ImapOptions::default()
        };
        let mut imap = ImapSession::connect_with(&fake.account(), options)
            .await
            .unwrap();
        let raws = raws(4);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        assert!(result.error.is_none());
        assert_eq!(result.outcomes[0], AppendOutcome::Appended { uid: None });
        let AppendOutcome::Refused(refusal) = &result.outcomes[1] else {
            panic!("{:?}", result.outcomes)
        };
        assert_eq!(
            refusal.class(),
            ErrorClass::Throttled {
                wait: Some(Duration::from_millis(299_609))
            }
        );
        assert_eq!(result.outcomes[2], AppendOutcome::NotSent);
        assert_eq!(result.outcomes[3], AppendOutcome::NotSent);
        imap.noop().await.expect("still usable");
    })
    .await;
}

#[tokio::test]
async fn refused_multiappend_is_retried_one_by_one_to_find_the_culprit() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+ MULTIAPPEND UIDPLUS", |tag, text| {
                let bad = text.contains("Subject: 1\r\n");
                let many = text.matches("+}").count() > 1;
                if bad {
                    vec![send(&format!(
                        "{tag} NO Message contains invalid header\r\n"
                    ))]
                } else if many {
                    vec![send(&format!("{tag} OK [APPENDUID 9 1:3] done\r\n"))]
                } else {
                    let n: u32 = tag[1..].parse().unwrap();
                    vec![send(&format!("{tag} OK [APPENDUID 9 {n}] done\r\n"))]
                }
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let raws = raws(3);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        assert!(result.error.is_none(), "{:?}", result.error);
        assert_eq!(result.outcomes[0], AppendOutcome::Appended { uid: Some(3) });
        assert!(
            matches!(result.outcomes[1], AppendOutcome::Refused(_)),
            "{:?}",
            result.outcomes
        );
        assert_eq!(result.outcomes[2], AppendOutcome::Appended { uid: Some(5) });
        let wire = fake.received();
        assert!(wire.contains("A2 APPEND INBOX {"), "{wire}");
        assert_eq!(
            wire.matches(" APPEND ").count(),
            4,
            "one MULTIAPPEND then three singles"
        );
    })
    .await;
}

#[tokio::test]
async fn multiappend_uids_come_from_the_uid_set() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+ MULTIAPPEND UIDPLUS", |tag, _| {
                vec![send(&format!("{tag} OK [APPENDUID 9 10:11,20] done\r\n"))]
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        let raws = raws(3);
        let result = imap.append_batch("INBOX", &msgs(&raws)).await;
        let uids: Vec<_> = result
            .outcomes
            .iter()
            .map(|o| match o {
                AppendOutcome::Appended { uid } => *uid,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(uids, vec![Some(10), Some(11), Some(20)]);
        assert_eq!(fake.received().matches(" APPEND ").count(), 1);
    })
    .await;
}

// ----- measurements (run with --ignored --nocapture) -----

/// APPEND rates into local Dovecot for each mode, fsync off (the shared
/// instance) and on. Prints figures; asserts only correctness.
#[tokio::test]
#[ignore]
async fn bench_append_rates() {
    let count = 2000;
    let raws: Vec<Vec<u8>> = (0..count)
        .map(|n| {
            let mut m = message(n, 1_600_000_000 + n as i64);
            m.extend(std::iter::repeat_n(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n", 60).flatten());
            m
        })
        .collect();
    let bytes: usize = raws.iter().map(Vec::len).sum();
    let fsync_on = Dovecot::start_with(dovecot::Options {
        fsync: true,
        ..Default::default()
    });
    for (label, dovecot) in [("fsync off", dovecot::shared()), ("fsync on", &fsync_on)] {
        for mode in [
            AppendMode::OneAtATime,
            AppendMode::Pipelined,
            AppendMode::MultiAppend,
        ] {
            let user = dovecot.user("bench");
            let account = dovecot_account(dovecot, &user, Security::Tls);
            let options = ImapOptions {
                append_mode: mode,
                ..ImapOptions::default()
            };
            let mut imap = ImapSession::connect_with(&account, options).await.unwrap();
            let started = Instant::now();
            let result = imap.append_batch("INBOX", &msgs(&raws)).await;
            let secs = started.elapsed().as_secs_f64();
            assert!(result.error.is_none(), "{:?}", result.error);
            assert!(result
                .outcomes
                .iter()
                .all(|o| matches!(o, AppendOutcome::Appended { .. })));
            println!(
                "{label:9} {mode:12?}: {count} msgs, {:.1} MB in {secs:.2} s = {:.0} msg/s, {:.1} MB/s, {:.3} ms/msg",
                bytes as f64 / 1e6,
                count as f64 / secs,
                bytes as f64 / 1e6 / secs,
                secs * 1000.0 / count as f64
            );
            imap.logout().await.unwrap();
        }
    }
}

/// The response decoder's own cost per response, for the imap-codec question.
#[test]
#[ignore]
fn bench_response_decode() {
    let frames: [&[u8]; 3] = [
        b"A123 OK [APPENDUID 1700000000 4242] Append completed (0.001 + 0.000 secs).\r\n",
        b"* 4242 EXISTS\r\n",
        b"* 3 FETCH (UID 12 RFC822.SIZE 12 FLAGS (\\Seen) BODY[] {12}\r\nhello\r\nworld)\r\n",
    ];
    for frame in frames {
        let n = 200_000;
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(
                mailferry::imap::response::decode_reply(std::hint::black_box(frame)).unwrap(),
            );
        }
        let per = started.elapsed().as_secs_f64() / n as f64 * 1e6;
        println!(
            "decode {:?}: {per:.2} us",
            String::from_utf8_lossy(&frame[..frame.len().min(24)])
        );
    }
}

#[tokio::test]
async fn utf8_accept_sends_mailbox_names_as_utf8() {
    within(async {
        let fake = Fake::start(
            "* OK [CAPABILITY IMAP4rev1 LITERAL+ ENABLE UTF8=ACCEPT] fake ready\r\n",
            false,
            after_login("LITERAL+ ENABLE UTF8=ACCEPT", |tag, text| {
                if text.starts_with("ENABLE UTF8=ACCEPT") {
                    vec![send(&format!(
                        "* ENABLED UTF8=ACCEPT\r\n{tag} OK enabled\r\n"
                    ))]
                } else if text == "LIST \"\" \"\"" {
                    vec![send(&format!(
                        "* LIST (\\Noselect) \"/\" \"\"\r\n{tag} OK listed\r\n"
                    ))]
                } else {
                    vec![send(&format!("{tag} OK done\r\n"))]
                }
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        assert_eq!(
            imap.mailbox_encoding(),
            mailferry::imap::encode::MailboxEncoding::Utf8
        );
        imap.ensure_mailbox("Archiv/Überweisungen").await.unwrap();
        let wire = fake.received();
        assert!(wire.contains("CREATE \"Archiv/Überweisungen\""), "{wire}");
        assert!(
            !wire.contains("&AN"),
            "no modified UTF-7 once UTF8=ACCEPT is on: {wire}"
        );
    })
    .await;
}

#[tokio::test]
async fn without_utf8_accept_names_stay_modified_utf7() {
    within(async {
        let fake = Fake::start(
            GREETING,
            false,
            after_login("LITERAL+", |tag, text| {
                if text == "LIST \"\" \"\"" {
                    vec![send(&format!(
                        "* LIST (\\Noselect) \"/\" \"\"\r\n{tag} OK listed\r\n"
                    ))]
                } else {
                    vec![send(&format!("{tag} OK done\r\n"))]
                }
            }),
        )
        .await;
        let mut imap = session(&fake).await;
        imap.ensure_mailbox("Archiv/Überweisungen").await.unwrap();
        let wire = fake.received();
        assert!(wire.contains("CREATE Archiv/&ANw-berweisungen"), "{wire}");
        assert!(!wire.contains("ENABLE"), "{wire}");
    })
    .await;
}
