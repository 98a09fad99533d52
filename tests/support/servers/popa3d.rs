//! A private popa3d 1.0.3 (Openwall's mbox POP3 server, Debian 12's package) on 127.0.0.1 for one test run.
//!
//! # How it runs
//! The package conflicts with dovecot-pop3d, so
//! `scripts/servers/install-courier-popa3d` only unpacks it into
//! `/opt/mailferry-test-servers/popa3d` (`$MAILFERRY_TEST_SERVERS`
//! overrides the root). popa3d is inetd-style (one process per connection
//! on stdin/stdout) with its paths compiled in: PAM (`/etc/pam.d/popa3d`,
//! pam_unix against `/etc/passwd` and `/etc/shadow`), the mailbox
//! `/var/mail/USER`, the chroot `/var/lib/popa3d` and the system user
//! `popa3d` for its unprivileged part. Each instance has a directory under
//! /tmp with a copy of the host's whole `/etc` (plus the package's
//! `pam.d/popa3d`, the user `popa3d`, and every test user with a SHA-512
//! crypt password from `openssl passwd -6`), `mail/` (the maildrops) and
//! `lib/popa3d/` (the empty chroot). Inside `unshare --mount --propagation
//! private --pid --fork` (see `jail.rs`) a bash script bind-mounts `DIR/etc`
//! over `/etc`, `DIR/mail` over `/var/mail` and `DIR/lib` over `/var/lib`,
//! then `exec socat TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr
//! EXEC:popa3d,nofork`: each connection's socat child execs popa3d with
//! the TCP socket as stdin/stdout, as inetd would. A port taken meanwhile
//! (`Address already in use` from socat, which then exits and ends the
//! namespace) means a retry on fresh ports. Ready when the port greets and
//! a probe user logs in; start-up takes ~0.13 s, the copy of /etc included.
//!
//! Test users are system users of the copied `/etc` only (uids from 60100
//! up, skipping any the host has; primary group `mail`); their maildrop is
//! `DIR/mail/<name>`, owned by them, mode 0600.
//!
//! # What popa3d does to mail (observed; `tests/servers_smoke2.rs` asserts it)
//! - The mbox is lossy. [`Pop3Server::load`] writes each message after an
//!   envelope line `From mailferry@localhost Thu Jan  1 00:00:00 1970`,
//!   CRLF turned into LF, every line starting with `From ` quoted as
//!   `>From ` (popa3d splits messages at any `From ` line after an empty
//!   line, whether or not it looks like an envelope), a final LF added if
//!   missing, and an empty line after it. popa3d never unquotes: a body
//!   line `From x` comes back as `>From x`. The envelope line is not served.
//!   A message without an empty line (header only) comes back with one
//!   (an extra CRLF at its end). [`Popa3d::as_served`] computes all this.
//! - UIDLs are not unique: a UIDL is a hash of the message's `Received:`
//!   headers, or, when it has none, of its `Date:` and `Message-ID:`
//!   headers; `From:`, `To:`, `Subject:`, other headers and the body do not
//!   count. Two messages that agree on those share a UIDL (all messages
//!   without any of the three share one).
//! - No CAPA (`-ERR`), so no announced PIPELINING or UTF8; 8-bit bytes,
//!   in the header too, are served as stored.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::common::{self, Instance, Poll, StartError};
use super::jail;
use super::readers;
use super::{Pop3Server, User};

/// How long an instance may take to greet and log a user in.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// First uid (and gid) handed out in the copied /etc.
const FIRST_ID: u32 = 60_100;
/// The envelope line `load` writes before each message.
pub const ENVELOPE: &[u8] = b"From mailferry@localhost Thu Jan  1 00:00:00 1970\n";

/// Files of the unpacked tree the instance needs.
const TREE_FILES: &[&str] = &["usr/sbin/popa3d", "etc/pam.d/popa3d"];

/// Run in the namespace as `bash start.sh DIR TREE PORT`.
const START_SCRIPT: &str = r#"set -u
dir=$1 tree=$2 port=$3
mount --bind "$dir/etc" /etc || exit 1
mount --bind "$dir/mail" /var/mail || exit 1
mount --bind "$dir/lib" /var/lib || exit 1
exec socat TCP-LISTEN:"$port",bind=127.0.0.1,fork,reuseaddr \
  EXEC:"$tree/usr/sbin/popa3d",nofork
"#;

/// One instance per test binary, started on first use. Never dropped: the
/// watchdog stops it when the test process exits.
pub fn shared() -> &'static Popa3d {
    static SHARED: OnceLock<Popa3d> = OnceLock::new();
    SHARED.get_or_init(Popa3d::start)
}

/// A running private popa3d. Stopped, and its directory removed, on drop
/// and by its watchdog.
pub struct Popa3d {
    /// The directory and the namespace's watchdog.
    instance: Instance,
    port: u16,
    mail_gid: u32,
    /// The next uid to try; the lock also serialises edits of the copied
    /// passwd, group and shadow files.
    next_id: Mutex<u32>,
    next_user: AtomicU64,
    started_in: Duration,
}

