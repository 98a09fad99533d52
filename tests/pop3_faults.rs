//! POP3 client against scripted fake servers: broken, slow, hostile and old servers that real Dovecot will not imitate.
//!
//! Each fake is a TcpListener on 127.0.0.1:0 serving one connection: it
//! sends a greeting, then answers each line the client sends with what the
//! test's responder returns, and records every line for assertions.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailferry::config::{Account, AuthMechanism, PasswordSource, Security};
use mailferry::pop3::{Pop3Error, Pop3Options, Pop3Session, RespCode};
use mailferry::retry::ErrorClass;
use mailferry::secret::Secret;
use support::deadline::within;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const PASSWORD: &str = "s3cret-pw";

/// What the fake does after reading one line.
enum Action {
    Reply(Vec<u8>),
    /// Reply, then close the connection.
    ReplyClose(Vec<u8>),
    Close,
    /// Never answer (the client must time out).
    Stall,
}

fn reply(text: &str) -> Action {
    Action::Reply(text.as_bytes().to_vec())
}

/// CAPA of a modern server (Dovecot's, before login).
const CAPA_FULL: &str =
    "+OK\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nUSER\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n";
/// CAPA of a server without PIPELINING or UIDL.
const CAPA_BARE: &str = "+OK\r\nTOP\r\nUSER\r\n.\r\n";

/// Answers CAPA, USER, PASS, NOOP and QUIT like a well-behaved server with
/// the given CAPA reply; `None` for anything else.
fn basics(capa: &'static str, line: &str) -> Option<Action> {
    let upper = line.to_ascii_uppercase();
    Some(match upper.split(' ').next().unwrap_or("") {
        "CAPA" => reply(capa),
        "USER" => reply("+OK\r\n"),
        "PASS" if line == format!("PASS {PASSWORD}") => reply("+OK Logged in.\r\n"),
        "PASS" => reply("-ERR [AUTH] Authentication failed.\r\n"),
        "NOOP" => reply("+OK\r\n"),
        "QUIT" => Action::ReplyClose(b"+OK Logging out.\r\n".to_vec()),
        _ => return None,
    })
}

struct Fake {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    /// Starts a fake sending `greeting` (nothing when empty), answering
    /// lines with `respond`; unanswered lines get `-ERR unknown command`.
    async fn start(
        greeting: &'static str,
        respond: impl Fn(&str) -> Option<Action> + Send + 'static,
    ) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let record = lines.clone();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let (read, mut write) = socket.into_split();
            let mut read = BufReader::new(read);
            if !greeting.is_empty() {
                write.write_all(greeting.as_bytes()).await.ok();
            }
            let mut line = Vec::new();
            loop {
                line.clear();
                match read.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                record.lock().unwrap().push(text.clone());
                match respond(&text).unwrap_or_else(|| reply("-ERR unknown command\r\n")) {
                    Action::Reply(bytes) => {
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Action::ReplyClose(bytes) => {
                        write.write_all(&bytes).await.ok();
                        return;
                    }
                    Action::Close => return,
                    Action::Stall => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                }
            }
        });
        Fake { port, lines }
    }

    fn account(&self) -> Account {
        Account {
            timeout: Duration::from_secs(5),
            ..support::account::account("fake", self.port, Security::Plain, "alice", PASSWORD)
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn sent(&self, prefix: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

/// A logged-in session with a fake answering `extra` first, then the basics.
async fn session_with(
    capa: &'static str,
    extra: impl Fn(&str) -> Option<Action> + Send + 'static,
) -> (Fake, Pop3Session) {
    let fake = Fake::start("+OK ready\r\n", move |l| {
        extra(l).or_else(|| basics(capa, l))
    })
    .await;
    let session = Pop3Session::connect(&fake.account())
        .await
        .expect("login on the fake");
    (fake, session)
}

fn retr_reply(body: &str) -> Action {
    reply(&format!("+OK message follows\r\n{body}"))
}

#[tokio::test]
async fn an_endless_status_line_is_a_protocol_error_and_poisons() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| {
            (l == "STAT").then(|| Action::Reply(vec![b'+'; 200_000]))
        })
        .await;
        let err = pop.stat().await.unwrap_err();
        assert!(matches!(err, Pop3Error::Protocol { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Fatal);
        assert!(!pop.is_usable());
        assert!(matches!(pop.noop().await, Err(Pop3Error::Poisoned { .. })));
    })
    .await;
}

#[tokio::test]
async fn an_endless_message_line_is_capped_and_never_handed_on() {
    within(async {
        let fake = Fake::start("+OK\r\n", |l| match l {
            "RETR 1" => {
                let mut body = b"+OK\r\n".to_vec();
                body.extend(std::iter::repeat_n(b'x', 3_000_000));
                Some(Action::ReplyClose(body))
            }
            l => basics(CAPA_FULL, l),
        })
        .await;
        let options = Pop3Options {
            max_message_size: 1_000_000,
            ..Pop3Options::default()
        };
        let mut pop = Pop3Session::connect_with(&fake.account(), options)
            .await
            .unwrap();
        let err = pop.retr(1).await.unwrap_err();
        // Over the limit, then the server hung up before the end: the
        // connection error wins, nothing is handed on.
        assert!(
            matches!(err, Pop3Error::Net(mailferry::net::NetError::Closed { .. })),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
    })
    .await;
}

#[tokio::test]
async fn a_message_without_its_terminating_dot_is_an_error_not_a_message() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| match l {
            "LIST" => Some(reply("+OK\r\n1 20\r\n.\r\n")),
            "RETR 1" => Some(Action::ReplyClose(
                b"+OK\r\nSubject: cut\r\n\r\nbody\r\n".to_vec(),
            )),
            _ => None,
        })
        .await;
        let mut stream = pop.retrieve(vec![1]);
        let first = stream.next().await.expect("one result");
        let err = first.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
        assert!(stream.next().await.is_none(), "the stream ends");
        drop(stream);
        assert!(!pop.is_usable());
    })
    .await;
}

