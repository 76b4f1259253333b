//! Time, injected. The daemon asks a `Clock` for now; tests use a `ManualClock` they move by hand.
//! The daemon wraps its clock in a `SteadyClock`, so a wall clock that is stepped (by NTP, by an
//! operator, while the daemon was down) can neither extend a grant nor go unrecorded.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Duration, DurationRound, Utc};

pub trait Clock: Send + Sync {
    /// The wall clock.
    fn now(&self) -> DateTime<Utc>;
    /// Time since a fixed origin, from a clock that is never stepped: only differences mean
    /// anything.
    fn monotonic(&self) -> std::time::Duration;
}

/// The system's clock, to the microsecond (the precision the store keeps).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        micros(Utc::now())
    }

    /// CLOCK_BOOTTIME: never stepped, and unlike CLOCK_MONOTONIC it counts a suspend, so a machine
    /// that sleeps and wakes is not taken for a clock that jumped.
    fn monotonic(&self) -> std::time::Duration {
        use nix::time::{ClockId, clock_gettime};
        match clock_gettime(ClockId::CLOCK_BOOTTIME) {
            Ok(t) => std::time::Duration::new(t.tv_sec().max(0) as u64, t.tv_nsec().clamp(0, 999_999_999) as u32),
            Err(_) => {
                static ORIGIN: OnceLock<Instant> = OnceLock::new();
                ORIGIN.get_or_init(Instant::now).elapsed()
            }
        }
    }
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}

/// A clock that moves only when told to. The daemon's deadline task looks at the clock at least
/// once a second, so a move is noticed within a second. Time that passes (`advance`, `set`
/// forwards) moves both its wall and its monotonic reading; a `step` moves only the wall clock,
/// as NTP or an operator would.
pub struct ManualClock {
    now: Mutex<(DateTime<Utc>, std::time::Duration)>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new((start, std::time::Duration::ZERO)) }
    }

    /// Lets `by` pass.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        now.0 += by;
        now.1 += by.to_std().unwrap_or_default();
    }

    /// Lets time pass until `to`; a `to` in the past steps the wall clock back instead.
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let passed = (to - now.0).to_std().unwrap_or_default();
        now.1 += passed;
        now.0 = to;
    }

    /// Steps the wall clock by `by` (either way) while no time passes.
    pub fn step(&self, by: Duration) {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).0 += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn monotonic(&self) -> std::time::Duration {
        self.now.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

/// A step of the wall clock larger than this is recorded as `clock_jumped`; smaller ones (NTP's
/// slewing, scheduling delays) are not news.
pub const JUMP_THRESHOLD: Duration = Duration::seconds(2);

/// A step of the wall clock, seen by the `SteadyClock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockJump {
    /// How far the wall clock moved beyond the time that passed: negative when stepped back
    /// (the daemon's time counts on), positive when it moved ahead of the daemon's time (which
    /// moved with it).
    pub by: Duration,
    /// What the wall clock said just after.
    pub wall: DateTime<Utc>,
    /// What the daemon's time was then.
    pub daemon: DateTime<Utc>,
}

/// The daemon's time: the wall clock, never running slower than the monotonic clock and never
/// earlier than the last recorded event. A wall clock stepped back does not hold time back (it
/// counts on at the monotonic pace until the wall clock catches up); one stepped forward takes
/// it forward (ending early is the safe side). So a grant ends at the earlier of its wall
/// deadline and its start plus its duration on the monotonic clock, and a restart with a clock
/// set back cannot lengthen anything already granted. Steps are kept for the daemon to record.
pub struct SteadyClock {
    inner: Arc<dyn Clock>,
    steady: Mutex<Steady>,
}

struct Steady {
    last_now: DateTime<Utc>,
    last_mono: std::time::Duration,
    /// How far the wall clock was behind the daemon's time at the last reading.
    lag: Duration,
    jumps: Vec<ClockJump>,
}

impl SteadyClock {
    /// Starts at the wall clock's now, or at `not_before` (the last recorded event's time) if
    /// that is later: a clock stepped back while the daemon was down is a jump too.
    pub fn new(inner: Arc<dyn Clock>, not_before: Option<DateTime<Utc>>) -> SteadyClock {
        let wall = inner.now();
        let start = not_before.map_or(wall, |t| t.max(wall));
        let lag = start - wall;
        let jumps = if lag > JUMP_THRESHOLD { vec![ClockJump { by: -lag, wall, daemon: start }] } else { Vec::new() };
        let last_mono = inner.monotonic();
        SteadyClock { inner, steady: Mutex::new(Steady { last_now: start, last_mono, lag, jumps }) }
    }

