//! One store story, the same test code on each backend: the real daemon on SQLite (its default)
//! and on the machine's real PostgreSQL (a database of the test's own), driven through the real
//! client and CLI. Requests, approvals, denials, grants, a run, tokens, a disabled user, a
//! restart that loads it all back, audit queries, `verify`, a row edited behind the daemon's
//! back caught at start and rebuilt from the log, and an edited event that nothing is rebuilt from.

mod common;

use common::postgres::PgDatabase;
use common::{Daemon, code, stderr, stdout};
use zsa::client::AuditParams;
use zsa::model::wire::NewRequest;
use zsa::model::{Change, GrantId};

const RUN_TASK: &str = r#"
[[tasks]]
name = "echo"
requesters = ["oncall"]
approval = "auto"
max_duration = "15m"
run = ["/bin/echo", "hello", "{name}"]
timeout = "30s"
[tasks.params.name]
pattern = "[a-z0-9.-]{1,32}"
"#;

/// Where the daemon keeps its state, and how a test reaches behind its back.
enum Backend {
    Sqlite,
    Postgres(PgDatabase),
}

impl Backend {
    fn args(&self) -> Vec<String> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Postgres(db) => vec!["--store".into(), db.url.clone()],
        }
    }

    /// Runs `statement` on the daemon's database directly, as someone with access to it could.
    fn tamper(&self, d: &Daemon, statement: &str) {
        let changed = match self {
            Backend::Sqlite => rusqlite::Connection::open(d.db()).unwrap().execute(statement, []).unwrap() as u64,
            Backend::Postgres(db) => db.execute(statement),
        };
        assert!(changed >= 1, "{statement} changed nothing");
    }
}

async fn story(backend: Backend) {
    let policy = format!("{}{RUN_TASK}", common::POLICY);
    let mut d = Daemon::start_with_args(&policy, &[], &backend.args());
    let (dave, alice, bob, carol) = (d.user("dave").await, d.user("alice").await, d.user("bob").await, d.user("carol").await);

    // A one-approver grant, a two-approver grant, a denial.
    let journal = NewRequest {
        task: "journal".into(),
        duration_secs: Some(1800),
        reason: Some("mail flow".into()),
        ticket: Some("INC-7".into()),
        ..Default::default()
    };
    let r1 = dave.request(&journal).await.unwrap().request.id;
    let g1 = alice.approve(r1, Some("ok".into())).await.unwrap().grant.expect("one approval grants journal").id;
    let r2 = dave.request(&NewRequest { task: "export".into(), duration_secs: Some(600), ..Default::default() }).await.unwrap().request.id;
    assert!(alice.approve(r2, None).await.unwrap().grant.is_none(), "export needs two approvals");
    let g2 = bob.approve(r2, None).await.unwrap().grant.expect("the second approval grants export").id;
    let r3 = carol.request(&journal).await.unwrap().request.id;
    alice.deny(r3, Some("not now".into())).await.unwrap();

    // A run, its output streamed back through the CLI.
    let r4 = dave.request(&NewRequest { task: "echo".into(), ..Default::default() }).await.unwrap().request.id;
    let out = d.cli(Some("dave"), &["run", "echo", "--param", "name=story"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello story"), "{}", stdout(&out));

    // A token issued and revoked; a user disabled.
    let admin = d.admin();
    let erin = admin.issue_token("erin").await.unwrap();
    admin.revoke_token(erin.id).await.unwrap();
    let erin = zsa::client::Client::new(&d.socket, Some(erin.token)).unwrap();
    assert!(erin.whoami().await.is_err(), "a revoked token is refused");
    admin.disable("carol", Some("left the team".into())).await.unwrap();
    assert!(carol.request(&journal).await.is_err(), "a disabled user cannot ask");

    // Everything comes back after a restart, from the store.
    d.stop();
    d.spawn();
    let admin = d.admin();
    let active: Vec<GrantId> = admin.grants(false).await.unwrap().iter().map(|g| g.id).collect();
    assert!(active.contains(&g1) && active.contains(&g2), "the grants are live after a restart: {active:?}");
    assert!(carol.request(&journal).await.is_err(), "carol is still disabled after a restart");
    assert!(erin.whoami().await.is_err(), "the revoked token is still refused after a restart");
    assert!(dave.check("journal", None).await.unwrap().allowed);
    // A person's own history, newest first, a page at a time, read from the store.
    let newest = dave.my_requests(None, 2).await.unwrap();
    let older = dave.my_requests(Some(newest[newest.len() - 1].id), 2).await.unwrap();
    let paged: Vec<_> = newest.iter().chain(&older).map(|r| r.id).collect();
    assert_eq!(paged, [r4, r2, r1], "dave's own, in pages that join without a gap");
    assert!(alice.my_requests(None, 100).await.unwrap().is_empty(), "alice asked for nothing herself");
    let denied = admin.show_request(r3).await.unwrap().request;
    assert_eq!(denied.state.as_str(), "denied");
    let runs = admin.audit(&AuditParams { user: Some("dave".into()), limit: Some(1000), ..Default::default() }).await.unwrap();
    assert!(runs.iter().any(|e| matches!(e.change, Change::RunEnded { .. })), "dave's run is in the audit log");
    assert!(runs.iter().all(|e| e.actor == "dave" || e.change.subject() == Some("dave")), "only dave's events");
    let report = admin.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.events >= 15, "{report:?}");
    if let Backend::Postgres(_) = backend {
        assert!(!d.db().exists(), "a PostgreSQL-backed daemon keeps no SQLite file");
    }

    // A grant row edited behind the daemon's back stops the next start, named, until rebuilt.
    d.stop();
    backend.tamper(&d, r#"UPDATE grants SET body = replace(body, '"holder":"dave"', '"holder":"mallory"') WHERE id = 1"#);
    let out = d.start_refused(&[]).expect("the daemon must refuse to serve an edited grant");
    assert!(stderr(&out).contains("the grants row of G1 does not match the log"), "{}", stderr(&out));
    assert!(d.start_refused(&["--rebuild-from-log"]).is_none(), "the rebuild did not start the daemon");
    d.spawn();
    let admin = d.admin();
    assert_eq!(admin.show_grant(g1).await.unwrap().holder, "dave", "the rebuild took the log's word");
    let events = admin.audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap();
    assert!(events.iter().any(|e| matches!(&e.change, Change::StateRebuilt { problem } if problem.contains("grants row of G1"))));
    assert!(admin.verify().await.unwrap().ok);

    // An event edited in place breaks the chain: the daemon will not serve from it, and says which.
    d.stop();
    backend.tamper(&d, "UPDATE events SET body = replace(body, 'mail flow', 'mail flaw') WHERE seq = (SELECT MIN(seq) FROM events WHERE body LIKE '%mail flow%')");
    let out = d.start_refused(&[]).expect("the daemon must refuse to serve from an edited event");
    assert!(stderr(&out).contains("(of R1) was changed after it was written"), "{}", stderr(&out));
    let out = d.start_refused(&["--rebuild-from-log"]).expect("a broken log is not rebuilt from");
    assert!(stderr(&out).contains("the log itself does not verify at event"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_story_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_story_on_postgresql() {
    let Some(db) = PgDatabase::create() else { return };
    story(Backend::Postgres(db)).await;
}
