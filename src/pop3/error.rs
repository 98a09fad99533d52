//! The POP3 layer's one error type, and what each error means for the route ([`ErrorClass`]).

use std::time::Duration;

use crate::config::SecretError;
use crate::net::NetError;
use crate::retry::ErrorClass;

use super::reply::{RespCode, Response};

/// A `-ERR` (or an unexpected continuation) from the server, with its text
/// and response code, for the log and the ledger.
pub type Refusal = Response;

/// Everything that can go wrong in a POP3 session. The password never
/// appears here: commands are named by verb only.
#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The server greeted with `-ERR` or closed at once.
    #[error("{host}: server refused the session: {refusal}")]
    Greeting { host: String, refusal: Refusal },
    /// `-ERR` to a login command (`USER`, `PASS`, `APOP`, `AUTH`).
    #[error("{host}: {command} refused: {refusal}")]
    AuthRefused {
        host: String,
        command: &'static str,
        refusal: Refusal,
        /// The `LOGIN-DELAY` the server advertised in CAPA, if any.
        login_delay: Option<Duration>,
    },
    /// `-ERR` to a session command (`STAT`, `LIST`, `QUIT`, ...).
    #[error("{host}: {command} refused: {refusal}")]
    Refused {
        host: String,
        command: &'static str,
        refusal: Refusal,
    },
    /// `-ERR` to `RETR n` / `TOP n` / `DELE n`: this message only.
    #[error("{host}: {command} {msgno} refused: {refusal}")]
    MessageRefused {
        host: String,
        command: &'static str,
        msgno: u32,
        refusal: Refusal,
    },
    /// A message larger than the configured maximum; it was skipped (and the
    /// rest of its reply drained), the session goes on.
    #[error("{host}: message {msgno} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        host: String,
        msgno: u32,
        size: u64,
        limit: u64,
    },
    /// `security = starttls` but the server does not offer STLS: never
    /// fall back to plain text.
    #[error("{host}: STLS was required but the server does not offer it")]
    StlsNotOffered { host: String },
    /// `STLS` answered `-ERR`.
    #[error("{host}: STLS refused: {refusal}")]
    StlsRefused { host: String, refusal: Refusal },
    /// Credentials would cross an unencrypted connection and
    /// `allow_plaintext` is off; nothing was sent.
    #[error("{host}: refusing to send credentials over an unencrypted connection (set allow_plaintext = true to allow it)")]
    PlaintextRefused { host: String },
    /// `auth = "apop"` but the greeting carried no timestamp.
    #[error("{host}: APOP requested but the greeting has no timestamp")]
    NoApopTimestamp { host: String },
    /// A value that cannot be put on a command line (CR, LF, NUL, or a
    /// space where the grammar forbids one).
    #[error("{host}: {what} cannot be sent: it contains a line break, NUL or space")]
    InvalidArgument { host: String, what: &'static str },
    /// The server lacks a command mailferry cannot do without.
    #[error("{host}: the server does not support {command}")]
    Unsupported { host: String, command: &'static str },
    /// The server sent something that is not POP3, or not what the command
    /// calls for: the session is out of step and was poisoned.
    #[error("{host}: protocol error after {command}: {detail}")]
    Protocol {
        host: String,
        command: &'static str,
        detail: String,
    },
    /// The first RETR reply of a session, after replies that all parsed,
    /// broke the protocol (a status line that is not POP3,
    /// or over `max_line_length`): that message is to blame. The session
    /// was poisoned; the message is skipped with this reason, so a new
    /// session goes on with the rest instead of failing for ever.
    #[error("{host}: the reply to RETR {msgno} breaks the protocol: {detail}")]
    BrokenReply {
        host: String,
        msgno: u32,
        detail: String,
    },
    /// Like [`Pop3Error::BrokenReply`], but with other RETRs answered before
    /// it in the session: the previous message may be what put the session
    /// out of step, so nobody is blamed; a new session starts with `msgno`
    /// and finds out.
    #[error(
        "{host}: out of step while reading RETR {msgno} (a new session starts with it): {detail}"
    )]
    OutOfStep {
        host: String,
        msgno: u32,
        detail: String,
    },
    /// An earlier error left the session in an unknown state.
    #[error("{host}: session unusable after an earlier error")]
    Poisoned { host: String },
}

