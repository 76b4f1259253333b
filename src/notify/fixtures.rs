//! A policy with every kind of notice rule and a history to route and render, for the tests of
//! routing and content.

use chrono::{DateTime, TimeZone, Utc};

use crate::model::{Change, Event, GrantId, RequestId};
use crate::policy::Policy;
use crate::rules::State;

pub const POLICY: &str = r#"[groups]
ops = ["carol", "erin"]
approvers = ["alice", "bob", "carol"]
oncall = ["dave", "alice"]
[[tasks]]
name = "exchange.journal-rule"
description = "Create, change or remove Exchange journal rules"
requesters = ["ops"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
max_duration = "4h"
[[tasks]]
name = "db.shell"
requesters = ["ops"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1h"
break_glass = true
[channels.mail]
kind = "smtp"
host = "smtp.example.org"
tls = "starttls"
from = "zsa@example.org"
[channels.chat]
kind = "webhook"
url = { env = "ZSA_CHAT" }
format = "slack"
[people.alice]
email = "alice@example.org"
[people.bob]
email = "bob@example.org"
[people.carol]
email = "carol@example.org"
[people.dave]
email = "dave@example.org"
[people.erin]
email = "erin@example.org"
[[notify]]
on = "request_created"
to = ["approvers", "group:oncall", "person:alice"]
via = "mail"
[[notify]]
on = ["request_approved", "request_denied", "request_expired", "grant_started", "grant_ended"]
to = ["requester"]
via = "mail"
[[notify]]
on = "grant_expiring"
to = ["holder"]
via = "mail"
before = "10m"
[[notify]]
on = "break_glass"
to = ["group:oncall", "security@example.org"]
via = "mail"
[[notify]]
on = ["break_glass", "notice_failed"]
via = "chat"
[[notify]]
on = "request_created"
to = ["group:oncall"]
via = "chat"
tasks = ["db.shell"]
"#;

pub fn policy() -> Policy {
    Policy::parse(POLICY, "notify-tests.toml").unwrap()
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 14, 9, 30, 0).unwrap()
}

/// Events applied one after another, as the daemon would: each gets the next seq.
#[derive(Default)]
pub struct History {
    pub state: State,
    pub events: Vec<Event>,
}

impl History {
    pub fn add(&mut self, actor: &str, minutes: i64, change: Change) -> Event {
        let event = Event {
            seq: self.events.len() as u64 + 1,
            at: t0() + chrono::Duration::minutes(minutes),
            actor: actor.to_string(),
            auth: None,
            change,
            prev_hash: String::new(),
            hash: String::new(),
        };
        self.state.apply(&event);
        self.events.push(event.clone());
        event
    }

    /// carol asks for the journal rule for an hour (R1), needing two approvals.
    pub fn carol_asks(&mut self, reason: &str) -> Event {
        self.add(
            "carol",
            0,
            Change::RequestCreated {
                starts_at: None,
                extends: None,
                signed_approvals: false,
                request: RequestId(1),
                task: "exchange.journal-rule".into(),
                requester: "carol".into(),
                duration_secs: 3600,
                reason: Some(reason.into()),
                ticket: Some("INC-4711".into()),
                approvals_needed: 2,
                pending_until: t0() + chrono::Duration::hours(24),
                break_glass: false,
                params: Default::default(),
            },
        )
    }

    pub fn grant(&mut self, id: u64, task: &str, holder: &str, break_glass: bool) -> Event {
        self.add(
            holder,
            1,
            Change::GrantStarted {
                starts_at: None,
                grant: GrantId(id),
                request: RequestId(id),
                task: task.into(),
                holder: holder.into(),
                expires_at: t0() + chrono::Duration::hours(1),
                approved_by: if break_glass { vec!["policy".into()] } else { vec!["alice".into(), "bob".into()] },
                break_glass,
            },
        )
    }
}

/// A pending delivery to alice over `hook`, due at `at`: for the outbox's and the sender's tests.
pub fn delivery(key: &str, at: DateTime<Utc>) -> crate::notify::outbox::Delivery {
    use crate::notify::outbox::{Delivery, DeliveryState};
    use crate::notify::{Notice, Recipient, Trigger};
    let notice = Notice {
        key: key.into(),
        trigger: Trigger::RequestCreated,
        seq: 1,
        at,
        to: Recipient { name: Some("alice".into()), address: String::new() },
        subject: String::new(),
        text: String::new(),
        html: String::new(),
        facts: serde_json::json!({"request": "R1", "task": "journal", "person": "carol"}),
    };
    Delivery {
        id: 0,
        key: key.into(),
        seq: 1,
        channel: "hook".into(),
        trigger: Trigger::RequestCreated,
        recipient: "alice".into(),
        // Its words made from its facts, as every notice's are.
        notice: crate::notify::content::Stored::of(&notice).notice(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_at: at,
        not_before: None,
        last_error: None,
        created_at: at,
        done_at: None,
    }
}