impl Popa3d {
    /// Starts a fresh instance; retries on a fresh port if it was taken;
    /// panics (with the log tail) if it is not ready in time.
    pub fn start() -> Popa3d {
        let tree = jail::tree("popa3d", TREE_FILES);
        common::start_with_retries("popa3d", || Popa3d::try_start(&tree))
    }

    fn try_start(tree: &Path) -> Result<Popa3d, StartError> {
        let began = Instant::now();
        let dir = common::instance_dir("popa3d");
        jail::copy_etc(&dir);
        fs::copy(tree.join("etc/pam.d/popa3d"), dir.join("etc/pam.d/popa3d"))
            .expect("copy the package's /etc/pam.d/popa3d");
        let mail_gid =
            group_id(&dir.join("etc/group"), "mail").expect("the host has no group \"mail\"");
        // /var/mail as Debian has it: root:mail 2775.
        let mail = dir.join("mail");
        fs::create_dir(&mail).expect("create mail/");
        jail::chown(&mail, 0, mail_gid);
        fs::set_permissions(&mail, fs::Permissions::from_mode(0o2775)).expect("chmod mail/");
        fs::create_dir_all(dir.join("lib/popa3d")).expect("create lib/popa3d");
        let script = dir.join("start.sh");
        fs::write(&script, START_SCRIPT).expect("write start.sh");

        let port = common::free_ports(1)[0];
        let popa3d = Popa3d {
            instance: Instance::new(dir.clone()),
            port,
            mail_gid,
            next_id: Mutex::new(FIRST_ID),
            next_user: AtomicU64::new(0),
            started_in: Duration::ZERO,
        };
        popa3d.add_service_user();
        let probe_user = popa3d.user("probe");
        let args = vec![
            dir.display().to_string(),
            tree.display().to_string(),
            port.to_string(),
        ];
        popa3d
            .instance
            .guard(jail::start(&dir, &script, &args, &popa3d.log_path()));
        let ready = popa3d.wait_ready(&probe_user);
        let started = common::started_or_stopped(popa3d, ready, |popa3d, why| {
            format!("{why}\n--- popa3d log (tail) ---\n{}", popa3d.log_tail(40))
        });
        started.map(|mut popa3d| {
            popa3d.started_in = began.elapsed();
            popa3d
        })
    }

    fn wait_ready(&self, user: &User) -> Result<(), String> {
        common::wait_ready(READY_TIMEOUT, Duration::from_millis(20), |_| {
            if !self.instance.alive() {
                return Poll::Failed("the popa3d namespace exited during start-up".into());
            }
            match readers::Pop3::login(self.port, &user.name, &user.password)
                .and_then(readers::Pop3::quit)
            {
                Ok(()) => Poll::Ready,
                Err(why) => Poll::NotYet(why),
            }
        })
    }

