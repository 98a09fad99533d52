//! The loopback redirect of RFC 8252 §7.3: listen on 127.0.0.1, wait for
//! the browser's `GET /?code=..&state=..`, answer with a short page.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::OAuthError;

/// A request head larger than this is not a browser coming back.
const MAX_HEAD: usize = 16 * 1024;
/// One connection gets this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener the authorisation server redirects the browser to.
pub(super) struct Loopback {
    listener: TcpListener,
    port: u16,
}

impl Loopback {
    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn bind(port: u16) -> Result<Loopback, OAuthError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| OAuthError::Setup(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| OAuthError::Setup(e.to_string()))?
            .port();
        Ok(Loopback { listener, port })
    }

    /// The redirect URI to register and send.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Waits for the redirect that carries `state` and returns its code.
    /// Other requests (a favicon, a stale tab) get a 404 and are ignored.
    pub async fn wait_for_code(&self, state: &str, limit: Duration) -> Result<String, OAuthError> {
        let deadline = Instant::now() + limit;
        loop {
            let accepted = tokio::time::timeout_at(deadline, self.listener.accept()).await;
            let Ok(accepted) = accepted else {
                return Err(OAuthError::SignIn(format!(
                    "no redirect from the browser within {limit:?}"
                )));
            };
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let params = match tokio::time::timeout(REQUEST_TIMEOUT, read_query(&mut stream)).await
            {
                Ok(Some(params)) => params,
                _ => {
                    respond(&mut stream, "404 Not Found", "Not the sign-in redirect.").await;
                    continue;
                }
            };
            if params.get("state").map(String::as_str) != Some(state) {
                respond(&mut stream, "400 Bad Request", "Unknown sign-in attempt.").await;
                continue;
            }
            if let Some(error) = params.get("error") {
                respond(
                    &mut stream,
                    "200 OK",
                    "Sign-in refused. You can close this tab.",
                )
                .await;
                let detail = params.get("error_description").map_or(String::new(), |d| {
                    format!(" ({})", d.chars().take(200).collect::<String>())
                });
                return Err(OAuthError::SignIn(format!(
                    "the server said {error}{detail}"
                )));
            }
            if let Some(code) = params.get("code") {
                let page = "Signed in to mailferry. You can close this tab.";
                respond(&mut stream, "200 OK", page).await;
                return Ok(code.clone());
            }
            respond(&mut stream, "400 Bad Request", "No code in the redirect.").await;
        }
    }
}

/// The query parameters of a `GET` request; `None` for anything else.
async fn read_query(stream: &mut TcpStream) -> Option<HashMap<String, String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_request_line(&head)
}

/// `GET /path?query HTTP/1.1` → the decoded query pairs.
fn parse_request_line(head: &[u8]) -> Option<HashMap<String, String>> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if method != "GET" || !target.starts_with('/') {
        return None;
    }
    let url = oauth2::url::Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    Some(url.query_pairs().into_owned().collect())
}

async fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!("<!doctype html><title>mailferry</title><p>{text}</p>\n");
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_to_query() {
        let q =
            parse_request_line(b"GET /?code=a%2Fb&state=s1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(q["code"], "a/b");
        assert_eq!(q["state"], "s1");
        assert!(parse_request_line(b"POST /?code=a HTTP/1.1\r\n\r\n").is_none());
        assert!(parse_request_line(b"GET http://evil/ HTTP/1.1\r\n\r\n").is_none());
    }
}
