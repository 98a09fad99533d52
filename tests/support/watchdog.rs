//! Runs `dovecot -F` under a tiny shell watchdog so no Dovecot outlives the test process.
//!
//! The watchdog's stdin is a pipe whose only write end this process holds
//! (std opens it close-on-exec, so no other child inherits it). When this
//! process exits for any reason — normal end, panic, abort, `kill -9` — the
//! kernel closes that end, `cat` sees EOF, and the shell stops Dovecot by its
//! pid and removes the instance directory. This also covers a `static`
//! instance, which Rust never drops.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// `$1` = dovecot binary, `$2` = config file, `$3` = instance directory.
/// `dovecot -F` does not fork, so `$!` is the master pid (the one it also
/// writes to `base_dir/master.pid`). Signals are ignored only after Dovecot
/// has started, so Dovecot keeps its own handlers, while a Ctrl-C or a stray
/// SIGTERM to the process group cannot kill the watchdog before it has
/// cleaned up: its life is tied to the pipe alone.
const SCRIPT: &str = r#"
"$1" -F -c "$2" >/dev/null &
d=$!
echo "$d"
trap '' INT HUP TERM
cat >/dev/null
kill "$d" 2>/dev/null
wait "$d"
rm -rf "$3"
"#;

/// How long a clean stop may take before the master is killed outright.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running watchdog and the process it guards: the Dovecot master, or
/// (started by `servers::jail`) the `unshare` of a namespace.
pub struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
    master_pid: u32,
}

impl Watchdog {
    /// Starts Dovecot on `config`; its early stderr (config errors come
    /// there before logging is set up) goes to `stderr_file`.
    pub fn start(dovecot: &Path, config: &Path, dir: &Path, stderr_file: &Path) -> Watchdog {
        let stderr = File::create(stderr_file).expect("create the dovecot stderr file");
        Watchdog::spawn(
            Command::new("sh")
                .arg("-c")
                .arg(SCRIPT)
                .arg("mailferry-dovecot-watchdog")
                .arg(dovecot)
                .arg(config)
                .arg(dir)
                .stderr(stderr),
            "dovecot",
        )
    }

    /// Spawns a watchdog script (`command`, stderr already set) whose stdin
    /// and stdout are piped here and whose first line of output is the pid
    /// of the process it guards (`guarded` names it in panics). Used as is
    /// by `servers::jail` for its namespaces.
    pub fn spawn(command: &mut Command, guarded: &str) -> Watchdog {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sh for the {guarded} watchdog: {e}"));
        let stdin = child.stdin.take();
        let master_pid = read_master_pid(&mut child, guarded);
        Watchdog {
            child,
            stdin,
            master_pid,
        }
    }

    /// The Dovecot master's pid.
    pub fn master_pid(&self) -> u32 {
        self.master_pid
    }

    /// False once the master has exited (a zombie counts as exited: the
    /// watchdog reaps it only when told to stop).
    pub fn master_alive(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.master_pid));
        match stat {
            Ok(stat) => !process_state_is_dead(&stat),
            Err(_) => false,
        }
    }

    /// Stops Dovecot (closing the pipe makes the watchdog send SIGTERM and
    /// wait) and reaps the watchdog. Falls back to SIGKILL by pid if the
    /// master does not go within [`STOP_GRACE`].
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
        kill_pid(self.master_pid, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The script's first line of output is the master pid.
fn read_master_pid(child: &mut Child, guarded: &str) -> u32 {
    let stdout = child.stdout.take().expect("watchdog stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("read the {guarded} pid from the watchdog: {e}"));
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("watchdog printed {line:?}, not the {guarded} pid"))
}

/// `/proc/PID/stat` is `pid (comm) S ...`; comm may hold spaces or
/// parentheses, so the state is the first field after the LAST ')'.
fn process_state_is_dead(stat: &str) -> bool {
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    matches!(after_comm.split_whitespace().next(), Some("Z" | "X") | None)
}

/// Sends a signal by pid through kill(1): the crate has no libc dependency.
pub fn kill_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}
