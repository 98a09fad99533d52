//! Mail servers other than Dovecot, each started privately on 127.0.0.1 by the test that needs it: the interop matrix (issue #20).
//!
//! Every server here is real (a Debian package, installed or extracted by
//! `scripts/servers/install-*`), runs as a child of the test process under a
//! watchdog (it dies with the test process, even after `kill -9`), listens
//! on ephemeral plain-text ports of 127.0.0.1, and keeps its files in its
//! own temporary directory. A server that cannot start is a test failure
//! naming what is missing, never a skip.
//!
//! Two interfaces, so a test can run one scenario over every server:
//! [`Pop3Server`] for sources and [`ImapServer`] for targets. Logins are
//! plain text: configs for these use `security = "plain"` and
//! `allow_plaintext = true`.

pub mod changes;
pub(super) mod common;
pub mod courier;
pub mod cyrus;
mod jail;
pub mod mailutils;
pub mod popa3d;
pub mod readers;
pub mod smoke;

pub use super::dovecot::User;

/// A POP3 server holding test users' maildrops.
pub trait Pop3Server: Send + Sync {
    /// Short name for test output and config names: `cyrus`, `courier`, ...
    fn name(&self) -> &'static str;
    /// Plain-text POP3 on 127.0.0.1.
    fn pop3_port(&self) -> u16;
    /// A fresh user with an empty maildrop. `name` is the login name.
    fn pop3_user(&self, hint: &str) -> User;
    /// Appends `messages` (raw bytes, LF or CRLF) to the user's maildrop, in
    /// order, so that POP3 lists them in that order.
    fn load(&self, user: &User, messages: &[Vec<u8>]);
    /// What the maildrop holds now, in POP3 order, each message as RETR
    /// serves it (dot-unstuffed, CRLF line ends). Read with a minimal
    /// POP3 client of the tests' own (not mailferry's), which does not send
    /// `UTF8`: RETR 1..n in one session.
    fn maildrop(&self, user: &User) -> Vec<Vec<u8>> {
        readers::pop3_maildrop(self.pop3_port(), &user.name, &user.password)
            .unwrap_or_else(|e| panic!("{}: POP3 maildrop of {}: {e}", self.name(), user.name))
    }
}

/// An IMAP server holding test users' mailboxes.
pub trait ImapServer: Send + Sync {
    fn name(&self) -> &'static str;
    /// Plain-text IMAP on 127.0.0.1.
    fn imap_port(&self) -> u16;
    /// A fresh user whose INBOX exists (or is made at first login).
    fn imap_user(&self, hint: &str) -> User;
    /// Stores `messages` in `mailbox` (created if missing), as another tool
    /// would, in order. By default over IMAP, in one session: `CREATE` if
    /// `LIST` does not show it, then `APPEND` of each message
    /// (CRLF-normalised), without `SELECT`; panics with the server's answer
    /// if it refuses one.
    fn store(&self, user: &User, mailbox: &str, messages: &[Vec<u8>]) {
        let server = self.name();
        let mut imap = readers::Imap::login(self.imap_port(), &user.name, &user.password)
            .unwrap_or_else(|e| panic!("{server}: login of {}: {e}", user.name));
        let exists = imap
            .mailbox_exists(mailbox)
            .unwrap_or_else(|e| panic!("{server}: LIST {mailbox:?}: {e}"));
        if !exists {
            imap.create(mailbox)
                .unwrap_or_else(|e| panic!("{server}: CREATE {mailbox:?}: {e}"));
        }
        for (i, message) in messages.iter().enumerate() {
            imap.append(mailbox, &readers::crlf(message))
                .unwrap_or_else(|e| panic!("{server} refused message {i} for {mailbox:?}: {e}"));
        }
        imap.logout()
            .unwrap_or_else(|e| panic!("{server}: LOGOUT of {}: {e}", user.name));
    }
    /// Every message in `mailbox`, in UID order, as stored: read with a
    /// minimal IMAP client of the tests' own, `UID FETCH 1:* BODY.PEEK[]`
    /// (the unaltered bytes, CRLF line ends), each in a fresh session.
    fn messages(&self, user: &User, mailbox: &str) -> Vec<Vec<u8>> {
        readers::imap_messages(self.imap_port(), &user.name, &user.password, mailbox)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: IMAP messages of {} in {mailbox:?}: {e}",
                    self.name(),
                    user.name
                )
            })
    }
}

/// Dovecot as one server of the matrix, through the same two interfaces.
impl Pop3Server for super::dovecot::Dovecot {
    fn name(&self) -> &'static str {
        "dovecot"
    }

    fn pop3_port(&self) -> u16 {
        super::dovecot::Dovecot::pop3_port(self)
    }

    fn pop3_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    fn load(&self, user: &User, messages: &[Vec<u8>]) {
        super::dovecot::Dovecot::load(self, user, "INBOX", messages);
    }
}

impl ImapServer for super::dovecot::Dovecot {
    fn name(&self) -> &'static str {
        "dovecot"
    }

    fn imap_port(&self) -> u16 {
        super::dovecot::Dovecot::imap_port(self)
    }

    fn imap_user(&self, hint: &str) -> User {
        self.user(hint)
    }

    fn store(&self, user: &User, mailbox: &str, messages: &[Vec<u8>]) {
        super::dovecot::Dovecot::load(self, user, mailbox, messages);
    }

    /// The stored files (Dovecot keeps what was appended, byte for byte).
    fn messages(&self, user: &User, mailbox: &str) -> Vec<Vec<u8>> {
        super::dovecot::Dovecot::messages(self, user, mailbox)
    }
}
