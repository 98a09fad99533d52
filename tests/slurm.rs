//! Shards run by a real workload manager (#16): a private one-node Slurm
//! runs `mailferry --shard` as a job array against the private Dovecot.
//!
//! 1. `sbatch --array=0-3` of `mailferry --shard auto --json sync`: every
//!    message exactly once on every target, each task took exactly its
//!    shard's routes, `status --merge` of the four ledgers is the sum.
//! 2. New mail, and one target's password made wrong: the whole array of
//!    `examples/slurm/migrate.sbatch` runs again and exactly the task of
//!    that target's shard exits 3.
//! 3. The password fixed, only that shard is submitted again
//!    (`--array=<i>`): the end state is every message exactly once.
//!
//! Never skipped: a missing Slurm is installed (as root) or the test fails.
//! On the way it times the 4-task array against one process on the same
//! amount of mail (another set of users); run with `--nocapture` to see.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailferry::config::Config;
use mailferry::shard::Shard;
use support::dovecot::{shared, Dovecot, User};
use support::e2e::{as_copied, corpus_with_big, mailferry, sorted, write_config, RouteSpec};
use support::slurm::{alive, JobEnd, Slurm};

const SHARDS: u32 = 4;
const ARRAY_TIMEOUT: Duration = Duration::from_secs(120);

/// Twelve sources into eleven targets (the last two sources share a target
/// mailbox, so they must land in one shard), and the mail loaded so far.
struct Migration {
    sources: Vec<User>,
    targets: Vec<User>,
    /// Per source, every message loaded into it.
    mail: Vec<Vec<Vec<u8>>>,
    dir: PathBuf,
    config: PathBuf,
}

impl Migration {
    fn new(dovecot: &Dovecot, set: &str, parent: &Path) -> Migration {
        let sources: Vec<User> = (0..12)
            .map(|i| dovecot.user(&format!("{set}s{i}")))
            .collect();
        let targets: Vec<User> = (0..11)
            .map(|i| dovecot.user(&format!("{set}t{i}")))
            .collect();
        let routes: Vec<RouteSpec<'_>> = sources
            .iter()
            .enumerate()
            .map(|(i, from)| RouteSpec {
                from,
                to: &targets[i.min(10)],
                mailbox: "INBOX",
                delete: "\"after-copy\"",
            })
            .collect();
        let dir = parent.join(set);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let config = write_config(&dir, dovecot, &routes);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("ledger.db", "ledger-{shard}.db");
        write_protected(&config, &text);
        let mut migration = Migration {
            mail: vec![Vec::new(); sources.len()],
            sources,
            targets,
            dir,
            config,
        };
        migration.load(dovecot, set);
        migration
    }

    /// Loads a fresh batch of mail into every source.
    fn load(&mut self, dovecot: &Dovecot, tag: &str) {
        for (i, user) in self.sources.iter().enumerate() {
            let m = corpus_with_big(&format!("{tag}-{i}"), 8, 2_000);
            dovecot.load(user, "INBOX", &m);
            self.mail[i].extend(m);
        }
    }

    fn total(&self) -> u64 {
        self.mail.iter().map(Vec::len).sum::<usize>() as u64
    }

    /// Every loaded message exactly once, byte-equal, on its target; every
    /// source empty.
    fn check_exactly_once(&self, dovecot: &Dovecot, when: &str) {
        for (t, user) in self.targets.iter().enumerate() {
            let mut want: Vec<Vec<u8>> = self.mail[t].iter().map(|m| as_copied(m)).collect();
            if t == 10 {
                want.extend(self.mail[11].iter().map(|m| as_copied(m)));
            }
            let got = sorted(dovecot.messages(user, "INBOX"));
            assert!(
                got == sorted(want.clone()),
                "{when}: target {t} holds {} messages, {} wanted",
                got.len(),
                want.len()
            );
        }
        for (s, user) in self.sources.iter().enumerate() {
            assert_eq!(dovecot.count(user, "INBOX"), 0, "{when}: source {s}");
        }
    }

    /// The route names of shard `index` of [`SHARDS`], as mailferry
    /// computes them.
    fn shard_routes(&self, index: u32) -> BTreeSet<String> {
        let config = Config::load(&self.config).expect("load the test config");
        let shard = Shard {
            index,
            count: SHARDS,
        };
        shard
            .routes(&config)
            .into_iter()
            .map(|i| config.routes[i].name.clone())
            .collect()
    }

