//! Smoke tests of the test Dovecot itself: ports, TLS, users, loaded mail and clean-up, with raw protocol lines.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::deadline::within;
use support::dovecot::{self, Dovecot, User};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
    BufReader as AsyncBufReader,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A line-oriented protocol connection, enough for a few raw commands.
struct Wire<S> {
    inner: AsyncBufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    fn new(stream: S) -> Self {
        Wire {
            inner: AsyncBufReader::new(stream),
        }
    }

    /// One line, without its CRLF.
    async fn line(&mut self) -> String {
        let mut line = Vec::new();
        let n = self
            .inner
            .read_until(b'\n', &mut line)
            .await
            .expect("read a line from dovecot");
        assert!(n > 0, "dovecot closed the connection");
        String::from_utf8_lossy(&line).trim_end().to_string()
    }

    async fn send(&mut self, line: &str) {
        let wire = format!("{line}\r\n");
        self.inner
            .get_mut()
            .write_all(wire.as_bytes())
            .await
            .expect("send a line to dovecot");
    }

    /// Sends a command and returns its one-line reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// A POP3 multi-line body after its `+OK` line: raw bytes with CRLFs,
    /// up to (not including) the terminating `.` line, dot-unstuffed.
    async fn pop3_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            self.inner
                .read_until(b'\n', &mut line)
                .await
                .expect("read a POP3 body line");
            assert!(!line.is_empty(), "dovecot closed mid-body");
            if line == b".\r\n" {
                return body;
            }
            let unstuffed = if line.starts_with(b"..") {
                &line[1..]
            } else {
                &line[..]
            };
            body.extend_from_slice(unstuffed);
        }
    }

    /// Reads untagged lines until the reply tagged `tag`; returns them all,
    /// the tagged one last.
    async fn imap_until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal).
    async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.inner
            .read_exact(&mut buf)
            .await
            .expect("read literal bytes");
        buf
    }
}

async fn plain(port: u16) -> Wire<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to dovecot");
    tcp.set_nodelay(true).expect("set TCP_NODELAY");
    Wire::new(tcp)
}

async fn tls(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Wire<tokio_rustls::client::TlsStream<TcpStream>>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("valid server name");
    let stream = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(Wire::new(stream))
}

async fn pop3_login<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<S>, user: &User) -> String {
    let greeting = wire.line().await;
    assert!(greeting.starts_with("+OK"), "POP3 greeting: {greeting}");
    let reply = wire.cmd(&format!("USER {}", user.name)).await;
    assert!(reply.starts_with("+OK"), "USER: {reply}");
    wire.cmd(&format!("PASS {}", user.password)).await
}

async fn imap_login<S: AsyncRead + AsyncWrite + Unpin>(wire: &mut Wire<S>, user: &User) -> String {
    let greeting = wire.line().await;
    assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
    wire.send(&format!("a1 LOGIN \"{}\" \"{}\"", user.name, user.password))
        .await;
    wire.imap_until_tagged("a1")
        .await
        .pop()
        .expect("a tagged reply")
}

fn sample_messages(tag: &str) -> Vec<Vec<u8>> {
    vec![
        format!("Subject: {tag} one\nMessage-ID: <{tag}-1@test>\n\nfirst body\n").into_bytes(),
        format!("Subject: {tag} two\r\nMessage-ID: <{tag}-2@test>\r\n\r\n.dot line\r\n")
            .into_bytes(),
        format!("Subject: {tag} three\n\n\u{e9}8-bit body\nno final newline").into_bytes(),
    ]
}

fn as_served(message: &[u8]) -> Vec<u8> {
    Dovecot::as_served(message)
}

#[tokio::test]
async fn pop3_plain_login_and_stat_sees_loaded_messages() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-stat");
        let messages = sample_messages("stat");
        dovecot.load(&user, "INBOX", &messages);
        let mut wire = plain(dovecot.pop3_port()).await;
        let reply = pop3_login(&mut wire, &user).await;
        assert!(
            reply.starts_with("+OK"),
            "PASS: {reply}\n{}",
            dovecot.log_tail(20)
        );
        let total: usize = messages.iter().map(|m| as_served(m).len()).sum();
        let stat = wire.cmd("STAT").await;
        assert_eq!(stat, format!("+OK 3 {total}"));
        assert!(wire.cmd("QUIT").await.starts_with("+OK"));
    })
    .await;
}

