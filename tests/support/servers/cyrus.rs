//! A private Cyrus IMAP 3.6 (imapd and pop3d) on 127.0.0.1 for one test run, with sasldb users made on demand.
//!
//! Installed by `scripts/servers/install-cyrus-mailutils`: `cyrus-common`
//! (master, ctl_cyrusdb, libraries) is a normal package; `imapd` and
//! `pop3d` come from `cyrus-imapd`/`cyrus-pop3d`, which conflict with
//! Dovecot's packages, so they are unpacked into
//! `/opt/mailferry-test-servers/<package>` (`$MAILFERRY_TEST_SERVERS`
//! overrides the root) and run from there. Facts from
//! `/work/shared/notes/other-servers.md`, plus what this module found:
//!
//! **How it runs.** `master -C imapd.conf -M cyrus.conf -p PIDFILE -D` in
//! the foreground (no `-d`), started as root; it drops to the `cyrus` user
//! (made by cyrus-common's package scripts), so the instance's config
//! directory, spool and sasldb belong to `cyrus`. The master does **not**
//! pass its `-C` to the services it forks: every `cmd=` in `cyrus.conf`
//! carries its own `-C`, or the service reads `/etc/imapd.conf` and greets
//! with `* BYE Fatal error: couldn't create proc directory` (its
//! `/run/cyrus/proc`). It runs under the same watchdog as Dovecot
//! (`support::watchdog`), through a one-line `exec setsid` wrapper script
//! that ignores the watchdog's Dovecot arguments. The session of its own
//! matters: at shutdown the master sends SIGTERM to its **whole process
//! group** (`kill(0, SIGTERM)`, "begin_shutdown" in its strings); in the
//! test process's group that stopped every other Cyrus of the test run
//! (all run as `cyrus`, so it may signal them). Start-up, including
//! `ctl_cyrusdb -r` and a probe login on both ports, takes about 0.2 s.
//!
//! **No log.** Cyrus logs only to syslog and this machine has no
//! `/dev/log`; `-D` keeps stderr (the `cyrus.stderr` file) but nothing is
//! written there. A port another process holds is not fatal to the master:
//! it serves the other ports and leaves that one out, silently. So the
//! readiness probe checks that each port greets with this instance's own
//! `servername`, and takes a port that stays refused while the other
//! greets as "taken" (start again on fresh ports).
//!
//! **Defaults kept** (the interop matrix asserts them): Cyrus 3 defaults to
//! `altnamespace: yes` and `unixhierarchysep: yes`: personal folders sit
//! beside INBOX (`Archive`, not `INBOX.Archive`) and the separator is `/`.
//! `autocreate_quota: 0` makes INBOX at the first login (POP3 login too).
//! Mail as seen here (APPEND, served back by `BODY[]` and by POP3 `RETR`
//! identically):
//! - `munge8bit: yes`: every raw 8-bit byte in the **header** becomes one
//!   `X` (`café` in UTF-8 → `cafXX`); 8-bit bytes in the body are kept.
//! - refused with `NO Message contains bare newlines`: any bare LF (load
//!   and store send CRLF-normalised bytes, see
//!   [`super::readers::crlf`]); a bare CR is accepted and kept.
//! - refused with `NO Message contains NUL characters`: a NUL byte.
//! - refused with `NO Message contains invalid header`: a header line
//!   without a colon, `Name : value` (space before the colon), a
//!   header-only message without a final CRLF. An mbox-style `From ...`
//!   first line is accepted and kept.
//! - otherwise byte for byte: no trailing CRLF added, folded and empty
//!   headers kept, `.` lines kept (POP3 dot-stuffs them on the wire only).
//! - POP3 UIDLs are `<uidvalidity>.<uid>`; the POP3 CAPA has `SASL PLAIN
//!   LOGIN`, `UIDL`, `PIPELINING`, `EXPIRE NEVER`, `LOGIN-DELAY 0`.
//! - IMAP has UIDPLUS, MULTIAPPEND, LITERAL+, BINARY, MOVE, CONDSTORE,
//!   QRESYNC; the capability list after LOGIN also says `LOGINDISABLED`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::super::watchdog::Watchdog;
use super::readers::{self, Imap, Pop3};
use super::{ImapServer, Pop3Server, User};

