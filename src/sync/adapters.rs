//! The real servers behind the engine's ports: [`MailSource`] for a POP3
//! session, [`MailTarget`] for an IMAP session. Thin: protocol work is in
//! `pop3` and `imap`; this maps their results and errors onto the engine's.

use std::collections::HashMap;

use crate::config::Account;
use crate::imap::{self, internaldate, AppendMessage, ImapError, ImapSession};
use crate::pop3::{Pop3Error, Pop3Options, Pop3Session};
use crate::sync::byte_channel::{self, Problem};
use crate::sync::ports::{
    AppendOutcome, Appended, Listed, MailSource, MailTarget, MailboxState, Outgoing, RouteError,
    NO_UIDL,
};

/// Up to this many sizes are asked one by one rather than by a whole LIST.
const FEW_SIZES: usize = 64;

/// Logs in to a POP3 source.
pub async fn connect_source(account: &Account) -> Result<Pop3Source, RouteError> {
    let mut options = Pop3Options::default();
    if let Some(limit) = account.max_message_size {
        options.max_message_size = limit;
    }
    if let Some(limit) = account.max_line_length {
        options.max_line = limit;
    }
    let session = Pop3Session::connect_with(account, options)
        .await
        .map_err(|e| source_error(account, &e))?;
    Ok(Pop3Source {
        session,
        account: account.name.clone(),
    })
}

fn source_error(account: &Account, e: &Pop3Error) -> RouteError {
    RouteError::new(e.class(), format!("source {}: {e}", account.name))
}

/// A logged-in POP3 session, as the engine's source.
pub struct Pop3Source {
    session: Pop3Session,
    account: String,
}

impl Pop3Source {
    fn error(&self, e: &Pop3Error) -> RouteError {
        RouteError::new(e.class(), format!("source {}: {e}", self.account))
    }
}

impl MailSource for Pop3Source {
    async fn list(&mut self) -> Result<Vec<Listed>, RouteError> {
        let uidls = self.session.uidl().await.map_err(|e| self.error(&e))?;
        let Some(uidls) = uidls else {
            // UIDL is optional (RFC 1939 §7): without it every message is
            // told apart by its content, downloaded at every pass.
            let scan = self.session.list().await.map_err(|e| self.error(&e))?;
            return Ok(scan
                .into_iter()
                .map(|(msgno, size)| Listed {
                    msgno,
                    uidl: NO_UIDL.to_string(),
                    size,
                })
                .collect());
        };
        Ok(uidls
            .into_iter()
            .map(|(msgno, uidl)| Listed {
                size: 0,
                msgno,
                uidl,
            })
            .collect())
    }

    async fn sizes(&mut self, msgnos: &[u32]) -> Result<HashMap<u32, u64>, RouteError> {
        // A few: `LIST n` each, pipelined. Many: one LIST of everything,
        // which the session also keeps for its RETR window.
        if msgnos.len() <= FEW_SIZES {
            let results = self
                .session
                .list_many(msgnos)
                .await
                .map_err(|e| self.error(&e))?;
            return Ok(results
                .into_iter()
                .filter_map(|(n, size)| Some((n, size.ok()?)))
                .collect());
        }
        let all = self.session.list().await.map_err(|e| self.error(&e))?;
        Ok(all.into_iter().collect())
    }

    async fn retrieve(
        &mut self,
        messages: &[(u32, u64)],
        tx: &byte_channel::Sender,
    ) -> Result<(), RouteError> {
        let account = self.account.clone();
        let msgnos: Vec<u32> = messages.iter().map(|(n, _)| *n).collect();
        let mut stream = self.session.retrieve(msgnos);
        while let Some(item) = stream.next().await {
            let (msgno, bytes) = match item {
                Ok(m) => (m.msgno, Ok(m.bytes)),
                Err(e) => match per_message(&e) {
                    Some((msgno, problem)) => (msgno, Err(problem)),
                    None => {
                        if let Pop3Error::BrokenReply { msgno, .. } = &e {
                            // Skipped with the reason, so a retried route
                            // goes on without it.
                            let problem = Problem::Skipped(format!("source {account}: {e}"));
                            let reservation = tx.reserve(0).await;
                            tx.send(reservation, *msgno, Err(problem));
                        }
                        return Err(RouteError::new(e.class(), format!("source {account}: {e}")));
                    }
                },
            };
            let size = bytes.as_ref().map_or(0, |b| b.len() as u64);
            let reservation = tx.reserve(size).await;
            if !tx.send(reservation, msgno, bytes) {
                break;
            }
        }
        Ok(())
    }

