//! A private Courier IMAP 5.0 / Courier POP3 (Debian 12's courier-imap, courier-pop, courier-authlib) on 127.0.0.1 for one test run.
//!
//! # How it runs
//! The packages conflict with Dovecot's, so `scripts/servers/install-courier-popa3d`
//! only unpacks them (with libcourier-unicode4, libgamin0 and gamin) into
//! `/opt/mailferry-test-servers/courier` (`$MAILFERRY_TEST_SERVERS`
//! overrides the root). Each instance has a directory under /tmp holding a
//! copy of the host's whole `/etc` (plus `etc/courier/`: the package's
//! `imapd`/`pop3d` settings, an `authdaemonrc` with `authmodulelist="authuserdb"`,
//! and the userdb), a private `run/`, the mail under `mail/`, and the log.
//! Inside `unshare --mount --propagation private --pid --fork` (see
//! `jail.rs`) a bash script bind-mounts `DIR/etc` over `/etc` and `DIR/run`
//! over `/run` (Courier's compiled-in `/etc/courier` and
//! `/run/courier/authdaemon`), points `LD_LIBRARY_PATH`/`LTDL_LIBRARY_PATH`
//! at the unpacked libraries and auth modules, and starts:
//! - `authdaemond` (userdb module only);
//! - gamin's `gam_server --notimeout` as the mail user, with a
//!   `GAM_CLIENT_ID` of its own per instance (without a running gam_server,
//!   libgamin retries for ~1.2 s at every IMAP login: imapd locks the
//!   Maildir through FAM since `IMAP_USELOCKS=1`);
//! - two `couriertcpd -address=127.0.0.1` (IMAP: `imaplogin` + `imapd`;
//!   POP3: `courierpop3login` + `courierpop3d`) with the environment of
//!   Debian's `/etc/courier/imapd` and `/etc/courier/pop3d`, except: no
//!   STARTTLS/STLS (plain text only) and `-maxprocs=100 -maxperip=100`
//!   (Debian allows 4 POP3 connections per IP, too few for parallel tests).
//!
//! If any of these exits, the script exits and the namespace dies with it;
//! a port taken meanwhile (`bind: Address already in use` in the log) means
//! a retry on fresh ports. Ready when both ports greet and a probe user
//! logs in on both. Start-up takes ~0.15 s, the copy of /etc included.
//!
//! Users are virtual (userdb): all mail belongs to the system user `mail`;
//! `etc/courier/userdb.dat` and `userdbshadow.dat` are rebuilt with the
//! package's `makedatprog` at every new user (authuserdb notices a new file
//! at once), passwords as `{SHA256}` + base64. A user's INBOX is the
//! Maildir `mail/<name>/Maildir`.
//!
//! # What Courier does to mail (observed; `tests/servers_smoke2.rs` asserts it)
//! - It stores LF line ends: [`Pop3Server::load`] writes LF files (CRLF in
//!   the input is turned into LF; a CRLF file would be served as CR CR LF).
//!   POP3 `RETR` and IMAP `BODY[]` serve every LF as CRLF.
//! - POP3 without the `UTF8` command (RFC 6856; CAPA lists `UTF8 USER`):
//!   a message with raw 8-bit bytes in its header is not served as stored
//!   but wrapped in a new MIME message Courier generates ("Cannot display
//!   Unicode content", the original attached as `message/global`, a fresh
//!   boundary every session). After `UTF8` it is served byte-exact. A
//!   message with 8-bit bytes only in its body, and every 7-bit message,
//!   is served unchanged. [`Pop3Server::maildrop`] does not send `UTF8`
//!   (mailferry does not), so it returns the wrapper.
//! - POP3 UIDLs are `UID<n>-<uidvalidity>`: unique, and stable as long as
//!   Courier keeps its `courierpop3dsizelist` (all change if it is rebuilt).
//! - IMAP names folders `INBOX.<name>` (a `CREATE Other` is refused as an
//!   invalid name): [`ImapServer::store`] and [`ImapServer::messages`] map
//!   any other name than `INBOX` or `INBOX.*` to `INBOX.<name>`.
//! - IMAP APPEND stores what it is sent (CRLF becomes LF on disk) and
//!   `BODY[]` gives back the same bytes, 8-bit headers included.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::super::maildir::{self, MailOwner};
use super::super::probe;
use super::common::{self, Instance, Poll, StartError};
use super::jail;
use super::readers;
use super::{ImapServer, Pop3Server, User};

