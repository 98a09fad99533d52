//! The IMAP session: connect, greeting, capabilities, STARTTLS, and the send/receive core every command uses.
//!
//! The core keeps the protocol honest: every tagged reply must match a
//! command in flight, continuation requests come only while a literal waits,
//! and any error on the wire (a desync, BYE, a timeout, an undecodable
//! response) closes the session for good — it is never reused.
//! Commands themselves live in `auth.rs`, `mailbox.rs`, `fetch.rs` and
//! `append.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::config::{Account, Security};
use crate::net::{Connection, Endpoint, NetError};

use super::encode::{CommandBuilder, LiteralSupport, MailboxEncoding, Request};
use super::error::{ImapError, ResponseCode, ServerStatus, StatusKind};
use super::frame::{frame_len, FrameError, FrameLimits};
use super::response::{decode_greeting, decode_reply, GreetingReply, Reply, Untagged};

/// How APPEND batches are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendMode {
    /// MULTIAPPEND with LITERAL+ when offered, else pipelined.
    Auto,
    /// One APPEND at a time: wait for `+` and for the tagged reply.
    OneAtATime,
    /// APPENDs back to back (a window of them in flight), each with its own
    /// tagged reply; literals non-synchronising when the server allows.
    Pipelined,
    /// MULTIAPPEND (RFC 3502) when offered, else pipelined.
    MultiAppend,
}

/// Tuning knobs; [`ImapOptions::default`] is what the engine should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapOptions {
    pub limits: FrameLimits,
    pub append_mode: AppendMode,
    /// APPENDs in flight at once when pipelining. Their replies are a few
    /// dozen bytes each, so the server never blocks writing them.
    pub append_window: usize,
    /// Most messages in one MULTIAPPEND.
    pub multiappend_messages: usize,
    /// Most bytes in one MULTIAPPEND (it is one write).
    pub multiappend_bytes: usize,
    /// Messages per window of [`ImapSession::uid_fetch_sizes_from`] at
    /// most: one command's answer stays within what the session keeps.
    pub size_window: u32,
}

impl Default for ImapOptions {
    fn default() -> Self {
        ImapOptions {
            limits: FrameLimits::default(),
            append_mode: AppendMode::Auto,
            append_window: 64,
            multiappend_messages: 100,
            multiappend_bytes: 16 * 1024 * 1024,
            size_window: 50_000,
        }
    }
}

/// The server's capabilities, upper-cased (RFC 3501 §7.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(BTreeSet<String>);

impl Capabilities {
    pub fn new(list: impl IntoIterator<Item = String>) -> Self {
        Capabilities(list.into_iter().map(|c| c.to_ascii_uppercase()).collect())
    }

