//! Durations as people write them in policies and on the command line: `90s`, `30m`, `4h`, `1d`,
//! or a sum such as `1h30m`. Stored and sent as whole seconds.

/// The longest duration anything in zsa may have: ten years. Guards every addition to a time.
pub const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// Parses `30m`, `1h30m`, `2d`. Zero, negative, unitless and overflowing values are refused.
pub fn parse(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("a duration is empty: write it as a number and a unit, for example 30m".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid(input, "units are s, m, h and d")),
        };
        if digits.is_empty() {
            return Err(invalid(input, "each unit needs a number before it"));
        }
        let n: u64 = digits.parse().map_err(|_| invalid(input, "the number is too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= MAX_SECS)
            .ok_or_else(|| invalid(input, "it is longer than ten years"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(invalid(input, "the last number has no unit (s, m, h or d)"));
    }
    if total == 0 {
        return Err(invalid(input, "it must be longer than zero"));
    }
    Ok(total)
}

fn invalid(input: &str, why: &str) -> String {
    format!("'{}' is not a valid duration: {why} (for example 90s, 30m, 4h, 1d or 1h30m)", super::text::inert(input))
}

/// Formats whole seconds the way `parse` reads them, largest units first: `1h30m`.
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, label) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            out.push_str(&(rest / unit).to_string());
            out.push(label);
            rest %= unit;
        }
    }
    out
}

/// A countdown as `h:mm:ss`, for grants that are running out.
pub fn clock(secs: i64) -> String {
    let s = secs.max(0);
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_sums() {
        assert_eq!(parse("90s"), Ok(90));
        assert_eq!(parse("30m"), Ok(1800));
        assert_eq!(parse("4h"), Ok(14_400));
        assert_eq!(parse("1d"), Ok(86_400));
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse(" 2m "), Ok(120));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "0s", "0m0s", "-5m", "5", "m", "5x", "1.5h", "99999999999999999999999s", "3651d"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
        assert!(parse("0s").unwrap_err().contains("longer than zero"));
        assert!(parse("18446744073709551615d").unwrap_err().contains("ten years"));
    }

    #[test]
    fn formats_round_trip() {
        for secs in [1, 59, 60, 61, 3600, 5400, 86_400, 90_061] {
            assert_eq!(parse(&format(secs)), Ok(secs));
        }
        assert_eq!(format(5400), "1h30m");
        assert_eq!(clock(3725), "1:02:05");
        assert_eq!(clock(-3), "0:00:00");
    }
}
