//! What the IMAP layer reports: server answers as values, and [`ImapError`] with its retry class.
//!
//! A tagged `NO`/`BAD` is a [`ServerStatus`] carrying the server's text and
//! typed response code (RFC 3501 §7.1, RFC 5530, RFC 4315, RFC 7889).
//! Every error answers [`ImapError::class`]; nothing here ever holds a
//! password or token.

use std::time::Duration;

use crate::config::SecretError;
use crate::net::NetError;
use crate::retry::ErrorClass;

use super::encode::EncodeError;

/// OK, NO or BAD (RFC 3501 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
}

/// A response code (RFC 3501 §7.1, RFC 5530 §3, RFC 4315 §3, RFC 7889).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseCode {
    Alert,
    Parse,
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidNext(u32),
    UidValidity(u32),
    /// UIDs in the order the messages were appended (one per message of a
    /// MULTIAPPEND).
    AppendUid {
        uidvalidity: u32,
        uids: Vec<u32>,
    },
    Capability(Vec<String>),
    // RFC 5530 (and RFC 9208 OVERQUOTA, RFC 4469 TOOBIG).
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    NonExistent,
    TooBig,
    /// Any other code, as sent.
    Other(String),
}

/// A status response: what the server said and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub kind: StatusKind,
    pub code: Option<ResponseCode>,
    pub text: String,
}

impl std::fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
        };
        match &self.code {
            Some(code) => write!(f, "{kind} [{code:?}] {}", self.text),
            None => write!(f, "{kind} {}", self.text),
        }
    }
}

impl ServerStatus {
    /// Microsoft 365's throttling answer, `NO Request is throttled.
    /// Suggested Backoff Time: 299609 milliseconds`: the wait it asks for.
    /// `Some(None)` when throttled without a readable time.
    pub fn throttle_wait(&self) -> Option<Option<Duration>> {
        let lower = self.text.to_ascii_lowercase();
        if !lower.contains("throttled") {
            return None;
        }
        let wait = lower.split_once("backoff time:").and_then(|(_, rest)| {
            let rest = rest.trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let n: u64 = digits.parse().ok()?;
            let unit = rest[digits.len()..].trim_start();
            Some(if unit.starts_with("ms") || unit.starts_with("milli") {
                Duration::from_millis(n)
            } else {
                Duration::from_secs(n)
            })
        });
        Some(wait)
    }

    /// What a NO/BAD to APPEND means for the route (docs/ARCHITECTURE.md, "Error classes").
    pub fn class(&self) -> ErrorClass {
        if let Some(wait) = self.throttle_wait() {
            return ErrorClass::Throttled { wait };
        }
        match self.code {
            Some(ResponseCode::OverQuota) => ErrorClass::Quota,
            Some(ResponseCode::Unavailable | ResponseCode::InUse | ResponseCode::ServerBug) => {
                ErrorClass::Transient
            }
            Some(
                ResponseCode::AuthenticationFailed
                | ResponseCode::AuthorizationFailed
                | ResponseCode::Expired,
            ) => ErrorClass::Auth,
            // The mailbox vanished or cannot be written: the route, not the
            // message, is the problem.
            Some(ResponseCode::TryCreate | ResponseCode::NoPerm | ResponseCode::NonExistent) => {
                ErrorClass::Fatal
            }
            _ => ErrorClass::Message,
        }
    }
}

/// Why one message was not appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The server's code; [`ResponseCode::Limit`] for a message refused
    /// locally because it is over the server's APPENDLIMIT.
    pub code: Option<ResponseCode>,
    pub text: String,
    /// The server's answer; `None` when refused before sending.
    pub status: Option<ServerStatus>,
}

impl Refusal {
    pub(crate) fn from_status(status: ServerStatus) -> Refusal {
        Refusal {
            code: status.code.clone(),
            text: status.text.clone(),
            status: Some(status),
        }
    }

    /// What this refusal means for the route: [`ErrorClass::Message`] when
    /// only this message is at fault.
    pub fn class(&self) -> ErrorClass {
        match &self.status {
            Some(status) => status.class(),
            None => ErrorClass::Message,
        }
    }
}