    /// Whether `name` (any case) is offered.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains(&name.to_ascii_uppercase())
    }

    /// RFC 7889 `APPENDLIMIT=n`: the largest message the server accepts.
    pub fn append_limit(&self) -> Option<u64> {
        self.0
            .iter()
            .find_map(|c| c.strip_prefix("APPENDLIMIT=")?.parse().ok())
    }

    /// RFC 7888: which literals need no continuation.
    pub fn literals(&self) -> LiteralSupport {
        if self.has("LITERAL+") {
            LiteralSupport::Plus
        } else if self.has("LITERAL-") {
            LiteralSupport::Minus
        } else {
            LiteralSupport::SyncOnly
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// A logged-in IMAP session on one connection.
pub struct ImapSession {
    pub(super) conn: Connection,
    pub(super) account: String,
    pub(super) caps: Capabilities,
    pub(super) options: ImapOptions,
    pub(super) encoding: MailboxEncoding,
    /// The hierarchy delimiter from `LIST "" ""`, once asked.
    pub(super) delimiter: Option<Option<char>>,
    tags: u64,
    broken: bool,
    /// Commands sent whose tagged reply has not been read.
    pending: HashSet<String>,
    /// Tagged replies read while waiting for another command's.
    done: HashMap<String, ServerStatus>,
    /// Untagged data since the last [`ImapSession::run`].
    untagged: Vec<Untagged>,
    /// Whether a [`ImapSession::run`] wants the untagged data: outside one
    /// (an APPEND's EXISTS, a server's chatter) it is dropped unread.
    collecting: bool,
    /// Bytes of untagged responses since the last tagged reply or run, and
    /// the largest of them.
    untagged_bytes: usize,
    untagged_largest: usize,
    /// Size of the last response read.
    last_frame: usize,
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession")
            .field("host", &self.host())
            .field("account", &self.account)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// Untagged responses kept for one command at most (a window of
/// `uid_fetch_sizes_from` is 50,000 messages); a server that sends more is
/// cut off rather than let fill memory, and nothing is silently dropped.
const MAX_UNTAGGED: usize = 100_000;

/// Memory that untagged responses may take between two tagged replies at
/// most (as kept: a `* SEARCH 1 1 1` line takes twice its size as UIDs),
/// besides the largest one: one message's FETCH may be larger on its own
/// (the frame's literal limit bounds it). Bodies are fetched in commands of
/// at most 16 MiB, so a real answer stays below.
const MAX_UNTAGGED_BYTES: usize = 24 * 1024 * 1024;

impl ImapSession {
    /// Connects, reads the greeting, upgrades with STARTTLS when the account
    /// says so, and logs in per `account.auth` (RFC 3501 §6.1–6.2).
    pub async fn connect(account: &Account) -> Result<ImapSession, ImapError> {
        ImapSession::connect_with(account, ImapOptions::default()).await
    }

    /// [`ImapSession::connect`] with explicit options.
    pub async fn connect_with(
        account: &Account,
        mut options: ImapOptions,
    ) -> Result<ImapSession, ImapError> {
        if let Some(limit) = account.max_line_length {
            options.limits.max_line = limit;
        }
        let conn = Connection::connect(&Endpoint::of(account)).await?;
        let mut session = ImapSession {
            conn,
            account: account.name.clone(),
            caps: Capabilities::default(),
            options,
            encoding: MailboxEncoding::Utf7,
            delimiter: None,
            tags: 0,
            broken: false,
            pending: HashSet::new(),
            done: HashMap::new(),
            untagged: Vec::new(),
            collecting: false,
            untagged_bytes: 0,
            untagged_largest: 0,
            last_frame: 0,
        };
        let preauth = session.greeting().await?;
        if account.security == Security::Starttls {
            if preauth {
                // RFC 3501 §6.2.1: STARTTLS is only valid before login.
                return Err(
                    session.protocol("PREAUTH greeting on a connection that must use STARTTLS")
                );
            }
            session.starttls().await?;
        }
        if !preauth {
            session.login(account).await?;
        }
        if session.caps.has("UTF8=ACCEPT") && session.caps.has("ENABLE") {
            session.enable_utf8().await?;
        }
        tracing::debug!(host = session.host(), capabilities = ?session.caps, "imap session ready");
        Ok(session)
    }

    /// RFC 6855 §3 ENABLE UTF8=ACCEPT: mailbox names then travel as UTF-8
    /// quoted strings instead of modified UTF-7. Only when the server says
    /// `* ENABLED UTF8=ACCEPT`; otherwise the session keeps modified UTF-7,
    /// which every server understands.
    async fn enable_utf8(&mut self) -> Result<(), ImapError> {
        let req = self.command("ENABLE").syntax("UTF8=ACCEPT").finish();
        let (_, untagged) = self.run_ok("ENABLE", &req).await?;
        let enabled = untagged.iter().any(
            |u| matches!(u, Untagged::Enabled(caps) if caps.iter().any(|c| c == "UTF8=ACCEPT")),
        );
        if enabled {
            self.encoding = MailboxEncoding::Utf8;
        }
        Ok(())
    }

    /// How mailbox names are encoded on this session.
    pub fn mailbox_encoding(&self) -> MailboxEncoding {
        self.encoding
    }

    /// The server's current capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// TLS version and cipher, when encrypted.
    pub fn tls_info(&self) -> Option<crate::net::TlsInfo> {
        self.conn.tls_info()
    }

    pub(super) fn host(&self) -> &str {
        self.conn.host()
    }

    /// RFC 3501 §7.1: `* OK`, `* PREAUTH` or `* BYE`. Returns whether the
    /// server pre-authenticated us.
    async fn greeting(&mut self) -> Result<bool, ImapError> {
        let frame = self.read_frame().await?;
        let greeting = decode_greeting(&frame)
            .map_err(|u| self.protocol(&format!("unreadable greeting: {}", u.excerpt)))?;
        let (status, preauth) = match greeting {
            GreetingReply::Bye(status) => {
                self.broken = true;
                return Err(self.bye(status));
            }
            GreetingReply::Ok(status) => (status, false),
            GreetingReply::PreAuth(status) => (status, true),
        };
        match status.code {
            Some(ResponseCode::Capability(caps)) => self.caps = Capabilities::new(caps),
            _ => self.refresh_capabilities().await?,
        }
        Ok(preauth)
    }

    /// RFC 3501 §6.1.1 CAPABILITY.
    pub(super) async fn refresh_capabilities(&mut self) -> Result<(), ImapError> {
        let req = self.command("CAPABILITY").finish();
        let (_, untagged) = self.run_ok("CAPABILITY", &req).await?;
        let caps = untagged.into_iter().find_map(|u| match u {
            Untagged::Capability(caps) => Some(caps),
            _ => None,
        });
        self.caps = Capabilities::new(caps.unwrap_or_default());
        Ok(())
    }

    /// Takes capabilities from a tagged OK's `[CAPABILITY ...]` code, or asks.
    pub(super) async fn capabilities_after(
        &mut self,
        status: &ServerStatus,
    ) -> Result<(), ImapError> {
        match &status.code {
            Some(ResponseCode::Capability(caps)) => {
                self.caps = Capabilities::new(caps.clone());
                Ok(())
            }
            _ => self.refresh_capabilities().await,
        }
    }

    /// RFC 3501 §6.2.1 STARTTLS; never skipped when not offered (no downgrade).
    /// Capabilities are asked again afterwards: what came before is untrusted.
    async fn starttls(&mut self) -> Result<(), ImapError> {
        if !self.caps.has("STARTTLS") {
            self.broken = true;
            return Err(ImapError::Unsupported {
                host: self.host().to_string(),
                capability: "STARTTLS",
            });
        }
        let req = self.command("STARTTLS").finish();
        self.run_ok("STARTTLS", &req).await?;
        if let Err(e) = self.conn.start_tls().await {
            self.broken = true;
            return Err(e.into());
        }
        self.caps = Capabilities::default();
        self.refresh_capabilities().await
    }

    /// RFC 3501 §6.1.2 NOOP: lets the server report news; keeps the session alive.
    /// Returns the message count of the selected mailbox when the server
    /// reported one (`* n EXISTS`, RFC 3501 §7.3.1).
    pub async fn noop(&mut self) -> Result<Option<u32>, ImapError> {
        let req = self.command("NOOP").finish();
        let (_, untagged) = self.run_ok("NOOP", &req).await?;
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Exists(n) => Some(n),
                _ => None,
            })
            .next_back())
    }

    /// RFC 3501 §6.1.3 LOGOUT: `* BYE` then the tagged OK; a server that
    /// just closes is fine too.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        self.check_usable()?;
        let req = self.command("LOGOUT").finish();
        self.send(&req).await?;
        loop {
            match self.read_reply().await {
                Ok(Reply::Tagged { tag, .. }) if tag == req.tag => break,
                Ok(_) => {}
                Err(ImapError::Net(NetError::Closed { .. })) => break,
                Err(e) => return Err(e),
            }
        }
        self.conn.shutdown().await;
        Ok(())
    }

    // ----- the core: tags, sending, reading, matching -----

    /// A new command with a fresh tag.
    pub(super) fn command(&mut self, name: &'static str) -> CommandBuilder {
        self.tags += 1;
        let tag = format!("A{}", self.tags);
        // RFC 6855 §3: with UTF8=ACCEPT enabled, UTF-8 may go in quoted strings.
        CommandBuilder::new(&tag, name, self.caps.literals())
            .utf8_quoted(self.encoding == MailboxEncoding::Utf8)
    }

    /// Sends one command and reads until its tagged reply; the status and the
    /// untagged data that came meanwhile.
    pub(super) async fn run(
        &mut self,
        req: &Request,
    ) -> Result<(ServerStatus, Vec<Untagged>), ImapError> {
        self.clear_untagged();
        self.collecting = true;
        let status = match self.send(req).await {
            Ok(true) => self.wait_tag(&req.tag).await,
            Ok(false) => self.take_done(&req.tag),
            Err(e) => Err(e),
        };
        self.collecting = false;
        Ok((status?, std::mem::take(&mut self.untagged)))
    }

    /// [`ImapSession::run`], with a NO or BAD as [`ImapError::Command`].
    pub(super) async fn run_ok(
        &mut self,
        command: &'static str,
        req: &Request,
    ) -> Result<(ServerStatus, Vec<Untagged>), ImapError> {
        let (status, untagged) = self.run(req).await?;
        if status.kind != StatusKind::Ok {
            return Err(ImapError::Command {
                host: self.host().to_string(),
                command,
                status,
            });
        }
        Ok((status, untagged))
    }

    /// Writes a command, waiting for `+` before each synchronising literal.
    /// `false` when the server completed the command instead of accepting
    /// a literal (its status is then kept for [`ImapSession::take_done`]).
    pub(super) async fn send(&mut self, req: &Request) -> Result<bool, ImapError> {
        self.check_usable()?;
        tracing::debug!(host = self.host(), command = %req.redacted, "imap >");
        self.pending.insert(req.tag.clone());
        for (i, part) in req.parts.iter().enumerate() {
            if i > 0 && self.wait_continue(&req.tag).await?.is_none() {
                return Ok(false);
            }
            self.write(part).await?;
        }
        Ok(true)
    }

    /// One write; a failure closes the session.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), ImapError> {
        self.check_usable()?;
        self.conn.write_all(bytes).await.map_err(|e| {
            self.broken = true;
            ImapError::from(e)
        })
    }

    /// Reads until the tagged reply of `tag`.
    pub(super) async fn wait_tag(&mut self, tag: &str) -> Result<ServerStatus, ImapError> {
        loop {
            if let Some(status) = self.done.remove(tag) {
                return Ok(status);
            }
            match self.read_reply().await? {
                Reply::Continue(_) => {
                    return Err(self.protocol("continuation request nobody asked for"))
                }
                reply => self.absorb(reply)?,
            }
        }
    }

    /// Reads until a continuation request (`Some(text)`) or the tagged
    /// reply of `tag` (`None`; the status is kept for [`ImapSession::take_done`]).
    pub(super) async fn wait_continue(&mut self, tag: &str) -> Result<Option<Vec<u8>>, ImapError> {
        loop {
            if self.done.contains_key(tag) {
                return Ok(None);
            }
            match self.read_reply().await? {
                Reply::Continue(text) => return Ok(Some(text)),
                reply => self.absorb(reply)?,
            }
        }
    }

    /// The kept tagged reply of `tag`.
    pub(super) fn take_done(&mut self, tag: &str) -> Result<ServerStatus, ImapError> {
        match self.done.remove(tag) {
            Some(status) => Ok(status),
            None => Err(self.protocol("tagged reply lost")),
        }
    }

    /// The tagged reply of `tag` if it was already read (used to harvest
    /// confirmations after a batch ended early).
    pub(super) fn done_if_read(&mut self, tag: &str) -> Option<ServerStatus> {
        self.done.remove(tag)
    }

    /// Files a tagged or untagged reply; BYE and unknown tags end the session.
    fn absorb(&mut self, reply: Reply) -> Result<(), ImapError> {
        match reply {
            Reply::Tagged { tag, status } => {
                if !self.pending.remove(&tag) {
                    return Err(self.protocol(&format!("reply with unknown tag {tag:?}")));
                }
                tracing::debug!(host = self.host(), %tag, %status, "imap <");
                self.done.insert(tag, status);
                self.untagged_bytes = 0;
                self.untagged_largest = 0;
            }
            Reply::Untagged(Untagged::Status(status)) if status.kind != StatusKind::Ok => {
                tracing::warn!(host = self.host(), %status, "imap server warning");
                self.keep_untagged(Untagged::Status(status))?;
            }
            Reply::Untagged(untagged) => self.keep_untagged(untagged)?,
            Reply::Bye(status) => {
                self.broken = true;
                return Err(self.bye(status));
            }
            Reply::Continue(_) => {
                return Err(self.protocol("continuation request nobody asked for"))
            }
        }
        Ok(())
    }

    /// Keeps untagged data for the [`ImapSession::run`] that waits for it;
    /// past [`MAX_UNTAGGED`] responses or [`MAX_UNTAGGED_BYTES`] the server
    /// is not answering a command but flooding, and the session ends.
    fn keep_untagged(&mut self, untagged: Untagged) -> Result<(), ImapError> {
        let heap = match &untagged {
            Untagged::Search(uids) => uids.len() * std::mem::size_of::<u32>(),
            _ => 0,
        };
        let kept = std::mem::size_of::<Untagged>() + heap.max(self.last_frame);
        self.untagged_bytes = self.untagged_bytes.saturating_add(kept);
        self.untagged_largest = self.untagged_largest.max(kept);
        if self.untagged_bytes - self.untagged_largest > MAX_UNTAGGED_BYTES
            || self.untagged.len() >= MAX_UNTAGGED
        {
            return Err(self.protocol(&format!(
                "more than {} untagged responses or {} MiB of them without a tagged reply",
                MAX_UNTAGGED,
                MAX_UNTAGGED_BYTES >> 20
            )));
        }
        if self.collecting {
            self.untagged.push(untagged);
        }
        Ok(())
    }

    /// Drops untagged data kept so far (between commands of a long run).
    pub(super) fn clear_untagged(&mut self) {
        self.untagged.clear();
        self.untagged_bytes = 0;
        self.untagged_largest = 0;
    }

    /// Reads and decodes one response; any failure closes the session.
    pub(super) async fn read_reply(&mut self) -> Result<Reply, ImapError> {
        let frame = self.read_frame().await?;
        self.last_frame = frame.len();
        decode_reply(&frame)
            .map_err(|u| self.protocol(&format!("undecodable response: {}", u.excerpt)))
    }

    /// The bytes of the next complete response, literals included.
    async fn read_frame(&mut self) -> Result<Vec<u8>, ImapError> {
        self.check_usable()?;
        loop {
            match frame_len(self.conn.buffered(), self.options.limits) {
                Ok(Some(n)) => {
                    let frame = self.conn.buffered()[..n].to_vec();
                    self.conn.consume(n);
                    return Ok(frame);
                }
                Ok(None) => {
                    if let Err(e) = self.conn.fill().await {
                        self.broken = true;
                        return Err(e.into());
                    }
                }
                Err(e) => {
                    self.broken = true;
                    let host = self.host().to_string();
                    return Err(match e {
                        FrameError::LineTooLong { limit } => {
                            NetError::LineTooLong { host, limit }.into()
                        }
                        FrameError::LiteralTooLarge { size, limit } => {
                            ImapError::LiteralTooLarge { host, size, limit }
                        }
                    });
                }
            }
        }
    }

    /// False once a protocol error closed the session.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    pub(super) fn check_usable(&self) -> Result<(), ImapError> {
        if self.broken {
            return Err(ImapError::Poisoned {
                host: self.host().to_string(),
            });
        }
        Ok(())
    }

    /// Marks the session unusable and describes the desync.
    pub(super) fn protocol(&mut self, reason: &str) -> ImapError {
        self.broken = true;
        tracing::warn!(
            host = self.host(),
            reason,
            "imap protocol error; closing the session"
        );
        ImapError::Protocol {
            host: self.host().to_string(),
            reason: reason.to_string(),
        }
    }

    fn bye(&self, status: ServerStatus) -> ImapError {
        ImapError::Bye {
            host: self.host().to_string(),
            code: status.code,
            text: status.text,
        }
    }

    /// Whether an earlier error closed this session.
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}