    async fn delete_and_quit(mut self, msgnos: &[u32]) -> Result<Vec<u32>, RouteError> {
        let account = self.account.clone();
        let fail = |e: Pop3Error| RouteError::new(e.class(), format!("source {account}: {e}"));
        let results = self.session.dele_many(msgnos).await.map_err(fail)?;
        let mut marked = Vec::with_capacity(results.len());
        for (msgno, result) in results {
            match result {
                Ok(()) => marked.push(msgno),
                Err(e) => tracing::warn!(source = %self.account, msgno, error = %e, "DELE refused"),
            }
        }
        self.session.quit().await.map_err(fail)?;
        Ok(marked)
    }

    fn login_delay(&self) -> Option<std::time::Duration> {
        self.session.capabilities().login_delay
    }

    async fn quit(self) {
        // Nothing was marked for deletion, so the outcome changes nothing.
        let _ = self.session.quit().await;
    }
}

/// The message a per-message POP3 error is about, and what to record.
fn per_message(e: &Pop3Error) -> Option<(u32, Problem)> {
    match e {
        Pop3Error::MessageRefused { msgno, .. } => Some((*msgno, Problem::Failed(e.to_string()))),
        Pop3Error::TooLarge { msgno, .. } => Some((*msgno, Problem::Skipped(e.to_string()))),
        _ => None,
    }
}

/// Logs in to an IMAP target.
pub async fn connect_target(account: &Account) -> Result<ImapTarget, RouteError> {
    let session = ImapSession::connect(account)
        .await
        .map_err(|e| RouteError::new(e.class(), format!("target {}: {e}", account.name)))?;
    Ok(ImapTarget {
        session,
        account: account.clone(),
        selected: None,
        exists: 0,
    })
}

/// A logged-in IMAP session, as the engine's target.
pub struct ImapTarget {
    session: ImapSession,
    /// Names errors, and logs in again ([`MailTarget::reopen`]).
    account: Account,
    /// The selected mailbox and its UIDVALIDITY.
    selected: Option<(String, u32)>,
    /// Messages in the selected mailbox when it was selected.
    exists: u32,
}

impl ImapTarget {
    fn error(&self, e: &ImapError) -> RouteError {
        RouteError::new(e.class(), format!("target {}: {e}", self.account.name))
    }

    /// The session, for commands beyond the engine's (check, verify).
    pub fn session(&mut self) -> &mut ImapSession {
        &mut self.session
    }
}

/// A FETCH answer the server could not give for some message in it: a NO,
/// or a body the grammar refuses (GNU Mailutils announced a 494-byte
/// literal for a 412-byte message with bare CR line ends).
/// A NO that is about the messages (not a transient or throttling one,
/// which fails the look and is retried later).
fn unreadable(e: &ImapError) -> bool {
    match e {
        ImapError::Protocol { .. } => true,
        ImapError::Command { status, .. } => status.class() == crate::retry::ErrorClass::Message,
        _ => false,
    }
}

impl ImapTarget {
    /// One message a server cannot send must not fail a whole look at the
    /// mailbox: each message alone, in a fresh session after a protocol
    /// error, leaving out (and naming in the log) what still fails. Such a
    /// message is then simply not found: never a reason to delete anything.
    async fn fetch_one_by_one(
        &mut self,
        messages: &[(u32, u64)],
        first: &ImapError,
    ) -> Result<Vec<(u32, Vec<u8>)>, RouteError> {
        let Some((mailbox, uidvalidity)) = self.selected.clone() else {
            return Err(self.error(first));
        };
        let mut out = Vec::new();
        for &message in messages {
            self.usable_again(&mailbox, uidvalidity).await?;
            match self.session.uid_fetch_sized(&[message]).await {
                Ok(got) => out.extend(got.into_iter().map(|m| (m.uid, m.body))),
                Err(e) if unreadable(&e) => {
                    tracing::warn!(account = %self.account.name, uid = message.0, error = %e, "the target cannot send this message; it is left out")
                }
                Err(e) => return Err(self.error(&e)),
            }
        }
        self.usable_again(&mailbox, uidvalidity).await?;
        Ok(out)
    }

    /// A new session on the same mailbox when a protocol error closed this
    /// one; the UIDs asked for must still mean the same messages.
    async fn usable_again(&mut self, mailbox: &str, uidvalidity: u32) -> Result<(), RouteError> {
        if self.session.is_usable() {
            return Ok(());
        }
        let state = self.reopen(mailbox).await?;
        if state.uidvalidity != uidvalidity {
            return Err(RouteError::new(
                crate::retry::ErrorClass::Transient,
                format!(
                    "target {}: mailbox {mailbox:?} was renumbered while being read",
                    self.account.name
                ),
            ));
        }
        Ok(())
    }
}

