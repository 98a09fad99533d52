//! Pull-based, pipelined RETR of many messages: a window of RETRs in flight, results handed out one at a time.
//!
//! RFC 2449 §6.6 PIPELINING: "the server can accept multiple commands in a
//! single packet [...] the client can send multiple commands without waiting
//! for a response". When the server offers it, [`Retrieval::next`] keeps up
//! to `window_messages` RETRs (and `window_bytes` by LIST sizes, but always
//! at least one) sent ahead of the reply being read, so the server never
//! waits for the next command while the engine appends the last message.
//! Without PIPELINING, one RETR at a time. A reply that breaks the protocol
//! is that message's fault when it is the first RETR reply of the session
//! ([`Pop3Error::BrokenReply`]); a later one may come from the message
//! before it ([`Pop3Error::OutOfStep`]), which the next session, starting
//! with that message, finds out.
//!
//! A per-message error (over the size limit by LIST or while reading, -ERR
//! to one RETR) is handed out and the stream goes on; an error that breaks
//! the session is handed out once and ends it. Dropping a retrieval with
//! RETRs in flight leaves their replies to be read away by the session's
//! next operation.

use std::collections::VecDeque;

use super::command::Command;
use super::error::Pop3Error;
use super::session::Pop3Session;

/// One message as the server sent it: unstuffed, CRLF line ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrieved {
    pub msgno: u32,
    pub bytes: Vec<u8>,
}

/// A message in the window, in the order results are handed out.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// `RETR` sent; `size` is the LIST size (0 when unknown).
    Sent { msgno: u32, size: u64 },
    /// Over the limit by its LIST size: reported without a RETR.
    Skipped { msgno: u32, size: u64 },
}

/// The stream returned by [`Pop3Session::retrieve`].
pub struct Retrieval<'s> {
    session: &'s mut Pop3Session,
    queue: VecDeque<u32>,
    window: VecDeque<Slot>,
    /// LIST bytes of the `Sent` slots in the window.
    window_bytes: u64,
    /// Sent slots in the window.
    window_sent: usize,
    /// Sizes are looked up (a LIST is read if none is cached) once.
    sized: bool,
    /// Some RETR was answered (a message or a refusal): a broken reply now
    /// may be the previous message's doing.
    answered: bool,
    finished: bool,
}

impl Pop3Session {
    /// Streams the given messages in order; see [`Retrieval::next`].
    pub fn retrieve(&mut self, msgnos: Vec<u32>) -> Retrieval<'_> {
        Retrieval {
            session: self,
            queue: msgnos.into(),
            window: VecDeque::new(),
            window_bytes: 0,
            window_sent: 0,
            sized: false,
            answered: false,
            finished: false,
        }
    }
}

impl Retrieval<'_> {
    /// The next message (or its per-message error), `None` when all were
    /// handed out or after an error that ended the session.
    pub async fn next(&mut self) -> Option<Result<Retrieved, Pop3Error>> {
        if self.finished || (self.queue.is_empty() && self.window.is_empty()) {
            return None;
        }
        if let Err(err) = self.session.ready().await {
            self.finished = true;
            return Some(Err(err));
        }
        let result = self.step().await;
        let result = self.session.finish(result);
        if matches!(&result, Err(err) if !err.is_per_message()) {
            self.finished = true;
        }
        Some(result)
    }

    /// How many messages are still to be handed out.
    pub fn remaining(&self) -> usize {
        self.queue.len() + self.window.len()
    }

    async fn step(&mut self) -> Result<Retrieved, Pop3Error> {
        if !self.sized {
            self.sized = true;
            if self.session.sizes.is_none() {
                self.session.list_inner().await?;
            }
        }
        self.top_up().await?;
        let slot = self.window.pop_front().expect("top_up leaves a slot");
        let (msgno, size) = match slot {
            Slot::Skipped { msgno, size } => {
                return Err(Pop3Error::TooLarge {
                    host: self.session.host(),
                    msgno,
                    size,
                    limit: self.session.options.max_message_size,
                })
            }
            Slot::Sent { msgno, size } => (msgno, size),
        };
        self.window_sent -= 1;
        self.window_bytes -= size;
        let result = self.session.read_message("RETR", msgno).await;
        let first = !std::mem::replace(&mut self.answered, true);
        match result {
            Ok(bytes) => Ok(Retrieved { msgno, bytes }),
            Err(Pop3Error::Protocol { host, detail, .. }) if first => Err(Pop3Error::BrokenReply {
                host,
                msgno,
                detail,
            }),
            Err(Pop3Error::Protocol { host, detail, .. }) => Err(Pop3Error::OutOfStep {
                host,
                msgno,
                detail,
            }),
            Err(e) => Err(e),
        }
    }

    /// Moves messages from the queue into the window and sends their RETRs
    /// in one write, until the window is full (one message without
    /// PIPELINING). Stops at a skipped message only when something precedes
    /// it, so results stay in the order asked.
    async fn top_up(&mut self) -> Result<(), Pop3Error> {
        let pipelining = self.session.pipelining();
        let options = self.session.options.clone();
        let mut commands = Vec::new();
        while let Some(&msgno) = self.queue.front() {
            let size = self.session.expected_size(msgno).unwrap_or(0);
            if size > options.max_message_size {
                self.queue.pop_front();
                self.window.push_back(Slot::Skipped { msgno, size });
                continue;
            }
            let room = if self.window_sent == 0 {
                true
            } else {
                pipelining
                    && self.window_sent < options.window_messages
                    && self.window_bytes.saturating_add(size) <= options.window_bytes
            };
            if !room {
                break;
            }
            self.queue.pop_front();
            self.window.push_back(Slot::Sent { msgno, size });
            self.window_sent += 1;
            self.window_bytes += size;
            commands.push(Command::Retr(msgno));
        }
        if !commands.is_empty() {
            self.session.send(&commands).await?;
        }
        Ok(())
    }
}

impl Drop for Retrieval<'_> {
    /// RETRs already sent still get replies: the session reads them away
    /// before its next operation.
    fn drop(&mut self) {
        for slot in self.window.drain(..) {
            if let Slot::Sent { msgno, .. } = slot {
                self.session.pending.push_back(Command::Retr(msgno));
            }
        }
    }
}
