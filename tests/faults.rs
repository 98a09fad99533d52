//! Fault tests: the promise of docs/ARCHITECTURE.md ("Exactly once") — exactly once, nothing deleted before its copy — under cut connections and kill -9 of the real binary.
//!
//! Every test migrates (`delete = "after-copy"`) between fresh users of the
//! shared private Dovecot, with a fault proxy (`support::proxy`) on one or
//! both sides, and checks the invariant whenever it can: after every run,
//! and at every new IMAP connection (the start of every route attempt).
//!
//! Random tests print their seed; `MAILFERRY_SEED=N` replays it.
//! `MAILFERRY_SOAK=full` makes them longer (more cuts, kills and messages).

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::dovecot::{shared, User};
use support::e2e::{
    as_copied, check_migrated, check_no_loss, corpus_with_big, mailferry, sorted, spawn_mailferry,
    write_config_via, Endpoint, RouteSpec, Servers,
};
use support::proxy::{At, Dir, Kind, Plan, Proxy};

// ---------------------------------------------------------------- seeds

/// The long variant of the random tests.
fn soak_full() -> bool {
    std::env::var("MAILFERRY_SOAK").is_ok_and(|v| v == "full")
}

/// `MAILFERRY_SEED`, or a fresh seed; printed either way.
fn seed_for(test: &str) -> u64 {
    let seed = std::env::var("MAILFERRY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            SplitMix(nanos ^ test.len() as u64).next()
        });
    eprintln!("{test}: seed {seed} (replay with MAILFERRY_SEED={seed})");
    seed
}

/// splitmix64: tiny, seedable, good enough to pick offsets and delays.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Spread evenly over the orders of magnitude of `1..=max`: as many
    /// picks in the handshake and login as deep in the transfer.
    fn log_upto(&mut self, max: u64) -> u64 {
        let bits = 64 - max.max(1).leading_zeros() as u64;
        let top = 1u64 << self.upto(bits);
        self.upto(top.min(max))
    }
}

/// Fails the test with its seed and what Dovecot logged last.
fn fail(seed: u64, why: &str) -> ! {
    panic!(
        "{why}\nseed {seed} (replay with MAILFERRY_SEED={seed})\n--- dovecot log (tail) ---\n{}",
        shared().log_tail(30)
    )
}

// ---------------------------------------------------------------- a migration

/// One migration under test: fresh users, the mail loaded on the source,
/// and a temp dir for the config and ledger.
struct Migration {
    dir: tempfile::TempDir,
    src: User,
    dst: User,
    mail: Arc<Vec<Vec<u8>>>,
}

impl Migration {
    fn new(tag: &str, mail: Vec<Vec<u8>>) -> Migration {
        let dovecot = shared();
        let (src, dst) = (
            dovecot.user(&format!("{tag}src")),
            dovecot.user(&format!("{tag}dst")),
        );
        dovecot.load(&src, "INBOX", &mail);
        Migration {
            dir: tempfile::tempdir().expect("temp dir"),
            src,
            dst,
            mail: Arc::new(mail),
        }
    }

    /// Writes the config (one after-copy route) for these servers.
    fn config(&self, servers: &Servers) -> PathBuf {
        let route = RouteSpec::new(&self.src, &self.dst, "INBOX", "\"after-copy\"");
        write_config_via(self.dir.path(), shared(), servers, &[route])
    }

    fn no_loss(&self) -> Result<(), String> {
        check_no_loss(shared(), (&self.src, &self.dst), "INBOX", &self.mail)
    }

    fn migrated(&self) -> Result<(), String> {
        check_migrated(shared(), (&self.src, &self.dst), "INBOX", &self.mail)
    }

    /// What the plan of an IMAP proxy calls at each connection: checks the
    /// invariant (between route attempts) and records a violation.
    fn checker(&self) -> Checker {
        Checker {
            src: self.src.clone(),
            dst: self.dst.clone(),
            mail: self.mail.clone(),
            violations: Arc::default(),
            checks: Arc::default(),
        }
    }
}

/// Checks the invariant from inside a proxy's plan function.
#[derive(Clone)]
struct Checker {
    src: User,
    dst: User,
    mail: Arc<Vec<Vec<u8>>>,
    violations: Arc<Mutex<Vec<String>>>,
    checks: Arc<AtomicU64>,
}

