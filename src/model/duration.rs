//! Durations as people write them in policies and on the command line: `90s`, `30m`, `4h`, `1d`,
//! or a sum such as `1h30m`. Stored and sent as whole seconds.

/// The longest duration anything in zsa may have: ten years. Guards every addition to a time.
pub const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// Parses `30m`, `1h30m`, `2d`, and the longer forms humantime reads (`1h 30min`, `2 days`,
/// `1w`). Zero, negative, unitless, fractional and overflowing values are refused, and so is `M`
/// (humantime's months), which reads too easily as minutes.
pub fn parse(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("a duration is empty: write it as a number and a unit, for example 30m".into());
    }
    if s.contains('M') {
        return Err(invalid(input, "M could mean minutes or months: write m (or min) for minutes, months for months"));
    }
    if s.contains('.') {
        return Err(invalid(input, "write whole numbers: 1h30m rather than 1.5h"));
    }
    let parsed = humantime::parse_duration(s).map_err(|e| {
        invalid(
            input,
            match e {
                humantime::DurationError::NumberOverflow => "it is longer than ten years",
                humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => "the last number has no unit (s, m, h or d)",
                humantime::DurationError::UnknownUnit { .. } => "units are s, m, h and d (or min, hours, days, weeks)",
                humantime::DurationError::NumberExpected(_) => "each unit needs a number before it",
                _ => "write whole numbers with units",
            },
        )
    })?;
    if parsed.subsec_nanos() != 0 {
        return Err(invalid(input, "it must be whole seconds"));
    }
    match parsed.as_secs() {
        0 => Err(invalid(input, "it must be longer than zero")),
        secs if secs > MAX_SECS => Err(invalid(input, "it is longer than ten years")),
        secs => Ok(secs),
    }
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
        assert_eq!(parse("8h"), Ok(28_800));
        assert_eq!(parse("1h 30min"), Ok(5400));
        assert_eq!(parse("2 days"), Ok(172_800));
        assert_eq!(parse("1w"), Ok(604_800));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "0s", "0m0s", "-5m", "5", "m", "5x", "1.5h", "99999999999999999999999s", "3651d", "30M", "500ms"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
        assert!(parse("0s").unwrap_err().contains("longer than zero"));
        assert!(parse("18446744073709551615d").unwrap_err().contains("ten years"));
        assert!(parse("5").unwrap_err().contains("no unit"), "{:?}", parse("5"));
        assert!(parse("30M").unwrap_err().contains("minutes or months"));
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
