//! Config validation tests: every bad input gives one line naming file, line and key.

use super::*;

const GOOD: &str = r#"
[ledger]
path = "state/test.db"

[[source]]
name = "old"
host = "pop.example.org"
username = "alice"
password = { env = "OLD_PASSWORD" }

[[target]]
name = "new"
host = "imap.example.com"
security = "starttls"
username = "alice@example.com"
password = "inline-secret"

[[route]]
from = "old"
to = "new"
delete = { after_days = 14 }
interval = "10m"
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/etc/mailferry/test.toml"))
}

fn error(text: &str) -> String {
    let err = load(text)
        .expect_err("config should be refused")
        .to_string();
    assert!(!err.contains('\n'), "error must be one line: {err}");
    assert!(
        err.starts_with("/etc/mailferry/test.toml"),
        "error must name the file: {err}"
    );
    err
}

#[test]
fn good_config_gets_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.ledger_path, Path::new("/etc/mailferry/state/test.db"));
    let s = &c.sources[0];
    assert_eq!(
        (s.port, s.security, s.auth),
        (995, Security::Tls, AuthMechanism::Login)
    );
    assert_eq!(s.timeout, Duration::from_secs(60));
    assert_eq!(c.targets[0].port, 143);
    let r = &c.routes[0];
    assert_eq!(r.name, "old:new");
    assert_eq!(r.mailbox, "INBOX");
    assert_eq!(r.delete, DeletePolicy::AfterDays(14));
    assert_eq!(r.interval, Duration::from_secs(600));
    assert_eq!(r.identity, IdentityRule::Content);
    assert_eq!(r.max_attempts, 3);
    assert!(
        !format!("{c:?}").contains("inline-secret"),
        "Debug must hide secrets"
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = error(&GOOD.replace("interval = \"10m\"", "intervall = \"10m\""));
    assert!(err.contains("intervall"), "{err}");
    assert!(err.contains(":22:1:"), "line of the key: {err}");
}

#[test]
fn invalid_toml_names_the_line() {
    let err = error("[[source]\nname = 1\n");
    assert!(err.contains(":1:"), "{err}");
}

#[test]
fn duplicate_account_name() {
    // Names are unique across sources and targets, so `check` and logs are unambiguous.
    let err = error(&GOOD.replace("name = \"new\"", "name = \"old\""));
    assert!(err.contains("duplicate account name \"old\""), "{err}");
    assert!(err.contains("`name`"), "{err}");
}

#[test]
fn route_naming_unknown_account() {
    let err = error(&GOOD.replace("to = \"new\"", "to = \"nowhere\""));
    assert!(
        err.contains("`to`") && err.contains("\"nowhere\"") && err.contains("known: new"),
        "{err}"
    );
    assert!(err.contains(":20:"), "{err}");
}

