//! When a grant asked ahead starts, as people write it: the CLI's `--at` and the console's
//! Starts field read it the same way.

use chrono::{DateTime, Utc};

use super::duration;

/// When a grant asked ahead starts (`zsa request --at`, the console's Starts field): `+3h` after `now` (the daemon's), a time with an offset
/// (`2026-11-24T22:00+01:00`, `...Z`), or a local time (`2026-11-24T22:00`, `2026-11-24 22:00`)
/// in this machine's time zone, daylight saving included; one that a clock change skips or
/// repeats is refused rather than guessed.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::{Local, LocalResult, NaiveDateTime, TimeZone};
    let text = text.trim();
    if let Some(after) = text.strip_prefix('+') {
        let secs = duration::parse(after)?;
        return Ok(now + chrono::Duration::seconds(secs.min(i64::MAX as u64 / 1000) as i64));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text).or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%:z")) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .ok_or_else(|| "give a time as 2026-11-24T22:00 (local), 2026-11-24T22:00+01:00, or +3h".to_string())?;
    match Local.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Err(format!(
            "that local time happens twice (the clocks go back); say which with its offset: {} or {}",
            a.format("%Y-%m-%dT%H:%M%:z"),
            b.format("%Y-%m-%dT%H:%M%:z")
        )),
        LocalResult::None => Err("that local time does not exist here (the clocks go forward over it); pick another".to_string()),
    }
}
