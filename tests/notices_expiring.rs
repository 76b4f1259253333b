//! `grant_expiring` by the daemon's clock: the daemon runs in this process on a `ManualClock` (the
//! only way to let an hour pass in a test), on a real socket and SQLite file, and writes its
//! notices through a real file channel. The notice goes when the clock reaches the grant's end
//! less the rule's `before`, not earlier, once; and not at all if the grant ended first, which
//! the outbox lists as `skipped`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::current_user;
use zsa::client::{AuditParams, Client};
use zsa::clock::ManualClock;
use zsa::daemon::{DaemonConfig, DaemonHandle, start};
use zsa::model::wire::{NewRequest, NoticeView};
use zsa::model::{Change, GrantId};
use zsa::notify::Trigger;
use zsa::notify::outbox::DeliveryState;

/// Generous, for waiting on something that must happen; never a bound on how fast.
const PATIENCE: Duration = Duration::from_secs(60);

/// The test's account asks for two tasks that need no approval, and hears ten minutes before a
/// grant ends, and when it ends, through the file channel `log`.
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
max_duration = "2h"
[[tasks]]
name = "reindex"
requesters = ["oncall"]
approval = "auto"
max_duration = "2h"
[channels.log]
kind = "file"
path = "{DIR}/notices.jsonl"
[[notify]]
on = ["grant_started", "grant_expiring", "grant_ended"]
to = ["holder"]
via = "log"
before = "10m"
"#;

struct Setup {
    _dir: tempfile::TempDir,
    log: PathBuf,
    clock: Arc<ManualClock>,
    t0: DateTime<Utc>,
    daemon: DaemonHandle,
    me: Client,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policy = POLICY.replace("{ADMIN}", &current_user()).replace("{DIR}", dir.path().to_str().unwrap());
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(t0));
    let config = DaemonConfig {
        state_dir: dir.path().join("state"),
        policy: dir.path().join("policy.toml"),
        socket: dir.path().join("zsa.sock"),
        rebuild_from_log: false,
        ..Default::default()
    };
    let daemon = start(config, clock.clone()).await.expect("the daemon starts");
    let me = Client::new(&daemon.socket, None).unwrap();
    Setup { log: dir.path().join("notices.jsonl"), _dir: dir, clock, t0, daemon, me }
}

impl Setup {
    /// A grant of `task` for `minutes`, at once.
    async fn grant(&self, task: &str, minutes: u64) -> GrantId {
        let new = NewRequest { task: task.into(), duration_secs: Some(minutes * 60), ..Default::default() };
        self.me.request(&new).await.unwrap().grant.expect("granted at once").id
    }

    /// Moves the daemon's clock to `minutes` after the start.
    fn at_minute(&self, minutes: i64) {
        self.clock.set(self.t0 + chrono::Duration::minutes(minutes));
    }

    /// The outbox's `trigger` delivery about `grant`, if it was planned yet.
    async fn delivery(&self, trigger: Trigger, grant: GrantId) -> Option<NoticeView> {
        let about = self.cause(trigger, grant).await?;
        self.me.notices(false).await.unwrap().into_iter().find(|n| n.trigger == trigger && n.key.starts_with(&format!("{about}:")))
    }

    /// The seq of the event that causes `trigger` about `grant` (a delivery's key begins with
    /// it): its start for `grant_started` and `grant_expiring`, its end for `grant_ended`.
    async fn cause(&self, trigger: Trigger, grant: GrantId) -> Option<u64> {
        let events = self.me.audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap();
        events.iter().find_map(|e| {
            let about = match (&e.change, trigger) {
                (Change::GrantStarted { grant, .. }, Trigger::GrantExpiring | Trigger::GrantStarted) => *grant,
                (Change::GrantRelinquished { grant, .. } | Change::GrantExpired { grant, .. }, Trigger::GrantEnded) => *grant,
                _ => return None,
            };
            (about == grant).then_some(e.seq)
        })
    }

