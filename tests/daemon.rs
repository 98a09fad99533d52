//! `mailferry run` against a real Dovecot: mail delivered while the daemon
//! runs arrives exactly once, `status` reads the ledger while the daemon
//! writes it, `/metrics` matches the ledger, SIGHUP adds a route, SIGTERM
//! stops it cleanly. Every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::dovecot::{shared, Dovecot, User};
use support::proxy::{Dir, Plan, Proxy};

fn account(kind: &str, user: &User, port: u16, ca: &Path) -> String {
    format!(
        "\n[[{kind}]]\nname = \"{n}\"\nhost = \"localhost\"\nport = {port}\nusername = \"{n}\"\npassword = \"{pw}\"\nca_file = \"{ca}\"\ntimeout = \"20s\"\n",
        n = user.name,
        pw = user.password,
        ca = ca.display()
    )
}

/// A daemon config: each (source, mailbox) into `dst` every second.
fn config(
    dir: &Path,
    dovecot: &Dovecot,
    sources: &[(&User, &str)],
    dst: &User,
    metrics: u16,
) -> String {
    let ports = vec![dovecot.pop3s_port(); sources.len()];
    config_via(dir, dovecot, sources, &ports, dst, metrics)
}

/// Like [`config`], each source at its own POP3S port (a proxy's, say).
fn config_via(
    dir: &Path,
    dovecot: &Dovecot,
    sources: &[(&User, &str)],
    pop3_ports: &[u16],
    dst: &User,
    metrics: u16,
) -> String {
    let ca = dovecot.ca_file();
    let mut text = format!(
        "[ledger]\npath = \"{}\"\n\n[daemon]\nmetrics = \"127.0.0.1:{metrics}\"\n",
        dir.join("ledger.db").display()
    );
    for ((user, _), port) in sources.iter().zip(pop3_ports) {
        text += &account("source", user, *port, &ca);
    }
    text += &account("target", dst, dovecot.imaps_port(), &ca);
    for (user, mailbox) in sources {
        text += &format!(
            "\n[[route]]\nfrom = \"{}\"\nto = \"{}\"\nmailbox = \"{mailbox}\"\ninterval = \"1s\"\n",
            user.name, dst.name
        );
    }
    text
}

fn mail(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("From: x@example.org\nSubject: {tag} {i}\nMessage-ID: <{tag}.{i}@example.org>\n\nbody {tag} {i}\n").into_bytes())
        .collect()
}

