//! RFC 5322 dates, and the arrival date a message should get on the target.

use super::header::fields;

/// A point in time with the zone offset it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailDate {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix: i64,
    /// The writer's offset from UTC, e.g. -300 for "-0500"; 0 for "-0000"
    /// and for zones whose meaning is unknown (RFC 5322 §4.3).
    pub offset_minutes: i32,
}

/// Parses an RFC 5322 §3.3 `date-time`, obsolete forms (§4.3) included:
///
/// ```text
/// date-time = [ day-of-week "," ] day month year hour ":" minute [ ":" second ] zone
/// zone      = ( "+" / "-" ) 4DIGIT / "UT" / "GMT" / "EST" / "EDT" / "CST" / "CDT"
///           / "MST" / "MDT" / "PST" / "PDT" / military letter / other alphabetic
/// ```
///
/// Comments in parentheses are ignored, as is the comma after the day name
/// when missing. Two-digit years are 1950–2049, three-digit years add 1900.
/// Unknown alphabetic zones mean "-0000" (UTC, offset unknown), as §4.3 says.
/// Anything else — an unknown month, day 31 of April, hour 24, a missing zone,
/// trailing words — is rejected rather than guessed.
pub fn parse_rfc5322_date(s: &str) -> Option<MailDate> {
    let text = strip_comments(s)?;
    let mut tokens = tokenize(&text).into_iter().peekable();
    if tokens.peek().is_some_and(|t| is_day_name(t)) {
        tokens.next();
        tokens.next_if_eq(&",");
    }
    let day = number(tokens.next()?, 1, 2)?;
    let month = month_number(tokens.next()?)?;
    let year = year(tokens.next()?)?;
    let (hour, minute, second) = time(tokens.next()?)?;
    let offset_minutes = zone(tokens.next()?)?;
    // A numeric zone is sometimes followed by its name ("+0000 GMT").
    tokens.next_if(|t| t.bytes().all(|b| b.is_ascii_alphabetic()));
    if tokens.next().is_some() || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(MailDate {
        unix: local - i64::from(offset_minutes) * 60,
        offset_minutes,
    })
}

/// The date a message arrived: the date of the topmost `Received:` field (the
/// text after its last `;`), which the last hop wrote; when that field is
/// missing or its date unreadable, the `Date:` field; else `None`. Later
/// `Received:` fields are older hops and are not consulted.
pub fn arrival_date(raw: &[u8]) -> Option<MailDate> {
    let received = fields(raw)
        .find(|f| f.name.eq_ignore_ascii_case(b"Received"))
        .and_then(|f| {
            let text = f.text();
            let (_, date) = text.rsplit_once(';')?;
            parse_rfc5322_date(date)
        });
    received.or_else(|| parse_rfc5322_date(&super::header(raw, "Date")?))
}

/// Removes (possibly nested) comments. An unclosed comment runs to the end;
/// a stray `)` makes the text nonsense.
fn strip_comments(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' if depth == 0 => return None,
            ')' => {
                depth -= 1;
                out.push(' ');
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    Some(out)
}

/// Words separated by whitespace, with each comma a token of its own.
fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    for word in text.split_whitespace() {
        let mut rest = word;
        while let Some(i) = rest.find(',') {
            if i > 0 {
                tokens.push(&rest[..i]);
            }
            tokens.push(",");
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() {
            tokens.push(rest);
        }
    }
    tokens
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn is_day_name(token: &str) -> bool {
    DAYS.iter().any(|d| d.eq_ignore_ascii_case(token))
}

fn month_number(token: &str) -> Option<i64> {
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(token))?;
    i64::try_from(index).ok().map(|i| i + 1)
}

/// An all-digit token of `min..=max` digits.
fn number(token: &str, min: usize, max: usize) -> Option<i64> {
    let ok = (min..=max).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| token.parse().ok()).flatten()
}

fn year(token: &str) -> Option<i64> {
    let y = number(token, 2, 4)?;
    match token.len() {
        2 if y < 50 => Some(2000 + y),
        2 | 3 => Some(1900 + y),
        _ if y >= 1900 => Some(y),
        _ => None,
    }
}

/// `hh:mm` or `hh:mm:ss`; a leap second (60) is accepted.
fn time(token: &str) -> Option<(i64, i64, i64)> {
    let mut parts = token.split(':');
    let hour = number(parts.next()?, 1, 2).filter(|h| *h < 24)?;
    let minute = number(parts.next()?, 2, 2).filter(|m| *m < 60)?;
    let second = match parts.next() {
        Some(s) => number(s, 2, 2).filter(|s| *s <= 60)?,
        None => 0,
    };
    parts.next().is_none().then_some((hour, minute, second))
}

