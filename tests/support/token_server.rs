//! An OAuth 2.0 authorisation server on 127.0.0.1 for tests: authorize
//! (redirects at once, PKCE S256 required), token (authorization_code,
//! refresh_token, device_code), device authorisation, and the introspection
//! endpoint Dovecot's oauth2 passdb asks (notes/dovecot-oauth2.md).
//!
//! Plain threads and HTTP/1.1 with keep-alive (Dovecot's client keeps its
//! connection). Every token handed out is remembered, so a test can grep
//! logs and files for all of them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::dovecot::{Dovecot, Options};

/// What happened, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub codes_exchanged: u32,
    pub device_grants: u32,
    pub refreshes: u32,
    pub refused_refreshes: u32,
    pub introspected_ok: u32,
    pub introspected_rejected: u32,
}

struct Code {
    user: String,
    challenge: String,
    redirect_uri: String,
}

struct Device {
    user_code: String,
    approved_for: Option<String>,
}

#[derive(Default)]
struct State {
    lifetimes: HashMap<String, Duration>,
    codes: HashMap<String, Code>,
    devices: HashMap<String, Device>,
    /// Refresh token → (user, client id, revoked).
    refresh: HashMap<String, (String, String, bool)>,
    /// Access token → (user, expiry).
    access: HashMap<String, (String, Instant)>,
    issued: Vec<String>,
    stats: Stats,
    per_user: HashMap<String, Stats>,
    next: u64,
}

/// A running server; it lives until the test process ends.
#[derive(Clone)]
pub struct TokenServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl TokenServer {
    pub fn start() -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().unwrap().port();
        let server = TokenServer {
            port,
            state: Arc::default(),
        };
        let s = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.connection(stream));
            }
        });
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Access tokens for `client_id` live `lifetime` (default one hour).
    pub fn set_lifetime(&self, client_id: &str, lifetime: Duration) {
        let mut st = self.state.lock().unwrap();
        st.lifetimes.insert(client_id.to_string(), lifetime);
    }

    /// A refresh token for `user`, as if they had signed in.
    pub fn grant(&self, user: &str, client_id: &str) -> String {
        let mut st = self.state.lock().unwrap();
        let token = st.token("rt");
        st.refresh
            .insert(token.clone(), (user.into(), client_id.into(), false));
        token
    }

    /// Revokes every refresh token of `user` (a password change, say).
    pub fn revoke(&self, user: &str) {
        let mut st = self.state.lock().unwrap();
        for (u, _, revoked) in st.refresh.values_mut() {
            if u == user {
                *revoked = true;
            }
        }
    }

    /// The browser approving a device code as `user`.
    pub fn approve_device(&self, user_code: &str, user: &str) {
        let mut st = self.state.lock().unwrap();
        let device = st
            .devices
            .values_mut()
            .find(|d| d.user_code == user_code)
            .expect("a device code with this user code");
        device.approved_for = Some(user.into());
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    /// What happened for one user only (tests run in parallel).
    pub fn user_stats(&self, user: &str) -> Stats {
        let st = self.state.lock().unwrap();
        st.per_user.get(user).cloned().unwrap_or_default()
    }

    /// Every token (and code) handed out so far.
    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    fn connection(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut writer = stream.try_clone().expect("clone stream");
        let mut reader = BufReader::new(stream);
        while let Some(req) = read_request(&mut reader) {
            let (status, headers, body) = self.handle(&req);
            let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
            for (k, v) in headers {
                head += &format!("{k}: {v}\r\n");
            }
            head += "\r\n";
            if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
                return;
            }
        }
    }

    fn handle(&self, req: &Request) -> (&'static str, Vec<(String, String)>, Vec<u8>) {
        let json = |status, v: serde_json::Value| {
            let h = vec![("Content-Type".into(), "application/json".into())];
            (status, h, v.to_string().into_bytes())
        };
        let mut st = self.state.lock().unwrap();
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/authorize") => match st.authorize(&req.query) {
                Ok(location) => ("302 Found", vec![("Location".into(), location)], Vec::new()),
                Err(why) => ("400 Bad Request", vec![], why.into_bytes()),
            },
            ("POST", "/token") => match st.token_grant(&req.form) {
                Ok(v) => json("200 OK", v),
                Err(code) => json("400 Bad Request", serde_json::json!({ "error": code })),
            },
            ("POST", "/device") => {
                let device_code = st.token("dc");
                let user_code = format!("UC-{}", st.next);
                let uc = user_code.clone();
                st.devices.insert(
                    device_code.clone(),
                    Device {
                        user_code,
                        approved_for: None,
                    },
                );
                let verify = self.url("/device/verify");
                json(
                    "200 OK",
                    serde_json::json!({ "device_code": device_code, "user_code": uc,
                        "verification_uri": verify, "expires_in": 300, "interval": 1 }),
                )
            }
            ("POST", "/introspect") => {
                let token = req.form.get("token").cloned().unwrap_or_default();
                match st.access.get(&token).cloned() {
                    Some((user, expires)) if expires > Instant::now() => {
                        st.count(&user, |s| s.introspected_ok += 1);
                        json(
                            "200 OK",
                            serde_json::json!({ "active": true, "email": user }),
                        )
                    }
                    known => {
                        let user = known.map(|(u, _)| u).unwrap_or_default();
                        st.count(&user, |s| s.introspected_rejected += 1);
                        json("200 OK", serde_json::json!({ "active": false }))
                    }
                }
            }
            ("POST", "/garbage") => (
                "502 Bad Gateway",
                vec![("Content-Type".into(), "text/html".into())],
                b"<html>upstream fell over</html>".to_vec(),
            ),
            _ => ("404 Not Found", vec![], Vec::new()),
        }
    }
}

