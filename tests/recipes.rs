//! The README's two provider recipes ("Replace Gmail's POP fetcher", "Feed
//! Microsoft 365"), followed step by step as a new user would: copy the
//! example file, make the edits the recipe names, run its commands with the
//! real binary in a fresh directory. Only the servers differ: a private
//! Dovecot (oauth2 passdb) and a loopback token server stand in for Google
//! and Microsoft, through the few overrides listed in `to_test_servers`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::dovecot::{Dovecot, User};
use support::e2e::{as_copied, corpus_with_big, sorted};
use support::token_server::{http_get, OAuthRig};

/// How long one command may run, and how long `run` gets to copy new mail.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

type Rig = OAuthRig;

/// One Dovecot that takes the token server's access tokens (as in
/// tests/oauth.rs, see notes/dovecot-oauth2.md), shared by both recipes.
fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| OAuthRig::start("recipes"))
}

/// The example file as shipped.
fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `old` (which must occur exactly once) by `new`: an example that
/// changed shape fails here, loudly, instead of being edited silently wrong.
fn edit(text: &str, old: &str, new: &str) -> String {
    let n = text.matches(old).count();
    assert_eq!(
        n, 1,
        "the example should hold `{old}` exactly once:\n{text}"
    );
    text.replace(old, new)
}

/// The one line of `text` starting (after indentation) with `start`.
fn line_starting<'a>(text: &'a str, start: &str) -> &'a str {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(start))
        .collect();
    assert_eq!(lines.len(), 1, "one line starting `{start}`:\n{text}");
    lines[0]
}

/// The README recipe under `### {heading}`, up to the next heading.
fn recipe(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n### {heading}\n"))
        .unwrap_or_else(|| panic!("README has no recipe {heading:?}"));
    let body = &readme[start + heading.len() + 6..];
    body[..body.find("\n#").unwrap_or(body.len())].to_string()
}

/// Fails unless the recipe tells the user to run each of `commands`.
fn assert_recipe_says(recipe: &str, commands: &[&str]) {
    for command in commands {
        let quoted = format!("`mailferry {command}`");
        assert!(
            recipe.contains(&quoted),
            "the recipe says {quoted}:\n{recipe}"
        );
    }
}

/// The recipe's `export A=… B=…`, each name given its value from `values`:
/// a variable the example reads but the recipe never exports is missing
/// from the environment, as it would be for the user.
fn exported(recipe: &str, values: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let start = recipe
        .find("`export ")
        .unwrap_or_else(|| panic!("the recipe exports nothing:\n{recipe}"));
    let line = &recipe[start + 8..];
    let line = &line[..line.find('`').unwrap()];
    line.split_whitespace()
        .map(|word| {
            let name = word.split('=').next().unwrap();
            values
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("the test has no value for {name}"))
                .clone()
        })
        .collect()
}

/// Adds `keys` (`, k = v, ..`) to the example's one-line `oauth = { .. }`
/// table (an inline table cannot be added to by later lines).
fn add_to_oauth(config: &str, keys: &str) -> String {
    let line = line_starting(config, "oauth = {");
    let table_end = line.rfind(" }").expect("the oauth table ends on its line");
    let new = format!("{}{keys}{}", &line[..table_end], &line[table_end..]);
    edit(config, line, &new)
}

