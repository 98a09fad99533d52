//! Minimal synchronous POP3 and IMAP clients for tests: just enough to log in, list, read and append, server-neutral and independent of mailferry's code.
//!
//! Blocking `std::net::TcpStream` on 127.0.0.1 with read and write
//! timeouts ([`IO_TIMEOUT`]), `TCP_NODELAY` set (Cyrus pays ~40 ms per
//! lockstep exchange to Nagle plus delayed ACK otherwise), plain text only.
//! Every error is a `String` that says what was sent and what came back, so a
//! caller can `unwrap_or_else(|e| panic!("{server}: {e}"))`. Every loop is
//! bounded: by a count ([`MAX_RESPONSE_PARTS`], [`MAX_LINES`]) and by the
//! read timeout of each read.
//!
//! What they do and do not do, on purpose:
//! - POP3: `USER`/`PASS` (no APOP, SASL, STLS), `STAT`, `UIDL`, `RETR` with
//!   dot-unstuffing (a leading `..` becomes `.`), `QUIT`. A RETR body is
//!   returned with the CRLFs the server sent, without the final `.` line.
//! - IMAP: `LOGIN` with quoted strings, `SELECT`/`EXAMINE`, `LIST`,
//!   `CREATE`, `APPEND` with a synchronising literal (waits for the `+`
//!   continuation, so it works without LITERAL+), `UID FETCH 1:* (UID
//!   BODY.PEEK[])` reading every literal by its announced byte count, and
//!   `LOGOUT`. Mailbox names must be printable ASCII (no modified UTF-7).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Per-read and per-write deadline of one socket operation.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most literals (plus one) in one IMAP response.
pub const MAX_RESPONSE_PARTS: usize = 1_000;
/// Most lines one POP3 body or one IMAP command's responses may have.
pub const MAX_LINES: usize = 1_000_000;
/// Largest literal accepted from a server.
pub const MAX_LITERAL: usize = 256 << 20;

/// Every bare LF as CRLF (an existing CRLF stays one; a bare CR is left
/// alone): how a message travels in POP3 and IMAP.
pub fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("set socket options: {e}"))?;
    Ok(stream)
}

