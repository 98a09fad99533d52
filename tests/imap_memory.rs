//! Hostile IMAP targets against the real binary: scripted servers that never stop talking, announce huge literals, answer with tags nobody sent or stall, with mailferry's peak memory measured (issue #10).
//!
//! Each test runs `mailferry sync` from a real POP3 maildrop (the private
//! Dovecot) into a scripted IMAP target on 127.0.0.1 that misbehaves in one
//! way at one point of the session ([`At`], [`Attack`]). While it runs, the
//! process's peak RSS (`VmHWM`) is sampled. Then: it ended on its own with
//! a non-zero exit and an error naming the target account; its peak RSS
//! stayed under [`PEAK_RSS_BOUND_MIB`]; nothing left the source (the route
//! deletes after copy, so a wrongly believed copy would show); and a second
//! `sync` into the real Dovecot copies every message exactly once, so the
//! hostile run left nothing wrong in the ledger.
//!
//! Endless replies are bounded by the test in bytes ([`Case::cap`]); the
//! server then closes the connection. Whether mailferry hung up first is
//! printed with the peak RSS of each case.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::dovecot;
use support::e2e::{self, Endpoint, RouteSpec, Servers};

/// Peak RSS allowed while a target misbehaves: the runtime, TLS to the
/// source, SQLite and a few small messages take ~20 MiB; one response is
/// bounded by the 64 KiB line limit or refused at its literal announcement.
const PEAK_RSS_BOUND_MIB: u64 = 64;
/// Beyond this the run is killed and the test fails, so a case that grows
/// without bound cannot take the shared machine down with it.
const RSS_CEILING_MIB: u64 = 1024;
/// How long one hostile run may take before the test kills it and fails.
const RUN_DEADLINE: Duration = Duration::from_secs(90);
/// Network timeout of every account: a stalled server costs this long.
const TIMEOUT: &str = "2s";
const MIB: u64 = 1 << 20;

/// The command whose reply misbehaves (`Greeting`: the first words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Greeting,
    Login,
    Select,
    /// `UID SEARCH`, sent to index a target that is not empty.
    Search,
    /// The first `UID FETCH` (sizes) of that index.
    Fetch,
    Append,
}

/// How the reply misbehaves.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// `head`, then `body` again and again until the cap; never the
    /// tagged reply.
    Stream {
        head: &'static str,
        body: fn() -> Vec<u8>,
    },
    /// A tagged OK (with an APPENDUID) for a tag mailferry never sent.
    UnknownTag,
    /// Sends these bytes, then nothing ever again.
    Stall(&'static str),
}

/// One hostile target: where, how, and how many bytes at most it streams
/// per session before closing.
#[derive(Clone, Copy, Debug)]
struct Case {
    at: At,
    attack: Attack,
    cap: u64,
}

/// What a stream repeats.
mod body {
    /// Bytes without a line feed (line filler, literal data).
    pub fn filler() -> Vec<u8> {
        vec![b'x'; 64 * 1024]
    }

    pub fn exists() -> Vec<u8> {
        b"* 1 EXISTS\r\n".to_vec()
    }

    pub fn fetch_size() -> Vec<u8> {
        b"* 5 FETCH (RFC822.SIZE 100)\r\n".to_vec()
    }

    pub fn continuation() -> Vec<u8> {
        b"+ more please\r\n".to_vec()
    }

    /// `* SEARCH 1 1 1 …` just under the 64 KiB line limit: two wire bytes
    /// per UID, which mailferry keeps as four.
    pub fn search_results() -> Vec<u8> {
        let mut line = b"* SEARCH".to_vec();
        line.extend(b" 1".repeat(32_000));
        line.extend_from_slice(b"\r\n");
        line
    }

    /// An untagged OK whose text is just under the 64 KiB line limit.
    pub fn long_status() -> Vec<u8> {
        let mut line = b"* OK ".to_vec();
        line.extend(b"chatty ".repeat(9_000));
        line.extend_from_slice(b"\r\n");
        line
    }

