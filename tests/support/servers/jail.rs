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
//! The watchdog is a [`Watchdog`] of `support::watchdog` running its own
//! script: its stdin is a pipe whose only write end this process holds; at
//! EOF (this process ended in any way, `kill -9` included) it SIGKILLs the
//! namespace's first process, which makes the kernel kill everything else
//! in the pid namespace (forked daemons, per-connection children), reaps
//! `unshare`, and removes the instance directory. Its guarded pid is
//! `unshare`'s: [`Watchdog::master_alive`] is false once the namespace's
//! first process (the server script, which exits when any of its daemons
//! does) is gone.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::super::watchdog::Watchdog;

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

/// Where the install script unpacked server `name` (`courier`, `popa3d`);
/// a panic naming the install script if it has not (a missing server is a
/// failure, never a skip).
pub fn tree(name: &str, must_have: &[&str]) -> PathBuf {
    let tree = super::common::servers_root().join(name);
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

/// Starts `bash script args...` as the first process of a new mount + pid
/// namespace, with a clean environment (`PATH` only), under a watchdog; its
/// output and the watchdog's go to `log`. `dir` is removed when the
/// watchdog stops.
pub fn start(dir: &Path, script: &Path, args: &[String], log: &Path) -> Watchdog {
    let log = File::create(log).expect("create the server log");
    Watchdog::spawn(
        Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("mailferry-server-watchdog")
            .arg(dir)
            .arg("bash")
            .arg(script)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stderr(log),
        "unshare",
    )
}
