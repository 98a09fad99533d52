//! Sets up the private Dovecot and the corpus, then measures every row in order on the same data.
//!
//! Timing per row: the raw limits time the transfer alone (from the first
//! command after login to the last reply); every end-to-end row (mailferry,
//! naive, getmail, mbsync, re-poll, UIDL) is the wall time of its whole
//! process, start-up, TLS and login included, as a user would see it.
//! Rows 1-3 run three times, interleaved, and report the median run and the
//! largest peak RSS; the re-poll rows likewise (after one untimed round).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::corpus::{Corpus, Mix, HUGE_BYTES};
use crate::jobs::{Job, JobResult, Login};
use crate::report::{Report, Row};
use crate::support::dovecot::{self, Dovecot, User};
use crate::tools::{self, Measured};
use crate::Args;

/// The seed of every corpus: the same bytes on every run and machine.
const SEED: u64 = 0x6d61_696c_6665_7272;
/// Messages generated and loaded at once (bounds this process's memory).
const LOAD_CHUNK: usize = 500;
/// Runs of each re-poll measurement; the median is reported.
const REPOLL_RUNS: usize = 3;
/// Runs of each of rows 1-3; the median is reported.
const ROUNDS: usize = 3;
/// Runs of getmail6 before its row is given up (see `try_chain`).
const GETMAIL_ATTEMPTS: u32 = 3;
/// Corpus sizes of the flat-memory check.
const SCALING: [usize; 2] = [1_000, 10_000];

struct Bench {
    dovecot: Dovecot,
    scratch: tempfile::TempDir,
    started: Instant,
    notes: Vec<String>,
}

/// Runs everything; a row that fails is reported as failed, the others go on.
pub fn run_all(args: &Args) -> Report {
    let started = Instant::now();
    let load_before = shell("cut -d' ' -f1-3 /proc/loadavg");
    progress(started, "starting a private Dovecot (fsync on)");
    let dovecot = Dovecot::start_with(dovecot::Options {
        fsync: true,
        ..Default::default()
    });
    let scratch = tempfile::Builder::new()
        .prefix("mailferry-bench-")
        .tempdir_in("/tmp")
        .expect("create the bench scratch dir");
    let mut bench = Bench {
        dovecot,
        scratch,
        started,
        notes: Vec::new(),
    };
    let corpus = Corpus {
        mix: Mix::Realistic,
        seed: SEED,
    };
    let n = args.messages;
    bench.progress(&format!("generating and loading {n} messages"));
    let src = bench.dovecot.user("source");
    let loaded = bench.load(&src, corpus, n);
    bench.warm_up(&src);
    let corpus_text = format!(
        "{n} messages, {:.1} MB ({} of 2-50 KB, {} with a 1-5 MB attachment, {} of 20 MB), loaded into Maildir in {:.1} s",
        loaded.bytes as f64 / 1e6,
        loaded.small,
        loaded.attachments,
        loaded.huge,
        loaded.secs
    );
    // The short rows run ROUNDS times, interleaved, so that a burst of
    // other work on the machine does not decide a ratio alone.
    let mut rounds: Vec<Vec<Row>> = vec![Vec::new(); 5];
    for round in 1..=ROUNDS {
        bench.progress(&format!("round {round} of {ROUNDS}"));
        rounds[0].push(bench.raw_pop3(&src, n, loaded.bytes));
        rounds[1].push(bench.raw_imap(corpus, n, loaded.bytes));
        rounds[2].push(bench.raw_both(&src, corpus, n, loaded.bytes));
        rounds[3].push(bench.mailferry(&src, n, loaded.bytes));
        rounds[4].push(bench.naive(&src, n, loaded.bytes));
    }
    let mut rows: Vec<Row> = rounds.into_iter().map(median_row).collect();
    rows.extend(bench.chain(&src, n, loaded.bytes));
    rows.extend(bench.repoll(args.repoll));
    let rss_scaling = if args.scaling {
        bench.scaling()
    } else {
        Vec::new()
    };
    bench.progress("done; stopping Dovecot and removing its files");
    if std::env::var_os("MAILFERRY_BENCH_HOLD").is_some() {
        hold(&bench);
    }
    bench.notes.push(format!(
        "load average (1/5/15 min) before the run: {load_before}; after: {} (other work on the machine skews every row)",
        shell("cut -d' ' -f1-3 /proc/loadavg")
    ));
    bench.notes.push(
        "all sessions are TLS to 127.0.0.1 (test CA); clients and Dovecot share the same cores"
            .into(),
    );
    Report {
        date: shell("date -u '+%Y-%m-%d %H:%M UTC'"),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        server: format!(
            "Dovecot {} on 127.0.0.1, mail_fsync = optimized",
            shell("dovecot --version")
        ),
        corpus: corpus_text,
        rows,
        rss_scaling,
        notes: bench.notes,
    }
}

