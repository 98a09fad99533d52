//! Engine logic against in-memory servers: the exactly-once protocol's corners
//! (answers lost after APPEND, repeats within a batch, deletion gated on every
//! route) made to happen on purpose. The real-server tests are in `tests/`.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::pass::run_pass;
use super::plan::{PassOptions, PassReport, RoutePlan};
use super::ports::*;
use super::{byte_channel, SharedLedger};
use crate::config::{DeletePolicy, IdentityRule};
use crate::ledger::{Ledger, RouteKey};
use crate::retry::ErrorClass;

#[derive(Default)]
struct Maildrop {
    /// (uidl, bytes); deleted ones are removed at QUIT.
    messages: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Default)]
struct FakePop(Arc<Mutex<Maildrop>>);

impl FakePop {
    fn with(messages: &[(&str, &[u8])]) -> FakePop {
        let drop = Maildrop {
            messages: messages
                .iter()
                .map(|(u, b)| (u.to_string(), b.to_vec()))
                .collect(),
        };
        FakePop(Arc::new(Mutex::new(drop)))
    }

    fn uidls(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .messages
            .iter()
            .map(|(u, _)| u.clone())
            .collect()
    }
}

impl MailSource for FakePop {
    async fn list(&mut self) -> Result<Vec<Listed>, RouteError> {
        let drop = self.0.lock().unwrap();
        Ok(drop
            .messages
            .iter()
            .enumerate()
            .map(|(i, (uidl, _))| Listed {
                msgno: i as u32 + 1,
                uidl: uidl.clone(),
                // Like the real source: sizes come from `sizes()`.
                size: 0,
            })
            .collect())
    }

    async fn sizes(
        &mut self,
        msgnos: &[u32],
    ) -> Result<std::collections::HashMap<u32, u64>, RouteError> {
        let drop = self.0.lock().unwrap();
        Ok(msgnos
            .iter()
            .map(|&n| (n, drop.messages[n as usize - 1].1.len() as u64))
            .collect())
    }

    async fn retrieve(
        &mut self,
        messages: &[(u32, u64)],
        tx: &byte_channel::Sender,
    ) -> Result<(), RouteError> {
        for &(msgno, size) in messages {
            let reservation = tx.reserve(size).await;
            let bytes = self.0.lock().unwrap().messages[msgno as usize - 1]
                .1
                .clone();
            if !tx.send(reservation, msgno, Ok(bytes)) {
                break;
            }
        }
        Ok(())
    }

    async fn delete_and_quit(self, msgnos: &[u32]) -> Result<Vec<u32>, RouteError> {
        let mut drop = self.0.lock().unwrap();
        let mut n = 0;
        drop.messages.retain(|_| {
            n += 1;
            !msgnos.contains(&n)
        });
        Ok(msgnos.to_vec())
    }

    async fn quit(self) {}
}

#[derive(Default)]
struct Mailbox {
    uidvalidity: u32,
    next_uid: u32,
    messages: Vec<(u32, Vec<u8>)>,
    /// Appends left before the connection "dies".
    cut_after: Option<usize>,
    /// Whether the append that meets the cut is stored (answer lost) or not.
    store_on_cut: bool,
    /// Messages containing this text are refused with NO.
    refuse: Option<&'static str>,
    /// The append that meets the cut is stored only at the next NOOP: a
    /// killed client's last APPEND reaching the server late.
    late: Option<Vec<u8>>,
    /// Whether the cut append arrives late (see `late`).
    late_on_cut: bool,
    /// Messages containing this text are answered "never sent" while the
    /// rest of the batch is stored (a refused MULTIAPPEND's one-by-one
    /// retry stopped after the batch's later commands were stored).
    not_sent: Option<&'static str>,
    /// Batches started and not yet finished, now and at most.
    in_flight: usize,
    max_in_flight: usize,
    /// Stores messages with LF line ends and reports that size, as Courier
    /// and GNU Mailutils do.
    store_lf: bool,
    /// At the next session's start, keeps only this many messages: GNU
    /// Mailutils' imap4d acknowledges APPENDs and loses them at LOGOUT.
    lose_on_reopen: Option<usize>,
    /// Messages containing this text cannot be fetched (a server that
    /// cannot send one message's body).
    unreadable: Option<&'static str>,
    /// Sessions ended and opened again.
    reopened: usize,
}

impl Mailbox {
    /// Stores a message under the next UID, as the server would.
    fn store(&mut self, bytes: &[u8]) -> u32 {
        let uid = self.next_uid;
        self.next_uid += 1;
        let stored = if self.store_lf {
            String::from_utf8_lossy(bytes)
                .replace("\r\n", "\n")
                .into_bytes()
        } else {
            bytes.to_vec()
        };
        self.messages.push((uid, stored));
        uid
    }
}