/// How long an instance may take to greet on both ports and log a user in.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The system user that owns all mail (Debian's `mail`, uid 8).
const MAIL_USER: &str = "mail";

/// Files of the unpacked tree the instance needs.
const TREE_FILES: &[&str] = &[
    "usr/sbin/couriertcpd",
    "usr/bin/imapd",
    "usr/lib/courier/courier/imaplogin",
    "usr/lib/courier/courier/courierpop3login",
    "usr/lib/courier/courier/courierpop3d",
    "usr/lib/courier/courier-authlib/authdaemond",
    "usr/lib/courier/courier-authlib/makedatprog",
    "usr/lib/courier-authlib/libauthuserdb.so.0",
    "usr/libexec/gam_server",
    "etc/courier/imapd",
    "etc/courier/pop3d",
];

/// Run in the namespace as `bash start.sh DIR TREE IMAP_PORT POP3_PORT
/// GAM_ID MAIL_UID MAIL_GID`; the namespace ends when this script does.
const START_SCRIPT: &str = r#"set -u
dir=$1 tree=$2 imap_port=$3 pop3_port=$4 gam_id=$5 mail_uid=$6 mail_gid=$7
mount --bind "$dir/etc" /etc || exit 1
mount --bind "$dir/run" /run || exit 1
export LD_LIBRARY_PATH="$tree/usr/lib:$tree/usr/lib/x86_64-linux-gnu"
export LTDL_LIBRARY_PATH="$tree/usr/lib/courier-authlib"
export GAMIN_DEBUG_SERVER="$tree/usr/libexec/gam_server" GAM_CLIENT_ID="$gam_id"
lib="$tree/usr/lib/courier"
"$lib/courier-authlib/authdaemond" &
setpriv --reuid="$mail_uid" --regid="$mail_gid" --clear-groups \
  "$GAMIN_DEBUG_SERVER" --notimeout "$gam_id" &
(
  set -a
  . /etc/courier/imapd
  IMAP_STARTTLS=NO
  set +a
  ulimit -v "$IMAP_ULIMITD"
  umask "$IMAP_UMASK"
  exec "$tree/usr/sbin/couriertcpd" -address=127.0.0.1 -maxprocs=100 -maxperip=100 \
    $TCPDOPTS "$imap_port" "$lib/courier/imaplogin" "$tree/usr/bin/imapd" "$MAILDIRPATH"
) &
(
  set -a
  . /etc/courier/pop3d
  POP3_STARTTLS=NO
  set +a
  exec "$tree/usr/sbin/couriertcpd" -address=127.0.0.1 -maxprocs=100 -maxperip=100 \
    $TCPDOPTS "$pop3_port" "$lib/courier/courierpop3login" "$lib/courier/courierpop3d" \
    "$MAILDIRPATH"
) &
wait -n
echo "courier: a server process exited; stopping the namespace" >&2
exit 1
"#;

/// authdaemond's settings (it reads `/etc/courier/authdaemonrc` itself).
/// `DEBUG_LOGIN=1` logs why a login failed, without passwords.
const AUTHDAEMONRC: &str = r#"authmodulelist="authuserdb"
authmodulelistorig="authuserdb"
daemons=2
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=1
DEFAULTOPTIONS=""
LOGGEROPTS=""
"#;

/// Numbers instances within this process.
static INSTANCE_SEQ: AtomicU64 = AtomicU64::new(0);