    /// The steps seen since the last call, oldest first.
    pub fn take_jumps(&self) -> Vec<ClockJump> {
        std::mem::take(&mut self.steady.lock().unwrap_or_else(|e| e.into_inner()).jumps)
    }
}

impl Clock for SteadyClock {
    fn now(&self) -> DateTime<Utc> {
        let mut guard = self.steady.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let (wall, mono) = (self.inner.now(), self.inner.monotonic());
        let passed = Duration::from_std(mono.saturating_sub(s.last_mono)).unwrap_or(Duration::zero());
        let paced = micros(s.last_now + passed);
        let now = if wall >= paced {
            let ahead = wall - paced;
            // Catching up after a step back moves nothing; going beyond the daemon's time does.
            if ahead > JUMP_THRESHOLD {
                s.jumps.push(ClockJump { by: ahead, wall, daemon: wall });
            }
            s.lag = Duration::zero();
            wall
        } else {
            let lag = paced - wall;
            let stepped = lag - s.lag;
            if stepped > JUMP_THRESHOLD {
                s.jumps.push(ClockJump { by: -stepped, wall, daemon: paced });
            }
            s.lag = lag;
            paced
        };
        // Count as used only the time `now` moved on (it is cut to the microsecond), so many
        // readings in a row do not make the daemon's time run slower than the monotonic clock.
        let used = (now - s.last_now).to_std().unwrap_or_default().min(mono.saturating_sub(s.last_mono));
        s.last_mono = if now == wall { mono } else { s.last_mono + used };
        s.last_now = now;
        now
    }

    fn monotonic(&self) -> std::time::Duration {
        self.inner.monotonic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
    }

    #[test]
    fn a_wall_clock_stepped_back_does_not_hold_time_back_and_is_reported_once() {
        let wall = Arc::new(ManualClock::new(t0()));
        let steady = SteadyClock::new(wall.clone(), None);
        wall.advance(Duration::seconds(5));
        assert_eq!(steady.now(), t0() + Duration::seconds(5));
        wall.step(-Duration::hours(1));
        wall.advance(Duration::seconds(10));
        assert_eq!(steady.now(), t0() + Duration::seconds(15), "time counts on at the monotonic pace");
        wall.advance(Duration::seconds(10));
        assert_eq!(steady.now(), t0() + Duration::seconds(25));
        let jumps = steady.take_jumps();
        assert_eq!(jumps.len(), 1, "{jumps:?}");
        assert_eq!(jumps[0].by, -Duration::hours(1));
        // When the wall clock catches up, it leads again, and that is no jump.
        wall.step(Duration::hours(1));
        assert_eq!(steady.now(), t0() + Duration::seconds(25));
        assert!(steady.take_jumps().is_empty());
        wall.advance(Duration::seconds(1));
        assert_eq!(steady.now(), t0() + Duration::seconds(26));
    }

    #[test]
    fn a_wall_clock_stepped_forward_moves_time_forward_and_is_reported() {
        let wall = Arc::new(ManualClock::new(t0()));
        let steady = SteadyClock::new(wall.clone(), None);
        wall.step(Duration::hours(3));
        assert_eq!(steady.now(), t0() + Duration::hours(3));
        assert_eq!(steady.take_jumps()[0].by, Duration::hours(3));
        // Small wobbles are not jumps.
        wall.step(Duration::seconds(1));
        steady.now();
        wall.step(-Duration::seconds(1));
        steady.now();
        assert!(steady.take_jumps().is_empty());
    }

    #[test]
    fn many_readings_do_not_slow_time_down() {
        let wall = Arc::new(ManualClock::new(t0()));
        let steady = SteadyClock::new(wall.clone(), None);
        wall.step(-Duration::hours(1));
        steady.now();
        for _ in 0..1000 {
            wall.advance(Duration::nanoseconds(700));
            steady.now();
        }
        assert_eq!(steady.now(), t0() + Duration::microseconds(700), "700 ns a reading, 1000 readings: 700 us passed");
    }

    #[test]
    fn a_restart_with_a_clock_set_back_starts_from_the_last_event() {
        let wall = Arc::new(ManualClock::new(t0()));
        let steady = SteadyClock::new(wall.clone(), Some(t0() + Duration::hours(1)));
        assert_eq!(steady.now(), t0() + Duration::hours(1));
        assert_eq!(steady.take_jumps()[0].by, -Duration::hours(1));
        let later = SteadyClock::new(wall.clone(), Some(t0() - Duration::hours(1)));
        assert_eq!(later.now(), t0(), "an older last event changes nothing");
        assert!(later.take_jumps().is_empty());
    }
}