/// What differs from real life, and nothing else: the target is the test
/// Dovecot instead of imap.gmail.com / outlook.office365.com, the old ISP's
/// server listens on an ephemeral port instead of 995, both present a
/// certificate from the test CA instead of a publicly trusted one, and the
/// OAuth endpoints are the loopback token server instead of Google's or
/// Microsoft's (Google has no `device_url` to replace).
fn to_test_servers(config: &str, target: &str, device: bool) -> String {
    let rig = rig();
    let d = &rig.dovecot;
    let ca = d.ca_file().display().to_string();
    // Source: the old ISP's port, and its CA (its host is a recipe edit).
    let source_host = line_starting(config, "host = \"127.0.0.1\"");
    let config = edit(
        config,
        source_host,
        &format!(
            "{source_host}\nport = {}\nca_file = \"{ca}\"",
            d.pop3s_port()
        ),
    );
    // Target: the host and port the preset names, and the CA.
    let name = line_starting(&config, &format!("name = \"{target}\""));
    let config = edit(
        &config,
        name,
        &format!(
            "{name}\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{ca}\"",
            d.imaps_port()
        ),
    );
    // OAuth: the provider's endpoints.
    let t = &rig.tokens;
    let mut endpoints = format!(
        ", auth_url = \"{}\", token_url = \"{}\"",
        t.url("/authorize"),
        t.url("/token")
    );
    if device {
        endpoints += &format!(", device_url = \"{}\"", t.url("/device"));
    }
    add_to_oauth(&config, &endpoints)
}

/// A fresh directory holding `mailferry.toml`, where the recipe's commands
/// run exactly as typed: no `--config`, the secrets in the environment.
struct Shell {
    dir: tempfile::TempDir,
    /// Only what the recipe exports (the secrets the examples read are
    /// never inherited from the test's own environment).
    env: Vec<(&'static str, String)>,
    runs: u32,
}

impl Shell {
    fn new(config: &str, env: Vec<(&'static str, String)>) -> Shell {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mailferry.toml"), config).unwrap();
        Shell { dir, env, runs: 0 }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `mailferry ARGS` with stdout piped and stderr to a file.
    fn spawn(&mut self, args: &[&str]) -> (Child, PathBuf) {
        self.runs += 1;
        let stderr = self.path(&format!("stderr-{}.txt", self.runs));
        let child = Command::new(env!("CARGO_BIN_EXE_mailferry"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("OLD_ISP_PASSWORD")
            .env_remove("GMAIL_CLIENT_SECRET")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start mailferry");
        (child, stderr)
    }

    /// `mailferry ARGS` to the end, within the deadline: (code, stdout, stderr).
    fn run(&mut self, args: &[&str]) -> (i32, String, String) {
        let (mut child, stderr) = self.spawn(args);
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(out), &mut text);
            text
        });
        let code = wait_exit(&mut child, COMMAND_DEADLINE, args);
        let stdout = reader.join().unwrap();
        (code, stdout, std::fs::read_to_string(stderr).unwrap())
    }
}

/// Waits for `child` to exit, at most `limit`; kills it and fails otherwise.
fn wait_exit(child: &mut Child, limit: Duration, what: &[&str]) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailferry {what:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child's stdout lines, read on a thread so waits can have deadlines.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line matching `what`, within 60 s and 200 lines; `seen`
/// collects every line read, for the caller's assertions.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..200 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no such line ({e}); printed:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if what(&line) {
            return line;
        }
    }
    panic!("no such line in 200; printed:\n{}", seen.join("\n"));
}

/// Every message of `mail` on `user`'s INBOX exactly once, byte-equal to
/// its copy, and nothing else.
fn assert_exactly_once(d: &Dovecot, user: &User, mail: &[Vec<u8>]) {
    let want = sorted(mail.iter().map(|m| as_copied(m)).collect());
    let got = sorted(d.messages(user, "INBOX"));
    assert!(
        got == want,
        "target holds {} messages, {} wanted, each once and byte-equal",
        got.len(),
        want.len()
    );
}