#[derive(Clone)]
struct FakeImap(Arc<Mutex<Mailbox>>);

impl FakeImap {
    fn new() -> FakeImap {
        FakeImap(Arc::new(Mutex::new(Mailbox {
            uidvalidity: 7,
            next_uid: 1,
            ..Default::default()
        })))
    }

    /// The mailbox deleted and created again, empty, with `uidvalidity`.
    fn recreate(&self, uidvalidity: u32) {
        let mut mb = self.0.lock().unwrap();
        mb.messages.clear();
        mb.uidvalidity = uidvalidity;
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        let mut bodies: Vec<Vec<u8>> = self
            .0
            .lock()
            .unwrap()
            .messages
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        bodies.sort();
        bodies
    }
}

impl MailTarget for FakeImap {
    async fn open_mailbox(&mut self, _mailbox: &str) -> Result<MailboxState, RouteError> {
        let mb = self.0.lock().unwrap();
        Ok(MailboxState {
            uidvalidity: mb.uidvalidity,
            uidnext: Some(mb.next_uid),
            exists: mb.messages.len() as u32,
        })
    }

    /// The fake answers at once; the answer waits for `finish_append`.
    type Pending = AppendOutcome;

    async fn finish_append(&mut self, pending: AppendOutcome, _: &[Outgoing<'_>]) -> AppendOutcome {
        self.0.lock().unwrap().in_flight -= 1;
        pending
    }

    async fn start_append(&mut self, _mailbox: &str, batch: &[Outgoing<'_>]) -> AppendOutcome {
        let mut mb = self.0.lock().unwrap();
        mb.in_flight += 1;
        mb.max_in_flight = mb.max_in_flight.max(mb.in_flight);
        let mut results = Vec::new();
        for m in batch {
            if let Some(left) = mb.cut_after {
                if left == 0 {
                    if mb.late_on_cut {
                        mb.late = Some(m.bytes.to_vec());
                    } else if mb.store_on_cut {
                        mb.store(m.bytes);
                    }
                    mb.cut_after = None;
                    // This one was sent and not answered; the rest never left.
                    results.push(Appended::Unknown);
                    return AppendOutcome {
                        results,
                        error: Some(RouteError::new(ErrorClass::Transient, "connection cut")),
                    };
                }
                mb.cut_after = Some(left - 1);
            }
            if mb
                .not_sent
                .is_some_and(|t| m.bytes.windows(t.len()).any(|w| w == t.as_bytes()))
            {
                results.push(Appended::NotSent);
                continue;
            }
            if mb
                .refuse
                .is_some_and(|t| m.bytes.windows(t.len()).any(|w| w == t.as_bytes()))
            {
                results.push(Appended::Refused {
                    reason: "NO message refused".into(),
                    class: ErrorClass::Message,
                });
                continue;
            }
            let uid = mb.store(m.bytes);
            results.push(Appended::Stored { uid: Some(uid) });
        }
        AppendOutcome {
            results,
            error: None,
        }
    }

    async fn fetch(&mut self, messages: &[(u32, u64)]) -> Result<Vec<(u32, Vec<u8>)>, RouteError> {
        let uids: Vec<u32> = messages.iter().map(|(uid, _)| *uid).collect();
        let mb = self.0.lock().unwrap();
        let readable = |b: &[u8]| {
            mb.unreadable
                .is_none_or(|t| !b.windows(t.len()).any(|w| w == t.as_bytes()))
        };
        Ok(mb
            .messages
            .iter()
            .filter(|(u, b)| uids.contains(u) && readable(b))
            .cloned()
            .collect())
    }

    async fn sizes(&mut self, from_uid: Option<u32>) -> Result<Vec<(u32, u64)>, RouteError> {
        let mb = self.0.lock().unwrap();
        Ok(mb
            .messages
            .iter()
            .filter(|(u, _)| *u >= from_uid.unwrap_or(0))
            .map(|(u, b)| (*u, b.len() as u64))
            .collect())
    }

    async fn reopen(&mut self, mailbox: &str) -> Result<MailboxState, RouteError> {
        {
            let mut mb = self.0.lock().unwrap();
            mb.reopened += 1;
            if let Some(keep) = mb.lose_on_reopen.take() {
                mb.messages.truncate(keep);
            }
        }
        self.open_mailbox(mailbox).await
    }

    async fn refresh(&mut self) -> Result<(), RouteError> {
        let mut mb = self.0.lock().unwrap();
        if let Some(bytes) = mb.late.take() {
            let uid = mb.next_uid;
            mb.next_uid += 1;
            mb.messages.push((uid, bytes));
        }
        Ok(())
    }

    async fn logout(self) {}
}

fn msg(n: usize) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

fn plan(source: &str, mailbox: &str, delete: DeletePolicy) -> RoutePlan {
    let key = RouteKey::new(source, "target", mailbox);
    RoutePlan {
        name: format!("{source}->{mailbox}"),
        siblings: vec![key.clone()],
        key,
        delete,
        mark_seen: false,
        identity: IdentityRule::Content,
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    ledger: SharedLedger,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SharedLedger::new(Ledger::open(dir.path().join("l.db")).unwrap());
    Rig { _dir: dir, ledger }
}

async fn pass(
    rig: &Rig,
    plan: &RoutePlan,
    pop: &FakePop,
    imap: &FakeImap,
) -> (Result<(), RouteError>, PassReport) {
    let options = PassOptions {
        late_append_grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    pass_with(rig, plan, pop, imap, &options).await
}

async fn pass_with(
    rig: &Rig,
    plan: &RoutePlan,
    pop: &FakePop,
    imap: &FakeImap,
    options: &PassOptions,
) -> (Result<(), RouteError>, PassReport) {
    let mut report = PassReport::default();
    let mut target = imap.clone();
    let source = pop.clone();
    let cancel = CancellationToken::new();
    let result = run_pass(
        plan,
        &mut target,
        async || Ok(source),
        &rig.ledger,
        options,
        &cancel,
        &mut report,
    )
    .await;
    (result, report)
}

fn corpus(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(|i| (format!("uidl-{i}"), msg(i))).collect()
}

fn pop_of(corpus: &[(String, Vec<u8>)]) -> FakePop {
    let refs: Vec<(&str, &[u8])> = corpus
        .iter()
        .map(|(u, b)| (u.as_str(), b.as_slice()))
        .collect();
    FakePop::with(&refs)
}

fn sorted(corpus: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut b: Vec<Vec<u8>> = corpus.iter().map(|(_, b)| b.clone()).collect();
    b.sort();
    b
}

#[tokio::test]
async fn migrates_everything_once_and_second_pass_copies_nothing() {
    let rig = rig();
    let mail = corpus(50);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    let p = plan("src", "INBOX", DeletePolicy::Never);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 50);
    assert_eq!(imap.bodies(), sorted(&mail));
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (0, 0));
    assert_eq!(imap.bodies().len(), 50);
}

#[tokio::test]
async fn repeats_within_one_batch_are_stored_once() {
    let rig = rig();
    let pop = FakePop::with(&[
        ("a", &msg(1)),
        ("b", &msg(1)),
        ("c", &msg(2)),
        ("d", &msg(1)),
    ]);
    let imap = FakeImap::new();
    let (r, report) = pass(
        &rig,
        &plan("src", "INBOX", DeletePolicy::AfterCopy),
        &pop,
        &imap,
    )
    .await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (2, 2));
    assert_eq!(imap.bodies().len(), 2);
    assert!(pop.uidls().is_empty(), "all four settled, so all deleted");
}

#[tokio::test]
async fn lost_answer_after_a_stored_append_is_found_not_appended_again() {
    for store_on_cut in [true, false] {
        let rig = rig();
        let mail = corpus(20);
        let (pop, imap) = (pop_of(&mail), FakeImap::new());
        {
            let mut mb = imap.0.lock().unwrap();
            mb.cut_after = Some(5);
            mb.store_on_cut = store_on_cut;
        }
        let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
        let (r, _) = pass(&rig, &p, &pop, &imap).await;
        assert_eq!(r.unwrap_err().class, ErrorClass::Transient);
        assert_eq!(pop.uidls().len(), 20, "nothing deleted by a failed pass");
        let (r, report) = pass(&rig, &p, &pop, &imap).await;
        r.unwrap();
        let (found, dropped) = (u64::from(store_on_cut), u64::from(!store_on_cut));
        assert_eq!(
            (report.intents_found, report.intents_dropped),
            (found, dropped),
            "store_on_cut={store_on_cut}"
        );
        assert_eq!(
            imap.bodies(),
            sorted(&mail),
            "exactly once (store_on_cut={store_on_cut})"
        );
        assert!(pop.uidls().is_empty());
    }
}

/// Issue #20 defect 2: popa3d derives UIDLs from headers, so distinct
/// messages shared one; the ledger keyed a message by UIDL, so one copied
/// message made its refused namesake "copied" too and both were deleted.
/// And a new message arriving under a deleted message's UIDL was never
/// copied.
#[tokio::test]
async fn one_uidl_for_several_messages_never_lets_one_stand_for_another() {
    let rig = rig();
    let (a, b, c) = (msg(1), b"Subject: poison b\r\n\r\nb\r\n".to_vec(), msg(3));
    let pop = FakePop::with(&[("dup", &a), ("dup", &b), ("u3", &c)]);
    let imap = FakeImap::new();
    imap.0.lock().unwrap().refuse = Some("poison");
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.failed), (2, 1));
    assert_eq!(pop.uidls(), ["dup"], "the refused namesake stays");
    assert_eq!(pop.0.lock().unwrap().messages[0].1, b, "and it is that one");
    imap.0.lock().unwrap().refuse = None;
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.deleted), (1, 1));
    assert!(pop.uidls().is_empty());
    // A new message under the UIDL of one deleted before.
    let d = msg(4);
    pop.0
        .lock()
        .unwrap()
        .messages
        .push(("u3".into(), d.clone()));
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 1, "{report:?}");
    let mut want = vec![a, b, c, d];
    want.sort();
    assert_eq!(imap.bodies(), want, "each exactly once");
    // Messages sharing a UIDL, left on the source, are not copied twice.
    let p = plan("src2", "INBOX", DeletePolicy::Never);
    let pop = FakePop::with(&[("same", &msg(5)), ("same", &msg(6))]);
    for copied in [2, 0] {
        let (r, report) = pass(&rig, &p, &pop, &imap).await;
        r.unwrap();
        assert_eq!(report.counts.copied, copied, "{report:?}");
    }
}

