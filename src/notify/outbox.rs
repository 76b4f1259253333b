//! The outbox: the deliveries a commit causes, planned and rendered from the state after its
//! events, so the store writes them in the same transaction as the events (a crash between commit
//! and delivery loses nothing) and the sender only reads and delivers them. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Notice, Trigger, content, routing};
use crate::model::{Change, Event};
use crate::policy::Policy;
use crate::rules::State;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered: due at `next_at`.
    Pending,
    Sent,
    /// Failed for good or past its give-up time; a `notice_failed` event says why.
    Failed,
    /// Moot by the time it was due (a `grant_expiring` notice for a grant that already ended).
    Skipped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        [DeliveryState::Pending, DeliveryState::Sent, DeliveryState::Failed, DeliveryState::Skipped].into_iter().find(|d| d.as_str() == s)
    }
}

/// One row of the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The store's id (0 until written).
    pub id: u64,
    /// The idempotency key, unique: `<seq>:<trigger>:<channel>:<recipient>`.
    pub key: String,
    pub seq: u64,
    pub channel: String,
    pub trigger: Trigger,
    /// The address, or the person's name where the channel has no addresses (`*` for none).
    pub recipient: String,
    pub notice: Notice,
    pub state: DeliveryState,
    /// Attempts started so far.
    pub attempts: u32,
    /// When it is next due (or, while an attempt runs, when that attempt's lease ends).
    pub next_at: DateTime<Utc>,
    /// Not before this moment (`grant_expiring`); the give-up time counts from it.
    pub not_before: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// From when the give-up time counts: when it first became due.
    pub fn due_since(&self) -> DateTime<Utc> {
        self.not_before.unwrap_or(self.created_at).max(self.created_at)
    }
}

/// Does any of `events` cause notices under `policy`? Cheap: a policy without `[[notify]]`
/// answers at once, so it costs nothing.
pub fn wanted(events: &[Event], policy: &Policy) -> bool {
    !policy.notify.is_empty() && events.iter().any(|e| !routing::triggers(&e.change).is_empty())
}

/// What routing and content read of the state after `events`: the rows they changed (`touched`,
/// already changed), the requests of the grants among them, who is disabled, and the tokens their
/// approvals were given through (which stage a request waits at depends on them). Built only
/// when `wanted`, instead of a copy of the whole state.
pub fn view_after(before: &State, touched: &State, events: &[Event]) -> State {
    let mut view =
        State { requests: touched.requests.clone(), grants: touched.grants.clone(), disabled: before.disabled.clone(), ..State::default() };
    for g in touched.grants.values() {
        if let Some(r) = before.requests.get(&g.request) {
            view.requests.entry(g.request).or_insert_with(|| r.clone());
        }
    }
    let through: Vec<crate::model::TokenId> = view
        .requests
        .values()
        .flat_map(|r| &r.approvals)
        .filter_map(|a| match &a.auth {
            Some(crate::model::Auth::Token { token, .. }) => Some(*token),
            _ => None,
        })
        .collect();
    for id in through {
        if let Some(t) = touched.tokens.get(&id).or_else(|| before.tokens.get(&id)) {
            view.tokens.insert(id, t.clone());
        }
    }
    for e in events {
        match &e.change {
            Change::UserDisabled { user, .. } => {
                view.disabled.insert(user.clone(), e.at);
            }
            Change::UserEnabled { user } => {
                view.disabled.remove(user);
            }
            _ => {}
        }
    }
    view
}

/// Every delivery `events` cause, rendered, ready to be written with them.
pub fn plan(events: &[Event], view: &State, policy: &Policy, now: DateTime<Utc>) -> Vec<Delivery> {
    let mut out = Vec::new();
    for event in events {
        for planned in routing::plan(event, view, policy) {
            let notice = content::render(&planned, event, view, policy);
            let recipient = planned.key.splitn(4, ':').nth(3).unwrap_or_default().to_string();
            out.push(Delivery {
                id: 0,
                key: planned.key,
                seq: event.seq,
                channel: planned.channel,
                trigger: planned.trigger,
                recipient,
                notice,
                state: DeliveryState::Pending,
                attempts: 0,
                next_at: planned.not_before.unwrap_or(now).max(now),
                not_before: planned.not_before,
                last_error: None,
                created_at: now,
                done_at: None,
            });
        }
    }
    out
}
