//! The deterministic benchmark corpus: ordinary mail of a realistic size mix, a few large attachments and one 20 MB message.
//!
//! Every message is a pure function of (seed, index), so a child process
//! regenerates exactly the bytes the parent loaded without reading them back.
//! Messages have CRLF line ends, as POP3 serves them and IMAP wants them.

use serde::{Deserialize, Serialize};

/// Bytes of the one huge message.
pub const HUGE_BYTES: usize = 20 * 1024 * 1024;
/// Where the huge message sits (early, so every prefix of 11+ messages has it).
pub const HUGE_INDEX: usize = 10;
/// One message in this many (on average) carries a 1–5 MB attachment.
const ATTACHMENT_ONE_IN: u64 = 100;

/// The size mix of a corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mix {
    /// 2–50 KB log-uniform, ~1 % with a 1–5 MB attachment, one 20 MB message.
    Realistic,
    /// 1–4 KB text messages only (the leave-on-server re-poll maildrop).
    Small,
}

/// A generator of message `i` of a corpus.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Corpus {
    pub mix: Mix,
    pub seed: u64,
}

impl Corpus {
    /// The first `n` messages, in order.
    pub fn messages(&self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| self.message(i, n)).collect()
    }

    /// Message `i` of a corpus of `n`.
    pub fn message(&self, i: usize, n: usize) -> Vec<u8> {
        let mut rng = Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self.mix {
            Mix::Small => {
                let size = rng_range(&mut rng, 1024, 4096);
                text_message(&mut rng, i, size)
            }
            Mix::Realistic if i == HUGE_INDEX.min(n.saturating_sub(1)) => {
                attachment_message(&mut rng, i, HUGE_BYTES)
            }
            Mix::Realistic if rng.next().is_multiple_of(ATTACHMENT_ONE_IN) => {
                let size = rng_range(&mut rng, 1 << 20, 5 << 20);
                attachment_message(&mut rng, i, size)
            }
            Mix::Realistic => {
                let size = log_uniform(&mut rng, 2 * 1024, 50 * 1024);
                text_message(&mut rng, i, size)
            }
        }
    }
}

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn rng_range(rng: &mut Rng, low: usize, high: usize) -> usize {
    low + (rng.next() % (high - low) as u64) as usize
}

/// Sizes spread evenly on a log scale: most mail is small, a long tail isn't.
fn log_uniform(rng: &mut Rng, low: usize, high: usize) -> usize {
    let unit = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
    let (l, h) = ((low as f64).ln(), (high as f64).ln());
    (l + unit * (h - l)).exp() as usize
}

const WORDS: &[&str] = &[
    "the", "invoice", "meeting", "project", "please", "attached", "regards", "tomorrow", "report",
    "schedule", "thanks", "review", "update", "customer", "delivery", "budget", "quarter", "and",
    "of", "to", "we", "will", "for", "with", "your", "about", "next", "week", "order", "number",
    "Müller", "Grüße", "café", "draft", "final", "version",
];

fn headers(rng: &mut Rng, i: usize, content_type: &str) -> String {
    let hop = rng.next() % 250;
    let minute = i % 60;
    let id = rng.next();
    format!(
        "Return-Path: <sender{i}@example.org>\r\n\
         Received: from mx{hop}.example.org (mx{hop}.example.org [192.0.2.{hop}])\r\n\
         \tby mail.example.com with ESMTPS id {id:016x}\r\n\
         \tfor <someone@example.com>; Mon, 2 Mar 2020 10:{minute:02}:00 +0100\r\n\
         From: Sender {i} <sender{i}@example.org>\r\n\
         To: Someone <someone@example.com>\r\n\
         Subject: bench message {i}\r\n\
         Date: Mon, 2 Mar 2020 10:{minute:02}:00 +0100\r\n\
         Message-ID: <bench-{i}-{id:016x}@example.org>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n\
         \r\n"
    )
}

/// Lines of words, about 72 characters each, until `out` is `size` long.
fn fill_text(rng: &mut Rng, out: &mut Vec<u8>, size: usize) {
    while out.len() < size {
        let mut line = 0;
        while line < 72 {
            let word = WORDS[(rng.next() % WORDS.len() as u64) as usize];
            out.extend_from_slice(word.as_bytes());
            out.push(b' ');
            line += word.len() + 1;
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn text_message(rng: &mut Rng, i: usize, size: usize) -> Vec<u8> {
    let mut out = headers(rng, i, "text/plain; charset=utf-8").into_bytes();
    out.reserve(size.saturating_sub(out.len()) + 80);
    fill_text(rng, &mut out, size);
    out
}

/// A short text part and a base64 attachment, `size` bytes in all.
fn attachment_message(rng: &mut Rng, i: usize, size: usize) -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let boundary = format!("=_bench_{i}_{:08x}", rng.next() as u32);
    let content_type = format!("multipart/mixed; boundary=\"{boundary}\"");
    let mut out = headers(rng, i, &content_type).into_bytes();
    out.reserve(size + 200);
    out.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").as_bytes(),
    );
    let text_end = out.len() + 1500;
    fill_text(rng, &mut out, text_end);
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: application/pdf; name=\"scan-{i}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"scan-{i}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        )
        .as_bytes(),
    );
    let closing = format!("--{boundary}--\r\n");
    while out.len() + closing.len() < size {
        let word = rng.next();
        for k in 0..76 {
            // 6 bits per character, a fresh word every 10 characters.
            let bits = if k % 10 == 9 {
                rng.next()
            } else {
                word >> ((k % 10) * 6)
            };
            out.push(B64[(bits & 63) as usize]);
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(closing.as_bytes());
    out
}
