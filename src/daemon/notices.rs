//! The sender: delivers what the outbox holds, after commit and never on the decision path. It
//! wakes when deliveries are written or come due (by the daemon's clock), takes the due ones
//! (each with a lease, so one whose attempt dies with the daemon is tried again after a restart),
//! and delivers them concurrently, at most `IN_FLIGHT` at once, each within its channel's
//! timeout: a receiver that hangs holds one slot, never a decision. At least once, with the
//! stable key; "later" is retried with exponential backoff and jitter until the give-up time
//! (`[settings] notice_give_up`); a permanent failure, or one past that time, ends the delivery
//! as failed and records a `notice_failed` event through the engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Engine;
use crate::model::{Change, GrantId, SYSTEM_ACTOR};
use crate::notify::channels::{Channel, ChannelOptions};
use crate::notify::outbox::{Delivery, DeliveryState};
use crate::notify::{DeliveryError, Trigger};
use crate::policy::Policy;
use crate::rules::Command;
use crate::store::Settled;

/// The most deliveries under way at once.
const IN_FLIGHT: usize = 16;
/// The longest the sender sleeps without looking (so a clock that was moved is noticed).
const LONGEST_NAP: Duration = Duration::from_secs(1);
/// The first retry's wait; each next one doubles, up to `MOST_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MOST_BACKOFF: Duration = Duration::from_secs(300);
/// How long past its channel's timeout a claimed delivery stays claimed.
const LEASE_SLACK: Duration = Duration::from_secs(30);

/// The channels of one policy, built once per policy (a reload rebuilds them).
struct Channels {
    policy: Arc<Policy>,
    built: BTreeMap<String, Result<Arc<Channel>, String>>,
}

impl Channels {
    fn build(policy: Arc<Policy>, options: &ChannelOptions) -> Channels {
        let built = policy
            .channels
            .iter()
            .map(|(name, config)| {
                let channel = Channel::build(name, config, options).map(Arc::new).map_err(|e| e.to_string());
                if let Err(e) = &channel {
                    tracing::error!(error = %e, "a notice channel cannot be built; its notices wait until it can");
                }
                (name.clone(), channel)
            })
            .collect();
        Channels { policy, built }
    }
}

/// The wait before retry number `attempts` (1 after the first failure): doubling, capped, with
/// full jitter in its upper half so many failed deliveries do not come back at once.
fn backoff(attempts: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(MOST_BACKOFF);
    let half = doubled / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
}

/// Is the grant a `grant_expiring` notice (or the `grant_started` of one asked ahead) is about
/// still active, with the end a warning names? If not, the notice is moot.
fn grant_still_active(engine: &Engine, delivery: &Delivery) -> bool {
    let facts = &delivery.notice.facts;
    let grant = facts.get("grant").and_then(|g| g.as_str()).and_then(|g| g.get(1..)?.parse::<u64>().ok());
    // Warned of for an end it no longer has (it was extended): the extension planned its own. A
    // start is news whatever the end has become.
    let warned_end = (delivery.trigger == Trigger::GrantExpiring)
        .then(|| facts.get("expires_at").and_then(|t| serde_json::from_value::<chrono::DateTime<chrono::Utc>>(t.clone()).ok()))
        .flatten();
    match grant {
        Some(n) => engine.read(|s, _| {
            s.active.contains(&GrantId(n)) && s.grants.get(&GrantId(n)).is_some_and(|g| warned_end.is_none_or(|end| end == g.expires_at))
        }),
        None => true,
    }
}

/// How one attempt ended.
enum Outcome {
    Sent,
    Skipped,
    Failed(DeliveryError),
}

