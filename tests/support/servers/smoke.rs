//! What the interop servers' smoke tests (`tests/servers_smoke.rs`, `tests/servers_smoke2.rs`) share: a per-test deadline, the sample messages' common parts, and byte helpers.

use std::sync::mpsc;
use std::time::Duration;

/// Per-test deadline: a hang fails the test instead of stalling CI (every
/// socket read also has its own timeout).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `body` on its own thread and fails the test if it does not end
/// within [`TEST_TIMEOUT`]; a panic in `body` is the test's panic.
pub fn within_deadline(body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(TEST_TIMEOUT) {
        Ok(()) => worker.join().expect("test body finished"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body ended without reporting"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("test exceeded its deadline of {TEST_TIMEOUT:?}")
        }
    }
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as text, for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A MIME message with a base64 part, CRLF line ends; with a `Date:` header
/// after the `Subject:` if `date` is given.
pub fn base64_message(date: Option<&str>) -> Vec<u8> {
    let head = b"From: sender@example.test\r\n\
To: someone@example.test\r\n\
Subject: attachment\r\n";
    let rest = b"Message-ID: <base64@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
see attached\r\n\
--b1\r\n\
Content-Type: application/octet-stream; name=\"x.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\r\n\
MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f\r\n\
--b1--\r\n";
    let date = date.map(|d| format!("Date: {d}\r\n")).unwrap_or_default();
    [&head[..], date.as_bytes(), &rest[..]].concat()
}

/// Plain ASCII, LF line ends; with a `Date:` header after the `Subject:` if
/// `date` is given.
pub fn plain_message(date: Option<&str>) -> Vec<u8> {
    let head = b"From: plain@example.test\n\
To: someone@example.test\n\
Subject: plain\n";
    let rest = b"Message-ID: <plain@example.test>\n\
\n\
Just text.\n";
    let date = date.map(|d| format!("Date: {d}\n")).unwrap_or_default();
    [&head[..], date.as_bytes(), &rest[..]].concat()
}
