//! Mailboxes: LIST, CREATE (+ SUBSCRIBE) with parents, SELECT / EXAMINE.
//!
//! Names given to this API use `/` as the hierarchy separator, whatever the
//! server's delimiter (learnt once from `LIST "" ""`, RFC 3501 §6.3.8); a
//! level that contains the server's own delimiter is refused rather than
//! silently split. On the wire names are modified UTF-7 (RFC 3501 §5.1.3),
//! or UTF-8 once the server has enabled UTF8=ACCEPT (RFC 6855).

use super::encode::MailboxEncoding;
use super::error::{ImapError, ResponseCode, StatusKind};
use super::response::{ListEntry, Untagged};
use super::session::ImapSession;
use super::utf7;

/// What SELECT / EXAMINE report (RFC 3501 §6.3.1, §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxInfo {
    pub uidvalidity: u32,
    /// `None` when the server did not say (it must, but some don't).
    pub uidnext: Option<u32>,
    pub exists: u32,
}

/// One mailbox from LIST, its name decoded and with `/` as separator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    pub name: String,
    pub attributes: Vec<String>,
}

impl ImapSession {
    /// The server's hierarchy delimiter; `None` for a flat namespace.
    pub async fn delimiter(&mut self) -> Result<Option<char>, ImapError> {
        if let Some(known) = self.delimiter {
            return Ok(known);
        }
        // RFC 3501 §6.3.8: an empty mailbox name asks for the delimiter.
        let req = self.command("LIST").syntax("\"\" \"\"").finish();
        let (_, untagged) = self.run_ok("LIST", &req).await?;
        let delimiter = untagged.into_iter().find_map(|u| match u {
            Untagged::List(entry) => Some(entry.delimiter),
            _ => None,
        });
        let delimiter = delimiter.flatten();
        self.delimiter = Some(delimiter);
        Ok(delimiter)
    }

    /// RFC 3501 §6.3.8 LIST with reference `""` and `pattern` (`*` and `%`
    /// are wildcards; `/` separates levels).
    pub async fn list(&mut self, pattern: &str) -> Result<Vec<MailboxEntry>, ImapError> {
        let wire = self.server_name(pattern).await?;
        let req = self
            .command("LIST")
            .syntax("\"\"")
            .mailbox(&wire, self.encoding)?
            .finish();
        let (_, untagged) = self.run_ok("LIST", &req).await?;
        let (delimiter, encoding) = (self.delimiter.flatten(), self.encoding);
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::List(entry) => Some(entry),
                _ => None,
            })
            .filter_map(|entry| list_entry(entry, delimiter, encoding))
            .collect())
    }

    /// Creates `name` and its missing parents and subscribes to it, unless
    /// it exists (RFC 3501 §6.3.3 CREATE, §6.3.6 SUBSCRIBE; RFC 5530
    /// `[ALREADYEXISTS]` is success).
    pub async fn ensure_mailbox(&mut self, name: &str) -> Result<(), ImapError> {
        if name.eq_ignore_ascii_case("INBOX") || self.exists(name).await? {
            return Ok(());
        }
        let levels: Vec<&str> = name.split('/').collect();
        for depth in 1..=levels.len() {
            let path = levels[..depth].join("/");
            let is_leaf = depth == levels.len();
            if !is_leaf && self.exists(&path).await? {
                continue;
            }
            let wire = self.server_name(&path).await?;
            let req = self
                .command("CREATE")
                .mailbox(&wire, self.encoding)?
                .finish();
            let (status, _) = self.run(&req).await?;
            let created = status.kind == StatusKind::Ok;
            let already = status.code == Some(ResponseCode::AlreadyExists);
            if !created && !already && is_leaf && !self.exists(&path).await? {
                return Err(ImapError::Command {
                    host: self.host().to_string(),
                    command: "CREATE",
                    status,
                });
            }
            if created {
                self.subscribe(&wire).await;
            }
        }
        Ok(())
    }

    /// RFC 3501 §6.3.6 SUBSCRIBE; a refusal only costs visibility in mail
    /// clients, so it is logged, not fatal.
    async fn subscribe(&mut self, wire: &str) {
        let req = match self.command("SUBSCRIBE").mailbox(wire, self.encoding) {
            Ok(b) => b.finish(),
            Err(_) => return,
        };
        match self.run(&req).await {
            Ok((status, _)) if status.kind != StatusKind::Ok => {
                tracing::warn!(host = self.host(), mailbox = wire, %status, "SUBSCRIBE refused");
            }
            _ => {}
        }
    }

    /// Whether `name` exists and can hold messages.
    async fn exists(&mut self, name: &str) -> Result<bool, ImapError> {
        let found = self.list(name).await?;
        Ok(found.iter().any(|e| {
            e.name == name
                && !e.attributes.iter().any(|a| {
                    a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
                })
        }))
    }

    /// RFC 3501 §6.3.1 SELECT.
    pub async fn select(&mut self, name: &str) -> Result<MailboxInfo, ImapError> {
        self.open("SELECT", name).await
    }

    /// RFC 3501 §6.3.2 EXAMINE: SELECT, read-only.
    pub async fn examine(&mut self, name: &str) -> Result<MailboxInfo, ImapError> {
        self.open("EXAMINE", name).await
    }

    async fn open(&mut self, command: &'static str, name: &str) -> Result<MailboxInfo, ImapError> {
        let wire = self.server_name(name).await?;
        let req = self
            .command(command)
            .mailbox(&wire, self.encoding)?
            .finish();
        let (_, untagged) = self.run_ok(command, &req).await?;
        let (mut uidvalidity, mut uidnext, mut exists) = (None, None, 0);
        for u in untagged {
            match u {
                Untagged::Exists(n) => exists = n,
                Untagged::Status(s) => match s.code {
                    Some(ResponseCode::UidValidity(v)) => uidvalidity = Some(v),
                    Some(ResponseCode::UidNext(n)) => uidnext = Some(n),
                    _ => {}
                },
                _ => {}
            }
        }
        let Some(uidvalidity) = uidvalidity else {
            return Err(self.protocol(&format!("{command} reported no UIDVALIDITY")));
        };
        Ok(MailboxInfo {
            uidvalidity,
            uidnext,
            exists,
        })
    }

    /// `name` with `/` replaced by the server's delimiter.
    pub(super) async fn server_name(&mut self, name: &str) -> Result<String, ImapError> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(name.to_string());
        }
        let delimiter = self.delimiter().await?;
        to_server_name(name, delimiter).map_err(|reason| ImapError::MailboxName {
            account: self.account.clone(),
            name: name.to_string(),
            reason,
        })
    }
}

