//! Runs a program under `/usr/bin/time -v` (wall time, peak RSS) and writes the configs of mailferry, getmail6 and mbsync for one run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::dovecot::{Dovecot, User};
use crate::support::e2e::{self, RouteSpec};

/// What one measured process did.
#[derive(Debug)]
pub struct Measured {
    /// Wall-clock seconds from spawn to exit, seen from here.
    pub wall: f64,
    /// "Maximum resident set size" from `/usr/bin/time -v`, in KiB.
    pub rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

impl Measured {
    /// `Err` with the program's output when it failed.
    pub fn check(self, what: &str) -> Result<Measured, String> {
        if self.success {
            Ok(self)
        } else {
            let last = self.stderr.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!(
                "{what} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                last.unwrap_or("(no stderr)").trim(),
                tail(&self.stdout),
                tail(&self.stderr)
            ))
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `program args` (with `env` added) under `/usr/bin/time -v`, its
/// report written to a file in `scratch` so the program's stderr stays its own.
pub fn timed(
    scratch: &Path,
    program: &Path,
    args: &[OsString],
    env: &[(&str, &str)],
) -> Result<Measured, String> {
    let report = scratch.join(format!(
        "time-{}.txt",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run /usr/bin/time {}: {e}", program.display()))?;
    let wall = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&report).map_err(|e| {
        format!(
            "read the /usr/bin/time report of {}: {e}",
            program.display()
        )
    })?;
    let _ = std::fs::remove_file(&report);
    let rss_kib = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no peak RSS in /usr/bin/time's report:\n{text}"))?;
    Ok(Measured {
        wall,
        rss_kib,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    })
}

/// The release `mailferry` binary cargo built for this bench.
pub fn mailferry_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailferry"))
}

/// A fresh directory with a mailferry config (one route `from` -> `to`,
/// INBOX, `delete = "never"`, over TLS) and an empty ledger; the config path.
pub fn mailferry_config(dir: &Path, dovecot: &Dovecot, from: &User, to: &User) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the mailferry run dir");
    let route = RouteSpec {
        from,
        to,
        mailbox: "INBOX",
        delete: "\"never\"",
    };
    e2e::write_config(dir, dovecot, &[route])
}

/// `mailferry --config CONFIG --json sync`, measured; the `copied` count.
pub fn mailferry_sync(
    scratch: &Path,
    config: &Path,
    env: &[(&str, &str)],
) -> Result<(Measured, u64), String> {
    let args: Vec<OsString> = vec![
        "--config".into(),
        config.into(),
        "--json".into(),
        "sync".into(),
    ];
    let run = timed(scratch, &mailferry_binary(), &args, env)?.check("mailferry sync")?;
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .map_err(|e| format!("mailferry printed no JSON ({e}):\n{}", run.stdout))?;
    let copied = doc["routes"]
        .as_array()
        .and_then(|routes| routes.first())
        .and_then(|r| r["report"]["counts"]["copied"].as_u64())
        .ok_or_else(|| format!("no copied count in {doc}"))?;
    Ok((run, copied))
}

/// getmail6: POP3 over TLS (test CA) into the Maildir `maildir`, leaving
/// mail on the server, no headers added. Returns the `--getmaildir`.
/// `timeout` also bounds getmail's wait for a delivery child, so a lost
/// SIGCHLD costs 20 s, not the default 180 s.
pub fn getmail_config(dir: &Path, dovecot: &Dovecot, from: &User, maildir: &Path) -> PathBuf {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("create the getmail Maildir");
    }
    let home = dir.join("getmail");
    std::fs::create_dir_all(&home).expect("create the getmail dir");
    let rc = format!(
        "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = localhost\nport = {port}\n\
         username = {user}\npassword = {password}\nca_certs = {ca}\ntimeout = 20\n\n\
         [destination]\ntype = Maildir\npath = {maildir}/\n\n\
         [options]\nverbose = 0\nread_all = true\ndelete = false\n\
         delivered_to = false\nreceived = false\nmessage_log_syslog = false\n",
        port = dovecot.pop3s_port(),
        user = from.name,
        password = from.password,
        ca = dovecot.ca_file().display(),
        maildir = maildir.display(),
    );
    std::fs::write(home.join("getmailrc"), rc).expect("write getmailrc");
    home
}

/// mbsync: push the Maildir `maildir` to `to`'s INBOX over implicit TLS
/// (test CA). Returns the config file.
pub fn mbsync_config(dir: &Path, dovecot: &Dovecot, to: &User, maildir: &Path) -> PathBuf {
    let state = dir.join("mbsync-state");
    std::fs::create_dir_all(&state).expect("create the mbsync state dir");
    let text = format!(
        "IMAPAccount target\nHost localhost\nPort {port}\nUser {user}\nPass {password}\n\
         SSLType IMAPS\nCertificateFile {ca}\n\n\
         IMAPStore target\nAccount target\n\n\
         MaildirStore local\nPath {dir}/\nInbox {maildir}\n\n\
         Channel push\nFar :target:INBOX\nNear :local:INBOX\nSync Push\nCreate Far\n\
         Expunge None\nSyncState {state}/\n",
        port = dovecot.imaps_port(),
        user = to.name,
        password = to.password,
        ca = dovecot.ca_file().display(),
        dir = dir.display(),
        maildir = maildir.display(),
        state = state.display(),
    );
    let path = dir.join("mbsyncrc");
    std::fs::write(&path, text).expect("write mbsyncrc");
    path
}

/// The unprivileged user the Debian tools run as (the tests' mail user).
const TOOL_USER: &str = "vmail";

/// Arguments for `setpriv` that run `program args` as [`TOOL_USER`].
pub fn as_mail_user(program: &str, args: &[OsString]) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![
        format!("--reuid={TOOL_USER}").into(),
        format!("--regid={TOOL_USER}").into(),
        "--clear-groups".into(),
        "--reset-env".into(),
        program.into(),
    ];
    out.extend_from_slice(args);
    out
}

/// Hands `dir` (recursively) to [`TOOL_USER`] and lets it reach `dir`.
pub fn give_to_mail_user(dir: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{TOOL_USER}:{TOOL_USER}"))
        .arg(dir)
        .status()
        .map_err(|e| format!("chown: {e}"))?;
    if !status.success() {
        return Err(format!("chown -R {TOOL_USER} {} failed", dir.display()));
    }
    let mut parent = dir.parent();
    while let Some(p) = parent.filter(|p| p.starts_with("/tmp/")) {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", p.display()))?;
        parent = p.parent();
    }
    Ok(())
}

/// Whether `program` is on PATH.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
