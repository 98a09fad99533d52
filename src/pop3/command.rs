//! POP3 commands: each one's wire line, whether its `+OK` carries a multi-line body, and a log form without secrets.
//!
//! RFC 1939 §3: "Commands in the POP3 consist of a case-insensitive keyword,
//! possibly followed by one or more arguments. All commands are terminated
//! by a CRLF pair." RFC 2449 §4: a command line is at most 255 octets.
//!
//! Arguments are checked before a command is built ([`check_arg`]): a CR,
//! LF or NUL in a user name would let it smuggle a second command.

use std::fmt;

use crate::secret::Secret;

/// One command. `Display` is the log form: secrets print as `***`.
#[derive(Debug, Clone)]
pub enum Command {
    /// RFC 2449 §5.
    Capa,
    /// RFC 2595 §4.
    Stls,
    /// RFC 6856 §2: UTF-8 mode, so the server serves messages as stored
    /// (Courier wraps a message with raw 8-bit headers otherwise).
    Utf8,
    /// RFC 1939 §7.
    User(String),
    /// RFC 1939 §7.
    Pass(Secret),
    /// RFC 1939 §7: `APOP name digest`.
    Apop { user: String, digest: Secret },
    /// RFC 5034 §4: `AUTH mechanism [initial-response]`.
    Auth {
        mechanism: &'static str,
        initial: Option<Secret>,
    },
    /// RFC 5034 §4: a base64 answer to a `+ ` challenge (empty: the empty
    /// answer that ends a failed OAuth exchange).
    SaslResponse(Secret),
    /// RFC 1939 §5.
    Stat,
    /// RFC 1939 §5; `None` lists every message (multi-line).
    List(Option<u32>),
    /// RFC 1939 §7; `None` lists every message (multi-line).
    Uidl(Option<u32>),
    /// RFC 1939 §7: the header and this many body lines.
    Top(u32, u32),
    /// RFC 1939 §5.
    Retr(u32),
    /// RFC 1939 §5.
    Dele(u32),
    /// RFC 1939 §5.
    Rset,
    /// RFC 1939 §5.
    Noop,
    /// RFC 1939 §6 (and §4 in the AUTHORIZATION state).
    Quit,
}

impl Command {
    /// The verb, for errors and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Utf8 => "UTF8",
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } | Command::SaslResponse(_) => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Uidl(_) => "UIDL",
            Command::Top(..) => "TOP",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
        }
    }

    /// True when a `+OK` to this command is followed by a dot-terminated
    /// body (RFC 1939 §3; CAPA: RFC 2449 §5).
    pub fn is_multi_line(&self) -> bool {
        matches!(
            self,
            Command::Capa
                | Command::List(None)
                | Command::Uidl(None)
                | Command::Top(..)
                | Command::Retr(_)
        )
    }

    /// The message this command is about, for per-message errors.
    pub fn msgno(&self) -> Option<u32> {
        match self {
            Command::List(Some(n))
            | Command::Uidl(Some(n))
            | Command::Top(n, _)
            | Command::Retr(n)
            | Command::Dele(n) => Some(*n),
            _ => None,
        }
    }

    /// Appends the wire line, CRLF included, secrets in clear.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let line = match self {
            Command::User(user) => format!("USER {user}"),
            Command::Pass(pass) => format!("PASS {}", pass.expose()),
            Command::Apop { user, digest } => format!("APOP {user} {}", digest.expose()),
            Command::Auth {
                mechanism,
                initial: Some(initial),
            } => format!("AUTH {mechanism} {}", initial.expose()),
            Command::SaslResponse(answer) => answer.expose().to_string(),
            other => other.to_string(),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// The wire line as a fresh buffer.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(user) => write!(f, "USER {user}"),
            Command::Pass(_) => f.write_str("PASS ***"),
            Command::Apop { user, .. } => write!(f, "APOP {user} ***"),
            Command::Auth {
                mechanism,
                initial: Some(_),
            } => write!(f, "AUTH {mechanism} ***"),
            Command::Auth {
                mechanism,
                initial: None,
            } => write!(f, "AUTH {mechanism}"),
            Command::SaslResponse(_) => f.write_str("***"),
            Command::List(Some(n)) => write!(f, "LIST {n}"),
            Command::Uidl(Some(n)) => write!(f, "UIDL {n}"),
            Command::Top(n, lines) => write!(f, "TOP {n} {lines}"),
            Command::Retr(n) => write!(f, "RETR {n}"),
            Command::Dele(n) => write!(f, "DELE {n}"),
            other => f.write_str(other.verb()),
        }
    }
}

