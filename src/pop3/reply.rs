//! Sans-I/O parser for POP3 status lines: `+OK`, `-ERR` with RFC 2449 response codes, and SASL `+ ` continuations.
//!
//! RFC 1939 §3: "Responses in the POP3 consist of a status indicator and a
//! keyword possibly followed by additional information. [...] There are
//! currently two status indicators: positive ("+OK") and negative ("-ERR")."
//!
//! RFC 2449 §3 (general response grammar, abridged):
//!
//! ```text
//! single-line = status [SP text] CRLF        ; <= 512 octets
//! status      = "+OK" / "-ERR"
//! text        = *schar / resp-code *CHAR
//! resp-code   = "[" resp-level *("/" resp-level) "]"
//! resp-level  = 1*rchar
//! rchar       = %x21-2E / %x30-5C / %x5E-7F  ; printable except "/" and "]"
//! ```
//!
//! RFC 5034 §4: during `AUTH` the server may instead send a continuation,
//! `"+" SP [base64] CRLF` (some servers omit the space when it is empty).
//!
//! A status line is never longer than [`MAX_STATUS_LINE`]; past that the
//! server is broken or hostile, and that is an error, not "need more".

/// The longest status line accepted (RFC 2449 §4 allows 512 octets; real
/// servers stay far below, but SASL challenges can be longer).
pub const MAX_STATUS_LINE: usize = 16 * 1024;

/// The outcome of feeding bytes to a parser: a value and how many input
/// bytes it used, or a request for more bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    Done(T, usize),
    NeedMore,
}

/// An RFC 2449 §8 / RFC 3206 extended response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespCode {
    /// `[IN-USE]`: the maildrop is locked by another session.
    InUse,
    /// `[LOGIN-DELAY]`: logging in too soon after the last login.
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system problem (RFC 3206 §4).
    SysTemp,
    /// `[SYS/PERM]`: a permanent system problem (RFC 3206 §4).
    SysPerm,
    /// `[AUTH]`: the credentials are wrong (RFC 3206 §5).
    Auth,
    /// Any other code, kept as sent (without the brackets).
    Other(String),
}

impl RespCode {
    /// Codes are case-insensitive in practice; hierarchy levels are compared
    /// whole, so `SYS/TEMP/DISK` is still a temporary system problem.
    fn parse(code: &str) -> RespCode {
        let upper = code.to_ascii_uppercase();
        let mut levels = upper.split('/');
        match (levels.next(), levels.next()) {
            (Some("IN-USE"), _) => RespCode::InUse,
            (Some("LOGIN-DELAY"), _) => RespCode::LoginDelay,
            (Some("SYS"), Some("TEMP")) => RespCode::SysTemp,
            (Some("SYS"), Some("PERM")) => RespCode::SysPerm,
            (Some("AUTH"), _) => RespCode::Auth,
            _ => RespCode::Other(code.to_string()),
        }
    }
}

impl std::fmt::Display for RespCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::Auth => "AUTH",
            RespCode::Other(other) => other,
        };
        write!(f, "[{text}]")
    }
}

/// What follows the status indicator: an optional response code and the
/// rest of the line as text (lossy UTF-8: it is for logs and parsing numbers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub code: Option<RespCode>,
    pub text: String,
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code} {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

/// One parsed status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok(Response),
    Err(Response),
    /// A SASL continuation; the (still base64) challenge, maybe empty.
    Continue(String),
}

/// A status line that is not POP3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("status line longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("not a POP3 status line: {line:?}")]
    Garbage { line: String },
}

/// Parses one status line from the start of `input`. The line may end in
/// CRLF or a bare LF (sloppy servers); the ending is consumed, not returned.
pub fn status_line(input: &[u8]) -> Result<Parse<Status>, ReplyError> {
    status_line_within(input, MAX_STATUS_LINE)
}

/// [`status_line`] with another length limit (`max_line_length`).
pub fn status_line_within(input: &[u8], limit: usize) -> Result<Parse<Status>, ReplyError> {
    let Some(lf) = input.iter().take(limit).position(|&b| b == b'\n') else {
        if input.len() >= limit {
            return Err(ReplyError::TooLong { limit });
        }
        return Ok(Parse::NeedMore);
    };
    let line = input[..lf].strip_suffix(b"\r").unwrap_or(&input[..lf]);
    let status = classify(line)?;
    Ok(Parse::Done(status, lf + 1))
}

fn classify(line: &[u8]) -> Result<Status, ReplyError> {
    let garbage = || ReplyError::Garbage {
        line: String::from_utf8_lossy(line).into_owned(),
    };
    if let Some(rest) = strip_indicator(line, b"+OK") {
        return Ok(Status::Ok(response(rest.ok_or_else(garbage)?)));
    }
    if let Some(rest) = strip_indicator(line, b"-ERR") {
        return Ok(Status::Err(response(rest.ok_or_else(garbage)?)));
    }
    match line {
        [b'+'] => Ok(Status::Continue(String::new())),
        [b'+', b' ', challenge @ ..] => Ok(Status::Continue(
            String::from_utf8_lossy(challenge).trim().to_string(),
        )),
        _ => Err(garbage()),
    }
}

/// `Some(Some(rest))` when `line` starts with `indicator` followed by a
/// space or nothing; `Some(None)` when it is followed by anything else
/// ("+OKAY" is not "+OK"); `None` when it does not start with it at all.
/// The indicator is matched without regard to case, as some servers send
/// "+ok".
fn strip_indicator<'a>(line: &'a [u8], indicator: &[u8]) -> Option<Option<&'a [u8]>> {
    let head = line.get(..indicator.len())?;
    if !head.eq_ignore_ascii_case(indicator) {
        return None;
    }
    match &line[indicator.len()..] {
        [] => Some(Some(&[])),
        [b' ' | b'\t', rest @ ..] => Some(Some(rest)),
        _ => Some(None),
    }
}

/// Splits an optional leading `[resp-code]` off the text.
fn response(rest: &[u8]) -> Response {
    let text = String::from_utf8_lossy(rest);
    let text = text.trim_start();
    if let Some(after) = text.strip_prefix('[') {
        if let Some(close) = after.find(']') {
            let code = &after[..close];
            if !code.is_empty() && code.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Response {
                    code: Some(RespCode::parse(code)),
                    text: after[close + 1..].trim().to_string(),
                };
            }
        }
    }
    Response {
        code: None,
        text: text.trim_end().to_string(),
    }
}

/// RFC 1939 §4: the APOP timestamp is the greeting's `<...>` msg-id, angle
/// brackets included (the digest is computed over them).
pub fn apop_timestamp(greeting: &str) -> Option<String> {
    let start = greeting.find('<')?;
    let len = greeting[start..].find('>')?;
    let stamp = &greeting[start..=start + len];
    (stamp.len() > 2 && !stamp.contains(char::is_whitespace)).then(|| stamp.to_string())
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
