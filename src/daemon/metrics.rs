//! Prometheus metrics for the daemon: `GET /metrics` in the text exposition
//! format. Message counts come from the ledger (so they match `status`);
//! bytes, pass durations, last success and consecutive failures from this
//! process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::ledger::RouteKey;
use crate::sync::plan::PassReport;
use crate::sync::ports::RouteError;
use crate::sync::SharedLedger;

/// Upper bounds (seconds) of the pass duration histogram's buckets.
const BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

#[derive(Default, Clone)]
struct RouteMetrics {
    key: Option<RouteKey>,
    bytes: u64,
    passes: u64,
    failures: u64,
    consecutive_failures: u64,
    last_success: Option<SystemTime>,
    /// Since when the route's passes fail, and the last reason.
    failing_since: Option<SystemTime>,
    last_error: Option<String>,
    /// Cumulative counts per bucket, then the sum of all durations.
    buckets: [u64; BUCKETS.len()],
    duration_sum: f64,
}

/// A route failing for longer than the daemon's `unhealthy_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub route: String,
    /// The first failure of the current run of failures.
    pub since: SystemTime,
    /// Passes failed in a row.
    pub passes: u64,
    /// The last pass's error.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = SystemTime::now()
            .duration_since(self.since)
            .unwrap_or_default()
            .as_secs();
        write!(
            f,
            "route {}: failing for {secs} s ({} passes): {}",
            self.route, self.passes, self.reason
        )
    }
}

/// Shared metrics of all routes.
#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<BTreeMap<String, RouteMetrics>>>);

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The routes of the running config (others are forgotten).
    pub fn set_routes(&self, routes: Vec<(String, RouteKey)>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|name, _| routes.iter().any(|(n, _)| n == name));
        for (name, key) in routes {
            map.entry(name).or_default().key = Some(key);
        }
    }

    /// Records one pass.
    pub fn record(
        &self,
        route: &str,
        report: &PassReport,
        error: Option<&RouteError>,
        took: Duration,
    ) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let m = map.entry(route.to_string()).or_default();
        m.passes += 1;
        m.bytes += report.counts.bytes;
        let secs = took.as_secs_f64();
        m.duration_sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                m.buckets[i] += 1;
            }
        }
        match error {
            None => {
                m.consecutive_failures = 0;
                m.last_success = Some(SystemTime::now());
                m.failing_since = None;
                m.last_error = None;
            }
            Some(e) => {
                m.failures += 1;
                m.consecutive_failures += 1;
                m.failing_since.get_or_insert_with(SystemTime::now);
                m.last_error = Some(e.message.clone());
            }
        }
    }

    /// Routes failing for longer than `threshold`: empty while every route
    /// is healthy or recovering within the threshold.
    pub fn problems(&self, threshold: Duration) -> Vec<Problem> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        map.iter()
            .filter_map(|(name, m)| {
                let since = m.failing_since?;
                let failing = now.duration_since(since).unwrap_or_default();
                (failing > threshold).then(|| Problem {
                    route: name.clone(),
                    since,
                    passes: m.consecutive_failures,
                    reason: m
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "unknown error".into()),
                })
            })
            .collect()
    }

    /// One line for a supervisor (`STATUS=`): routes, how many fail now.
    pub fn summary(&self) -> String {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let failing = map.values().filter(|m| m.failing_since.is_some()).count();
        let passes: u64 = map.values().map(|m| m.passes).sum();
        format!(
            "{} routes, {failing} failing, {passes} passes since start",
            map.len()
        )
    }

    /// The exposition text.
    pub fn render(&self, ledger: &SharedLedger) -> String {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        family(
            &mut out,
            "mailferry_messages",
            "gauge",
            "Source messages per route and state, from the ledger.",
        );
        for (name, m) in &map {
            let Some(key) = &m.key else { continue };
            let Ok(status) = ledger.call(|l| l.route_status(key)) else {
                continue;
            };
            let s = status.states;
            for (state, n) in [
                ("copied", s.copied),
                ("duplicate", s.duplicate),
                ("skipped", s.skipped),
                ("failed", s.failed),
                ("deleted", s.deleted),
                ("pending", s.seen + status.pending_intents),
            ] {
                let _ = writeln!(
                    out,
                    "mailferry_messages{{route=\"{}\",state=\"{state}\"}} {n}",
                    esc(name)
                );
            }
        }
        let scalar = |out: &mut String,
                      metric: &str,
                      kind: &str,
                      help: &str,
                      get: &dyn Fn(&RouteMetrics) -> String| {
            family(out, metric, kind, help);
            for (name, m) in &map {
                let _ = writeln!(out, "{metric}{{route=\"{}\"}} {}", esc(name), get(m));
            }
        };
        scalar(
            &mut out,
            "mailferry_bytes_appended_total",
            "counter",
            "Bytes appended by this process.",
            &|m| m.bytes.to_string(),
        );
        scalar(
            &mut out,
            "mailferry_passes_total",
            "counter",
            "Passes run by this process.",
            &|m| m.passes.to_string(),
        );
        scalar(
            &mut out,
            "mailferry_pass_failures_total",
            "counter",
            "Passes that failed.",
            &|m| m.failures.to_string(),
        );
        scalar(
            &mut out,
            "mailferry_consecutive_failures",
            "gauge",
            "Failed passes since the last success.",
            &|m| m.consecutive_failures.to_string(),
        );
        scalar(
            &mut out,
            "mailferry_last_success_timestamp_seconds",
            "gauge",
            "End of the last successful pass.",
            &|m| {
                m.last_success
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or("0".into(), |d| d.as_secs().to_string())
            },
        );
        family(
            &mut out,
            "mailferry_pass_duration_seconds",
            "histogram",
            "How long passes take.",
        );
        for (name, m) in &map {
            let route = esc(name);
            for (bound, count) in BUCKETS.iter().zip(m.buckets) {
                let _ = writeln!(out, "mailferry_pass_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "mailferry_pass_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                m.passes
            );
            let _ = writeln!(
                out,
                "mailferry_pass_duration_seconds_sum{{route=\"{route}\"}} {}",
                m.duration_sum
            );
            let _ = writeln!(
                out,
                "mailferry_pass_duration_seconds_count{{route=\"{route}\"}} {}",
                m.passes
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds `addr` now (so a bad address fails at start) and serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    (metrics, ledger, unhealthy_after): (Metrics, SharedLedger, Duration),
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Metrics { addr, source })?;
    tracing::info!(%addr, "serving metrics at /metrics, health at /healthz");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => return,
            };
            let Ok((socket, _)) = accepted else { continue };
            let (metrics, ledger) = (metrics.clone(), ledger.clone());
            tokio::spawn(async move {
                let answered = answer(socket, &metrics, &ledger, unhealthy_after);
                let _ = tokio::time::timeout(Duration::from_secs(5), answered).await;
            });
        }
    }))
}

