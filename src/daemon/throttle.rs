//! Failed-auth throttling, per source. A bearer token is 256 random bits, so guessing one is
//! hopeless; but a source that keeps presenting tokens that are not valid is either broken or
//! probing, and either way should not cost the daemon a lookup (and a log line) per attempt
//! forever. After `failures` of them within `window`, that source's token attempts are refused
//! with 429 for `block`, without their token being looked at; the moment it trips is audited
//! once (`auth_throttled`). Callers on the Unix socket without a token are never throttled (the
//! kernel vouches for them), and other sources are untouched.
//!
//! Only tokens the daemon never issued (or a malformed `Authorization`) count: a revoked or
//! expired token is refused with its own reason, and is no guess. Time is the daemon's injected
//! clock, so tests move it by hand.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use super::auth::Source;

/// When a source is throttled, and for how long.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Tokens that were not valid, from one source within `window`, that trip the throttle.
    pub failures: u32,
    pub window: Duration,
    /// How long a tripped source's token attempts are refused.
    pub block: Duration,
}

impl Default for Limits {
    /// Ten in a minute: a script with a mistyped token trips it within seconds, and someone
    /// retyping one by hand never does. Five minutes: long enough to make guessing pointless,
    /// short enough that the owner of a fixed script need not call an admin.
    fn default() -> Limits {
        Limits { failures: 10, window: Duration::minutes(1), block: Duration::minutes(5) }
    }
}

/// The most sources followed at once; past it, sources that are not blocked are forgotten, and
/// while all are blocked a new one is not counted (so many addresses cannot grow it without end).
const MAX_SOURCES: usize = 65_536;

#[derive(Clone, Debug)]
struct Entry {
    window_start: DateTime<Utc>,
    failures: u32,
    blocked_until: Option<DateTime<Utc>>,
}

/// A source was just throttled: what to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tripped {
    pub failures: u32,
    pub until: DateTime<Utc>,
}

pub struct Throttle {
    limits: Limits,
    sources: Mutex<HashMap<Source, Entry>>,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(Limits::default())
    }
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle { limits, sources: Mutex::default() }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Entry>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Until when `source`'s token attempts are refused, if they are at `now`. A block that has
    /// ended is forgotten, so the source starts afresh.
    pub fn blocked(&self, source: &Source, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut sources = self.lock();
        let until = sources.get(source)?.blocked_until?;
        if until > now {
            return Some(until);
        }
        sources.remove(source);
        None
    }

    /// Counts a token from `source` that was not valid. Answers `Tripped` only the once the
    /// count reaches the limit; the caller records it.
    pub fn failed(&self, source: &Source, now: DateTime<Utc>) -> Option<Tripped> {
        let mut sources = self.lock();
        if sources.len() >= MAX_SOURCES && !sources.contains_key(source) {
            let window = self.limits.window;
            sources.retain(|_, e| e.blocked_until.is_some_and(|u| u > now) || now - e.window_start < window);
            if sources.len() >= MAX_SOURCES {
                sources.retain(|_, e| e.blocked_until.is_some_and(|u| u > now));
            }
            if sources.len() >= MAX_SOURCES {
                // Every source followed is blocked: a new one is not counted until a block ends.
                return None;
            }
        }
        let entry = sources.entry(source.clone()).or_insert(Entry { window_start: now, failures: 0, blocked_until: None });
        if entry.blocked_until.is_some() {
            // Counted while `blocked` said no: a race between two requests; the first tripped it.
            return None;
        }
        if now - entry.window_start >= self.limits.window {
            *entry = Entry { window_start: now, failures: 0, blocked_until: None };
        }
        entry.failures += 1;
        if entry.failures < self.limits.failures {
            return None;
        }
        let until = now + self.limits.block;
        entry.blocked_until = Some(until);
        Some(Tripped { failures: entry.failures, until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn trips_once_at_the_limit_within_the_window_and_ends_after_the_block() {
        let t = Throttle::new(Limits { failures: 3, window: Duration::seconds(60), block: Duration::seconds(300) });
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (uid, other) = (Source::Uid(1000), Source::Uid(1001));
        assert_eq!(t.failed(&uid, t0), None);
        assert_eq!(t.failed(&uid, t0 + Duration::seconds(10)), None);
        // Two failures, then the window passes: the count starts again.
        assert_eq!(t.failed(&uid, t0 + Duration::seconds(70)), None);
        assert_eq!(t.failed(&uid, t0 + Duration::seconds(71)), None);
        assert_eq!(t.blocked(&uid, t0 + Duration::seconds(71)), None);
        let tripped = t.failed(&uid, t0 + Duration::seconds(72)).expect("the third within the window trips it");
        assert_eq!(tripped, Tripped { failures: 3, until: t0 + Duration::seconds(372) });
        assert_eq!(t.failed(&uid, t0 + Duration::seconds(73)), None, "it trips once");
        assert_eq!(t.blocked(&uid, t0 + Duration::seconds(371)), Some(tripped.until));
        assert_eq!(t.blocked(&other, t0 + Duration::seconds(100)), None, "another source is not blocked");
        assert_eq!(t.blocked(&uid, t0 + Duration::seconds(372)), None, "the block ends");
        assert_eq!(t.failed(&uid, t0 + Duration::seconds(373)), None, "and the count starts afresh");
    }

    #[test]
    fn it_never_follows_more_than_max_sources_even_when_all_are_blocked() {
        let t = Throttle::new(Limits { failures: 1, window: Duration::seconds(60), block: Duration::seconds(300) });
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for uid in 0..MAX_SOURCES as u32 {
            assert!(t.failed(&Source::Uid(uid), t0).is_some());
        }
        assert_eq!(t.failed(&Source::Uid(u32::MAX), t0), None, "not counted while every source is blocked");
        assert_eq!(t.lock().len(), MAX_SOURCES);
        assert_eq!(t.blocked(&Source::Uid(0), t0 + Duration::seconds(299)), Some(t0 + Duration::seconds(300)), "blocks stay");
        // Once blocks end, new sources are counted again.
        assert!(t.failed(&Source::Uid(u32::MAX), t0 + Duration::seconds(300)).is_some());
        assert!(t.lock().len() <= MAX_SOURCES);
    }
}
