//! The systemd notify protocol (sd_notify(3)) for `mailferry run` under
//! `Type=notify`: `READY=1` once the routes run, `WATCHDOG=1` at half the
//! `WatchdogSec` the service manager asks for, `STATUS=` with a one-line
//! summary after each pass. Without `NOTIFY_SOCKET` every call does nothing.
//!
//! Also `[daemon] notify_command`: a command run with a problem as JSON on
//! stdin, once when a route has been failing longer than `unhealthy_after`
//! and once when it recovers.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification (newline-separated `KEY=value` lines); errors are
/// logged, never fatal: supervision is a courtesy to the supervisor. Never
/// blocks: a supervisor that does not read its socket gets notifications
/// dropped, not a stalled daemon (a full datagram queue would block a send).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        socket.set_nonblocking(true)?;
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): "@name".
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::debug!(error = %e, "systemd notification not sent");
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when set (and
/// meant for this process, per `WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Routes already told about (failing), so a problem is told once, not at
/// every check, and its recovery once.
#[derive(Default)]
pub struct Told(std::collections::BTreeSet<String>);

impl Told {
    /// Runs `command` for each route newly failing among `problems` and for
    /// each route told about before that no longer is.
    pub async fn update(&mut self, command: &[String], problems: &[super::metrics::Problem]) {
        for p in problems {
            if self.0.insert(p.route.clone()) {
                let since = p
                    .since
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let event = serde_json::json!({
                    "event": "failing",
                    "route": p.route,
                    "since": since,
                    "passes": p.passes,
                    "reason": p.reason,
                    "what_to_do": "mailferry status; mailferry check",
                });
                run_command(command, &event).await;
            }
        }
        let recovered: Vec<String> = self
            .0
            .iter()
            .filter(|r| !problems.iter().any(|p| &p.route == *r))
            .cloned()
            .collect();
        for route in recovered {
            self.0.remove(&route);
            let event = serde_json::json!({ "event": "recovered", "route": route });
            run_command(command, &event).await;
        }
    }
}

/// Runs `command` with `event` (one JSON line) on stdin, waiting at most
/// 30 s; a failure is logged, never fatal.
async fn run_command(command: &[String], event: &serde_json::Value) {
    use tokio::io::AsyncWriteExt;
    let Some((program, args)) = command.split_first() else {
        return;
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(command = %program, error = %e, "notify_command could not start");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let line = format!("{event}\n");
        let _ = stdin.write_all(line.as_bytes()).await;
    }
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => tracing::warn!(command = %program, %status, "notify_command failed"),
        Ok(Err(e)) => tracing::warn!(command = %program, error = %e, "notify_command failed"),
        Err(_) => tracing::warn!(command = %program, "notify_command took over 30 s; stopped"),
    }
}
