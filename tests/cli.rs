//! The command line as a user meets it: help, version, exit codes, and every
//! bad-config case giving exit 2 with one line naming the file and the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mailferry(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", cwd.join("xdg"))
        .output()
        .expect("run mailferry")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

const GOOD: &str = r#"
[[source]]
name = "old"
host = "pop.example.org"
username = "alice"
password = { env = "OLD_PASSWORD" }

[[target]]
name = "new"
host = "imap.example.com"
username = "alice@example.com"
password = { env = "NEW_PASSWORD" }

[[route]]
from = "old"
to = "new"
"#;

/// Runs `check` on `text` and returns (exit code, stderr).
fn check_text(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = mailferry(
        &["--config", path.to_str().unwrap(), "check", "--offline"],
        dir.path(),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_five_commands() {
    let out = mailferry(&["--help"], &examples());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["sync", "run", "status", "verify", "check"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing:\n{help}"
        );
    }
    let out = mailferry(&["--version"], &examples());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("mailferry "));
}

#[test]
fn usage_error_is_exit_2() {
    let out = mailferry(&["frobnicate"], &examples());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_example_config_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = mailferry(
                &["--config", path.to_str().unwrap(), "check", "--offline"],
                &examples(),
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{}: {err}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected the example configs, found {seen}");
}

#[test]
fn missing_config_says_which_paths_were_tried() {
    let dir = tempfile::tempdir().unwrap();
    let out = mailferry(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mailferry.toml") && err.contains("xdg/mailferry/config.toml"),
        "{err}"
    );
}

#[test]
fn bad_configs_exit_2_naming_the_key() {
    let cases: &[(&str, String)] = &[
        (
            "intervall",
            GOOD.replace("to = \"new\"\n", "to = \"new\"\nintervall = \"5m\"\n"),
        ),
        ("`name`", GOOD.replace("name = \"new\"", "name = \"old\"")),
        ("`to`", GOOD.replace("to = \"new\"", "to = \"nowhere\"")),
        (
            "`interval`",
            GOOD.replace("to = \"new\"\n", "to = \"new\"\ninterval = \"soon\"\n"),
        ),
        (
            "`security`",
            GOOD.replace(
                "username = \"alice\"",
                "username = \"alice\"\nsecurity = \"plain\"",
            ),
        ),
        (
            "`password`",
            GOOD.replace(
                "{ env = \"OLD_PASSWORD\" }",
                "{ file = \"/nonexistent/secret\" }",
            ),
        ),
        ("bad.toml:1:", "[[source]\n".to_string()),
    ];
    for (key, text) in cases {
        let (code, err) = check_text(text);
        assert_eq!(code, 2, "{key}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{key}: one line please: {err}"
        );
        assert!(err.contains("bad.toml"), "{key}: names the file: {err}");
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn secrets_never_reach_the_output() {
    // Loopback with nothing listening: logging in fails after the password
    // was resolved (and no name is looked up beyond this machine).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = GOOD
        .replace("{ env = \"NEW_PASSWORD\" }", "\"s3cret-inline\"")
        .replace(
            "host = \"pop.example.org\"",
            &format!("host = \"127.0.0.1\"\nport = {closed}"),
        )
        .replace(
            "host = \"imap.example.com\"",
            &format!("host = \"127.0.0.1\"\nport = {closed}"),
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    for args in [vec!["check"], vec!["--json", "check"], vec!["-vv", "check"]] {
        let mut all = vec!["--config", path.to_str().unwrap()];
        all.extend(args);
        let out = mailferry(&all, dir.path());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("s3cret-inline"), "{text}");
    }
}

#[test]
fn unknown_route_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = mailferry(
        &[
            "--config",
            path.to_str().unwrap(),
            "sync",
            "--route",
            "nope",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no route named \"nope\" (routes: old:new)")
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = mailferry(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("mailferry") && text.contains("dry-run"),
            "{shell}: {text}"
        );
    }
    let out = mailferry(&["man"], dir.path());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && page.contains(".TH mailferry 1"),
        "{page}"
    );
    assert!(page.contains("verify"), "{page}");
}

#[test]
fn ten_thousand_accounts_from_csv_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from(
        "source_host,source_user,source_password,target_host,target_user,target_password,mailbox\n",
    );
    for i in 0..10_000 {
        csv += &format!("pop{}.example.org,user{i},env:POP_{i},imap.example.com,user{i}@example.com,env:IMAP_{i},\n", i % 7);
    }
    std::fs::write(dir.path().join("accounts.csv"), csv).unwrap();
    let started = std::time::Instant::now();
    let out = mailferry(&["import-accounts", "accounts.csv"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported = started.elapsed();
    std::fs::write(dir.path().join("accounts.toml"), &out.stdout).unwrap();
    let started = std::time::Instant::now();
    let out = mailferry(
        &["--config", "accounts.toml", "--json", "check", "--offline"],
        dir.path(),
    );
    let loaded = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["routes"].as_array().unwrap().len(), 10_000);
    // Reported, not asserted: the machine's speed is not the test's business.
    println!(
        "import-accounts 10,000 rows: {imported:?}; check --offline of the result: {loaded:?}"
    );
}
