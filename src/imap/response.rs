//! Response interpretation: one framed response decoded with imap-codec into the few owned values the session uses.
//!
//! RFC 3501 §7 (`response = *(continue-req / response-data) response-done`).
//! imap-codec does the grammar; this file maps its types to [`Reply`] and
//! keeps only what the client acts on. Two deliberate departures:
//! - continuation requests (`+ ...`) are not decoded: the session needs only
//!   their raw text (a SASL challenge), and imap-codec's guess between
//!   base64 and text is ambiguous for that;
//! - a status line whose human text holds 8-bit bytes (localised servers)
//!   is decoded with those bytes shown as `?`, because imap-codec accepts
//!   ASCII text only, and a foreign-language `NO` is not a desync.

use imap_codec::decode::Decoder;
use imap_codec::imap_types::core::{NString8, Vec1};
use imap_codec::imap_types::fetch::{MessageDataItem, Section};
use imap_codec::imap_types::flag::FlagFetch;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{
    Capability, Code, Data, Greeting, GreetingKind, Response, Status, StatusBody,
    StatusKind as CodecKind,
};
use imap_codec::{GreetingCodec, ResponseCodec};

use super::error::{ResponseCode, ServerStatus, StatusKind};
use crate::message::MailDate;

/// One server response, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+ text`: the raw text after `+ `.
    Continue(Vec<u8>),
    Tagged {
        tag: String,
        status: ServerStatus,
    },
    Untagged(Untagged),
    Bye(ServerStatus),
}

/// The untagged data the client uses; the rest is [`Untagged::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// `* OK/NO/BAD [code] text`.
    Status(ServerStatus),
    Capability(Vec<String>),
    List(ListEntry),
    Exists(u32),
    Search(Vec<u32>),
    Fetch(Box<FetchData>),
    Enabled(Vec<String>),
    Other,
}

/// One `* LIST` line (RFC 3501 §7.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub attributes: Vec<String>,
    pub delimiter: Option<char>,
    /// The name as sent (modified UTF-7 unless UTF8=ACCEPT is on).
    pub name: Vec<u8>,
}

/// The items of one `* n FETCH` the client asks for (RFC 3501 §7.4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchData {
    pub seq: u32,
    pub uid: Option<u32>,
    pub size: Option<u32>,
    pub body: Option<Vec<u8>>,
    /// The header fields a `BODY.PEEK[HEADER.FIELDS (...)]` asked for.
    pub header_fields: Option<Vec<u8>>,
    pub flags: Option<Vec<String>>,
    pub internal_date: Option<MailDate>,
}

/// The server's first words (RFC 3501 §7.1.1, §7.1.4, §7.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GreetingReply {
    Ok(ServerStatus),
    PreAuth(ServerStatus),
    Bye(ServerStatus),
}

/// A response imap-codec could not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The start of the response, for the error message.
    pub excerpt: String,
}

/// Decodes the greeting `frame`.
pub fn decode_greeting(frame: &[u8]) -> Result<GreetingReply, Undecodable> {
    let decode = |bytes: &[u8]| match GreetingCodec::new().decode(bytes) {
        Ok((&[], greeting)) => Some(greeting_reply(greeting)),
        _ => None,
    };
    decode(frame)
        .or_else(|| is_one_line(frame).then(|| decode(&ascii_only(frame)))?)
        .ok_or_else(|| undecodable(frame))
}

