//! Reading the selected mailbox back: UID SEARCH and UID FETCH (sizes, bodies, flags, INTERNALDATE).
//!
//! What the engine needs to resolve append intents and reconcile a target
//! (docs/ARCHITECTURE.md, "Exactly once"): candidates by UID range and exact size, then sizes or
//! whole messages by UID. `BODY.PEEK[]` so reading never sets `\Seen`.

use super::encode::uid_set;
use super::error::ImapError;
use super::response::Untagged;
use super::session::ImapSession;
use crate::message::MailDate;

/// One criterion of a UID SEARCH; several are ANDed (RFC 3501 §6.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKey {
    /// `UID n:*` — UIDs from `n` up (results below `n` dropped: `n:*`
    /// matches the highest UID even when it is smaller than `n`).
    UidFrom(u32),
    /// `LARGER n`: RFC822.SIZE > n.
    Larger(u64),
    /// `SMALLER n`: RFC822.SIZE < n.
    Smaller(u64),
}

/// One message read back with [`ImapSession::uid_fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub size: u32,
    pub flags: Vec<String>,
    pub internal_date: Option<MailDate>,
    pub body: Vec<u8>,
    /// The header fields a `HEADER.FIELDS` fetch asked for.
    pub header_fields: Vec<u8>,
}

/// UIDs per FETCH command: keeps the command line short whatever the gaps.
const UIDS_PER_FETCH: usize = 500;

/// Bytes of message bodies (by their sizes) asked for in one UID FETCH at
/// most; a larger message goes alone. Keeps one command's answer well
/// within the session's bound on the untagged data of one command.
const BODY_BYTES_PER_FETCH: u64 = 16 * 1024 * 1024;

/// Most bodies asked for in one UID FETCH.
const BODIES_PER_FETCH: usize = 100;

