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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::super::maildir::{self, MailOwner};
use super::super::watchdog::Watchdog;
use super::common::{self, Instance, Poll, StartError};
use super::readers::{self, Imap, Pop3};
use super::{ImapServer, Pop3Server, User};

/// Where the install script puts Cyrus's own binaries (cyrus-common).
const CYRUS_BIN: &str = "/usr/lib/cyrus/bin";
/// How long an instance may take to greet on both ports and log a user in.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one port may stay refused while the other greets before it
/// counts as taken by another process.
const TAKEN_AFTER: Duration = Duration::from_secs(1);
const INSTALL_HINT: &str = "run scripts/servers/install-cyrus-mailutils as root";

static INSTANCE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A running private Cyrus. Stopped (and its directory removed) on drop,
/// and by its watchdog when the test process dies.
pub struct Cyrus {
    /// The directory and the master's watchdog.
    instance: Instance,
    pop3_port: u16,
    imap_port: u16,
    /// Unique per instance: the greeting names it, and it is the SASL realm
    /// of every user.
    servername: String,
    owner: MailOwner,
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
        common::start_with_retries("cyrus", || Cyrus::try_start(&binaries, owner))
    }

    fn try_start(binaries: &Binaries, owner: MailOwner) -> Result<Cyrus, StartError> {
        let seq = INSTANCE_SEQ.fetch_add(1, Ordering::Relaxed);
        let servername = format!("mailferry-cyrus-{}-{seq}", std::process::id());
        let dir = common::instance_dir("cyrus");
        let ports = common::free_ports(2);
        let (pop3_port, imap_port) = (ports[0], ports[1]);
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
            maildir::chown(&path, owner);
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
        let instance = Instance::new(dir);
        instance.guard(watchdog);
        let cyrus = Cyrus {
            instance,
            pop3_port,
            imap_port,
            servername,
            owner,
            next_user: AtomicU64::new(0),
            sasldb_lock: Mutex::new(()),
        };
        match cyrus.wait_ready(binaries) {
            Ok(()) => Ok(cyrus),
            Err(err) => {
                let stderr =
                    fs::read_to_string(cyrus.dir().join("cyrus.stderr")).unwrap_or_default();
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
        let mut one_ready_since: Option<Instant> = None;
        common::wait_ready(READY_TIMEOUT, Duration::from_millis(20), |last| {
            if !self.instance.alive() {
                return Poll::Failed(StartError::Fatal(format!(
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
                        return Poll::Failed(StartError::PortTaken(format!(
                            "{name} port {port} greeted as another server: {line:?}"
                        )));
                    }
                }
            }
            match (&imap, &pop3) {
                // Not written yet (or wrong: reported at the deadline).
                (Ok(_), Ok(_)) => match self.check_master_pid() {
                    Err(why) => Poll::NotYet(why),
                    Ok(()) => {
                        let probe = self.make_user("probe", binaries);
                        let login = Imap::login(self.imap_port, &probe.name, &probe.password)
                            .and_then(Imap::logout)
                            .and_then(|()| {
                                Pop3::login(self.pop3_port, &probe.name, &probe.password)
                            })
                            .and_then(Pop3::quit);
                        match login {
                            Ok(()) => Poll::Ready,
                            Err(why) => Poll::Failed(StartError::Fatal(format!(
                                "probe user could not log in: {why}"
                            ))),
                        }
                    }
                },
                (Ok(_), Err(why)) | (Err(why), Ok(_)) => {
                    let since = *one_ready_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > TAKEN_AFTER {
                        Poll::Failed(StartError::PortTaken(format!(
                            "one port greets, the other does not: {why}"
                        )))
                    } else {
                        Poll::NotYet(why.clone())
                    }
                }
                (Err(why), Err(_)) => Poll::NotYet(why.clone()),
            }
        })
    }

    /// The pid the master wrote is the one the watchdog guards (`setsid`
    /// did not fork).
    fn check_master_pid(&self) -> Result<(), String> {
        let written = fs::read_to_string(self.dir().join("config/master.pid")).unwrap_or_default();
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

    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The instance directory (configs, `config/`, `spool/`, `sasldb`).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The `servername` (in both greetings; also every user's SASL realm).
    pub fn servername(&self) -> &str {
        &self.servername
    }

    /// The master's pid.
    pub fn master_pid(&self) -> Option<u32> {
        self.instance.pids().first().copied()
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
        let name = format!("{}-{n}", common::sanitize_hint(hint, '-'));
        let password = common::fresh_password(n);
        let sasldb = self.dir().join("sasldb");
        let _guard = self.sasldb_lock.lock().expect("sasldb lock poisoned");
        common::run_with_input(
            Command::new(&binaries.saslpasswd2)
                .args(["-c", "-p", "-f"])
                .arg(&sasldb)
                .args(["-u", &self.servername, &name]),
            password.as_bytes(),
            &format!("saslpasswd2 for {name}"),
            INSTALL_HINT,
        );
        maildir::chown(&sasldb, self.owner);
        fs::set_permissions(&sasldb, fs::Permissions::from_mode(0o600)).expect("chmod sasldb");
        User { name, password }
    }

    /// Stops Cyrus and removes the instance directory. Idempotent; also
    /// done on drop.
    pub fn stop(&self) {
        self.instance.stop();
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
}

impl ImapServer for Cyrus {
    fn name(&self) -> &'static str {
        "cyrus"
    }

    fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// A user made as [`Cyrus::user`]; `store` is the default (mailboxes
    /// in altnamespace: `Archive`, `Archive/2024`).
    fn imap_user(&self, hint: &str) -> User {
        self.user(hint)
    }
}

/// The binaries, or a panic naming the missing one and the install script.
fn binaries() -> Binaries {
    let root = common::servers_root();
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
fn cyrus_owner() -> MailOwner {
    common::system_user("cyrus")
        .unwrap_or_else(|| panic!("cyrus not installed: no system user `cyrus`; {INSTALL_HINT}"))
}
