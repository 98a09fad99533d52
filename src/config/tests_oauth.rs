//! Config tests for `oauth`, `provider` presets and the byte limits: presets
//! fill gaps, explicit keys win, every refusal is one line naming the key.

use super::*;

const GMAIL: &str = r#"
[[source]]
name = "old"
host = "pop.example.org"
username = "alice"
password = "pw"

[[target]]
name = "gmail"
provider = "gmail"
username = "alice@gmail.com"
oauth = { client_id = "id.apps.googleusercontent.com", client_secret = { env = "GMAIL_SECRET" } }

[[route]]
from = "old"
to = "gmail"
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/etc/mailferry/test.toml"))
}

fn error(text: &str) -> String {
    let err = load(text).expect_err("should be refused").to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.starts_with("/etc/mailferry/test.toml:"), "{err}");
    err
}

fn oauth(account: &Account) -> &OAuthSettings {
    match &account.password {
        PasswordSource::OAuth(settings) => settings,
        other => panic!("not OAuth: {other:?}"),
    }
}

#[test]
fn gmail_preset_fills_in_a_target() {
    let c = load(GMAIL).unwrap();
    let t = &c.targets[0];
    assert_eq!((t.host.as_str(), t.port), ("imap.gmail.com", 993));
    assert_eq!(
        (t.security, t.auth),
        (Security::Tls, AuthMechanism::Xoauth2)
    );
    assert_eq!(t.max_connections, Some(15));
    assert_eq!(t.max_bytes_per_day, Some(500_000_000));
    assert_eq!(t.max_bytes_per_second, None);
    let o = oauth(t);
    assert_eq!(o.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(o.scopes, ["https://mail.google.com/"]);
    assert_eq!(o.device_url, None);
    assert!(o
        .auth_params
        .contains(&("access_type".into(), "offline".into())));
    assert_eq!(
        o.token_file,
        Path::new("/etc/mailferry/state/gmail.oauth.json")
    );
    assert!(
        matches!(o.client_secret.as_deref(), Some(PasswordSource::Env(v)) if v == "GMAIL_SECRET")
    );
    // The old source is untouched by any preset.
    assert_eq!(
        (c.sources[0].max_connections, c.sources[0].max_bytes_per_day),
        (None, None)
    );
}

#[test]
fn explicit_keys_win_over_the_preset() {
    let text = GMAIL.replace(
        "username = \"alice@gmail.com\"",
        "username = \"alice@gmail.com\"\nhost = \"imap.example.net\"\nport = 1993\nauth = \"oauthbearer\"\nmax_connections = 3\nmax_bytes_per_day = 1000\nmax_bytes_per_second = 50000",
    )
    .replace(
        "client_secret = { env = \"GMAIL_SECRET\" } }",
        "token_file = \"tok/g.json\", scopes = [\"a\", \"b\"], token_url = \"http://127.0.0.1:9/t\", redirect_port = 8765 }",
    );
    let t = &load(&text).unwrap().targets[0];
    assert_eq!((t.host.as_str(), t.port), ("imap.example.net", 1993));
    assert_eq!(t.auth, AuthMechanism::Oauthbearer);
    assert_eq!(t.max_connections, Some(3));
    assert_eq!(
        (t.max_bytes_per_day, t.max_bytes_per_second),
        (Some(1000), Some(50_000))
    );
    let o = oauth(t);
    assert_eq!(o.scopes, ["a", "b"]);
    assert_eq!(o.token_url, "http://127.0.0.1:9/t");
    assert_eq!(o.token_file, Path::new("/etc/mailferry/tok/g.json"));
    assert_eq!(o.redirect_port, 8765);
    assert!(o.client_secret.is_none());
}

#[test]
fn microsoft_preset_on_a_source() {
    let text = GMAIL
        .replace(
            "host = \"pop.example.org\"\nusername = \"alice\"\npassword = \"pw\"",
            "provider = \"microsoft365\"\nusername = \"bob@contoso.example\"\noauth = { client_id = \"c\" }",
        );
    let s = &load(&text).unwrap().sources[0];
    assert_eq!((s.host.as_str(), s.port), ("outlook.office365.com", 995));
    assert_eq!(s.auth, AuthMechanism::Xoauth2);
    let o = oauth(s);
    assert!(o.device_url.as_deref().unwrap().ends_with("/devicecode"));
    assert!(o.scopes.iter().any(|x| x == "offline_access"));
    assert_eq!(o.scopes.len(), 3);
}

#[test]
fn oauth_without_a_provider_needs_a_token_url_and_defaults_to_xoauth2() {
    let text = GMAIL.replace("provider = \"gmail\"", "host = \"imap.example.net\"");
    let err = error(&text);
    assert!(
        err.contains("`oauth.token_url`") && err.contains(":12:"),
        "{err}"
    );
    let ok = text.replace(
        "client_secret",
        "token_url = \"https://idp.example/token\", auth_url = \"https://idp.example/auth\", client_secret",
    );
    let t = &load(&ok).unwrap().targets[0];
    assert_eq!(t.auth, AuthMechanism::Xoauth2);
    assert_eq!(t.max_connections, None);
    let only_token = text.replace(
        "client_secret",
        "token_url = \"https://idp.example/token\", client_secret",
    );
    assert!(error(&only_token).contains("`auth_url`"));
}

#[test]
fn refusals_name_the_key_and_line() {
    let no_secret = GMAIL.replace(
        "oauth = { client_id = \"id.apps.googleusercontent.com\", client_secret = { env = \"GMAIL_SECRET\" } }",
        "",
    );
    for (text, want) in [
        (no_secret.clone(), "`password`"),
        (
            GMAIL.replace(
                "username = \"alice@gmail.com\"",
                "username = \"a\"\npassword = \"x\"",
            ),
            "not both",
        ),
        (
            GMAIL.replace("provider = \"gmail\"", "provider = \"yahoo\""),
            "yahoo",
        ),
        (
            GMAIL.replace(
                "provider = \"gmail\"",
                "provider = \"gmail\"\nauth = \"login\"",
            ),
            "`auth`",
        ),
        (
            GMAIL.replace("client_secret", "scope = [\"x\"], client_secret"),
            "scope",
        ),
        (
            GMAIL.replace(
                "client_secret",
                "token_url = \"http://idp.example/t\", client_secret",
            ),
            "`oauth.token_url`",
        ),
        (
            GMAIL.replace("\"id.apps.googleusercontent.com\"", "\" \""),
            "`oauth.client_id`",
        ),
        (
            GMAIL.replace(
                "client_secret = { env = \"GMAIL_SECRET\" }",
                "client_secret = { env = \"\" }",
            ),
            "`oauth.client_secret`",
        ),
        (
            GMAIL.replace(
                "provider = \"gmail\"",
                "provider = \"gmail\"\nmax_bytes_per_day = 0",
            ),
            "`max_bytes_per_day`",
        ),
        (
            GMAIL.replace(
                "provider = \"gmail\"",
                "provider = \"gmail\"\nmax_bytes_per_second = -5",
            ),
            "-5",
        ),
    ] {
        let err = error(&text);
        assert!(err.contains(want), "want {want}: {err}");
    }
    let err = error(&no_secret);
    assert!(
        err.contains(":9:") && err.contains("`oauth"),
        "line of the account name: {err}"
    );
}

#[test]
fn source_without_host_or_provider() {
    let err = error(&GMAIL.replace("host = \"pop.example.org\"\n", ""));
    assert!(err.contains("`host`") && err.contains("provider"), "{err}");
}

#[tokio::test]
async fn missing_token_file_says_to_log_in() {
    let c = load(GMAIL).unwrap();
    let err = c.targets[0]
        .password
        .resolve("gmail")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("mailferry auth login gmail"), "{err}");
    assert!(err.starts_with("account gmail: OAuth:"), "{err}");
}
