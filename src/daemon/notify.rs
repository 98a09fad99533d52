//! The systemd notify protocol (sd_notify(3)) for `mailferry run` under
//! `Type=notify`: `READY=1` once the routes run, `WATCHDOG=1` at half the
//! `WatchdogSec` the service manager asks for, `STATUS=` with a one-line
//! summary after each pass. Without `NOTIFY_SOCKET` every call does nothing.

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