/// Where the install script puts Cyrus's own binaries (cyrus-common).
const CYRUS_BIN: &str = "/usr/lib/cyrus/bin";
/// How long an instance may take to greet on both ports and log a user in.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one port may stay refused while the other greets before it
/// counts as taken by another process.
const TAKEN_AFTER: Duration = Duration::from_secs(1);
/// Start attempts, each on fresh ports.
const START_ATTEMPTS: usize = 5;
const INSTALL_HINT: &str = "run scripts/servers/install-cyrus-mailutils as root";

static INSTANCE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A running private Cyrus. Stopped (and its directory removed) on drop,
/// and by its watchdog when the test process dies.
pub struct Cyrus {
    dir: PathBuf,
    pop3_port: u16,
    imap_port: u16,
    /// Unique per instance: the greeting names it, and it is the SASL realm
    /// of every user.
    servername: String,
    owner: (u32, u32),
    /// `None` once stopped.
    watchdog: Mutex<Option<Watchdog>>,
    next_user: AtomicU64,
    /// saslpasswd2 runs one at a time.
    sasldb_lock: Mutex<()>,
}

/// One instance per test binary, started on first use. Never dropped: the
/// watchdog stops it when the test process exits.
pub fn shared() -> &'static Cyrus {
    static SHARED: OnceLock<Cyrus> = OnceLock::new();
    SHARED.get_or_init(Cyrus::start)
}

enum StartError {
    PortTaken(String),
    Fatal(String),
}

/// The binaries an instance runs.
struct Binaries {
    master: PathBuf,
    ctl_cyrusdb: PathBuf,
    imapd: PathBuf,
    pop3d: PathBuf,
    saslpasswd2: PathBuf,
}

