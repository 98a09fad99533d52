//! End-to-end helpers: a config for the real `mailferry` binary, running it with a deadline, a test corpus, and comparing target with source.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::corpus;
use super::dovecot::{Dovecot, User};

/// How long one `mailferry` run may take before the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(180);

/// A route in a test config.
pub struct RouteSpec<'a> {
    pub from: &'a User,
    pub to: &'a User,
    pub mailbox: &'a str,
    pub delete: &'a str,
}

impl<'a> RouteSpec<'a> {
    /// A route from `from` to `to`'s `mailbox` with the `delete` policy
    /// (as written in TOML, e.g. `"\"after-copy\""`).
    pub fn new(from: &'a User, to: &'a User, mailbox: &'a str, delete: &'a str) -> RouteSpec<'a> {
        RouteSpec {
            from,
            to,
            mailbox,
            delete,
        }
    }
}

/// Where one side's server listens, as the config names it.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub port: u16,
    /// Plain text (the proxy can read it) instead of implicit TLS.
    pub plain: bool,
}

/// The servers a config points at, and the network timeout of every account.
#[derive(Clone, Copy, Debug)]
pub struct Servers {
    pub pop3: Endpoint,
    pub imap: Endpoint,
    pub timeout: &'static str,
}

impl Servers {
    /// Dovecot's own implicit-TLS ports.
    pub fn tls(dovecot: &Dovecot) -> Servers {
        Servers {
            pop3: Endpoint {
                port: dovecot.pop3s_port(),
                plain: false,
            },
            imap: Endpoint {
                port: dovecot.imaps_port(),
                plain: false,
            },
            timeout: "20s",
        }
    }
}