/// One line including its line end; an error at EOF.
fn read_raw_line(reader: &mut BufReader<TcpStream>, what: &str) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => Err(format!("{what}: connection closed")),
        Ok(_) if line.ends_with(b"\n") => Ok(line),
        Ok(_) => Err(format!(
            "{what}: connection closed mid-line after {:?}",
            String::from_utf8_lossy(&line)
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn trim_line(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

fn send(stream: &mut TcpStream, bytes: &[u8], what: &str) -> Result<(), String> {
    stream
        .write_all(bytes)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("send {what}: {e}"))
}

/// A POP3 session in the TRANSACTION or AUTHORIZATION state.
pub struct Pop3 {
    reader: BufReader<TcpStream>,
    greeting: String,
}

impl Pop3 {
    /// Connects and reads the greeting (which must be `+OK`).
    pub fn connect(port: u16) -> Result<Pop3, String> {
        let stream = connect(port)?;
        let mut reader = BufReader::new(stream);
        let greeting = trim_line(&read_raw_line(&mut reader, "POP3 greeting")?);
        if !greeting.starts_with("+OK") {
            return Err(format!("POP3 greeting is not +OK: {greeting:?}"));
        }
        Ok(Pop3 { reader, greeting })
    }

    /// Connects and logs in with `USER`/`PASS`.
    pub fn login(port: u16, user: &str, password: &str) -> Result<Pop3, String> {
        let mut pop3 = Pop3::connect(port)?;
        pop3.user_pass(user, password)?;
        Ok(pop3)
    }

    /// The greeting line, without its CRLF.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// `USER` then `PASS`.
    pub fn user_pass(&mut self, user: &str, password: &str) -> Result<(), String> {
        self.command(&format!("USER {user}"))?;
        self.send_line(&format!("PASS {password}"), "PASS")?;
        let reply = self.status_line("PASS")?;
        if reply.starts_with("+OK") {
            Ok(())
        } else {
            Err(format!("PASS for {user:?} refused: {reply:?}"))
        }
    }

    /// Sends one command and returns its `+OK` line; `-ERR` is an error.
    pub fn command(&mut self, line: &str) -> Result<String, String> {
        self.send_line(line, line)?;
        let reply = self.status_line(line)?;
        if reply.starts_with("+OK") {
            Ok(reply)
        } else {
            Err(format!("{line:?} answered {reply:?}"))
        }
    }

    /// Sends a command with a multi-line answer (`RETR`, `UIDL`, `LIST`,
    /// `CAPA`, `TOP`) and returns the body: the lines after `+OK` up to the
    /// `.` line, dot-unstuffed, with the line ends as sent.
    pub fn multiline(&mut self, line: &str) -> Result<Vec<u8>, String> {
        self.command(line)?;
        let mut body = Vec::new();
        for _ in 0..MAX_LINES {
            let raw = read_raw_line(&mut self.reader, line)?;
            if raw == b".\r\n" || raw == b".\n" {
                return Ok(body);
            }
            let unstuffed = if raw.starts_with(b"..") {
                &raw[1..]
            } else {
                &raw[..]
            };
            body.extend_from_slice(unstuffed);
        }
        Err(format!("{line:?}: more than {MAX_LINES} lines"))
    }

    /// `STAT`: message count and total size.
    pub fn stat(&mut self) -> Result<(usize, u64), String> {
        let reply = self.command("STAT")?;
        let mut fields = reply.split_whitespace().skip(1);
        let count = fields.next().and_then(|f| f.parse().ok());
        let size = fields.next().and_then(|f| f.parse().ok());
        match (count, size) {
            (Some(count), Some(size)) => Ok((count, size)),
            _ => Err(format!("STAT answered {reply:?}")),
        }
    }

    /// `UIDL`: (message number, unique id) in the server's order.
    pub fn uidl(&mut self) -> Result<Vec<(u32, String)>, String> {
        let body = self.multiline("UIDL")?;
        String::from_utf8_lossy(&body)
            .lines()
            .map(|line| {
                let mut fields = line.split_whitespace();
                match (fields.next().and_then(|n| n.parse().ok()), fields.next()) {
                    (Some(n), Some(uid)) => Ok((n, uid.to_string())),
                    _ => Err(format!("UIDL line {line:?}")),
                }
            })
            .collect()
    }

    /// `RETR n`: the message as served, dot-unstuffed.
    pub fn retr(&mut self, n: u32) -> Result<Vec<u8>, String> {
        self.multiline(&format!("RETR {n}"))
    }

    /// `QUIT` (commits deletions; some servers rewrite the maildrop here).
    pub fn quit(mut self) -> Result<(), String> {
        self.command("QUIT").map(|_| ())
    }

    fn send_line(&mut self, line: &str, what: &str) -> Result<(), String> {
        let what = if what.starts_with("PASS") {
            "PASS"
        } else {
            what
        };
        send(
            self.reader.get_mut(),
            format!("{line}\r\n").as_bytes(),
            what,
        )
    }

    fn status_line(&mut self, what: &str) -> Result<String, String> {
        Ok(trim_line(&read_raw_line(&mut self.reader, what)?))
    }
}

/// Every message of a maildrop in POP3 order (`STAT`, then `RETR 1..=n`),
/// each as served (dot-unstuffed, the server's line ends), in one session
/// ended by `QUIT`, as a client like mailferry asks: `UTF8` when offered
/// (RFC 6856: Courier wraps a message with 8-bit headers otherwise), and
/// `UIDL` (GNU Mailutils writes X-UIDL into the mbox only when asked).
pub fn pop3_maildrop(port: u16, user: &str, password: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut pop3 = Pop3::connect(port)?;
    let capa = pop3.multiline("CAPA").unwrap_or_default();
    if String::from_utf8_lossy(&capa).lines().any(|l| {
        l.trim().eq_ignore_ascii_case("UTF8") || l.trim().to_ascii_uppercase().starts_with("UTF8 ")
    }) {
        pop3.command("UTF8")?;
    }
    pop3.user_pass(user, password)?;
    pop3.uidl()?;
    retr_all(pop3)
}

/// [`pop3_maildrop`] without `UTF8` and `UIDL`: the session a minimal client
/// has, for tests of what a server does then (Courier's wrapper, Mailutils'
/// first session).
pub fn pop3_maildrop_plain(port: u16, user: &str, password: &str) -> Result<Vec<Vec<u8>>, String> {
    retr_all(Pop3::login(port, user, password)?)
}

/// `STAT`, `RETR 1..=n`, `QUIT`.
fn retr_all(mut pop3: Pop3) -> Result<Vec<Vec<u8>>, String> {
    let (count, _) = pop3.stat()?;
    let mut messages = Vec::with_capacity(count);
    for n in 1..=count {
        let n = u32::try_from(n).map_err(|_| format!("{count} messages"))?;
        messages.push(pop3.retr(n)?);
    }
    pop3.quit()?;
    Ok(messages)
}

/// One IMAP response: its text pieces, with each literal's bytes between
/// them. `text[0]` holds the start up to and including the first `{n}`
/// announcement (without CRLF), `literals[0]` its bytes, `text[1]` what
/// followed, and so on: `text.len() == literals.len() + 1`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub text: Vec<String>,
    pub literals: Vec<Vec<u8>>,
}

impl Response {
    /// The text pieces joined (literals left out), for messages and
    /// simple matching.
    pub fn joined(&self) -> String {
        self.text.join(" ")
    }
}

/// What a tagged command brought: the untagged responses and the tagged
/// `OK` line.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub untagged: Vec<Response>,
    pub status: String,
}