impl Checker {
    fn check(&self, when: &str) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = check_no_loss(shared(), (&self.src, &self.dst), "INBOX", &self.mail) {
            self.violations
                .lock()
                .expect("violations")
                .push(format!("{when}: {e}"));
        }
    }

    fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("violations").clone()
    }
}

/// Plain-text servers through the two proxies: the proxies can see the
/// protocol and cut at its points.
fn plain_via(pop3: &Proxy, imap: &Proxy, timeout: &'static str) -> Servers {
    Servers {
        pop3: Endpoint {
            port: pop3.port(),
            plain: true,
        },
        imap: Endpoint {
            port: imap.port(),
            plain: true,
        },
        timeout,
    }
}

/// Implicit TLS through the two proxies (the certificate is for localhost).
fn tls_via(pop3: &Proxy, imap: &Proxy, timeout: &'static str) -> Servers {
    Servers {
        pop3: Endpoint {
            port: pop3.port(),
            plain: false,
        },
        imap: Endpoint {
            port: imap.port(),
            plain: false,
        },
        timeout,
    }
}

/// The outcome of one `sync --json` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn sync(config: &std::path::Path) -> Run {
        let (code, stdout, stderr) = mailferry(config, &["--json", "sync"]);
        Run {
            code,
            stdout,
            stderr,
        }
    }

    /// The first route's report (`report`, `attempts`, `error`).
    fn route(&self) -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr));
        doc["routes"][0].clone()
    }

    fn number(&self, key: &str) -> u64 {
        self.route()["report"][key].as_u64().unwrap_or(0)
    }

    fn count(&self, key: &str) -> u64 {
        self.route()["report"]["counts"][key].as_u64().unwrap_or(0)
    }

    fn show(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr (tail):\n{}",
            self.code,
            self.stdout,
            tail(&self.stderr, 30)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A small corpus (the big message 6.4 kB) whose last message ends with
/// `marker`'s line, and optionally a `mid` marker inside message 12.
fn marked_corpus(tag: &str, end_marker: &str, mid_marker: Option<&str>) -> Vec<Vec<u8>> {
    let mut mail = corpus_with_big(tag, 30, 100);
    if let Some(mid) = mid_marker {
        let body = format!("first half\n{mid}\nsecond half\n");
        mail[12].extend_from_slice(body.as_bytes());
    }
    let last = mail.last_mut().expect("non-empty corpus");
    last.extend_from_slice(format!("{end_marker}\n").as_bytes());
    mail
}

// ---------------------------------------------------------------- deterministic cuts

/// APPEND complete (literal and CRLF reached Dovecot), tagged OK lost: the
/// intent is found on the target at the retry, nothing appended twice.
#[test]
fn cut_after_append_literal_before_tagged_ok() {
    let m = Migration::new("appendok", marked_corpus("appendok", "APPEND-END", None));
    let checker = m.checker();
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), |_| Plan::pass());
    let imap = Proxy::start(dovecot.imap_port(), {
        let checker = checker.clone();
        move |conn| {
            checker.check(&format!("IMAP connection {conn}"));
            if conn > 0 {
                return Plan::pass();
            }
            // The marker line, then the CRLF that ends the (MULTI)APPEND
            // command; the server gets 500 ms to store it and answer.
            let after = At::After {
                needle: b"APPEND-END\r\n".to_vec(),
                nth: 0,
                extra: 2,
            };
            let cut = Kind::Cut {
                server_grace: Duration::from_millis(500),
            };
            Plan::pass().with(Dir::Up, after, cut)
        }
    });
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(imap.cuts(), 1, "{:?}", imap.fired());
    assert!(
        run.number("intents_found") >= 1,
        "the cut append must be found on the target: {}",
        run.show()
    );
    assert_eq!(checker.violations(), Vec::<String>::new());
    m.migrated().unwrap();
}

/// Cut inside the last literal: the APPEND never completed, so the intent
/// is dropped and the message appended again.
#[test]
fn cut_inside_append_literal() {
    let m = Migration::new("appendmid", marked_corpus("appendmid", "APPEND-END", None));
    let checker = m.checker();
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), |_| Plan::pass());
    let imap = Proxy::start(dovecot.imap_port(), {
        let checker = checker.clone();
        move |conn| {
            checker.check(&format!("IMAP connection {conn}"));
            let mid_literal = At::After {
                needle: b"APPEND-END".to_vec(),
                nth: 0,
                extra: 0,
            };
            match conn {
                0 => Plan::pass().with(Dir::Up, mid_literal, Kind::CUT),
                _ => Plan::pass(),
            }
        }
    });
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(imap.cuts(), 1, "{:?}", imap.fired());
    assert!(run.number("intents_dropped") >= 1, "{}", run.show());
    assert_eq!(checker.violations(), Vec::<String>::new());
    m.migrated().unwrap();
}

