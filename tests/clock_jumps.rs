//! A wall clock that is stepped neither lengthens a grant nor goes unrecorded. The daemon runs
//! in this process on a clock the test steps (the only way to step a clock without stepping the
//! machine's), on a real socket and SQLite file, reached through the real client.

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{current_user, wait_for_event};
use zsa::client::{AuditParams, Client};
use zsa::clock::ManualClock;
use zsa::daemon::{DaemonConfig, DaemonHandle, start};
use zsa::model::wire::NewRequest;
use zsa::model::{Change, Event};

const POLICY: &str = r#"
[groups]
admins = ["{ADMIN}"]
oncall = ["{ADMIN}"]
[roles]
admins = ["admins"]
[[tasks]]
name = "restart"
requesters = ["oncall"]
approval = "auto"
max_duration = "4h"
"#;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.toml"), POLICY.replace("{ADMIN}", &current_user())).unwrap();
        Setup { dir }
    }

    async fn start(&self, clock: Arc<ManualClock>) -> (DaemonHandle, Client) {
        let config = DaemonConfig {
            state_dir: self.dir.path().join("state"),
            policy: self.dir.path().join("policy.toml"),
            socket: self.dir.path().join("zsa.sock"),
            rebuild_from_log: false,
            ..Default::default()
        };
        let handle = start(config, clock).await.expect("the daemon starts");
        let client = Client::new(&handle.socket, None).unwrap();
        (handle, client)
    }
}

async fn grant_for(client: &Client, secs: u64) -> zsa::model::Grant {
    let new = NewRequest { task: "restart".into(), duration_secs: Some(secs), ..Default::default() };
    client.request(&new).await.unwrap().grant.expect("auto tasks are granted at once").grant
}

async fn events(client: &Client) -> Vec<Event> {
    client.audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap()
}

fn jumped(events: &[Event]) -> Vec<(u64, i64)> {
    events
        .iter()
        .filter_map(|e| match e.change {
            Change::ClockJumped { by_ms, .. } => Some((e.seq, by_ms)),
            _ => None,
        })
        .collect()
}

fn expired_seq(events: &[Event]) -> Option<u64> {
    events.iter().find(|e| matches!(e.change, Change::GrantExpired { .. })).map(|e| e.seq)
}

#[tokio::test]
async fn a_clock_stepped_back_does_not_keep_a_grant_alive() {
    let clock = Arc::new(ManualClock::new(t0()));
    let setup = Setup::new();
    let (handle, client) = setup.start(clock.clone()).await;
    let mut stream = client.events(None).await.unwrap();
    let g = grant_for(&client, 20).await;
    clock.step(-Duration::hours(1)); // NTP steps the wall clock back an hour
    clock.advance(Duration::seconds(21)); // and 21 seconds pass
    let e = wait_for_event(&mut stream, StdDuration::from_secs(10), |e| matches!(e.change, Change::GrantExpired { .. })).await;
    assert!(matches!(e.change, Change::GrantExpired { deadline, .. } if deadline == g.expires_at));
    assert!(!client.check("restart", None).await.unwrap().allowed);
    let log = events(&client).await;
    let jumps = jumped(&log);
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert_eq!(jumps[0].1, -3_600_000);
    assert!(jumps[0].0 < expired_seq(&log).unwrap(), "the jump is recorded before what it explains");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_clock_stepped_forward_ends_what_is_due_and_says_why() {
    let clock = Arc::new(ManualClock::new(t0()));
    let setup = Setup::new();
    let (handle, client) = setup.start(clock.clone()).await;
    let mut stream = client.events(None).await.unwrap();
    grant_for(&client, 2 * 3600).await;
    clock.step(Duration::hours(3));
    // The earlier of the wall deadline and the monotonic one: the wall deadline has passed.
    wait_for_event(&mut stream, StdDuration::from_secs(10), |e| matches!(e.change, Change::GrantExpired { .. })).await;
    let log = events(&client).await;
    let jumps = jumped(&log);
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert_eq!(jumps[0].1, 3 * 3_600_000);
    assert!(jumps[0].0 < expired_seq(&log).unwrap(), "the jump is recorded before the expiry it caused");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_restart_with_the_clock_set_back_does_not_lengthen_a_grant() {
    let setup = Setup::new();
    let (handle, client) = setup.start(Arc::new(ManualClock::new(t0()))).await;
    let g = grant_for(&client, 600).await;
    handle.shutdown().await;

    // The machine comes back with its clock an hour behind; 11 minutes pass.
    let clock = Arc::new(ManualClock::new(t0() - Duration::hours(1)));
    let (handle, client) = setup.start(clock.clone()).await;
    let mut stream = client.events(None).await.unwrap();
    assert!(client.check("restart", None).await.unwrap().allowed, "still within its 10 minutes");
    clock.advance(Duration::minutes(11));
    let e = wait_for_event(&mut stream, StdDuration::from_secs(10), |e| matches!(e.change, Change::GrantExpired { .. })).await;
    assert!(matches!(e.change, Change::GrantExpired { deadline, .. } if deadline == g.expires_at));
    let jumps = jumped(&events(&client).await);
    assert_eq!(jumps.len(), 1, "{jumps:?}");
    assert!(jumps[0].1 <= -3_590_000, "{jumps:?}");
    handle.shutdown().await;
}