#[tokio::test]
async fn a_reply_cut_mid_message_is_an_error() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| {
            (l == "RETR 1").then(|| Action::ReplyClose(b"+OK\r\nSubject: x\r\n\r\nhal".to_vec()))
        })
        .await;
        let err = pop.retr(1).await.unwrap_err();
        assert!(matches!(err, Pop3Error::Net(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn nul_and_bare_lf_bytes_survive_with_crlf_line_ends() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| {
            (l == "RETR 1").then(|| {
                Action::Reply(
                    b"+OK\r\nSubject: \xe9t\xe9\nX: a\0b\r\n\n..dot\nbody\r\r\n.\r\n".to_vec(),
                )
            })
        })
        .await;
        let bytes = pop.retr(1).await.expect("retr");
        assert_eq!(
            bytes,
            b"Subject: \xe9t\xe9\r\nX: a\0b\r\n\r\n.dot\r\nbody\r\r\n".to_vec()
        );
        pop.noop().await.expect("still in step");
    })
    .await;
}

#[tokio::test]
async fn garbage_in_a_listing_is_a_protocol_error() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| {
            (l == "LIST").then(|| reply("+OK\r\nthis is not a listing\r\n.\r\n"))
        })
        .await;
        let err = pop.list().await.unwrap_err();
        assert!(matches!(err, Pop3Error::Protocol { .. }), "{err:?}");
        assert!(matches!(pop.stat().await, Err(Pop3Error::Poisoned { .. })));
    })
    .await;
}

