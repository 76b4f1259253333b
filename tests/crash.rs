//! Crash consistency: several clients drive thousands of operations while the daemon is killed
//! with SIGKILL at random moments, again and again. Afterwards every acknowledged change is
//! there, nothing half-exists, the chain verifies without gaps, and grants whose deadline passed
//! while the daemon was down ended at their deadline.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Daemon;
use rand::Rng;
use zsa::client::{Client, ClientError};
use zsa::model::wire::NewRequest;
use zsa::model::{GrantId, GrantState, RequestId, RequestState};

const POLICY: &str = r#"
[groups]
admins = ["{ADMIN}"]
req = ["u1", "u2", "u3", "u4"]
appr = ["alice"]
[roles]
admins = ["admins"]
[[tasks]]
name = "auto"
requesters = ["req"]
approval = "auto"
max_duration = "1h"
[[tasks]]
name = "manual"
requesters = ["req"]
approval = "manual"
approvers = ["appr"]
max_duration = "1h"
"#;

/// Something the daemon said it did.
#[derive(Debug, Clone)]
enum Ack {
    Requested { id: RequestId, requester: String, task: String, secs: u64 },
    Approved { id: RequestId },
    Relinquished { grant: GrantId },
}

/// A refusal is an answer; only a lost connection leaves the outcome unknown.
fn answered<T>(r: &Result<T, ClientError>) -> bool {
    !matches!(r, Err(ClientError::Unreachable { .. } | ClientError::Protocol(_)))
}

