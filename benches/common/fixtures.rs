//! Shared by the benches: a policy, and state built the way the daemon builds it (decide, seal,
//! apply), so what is measured is the real code on realistic data.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use zsa::model::wire::NewRequest;
use zsa::model::{Event, SYSTEM_ACTOR};
use zsa::policy::Policy;
use zsa::rules::{Command, State, decide};
use zsa::store::chain;

pub const POLICY: &str = r#"
[settings]
pending_ttl = "30d"
[groups]
admins = ["{ADMIN}"]
approvers = ["alice", "bob"]
auditors = ["erin"]
oncall = [{ONCALL}]
[roles]
admins = ["admins"]
auditors = ["auditors"]
[[tasks]]
name = "restart"
requesters = ["oncall"]
approval = "auto"
max_duration = "1d"
[[tasks]]
name = "journal"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "1d"
"#;

/// How many on-call people the fixtures spread work over.
pub const PEOPLE: usize = 1000;

pub fn policy_text(admin: &str) -> String {
    let oncall: Vec<String> = (0..PEOPLE).map(|i| format!("\"u{i}\"")).collect();
    POLICY.replace("{ADMIN}", admin).replace("{ONCALL}", &oncall.join(", "))
}

pub fn policy() -> Policy {
    Policy::parse(&policy_text("root"), "bench.toml").unwrap()
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

/// Decides and applies like the engine, collecting the sealed events.
pub struct Builder {
    pub state: State,
    pub policy: Policy,
    pub now: DateTime<Utc>,
    pub events: Vec<Event>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { state: State::default(), policy: policy(), now: t0(), events: Vec::new() }
    }
}

impl Builder {
    pub fn run(&mut self, actor: &str, cmd: Command) {
        let changes = decide(&self.state, &self.policy, &zsa::model::Actor::from(actor), &cmd, self.now).unwrap();
        for e in chain::seal(self.state.last_seq, &self.state.last_hash, self.now, &zsa::model::Actor::from(actor), changes) {
            self.state.apply(&e);
            self.events.push(e);
        }
    }

    /// About `n` events of everyday work over `span`: auto grants that expire, manual requests
    /// approved by alice, some left pending.
    pub fn everyday(n: usize, span: Duration) -> Builder {
        let mut b = Builder::default();
        let step = span / (n as i32 / 3).max(1);
        let mut i = 0usize;
        while b.events.len() < n {
            let who = format!("u{}", i % PEOPLE);
            b.now += step;
            let has_pending = b.state.pending.iter().any(|id| b.state.requests[id].requester == who);
            if i.is_multiple_of(3) && !has_pending {
                let new =
                    NewRequest { task: "journal".into(), duration_secs: Some(600), reason: Some("change".into()), ..Default::default() };
                b.run(&who, Command::Request(new));
                if i.is_multiple_of(6) {
                    let id = *b.state.requests.keys().next_back().unwrap();
                    b.run("alice", Command::Approve { request: id, comment: None, signature: None });
                }
            } else {
                let new = NewRequest { task: "restart".into(), duration_secs: Some(60), ..Default::default() };
                b.run(&who, Command::Request(new));
            }
            if i.is_multiple_of(50) {
                b.run(SYSTEM_ACTOR, Command::Expire);
            }
            i += 1;
        }
        b
    }
}
