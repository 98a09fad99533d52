//! TRANSACTION-state commands (RFC 1939 §5, §7): STAT, LIST, UIDL, TOP, RETR, DELE, RSET, NOOP, QUIT, and pipelined batches.
//!
//! Each public method is `ready` → one inner function → `finish` (see
//! session.rs). Per-message refusals (`-ERR` to `RETR 3`) are
//! [`Pop3Error::MessageRefused`] and leave the session usable.

use std::collections::HashMap;

use super::command::Command;
use super::error::Pop3Error;
use super::listing;
use super::reply::{Response, Status};
use super::session::Pop3Session;

/// One result per message of a batch, in the order asked.
pub type BatchResults<T> = Vec<(u32, Result<T, Pop3Error>)>;

impl Pop3Session {
    /// RFC 1939 §5 STAT: (message count, maildrop size in octets).
    pub async fn stat(&mut self) -> Result<(u32, u64), Pop3Error> {
        self.ready().await?;
        let result = self.stat_inner().await;
        self.finish(result)
    }

    async fn stat_inner(&mut self) -> Result<(u32, u64), Pop3Error> {
        let response = self.single(Command::Stat).await?;
        listing::stat(&response.text).map_err(|e| self.protocol("STAT", &e.to_string()))
    }

    /// RFC 1939 §5 LIST: every message's number and size (kept for the
    /// RETR window and the size check before RETR).
    pub async fn list(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        self.ready().await?;
        let result = self.list_inner().await;
        self.finish(result)
    }

    pub(super) async fn list_inner(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        let body = self.multi(Command::List(None)).await?;
        let scan =
            listing::scan_listing(&body).map_err(|e| self.protocol("LIST", &e.to_string()))?;
        self.sizes = Some(scan.iter().copied().collect::<HashMap<_, _>>());
        Ok(scan)
    }

    /// RFC 1939 §5 `LIST n`: one message's size.
    pub async fn list_one(&mut self, msgno: u32) -> Result<u64, Pop3Error> {
        self.ready().await?;
        let result = self.list_one_inner(msgno).await;
        self.finish(result)
    }

    async fn list_one_inner(&mut self, msgno: u32) -> Result<u64, Pop3Error> {
        let response = self.single(Command::List(Some(msgno))).await?;
        self.scan_reply(msgno, &response)
    }

    /// RFC 1939 §7 UIDL: every message's unique id; `None` when the server
    /// has no UIDL (not in CAPA, or `-ERR` from a server without CAPA).
    pub async fn uidl(&mut self) -> Result<Option<Vec<(u32, String)>>, Pop3Error> {
        self.ready().await?;
        let result = self.uidl_inner().await;
        self.finish(result)
    }