    /// One complete unsolicited FETCH with a 4 MiB body.
    pub fn fetch_body() -> Vec<u8> {
        let mut response = b"* 1 FETCH (UID 1 BODY[] {4194304}\r\n".to_vec();
        response.extend(std::iter::repeat_n(b'b', 4 << 20));
        response.extend_from_slice(b")\r\n");
        response
    }

    /// More of one response that never ends: each part a short line and an
    /// empty literal, so neither the line nor the literal limit is reached.
    pub fn empty_literal() -> Vec<u8> {
        b" BODY[] {0}\r\n".to_vec()
    }
}

/// One test per case: `name: at, attack, cap;`, with attributes (an
/// `#[ignore]` for a known failure) in front.
macro_rules! cases {
    ($($(#[$meta:meta])* $name:ident: $at:expr, $attack:expr, $cap:expr;)*) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            hostile_target(stringify!($name), Case { at: $at, attack: $attack, cap: $cap });
        }
    )*};
}

const fn stream(head: &'static str, body: fn() -> Vec<u8>) -> Attack {
    Attack::Stream { head, body }
}

cases! {
    endless_greeting_line: At::Greeting, stream("* OK ", body::filler), 200 * MIB;
    endless_line_in_select: At::Select, stream("* OK ", body::filler), 200 * MIB;
    endless_line_in_append: At::Append, stream("* OK ", body::filler), 200 * MIB;
    // 16 MiB of these is 1.4 million responses, 14 times what the session
    // keeps (`MAX_UNTAGGED`), and already ~9 s per session unoptimised.
    endless_exists_in_select: At::Select, stream("", body::exists), 16 * MIB;
    endless_fetch_in_fetch: At::Fetch, stream("", body::fetch_size), 16 * MIB;
    // mailferry sends SEARCH only to resolve an append intent a crash left;
    // the same flood in answer to the size FETCH meets the same bound.
    endless_search_in_fetch: At::Fetch, stream("", body::search_results), 100 * MIB;
    endless_status_lines_in_append: At::Append, stream("", body::long_status), 100 * MIB;
    endless_fetch_bodies_in_append: At::Append, stream("", body::fetch_body), 100 * MIB;
    endless_response_of_empty_literals_in_select:
        At::Select, stream("* 1 FETCH (UID 1 BODY[] {0}\r\n", body::empty_literal), 200 * MIB;
    literal_announced_huge_in_fetch:
        At::Fetch, stream("* 1 FETCH (UID 1 BODY[] {99999999999}\r\n", body::filler), 200 * MIB;
    literal_of_500_mb_in_append:
        At::Append, stream("* 1 FETCH (UID 1 BODY[] {524288000}\r\n", body::filler), 500 * MIB;
    continuation_flood_in_fetch: At::Fetch, stream("", body::continuation), 200 * MIB;
    tag_never_sent_in_append: At::Append, Attack::UnknownTag, 0;
    stall_after_greeting: At::Login, Attack::Stall(""), 0;
    stall_mid_literal_in_fetch:
        At::Fetch, Attack::Stall("* 1 FETCH (UID 1 BODY[] {100}\r\nonly part of it"), 0;
}

// ---------------------------------------------------------------------------
// The check every case shares.