/// Decodes one framed response.
pub fn decode_reply(frame: &[u8]) -> Result<Reply, Undecodable> {
    if let Some(text) = frame.strip_prefix(b"+") {
        let text = text.strip_prefix(b" ").unwrap_or(text);
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        return Ok(Reply::Continue(text.to_vec()));
    }
    if let Some(reply) = decode_codec(frame) {
        return Ok(reply);
    }
    // Servers send message bodies the grammar refuses in a FETCH of
    // `BODY[]`: a literal8 (`~{n}`, Cyrus) or a NUL in a plain literal
    // (RFC 3501 §4.3). Read them as a plain literal with each NUL as 0x80,
    // as Dovecot sends it and as the message identity hashes it. Only such
    // frames are copied.
    if let Some(plain) = plain_literals(frame) {
        if let Some(reply) = decode_codec(&plain) {
            return Ok(reply);
        }
    }
    // Only status lines may be retried with 8-bit text masked: in data
    // (a LIST name, a FETCH body) masking would change the meaning. A
    // status line has no literal, so a frame of several lines (which may
    // carry a literal of hundreds of MB) is never copied to be masked.
    if is_one_line(frame) && frame.iter().any(|&b| b >= 0x80) {
        if let Some(
            reply @ (Reply::Tagged { .. } | Reply::Bye(_) | Reply::Untagged(Untagged::Status(_))),
        ) = decode_codec(&ascii_only(frame))
        {
            return Ok(reply);
        }
    }
    Err(undecodable(frame))
}

/// The frame with every literal8 announcement (`~{n}`) made a plain one and
/// every NUL inside a literal made 0x80; `None` when there is none of
/// either (or the frame's literals do not add up).
fn plain_literals(frame: &[u8]) -> Option<Vec<u8>> {
    if !frame.contains(&0) && !frame.windows(2).any(|w| w == b"~{") {
        return None;
    }
    let mut out = Vec::with_capacity(frame.len());
    let mut at = 0;
    while at < frame.len() {
        let line_end = frame[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(frame.len(), |p| at + p + 1);
        let line = &frame[at..line_end];
        let Some((open, len)) = literal_announcement(line) else {
            out.extend_from_slice(line);
            at = line_end;
            continue;
        };
        let head = if open > 0 && line[open - 1] == b'~' {
            open - 1
        } else {
            open
        };
        out.extend_from_slice(&line[..head]);
        out.extend_from_slice(&line[open..]);
        let end = line_end.checked_add(len).filter(|&e| e <= frame.len())?;
        out.extend(
            frame[line_end..end]
                .iter()
                .map(|&b| if b == 0 { 0x80 } else { b }),
        );
        at = end;
    }
    Some(out)
}

/// Where a line's closing `{n}` (or `{n+}`) starts, and `n`.
fn literal_announcement(line: &[u8]) -> Option<(usize, usize)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    let len = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((open, len))
}

/// Whether the frame's only line feed is its last byte (no literal).
fn is_one_line(frame: &[u8]) -> bool {
    !frame[..frame.len().saturating_sub(1)].contains(&b'\n')
}

fn decode_codec(frame: &[u8]) -> Option<Reply> {
    match ResponseCodec::new().decode(frame) {
        Ok((&[], response)) => Some(reply(response)),
        _ => None,
    }
}

fn ascii_only(frame: &[u8]) -> Vec<u8> {
    frame
        .iter()
        .map(|&b| if b >= 0x80 { b'?' } else { b })
        .collect()
}

fn undecodable(frame: &[u8]) -> Undecodable {
    let head = &frame[..frame.len().min(120)];
    Undecodable {
        excerpt: String::from_utf8_lossy(head).trim_end().to_string(),
    }
}

fn greeting_reply(greeting: Greeting<'_>) -> GreetingReply {
    let status = |kind| ServerStatus {
        kind,
        code: greeting.code.clone().map(response_code),
        text: greeting.text.to_string(),
    };
    match greeting.kind {
        GreetingKind::Ok => GreetingReply::Ok(status(StatusKind::Ok)),
        GreetingKind::PreAuth => GreetingReply::PreAuth(status(StatusKind::Ok)),
        GreetingKind::Bye => GreetingReply::Bye(status(StatusKind::No)),
    }
}