async fn client_loop(
    me: String,
    c: Client,
    alice: Client,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    ops: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut mine: Vec<GrantId> = Vec::new();
    let mut pending: Vec<RequestId> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let pick = rand::rng().random_range(0..10);
        let done = match pick {
            0..=4 => {
                let secs = rand::rng().random_range(1..=3);
                let r = c.request(&NewRequest { task: "auto".into(), duration_secs: Some(secs), ..Default::default() }).await;
                if let Ok(o) = &r {
                    acks.lock().unwrap().push(Ack::Requested { id: o.request.id, requester: me.clone(), task: "auto".into(), secs });
                    mine.extend(o.grant.as_ref().map(|g| g.id));
                }
                answered(&r)
            }
            5..=6 => {
                let r = c.request(&NewRequest { task: "manual".into(), duration_secs: Some(2), ..Default::default() }).await;
                if let Ok(o) = &r {
                    acks.lock().unwrap().push(Ack::Requested { id: o.request.id, requester: me.clone(), task: "manual".into(), secs: 2 });
                    pending.push(o.request.id);
                }
                answered(&r)
            }
            7..=8 => match pending.pop() {
                Some(id) => {
                    let r = alice.approve(id, None).await;
                    if r.is_ok() {
                        acks.lock().unwrap().push(Ack::Approved { id });
                    }
                    answered(&r)
                }
                None => true,
            },
            _ => match mine.pop() {
                Some(grant) => {
                    let r = c.relinquish(grant).await;
                    if r.is_ok() {
                        acks.lock().unwrap().push(Ack::Relinquished { grant });
                    }
                    answered(&r)
                }
                None => true,
            },
        };
        ops.fetch_add(1, Ordering::Relaxed);
        if !done {
            tokio::time::sleep(Duration::from_millis(10)).await; // the daemon is down; try again
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_changes_survive_sigkill_at_random_moments() {
    crash_and_check(24).await;
}

/// The same, for as many kills as ZSA_SOAK_KILLS says (default 500): a soak of many minutes.
/// Run it with: ZSA_SOAK_KILLS=1000 cargo test --test crash -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a long soak; see docs/SECURITY.md"]
async fn soak_many_kills() {
    let kills = std::env::var("ZSA_SOAK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    crash_and_check(kills).await;
}

async fn crash_and_check(kills: usize) {
    let mut d = Daemon::start_with(POLICY);
    let alice = d.user("alice").await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for who in ["u1", "u2", "u3", "u4"] {
        let c = d.user(who).await;
        clients.push(tokio::spawn(client_loop(who.to_string(), c, alice.clone(), acks.clone(), stop.clone(), ops.clone())));
    }
    for _ in 0..kills {
        let up = rand::rng().random_range(100..400);
        tokio::time::sleep(Duration::from_millis(up)).await;
        d.kill9();
        let down = rand::rng().random_range(0..300);
        tokio::time::sleep(Duration::from_millis(down)).await;
        d.spawn();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let ops = ops.load(Ordering::Relaxed);
    let acks = acks.lock().unwrap().clone();
    assert!(ops > 40 * kills, "thousands of operations were tried ({ops})");
    eprintln!("crash test: {ops} operations, {} acknowledged, {kills} kills", acks.len());

    let admin = d.admin();
    let report = admin.verify().await.unwrap();
    assert!(report.ok, "the chain and the projections verify after {kills} kills: {report:?}");
    let requests = admin.requests(true).await.unwrap();
    let grants = admin.grants(true).await.unwrap();
    let find = |id: RequestId| requests.iter().find(|r| r.id == id);
    for ack in &acks {
        match ack {
            Ack::Requested { id, requester, task, secs } => {
                let r = find(*id).unwrap_or_else(|| panic!("acknowledged {id} is missing"));
                assert_eq!((&r.requester, &r.task, r.duration_secs), (requester, task, *secs), "{id}");
            }
            Ack::Approved { id } => {
                let r = find(*id).unwrap();
                assert_eq!(r.state, RequestState::Approved, "{id}");
                assert!(r.approvals.iter().any(|a| a.by == "alice"));
            }
            Ack::Relinquished { grant } => {
                let g = grants.iter().find(|g| g.id == *grant).unwrap();
                assert_eq!(g.state, GrantState::Relinquished, "{grant}");
            }
        }
    }
    // Every grant is whole and ended properly: none is active past its deadline, and every
    // expired one ended exactly at its deadline, even when the daemon was down then.
    let now = chrono::Utc::now();
    for g in &grants {
        assert!(requests.iter().any(|r| r.grant == Some(g.id)), "{} has its request", g.id);
        match g.state {
            GrantState::Active => assert!(g.expires_at > now - chrono::Duration::seconds(1), "{} outlived its deadline", g.id),
            GrantState::Expired => assert_eq!(g.ended.as_ref().unwrap().at, g.expires_at, "{}", g.id),
            _ => {}
        }
    }
    assert!(grants.iter().any(|g| g.state == GrantState::Expired), "some grants expired during the test");
}

/// Group commit under SIGKILL: fifty callers at once (half asking for an automatic grant, half
/// approving requests made before), the daemon killed a few milliseconds into their batch.
/// Afterwards each caller's change is all there or not at all: an acknowledged request has its
/// grant, an acknowledged approval its grant, an unanswered one is whole or absent, and the
/// chain verifies. A round without a kill shows through `/metrics` that such bursts were written
/// in batches of more than one command, so the kills do land on batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_fifty_killed_in_flight_is_all_or_nothing_for_each_caller() {
    const CALLERS: usize = 50;
    let people: Vec<String> = (0..CALLERS).map(|i| format!("c{i}")).collect();
    let policy = POLICY.replace(r#"req = ["u1", "u2", "u3", "u4"]"#, &format!("req = {people:?}"));
    let mut d = Daemon::start_with(&policy);
    let alice = d.user("alice").await;
    let mut callers = Vec::new();
    for who in &people {
        callers.push(d.user(who).await);
    }
    let admin = d.admin();
    let mut batched_seen = false;
    // How long a burst takes unkilled (round 0): the kills land anywhere within about that.
    let mut burst = Duration::ZERO;
    for round in 0..8 {
        // Half the callers have a request waiting for alice's approval (one an approval lost in
        // the last round left waiting, or a new one).
        let listed = admin.requests(true).await.unwrap();
        let mut waiting = Vec::new();
        for (who, c) in people.iter().zip(&callers).take(CALLERS / 2) {
            let left = listed.iter().find(|r| &r.requester == who && r.state == RequestState::Pending).map(|r| r.id);
            let id = match left {
                Some(id) => id,
                None => {
                    c.request(&NewRequest { task: "manual".into(), duration_secs: Some(3600), ..Default::default() })
                        .await
                        .unwrap()
                        .request
                        .id
                }
            };
            waiting.push(id);
        }
        let go = Arc::new(tokio::sync::Barrier::new(CALLERS + 1));
        let mut flight = Vec::new();
        for (i, c) in callers.iter().enumerate() {
            let (c, alice, go) = (c.clone(), alice.clone(), go.clone());
            let ticket = format!("r{round}-c{i}");
            let approve = waiting.get(i).copied();
            flight.push(tokio::spawn(async move {
                go.wait().await;
                match approve {
                    Some(id) => (ticket, Some(id), alice.approve(id, None).await.is_ok()),
                    None => {
                        let new = NewRequest {
                            task: "auto".into(),
                            duration_secs: Some(3600),
                            ticket: Some(ticket.clone()),
                            ..Default::default()
                        };
                        (ticket, None, c.request(&new).await.is_ok())
                    }
                }
            }));
        }
        go.wait().await;
        let started = std::time::Instant::now();
        let kill = round != 0;
        if kill {
            let most = burst.as_micros().max(1000) as u64;
            tokio::time::sleep(Duration::from_micros(rand::rng().random_range(most / 10..most))).await;
            d.kill9();
        }
        let mut outcomes = Vec::new();
        for f in flight {
            outcomes.push(f.await.unwrap());
        }
        if !kill {
            burst = started.elapsed();
        }
        if kill {
            d.spawn();
        } else {
            let metrics = admin.metrics().await.unwrap();
            batched_seen = batches_of_more_than_one(&metrics);
        }
        let requests = admin.requests(true).await.unwrap();
        let grants = admin.grants(true).await.unwrap();
        let grant_of = |r: &zsa::model::Request| r.grant.and_then(|id| grants.iter().find(|g| g.id == id));
        let mut acknowledged = 0;
        for (ticket, approving, acked) in &outcomes {
            acknowledged += usize::from(*acked);
            match approving {
                Some(id) => {
                    let r = requests.iter().find(|r| r.id == *id).expect("the waiting request is there");
                    match r.state {
                        RequestState::Approved => assert!(grant_of(r).is_some(), "{id} approved without its grant"),
                        RequestState::Pending => assert!(!acked, "the acknowledged approval of {id} was lost"),
                        other => panic!("{id} is {other:?}"),
                    }
                }
                None => match requests.iter().find(|r| r.ticket.as_deref() == Some(ticket.as_str())) {
                    Some(r) => {
                        assert_eq!(r.state, RequestState::Approved, "{ticket}");
                        assert!(grant_of(r).is_some(), "{ticket}: the request is there without its grant");
                    }
                    None => assert!(!acked, "the acknowledged request {ticket} was lost"),
                },
            }
        }
        let report = admin.verify().await.unwrap();
        assert!(report.ok, "the chain and the projections verify after round {round}: {report:?}");
        eprintln!("round {round}: {acknowledged} of {CALLERS} acknowledged{}", if kill { " before the kill" } else { "" });
        // The approved grants end, so the next round starts with none held.
        for g in grants.iter().filter(|g| g.state == GrantState::Active) {
            let _ = admin.revoke(g.id, Some("next round".into())).await;
        }
    }
    assert!(batched_seen, "a burst of {CALLERS} callers was written in batches of more than one command");
}

/// Whether the daemon's commit-batch histogram counts fewer transactions than commands.
fn batches_of_more_than_one(metrics: &str) -> bool {
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} is in the metrics:\n{metrics}"))
    };
    value("zsa_commit_batch_commands_sum ") > value("zsa_commit_batch_commands_count ")
}
