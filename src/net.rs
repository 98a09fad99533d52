//! Network: connect with deadlines, TLS (implicit or upgraded), and the
//! bounded buffered reader both protocols share.
//!
//! This is the only module that touches sockets and rustls. Protocol code sees
//! a [`Connection`]: bytes in ([`Connection::buffered`] / [`Connection::consume`]
//! / [`Connection::fill`], or [`Connection::read_line`]) and bytes out
//! ([`Connection::write_all`], one call per command so a command and its
//! literal leave in one segment). Every wait has the account's deadline.

mod tls;

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Account, Security};

pub use tls::TlsInfo;

/// The longest reply line accepted by [`Connection::read_line`]. RFC 2449
/// allows 512 octets for POP3; IMAP lines carry more (CAPABILITY, LIST), but a
/// line this long is a broken or hostile server, not a reply.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

const READ_CHUNK: usize = 64 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub pin_sha256: Option<[u8; 32]>,
}

impl Endpoint {
    /// The endpoint of a configured account.
    pub fn of(account: &Account) -> Endpoint {
        Endpoint {
            host: account.host.clone(),
            port: account.port,
            security: account.security,
            timeout: account.timeout,
            ca_file: account.ca_file.clone(),
            pin_sha256: account.tls_pin_sha256,
        }
    }
}

/// What went wrong on the wire. Each names the host.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{host}: cannot resolve the host name ({source}); check `host`")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host}:{port}: cannot connect: {source}{}", refused_hint(source))]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("{host}: no answer within {timeout:?} ({during})")]
    Timeout {
        host: String,
        timeout: Duration,
        during: &'static str,
    },
    #[error("{host}: TLS certificate rejected: {reason}")]
    Certificate { host: String, reason: String },
    #[error("{host}: TLS failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host}: connection closed by the server")]
    Closed { host: String },
    #[error("{host}: reply line longer than {limit} bytes")]
    LineTooLong { host: String, limit: usize },
    #[error("{host}: server sent data that was not asked for before the TLS upgrade")]
    DataBeforeTls { host: String },
    #[error("{host}: {source}")]
    Io {
        host: String,
        source: std::io::Error,
    },
}

/// What to check when nothing listens on the port.
fn refused_hint(source: &std::io::Error) -> &'static str {
    if source.kind() == std::io::ErrorKind::ConnectionRefused {
        "; is the server up, and is `port` right for the `security` setting?"
    } else {
        ""
    }
}

impl NetError {
    /// Worth retrying later: the network or the server may be better then.
    /// Certificate and protocol-level failures are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NetError::Connect { .. }
                | NetError::Resolve { .. }
                | NetError::Timeout { .. }
                | NetError::Closed { .. }
                | NetError::Io { .. }
        )
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only between taking the plain stream and putting the TLS one back
    /// during [`Connection::start_tls`]; a failed upgrade leaves it here and
    /// every later call reports the connection closed.
    Gone,
}

