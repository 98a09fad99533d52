//! A private Dovecot (POP3 + IMAP, plain and TLS) on 127.0.0.1 for one test run, with users and mail made on demand.
//!
//! Facts this relies on are in `/work/shared/notes/dovecot-on-loopback.md`.
//! Users live in one passwd-file PER USER (`users/%u`): Dovecot 2.3 re-reads
//! a passwd-file at most once per second (`passwd_file_sync` skips the
//! `stat` when it already synced in the current second), so a user appended
//! to one shared file may be "unknown" for up to a second; a file nobody
//! has looked up yet is always read fresh.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::certs::TestCa;
use super::config::render_config;
use super::maildir::{self, MailOwner};
use super::probe;
use super::servers::common::{self, Instance, Poll, StartError};
use super::watchdog::Watchdog;

/// The unprivileged system user that owns all mail.
const MAIL_USER: &str = "vmail";
/// How long an instance may take to greet on all ports and log a user in.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers instances (and users) uniquely within this process.
static INSTANCE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Login credentials of a user made by [`Dovecot::user`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

/// The four listeners of an instance, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// POP3, plain, offers STLS.
    pub pop3: u16,
    /// POP3 over implicit TLS.
    pub pop3s: u16,
    /// IMAP, plain, offers STARTTLS.
    pub imap: u16,
    /// IMAP over implicit TLS.
    pub imaps: u16,
}

/// Knobs for [`Dovecot::start_with`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Keep Dovecot's fsync calls (`mail_fsync = optimized`). Off by
    /// default: test mail need not survive a power loss, and fsync slows APPEND.
    pub fsync: bool,
    /// Appended verbatim to `dovecot.conf` (e.g. an oauth2 passdb);
    /// `@DIR@` is replaced by the instance directory.
    pub extra_config: String,
}

/// A running private Dovecot. Stopped (and its directory removed) on drop,
/// and by its watchdog when the test process dies.
pub struct Dovecot {
    /// The directory and the master's watchdog.
    instance: Instance,
    ports: Ports,
    ca: TestCa,
    owner: MailOwner,
    next_user: AtomicU64,
    next_file: AtomicU64,
    /// The fixed leading seconds of every loaded file name (see maildir.rs).
    load_secs: u64,
}

/// One instance per test binary, started on first use, for tests that only
/// need their own users. Never dropped: the watchdog stops it when the test
/// process exits.
pub fn shared() -> &'static Dovecot {
    static SHARED: OnceLock<Dovecot> = OnceLock::new();
    SHARED.get_or_init(Dovecot::start)
}

impl Dovecot {
    /// Starts a fresh instance with default [`Options`]; panics (with the
    /// log tail) if it is not ready within 10 s.
    pub fn start() -> Dovecot {
        Dovecot::start_with(Options::default())
    }

    /// Starts a fresh instance; retries on fresh ports if one was taken.
    pub fn start_with(options: Options) -> Dovecot {
        let binary = dovecot_binary();
        let owner = mail_owner();
        common::start_with_retries("dovecot", || Dovecot::try_start(&binary, owner, &options))
    }

    fn try_start(
        binary: &Path,
        owner: MailOwner,
        options: &Options,
    ) -> Result<Dovecot, StartError> {
        let seq = INSTANCE_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = common::instance_dir("dovecot");
        let ca = TestCa::new(&format!("dovecot-{}-{seq}", std::process::id()));
        let ports = pick_ports();
        write_tls_files(&dir, &ca);
        make_layout(&dir, owner);
        let config = render_config(&dir, ports, owner, seq, options);
        let config_path = dir.join("dovecot.conf");
        fs::write(&config_path, config).expect("write dovecot.conf");
        let watchdog = Watchdog::start(binary, &config_path, &dir, &dir.join("dovecot.stderr"));
        let instance = Instance::new(dir);
        instance.guard(watchdog);
        let dovecot = Dovecot {
            instance,
            ports,
            ca,
            owner,
            next_user: AtomicU64::new(0),
            next_file: AtomicU64::new(0),
            load_secs: unix_now(),
        };
        let ready = dovecot.wait_ready();
        // Dropping stops the watchdog and removes the directory.
        common::started_or_stopped(dovecot, ready, |dovecot, why| {
            format!(
                "{why}\n--- dovecot log (tail) ---\n{}",
                dovecot.log_tail(40)
            )
        })
    }