/// Review of #20: a UIDL told apart by content left its old record (copied
/// under the plain UIDL) behind; a namesake later listed alone was then
/// taken as settled and deleted, never copied.
#[tokio::test]
async fn an_old_record_under_a_reused_uidl_never_lets_its_namesake_go() {
    let rig = rig();
    let (m1, m2) = (msg(1), b"Subject: poison m2\r\n\r\nm2\r\n".to_vec());
    let pop = FakePop::with(&[("u", &m1)]);
    let imap = FakeImap::new();
    let keep = plan("src", "INBOX", DeletePolicy::Never);
    let (r, _) = pass(&rig, &keep, &pop, &imap).await;
    r.unwrap();
    // M2 arrives under the same UIDL; the target refuses it.
    pop.0
        .lock()
        .unwrap()
        .messages
        .push(("u".into(), m2.clone()));
    imap.0.lock().unwrap().refuse = Some("poison");
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.duplicates, report.counts.failed), (1, 1));
    assert_eq!(
        pop.0.lock().unwrap().messages,
        [("u".to_string(), m2.clone())]
    );
    // Listed alone now: still not deleted while it is not copied.
    let (r, _) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(pop.uidls(), ["u"], "never copied, so never deleted");
    imap.0.lock().unwrap().refuse = None;
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(
        (report.counts.copied, report.counts.deleted),
        (1, 1),
        "{report:?}"
    );
    let mut want = vec![m1, m2];
    want.sort();
    assert_eq!(imap.bodies(), want);
}