/// `check`, `sync --dry-run`, `sync`, `auth status`, then `run` for as long
/// as it takes to copy a second batch: the steps both recipes end with.
fn check_sync_run(sh: &mut Shell, src: &User, dst: &User, target: &str, tag: &str) {
    let d = &rig().dovecot;
    let mail = corpus_with_big(tag, 12, 2_000);
    d.load(src, "INBOX", &mail);

    let (code, out, err) = sh.run(&["check"]);
    assert_eq!(code, 0, "check: exit 0\n{out}\n{err}");
    assert!(out.contains(&format!("target \"{target}\": ok")), "{out}");
    assert!(out.contains("source \"old-isp\": ok"), "{out}");

    let (code, out, err) = sh.run(&["sync", "--dry-run"]);
    assert_eq!(code, 0, "sync --dry-run: exit 0\n{out}\n{err}");
    assert!(out.contains("would copy"), "{out}");
    assert_eq!(d.count(dst, "INBOX"), 0, "--dry-run appended nothing");
    assert_eq!(d.messages(src, "INBOX"), mail, "--dry-run deleted nothing");

    let (code, out, err) = sh.run(&["sync"]);
    assert_eq!(code, 0, "sync: exit 0\n{out}\n{err}");
    assert!(out.contains(&format!("copied {}", mail.len())), "{out}");
    assert_exactly_once(d, dst, &mail);
    assert_eq!(
        d.messages(src, "INBOX"),
        mail,
        "the old account keeps its mail"
    );

    let (code, out, err) = sh.run(&["auth", "status"]);
    assert_eq!(code, 0, "auth status: exit 0\n{out}\n{err}");
    assert!(
        out.contains("signed in") && out.contains("valid until"),
        "auth status shows until when the token is valid:\n{out}"
    );

    // New mail arrives at the old account; `run` picks it up.
    let later = corpus_with_big(&format!("{tag}-later"), 3, 10);
    d.load(src, "INBOX", &later);
    let all: Vec<Vec<u8>> = mail.iter().chain(&later).cloned().collect();
    let (mut daemon, log) = sh.spawn(&["run"]);
    let deadline = Instant::now() + COMMAND_DEADLINE;
    while d.count(dst, "INBOX") < all.len() && Instant::now() < deadline {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "run stopped by itself:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "SIGTERM sent");
    let code = wait_exit(&mut daemon, Duration::from_secs(30), &["run"]);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "run stops on SIGTERM with exit 0\n{log}");
    assert_exactly_once(d, dst, &all);
}

