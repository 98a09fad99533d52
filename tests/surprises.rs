//! Server-side surprises during a real migration: the target mailbox deleted mid-run, the POP3 maildrop locked ([IN-USE]), Dovecot restarted mid-pass.
//!
//! Each ends with the promise checked twice: right after the surprise
//! (`check_no_loss`: nothing deleted from the source without its copy,
//! nothing twice on the target) and after a final clean sync with
//! `delete = "after-copy"` (`check_migrated`: every message once, byte-equal,
//! source empty).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use support::dovecot::{self, Dovecot, Options, User};
use support::e2e::{self, check_migrated, check_no_loss, Endpoint, RouteSpec, Servers};
use support::proxy::{At, Dir, Kind, Plan, Proxy};

/// How long a surprise may take to show its effect before the test fails.
const WAIT: Duration = Duration::from_secs(60);
/// Passes a final clean sync may take (each retries internally).
const FINAL_PASSES: usize = 6;

/// `n` small distinct messages.
fn mail(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "From: s{i}@example.org\r\nSubject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@example.org>\r\n\r\nBody {tag} {i}\r\n"
            )
            .into_bytes()
        })
        .collect()
}

/// A config for one route `src` -> `dst`/`mailbox` through `servers`.
fn config(
    dir: &Path,
    dovecot: &Dovecot,
    servers: &Servers,
    (src, dst): (&User, &User),
    mailbox: &str,
    delete: &str,
) -> PathBuf {
    e2e::write_config_via(
        dir,
        dovecot,
        servers,
        &[RouteSpec {
            from: src,
            to: dst,
            mailbox,
            delete,
        }],
    )
}

/// IMAP through a proxy that sends the client's bytes one per `pause`
/// (APPENDs crawl), POP3 straight to Dovecot over TLS.
fn slow_imap(dovecot: &Dovecot, pause: Duration) -> (Proxy, Servers) {
    let proxy = Proxy::start(dovecot.imap_port(), move |_| {
        Plan::pass().with(Dir::Up, At::Byte(0), Kind::Slice { pause })
    });
    let servers = Servers {
        pop3: Endpoint {
            port: dovecot.pop3s_port(),
            plain: false,
        },
        imap: Endpoint {
            port: proxy.port(),
            plain: true,
        },
        timeout: "10s",
    };
    (proxy, servers)
}

fn assert_no_panic(what: &str, out: &str, err: &str) {
    assert!(
        !out.contains("panicked") && !err.contains("panicked"),
        "{what}: mailferry panicked\nstdout:\n{out}\nstderr:\n{err}"
    );
}

/// Polls `cond` every 20 ms until it holds; fails after [`WAIT`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a spawned mailferry; (exit code, stdout, stderr).
fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().expect("wait for mailferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The final clean sync (`delete = "after-copy"`, straight to Dovecot),
/// repeated until it exits 0, then the end state checked.
fn final_clean_sync(
    dir: &Path,
    dovecot: &Dovecot,
    (src, dst): (&User, &User),
    mailbox: &str,
    mail: &[Vec<u8>],
) {
    let config = config(
        dir,
        dovecot,
        &Servers::tls(dovecot),
        (src, dst),
        mailbox,
        "\"after-copy\"",
    );
    let mut last = String::new();
    for pass in 0..FINAL_PASSES {
        let (code, out, err) = e2e::mailferry(&config, &["--json", "sync"]);
        assert_no_panic("final sync", &out, &err);
        check_no_loss(dovecot, (src, dst), mailbox, mail)
            .unwrap_or_else(|e| panic!("after final pass {pass}: {e}\n{out}\n{err}"));
        if code == 0 {
            check_migrated(dovecot, (src, dst), mailbox, mail)
                .unwrap_or_else(|e| panic!("after the final sync: {e}\n{out}"));
            return;
        }
        last = format!("exit {code}\n{out}\n{err}");
    }
    panic!("no clean sync in {FINAL_PASSES} passes: {last}");
}

/// The target mailbox deleted (`doveadm mailbox delete`) while a slowed
/// migration appends to it. `SURPRISES_AT=n` deletes once `n` messages are on the target (5 by
/// default).
///
/// Found here: the interrupted sync reported every message copied with
/// none left in the mailbox, and the next `after-copy` pass deleted them
/// all from the source, copying none. Fixed in 6106074 (deliveries into a
/// recreated mailbox are decided again).
#[test]
fn target_mailbox_deleted_mid_run() {
    let dovecot = dovecot::shared();
    let src = dovecot.user("del-mbox-src");
    let dst = dovecot.user("del-mbox-dst");
    let mail = mail("delmbox", 25);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_proxy, servers) = slow_imap(dovecot, Duration::from_micros(300));
    let cfg = config(
        dir.path(),
        dovecot,
        &servers,
        (&src, &dst),
        "Archive",
        "\"never\"",
    );

    let child = e2e::spawn_mailferry(&cfg, &["--json", "sync"]);
    let at: usize = std::env::var("SURPRISES_AT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    wait_for("some messages on the target", || {
        dovecot.count(&dst, "Archive") >= at
    });
    let deleted = Command::new("doveadm")
        .arg("-c")
        .arg(dovecot.config_file())
        .args(["mailbox", "delete", "-u", &dst.name, "Archive"])
        .output()
        .expect("run doveadm");
    assert!(
        deleted.status.success(),
        "doveadm mailbox delete: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    eprintln!(
        "deleted Archive while mailferry ran: {} left, doveadm said {:?}",
        dovecot.count(&dst, "Archive"),
        String::from_utf8_lossy(&deleted.stdout)
    );
    let (code, out, err) = finish(child);
    eprintln!(
        "the interrupted sync: exit {code}, {} in Archive now\n{out}",
        dovecot.count(&dst, "Archive")
    );
    assert_no_panic("sync during the delete", &out, &err);
    check_no_loss(dovecot, (&src, &dst), "Archive", &mail)
        .unwrap_or_else(|e| panic!("right after: {e}\n{out}\n{err}"));
    assert_eq!(dovecot.count(&src, "INBOX"), mail.len(), "never deletes");

    final_clean_sync(dir.path(), dovecot, (&src, &dst), "Archive", &mail);
}