/// One instance per test binary, started on first use. Never dropped: the
/// watchdog stops it when the test process exits.
pub fn shared() -> &'static Courier {
    static SHARED: OnceLock<Courier> = OnceLock::new();
    SHARED.get_or_init(Courier::start)
}

/// A running private Courier (IMAP and POP3 on one userdb). Stopped, and
/// its directory removed, on drop and by its watchdog.
pub struct Courier {
    /// The directory and the namespace's watchdog.
    instance: Instance,
    tree: PathBuf,
    imap_port: u16,
    pop3_port: u16,
    owner: MailOwner,
    /// (name, userdb password field) of every user, in creation order; the
    /// lock also serialises rebuilding the userdb files.
    users: Mutex<Vec<(String, String)>>,
    next_user: AtomicU64,
    next_file: AtomicU64,
    /// The fixed leading seconds of every loaded file name.
    load_secs: u64,
    started_in: Duration,
}

impl Courier {
    /// Starts a fresh instance; retries on fresh ports if one was taken;
    /// panics (with the log tail) if it is not ready in time.
    pub fn start() -> Courier {
        let tree = jail::tree("courier", TREE_FILES);
        let owner = common::system_user(MAIL_USER)
            .unwrap_or_else(|| panic!("no system user {MAIL_USER:?} in /etc/passwd"));
        common::start_with_retries("courier", || Courier::try_start(&tree, owner))
    }

    fn try_start(tree: &Path, owner: MailOwner) -> Result<Courier, StartError> {
        let began = Instant::now();
        let seq = INSTANCE_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = common::instance_dir("courier");
        jail::copy_etc(&dir);
        let etc_courier = dir.join("etc/courier");
        fs::create_dir_all(&etc_courier).expect("create etc/courier");
        for name in ["imapd", "pop3d"] {
            fs::copy(tree.join("etc/courier").join(name), etc_courier.join(name))
                .unwrap_or_else(|e| panic!("copy the package's /etc/courier/{name}: {e}"));
        }
        fs::write(etc_courier.join("authdaemonrc"), AUTHDAEMONRC).expect("write authdaemonrc");
        fs::create_dir_all(dir.join("run/courier/authdaemon")).expect("create run/courier");
        let mail = dir.join("mail");
        fs::create_dir(&mail).expect("create mail/");
        fs::set_permissions(&mail, fs::Permissions::from_mode(0o755)).expect("chmod mail/");
        maildir::chown(&mail, owner);
        let script = dir.join("start.sh");
        fs::write(&script, START_SCRIPT).expect("write start.sh");

        let ports = common::free_ports(2);
        let courier = Courier {
            instance: Instance::new(dir.clone()),
            tree: tree.to_path_buf(),
            imap_port: ports[0],
            pop3_port: ports[1],
            owner,
            users: Mutex::new(Vec::new()),
            next_user: AtomicU64::new(0),
            next_file: AtomicU64::new(0),
            load_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            started_in: Duration::ZERO,
        };
        // The probe user exists before the daemons start.
        let probe_user = courier.add_user("probe");
        let args = vec![
            dir.display().to_string(),
            tree.display().to_string(),
            ports[0].to_string(),
            ports[1].to_string(),
            format!("mailferry-{}-{seq}", std::process::id()),
            owner.uid.to_string(),
            owner.gid.to_string(),
        ];
        courier
            .instance
            .guard(jail::start(&dir, &script, &args, &courier.log_path()));
        let ready = courier.wait_ready(&probe_user);
        let started = common::started_or_stopped(courier, ready, |courier, why| {
            format!(
                "{why}\n--- courier log (tail) ---\n{}",
                courier.log_tail(40)
            )
        });
        started.map(|mut courier| {
            courier.started_in = began.elapsed();
            courier
        })
    }

    fn wait_ready(&self, user: &User) -> Result<(), String> {
        common::wait_ready(READY_TIMEOUT, Duration::from_millis(20), |_| {
            if !self.instance.alive() {
                return Poll::Failed("the courier namespace exited during start-up".into());
            }
            match self.probe_once(user) {
                Ok(()) => Poll::Ready,
                Err(why) => Poll::NotYet(why),
            }
        })
    }

