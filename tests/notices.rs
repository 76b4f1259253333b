//! Notices end to end: the real daemon writes deliveries to its outbox with the events that
//! cause them, and its sender delivers them to a real axum receiver on loopback, or a file.
//! Nothing of zsa is mocked.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::Daemon;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zsa::client::AuditParams;
use zsa::model::Change;
use zsa::model::wire::NewRequest;

/// Generous, for waiting on something that must happen; never a bound on how fast.
const PATIENCE: Duration = Duration::from_secs(60);

/// The test policy's groups and tasks, and notices through the webhook `hook` (its URL from
/// ZSA_TEST_HOOK) and the file channel `log`.
const POLICY: &str = r#"
[settings]
pending_ttl = "1h"
[groups]
admins = ["{ADMIN}"]
approvers = ["alice", "bob", "carol"]
oncall = ["carol", "dave"]
auditors = ["erin"]
[roles]
admins = ["admins"]
auditors = ["auditors"]
[[tasks]]
name = "journal"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
max_duration = "4h"
[[tasks]]
name = "restart"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
[channels.hook]
kind = "webhook"
url = { env = "ZSA_TEST_HOOK" }
format = "json"
[channels.log]
kind = "file"
path = "{DIR}/notices.jsonl"
[[notify]]
on = ["request_created"]
to = ["approvers"]
via = "hook"
[[notify]]
on = ["request_approved", "request_denied"]
to = ["requester"]
via = "hook"
[[notify]]
on = ["grant_expiring", "grant_ended"]
to = ["holder"]
via = "log"
before = "15m"
tasks = ["restart"]
"#;

/// Polls `check` until it gives something, for at most `PATIENCE`.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < until, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One POST the receiver got.
#[derive(Debug)]
struct Hook {
    key: String,
    body: serde_json::Value,
}

/// What the receiver answers: a status, or (0) no answer at all until the test ends.
struct Receiver {
    url: String,
    got: mpsc::UnboundedReceiver<Hook>,
    status: Arc<AtomicU16>,
    /// Requests whose answer is still being held (the handler is still running).
    hanging: Arc<AtomicUsize>,
}

/// Counts a held request while its handler runs (hyper drops it when the client hangs up).
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receiver(status: u16) -> Receiver {
    let (tx, got) = mpsc::unbounded_channel();
    let status = Arc::new(AtomicU16::new(status));
    let hanging = Arc::new(AtomicUsize::new(0));
    type Shared = (mpsc::UnboundedSender<Hook>, Arc<AtomicU16>, Arc<AtomicUsize>);
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|State((tx, status, hanging)): State<Shared>, headers: HeaderMap, body: axum::body::Bytes| async move {
                let key = headers.get("X-Zsa-Delivery").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let body = serde_json::from_slice(&body).unwrap_or_default();
                let answer = status.load(Ordering::SeqCst);
                let _ = tx.send(Hook { key, body });
                if answer == 0 {
                    hanging.fetch_add(1, Ordering::SeqCst);
                    let _held = Held(hanging.clone());
                    std::future::pending::<()>().await;
                }
                StatusCode::from_u16(answer).unwrap_or(StatusCode::OK)
            }),
        )
        .with_state((tx, status.clone(), hanging.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got, status, hanging }
}

impl Receiver {
    /// The next POST, waiting for it.
    async fn next(&mut self) -> Hook {
        tokio::time::timeout(PATIENCE, self.got.recv()).await.expect("a notice within the patience").expect("receiver running")
    }

    /// POSTs until one with `key` arrives; returns how many of them had that key (all retries
    /// of one delivery carry it) and the last.
    async fn until_key(&mut self, key: &str) -> Hook {
        loop {
            let hook = self.next().await;
            if hook.key == key {
                return hook;
            }
        }
    }
}

/// A daemon whose `hook` posts to `hook`, and the directory of its `log` file.
fn daemon(hook: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = POLICY.replace("{DIR}", dir.path().to_str().unwrap());
    (Daemon::start_with_env(&policy, &[("ZSA_TEST_HOOK", hook)]), dir)
}

