//! What Courier and popa3d share: their unpacked trees, a private directory, and a mount + pid namespace under a watchdog.
//!
//! Both servers have their paths compiled in (`/etc/courier`,
//! `/run/courier/authdaemon`, `/var/mail`, `/var/lib/popa3d`, PAM and the
//! passwd files under `/etc`) and conflict with Dovecot's packages, so they
//! run from trees unpacked by `scripts/servers/install-courier-popa3d`,
//! inside `unshare --mount --propagation private --pid --fork --kill-child`,
//! where a script of theirs bind-mounts private copies of whole directories
//! over the compiled-in ones (whole directories, never single files: a
//! single-file bind mount goes stale for the namespace as soon as the host
//! replaces that file, as `useradd` does with `/etc/passwd`). The host's
//! mounts and files are never changed.
//!
//! The watchdog is the one of `support::watchdog`, adapted: its stdin is a
//! pipe whose only write end this process holds; at EOF (this process ended
//! in any way, `kill -9` included) it SIGKILLs the namespace's first
//! process, which makes the kernel kill everything else in the pid
//! namespace (forked daemons, per-connection children), reaps `unshare`,
//! and removes the instance directory. Declared by `courier.rs` (so that
//! `mod.rs` stays the interface alone) and used by `popa3d.rs` too.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The script that installs and checks both servers.
pub const INSTALL_SCRIPT: &str = "scripts/servers/install-courier-popa3d";

/// `$1` = instance directory (removed at the end), the rest = the command
/// run as the namespace's first process. `unshare` does not forward
/// SIGTERM to its child, so the child is SIGKILLed by its pid (from
/// `/proc/PID/task/PID/children`) and `unshare` then exits by itself and is
/// reaped here (killing `unshare` instead would leave the child a zombie
/// of the host's init).
const WATCHDOG: &str = r#"
dir=$1
shift
unshare --mount --propagation private --pid --fork --kill-child "$@" </dev/null >&2 &
u=$!
echo "$u"
trap '' INT HUP TERM
cat >/dev/null
for c in $(cat "/proc/$u/task/$u/children" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
wait "$u"
rm -rf "$dir"
"#;

/// How long a stop may take before `unshare` is killed outright.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where the install script unpacked server `name` (`courier`, `popa3d`);
/// a panic naming the install script if it has not (a missing server is a
/// failure, never a skip).
pub fn tree(name: &str, must_have: &[&str]) -> PathBuf {
    let root = std::env::var_os("MAILFERRY_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mailferry-test-servers"));
    let tree = root.join(name);
    let missing: Vec<&str> = must_have
        .iter()
        .copied()
        .filter(|rel| !tree.join(rel).exists())
        .collect();
    assert!(
        tree.join(".stamp").is_file() && missing.is_empty(),
        "{name} is not installed in {tree:?} (missing {missing:?}): run {INSTALL_SCRIPT} as root"
    );
    tree
}

/// A 0755 directory under /tmp named `mailferry-<prefix>-...` (the servers'
/// unprivileged processes must traverse it).
pub fn instance_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(&format!("mailferry-{prefix}-"))
        .tempdir_in("/tmp")
        .expect("create an instance dir in /tmp")
        .keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .expect("make the instance dir traversable");
    dir
}

/// A private copy of the host's whole `/etc` at `dir/etc`, to be
/// bind-mounted over `/etc` in the namespace (`cp -a`: modes, owners and
/// symlinks kept).
pub fn copy_etc(dir: &Path) {
    run(
        Command::new("cp")
            .arg("-a")
            .arg("/etc")
            .arg(dir.join("etc")),
        "copy /etc",
    );
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

/// Runs a command to completion; panics with its stderr if it fails.
pub fn run(command: &mut Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `[a-z0-9_-]` version of a user-name hint (lower-cased, anything else
/// `_`), as `Dovecot::user` makes them.
pub fn sanitize_hint(hint: &str) -> String {
    let cleaned: String = hint
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
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

/// The last `lines` lines of a log file (lossy UTF-8; empty if missing).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader never sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {tmp:?}: {e}"));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {tmp:?}: {e}"));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {tmp:?} to {path:?}: {e}"));
}

/// chown by number.
pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {path:?} to {uid}:{gid}: {e}"));
}

/// A running namespace and the watchdog that guards it.
pub struct Jail {
    child: Child,
    stdin: Option<ChildStdin>,
    unshare_pid: u32,
}

impl Jail {
    /// Starts `bash script args...` as the first process of a new mount +
    /// pid namespace, with a clean environment (`PATH` only); its output and
    /// the watchdog's go to `log`. `dir` is removed when the jail stops.
    pub fn start(dir: &Path, script: &Path, args: &[String], log: &Path) -> Jail {
        let log = File::create(log).expect("create the server log");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("mailferry-server-watchdog")
            .arg(dir)
            .arg("bash")
            .arg(script)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn sh for the server watchdog");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("watchdog stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the unshare pid from the watchdog");
        let unshare_pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("watchdog printed {line:?}, not the unshare pid"));
        Jail {
            child,
            stdin,
            unshare_pid,
        }
    }

    /// False once `unshare` has exited, i.e. once the namespace's first
    /// process (the server script, which exits when any of its daemons
    /// does) is gone. A zombie counts as exited.
    pub fn alive(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.unshare_pid)) {
            Ok(stat) => {
                let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
                !matches!(after_comm.split_whitespace().next(), Some("Z" | "X") | None)
            }
            Err(_) => false,
        }
    }

    /// Stops everything in the namespace, removes the directory and reaps
    /// the watchdog; falls back to SIGKILL by pid after [`STOP_GRACE`].
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.unshare_pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