/// A cut (FIN) in the middle of one RETR, then a reset (RST) in the middle
/// of the big message: two retries, everything copied once.
#[test]
fn cut_and_reset_during_pop3_retr() {
    let mut mail = marked_corpus("retr", "RETR-END", Some("RETR-MIDDLE"));
    // A bigger big message, so the reset lands inside a long RETR.
    let big = mail.len() - 2;
    mail[big].extend(std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\n", 3000).flatten());
    let m = Migration::new("retr", mail);
    let checker = m.checker();
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), |conn| {
        let at = |needle: &[u8], nth| At::After {
            needle: needle.to_vec(),
            nth,
            extra: 0,
        };
        match conn {
            0 => Plan::pass().with(Dir::Down, at(b"RETR-MIDDLE", 0), Kind::CUT),
            1 => Plan::pass().with(Dir::Down, at(b"0123456789abcdef0123", 1500), Kind::Reset),
            _ => Plan::pass(),
        }
    });
    let imap = Proxy::start(dovecot.imap_port(), {
        let checker = checker.clone();
        move |conn| {
            checker.check(&format!("IMAP connection {conn}"));
            Plan::pass()
        }
    });
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    let fired = pop3.fired();
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(run.count("copied"), m.mail.len() as u64, "{}", run.show());
    assert_eq!(checker.violations(), Vec::<String>::new());
    m.migrated().unwrap();
}

/// What the source held when the POP3 retry connected.
type Snapshot = Arc<Mutex<Option<Result<usize, String>>>>;

/// A POP3 plan that cuts the first connection at `at` and, when the retry
/// connects, records how many messages the source still holds (and whether
/// the invariant held then).
fn pop3_cut_then_snapshot(
    m: &Migration,
    at: At,
    kind: Kind,
) -> (impl FnMut(usize) -> Plan + Send + 'static, Snapshot) {
    let snapshot: Snapshot = Arc::default();
    let seen = snapshot.clone();
    let checker = m.checker();
    let plan = move |conn| match conn {
        0 => Plan::pass().with(Dir::Up, at.clone(), kind.clone()),
        1 => {
            let count = shared().count(&checker.src, "INBOX");
            let state = check_no_loss(
                shared(),
                (&checker.src, &checker.dst),
                "INBOX",
                &checker.mail,
            );
            *seen.lock().expect("snapshot") = Some(state.map(|()| count));
            Plan::pass()
        }
        _ => Plan::pass(),
    };
    (plan, snapshot)
}

/// DELEs and QUIT reached Dovecot, its `+OK` never came back: the messages
/// are gone from the source, and every one of them is on the target.
#[test]
fn cut_after_quit_before_its_ok() {
    let m = Migration::new("quitok", marked_corpus("quitok", "QUIT-END", None));
    let quit = At::After {
        needle: b"QUIT\r\n".to_vec(),
        nth: 0,
        extra: 0,
    };
    let grace = Kind::Cut {
        server_grace: Duration::from_millis(500),
    };
    let (plan, snapshot) = pop3_cut_then_snapshot(&m, quit, grace);
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), plan);
    let imap = Proxy::start(dovecot.imap_port(), |_| Plan::pass());
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(pop3.cuts(), 1, "{:?}", pop3.fired());
    let at_retry = snapshot.lock().unwrap().clone();
    assert_eq!(
        at_retry,
        Some(Ok(0)),
        "QUIT reached Dovecot: all deleted, all copied"
    );
    m.migrated().unwrap();
}

/// The first DELE reached Dovecot, QUIT did not: RFC 1939 deletes nothing
/// without QUIT, so the retry finds every message still there.
#[test]
fn cut_after_dele_before_quit() {
    let m = Migration::new("dele", marked_corpus("dele", "DELE-END", None));
    let first_dele = At::After {
        needle: b"DELE 1\r\n".to_vec(),
        nth: 0,
        extra: 0,
    };
    let (plan, snapshot) = pop3_cut_then_snapshot(&m, first_dele, Kind::CUT);
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), plan);
    let imap = Proxy::start(dovecot.imap_port(), |_| Plan::pass());
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(pop3.cuts(), 1, "{:?}", pop3.fired());
    let at_retry = snapshot.lock().unwrap().clone();
    assert_eq!(
        at_retry,
        Some(Ok(m.mail.len())),
        "nothing deleted without QUIT"
    );
    m.migrated().unwrap();
}