/// An IMAP session.
pub struct Imap {
    reader: BufReader<TcpStream>,
    greeting: String,
    next_tag: u32,
}

impl Imap {
    /// Connects and reads the greeting (`* OK` or `* PREAUTH`).
    pub fn connect(port: u16) -> Result<Imap, String> {
        let stream = connect(port)?;
        let mut reader = BufReader::new(stream);
        let greeting = trim_line(&read_raw_line(&mut reader, "IMAP greeting")?);
        if !(greeting.starts_with("* OK") || greeting.starts_with("* PREAUTH")) {
            return Err(format!("IMAP greeting is not OK: {greeting:?}"));
        }
        Ok(Imap {
            reader,
            greeting,
            next_tag: 1,
        })
    }

    /// Connects and logs in.
    pub fn login(port: u16, user: &str, password: &str) -> Result<Imap, String> {
        let mut imap = Imap::connect(port)?;
        imap.login_as(user, password)?;
        Ok(imap)
    }

    /// The greeting line, without its CRLF.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// `LOGIN` with both arguments as quoted strings.
    pub fn login_as(&mut self, user: &str, password: &str) -> Result<(), String> {
        let line = format!("LOGIN {} {}", quote(user)?, quote(password)?);
        self.run(&line, &format!("LOGIN {user:?}")).map(|_| ())
    }

    /// Sends `command` (no tag, no CRLF) and reads to its tagged reply;
    /// `NO`/`BAD` is an error carrying the tagged line.
    pub fn command(&mut self, command: &str) -> Result<Reply, String> {
        self.run(command, command)
    }

    /// `SELECT`: returns the `EXISTS` count.
    pub fn select(&mut self, mailbox: &str) -> Result<u32, String> {
        let reply = self.command(&format!("SELECT {}", quote(mailbox)?))?;
        exists(&reply)
    }

    /// `EXAMINE` (read-only SELECT): returns the `EXISTS` count.
    pub fn examine(&mut self, mailbox: &str) -> Result<u32, String> {
        let reply = self.command(&format!("EXAMINE {}", quote(mailbox)?))?;
        exists(&reply)
    }

    /// Whether `LIST "" mailbox` names it.
    pub fn mailbox_exists(&mut self, mailbox: &str) -> Result<bool, String> {
        let reply = self.command(&format!("LIST \"\" {}", quote(mailbox)?))?;
        Ok(reply
            .untagged
            .iter()
            .any(|r| r.text.first().is_some_and(|t| t.starts_with("* LIST "))))
    }

    /// `CREATE`.
    pub fn create(&mut self, mailbox: &str) -> Result<(), String> {
        self.command(&format!("CREATE {}", quote(mailbox)?))
            .map(|_| ())
    }