#[test]
fn max_attempts_is_at_least_one() {
    let text = GOOD.replace("interval = \"10m\"", "interval = \"10m\"\nmax_attempts = 5");
    assert_eq!(load(&text).unwrap().routes[0].max_attempts, 5);
    let err = error(&GOOD.replace("interval = \"10m\"", "interval = \"10m\"\nmax_attempts = 0"));
    assert!(
        err.contains("`max_attempts`") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn bad_duration() {
    let err = error(&GOOD.replace("\"10m\"", "\"ten minutes\""));
    assert!(
        err.contains("`interval`") && err.contains("invalid duration"),
        "{err}"
    );
    let err = error(&GOOD.replace(
        "username = \"alice\"",
        "username = \"alice\"\ntimeout = \"0s\"",
    ));
    assert!(err.contains("`timeout`"), "{err}");
}

#[test]
fn plain_needs_allow_plaintext() {
    let text = GOOD.replace("security = \"starttls\"", "security = \"plain\"");
    let err = error(&text);
    assert!(
        err.contains("`security`") && err.contains("allow_plaintext"),
        "{err}"
    );
    let ok = load(&text.replace(
        "security = \"plain\"",
        "security = \"plain\"\nallow_plaintext = true",
    ))
    .unwrap();
    assert_eq!(ok.targets[0].port, 143);
}

#[test]
fn unreadable_password_file() {
    let text = GOOD.replace(
        "{ env = \"OLD_PASSWORD\" }",
        "{ file = \"/nonexistent/pw\" }",
    );
    let err = error(&text);
    assert!(
        err.contains("`password`") && err.contains("/nonexistent/pw"),
        "{err}"
    );
}

#[test]
fn password_table_forms() {
    for (form, want) in [
        ("{ env = \"\" }", "`env` is empty"),
        ("{ command = [] }", "`command` needs a program"),
        ("{ env = \"A\", file = \"b\" }", "only one password source"),
        ("{ vault = \"x\" }", "vault"),
        ("42", "a string, or one of"),
    ] {
        let err = error(&GOOD.replace("{ env = \"OLD_PASSWORD\" }", form));
        assert!(err.contains(want), "{form}: {err}");
    }
}

#[test]
fn bad_delete_policy() {
    let err = error(&GOOD.replace("{ after_days = 14 }", "\"sometimes\""));
    assert!(
        err.contains("sometimes") && err.contains("after-copy"),
        "{err}"
    );
    let err = error(&GOOD.replace("{ after_days = 14 }", "{ after_days = -1 }"));
    assert!(err.contains(":21:"), "{err}");
}

#[test]
fn bad_pin_and_good_pin() {
    let text = GOOD.replace(
        "username = \"alice\"",
        "username = \"alice\"\ntls_pin_sha256 = \"abc\"",
    );
    let err = error(&text);
    assert!(err.contains("`tls_pin_sha256`"), "{err}");
    let pin = ["ab"; 32].join(":");
    let c = load(&text.replace("\"abc\"", &format!("\"{pin}\""))).unwrap();
    assert_eq!(c.sources[0].tls_pin_sha256, Some([0xab; 32]));
}

#[test]
fn crlf_in_username_or_mailbox() {
    let err = error(&GOOD.replace("username = \"alice\"", "username = \"al\\r\\nice\""));
    assert!(err.contains("`username`"), "{err}");
    let err = error(&GOOD.replace("to = \"new\"", "to = \"new\"\nmailbox = \"A\\nB\""));
    assert!(err.contains("`mailbox`"), "{err}");
}

#[test]
fn duplicate_route_needs_a_name() {
    let route = "\n[[route]]\nfrom = \"old\"\nto = \"new\"\n";
    let err = error(&format!("{GOOD}{route}"));
    assert!(err.contains("defined twice"), "{err}");
    let ok = load(&format!("{GOOD}{route}name = \"second\"\n")).unwrap();
    assert_eq!(ok.routes[1].name, "second");
    assert!(ok.select_routes(&["second".into()]).is_ok());
    assert!(ok
        .select_routes(&["third".into()])
        .unwrap_err()
        .contains("old:new, second"));
}

#[test]
fn apop_is_for_sources_only() {
    let err = error(&GOOD.replace(
        "password = \"inline-secret\"",
        "password = \"x\"\nauth = \"apop\"",
    ));
    assert!(err.contains("`auth`"), "{err}");
}

#[tokio::test]
async fn secrets_resolve_without_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\n").unwrap();
    let got = PasswordSource::File(file).resolve("acct").await.unwrap();
    assert_eq!(got.expose(), "from-file");
    let cmd = PasswordSource::Command(vec!["sh".into(), "-c".into(), "echo tok; echo more".into()]);
    assert_eq!(cmd.resolve("acct").await.unwrap().expose(), "tok");
    let fail =
        PasswordSource::Command(vec!["sh".into(), "-c".into(), "echo leaked; exit 3".into()]);
    let err = fail.resolve("acct").await.unwrap_err().to_string();
    assert!(err.contains("acct") && !err.contains("leaked"), "{err}");
    let missing = PasswordSource::Env("MAILFERRY_TEST_SURELY_UNSET".into());
    let err = missing.resolve("acct").await.unwrap_err().to_string();
    assert!(err.contains("MAILFERRY_TEST_SURELY_UNSET"), "{err}");
}

#[test]
fn max_line_length_has_a_floor_and_reaches_the_account() {
    let err = error(&GOOD.replace(
        "username = \"alice\"",
        "username = \"alice\"\nmax_line_length = 512",
    ));
    assert!(
        err.contains("`max_line_length`") && err.contains("\"old\"") && err.contains("1024"),
        "{err}"
    );
    let ok = load(&GOOD.replace(
        "username = \"alice\"",
        "username = \"alice\"\nmax_line_length = 2048",
    ))
    .unwrap();
    assert_eq!(ok.sources[0].max_line_length, Some(2048));
    assert_eq!(ok.targets[0].max_line_length, None);
}