/// Dovecot lets several POP3 sessions share a maildrop by default; with
/// `pop3_lock_session = yes` a second one gets `-ERR [IN-USE]`, as many
/// ISPs' servers answer.
#[test]
fn pop3_maildrop_locked() {
    let dovecot = Dovecot::start_with(Options {
        extra_config: "protocol pop3 {\n  pop3_lock_session = yes\n}\n".into(),
        ..Options::default()
    });
    let src = dovecot.user("locked-src");
    let dst = dovecot.user("locked-dst");
    let mail = mail("locked", 10);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        &dovecot,
        &Servers::tls(&dovecot),
        (&src, &dst),
        "INBOX",
        "\"after-copy\"",
    );

    // Another client holds the maildrop.
    let holder = pop3_login(dovecot.pop3_port(), &src).expect("the first session logs in");
    let (code, out, err) = e2e::mailferry(&cfg, &["--json", "sync"]);
    eprintln!("sync while locked: exit {code}");
    assert_no_panic("locked", &out, &err);
    assert_eq!(code, 3, "the route could not run\n{out}\n{err}");
    assert!(out.contains("IN-USE"), "names the lock: {out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        doc["routes"][0]["error"]["class"], "transient",
        "[IN-USE] is transient: {out}"
    );
    assert_eq!(dovecot.count(&dst, "INBOX"), 0, "nothing copied");
    assert_eq!(dovecot.count(&src, "INBOX"), mail.len(), "nothing deleted");

    drop(holder);
    final_clean_sync(dir.path(), &dovecot, (&src, &dst), "INBOX", &mail);
}

/// Logs in over plain POP3 and keeps the session open while held.
fn pop3_login(port: u16, user: &User) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    for cmd in [
        format!("USER {}\r\n", user.name),
        format!("PASS {}\r\n", user.password),
    ] {
        writer
            .write_all(cmd.as_bytes())
            .map_err(|e| e.to_string())?;
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if !line.starts_with("+OK") {
            return Err(line);
        }
    }
    Ok(stream)
}

/// A second Dovecot master on an existing instance's config (same ports,
/// same mail), under the same kind of pipe watchdog as the support's: it
/// dies with the test process, and is stopped on drop.
struct Restarted {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Restarted {
    fn start(config: &Path) -> Restarted {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("dovecot -F -c \"$1\" >/dev/null 2>&1 & d=$!; trap '' INT HUP TERM; cat >/dev/null; kill \"$d\" 2>/dev/null; wait \"$d\"")
            .arg("restarted-dovecot")
            .arg(config)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn the restarted dovecot");
        let stdin = child.stdin.take();
        Restarted { child, stdin }
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start());
        !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
    })
}

/// Stops the Dovecot master mid-pass (SIGTERM: it takes every session down
/// with it), waits a second, then starts a new master on the same config,
/// so the same ports and mail: a real restart, not an emulation.
#[test]
fn dovecot_restarted_mid_pass() {
    let dovecot = Dovecot::start();
    let src = dovecot.user("restart-src");
    let dst = dovecot.user("restart-dst");
    let mail = mail("restart", 40);
    dovecot.load(&src, "INBOX", &mail);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_proxy, servers) = slow_imap(&dovecot, Duration::from_micros(300));
    let cfg = config(
        dir.path(),
        &dovecot,
        &servers,
        (&src, &dst),
        "INBOX",
        "\"after-copy\"",
    );

    let child = e2e::spawn_mailferry(&cfg, &["--json", "sync"]);
    wait_for("5 messages on the target", || {
        dovecot.count(&dst, "INBOX") >= 5
    });
    let master = dovecot.master_pid().expect("master pid");
    let _ = Command::new("kill").arg(master.to_string()).status();
    wait_for("the old master to exit", || !alive(master));
    eprintln!("dovecot stopped mid-pass");
    std::thread::sleep(Duration::from_secs(1));
    let _restarted = Restarted::start(&dovecot.config_file());
    wait_for("the restarted dovecot to greet", || {
        TcpStream::connect(("127.0.0.1", dovecot.imap_port())).is_ok()
    });
    eprintln!("dovecot restarted on the same ports");
    let (code, out, err) = finish(child);
    eprintln!("the interrupted sync: exit {code}");
    assert_no_panic("sync across the restart", &out, &err);
    check_no_loss(&dovecot, (&src, &dst), "INBOX", &mail)
        .unwrap_or_else(|e| panic!("right after: {e}\n{out}\n{err}"));

    final_clean_sync(dir.path(), &dovecot, (&src, &dst), "INBOX", &mail);
}