    fn probe_once(&self, user: &User) -> Result<(), String> {
        let imap = probe::greeting_plain(self.imap_port)?;
        if !imap.starts_with("* OK") {
            return Err(format!("imap greeted {imap:?}"));
        }
        let pop3 = probe::greeting_plain(self.pop3_port)?;
        if !pop3.starts_with("+OK") {
            return Err(format!("pop3 greeted {pop3:?}"));
        }
        probe::imap_login(self.imap_port, &user.name, &user.password)?;
        readers::Pop3::login(self.pop3_port, &user.name, &user.password)?.quit()
    }

    /// How long [`Courier::start`] took for this instance (copy of /etc,
    /// start, readiness).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The instance directory (copied /etc, run/, mail/, log).
    pub fn dir(&self) -> &Path {
        self.instance.dir()
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("courier.log")
    }

    /// The last `lines` lines of the log (authdaemond, couriertcpd and the
    /// login programs write to stderr; nothing goes to syslog).
    pub fn log_tail(&self, lines: usize) -> String {
        common::log_tail(&self.log_path(), lines)
    }

    /// A new user nobody else has, named `<hint>-<n>`, with a fresh
    /// password and an empty Maildir. Usable at once, for POP3 and IMAP.
    pub fn user(&self, hint: &str) -> User {
        self.add_user(hint)
    }

    fn add_user(&self, hint: &str) -> User {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}", common::sanitize_hint(hint, '_'));
        let password = common::fresh_password(n);
        let home = self.home(&name);
        fs::create_dir(&home).unwrap_or_else(|e| panic!("create {home:?}: {e}"));
        maildir::chown(&home, self.owner);
        let root = self.maildir_root(&name);
        maildir::create(&root, &root, self.owner);
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes());
        let hash = format!(
            "{{SHA256}}{}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        );
        let mut users = self.users.lock().expect("users lock poisoned");
        users.push((name.clone(), hash));
        self.write_userdb(&users);
        User { name, password }
    }

    /// Rebuilds `userdb` (text, for people), `userdb.dat` and
    /// `userdbshadow.dat` as `makeuserdb` would: the password fields go to
    /// the shadow file.
    fn write_userdb(&self, users: &[(String, String)]) {
        let etc = self.dir().join("etc/courier");
        let mut plain = String::new();
        let mut dat = String::new();
        let mut shadow = String::new();
        for (name, hash) in users {
            let fields = format!(
                "uid={}|gid={}|home={}|mail={}",
                self.owner.uid,
                self.owner.gid,
                self.home(name).display(),
                self.maildir_root(name).display()
            );
            plain.push_str(&format!("{name}\t{fields}|systempw={hash}\n"));
            dat.push_str(&format!("{name}\t{fields}|_=\n"));
            shadow.push_str(&format!("{name}\tsystempw={hash}\n"));
        }
        jail::write_atomic(&etc.join("userdb"), plain.as_bytes(), 0o600);
        self.makedat(&format!("{dat}.\n"), "userdb");
        self.makedat(&format!("{shadow}.\n"), "userdbshadow");
    }

    /// `makedatprog - NAME.tmp NAME.dat` (builds the gdbm file, then renames).
    fn makedat(&self, input: &str, name: &str) {
        let etc = self.dir().join("etc/courier");
        common::run_with_input(
            Command::new(
                self.tree
                    .join("usr/lib/courier/courier-authlib/makedatprog"),
            )
            .arg("-")
            .arg(etc.join(format!("{name}.tmp")))
            .arg(etc.join(format!("{name}.dat")))
            .env("LD_LIBRARY_PATH", self.tree.join("usr/lib")),
            input.as_bytes(),
            &format!("makedatprog {name}"),
            &format!("run {} as root", jail::INSTALL_SCRIPT),
        );
    }

    fn home(&self, name: &str) -> PathBuf {
        self.dir().join("mail").join(name)
    }

    /// The Maildir (= INBOX) of a user.
    pub fn maildir_root(&self, name: &str) -> PathBuf {
        self.home(name).join("Maildir")
    }

    /// The IMAP name of `mailbox`: `INBOX`, `INBOX.*` as given, anything
    /// else as `INBOX.<mailbox>` (Courier's only namespace).
    pub fn imap_name(mailbox: &str) -> String {
        if mailbox.eq_ignore_ascii_case("INBOX") || mailbox.starts_with("INBOX.") {
            mailbox.to_string()
        } else {
            format!("INBOX.{mailbox}")
        }
    }

    /// What [`Courier::load`] writes for `message`: every CRLF as LF.
    pub fn as_stored(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len());
        for (i, &b) in message.iter().enumerate() {
            if b == b'\r' && message.get(i + 1) == Some(&b'\n') {
                continue;
            }
            out.push(b);
        }
        out
    }

    /// Writes one message file into the user's INBOX exactly as given (no
    /// CRLF to LF): to show what Courier makes of a CRLF file.
    pub fn load_unconverted(&self, user: &User, message: &[u8]) {
        let root = self.maildir_root(&user.name);
        let seq = self.next_file.fetch_add(1, Ordering::Relaxed);
        maildir::deliver(&root, self.load_secs, seq, message, self.owner);
    }

    /// Stops Courier and removes the instance directory. Idempotent; also
    /// done on drop.
    pub fn stop(&self) {
        self.instance.stop();
    }
}