    /// Waits until every port greets and a probe user can log in.
    fn wait_ready(&self) -> Result<(), String> {
        let probe_user = self.user("probe");
        common::wait_ready(READY_TIMEOUT, Duration::from_millis(50), |_| {
            if !self.instance.alive() {
                return Poll::Failed("dovecot exited during start-up".into());
            }
            match self.probe_once(&probe_user) {
                Ok(()) => Poll::Ready,
                Err(why) => Poll::NotYet(why),
            }
        })
    }

    fn probe_once(&self, user: &User) -> Result<(), String> {
        let expect = |what: &str, line: String, prefix: &str| {
            if line.starts_with(prefix) {
                Ok(())
            } else {
                Err(format!("{what} greeted {line:?}"))
            }
        };
        let p = self.ports;
        expect("pop3", probe::greeting_plain(p.pop3)?, "+OK")?;
        expect("imap", probe::greeting_plain(p.imap)?, "* OK")?;
        let tls = self.client_config();
        expect("pop3s", probe::greeting_tls(p.pop3s, tls.clone())?, "+OK")?;
        expect("imaps", probe::greeting_tls(p.imaps, tls)?, "* OK")?;
        probe::imap_login(p.imap, &user.name, &user.password)
    }

    /// All four ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    pub fn pop3_port(&self) -> u16 {
        self.ports.pop3
    }

    pub fn pop3s_port(&self) -> u16 {
        self.ports.pop3s
    }

    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }

    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }

    /// PEM file of the CA that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The test CA itself (to issue more certificates).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A rustls client config (ring) trusting only this instance's CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.ca.client_config()
    }

    /// The instance directory (config, log, mail).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    /// The config file, for `doveadm -c`.
    pub fn config_file(&self) -> PathBuf {
        self.dir().join("dovecot.conf")
    }

    /// The Dovecot master's pid (also in `run/master.pid`).
    pub fn master_pid(&self) -> Option<u32> {
        self.instance.pids().first().copied()
    }

    /// A new user nobody else has, named `<hint>-<n>` (lower-cased, other
    /// characters than `[a-z0-9_-]` replaced by `_`: Dovecot lower-cases
    /// login names by default), with a fresh password. Usable at once.
    pub fn user(&self, name_hint: &str) -> User {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}", common::sanitize_hint(name_hint, '_'));
        let password = common::fresh_password(n);
        self.add_user(&name, &password)
    }

    /// Adds a user with exactly this name and password (name: lower-case
    /// `[a-z0-9._@-]`; password: no `:` or line break). Usable at once.
    pub fn add_user(&self, name: &str, password: &str) -> User {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@-".contains(&b));
        assert!(name_ok, "user name {name:?} is not lower-case [a-z0-9._@-]");
        assert!(
            !password.contains([':', '\n', '\r']),
            "password {password:?} would break the passwd-file line"
        );
        let path = self.dir().join("users").join(name);
        assert!(!path.exists(), "user {name} already exists");
        // Written whole, then renamed: auth never reads half a line.
        let tmp = self.dir().join("users").join(format!(".{name}.tmp"));
        fs::write(&tmp, format!("{name}:{{PLAIN}}{password}::::::\n"))
            .expect("write a passwd-file");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
            .expect("make the passwd-file readable by dovecot's auth user");
        fs::rename(&tmp, &path).expect("move the passwd-file into place");
        User {
            name: name.to_string(),
            password: password.to_string(),
        }
    }

    /// Writes `messages` (stored byte for byte; LF line ends are fine, POP3
    /// and IMAP serve them as CRLF) into `user`'s `mailbox`, in slice order =
    /// UID order = POP3 order. Creates the maildir (or the Maildir++
    /// `.Name` folder) if needed. Dovecot sees them at the next session or
    /// NOOP.
    pub fn load(&self, user: &User, mailbox: &str, messages: &[Vec<u8>]) {
        let root = self.maildir_root(user);
        let dir = maildir::mailbox_dir(&root, mailbox);
        maildir::create(&root, &dir, self.owner);
        for message in messages {
            let seq = self.next_file.fetch_add(1, Ordering::Relaxed);
            maildir::deliver(&dir, self.load_secs, seq, message, self.owner);
        }
    }

    /// The messages of `user`'s `mailbox` as stored on disk, in UID order
    /// (empty if the mailbox does not exist). Loaded messages come back as
    /// loaded; APPENDed ones with CRLF line ends (`mail_save_crlf = yes`:
    /// exactly the bytes sent, bare LFs turned into CRLF).
    pub fn messages(&self, user: &User, mailbox: &str) -> Vec<Vec<u8>> {
        let dir = maildir::mailbox_dir(&self.maildir_root(user), mailbox);
        maildir::read_in_uid_order(&dir)
    }

    /// What POP3 `RETR` (before dot-stuffing) and IMAP `BODY[]` serve for
    /// a stored message: every bare LF as CRLF. (POP3 also adds a final
    /// CRLF to a message that lacks one.)
    pub fn as_served(message: &[u8]) -> Vec<u8> {
        maildir::as_served(message)
    }

    /// How many messages `user`'s `mailbox` holds on disk.
    pub fn count(&self, user: &User, mailbox: &str) -> usize {
        self.messages(user, mailbox).len()
    }

    /// The Maildir root (= INBOX) of a user.
    pub fn maildir_root(&self, user: &User) -> PathBuf {
        self.dir().join("mail").join(&user.name)
    }

    /// The whole Dovecot log (plus anything it printed to stderr before its
    /// log was set up), for assertion messages.
    pub fn log(&self) -> String {
        let log = fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir().join("dovecot.stderr")).unwrap_or_default();
        if stderr.is_empty() {
            log
        } else {
            format!("{stderr}{log}")
        }
    }

    /// The last `lines` lines of [`Dovecot::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        common::tail(&self.log(), lines)
    }

    /// Stops Dovecot and removes the instance directory. Idempotent; also
    /// done on drop.
    pub fn stop(&self) {
        self.instance.stop();
    }
}