#[tokio::test]
async fn pop3_list_uses_w_sizes_and_retr_serves_crlf() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3-retr");
        let messages = sample_messages("retr");
        dovecot.load(&user, "INBOX", &messages);
        let mut wire = plain(dovecot.pop3_port()).await;
        assert!(pop3_login(&mut wire, &user).await.starts_with("+OK"));
        for (i, message) in messages.iter().enumerate() {
            let n = i + 1;
            let served = as_served(message);
            let list = wire.cmd(&format!("LIST {n}")).await;
            assert_eq!(list, format!("+OK {n} {}", served.len()));
            let retr = wire.cmd(&format!("RETR {n}")).await;
            assert!(retr.starts_with("+OK"), "RETR: {retr}");
            let body = wire.pop3_body().await;
            // Dovecot ends a message without a final line break with one.
            let mut expected = served.clone();
            if !expected.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&expected)
            );
        }
        let uidl = wire.cmd("UIDL 1").await;
        assert!(uidl.starts_with("+OK 1 00000001"), "UIDL: {uidl}");
    })
    .await;
}

#[tokio::test]
async fn plain_ports_offer_stls_and_starttls() {
    within(async {
        let dovecot = dovecot::shared();
        let mut pop3 = plain(dovecot.pop3_port()).await;
        pop3.line().await;
        assert!(pop3.cmd("CAPA").await.starts_with("+OK"));
        let capa = String::from_utf8_lossy(&pop3.pop3_body().await).to_string();
        assert!(capa.contains("STLS"), "POP3 CAPA: {capa}");
        let mut imap = plain(dovecot.imap_port()).await;
        let greeting = imap.line().await;
        assert!(greeting.contains("STARTTLS"), "IMAP greeting: {greeting}");
    })
    .await;
}

/// Upgrades a plain connection in place (after STLS / STARTTLS was accepted).
async fn upgrade(
    wire: Wire<TcpStream>,
    config: Arc<rustls::ClientConfig>,
) -> Wire<tokio_rustls::client::TlsStream<TcpStream>> {
    assert!(
        wire.inner.buffer().is_empty(),
        "bytes after the upgrade reply"
    );
    let tcp = wire.inner.into_inner();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("valid server name");
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS upgrade trusting the test CA");
    Wire::new(stream)
}

#[tokio::test]
async fn stls_and_starttls_upgrade_and_log_in() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("upgrade");
        dovecot.load(&user, "INBOX", &sample_messages("upgrade"));

        let mut pop3 = plain(dovecot.pop3_port()).await;
        pop3.line().await;
        assert!(pop3.cmd("STLS").await.starts_with("+OK"));
        let mut pop3 = upgrade(pop3, dovecot.client_config()).await;
        pop3.send(&format!("USER {}", user.name)).await;
        assert!(pop3.line().await.starts_with("+OK"));
        assert!(pop3
            .cmd(&format!("PASS {}", user.password))
            .await
            .starts_with("+OK"));
        assert!(pop3.cmd("STAT").await.starts_with("+OK 3 "));

        let mut imap = plain(dovecot.imap_port()).await;
        imap.line().await;
        imap.send("s1 STARTTLS").await;
        let reply = imap
            .imap_until_tagged("s1")
            .await
            .pop()
            .expect("tagged reply");
        assert!(reply.starts_with("s1 OK"), "STARTTLS: {reply}");
        let mut imap = upgrade(imap, dovecot.client_config()).await;
        imap.send(&format!("a1 LOGIN \"{}\" \"{}\"", user.name, user.password))
            .await;
        let reply = imap
            .imap_until_tagged("a1")
            .await
            .pop()
            .expect("tagged reply");
        assert!(reply.starts_with("a1 OK"), "LOGIN after STARTTLS: {reply}");
    })
    .await;
}

#[tokio::test]
async fn pop3s_login_trusting_only_the_test_ca() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("pop3s");
        dovecot.load(&user, "INBOX", &sample_messages("pop3s"));
        let mut wire = tls(dovecot.pop3s_port(), dovecot.client_config())
            .await
            .expect("TLS handshake trusting the test CA");
        assert!(pop3_login(&mut wire, &user).await.starts_with("+OK"));
        assert!(wire.cmd("STAT").await.starts_with("+OK 3 "));
    })
    .await;
}

