//! The POP3 session: connect, greeting, CAPA, STLS, then the one place that writes commands and reads replies on a [`Connection`].
//!
//! Every public operation runs between [`Pop3Session::ready`] and
//! [`Pop3Session::finish`]: the first refuses a poisoned session and reads
//! away replies left behind by a dropped [`super::Retrieval`]; the second
//! poisons the session when an error left it out of step with the server
//! (a network error, a reply that is not POP3). An operation whose future
//! was dropped half-way (a `select!` that lost) is noticed by the next one
//! and poisons the session too: its reply may be half read.

use std::collections::{HashMap, VecDeque};

use crate::config::{Account, Security};
use crate::net::{Connection, Endpoint};

use super::command::Command;
use super::dot::{BodyDecoder, Step};
use super::error::Pop3Error;
use super::listing::{self, Capabilities};
use super::reply::{self, Parse, Status};

/// The largest CAPA body accepted; a real one is a few hundred bytes.
const MAX_CAPA: u64 = 64 * 1024;

/// Tuning knobs; [`Pop3Options::default`] suits real servers.
#[derive(Debug, Clone)]
pub struct Pop3Options {
    /// Messages larger than this are skipped with [`Pop3Error::TooLarge`]
    /// (checked against LIST before RETR, and while reading).
    pub max_message_size: u64,
    /// Largest LIST / UIDL listing accepted (a million messages is ~30 MB).
    pub max_listing_size: u64,
    /// Use PIPELINING when the server offers it; off forces one command at
    /// a time (for servers that advertise it and then break).
    pub pipelining: bool,
    /// Most RETRs in flight at once when pipelining.
    pub window_messages: usize,
    /// Most bytes (by LIST sizes) of RETRs in flight; at least one RETR is
    /// always in flight, however large.
    pub window_bytes: u64,
    /// Longest status line accepted (`max_line_length`).
    pub max_line: usize,
    /// Most single-line commands (DELE, LIST n, UIDL n) sent in one write.
    /// Bounded so the server's replies fit its socket buffer while it waits
    /// for us to read: a larger batch could deadlock both sides.
    pub batch: usize,
}

impl Default for Pop3Options {
    fn default() -> Self {
        Pop3Options {
            max_message_size: 128 * 1024 * 1024,
            max_listing_size: 256 * 1024 * 1024,
            pipelining: true,
            window_messages: 32,
            window_bytes: 8 * 1024 * 1024,
            max_line: reply::MAX_STATUS_LINE,
            batch: 64,
        }
    }
}

/// A logged-in POP3 session (the RFC 1939 TRANSACTION state).
pub struct Pop3Session {
    pub(super) conn: Connection,
    pub(super) options: Pop3Options,
    caps: Capabilities,
    greeting: String,
    pub(super) apop_timestamp: Option<String>,
    /// Sizes from the last full LIST, for the RETR window.
    pub(super) sizes: Option<HashMap<u32, u64>>,
    /// Sent commands whose replies nobody read (a dropped retrieval).
    pub(super) pending: VecDeque<Command>,
    /// Set by [`Pop3Session::ready`], cleared by [`Pop3Session::finish`].
    in_operation: bool,
    poisoned: bool,
    /// Set when the server answered a bare UIDL with -ERR and had no CAPA.
    pub(super) uidl_unsupported: bool,
}

impl Pop3Session {
    /// Connects and logs in with default options.
    pub async fn connect(account: &Account) -> Result<Pop3Session, Pop3Error> {
        Pop3Session::connect_with(account, Pop3Options::default()).await
    }

    /// Connects, reads the greeting, asks CAPA, upgrades with STLS when
    /// `security = starttls`, and logs in per `account.auth`.
    pub async fn connect_with(
        account: &Account,
        options: Pop3Options,
    ) -> Result<Pop3Session, Pop3Error> {
        let conn = Connection::connect(&Endpoint::of(account)).await?;
        let mut session = Pop3Session {
            conn,
            options,
            caps: Capabilities::default(),
            greeting: String::new(),
            apop_timestamp: None,
            sizes: None,
            pending: VecDeque::new(),
            in_operation: false,
            poisoned: false,
            uidl_unsupported: false,
        };
        session.greet().await?;
        session.caps = session.capa().await?;
        if account.security == Security::Starttls {
            session.stls().await?;
        }
        if session.caps.utf8 {
            session.utf8().await?;
        }
        session.login(account).await?;
        Ok(session)
    }

