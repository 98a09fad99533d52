//! APPEND, fast: pipelined with LITERAL+/LITERAL-, MULTIAPPEND, and an exact per-message account of what was confirmed.
//!
//! RFC 3501 §6.3.11: `append = "APPEND" SP mailbox [SP flag-list]
//! [SP date-time] SP literal`. RFC 3502 §6.3.11: MULTIAPPEND repeats
//! `[SP flag-list] [SP date-time] SP literal` in one command, all or none.
//! RFC 4315 §3: the tagged OK carries `[APPENDUID uidvalidity uid-set]`.
//! RFC 7888: `{n+}` literals need no `+` from the server (LITERAL- only up
//! to 4096 octets). RFC 7889: no message over APPENDLIMIT is sent.
//!
//! The engine must know exactly which messages are on the target, so each
//! message ends as [`AppendOutcome::Appended`] (tagged OK read),
//! [`AppendOutcome::Refused`] (tagged NO/BAD read, or refused locally),
//! [`AppendOutcome::Unknown`] (bytes may have reached the server, no reply
//! read) or [`AppendOutcome::NotSent`].

use std::collections::VecDeque;

use super::encode::Request;
use super::error::{ImapError, Refusal, ResponseCode, ServerStatus, StatusKind};
use super::internaldate::format_date_time;
use super::session::{AppendMode, ImapSession};
use crate::message::MailDate;
use crate::retry::ErrorClass;

/// One message to append. `bytes` must already be CRLF-normalised.
#[derive(Debug, Clone, Copy)]
pub struct AppendMessage<'a> {
    pub bytes: &'a [u8],
    /// Append with `\Seen`.
    pub seen: bool,
    /// INTERNALDATE; `None` lets the server use the current time.
    pub internal_date: Option<MailDate>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The server confirmed it; the UID when it sent APPENDUID.
    Appended { uid: Option<u32> },
    /// The server (or the APPENDLIMIT check) refused it.
    Refused(Refusal),
    /// Sent, but the connection ended before its tagged reply: it may or
    /// may not be on the target.
    Unknown,
    /// Never sent.
    NotSent,
}

/// The result of [`ImapSession::append_batch`]: one outcome per message, in
/// order, and the error that ended the batch early, if any.
#[derive(Debug)]
pub struct AppendBatchResult {
    pub outcomes: Vec<AppendOutcome>,
    /// The mailbox's UIDVALIDITY, from APPENDUID.
    pub uidvalidity: Option<u32>,
    pub error: Option<ImapError>,
}

/// A batch whose MULTIAPPEND commands are sent but not yet answered: what
/// [`ImapSession::start_append`] returns and [`ImapSession::finish_append`]
/// completes. Meanwhile the session can send the next batch, so the server
/// never waits for the client between batches.
#[derive(Debug)]
pub struct PendingAppend {
    batch: Batch,
    /// The mailbox's name on the wire, for a one-by-one retry.
    wire: String,
    /// Each MULTIAPPEND sent: its tag and the messages it carries.
    sent: Vec<(String, Vec<usize>)>,
    /// Why sending stopped early, or the whole result when the batch was
    /// appended at once (no MULTIAPPEND).
    state: PendingState,
}

#[derive(Debug)]
enum PendingState {
    /// Every chunk was sent.
    Sent,
    /// Sending failed; the chunks in `sent` may still be answered.
    Failed(ImapError),
    /// Appended without MULTIAPPEND, answered already.
    Done(Option<ImapError>),
}

