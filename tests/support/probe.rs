//! Blocking readiness probes: does a port greet, over plain TCP or implicit TLS, and does a login work.
//!
//! Blocking std I/O on purpose: instances start from sync code
//! ([`super::dovecot::shared`] runs inside `OnceLock::get_or_init`), and a
//! probe must not need a runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// Per-read deadline of one probe.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to 127.0.0.1:`port` and returns the greeting line.
pub fn greeting_plain(port: u16) -> Result<String, String> {
    let stream = connect(port)?;
    read_line(&mut BufReader::new(stream))
}

/// Connects with implicit TLS (server name `localhost`) and returns the
/// greeting line read through the tunnel.
pub fn greeting_tls(port: u16, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let mut sock = connect(port)?;
    let name = ServerName::try_from("localhost").expect("localhost is a valid server name");
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tls = rustls::Stream::new(&mut conn, &mut sock);
    read_line(&mut BufReader::new(tls))
}

/// IMAP `LOGIN` on the plain port: proves auth, the passwd-file, the mail
/// user and the mail directory all work, which a greeting does not.
pub fn imap_login(port: u16, user: &str, password: &str) -> Result<(), String> {
    let stream = connect(port)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    read_line(&mut reader)?;
    let login = format!("p1 LOGIN \"{user}\" \"{password}\"\r\np2 LOGOUT\r\n");
    writer
        .write_all(login.as_bytes())
        .map_err(|e| format!("send LOGIN: {e}"))?;
    loop {
        let line = read_line(&mut reader)?;
        if line.starts_with("p1 OK") {
            return Ok(());
        }
        if line.starts_with("p1 ") {
            return Err(format!("probe login refused: {line}"));
        }
    }
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn read_line<R: Read>(reader: &mut BufReader<R>) -> Result<String, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("connection closed before a full line".into()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(e) => Err(e.to_string()),
    }
}
