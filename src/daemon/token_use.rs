//! When each token was last used, for `zsa admin token list` and `zsa whoami`: a token nobody
//! has used for months is one to revoke. It is kept in memory as requests come, and saved
//! beside the token's row (not as an event: it decides nothing) at most once a minute per token,
//! by the daemon's clock, and once more when the daemon stops, so a busy token costs no write
//! per request. A daemon that is killed loses at most the last minute of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use super::Engine;
use crate::model::TokenId;

/// A token's use is saved at most this often.
pub const SAVE_EVERY: Duration = Duration::minutes(1);
/// How often the saver looks for uses to save (the daemon's clock may be moved by hand).
const LOOK_EVERY: StdDuration = StdDuration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Used {
    at: DateTime<Utc>,
    /// When it was last saved (by the daemon's clock), if this daemon saved it.
    saved_at: Option<DateTime<Utc>>,
    /// Used since it was last saved.
    unsaved: bool,
}

#[derive(Default)]
pub struct TokenUse(Mutex<HashMap<TokenId, Used>>);

impl TokenUse {
    /// What the store kept, as saved.
    pub fn loaded(saved: Vec<(TokenId, DateTime<Utc>)>) -> TokenUse {
        let used = saved.into_iter().map(|(id, at)| (id, Used { at, saved_at: Some(at), unsaved: false })).collect();
        TokenUse(Mutex::new(used))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenId, Used>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request came with token `id` at `now`.
    pub fn note(&self, id: TokenId, now: DateTime<Utc>) {
        let mut used = self.lock();
        let u = used.entry(id).or_insert(Used { at: now, saved_at: None, unsaved: true });
        u.at = u.at.max(now);
        u.unsaved = true;
    }

    pub fn last_used(&self, id: TokenId) -> Option<DateTime<Utc>> {
        self.lock().get(&id).map(|u| u.at)
    }

    /// The uses to save now: each token used since it was saved, and saved at least
    /// `SAVE_EVERY` ago (or all of them, when `all`). They count as saved from now on; give
    /// them back with `unsave` if the write fails.
    pub fn take_due(&self, now: DateTime<Utc>, all: bool) -> Vec<(TokenId, DateTime<Utc>)> {
        let mut used = self.lock();
        let mut due = Vec::new();
        for (id, u) in used.iter_mut() {
            if u.unsaved && (all || u.saved_at.is_none_or(|s| now - s >= SAVE_EVERY)) {
                u.unsaved = false;
                u.saved_at = Some(now);
                due.push((*id, u.at));
            }
        }
        due.sort();
        due
    }

    /// Uses that `take_due` gave out and that were not saved after all.
    pub fn unsave(&self, failed: &[(TokenId, DateTime<Utc>)]) {
        let mut used = self.lock();
        for (id, _) in failed {
            if let Some(u) = used.get_mut(id) {
                u.unsaved = true;
                u.saved_at = None;
            }
        }
    }
}

/// Saves what is due (everything, when `all`), in one short transaction on the writer's thread.
pub async fn save(engine: &Arc<Engine>, all: bool) {
    let due = engine.token_use().take_due(engine.now(), all);
    if due.is_empty() {
        return;
    }
    let e = engine.clone();
    let written = super::writer::run(move || {
        let saved = e.save_token_use(&due);
        (saved, due)
    })
    .await;
    match written {
        Ok((Ok(()), _)) => {}
        Ok((Err(err), due)) => {
            tracing::warn!(error = %err, "could not save when tokens were last used; trying again");
            engine.token_use().unsave(&due);
        }
        Err(err) => tracing::error!(error = %err, "the writer failed saving when tokens were last used"),
    }
}

/// Saves tokens' uses as they fall due, until the daemon stops (which saves the rest itself,
/// once no request is left to note one).
pub async fn run(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => save(&engine, false).await,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_token_is_saved_at_most_once_a_minute_and_everything_at_the_end() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let used = TokenUse::default();
        used.note(TokenId(1), t0);
        assert_eq!(used.take_due(t0, false), vec![(TokenId(1), t0)], "a first use is saved at the next look");
        let later = t0 + Duration::seconds(10);
        used.note(TokenId(1), later);
        assert_eq!(used.last_used(TokenId(1)), Some(later), "memory has it at once");
        assert_eq!(used.take_due(later, false), vec![], "not again within the minute");
        assert_eq!(used.take_due(t0 + Duration::seconds(60), false), vec![(TokenId(1), later)]);
        assert_eq!(used.take_due(t0 + Duration::seconds(200), false), vec![], "nothing new, nothing to save");
        used.note(TokenId(1), t0 + Duration::seconds(201));
        assert_eq!(used.take_due(t0 + Duration::seconds(202), true), vec![(TokenId(1), t0 + Duration::seconds(201))], "at the end, all");
        used.unsave(&[(TokenId(1), t0 + Duration::seconds(201))]);
        assert_eq!(used.take_due(t0 + Duration::seconds(203), false).len(), 1, "a failed save is tried again");
    }
}