/// The dovecot binary, or a panic telling how to get it: a missing server
/// is a failure, never a skip.
fn dovecot_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/local/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join("dovecot");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("dovecot not installed: run scripts/test");
}

/// uid/gid of [`MAIL_USER`], created if missing. Several test binaries may
/// race here: `useradd` locks /etc/passwd, so a loser fails ("already
/// exists" or "cannot lock") and simply finds the winner's user next round.
fn mail_owner() -> MailOwner {
    static OWNER: OnceLock<MailOwner> = OnceLock::new();
    *OWNER.get_or_init(|| {
        for _ in 0..50 {
            if let Some(owner) = common::system_user(MAIL_USER) {
                return owner;
            }
            let _ = std::process::Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home"])
                .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
                .arg(MAIL_USER)
                .stderr(std::process::Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no system user {MAIL_USER:?} and useradd failed (tests need root to run Dovecot)");
    })
}

/// Four distinct free ports, released for Dovecot to take.
fn pick_ports() -> Ports {
    let ports = common::free_ports(4);
    Ports {
        pop3: ports[0],
        pop3s: ports[1],
        imap: ports[2],
        imaps: ports[3],
    }
}

fn write_tls_files(dir: &Path, ca: &TestCa) {
    let leaf = ca.localhost_cert();
    fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("write ca.pem");
    fs::write(dir.join("server.pem"), &leaf.cert_pem).expect("write server.pem");
    let key = dir.join("server.key");
    fs::write(&key, &leaf.key_pem).expect("write server.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod server.key");
}

/// run/ and state/ for the master (root); mail/ and home/ writable by the
/// mail user; users/ readable by dovecot's auth process.
fn make_layout(dir: &Path, owner: MailOwner) {
    for sub in ["run", "state", "users", "mail", "home"] {
        let path = dir.join(sub);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
    }
    maildir::chown(&dir.join("mail"), owner);
    maildir::chown(&dir.join("home"), owner);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