/// TLS handshakes cut: the IMAP one in the server's flight (FIN), the POP3
/// one in the ClientHello (RST). Both logins run at once, so both cuts end
/// the first attempt; one retry, then a clean migration.
#[test]
fn cut_during_tls_handshake() {
    let m = Migration::new("tlscut", marked_corpus("tlscut", "TLS-END", None));
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3s_port(), |conn| match conn {
        0 => Plan::reset(Dir::Up, 30),
        _ => Plan::pass(),
    });
    let imap = Proxy::start(dovecot.imaps_port(), |conn| match conn {
        0 => Plan::cut(Dir::Down, 200),
        _ => Plan::pass(),
    });
    let run = Run::sync(&m.config(&tls_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(
        (imap.cuts(), pop3.cuts()),
        (1, 1),
        "{:?} {:?}",
        imap.fired(),
        pop3.fired()
    );
    assert_eq!(run.route()["attempts"].as_u64(), Some(2), "{}", run.show());
    m.migrated().unwrap();
}

/// While the target is down, a retry logs in to it first and leaves the
/// source alone: only the first attempt logs in to both at once, so an
/// outage does not cost a POP3 login per retry (LOGIN-DELAY servers).
#[test]
fn retries_while_the_target_is_down_leave_the_source_alone() {
    let m = Migration::new("tdown", marked_corpus("tdown", "TDOWN-END", None));
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3s_port(), |_| Plan::pass());
    let imap = Proxy::start(dovecot.imaps_port(), |conn| match conn {
        0 | 1 => Plan::reset(Dir::Down, 0),
        _ => Plan::pass(),
    });
    let run = Run::sync(&m.config(&tls_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(run.route()["attempts"].as_u64(), Some(3), "{}", run.show());
    assert_eq!(imap.cuts(), 2, "{:?}", imap.fired());
    // Attempt 1: both at once (POP3 1); attempt 2: the target fails first,
    // no POP3 login; attempt 3: target, then source (POP3 2); then the short
    // session that confirms the source has nothing new (POP3 3). Logging in
    // to both at once every time would make it 4.
    assert_eq!(pop3.connections(), 3, "POP3 logins");
    m.migrated().unwrap();
}

/// A server that goes silent in the TLS handshake: the client's timeout
/// ends the wait, and the retry migrates everything.
#[test]
fn stalled_tls_handshake_times_out() {
    let m = Migration::new("stall", marked_corpus("stall", "STALL-END", None));
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3s_port(), |_| Plan::pass());
    let imap = Proxy::start(dovecot.imaps_port(), |conn| match conn {
        0 => Plan::pass().with(Dir::Down, At::Byte(0), Kind::Stall(Duration::from_secs(8))),
        _ => Plan::pass(),
    });
    let run = Run::sync(&m.config(&tls_via(&pop3, &imap, "2s")));
    assert_eq!(run.code, 0, "{}", run.show());
    // The client's 2 s timeout, not the proxy's 8 s stall, ended attempt 1.
    assert!(
        run.stderr.contains("no answer within 2s"),
        "the timeout ended the stall\n{}",
        run.show()
    );
    assert_eq!(run.route()["attempts"].as_u64(), Some(2), "{}", run.show());
    m.migrated().unwrap();
}

/// The server stored the MULTIAPPEND and its tagged reply stops after
/// `[APPENDUID`: the client's read timeout ends the wait mid-line, and the
/// retry finds the stored messages instead of appending them again.
#[test]
fn append_reply_stalled_mid_line_times_out() {
    let m = Migration::new("replystall", marked_corpus("replystall", "STALL-END", None));
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), |_| Plan::pass());
    let imap = Proxy::start(dovecot.imap_port(), |conn| {
        let mid_reply = At::After {
            needle: b"[APPENDUID".to_vec(),
            nth: 0,
            extra: 0,
        };
        match conn {
            0 => Plan::pass().with(Dir::Down, mid_reply, Kind::Stall(Duration::from_secs(6))),
            _ => Plan::pass(),
        }
    });
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "2s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(imap.fired().len(), 1, "{:?}", imap.fired());
    assert!(run.number("intents_found") >= 1, "{}", run.show());
    m.migrated().unwrap();
}

