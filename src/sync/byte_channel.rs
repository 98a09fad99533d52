//! A channel bounded by bytes, not by count: what lets fetching and appending
//! overlap while memory stays flat whatever the message sizes.
//!
//! The sender reserves a message's size before downloading it and the
//! reservation travels with the message; it is released when the receiver
//! drops the message after the append. A message larger than the whole budget
//! still goes through, alone (it waits until everything else is released).

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Why a message could not be downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Worth trying again on a later pass (the server refused it this time).
    Failed(String),
    /// Not worth trying again (larger than the configured limit).
    Skipped(String),
}

/// A downloaded message (or why it could not be downloaded), holding its share
/// of the byte budget until dropped.
#[derive(Debug)]
pub struct Fetched {
    pub msgno: u32,
    pub bytes: Result<Vec<u8>, Problem>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The budget's capacity in bytes; `Semaphore` counts permits in `u32` chunks.
const UNIT: u64 = 1024;

/// The sending half: reserve, then send.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Fetched>,
    budget: Arc<Semaphore>,
    capacity_units: u32,
}

/// A reservation for one message of a known (expected) size.
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

/// The receiving half.
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Fetched>,
}

/// A channel holding at most `capacity` bytes of messages in flight.
pub fn channel(capacity: u64) -> (Sender, Receiver) {
    let capacity_units = u32::try_from(capacity.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX >> 4);
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(capacity_units as usize));
    (
        Sender {
            tx,
            budget,
            capacity_units,
        },
        Receiver { rx },
    )
}

impl Sender {
    /// Waits until `size` bytes fit in the budget (a message larger than the
    /// whole budget waits for all of it).
    pub async fn reserve(&self, size: u64) -> Reservation {
        let units = u32::try_from(size.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.capacity_units);
        let permit = self.budget.clone().acquire_many_owned(units).await.ok();
        Reservation { permit }
    }

    /// Sends a message with its reservation. Returns false when the receiver
    /// is gone (the append side stopped): the caller should stop fetching.
    pub fn send(
        &self,
        reservation: Reservation,
        msgno: u32,
        bytes: Result<Vec<u8>, Problem>,
    ) -> bool {
        self.tx
            .send(Fetched {
                msgno,
                bytes,
                _permit: reservation.permit,
            })
            .is_ok()
    }
}

impl Fetched {
    /// The message number, the bytes (or the problem), and the reservation,
    /// which the caller keeps for as long as it holds the bytes.
    pub fn into_parts(self) -> (u32, Result<Vec<u8>, Problem>, Reservation) {
        (
            self.msgno,
            self.bytes,
            Reservation {
                permit: self._permit,
            },
        )
    }
}

impl Receiver {
    /// The next message; `None` once every sender is dropped and all is read.
    pub async fn recv(&mut self) -> Option<Fetched> {
        self.rx.recv().await
    }

    /// The next message if one is already waiting.
    pub fn try_recv(&mut self) -> Option<Fetched> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sender_waits_until_bytes_are_released() {
        let (tx, mut rx) = channel(100 * 1024);
        let r = tx.reserve(60 * 1024).await;
        assert!(tx.send(r, 1, Ok(vec![1])));
        // 60 KiB are held; another 60 KiB must wait.
        let blocked = tokio::time::timeout(Duration::from_millis(50), tx.reserve(60 * 1024)).await;
        assert!(blocked.is_err(), "second reservation should wait");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.msgno, 1);
        drop(first);
        let r = tokio::time::timeout(Duration::from_secs(5), tx.reserve(60 * 1024))
            .await
            .expect("released budget lets the next message in");
        assert!(tx.send(r, 2, Ok(vec![2])));
        assert_eq!(rx.recv().await.unwrap().msgno, 2);
    }

    #[tokio::test]
    async fn oversized_message_goes_through_alone() {
        let (tx, mut rx) = channel(10 * 1024);
        let r = tx.reserve(50 * 1024 * 1024).await;
        assert!(tx.send(r, 7, Err(Problem::Skipped("too big".into()))));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.bytes, Err(Problem::Skipped("too big".into())));
    }

    #[tokio::test]
    async fn send_reports_a_gone_receiver() {
        let (tx, rx) = channel(1024);
        drop(rx);
        let r = tx.reserve(1).await;
        assert!(!tx.send(r, 1, Ok(Vec::new())));
    }
}
