//! The life of requests and grants, end to end: the real daemon binary, the real client and CLI.

mod common;

use std::time::Duration;

use common::{Daemon, code, stderr, stdout, wait_for_event};
use zsa::model::wire::NewRequest;
use zsa::model::{Change, GrantState, RequestState};

fn ask(task: &str, secs: Option<u64>, reason: Option<&str>) -> NewRequest {
    NewRequest { task: task.into(), duration_secs: secs, reason: reason.map(Into::into), ..Default::default() }
}

#[tokio::test]
async fn the_whole_life_of_a_manual_request() {
    let mut d = Daemon::start();
    let alice = d.user("alice").await;
    let mut feed = alice.events(None).await.unwrap();

    // carol asks through the CLI; the JSON carries id, task, state and requester.
    let out = d.cli(Some("carol"), &["request", "journal", "--for", "2s", "--reason", "mail flow stuck", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "one JSON object: {}", stdout(&out));
    let out_json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let req = &out_json["request"];
    assert!(out_json["grant"].is_null());
    assert_eq!(
        (req["id"].as_str(), req["task"].as_str(), req["state"].as_str(), req["requester"].as_str()),
        (Some("R1"), Some("journal"), Some("pending"), Some("carol"))
    );

    // carol is an approver of journal too, yet may not approve her own request.
    let out = d.cli(Some("carol"), &["approve", "R1"]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("nobody may approve their own request"), "{}", stderr(&out));
    // Scripts that asked for JSON get the refusal as JSON, with the API's code.
    let out = d.cli(Some("carol"), &["approve", "R1", "--json"]).await;
    assert_eq!(code(&out), 1);
    let refusal: serde_json::Value = serde_json::from_str(stderr(&out).trim()).expect("a JSON error on stderr");
    assert_eq!(refusal["error"]["code"], "own_request");
    assert!(refusal["error"]["message"].as_str().unwrap().contains("nobody may approve their own request"));

    let out = d.cli(Some("carol"), &["check", "journal"]).await;
    assert_eq!(code(&out), 1, "no access before approval");
    assert!(stderr(&out).contains("holds no active grant"), "{}", stderr(&out));

    let out = d.cli(Some("alice"), &["approve", "R1", "--comment", "go ahead", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let approved: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let grant = &approved["grant"];
    assert_eq!(approved["request"]["state"], "approved");
    assert_eq!((grant["id"].as_str(), grant["holder"].as_str(), grant["state"].as_str()), (Some("G1"), Some("carol"), Some("active")));
    assert!(chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap()).is_ok());

    let out = d.cli(Some("carol"), &["check", "journal"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("allowed:"), "{}", stdout(&out));

    // The daemon ends it on time with nobody asking.
    let expired = wait_for_event(&mut feed, Duration::from_secs(5), |e| matches!(e.change, Change::GrantExpired { .. })).await;
    let Change::GrantExpired { deadline, .. } = expired.change else { unreachable!() };
    assert!((expired.at - deadline).num_milliseconds() < 1000, "ended within a second of its deadline");

    let out = d.cli(Some("carol"), &["check", "journal"]).await;
    assert_eq!(code(&out), 1);
    let g = alice.show_grant("G1".parse().unwrap()).await.unwrap();
    assert_eq!(g.state, GrantState::Expired);
    assert_eq!(g.ended.unwrap().at, g.expires_at);
}

#[tokio::test]
async fn an_auto_task_is_granted_at_once() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let o = dave.request(&ask("restart", Some(600), None)).await.unwrap();
    assert_eq!(o.request.state, RequestState::Approved);
    let g = o.grant.unwrap();
    assert_eq!(g.approved_by, vec![zsa::model::POLICY_APPROVER]);
    assert!(dave.check("restart", None).await.unwrap().allowed);
    let out = d.cli(Some("dave"), &["grants", "--json"]).await;
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(line["holder"], "dave");
}

#[tokio::test]
async fn a_two_approver_task_needs_two_distinct_people() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let alice = d.user("alice").await;
    let bob = d.user("bob").await;
    let id = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    let o = alice.approve(id, None).await.unwrap();
    assert_eq!((o.request.state, o.request.approvals.len()), (RequestState::Pending, 1));
    let err = alice.approve(id, None).await.unwrap_err();
    assert_eq!(err.code(), "already_approved");
    assert!(!dave.check("export", None).await.unwrap().allowed);
    let o = bob.approve(id, Some("second pair of eyes".into())).await.unwrap();
    assert_eq!(o.request.state, RequestState::Approved);
    assert_eq!(o.grant.unwrap().approved_by, vec!["alice", "bob"]);
    assert!(dave.check("export", None).await.unwrap().allowed);
}

#[tokio::test]
async fn a_deny_ends_the_request() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let bob = d.user("bob").await;
    let id = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    let out = d.cli(Some("bob"), &["deny", &id.to_string()]).await;
    assert_eq!(code(&out), 2, "a missing comment is a usage error");
    assert!(stderr(&out).contains("--comment is required"), "{}", stderr(&out));
    let o = bob.deny(id, Some("no ticket".into())).await.unwrap();
    assert_eq!(o.request.state, RequestState::Denied);
    assert_eq!(o.request.comment.as_deref(), Some("no ticket"));
    let alice = d.user("alice").await;
    assert_eq!(alice.approve(id, None).await.unwrap_err().code(), "not_pending");
}

