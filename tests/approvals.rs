//! Approvals that must prove something: every event records how its actor authenticated; an
//! approval through a token the requester issued does not count; a task can demand approvals
//! from a person's own login; and approvals that stopped being valid (approver disabled or
//! removed, token revoked) are dropped on the record instead of making a grant.

mod common;

use common::{Daemon, code, current_user, stderr, stdout};
use zsa::client::AuditParams;
use zsa::model::wire::NewRequest;
use zsa::model::{Auth, Change, RequestState};

/// The test account is an admin and also on call, as dave was when the hole was found.
const POLICY: &str = r#"
[groups]
admins = ["{ADMIN}"]
approvers = ["alice", "bob", "carol"]
oncall = ["{ADMIN}", "dave"]
[roles]
admins = ["admins"]
[[tasks]]
name = "export"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
max_duration = "2h"
"#;

fn export() -> NewRequest {
    NewRequest { task: "export".into(), duration_secs: Some(600), ..Default::default() }
}

async fn all_events(d: &Daemon) -> Vec<zsa::model::Event> {
    d.admin().audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap()
}

#[tokio::test]
async fn an_admin_cannot_approve_his_own_request_with_tokens_he_minted() {
    let mut d = Daemon::start_with(POLICY);
    let me = current_user();
    let uid = nix::unistd::geteuid().as_raw();
    let id = d.admin().request(&export()).await.unwrap().request.id;
    // He mints approvers...
    let alice = d.user("alice").await;
    let bob = d.user("bob").await;
    for (name, client) in [("alice", &alice), ("bob", &bob)] {
        let e = client.approve(id, Some("looks fine".into())).await.expect_err("a minted approval must not count");
        assert_eq!(e.code(), "approval_not_accepted", "{name}: {e}");
        assert!(e.to_string().contains("through a token they issued does not count"), "{e}");
    }
    let r = d.admin().show_request(id).await.unwrap().request;
    assert_eq!(r.state, RequestState::Pending);
    assert!(r.approvals.is_empty(), "{:?}", r.approvals);

    // ...and it is all on the record, with how each actor proved who they are.
    let events = all_events(&d).await;
    let created = events.iter().find(|e| matches!(e.change, Change::RequestCreated { .. })).unwrap();
    assert_eq!(created.auth, Some(Auth::Peer { uid }));
    let issued: Vec<_> = events.iter().filter(|e| matches!(e.change, Change::TokenIssued { .. })).collect();
    assert_eq!(issued.len(), 2);
    assert!(issued.iter().all(|e| e.actor == me && e.auth == Some(Auth::Peer { uid })));

    // alice sees who issued a token in her name, in the API and in `zsa whoami`.
    let who = alice.whoami().await.unwrap();
    assert_eq!(who.tokens.len(), 1);
    assert_eq!(who.tokens[0].issued_by, me);
    assert!(matches!(&who.auth, Some(Auth::Token { issued_by, .. }) if *issued_by == me), "{:?}", who.auth);
    let out = d.cli(Some("alice"), &["whoami"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("T1 issued by {me}")), "{}", stdout(&out));

    // Approvals by people the requester did not mint still work, and record how they came.
    let dave_id = d.user("dave").await.request(&export()).await.unwrap().request.id;
    alice.approve(dave_id, None).await.unwrap();
    let out = bob.approve(dave_id, None).await.unwrap();
    let grant = out.grant.expect("two valid approvals make a grant");
    assert_eq!(grant.approved_by, ["alice", "bob"]);
    assert!(matches!(&out.request.approvals[0].auth, Some(Auth::Token { issued_by, .. }) if *issued_by == me));
}

