//! The audit log and the live stream: resume without loss, verification that catches tampering,
//! queries by user and task, CSV export.

mod common;

use std::time::Duration;

use common::{Daemon, code, stderr, stdout, wait_for_event};
use zsa::model::Change;
use zsa::model::wire::NewRequest;

fn restart() -> NewRequest {
    NewRequest { task: "restart".into(), duration_secs: Some(600), ..Default::default() }
}

#[tokio::test]
async fn a_stream_client_that_disconnects_resumes_without_missing_an_event() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let erin = d.user("erin").await;
    let mut feed = erin.events(None).await.unwrap();
    dave.request(&restart()).await.unwrap();
    let first = wait_for_event(&mut feed, Duration::from_secs(5), |e| matches!(e.change, Change::GrantStarted { .. })).await;
    drop(feed); // the client goes away

    // Changes happen while it is gone, then it comes back with the last id it saw.
    let carol = d.user("carol").await;
    for _ in 0..3 {
        let g = carol.request(&restart()).await.unwrap().grant.unwrap();
        carol.relinquish(g.id).await.unwrap();
    }
    let mut resumed = erin.events(Some(first.seq)).await.unwrap();
    let last_seq = d.admin().audit(&Default::default()).await.unwrap().last().unwrap().seq;
    let mut seen = Vec::new();
    while seen.last() != Some(&last_seq) {
        let e = tokio::time::timeout(Duration::from_secs(5), resumed.next()).await.expect("in time").unwrap().unwrap();
        seen.push(e.seq);
    }
    let expected: Vec<u64> = (first.seq + 1..=last_seq).collect();
    assert_eq!(seen, expected, "every event after the last one seen, in order, none twice");

    // And it keeps following live events after the catch-up.
    carol.request(&restart()).await.unwrap();
    let live = wait_for_event(&mut resumed, Duration::from_secs(5), |_| true).await;
    assert_eq!(live.seq, last_seq + 1);
}

#[tokio::test]
async fn the_stream_shows_each_user_only_what_concerns_them() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    let mut daves = dave.events(None).await.unwrap();
    carol.request(&restart()).await.unwrap(); // not dave's business: restart has no approvers
    dave.request(&restart()).await.unwrap();
    let e = wait_for_event(&mut daves, Duration::from_secs(5), |_| true).await;
    assert_eq!(e.change.subject(), Some("dave"), "the first event dave sees is his own");
}

#[tokio::test]
async fn audit_verify_fails_after_a_row_is_changed_behind_the_daemons_back() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    dave.request(&restart()).await.unwrap();
    dave.request(&NewRequest { task: "journal".into(), reason: Some("original reason".into()), ..Default::default() }).await.unwrap();
    let out = d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: "), "{}", stdout(&out));

    let target = d
        .admin()
        .audit(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|e| matches!(e.change, Change::RequestCreated { ref task, .. } if task == "journal"))
        .unwrap();
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    let changed = conn
        .execute("UPDATE events SET body = replace(body, 'original reason', 'a nicer reason') WHERE seq = ?1", [target.seq as i64])
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let out = d.cli(None, &["audit", "verify"]).await;
    assert_eq!(code(&out), 1);
    let msg = stderr(&out);
    assert!(msg.contains(&format!("does NOT verify at event {}", target.seq)) && msg.contains("hash does not match"), "{msg}");
    let report = d.admin().verify().await.unwrap();
    assert_eq!(report.first_bad_seq, Some(target.seq));
}

#[tokio::test]
async fn audit_verify_catches_a_changed_projection_and_a_deleted_event() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let g = dave.request(&restart()).await.unwrap().grant.unwrap();
    let conn = rusqlite::Connection::open(d.db()).unwrap();
    // Someone extends their own grant in the current-state table.
    conn.execute("UPDATE grants SET body = replace(body, '\"state\":\"active\"', '\"state\":\"active\" ') WHERE id = ?1", [g.id.0 as i64])
        .unwrap();
    conn.execute("UPDATE grants SET expires_at = '2099-01-01T00:00:00.000000Z', body = json_set(body, '$.expires_at', '2099-01-01T00:00:00Z') WHERE id = ?1", [g.id.0 as i64]).unwrap();
    let report = d.admin().verify().await.unwrap();
    assert!(!report.ok);
    assert!(report.problem.unwrap().contains("grants row of G1 differs"));

    conn.execute("DELETE FROM events WHERE seq = 2", []).unwrap();
    let report = d.admin().verify().await.unwrap();
    assert_eq!(report.first_bad_seq, Some(2));
    assert!(report.problem.unwrap().contains("event 2 is missing"));
}

