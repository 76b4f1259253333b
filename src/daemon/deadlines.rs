//! Ends grants and pending requests at their deadlines, with nobody connected. It sleeps until
//! the nearest deadline (never more than a second, so a wall-clock jump is noticed quickly) and
//! then issues the same kind of command a person would, so expiry goes through the same rules,
//! log and stream as everything else. It also records the wall clock's steps that the daemon's
//! `SteadyClock` saw, before the expiries they cause.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Engine;
use super::engine::EngineError;
use crate::clock::{ClockJump, SteadyClock};
use crate::model::SYSTEM_ACTOR;
use crate::rules::Command;

const LONGEST_NAP: Duration = Duration::from_secs(1);

/// Records steps of the wall clock (`SteadyClock::take_jumps`) as `clock_jumped`.
pub fn record_jumps(engine: &Engine, jumps: Vec<ClockJump>) -> Result<(), EngineError> {
    for jump in jumps {
        tracing::warn!(by_ms = jump.by.num_milliseconds(), wall = %jump.wall, "the wall clock jumped");
        engine.execute(SYSTEM_ACTOR, Command::NoteClockJump { by_ms: jump.by.num_milliseconds(), wall_clock: jump.wall })?;
    }
    Ok(())
}

pub async fn run(engine: Arc<Engine>, clock: Arc<SteadyClock>, mut shutdown: watch::Receiver<bool>) {
    loop {
        // Memberships that end (`carol@2026-12-31`) end what they allowed, as deadlines do: the
        // policy in force drops the member at the end, and the sweep then ends what they held.
        let now = engine.now();
        let next = engine.read(|s, p| {
            let lost = (!crate::rules::eligibility_ended(s, p, now).is_empty()).then_some(now);
            s.next_deadline().into_iter().chain(p.next_membership_change()).chain(lost).min()
        });
        let wait = match next {
            Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(LONGEST_NAP),
            None => LONGEST_NAP,
        };
        if wait.is_zero() {
            let (e, clock) = (engine.clone(), clock.clone());
            match super::writer::run(move || {
                record_jumps(&e, clock.take_jumps())?;
                e.expire_due()
            })
            .await
            {
                Ok(Ok(_)) => continue,
                Ok(Err(err)) => tracing::error!(error = %err, "could not record expiries; trying again in a second"),
                Err(err) => tracing::error!(error = %err, "the expiry task failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(LONGEST_NAP) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let jumps = clock.take_jumps();
        if !jumps.is_empty() {
            let e = engine.clone();
            if let Err(err) = super::writer::run(move || record_jumps(&e, jumps)).await.unwrap_or(Ok(())) {
                tracing::error!(error = %err, "could not record a jump of the clock");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.deadlines_changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}