/// Review of #20: a message settled in an earlier pass is deleted only if
/// its content is still the one copied: here the message first listed
/// under UIDL "u" left the maildrop behind mailferry's back and another
/// took its UIDL (popa3d derives UIDLs from headers).
#[tokio::test]
async fn a_settled_uidl_is_deleted_only_when_its_content_is_the_one_copied() {
    let rig = rig();
    let (m1, m2) = (msg(1), msg(2));
    let pop = FakePop::with(&[("u", &m1)]);
    let imap = FakeImap::new();
    let (r, _) = pass(
        &rig,
        &plan("src", "INBOX", DeletePolicy::Never),
        &pop,
        &imap,
    )
    .await;
    r.unwrap();
    pop.0.lock().unwrap().messages = vec![("u".into(), m2.clone())];
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(
        report.counts.deleted, 0,
        "another message under the UIDL: kept"
    );
    assert_eq!(pop.uidls(), ["u"]);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(
        (report.counts.copied, report.counts.deleted),
        (1, 1),
        "{report:?}"
    );
    let mut want = vec![m1, m2];
    want.sort();
    assert_eq!(imap.bodies(), want);
}

/// Review of #20: a duplicate of a copy the target then lost was deleted
/// at once; now only once the copy it duplicates is seen again.
#[tokio::test]
async fn a_duplicate_waits_for_the_copy_it_duplicates() {
    let rig = rig();
    let m = msg(1);
    let pop = FakePop::with(&[("a", &m), ("b", &m)]);
    let imap = FakeImap::new();
    imap.0.lock().unwrap().lose_on_reopen = Some(0);
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (1, 1));
    assert_eq!(report.counts.deleted, 0, "{report:?}");
    assert_eq!(
        pop.uidls().len(),
        2,
        "both kept while their only copy is lost"
    );
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.deleted, 2, "{report:?}");
    assert_eq!(imap.bodies(), [m]);
}