/// Every reply on both sides arrives one byte per segment: the readers
/// reassemble greetings, multi-line listings, RETR bodies and tagged
/// replies from 1-byte reads.
#[test]
fn replies_sliced_into_single_bytes() {
    let m = Migration::new("sliced", marked_corpus("sliced", "SLICED-END", None));
    let dovecot = shared();
    let sliced = |_| {
        let slice = Kind::Slice {
            pause: Duration::ZERO,
        };
        Plan::pass().with(Dir::Down, At::Byte(0), slice)
    };
    let pop3 = Proxy::start(dovecot.pop3_port(), sliced);
    let imap = Proxy::start(dovecot.imap_port(), sliced);
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(run.route()["attempts"].as_u64(), Some(1), "{}", run.show());
    for proxy in [&pop3, &imap] {
        assert!(proxy.connections() > 0, "the proxy was used");
        assert_eq!(
            proxy.fired().len(),
            proxy.connections(),
            "every connection sliced"
        );
    }
    m.migrated().unwrap();
}

// ---------------------------------------------------------------- random cuts

/// About the bytes a connection carries before any mail: TLS handshake,
/// greeting, capabilities, login, SELECT.
const OVERHEAD: u64 = 4000;

/// About how many bytes each direction of each side carries, so random
/// offsets land anywhere from the handshake to the last DELE.
#[derive(Clone, Copy, Default, Debug)]
struct Traffic {
    imap_up: u64,
    imap_down: u64,
    pop3_up: u64,
    pop3_down: u64,
}

impl Traffic {
    /// What a pass with nothing to do carries (handshake, login, SELECT,
    /// UIDL, LIST): measured by one clean run of an empty migration.
    fn measure_idle(pop3: &Proxy, imap: &Proxy) -> Traffic {
        let empty = Migration::new("idle", Vec::new());
        let run = Run::sync(&empty.config(&tls_via(pop3, imap, "10s")));
        assert_eq!(run.code, 0, "{}", run.show());
        let last = |p: &Proxy| p.traffic().last().copied().expect("a connection");
        let ((pop3_up, pop3_down), (imap_up, imap_down)) = (last(pop3), last(imap));
        Traffic {
            imap_up,
            imap_down,
            pop3_up,
            pop3_down,
        }
    }

    /// `idle` plus what the mail not yet on the target (and the DELEs of
    /// what is still on the source) adds.
    fn left(idle: &Traffic, c: &Checker) -> Traffic {
        let dovecot = shared();
        let on_target = sorted(dovecot.messages(&c.dst, "INBOX"));
        let left: Vec<&Vec<u8>> = c
            .mail
            .iter()
            .filter(|msg| on_target.binary_search(&as_copied(msg)).is_err())
            .collect();
        let (count, bytes) = (
            left.len() as u64,
            left.iter().map(|msg| msg.len() as u64).sum::<u64>(),
        );
        let on_source = dovecot.count(&c.src, "INBOX") as u64;
        Traffic {
            // The APPEND syntax around each literal.
            imap_up: idle.imap_up + bytes + 80 * count,
            // One tagged reply per (MULTI)APPEND batch.
            imap_down: idle.imap_down + 2 * count,
            // RETR and DELE commands.
            pop3_up: idle.pop3_up + 12 * count + 12 * on_source,
            // CRLF and dot-stuffing, status lines.
            pop3_down: idle.pop3_down + bytes + 40 * count,
        }
    }
}

/// The random cut plan both proxies share.
struct CutDice {
    rng: Mutex<SplitMix>,
    cutting: AtomicBool,
    traffic: Mutex<Traffic>,
}

/// Which proxy asks.
#[derive(Clone, Copy)]
enum Side {
    Pop3,
    Imap,
}

impl CutDice {
    fn new(seed: u64) -> CutDice {
        CutDice {
            rng: Mutex::new(SplitMix(seed)),
            cutting: AtomicBool::new(true),
            traffic: Mutex::default(),
        }
    }