/// Writes a config for these routes (every account over implicit TLS,
/// trusting the test CA) and returns its path.
pub fn write_config(dir: &Path, dovecot: &Dovecot, routes: &[RouteSpec<'_>]) -> PathBuf {
    write_config_via(dir, dovecot, &Servers::tls(dovecot), routes)
}

/// Writes a config whose accounts use `servers` (a proxy's port, say) and
/// returns its path. TLS is to `localhost`, the certificate's name.
pub fn write_config_via(
    dir: &Path,
    dovecot: &Dovecot,
    servers: &Servers,
    routes: &[RouteSpec<'_>],
) -> PathBuf {
    let mut text = format!("[ledger]\npath = \"{}\"\n", dir.join("ledger.db").display());
    let mut sources: Vec<&User> = Vec::new();
    let mut targets: Vec<&User> = Vec::new();
    for r in routes {
        if !sources.contains(&r.from) {
            sources.push(r.from);
        }
        if !targets.contains(&r.to) {
            targets.push(r.to);
        }
    }
    for user in sources {
        text += &account("source", user, &servers.pop3, servers.timeout, dovecot);
    }
    for user in targets {
        text += &account("target", user, &servers.imap, servers.timeout, dovecot);
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

/// One `[[source]]` or `[[target]]` table.
fn account(table: &str, user: &User, at: &Endpoint, timeout: &str, dovecot: &Dovecot) -> String {
    let security = if at.plain {
        "security = \"plain\"\nallow_plaintext = true\n"
    } else {
        ""
    };
    format!(
        "\n[[{table}]]\nname = \"{n}\"\nhost = \"localhost\"\nport = {p}\n{security}username = \"{n}\"\npassword = \"{pw}\"\nca_file = \"{ca}\"\ntimeout = \"{timeout}\"\n",
        n = user.name,
        p = at.port,
        pw = user.password,
        ca = dovecot.ca_file().display()
    )
}

/// Removes the ledger a config of [`write_config`] points at (in `dir`),
/// with its WAL files: a lost ledger.
pub fn remove_ledger(dir: &Path) {
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Starts `mailferry --config <config> <args>` with its output piped.
pub fn spawn_mailferry(config: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mailferry")
}

/// Runs mailferry with a deadline; returns (exit code, stdout, stderr).
/// The pipes are drained while it runs: a chatty run (`-vv`) would
/// otherwise block on a full pipe and never finish.
pub fn mailferry(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut child = spawn_mailferry(config, args);
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap_or_default();
            let tail: Vec<&str> = err.lines().rev().take(40).collect();
            panic!(
                "mailferry {args:?} did not finish within {RUN_DEADLINE:?}; stderr (last 40 lines):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// `sync --json`, asserting the exit code; the per-route reports.
pub fn sync(config: &Path, extra: &[&str], want: i32) -> Vec<serde_json::Value> {
    let mut args = vec!["--json", "sync"];
    args.extend_from_slice(extra);
    let (code, out, err) = mailferry(config, &args);
    assert_eq!(code, want, "sync exit code\nstdout:\n{out}\nstderr:\n{err}");
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    doc["routes"].as_array().expect("routes").clone()
}

/// One of a route report's counts.
pub fn count(report: &serde_json::Value, key: &str) -> u64 {
    report["report"]["counts"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {report}"))
}

/// What a source message looks like once copied: as POP3 serves it (CRLF,
/// a final line break added), CRLF-normalised by mailferry.
pub fn as_copied(message: &[u8]) -> Vec<u8> {
    let mut served = Dovecot::as_served(message);
    if !served.ends_with(b"\r\n") {
        served.extend_from_slice(b"\r\n");
    }
    mailferry::message::to_crlf(&served).into_owned()
}

pub fn sorted(mut messages: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    messages.sort();
    messages
}

/// `n` ordinary messages, then the realistic corpus
/// ([`corpus::everything`]: MIME parts, 8-bit headers, odd line ends, ...,
/// up to ~2 MB), then a few edge cases and, last, a big message of 2.5 MB.
pub fn corpus(tag: &str, n: usize) -> Vec<Vec<u8>> {
    corpus_with_big(tag, n, 40_000)
}

/// [`corpus`] with a big (last) message of `big_lines` 64-byte lines.
pub fn corpus_with_big(tag: &str, n: usize, big_lines: usize) -> Vec<Vec<u8>> {
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
    mail.extend(corpus::everything(tag));
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
            big_lines,
        )
        .flatten(),
    );
    mail.push(big);
    mail
}

/// The promise at any instant, for a migration of distinct messages `mail`
/// from `src` to `dst`: nothing left the source whose copy is not on the
/// target, nothing is on the target twice, and nothing there that is not a
/// copy. Reads the source first: a deletion seen there was preceded by its
/// copy, so the later look at the target must find it.
pub fn check_no_loss(
    dovecot: &Dovecot,
    (src, dst): (&User, &User),
    mailbox: &str,
    mail: &[Vec<u8>],
) -> Result<(), String> {
    let on_source = sorted(dovecot.messages(src, "INBOX"));
    let on_target = sorted(dovecot.messages(dst, mailbox));
    if let Some(twice) = on_target.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("on the target twice: {}", preview(&twice[0])));
    }
    let copies = sorted(mail.iter().map(|m| as_copied(m)).collect());
    if let Some(stray) = on_target.iter().find(|t| copies.binary_search(t).is_err()) {
        return Err(format!("on the target, not a copy: {}", preview(stray)));
    }
    for message in mail {
        let gone = on_source.binary_search(message).is_err();
        if gone && on_target.binary_search(&as_copied(message)).is_err() {
            return Err(format!(
                "deleted from the source, not on the target: {}",
                preview(message)
            ));
        }
    }
    Ok(())
}

/// The end state of a finished migration: every message on the target
/// exactly once, byte-equal, and the source empty.
pub fn check_migrated(
    dovecot: &Dovecot,
    (src, dst): (&User, &User),
    mailbox: &str,
    mail: &[Vec<u8>],
) -> Result<(), String> {
    let want = sorted(mail.iter().map(|m| as_copied(m)).collect());
    let got = sorted(dovecot.messages(dst, mailbox));
    if got != want {
        let missing = want
            .iter()
            .filter(|m| got.binary_search(m).is_err())
            .count();
        let extra = got.len() as i64 - (want.len() - missing) as i64;
        return Err(format!(
            "target differs from source: {} on target, {} wanted, {missing} missing, {extra} extra",
            got.len(),
            want.len()
        ));
    }
    match dovecot.count(src, "INBOX") {
        0 => Ok(()),
        left => Err(format!("{left} messages left on the source")),
    }
}

/// The Subject line of a message (else its first line), for error text.
fn preview(message: &[u8]) -> String {
    let mut lines = message.split(|b| *b == b'\n');
    let line = lines
        .clone()
        .find(|l| l.starts_with(b"Subject:"))
        .or_else(|| lines.next())
        .unwrap_or_default();
    format!(
        "{:?} ({} bytes)",
        String::from_utf8_lossy(line),
        message.len()
    )
}