/// What loading a corpus found.
struct Loaded {
    bytes: u64,
    secs: f64,
    small: usize,
    attachments: usize,
    huge: usize,
}

impl Bench {
    fn progress(&self, what: &str) {
        progress(self.started, what);
    }

    fn dir(&self, name: &str) -> PathBuf {
        let dir = self.scratch.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a bench dir");
        dir
    }

    /// Generates and loads `n` messages of `corpus` into `user`'s INBOX.
    fn load(&self, user: &User, corpus: Corpus, n: usize) -> Loaded {
        let started = Instant::now();
        let mut loaded = Loaded {
            bytes: 0,
            secs: 0.0,
            small: 0,
            attachments: 0,
            huge: 0,
        };
        for start in (0..n).step_by(LOAD_CHUNK) {
            let chunk: Vec<Vec<u8>> = (start..n.min(start + LOAD_CHUNK))
                .map(|i| corpus.message(i, n))
                .collect();
            for m in &chunk {
                loaded.bytes += m.len() as u64;
                match m.len() {
                    l if l >= HUGE_BYTES - 1024 => loaded.huge += 1,
                    l if l >= 1 << 20 => loaded.attachments += 1,
                    _ => loaded.small += 1,
                }
            }
            self.dovecot.load(user, "INBOX", &chunk);
        }
        loaded.secs = started.elapsed().as_secs_f64();
        loaded
    }

    /// One untimed login + UIDL, so Dovecot's index of the maildrop exists
    /// before any row is timed (every row then starts equally warm).
    fn warm_up(&self, user: &User) {
        let job = Job::Uidl {
            pop: self.pop(user),
        };
        if let Err(why) = crate::jobs::run(&job) {
            panic!("warm-up UIDL failed: {why}\n{}", self.dovecot.log_tail(20));
        }
    }

    fn pop(&self, user: &User) -> Login {
        self.login(user, self.dovecot.pop3s_port())
    }

    fn imap(&self, user: &User) -> Login {
        self.login(user, self.dovecot.imaps_port())
    }

    fn login(&self, user: &User, port: u16) -> Login {
        Login {
            port,
            user: user.name.clone(),
            password: user.password.clone(),
            ca_file: self.dovecot.ca_file(),
        }
    }