pub async fn run(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let options = ChannelOptions::new(engine.clock());
    let mut channels = Channels::build(engine.policy(), &options);
    let mut under_way: JoinSet<()> = JoinSet::new();
    loop {
        if !Arc::ptr_eq(&channels.policy, &engine.policy()) {
            channels = Channels::build(engine.policy(), &options);
        }
        let now = engine.now();
        let room = IN_FLIGHT - under_way.len();
        if room > 0 {
            let lease = chrono::Duration::from_std(options.timeout + LEASE_SLACK).unwrap_or_default();
            let e = engine.clone();
            let claimed = tokio::task::spawn_blocking(move || e.outbox(|s| s.claim_deliveries(now, now + lease, room))).await;
            match claimed {
                Ok(Ok(due)) => {
                    for delivery in due {
                        let channel = channels.built.get(&delivery.channel).cloned();
                        under_way.spawn(attempt(engine.clone(), delivery, channel, channels.policy.notice_give_up));
                    }
                }
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "cannot read the outbox; trying again in a second");
                    pause(&mut shutdown).await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "the outbox task failed; trying again in a second");
                    pause(&mut shutdown).await;
                }
            }
        }
        let e = engine.clone();
        let next = tokio::task::spawn_blocking(move || e.outbox(|s| s.next_delivery_at())).await.ok().and_then(Result::ok).flatten();
        let wait = match next {
            _ if under_way.len() >= IN_FLIGHT => LONGEST_NAP,
            Some(at) => (at - engine.now()).to_std().unwrap_or(Duration::ZERO).min(LONGEST_NAP),
            None => LONGEST_NAP,
        };
        if wait.is_zero() && under_way.len() < IN_FLIGHT {
            // Due now but not claimed: yield, then look again.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.outbox_written() => {}
            Some(_) = under_way.join_next(), if !under_way.is_empty() => {}
            _ = shutdown.changed() => {
                // What is under way is dropped: claimed deliveries are tried again after the lease.
                under_way.abort_all();
                return;
            }
        }
    }
}

/// Waits a second (or until the daemon stops) before looking again after an error, so a broken
/// database is not polled in a tight loop.
async fn pause(shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(LONGEST_NAP) => {}
        _ = shutdown.changed() => {}
    }
}

/// One attempt at one delivery, and its settling in the outbox.
async fn attempt(engine: Arc<Engine>, delivery: Delivery, channel: Option<Result<Arc<Channel>, String>>, give_up_secs: u64) {
    // A start asked ahead says so in its facts (a retry's `not_before` would not tell).
    let asked_ahead = delivery.trigger == Trigger::GrantStarted && delivery.notice.facts.get("starts_at").is_some_and(|s| !s.is_null());
    let waited_for_grant = delivery.trigger == Trigger::GrantExpiring || asked_ahead;
    let outcome = if waited_for_grant && !grant_still_active(&engine, &delivery) {
        Outcome::Skipped
    } else {
        match channel {
            None => Outcome::Failed(DeliveryError::Permanent(format!(
                "the channel {} is no longer in the policy",
                crate::model::text::inert(&delivery.channel)
            ))),
            Some(Err(setup)) => Outcome::Failed(DeliveryError::Retry(setup)),
            Some(Ok(channel)) => match channel.deliver(&delivery.notice).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Failed(e),
            },
        }
    };
    let now = engine.now();
    let give_up_at = delivery.due_since() + chrono::Duration::seconds(give_up_secs.min(i64::MAX as u64) as i64);
    let (settled, failed) = settle(&delivery, outcome, now, give_up_at);
    super::metrics::notice(
        &delivery.channel,
        match settled.state {
            DeliveryState::Sent => "sent",
            DeliveryState::Pending => "retry",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
        },
    );
    match &settled.state {
        DeliveryState::Sent => tracing::debug!(key = %delivery.key, "notice delivered"),
        DeliveryState::Pending => {
            tracing::info!(key = %delivery.key, error = settled.last_error.as_deref().unwrap_or(""), attempts = delivery.attempts, "notice not delivered yet; will retry")
        }
        DeliveryState::Failed => tracing::warn!(key = %delivery.key, error = settled.last_error.as_deref().unwrap_or(""), "notice failed"),
        DeliveryState::Skipped => tracing::debug!(key = %delivery.key, "notice skipped: its grant already ended"),
    }
    let id = delivery.id;
    let e = engine.clone();
    let written = super::writer::run(move || -> Result<(), super::engine::EngineError> {
        // The failure is on the record before the delivery is marked failed: a crash between
        // the two retries the delivery, and its failure is recorded again, rather than lost.
        if let Some(change) = failed {
            e.execute(SYSTEM_ACTOR, Command::NoteNoticeFailed(Box::new(change)))?;
        }
        e.outbox(|s| s.settle_delivery(id, &settled))?;
        Ok(())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, key = %delivery.key, "cannot record how a notice went; it will be tried again"),
        Err(err) => tracing::error!(error = %err, key = %delivery.key, "cannot record how a notice went; it will be tried again"),
    }
}

