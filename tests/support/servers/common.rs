//! What every private server of the tests (Dovecot included) does the same way: start on fresh ports with retries, wait until ready within a deadline, stop on drop.
//!
//! A server module keeps only what is its own: its files, its command line,
//! its readiness probe, its users. The pieces here:
//! - [`start_with_retries`]: calls a server's `try_start` until it starts,
//!   again on fresh ports ([`free_ports`]) while a port was taken
//!   ([`StartError::PortTaken`]), at most [`START_ATTEMPTS`] times; any other
//!   failure is a panic naming the server (a server that cannot start is a
//!   failure, never a skip).
//! - [`wait_ready`]: polls a server's probe until it is ready, fails or the
//!   deadline passes; [`started_or_stopped`] turns the outcome into the
//!   started server or a [`StartError`] with the server's log.
//! - [`Instance`]: the instance directory and the watchdogs guarding the
//!   server's processes (they die with the test process, even after
//!   `kill -9`); [`Instance::stop`] stops them and removes the directory,
//!   also on drop.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::maildir::MailOwner;
use super::super::watchdog::Watchdog;

/// Start attempts, each on fresh ports (another process may grab a port
/// between our releasing it and the server binding it).
pub const START_ATTEMPTS: usize = 5;
/// What a server logs when a port it was given is taken meanwhile.
pub const ADDRESS_IN_USE: &str = "Address already in use";

/// Why one start attempt failed.
pub enum StartError {
    /// Another process bound one of our ports first: try other ports.
    PortTaken(String),
    Fatal(String),
}

/// A start that is not ready by its deadline is fatal.
impl From<String> for StartError {
    fn from(why: String) -> StartError {
        StartError::Fatal(why)
    }
}

/// Calls `try_start` until it returns a server; again (on the fresh ports
/// it picks) after [`StartError::PortTaken`], at most [`START_ATTEMPTS`]
/// times; panics with `server`'s name on [`StartError::Fatal`] or when a
/// port was taken every time.
pub fn start_with_retries<T>(
    server: &str,
    mut try_start: impl FnMut() -> Result<T, StartError>,
) -> T {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        match try_start() {
            Ok(started) => return started,
            Err(StartError::PortTaken(why)) => last = why,
            Err(StartError::Fatal(why)) => panic!("{server} did not start: {why}"),
        }
    }
    panic!("{server} did not start: a port was taken {START_ATTEMPTS} times:\n{last}");
}

/// One look at a starting server.
pub enum Poll<E> {
    Ready,
    /// Not yet, and why (reported if the deadline passes).
    NotYet(String),
    /// Give up at once.
    Failed(E),
}

/// Calls `poll` (given the last reason for "not yet", `not tried` at
/// first) every `pause` until it says ready or failed; after `timeout`, the
/// error `not ready after <timeout>: <last reason>`.
pub fn wait_ready<E: From<String>>(
    timeout: Duration,
    pause: Duration,
    mut poll: impl FnMut(&str) -> Poll<E>,
) -> Result<(), E> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not tried");
    while Instant::now() < deadline {
        match poll(&last) {
            Poll::Ready => return Ok(()),
            Poll::NotYet(why) => last = why,
            Poll::Failed(error) => return Err(error),
        }
        std::thread::sleep(pause);
    }
    Err(E::from(format!("not ready after {timeout:?}: {last}")))
}

/// The end of a start attempt: the server if `ready`, else the server
/// dropped (stopped, its directory removed) and `report(server, why)` (why
/// plus its log) as the error: [`StartError::PortTaken`] when the report
/// says [`ADDRESS_IN_USE`], else [`StartError::Fatal`].
pub fn started_or_stopped<T>(
    server: T,
    ready: Result<(), String>,
    report: impl FnOnce(&T, String) -> String,
) -> Result<T, StartError> {
    match ready {
        Ok(()) => Ok(server),
        Err(why) => {
            let report = report(&server, why);
            drop(server);
            if report.contains(ADDRESS_IN_USE) {
                Err(StartError::PortTaken(report))
            } else {
                Err(StartError::Fatal(report))
            }
        }
    }
}

/// A running server's instance directory and the watchdogs guarding its
/// processes (one, or one per daemon). Stopped, and the directory removed,
/// by [`Instance::stop`] or on drop, and by the watchdogs when the test
/// process dies.
pub struct Instance {
    dir: PathBuf,
    /// In start order; `None` once stopped.
    watchdogs: Mutex<Option<Vec<Watchdog>>>,
}

