//! A private one-node Slurm (slurmctld + slurmd + its own munged) for one test, in its own directory.
//!
//! The recipe is `/work/shared/notes/slurm-on-one-machine.md` (Debian 12,
//! slurm 22.05, root, no systemd). What this adds to it:
//!
//! - The packages are installed with apt when missing (root only; `apt-get
//!   update` only when the install fails without it). A missing Slurm is
//!   never a reason to skip: it is installed, or the test fails.
//! - `SLURM_CONF` is set on each client [`Command`] ([`Slurm::command`]),
//!   never in this process's environment: tests run in parallel threads.
//! - Ports: two free ones, picked by binding `0.0.0.0:0` (slurmctld binds
//!   the wildcard address even with `NoInAddrAny`); a start that loses a
//!   port to someone else is retried on fresh ones.
//! - Network: the host namespace, loopback only (`NoInAddrAny`: slurmd binds
//!   127.0.0.1; slurmctld still binds 0.0.0.0, as the note says, but only a
//!   holder of this instance's munge key can talk to it). Not `unshare -n`:
//!   the jobs must reach the test's Dovecot on the host's 127.0.0.1.
//! - The daemons run under a shell watchdog (as in `watchdog.rs`): its stdin
//!   is a pipe only this process writes, so when the test ends in any way —
//!   drop, panic, `kill -9` — the shell cancels every job, runs `scontrol
//!   shutdown`, stops munged, kills what is left of this instance (by pid,
//!   and slurmstepd by its `SLURM_CONF`), and removes the directory. Every
//!   wait in it and here is bounded.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The Debian packages, and a file each installs.
const PACKAGES: [(&str, &str); 4] = [
    ("slurmctld", "/usr/sbin/slurmctld"),
    ("slurmd", "/usr/sbin/slurmd"),
    ("slurm-client", "/usr/bin/sbatch"),
    ("munge", "/usr/sbin/munged"),
];
/// How long the node may take to show `idle` (about 1 s in the note).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start attempts, each on fresh ports.
const START_ATTEMPTS: usize = 3;
/// How long the watchdog may take to stop everything before the leftovers
/// are killed by pid from here.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// One client command (sbatch, squeue, …) may take this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `$1` = instance directory. SLURM_CONF is in the environment. Prints the
/// pids of munged, slurmctld and slurmd on one line, then waits for EOF on
/// stdin and tears everything down, each step bounded.
const SCRIPT: &str = r#"
D="$1"
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'; }
gone() { # wait up to $1 tenths of a second for the pids $2.. to exit
  n=$1; shift
  while [ "$n" -gt 0 ]; do
    any=""; for p in "$@"; do alive "$p" && any=1; done
    [ -z "$any" ] && return 0
    sleep 0.1; n=$((n - 1))
  done
  return 1
}
munged -F --key-file="$D/munge/munge.key" --socket="$D/munge/munge.sock" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
  --seed-file="$D/munge/munged.seed" >>"$D/log/munged.err" 2>&1 &
m=$!
n=100; while [ ! -S "$D/munge/munge.sock" ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
slurmctld -D >>"$D/log/ctld.err" 2>&1 &
c=$!
slurmd -D -N localhost >>"$D/log/slurmd.err" 2>&1 &
s=$!
echo "$m $c $s"
exec >/dev/null
trap '' INT HUP TERM
cat >/dev/null
if alive "$c"; then
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u)
  [ -n "$jobs" ] && timeout 10 scancel $jobs 2>/dev/null
  n=50; while [ -n "$(timeout 5 squeue -h 2>/dev/null)" ] && [ $n -gt 0 ]; do sleep 0.2; n=$((n - 1)); done
  timeout 10 scontrol shutdown >/dev/null 2>&1