/// The outbox row after an attempt, and the `notice_failed` change to record if it failed.
fn settle(delivery: &Delivery, outcome: Outcome, now: DateTime<Utc>, give_up_at: DateTime<Utc>) -> (Settled, Option<Change>) {
    let done = |state, last_error| (Settled { state, next_at: now, last_error, done_at: Some(now) }, None);
    let error = match outcome {
        Outcome::Sent => return done(DeliveryState::Sent, None),
        Outcome::Skipped => return done(DeliveryState::Skipped, Some("the grant had already ended".into())),
        Outcome::Failed(e) => e,
    };
    let retry_at = now + chrono::Duration::from_std(backoff(delivery.attempts)).unwrap_or_default();
    let message = match &error {
        DeliveryError::Retry(why) if retry_at <= give_up_at => {
            return (Settled { state: DeliveryState::Pending, next_at: retry_at, last_error: Some(why.clone()), done_at: None }, None);
        }
        DeliveryError::Retry(why) => format!("{why}; gave up after {} attempts", delivery.attempts),
        DeliveryError::Permanent(why) => why.clone(),
    };
    let facts = &delivery.notice.facts;
    let text = |name: &str| facts.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let change = Change::NoticeFailed {
        notice: delivery.key.clone(),
        about: delivery.seq,
        trigger: delivery.trigger,
        channel: delivery.channel.clone(),
        recipient: delivery.recipient.clone(),
        task: text("task"),
        person: text("person"),
        error: message.clone(),
    };
    (Settled { state: DeliveryState::Failed, next_at: now, last_error: Some(message), done_at: Some(now) }, Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Recipient, fixtures};

    fn delivery(attempts: u32) -> Delivery {
        let at = "2026-11-23T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let key = "3:request_created:hook:bob";
        let mut d = fixtures::delivery(key, at);
        d.notice.seq = 3;
        d.notice.to = Recipient { name: Some("bob".into()), address: String::new() };
        d.notice.subject = "s".into();
        d.notice.facts = serde_json::json!({"task": "journal", "person": "dave"});
        Delivery { id: 7, seq: 3, recipient: "bob".into(), attempts, ..d }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempts in 1..30 {
            let full = FIRST_BACKOFF.saturating_mul(1u32 << (attempts - 1).min(20)).min(MOST_BACKOFF);
            let wait = backoff(attempts);
            assert!(wait >= full / 2 && wait <= full, "attempt {attempts}: {wait:?} not within {full:?}/2..={full:?}");
        }
        assert!(backoff(40) <= MOST_BACKOFF);
    }

    #[test]
    fn retry_stays_pending_until_the_give_up_time_then_fails_on_the_record() {
        let d = delivery(2);
        let now = d.created_at + chrono::Duration::seconds(5);
        let (settled, failed) = settle(&d, Outcome::Failed(DeliveryError::Retry("503".into())), now, now + chrono::Duration::hours(1));
        assert_eq!((settled.state, failed), (DeliveryState::Pending, None));
        assert!(settled.next_at > now && settled.done_at.is_none());
        // Past the give-up time: failed, and a notice_failed that says so.
        let (settled, failed) = settle(&d, Outcome::Failed(DeliveryError::Retry("503".into())), now, now);
        assert_eq!((settled.state, settled.done_at), (DeliveryState::Failed, Some(now)));
        let Some(Change::NoticeFailed { notice, about, error, task, person, .. }) = failed else { panic!("no notice_failed") };
        assert_eq!((notice.as_str(), about, task.as_deref(), person.as_deref()), (d.key.as_str(), 3, Some("journal"), Some("dave")));
        assert!(error.contains("503") && error.contains("gave up after 2 attempts"), "{error}");
        // Permanent: failed at once; sent and skipped are done with no event.
        let (settled, failed) =
            settle(&d, Outcome::Failed(DeliveryError::Permanent("410 Gone".into())), now, now + chrono::Duration::hours(1));
        assert_eq!(settled.state, DeliveryState::Failed);
        assert!(matches!(failed, Some(Change::NoticeFailed { error, .. }) if error == "410 Gone"));
        assert_eq!(settle(&d, Outcome::Sent, now, now).0.state, DeliveryState::Sent);
        let (skipped, none) = settle(&d, Outcome::Skipped, now, now);
        assert_eq!((skipped.state, none), (DeliveryState::Skipped, None));
    }
}