/// A copy not found while some message of the mailbox could not be read
/// may be that one: it stays unconfirmed (not deleted, not made again),
/// neither "lost" nor "altered", until a look that reads everything.
#[tokio::test]
async fn a_copy_not_found_beside_an_unreadable_message_is_not_declared_lost() {
    let rig = rig();
    let mail = corpus(3);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    {
        let mut mb = imap.0.lock().unwrap();
        // Stored under another size (LF), so copies are looked for by
        // content, and one of them cannot be read back.
        mb.store_lf = true;
        mb.unreadable = Some("message 1\n");
    }
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 3, "{report:?}");
    assert_eq!(
        (report.copies_lost, report.copies_altered),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(report.counts.deleted, 2, "{report:?}");
    assert_eq!(pop.uidls().len(), 1, "the unconfirmed one stays");
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(
        (report.counts.copied, report.counts.deleted),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(pop.uidls().len(), 1, "still unconfirmed, still kept");
}

/// Review of #20: a message told apart by content, deleted, then listed
/// again with the same bytes (an MTA's duplicate under a header-derived
/// UIDL) was downloaded and counted at every pass and never deleted.
#[tokio::test]
async fn a_content_keyed_message_back_after_its_deletion_is_the_same_message() {
    use crate::sync::ports::NO_UIDL;
    let rig = rig();
    let m = msg(1);
    let pop = FakePop::with(&[(NO_UIDL, &m)]);
    let imap = FakeImap::new();
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.deleted), (1, 1));
    pop.0
        .lock()
        .unwrap()
        .messages
        .push((NO_UIDL.into(), m.clone()));
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.deleted, 1, "deleted again: {report:?}");
    assert_eq!(
        (report.counts.copied, report.counts.duplicates),
        (0, 0),
        "not counted as new: {report:?}"
    );
    assert!(pop.uidls().is_empty());
    assert_eq!(imap.bodies(), [m]);
}

/// A server without UIDL (optional in RFC 1939): every message is told apart
/// by content, so a lone message is not taken for an earlier one.
#[tokio::test]
async fn a_source_without_uidl_is_told_apart_by_content() {
    use crate::sync::ports::NO_UIDL;
    let rig = rig();
    let (a, b) = (msg(1), msg(2));
    let pop = FakePop::with(&[(NO_UIDL, &a)]);
    let imap = FakeImap::new();
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.deleted), (1, 1));
    pop.0
        .lock()
        .unwrap()
        .messages
        .push((NO_UIDL.into(), b.clone()));
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(
        (report.counts.copied, report.counts.deleted),
        (1, 1),
        "{report:?}"
    );
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(imap.bodies(), want);
    // Left on the source, a message is not copied twice nor counted again.
    let p = plan("src3", "INBOX", DeletePolicy::Never);
    let pop = FakePop::with(&[(NO_UIDL, &msg(7))]);
    for copied in [1, 0] {
        let (r, report) = pass(&rig, &p, &pop, &imap).await;
        r.unwrap();
        assert_eq!(
            (report.counts.copied, report.counts.duplicates),
            (copied, 0)
        );
    }
}

/// Issue #20 defect 6: GNU Mailutils answered every APPEND with OK and kept
/// one message at LOGOUT; each OK was taken as durable and 145 messages were
/// deleted from the source though stored nowhere.
#[tokio::test]
async fn copies_acknowledged_then_lost_are_made_again_and_never_deleted_meanwhile() {
    let rig = rig();
    let mail = corpus(10);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    imap.0.lock().unwrap().lose_on_reopen = Some(1);
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 10, "{report:?}");
    assert_eq!(report.copies_lost, 9, "{report:?}");
    assert_eq!(
        report.counts.deleted, 1,
        "only the copy seen again: {report:?}"
    );
    assert_eq!(pop.uidls().len(), 9, "the lost copies' originals stay");
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 9, "copied again: {report:?}");
    assert_eq!(report.counts.deleted, 9, "{report:?}");
    assert!(pop.uidls().is_empty());
    assert_eq!(imap.bodies(), sorted(&mail), "exactly once");
}

/// A copy is deleted from the source only once a later session showed it:
/// a pass that copies with `after-copy` opens the target again first.
#[tokio::test]
async fn after_copy_deletes_only_what_a_new_target_session_shows() {
    let rig = rig();
    let mail = corpus(6);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(imap.0.lock().unwrap().reopened, 1);
    assert_eq!(report.counts.deleted, 6, "{report:?}");
    // Nothing copied: no second session.
    let (r, _) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(imap.0.lock().unwrap().reopened, 1);
}