    /// What CAPA said before login (after STLS, the re-issued CAPA).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The greeting's text.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The connection, for TLS details in `mailferry check`.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The options this session runs with.
    pub fn options(&self) -> &Pop3Options {
        &self.options
    }

    /// True when commands are pipelined (offered and not switched off).
    pub fn pipelining(&self) -> bool {
        self.options.pipelining && self.caps.pipelining
    }

    /// False once an error left the session out of step: every operation
    /// then fails with [`Pop3Error::Poisoned`]; open a new session.
    pub fn is_usable(&self) -> bool {
        !self.poisoned && !self.in_operation
    }

    pub(super) fn host(&self) -> String {
        self.conn.host().to_string()
    }

    /// RFC 1939 §4: "Once the TCP connection has been opened by a POP3
    /// client, the POP3 server issues a one line greeting. This can be any
    /// positive response." The APOP timestamp is kept from it.
    async fn greet(&mut self) -> Result<(), Pop3Error> {
        match self.read_status("greeting").await? {
            Status::Ok(response) => {
                self.greeting = response.to_string();
                self.apop_timestamp = reply::apop_timestamp(&response.text);
                tracing::debug!(host = %self.conn.host(), greeting = %self.greeting, "pop3 <");
                Ok(())
            }
            Status::Err(refusal) => Err(Pop3Error::Greeting {
                host: self.host(),
                refusal,
            }),
            Status::Continue(_) => Err(self.protocol("greeting", "a continuation as greeting")),
        }
    }

    /// RFC 2449 §5: CAPA, allowed in both states. A server without it
    /// answers -ERR: everything is then unknown, not an error.
    async fn capa(&mut self) -> Result<Capabilities, Pop3Error> {
        self.send(&[Command::Capa]).await?;
        match self.read_status("CAPA").await? {
            Status::Ok(_) => {
                let body = self.read_body("CAPA", MAX_CAPA, 0).await?;
                if body.overflowed {
                    return Err(self.protocol("CAPA", "capability list too long"));
                }
                Ok(listing::capabilities(&body.bytes))
            }
            Status::Err(refusal) => {
                tracing::debug!(host = %self.conn.host(), %refusal, "no CAPA");
                Ok(Capabilities::default())
            }
            Status::Continue(_) => Err(self.protocol("CAPA", "a continuation")),
        }
    }

    /// RFC 2595 §4: STLS, then the TLS handshake; "the client MUST discard
    /// cached information about server capabilities" and asks CAPA again.
    /// Not offered is a refusal: never go on in clear text.
    async fn stls(&mut self) -> Result<(), Pop3Error> {
        if !self.caps.stls {
            return Err(Pop3Error::StlsNotOffered { host: self.host() });
        }
        self.send(&[Command::Stls]).await?;
        match self.read_status("STLS").await? {
            Status::Ok(_) => {}
            Status::Err(refusal) => {
                return Err(Pop3Error::StlsRefused {
                    host: self.host(),
                    refusal,
                })
            }
            Status::Continue(_) => return Err(self.protocol("STLS", "a continuation")),
        }
        self.conn.start_tls().await?;
        self.caps = self.capa().await?;
        Ok(())
    }

    /// RFC 6856 §2: `UTF8` (valid in the AUTHORIZATION state), so messages
    /// come as stored. A server that lists UTF8 in CAPA but then refuses it
    /// is logged and used as it is: what it serves is still a message.
    async fn utf8(&mut self) -> Result<(), Pop3Error> {
        self.send(&[Command::Utf8]).await?;
        match self.read_status("UTF8").await? {
            Status::Ok(_) => Ok(()),
            Status::Err(refusal) => {
                tracing::warn!(host = %self.host(), reply = %refusal.text, "the server offers UTF8 but refused it; its messages may come re-encoded");
                Ok(())
            }
            Status::Continue(_) => Err(self.protocol("UTF8", "a continuation")),
        }
    }

    /// Starts a public operation: refuses a poisoned session (or one whose
    /// last operation was dropped half-way), then reads away replies owed
    /// to commands nobody waits for any more.
    pub(super) async fn ready(&mut self) -> Result<(), Pop3Error> {
        if self.in_operation {
            self.poisoned = true;
        }
        if self.poisoned {
            return Err(Pop3Error::Poisoned { host: self.host() });
        }
        self.in_operation = true;
        while let Some(command) = self.pending.pop_front() {
            let result = self.skip_reply(&command).await;
            if let Err(err) = result {
                return Err(self.finish_err(err));
            }
        }
        Ok(())
    }

