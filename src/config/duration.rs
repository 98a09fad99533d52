//! Durations as people write them in a config file: `90s`, `5m`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses `500ms`, `60s`, `5m`, `1h30m`, `2d` (units may be combined, largest
/// first or not). A bare number is refused: the unit is never guessed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (write e.g. \"90s\", \"5m\", \"1h30m\")");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        let part = unit
            .checked_mul(u32::try_from(number).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        let table = [
            ("500ms", Duration::from_millis(500)),
            ("60s", Duration::from_secs(60)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(172_800)),
            (" 1h 5s ", Duration::from_secs(3605)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_nonsense() {
        for text in [
            "",
            "5",
            "m",
            "5 minutes",
            "-5s",
            "1.5h",
            "99999999999999999999s",
            "5x",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("invalid duration"), "{text}: {err}");
        }
    }
}