fn reply(response: Response<'_>) -> Reply {
    match response {
        Response::CommandContinuationRequest(_) => Reply::Continue(Vec::new()),
        Response::Status(Status::Tagged(tagged)) => Reply::Tagged {
            tag: tagged.tag.inner().to_string(),
            status: status_body(tagged.body),
        },
        Response::Status(Status::Untagged(body)) => {
            Reply::Untagged(Untagged::Status(status_body(body)))
        }
        Response::Status(Status::Bye(bye)) => Reply::Bye(ServerStatus {
            kind: StatusKind::No,
            code: bye.code.map(response_code),
            text: bye.text.to_string(),
        }),
        Response::Data(data) => Reply::Untagged(untagged(data)),
    }
}

fn status_body(body: StatusBody<'_>) -> ServerStatus {
    ServerStatus {
        kind: match body.kind {
            CodecKind::Ok => StatusKind::Ok,
            CodecKind::No => StatusKind::No,
            CodecKind::Bad => StatusKind::Bad,
        },
        code: body.code.map(response_code),
        text: body.text.to_string(),
    }
}

fn untagged(data: Data<'_>) -> Untagged {
    match data {
        Data::Capability(caps) => Untagged::Capability(capabilities(caps)),
        Data::List {
            items,
            delimiter,
            mailbox,
        } => Untagged::List(ListEntry {
            attributes: items.iter().map(ToString::to_string).collect(),
            delimiter: delimiter.map(|d| d.inner()),
            name: match mailbox {
                Mailbox::Inbox => b"INBOX".to_vec(),
                Mailbox::Other(other) => other.as_ref().to_vec(),
            },
        }),
        Data::Exists(n) => Untagged::Exists(n),
        Data::Search(uids, ..) => Untagged::Search(uids.iter().map(|u| u.get()).collect()),
        Data::Fetch { seq, items } => Untagged::Fetch(Box::new(fetch_data(seq.get(), items))),
        Data::Enabled { capabilities } => Untagged::Enabled(
            capabilities
                .iter()
                .map(|c| c.to_string().to_ascii_uppercase())
                .collect(),
        ),
        _ => Untagged::Other,
    }
}

fn capabilities(caps: Vec1<Capability<'_>>) -> Vec<String> {
    caps.into_inner()
        .iter()
        .map(|c| c.to_string().to_ascii_uppercase())
        .collect()
}

fn fetch_data(seq: u32, items: Vec1<MessageDataItem<'_>>) -> FetchData {
    let mut data = FetchData {
        seq,
        ..FetchData::default()
    };
    for item in items.into_inner() {
        match item {
            MessageDataItem::Uid(uid) => data.uid = Some(uid.get()),
            MessageDataItem::Rfc822Size(size) => data.size = Some(size),
            MessageDataItem::BodyExt {
                section: None,
                origin: None,
                data: body,
            }
            | MessageDataItem::Rfc822(body) => {
                data.body = Some(body.0.map(|s| s.as_ref().to_vec()).unwrap_or_default());
            }
            // BODY.PEEK[HEADER.FIELDS (...)]: only some header fields.
            MessageDataItem::BodyExt {
                section: Some(Section::HeaderFields(..)),
                data: fields,
                ..
            } => {
                data.header_fields =
                    Some(fields.0.map(|s| s.as_ref().to_vec()).unwrap_or_default());
            }
            MessageDataItem::Binary { section, value } if section.is_empty() => {
                data.body = Some(match value {
                    NString8::NString(s) => s.0.map(|s| s.as_ref().to_vec()).unwrap_or_default(),
                    NString8::Literal8(l) => l.data.into_owned(),
                });
            }
            MessageDataItem::Flags(flags) => {
                data.flags = Some(
                    flags
                        .iter()
                        .map(|f| match f {
                            FlagFetch::Flag(flag) => flag.to_string(),
                            FlagFetch::Recent => "\\Recent".to_string(),
                        })
                        .collect(),
                );
            }
            MessageDataItem::InternalDate(date) => {
                let date = date.as_ref();
                data.internal_date = Some(MailDate {
                    unix: date.timestamp(),
                    offset_minutes: date.offset().local_minus_utc() / 60,
                });
            }
            _ => {}
        }
    }
    data
}