    /// A plan for a new connection: most are cut (FIN, FIN after the
    /// server finished its command, or RST) at a random byte of a random
    /// direction, as often early (handshake, login) as deep in the mail.
    fn plan(&self, side: Side) -> Plan {
        if !self.cutting.load(Ordering::SeqCst) {
            return Plan::pass();
        }
        let mut rng = self.rng.lock().expect("rng");
        if !rng.chance(70) {
            return Plan::pass();
        }
        let t = *self.traffic.lock().expect("traffic");
        let dir = if rng.chance(60) { Dir::Up } else { Dir::Down };
        let max = match (side, dir) {
            (Side::Imap, Dir::Up) => t.imap_up,
            (Side::Imap, Dir::Down) => t.imap_down,
            (Side::Pop3, Dir::Up) => t.pop3_up,
            (Side::Pop3, Dir::Down) => t.pop3_down,
        };
        let at = if rng.chance(50) {
            rng.log_upto(max)
        } else {
            rng.upto(max)
        };
        let kind = match rng.upto(99) {
            0..=64 => Kind::CUT,
            65..=84 => Kind::Cut {
                server_grace: Duration::from_millis(300),
            },
            _ => Kind::Reset,
        };
        Plan::pass().with(dir, At::Byte(at), kind)
    }

    fn update(&self, idle: &Traffic, c: &Checker) {
        *self.traffic.lock().expect("traffic") = Traffic::left(idle, c);
    }
}

/// Sizes and bounds of a random test.
struct Soak {
    messages: usize,
    faults: usize,
    max_runs: usize,
    time: Duration,
}

/// The migration the proxies' plans check, replaced at each round.
type Current = Arc<Mutex<Option<Checker>>>;

#[test]
fn random_cuts_on_both_sides() {
    let seed = seed_for("random_cuts_on_both_sides");
    let soak = if soak_full() {
        Soak {
            messages: 1000,
            faults: 50,
            max_runs: 150,
            time: Duration::from_secs(900),
        }
    } else {
        Soak {
            messages: 300,
            faults: 20,
            max_runs: 60,
            time: Duration::from_secs(150),
        }
    };
    let dice = Arc::new(CutDice::new(seed));
    let current: Current = Arc::default();
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3s_port(), {
        let dice = dice.clone();
        move |_| dice.plan(Side::Pop3)
    });
    let idle: Arc<Mutex<Traffic>> = Arc::default();
    // Each attempt starts with the IMAP connection: check the invariant
    // and re-aim the offsets at what is left.
    let imap = Proxy::start(dovecot.imaps_port(), {
        let (dice, current, idle) = (dice.clone(), current.clone(), idle.clone());
        move |conn| {
            if let Some(checker) = current.lock().expect("current").as_ref() {
                checker.check(&format!("IMAP connection {conn}"));
                dice.update(&idle.lock().expect("idle"), checker);
            }
            dice.plan(Side::Imap)
        }
    });
    dice.cutting.store(false, Ordering::SeqCst);
    *idle.lock().expect("idle") = Traffic::measure_idle(&pop3, &imap);
    dice.cutting.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut runs = 0;
    let mut rounds = 0;
    // Migrations until enough connections were cut while mail was moving.
    while pop3.cuts() + imap.cuts() < soak.faults {
        rounds += 1;
        let tag = format!("cuts{rounds}");
        let m = Migration::new(&tag, corpus_with_big(&tag, soak.messages, 2000));
        *current.lock().expect("current") = Some(m.checker());
        let config = m.config(&tls_via(&pop3, &imap, "10s"));
        loop {
            runs += 1;
            if runs > soak.max_runs || started.elapsed() > soak.time {
                let why = format!(
                    "no clean run after {} runs, {:?}",
                    runs - 1,
                    started.elapsed()
                );
                fail(seed, &why);
            }
            let run = Run::sync(&config);
            let code = after_cut_run(seed, runs, &run, &m, &[&pop3, &imap]);
            if pop3.cuts() + imap.cuts() >= soak.faults {
                dice.cutting.store(false, Ordering::SeqCst);
            }
            if code == 0 {
                break;
            }
        }
        let checker = current.lock().expect("current").take().expect("checker");
        let violations = checker.violations();
        if !violations.is_empty() {
            fail(seed, &format!("between attempts: {violations:#?}"));
        }
        if let Err(e) = m.migrated() {
            fail(seed, &e);
        }
    }
    eprintln!(
        "random cuts: {} cut connections ({} POP3, {} IMAP) of {} in {rounds} migrations, \
         {runs} runs, {:?}; idle traffic {:?}",
        pop3.cuts() + imap.cuts(),
        pop3.cuts(),
        imap.cuts(),
        pop3.connections() + imap.connections(),
        started.elapsed(),
        idle.lock().expect("idle"),
    );
}