/// The target mailbox deleted between runs and, at once (the same second
/// on Dovecot's clock), a pass with `after-copy`: the copies that went with
/// the old mailbox must be made again before any source message goes.
#[test]
fn target_mailbox_deleted_between_runs_then_after_copy() {
    let a = Archived::copy("del-between", 10);
    assert_eq!(a.dovecot.count(&a.dst, "Archive"), a.mail.len());
    a.delete_archive();
    a.after_copy_pass_loses_nothing();
}

/// `src`'s mail copied once into `dst`'s "Archive" (`delete = "never"`),
/// for tests that then take the mailbox away behind mailferry's back.
struct Archived {
    dovecot: &'static Dovecot,
    src: User,
    dst: User,
    mail: Vec<Vec<u8>>,
    dir: tempfile::TempDir,
}

impl Archived {
    fn copy(tag: &str, n: usize) -> Archived {
        let dovecot = dovecot::shared();
        let src = dovecot.user(&format!("{tag}-src"));
        let dst = dovecot.user(&format!("{tag}-dst"));
        let mail = mail(&tag.replace('-', ""), n);
        dovecot.load(&src, "INBOX", &mail);
        let a = Archived {
            dovecot,
            src,
            dst,
            mail,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let (code, out, err) = e2e::mailferry(&a.config("\"never\""), &["--json", "sync"]);
        assert_eq!(code, 0, "{out}\n{err}");
        a
    }

    fn config(&self, delete: &str) -> PathBuf {
        let tls = Servers::tls(self.dovecot);
        let pair = (&self.src, &self.dst);
        config(self.dir.path(), self.dovecot, &tls, pair, "Archive", delete)
    }

    /// `doveadm mailbox delete` of the Archive.
    fn delete_archive(&self) {
        let deleted = Command::new("doveadm")
            .arg("-c")
            .arg(self.dovecot.config_file())
            .args(["mailbox", "delete", "-u", &self.dst.name, "Archive"])
            .output()
            .expect("run doveadm");
        assert!(deleted.status.success(), "doveadm mailbox delete");
    }

    /// At once a pass with `after-copy`: the copies that went with the old
    /// mailbox must be made again before any source message goes.
    fn after_copy_pass_loses_nothing(&self) {
        let pair = (&self.src, &self.dst);
        let (code, out, err) = e2e::mailferry(&self.config("\"after-copy\""), &["--json", "sync"]);
        assert_no_panic("after-copy pass", &out, &err);
        check_no_loss(self.dovecot, pair, "Archive", &self.mail)
            .unwrap_or_else(|e| panic!("exit {code}: {e}\n{out}"));
        final_clean_sync(self.dir.path(), self.dovecot, pair, "Archive", &self.mail);
    }
}

/// Sends tagged IMAP commands over plain IMAP, each answered before the
/// next; returns everything the server said.
fn imap_script(stream: &mut TcpStream, commands: &[String]) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut said = String::new();
    for (i, command) in commands.iter().enumerate() {
        let tag = format!("s{i}");
        stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .expect("write");
        for _ in 0..1000 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return said;
            }
            said += &line;
            if line.starts_with(&format!("{tag} ")) {
                break;
            }
        }
    }
    said
}

/// The target mailbox deleted while another session has it selected, that
/// session closing after the delete, then at once a pass with `after-copy`.
#[test]
fn target_mailbox_deleted_while_selected() {
    let a = Archived::copy("del-selected", 10);
    let dst = &a.dst;
    let mut session = TcpStream::connect(("127.0.0.1", a.dovecot.imap_port())).expect("imap");
    let said = imap_script(
        &mut session,
        &[
            format!("LOGIN {} {}", dst.name, dst.password),
            "SELECT Archive".into(),
        ],
    );
    eprintln!("before: {said}");
    a.delete_archive();
    let said = imap_script(
        &mut session,
        &[
            "NOOP".into(),
            "STATUS Archive (UIDVALIDITY UIDNEXT MESSAGES)".into(),
            "LOGOUT".into(),
        ],
    );
    eprintln!("after: {said}");
    a.after_copy_pass_loses_nothing();
}