/// Maps `/`-separated `name` onto the server's hierarchy.
fn to_server_name(name: &str, delimiter: Option<char>) -> Result<String, &'static str> {
    match delimiter {
        None if name.contains('/') => Err("the server has no mailbox hierarchy"),
        None | Some('/') => Ok(name.to_string()),
        Some(d) if name.contains(d) => Err("a level contains the server's hierarchy delimiter"),
        Some(d) => Ok(name.replace('/', &d.to_string())),
    }
}

/// Decodes a LIST entry's name back into a `/`-separated name (modified
/// UTF-7, or UTF-8 once UTF8=ACCEPT is enabled); entries whose name does
/// not decode are skipped (not ours).
fn list_entry(
    entry: ListEntry,
    delimiter: Option<char>,
    encoding: MailboxEncoding,
) -> Option<MailboxEntry> {
    let raw = String::from_utf8(entry.name).ok()?;
    let decoded = if raw.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else if encoding == MailboxEncoding::Utf8 {
        raw
    } else {
        utf7::decode(&raw)?
    };
    let name = match delimiter {
        Some(d) if d != '/' => decoded.replace(d, "/"),
        _ => decoded,
    };
    Some(MailboxEntry {
        name,
        attributes: entry.attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_onto_the_servers_hierarchy() {
        assert_eq!(to_server_name("a/b", Some('/')), Ok("a/b".into()));
        assert_eq!(to_server_name("a/b", Some('.')), Ok("a.b".into()));
        assert!(to_server_name("a.b/c", Some('.')).is_err());
        assert!(to_server_name("a/b", None).is_err());
        assert_eq!(to_server_name("ab", None), Ok("ab".into()));
    }

    #[test]
    fn list_entries_decode() {
        let entry = |name: &[u8]| ListEntry {
            attributes: vec![],
            delimiter: Some('.'),
            name: name.to_vec(),
        };
        let e = list_entry(
            entry(b"Archiv.&ANw-berweisungen"),
            Some('.'),
            MailboxEncoding::Utf7,
        )
        .unwrap();
        assert_eq!(e.name, "Archiv/Überweisungen");
        assert_eq!(
            list_entry(entry(b"inbox"), Some('.'), MailboxEncoding::Utf7)
                .unwrap()
                .name,
            "INBOX"
        );
        assert_eq!(
            list_entry(entry(b"bad&-&"), Some('.'), MailboxEncoding::Utf7),
            None
        );
    }
}