    /// Runs `job` in a child process under `/usr/bin/time -v`.
    fn child(&self, job: &Job) -> Result<(JobResult, Measured), String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let spec = serde_json::to_string(job).expect("JSON of a job");
        let args: Vec<OsString> = vec!["child".into(), spec.into()];
        let run = tools::timed(self.scratch.path(), &exe, &args, &[])?.check("bench child")?;
        let result = serde_json::from_str(run.stdout.trim())
            .map_err(|e| format!("child printed no result ({e}): {}", run.stdout))?;
        Ok((result, run))
    }

    /// Messages in `user`'s INBOX on disk (file count: cheap for 100k).
    fn count(&self, user: &User) -> usize {
        count_maildir(&self.dovecot.maildir_root(user))
    }

    fn expect_count(&self, user: &User, want: usize, what: &str) -> Result<(), String> {
        match self.count(user) {
            got if got == want => Ok(()),
            got => Err(format!(
                "{what}: {got} messages on the target, {want} expected"
            )),
        }
    }

    fn raw_pop3(&self, src: &User, n: usize, bytes: u64) -> Row {
        const LABEL: &str = "1a raw POP3 RETR, pipelined, discarded";
        self.progress(LABEL);
        let job = Job::PopRetr {
            pop: self.pop(src),
            messages: n as u32,
        };
        let measured = self.child(&job).and_then(|(got, run)| {
            if got.messages != n as u64 || got.bytes != bytes {
                return Err(format!(
                    "RETR gave {} messages / {} bytes, loaded {n} / {bytes}",
                    got.messages, got.bytes
                ));
            }
            Ok(Row {
                key: "raw-pop3",
                label: LABEL.into(),
                messages: got.messages,
                bytes,
                secs: got.secs,
                peak_rss_kib: Some(run.rss_kib),
                note: "first RETR to last byte; window 32 msgs / 8 MB".into(),
                error: None,
            })
        });
        measured.unwrap_or_else(|e| Row::failed("raw-pop3", LABEL, e))
    }

    fn raw_imap(&self, corpus: Corpus, n: usize, bytes: u64) -> Row {
        const LABEL: &str = "1b raw IMAP MULTIAPPEND+LITERAL+ from memory";
        self.progress(LABEL);
        let dst = self.dovecot.user("raw-imap");
        let job = Job::ImapAppend {
            imap: self.imap(&dst),
            corpus,
            messages: n,
        };
        let measured = self.child(&job).and_then(|(got, run)| {
            self.expect_count(&dst, n, "raw APPEND")?;
            Ok(Row {
                key: "raw-imap",
                label: LABEL.into(),
                messages: got.messages,
                bytes,
                secs: got.secs,
                peak_rss_kib: Some(run.rss_kib),
                note: "first APPEND to last OK; RSS holds the whole corpus".into(),
                error: None,
            })
        });
        measured.unwrap_or_else(|e| Row::failed("raw-imap", LABEL, e))
    }

    fn raw_both(&self, src: &User, corpus: Corpus, n: usize, bytes: u64) -> Row {
        const LABEL: &str = "1c raw 1a and 1b at once";
        self.progress(LABEL);
        let dst = self.dovecot.user("raw-both");
        let job = Job::Both {
            pop: self.pop(src),
            imap: self.imap(&dst),
            corpus,
            messages: n,
        };
        let measured = self.child(&job).and_then(|(got, run)| {
            self.expect_count(&dst, n, "raw both")?;
            if got.bytes != bytes {
                return Err(format!("RETR gave {} bytes, loaded {bytes}", got.bytes));
            }
            Ok(Row {
                key: "raw-both",
                label: LABEL.into(),
                messages: got.messages,
                bytes,
                secs: got.secs,
                peak_rss_kib: Some(run.rss_kib),
                note: "both from one start to the later end: the servers' ceiling together on these cores".into(),
                error: None,
            })
        });
        measured.unwrap_or_else(|e| Row::failed("raw-both", LABEL, e))
    }

    fn mailferry(&self, src: &User, n: usize, bytes: u64) -> Row {
        const LABEL: &str = "2  mailferry sync (release, fresh ledger)";
        self.progress(LABEL);
        let dst = self.dovecot.user("mailferry");
        let config = tools::mailferry_config(&self.dir("mailferry"), &self.dovecot, src, &dst);
        let measured =
            tools::mailferry_sync(self.scratch.path(), &config, &[]).and_then(|(run, copied)| {
                if copied != n as u64 {
                    return Err(format!("copied {copied} of {n}"));
                }
                self.expect_count(&dst, n, "mailferry")?;
                Ok(Row {
                    key: "mailferry",
                    label: LABEL.into(),
                    messages: copied,
                    bytes,
                    secs: run.wall,
                    peak_rss_kib: Some(run.rss_kib),
                    note: "whole process; delete = never".into(),
                    error: None,
                })
            });
        measured.unwrap_or_else(|e| Row::failed("mailferry", LABEL, e))
    }

    fn naive(&self, src: &User, n: usize, bytes: u64) -> Row {
        const LABEL: &str = "3  naive copier, one message at a time";
        self.progress(LABEL);
        let dst = self.dovecot.user("naive");
        let job = Job::Naive {
            pop: self.pop(src),
            imap: self.imap(&dst),
            messages: n as u32,
        };
        let measured = self.child(&job).and_then(|(got, run)| {
            self.expect_count(&dst, n, "naive")?;
            Ok(Row {
                key: "naive",
                label: LABEL.into(),
                messages: got.messages,
                bytes,
                secs: run.wall,
                peak_rss_kib: Some(run.rss_kib),
                note: "RETR; APPEND, wait for +, wait for OK; TCP_NODELAY".into(),
                error: None,
            })
        });
        measured.unwrap_or_else(|e| Row::failed("naive", LABEL, e))
    }

    /// Rows 4, 4a, 4b: getmail6 into a local Maildir, then mbsync up.
    fn chain(&mut self, src: &User, n: usize, bytes: u64) -> Vec<Row> {
        const LABEL: &str = "4  getmail6 + mbsync (Debian packages)";
        self.progress(LABEL);
        match self.try_chain(src, n, bytes) {
            Ok(rows) => rows,
            Err(e) => vec![Row::failed("getmail+mbsync", LABEL, e)],
        }
    }

    fn try_chain(&mut self, src: &User, n: usize, bytes: u64) -> Result<Vec<Row>, String> {
        for tool in ["getmail", "mbsync"] {
            if !tools::installed(tool) {
                return Err(format!(
                    "{tool} is not installed (scripts/bench installs it)"
                ));
            }
        }
        let dir = self.dir("chain");
        let maildir = dir.join("Maildir");
        let home = tools::getmail_config(&dir, &self.dovecot, src, &maildir);
        let dst = self.dovecot.user("mbsync");
        let rc = tools::mbsync_config(&dir, &self.dovecot, &dst, &maildir);
        // getmail refuses to deliver as root: both tools run as the
        // unprivileged mail user, as a real user would run them.
        tools::give_to_mail_user(&dir)?;
        let args = tools::as_mail_user(
            "getmail",
            &[
                "--getmaildir".into(),
                home.into(),
                "--rcfile".into(),
                "getmailrc".into(),
                "--quiet".into(),
            ],
        );
        // getmail6 forks a delivery child per message and can miss its
        // SIGCHLD (a lost wake-up: "waiting child pid N timed out"), more
        // often on a busy machine. Such a run is retried on an empty Maildir.
        let mut attempt = 1;
        let getmail = loop {
            let run = tools::timed(self.scratch.path(), Path::new("setpriv"), &args, &[])?;
            let raced = !run.success && run.stderr.contains("timed out");
            if !raced || attempt == GETMAIL_ATTEMPTS {
                break run.check("getmail")?;
            }
            self.notes.push(format!(
                "getmail6 attempt {attempt} lost a delivery child (\"waiting child pid .. timed out\") after {:.1} s; retried",
                run.wall
            ));
            for sub in ["cur", "new", "tmp"] {
                let d = maildir.join(sub);
                std::fs::remove_dir_all(&d).map_err(|e| format!("empty {}: {e}", d.display()))?;
            }
            tools::getmail_config(&dir, &self.dovecot, src, &maildir);
            tools::give_to_mail_user(&dir)?;
            attempt += 1;
        };
        match count_maildir(&maildir) {
            got if got == n => {}
            got => return Err(format!("getmail fetched {got} of {n}")),
        }
        let args = tools::as_mail_user(
            "mbsync",
            &["-c".into(), rc.into(), "-q".into(), "push".into()],
        );
        let mbsync =
            tools::timed(self.scratch.path(), Path::new("setpriv"), &args, &[])?.check("mbsync")?;
        self.expect_count(&dst, n, "mbsync")?;
        let row = |key, label: &str, secs, rss, note: &str| Row {
            key,
            label: label.into(),
            messages: n as u64,
            bytes,
            secs,
            peak_rss_kib: Some(rss),
            note: note.into(),
            error: None,
        };
        Ok(vec![
            row(
                "getmail+mbsync",
                "4  getmail6 + mbsync (Debian packages)",
                getmail.wall + mbsync.wall,
                getmail.rss_kib.max(mbsync.rss_kib),
                "sum of both processes; RSS the larger; TLS both",
            ),
            row(
                "getmail",
                "   4a getmail6 POP3 -> Maildir",
                getmail.wall,
                getmail.rss_kib,
                "SimplePOP3SSLRetriever, read_all, no delete",
            ),
            row(
                "mbsync",
                "   4b mbsync Maildir -> IMAP",
                mbsync.wall,
                mbsync.rss_kib,
                "Sync Push, IMAPS",
            ),
        ])
    }

    /// Rows 5a and 5b: a settled leave-on-server maildrop of `r` small
    /// messages, re-polled by mailferry, next to a bare login + UIDL.
    fn repoll(&mut self, r: usize) -> Vec<Row> {
        const LABEL: &str = "5a mailferry no-op re-poll";
        self.progress(&format!("loading {r} small messages for the re-poll"));
        match self.try_repoll(r) {
            Ok(rows) => rows,
            Err(e) => vec![Row::failed("repoll-mailferry", LABEL, e)],
        }
    }

    fn try_repoll(&mut self, r: usize) -> Result<Vec<Row>, String> {
        let small = Corpus {
            mix: Mix::Small,
            seed: SEED,
        };
        let src = self.dovecot.user("repoll");
        let loaded = self.load(&src, small, r);
        self.notes.push(format!(
            "re-poll maildrop: {r} messages of 1-4 KB ({:.1} MB) written to Maildir in {:.1} s ({:.3} ms each)",
            loaded.bytes as f64 / 1e6,
            loaded.secs,
            loaded.secs * 1000.0 / r as f64
        ));
        let dst = self.dovecot.user("repoll-target");
        let config = tools::mailferry_config(&self.dir("repoll"), &self.dovecot, &src, &dst);
        self.progress("5  settling the re-poll maildrop (first sync copies everything)");
        let (settle, copied) = tools::mailferry_sync(self.scratch.path(), &config, &[])?;
        if copied != r as u64 {
            return Err(format!("the settling sync copied {copied} of {r}"));
        }
        self.notes.push(format!(
            "settling it (first mailferry sync, copies all {r}): {:.1} s, {:.0} msg/s, peak RSS {:.1} MB",
            settle.wall,
            r as f64 / settle.wall,
            settle.rss_kib as f64 / 1024.0
        ));
        self.progress("5a/5b no-op re-poll and login + UIDL, alternating");
        // Right after the settling sync Dovecot and the disk are still busy
        // (index and writeback): one untimed round first, then the two
        // measurements alternate so drift hits both alike.
        let (mut uidl, mut noop) = (Vec::new(), Vec::new());
        for round in 0..=REPOLL_RUNS {
            let job = Job::Uidl {
                pop: self.pop(&src),
            };
            let (got, uidl_run) = self.child(&job)?;
            if got.messages != r as u64 {
                return Err(format!("UIDL listed {} of {r}", got.messages));
            }
            let (noop_run, copied) = tools::mailferry_sync(self.scratch.path(), &config, &[])?;
            if copied != 0 {
                return Err(format!("the no-op re-poll copied {copied}"));
            }
            if round > 0 {
                uidl.push(uidl_run);
                noop.push(noop_run);
            }
        }
        let row = |key, label: String, runs: &mut Vec<Measured>, note: &str| {
            runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
            let median = &runs[runs.len() / 2];
            let all: Vec<String> = runs.iter().map(|m| format!("{:.2}", m.wall)).collect();
            Row {
                key,
                label,
                messages: r as u64,
                bytes: 0,
                secs: median.wall,
                peak_rss_kib: runs.iter().map(|m| m.rss_kib).max(),
                note: format!("{note}; median of {} s", all.join("/")),
                error: None,
            }
        };
        Ok(vec![
            row(
                "repoll-mailferry",
                format!("5a mailferry no-op re-poll, {r} settled"),
                &mut noop,
                "whole process, copies 0",
            ),
            row(
                "repoll-uidl",
                format!("5b login + UIDL + QUIT, {r} messages"),
                &mut uidl,
                "whole process",
            ),
        ])
    }

    /// mailferry's peak RSS and rate for 1,000 and 10,000 messages.
    fn scaling(&self) -> Vec<(u64, u64, f64)> {
        let corpus = Corpus {
            mix: Mix::Realistic,
            seed: SEED,
        };
        let mut out = Vec::new();
        for n in SCALING {
            self.progress(&format!("peak RSS of mailferry with {n} messages"));
            let src = self.dovecot.user(&format!("scale-{n}"));
            self.load(&src, corpus, n);
            self.warm_up(&src);
            let dst = self.dovecot.user(&format!("scale-{n}-target"));
            let config = tools::mailferry_config(
                &self.dir(&format!("scale-{n}")),
                &self.dovecot,
                &src,
                &dst,
            );
            match tools::mailferry_sync(self.scratch.path(), &config, &[]) {
                Ok((run, copied)) if copied == n as u64 => {
                    out.push((n as u64, run.rss_kib, n as f64 / run.wall));
                }
                Ok((_, copied)) => eprintln!("scaling {n}: copied {copied} of {n}"),
                Err(e) => eprintln!("scaling {n}: {e}"),
            }
        }
        out
    }
}