fn hostile_target(name: &str, case: Case) {
    let dovecot = dovecot::shared();
    let src = dovecot.user("imapmem-src");
    let dst = dovecot.user("imapmem-dst");
    let mail = e2e::corpus_with_big("imapmem", 3, 10);
    dovecot.load(&src, "INBOX", &mail);
    let fake = FakeImap::start(case);
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = [RouteSpec::new(&src, &dst, "INBOX", "\"after-copy\"")];
    let hostile = Servers {
        imap: Endpoint {
            port: fake.port,
            plain: true,
        },
        timeout: TIMEOUT,
        ..Servers::tls(dovecot)
    };
    let config = e2e::write_config_via(dir.path(), dovecot, &hostile, &routes);

    let r = run_sampled(&config);
    let (sent, sessions) = fake.finish();
    let error = route_error(&r.out);
    eprintln!(
        "{name}: exit {} in {:.1?}, peak RSS {} MiB, server sent {} MiB in {} sessions, mailferry hung up first in {}; {error}",
        r.code,
        r.elapsed,
        r.peak_mib,
        sent / MIB,
        sessions.len(),
        sessions.iter().filter(|s| **s == Ended::HungUp).count(),
    );
    assert!(
        !r.out.contains("panicked") && !r.err.contains("panicked"),
        "{name}: mailferry panicked\n{}",
        r.err
    );
    assert!(!sessions.is_empty(), "{name}: mailferry never connected");
    assert_eq!(
        r.code, 3,
        "{name}: the route fails\nstdout:\n{}\nstderr:\n{}",
        r.out, r.err
    );
    assert!(
        error.contains(&format!("target {}", dst.name)),
        "{name}: the error names the target account: {error}"
    );
    assert!(
        r.peak_mib < PEAK_RSS_BOUND_MIB,
        "{name}: peak RSS {} MiB (bound {PEAK_RSS_BOUND_MIB} MiB); error: {error}",
        r.peak_mib
    );
    assert_eq!(
        dovecot.count(&src, "INBOX"),
        mail.len(),
        "{name}: nothing leaves the source while the target misbehaves"
    );

    // The same target account, now on a well-behaved server.
    let config = e2e::write_config(dir.path(), dovecot, &routes);
    e2e::sync(&config, &[], 0);
    e2e::check_migrated(dovecot, (&src, &dst), "INBOX", &mail)
        .unwrap_or_else(|e| panic!("{name}: after the hostile run: {e}"));
}