impl Instance {
    /// No watchdog yet: add them with [`Instance::guard`].
    pub fn new(dir: PathBuf) -> Instance {
        Instance {
            dir,
            watchdogs: Mutex::new(Some(Vec::new())),
        }
    }

    /// Adds the watchdog of a started process; stopped at once if the
    /// instance already is.
    pub fn guard(&self, watchdog: Watchdog) {
        let mut guard = self.watchdogs.lock().expect("watchdog lock poisoned");
        match guard.as_mut() {
            Some(watchdogs) => watchdogs.push(watchdog),
            None => watchdog.stop(),
        }
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while every guarded process runs (false before the first is
    /// guarded and once stopped; a zombie counts as exited).
    pub fn alive(&self) -> bool {
        let guard = self.watchdogs.lock().expect("watchdog lock poisoned");
        guard
            .as_ref()
            .is_some_and(|w| !w.is_empty() && w.iter().all(Watchdog::master_alive))
    }

    /// The guarded pids, in start order (empty once stopped).
    pub fn pids(&self) -> Vec<u32> {
        let guard = self.watchdogs.lock().expect("watchdog lock poisoned");
        guard
            .as_ref()
            .map(|w| w.iter().map(Watchdog::master_pid).collect())
            .unwrap_or_default()
    }

    /// Stops every guarded process (in start order) and removes the
    /// instance directory. Idempotent; also done on drop.
    pub fn stop(&self) {
        let watchdogs = self.watchdogs.lock().map(|mut w| w.take());
        if let Ok(Some(watchdogs)) = watchdogs {
            for watchdog in watchdogs {
                watchdog.stop();
            }
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("could not remove {:?}: {e}", self.dir),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` distinct free ports on 127.0.0.1: all bound at once so they differ,
/// then released for the server to take.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound port").port())
        .collect()
}

/// A 0755 directory under /tmp named `mailferry-<prefix>-...` (a server's
/// unprivileged processes must traverse it; a 0700 dir or one under /root
/// fails with misleading errors).
pub fn instance_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mailferry-{prefix}-"))
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("create the {prefix} instance dir in /tmp: {e}"))
        .keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .expect("make the instance dir traversable");
    dir
}

/// Where `scripts/servers/install-*` unpack the servers that conflict with
/// Dovecot's packages: `$MAILFERRY_TEST_SERVERS`, by default
/// `/opt/mailferry-test-servers`.
pub fn servers_root() -> PathBuf {
    std::env::var_os("MAILFERRY_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mailferry-test-servers"))
}

/// A user-name hint made safe: lower-cased, `[a-z0-9-]` and `replacement`
/// kept, any other character turned into `replacement`; `user` if empty.
pub fn sanitize_hint(hint: &str, replacement: char) -> String {
    let cleaned: String = hint
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == replacement {
                c
            } else {
                replacement
            }
        })
        .collect();
    if cleaned.is_empty() {
        "user".into()
    } else {
        cleaned
    }
}

/// A fresh password for user number `n`.
pub fn fresh_password(n: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pw-{n}-{nanos:x}")
}

/// uid and gid of the system user `name` in `/etc/passwd`.
pub fn system_user(name: &str) -> Option<MailOwner> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || fields[0] != name {
            return None;
        }
        Some(MailOwner {
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
        })
    })
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last `lines` lines of a log file (lossy UTF-8; empty if missing).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    tail(&String::from_utf8_lossy(&bytes), lines)
}

/// Runs `command` with `input` on its stdin; its stdout, or a panic saying
/// `what` failed, with its stderr (or with `install`, how to get the
/// program, if it cannot run at all).
pub fn run_with_input(command: &mut Command, input: &[u8], what: &str, install: &str) -> Vec<u8> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {what} ({e}): {install}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .unwrap_or_else(|e| panic!("feed {what}: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A SHA-512 crypt(3) hash (`$6$...`) of `password` by `openssl passwd -6`
/// (with `salt`, or a random one), as pam_unix and Mailutils' virtdomain
/// check it. `install` says how to get openssl if it cannot run.
pub fn sha512_crypt(openssl: &str, password: &str, salt: Option<&str>, install: &str) -> String {
    let mut command = Command::new(openssl);
    command.args(["passwd", "-6"]);
    if let Some(salt) = salt {
        command.args(["-salt", salt]);
    }
    command.arg("-stdin");
    let input = format!("{password}\n");
    let out = run_with_input(&mut command, input.as_bytes(), "openssl passwd", install);
    let hash = String::from_utf8_lossy(&out).trim().to_string();
    assert!(
        hash.starts_with("$6$"),
        "openssl passwd -6 printed {hash:?}"
    );
    hash
}