fi
gone 100 "$c" "$s" || kill -KILL "$c" "$s" 2>/dev/null
# slurmstepd processes of this instance (not children of this shell) carry its SLURM_CONF.
for p in /proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
  tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$D/slurm.conf" && kill -KILL "${p#/proc/}" 2>/dev/null
done
kill "$m" 2>/dev/null
gone 50 "$m" || kill -KILL "$m" 2>/dev/null
wait
rm -rf "$D"
"#;

/// A running private Slurm. Stopped, and its directory removed, on drop —
/// or by its watchdog when the test process dies.
pub struct Slurm {
    dir: PathBuf,
    conf: PathBuf,
    ctld_port: u16,
    slurmd_port: u16,
    watchdog: Mutex<Option<Watched>>,
}

struct Watched {
    child: Child,
    stdin: ChildStdin,
    /// munged, slurmctld, slurmd.
    pids: [u32; 3],
}

/// One finished job or array task, from the jobcomp file.
#[derive(Clone, Debug)]
pub struct JobEnd {
    pub job_id: u32,
    pub array_job_id: Option<u32>,
    pub array_task_id: Option<u32>,
    /// COMPLETED, FAILED, CANCELLED, TIMEOUT, …
    pub state: String,
    /// The batch script's exit code (`ExitCode=3:0` → 3).
    pub exit_code: i32,
    /// Every `key=value` of the line.
    pub fields: BTreeMap<String, String>,
}

impl Slurm {
    /// Installs Slurm if needed and starts a fresh instance; panics (with
    /// the logs) if the node is not idle within 30 s.
    pub fn start() -> Slurm {
        ensure_installed();
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Slurm::try_start() {
                Ok(slurm) => return slurm,
                Err(why) => last = why,
            }
        }
        panic!("slurm did not start in {START_ATTEMPTS} attempts:\n{last}");
    }

    fn try_start() -> Result<Slurm, String> {
        let dir = tempfile::Builder::new()
            .prefix("mailferry-slurm-")
            .tempdir_in("/tmp")
            .expect("create the slurm instance dir in /tmp")
            .keep();
        // munged wants execute permission for all on every dir above its socket.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .expect("make the slurm dir traversable");
        for sub in ["state", "spool", "log", "run", "munge"] {
            fs::create_dir_all(dir.join(sub)).expect("create the slurm layout");
        }
        fs::set_permissions(dir.join("munge"), fs::Permissions::from_mode(0o755))
            .expect("chmod the munge dir");
        let key = dir.join("munge/munge.key");
        let out = Command::new("mungekey")
            .arg("-c")
            .arg("-k")
            .arg(&key)
            .output()
            .expect("run mungekey");
        assert!(out.status.success(), "mungekey: {}", text(&out));
        let (ctld_port, slurmd_port) = free_ports();
        let conf = dir.join("slurm.conf");
        fs::write(&conf, render_conf(&dir, ctld_port, slurmd_port)).expect("write slurm.conf");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("mailferry-slurm-watchdog")
            .arg(&dir)
            .env("SLURM_CONF", &conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh for the slurm watchdog");
        let stdin = child.stdin.take().expect("watchdog stdin is piped");
        let pids = read_pids(&mut child);
        let slurm = Slurm {
            dir,
            conf,
            ctld_port,
            slurmd_port,
            watchdog: Mutex::new(Some(Watched { child, stdin, pids })),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let state = slurm
                .run(
                    slurm
                        .command("sinfo")
                        .args(["-h", "-n", "localhost", "-o", "%T"]),
                )
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .unwrap_or_default();
            if state == "idle" {
                return Ok(slurm);
            }
            let logs = slurm.logs();
            let dead = pids.iter().any(|&p| !alive(p));
            if dead || logs.contains("Address already in use") || Instant::now() > deadline {
                return Err(format!(
                    "node state {state:?} (a daemon exited: {dead}):\n{logs}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client command (`sbatch`, `squeue`, `scontrol`, …) for this
    /// instance: `SLURM_CONF` set on the command, not on this process.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// Runs a client command with a deadline; its output, or why not.
    pub fn run(&self, command: &mut Command) -> Result<Output, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {command:?}: {e}"))?;
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} took over {CLIENT_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().map_err(|e| e.to_string())
    }

    /// `sbatch --parsable <args>` from `workdir`; the job id. `env` is added
    /// to the job's environment (sbatch exports the submitter's).
    pub fn sbatch(&self, workdir: &Path, env: &[(&str, &str)], args: &[&str]) -> u32 {
        let mut command = self.command("sbatch");
        command.current_dir(workdir).arg("--parsable").args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let out = self
            .run(&mut command)
            .unwrap_or_else(|e| panic!("sbatch: {e}\n{}", self.logs()));
        assert!(
            out.status.success(),
            "sbatch {args:?}: {}\n{}",
            text(&out),
            self.logs()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout.trim().split(';').next().unwrap_or("");
        id.parse()
            .unwrap_or_else(|_| panic!("sbatch printed {stdout:?}, not a job id"))
    }

    /// Every finished job and array task so far, in the order they ended.
    pub fn finished(&self) -> Vec<JobEnd> {
        let text = fs::read_to_string(self.dir.join("log/jobcomp.txt")).unwrap_or_default();
        text.lines().filter_map(parse_jobcomp).collect()
    }

    /// Waits until every task in `tasks` of array job `array_job` has ended
    /// and left the queue; their ends, by task index. Panics with the logs
    /// after `timeout`.
    pub fn wait_array(
        &self,
        array_job: u32,
        tasks: &[u32],
        timeout: Duration,
    ) -> BTreeMap<u32, JobEnd> {
        let deadline = Instant::now() + timeout;
        loop {
            let ends: BTreeMap<u32, JobEnd> = self
                .finished()
                .into_iter()
                .filter(|e| e.array_job_id == Some(array_job))
                .filter_map(|e| e.array_task_id.map(|t| (t, e)))
                .collect();
            let done = tasks.iter().all(|t| ends.contains_key(t));
            if done && self.queued(array_job).is_empty() {
                return ends;
            }
            assert!(
                Instant::now() < deadline,
                "array job {array_job} (tasks {tasks:?}) not done within {timeout:?}; ended: {:?}\nqueue: {}\n{}",
                ends.keys().collect::<Vec<_>>(),
                self.queued(array_job),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `squeue` lines of one job (empty once it has left the queue).
    pub fn queued(&self, job: u32) -> String {
        self.run(
            self.command("squeue")
                .args(["-h", "-j", &job.to_string()])
                .args(["-o", "%i %T %r"]),
        )
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
    }

    /// The instance directory (slurm.conf, log/, state/, …).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// slurm.conf, for `SLURM_CONF`.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// slurmctld's and slurmd's ports.
    pub fn ports(&self) -> (u16, u16) {
        (self.ctld_port, self.slurmd_port)
    }

    /// The pids of munged, slurmctld and slurmd while running.
    pub fn pids(&self) -> Option<[u32; 3]> {
        let guard = self.watchdog.lock().expect("watchdog lock poisoned");
        guard.as_ref().map(|w| w.pids)
    }

    /// The tails of every daemon log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in [
            "log/ctld.err",
            "log/slurmctld.log",
            "log/slurmd.err",
            "log/slurmd.log",
            "log/munged.err",
            "munge/munged.log",
        ] {
            let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            all += &format!("--- {name}\n{tail}\n");
        }
        all
    }

    /// Stops everything (see the module doc) and waits for it, bounded;
    /// what is still alive after [`STOP_GRACE`] is killed by pid.
    pub fn stop(&self) {
        let taken = self.watchdog.lock().expect("watchdog lock poisoned").take();
        let Some(Watched {
            mut child,
            stdin,
            pids,
        }) = taken
        else {
            return;
        };
        drop(stdin);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in pids {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True while `pid` runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            !matches!(state.split_whitespace().next(), Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}

/// Installs the packages that are missing (as root), once per process.
fn ensure_installed() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return;
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "slurm is missing ({missing:?}) and only root can install it: run as root or apt-get install {}",
            missing.join(" ")
        );
        let install = || {
            Command::new("timeout")
                .args(["600", "apt-get", "install", "-y", "-qq"])
                .args(["--no-install-recommends", "-o", "DPkg::Lock::Timeout=120"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .expect("run apt-get install")
        };
        let mut out = install();
        if !out.status.success() {
            let update = Command::new("timeout")
                .args(["300", "apt-get", "update", "-qq"])
                .args(["-o", "DPkg::Lock::Timeout=120"])
                .output()
                .expect("run apt-get update");
            assert!(update.status.success(), "apt-get update: {}", text(&update));
            out = install();
        }
        assert!(
            out.status.success(),
            "apt-get install {missing:?}: {}",
            text(&out)
        );
    }
    for (package, file) in PACKAGES {
        assert!(Path::new(file).exists(), "{package} installed no {file}");
    }
    *installed = true;
}

/// Two distinct ports free on every address (slurmctld binds 0.0.0.0).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("0.0.0.0:0").expect("bind an ephemeral port");
    let b = std::net::TcpListener::bind("0.0.0.0:0").expect("bind an ephemeral port");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("bound port").port();
    (port(&a), port(&b))
}

/// slurm.conf as the note has it: one key=value per line.
fn render_conf(dir: &Path, ctld_port: u16, slurmd_port: u16) -> String {
    let d = dir.display();
    format!(
        "ClusterName=mailferry
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.sock
CommunicationParameters=NoInAddrAny
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
MinJobAge=4
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"
    )
}

/// The watchdog's first line: the pids of munged, slurmctld, slurmd.
fn read_pids(child: &mut Child) -> [u32; 3] {
    let stdout = child.stdout.take().expect("watchdog stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the daemon pids from the watchdog");
    let pids: Vec<u32> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.try_into()
        .unwrap_or_else(|_| panic!("watchdog printed {line:?}, not three pids"))
}

/// One jobcomp/filetxt line: `JobId=5 UserId=root(0) … JobState=FAILED …
/// ExitCode=3:0 … ArrayJobId=1 ArrayTaskId=2 …`.
fn parse_jobcomp(line: &str) -> Option<JobEnd> {
    let fields: BTreeMap<String, String> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let number = |key: &str| fields.get(key).and_then(|v| v.parse::<u32>().ok());
    let exit_code = fields
        .get("ExitCode")
        .and_then(|v| v.split(':').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    Some(JobEnd {
        job_id: number("JobId")?,
        array_job_id: number("ArrayJobId").filter(|&id| id != 0),
        // Not an array task: NO_VAL (0xfffffffe) or absent.
        array_task_id: number("ArrayTaskId").filter(|&id| id < 0xffff_fff0),
        state: fields.get("JobState")?.clone(),
        exit_code,
        fields,
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