impl MailTarget for ImapTarget {
    async fn open_mailbox(&mut self, mailbox: &str) -> Result<MailboxState, RouteError> {
        self.session
            .ensure_mailbox(mailbox)
            .await
            .map_err(|e| self.error(&e))?;
        let info = self
            .session
            .select(mailbox)
            .await
            .map_err(|e| self.error(&e))?;
        self.exists = info.exists;
        self.selected = Some((mailbox.to_string(), info.uidvalidity));
        Ok(MailboxState {
            uidvalidity: info.uidvalidity,
            uidnext: info.uidnext,
            exists: info.exists,
        })
    }

    /// The IMAP batch in flight, and the INTERNALDATE of each message (read
    /// from the headers once; a retry of one sends the same date).
    type Pending = (imap::PendingAppend, Vec<crate::message::MailDate>);

    async fn start_append(&mut self, mailbox: &str, batch: &[Outgoing<'_>]) -> Self::Pending {
        let now = internaldate::now();
        let dates: Vec<_> = batch
            .iter()
            .map(|m| internaldate::internal_date(m.bytes, now))
            .collect();
        let msgs = append_messages(batch, &dates);
        (self.session.start_append(mailbox, &msgs).await, dates)
    }

    async fn finish_append(
        &mut self,
        (pending, dates): Self::Pending,
        batch: &[Outgoing<'_>],
    ) -> AppendOutcome {
        let msgs = append_messages(batch, &dates);
        let result = self.session.finish_append(pending, &msgs).await;
        let mut results = Vec::with_capacity(result.outcomes.len());
        for outcome in result.outcomes {
            results.push(match outcome {
                imap::AppendOutcome::Appended { uid } => Appended::Stored { uid },
                imap::AppendOutcome::Refused(refusal) if refusal.status.is_none() => {
                    Appended::Skipped {
                        reason: format!("target {}: {}", self.account.name, refusal.text),
                    }
                }
                imap::AppendOutcome::Refused(refusal) => Appended::Refused {
                    class: refusal.class(),
                    reason: format!("target {}: {}", self.account.name, refusal.text),
                },
                imap::AppendOutcome::Unknown => Appended::Unknown,
                // Not necessarily a tail: later commands of the batch may
                // have been answered (see `Appended::NotSent`).
                imap::AppendOutcome::NotSent => Appended::NotSent,
            });
        }
        AppendOutcome {
            results,
            error: result.error.as_ref().map(|e| self.error(e)),
        }
    }

    async fn fetch(&mut self, messages: &[(u32, u64)]) -> Result<Vec<(u32, Vec<u8>)>, RouteError> {
        match self.session.uid_fetch_sized(messages).await {
            Ok(got) => Ok(got.into_iter().map(|m| (m.uid, m.body)).collect()),
            Err(e) if unreadable(&e) => self.fetch_one_by_one(messages, &e).await,
            Err(e) => Err(self.error(&e)),
        }
    }

    async fn sizes(&mut self, from_uid: Option<u32>) -> Result<Vec<(u32, u64)>, RouteError> {
        let sizes = self
            .session
            .uid_fetch_sizes_from(from_uid, self.exists)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(sizes
            .into_iter()
            .map(|(uid, size)| (uid, u64::from(size)))
            .collect())
    }

    async fn message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, RouteError> {
        self.session
            .uid_fetch_message_ids(uids)
            .await
            .map_err(|e| self.error(&e))
    }

    async fn reopen(&mut self, mailbox: &str) -> Result<MailboxState, RouteError> {
        let fresh = ImapSession::connect(&self.account)
            .await
            .map_err(|e| self.error(&e))?;
        let old = std::mem::replace(&mut self.session, fresh);
        // The old session ends before the new one looks: a server may only
        // write (or lose) what it acknowledged at CLOSE/LOGOUT.
        let _ = old.logout().await;
        self.open_mailbox(mailbox).await
    }

    async fn refresh(&mut self) -> Result<(), RouteError> {
        let exists = self.session.noop().await.map_err(|e| self.error(&e))?;
        // Messages stored since SELECT (ours, or a late APPEND of a killed
        // process) are only found by message number if EXISTS follows them.
        if let Some(exists) = exists {
            self.exists = exists;
        }
        Ok(())
    }

    async fn logout(self) {
        let _ = self.session.logout().await;
    }
}

/// The IMAP form of a batch with its INTERNALDATEs.
fn append_messages<'a>(
    batch: &[Outgoing<'a>],
    dates: &[crate::message::MailDate],
) -> Vec<AppendMessage<'a>> {
    batch
        .iter()
        .zip(dates)
        .map(|(m, date)| AppendMessage {
            bytes: m.bytes,
            seen: m.seen,
            internal_date: Some(*date),
        })
        .collect()
}