impl Pop3Server for Courier {
    fn name(&self) -> &'static str {
        "courier"
    }

    fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    fn pop3_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    /// Writes each message (CRLF turned into LF, see [`Courier::as_stored`])
    /// as a file in the user's Maildir `cur/`, named so that Courier lists
    /// them in slice order. Courier sees them at the next session.
    fn load(&self, user: &User, messages: &[Vec<u8>]) {
        let root = self.maildir_root(&user.name);
        maildir::create(&root, &root, self.owner);
        for message in messages {
            let seq = self.next_file.fetch_add(1, Ordering::Relaxed);
            maildir::deliver(
                &root,
                self.load_secs,
                seq,
                &Courier::as_stored(message),
                self.owner,
            );
        }
    }

    // `maildrop` is the default, without `UTF8`: a message with 8-bit
    // header bytes comes back wrapped (see the module doc).
}

impl ImapServer for Courier {
    fn name(&self) -> &'static str {
        "courier"
    }

    fn imap_port(&self) -> u16 {
        self.imap_port
    }

    fn imap_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    /// APPENDs each message (bare LFs sent as CRLF) to `mailbox`, mapped by
    /// [`Courier::imap_name`], creating it first if missing.
    fn store(&self, user: &User, mailbox: &str, messages: &[Vec<u8>]) {
        let name = Courier::imap_name(mailbox);
        let fail =
            |e: String| -> ! { panic!("courier imap store to {name} as {}: {e}", user.name) };
        let mut imap = readers::Imap::login(self.imap_port, &user.name, &user.password)
            .unwrap_or_else(|e| fail(e));
        if !name.eq_ignore_ascii_case("INBOX")
            && !imap.mailbox_exists(&name).unwrap_or_else(|e| fail(e))
        {
            imap.create(&name).unwrap_or_else(|e| fail(e));
        }
        for message in messages {
            imap.append(&name, &readers::crlf(message))
                .unwrap_or_else(|e| fail(e));
        }
        imap.logout().unwrap_or_else(|e| fail(e));
    }

    fn messages(&self, user: &User, mailbox: &str) -> Vec<Vec<u8>> {
        let name = Courier::imap_name(mailbox);
        readers::imap_messages(self.imap_port, &user.name, &user.password, &name)
            .unwrap_or_else(|e| panic!("courier imap messages of {name} as {}: {e}", user.name))
    }
}
