//! A task's time windows: when in the week it may be used (`windows = ["Mon-Fri 08:00-18:00"]`)
//! in an IANA time zone (`timezone = "Europe/Berlin"`), daylight saving handled by chrono-tz.
//! Pure: the rules ask which window is open at an instant, and when the next one opens.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// One opening of a window: from, until (instants).
pub type Opening = (DateTime<Utc>, DateTime<Utc>);

/// What happens to a request made outside every window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideWindow {
    Refuse,
    /// Allowed, but only with approval (even on an automatic task), and not cut.
    Approval,
}

/// A task's windows, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    pub timezone: Tz,
    /// As written, for messages and `zsa tasks`.
    pub written: Vec<String>,
    spans: Vec<Span>,
    pub outside: OutsideWindow,
    /// A grant never runs past the end of the window it started in (unless false).
    pub cut_at_end: bool,
}

/// One window: on these weekdays (Monday first), from `start` to `end` local time; an end at or
/// before the start is on the next day.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    DAYS.iter().position(|d| name.starts_with(d) && name.len() >= 3)
}

/// Reads one window: `Mon-Fri 08:00-18:00`, `Sat 10:00-12:00`, `Mon,Wed 09:00-17:00`,
/// `daily 22:00-06:00`.
fn span(text: &str) -> Result<Span, String> {
    let help = "write it as \"Mon-Fri 08:00-18:00\" (days: Mon..Sun, ranges, commas, or daily)";
    let (days_text, times) = text.trim().split_once(char::is_whitespace).ok_or_else(|| format!("'{text}' has no times: {help}"))?;
    let mut days = [false; 7];
    if days_text.eq_ignore_ascii_case("daily") {
        days = [true; 7];
    } else {
        for part in days_text.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (
                        day(a).ok_or_else(|| format!("'{a}' is not a day: {help}"))?,
                        day(b).ok_or_else(|| format!("'{b}' is not a day: {help}"))?,
                    );
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(part).ok_or_else(|| format!("'{part}' is not a day: {help}"))?] = true,
            }
        }
    }
    let (a, b) = times.trim().split_once('-').ok_or_else(|| format!("'{times}' is not a time range: {help}"))?;
    let time =
        |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| format!("'{}' is not a time like 08:00: {help}", t.trim()));
    let (start, end) = (time(a)?, if b.trim() == "24:00" { NaiveTime::MIN } else { time(b)? });
    if start == end && !(start == NaiveTime::MIN && b.trim() == "24:00") {
        return Err(format!("'{text}' starts and ends at the same time"));
    }
    Ok(Span { days, start, end })
}

impl Windows {
    pub fn parse(written: &[String], timezone: &str, outside: OutsideWindow, cut_at_end: bool) -> Result<Windows, String> {
        let timezone: Tz = timezone
            .parse()
            .map_err(|_| format!("'{timezone}' is not an IANA time zone name (such as Europe/Berlin or America/New_York)"))?;
        let spans = written.iter().map(|w| span(w)).collect::<Result<Vec<_>, _>>()?;
        if spans.is_empty() {
            return Err("windows is empty, so the task could never be used; list at least one, or remove windows".into());
        }
        Ok(Windows { timezone, written: written.to_vec(), spans, outside, cut_at_end })
    }

    /// The instant a local time falls on; in a gap the clocks skip, the first instant after it.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let mut t = local;
        loop {
            if let Some(at) = self.timezone.from_local_datetime(&t).earliest() {
                return at.with_timezone(&Utc);
            }
            t += Duration::minutes(1);
        }
    }

    /// The (start, end) of `span` on local date `date`.
    fn on(&self, s: &Span, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let end_date = if s.end <= s.start { date + Duration::days(1) } else { date };
        (self.instant(date.and_time(s.start)), self.instant(end_date.and_time(s.end)))
    }

    /// The window open at `at` (the one that ends last, if several are), as instants.
    pub fn open_at(&self, at: DateTime<Utc>) -> Option<Opening> {
        let today = at.with_timezone(&self.timezone).date_naive();
        [today - Duration::days(1), today]
            .into_iter()
            .flat_map(|date| {
                self.spans.iter().filter(move |s| s.days[date.weekday().num_days_from_monday() as usize]).map(move |s| (s, date))
            })
            .map(|(s, date)| self.on(s, date))
            .filter(|(start, end)| *start <= at && at < *end)
            .max_by_key(|(_, end)| *end)
    }

    /// When the next window opens after `at` (within the next eight days).
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = at.with_timezone(&self.timezone).date_naive();
        (0..=8)
            .map(|d| today + Duration::days(d))
            .flat_map(|date| {
                self.spans.iter().filter(move |s| s.days[date.weekday().num_days_from_monday() as usize]).map(move |s| (s, date))
            })
            .map(|(s, date)| self.on(s, date).0)
            .filter(|start| *start > at)
            .min()
    }

    /// The windows and their zone, as written.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.written.join(", "), self.timezone.name())
    }

    /// An instant in the windows' zone, for people: `Mon 2026-03-02 08:00 CET`.
    pub fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.timezone).format("%a %Y-%m-%d %H:%M %Z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_are_read_and_found_in_their_zone_across_daylight_saving() {
        let w = Windows::parse(&["Mon-Fri 08:00-18:00".into(), "Sat 10:00-12:00".into()], "Europe/Berlin", OutsideWindow::Refuse, true)
            .unwrap();
        // Monday 2026-03-02 09:00 in Berlin (CET, UTC+1) is 08:00Z.
        assert_eq!(w.open_at(utc("2026-03-02T08:00:00Z")), Some((utc("2026-03-02T07:00:00Z"), utc("2026-03-02T17:00:00Z"))));
        assert_eq!(w.open_at(utc("2026-03-02T17:00:00Z")), None, "the end is not in it");
        assert_eq!(w.next_open(utc("2026-03-02T17:00:00Z")), Some(utc("2026-03-03T07:00:00Z")));
        // Sunday: next is Monday.
        assert_eq!(w.next_open(utc("2026-03-08T12:00:00Z")), Some(utc("2026-03-09T07:00:00Z")));
        // After the change to summer time (2026-03-29), 08:00 in Berlin is 06:00Z.
        assert_eq!(w.open_at(utc("2026-03-30T06:30:00Z")).unwrap().0, utc("2026-03-30T06:00:00Z"));
        let night = Windows::parse(&["daily 22:00-06:00".into()], "Europe/Berlin", OutsideWindow::Approval, true).unwrap();
        assert_eq!(night.open_at(utc("2026-03-02T03:00:00Z")), Some((utc("2026-03-01T21:00:00Z"), utc("2026-03-02T05:00:00Z"))));
        // The night the clocks skip 02:00-03:00 is an hour shorter.
        let (start, end) = night.open_at(utc("2026-03-29T00:00:00Z")).unwrap();
        assert_eq!(end - start, Duration::hours(7));
        for bad in ["Mon-Fri", "Someday 08:00-09:00", "Mon 8-9", "Mon 25:00-26:00"] {
            assert!(Windows::parse(&[bad.into()], "UTC", OutsideWindow::Refuse, true).is_err(), "{bad}");
        }
        assert!(Windows::parse(&["Mon 08:00-09:00".into()], "Mars/Olympus", OutsideWindow::Refuse, true).unwrap_err().contains("IANA"));
    }
}
