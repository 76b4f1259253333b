//! What a viewer may do with a request or grant now, and why not. The answer comes from the very
//! checks `decide` runs when the action is attempted (before it looks at what was typed with it),
//! so a listing's `actions` and the daemon's answer to the attempt cannot disagree. No I/O.

use chrono::{DateTime, Utc};

use super::{Refusal, State, decide};
use crate::model::wire::{ActionView, Actions, RequestView, RowAction};
use crate::model::{Actor, Grant, Request};
use crate::policy::{Policy, Task};

/// The row an action is taken on.
#[derive(Clone, Copy, Debug)]
pub enum Row<'a> {
    Request(&'a Request),
    Grant(&'a Grant),
}

/// Ok if `who` may take `action` on `row` at `now`, else the refusal the attempt would get (given
/// a comment or reason where one is needed).
pub fn permits(state: &State, policy: &Policy, who: &Actor, action: RowAction, row: Row<'_>, now: DateTime<Utc>) -> Result<(), Refusal> {
    decide::not_disabled(state, who)?;
    let actor = who.user.as_str();
    match (action, row) {
        (RowAction::Approve, Row::Request(r)) => decide::may_approve(state, policy, who, r, now).map(drop),
        (RowAction::Deny, Row::Request(r)) => decide::may_deny(state, policy, actor, r, now),
        (RowAction::Cancel, Row::Request(r)) => decide::may_cancel(state, policy, actor, r, now),
        (RowAction::Revoke, Row::Grant(g)) => decide::may_revoke(policy, actor, g, now),
        (RowAction::Relinquish, Row::Grant(g)) => decide::may_relinquish(policy, actor, g, now),
        (RowAction::Review, Row::Grant(g)) => decide::may_review(policy, who, g),
        (RowAction::Extend, Row::Grant(g)) => decide::may_extend(state, policy, actor, g, now).map(drop),
        (action, Row::Request(r)) => {
            Err(Refusal::invalid("wrong_row", format!("{} is a request, and {} is done to grants", r.id, action.as_str())))
        }
        (action, Row::Grant(g)) => {
            Err(Refusal::invalid("wrong_row", format!("{} is a grant, and {} is done to requests", g.id, action.as_str())))
        }
    }
}

fn view(action: RowAction, answer: Result<(), Refusal>) -> ActionView {
    match answer {
        Ok(()) => ActionView { action, allowed: true, code: None, why: None, sign_with: None },
        Err(r) => ActionView { action, allowed: false, code: Some(r.code.to_string()), why: Some(r.message), sign_with: None },
    }
}

/// A request as `who` sees it: with what they may do, and how far its stages got.
pub fn request_view(state: &State, policy: &Policy, who: &Actor, request: Request, now: DateTime<Utc>) -> RequestView {
    let stages = policy.tasks.get(&request.task).and_then(|t| decide::stage_progress(t, &request));
    RequestView { actions: request_actions(state, policy, who, &request, now), request, stages }
}

/// Approve, deny and cancel on `request`, each allowed or not for `who` at `now`; an approval
/// that must be signed says with which of the viewer's keys.
pub fn request_actions(state: &State, policy: &Policy, who: &Actor, request: &Request, now: DateTime<Utc>) -> Actions {
    let signed = policy.tasks.get(&request.task).is_some_and(|t| decide::signatures_needed(t, request));
    Actions(
        RowAction::ON_REQUEST
            .iter()
            .map(|&a| {
                let mut v = view(a, permits(state, policy, who, a, Row::Request(request), now));
                if a == RowAction::Approve && signed && v.allowed {
                    v.sign_with = Some(policy.people.get(&who.user).map(|p| p.key_fingerprints()).unwrap_or_default());
                }
                v
            })
            .collect(),
    )
}

/// Revoke, relinquish and review on `grant`, each allowed or not for `who` at `now`.
pub fn grant_actions(state: &State, policy: &Policy, who: &Actor, grant: &Grant, now: DateTime<Utc>) -> Actions {
    Actions(RowAction::ON_GRANT.iter().map(|&a| view(a, permits(state, policy, who, a, Row::Grant(grant), now))).collect())
}

/// Who could approve a request of `requester`'s for `task`: its approvers but the requester
/// (nobody approves their own) and anyone disabled.
pub fn approvers_for(state: &State, policy: &Policy, task: &Task, requester: &str) -> Vec<String> {
    policy.approver_users(task).into_iter().filter(|u| u != requester && !state.is_disabled(u)).collect()
}

/// Who could approve `request` now: on a staged task, the approvers of the stage it waits at
/// who have not approved it at another; else its task's approvers (`approvers_for`).
pub fn approvers_now(state: &State, policy: &Policy, task: &Task, request: &crate::model::Request) -> Vec<String> {
    let everyone = approvers_for(state, policy, task, &request.requester);
    match super::decide::waiting_stage(state, policy, task, request) {
        None => everyone,
        Some((_, stage)) => everyone.into_iter().filter(|u| policy.approves_at(u, stage) && !request.approved_by(u)).collect(),
    }
}