/// For profiling by hand: keeps Dovecot and the scratch dir (configs,
/// ledgers) until a line arrives on stdin.
fn hold(bench: &Bench) {
    eprintln!(
        "MAILFERRY_BENCH_HOLD: Dovecot {} (POP3S {}, IMAPS {}), scratch {}; press Enter to stop",
        bench.dovecot.dir().display(),
        bench.dovecot.pop3s_port(),
        bench.dovecot.imaps_port(),
        bench.scratch.path().display()
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// The run with the median time (a failed run, if any, wins: it must show),
/// its note saying what the other runs took.
fn median_row(mut runs: Vec<Row>) -> Row {
    if let Some(failed) = runs.iter().position(|r| r.error.is_some()) {
        return runs.swap_remove(failed);
    }
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let all: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.secs)).collect();
    let peak = runs.iter().filter_map(|r| r.peak_rss_kib).max();
    let mut median = runs.swap_remove(runs.len() / 2);
    median.note = format!("{}; median of {} s", median.note, all.join("/"));
    median.peak_rss_kib = peak;
    median
}

fn progress(started: Instant, what: &str) {
    eprintln!("[{:7.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Files in a Maildir's `cur/` and `new/`.
fn count_maildir(root: &Path) -> usize {
    ["cur", "new"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(root.join(sub)).ok())
        .map(|entries| entries.count())
        .sum()
}

/// One line of a shell command's output, or `?`.
fn shell(command: &str) -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}