    /// Waits until the `trigger` delivery about `grant` is in `state`, and returns it.
    async fn until_state(&self, trigger: Trigger, grant: GrantId, state: DeliveryState) -> NoticeView {
        let until = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self.delivery(trigger, grant).await;
            match &found {
                Some(d) if d.state == state => return d.clone(),
                Some(d) if d.state != DeliveryState::Pending => {
                    panic!("the {} notice of {grant} ended {}: {d:?}", trigger.as_str(), d.state.as_str())
                }
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the {} notice of {grant} never became {}: {found:?}",
                trigger.as_str(),
                state.as_str()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The lines of the file channel that are `trigger` about `grant`.
fn lines(log: &Path, trigger: &str, grant: GrantId) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|n| n["trigger"] == trigger && n["facts"]["grant"] == grant.to_string().as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_expiring_is_skipped_when_the_grant_ended_before_it_came_due() {
    let s = setup().await;
    let grant = s.grant("restart", 60).await;
    // Due at the end less ten minutes.
    let pending = s.delivery(Trigger::GrantExpiring, grant).await.expect("a grant_expiring delivery");
    assert_eq!((pending.state, pending.next_at), (DeliveryState::Pending, s.t0 + chrono::Duration::minutes(50)));

    s.at_minute(5);
    s.me.relinquish(grant).await.unwrap();
    s.until_state(Trigger::GrantEnded, grant, DeliveryState::Sent).await;
    s.at_minute(51);
    let skipped = s.until_state(Trigger::GrantExpiring, grant, DeliveryState::Skipped).await;
    assert_eq!(skipped.last_error.as_deref(), Some("the grant had already ended"));
    assert_eq!(skipped.done_at, Some(s.t0 + chrono::Duration::minutes(51)));
    // Skipped is final: nothing was written for it, and nothing will be.
    assert_eq!(lines(&s.log, "grant_ended", grant).len(), 1);
    assert!(lines(&s.log, "grant_expiring", grant).is_empty(), "{}", std::fs::read_to_string(&s.log).unwrap());
    // The CLI lists it so too.
    let out = std::process::Command::new(common::BIN)
        .args(["notices", "--json"])
        .env("ZSA_SOCKET", &s.daemon.socket)
        .env_remove("ZSA_TOKEN")
        .output()
        .unwrap();
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    let listed: Vec<serde_json::Value> = common::stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = listed.iter().find(|n| n["key"] == skipped.key.as_str()).unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(row["state"], "skipped", "{row}");
    s.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grant_expiring_goes_once_when_the_clock_reaches_the_end_less_before() {
    let s = setup().await;
    let grant = s.grant("restart", 60).await;
    // A second grant whose notice is due at minute 49: once it is written, the sender has looked
    // at the outbox with the clock at minute 49, and found the first not due.
    let earlier = s.grant("reindex", 59).await;

    s.at_minute(49);
    s.until_state(Trigger::GrantExpiring, earlier, DeliveryState::Sent).await;
    assert_eq!(lines(&s.log, "grant_expiring", earlier).len(), 1);
    assert!(lines(&s.log, "grant_expiring", grant).is_empty(), "sent before it was due");
    assert_eq!(s.delivery(Trigger::GrantExpiring, grant).await.unwrap().state, DeliveryState::Pending);

    s.at_minute(50);
    let sent = s.until_state(Trigger::GrantExpiring, grant, DeliveryState::Sent).await;
    assert_eq!(sent.done_at, Some(s.t0 + chrono::Duration::minutes(50)));
    let written = lines(&s.log, "grant_expiring", grant);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["facts"]["expires_at"], "2026-11-23T10:00:00Z");

    // Once, also after the grant has ended by itself: its grant_ended line comes after.
    s.at_minute(61);
    s.until_state(Trigger::GrantEnded, grant, DeliveryState::Sent).await;
    assert_eq!(lines(&s.log, "grant_expiring", grant).len(), 1, "grant_expiring was written again");
    assert_eq!(lines(&s.log, "grant_ended", grant).len(), 1);
    s.daemon.shutdown().await;
}

/// A grant asked ahead: its holder hears that it started when it starts, not when it was
/// approved; one called off before its start is never announced as started.
#[tokio::test(flavor = "multi_thread")]
async fn grant_started_of_a_grant_asked_ahead_goes_at_its_start_and_not_if_called_off() {
    let s = setup().await;
    let start = s.t0 + chrono::Duration::minutes(30);
    let ahead = |task: &str| NewRequest { task: task.into(), duration_secs: Some(3600), starts_at: Some(start), ..Default::default() };
    let asked = s.me.request(&ahead("restart")).await.unwrap();
    let grant = asked.grant.expect("approved ahead at once").id;
    let called_off = s.me.request(&ahead("reindex")).await.unwrap();
    let off = called_off.grant.expect("approved ahead at once").id;
    let pending = s.delivery(Trigger::GrantStarted, grant).await.expect("a grant_started delivery");
    assert_eq!((pending.state, pending.next_at), (DeliveryState::Pending, start));
    s.me.cancel(called_off.request.id).await.unwrap();
    // The end of the one called off is told at once; once it is written, the sender has looked
    // at the outbox with the clock before the start, and sent no start.
    s.until_state(Trigger::GrantEnded, off, DeliveryState::Sent).await;
    assert!(lines(&s.log, "grant_started", grant).is_empty(), "announced before it started");

    s.at_minute(30);
    let sent = s.until_state(Trigger::GrantStarted, grant, DeliveryState::Sent).await;
    assert_eq!(sent.done_at, Some(start));
    let written = lines(&s.log, "grant_started", grant);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["facts"]["duration_secs"], 3600, "{}", written[0]);
    let skipped = s.until_state(Trigger::GrantStarted, off, DeliveryState::Skipped).await;
    assert_eq!(skipped.last_error.as_deref(), Some("the grant had already ended"));
    assert!(lines(&s.log, "grant_started", off).is_empty());
    s.daemon.shutdown().await;
}
