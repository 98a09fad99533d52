//! A private GNU Mailutils 3.15 (pop3d and imap4d) on 127.0.0.1 for one test run, with virtual-domain users and mbox INBOXes.
//!
//! Installed by `scripts/servers/install-cyrus-mailutils` (`mailutils-pop3d`
//! and `mailutils-imap4d` install normally beside Dovecot). Facts from
//! `/work/shared/notes/other-servers.md`, plus what this module found:
//!
//! **How it runs.** `pop3d` and `imap4d` are two processes, each
//! `--config-file=DIR/<name>.conf --daemon --foreground` (the option implies
//! `--no-config`), each under its own watchdog (`support::watchdog`, through
//! a one-line `exec setsid` wrapper that ignores the watchdog's Dovecot
//! arguments and gives each daemon a session of its own). Two config files, not one: a `program pop3d { ... }` block is
//! ignored outside the site-wide file ("not located in top-level
//! configuration file"). `logging { syslog no; }` sends their log to stderr
//! (the `pop3d.stderr` / `imap4d.stderr` files). A port already taken is
//! not fatal: the daemon logs `Address already in use`, says "started" and
//! listens nowhere; the readiness probe looks for that line and starts
//! again on fresh ports. Start-up with a probe login on both ports takes
//! about 0.1 s.
//!
//! **Users.** One virtual domain, [`DOMAIN`]: `DIR/domains/<domain>` holds
//! passwd-style lines `user:<sha512-crypt>:0:0:x:HOME:/bin/false`
//! (rewritten whole and renamed into place for each new user). The login
//! name, and so [`User::name`], is `user@domain`; the mailbox is the mbox
//! file `HOME/INBOX`, made empty with the user (APPEND to a missing INBOX is
//! `NO [TRYCREATE]`). Other folders are mbox files beside it in HOME, `/`
//! the separator. Mail belongs to uid 0: the daemons run as root.
//!
//! **Mail as seen here.**
//! - [`Pop3Server::load`] writes the mbox itself, as a local delivery agent
//!   would: a `From MAILER-DAEMON ...` envelope line, the message with LF
//!   line ends, every line matching `>*From ` given one more `>` (mboxrd:
//!   Mailutils removes exactly one `>` when serving), a final newline if
//!   missing, and an empty line. Served back byte for byte apart from the
//!   headers below.
//! - pop3d **adds headers**, at the end of the header block. A first
//!   session that does not send `UIDL` serves the messages as loaded, byte
//!   for byte; its `QUIT` (even with nothing deleted) rewrites the mbox,
//!   adding `X-IMAPbase: <uidvalidity> <uidnext>` (first message only,
//!   padded with spaces), `X-UID: <n>` and `Status: OR` (for messages
//!   RETRieved in that session), and every later session serves them. After `UIDL` (UIDs
//!   `<md5 hex>.<uidvalidity>.<n>`) the session also serves `X-UIDL:
//!   <uidl>` as the last added line; its QUIT writes it into the file as
//!   the first added line, where later sessions serve it. A message's own
//!   `X-UIDL` header is taken as its UIDL (copies share one), and its own
//!   `Status` is served.
//! - imap4d APPEND stores LF line ends and **adds** `X-IMAPbase` (first
//!   message) and `X-UID` to the header, and `BODY[]` serves them; it strips
//!   `Status:`/`X-UID:` that the message had (turning Status into flags;
//!   notes).
//!   It **refuses a message without a `From:` header** with the misleading
//!   `NO APPEND [TRYCREATE] failed` (it needs an envelope sender).
//! - 8-bit header bytes, base64 parts, dots: kept.
//! - imap4d CAPABILITY: `IMAP4rev1 NAMESPACE ID IDLE LITERAL+ UNSELECT`
//!   and many AUTH=; no UIDPLUS (APPEND answers a bare `OK`). Greeting
//!   `* OK IMAP4rev1`; pop3d's names the host.
//! - **An mbox INBOX that was empty at SELECT keeps only one of the
//!   messages APPENDed while selected** (notes): [`ImapServer::store`]
//!   never SELECTs before it APPENDs, and [`ImapServer::messages`] uses
//!   EXAMINE.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::super::watchdog::Watchdog;
use super::common::{self, Instance, Poll, StartError, ADDRESS_IN_USE};
use super::readers::{Imap, Pop3};
use super::{ImapServer, Pop3Server, User};

/// The virtual domain of every user: logins are `<user>@mailferry.test`.
pub const DOMAIN: &str = "mailferry.test";
const POP3D: &str = "/usr/sbin/pop3d";
const IMAP4D: &str = "/usr/sbin/imap4d";
const OPENSSL: &str = "/usr/bin/openssl";
/// The envelope line of every loaded message.
const ENVELOPE: &[u8] = b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n";
/// How long an instance may take to greet on both ports and log a user in.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const INSTALL_HINT: &str = "run scripts/servers/install-cyrus-mailutils as root";