impl State {
    /// Counts an event in the totals and in `user`'s own stats.
    fn count(&mut self, user: &str, event: impl Fn(&mut Stats)) {
        event(&mut self.stats);
        event(self.per_user.entry(user.to_string()).or_default());
    }

    fn token(&mut self, kind: &str) -> String {
        self.next += 1;
        let t = format!("{kind}-{}-{:08x}", self.next, rand_u32(self.next));
        self.issued.push(t.clone());
        t
    }

    fn lifetime(&self, client_id: &str) -> Duration {
        self.lifetimes
            .get(client_id)
            .copied()
            .unwrap_or(Duration::from_secs(3600))
    }

    /// The authorisation endpoint: checks the request, "signs in" the
    /// `login_hint` user, and redirects to the loopback URI.
    fn authorize(&mut self, q: &HashMap<String, String>) -> Result<String, String> {
        let get = |k: &str| q.get(k).cloned().ok_or(format!("missing {k}"));
        if get("response_type")? != "code" || get("code_challenge_method")? != "S256" {
            return Err("need response_type=code and PKCE S256".into());
        }
        let redirect_uri = get("redirect_uri")?;
        if !redirect_uri.starts_with("http://127.0.0.1:") {
            return Err("redirect must be loopback".into());
        }
        let code = self.token("code");
        self.codes.insert(
            code.clone(),
            Code {
                user: get("login_hint")?,
                challenge: get("code_challenge")?,
                redirect_uri: redirect_uri.clone(),
            },
        );
        let mut url = oauth2::url::Url::parse(&redirect_uri).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &get("state")?);
        Ok(url.to_string())
    }

    fn token_grant(&mut self, f: &HashMap<String, String>) -> Result<serde_json::Value, String> {
        let client_id = f.get("client_id").cloned().ok_or("invalid_client")?;
        let get = |k: &str| f.get(k).cloned().ok_or("invalid_request".to_string());
        match get("grant_type")?.as_str() {
            "authorization_code" => {
                let code = self.codes.remove(&get("code")?).ok_or("invalid_grant")?;
                let verifier = get("code_verifier")?;
                let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
                if URL_SAFE_NO_PAD.encode(digest) != code.challenge
                    || get("redirect_uri")? != code.redirect_uri
                {
                    return Err("invalid_grant".into());
                }
                self.count(&code.user, |s| s.codes_exchanged += 1);
                let refresh = self.token("rt");
                let entry = (code.user.clone(), client_id.clone(), false);
                self.refresh.insert(refresh.clone(), entry);
                Ok(self.tokens(&code.user, &client_id, Some(refresh)))
            }
            "refresh_token" => {
                let rt = get("refresh_token")?;
                match self.refresh.get(&rt).cloned() {
                    Some((user, c, false)) if c == client_id => {
                        self.count(&user, |s| s.refreshes += 1);
                        Ok(self.tokens(&user, &client_id, None))
                    }
                    known => {
                        let user = known.map(|(u, _, _)| u).unwrap_or_default();
                        self.count(&user, |s| s.refused_refreshes += 1);
                        Err("invalid_grant".into())
                    }
                }
            }
            "urn:ietf:params:oauth:grant-type:device_code" => {
                let dc = get("device_code")?;
                let device = self.devices.get(&dc).ok_or("invalid_grant")?;
                let Some(user) = device.approved_for.clone() else {
                    return Err("authorization_pending".into());
                };
                self.devices.remove(&dc);
                self.count(&user, |s| s.device_grants += 1);
                let refresh = self.token("rt");
                let entry = (user.clone(), client_id.clone(), false);
                self.refresh.insert(refresh.clone(), entry);
                Ok(self.tokens(&user, &client_id, Some(refresh)))
            }
            _ => Err("unsupported_grant_type".into()),
        }
    }

    fn tokens(
        &mut self,
        user: &str,
        client_id: &str,
        refresh: Option<String>,
    ) -> serde_json::Value {
        let lifetime = self.lifetime(client_id);
        let access = self.token("at");
        self.access.insert(
            access.clone(),
            (user.to_string(), Instant::now() + lifetime),
        );
        let mut v = serde_json::json!({ "access_token": access, "token_type": "Bearer",
            "expires_in": lifetime.as_secs() });
        if let Some(r) = refresh {
            v["refresh_token"] = r.into();
        }
        v
    }
}