#[tokio::test]
async fn a_requester_cancels_a_pending_request() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let carol = d.user("carol").await;
    let id = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    assert_eq!(carol.cancel(id).await.unwrap_err().code(), "not_requester");
    let out = d.cli(Some("dave"), &["cancel", &id.to_string()]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("cancelled"));
    assert!(dave.requests(false).await.unwrap().is_empty());
}

#[tokio::test]
async fn approvers_revoke_and_holders_relinquish() {
    let mut d = Daemon::start();
    let carol = d.user("carol").await;
    let bob = d.user("bob").await;
    let id = carol.request(&ask("journal", None, Some("r"))).await.unwrap().request.id;
    bob.approve(id, None).await.unwrap();
    let g = id.grant();
    let out = d.cli(Some("bob"), &["revoke", &g.to_string()]).await;
    assert_eq!(code(&out), 2, "a missing reason is a usage error");
    assert!(stderr(&out).contains("--reason is required"), "{}", stderr(&out));
    let revoked = bob.revoke(g, Some("work is done".into())).await.unwrap();
    assert_eq!(revoked.state, GrantState::Revoked);
    assert!(!carol.check("journal", None).await.unwrap().allowed);

    let dave = d.user("dave").await;
    let g = dave.request(&ask("restart", None, None)).await.unwrap().grant.unwrap().id;
    assert_eq!(carol.relinquish(g).await.unwrap_err().code(), "no_such_grant", "not hers to see, so nothing about it is told");
    assert_eq!(dave.relinquish(g).await.unwrap().state, GrantState::Relinquished);
    assert_eq!(dave.relinquish(g).await.unwrap_err().code(), "grant_ended");
}

