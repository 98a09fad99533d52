//! OAuth end to end: a token server in the test, a real Dovecot whose oauth2
//! passdb asks it, and the real binary signing in (browser and device flow),
//! logging in with XOAUTH2 and OAUTHBEARER over TLS and STARTTLS, migrating
//! with access tokens that last 2 s, and failing clearly on a revoked
//! refresh token. No token may appear in any output, log or ledger.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use support::dovecot::User;
use support::e2e::{check_migrated, corpus_with_big, mailferry, spawn_mailferry};
use support::token_server::{http_get, OAuthRig};

type Rig = OAuthRig;

/// One Dovecot with the oauth2 passdb and one token server for all tests.
fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| OAuthRig::start("oauth"))
}

/// How one account in a test config connects and signs in.
struct Acct<'a> {
    table: &'a str,
    name: &'a str,
    user: &'a User,
    port: u16,
    security: &'a str,
    auth: &'a str,
    client_id: &'a str,
    token_file: &'a Path,
    token_url: Option<String>,
}

fn account_toml(rig: &Rig, a: &Acct<'_>) -> String {
    let t = &rig.tokens;
    let token_url = a.token_url.clone().unwrap_or_else(|| t.url("/token"));
    format!(
        "\n[[{}]]\nname = \"{}\"\nhost = \"localhost\"\nport = {}\nsecurity = \"{}\"\nusername = \"{}\"\nauth = \"{}\"\nca_file = \"{}\"\ntimeout = \"20s\"\noauth = {{ client_id = \"{}\", token_file = \"{}\", auth_url = \"{}\", token_url = \"{}\", device_url = \"{}\", scopes = [\"mail\"] }}\n",
        a.table,
        a.name,
        a.port,
        a.security,
        a.user.name,
        a.auth,
        rig.dovecot.ca_file().display(),
        a.client_id,
        a.token_file.display(),
        t.url("/authorize"),
        token_url,
        t.url("/device"),
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("mailferry.toml");
    let text = format!(
        "[ledger]\npath = \"{}\"\n{body}",
        dir.join("ledger.db").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A token file holding only a refresh token, as after a sign-in whose
/// access token has expired.
fn seed_token_file(path: &Path, refresh: &str) {
    let json = serde_json::json!({ "refresh_token": refresh, "expires_at": 0 });
    std::fs::write(path, json.to_string()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Reads a child's stdout lines on a thread, so a test can wait for one
/// with a deadline.
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

fn wait_line(rx: &mpsc::Receiver<String>, what: impl Fn(&str) -> bool) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("mailferry printed the sign-in instructions");
        if what(&line) {
            return line;
        }
    }
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails if any token the server handed out is in `text`.
fn assert_no_token(rig: &Rig, what: &str, text: &[u8]) {
    for token in rig.tokens.issued() {
        let hit = text.windows(token.len()).any(|w| w == token.as_bytes());
        assert!(!hit, "{what} contains the token {token}");
    }
}

#[test]
fn sign_in_by_browser_and_device_then_log_in_every_way() {
    let rig = rig();
    let (src, dst) = (rig.dovecot.user("osrc"), rig.dovecot.user("odst"));
    let dir = tempfile::tempdir().unwrap();
    let (src_tokens, dst_tokens) = (dir.path().join("src.json"), dir.path().join("dst.json"));
    let d = &rig.dovecot;
    let accounts = [
        (
            "source",
            "src-tls",
            &src,
            d.pop3s_port(),
            "tls",
            "xoauth2",
            &src_tokens,
        ),
        (
            "source",
            "src-stls",
            &src,
            d.pop3_port(),
            "starttls",
            "oauthbearer",
            &src_tokens,
        ),
        (
            "target",
            "dst-tls",
            &dst,
            d.imaps_port(),
            "tls",
            "oauthbearer",
            &dst_tokens,
        ),
        (
            "target",
            "dst-stls",
            &dst,
            d.imap_port(),
            "starttls",
            "xoauth2",
            &dst_tokens,
        ),
    ];
    let body: String = accounts
        .iter()
        .map(|(table, name, user, port, security, auth, file)| {
            account_toml(
                rig,
                &Acct {
                    table,
                    name,
                    user,
                    port: *port,
                    security,
                    auth,
                    client_id: "mailferry-test",
                    token_file: file,
                    token_url: None,
                },
            )
        })
        .collect();
    let config = write_config(dir.path(), &body);

    // Browser: the test fetches the printed URL and follows the redirect.
    let mut child = spawn_mailferry(&config, &["-vv", "auth", "login", "src-tls"]);
    let rx = lines(&mut child);
    let url = wait_line(&rx, |l| l.trim_start().starts_with("http://"));
    let (status, headers) = http_get(url.trim());
    assert_eq!(status, 302, "authorize redirects");
    let (status, _) = http_get(&headers["location"]);
    assert_eq!(status, 200, "the loopback page");
    let signed = wait_line(&rx, |l| l.starts_with("signed in"));
    let (code, stderr_browser) = finish(child);
    assert_eq!(code, 0, "{stderr_browser}");
    assert!(signed.contains("refresh token kept"), "{signed}");

    // Device flow: the test approves the printed code as the user.
    let mut child = spawn_mailferry(&config, &["-vv", "auth", "login", "dst-tls", "--device"]);
    let rx = lines(&mut child);
    let code_line = wait_line(&rx, |l| l.trim_start().starts_with("UC-"));
    rig.tokens.approve_device(code_line.trim(), &dst.name);
    wait_line(&rx, |l| l.starts_with("signed in"));
    let (code, stderr_device) = finish(child);
    assert_eq!(code, 0, "{stderr_device}");
    let (s, d) = (
        rig.tokens.user_stats(&src.name),
        rig.tokens.user_stats(&dst.name),
    );
    assert_eq!(s.codes_exchanged, 1, "code exchanged, PKCE checked: {s:?}");
    assert_eq!(d.device_grants, 1, "{d:?}");
    for file in [&src_tokens, &dst_tokens] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }

    // Every mechanism over TLS and STARTTLS, POP3 and IMAP.
    let (code, out, err) = mailferry(&config, &["-vv", "--json", "check"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ok: Vec<&str> = doc["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["ok"] == true)
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(ok, ["src-tls", "src-stls", "dst-tls", "dst-stls"], "{out}");

    let (code, status, status_err) = mailferry(&config, &["--json", "auth", "status"]);
    assert_eq!(code, 0, "{status_err}");
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    let rows = doc["accounts"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r["signed_in"] == true
            && r["access_token_valid"] == true
            && r["refresh_token"] == true),
        "{status}"
    );
    let (code, human, _) = mailferry(&config, &["auth", "status"]);
    assert_eq!(code, 0);
    assert!(human.contains("valid until"), "{human}");

    for (what, text) in [
        ("auth login stderr", stderr_browser.as_bytes()),
        ("auth login --device stderr", stderr_device.as_bytes()),
        ("check -vv stderr", err.as_bytes()),
        ("check stdout", out.as_bytes()),
        ("auth status --json", status.as_bytes()),
        ("auth status", human.as_bytes()),
    ] {
        assert_no_token(rig, what, text);
    }
}

#[test]
fn migration_with_two_second_tokens_never_fails_a_login() {
    let rig = rig();
    let (src, dst) = (rig.dovecot.user("esrc"), rig.dovecot.user("edst"));
    rig.tokens
        .set_lifetime("short-lived", Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let (src_tokens, dst_tokens) = (dir.path().join("src.json"), dir.path().join("dst.json"));
    seed_token_file(&src_tokens, &rig.tokens.grant(&src.name, "short-lived"));
    seed_token_file(&dst_tokens, &rig.tokens.grant(&dst.name, "short-lived"));
    let d = &rig.dovecot;
    let acct = |table, name, user, port, auth, file| {
        account_toml(
            rig,
            &Acct {
                table,
                name,
                user,
                port,
                security: "tls",
                auth,
                client_id: "short-lived",
                token_file: file,
                token_url: None,
            },
        )
    };
    let body = acct(
        "source",
        "src",
        &src,
        d.pop3s_port(),
        "xoauth2",
        &src_tokens,
    ) + &acct(
        "target",
        "dst",
        &dst,
        d.imaps_port(),
        "oauthbearer",
        &dst_tokens,
    ) + "\n[[route]]\nfrom = \"src\"\nto = \"dst\"\ndelete = \"after-copy\"\n";
    let config = write_config(dir.path(), &body);

    // 300 messages in 6 rounds; between rounds every token expires.
    let mail = corpus_with_big("oauth", 294, 2_000);
    let mut logs = Vec::new();
    for chunk in mail.chunks(50) {
        d.load(&src, "INBOX", chunk);
        let (code, out, err) = mailferry(&config, &["-vv", "--json", "sync"]);
        assert_eq!(code, 0, "{out}\n{err}");
        logs.push(out);
        logs.push(err);
        std::thread::sleep(Duration::from_millis(2_100));
    }
    // Lower-level logins too: each with a token fetched then.
    for _ in 0..3 {
        let (code, out, err) = mailferry(&config, &["-vv", "check"]);
        assert_eq!(code, 0, "{out}\n{err}");
        logs.push(err);
        std::thread::sleep(Duration::from_millis(2_100));
    }
    check_migrated(d, (&src, &dst), "INBOX", &mail).unwrap();
    for user in [&src, &dst] {
        let stats = rig.tokens.user_stats(&user.name);
        assert_eq!(
            stats.introspected_rejected, 0,
            "no expired token: {stats:?}"
        );
        assert!(stats.introspected_ok >= 9, "many logins: {stats:?}");
        assert!(
            stats.refreshes >= stats.introspected_ok,
            "a fresh token at each login: {stats:?}"
        );
    }

    for (i, log) in logs.iter().enumerate() {
        assert_no_token(rig, &format!("run {i} output"), log.as_bytes());
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("ledger") {
            assert_no_token(rig, &name, &std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn revoked_or_broken_token_endpoint_is_a_clear_auth_error() {
    let rig = rig();
    let (src, dst) = (rig.dovecot.user("rsrc"), rig.dovecot.user("rdst"));
    let dir = tempfile::tempdir().unwrap();
    let dst_tokens = dir.path().join("dst.json");
    seed_token_file(&dst_tokens, &rig.tokens.grant(&dst.name, "revoker"));
    rig.dovecot
        .load(&src, "INBOX", &[b"Subject: one\n\nbody\n".to_vec()]);
    let d = &rig.dovecot;
    let source = format!(
        "\n[[source]]\nname = \"src\"\nhost = \"localhost\"\nport = {}\nusername = \"{}\"\npassword = \"{}\"\nca_file = \"{}\"\n",
        d.pop3s_port(),
        src.name,
        src.password,
        d.ca_file().display()
    );
    let route = "\n[[route]]\nfrom = \"src\"\nto = \"dst\"\n";
    let config_with = |token_url: Option<String>| {
        let target = account_toml(
            rig,
            &Acct {
                table: "target",
                name: "dst",
                user: &dst,
                port: d.imaps_port(),
                security: "tls",
                auth: "xoauth2",
                client_id: "revoker",
                token_file: &dst_tokens,
                token_url,
            },
        );
        write_config(dir.path(), &format!("{source}{target}{route}"))
    };
    let config = config_with(None);
    let (code, out, err) = mailferry(&config, &["-vv", "sync"]);
    assert_eq!(code, 0, "{out}\n{err}");

    // Revoked: one refused refresh, exit 3, and what to do.
    rig.tokens.revoke(&dst.name);
    let token = std::fs::read_to_string(&dst_tokens).unwrap();
    let refresh = serde_json::from_str::<serde_json::Value>(&token).unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    seed_token_file(&dst_tokens, &refresh);
    rig.dovecot
        .load(&src, "INBOX", &[b"Subject: two\n\nbody\n".to_vec()]);
    let before = rig.tokens.user_stats(&dst.name).refused_refreshes;
    let (code, out, err) = mailferry(&config, &["-vv", "sync"]);
    let all = format!("{out}\n{err}");
    assert_eq!(code, 3, "{all}");
    assert!(all.contains("invalid_grant"), "{all}");
    assert!(
        all.contains("run `mailferry auth login dst` again"),
        "{all}"
    );
    assert_eq!(
        rig.tokens.user_stats(&dst.name).refused_refreshes - before,
        1,
        "no retry storm: {all}"
    );
    assert_no_token(rig, "revoked sync output", all.as_bytes());

    // The endpoint answering garbage, and the endpoint down.
    for (url, want) in [
        (rig.tokens.url("/garbage"), "not an OAuth token reply"),
        ("http://127.0.0.1:1/token".to_string(), "unreachable"),
    ] {
        let config = config_with(Some(url));
        let (code, out, err) = mailferry(&config, &["check"]);
        let all = format!("{out}\n{err}");
        assert_eq!(code, 3, "{all}");
        assert!(
            all.contains(want) && all.contains("mailferry auth login dst"),
            "{all}"
        );
        assert_no_token(rig, "broken endpoint output", all.as_bytes());
    }

    // A token file others can read is loaded, with a warning.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dst_tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = mailferry(&config, &["check", "--offline"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("readable by other users"), "{err}");
}