    /// `APPEND mailbox {n}` with a synchronising literal: sends the bytes
    /// exactly as given (callers CRLF-normalise, see [`crlf`]) once the
    /// server says `+`. Returns the tagged OK line (`[APPENDUID ...]`
    /// where the server has UIDPLUS).
    pub fn append(&mut self, mailbox: &str, message: &[u8]) -> Result<String, String> {
        let tag = self.tag();
        let what = format!("APPEND to {mailbox:?} ({} bytes)", message.len());
        let head = format!("{tag} APPEND {} {{{}}}\r\n", quote(mailbox)?, message.len());
        send(self.reader.get_mut(), head.as_bytes(), &what)?;
        // Wait for the continuation; a tagged answer here is a refusal.
        let mut continued = false;
        for _ in 0..MAX_LINES {
            let response = self.response(&what)?;
            let first = &response.text[0];
            if first.starts_with('+') {
                continued = true;
                break;
            }
            if first.starts_with(&format!("{tag} ")) {
                return Err(format!("{what} refused before the literal: {first:?}"));
            }
        }
        if !continued {
            return Err(format!("{what}: no continuation within {MAX_LINES} lines"));
        }
        let mut body = Vec::with_capacity(message.len() + 2);
        body.extend_from_slice(message);
        body.extend_from_slice(b"\r\n");
        send(self.reader.get_mut(), &body, &what)?;
        self.finish(&tag, &what).map(|reply| reply.status)
    }

    /// `UID FETCH 1:* (UID BODY.PEEK[])` in the selected mailbox: (UID,
    /// bytes) in the order the server sent them. Unsolicited FETCH
    /// responses without a body (flag updates) are skipped.
    pub fn uid_fetch_all(&mut self) -> Result<Vec<(u32, Vec<u8>)>, String> {
        let reply = self.command("UID FETCH 1:* (UID BODY.PEEK[])")?;
        let mut out = Vec::new();
        for response in &reply.untagged {
            if let Some(found) = fetched_body(response)? {
                out.push(found);
            }
        }
        Ok(out)
    }

    /// `LOGOUT` (waits for the tagged OK, after the server's `* BYE`).
    pub fn logout(mut self) -> Result<(), String> {
        self.command("LOGOUT").map(|_| ())
    }

    fn tag(&mut self) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    fn run(&mut self, command: &str, what: &str) -> Result<Reply, String> {
        let tag = self.tag();
        send(
            self.reader.get_mut(),
            format!("{tag} {command}\r\n").as_bytes(),
            what,
        )?;
        self.finish(&tag, what)
    }

    /// Reads responses up to the one tagged `tag`.
    fn finish(&mut self, tag: &str, what: &str) -> Result<Reply, String> {
        let prefix = format!("{tag} ");
        let mut untagged = Vec::new();
        for _ in 0..MAX_LINES {
            let response = self.response(what)?;
            let first = &response.text[0];
            if let Some(status) = first.strip_prefix(&prefix) {
                if status.starts_with("OK") {
                    return Ok(Reply {
                        untagged,
                        status: first.clone(),
                    });
                }
                return Err(format!("{what} answered {first:?}"));
            }
            untagged.push(response);
        }
        Err(format!(
            "{what}: no tagged answer within {MAX_LINES} responses"
        ))
    }

    /// One whole response: a line, and while it ends in a literal
    /// announcement (`{n}`, `{n+}`, `~{n}`), the literal and the line that
    /// continues it.
    fn response(&mut self, what: &str) -> Result<Response, String> {
        let mut response = Response::default();
        for _ in 0..MAX_RESPONSE_PARTS {
            let line = read_raw_line(&mut self.reader, what)?;
            let text = trim_line(&line);
            let literal = literal_len(&text);
            response.text.push(text);
            let Some(len) = literal else {
                return Ok(response);
            };
            if len > MAX_LITERAL {
                return Err(format!("{what}: a {len}-byte literal"));
            }
            let mut bytes = vec![0; len];
            self.reader
                .read_exact(&mut bytes)
                .map_err(|e| format!("{what}: reading a {len}-byte literal: {e}"))?;
            response.literals.push(bytes);
        }
        Err(format!(
            "{what}: more than {MAX_RESPONSE_PARTS} literals in one response"
        ))
    }
}