/// README "Replace Gmail's POP fetcher", steps 2 to 5.
#[test]
fn gmail_recipe_works_as_written() {
    let rig = rig();
    let (src, dst) = (rig.dovecot.user("old-alice"), rig.dovecot.user("gmail"));
    let recipe = recipe("Replace Gmail's POP fetcher");
    assert_recipe_says(
        &recipe,
        &[
            "auth login gmail",
            "check",
            "sync --dry-run",
            "sync",
            "run",
            "auth status",
        ],
    );

    // Step 2: cp examples/gmail-target.toml mailferry.toml; set the old POP3
    // account's host and username, the Gmail username and the client_id;
    // export the variables the recipe names.
    let config = example("gmail-target.toml");
    let config = edit(
        &config,
        "host = \"pop.old-isp.example\"",
        "host = \"127.0.0.1\"",
    );
    let config = edit(
        &config,
        "username = \"alice\"",
        &format!("username = \"{}\"", src.name),
    );
    let config = edit(
        &config,
        "username = \"alice@gmail.com\"",
        &format!("username = \"{}\"", dst.name),
    );
    let config = edit(
        &config,
        "client_id = \"1234567890-abc.apps.googleusercontent.com\"",
        "client_id = \"recipe-gmail\"",
    );
    let config = to_test_servers(&config, "gmail", false);
    let env = exported(
        &recipe,
        &[
            ("GMAIL_CLIENT_SECRET", "recipe-gmail-secret".to_string()),
            ("OLD_ISP_PASSWORD", src.password.clone()),
        ],
    );
    let mut sh = Shell::new(&config, env);

    // Step 3: `mailferry auth login gmail`; the test is the browser.
    let (mut child, stderr) = sh.spawn(&["auth", "login", "gmail"]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let url = wait_line(&rx, &mut seen, |l| l.trim_start().starts_with("http"));
    let url = url.trim();
    assert!(url.starts_with(&rig.tokens.url("/authorize?")), "{url}");
    for preset in ["access_type=offline", "prompt=consent", "mail.google.com"] {
        assert!(url.contains(preset), "the Gmail preset's {preset}: {url}");
    }
    let (status, headers) = http_get(url);
    assert_eq!(status, 302, "the sign-in page sends the browser back");
    let (status, _) = http_get(&headers["location"]);
    assert_eq!(status, 200, "mailferry's loopback page");
    let signed = wait_line(&rx, &mut seen, |l| l.starts_with("signed in: "));
    assert!(signed.contains("refresh token kept"), "{signed}");
    let code = wait_exit(&mut child, COMMAND_DEADLINE, &["auth", "login"]);
    let err = std::fs::read_to_string(stderr).unwrap();
    assert_eq!(code, 0, "auth login: exit 0\n{err}");
    assert_eq!(rig.tokens.user_stats(&dst.name).codes_exchanged, 1);
    assert!(sh.path("state/gmail.oauth.json").is_file());

    // Steps 4 and 5.
    check_sync_run(&mut sh, &src, &dst, "gmail", "gmail");
}

/// README "Feed Microsoft 365", steps 2 to 4, for an old POP3 account (so
/// the app was granted only IMAP, step 1).
#[test]
fn microsoft365_recipe_works_as_written() {
    let rig = rig();
    let (src, dst) = (rig.dovecot.user("old-bob"), rig.dovecot.user("m365"));
    let recipe = recipe("Feed Microsoft 365");
    assert_recipe_says(
        &recipe,
        &[
            "auth login m365 --device",
            "check",
            "sync --dry-run",
            "sync",
            "run",
        ],
    );

    // Step 2: cp examples/microsoft365-target.toml mailferry.toml; set the
    // old account's host and username, the user's address and client_id;
    // only IMAP granted, so the recipe's scopes; export what it names.
    let config = example("microsoft365-target.toml");
    let config = edit(
        &config,
        "host = \"pop.old-isp.example\"",
        "host = \"127.0.0.1\"",
    );
    let config = edit(
        &config,
        "username = \"bob\"",
        &format!("username = \"{}\"", src.name),
    );
    let config = edit(
        &config,
        "username = \"bob@contoso.example\"",
        &format!("username = \"{}\"", dst.name),
    );
    let config = edit(
        &config,
        "client_id = \"00000000-0000-0000-0000-000000000000\"",
        "client_id = \"recipe-m365\"",
    );
    let scopes = recipe
        .split('`')
        .find(|s| s.starts_with("scopes = ["))
        .unwrap_or_else(|| panic!("the recipe gives the IMAP-only scopes:\n{recipe}"));
    let config = add_to_oauth(&config, &format!(", {scopes}"));
    let config = to_test_servers(&config, "m365", true);
    let env = exported(&recipe, &[("OLD_ISP_PASSWORD", src.password.clone())]);
    let mut sh = Shell::new(&config, env);

    // Step 3: `mailferry auth login m365 --device`; the test is the user
    // entering the printed code at the printed address.
    let (mut child, stderr) = sh.spawn(&["auth", "login", "m365", "--device"]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let visit = wait_line(&rx, &mut seen, |l| l.contains("visit "));
    assert!(visit.contains(&rig.tokens.url("/device/verify")), "{visit}");
    let code_line = wait_line(&rx, &mut seen, |l| l.trim_start().starts_with("UC-"));
    rig.tokens.approve_device(code_line.trim(), &dst.name);
    let signed = wait_line(&rx, &mut seen, |l| l.starts_with("signed in: "));
    assert!(signed.contains("refresh token kept"), "{signed}");
    let code = wait_exit(&mut child, COMMAND_DEADLINE, &["auth", "login"]);
    let err = std::fs::read_to_string(stderr).unwrap();
    assert_eq!(code, 0, "auth login --device: exit 0\n{err}");
    assert_eq!(rig.tokens.user_stats(&dst.name).device_grants, 1);

    // Step 4.
    check_sync_run(&mut sh, &src, &dst, "m365", "m365");
}