#[tokio::test]
async fn break_glass_is_active_at_once_and_reviewed_later() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let alice = d.user("alice").await;
    let o = dave.request(&ask("glass", None, None)).await.unwrap();
    let g = o.grant.unwrap();
    assert!(g.break_glass && g.needs_review());
    assert!(dave.check("glass", None).await.unwrap().allowed);
    let out = d.cli(Some("alice"), &["grants"]).await;
    assert!(stdout(&out).contains("UNREVIEWED"), "{}", stdout(&out));
    let out = d.cli(Some("alice"), &["review", &g.id.to_string(), "--comment", "session log looks fine"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let g = alice.show_grant(g.id).await.unwrap();
    assert_eq!(g.review.unwrap().by, "alice");
}

#[tokio::test]
async fn a_disabled_user_loses_everything_at_once() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let pending = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    let grant = dave.request(&ask("restart", None, None)).await.unwrap().grant.unwrap().id;
    let out = d.cli(None, &["admin", "disable", "dave", "--reason", "laptop stolen"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let admin = d.admin();
    assert_eq!(admin.show_request(pending).await.unwrap().request.state, RequestState::Cancelled);
    assert_eq!(admin.show_grant(grant).await.unwrap().state, GrantState::Revoked);
    let err = dave.request(&ask("restart", None, None)).await.unwrap_err();
    assert_eq!(err.code(), "user_disabled");
    assert!(!admin.check("restart", Some("dave")).await.unwrap().allowed);
    let me = dave.whoami().await.unwrap();
    assert!(me.disabled, "a disabled user can still ask who they are");
    d.cli(None, &["admin", "enable", "dave"]).await;
    assert!(dave.request(&ask("restart", None, None)).await.unwrap().grant.is_some());
}

#[tokio::test]
async fn state_and_deadlines_survive_a_crash() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let short = dave.request(&ask("restart", Some(1), None)).await.unwrap().grant.unwrap();
    let long = dave.request(&ask("glass", Some(3600), None)).await.unwrap().grant.unwrap();
    let pending = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    d.kill9();
    // Wait, with the daemon down, until the short grant's deadline has passed.
    let wait = (short.expires_at - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200);
    tokio::time::sleep(wait).await;
    d.spawn();
    let admin = d.admin();
    let g = admin.show_grant(short.id).await.unwrap();
    assert_eq!(g.state, GrantState::Expired, "ended on start");
    assert_eq!(g.ended.unwrap().at, short.expires_at, "stamped with its deadline, not the restart time");
    assert_eq!(admin.show_grant(long.id).await.unwrap().state, GrantState::Active);
    assert_eq!(admin.show_request(pending).await.unwrap().request.state, RequestState::Pending);
    // Acknowledged tokens survived too: dave's token still works.
    assert_eq!(dave.whoami().await.unwrap().user, "dave");
    assert!(admin.verify().await.unwrap().ok);
}

#[tokio::test]
async fn pending_requests_expire_with_nobody_connected() {
    let mut d = Daemon::start_with(&common::POLICY.replace("pending_ttl = \"1h\"", "pending_ttl = \"1s\""));
    let dave = d.user("dave").await;
    let admin = d.admin();
    let mut feed = admin.events(None).await.unwrap();
    let id = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    wait_for_event(&mut feed, Duration::from_secs(5), |e| matches!(e.change, Change::RequestExpired { .. })).await;
    let r = admin.show_request(id).await.unwrap().request;
    assert_eq!(r.state, RequestState::Expired);
    assert_eq!(r.decided_at, Some(r.pending_until));
}

/// The daemon keeps only what is live in memory and starts from the store's current rows; history
/// must come back whole after a restart, and refusals about long-ended things still say what
/// became of them.
#[tokio::test]
async fn history_is_whole_after_a_restart_though_memory_holds_only_what_is_live() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let alice = d.user("alice").await;
    let admin = d.admin();
    let denied = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    let answer = alice.deny(denied, Some("not today".into())).await.unwrap();
    let shown = admin.show_request(denied).await.unwrap();
    assert_eq!((answer.request, answer.grant), (shown.request, shown.grant), "a write answers with the rows as stored");
    let given_up = dave.request(&ask("restart", None, None)).await.unwrap().grant.unwrap().id;
    let answer = dave.relinquish(given_up).await.unwrap();
    assert_eq!(answer, admin.show_grant(given_up).await.unwrap());
    let glass = dave.request(&ask("glass", None, None)).await.unwrap().grant.unwrap().id;
    dave.relinquish(glass).await.unwrap();
    let pending = dave.request(&ask("export", None, None)).await.unwrap().request.id;
    let active = dave.request(&ask("restart", None, None)).await.unwrap().grant.unwrap().id;
    let before = (admin.requests(true).await.unwrap(), admin.grants(true).await.unwrap(), alice.requests(true).await.unwrap());
    assert_eq!(before.0.len(), 5);

    assert!(d.stop().success());
    d.spawn();
    // New clients: the old ones' connections went with the old process.
    let (dave, alice, admin) = (d.user("dave").await, d.user("alice").await, d.admin());
    let after = (admin.requests(true).await.unwrap(), admin.grants(true).await.unwrap(), alice.requests(true).await.unwrap());
    assert_eq!(after, before, "the same history, read from the store");
    assert_eq!(admin.requests(false).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), vec![pending]);
    assert_eq!(admin.grants(false).await.unwrap().iter().map(|g| g.id).collect::<Vec<_>>(), vec![active]);
    assert!(dave.check("restart", None).await.unwrap().allowed);

    // Ended things are refused with what became of them, exactly as before the restart.
    let err = alice.approve(denied, None).await.unwrap_err();
    assert_eq!(err.code(), "not_pending");
    assert!(err.to_string().contains("already denied by alice"), "{err}");
    assert_eq!(dave.relinquish(given_up).await.unwrap_err().code(), "grant_ended");
    // A break-glass grant is reviewed after it ended, from the store.
    assert_eq!(alice.review(glass, Some("looked at the session".into())).await.unwrap().review.unwrap().by, "alice");
    assert_eq!(alice.review(glass, None).await.unwrap_err().code(), "already_reviewed");
    assert_eq!(admin.show_grant(glass).await.unwrap().review.unwrap().comment.as_deref(), Some("looked at the session"));
    // New ids carry on from history, never reused.
    let next = dave.request(&ask("glass", None, None)).await.unwrap().request.id;
    assert!(before.0.iter().all(|r| r.id < next), "{next} reuses an id");
    assert!(admin.verify().await.unwrap().ok);
}