/// Every message of `mailbox` in UID order, each in the bytes `BODY[]`
/// serves, in a fresh session (`EXAMINE`, so reading changes no flag or
/// state; an empty mailbox is not fetched).
pub fn imap_messages(
    port: u16,
    user: &str,
    password: &str,
    mailbox: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let mut imap = Imap::login(port, user, password)?;
    let count = imap.examine(mailbox)?;
    let mut fetched = if count == 0 {
        Vec::new()
    } else {
        imap.uid_fetch_all()?
    };
    imap.logout()?;
    fetched.sort_by_key(|(uid, _)| *uid);
    if fetched.len() != count as usize {
        return Err(format!(
            "{mailbox:?} has {count} messages but UID FETCH returned {}",
            fetched.len()
        ));
    }
    Ok(fetched.into_iter().map(|(_, bytes)| bytes).collect())
}

/// An IMAP quoted string; refuses what a quoted string cannot carry.
pub fn quote(s: &str) -> Result<String, String> {
    if s.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(format!(
            "{s:?} needs a literal or modified UTF-7 (only printable ASCII here)"
        ));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The byte count of a literal announced at the end of a response line.
fn literal_len(line: &str) -> Option<usize> {
    let open = line.strip_suffix('}')?;
    let (_, digits) = open.rsplit_once('{')?;
    let digits = digits.strip_suffix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn exists(reply: &Reply) -> Result<u32, String> {
    reply
        .untagged
        .iter()
        .find_map(|r| {
            let mut words = r.text[0].split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("*"), Some(n), Some(w)) if w.eq_ignore_ascii_case("EXISTS") => n.parse().ok(),
                _ => None,
            }
        })
        .ok_or_else(|| format!("no EXISTS in the answer to SELECT: {:?}", reply.status))
}

/// (UID, BODY[]) of a `* n FETCH (...)` response; `None` for other
/// responses or a FETCH without `BODY[]` (an unsolicited flag update).
fn fetched_body(response: &Response) -> Result<Option<(u32, Vec<u8>)>, String> {
    let first = &response.text[0];
    let mut words = first.split_whitespace();
    let is_fetch = words.next() == Some("*")
        && words
            .next()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        && words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("FETCH"));
    if !is_fetch {
        return Ok(None);
    }
    let mut uid = None;
    let mut body = None;
    for (i, text) in response.text.iter().enumerate() {
        let upper = text.to_ascii_uppercase();
        if let Some(at) = find_item(&upper, "UID ") {
            let digits: String = upper[at + 4..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            uid = digits.parse().ok();
        }
        if let Some(at) = find_item(&upper, "BODY[] ") {
            let value = text[at + 7..].trim_start();
            // `~{n}`: a literal8 (Cyrus answers BODY[] with one).
            let literal = value.starts_with('{') || value.starts_with("~{");
            body = Some(if literal && i < response.literals.len() {
                response.literals[i].clone()
            } else if value.to_ascii_uppercase().starts_with("NIL") {
                Vec::new()
            } else if let Some(quoted) = value.strip_prefix('"') {
                unquote(quoted)
                    .ok_or_else(|| format!("bad quoted BODY[] in {:?}", response.joined()))?
            } else {
                return Err(format!("cannot read BODY[] in {:?}", response.joined()));
            });
        }
    }
    match (uid, body) {
        (Some(uid), Some(body)) => Ok(Some((uid, body))),
        (None, Some(_)) => Err(format!("FETCH without UID: {:?}", response.joined())),
        (_, None) => Ok(None),
    }
}

/// Where a FETCH item name starts: after `(` or a space, outside the
/// literals (which are not in `text`).
fn find_item(upper: &str, item: &str) -> Option<usize> {
    upper
        .match_indices(item)
        .map(|(at, _)| at)
        .find(|&at| at > 0 && matches!(upper.as_bytes()[at - 1], b'(' | b' '))
}

/// The content of a quoted string whose opening `"` is already gone.
fn unquote(rest: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = rest.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' => return Some(out),
            b'\\' => out.push(bytes.next()?),
            _ => out.push(b),
        }
    }
    None
}
