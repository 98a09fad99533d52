//! `scripts/demo` end to end: the README's first command runs clean within two minutes, shows exactly-once, and `scripts/demo stop` leaves nothing behind.
//!
//! The script starts its own Dovecot on ports this test picks (ephemeral, so
//! it never meets the other tests' instances or a user's own demo) under a
//! temporary directory, and uses the mailferry binary cargo built for the
//! tests instead of doing a release build.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The demo must finish well within this (it takes a few seconds).
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);
/// `scripts/demo stop` waits up to ~10 s for Dovecot, then kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo")
}

/// Four distinct free ports, all bound at once so they differ, then released
/// for Dovecot: "POP3 POP3S IMAP IMAPS".
fn free_ports() -> String {
    let listeners: Vec<std::net::TcpListener> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound port").port().to_string())
        .collect();
    ports.join(" ")
}

/// Runs `scripts/demo [arg]` in its own process group with stdout and stderr
/// (interleaved, in order) in `log`; kills the whole group after `timeout`.
fn run_script(
    arg: Option<&str>,
    demo_dir: &Path,
    ports: &str,
    log: &Path,
    timeout: Duration,
) -> Result<ExitStatus, String> {
    let out = File::create(log).expect("create the demo log");
    let err = out.try_clone().expect("clone the log handle");
    let mut command = Command::new("bash");
    command
        .arg(script())
        .args(arg)
        .env("MAILFERRY_DEMO_DIR", demo_dir)
        .env("MAILFERRY_DEMO_PORTS", ports)
        .env("MAILFERRY_BIN", env!("CARGO_BIN_EXE_mailferry"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = command.spawn().expect("spawn scripts/demo");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for scripts/demo") {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err(format!("did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the demo server even when an assertion failed half-way.
struct StopOnDrop<'a> {
    demo_dir: &'a Path,
    ports: &'a str,
    log: PathBuf,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = run_script(
            Some("stop"),
            self.demo_dir,
            self.ports,
            &self.log,
            STOP_TIMEOUT,
        );
    }
}

/// The lines between the step header starting with `from` and the next one.
fn section<'a>(output: &'a str, from: &str) -> Vec<&'a str> {
    output
        .lines()
        .skip_while(|l| !l.starts_with(from))
        .skip(1)
        .take_while(|l| !l.starts_with("==> "))
        .collect()
}

/// The N of every `<route>: copied N (...)` summary line.
fn copied_counts(lines: &[&str]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| l.split_once(": copied ").map(|(_, rest)| rest))
        .map(|rest| {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            n.parse().expect("a number after `copied`")
        })
        .collect()
}

/// True if `pid` exists and is not a zombie (this machine's pid 1 does not
/// reap orphans, so a stopped daemon may linger as one).
fn running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

/// Pids of live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("list /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && running(pid) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn demo_script_copies_once_and_stop_leaves_nothing_behind() {
    let tmp = tempfile::Builder::new()
        .prefix("mailferry-demo-test-")
        .tempdir_in("/tmp")
        .expect("create a temp dir in /tmp");
    // Dovecot's unprivileged processes must traverse down to the demo dir.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let demo_dir = tmp.path().join("demo");
    let ports = free_ports();
    let log = tmp.path().join("demo.log");
    let guard = StopOnDrop {
        demo_dir: &demo_dir,
        ports: &ports,
        log: tmp.path().join("stop-on-drop.log"),
    };

    let started = Instant::now();
    let status = run_script(None, &demo_dir, &ports, &log, DEMO_TIMEOUT);
    let output = fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("scripts/demo {e}:\n{output}"));
    assert!(
        status.success(),
        "scripts/demo exited with {status} after {:?}:\n{output}",
        started.elapsed()
    );

    let first = copied_counts(&section(&output, "==> 2/5"));
    assert_eq!(first.len(), 2, "two routes in the first sync:\n{output}");
    assert!(
        first.iter().sum::<u64>() > 0,
        "first sync copied nothing:\n{output}"
    );
    let again = copied_counts(&section(&output, "==> 4/5"));
    assert_eq!(again, vec![0, 0], "second sync copied again:\n{output}");
    let verify = section(&output, "==> 5/5").join("\n");
    let total = first.iter().sum::<u64>();
    assert!(
        verify.contains(&format!(": {total} of {total} recorded messages present")),
        "verify did not find all {total} copies:\n{output}"
    );
    assert!(
        output.contains(&format!("IMAP alice: {total} messages")),
        "the IMAP inbox does not hold exactly the {total} copied messages:\n{output}"
    );

    // What `stop` must end: the master (pid in the run dir) and every
    // process of this instance (titles carry its instance_name).
    let conf = fs::read_to_string(demo_dir.join("dovecot/dovecot.conf")).expect("dovecot.conf");
    let instance = conf
        .lines()
        .find_map(|l| l.strip_prefix("instance_name = "))
        .expect("instance_name in dovecot.conf")
        .to_string();
    let master: u32 = fs::read_to_string(demo_dir.join("dovecot/run/master.pid"))
        .expect("master.pid")
        .trim()
        .parse()
        .expect("a pid in master.pid");
    assert!(running(master), "Dovecot (pid {master}) is not running");
    let title = format!("{instance}/");
    assert!(
        !processes_mentioning(&title).is_empty(),
        "no process titled {title}...: the check below would prove nothing"
    );

    let stop_log = tmp.path().join("stop.log");
    let stopped = run_script(Some("stop"), &demo_dir, &ports, &stop_log, STOP_TIMEOUT);
    let stop_output = fs::read_to_string(&stop_log).unwrap_or_default();
    let stopped = stopped.unwrap_or_else(|e| panic!("scripts/demo stop {e}:\n{stop_output}"));
    assert!(
        stopped.success(),
        "scripts/demo stop: {stopped}:\n{stop_output}"
    );
    assert!(!running(master), "Dovecot master {master} survived stop");
    let left = processes_mentioning(&title);
    assert!(left.is_empty(), "processes of {instance} left: {left:?}");
    assert!(!demo_dir.exists(), "stop did not remove {demo_dir:?}");
    drop(guard);
}