    /// How long [`Popa3d::start`] took for this instance.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The instance directory (copied /etc, mail/, lib/, log).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("popa3d.log")
    }

    /// The last `lines` lines of the log (socat's errors; popa3d itself
    /// logs only to syslog, which is absent here, so a refused login leaves
    /// no trace).
    pub fn log_tail(&self, lines: usize) -> String {
        common::log_tail(&self.log_path(), lines)
    }

    /// The maildrop file of a user (`/var/mail/<name>` in the namespace).
    pub fn mbox(&self, user: &User) -> PathBuf {
        self.dir().join("mail").join(&user.name)
    }

    /// The system user `popa3d` popa3d drops to before authentication.
    fn add_service_user(&self) {
        let mut next = self.next_id.lock().expect("id lock poisoned");
        let id = self.free_id(&mut next);
        self.append_account(
            &format!("popa3d:x:{id}:{id}:popa3d:/nonexistent:/usr/sbin/nologin\n"),
            Some(&format!("popa3d:x:{id}:\n")),
            "popa3d:!:19000::::::\n",
        );
    }

    /// A new user nobody else has, named `<hint>-<n>` (hint cut to 20
    /// characters), with a fresh password and an empty maildrop. Usable at
    /// once.
    pub fn user(&self, hint: &str) -> User {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let hint: String = common::sanitize_hint(hint, '_').chars().take(20).collect();
        let name = format!("{hint}-{n}");
        let password = common::fresh_password(n);
        let hash = crypt_sha512(&password, n);
        let mut next = self.next_id.lock().expect("id lock poisoned");
        let uid = self.free_id(&mut next);
        self.append_account(
            &format!(
                "{name}:x:{uid}:{}:mailferry test user:/nonexistent:/usr/sbin/nologin\n",
                self.mail_gid
            ),
            None,
            &format!("{name}:{hash}:19000:0:99999:7:::\n"),
        );
        drop(next);
        let user = User { name, password };
        let mbox = self.mbox(&user);
        OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&mbox)
            .unwrap_or_else(|e| panic!("create {mbox:?}: {e}"));
        jail::chown(&mbox, uid, self.mail_gid);
        user
    }

    /// The next id at or after `*next` that the copied passwd and group do
    /// not use.
    fn free_id(&self, next: &mut u32) -> u32 {
        let passwd = fs::read_to_string(self.dir().join("etc/passwd")).expect("read etc/passwd");
        let group = fs::read_to_string(self.dir().join("etc/group")).expect("read etc/group");
        let used = |text: &str, id: u32| {
            text.lines()
                .any(|line| line.split(':').nth(2) == Some(id.to_string().as_str()))
        };
        for _ in 0..10_000 {
            let id = *next;
            *next += 1;
            if !used(&passwd, id) && !used(&group, id) {
                return id;
            }
        }
        panic!("no free uid from {FIRST_ID} on in the copied /etc/passwd");
    }

    /// Appends lines to the copied passwd (and group) and shadow, each
    /// file replaced whole by a rename (the namespace sees the directory,
    /// so it sees the new file at once).
    fn append_account(&self, passwd: &str, group: Option<&str>, shadow: &str) {
        let etc = self.dir().join("etc");
        let mut edits = vec![("passwd", passwd, 0o644), ("shadow", shadow, 0o640)];
        if let Some(group) = group {
            edits.push(("group", group, 0o644));
        }
        for (file, line, mode) in edits {
            let path = etc.join(file);
            let mut text = fs::read(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
            if !text.is_empty() && !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            text.extend_from_slice(line.as_bytes());
            jail::write_atomic(&path, &text, mode);
        }
    }

    /// What [`Pop3Server::load`] appends to the mbox for `message`: the
    /// envelope line, the message with CRLF as LF and every `From ` line
    /// quoted as `>From `, a final LF if missing, and an empty line.
    pub fn mbox_entry(message: &[u8]) -> Vec<u8> {
        let mut out = ENVELOPE.to_vec();
        out.extend_from_slice(&quoted_lf_body(message));
        out.push(b'\n');
        out
    }

    /// What `RETR` serves for a message loaded with [`Pop3Server::load`]:
    /// the quoted LF text of [`Popa3d::mbox_entry`] (without the envelope and
    /// the empty line after it) with CRLF line ends, plus one CRLF when the
    /// message has no empty line (header only).
    pub fn as_served(message: &[u8]) -> Vec<u8> {
        let body = quoted_lf_body(message);
        let header_only = !body.starts_with(b"\n") && !body.windows(2).any(|w| w == b"\n\n");
        let mut out = readers::crlf(&body);
        if header_only {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Stops popa3d and removes the instance directory. Idempotent; also
    /// done on drop.
    pub fn stop(&self) {
        self.instance.stop();
    }
}

impl Pop3Server for Popa3d {
    fn name(&self) -> &'static str {
        "popa3d"
    }

    fn pop3_port(&self) -> u16 {
        self.port
    }

    fn pop3_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    /// Appends [`Popa3d::mbox_entry`] of each message to the user's mbox in
    /// one write (popa3d takes appended mail as new mail, even between two
    /// commands of a session).
    fn load(&self, user: &User, messages: &[Vec<u8>]) {
        let mut bytes = Vec::new();
        for message in messages {
            bytes.extend_from_slice(&Popa3d::mbox_entry(message));
        }
        let path = self.mbox(user);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path:?}: {e}"));
        file.write_all(&bytes)
            .unwrap_or_else(|e| panic!("append to {path:?}: {e}"));
    }
}

/// The message with CRLF as LF, every line starting with `From ` quoted
/// with `>`, and a final LF.
fn quoted_lf_body(message: &[u8]) -> Vec<u8> {
    let mut lf = Vec::with_capacity(message.len() + 16);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\r' && message.get(i + 1) == Some(&b'\n') {
            continue;
        }
        lf.push(b);
    }
    let mut out = Vec::with_capacity(lf.len() + 16);
    for line in lf.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// The gid of `name` in a group file.
fn group_id(group: &Path, name: &str) -> Option<u32> {
    fs::read_to_string(group).ok()?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 3 && fields[0] == name {
            fields[2].parse().ok()
        } else {
            None
        }
    })
}

/// A SHA-512 crypt(3) hash (`$6$...`) by `openssl passwd -6`, salted by
/// user number and process, as pam_unix checks it.
fn crypt_sha512(password: &str, n: u64) -> String {
    let salt = format!("mf{n:x}{:x}", std::process::id());
    let salt: String = salt.chars().take(16).collect();
    let install = format!("run {}", jail::INSTALL_SCRIPT);
    common::sha512_crypt("openssl", password, Some(&salt), &install)
}