#[tokio::test]
async fn a_status_that_is_not_pop3_is_a_protocol_error() {
    within(async {
        let (_fake, mut pop) =
            session_with(CAPA_FULL, |l| (l == "STAT").then(|| reply("+OKAY 1 2\r\n"))).await;
        let err = pop.stat().await.unwrap_err();
        assert!(matches!(err, Pop3Error::Protocol { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_huge_list_size_is_skipped_without_retr() {
    within(async {
        let (fake, mut pop) = session_with(CAPA_FULL, |l| match l {
            "LIST" => Some(reply("+OK\r\n1 18446744073709551615\r\n2 12\r\n.\r\n")),
            "RETR 2" => Some(retr_reply("Subject: 2\r\n.\r\n")),
            _ => None,
        })
        .await;
        let mut stream = pop.retrieve(vec![1, 2]);
        let first = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(first, Pop3Error::TooLarge { msgno: 1, .. }),
            "{first:?}"
        );
        assert_eq!(first.class(), ErrorClass::Message);
        let second = stream.next().await.unwrap().expect("message 2");
        assert_eq!(second.bytes, b"Subject: 2\r\n");
        assert!(stream.next().await.is_none());
        assert_eq!(fake.sent("RETR 1"), 0, "{:?}", fake.lines());
    })
    .await;
}

#[tokio::test]
async fn a_message_over_the_limit_is_drained_and_the_session_goes_on() {
    within(async {
        let fake = Fake::start("+OK\r\n", |l| match l {
            // LIST understates the size: the limit is enforced while reading.
            "LIST" => Some(reply("+OK\r\n1 10\r\n2 10\r\n.\r\n")),
            "RETR 1" => Some(retr_reply(&format!("{}\r\n.\r\n", "y".repeat(5000)))),
            "RETR 2" => Some(retr_reply("small\r\n.\r\n")),
            l => basics(CAPA_FULL, l),
        })
        .await;
        let options = Pop3Options {
            max_message_size: 1000,
            ..Pop3Options::default()
        };
        let mut pop = Pop3Session::connect_with(&fake.account(), options)
            .await
            .unwrap();
        let mut stream = pop.retrieve(vec![1, 2]);
        let first = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(
                first,
                Pop3Error::TooLarge {
                    msgno: 1,
                    size: 5002,
                    limit: 1000,
                    ..
                }
            ),
            "{first:?}"
        );
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!(second.bytes, b"small\r\n");
        drop(stream);
        pop.noop().await.expect("in step");
    })
    .await;
}

#[tokio::test]
async fn err_on_one_retr_does_not_end_the_pipelined_stream() {
    within(async {
        let (fake, mut pop) = session_with(CAPA_FULL, |l| match l {
            "LIST" => Some(reply("+OK\r\n1 5\r\n2 5\r\n3 5\r\n.\r\n")),
            "RETR 1" => Some(retr_reply("one\r\n.\r\n")),
            "RETR 2" => Some(reply("-ERR [SYS/TEMP] cannot read message\r\n")),
            "RETR 3" => Some(retr_reply("three\r\n.\r\n")),
            _ => None,
        })
        .await;
        let mut stream = pop.retrieve(vec![1, 2, 3]);
        let mut got = Vec::new();
        while let Some(result) = stream.next().await {
            got.push(result.map(|m| m.bytes).map_err(|e| e.to_string()));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(b"one\r\n".to_vec()));
        assert!(got[1].as_ref().unwrap_err().contains("cannot read"));
        assert_eq!(got[2], Ok(b"three\r\n".to_vec()));
        // Pipelined: the three RETRs went out before the first reply was read.
        let lines = fake.lines();
        let retrs: Vec<_> = lines.iter().filter(|l| l.starts_with("RETR")).collect();
        assert_eq!(retrs, ["RETR 1", "RETR 2", "RETR 3"]);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_stream_leaves_the_session_usable() {
    within(async {
        let (fake, mut pop) = session_with(CAPA_FULL, |l| match l {
            "LIST" => Some(reply("+OK\r\n1 5\r\n2 5\r\n3 5\r\n.\r\n")),
            l if l.starts_with("RETR ") => Some(retr_reply("m\r\n..\r\n.\r\n")),
            _ => None,
        })
        .await;
        let mut stream = pop.retrieve(vec![1, 2, 3]);
        stream.next().await.unwrap().unwrap();
        drop(stream);
        pop.noop().await.expect("pending RETR replies read away");
        pop.quit().await.expect("quit");
        assert_eq!(fake.sent("RETR"), 3);
    })
    .await;
}

#[tokio::test]
async fn a_stall_times_out() {
    within(async {
        let fake = Fake::start("+OK\r\n", |l| match l {
            "STAT" => Some(Action::Stall),
            l => basics(CAPA_FULL, l),
        })
        .await;
        let mut account = fake.account();
        account.timeout = Duration::from_millis(300);
        let mut pop = Pop3Session::connect(&account).await.unwrap();
        let err = pop.stat().await.unwrap_err();
        assert!(
            matches!(
                err,
                Pop3Error::Net(mailferry::net::NetError::Timeout { .. })
            ),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out_at_the_greeting() {
    within(async {
        let fake = Fake::start("", |_| None).await;
        let mut account = fake.account();
        account.timeout = Duration::from_millis(300);
        let err = Pop3Session::connect(&account).await.err().unwrap();
        assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_server_that_closes_after_the_greeting() {
    within(async {
        let fake = Fake::start("+OK hi\r\n", |_| Some(Action::Close)).await;
        let err = Pop3Session::connect(&fake.account()).await.err().unwrap();
        assert!(
            matches!(err, Pop3Error::Net(mailferry::net::NetError::Closed { .. })),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Transient);
    })
    .await;
}

#[tokio::test]
async fn a_negative_greeting_is_refused() {
    within(async {
        let fake = Fake::start("-ERR [SYS/TEMP] overloaded\r\n", |_| None).await;
        let err = Pop3Session::connect(&fake.account()).await.err().unwrap();
        assert!(matches!(err, Pop3Error::Greeting { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Transient);
    })
    .await;
}

#[tokio::test]
async fn without_uidl_in_capa_uidl_is_none_and_not_sent() {
    within(async {
        let (fake, mut pop) = session_with(CAPA_BARE, |_| None).await;
        assert_eq!(pop.uidl().await.unwrap(), None);
        assert_eq!(pop.uidl_one(1).await.unwrap(), None);
        assert_eq!(fake.sent("UIDL"), 0);
        assert!(!pop.pipelining());
    })
    .await;
}

#[tokio::test]
async fn without_capa_uidl_is_probed_and_none() {
    within(async {
        let (fake, mut pop) = session_with("-ERR unknown command\r\n", |l| match l {
            "UIDL" => Some(reply("-ERR unknown command\r\n")),
            "LIST" => Some(reply("+OK\r\n1 5\r\n2 5\r\n.\r\n")),
            l if l.starts_with("RETR ") => Some(retr_reply("m\r\n.\r\n")),
            _ => None,
        })
        .await;
        assert!(!pop.capabilities().known);
        assert_eq!(pop.uidl().await.unwrap(), None);
        assert_eq!(pop.uidl().await.unwrap(), None, "asked once only");
        assert_eq!(fake.sent("UIDL"), 1);
        // Without CAPA there is no PIPELINING: one RETR at a time still works.
        let mut stream = pop.retrieve(vec![1, 2]);
        assert!(stream.next().await.unwrap().is_ok());
        assert!(stream.next().await.unwrap().is_ok());
    })
    .await;
}

#[tokio::test]
async fn starttls_without_stls_is_refused_before_any_credential() {
    within(async {
        let fake = Fake::start("+OK\r\n", |l| basics(CAPA_FULL, l)).await;
        let mut account = fake.account();
        account.security = Security::Starttls;
        account.allow_plaintext = false;
        let err = Pop3Session::connect(&account).await.err().unwrap();
        assert!(matches!(err, Pop3Error::StlsNotOffered { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Fatal);
        assert_eq!(fake.lines(), ["CAPA"]);
    })
    .await;
}

#[tokio::test]
async fn plain_text_login_is_refused_without_allow_plaintext() {
    within(async {
        for auth in [
            AuthMechanism::Login,
            AuthMechanism::Plain,
            AuthMechanism::Xoauth2,
        ] {
            let fake = Fake::start("+OK\r\n", |l| basics(CAPA_FULL, l)).await;
            let mut account = fake.account();
            account.allow_plaintext = false;
            account.auth = auth;
            let err = Pop3Session::connect(&account).await.err().unwrap();
            assert!(matches!(err, Pop3Error::PlaintextRefused { .. }), "{err:?}");
            assert!(!err.to_string().contains(PASSWORD));
            assert_eq!(fake.lines(), ["CAPA"], "{auth:?}: nothing but CAPA sent");
        }
    })
    .await;
}

#[tokio::test]
async fn login_refusals_carry_their_code_and_class() {
    within(async {
        let cases = [
            ("-ERR [AUTH] Authentication failed.\r\n", ErrorClass::Auth),
            ("-ERR bad password\r\n", ErrorClass::Auth),
            ("-ERR [IN-USE] locked\r\n", ErrorClass::Transient),
            ("-ERR [SYS/TEMP] try later\r\n", ErrorClass::Transient),
            (
                "-ERR [LOGIN-DELAY] too soon\r\n",
                ErrorClass::Throttled {
                    wait: Some(Duration::from_secs(900)),
                },
            ),
        ];
        for (answer, class) in cases {
            let fake = Fake::start("+OK\r\n", move |l| match l {
                "CAPA" => Some(reply("+OK\r\nUSER\r\nLOGIN-DELAY 900\r\n.\r\n")),
                l if l.starts_with("PASS ") => Some(reply(answer)),
                l => basics(CAPA_FULL, l),
            })
            .await;
            let err = Pop3Session::connect(&fake.account()).await.err().unwrap();
            assert!(
                matches!(
                    err,
                    Pop3Error::AuthRefused {
                        command: "PASS",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_eq!(err.class(), class, "{answer}");
            assert!(!format!("{err} {err:?}").contains(PASSWORD));
        }
    })
    .await;
}

#[tokio::test]
async fn apop_sends_the_rfc_1939_digest() {
    within(async {
        let fake = Fake::start(
            "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n",
            |l| match l {
                "CAPA" => Some(reply("-ERR\r\n")),
                "APOP mrose c4c9334bac560ecc979e58001b3e22fb" => Some(reply("+OK\r\n")),
                l if l.starts_with("APOP") => Some(reply("-ERR [AUTH] bad digest\r\n")),
                _ => None,
            },
        )
        .await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Apop;
        account.username = "mrose".into();
        account.password = PasswordSource::Inline(Secret::new("tanstaaf"));
        Pop3Session::connect(&account).await.expect("APOP login");
    })
    .await;
}

#[tokio::test]
async fn apop_without_a_timestamp_is_refused() {
    within(async {
        let fake = Fake::start("+OK ready\r\n", |l| basics(CAPA_FULL, l)).await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Apop;
        let err = Pop3Session::connect(&account).await.err().unwrap();
        assert!(matches!(err, Pop3Error::NoApopTimestamp { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn auth_plain_sends_an_initial_response() {
    within(async {
        // base64("\0alice\0s3cret-pw")
        let fake = Fake::start("+OK\r\n", |l| match l {
            "AUTH PLAIN AGFsaWNlAHMzY3JldC1wdw==" => Some(reply("+OK Logged in.\r\n")),
            l if l.starts_with("AUTH") => Some(reply("-ERR [AUTH] no\r\n")),
            l => basics(CAPA_FULL, l),
        })
        .await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Plain;
        Pop3Session::connect(&account).await.expect("AUTH PLAIN");
    })
    .await;
}

#[tokio::test]
async fn xoauth2_is_two_step_and_an_error_challenge_gets_an_empty_line() {
    within(async {
        // base64("user=alice\x01auth=Bearer s3cret-pw\x01\x01")
        const GOOD: &str = "dXNlcj1hbGljZQFhdXRoPUJlYXJlciBzM2NyZXQtcHcBAQ==";
        let fake = Fake::start("+OK\r\n", |l| match l {
            "AUTH XOAUTH2" => Some(reply("+ \r\n")),
            GOOD => Some(reply("+OK Logged in.\r\n")),
            l => basics(CAPA_FULL, l),
        })
        .await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Xoauth2;
        Pop3Session::connect(&account).await.expect("XOAUTH2");
        assert_eq!(fake.lines(), ["CAPA", "AUTH XOAUTH2", GOOD]);

        let fake = Fake::start("+OK\r\n", |l| match l {
            "AUTH XOAUTH2" => Some(reply("+\r\n")),
            "" => Some(reply("-ERR [AUTH] Authentication failed.\r\n")),
            l if l.starts_with("dXNl") => Some(reply(
                "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n",
            )),
            l => basics(CAPA_FULL, l),
        })
        .await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Xoauth2;
        let err = Pop3Session::connect(&account).await.err().unwrap();
        assert_eq!(err.class(), ErrorClass::Auth, "{err:?}");
        assert!(err.to_string().contains("\"status\":\"401\""), "{err}");
        assert_eq!(fake.lines().last().map(String::as_str), Some(""));
    })
    .await;
}

#[tokio::test]
async fn oauthbearer_sends_the_gs2_header() {
    within(async {
        // base64("n,a=alice,\x01auth=Bearer s3cret-pw\x01\x01")
        const GOOD: &str = "bixhPWFsaWNlLAFhdXRoPUJlYXJlciBzM2NyZXQtcHcBAQ==";
        let fake = Fake::start("+OK\r\n", |l| match l {
            "AUTH OAUTHBEARER" => Some(reply("+ \r\n")),
            GOOD => Some(reply("+OK Logged in.\r\n")),
            l => basics(CAPA_FULL, l),
        })
        .await;
        let mut account = fake.account();
        account.auth = AuthMechanism::Oauthbearer;
        Pop3Session::connect(&account).await.expect("OAUTHBEARER");
    })
    .await;
}

#[tokio::test]
async fn dele_batches_report_each_message_and_quit_reports_update() {
    within(async {
        let (fake, mut pop) = session_with(CAPA_FULL, |l| match l {
            "DELE 2" => Some(reply("-ERR message 2 already deleted\r\n")),
            l if l.starts_with("DELE ") => Some(reply("+OK Marked to be deleted.\r\n")),
            _ => None,
        })
        .await;
        let results = pop.dele_many(&[1, 2, 3]).await.unwrap();
        let ok: Vec<bool> = results.iter().map(|(_, r)| r.is_ok()).collect();
        assert_eq!(ok, [true, false, true]);
        assert_eq!(results[1].0, 2);
        pop.quit().await.expect("UPDATE confirmed");
        assert_eq!(fake.sent("DELE"), 3);
    })
    .await;
}

#[tokio::test]
async fn quit_refused_is_an_error() {
    within(async {
        let (_fake, pop) = session_with(CAPA_FULL, |l| {
            (l == "QUIT").then(|| reply("-ERR some deleted messages not removed\r\n"))
        })
        .await;
        let err = pop.quit().await.unwrap_err();
        assert!(
            matches!(
                err,
                Pop3Error::Refused {
                    command: "QUIT",
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn response_codes_are_typed_in_errors() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| {
            (l == "STAT").then(|| reply("-ERR [IN-USE] maildrop locked\r\n"))
        })
        .await;
        let err = pop.stat().await.unwrap_err();
        assert_eq!(err.resp_code(), Some(&RespCode::InUse));
        assert_eq!(err.class(), ErrorClass::Transient);
        pop.noop()
            .await
            .expect("a refusal keeps the session in step");
    })
    .await;
}

#[tokio::test]
async fn a_user_name_with_a_line_break_is_refused() {
    within(async {
        let fake = Fake::start("+OK\r\n", |l| basics(CAPA_FULL, l)).await;
        let mut account = fake.account();
        account.username = "alice\r\nDELE 1".into();
        let err = Pop3Session::connect(&account).await.err().unwrap();
        assert!(matches!(err, Pop3Error::InvalidArgument { .. }), "{err:?}");
        assert_eq!(fake.lines(), ["CAPA"]);
    })
    .await;
}

#[tokio::test]
async fn an_operation_dropped_half_way_poisons_the_session() {
    within(async {
        let (_fake, mut pop) = session_with(CAPA_FULL, |l| {
            // Half a reply, then silence: the caller gives up first.
            (l == "STAT").then(|| reply("+OK 1"))
        })
        .await;
        let gave_up = tokio::time::timeout(Duration::from_millis(200), pop.stat()).await;
        assert!(gave_up.is_err(), "the fake never finishes the line");
        assert!(!pop.is_usable());
        let err = pop.noop().await.unwrap_err();
        assert!(matches!(err, Pop3Error::Poisoned { .. }), "{err:?}");
        assert_eq!(
            err.class(),
            ErrorClass::Transient,
            "a new session is the cure"
        );
    })
    .await;
}