fn journal() -> NewRequest {
    NewRequest { task: "journal".into(), duration_secs: Some(600), reason: Some("mail flow broken".into()), ..Default::default() }
}

/// The audit log as the admin reads it.
async fn audit_log(d: &Daemon) -> Vec<zsa::model::Event> {
    d.admin().audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap()
}

/// A daemon whose webhook answers 410 Gone, after dave's request: bob's notice of it fails for
/// good. The receiver, the daemon, its file channel's directory and that notice's key.
async fn bobs_notice_fails() -> (Receiver, Daemon, tempfile::TempDir, String) {
    let mut hook = receiver(410).await;
    let (mut d, files) = daemon(&hook.url);
    d.user("dave").await.request(&journal()).await.unwrap();
    let created = seq_of(&d, "request_created").await;
    let key = format!("{created}:request_created:hook:bob");
    hook.until_key(&key).await;
    (hook, d, files, key)
}

/// The seq of the newest event of the kind `kind`.
async fn seq_of(d: &Daemon, kind: &str) -> u64 {
    let events = audit_log(d).await;
    events.iter().rev().find(|e| e.change.kind() == kind).map(|e| e.seq).unwrap_or_else(|| panic!("no {kind} event"))
}

#[tokio::test]
async fn approvers_hear_of_a_request_and_the_requester_of_the_decision() {
    let mut hook = receiver(200).await;
    let (mut d, _files) = daemon(&hook.url);
    let dave = d.user("dave").await;
    let id = dave.request(&journal()).await.unwrap().request.id;
    let created = seq_of(&d, "request_created").await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let h = hook.next().await;
        assert_eq!(h.body["key"], h.key.as_str(), "the body names the delivery it is");
        assert_eq!(h.body["facts"]["request"], id.to_string().as_str());
        keys.push(h.key);
    }
    keys.sort();
    assert_eq!(keys, ["alice", "bob", "carol"].map(|a| format!("{created}:request_created:hook:{a}")), "each approver once");
    d.user("alice").await.approve(id, Some("ok".into())).await.unwrap();
    let approved = seq_of(&d, "request_approved").await;
    let h = hook.next().await;
    assert_eq!(h.key, format!("{approved}:request_approved:hook:dave"));
    assert!(h.body["text"].as_str().unwrap().contains("alice"), "{}", h.body);
}

#[tokio::test]
async fn a_receiver_down_at_first_gets_the_notice_later_under_the_same_key() {
    let mut hook = receiver(503).await;
    let (mut d, _files) = daemon(&hook.url);
    d.user("dave").await.request(&journal()).await.unwrap();
    let created = seq_of(&d, "request_created").await;
    let key = format!("{created}:request_created:hook:alice");
    // Two refusals of alice's notice, then the receiver is back.
    hook.until_key(&key).await;
    hook.until_key(&key).await;
    hook.status.store(200, Ordering::SeqCst);
    hook.until_key(&key).await;
    // It went out once the receiver answered: the outbox says sent, after at least three attempts.
    let attempts = eventually("the delivery marked sent", async || match outbox_row(&d, &key) {
        (state, attempts) if state == "sent" => Some(attempts),
        _ => None,
    })
    .await;
    assert!(attempts >= 3, "{attempts}");
}

