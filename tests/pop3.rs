//! The POP3 client against a real Dovecot: logins (TLS, STLS, plain), listings, RETR bytes, DELE at QUIT, pipelining, and a throughput measurement.

mod support;

use std::time::{Duration, Instant};

use mailferry::config::{Account, AuthMechanism, PasswordSource, Security};
use mailferry::pop3::{Pop3Error, Pop3Options, Pop3Session};
use mailferry::retry::ErrorClass;
use mailferry::secret::Secret;
use support::deadline::within;
use support::dovecot::{self, Dovecot, User};
use support::proxy::{At, Dir, Kind, Plan, Proxy};

/// An account for `user` on the shared Dovecot, over `security`.
fn account(dovecot: &Dovecot, user: &User, security: Security) -> Account {
    let port = match security {
        Security::Tls => dovecot.pop3s_port(),
        Security::Starttls | Security::Plain => dovecot.pop3_port(),
    };
    let name = format!("dovecot-{}", user.name);
    Account {
        ca_file: Some(dovecot.ca_file()),
        ..support::account::account(&name, port, security, &user.name, &user.password)
    }
}

/// What RETR must hand on for a stored message: line ends CRLF, and a final
/// CRLF (Dovecot adds one to a message without it).
fn expected(message: &[u8]) -> Vec<u8> {
    let mut served = Dovecot::as_served(message);
    if !served.ends_with(b"\r\n") {
        served.extend_from_slice(b"\r\n");
    }
    served
}

/// Messages that tend to break clients.
fn edge_cases() -> Vec<Vec<u8>> {
    vec![
        b"From: a@example.com\nSubject: no message-id\n\nbody\n".to_vec(),
        b"From: b@example.com\r\nSubject: =?x?= caf\xc3\xa9 \xe9t\xe9 8-bit\r\nMessage-ID: <8bit@x>\r\n\r\nr\xe9sum\xe9\r\n".to_vec(),
        b"Subject: bare LF body\r\nMessage-ID: <lf@x>\r\n\r\nline one\nline two\n\nlast".to_vec(),
        b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n...three\r\n. \r\nend\r\n".to_vec(),
        b"Subject: header only\r\n".to_vec(),
        b"Subject: nul\r\n\r\na\0b\r\n".to_vec(),
    ]
}

#[tokio::test]
async fn login_over_tls_starttls_and_plain() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-logins");
        dovecot.load(&user, "INBOX", &edge_cases()[..1]);
        for security in [Security::Tls, Security::Starttls, Security::Plain] {
            let account = account(dovecot, &user, security);
            let mut pop = Pop3Session::connect(&account)
                .await
                .unwrap_or_else(|e| panic!("{security:?}: {e}\n{}", dovecot.log_tail(20)));
            assert_eq!(pop.connection().is_tls(), security != Security::Plain);
            assert!(pop.capabilities().known);
            let (count, _) = pop.stat().await.unwrap();
            assert_eq!(count, 1, "{security:?}");
            pop.quit().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn auth_plain_logs_in() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-sasl-plain");
        let mut account = account(dovecot, &user, Security::Tls);
        account.auth = AuthMechanism::Plain;
        let pop = Pop3Session::connect(&account).await.expect("AUTH PLAIN");
        pop.quit().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn plain_without_allow_plaintext_is_refused_before_the_password() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-no-plain");
        let mut account = account(dovecot, &user, Security::Plain);
        account.allow_plaintext = false;
        let err = Pop3Session::connect(&account).await.err().expect("refused");
        assert!(matches!(err, Pop3Error::PlaintextRefused { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Fatal);
        // Dovecot never saw a login attempt for this user.
        assert!(
            !dovecot.log().contains(&user.name),
            "{}",
            dovecot.log_tail(10)
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-wrong-pw");
        let mut account = account(dovecot, &user, Security::Tls);
        account.password = PasswordSource::Inline(Secret::new("not-it"));
        let started = Instant::now();
        let err = Pop3Session::connect(&account).await.err().expect("refused");
        assert_eq!(err.class(), ErrorClass::Auth, "{err:?}");
        assert!(!format!("{err} {err:?}").contains("not-it"));
        eprintln!("wrong password refused after {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn listings_and_retr_hand_on_the_stored_bytes() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-edge");
        let messages = edge_cases();
        dovecot.load(&user, "INBOX", &messages);
        let mut pop = Pop3Session::connect(&account(dovecot, &user, Security::Tls))
            .await
            .unwrap();
        // STAT and LIST count the stored bytes with CRLF line ends, without
        // the final CRLF that RETR adds to a message lacking one.
        let listed = |m: &[u8]| Dovecot::as_served(m).len() as u64;
        let total: u64 = messages.iter().map(|m| listed(m)).sum();
        assert_eq!(pop.stat().await.unwrap(), (messages.len() as u32, total));
        let list = pop.list().await.unwrap();
        let uidl = pop.uidl().await.unwrap().expect("Dovecot has UIDL");
        assert_eq!(list.len(), messages.len());
        assert_eq!(uidl.len(), messages.len());
        for (i, message) in messages.iter().enumerate() {
            let n = i as u32 + 1;
            let want = expected(message);
            assert_eq!(list[i], (n, listed(message)));
            assert_eq!(pop.list_one(n).await.unwrap(), listed(message));
            assert_eq!(pop.uidl_one(n).await.unwrap().as_ref(), Some(&uidl[i].1));
            let got = pop.retr(n).await.unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "message {n}"
            );
            assert_eq!(got, want, "message {n}");
            let head = pop.top(n, 0).await.unwrap();
            assert!(want.starts_with(&head[..head.len().min(want.len())]));
        }
        let many = pop.uidl_many(&[1, 2, 99]).await.unwrap().unwrap();
        assert!(many[0].1.is_ok() && many[1].1.is_ok());
        let missing = many[2].1.as_ref().unwrap_err();
        assert_eq!(missing.class(), ErrorClass::Message, "{missing:?}");
        let sizes = pop.list_many(&[2, 1]).await.unwrap();
        assert_eq!(sizes[0].1.as_ref().unwrap(), &list[1].1);
        pop.quit().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_20_mb_message_comes_through_whole() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-big");
        let mut big = b"Subject: big\r\nMessage-ID: <big@x>\r\n\r\n".to_vec();
        let line = b".a line of text that starts with a dot, 8-bit \xe9, seventy-ish\r\n";
        while big.len() < 20 * 1024 * 1024 {
            big.extend_from_slice(line);
        }
        dovecot.load(&user, "INBOX", std::slice::from_ref(&big));
        let mut pop = Pop3Session::connect(&account(dovecot, &user, Security::Tls))
            .await
            .unwrap();
        let started = Instant::now();
        let mut stream = pop.retrieve(vec![1]);
        let got = stream.next().await.unwrap().unwrap();
        eprintln!("20 MB RETR over TLS: {:?}", started.elapsed());
        assert_eq!(got.msgno, 1);
        assert!(got.bytes == expected(&big), "20 MB message differs");
    })
    .await;
}