/// Waits until `cond` holds, at most `limit`; panics with `what` otherwise.
fn wait_for(limit: Duration, what: &str, daemon_log: &Path, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(daemon_log).unwrap_or_default();
            panic!("timed out waiting for {what}\ndaemon log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn metrics(port: u16) -> String {
    get(port, "/metrics")
}

/// The whole HTTP answer of the metrics listener to `GET path`.
fn get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

fn copied_in_metrics(text: &str, route: &str) -> Option<u64> {
    let prefix = format!("mailferry_messages{{route=\"{route}\",state=\"copied\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

fn mailferry(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn daemon_mirrors_reloads_reports_and_stops_cleanly() {
    let dovecot = shared();
    let (a, b, c, dst) = (
        dovecot.user("da"),
        dovecot.user("db"),
        dovecot.user("dc"),
        dovecot.user("ddst"),
    );
    dovecot.load(&a, "INBOX", &mail("a", 5));
    dovecot.load(&b, "INBOX", &mail("b", 4));
    dovecot.load(&c, "INBOX", &mail("c", 3));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailferry.toml");
    let port = free_port();
    std::fs::write(
        &path,
        config(
            dir.path(),
            dovecot,
            &[(&a, "INBOX"), (&b, "FromB")],
            &dst,
            port,
        ),
    )
    .unwrap();
    let log_path = dir.path().join("daemon.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .arg("--config")
        .arg(&path)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(60);

    wait_for(limit, "the first passes", &log_path, || {
        dovecot.count(&dst, "INBOX") == 5 && dovecot.count(&dst, "FromB") == 4
    });
    // Mail arriving while the daemon runs is mirrored.
    dovecot.load(&a, "INBOX", &mail("a-late", 3));
    wait_for(limit, "late mail", &log_path, || {
        dovecot.count(&dst, "INBOX") == 8
    });

    // status reads the ledger while the daemon holds it; metrics match it.
    let status = mailferry(&path, &["--json", "status"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status --json");
    let route_a = format!("{}:{}", a.name, dst.name);
    let in_ledger = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route_a.as_str())
        .unwrap()["copied"]
        .as_u64()
        .unwrap();
    assert_eq!(in_ledger, 8, "{doc}");
    let text = metrics(port);
    assert_eq!(copied_in_metrics(&text, &route_a), Some(8), "{text}");
    assert!(
        text.contains("mailferry_pass_duration_seconds_count"),
        "{text}"
    );

    // SIGHUP with a config that adds a route; a broken config is refused.
    std::fs::write(&path, "[[route]]\nnonsense = 1\n").unwrap();
    signal(&daemon, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a bad reload must not stop the daemon"
    );
    let three = [(&a, "INBOX"), (&b, "FromB"), (&c, "FromC")];
    std::fs::write(&path, config(dir.path(), dovecot, &three, &dst, port)).unwrap();
    signal(&daemon, "HUP");
    wait_for(limit, "the route added by SIGHUP", &log_path, || {
        dovecot.count(&dst, "FromC") == 3
    });

    signal(&daemon, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("reload refused"), "{log}");
    for user in [&a, &b, &c, &dst] {
        assert!(!log.contains(&user.password), "a password reached the log");
    }

    // Everything exactly once: a final sync finds nothing to copy.
    let out = mailferry(&path, &["--json", "sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for r in doc["routes"].as_array().unwrap() {
        assert_eq!(r["report"]["counts"]["copied"], 0, "{doc}");
    }
    assert_eq!(
        (dovecot.count(&dst, "INBOX"), dovecot.count(&dst, "FromB")),
        (8, 4)
    );
}

#[test]
fn an_unreachable_source_backs_off_while_the_others_go_on() {
    let dovecot = shared();
    let (up, down, dst) = (
        dovecot.user("up"),
        dovecot.user("down"),
        dovecot.user("udst"),
    );
    dovecot.load(&up, "INBOX", &mail("up", 3));
    dovecot.load(&down, "INBOX", &mail("down", 4));
    // Every connection to the second source is reset at once, until healed.
    let proxy = Proxy::start(dovecot.pop3s_port(), |_| Plan::reset(Dir::Down, 0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailferry.toml");
    let sources = [(&up, "INBOX"), (&down, "Down")];
    let ports = [dovecot.pop3s_port(), proxy.port()];
    let metrics_port = free_port();
    let told = dir.path().join("told.jsonl");
    let notify_command = format!(
        "notify_command = [\"sh\", \"-c\", \"cat >> {}\"]\n",
        told.display()
    );
    let text = config_via(dir.path(), dovecot, &sources, &ports, &dst, metrics_port).replace(
        "[daemon]\n",
        &format!("[daemon]\nunhealthy_after = \"2s\"\n{notify_command}"),
    );
    std::fs::write(&path, text).unwrap();
    // A service manager's notify socket (systemd Type=notify).
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read as a service manager does, all along (an unread queue fills).
    let notes = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let notes = notes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(170);
            while Instant::now() < deadline {
                if let Ok(n) = notify.recv(&mut buf) {
                    let mut notes = notes.lock().unwrap();
                    notes.push_str(&String::from_utf8_lossy(&buf[..n]));
                    notes.push('\n');
                    if notes.contains("STATUS=2 routes, ") && notes.contains("WATCHDOG=1") {
                        return;
                    }
                }
            }
        })
    };
    let log_path = dir.path().join("daemon.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .args(["--log-format", "json", "--config"])
        .arg(&path)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();

    let limit = Duration::from_secs(60);
    wait_for(limit, "the reachable source", &log_path, || {
        dovecot.count(&dst, "INBOX") == 3
    });
    wait_for(limit, "a few failed attempts", &log_path, || {
        proxy.connections() >= 3
    });
    // Failing for longer than unhealthy_after: /healthz says which and why.
    let mut health = String::new();
    wait_for(
        limit,
        "/healthz to report the failing route",
        &log_path,
        || {
            health = get(metrics_port, "/healthz");
            health.starts_with("HTTP/1.1 503")
        },
    );
    assert!(health.contains(&down.name), "{health}");
    let read_told = || std::fs::read_to_string(&told).unwrap_or_default();
    wait_for(
        limit,
        "notify_command told of the failure",
        &log_path,
        || read_told().contains("\"event\":\"failing\""),
    );
    assert!(!health.contains(&format!("route {}", up.name)), "{health}");
    dovecot.load(&up, "INBOX", &mail("up-late", 2));
    wait_for(
        limit,
        "more mail from the reachable source",
        &log_path,
        || dovecot.count(&dst, "INBOX") == 5,
    );
    assert_eq!(dovecot.count(&dst, "Down"), 0);

    proxy.set_plans(|_| Plan::pass());
    wait_for(limit, "the source to recover", &log_path, || {
        dovecot.count(&dst, "Down") == 4
    });
    wait_for(limit, "/healthz to be 200 again", &log_path, || {
        get(metrics_port, "/healthz").starts_with("HTTP/1.1 200")
    });
    wait_for(
        limit,
        "notify_command told of the recovery",
        &log_path,
        || read_told().contains("\"event\":\"recovered\""),
    );
    let events: Vec<serde_json::Value> = read_told()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Once per problem, once per recovery: not at every check.
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0]["route"]
        .as_str()
        .is_some_and(|r| r.starts_with(&down.name)));
    reader.join().unwrap();
    let notes = notes.lock().unwrap().clone();
    for note in ["READY=1", "WATCHDOG=1", "STATUS=2 routes, "] {
        assert!(notes.contains(note), "{note} not sent: {notes}");
    }

    signal(&daemon, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "daemon did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failures: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "pass failed")
        .collect();
    assert!(failures.len() >= 2, "{log}");
    assert!(
        failures.iter().all(|l| l["route"]
            .as_str()
            .is_some_and(|r| r.starts_with(&down.name))),
        "{log}"
    );
    assert!(!log.contains(&down.password) && !log.contains(&up.password));
}