/// Issue #20 defect 4: intents were looked for with `SEARCH LARGER n-1
/// SMALLER n+1` on the appended (CRLF) size; Courier and GNU Mailutils store
/// LF and compare that size, so every append in flight at a crash was made
/// a second time.
#[tokio::test]
async fn intents_are_found_on_a_server_that_stores_another_size() {
    let rig = rig();
    let mail = corpus(20);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    {
        let mut mb = imap.0.lock().unwrap();
        mb.store_lf = true;
        mb.cut_after = Some(5);
        mb.store_on_cut = true;
    }
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, _) = pass(&rig, &p, &pop, &imap).await;
    assert_eq!(r.unwrap_err().class, ErrorClass::Transient);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.intents_found, report.intents_dropped), (1, 0));
    let lf = |b: &Vec<u8>| String::from_utf8_lossy(b).replace("\r\n", "\n");
    let mut want: Vec<String> = mail.iter().map(|(_, b)| lf(b)).collect();
    want.sort();
    let got: Vec<String> = imap.bodies().iter().map(lf).collect();
    assert_eq!(got, want, "exactly once");
}

#[tokio::test]
async fn next_batch_is_sent_before_the_last_is_settled_and_a_cut_then_loses_nothing() {
    for (cut_after, store_on_cut) in [(None, false), (Some(6), true), (Some(6), false)] {
        let rig = rig();
        let mail = corpus(20);
        let (pop, imap) = (pop_of(&mail), FakeImap::new());
        {
            let mut mb = imap.0.lock().unwrap();
            mb.cut_after = cut_after;
            mb.store_on_cut = store_on_cut;
        }
        let options = PassOptions {
            late_append_grace: std::time::Duration::ZERO,
            batch_messages: 4,
            ..Default::default()
        };
        let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
        let (r, report) = pass_with(&rig, &p, &pop, &imap, &options).await;
        let case = format!("cut_after={cut_after:?} store_on_cut={store_on_cut}");
        {
            let mb = imap.0.lock().unwrap();
            assert_eq!(mb.max_in_flight, 2, "two batches in flight ({case})");
            assert_eq!(mb.in_flight, 0, "every batch sent was finished ({case})");
        }
        if cut_after.is_some() {
            assert_eq!(r.unwrap_err().class, ErrorClass::Transient, "{case}");
            // Batch 1 (messages 0-3) was answered before the cut in batch 2.
            assert!(report.counts.copied >= 4, "{case}: {report:?}");
            let (r, _) = pass_with(&rig, &p, &pop, &imap, &options).await;
            r.unwrap();
        } else {
            r.unwrap();
        }
        assert_eq!(imap.bodies(), sorted(&mail), "exactly once ({case})");
        assert!(pop.uidls().is_empty(), "{case}");
    }
}

#[tokio::test]
async fn a_message_not_sent_amid_stored_ones_is_sent_later_and_the_rest_not_again() {
    let rig = rig();
    let mail = corpus(10);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    imap.0.lock().unwrap().not_sent = Some("message 3\r\n");
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 9, "{report:?}");
    assert_eq!(pop.uidls(), ["uidl-3"], "only the stored ones deleted");
    imap.0.lock().unwrap().not_sent = None;
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 1, "{report:?}");
    assert_eq!(imap.bodies(), sorted(&mail), "exactly once");
}

#[tokio::test]
async fn a_paced_or_budgeted_pass_keeps_one_batch_in_flight() {
    let rig = rig();
    let mail = corpus(20);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    let options = PassOptions {
        batch_messages: 4,
        bytes_per_second: Some(u64::MAX),
        ..Default::default()
    };
    let p = plan("src", "INBOX", DeletePolicy::Never);
    let (r, _) = pass_with(&rig, &p, &pop, &imap, &options).await;
    r.unwrap();
    assert_eq!(imap.0.lock().unwrap().max_in_flight, 1);
    assert_eq!(imap.bodies(), sorted(&mail));
}

#[tokio::test]
async fn refused_message_is_failed_kept_and_retried_a_bounded_number_of_times() {
    let rig = rig();
    let mut mail = corpus(5);
    mail.push(("bad".into(), b"Subject: poison\r\n\r\nx\r\n".to_vec()));
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    imap.0.lock().unwrap().refuse = Some("poison");
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    for attempt in 1..=4 {
        let (r, report) = pass(&rig, &p, &pop, &imap).await;
        r.unwrap();
        let want_failed = u64::from(attempt <= 3);
        assert_eq!(report.counts.failed, want_failed, "attempt {attempt}");
    }
    assert_eq!(
        pop.uidls(),
        vec!["bad".to_string()],
        "the refused message is never deleted"
    );
    assert_eq!(imap.bodies().len(), 5);
}