#[tokio::test]
async fn dele_takes_effect_only_at_quit() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-dele");
        dovecot.load(&user, "INBOX", &edge_cases()[..3]);
        let account = account(dovecot, &user, Security::Tls);

        // Marked, then the connection dropped without QUIT: nothing goes.
        let mut pop = Pop3Session::connect(&account).await.unwrap();
        let results = pop.dele_many(&[1, 2]).await.unwrap();
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        drop(pop);
        let mut pop = Pop3Session::connect(&account).await.unwrap();
        assert_eq!(pop.stat().await.unwrap().0, 3);
        assert_eq!(dovecot.count(&user, "INBOX"), 3);

        // RSET unmarks.
        pop.dele(1).await.unwrap();
        pop.rset().await.unwrap();
        pop.quit().await.unwrap();
        assert_eq!(dovecot.count(&user, "INBOX"), 3);

        // Marked and QUIT confirmed: gone.
        let mut pop = Pop3Session::connect(&account).await.unwrap();
        pop.dele_many(&[1, 3]).await.unwrap();
        let again = pop.dele(1).await.unwrap_err();
        assert_eq!(again.class(), ErrorClass::Message, "{again:?}");
        pop.quit().await.expect("UPDATE confirmed");
        let left = dovecot.messages(&user, "INBOX");
        assert_eq!(left, edge_cases()[1..2].to_vec());
    })
    .await;
}

#[tokio::test]
async fn pipelining_on_and_off_give_the_same_bytes() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-pipe");
        let mut messages = edge_cases();
        messages.extend(corpus(200, 3_000));
        dovecot.load(&user, "INBOX", &messages);
        let account = account(dovecot, &user, Security::Tls);
        let mut results = Vec::new();
        for pipelining in [true, false] {
            let options = Pop3Options {
                pipelining,
                window_messages: 8,
                ..Pop3Options::default()
            };
            let mut pop = Pop3Session::connect_with(&account, options).await.unwrap();
            assert_eq!(pop.pipelining(), pipelining);
            let all: Vec<u32> = (1..=messages.len() as u32).collect();
            let mut stream = pop.retrieve(all);
            let mut got = Vec::new();
            while let Some(result) = stream.next().await {
                got.push(result.unwrap());
            }
            results.push(got);
        }
        assert_eq!(results[0], results[1]);
        for (got, message) in results[0].iter().zip(&messages) {
            assert_eq!(got.bytes, expected(message), "message {}", got.msgno);
        }
    })
    .await;
}

