//! Every request and grant the daemon returns carries what its viewer may do with it now, and why
//! not: two people see the same row with different actions, and what a row lists is what the
//! daemon then does when the action is attempted.

mod common;

use common::{Daemon, POLICY, current_user};
use zsa::model::wire::{Actions, NewRequest, RowAction};

fn journal() -> NewRequest {
    NewRequest { task: "journal".into(), reason: Some("mail flow".into()), ..Default::default() }
}

/// The code of the refusal a row lists for `action`, or "allowed".
fn answer(actions: &Actions, action: RowAction) -> String {
    let a = actions.0.iter().find(|a| a.action == action).unwrap_or_else(|| panic!("{} is not listed: {actions:?}", action.as_str()));
    if a.allowed { "allowed".into() } else { a.code.clone().unwrap() }
}

#[tokio::test]
async fn two_viewers_see_one_request_with_their_own_actions_and_the_daemon_keeps_to_them() {
    let mut d = Daemon::start();
    let carol = d.user("carol").await;
    let alice = d.user("alice").await;

    // carol approves journal requests, but not her own.
    let asked = carol.request(&journal()).await.unwrap();
    let id = asked.request.id;
    assert_eq!(answer(&asked.request.actions, RowAction::Approve), "own_request", "the answer to the request itself says so");
    let mine = &carol.requests(false).await.unwrap()[0];
    assert_eq!((mine.id, answer(&mine.actions, RowAction::Cancel)), (id, "allowed".to_string()));
    for action in [RowAction::Approve, RowAction::Deny] {
        assert_eq!(answer(&mine.actions, action), "own_request");
    }
    let theirs = &alice.requests(false).await.unwrap()[0];
    assert_eq!(theirs.id, id);
    assert_eq!(
        [RowAction::Approve, RowAction::Deny, RowAction::Cancel].map(|a| answer(&theirs.actions, a)),
        ["allowed", "allowed", "not_requester"].map(String::from)
    );

    // What carol's row said is, word for word, what the daemon answers when she tries anyway.
    let listed = mine.actions.check(RowAction::Approve).unwrap_err();
    let tried = carol.approve(id, None).await.unwrap_err();
    assert_eq!((tried.code(), tried.to_string().contains(&listed)), ("own_request", true), "{tried} / {listed}");
    assert!(listed.contains("ask another approver of 'journal': alice, bob"), "{listed}");

    // The form's list of approvers for carol leaves carol out.
    let tasks = carol.tasks().await.unwrap();
    let task = tasks.iter().find(|t| t.name == "journal").unwrap();
    assert_eq!(task.approvers_for_you, ["alice", "bob"]);
    assert!(task.approver_users.contains(&"carol".to_string()));

    // alice approves: the answer carries her actions after the change, on the request and its grant.
    let approved = alice.approve(id, None).await.unwrap();
    assert_eq!(answer(&approved.request.actions, RowAction::Approve), "not_pending");
    let grant = approved.grant.expect("one approval makes the grant");
    assert_eq!(
        [RowAction::Revoke, RowAction::Relinquish, RowAction::Review].map(|a| answer(&grant.actions, a)),
        ["allowed", "not_holder", "not_break_glass"].map(String::from)
    );
    // The holder's own listing of the grant: hers to give up.
    let held = &carol.grants(false).await.unwrap()[0];
    assert_eq!((held.id, answer(&held.actions, RowAction::Relinquish)), (grant.id, "allowed".to_string()));
    // The admin (who approves nothing here) may revoke it, and history listings carry actions too.
    let admin = d.admin();
    let everything = admin.requests(true).await.unwrap();
    assert_eq!(answer(&everything[0].actions, RowAction::Approve), "not_approver");
    assert_eq!(answer(&admin.show_grant(grant.id).await.unwrap().actions, RowAction::Revoke), "allowed");
    alice.relinquish(grant.id).await.unwrap_err();
    carol.relinquish(grant.id).await.unwrap();
    let ended = &carol.grants(true).await.unwrap()[0];
    assert_eq!(answer(&ended.actions, RowAction::Relinquish), "grant_ended");
}

/// A policy reload changes what may be done; the rows say so at once (the console loads them
/// again on the policy_loaded event, which everyone hears).
#[tokio::test]
async fn a_reloaded_policy_changes_the_actions_rows_carry() {
    let mut d = Daemon::start();
    let dave = d.user("dave").await;
    let alice = d.user("alice").await;
    let id = dave.request(&journal()).await.unwrap().request.id;
    assert_eq!(answer(&alice.show_request(id).await.unwrap().request.actions, RowAction::Approve), "allowed");
    // journal now takes approvals only from a person's own login, and alice came with a token.
    let policy = POLICY.replace("{ADMIN}", &current_user());
    let stricter = policy.replace(r#"ticket_pattern = "INC-[0-9]+""#, "ticket_pattern = \"INC-[0-9]+\"\napprove_via = [\"peer\"]");
    assert_ne!(policy, stricter);
    std::fs::write(&d.policy, stricter).unwrap();
    d.admin().reload().await.unwrap();
    let row = &alice.requests(false).await.unwrap()[0];
    assert_eq!((row.id, answer(&row.actions, RowAction::Approve)), (id, "approval_not_accepted".to_string()));
    assert_eq!(answer(&row.actions, RowAction::Deny), "allowed", "a denial needs no proof");
}