#[tokio::test]
async fn audit_queries_filter_and_export() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    dave.request(&restart()).await.unwrap();
    carol
        .request(&NewRequest { task: "journal".into(), reason: Some("=HYPERLINK(\"http://x\")".into()), ..Default::default() })
        .await
        .unwrap();

    let out = d.cli(Some("erin"), &["audit", "--user", "carol", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["actor"] == "carol" || e.to_string().contains("carol")), "{events:?}");

    let out = d.cli(Some("erin"), &["audit", "--task", "journal", "--csv"]).await;
    let csv = stdout(&out);
    assert!(csv.starts_with("seq,at,actor,kind,user,task,target,summary,hash,proved"), "{csv}");
    assert!(csv.contains(",token T"), "each row says how its actor proved who they are: {csv}");
    assert!(csv.contains("request_created"));
    assert!(!csv.contains(",=HYPERLINK") && !csv.contains(",\"=HYPERLINK"), "formulas are defused: {csv}");

    let out = d.cli(Some("erin"), &["audit", "--since", "1h"]).await;
    assert!(stdout(&out).contains("policy_loaded"));
    let out = d.cli(Some("erin"), &["audit", "--since", "2099-01-01"]).await;
    assert!(stdout(&out).contains("no events match"));
    let out = d.cli(Some("erin"), &["audit", "--since", "yesterday"]).await;
    assert_eq!(code(&out), 2, "a bad time is a usage error");

    // A requester sees only what concerns them; verification is for auditors and admins.
    let out = d.cli(Some("dave"), &["audit", "--json"]).await;
    assert!(!stdout(&out).contains("\"requester\":\"carol\""), "{}", stdout(&out));
    let out = d.cli(Some("dave"), &["audit", "verify"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("only auditors and admins"));
}

#[tokio::test]
async fn every_policy_load_is_on_the_record_and_bad_reloads_change_nothing() {
    let mut d = Daemon::start();
    let out = d.cli(None, &["admin", "reload"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let loads: Vec<_> = d
        .admin()
        .audit(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.change, Change::PolicyLoaded { .. }))
        .collect();
    assert_eq!(loads.len(), 2, "the start and the reload");
    let Change::PolicyLoaded { sha256, .. } = &loads[1].change else { unreachable!() };
    let expected = zsa::policy::Policy::load(&d.policy).unwrap().sha256;
    assert_eq!(sha256, &expected);

    // A broken policy is refused with its file and line, and the old one stays in force.
    let good = std::fs::read_to_string(&d.policy).unwrap();
    std::fs::write(
        &d.policy,
        good.replace("approvers = [\"approvers\"]\nmax_duration = \"4h\"", "approvers = [\"nobody\"]\nmax_duration = \"4h\""),
    )
    .unwrap();
    let out = d.cli(None, &["admin", "reload"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("policy.toml:") && stderr(&out).contains("'nobody'"), "{}", stderr(&out));
    assert!(d.user("dave").await.request(&restart()).await.is_ok());

    // SIGHUP reloads too.
    let changed = good.replace("max_duration = \"15m\"", "max_duration = \"20m\"");
    std::fs::write(&d.policy, &changed).unwrap();
    let admin = d.admin();
    let mut feed = admin.events(None).await.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for_event(&mut feed, Duration::from_secs(5), |e| matches!(e.change, Change::PolicyLoaded { .. })).await;
    let restart = d.admin().tasks().await.unwrap().into_iter().find(|t| t.name == "restart").unwrap();
    assert_eq!(restart.max_duration_secs, 1200);
}

#[tokio::test]
async fn paging_the_log_as_a_requester_never_stops_early() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    for _ in 0..3 {
        dave.request(&restart()).await.unwrap();
        for _ in 0..4 {
            let g = carol.request(&restart()).await.unwrap().grant.unwrap();
            carol.relinquish(g.id).await.unwrap();
        }
    }
    // Pages of 2, by the last seq seen: every one of dave's events, each once.
    let mut params = zsa::client::AuditParams { limit: Some(2), ..Default::default() };
    let mut seen = Vec::new();
    loop {
        let page = dave.audit(&params).await.unwrap();
        seen.extend(page.iter().map(|e| e.seq));
        match page.last() {
            Some(last) if page.len() == 2 => params.after = Some(last.seq),
            _ => break,
        }
    }
    let all_of_daves: Vec<u64> = d
        .admin()
        .audit(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "dave" || e.change.subject() == Some("dave") || matches!(e.change, Change::PolicyLoaded { .. }))
        .map(|e| e.seq)
        .collect();
    assert_eq!(seen, all_of_daves);
    assert!(seen.len() >= 7, "{seen:?}");
}