fn response_code(code: Code<'_>) -> ResponseCode {
    match code {
        Code::Alert => ResponseCode::Alert,
        Code::Parse => ResponseCode::Parse,
        Code::ReadOnly => ResponseCode::ReadOnly,
        Code::ReadWrite => ResponseCode::ReadWrite,
        Code::TryCreate => ResponseCode::TryCreate,
        Code::UidNext(n) => ResponseCode::UidNext(n.get()),
        Code::UidValidity(n) => ResponseCode::UidValidity(n.get()),
        Code::AppendUid { uid_validity, uid } => ResponseCode::AppendUid {
            uidvalidity: uid_validity.get(),
            uids: vec![uid.get()],
        },
        Code::Capability(caps) => ResponseCode::Capability(capabilities(caps)),
        Code::OverQuota => ResponseCode::OverQuota,
        Code::TooBig => ResponseCode::TooBig,
        Code::Other(other) => other_code(other.inner()),
        other => ResponseCode::Other(format!("{other:?}")),
    }
}

/// Codes imap-codec leaves as text: RFC 5530's, and RFC 4315's APPENDUID
/// with a uid-set (MULTIAPPEND), which imap-codec's single-UID form misses.
fn other_code(raw: &[u8]) -> ResponseCode {
    let text = String::from_utf8_lossy(raw);
    let (name, args) = text.split_once(' ').unwrap_or((&text, ""));
    match name.to_ascii_uppercase().as_str() {
        "UNAVAILABLE" => ResponseCode::Unavailable,
        "AUTHENTICATIONFAILED" => ResponseCode::AuthenticationFailed,
        "AUTHORIZATIONFAILED" => ResponseCode::AuthorizationFailed,
        "EXPIRED" => ResponseCode::Expired,
        "PRIVACYREQUIRED" => ResponseCode::PrivacyRequired,
        "CONTACTADMIN" => ResponseCode::ContactAdmin,
        "NOPERM" => ResponseCode::NoPerm,
        "INUSE" => ResponseCode::InUse,
        "EXPUNGEISSUED" => ResponseCode::ExpungeIssued,
        "CORRUPTION" => ResponseCode::Corruption,
        "SERVERBUG" => ResponseCode::ServerBug,
        "CLIENTBUG" => ResponseCode::ClientBug,
        "CANNOT" => ResponseCode::Cannot,
        "LIMIT" => ResponseCode::Limit,
        "OVERQUOTA" => ResponseCode::OverQuota,
        "ALREADYEXISTS" => ResponseCode::AlreadyExists,
        "NONEXISTENT" => ResponseCode::NonExistent,
        "TOOBIG" => ResponseCode::TooBig,
        "APPENDUID" => append_uid(args).unwrap_or_else(|| ResponseCode::Other(text.to_string())),
        _ => ResponseCode::Other(text.to_string()),
    }
}

/// `resp-code-apnd = "APPENDUID" SP nz-number SP append-uid`,
/// `append-uid = uniqueid / uid-set` (RFC 4315 §4), in append order.
fn append_uid(args: &str) -> Option<ResponseCode> {
    let (validity, set) = args.split_once(' ')?;
    let uidvalidity: u32 = validity.parse().ok().filter(|&v| v > 0)?;
    let mut uids = Vec::new();
    for part in set.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        if a == 0 || b == 0 {
            return None;
        }
        // RFC 4315 §3: "a:b" may be written high to low.
        let (lo, hi) = (a.min(b), a.max(b));
        if uids.len() + (hi - lo) as usize >= 100_000 {
            return None;
        }
        uids.extend(lo..=hi);
    }
    Some(ResponseCode::AppendUid { uidvalidity, uids })
}

#[cfg(test)]
mod tests;