/// One client connection with a read buffer.
pub struct Connection {
    stream: Stream,
    endpoint: Endpoint,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..]`.
    start: usize,
    max_line: usize,
}

impl Connection {
    /// Connects within the endpoint's timeout, with `TCP_NODELAY`, and does
    /// the TLS handshake now when the security is implicit TLS.
    pub async fn connect(endpoint: &Endpoint) -> Result<Connection, NetError> {
        let host = endpoint.host.clone();
        let timeout = |during| NetError::Timeout {
            host: host.clone(),
            timeout: endpoint.timeout,
            during,
        };
        // Resolve first, so a misspelt host name says so (and isn't mistaken
        // for a server that is down).
        let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(
            endpoint.timeout,
            tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| timeout("resolving the host name"))?
        .map_err(|source| NetError::Resolve {
            host: host.clone(),
            source,
        })?
        .collect();
        let tcp = tokio::time::timeout(endpoint.timeout, TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| NetError::Timeout {
                host: host.clone(),
                timeout: endpoint.timeout,
                during: "connect",
            })?
            .map_err(|source| NetError::Connect {
                host: host.clone(),
                port: endpoint.port,
                source,
            })?;
        // Servers that don't pipeline stall 35-45 ms per command without it.
        tcp.set_nodelay(true)
            .map_err(|source| NetError::Io { host, source })?;
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            endpoint: endpoint.clone(),
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            max_line: DEFAULT_MAX_LINE,
        };
        if endpoint.security == Security::Tls {
            conn.handshake().await?;
        }
        Ok(conn)
    }

    /// Upgrades a plain connection to TLS (after `STLS` / `STARTTLS` was
    /// answered). Refuses when the server already sent bytes beyond its
    /// answer: they would be read as if they came over TLS (CVE-2011-0411).
    pub async fn start_tls(&mut self) -> Result<(), NetError> {
        if !self.buffered().is_empty() {
            return Err(NetError::DataBeforeTls {
                host: self.endpoint.host.clone(),
            });
        }
        self.handshake().await
    }

    async fn handshake(&mut self) -> Result<(), NetError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(NetError::Tls {
                host: self.endpoint.host.clone(),
                reason: "connection is already encrypted".into(),
            });
        };
        let tls = tokio::time::timeout(self.endpoint.timeout, tls::handshake(&self.endpoint, tcp))
            .await
            .map_err(|_| self.timeout("TLS handshake"))??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// The host this connection talks to, for messages.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// Whether bytes are encrypted now.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// TLS version and cipher suite, when encrypted.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match &self.stream {
            Stream::Tls(tls) => Some(TlsInfo::of(tls.get_ref().1)),
            _ => None,
        }
    }

    /// Changes the longest line [`Connection::read_line`] accepts.
    pub fn set_max_line(&mut self, limit: usize) {
        self.max_line = limit;
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads at least one more byte into the buffer, within the deadline.
    /// The end of the stream is [`NetError::Closed`]: every caller here is
    /// waiting for a reply, so a close is never a normal end.
    pub async fn fill(&mut self) -> Result<(), NetError> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let timeout = self.endpoint.timeout;
        let read = match &mut self.stream {
            Stream::Plain(s) => tokio::time::timeout(timeout, s.read(&mut self.buf[len..])).await,
            Stream::Tls(s) => tokio::time::timeout(timeout, s.read(&mut self.buf[len..])).await,
            Stream::Gone => Ok(Ok(0)),
        };
        let result = match read {
            Err(_) => Err(self.timeout("read")),
            Ok(Err(source)) => Err(self.io(source)),
            Ok(Ok(0)) => Err(NetError::Closed {
                host: self.endpoint.host.clone(),
            }),
            Ok(Ok(n)) => Ok(len + n),
        };
        let keep = *result.as_ref().unwrap_or(&len);
        self.buf.truncate(keep);
        result.map(|_| ())
    }

    /// The next line, without its line ending (CRLF, or a bare LF from a
    /// sloppy server). Longer than the limit: [`NetError::LineTooLong`].
    pub async fn read_line(&mut self) -> Result<Vec<u8>, NetError> {
        let mut searched = 0;
        loop {
            let unread = self.buffered();
            if let Some(pos) = unread[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + pos;
                let line = unread[..end].strip_suffix(b"\r").unwrap_or(&unread[..end]);
                let line = line.to_vec();
                self.consume(end + 1);
                return Ok(line);
            }
            searched = unread.len();
            if searched > self.max_line {
                return Err(NetError::LineTooLong {
                    host: self.endpoint.host.clone(),
                    limit: self.max_line,
                });
            }
            self.fill().await?;
        }
    }

    /// Sends `data` in one write and flushes it, within the deadline.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), NetError> {
        let timeout = self.endpoint.timeout;
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
                Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
            }
        };
        match tokio::time::timeout(timeout, write).await {
            Err(_) => Err(self.timeout("write")),
            Ok(Err(source)) => Err(self.io(source)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Closes the connection (TLS close_notify where encrypted), best effort.
    pub async fn shutdown(&mut self) {
        let timeout = self.endpoint.timeout.min(Duration::from_secs(5));
        let _ = match &mut self.stream {
            Stream::Plain(s) => tokio::time::timeout(timeout, s.shutdown()).await,
            Stream::Tls(s) => tokio::time::timeout(timeout, s.shutdown()).await,
            Stream::Gone => Ok(Ok(())),
        };
    }

    fn timeout(&self, during: &'static str) -> NetError {
        NetError::Timeout {
            host: self.endpoint.host.clone(),
            timeout: self.endpoint.timeout,
            during,
        }
    }

    fn io(&self, source: std::io::Error) -> NetError {
        NetError::Io {
            host: self.endpoint.host.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