impl Cyrus {
    /// Starts a fresh instance; retries on fresh ports if one was taken;
    /// panics (naming what is missing or why it failed) otherwise.
    pub fn start() -> Cyrus {
        let binaries = binaries();
        let owner = cyrus_owner();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Cyrus::try_start(&binaries, owner) {
                Ok(cyrus) => return cyrus,
                Err(StartError::PortTaken(why)) => last_error = why,
                Err(StartError::Fatal(why)) => panic!("cyrus did not start: {why}"),
            }
        }
        panic!("cyrus did not start: a port was taken {START_ATTEMPTS} times: {last_error}");
    }

    fn try_start(binaries: &Binaries, owner: (u32, u32)) -> Result<Cyrus, StartError> {
        let seq = INSTANCE_SEQ.fetch_add(1, Ordering::Relaxed);
        let servername = format!("mailferry-cyrus-{}-{seq}", std::process::id());
        let dir = make_instance_dir();
        let (pop3_port, imap_port) = pick_ports();
        for sub in [
            "config",
            "config/proc",
            "config/lock",
            "config/socket",
            "config/db",
            "config/log",
            "spool",
        ] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
            chown(&path, owner);
        }
        let imapd_conf = dir.join("imapd.conf");
        let d = dir.display();
        fs::write(
            &imapd_conf,
            format!(
                "configdirectory: {d}/config\n\
                 defaultpartition: default\n\
                 partition-default: {d}/spool\n\
                 servername: {servername}\n\
                 allowplaintext: yes\n\
                 sasl_pwcheck_method: auxprop\n\
                 sasl_auxprop_plugin: sasldb\n\
                 sasl_sasldb_path: {d}/sasldb\n\
                 sasl_mech_list: PLAIN LOGIN\n\
                 autocreate_quota: 0\n\
                 syslog_prefix: {servername}\n"
            ),
        )
        .expect("write imapd.conf");
        let c = imapd_conf.display();
        fs::write(
            dir.join("cyrus.conf"),
            format!(
                "START {{\n  recover cmd=\"{ctl} -C {c} -r\"\n}}\n\
                 SERVICES {{\n\
                 \x20 imap cmd=\"{imapd} -C {c}\" listen=\"127.0.0.1:{imap_port}\" prefork=0\n\
                 \x20 pop3 cmd=\"{pop3d} -C {c}\" listen=\"127.0.0.1:{pop3_port}\" prefork=0\n\
                 }}\n",
                ctl = binaries.ctl_cyrusdb.display(),
                imapd = binaries.imapd.display(),
                pop3d = binaries.pop3d.display(),
            ),
        )
        .expect("write cyrus.conf");
        // The watchdog runs `"$1" -F -c "$2"`: this wrapper drops those
        // Dovecot arguments and becomes the master (so `$!` is its pid), in
        // a session of its own: at shutdown the master sends SIGTERM to its
        // whole process group (`kill(0, SIGTERM)`), which would otherwise
        // be the test process's, and so every other Cyrus of this test run
        // (they all run as `cyrus`). `setsid` does not fork here (the
        // wrapper is no group leader); `wait_ready` checks the pid.
        let wrapper = dir.join("run-master");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec setsid {master} -C {c} -M {d}/cyrus.conf -p {d}/config/master.pid -D\n",
                master = binaries.master.display()
            ),
        )
        .expect("write run-master");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod run-master");
        let watchdog = Watchdog::start(&wrapper, &imapd_conf, &dir, &dir.join("cyrus.stderr"));
        let cyrus = Cyrus {
            dir,
            pop3_port,
            imap_port,
            servername,
            owner,
            watchdog: Mutex::new(Some(watchdog)),
            next_user: AtomicU64::new(0),
            sasldb_lock: Mutex::new(()),
        };
        match cyrus.wait_ready(binaries) {
            Ok(()) => Ok(cyrus),
            Err(err) => {
                let stderr = fs::read_to_string(cyrus.dir.join("cyrus.stderr")).unwrap_or_default();
                drop(cyrus);
                Err(match err {
                    StartError::PortTaken(why) => StartError::PortTaken(why),
                    StartError::Fatal(why) => StartError::Fatal(format!(
                        "{why}\n--- cyrus stderr (Cyrus logs to syslog, absent here) ---\n{stderr}"
                    )),
                })
            }
        }
    }

    /// Waits until both ports greet as this instance and a probe user can
    /// log in over both.
    fn wait_ready(&self, binaries: &Binaries) -> Result<(), StartError> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        let mut one_ready_since: Option<Instant> = None;
        let mut last = String::from("not tried");
        while Instant::now() < deadline {
            if !self.master_alive() {
                return Err(StartError::Fatal(format!(
                    "master exited during start-up (last probe: {last})"
                )));
            }
            let imap = Imap::connect(self.imap_port).map(|s| s.greeting().to_string());
            let pop3 = Pop3::connect(self.pop3_port).map(|s| s.greeting().to_string());
            for (name, port, greeting) in [
                ("imap", self.imap_port, &imap),
                ("pop3", self.pop3_port, &pop3),
            ] {
                if let Ok(line) = greeting {
                    if !line.contains(&self.servername) {
                        return Err(StartError::PortTaken(format!(
                            "{name} port {port} greeted as another server: {line:?}"
                        )));
                    }
                }
            }
            match (&imap, &pop3) {
                (Ok(_), Ok(_)) if self.check_master_pid().is_err() => {
                    // Not written yet (or wrong: reported at the deadline).
                    last = self.check_master_pid().err().unwrap_or_default();
                }
                (Ok(_), Ok(_)) => {
                    let probe = self.make_user("probe", binaries);
                    let login = Imap::login(self.imap_port, &probe.name, &probe.password)
                        .and_then(Imap::logout)
                        .and_then(|()| Pop3::login(self.pop3_port, &probe.name, &probe.password))
                        .and_then(Pop3::quit);
                    return login.map_err(|why| {
                        StartError::Fatal(format!("probe user could not log in: {why}"))
                    });
                }
                (Ok(_), Err(why)) | (Err(why), Ok(_)) => {
                    let since = *one_ready_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > TAKEN_AFTER {
                        return Err(StartError::PortTaken(format!(
                            "one port greets, the other does not: {why}"
                        )));
                    }
                    last = why.clone();
                }
                (Err(why), Err(_)) => last = why.clone(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StartError::Fatal(format!(
            "not ready after {READY_TIMEOUT:?}: {last}"
        )))
    }

    /// The pid the master wrote is the one the watchdog guards (`setsid`
    /// did not fork).
    fn check_master_pid(&self) -> Result<(), String> {
        let written = fs::read_to_string(self.dir.join("config/master.pid")).unwrap_or_default();
        let guarded = self.master_pid();
        if written.trim().parse::<u32>().ok() == guarded {
            Ok(())
        } else {
            Err(format!(
                "the master's pidfile says {:?}, the watchdog guards {guarded:?}",
                written.trim()
            ))
        }
    }

    fn master_alive(&self) -> bool {
        let guard = self.watchdog.lock().expect("watchdog lock poisoned");
        guard.as_ref().is_some_and(Watchdog::master_alive)
    }

    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The instance directory (configs, `config/`, `spool/`, `sasldb`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `servername` (in both greetings; also every user's SASL realm).
    pub fn servername(&self) -> &str {
        &self.servername
    }

    /// The master's pid.
    pub fn master_pid(&self) -> Option<u32> {
        let guard = self.watchdog.lock().expect("watchdog lock poisoned");
        guard.as_ref().map(Watchdog::master_pid)
    }

    /// A new user nobody else has, named `<hint>-<n>` (lower-case
    /// `[a-z0-9-]`), with a fresh password, whose INBOX exists (made by a
    /// first IMAP login).
    pub fn user(&self, hint: &str) -> User {
        let user = self.make_user(hint, &binaries());
        let mut imap = Imap::login(self.imap_port, &user.name, &user.password)
            .unwrap_or_else(|e| panic!("cyrus: first login of {}: {e}", user.name));
        imap.select("INBOX")
            .unwrap_or_else(|e| panic!("cyrus: INBOX of {} not made at login: {e}", user.name));
        imap.logout()
            .unwrap_or_else(|e| panic!("cyrus: LOGOUT of {}: {e}", user.name));
        user
    }

    /// Adds the user to the sasldb, without logging in.
    fn make_user(&self, hint: &str, binaries: &Binaries) -> User {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}", sanitize(hint));
        let password = format!("pw-{n}-{:x}", nanos());
        let sasldb = self.dir.join("sasldb");
        let _guard = self.sasldb_lock.lock().expect("sasldb lock poisoned");
        let mut child = Command::new(&binaries.saslpasswd2)
            .args(["-c", "-p", "-f"])
            .arg(&sasldb)
            .args(["-u", &self.servername, &name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", binaries.saslpasswd2));
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(password.as_bytes())
            .expect("give saslpasswd2 the password");
        let out = child.wait_with_output().expect("wait for saslpasswd2");
        assert!(
            out.status.success(),
            "saslpasswd2 for {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        chown(&sasldb, self.owner);
        fs::set_permissions(&sasldb, fs::Permissions::from_mode(0o600)).expect("chmod sasldb");
        User { name, password }
    }

    /// APPENDs `messages` (CRLF-normalised) to `mailbox`, creating it if
    /// missing, in one session. Panics with Cyrus's answer if it refuses one.
    fn append_all(&self, user: &User, mailbox: &str, messages: &[Vec<u8>]) {
        let mut imap = Imap::login(self.imap_port, &user.name, &user.password)
            .unwrap_or_else(|e| panic!("cyrus: login of {}: {e}", user.name));
        let exists = imap
            .mailbox_exists(mailbox)
            .unwrap_or_else(|e| panic!("cyrus: LIST {mailbox:?}: {e}"));
        if !exists {
            imap.create(mailbox)
                .unwrap_or_else(|e| panic!("cyrus: CREATE {mailbox:?}: {e}"));
        }
        for (i, message) in messages.iter().enumerate() {
            imap.append(mailbox, &readers::crlf(message))
                .unwrap_or_else(|e| panic!("cyrus refused message {i} for {mailbox:?}: {e}"));
        }
        imap.logout()
            .unwrap_or_else(|e| panic!("cyrus: LOGOUT of {}: {e}", user.name));
    }

    /// Stops Cyrus and removes the instance directory. Idempotent; also
    /// done on drop.
    pub fn stop(&self) {
        let watchdog = self.watchdog.lock().map(|mut w| w.take());
        if let Ok(Some(watchdog)) = watchdog {
            watchdog.stop();
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("could not remove {:?}: {e}", self.dir),
        }
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Pop3Server for Cyrus {
    fn name(&self) -> &'static str {
        "cyrus"
    }

    fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    fn pop3_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    /// IMAP APPEND to INBOX (CRLF-normalised), which pop3d serves: Cyrus
    /// applies munge8bit and its refusals (see the module doc).
    /// Messages Cyrus refuses (see the module doc) are left out: they
    /// cannot be in a Cyrus maildrop.
    fn load(&self, user: &User, messages: &[Vec<u8>]) {
        let mut imap = Imap::login(self.imap_port, &user.name, &user.password)
            .unwrap_or_else(|e| panic!("cyrus: login of {}: {e}", user.name));
        for message in messages {
            let _ = imap.append("INBOX", &readers::crlf(message));
        }
        imap.logout()
            .unwrap_or_else(|e| panic!("cyrus: LOGOUT of {}: {e}", user.name));
    }

    fn maildrop(&self, user: &User) -> Vec<Vec<u8>> {
        readers::pop3_maildrop(self.pop3_port, &user.name, &user.password)
            .unwrap_or_else(|e| panic!("cyrus: POP3 maildrop of {}: {e}", user.name))
    }
}

impl ImapServer for Cyrus {
    fn name(&self) -> &'static str {
        "cyrus"
    }

    fn imap_port(&self) -> u16 {
        self.imap_port
    }

    fn imap_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    /// CREATE if missing (altnamespace: `Archive`, `Archive/2024`), then
    /// APPEND each message, CRLF-normalised.
    fn store(&self, user: &User, mailbox: &str, messages: &[Vec<u8>]) {
        self.append_all(user, mailbox, messages);
    }

    fn messages(&self, user: &User, mailbox: &str) -> Vec<Vec<u8>> {
        readers::imap_messages(self.imap_port, &user.name, &user.password, mailbox)
            .unwrap_or_else(|e| panic!("cyrus: IMAP messages of {} in {mailbox:?}: {e}", user.name))
    }
}

/// The binaries, or a panic naming the missing one and the install script.
fn binaries() -> Binaries {
    let root = std::env::var_os("MAILFERRY_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mailferry-test-servers"));
    let found = Binaries {
        master: Path::new(CYRUS_BIN).join("master"),
        ctl_cyrusdb: Path::new(CYRUS_BIN).join("ctl_cyrusdb"),
        imapd: root.join("cyrus-imapd/usr/lib/cyrus/bin/imapd"),
        pop3d: root.join("cyrus-pop3d/usr/lib/cyrus/bin/pop3d"),
        saslpasswd2: PathBuf::from("/usr/sbin/saslpasswd2"),
    };
    for path in [
        &found.master,
        &found.ctl_cyrusdb,
        &found.imapd,
        &found.pop3d,
        &found.saslpasswd2,
    ] {
        assert!(
            path.is_file(),
            "cyrus not installed: {} is missing; {INSTALL_HINT}",
            path.display()
        );
    }
    found
}

/// uid and gid of the `cyrus` user that cyrus-common's package scripts make
/// (the master drops to it).
fn cyrus_owner() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != "cyrus" {
                return None;
            }
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        })
        .unwrap_or_else(|| panic!("cyrus not installed: no system user `cyrus`; {INSTALL_HINT}"))
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {path:?} to the cyrus user: {e}"));
}

/// A 0755 directory under /tmp (the `cyrus` user must traverse it).
fn make_instance_dir() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("mailferry-cyrus-")
        .tempdir_in("/tmp")
        .expect("create the cyrus instance dir in /tmp")
        .keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .expect("make the instance dir traversable");
    dir
}

/// Two distinct free ports (POP3, IMAP): bound at once, then released.
fn pick_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("bound port").port();
    (port(&a), port(&b))
}

fn sanitize(hint: &str) -> String {
    let cleaned: String = hint
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    if cleaned.is_empty() {
        "user".into()
    } else {
        cleaned
    }
}

fn nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