#[tokio::test]
async fn uidl_reset_copies_nothing_twice() {
    let rig = rig();
    let mail = corpus(10);
    let imap = FakeImap::new();
    let p = plan("src", "INBOX", DeletePolicy::Never);
    pass(&rig, &p, &pop_of(&mail), &imap).await.0.unwrap();
    let renamed: Vec<(String, Vec<u8>)> = mail
        .iter()
        .map(|(u, b)| (format!("new-{u}"), b.clone()))
        .collect();
    let (r, report) = pass(&rig, &p, &pop_of(&renamed), &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (0, 10));
    assert_eq!(imap.bodies().len(), 10);
}

#[tokio::test]
async fn consolidation_of_overlapping_sources_stores_each_once() {
    let rig = rig();
    let imap = FakeImap::new();
    let a = FakePop::with(&[("1", &msg(1)), ("2", &msg(2)), ("3", &msg(3))]);
    let b = FakePop::with(&[("x", &msg(3)), ("y", &msg(4)), ("z", &msg(1))]);
    pass(&rig, &plan("a", "INBOX", DeletePolicy::Never), &a, &imap)
        .await
        .0
        .unwrap();
    let (r, report) = pass(&rig, &plan("b", "INBOX", DeletePolicy::Never), &b, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (1, 2));
    assert_eq!(imap.bodies().len(), 4);
}

#[tokio::test]
async fn one_source_two_routes_deletes_only_when_both_have_it() {
    let rig = rig();
    let mail = corpus(8);
    let pop = pop_of(&mail);
    let (one, two) = (FakeImap::new(), FakeImap::new());
    let mut first = plan("src", "One", DeletePolicy::AfterCopy);
    let mut second = plan("src", "Two", DeletePolicy::AfterCopy);
    let siblings = vec![first.key.clone(), second.key.clone()];
    first.siblings = siblings.clone();
    second.siblings = siblings;
    pass(&rig, &first, &pop, &one).await.0.unwrap();
    assert_eq!(pop.uidls().len(), 8, "the second route has not copied yet");
    let (r, report) = pass(&rig, &second, &pop, &two).await;
    r.unwrap();
    assert_eq!(report.counts.deleted, 8);
    assert!(pop.uidls().is_empty());
    assert_eq!((one.bodies(), two.bodies()), (sorted(&mail), sorted(&mail)));
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let rig = rig();
    let mail = corpus(6);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    let options = PassOptions {
        dry_run: true,
        ..Default::default()
    };
    let (r, report) = pass_with(&rig, &p, &pop, &imap, &options).await;
    r.unwrap();
    assert_eq!(report.would_copy, 6);
    assert!(imap.bodies().is_empty());
    assert_eq!(pop.uidls().len(), 6);
    let status = rig.ledger.call(|l| l.route_status(&p.key)).unwrap();
    assert_eq!(status.states.seen + status.states.copied, 0);
}

#[tokio::test]
async fn tiny_budget_still_moves_everything() {
    let rig = rig();
    let mail = corpus(30);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    let options = PassOptions {
        budget_bytes: 1,
        batch_messages: 3,
        ..Default::default()
    };
    let (r, report) = pass_with(
        &rig,
        &plan("src", "INBOX", DeletePolicy::Never),
        &pop,
        &imap,
        &options,
    )
    .await;
    r.unwrap();
    assert_eq!(report.counts.copied, 30);
    assert_eq!(imap.bodies(), sorted(&mail));
}

#[tokio::test]
async fn lost_ledger_appends_nothing_again() {
    let mail = corpus(30);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    let p = plan("src", "INBOX", DeletePolicy::Never);
    pass(&rig(), &p, &pop, &imap).await.0.unwrap();
    // A fresh ledger: the mailbox is unknown, so it is indexed by size and
    // each downloaded message is compared with the target message of its size.
    let (r, report) = pass(&rig(), &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (0, 30));
    assert_eq!(imap.bodies().len(), 30);
}

#[tokio::test]
async fn adopting_a_half_copied_mailbox_copies_only_the_rest() {
    let mail = corpus(20);
    let imap = FakeImap::new();
    {
        let mut mb = imap.0.lock().unwrap();
        for (i, (_, body)) in mail.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            mb.messages.push((i as u32 + 1, body.clone()));
        }
        mb.messages
            .push((100, b"Subject: someone else's mail\r\n\r\nhi\r\n".to_vec()));
        mb.next_uid = 101;
    }
    let (r, report) = pass(
        &rig(),
        &plan("src", "INBOX", DeletePolicy::Never),
        &pop_of(&mail),
        &imap,
    )
    .await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (10, 10));
    assert_eq!(imap.bodies().len(), 21, "the foreign message is left alone");
}