impl ImapSession {
    /// Appends `msgs` to `mailbox` (a `/`-separated name), as fast as the
    /// server allows (see [`AppendMode`]).
    pub async fn append_batch(
        &mut self,
        mailbox: &str,
        msgs: &[AppendMessage<'_>],
    ) -> AppendBatchResult {
        let pending = self.start_append(mailbox, msgs).await;
        self.finish_append(pending, msgs).await
    }

    /// Sends `msgs` to `mailbox` without waiting for the answers, when the
    /// server takes MULTIAPPEND with LITERAL+ (otherwise appends them at
    /// once). Pass the same `msgs` to [`ImapSession::finish_append`].
    pub async fn start_append(
        &mut self,
        mailbox: &str,
        msgs: &[AppendMessage<'_>],
    ) -> PendingAppend {
        let mut pending = PendingAppend {
            batch: Batch {
                outcomes: vec![AppendOutcome::NotSent; msgs.len()],
                uidvalidity: None,
            },
            wire: String::new(),
            sent: Vec::new(),
            state: PendingState::Sent,
        };
        if let Err(e) = self.send_all(mailbox, msgs, &mut pending).await {
            pending.state = match pending.state {
                PendingState::Done(_) => PendingState::Done(Some(e)),
                _ => PendingState::Failed(e),
            };
        }
        pending
    }

    /// Reads the answers to a batch [`ImapSession::start_append`] sent.
    pub async fn finish_append(
        &mut self,
        pending: PendingAppend,
        msgs: &[AppendMessage<'_>],
    ) -> AppendBatchResult {
        let PendingAppend {
            mut batch,
            wire,
            sent,
            state,
        } = pending;
        let error = match state {
            PendingState::Done(error) => error,
            PendingState::Sent => self.read_sent(&wire, msgs, &sent, &mut batch).await.err(),
            PendingState::Failed(e) => {
                self.harvest(&sent, &mut batch);
                Some(e)
            }
        };
        if let Some(e) = &error {
            tracing::warn!(host = self.host(), error = %e, "APPEND batch ended early");
        }
        self.clear_untagged();
        AppendBatchResult {
            outcomes: batch.outcomes,
            uidvalidity: batch.uidvalidity,
            error,
        }
    }

    async fn send_all(
        &mut self,
        mailbox: &str,
        msgs: &[AppendMessage<'_>],
        pending: &mut PendingAppend,
    ) -> Result<(), ImapError> {
        self.check_usable()?;
        pending.wire = self.server_name(mailbox).await?;
        let wire = pending.wire.clone();
        let batch = &mut pending.batch;
        let mut todo = Vec::with_capacity(msgs.len());
        for (i, msg) in msgs.iter().enumerate() {
            match self.over_limit(msg) {
                Some(refusal) => batch.outcomes[i] = AppendOutcome::Refused(refusal),
                None => todo.push(i),
            }
        }
        let multi = self.caps.has("MULTIAPPEND")
            && match self.options.append_mode {
                AppendMode::Auto => self.caps.has("LITERAL+"),
                AppendMode::MultiAppend => true,
                AppendMode::OneAtATime | AppendMode::Pipelined => false,
            };
        if !multi {
            pending.state = PendingState::Done(None);
            let window = match self.options.append_mode {
                AppendMode::OneAtATime => 1,
                _ => self.options.append_window.max(1),
            };
            return self
                .append_pipelined(&wire, msgs, &todo, window, batch)
                .await;
        }
        for chunk in self.multiappend_chunks(msgs, &todo) {
            let parts: Vec<&AppendMessage<'_>> = chunk.iter().map(|&i| &msgs[i]).collect();
            let req = self.append_request(&wire, &parts)?;
            for &i in &chunk {
                batch.outcomes[i] = AppendOutcome::Unknown;
            }
            pending.sent.push((req.tag.clone(), chunk));
            // `false`: the server answered instead of taking a synchronising
            // literal; the answer is kept and read by `finish_append`.
            self.send(&req).await?;
        }
        Ok(())
    }

    /// Reads the answer to each MULTIAPPEND sent, in order. A refusal of a
    /// whole command for one message's sake is retried one by one to find
    /// and report the culprit; after a refusal that concerns the route, the
    /// later commands' answers are still read (they were sent).
    async fn read_sent(
        &mut self,
        wire: &str,
        msgs: &[AppendMessage<'_>],
        sent: &[(String, Vec<usize>)],
        batch: &mut Batch,
    ) -> Result<(), ImapError> {
        for (k, (tag, chunk)) in sent.iter().enumerate() {
            if let Err(e) = self.read_one_sent(wire, msgs, tag, chunk, batch).await {
                // The later commands were sent too.
                self.harvest(&sent[k + 1..], batch);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Records the answers already read for `sent` commands: after a
    /// failure they still say what became of their messages.
    fn harvest(&mut self, sent: &[(String, Vec<usize>)], batch: &mut Batch) {
        for (tag, chunk) in sent {
            if let Some(status) = self.done_if_read(tag) {
                batch.record_chunk(chunk, status);
            }
        }
    }

    async fn read_one_sent(
        &mut self,
        wire: &str,
        msgs: &[AppendMessage<'_>],
        tag: &str,
        chunk: &[usize],
        batch: &mut Batch,
    ) -> Result<(), ImapError> {
        let status = self.wait_tag(tag).await?;
        if status.kind != StatusKind::Ok
            && chunk.len() > 1
            && Refusal::from_status(status.clone()).class() == ErrorClass::Message
        {
            tracing::info!(host = self.host(), %status.text, "MULTIAPPEND refused; retrying its messages one by one");
            for &i in chunk {
                batch.outcomes[i] = AppendOutcome::NotSent;
            }
            let window = self.options.append_window.max(1);
            return self
                .append_pipelined(wire, msgs, chunk, window, batch)
                .await;
        }
        batch.record_chunk(chunk, status);
        Ok(())
    }

    /// RFC 7889: a message over APPENDLIMIT is refused here, unsent.
    fn over_limit(&self, msg: &AppendMessage<'_>) -> Option<Refusal> {
        let limit = self.caps.append_limit()?;
        (msg.bytes.len() as u64 > limit).then(|| Refusal {
            code: Some(ResponseCode::Limit),
            text: format!(
                "message is {} bytes, over the server's APPENDLIMIT of {limit}",
                msg.bytes.len()
            ),
            status: None,
        })
    }

    /// Groups `todo` into MULTIAPPEND commands bounded by count and bytes.
    fn multiappend_chunks(&self, msgs: &[AppendMessage<'_>], todo: &[usize]) -> Vec<Vec<usize>> {
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0;
        for &i in todo {
            let len = msgs[i].bytes.len();
            let full = chunks.last().is_none_or(|c| {
                c.len() >= self.options.multiappend_messages
                    || bytes + len > self.options.multiappend_bytes
            });
            if full {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += len;
            chunks.last_mut().expect("pushed above").push(i);
        }
        chunks
    }

    /// One APPEND per message, up to `window` in flight. Stops sending (the
    /// rest stay NotSent) after a refusal that is not the message's fault.
    async fn append_pipelined(
        &mut self,
        wire: &str,
        msgs: &[AppendMessage<'_>],
        todo: &[usize],
        window: usize,
        batch: &mut Batch,
    ) -> Result<(), ImapError> {
        let mut inflight: VecDeque<(String, usize)> = VecDeque::new();
        let result = self
            .pipeline(wire, msgs, todo, window, &mut inflight, batch)
            .await;
        // Replies read before the failure (while waiting for a `+` or for
        // a later tag) still confirm their messages.
        for (tag, i) in inflight {
            if let Some(status) = self.done_if_read(&tag) {
                batch.record(i, status);
            }
        }
        result
    }

    async fn pipeline(
        &mut self,
        wire: &str,
        msgs: &[AppendMessage<'_>],
        todo: &[usize],
        window: usize,
        inflight: &mut VecDeque<(String, usize)>,
        batch: &mut Batch,
    ) -> Result<(), ImapError> {
        let mut stop = false;
        for &i in todo {
            while inflight.len() >= window {
                stop |= self.settle_one(inflight, batch).await?;
            }
            if stop {
                break;
            }
            let req = self.append_request(wire, &[&msgs[i]])?;
            batch.outcomes[i] = AppendOutcome::Unknown;
            inflight.push_back((req.tag.clone(), i));
            self.send(&req).await?;
        }
        while !inflight.is_empty() {
            self.settle_one(inflight, batch).await?;
        }
        Ok(())
    }

    /// Reads the tagged reply of the oldest APPEND in flight; `true` when
    /// it is a refusal that should stop further sending.
    async fn settle_one(
        &mut self,
        inflight: &mut VecDeque<(String, usize)>,
        batch: &mut Batch,
    ) -> Result<bool, ImapError> {
        let Some((tag, i)) = inflight.front().cloned() else {
            return Ok(false);
        };
        let status = self.wait_tag(&tag).await?;
        inflight.pop_front();
        Ok(batch.record(i, status))
    }

    /// `APPEND mailbox` and, per message, `[(\Seen)] ["date-time"] literal`.
    fn append_request(
        &mut self,
        wire: &str,
        msgs: &[&AppendMessage<'_>],
    ) -> Result<Request, ImapError> {
        let encoding = self.encoding;
        // A NUL byte is not allowed in a plain literal (RFC 3501 §4.3);
        // BINARY (RFC 3516) carries it in a literal8.
        let binary = self.capabilities().has("BINARY");
        let mut command = self.command("APPEND").mailbox(wire, encoding)?;
        for msg in msgs {
            if msg.seen {
                command = command.syntax("(\\Seen)");
            }
            if let Some(date) = msg.internal_date.and_then(format_date_time) {
                command = command.syntax(&format!("\"{date}\""));
            }
            command = if binary && msg.bytes.contains(&0) {
                command.literal8(msg.bytes)
            } else {
                command.literal(msg.bytes)
            };
        }
        Ok(command.finish())
    }
}

/// Outcomes so far.
#[derive(Debug)]
struct Batch {
    outcomes: Vec<AppendOutcome>,
    uidvalidity: Option<u32>,
}

impl Batch {
    /// Records a tagged OK for `indexes`, with UIDs from APPENDUID when it
    /// names one per message.
    fn record_ok(&mut self, indexes: &[usize], status: &ServerStatus) {
        let uids = match &status.code {
            Some(ResponseCode::AppendUid { uidvalidity, uids }) => {
                self.uidvalidity = Some(*uidvalidity);
                (uids.len() == indexes.len()).then_some(uids.as_slice())
            }
            _ => None,
        };
        for (k, &i) in indexes.iter().enumerate() {
            self.outcomes[i] = AppendOutcome::Appended {
                uid: uids.map(|u| u[k]),
            };
        }
    }

    /// Records a MULTIAPPEND's tagged reply for all of `indexes`.
    fn record_chunk(&mut self, indexes: &[usize], status: ServerStatus) {
        if status.kind == StatusKind::Ok {
            self.record_ok(indexes, &status);
            return;
        }
        let refusal = Refusal::from_status(status);
        for &i in indexes {
            self.outcomes[i] = AppendOutcome::Refused(refusal.clone());
        }
    }

    /// Records message `i`'s tagged reply; `true` when it is a refusal that
    /// concerns the route, not the message.
    fn record(&mut self, i: usize, status: ServerStatus) -> bool {
        if status.kind == StatusKind::Ok {
            self.record_ok(&[i], &status);
            return false;
        }
        let refusal = Refusal::from_status(status);
        let stop = refusal.class() != ErrorClass::Message;
        self.outcomes[i] = AppendOutcome::Refused(refusal);
        stop
    }
}