    /// `status --merge` over the four ledgers: copied, summed over routes.
    fn merged_copied(&self) -> u64 {
        let ledgers: Vec<String> = (0..SHARDS)
            .map(|i| {
                self.dir
                    .join(format!("ledger-{i}.db"))
                    .display()
                    .to_string()
            })
            .collect();
        let mut args = vec!["--json", "status", "--merge"];
        args.extend(ledgers.iter().map(String::as_str));
        let (code, out, err) = mailferry(&self.config, &args);
        assert_eq!(code, 0, "status --merge: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        doc["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["copied"].as_u64().unwrap())
            .sum()
    }

    /// Rewrites the config with `user`'s password replaced.
    fn set_password(&self, user: &User, password: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let mut found = 0;
        let text: String = text
            .lines()
            .map(|line| {
                // The wrong password contains the right one.
                if line.starts_with("password = ") && line.contains(&user.password) {
                    found += 1;
                    format!("password = \"{password}\"\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        assert_eq!(found, 1, "one password line for {}", user.name);
        write_protected(&self.config, &text);
    }
}

/// The config holds passwords: mode 0600, as the example tells users.
fn write_protected(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// One task's `--json sync` report: route name -> copied.
fn task_report(path: &Path) -> BTreeMap<String, u64> {
    let out = std::fs::read_to_string(path).unwrap_or_default();
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: {e}: {out:?}", path.display()));
    doc["routes"]
        .as_array()
        .unwrap_or_else(|| panic!("no routes in {doc}"))
        .iter()
        .map(|r| {
            (
                r["report"]["route"].as_str().unwrap().to_string(),
                r["report"]["counts"]["copied"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Every task's exit code, and its log if it is not `want`.
fn assert_exits(dir: &Path, prefix: &str, ends: &BTreeMap<u32, JobEnd>, want: &[(u32, i32)]) {
    let got: Vec<(u32, i32)> = ends.iter().map(|(t, e)| (*t, e.exit_code)).collect();
    let logs: String = ends
        .iter()
        .map(|(t, e)| {
            let base = format!("{prefix}-{}_{t}", e.array_job_id.unwrap_or(0));
            format!(
                "--- task {t}: {} exit {}\n{}{}",
                e.state,
                e.exit_code,
                read(&dir.join(format!("logs/{base}.err"))),
                read(&dir.join(format!("logs/{base}.out")))
            )
        })
        .collect();
    assert_eq!(got, want, "task exit codes\n{logs}");
}

fn seconds(line: &str, key: &str) -> Option<f64> {
    line.strip_prefix(key)?.trim().parse().ok()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_slurm_job_array_migrates_every_shard_exactly_once_and_reruns_a_failed_one() {
    let dovecot = shared();
    let slurm = Slurm::start();
    let pids = slurm.pids().expect("running");
    let work = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_mailferry");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/migrate.sbatch");
    let mut a = Migration::new(dovecot, "a", work.path());
    let b = Migration::new(dovecot, "b", work.path());
    let all: Vec<u32> = (0..SHARDS).collect();

    // 1. The whole array, --shard auto (index and count from Slurm).
    let wrap = format!(
        "echo start $(date +%s.%N) >&2; {bin} --config {} --shard auto --json sync; c=$?; echo end $(date +%s.%N) >&2; exit $c",
        a.config.display()
    );
    let submitted = Instant::now();
    let submitted_at = unix_now();
    let job = slurm.sbatch(
        &a.dir,
        &[],
        &[
            &format!("--array=0-{}", SHARDS - 1),
            "--output=logs/auto-%A_%a.out",
            "--error=logs/auto-%A_%a.err",
            "--wrap",
            &wrap,
        ],
    );
    let ends = slurm.wait_array(job, &all, ARRAY_TIMEOUT);
    let array_time = submitted.elapsed();
    let done_at = unix_now();
    let want: Vec<(u32, i32)> = all.iter().map(|&t| (t, 0)).collect();
    assert_exits(&a.dir, "auto", &ends, &want);
    let mut copied = 0;
    let mut shard_of_route = BTreeMap::new();
    let (mut first_start, mut last_end, mut busy) = (f64::MAX, 0f64, 0f64);
    for t in &all {
        let report = task_report(&a.dir.join(format!("logs/auto-{job}_{t}.out")));
        let names: BTreeSet<String> = report.keys().cloned().collect();
        assert_eq!(
            names,
            a.shard_routes(*t),
            "task {t} ran exactly shard {t}/4"
        );
        for (name, n) in report {
            copied += n;
            shard_of_route.insert(name, *t);
        }
        let log = read(&a.dir.join(format!("logs/auto-{job}_{t}.err")));
        let start = log.lines().find_map(|l| seconds(l, "start")).unwrap();
        let end = log.lines().find_map(|l| seconds(l, "end")).unwrap();
        first_start = first_start.min(start);
        last_end = last_end.max(end);
        busy += end - start;
    }
    assert_eq!(shard_of_route.len(), 12, "every route in some shard");
    assert_eq!(copied, a.total(), "the tasks' reports add up");
    a.check_exactly_once(dovecot, "after the array");
    assert_eq!(a.merged_copied(), a.total(), "status --merge is the sum");

    // The same amount of mail, one process, no Slurm.
    let single = Instant::now();
    let (code, _, err) = mailferry(&b.config, &["--json", "sync"]);
    let single_time = single.elapsed();
    assert_eq!(code, 0, "{err}");
    b.check_exactly_once(dovecot, "one process");
    eprintln!(
        "timing, {} messages over 12 routes: array of {SHARDS} on 2 CPUs {:.2} s \
         (submit to first task start {:.2} s, first start to last end {:.2} s, \
         tasks busy {:.2} s in all, last end to seen done {:.2} s); one process {:.2} s",
        a.total(),
        array_time.as_secs_f64(),
        first_start - submitted_at,
        last_end - first_start,
        busy,
        done_at - last_end,
        single_time.as_secs_f64()
    );

    // 2. New mail, and the shared target's password wrong: the example
    // script over the whole array; exactly that shard's task exits 3.
    a.load(dovecot, "round2");
    let broken = &a.targets[10];
    let failing = shard_of_route[&format!("{}-{}-INBOX", a.sources[11].name, broken.name)];
    a.set_password(broken, &format!("wrong-{}", broken.password));
    let shards = SHARDS.to_string();
    let config = a.config.display().to_string();
    let env = [
        ("MAILFERRY", bin),
        ("MAILFERRY_SHARDS", shards.as_str()),
        ("MAILFERRY_CONFIG", config.as_str()),
    ];
    let array = format!("--array=0-{}", SHARDS - 1);
    let script_arg = script.display().to_string();
    let job = slurm.sbatch(&a.dir, &env, &[&array, &script_arg]);
    let ends = slurm.wait_array(job, &all, ARRAY_TIMEOUT);
    let want: Vec<(u32, i32)> = all
        .iter()
        .map(|&t| (t, if t == failing { 3 } else { 0 }))
        .collect();
    assert_exits(&a.dir, "mailferry", &ends, &want);
    assert_eq!(ends[&failing].state, "FAILED");
    // The script's recipe without accounting: the logs whose last line is
    // not "… exit 0" name the shards to run again.
    let from_logs: Vec<u32> = all
        .iter()
        .copied()
        .filter(|t| {
            !read(&a.dir.join(format!("logs/mailferry-{job}_{t}.err")))
                .trim_end()
                .ends_with(" exit 0")
        })
        .collect();
    assert_eq!(from_logs, vec![failing], "failed shards from the logs");

    // 3. Fixed, and only the failed shard again.
    a.set_password(broken, &broken.password);
    let rerun = format!("--array={failing}");
    let job = slurm.sbatch(&a.dir, &env, &[&rerun, &script_arg]);
    let ends = slurm.wait_array(job, &[failing], ARRAY_TIMEOUT);
    assert_exits(&a.dir, "mailferry", &ends, &[(failing, 0)]);
    let report = task_report(&a.dir.join(format!("logs/mailferry-{job}_{failing}.out")));
    assert_eq!(
        report.keys().cloned().collect::<BTreeSet<_>>(),
        a.shard_routes(failing),
        "the re-run took shard {failing} only"
    );
    a.check_exactly_once(dovecot, "after the re-run");
    assert_eq!(a.merged_copied(), a.total(), "status --merge is the sum");

    // Tear-down: no daemon of this instance is left.
    slurm.stop();
    assert!(
        pids.iter().all(|&p| !alive(p)),
        "munged/slurmctld/slurmd {pids:?} still running"
    );
}

/// The example's two places for N agree (`--array=0-(N-1)` and `SHARDS`),
/// and bash parses it.
#[test]
fn the_example_job_array_covers_exactly_its_shards() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm/migrate.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    let last: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array=0-"))
        .and_then(|n| n.trim().parse().ok())
        .expect("#SBATCH --array=0-<N-1>");
    let shards: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("SHARDS=${MAILFERRY_SHARDS:-"))
        .and_then(|n| n.trim().trim_end_matches('}').parse().ok())
        .expect("SHARDS=${MAILFERRY_SHARDS:-N}");
    assert_eq!(last + 1, shards, "--array=0-{last} but SHARDS={shards}");
    assert!(text.contains("--shard \"$task/$SHARDS\""));
    for per_task in ["#SBATCH --output=", "#SBATCH --error="] {
        let line = text.lines().find(|l| l.starts_with(per_task)).unwrap();
        assert!(line.contains("%A_%a"), "{line}: one file per task");
    }
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