#[tokio::test]
async fn pop3s_without_the_test_ca_fails_with_a_certificate_error() {
    within(async {
        let dovecot = dovecot::shared();
        let no_roots = support::certs::client_config_with_roots(rustls::RootCertStore::empty());
        let other_ca = support::certs::TestCa::new("other").client_config();
        for config in [no_roots, other_ca] {
            let err = match tls(dovecot.pop3s_port(), config).await {
                Ok(_) => panic!("handshake succeeded without trusting the test CA"),
                Err(err) => err,
            };
            let rustls_err = err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            assert!(
                matches!(rustls_err, Some(rustls::Error::InvalidCertificate(_))),
                "expected a certificate error, got {err:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn imaps_login_and_select_inbox_shows_the_loaded_count() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("imaps");
        dovecot.load(&user, "INBOX", &sample_messages("imaps"));
        let mut wire = tls(dovecot.imaps_port(), dovecot.client_config())
            .await
            .expect("TLS handshake trusting the test CA");
        let reply = imap_login(&mut wire, &user).await;
        assert!(reply.starts_with("a1 OK"), "LOGIN: {reply}");
        wire.send("a2 SELECT INBOX").await;
        let lines = wire.imap_until_tagged("a2").await;
        assert!(lines.iter().any(|l| l == "* 3 EXISTS"), "SELECT: {lines:?}");
        assert!(lines.last().is_some_and(|l| l.starts_with("a2 OK")));
    })
    .await;
}

#[tokio::test]
async fn wrong_password_is_refused_and_does_not_slow_later_logins() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("wrong-pw");
        let wrong = User {
            name: user.name.clone(),
            password: "not-the-password".into(),
        };
        for _ in 0..3 {
            let mut pop3 = plain(dovecot.pop3_port()).await;
            let reply = pop3_login(&mut pop3, &wrong).await;
            assert!(
                reply.starts_with("-ERR"),
                "PASS with a wrong password: {reply}"
            );
            let mut imap = plain(dovecot.imap_port()).await;
            let reply = imap_login(&mut imap, &wrong).await;
            assert!(
                reply.starts_with("a1 NO"),
                "LOGIN with a wrong password: {reply}"
            );
        }
        let started = Instant::now();
        let mut imap = plain(dovecot.imap_port()).await;
        let reply = imap_login(&mut imap, &user).await;
        assert!(reply.starts_with("a1 OK"), "LOGIN after failures: {reply}");
        // Printed, not asserted: with the auth penalty this took 4-15 s.
        eprintln!("good login after 6 failures took {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn users_made_after_start_log_in_at_once() {
    within(async {
        let dovecot = dovecot::shared();
        // Back to back, many per second: a single shared passwd-file would
        // miss users added in the second of its last re-read.
        for i in 0..20 {
            let user = dovecot.user(&format!("fresh{i}"));
            let mut imap = plain(dovecot.imap_port()).await;
            let reply = imap_login(&mut imap, &user).await;
            assert!(
                reply.starts_with("a1 OK"),
                "LOGIN of {}: {reply}\n{}",
                user.name,
                dovecot.log_tail(10)
            );
        }
    })
    .await;
}

#[tokio::test]
async fn load_then_messages_returns_the_same_bytes() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("roundtrip");
        let first = sample_messages("rt-a");
        let second = sample_messages("rt-b");
        dovecot.load(&user, "INBOX", &first);
        dovecot.load(&user, "INBOX", &second);
        dovecot.load(&user, "Archive.2024", &first[..1]);
        let expected: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
        assert_eq!(dovecot.messages(&user, "INBOX"), expected);
        assert_eq!(dovecot.count(&user, "INBOX"), 6);
        assert_eq!(dovecot.messages(&user, "Archive.2024"), first[..1].to_vec());
        assert_eq!(dovecot.count(&user, "Missing"), 0);

        // Once Dovecot has numbered them (a session opened the mailbox),
        // the order still holds, now read through dovecot-uidlist.
        let mut imap = plain(dovecot.imap_port()).await;
        assert!(imap_login(&mut imap, &user).await.starts_with("a1 OK"));
        imap.send("a2 SELECT Archive.2024").await;
        let lines = imap.imap_until_tagged("a2").await;
        assert!(lines.iter().any(|l| l == "* 1 EXISTS"), "SELECT: {lines:?}");
        imap.send("a3 SELECT INBOX").await;
        imap.imap_until_tagged("a3").await;
        imap.send("a4 UID FETCH 5 BODY.PEEK[]").await;
        let fetch = imap.line().await;
        let size: usize = fetch
            .rsplit_once('{')
            .and_then(|(_, n)| n.trim_end_matches('}').parse().ok())
            .unwrap_or_else(|| panic!("FETCH literal: {fetch}"));
        let body = imap.bytes(size).await;
        assert_eq!(body, as_served(&second[1]));
        imap.imap_until_tagged("a4").await;
        assert_eq!(dovecot.messages(&user, "INBOX"), expected);
    })
    .await;
}

