//! INTERNALDATE for APPEND: which date a message gets, and its IMAP `date-time` form.
//!
//! The date is the message's arrival as its headers tell it
//! ([`crate::message::arrival_date`]: the first `Received:` field's date,
//! else `Date:`), else the time of the copy. Pure functions; the session
//! only formats what the engine passes in.

use crate::message::{arrival_date, civil_from_days, days_from_civil, MailDate};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The INTERNALDATE a message should get on the target: its arrival date
/// from the headers, else `now`.
pub fn internal_date(raw: &[u8], now: MailDate) -> MailDate {
    arrival_date(raw).unwrap_or(now)
}

/// The current time as a [`MailDate`] in UTC, for [`internal_date`].
pub fn now() -> MailDate {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    MailDate {
        unix,
        offset_minutes: 0,
    }
}

/// RFC 3501 §9 `date-time` without its quotes:
///
/// ```text
/// date-time      = DQUOTE date-day-fixed "-" date-month "-" date-year
///                  SP time SP zone DQUOTE
/// date-day-fixed = (SP DIGIT) / 2DIGIT
/// zone           = ("+" / "-") 4DIGIT
/// ```
///
/// The wall-clock time is shown in the date's own zone, so the server keeps
/// the sender's offset. `None` when the year is not four digits or the
/// offset is not a valid zone: the caller then lets the server choose.
pub fn format_date_time(date: MailDate) -> Option<String> {
    if date.offset_minutes.abs() > 99 * 60 + 59 {
        return None;
    }
    let local = date.unix.checked_add(i64::from(date.offset_minutes) * 60)?;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let sign = if date.offset_minutes < 0 { '-' } else { '+' };
    let offset = date.offset_minutes.abs();
    Some(format!(
        "{day:>2}-{}-{year:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        offset / 60,
        offset % 60,
    ))
}

/// Parses what [`format_date_time`] writes (and the 2-digit-day form servers
/// send in FETCH INTERNALDATE) back into a [`MailDate`].
pub fn parse_date_time(text: &str) -> Option<MailDate> {
    let text = text.trim_start();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let mut dmy = date.split('-');
    let day: i64 = dmy.next()?.parse().ok()?;
    let month_name = dmy.next()?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month_name))? as i64
        + 1;
    let year: i64 = dmy.next()?.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let in_range = (0..=9999).contains(&year)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&m)
        && (0..=60).contains(&s);
    if !in_range || zone.len() != 5 {
        return None;
    }
    let digits: i32 = zone[1..].parse().ok()?;
    let offset_minutes = sign * (digits / 100 * 60 + digits % 100);
    let local = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(MailDate {
        unix: local - i64::from(offset_minutes) * 60,
        offset_minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: MailDate = MailDate {
        unix: 1_700_000_000,
        offset_minutes: 0,
    };

    fn date(unix: i64, offset_minutes: i32) -> MailDate {
        MailDate {
            unix,
            offset_minutes,
        }
    }

    #[test]
    fn formats_in_the_dates_own_zone() {
        let table = [
            (date(0, 0), " 1-Jan-1970 00:00:00 +0000"),
            (date(1_700_000_000, 0), "14-Nov-2023 22:13:20 +0000"),
            (date(1_700_000_000, 60), "14-Nov-2023 23:13:20 +0100"),
            (date(1_700_000_000, -300), "14-Nov-2023 17:13:20 -0500"),
            (date(1_700_000_000, 330), "15-Nov-2023 03:43:20 +0530"),
            (date(951_782_400, 0), "29-Feb-2000 00:00:00 +0000"),
            (date(-1, 0), "31-Dec-1969 23:59:59 +0000"),
            (date(253_402_300_799, 0), "31-Dec-9999 23:59:59 +0000"),
        ];
        for (d, expected) in table {
            assert_eq!(format_date_time(d).as_deref(), Some(expected), "{d:?}");
            assert_eq!(parse_date_time(expected), Some(d), "{expected}");
        }
    }

    #[test]
    fn refuses_what_imap_cannot_say() {
        assert_eq!(format_date_time(date(253_402_300_800, 0)), None);
        assert_eq!(format_date_time(date(-62_167_219_201, 0)), None);
        assert_eq!(format_date_time(date(0, 100 * 60)), None);
        assert_eq!(format_date_time(date(i64::MAX, 60)), None);
    }

    #[test]
    fn picks_received_then_date_then_now() {
        let table: [(&[u8], MailDate); 5] = [
            (
                b"Received: from a by b; Tue, 14 Nov 2023 23:13:20 +0100\r\n\
                  Received: from c by a; Mon, 13 Nov 2023 10:00:00 +0000\r\n\
                  Date: Sun, 12 Nov 2023 10:00:00 +0000\r\n\r\nbody\r\n",
                date(1_700_000_000, 60),
            ),
            (
                b"Received: from a by b (no date)\r\nDate: Tue, 14 Nov 2023 17:13:20 -0500\r\n\r\n",
                date(1_700_000_000, -300),
            ),
            (
                b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\nSubject: x\r\n\r\n",
                date(1_700_000_000, 0),
            ),
            (b"Subject: no dates\r\n\r\nbody\r\n", NOW),
            (b"", NOW),
        ];
        for (raw, expected) in table {
            assert_eq!(
                internal_date(raw, NOW),
                expected,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn parses_server_forms() {
        assert_eq!(
            parse_date_time("14-Nov-2023 22:13:20 +0000"),
            Some(date(1_700_000_000, 0))
        );
        assert_eq!(parse_date_time("14-Foo-2023 22:13:20 +0000"), None);
        assert_eq!(parse_date_time("14-Nov-2023 22:13:20"), None);
        assert_eq!(
            parse_date_time("1-Jan-99999999999999999 00:00:00 +0000"),
            None
        );
        assert_eq!(parse_date_time("1-Jan-2000 00:00:00 +00000"), None);
    }
}