#[tokio::test]
async fn approvals_that_stopped_being_valid_are_dropped_and_the_request_waits() {
    let mut d = Daemon::start_with(POLICY);
    let dave = d.user("dave").await;
    let alice = d.user("alice").await;
    let bob = d.user("bob").await;
    let carol = d.user("carol").await;

    // alice approves, then is disabled: her approval is dropped, and bob's alone makes no grant.
    let id = dave.request(&export()).await.unwrap().request.id;
    alice.approve(id, None).await.unwrap();
    d.admin().disable("alice", Some("left".into())).await.unwrap();
    let out = bob.approve(id, None).await.unwrap();
    assert!(out.grant.is_none(), "a disabled approver's approval made a grant: {:?}", out.grant);
    assert_eq!(out.request.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(), ["bob"]);
    let dropped = all_events(&d).await.into_iter().find_map(|e| match e.change {
        Change::ApprovalDropped { request, approver, why, .. } if request == id => Some((approver, why)),
        _ => None,
    });
    let (approver, why) = dropped.expect("the dropped approval is on the record");
    assert_eq!(approver, "alice");
    // The requester reads this event: it must not tell her what only admins may see (who was disabled).
    assert!(why.contains("no longer valid") && !why.contains("disabled"), "{why}");
    let requester_sees = dave.audit(&AuditParams { limit: Some(1000), ..Default::default() }).await.unwrap();
    assert!(requester_sees.iter().any(|e| matches!(e.change, Change::ApprovalDropped { .. })), "the requester sees the drop");
    assert!(!requester_sees.iter().any(|e| matches!(e.change, Change::UserDisabled { .. })));
    let out = carol.approve(id, None).await.unwrap();
    assert_eq!(out.grant.expect("bob and carol are enough").approved_by, ["bob", "carol"]);
    d.admin().enable("alice").await.unwrap();

    // carol approves, then a reload removes her from the approvers: dropped at the reload.
    let id = dave.request(&NewRequest { duration_secs: Some(300), ..export() }).await;
    let id = match id {
        Ok(o) => o.request.id,
        Err(e) => panic!("{e}"),
    };
    carol.approve(id, None).await.unwrap();
    let policy = std::fs::read_to_string(&d.policy).unwrap().replace(r#"["alice", "bob", "carol"]"#, r#"["alice", "bob"]"#);
    std::fs::write(&d.policy, policy).unwrap();
    d.admin().reload().await.unwrap();
    let r = d.admin().show_request(id).await.unwrap().request;
    assert!(r.approvals.is_empty(), "carol's approval survived the reload: {:?}", r.approvals);
    let out = bob.approve(id, None).await.unwrap();
    assert!(out.grant.is_none());
    assert_eq!(alice.approve(id, None).await.unwrap().grant.expect("alice and bob").approved_by, ["bob", "alice"]);
}

/// A task with `approve_via = ["peer"]` counts only approvals from a person's own Unix login:
/// real accounts connect over the socket; the same people's tokens are refused.
#[tokio::test]
async fn a_task_can_demand_approvals_from_a_persons_own_login() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED a_task_can_demand_approvals_from_a_persons_own_login: it needs root to create Unix accounts");
        return;
    }
    let one = common::Account::create("zap1");
    let two = common::Account::create("zap2");
    let policy = format!(
        r#"
[groups]
admins = ["{{ADMIN}}"]
approvers = ["{a}", "{b}"]
oncall = ["dave"]
[roles]
admins = ["admins"]
[[tasks]]
name = "export"
requesters = ["oncall"]
approval = "manual"
approvers = ["approvers"]
approvals = 2
approve_via = ["peer"]
max_duration = "2h"
"#,
        a = one.name,
        b = two.name
    );
    let mut d = Daemon::start_with(&policy);
    d.open_to_everyone();
    let id = d.user("dave").await.request(&export()).await.unwrap().request.id;
    let token = d.user(&one.name).await;
    let e = token.approve(id, None).await.expect_err("a token approval must not count for this task");
    assert_eq!(e.code(), "approval_not_accepted");
    assert!(e.to_string().contains("approve_via"), "{e}");
    for account in [&one, &two] {
        let out = account.run(&d, &["approve", &id.to_string()]);
        assert_eq!(code(&out), 0, "{} could not approve at their own login: {}", account.name, stderr(&out));
    }
    let r = d.admin().show_request(id).await.unwrap();
    let grant = r.grant.expect("two approvals from own logins make a grant");
    assert_eq!(grant.approved_by, [one.name.clone(), two.name.clone()]);
    assert!(r.request.approvals.iter().all(|a| matches!(a.auth, Some(Auth::Peer { .. }))));
}

/// The chain found in review: an admin mints a token for another admin and mints approvers
/// through it, so the approvers' tokens name the other admin. Tokens do not issue tokens.
#[tokio::test]
async fn a_token_cannot_mint_tokens_so_every_token_names_its_real_issuer() {
    let policy = POLICY.replace(r#"admins = ["{ADMIN}"]"#, r#"admins = ["{ADMIN}", "otto"]"#);
    let mut d = Daemon::start_with(&policy);
    let otto = d.user("otto").await;
    let e = otto.issue_token("alice").await.expect_err("a token must not mint tokens");
    assert_eq!(e.code(), "token_cannot_issue", "{e}");
    assert!(e.to_string().contains("own login"), "{e}");
    let tokens = d.admin().tokens().await.unwrap();
    assert_eq!(tokens.len(), 1, "only otto's own token exists: {tokens:?}");
}