#[tokio::test]
async fn imap_append_lands_on_disk_as_sent() {
    within(async {
        let dovecot = dovecot::shared();
        let user = dovecot.user("append");
        dovecot.load(&user, "INBOX", &sample_messages("append")[..1]);
        let message = b"Subject: appended\r\n\r\nbody line\r\n".to_vec();
        let mut imap = plain(dovecot.imap_port()).await;
        assert!(imap_login(&mut imap, &user).await.starts_with("a1 OK"));
        imap.send(&format!("a2 APPEND INBOX {{{}+}}", message.len()))
            .await;
        imap.inner
            .get_mut()
            .write_all(&message)
            .await
            .expect("send literal");
        imap.send("").await;
        let reply = imap
            .imap_until_tagged("a2")
            .await
            .pop()
            .expect("tagged reply");
        assert!(reply.starts_with("a2 OK [APPENDUID "), "APPEND: {reply}");
        let stored = dovecot.messages(&user, "INBOX");
        assert_eq!(stored.len(), 2);
        assert_eq!(
            String::from_utf8_lossy(&stored[1]),
            String::from_utf8_lossy(&message)
        );
    })
    .await;
}

#[tokio::test]
async fn two_users_do_not_see_each_others_mail() {
    within(async {
        let dovecot = dovecot::shared();
        let alice = dovecot.user("alice");
        let bob = dovecot.user("bob");
        assert_ne!(alice.name, bob.name);
        dovecot.load(&alice, "INBOX", &sample_messages("alice"));
        dovecot.load(&bob, "INBOX", &sample_messages("bob")[..1]);
        for (user, count) in [(&alice, 3), (&bob, 1)] {
            let mut pop3 = plain(dovecot.pop3_port()).await;
            assert!(pop3_login(&mut pop3, user).await.starts_with("+OK"));
            let stat = pop3.cmd("STAT").await;
            assert!(
                stat.starts_with(&format!("+OK {count} ")),
                "{}: {stat}",
                user.name
            );
        }
        assert_eq!(dovecot.count(&alice, "INBOX"), 3);
        assert_eq!(dovecot.count(&bob, "INBOX"), 1);
    })
    .await;
}

#[tokio::test]
async fn stop_leaves_no_process_and_no_directory() {
    within(async {
        let started = Instant::now();
        let dovecot = Dovecot::start();
        eprintln!("a fresh instance was ready in {:?}", started.elapsed());
        let pid = dovecot
            .master_pid()
            .expect("a running instance has a master pid");
        let dir = dovecot.dir().to_path_buf();
        let pid_file = std::fs::read_to_string(dir.join("run/master.pid")).expect("run/master.pid");
        assert_eq!(
            pid_file.trim(),
            pid.to_string(),
            "the watchdog's $! is the master"
        );
        let children = children_of(pid);
        assert!(
            !children.is_empty(),
            "a running master has service processes"
        );
        let stopping = Instant::now();
        drop(dovecot);
        eprintln!("and stopped in {:?}", stopping.elapsed());
        assert!(!process_exists(pid), "dovecot master {pid} survived drop");
        wait_gone(&children);
        assert!(!dir.exists(), "{dir:?} survived drop");
    })
    .await;
}

/// Run by `the_watchdog_stops_dovecot_when_the_test_process_is_killed` in a
/// child process only: starts an instance, reports it, and waits to die.
#[test]
#[ignore = "helper: run by the watchdog test in a child process"]
fn watchdog_child_helper() {
    if std::env::var_os("MAILFERRY_WATCHDOG_CHILD").is_none() {
        return;
    }
    let dovecot = dovecot::shared();
    let pid = dovecot.master_pid().expect("master pid");
    println!("READY {pid} {}", dovecot.dir().display());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn the_watchdog_stops_dovecot_when_the_test_process_is_killed() {
    let exe = std::env::current_exe().expect("path of this test binary");
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "watchdog_child_helper",
            "--nocapture",
        ])
        .env("MAILFERRY_WATCHDOG_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn this test binary as a child");
    let stdout = child.stdout.take().expect("piped stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("READY "))
        .expect("the child reports its dovecot");
    let mut fields = ready.split(' ').skip(1);
    let pid: u32 = fields.next().and_then(|p| p.parse().ok()).expect("pid");
    let dir = Path::new(fields.next().expect("dir")).to_path_buf();
    let children = children_of(pid);
    assert!(
        !children.is_empty(),
        "a running master has service processes"
    );

    child.kill().expect("kill -9 the child test process");
    child.wait().expect("reap the child");

    let deadline = Instant::now() + Duration::from_secs(10);
    while (process_exists(pid) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !process_exists(pid),
        "dovecot master {pid} outlived its killed test process"
    );
    assert!(!dir.exists(), "{dir:?} outlived its killed test process");
    wait_gone(&children);
}

/// Pids whose parent is `pid` (Dovecot's service processes for a master).
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

/// Service processes exit shortly after their master: allow a few seconds.
fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| process_exists(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&p| process_exists(p))
        .collect();
    assert!(
        left.is_empty(),
        "dovecot service processes {left:?} outlived their master"
    );
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