/// True when `value` can go on a command line as one argument: not empty,
/// no CR, LF, NUL, and no space (RFC 1939 separates arguments by spaces;
/// a space in a user name would shift APOP's digest into a third argument).
pub fn check_arg(value: &str) -> bool {
    !value.is_empty() && !value.contains(['\r', '\n', '\0', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lines_and_log_lines() {
        let secret = Secret::new("hunter2");
        let cases: Vec<(Command, &str, &str)> = vec![
            (Command::Capa, "CAPA\r\n", "CAPA"),
            (Command::Stls, "STLS\r\n", "STLS"),
            (Command::User("al".into()), "USER al\r\n", "USER al"),
            (
                Command::Pass(secret.clone()),
                "PASS hunter2\r\n",
                "PASS ***",
            ),
            (
                Command::Apop {
                    user: "al".into(),
                    digest: secret.clone(),
                },
                "APOP al hunter2\r\n",
                "APOP al ***",
            ),
            (
                Command::Auth {
                    mechanism: "PLAIN",
                    initial: Some(secret.clone()),
                },
                "AUTH PLAIN hunter2\r\n",
                "AUTH PLAIN ***",
            ),
            (
                Command::Auth {
                    mechanism: "XOAUTH2",
                    initial: None,
                },
                "AUTH XOAUTH2\r\n",
                "AUTH XOAUTH2",
            ),
            (Command::SaslResponse(secret), "hunter2\r\n", "***"),
            (Command::Stat, "STAT\r\n", "STAT"),
            (Command::List(None), "LIST\r\n", "LIST"),
            (Command::List(Some(7)), "LIST 7\r\n", "LIST 7"),
            (Command::Uidl(None), "UIDL\r\n", "UIDL"),
            (Command::Uidl(Some(7)), "UIDL 7\r\n", "UIDL 7"),
            (Command::Top(3, 0), "TOP 3 0\r\n", "TOP 3 0"),
            (Command::Retr(12), "RETR 12\r\n", "RETR 12"),
            (Command::Dele(12), "DELE 12\r\n", "DELE 12"),
            (Command::Rset, "RSET\r\n", "RSET"),
            (Command::Noop, "NOOP\r\n", "NOOP"),
            (Command::Quit, "QUIT\r\n", "QUIT"),
        ];
        for (command, wire, log) in cases {
            assert_eq!(String::from_utf8(command.to_wire()).unwrap(), wire);
            assert_eq!(command.to_string(), log);
            assert!(!format!("{command:?}").contains("hunter2"));
        }
    }

    #[test]
    fn multi_line_commands() {
        assert!(Command::Retr(1).is_multi_line());
        assert!(Command::List(None).is_multi_line());
        assert!(!Command::List(Some(1)).is_multi_line());
        assert!(!Command::Uidl(Some(1)).is_multi_line());
        assert!(Command::Top(1, 0).is_multi_line());
        assert!(!Command::Dele(1).is_multi_line());
    }

    #[test]
    fn arguments_that_would_inject_a_command_are_refused() {
        assert!(check_arg("alice@example.com"));
        for bad in ["", "a\r\nDELE 1", "a\nb", "a\0b", "a b"] {
            assert!(!check_arg(bad), "{bad:?}");
        }
    }
}