    async fn uidl_inner(&mut self) -> Result<Option<Vec<(u32, String)>>, Pop3Error> {
        if !self.has_uidl() {
            return Ok(None);
        }
        let body = match self.multi(Command::Uidl(None)).await {
            Ok(body) => body,
            Err(Pop3Error::Refused { refusal, .. })
                if !self.caps().known && refusal.code.is_none() =>
            {
                self.uidl_unsupported = true;
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let ids = listing::uid_listing(&body).map_err(|e| self.protocol("UIDL", &e.to_string()))?;
        Ok(Some(ids))
    }

    /// RFC 1939 §7 `UIDL n`; `None` when the server has no UIDL.
    pub async fn uidl_one(&mut self, msgno: u32) -> Result<Option<String>, Pop3Error> {
        if !self.has_uidl() {
            return Ok(None);
        }
        self.ready().await?;
        let result = self.uidl_one_inner(msgno).await;
        self.finish(result).map(Some)
    }

    async fn uidl_one_inner(&mut self, msgno: u32) -> Result<String, Pop3Error> {
        let response = self.single(Command::Uidl(Some(msgno))).await?;
        self.uid_reply(msgno, &response)
    }

    /// RFC 1939 §7 `TOP n lines`: the header and the first `lines` body
    /// lines, CRLF line ends.
    pub async fn top(&mut self, msgno: u32, lines: u32) -> Result<Vec<u8>, Pop3Error> {
        self.ready().await?;
        let result = self.message_body(Command::Top(msgno, lines)).await;
        self.finish(result)
    }

    /// RFC 1939 §5 `RETR n`: one message, CRLF line ends, unstuffed. For
    /// many messages use [`Pop3Session::retrieve`], which pipelines.
    pub async fn retr(&mut self, msgno: u32) -> Result<Vec<u8>, Pop3Error> {
        self.ready().await?;
        let result = self.message_body(Command::Retr(msgno)).await;
        self.finish(result)
    }

    /// Sends a TOP or RETR and reads its reply.
    async fn message_body(&mut self, command: Command) -> Result<Vec<u8>, Pop3Error> {
        let msgno = command.msgno().unwrap_or(0);
        self.send(std::slice::from_ref(&command)).await?;
        self.read_message(command.verb(), msgno).await
    }

    /// Reads the reply to a TOP or RETR already sent; a refusal or an
    /// oversized body is a per-message error (the body drained).
    pub(super) async fn read_message(
        &mut self,
        verb: &'static str,
        msgno: u32,
    ) -> Result<Vec<u8>, Pop3Error> {
        let refusal = match self.read_status(verb).await? {
            Status::Ok(_) => None,
            Status::Err(refusal) => Some(refusal),
            Status::Continue(_) => return Err(self.protocol(verb, "a continuation")),
        };
        if let Some(refusal) = refusal {
            return Err(Pop3Error::MessageRefused {
                host: self.host(),
                command: verb,
                msgno,
                refusal,
            });
        }
        let limit = self.options.max_message_size;
        let hint = self.expected_size(msgno).unwrap_or(0);
        let body = self.read_body(verb, limit, hint).await?;
        if body.overflowed {
            return Err(Pop3Error::TooLarge {
                host: self.host(),
                msgno,
                size: body.size,
                limit,
            });
        }
        Ok(body.bytes)
    }

    /// RFC 1939 §5 `DELE n`: marks a message; it goes only when QUIT is
    /// answered `+OK` (the UPDATE state).
    pub async fn dele(&mut self, msgno: u32) -> Result<(), Pop3Error> {
        let mut results = self.dele_many(&[msgno]).await?;
        results.pop().map_or(Ok(()), |(_, result)| result)
    }

    /// `DELE` for each message, pipelined in batches when offered.
    pub async fn dele_many(&mut self, msgnos: &[u32]) -> Result<BatchResults<()>, Pop3Error> {
        let commands = msgnos.iter().map(|&n| Command::Dele(n)).collect();
        let results = self.batch(commands).await?;
        Ok(map_batch(results, |_, _| Ok(())))
    }

    /// `LIST n` for each message, pipelined in batches when offered.
    pub async fn list_many(&mut self, msgnos: &[u32]) -> Result<BatchResults<u64>, Pop3Error> {
        let commands = msgnos.iter().map(|&n| Command::List(Some(n))).collect();
        let results = self.batch(commands).await?;
        let parsed = map_batch(results, |n, r| self.scan_reply(n, &r));
        self.poison_if_protocol(parsed)
    }

    /// `UIDL n` for each message, pipelined; `None` without UIDL.
    pub async fn uidl_many(
        &mut self,
        msgnos: &[u32],
    ) -> Result<Option<BatchResults<String>>, Pop3Error> {
        if !self.has_uidl() {
            return Ok(None);
        }
        let commands = msgnos.iter().map(|&n| Command::Uidl(Some(n))).collect();
        let results = self.batch(commands).await?;
        let parsed = map_batch(results, |n, r| self.uid_reply(n, &r));
        self.poison_if_protocol(parsed).map(Some)
    }

    /// RFC 1939 §5 RSET: unmarks every message marked deleted.
    pub async fn rset(&mut self) -> Result<(), Pop3Error> {
        self.ready().await?;
        let result = self.single(Command::Rset).await.map(drop);
        self.finish(result)
    }

    /// RFC 1939 §5 NOOP: keeps the session alive, proves it is.
    pub async fn noop(&mut self) -> Result<(), Pop3Error> {
        self.ready().await?;
        let result = self.single(Command::Noop).await.map(drop);
        self.finish(result)
    }

    /// RFC 1939 §6 QUIT: the server enters the UPDATE state and removes the
    /// messages marked with DELE. `Ok(())` means it confirmed that with
    /// `+OK`. `Err(Refused)`: it said -ERR ("some deleted messages not
    /// removed"). Any other error: the outcome is unknown, the marked
    /// messages may or may not be gone. Without QUIT nothing is deleted.
    pub async fn quit(mut self) -> Result<(), Pop3Error> {
        self.ready().await?;
        let result = self.single(Command::Quit).await.map(drop);
        let result = self.finish(result);
        self.conn.shutdown().await;
        result
    }

    /// Sends `commands` in batches (one write each) and reads one status
    /// line per command; refusals are per-command results.
    async fn batch(&mut self, commands: Vec<Command>) -> Result<BatchResults<Response>, Pop3Error> {
        self.ready().await?;
        let result = self.batch_inner(commands).await;
        self.finish(result)
    }

    async fn batch_inner(
        &mut self,
        commands: Vec<Command>,
    ) -> Result<BatchResults<Response>, Pop3Error> {
        let size = if self.pipelining() {
            self.options.batch.max(1)
        } else {
            1
        };
        let mut results = Vec::with_capacity(commands.len());
        for chunk in commands.chunks(size) {
            self.send(chunk).await?;
            for command in chunk {
                let msgno = command.msgno().unwrap_or(0);
                let verb = command.verb();
                let result = match self.read_status(verb).await? {
                    Status::Ok(response) => Ok(response),
                    Status::Err(refusal) => Err(Pop3Error::MessageRefused {
                        host: self.host(),
                        command: verb,
                        msgno,
                        refusal,
                    }),
                    Status::Continue(_) => return Err(self.protocol(verb, "a continuation")),
                };
                results.push((msgno, result));
            }
        }
        Ok(results)
    }

    /// Sends one single-line command; -ERR is [`Pop3Error::Refused`].
    async fn single(&mut self, command: Command) -> Result<Response, Pop3Error> {
        let verb = command.verb();
        self.send(&[command]).await?;
        match self.read_status(verb).await? {
            Status::Ok(response) => Ok(response),
            Status::Err(refusal) => Err(Pop3Error::Refused {
                host: self.host(),
                command: verb,
                refusal,
            }),
            Status::Continue(_) => Err(self.protocol(verb, "a continuation")),
        }
    }

    /// Sends one multi-line command and returns its body (listing limit).
    async fn multi(&mut self, command: Command) -> Result<Vec<u8>, Pop3Error> {
        let verb = command.verb();
        self.single(command).await?;
        let body = self
            .read_body(verb, self.options.max_listing_size, 0)
            .await?;
        if body.overflowed {
            return Err(self.protocol(verb, "listing larger than max_listing_size"));
        }
        Ok(body.bytes)
    }

    /// `+OK n size` to `LIST n`, checked to be about message `n`.
    fn scan_reply(&self, msgno: u32, response: &Response) -> Result<u64, Pop3Error> {
        match listing::scan_line(&response.text) {
            Ok((n, size)) if n == msgno => Ok(size),
            Ok(_) => Err(self.protocol("LIST", &format!("reply for another message: {response}"))),
            Err(e) => Err(self.protocol("LIST", &e.to_string())),
        }
    }

    /// `+OK n uid` to `UIDL n`, checked to be about message `n`.
    fn uid_reply(&self, msgno: u32, response: &Response) -> Result<String, Pop3Error> {
        match listing::uid_line(&response.text) {
            Ok((n, uid)) if n == msgno => Ok(uid),
            Ok(_) => Err(self.protocol("UIDL", &format!("reply for another message: {response}"))),
            Err(e) => Err(self.protocol("UIDL", &e.to_string())),
        }
    }

    /// A reply that does not parse means the client and server disagree on
    /// what was asked: the whole batch fails and the session is poisoned.
    fn poison_if_protocol<T>(
        &mut self,
        parsed: BatchResults<T>,
    ) -> Result<BatchResults<T>, Pop3Error> {
        if parsed
            .iter()
            .any(|(_, r)| matches!(r, Err(Pop3Error::Protocol { .. })))
        {
            let err = parsed
                .into_iter()
                .find_map(|(_, r)| r.err().filter(|e| matches!(e, Pop3Error::Protocol { .. })))
                .expect("checked above");
            return self.finish(Err(err));
        }
        Ok(parsed)
    }

    fn has_uidl(&self) -> bool {
        let caps = self.caps();
        !self.uidl_unsupported && (!caps.known || caps.uidl)
    }

    /// The LIST size of a message, when a full LIST was read.
    pub(super) fn expected_size(&self, msgno: u32) -> Option<u64> {
        self.sizes.as_ref()?.get(&msgno).copied()
    }
}

fn map_batch<T>(
    results: BatchResults<Response>,
    mut f: impl FnMut(u32, Response) -> Result<T, Pop3Error>,
) -> BatchResults<T> {
    results
        .into_iter()
        .map(|(n, r)| (n, r.and_then(|response| f(n, response))))
        .collect()
}
