//! `duration`: spans of time as an operator or member writes them — a whole number and one
//! unit, `s`, `m`, `h` or `d` (`90s`, `30m`, `2h`, `7d`) — for `alias add --expires`, the
//! web form's `expires` and `remailer log --since`. Zero, a missing unit, a fraction and
//! anything over ten years are refused with a message that says what is expected.

use thiserror::Error;

/// Longest span accepted (ten years), so an expiry or cut-off never overflows.
pub const MAX_SECS: u64 = 3650 * 86_400;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("'{0}' is not a duration: use a whole number and a unit, e.g. 90s, 30m, 2h or 7d")]
    Malformed(String),
    #[error("'{0}' is zero; a duration must be at least 1s")]
    Zero(String),
    #[error("'{0}' is too long (at most 3650d)")]
    TooLong(String),
}

/// The number of seconds in `text` (`30m` → 1800).
pub fn parse_secs(text: &str) -> Result<u64, DurationError> {
    let t = text.trim();
    let malformed = || DurationError::Malformed(text.to_string());
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(malformed)?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() || digits.len() > 12 {
        return Err(malformed());
    }
    let n: u64 = digits.parse().map_err(|_| malformed())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(malformed()),
    };
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| DurationError::TooLong(text.into()))?;
    if secs == 0 {
        Err(DurationError::Zero(text.to_string()))
    } else if secs > MAX_SECS {
        Err(DurationError::TooLong(text.to_string()))
    } else {
        Ok(secs)
    }
}

/// For clap's `value_parser`: the seconds, or the message.
pub fn clap_secs(text: &str) -> Result<u64, DurationError> {
    parse_secs(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse_secs("90s"), Ok(90));
        assert_eq!(parse_secs("30m"), Ok(1800));
        assert_eq!(parse_secs("2h"), Ok(7200));
        assert_eq!(parse_secs(" 7d "), Ok(7 * 86_400));
        for bad in [
            "", "d", "7", "7 d", "1.5h", "-1d", "7days", "7D", "1y", "abc",
        ] {
            assert!(
                matches!(parse_secs(bad), Err(DurationError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_secs("0d"), Err(DurationError::Zero(_))));
        assert!(matches!(
            parse_secs("3651d"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_secs("999999999999d"),
            Err(DurationError::TooLong(_))
        ));
    }
}