/// The error message of the only route in `sync --json` output.
fn route_error(out: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    doc["routes"][0]["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no route error in {doc}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// Running the binary with its memory watched.

/// What one hostile run did.
struct RunResult {
    code: i32,
    out: String,
    err: String,
    elapsed: Duration,
    peak_mib: u64,
}

/// Peak resident set (`VmHWM`, KiB) of a live process.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `mailferry --json sync`, sampling its peak RSS every 10 ms until it
/// exits. Kills it and fails past [`RUN_DEADLINE`] or [`RSS_CEILING_MIB`].
/// (`wait4`'s `ru_maxrss` would catch even a peak between two samples, but
/// it counts the test process's own memory, inherited at the spawn.)
fn run_sampled(config: &Path) -> RunResult {
    let started = Instant::now();
    let mut child = e2e::spawn_mailferry(config, &["--json", "sync"]);
    let pid = child.id();
    // Drained on threads so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let mut peak_kib = 0;
    let code = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        let over = peak_kib / 1024 > RSS_CEILING_MIB;
        if over || started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mailferry killed: {} after {:.1?}, peak RSS {} MiB\nstderr:\n{}",
                if over { "memory ceiling" } else { "deadline" },
                started.elapsed(),
                peak_kib / 1024,
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    RunResult {
        code,
        out: out.join().unwrap_or_default(),
        err: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
        peak_mib: peak_kib / 1024,
    }
}

// ---------------------------------------------------------------------------
// The scripted server.

const CAPS: &str = "IMAP4rev1 LITERAL+ UIDPLUS";

/// How one session with the scripted server ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// mailferry closed the connection while the server misbehaved.
    HungUp,
    /// The server sent its cap and closed.
    Capped,
    /// mailferry logged out or closed before the misbehaviour.
    Quit,
    /// The test ended the session.
    Stopped,
}

/// An IMAP server on 127.0.0.1 that answers like a tiny empty mailbox that
/// never stores anything, except at [`Case::at`], where it plays
/// [`Case::attack`]. Stops (every session too) when dropped.
struct FakeImap {
    port: u16,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    sessions: Arc<Mutex<Vec<Ended>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeImap {
    fn start(case: Case) -> FakeImap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake imap");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let (stop2, sent2, sessions2) = (stop.clone(), sent.clone(), sessions.clone());
        let thread = std::thread::spawn(move || {
            let mut threads = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (stop3, sent3, sessions3) = (stop2.clone(), sent2.clone(), sessions2.clone());
                threads.push(std::thread::spawn(move || {
                    let mut session = Session {
                        stream,
                        case,
                        stop: &stop3,
                        sent: &sent3,
                    };
                    let ended = session.serve().unwrap_or(Ended::HungUp);
                    let _ = session.stream.shutdown(Shutdown::Both);
                    sessions3.lock().expect("sessions").push(ended);
                }));
            }
            for t in threads {
                let _ = t.join();
            }
        });
        FakeImap {
            port,
            stop,
            sent,
            sessions,
            thread: Some(thread),
        }
    }

    /// Stops the server and waits for its sessions to end; the bytes it
    /// sent, and how each session ended.
    fn finish(mut self) -> (u64, Vec<Ended>) {
        self.stop_and_join();
        let sessions = self.sessions.lock().expect("sessions").clone();
        (self.sent.load(Ordering::SeqCst), sessions)
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeImap {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One connection to the scripted server.
struct Session<'a> {
    stream: TcpStream,
    case: Case,
    stop: &'a AtomicBool,
    sent: &'a AtomicU64,
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl Session<'_> {
    fn serve(&mut self) -> std::io::Result<Ended> {
        // Short timeouts so the stop flag is seen; every loop checks it.
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        self.stream
            .set_write_timeout(Some(Duration::from_millis(100)))?;
        let mut reader = BufReader::new(self.stream.try_clone()?);
        if self.case.at == At::Greeting {
            return self.misbehave(&mut reader);
        }
        self.send(format!("* OK [CAPABILITY {CAPS}] fake ready\r\n").as_bytes())?;
        loop {
            let Some(line) = self.read_command(&mut reader)? else {
                return Ok(Ended::Quit);
            };
            let words: Vec<String> = line
                .split_whitespace()
                .map(str::to_ascii_uppercase)
                .collect();
            let tag = line.split_whitespace().next().unwrap_or("*").to_string();
            let verb = match words.get(1).map(String::as_str) {
                Some("UID") => words.get(2).cloned().unwrap_or_default(),
                other => other.unwrap_or_default().to_string(),
            };
            let at = match verb.as_str() {
                "LOGIN" => Some(At::Login),
                "SELECT" => Some(At::Select),
                "SEARCH" => Some(At::Search),
                "FETCH" => Some(At::Fetch),
                "APPEND" => Some(At::Append),
                _ => None,
            };
            if at == Some(self.case.at) {
                return self.misbehave(&mut reader);
            }
            self.send(self.answer(&tag, &verb).as_bytes())?;
            if verb == "LOGOUT" {
                return Ok(Ended::Quit);
            }
        }
    }

    /// The well-behaved reply. The mailbox holds three messages only when
    /// the attack is in the index that mailferry builds of them; nothing
    /// is ever stored.
    fn answer(&self, tag: &str, verb: &str) -> String {
        let exists = if matches!(self.case.at, At::Search | At::Fetch) {
            3
        } else {
            0
        };
        match verb {
            "CAPABILITY" => format!("* CAPABILITY {CAPS}\r\n{tag} OK done\r\n"),
            "LOGIN" => format!("{tag} OK [CAPABILITY {CAPS}] logged in\r\n"),
            "SELECT" | "EXAMINE" => format!(
                "* {exists} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT {}] ok\r\n{tag} OK [READ-WRITE] selected\r\n",
                exists + 1
            ),
            "SEARCH" => format!("* SEARCH 1 2 3\r\n{tag} OK done\r\n"),
            "FETCH" => {
                let mut reply: String = (1..=exists)
                    .map(|uid| format!("* {uid} FETCH (UID {uid} RFC822.SIZE 100)\r\n"))
                    .collect();
                reply += &format!("{tag} OK done\r\n");
                reply
            }
            "APPEND" => format!("{tag} NO [UNAVAILABLE] nothing is stored today\r\n"),
            "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
            _ => format!("{tag} OK done\r\n"),
        }
    }

    fn misbehave(&mut self, reader: &mut BufReader<TcpStream>) -> std::io::Result<Ended> {
        match self.case.attack {
            Attack::Stream { head, body } => {
                self.send(head.as_bytes())?;
                let one = body();
                let chunk = one.repeat((64 * 1024 / one.len()).max(1));
                Ok(self.stream_for_ever(&chunk, self.case.cap))
            }
            Attack::UnknownTag => {
                self.send(b"Z999 OK [APPENDUID 7 1] stored\r\n")?;
                Ok(self.until_closed(reader))
            }
            Attack::Stall(partial) => {
                self.send(partial.as_bytes())?;
                Ok(self.until_closed(reader))
            }
        }
    }

    /// Sends `chunk` over and over until `cap` bytes are out, mailferry
    /// hangs up, or the test stops.
    fn stream_for_ever(&mut self, chunk: &[u8], cap: u64) -> Ended {
        let (mut total, mut at) = (0u64, 0usize);
        while total < cap {
            if self.stop.load(Ordering::SeqCst) {
                return Ended::Stopped;
            }
            let want = (chunk.len() - at).min((cap - total) as usize);
            match self.stream.write(&chunk[at..at + want]) {
                Ok(0) => return Ended::HungUp,
                Ok(k) => {
                    total += k as u64;
                    self.sent.fetch_add(k as u64, Ordering::SeqCst);
                    at = (at + k) % chunk.len();
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Ended::HungUp,
            }
        }
        Ended::Capped
    }

    /// Says nothing more; waits (reading and dropping) until mailferry
    /// closes or the test stops.
    fn until_closed(&mut self, reader: &mut BufReader<TcpStream>) -> Ended {
        let mut sink = [0u8; 4096];
        while !self.stop.load(Ordering::SeqCst) {
            match reader.read(&mut sink) {
                Ok(0) => return Ended::HungUp,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Ended::HungUp,
            }
        }
        Ended::Stopped
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut at = 0;
        while at < bytes.len() {
            if self.stop.load(Ordering::SeqCst) {
                return Err(ErrorKind::Interrupted.into());
            }
            match self.stream.write(&bytes[at..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(k) => at += k,
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    /// The first line of the next command, its literals read and dropped
    /// (a synchronising one is invited with `+`); `None` at the end.
    fn read_command(
        &mut self,
        reader: &mut BufReader<TcpStream>,
    ) -> std::io::Result<Option<String>> {
        let Some(first) = self.read_line(reader)? else {
            return Ok(None);
        };
        let mut line = first.clone();
        while let Some((size, sync)) = literal_of(&line) {
            if sync {
                self.send(b"+ go ahead\r\n")?;
            }
            let mut left = size;
            let mut sink = [0u8; 8192];
            while left > 0 {
                match reader.read(&mut sink[..left.min(8192)]) {
                    Ok(0) => return Ok(None),
                    Ok(k) => left -= k,
                    Err(e) if is_timeout(&e) && !self.stop.load(Ordering::SeqCst) => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(rest) = self.read_line(reader)? else {
                return Ok(None);
            };
            line = rest;
        }
        Ok(Some(String::from_utf8_lossy(&first).into_owned()))
    }

    /// One line (with its CRLF), waiting through read timeouts.
    fn read_line(&mut self, reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => return Ok(None),
                Ok(_) if line.ends_with(b"\n") => return Ok(Some(line)),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The literal a command line ends with: its size, and whether it is
/// synchronising (`{n}`, not `{n+}`).
fn literal_of(line: &[u8]) -> Option<(usize, bool)> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let inner = text.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    let digits = &inner[open + 1..];
    match digits.strip_suffix('+') {
        Some(d) => Some((d.parse().ok()?, false)),
        None => Some((digits.parse().ok()?, true)),
    }
}