/// `count` generated messages of about `size` bytes each.
fn corpus(count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut m = format!(
                "From: gen@example.com\r\nSubject: message {i}\r\nMessage-ID: <gen-{i}@x>\r\n\r\n"
            )
            .into_bytes();
            let mut line = 0;
            while m.len() < size {
                m.extend_from_slice(
                    format!("line {line} of message {i}, padding padding\r\n").as_bytes(),
                );
                line += 1;
            }
            m
        })
        .collect()
}

/// RETR throughput against the local Dovecot, pipelined vs one at a time.
/// Prints figures; asserts nothing about time. Run with
/// `cargo test --release --test pop3 -- --ignored --nocapture retr_throughput`.
#[tokio::test]
#[ignore = "measurement: run by hand"]
async fn retr_throughput() {
    let dovecot = dovecot::shared();
    let user = dovecot.user("pop3-bench");
    let messages = corpus(2_000, 20 * 1024);
    dovecot.load(&user, "INBOX", &messages);
    for security in [Security::Plain, Security::Tls] {
        let account = account(dovecot, &user, security);
        for pipelining in [true, false] {
            let options = Pop3Options {
                pipelining,
                ..Pop3Options::default()
            };
            let mut pop = Pop3Session::connect_with(&account, options).await.unwrap();
            let all: Vec<u32> = (1..=messages.len() as u32).collect();
            let started = Instant::now();
            let mut stream = pop.retrieve(all);
            let mut bytes = 0u64;
            let mut count = 0u64;
            while let Some(result) = stream.next().await {
                bytes += result.unwrap().bytes.len() as u64;
                count += 1;
            }
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{security:?} pipelining={pipelining}: {count} messages, {:.1} MB in {secs:.2} s = {:.0} msg/s, {:.1} MB/s",
                bytes as f64 / 1e6,
                count as f64 / secs,
                bytes as f64 / 1e6 / secs
            );
        }
    }
}

/// Dovecot's replies arrive one byte per segment: every reply and body is
/// split at every offset on the real wire, and the bytes still match.
#[tokio::test]
async fn replies_sliced_into_single_bytes_still_decode() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-sliced");
        let messages = edge_cases();
        dovecot.load(&user, "INBOX", &messages);
        let proxy = Proxy::start(dovecot.pop3_port(), |_| {
            Plan::pass().with(
                Dir::Down,
                At::Byte(0),
                Kind::Slice {
                    pause: Duration::ZERO,
                },
            )
        });
        let mut account = account(dovecot, &user, Security::Plain);
        account.port = proxy.port();
        let mut pop = Pop3Session::connect(&account).await.unwrap();
        let all: Vec<u32> = (1..=messages.len() as u32).collect();
        let mut stream = pop.retrieve(all);
        for message in &messages {
            let got = stream.next().await.unwrap().unwrap();
            assert_eq!(got.bytes, expected(message), "message {}", got.msgno);
        }
        assert!(stream.next().await.is_none());
    })
    .await;
}

/// The connection cut in the middle of a message: the stream reports a
/// transient error and ends; no partial message is handed on, and the
/// DELE marked earlier in the session never takes effect.
#[tokio::test]
async fn a_cut_mid_message_hands_on_nothing_partial_and_deletes_nothing() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-cut");
        let messages = corpus(5, 4_000);
        dovecot.load(&user, "INBOX", &messages);
        // Cut 2 kB into the body of the third message.
        let proxy = Proxy::start(dovecot.pop3_port(), |_| {
            let at = At::After {
                needle: b"Subject: message 2\r\n".to_vec(),
                nth: 0,
                extra: 2_000,
            };
            Plan::pass().with(Dir::Down, at, Kind::CUT)
        });
        let mut account = account(dovecot, &user, Security::Plain);
        account.port = proxy.port();
        let mut pop = Pop3Session::connect(&account).await.unwrap();
        pop.dele(1).await.unwrap();
        let mut stream = pop.retrieve(vec![2, 3, 4, 5]);
        let mut complete = Vec::new();
        let mut failure = None;
        while let Some(result) = stream.next().await {
            match result {
                Ok(message) => complete.push(message),
                Err(err) => failure = Some(err),
            }
        }
        let numbers: Vec<u32> = complete.iter().map(|m| m.msgno).collect();
        assert_eq!(
            numbers,
            [2],
            "whole messages before the cut; then {failure:?}"
        );
        for got in &complete {
            assert_eq!(got.bytes, expected(&messages[got.msgno as usize - 1]));
        }
        let err = failure.expect("the cut is reported");
        assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
        drop(stream);
        assert!(!pop.is_usable());
        assert!(matches!(pop.quit().await, Err(Pop3Error::Poisoned { .. })));
        assert_eq!(dovecot.count(&user, "INBOX"), 5);
    })
    .await;
}