static INSTANCE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A running private pop3d + imap4d pair. Stopped (and its directory
/// removed) on drop, and by the watchdogs when the test process dies.
pub struct Mailutils {
    /// The directory and the watchdogs of pop3d and imap4d, in that order.
    instance: Instance,
    pop3_port: u16,
    imap_port: u16,
    next_user: AtomicU64,
    /// The domain file's lines, rewritten whole per user.
    passwd: Mutex<Vec<String>>,
}

/// One instance per test binary, started on first use. Never dropped: the
/// watchdogs stop it when the test process exits.
pub fn shared() -> &'static Mailutils {
    static SHARED: OnceLock<Mailutils> = OnceLock::new();
    SHARED.get_or_init(Mailutils::start)
}

impl Mailutils {
    /// Starts a fresh instance; retries on fresh ports if one was taken;
    /// panics (naming what is missing or why it failed) otherwise.
    pub fn start() -> Mailutils {
        for binary in [POP3D, IMAP4D, OPENSSL] {
            assert!(
                Path::new(binary).is_file(),
                "mailutils not installed: {binary} is missing; {INSTALL_HINT}"
            );
        }
        common::start_with_retries("mailutils", Mailutils::try_start)
    }

    fn try_start() -> Result<Mailutils, StartError> {
        let seq = INSTANCE_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = common::instance_dir(&format!("mailutils-{seq}"));
        let ports = common::free_ports(2);
        let (pop3_port, imap_port) = (ports[0], ports[1]);
        for sub in ["domains", "home"] {
            fs::create_dir(dir.join(sub)).unwrap_or_else(|e| panic!("create {sub}/: {e}"));
        }
        fs::write(dir.join("domains").join(DOMAIN), "").expect("write the domain file");
        let d = dir.display();
        let instance = Instance::new(dir.clone());
        for (name, binary, port) in [("pop3d", POP3D, pop3_port), ("imap4d", IMAP4D, imap_port)] {
            let config = dir.join(format!("{name}.conf"));
            fs::write(
                &config,
                format!(
                    "logging {{ syslog no; }}\n\
                     auth {{ authentication generic; authorization virtdomain; }}\n\
                     virtdomain {{ passwd-dir \"{d}/domains\"; }}\n\
                     tcp-wrappers {{ enable no; }}\n\
                     pidfile \"{d}/{name}.pid\";\n\
                     server 127.0.0.1:{port} {{ transcript no; }}\n"
                ),
            )
            .unwrap_or_else(|e| panic!("write {name}.conf: {e}"));
            // `setsid`: a session of its own (as for Cyrus, whose master
            // signals its whole process group at shutdown), so no group
            // signal passes between the daemons and the test process. It
            // does not fork here; `wait_ready` compares the pidfiles.
            let wrapper = dir.join(format!("run-{name}"));
            fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec setsid {binary} --config-file={} --daemon --foreground\n",
                    config.display()
                ),
            )
            .unwrap_or_else(|e| panic!("write run-{name}: {e}"));
            fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod run-{name}: {e}"));
            let stderr = dir.join(format!("{name}.stderr"));
            instance.guard(Watchdog::start(&wrapper, &config, &dir, &stderr));
        }
        let mailutils = Mailutils {
            instance,
            pop3_port,
            imap_port,
            next_user: AtomicU64::new(0),
            passwd: Mutex::new(Vec::new()),
        };
        let ready = mailutils.wait_ready();
        common::started_or_stopped(mailutils, ready, |mailutils, why| {
            format!("{why}\n--- mailutils log ---\n{}", mailutils.log())
        })
    }

    /// Waits until both ports greet and a probe user can log in over both.
    fn wait_ready(&self) -> Result<(), String> {
        common::wait_ready(READY_TIMEOUT, Duration::from_millis(20), |last| {
            if !self.instance.alive() {
                return Poll::Failed(format!(
                    "a daemon exited during start-up (last probe: {last})"
                ));
            }
            if self.log().contains(ADDRESS_IN_USE) {
                return Poll::Failed("a port was taken".into());
            }
            let greeted = Imap::connect(self.imap_port)
                .map(|_| ())
                .and_then(|()| Pop3::connect(self.pop3_port).map(|_| ()));
            match greeted.and_then(|()| self.check_pids()) {
                // A pidfile not written yet (or wrong: reported at the deadline).
                Err(why) => Poll::NotYet(why),
                Ok(()) => {
                    let probe = self.user("probe");
                    let login = Imap::login(self.imap_port, &probe.name, &probe.password)
                        .and_then(Imap::logout)
                        .and_then(|()| Pop3::login(self.pop3_port, &probe.name, &probe.password))
                        .and_then(Pop3::quit);
                    match login {
                        Ok(()) => Poll::Ready,
                        Err(why) => Poll::Failed(format!("probe user could not log in: {why}")),
                    }
                }
            }
        })
    }

    /// The pids the daemons wrote are the ones the watchdogs guard.
    fn check_pids(&self) -> Result<(), String> {
        let written: Vec<Option<u32>> = ["pop3d", "imap4d"]
            .iter()
            .map(|name| {
                fs::read_to_string(self.dir().join(format!("{name}.pid")))
                    .ok()
                    .and_then(|pid| pid.trim().parse().ok())
            })
            .collect();
        let guarded: Vec<Option<u32>> = self.pids().into_iter().map(Some).collect();
        if written == guarded {
            Ok(())
        } else {
            Err(format!(
                "pidfiles say {written:?}, the watchdogs guard {guarded:?}"
            ))
        }
    }

    /// The pids of pop3d and imap4d (empty once stopped).
    pub fn pids(&self) -> Vec<u32> {
        self.instance.pids()
    }

    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The instance directory (configs, `domains/`, `home/`, logs).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// Both daemons' stderr (their log: `syslog no`).
    pub fn log(&self) -> String {
        ["pop3d", "imap4d"]
            .iter()
            .map(|name| {
                let text = fs::read_to_string(self.dir().join(format!("{name}.stderr")))
                    .unwrap_or_default();
                format!("[{name}]\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A new user `<hint>-<n>@mailferry.test` (local part lower-case
    /// `[a-z0-9-]`) with a fresh password and an empty mbox INBOX. Usable
    /// at once (the domain file is read at every login).
    pub fn user(&self, hint: &str) -> User {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let local = format!("{}-{n}", common::sanitize_hint(hint, '-'));
        let password = common::fresh_password(n);
        let home = self.home(&local);
        fs::create_dir(&home).unwrap_or_else(|e| panic!("create {home:?}: {e}"));
        let inbox = home.join("INBOX");
        fs::write(&inbox, "").unwrap_or_else(|e| panic!("create {inbox:?}: {e}"));
        fs::set_permissions(&inbox, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {inbox:?}: {e}"));
        let line = format!(
            "{local}:{}:0:0:x:{}:/bin/false",
            common::sha512_crypt(OPENSSL, &password, None, INSTALL_HINT),
            home.display()
        );
        let mut lines = self.passwd.lock().expect("passwd lock poisoned");
        lines.push(line);
        let domains = self.dir().join("domains");
        let tmp = domains.join(format!(".{DOMAIN}.tmp"));
        fs::write(&tmp, lines.join("\n") + "\n").expect("write the domain file");
        fs::rename(&tmp, domains.join(DOMAIN)).expect("move the domain file into place");
        User {
            name: format!("{local}@{DOMAIN}"),
            password,
        }
    }

    /// The home directory of a user's local part.
    fn home(&self, local: &str) -> PathBuf {
        self.dir().join("home").join(local)
    }

    /// The mbox file of `user`'s INBOX.
    pub fn inbox_file(&self, user: &User) -> PathBuf {
        let local = user
            .name
            .strip_suffix(&format!("@{DOMAIN}"))
            .unwrap_or_else(|| panic!("{:?} is not a mailutils user (@{DOMAIN})", user.name));
        self.home(local).join("INBOX")
    }

    /// Stops both daemons and removes the instance directory. Idempotent;
    /// also done on drop.
    pub fn stop(&self) {
        self.instance.stop();
    }
}

impl Pop3Server for Mailutils {
    fn name(&self) -> &'static str {
        "mailutils"
    }

    fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    fn pop3_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    /// Appends to the INBOX mbox directly (mboxrd, see the module doc):
    /// call it while no session of this user is open.
    fn load(&self, user: &User, messages: &[Vec<u8>]) {
        let path = self.inbox_file(user);
        let mut mbox = Vec::new();
        for message in messages {
            mbox.extend_from_slice(&mbox_entry(message));
        }
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path:?}: {e}"));
        file.write_all(&mbox)
            .unwrap_or_else(|e| panic!("append to {path:?}: {e}"));
    }
}

impl ImapServer for Mailutils {
    fn name(&self) -> &'static str {
        "mailutils"
    }

    fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// A user made as [`Mailutils::user`]. `store` is the default, which
    /// never SELECTs (see the module doc); imap4d refuses a message without
    /// `From:`.
    fn imap_user(&self, hint: &str) -> User {
        self.user(hint)
    }
}

/// One mbox entry (mboxrd): envelope line, the message with LF line ends
/// and `>*From ` lines quoted once more, a final LF, an empty line.
pub fn mbox_entry(message: &[u8]) -> Vec<u8> {
    let mut out = ENVELOPE.to_vec();
    let mut lines: Vec<&[u8]> = message.split(|&b| b == b'\n').collect();
    if lines.last() == Some(&&b""[..]) {
        lines.pop();
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let unquoted = &line[line.iter().take_while(|&&b| b == b'>').count()..];
        if unquoted.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}