#[tokio::test]
async fn recreated_mailbox_is_reconciled_not_trusted() {
    let rig = rig();
    let mail = corpus(12);
    let imap = FakeImap::new();
    let p = plan("src", "INBOX", DeletePolicy::Never);
    pass(&rig, &p, &pop_of(&mail[..6]), &imap).await.0.unwrap();
    // The mailbox is deleted and recreated empty: new UIDVALIDITY. The ledger
    // still lists the old hashes, which must not make new mail "duplicate".
    imap.recreate(8);
    let renamed: Vec<(String, Vec<u8>)> = mail
        .iter()
        .map(|(u, b)| (format!("r-{u}"), b.clone()))
        .collect();
    let (r, report) = pass(&rig, &p, &pop_of(&renamed), &imap).await;
    r.unwrap();
    assert_eq!(report.counts.copied, 12, "{report:?}");
    assert_eq!(imap.bodies(), sorted(&mail));
}

#[tokio::test]
async fn equal_sizes_cost_bodies_only_where_sizes_meet() {
    // 20 messages of one size with different content, 10 of them already on
    // the target (another tool copied them).
    let mail: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("u{i}"),
                format!("Subject: same size {i:02}\r\n\r\nx\r\n").into_bytes(),
            )
        })
        .collect();
    let imap = FakeImap::new();
    {
        let mut mb = imap.0.lock().unwrap();
        for (i, (_, body)) in mail.iter().take(10).enumerate() {
            mb.messages.push((i as u32 + 1, body.clone()));
        }
        mb.next_uid = 11;
    }
    let (r, report) = pass(
        &rig(),
        &plan("src", "INBOX", DeletePolicy::Never),
        &pop_of(&mail),
        &imap,
    )
    .await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (10, 10));
    assert_eq!(
        report.target_bodies_fetched, 10,
        "each target body fetched once"
    );
    assert_eq!(imap.bodies(), sorted(&mail));
}

#[tokio::test]
async fn after_a_recreated_mailbox_later_passes_do_not_trust_the_old_record() {
    let rig = rig();
    let mail = corpus(8);
    let imap = FakeImap::new();
    let p = plan("src", "INBOX", DeletePolicy::Never);
    pass(&rig, &p, &pop_of(&mail[..4]), &imap).await.0.unwrap();
    imap.recreate(9);
    // One pass sees the change, the next one is "unchanged": neither may
    // take the old mailbox's content for the new one's.
    pass(&rig, &p, &pop_of(&[]), &imap).await.0.unwrap();
    let renamed: Vec<(String, Vec<u8>)> = mail
        .iter()
        .map(|(u, b)| (format!("again-{u}"), b.clone()))
        .collect();
    let (r, report) = pass(&rig, &p, &pop_of(&renamed), &imap).await;
    r.unwrap();
    assert_eq!((report.counts.copied, report.counts.duplicates), (8, 0));
    assert_eq!(imap.bodies(), sorted(&mail));
}

#[tokio::test]
async fn an_append_that_lands_late_is_waited_for_not_appended_again() {
    let rig = rig();
    let mail = corpus(10);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    {
        let mut mb = imap.0.lock().unwrap();
        mb.cut_after = Some(3);
        mb.late_on_cut = true;
    }
    let p = plan("src", "INBOX", DeletePolicy::AfterCopy);
    assert!(pass(&rig, &p, &pop, &imap).await.0.is_err());
    // The next pass searches before the late append is stored: only after
    // the grace and a NOOP does it show, and it must be found, not redone.
    let (r, report) = pass(&rig, &p, &pop, &imap).await;
    r.unwrap();
    assert_eq!((report.intents_found, report.intents_dropped), (1, 0));
    assert_eq!(imap.bodies(), sorted(&mail), "exactly once");
}

#[tokio::test]
async fn copies_lost_with_a_recreated_mailbox_are_made_again_before_any_delete() {
    let rig = rig();
    let mail = corpus(10);
    let (pop, imap) = (pop_of(&mail), FakeImap::new());
    pass(
        &rig,
        &plan("src", "INBOX", DeletePolicy::Never),
        &pop,
        &imap,
    )
    .await
    .0
    .unwrap();
    // The target mailbox is deleted and recreated empty behind our back.
    imap.recreate(9);
    // Now the route deletes after copying: nothing may go from the source
    // on the word of copies that went with the old mailbox.
    let (r, report) = pass(
        &rig,
        &plan("src", "INBOX", DeletePolicy::AfterCopy),
        &pop,
        &imap,
    )
    .await;
    r.unwrap();
    assert_eq!(report.counts.copied, 10, "{report:?}");
    assert_eq!(imap.bodies(), sorted(&mail));
    assert!(pop.uidls().is_empty());
}
