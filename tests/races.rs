//! Races: people acting on the same thing at the same moment get exactly one outcome, recorded
//! once. Writers are serialised by the engine and every decision is made against the state
//! as it is when the writer holds the lock; these tests hold it to that.

mod common;

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use common::Daemon;
use zsa::clock::{Clock, ManualClock};
use zsa::daemon::Engine;
use zsa::model::wire::NewRequest;
use zsa::model::{Change, SYSTEM_ACTOR};
use zsa::policy::Policy;
use zsa::rules::Command;
use zsa::store::sqlite::SqliteStore;

const POLICY: &str = r#"
[groups]
admins = ["{ADMIN}"]
req = ["rita"]
appr = ["alice", "ann", "amy"]
[roles]
admins = ["admins"]
[[tasks]]
name = "one"
requesters = ["req"]
approval = "manual"
approvers = ["appr"]
max_duration = "1h"
[[tasks]]
name = "two"
requesters = ["req"]
approval = "manual"
approvers = ["appr"]
approvals = 2
max_duration = "1h"
[[tasks]]
name = "auto"
requesters = ["req"]
approval = "auto"
max_duration = "1h"
"#;

fn count(events: &[zsa::model::Event], request: zsa::model::RequestId, kind: &str) -> usize {
    events
        .iter()
        .filter(|e| e.change.kind() == kind)
        .filter(|e| match &e.change {
            Change::RequestApproved { request: r, .. }
            | Change::RequestDenied { request: r, .. }
            | Change::GrantStarted { request: r, .. } => *r == request,
            _ => false,
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_and_a_denial_at_the_same_moment_have_exactly_one_outcome() {
    let mut d = Daemon::start_with(POLICY);
    let rita = d.user("rita").await;
    let alice = d.user("alice").await;
    let ann = d.user("ann").await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        let id = rita.request(&NewRequest { task: "one".into(), ..Default::default() }).await.unwrap().request.id;
        let (a, b) = tokio::join!(alice.approve(id, None), ann.deny(id, Some("no".into())));
        assert!(a.is_ok() ^ b.is_ok(), "{id}: exactly one wins: {a:?} / {b:?}");
        let loser = a.err().or(b.err()).unwrap();
        assert_eq!(loser.code(), "not_pending", "the other is told it is already decided");
        ids.push(id);
    }
    let events = d.admin().audit(&zsa::client::AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap();
    for id in ids {
        let decisions = count(&events, id, "request_approved") + count(&events, id, "request_denied");
        assert_eq!(decisions, 1, "{id} has exactly one decision event");
    }
    assert!(d.admin().verify().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_approvers_racing_on_a_two_approval_task_make_exactly_one_grant() {
    let mut d = Daemon::start_with(POLICY);
    let rita = d.user("rita").await;
    let (alice, ann, amy) = (d.user("alice").await, d.user("ann").await, d.user("amy").await);
    let mut ids = Vec::new();
    for _ in 0..100 {
        let id = rita.request(&NewRequest { task: "two".into(), ..Default::default() }).await.unwrap().request.id;
        let (a, b, c) = tokio::join!(alice.approve(id, None), ann.approve(id, None), amy.approve(id, None));
        let wins = [&a, &b, &c].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 2, "{id}: two approvals count, the third finds it decided");
        ids.push(id);
    }
    let events = d.admin().audit(&zsa::client::AuditParams { limit: Some(10_000), ..Default::default() }).await.unwrap();
    for id in ids {
        assert_eq!(count(&events, id, "grant_started"), 1, "{id}: exactly one grant");
        assert_eq!(count(&events, id, "request_approved"), 2, "{id}: two approvals recorded");
    }
}

#[test]
fn a_revoke_racing_the_expiry_ends_the_grant_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::parse(&POLICY.replace("{ADMIN}", "root"), "race.toml").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let store = SqliteStore::open(&dir.path().join("zsa.db")).unwrap();
    let engine = Arc::new(Engine::open(Box::new(store), policy, clock.clone()).unwrap());
    for round in 0..200 {
        let events = engine
            .execute("rita", Command::Request(NewRequest { task: "auto".into(), duration_secs: Some(60), ..Default::default() }))
            .unwrap();
        let grant = events.iter().find_map(|e| if let Change::GrantStarted { grant, .. } = e.change { Some(grant) } else { None }).unwrap();
        let deadline = clock.now() + Duration::seconds(60);
        let (e1, e2, c) = (engine.clone(), engine.clone(), clock.clone());
        // One thread revokes; the other moves the clock to the deadline and expires.
        let revoker = std::thread::spawn(move || e1.execute("root", Command::Revoke { grant, reason: Some(format!("round {round}")) }));
        let expirer = std::thread::spawn(move || {
            c.set(deadline);
            e2.execute(SYSTEM_ACTOR, Command::Expire)
        });
        let revoked = revoker.join().unwrap();
        let expired = expirer.join().unwrap().unwrap();
        let ends = expired.iter().filter(|e| matches!(e.change, Change::GrantExpired { grant: g, .. } if g == grant)).count()
            + usize::from(revoked.is_ok());
        assert_eq!(ends, 1, "round {round}: exactly one end ({revoked:?}, {expired:?})");
        assert!(engine.stored(|s| s.grant(grant)).unwrap().unwrap().ended.is_some());
        engine.read(|s, _| assert!(!s.grants.contains_key(&grant), "round {round}: an ended grant left in memory"));
    }
    assert!(engine.verify().unwrap().ok);
}