/// After each run of the cut soak: the invariant, and an exit code that
/// is 0 (done) or 3 (the route gave up after its retries). Returns it.
fn after_cut_run(seed: u64, runs: usize, run: &Run, m: &Migration, proxies: &[&Proxy]) -> i32 {
    let idle = proxies.iter().all(|p| p.wait_idle(Duration::from_secs(5)));
    if !idle {
        fail(seed, "a proxied connection stayed open after the run");
    }
    if let Err(e) = m.no_loss() {
        fail(seed, &format!("after run {runs}: {e}\n{}", run.show()));
    }
    let cuts: usize = proxies.iter().map(|p| p.cuts()).sum();
    let dovecot = shared();
    eprintln!(
        "run {runs}: exit {}, {cuts} cuts so far, {} of {} on the target, {} on the source",
        run.code,
        dovecot.count(&m.dst, "INBOX"),
        m.mail.len(),
        dovecot.count(&m.src, "INBOX")
    );
    if run.code != 0 && run.code != 3 {
        fail(seed, &format!("run {runs}: {}", run.show()));
    }
    run.code
}

// ---------------------------------------------------------------- kill -9

/// Messages per kill -9 migration.
const KILL_MESSAGES: usize = 250;
/// Kills before a migration is finished cleanly and a fresh one begins.
const KILLS_PER_MIGRATION: usize = 6;

/// An IMAP plan that slows the target so kills land between intent,
/// APPEND and settle more often: replies sliced into single bytes, or
/// short stalls of the APPEND stream and of the replies.
fn slow_imap_plan(rng: &mut SplitMix, up_bytes: u64) -> Plan {
    let mut plan = Plan::pass();
    if rng.chance(50) {
        plan = plan.with(
            Dir::Down,
            At::Byte(0),
            Kind::Slice {
                pause: Duration::ZERO,
            },
        );
    }
    for _ in 0..3 {
        let pause = Duration::from_millis(20 + rng.upto(130));
        plan = plan.with(Dir::Up, At::Byte(rng.upto(up_bytes)), Kind::Stall(pause));
    }
    let pause = Duration::from_millis(20 + rng.upto(130));
    plan.with(
        Dir::Down,
        At::Byte(rng.upto(OVERHEAD + 80 * KILL_MESSAGES as u64)),
        Kind::Stall(pause),
    )
}

/// What the kill cycles did, for the summary.
#[derive(Default, Debug)]
struct Kills {
    landed: usize,
    finished_first: usize,
    migrations: usize,
    intents_found: u64,
    intents_dropped: u64,
}

impl Kills {
    fn note(&mut self, run: &Run) {
        self.intents_found += run.number("intents_found");
        self.intents_dropped += run.number("intents_dropped");
    }
}

/// Runs `config` for `delay`, then kill -9 unless it has exited: whether
/// it was killed, and what it printed (exit code -1 when killed).
fn run_and_kill(config: &std::path::Path, delay: Duration) -> (bool, Run) {
    let mut child = spawn_mailferry(config, &["--json", "sync"]);
    std::thread::sleep(delay);
    let killed = child.try_wait().expect("try_wait").is_none();
    if killed {
        child.kill().expect("kill -9");
    }
    let out = child.wait_with_output().expect("output");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (killed, run)
}

/// A clean run to exit 0 and the full comparison.
fn finish_cleanly(seed: u64, m: &Migration, config: &std::path::Path, kills: &mut Kills) {
    let run = Run::sync(config);
    if run.code != 0 {
        fail(seed, &format!("clean run after kills: {}", run.show()));
    }
    kills.note(&run);
    if let Err(e) = m.migrated() {
        fail(
            seed,
            &format!("after kills and a clean run: {e}\n{}", run.show()),
        );
    }
}

