//! Ends grants and pending requests at their deadlines, with nobody connected. It sleeps until
//! the nearest deadline (never more than a second, so a wall-clock jump is noticed quickly) and
//! then issues the same kind of command a person would, so expiry goes through the same rules,
//! log and stream as everything else.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Engine;

const LONGEST_NAP: Duration = Duration::from_secs(1);

pub async fn run(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let next = engine.read(|s, _| s.next_deadline());
        let wait = match next {
            Some(at) => (at - engine.now()).to_std().unwrap_or(Duration::ZERO).min(LONGEST_NAP),
            None => LONGEST_NAP,
        };
        if wait.is_zero() {
            let e = engine.clone();
            match super::writer::run(move || e.expire_due()).await {
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
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.deadlines_changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}
