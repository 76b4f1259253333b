//! Notices (issue 12): telling approvers, requesters and on-call staff where they already are
//! (email, chat webhooks, a program of their own), durably: each delivery is written to an outbox
//! in the same transaction as the event that causes it, and a sender delivers it after commit,
//! never on the decision path.
//!
//! The shape, so its parts can be built apart:
//! - `routing`: from an event, the state and the policy's `[[notify]]` rules, which deliveries
//!   (channel, recipient, key) it causes. Pure.
//! - `content`: the words of one notice (subject, text, HTML, facts), user text made inert. Pure.
//! - `channels`: how one rendered `Notice` reaches one recipient over SMTP, a webhook, a program
//!   or a file. The only part that talks to the outside world.
//! - the outbox (in the store) and the sender task (in the daemon) tie them together.

pub mod channels;
pub mod content;
pub mod outbox;
pub mod routing;

#[cfg(test)]
pub(crate) mod fixtures;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened that someone must hear of: the `on` of a `[[notify]]` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    RequestCreated,
    RequestApproved,
    RequestDenied,
    RequestExpired,
    GrantStarted,
    /// A grant ends within the rule's `before`: sent once per grant, also across a restart.
    GrantExpiring,
    GrantEnded,
    BreakGlass,
    NoticeFailed,
    /// The daemon signed a checkpoint of the audit log: sent elsewhere, it is one more copy
    /// outside the database that a rewrite must get past.
    Checkpoint,
}

impl Trigger {
    pub const ALL: [Trigger; 10] = [
        Trigger::RequestCreated,
        Trigger::RequestApproved,
        Trigger::RequestDenied,
        Trigger::RequestExpired,
        Trigger::GrantStarted,
        Trigger::GrantExpiring,
        Trigger::GrantEnded,
        Trigger::BreakGlass,
        Trigger::NoticeFailed,
        Trigger::Checkpoint,
    ];

    /// The name the policy writes (`request_created`).
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::RequestCreated => "request_created",
            Trigger::RequestApproved => "request_approved",
            Trigger::RequestDenied => "request_denied",
            Trigger::RequestExpired => "request_expired",
            Trigger::GrantStarted => "grant_started",
            Trigger::GrantExpiring => "grant_expiring",
            Trigger::GrantEnded => "grant_ended",
            Trigger::BreakGlass => "break_glass",
            Trigger::NoticeFailed => "notice_failed",
            Trigger::Checkpoint => "checkpoint",
        }
    }

    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Who a notice is for: a person of the policy (by name) at an address of the channel's kind
/// (an email address, or empty for a channel that has one fixed destination).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recipient {
    pub name: Option<String>,
    pub address: String,
}

/// One notice for one recipient, rendered and ready: what a channel delivers. Every text in it
/// was made inert when it was rendered; a channel adds only the escaping of its own format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notice {
    /// Idempotency key, stable across retries: `<event seq>:<trigger>:<channel>:<recipient>` (the
    /// trigger because one event can cause several: a break-glass grant start is `grant_started`,
    /// `break_glass` and a later `grant_expiring`; see `routing::Planned::key`).
    pub key: String,
    pub trigger: Trigger,
    /// The event that caused it.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub to: Recipient,
    /// One line: "R12: carol asks for exchange.journal-rule (1h)".
    pub subject: String,
    /// Plain text body, ending with the exact commands to act (`zsa approve R12`).
    pub text: String,
    /// The same as HTML, every interpolated value escaped.
    pub html: String,
    /// The same as structured data for webhooks and programs: ids, task, people, durations,
    /// approvals so far and needed, deadlines, commands.
    pub facts: serde_json::Value,
}

/// Why a delivery did not happen, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The other side is down, slow or said "later" (5xx, 429, a 4xx SMTP reply, a timeout): retry
    /// with backoff until the give-up time.
    #[error("{0} (will retry)")]
    Retry(String),
    /// Trying again cannot help (a 4xx other than 429, a 5xx SMTP reply, a missing program): the
    /// delivery fails now and a `notice_failed` event records why.
    #[error("{0}")]
    Permanent(String),
}