/// Everything that can go wrong in an IMAP session.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("{host}: server said BYE: {text}")]
    Bye {
        host: String,
        code: Option<ResponseCode>,
        text: String,
    },
    #[error("{host}: protocol error: {reason}; the session is closed")]
    Protocol { host: String, reason: String },
    #[error("{host}: response announces a {size}-byte literal, over the {limit}-byte limit")]
    LiteralTooLarge { host: String, size: u64, limit: u64 },
    #[error("{host}: server does not offer {capability}, required by the account's settings")]
    Unsupported {
        host: String,
        capability: &'static str,
    },
    #[error("account {account}: refusing to send credentials over an unencrypted connection (set allow_plaintext = true to allow)")]
    PlaintextRefused { account: String },
    #[error("account {account}: login failed: {status}")]
    Auth {
        account: String,
        status: ServerStatus,
    },
    #[error("{host}: {command} failed: {status}")]
    Command {
        host: String,
        command: &'static str,
        status: ServerStatus,
    },
    #[error("account {account}: mailbox name {name:?}: {reason}")]
    MailboxName {
        account: String,
        name: String,
        reason: &'static str,
    },
    #[error("{host}: the session was closed after an earlier error and cannot be reused")]
    Poisoned { host: String },
}

impl ImapError {
    /// What this error means for the route (docs/ARCHITECTURE.md, "Error classes").
    pub fn class(&self) -> ErrorClass {
        match self {
            ImapError::Net(e) if e.is_transient() => ErrorClass::Transient,
            ImapError::Net(_) => ErrorClass::Fatal,
            ImapError::Secret(_) => ErrorClass::Auth,
            // Gmail ends sessions over its daily bandwidth with "BYE Session
            // expired" (providers.md): slow down, don't count a failure.
            ImapError::Bye { text, .. }
                if text.to_ascii_lowercase().contains("session expired") =>
            {
                ErrorClass::Throttled { wait: None }
            }
            ImapError::Bye {
                code: Some(ResponseCode::OverQuota),
                ..
            } => ErrorClass::Quota,
            ImapError::Bye { .. } => ErrorClass::Transient,
            ImapError::Auth { status, .. } => match status.code {
                Some(ResponseCode::Unavailable) => ErrorClass::Transient,
                _ => ErrorClass::Auth,
            },
            ImapError::Command { status, .. } => match status.class() {
                // A refused CREATE or SELECT is not one message's fault.
                ErrorClass::Message => ErrorClass::Fatal,
                class => class,
            },
            ImapError::Encode(_)
            | ImapError::Protocol { .. }
            | ImapError::LiteralTooLarge { .. }
            | ImapError::Unsupported { .. }
            | ImapError::PlaintextRefused { .. }
            | ImapError::MailboxName { .. }
            | ImapError::Poisoned { .. } => ErrorClass::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(code: Option<ResponseCode>, text: &str) -> ServerStatus {
        ServerStatus {
            kind: StatusKind::No,
            code,
            text: text.into(),
        }
    }

    #[test]
    fn microsoft_throttling_becomes_a_wait() {
        let s = no(
            None,
            "Request is throttled. Suggested Backoff Time: 299609 milliseconds",
        );
        assert_eq!(
            s.class(),
            ErrorClass::Throttled {
                wait: Some(Duration::from_millis(299_609))
            }
        );
        let s = no(None, "Request is throttled.");
        assert_eq!(s.class(), ErrorClass::Throttled { wait: None });
    }

    #[test]
    fn codes_classify() {
        let table = [
            (Some(ResponseCode::OverQuota), ErrorClass::Quota),
            (Some(ResponseCode::Unavailable), ErrorClass::Transient),
            (Some(ResponseCode::InUse), ErrorClass::Transient),
            (Some(ResponseCode::Limit), ErrorClass::Message),
            (Some(ResponseCode::TooBig), ErrorClass::Message),
            (Some(ResponseCode::TryCreate), ErrorClass::Fatal),
            (None, ErrorClass::Message),
        ];
        for (code, class) in table {
            assert_eq!(no(code.clone(), "x").class(), class, "{code:?}");
        }
        let auth = ImapError::Auth {
            account: "a".into(),
            status: no(
                Some(ResponseCode::Unavailable),
                "Temporary authentication failure.",
            ),
        };
        assert_eq!(auth.class(), ErrorClass::Transient);
        let auth = ImapError::Auth {
            account: "a".into(),
            status: no(
                Some(ResponseCode::AuthenticationFailed),
                "Authentication failed.",
            ),
        };
        assert_eq!(auth.class(), ErrorClass::Auth);
        assert!(auth.to_string().contains("account a"));
        let bye = ImapError::Bye {
            host: "h".into(),
            code: None,
            text: "Server shutting down".into(),
        };
        assert_eq!(bye.class(), ErrorClass::Transient);
        let gmail = ImapError::Bye {
            host: "imap.gmail.com".into(),
            code: None,
            text: "Session expired, please login again.".into(),
        };
        assert_eq!(gmail.class(), ErrorClass::Throttled { wait: None });
        let desync = ImapError::Protocol {
            host: "h".into(),
            reason: "unknown tag".into(),
        };
        assert_eq!(desync.class(), ErrorClass::Fatal);
    }
}