#[test]
fn kill_9_at_random_instants() {
    let seed = seed_for("kill_9_at_random_instants");
    let (want, time) = if soak_full() {
        (50, Duration::from_secs(600))
    } else {
        (20, Duration::from_secs(150))
    };
    let mut rng = SplitMix(seed);
    let corpus = |tag: &str| corpus_with_big(tag, KILL_MESSAGES, 1000);
    let up_bytes = OVERHEAD
        + corpus("x")
            .iter()
            .map(|m| m.len() as u64 + 100)
            .sum::<u64>();
    let dovecot = shared();
    let imap = Proxy::start(dovecot.imaps_port(), {
        let mut rng = SplitMix(seed ^ 0x5eed);
        move |_| slow_imap_plan(&mut rng, up_bytes)
    });
    let servers = Servers {
        imap: Endpoint {
            port: imap.port(),
            plain: false,
        },
        ..Servers::tls(dovecot)
    };
    // How long a whole run takes, slowed the same way: kills spread over it.
    let calibration = Migration::new("killcal", corpus("killcal"));
    let started = Instant::now();
    let run = Run::sync(&calibration.config(&servers));
    let whole_run = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.show());
    calibration.migrated().unwrap();

    let mut kills = Kills::default();
    let mut in_this = 0;
    let mut history: Vec<String> = Vec::new();
    let mut m = Migration::new("kill0", corpus("kill0"));
    let mut config = m.config(&servers);
    while kills.landed < want {
        if started.elapsed() > time {
            fail(seed, &format!("{kills:?} after {:?}", started.elapsed()));
        }
        let delay = Duration::from_millis(rng.upto(whole_run.as_millis() as u64));
        let (killed, run) = run_and_kill(&config, delay);
        // What this migration's runs said, for a failure message.
        history.push(format!(
            "--- run after {delay:?}, killed: {killed}\n{}",
            run.show()
        ));
        imap.wait_idle(Duration::from_secs(5));
        if let Err(e) = m.no_loss() {
            let why = format!(
                "after a kill at {delay:?} (kill {}): {e}\n{}",
                kills.landed,
                history.join("\n")
            );
            fail(seed, &why);
        }
        match killed {
            true => {
                kills.landed += 1;
                in_this += 1;
            }
            false if run.code == 0 => {
                kills.finished_first += 1;
                kills.note(&run);
            }
            false => fail(seed, &format!("a run not killed: {}", run.show())),
        }
        if !killed || in_this >= KILLS_PER_MIGRATION {
            history.clear();
            finish_cleanly(seed, &m, &config, &mut kills);
            kills.migrations += 1;
            in_this = 0;
            let tag = format!("kill{}", kills.migrations);
            m = Migration::new(&tag, corpus(&tag));
            config = m.config(&servers);
        }
    }
    finish_cleanly(seed, &m, &config, &mut kills);
    kills.migrations += 1;
    eprintln!(
        "kill -9: {kills:?} (a whole run took {whole_run:?}); IMAP connections {}, faults {}",
        imap.connections(),
        imap.fired().len()
    );
}

// ---------------------------------------------------------------- regressions

/// Found by `kill_9_at_random_instants` (seed 3051948438138307825) before
/// 66ee8f8: a kill between APPEND and settle left an intent for the message
/// with a NUL byte; Dovecot serves NUL as 0x80 in `BODY[]`, so the next pass
/// did not recognise the stored copy, dropped the intent and appended the
/// message again. (`BINARY.PEEK[]` fixed that, but decoded encoded parts;
/// now `BODY.PEEK[]` is used and the identity hashes a NUL as 0x80.)
#[test]
fn intent_for_a_message_with_nul_is_found_after_a_cut() {
    let mut nul = b"Subject: nul intent\nX-Nul: a\0b\n\nbody \xe9\n".to_vec();
    nul.extend_from_slice(b"APPEND-END\n");
    let m = Migration::new("nul", vec![nul]);
    let dovecot = shared();
    let pop3 = Proxy::start(dovecot.pop3_port(), |_| Plan::pass());
    let imap = Proxy::start(dovecot.imap_port(), |conn| {
        let after = At::After {
            needle: b"APPEND-END\r\n".to_vec(),
            nth: 0,
            extra: 2,
        };
        let cut = Kind::Cut {
            server_grace: Duration::from_millis(500),
        };
        match conn {
            0 => Plan::pass().with(Dir::Up, after, cut),
            _ => Plan::pass(),
        }
    });
    let run = Run::sync(&m.config(&plain_via(&pop3, &imap, "20s")));
    assert_eq!(run.code, 0, "{}", run.show());
    assert_eq!(imap.cuts(), 1, "{:?}", imap.fired());
    assert_eq!(
        (run.number("intents_found"), run.number("intents_dropped")),
        (1, 0),
        "the stored copy must settle the intent: {}",
        run.show()
    );
    m.migrated().unwrap();
}