/// Reads one request (bounded) and answers it.
async fn answer(
    mut socket: tokio::net::TcpStream,
    metrics: &Metrics,
    ledger: &SharedLedger,
    unhealthy_after: Duration,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let path = |p: &[u8]| request.starts_with(p);
    let (status, body) = if path(b"GET /metrics ") || path(b"GET /metrics?") {
        ("200 OK", metrics.render(ledger))
    } else if path(b"GET /healthz ") || path(b"GET /healthz?") {
        let problems = metrics.problems(unhealthy_after);
        if problems.is_empty() {
            ("200 OK", format!("ok: {}\n", metrics.summary()))
        } else {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            ("503 Service Unavailable", lines.join("\n") + "\n")
        }
    } else {
        ("404 Not Found", "try /metrics or /healthz\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histogram_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        let ledger =
            SharedLedger::new(crate::ledger::Ledger::open(dir.path().join("l.db")).unwrap());
        let m = Metrics::new();
        m.set_routes(vec![("a->b".into(), RouteKey::new("a", "b", "INBOX"))]);
        let mut report = PassReport::default();
        report.counts.bytes = 1234;
        m.record("a->b", &report, None, Duration::from_millis(700));
        let err = RouteError::new(crate::retry::ErrorClass::Transient, "down");
        m.record("a->b", &report, Some(&err), Duration::from_secs(3));
        let text = m.render(&ledger);
        assert!(
            text.contains("mailferry_bytes_appended_total{route=\"a->b\"} 2468"),
            "{text}"
        );
        assert!(
            text.contains("mailferry_consecutive_failures{route=\"a->b\"} 1"),
            "{text}"
        );
        assert!(text.contains("le=\"1\"} 1"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(
            text.contains("mailferry_messages{route=\"a->b\",state=\"copied\"} 0"),
            "{text}"
        );
    }
}