/// Enough randomness that tokens differ between runs (not security).
fn rand_u32(seed: u64) -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    ((t ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 7) as u32
}

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    form: HashMap<String, String>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let url = oauth2::url::Url::parse(&format!("http://x{target}")).ok()?;
    Some(Request {
        method,
        path: url.path().to_string(),
        query: url.query_pairs().into_owned().collect(),
        form: oauth2::url::form_urlencoded::parse(&body)
            .into_owned()
            .collect(),
    })
}

/// A one-shot `GET` (the test playing the browser): status and headers.
pub fn http_get(url: &str) -> (u16, HashMap<String, String>) {
    let url = oauth2::url::Url::parse(url).expect("URL");
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        }
    }
    (code, headers)
}

/// A token server and a private Dovecot whose oauth2 passdb accepts its
/// access tokens (notes/dovecot-oauth2.md), for the tests that sign in.
pub struct OAuthRig {
    pub dovecot: Dovecot,
    pub tokens: TokenServer,
}

impl OAuthRig {
    /// Starts both; `tag` names the directory of the passdb's settings.
    pub fn start(tag: &str) -> OAuthRig {
        let tokens = TokenServer::start();
        let dir = std::env::temp_dir().join(format!("mailferry-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ext = dir.join("oauth2.conf.ext");
        std::fs::write(
            &ext,
            format!(
                "introspection_url = {}\nintrospection_mode = post\nusername_attribute = email\ntimeout_msecs = 3000\n",
                tokens.url("/introspect")
            ),
        )
        .unwrap();
        let extra_config = format!(
            "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
            ext.display()
        );
        let dovecot = Dovecot::start_with(Options {
            extra_config,
            ..Options::default()
        });
        OAuthRig { dovecot, tokens }
    }
}
