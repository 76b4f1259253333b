//! Whether the daemon can do its job now: its store answers (on a connection of the probe's
//! own), no write hangs, its deadlines are being kept, and (sharing a store) it follows the
//! other daemons. Answered at `GET /v1/ready` and used for the
//! systemd watchdog, so a daemon whose store hangs stops saying it is alive and is restarted.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::model::wire::{Readiness, ReadinessCheck};
use crate::store::EventFilter;

/// Longer than any store read should take; a store slower than this is not fit to decide.
const STORE_PATIENCE: Duration = Duration::from_secs(2);
/// A deadline overdue by more than this means grants are not being ended on time.
const DEADLINE_SLACK: chrono::Duration = chrono::Duration::seconds(10);

/// Each check with what it found. The words say what is wrong and never a path, a host, a
/// user or a count of anything: anyone may ask.
pub async fn check(engine: &Arc<Engine>) -> Readiness {
    let e = engine.clone();
    let read = tokio::task::spawn_blocking(move || e.probe(|s| s.events(&EventFilter { tail: Some(1), ..Default::default() })));
    let store = match tokio::time::timeout(STORE_PATIENCE, read).await {
        Ok(Ok(Ok(_))) => ReadinessCheck::ok("store"),
        Ok(Ok(Err(err))) => {
            tracing::warn!(error = %err, "readiness: the store refused a read");
            ReadinessCheck::failed("store", "the store refused a read; the daemon's log says why")
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: the store read failed");
            ReadinessCheck::failed("store", "the store read failed; the daemon's log says why")
        }
        Err(_) => ReadinessCheck::failed("store", format!("the store did not answer within {} s", STORE_PATIENCE.as_secs())),
    };
    let now = engine.now();
    let overdue = engine.read(|s, _| s.next_deadline()).filter(|at| now - *at > DEADLINE_SLACK);
    let deadlines = match overdue {
        None => ReadinessCheck::ok("deadlines"),
        Some(at) => ReadinessCheck::failed("deadlines", format!("a deadline is {} s overdue", (now - at).num_seconds())),
    };
    let writes = match engine.writing_for().filter(|took| *took > STORE_PATIENCE * 5) {
        None => ReadinessCheck::ok("writes"),
        Some(took) => ReadinessCheck::failed("writes", format!("a write has been under way for {} s", took.as_secs())),
    };
    let mut checks = vec![store, writes, deadlines];
    if let Some(age) = engine.behind() {
        checks.push(ReadinessCheck::failed("peers", format!("has not followed the shared store for {} s", age.as_secs())));
    }
    Readiness { ready: checks.iter().all(|c| c.ok), checks }
}