/// (state, attempts) of the delivery `key`, read from the database itself.
fn outbox_row(d: &Daemon, key: &str) -> (String, i64) {
    let db = rusqlite::Connection::open_with_flags(d.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    db.query_row("SELECT state, attempts FROM deliveries WHERE key = ?1", [key], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
}

#[tokio::test]
async fn a_notice_committed_before_a_kill_9_is_delivered_after_the_restart() {
    let mut hook = receiver(503).await;
    let (mut d, _files) = daemon(&hook.url);
    let id = d.user("dave").await.request(&journal()).await.unwrap().request.id;
    d.user("alice").await.approve(id, None).await.unwrap();
    let approved = seq_of(&d, "request_approved").await;
    let key = format!("{approved}:request_approved:hook:dave");
    // The receiver refused it once (so it was not delivered), then the daemon dies.
    hook.until_key(&key).await;
    d.kill9();
    hook.status.store(200, Ordering::SeqCst);
    while hook.got.try_recv().is_ok() {}
    d.spawn();
    let h = hook.until_key(&key).await;
    assert_eq!(h.body["facts"]["request"], id.to_string().as_str());
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_up_approve() {
    let mut hook = receiver(0).await;
    let (mut d, _files) = daemon(&hook.url);
    let id = d.user("dave").await.request(&journal()).await.unwrap().request.id;
    // The approvers' notices hang in the receiver...
    hook.next().await;
    eventually("a hanging delivery", async || (hook.hanging.load(Ordering::SeqCst) > 0).then_some(())).await;
    // ...and the approval returns while they still hang.
    let approved = d.user("alice").await.approve(id, None).await.unwrap();
    assert!(hook.hanging.load(Ordering::SeqCst) > 0, "approve returned only after the receiver was given up on");
    assert!(approved.grant.is_some());
}

#[tokio::test]
async fn a_permanent_failure_is_recorded_as_notice_failed() {
    let (_hook, d, _files, key) = bobs_notice_fails().await;
    let failed = eventually("notice_failed in the audit log", async || {
        let events = audit_log(&d).await;
        events.into_iter().find(|e| matches!(&e.change, Change::NoticeFailed { notice, .. } if *notice == key))
    })
    .await;
    let Change::NoticeFailed { about, channel, recipient, error, .. } = failed.change else { unreachable!() };
    assert_eq!((about, channel.as_str(), recipient.as_str()), (seq_of(&d, "request_created").await, "hook", "bob"));
    assert!(error.contains("410"), "{error}");
    assert_eq!(failed.actor, zsa::model::SYSTEM_ACTOR);
    eventually("the delivery marked failed", async || (outbox_row(&d, &key).0 == "failed").then_some(())).await;
}

/// The lines of the file channel that are `trigger`.
fn lines_of(files: &tempfile::TempDir, trigger: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(files.path().join("notices.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|n| n["trigger"] == trigger).collect()
}

#[tokio::test]
async fn grant_expiring_is_sent_once_also_across_a_restart() {
    let hook = receiver(200).await;
    let (mut d, files) = daemon(&hook.url);
    let carol = d.user("carol").await;
    let new = NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() };
    let grant = carol.request(&new).await.unwrap().grant.expect("auto-approved").grant.id;
    // Ten minutes is within the rule's fifteen: the notice is due at once.
    eventually("the grant_expiring notice", async || (!lines_of(&files, "grant_expiring").is_empty()).then_some(())).await;
    d.stop();
    d.spawn();
    // Something later through the same channel, so the sender has surely looked again.
    d.user("carol").await.relinquish(grant).await.unwrap();
    eventually("the grant_ended notice", async || (!lines_of(&files, "grant_ended").is_empty()).then_some(())).await;
    let expiring = lines_of(&files, "grant_expiring");
    assert_eq!(expiring.len(), 1, "grant_expiring was written {} times", expiring.len());
    assert_eq!(expiring[0]["facts"]["grant"], grant.to_string().as_str());
}

/// The CLI's view of the outbox, as `zsa notices --json` prints it, one object a line.
async fn notices_json(d: &mut Daemon, user: Option<&str>, args: &[&str]) -> Vec<serde_json::Value> {
    let out = d.cli(user, &[&["notices", "--json"], args].concat()).await;
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    common::stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn zsa_notices_lists_a_failed_notice_and_zsa_admin_notices_retry_sends_it_again() {
    let (mut hook, mut d, _files, key) = bobs_notice_fails().await;
    let failed = eventually("bob's notice listed as failed", async || {
        notices_json(&mut d, None, &["--failed"]).await.into_iter().find(|n| n["key"] == key.as_str())
    })
    .await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(
        (failed["channel"].as_str(), failed["recipient"].as_str(), failed["trigger"].as_str()),
        (Some("hook"), Some("bob"), Some("request_created"))
    );
    assert!(failed["last_error"].as_str().unwrap().contains("410"), "{failed}");
    assert!(failed.get("notice").is_none(), "the rendered notice is not listed: {failed}");
    let id = failed["id"].as_u64().unwrap().to_string();
    // The table, for people: the failed one with its error.
    let out = d.cli(None, &["notices", "--failed"]).await;
    let table = common::stdout(&out);
    let row = table.lines().find(|l| l.split_whitespace().next() == Some(id.as_str())).unwrap_or_else(|| panic!("no row {id}:\n{table}"));
    assert!(row.contains("failed") && row.contains("bob") && row.contains("410"), "{row}");
    // An auditor may list; a requester may not, and is told who may.
    let erin = d.cli(Some("erin"), &["notices", "--failed"]).await;
    assert_eq!(common::code(&erin), 0, "{}", common::stderr(&erin));
    assert!(common::stdout(&erin).contains("410"));
    let dave = d.cli(Some("dave"), &["notices"]).await;
    assert_eq!(common::code(&dave), 1);
    assert!(common::stderr(&dave).contains("only auditors and admins may list the notices"), "{}", common::stderr(&dave));
    // Only admins retry, and only a failed notice.
    let erin = d.cli(Some("erin"), &["admin", "notices", "retry", &id]).await;
    assert_eq!(common::code(&erin), 1);
    assert!(common::stderr(&erin).contains("only admins may retry"), "{}", common::stderr(&erin));
    // The receiver is back: the retried notice goes out, under the same key, and ends sent.
    hook.status.store(200, Ordering::SeqCst);
    let out = d.cli(None, &["admin", "notices", "retry", &id]).await;
    assert_eq!(common::code(&out), 0, "{}", common::stderr(&out));
    hook.until_key(&key).await;
    // On the record: who sent which notice again, and what it had failed with.
    let events = audit_log(&d).await;
    let retried: Vec<_> = events.iter().filter(|e| e.change.kind() == "notice_retried").collect();
    assert_eq!(retried.len(), 1, "one notice_retried event");
    let Change::NoticeRetried { id: retried_id, notice, channel, recipient, error, .. } = &retried[0].change else { unreachable!() };
    assert_eq!((retried_id.to_string(), notice.as_str(), channel.as_str(), recipient.as_str()), (id.clone(), key.as_str(), "hook", "bob"));
    assert!(error.as_deref().is_some_and(|e| e.contains("410")), "{error:?}");
    assert_eq!(retried[0].actor, common::current_user());
    eventually("the retried notice marked sent", async || (outbox_row(&d, &key).0 == "sent").then_some(())).await;
    let all = notices_json(&mut d, None, &[]).await;
    let sent = all.iter().find(|n| n["key"] == key.as_str()).unwrap();
    assert_eq!(sent["state"], "sent");
    assert!(!notices_json(&mut d, None, &["--failed"]).await.iter().any(|n| n["key"] == key.as_str()), "still listed as failed");
    let again = d.cli(None, &["admin", "notices", "retry", &id]).await;
    assert_eq!(common::code(&again), 1);
    assert!(common::stderr(&again).contains("not failed"), "{}", common::stderr(&again));
    // Refused retries are not on the record.
    let events = audit_log(&d).await;
    assert_eq!(events.iter().filter(|e| e.change.kind() == "notice_retried").count(), 1, "a refused retry was recorded");
    let missing = d.cli(None, &["admin", "notices", "retry", "999999"]).await;
    assert!(common::stderr(&missing).contains("there is no notice 999999"), "{}", common::stderr(&missing));
    // `zsa notices | head -1`: the reader goes first, and zsa ends quietly.
    for args in [&["notices"][..], &["notices", "--json"][..]] {
        let mut child = std::process::Command::new(common::BIN)
            .args(args)
            .env("ZSA_SOCKET", &d.socket)
            .env_remove("ZSA_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "zsa {args:?}: {err}");
        assert!(err.is_empty(), "zsa {args:?} said something on a closed pipe: {err}");
    }
}