fn zone(token: &str) -> Option<i32> {
    if let Some(digits) = token.strip_prefix('+').or_else(|| token.strip_prefix('-')) {
        let hhmm = i32::try_from(number(digits, 4, 4)?).ok()?;
        let (hours, minutes) = (hhmm / 100, hhmm % 100);
        if hours > 23 || minutes > 59 {
            return None;
        }
        let magnitude = hours * 60 + minutes;
        return Some(if token.starts_with('-') {
            -magnitude
        } else {
            magnitude
        });
    }
    if token.is_empty() || token.len() > 5 || !token.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let hours = match token.to_ascii_uppercase().as_str() {
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        // UT, GMT, UTC, Z, military letters and unknown names: -0000.
        _ => 0,
    };
    Some(hours * 60)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`). The crate's one calendar, with
/// [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(unix: i64, offset_minutes: i32) -> Option<MailDate> {
        Some(MailDate {
            unix,
            offset_minutes,
        })
    }

    #[test]
    fn accepted_table() {
        let cases: &[(&str, Option<MailDate>)] = &[
            ("Thu, 01 Jan 1970 00:00:00 +0000", date(0, 0)),
            ("1 Jan 1970 00:00 -0000", date(0, 0)),
            ("Fri, 21 Nov 1997 09:55:06 -0600", date(880_127_706, -360)),
            ("Tue, 1 Jul 2003 10:52:37 +0200", date(1_057_049_557, 120)),
            ("Thu, 13 Feb 1969 23:32:54 -0330", date(-27_723_426, -210)),
            (
                "Thu,13 Feb 1969 23:32 -0330 (Newfoundland Time)",
                date(-27_723_480, -210),
            ),
            ("21 Nov 97 09:55:06 GMT", date(880_106_106, 0)),
            (
                "Fri, 21 Nov 1997 09:55:06 PST",
                date(880_106_106 + 8 * 3600, -480),
            ),
            (
                "fri 21 nov 1997 09:55:06 edt",
                date(880_106_106 + 4 * 3600, -240),
            ),
            (
                "Wed, 03 Jan 2024 10:00:00 +0100 (CET)",
                date(1_704_272_400, 60),
            ),
            (
                "  Wed, 03 Jan 2024 10:00:00 +0000 GMT  ",
                date(1_704_276_000, 0),
            ),
            ("3 Jan 24 10:00:00 CET", date(1_704_276_000, 0)),
            ("1 Jan 100 00:00:00 Z", date(946_684_800, 0)),
            ("29 Feb 2024 12:00:00 +0000", date(1_709_208_000, 0)),
            ("31 Dec 2016 23:59:60 +0000", date(1_483_228_800, 0)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc5322_date(text), *want, "{text}");
        }
    }

    #[test]
    fn rejected_table() {
        for text in [
            "",
            "garbage",
            "Fri, 21 Nov 1997",
            "Fri, 21 Nov 1997 09:55:06",
            "Fri, 21 Foo 1997 09:55:06 +0000",
            "Fri, 31 Apr 1997 09:55:06 +0000",
            "29 Feb 2023 12:00:00 +0000",
            "Fri, 21 Nov 1997 24:00:00 +0000",
            "Fri, 21 Nov 1997 09:60:00 +0000",
            "Fri, 21 Nov 1997 09:55:61 +0000",
            "Fri, 21 Nov 1997 09:55:06 +2400",
            "Fri, 21 Nov 1997 09:55:06 +01",
            "Fri, 21 Nov 1997 09:55:06 +0000 and more words",
            "Fri, 21 Nov 1997 09:55:06 +0000) x",
            "Fri, 0 Nov 1997 09:55:06 +0000",
            "Fri, 21 Nov 1899 09:55:06 +0000",
            "Fri, 21 Nov 1997 09:55:06.5 +0000",
            "Funday, 21 Nov 1997 09:55:06 +0000",
            "Fri, 21 Nov 1997 09:55:06 GMT+1",
            "Fri, 21 Nov 1997 9:5:6 +0000",
            "Fri, 21 Nov 1997 09:55:06 +0000 \u{e9}",
        ] {
            assert_eq!(parse_rfc5322_date(text), None, "{text}");
        }
    }

    #[test]
    fn arrival_prefers_topmost_received() {
        let raw = b"Received: from a by b; Tue, 1 Jul 2003 10:52:37 +0200\r\n\
Received: from c by d;\r\n Mon, 30 Jun 2003 10:00:00 +0000\r\n\
Date: Sun, 29 Jun 2003 10:00:00 +0000\r\n\r\nbody";
        assert_eq!(arrival_date(raw), date(1_057_049_557, 120));
    }

    #[test]
    fn arrival_falls_back_to_date() {
        let folded =
            b"Received: from x (x [1.2.3.4]) by y; garbage\r\nDate: 1 Jan 1970 00:00 +0000\r\n\r\n";
        assert_eq!(arrival_date(folded), date(0, 0));
        let folded_received = b"Received: from x;\r\n\t1 Jan 1970 00:01 +0000\r\n\r\n";
        assert_eq!(arrival_date(folded_received), date(60, 0));
        assert_eq!(
            arrival_date(b"Subject: x\r\n\r\nDate: 1 Jan 1970 00:00 +0000"),
            None
        );
        assert_eq!(arrival_date(b""), None);
    }
}