impl Pop3Error {
    /// What this error means for the route (docs/ARCHITECTURE.md, "Error classes").
    pub fn class(&self) -> ErrorClass {
        match self {
            Pop3Error::Net(net) if net.is_transient() => ErrorClass::Transient,
            Pop3Error::Net(_) => ErrorClass::Fatal,
            // A password or OAuth token that cannot be had: the account needs the
            // user (as an IMAP target does), with the long auth back-off.
            Pop3Error::Secret(_) => ErrorClass::Auth,
            Pop3Error::Greeting { refusal, .. } => by_code(refusal, ErrorClass::Transient),
            Pop3Error::AuthRefused {
                refusal,
                login_delay,
                ..
            } => match refusal.code {
                // RFC 2449 §8.1.1: the server refuses logins this soon after
                // the last one; waiting as advertised is the only cure.
                Some(RespCode::LoginDelay) => ErrorClass::Throttled { wait: *login_delay },
                _ => by_code(refusal, ErrorClass::Auth),
            },
            Pop3Error::Refused { refusal, .. } => by_code(refusal, ErrorClass::Transient),
            Pop3Error::MessageRefused { refusal, .. } => by_code(refusal, ErrorClass::Message),
            Pop3Error::TooLarge { .. } => ErrorClass::Message,
            Pop3Error::StlsNotOffered { .. }
            | Pop3Error::StlsRefused { .. }
            | Pop3Error::PlaintextRefused { .. }
            | Pop3Error::NoApopTimestamp { .. }
            | Pop3Error::InvalidArgument { .. }
            | Pop3Error::Unsupported { .. }
            | Pop3Error::Protocol { .. } => ErrorClass::Fatal,
            // The cause was reported when it happened; a new session is the
            // cure (this is also what a cancelled operation leaves behind).
            // After a broken reply the message is blamed: a new session
            // goes on with the rest (see `BrokenReply`).
            Pop3Error::Poisoned { .. }
            | Pop3Error::BrokenReply { .. }
            | Pop3Error::OutOfStep { .. } => ErrorClass::Transient,
        }
    }

    /// True when only one message is affected and the session goes on.
    pub fn is_per_message(&self) -> bool {
        matches!(
            self,
            Pop3Error::MessageRefused { .. } | Pop3Error::TooLarge { .. }
        )
    }

    /// The server's response code, when the error is a refusal that had one.
    pub fn resp_code(&self) -> Option<&RespCode> {
        match self {
            Pop3Error::Greeting { refusal, .. }
            | Pop3Error::AuthRefused { refusal, .. }
            | Pop3Error::Refused { refusal, .. }
            | Pop3Error::MessageRefused { refusal, .. }
            | Pop3Error::StlsRefused { refusal, .. } => refusal.code.as_ref(),
            _ => None,
        }
    }
}

/// A response code decides the class when there is one (RFC 2449 §8,
/// RFC 3206); otherwise the command's own default holds.
fn by_code(refusal: &Refusal, default: ErrorClass) -> ErrorClass {
    match refusal.code {
        Some(RespCode::InUse | RespCode::SysTemp) => ErrorClass::Transient,
        Some(RespCode::LoginDelay) => ErrorClass::Throttled { wait: None },
        Some(RespCode::Auth) => ErrorClass::Auth,
        Some(RespCode::SysPerm) => ErrorClass::Fatal,
        Some(RespCode::Other(_)) | None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: Option<RespCode>) -> Refusal {
        Response {
            code,
            text: "nope".into(),
        }
    }

    fn auth(code: Option<RespCode>) -> Pop3Error {
        Pop3Error::AuthRefused {
            host: "h".into(),
            command: "PASS",
            refusal: refusal(code),
            login_delay: Some(Duration::from_secs(900)),
        }
    }

    #[test]
    fn login_refusals_are_classed_by_their_code() {
        assert_eq!(auth(None).class(), ErrorClass::Auth);
        assert_eq!(auth(Some(RespCode::Auth)).class(), ErrorClass::Auth);
        assert_eq!(auth(Some(RespCode::InUse)).class(), ErrorClass::Transient);
        assert_eq!(auth(Some(RespCode::SysTemp)).class(), ErrorClass::Transient);
        assert_eq!(auth(Some(RespCode::SysPerm)).class(), ErrorClass::Fatal);
        assert_eq!(
            auth(Some(RespCode::LoginDelay)).class(),
            ErrorClass::Throttled {
                wait: Some(Duration::from_secs(900))
            }
        );
        let other = auth(Some(RespCode::Other("X-FOO".into())));
        assert_eq!(other.class(), ErrorClass::Auth);
    }

    #[test]
    fn message_errors_do_not_end_the_session() {
        let too_large = Pop3Error::TooLarge {
            host: "h".into(),
            msgno: 3,
            size: 10,
            limit: 5,
        };
        assert_eq!(too_large.class(), ErrorClass::Message);
        assert!(too_large.is_per_message());
        let refused = Pop3Error::MessageRefused {
            host: "h".into(),
            command: "RETR",
            msgno: 3,
            refusal: refusal(None),
        };
        assert_eq!(refused.class(), ErrorClass::Message);
        let protocol = Pop3Error::Protocol {
            host: "h".into(),
            command: "RETR",
            detail: "x".into(),
        };
        assert_eq!(protocol.class(), ErrorClass::Fatal);
        assert!(!protocol.is_per_message());
        // A broken reply to one RETR ends the session but not the route.
        let broken = Pop3Error::BrokenReply {
            host: "h".into(),
            msgno: 2,
            detail: "x".into(),
        };
        assert_eq!(broken.class(), ErrorClass::Transient);
        assert!(!broken.is_per_message());
    }
}