    /// Ends a public operation: poisons the session when `result` is an
    /// error that left it out of step.
    pub(super) fn finish<T>(&mut self, result: Result<T, Pop3Error>) -> Result<T, Pop3Error> {
        self.in_operation = false;
        result.map_err(|err| self.finish_err(err))
    }

    fn finish_err(&mut self, err: Pop3Error) -> Pop3Error {
        self.in_operation = false;
        if matches!(
            err,
            Pop3Error::Net(_)
                | Pop3Error::Protocol { .. }
                | Pop3Error::BrokenReply { .. }
                | Pop3Error::OutOfStep { .. }
                | Pop3Error::Poisoned { .. }
        ) {
            self.poisoned = true;
        }
        err
    }

    async fn skip_reply(&mut self, command: &Command) -> Result<(), Pop3Error> {
        let verb = command.verb();
        if let Status::Ok(_) = self.read_status(verb).await? {
            if command.is_multi_line() {
                self.read_body(verb, 0, 0).await?;
                if self.poisoned {
                    return Err(Pop3Error::Poisoned { host: self.host() });
                }
            }
        }
        Ok(())
    }

    /// Writes `commands` in one write (one segment for a pipelined batch).
    pub(super) async fn send(&mut self, commands: &[Command]) -> Result<(), Pop3Error> {
        let mut wire = Vec::with_capacity(16 * commands.len());
        for command in commands {
            tracing::debug!(host = %self.conn.host(), %command, "pop3 >");
            command.encode(&mut wire);
        }
        self.conn.write_all(&wire).await?;
        Ok(())
    }

    /// Reads one status line (RFC 1939 §3), waiting for bytes as needed.
    pub(super) async fn read_status(&mut self, verb: &'static str) -> Result<Status, Pop3Error> {
        loop {
            match reply::status_line_within(self.conn.buffered(), self.options.max_line) {
                Ok(Parse::Done(status, used)) => {
                    self.conn.consume(used);
                    if let Status::Err(refusal) = &status {
                        tracing::debug!(host = %self.conn.host(), verb, %refusal, "pop3 < -ERR");
                    }
                    return Ok(status);
                }
                Ok(Parse::NeedMore) => self.conn.fill().await?,
                Err(err) => return Err(self.protocol(verb, &err.to_string())),
            }
        }
    }

    /// Reads one dot-terminated body, streaming: content past `limit` is
    /// counted and dropped, and the reply is read to its end either way so
    /// the next reply starts in step. `hint` pre-sizes the buffer.
    pub(super) async fn read_body(
        &mut self,
        verb: &'static str,
        limit: u64,
        hint: u64,
    ) -> Result<Body, Pop3Error> {
        let mut decoder = BodyDecoder::new(limit);
        let capacity = hint.min(limit).saturating_add(64);
        let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        loop {
            match decoder.decode(self.conn.buffered(), &mut bytes) {
                Step::Done { consumed } => {
                    self.conn.consume(consumed);
                    break;
                }
                Step::NeedMore { consumed } => {
                    self.conn.consume(consumed);
                    if decoder.overflowed() && decoder.size() > discard_bound(limit) {
                        // A body that runs on this far past its limit may
                        // never end (a hostile or broken server): give up
                        // on the session rather than read it for ever.
                        tracing::warn!(host = %self.conn.host(), verb, size = decoder.size(), "pop3 body never ends; dropping the session");
                        self.poisoned = true;
                        break;
                    }
                    self.conn.fill().await?;
                }
            }
        }
        tracing::trace!(host = %self.conn.host(), verb, size = decoder.size(), "pop3 < body");
        Ok(Body {
            bytes,
            size: decoder.size(),
            overflowed: decoder.overflowed(),
        })
    }

    /// A protocol error: the session no longer knows where replies start.
    pub(super) fn protocol(&self, command: &'static str, detail: &str) -> Pop3Error {
        Pop3Error::Protocol {
            host: self.host(),
            command,
            detail: detail.to_string(),
        }
    }

    pub(super) fn caps(&self) -> &Capabilities {
        &self.caps
    }
}

/// How much of an over-limit body is read and thrown away, waiting for its
/// end so the session stays in step, before the session is given up: twice
/// the limit, at least 256 MiB (a reply read away with limit 0 included).
fn discard_bound(limit: u64) -> u64 {
    limit.saturating_mul(2).max(256 << 20)
}

/// A decoded multi-line body.
pub(super) struct Body {
    /// Empty when `overflowed`.
    pub bytes: Vec<u8>,
    /// Content bytes the server sent, also past the limit.
    pub size: u64,
    pub overflowed: bool,
}