impl ImapSession {
    /// RFC 3501 §6.4.8 UID SEARCH with `keys` ANDed (none: ALL); sorted UIDs.
    pub async fn uid_search(&mut self, keys: &[SearchKey]) -> Result<Vec<u32>, ImapError> {
        let mut command = self.command("UID").syntax("SEARCH");
        if keys.is_empty() {
            command = command.syntax("ALL");
        }
        let mut floor = 0;
        for key in keys {
            command = match *key {
                SearchKey::UidFrom(n) => {
                    floor = floor.max(n);
                    command.syntax(&format!("UID {}:*", n.max(1)))
                }
                SearchKey::Larger(n) => command.syntax(&format!("LARGER {n}")),
                SearchKey::Smaller(n) => command.syntax(&format!("SMALLER {n}")),
            };
        }
        let req = command.finish();
        let (_, untagged) = self.run_ok("UID SEARCH", &req).await?;
        let mut uids: Vec<u32> = untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Search(uids) => Some(uids),
                _ => None,
            })
            .flatten()
            .filter(|&uid| uid >= floor)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// UID and size of every message with UID ≥ `from` (all: `None`) among
    /// the first `exists` of the selected mailbox (as SELECT counted them),
    /// in UID order: `FETCH lo:hi (UID RFC822.SIZE)` over windows of message
    /// numbers from the last backwards, growing from 256 up to `size_window`,
    /// until one reaches a UID below `from`. Message numbers are dense, so
    /// the cost follows the messages wanted, not gaps between UIDs, and no
    /// answer is longer than a window. (`UID SEARCH ALL` answers in one line,
    /// which some 12,800 messages make longer than the line limit.)
    pub async fn uid_fetch_sizes_from(
        &mut self,
        from: Option<u32>,
        exists: u32,
    ) -> Result<Vec<(u32, u32)>, ImapError> {
        let from = from.unwrap_or(1);
        let max_window = self.options.size_window.max(1);
        let (mut hi, mut window) = (exists, 256.min(max_window));
        let mut out = Vec::new();
        while hi >= 1 {
            let lo = hi.saturating_sub(window - 1).max(1);
            let req = self
                .command("FETCH")
                .syntax(&format!("{lo}:{hi}"))
                .syntax("(UID RFC822.SIZE)")
                .finish();
            let (_, untagged) = self.run_ok("FETCH", &req).await?;
            let mut below = false;
            for u in untagged {
                let Untagged::Fetch(data) = u else { continue };
                match (data.uid, data.size) {
                    (Some(uid), Some(size)) if uid >= from => out.push((uid, size)),
                    (Some(uid), _) if uid < from => below = true,
                    // An unsolicited FETCH (a flag change) may carry a UID
                    // and no size: it says nothing about the window.
                    _ => {}
                }
            }
            if below || lo == 1 {
                break;
            }
            hi = lo - 1;
            window = window.saturating_mul(8).min(max_window);
        }
        out.sort_unstable();
        out.dedup_by_key(|(uid, _)| *uid);
        Ok(out)
    }

    /// [`ImapSession::uid_fetch`] of messages whose sizes are known, in
    /// commands of at most 16 MiB by those sizes.
    pub async fn uid_fetch_sized(
        &mut self,
        messages: &[(u32, u64)],
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let mut out = Vec::with_capacity(messages.len());
        for chunk in chunks_by_size(messages, BODY_BYTES_PER_FETCH, BODIES_PER_FETCH) {
            out.extend(self.uid_fetch(&chunk).await?);
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// RFC 3501 §6.4.8 UID FETCH `(UID BODY.PEEK[HEADER.FIELDS
    /// (MESSAGE-ID)])`: the Message-ID of each message (cheap: a line or
    /// two each), for matching copies another tool made; `None` when a
    /// message has none.
    pub async fn uid_fetch_message_ids(
        &mut self,
        uids: &[u32],
    ) -> Result<Vec<(u32, Option<String>)>, ImapError> {
        let found = self
            .fetch_items(uids, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            .await?;
        Ok(found
            .into_iter()
            .map(|m| (m.uid, crate::message::message_id(&m.header_fields)))
            .collect())
    }

    /// RFC 3501 §6.4.8 UID FETCH `(UID RFC822.SIZE FLAGS INTERNALDATE
    /// BODY.PEEK[])`: whole messages as stored, in UID order. UIDs that no
    /// longer exist are simply missing.
    ///
    /// Never `BINARY.PEEK[]`, even where BINARY is offered: RFC 3516 has the
    /// server decode every quoted-printable and base64 part (Dovecot then
    /// labels them `Content-Transfer-Encoding: binary`), so the bytes would
    /// not be the ones appended and a copy would not be recognised. The one
    /// thing a plain literal may not carry is a NUL (Dovecot sends 0x80), and
    /// the message identity hashes a NUL as 0x80 for that reason.
    pub async fn uid_fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, ImapError> {
        self.fetch_items(uids, "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[])")
            .await
    }

    async fn fetch_items(
        &mut self,
        uids: &[u32],
        items: &str,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let mut wanted: Vec<u32> = uids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut out = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(UIDS_PER_FETCH) {
            let set = uid_set(chunk);
            if set.is_empty() {
                continue;
            }
            let req = self
                .command("UID")
                .syntax("FETCH")
                .syntax(&set)
                .syntax(items)
                .finish();
            let (_, untagged) = self.run_ok("UID FETCH", &req).await?;
            for u in untagged {
                let Untagged::Fetch(data) = u else { continue };
                // Unsolicited FETCH (a flag change) carries no UID: not ours.
                let Some(uid) = data.uid.filter(|uid| chunk.binary_search(uid).is_ok()) else {
                    continue;
                };
                out.push(FetchedMessage {
                    uid,
                    size: data.size.unwrap_or(0),
                    flags: data.flags.unwrap_or_default(),
                    internal_date: data.internal_date,
                    body: data.body.unwrap_or_default(),
                    header_fields: data.header_fields.unwrap_or_default(),
                });
            }
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }
}

/// `messages` (uid, size) in groups of at most `count`, each at most `bytes`
/// by size unless a single message is larger.
fn chunks_by_size(messages: &[(u32, u64)], bytes: u64, count: usize) -> Vec<Vec<u32>> {
    let mut chunks: Vec<Vec<u32>> = Vec::new();
    let mut total = 0;
    for &(uid, size) in messages {
        let full = chunks
            .last()
            .is_none_or(|c| c.len() >= count || total + size > bytes);
        if full {
            chunks.push(Vec::new());
            total = 0;
        }
        total += size;
        chunks.last_mut().expect("pushed above").push(uid);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::chunks_by_size;

    #[test]
    fn bodies_are_fetched_in_chunks_bounded_by_bytes_and_count() {
        let m = [(1, 10), (2, 10), (3, 25), (4, 1), (5, 1), (6, 1)];
        assert_eq!(
            chunks_by_size(&m, 20, 100),
            [vec![1, 2], vec![3], vec![4, 5, 6]]
        );
        assert_eq!(
            chunks_by_size(&m, 1000, 2),
            [vec![1, 2], vec![3, 4], vec![5, 6]]
        );
        assert!(chunks_by_size(&[], 20, 2).is_empty());
    }
}
