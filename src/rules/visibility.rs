//! Who may see what, and whether someone holds access now. Admins and auditors see everything;
//! everyone else sees what concerns them and what they approve for.

use chrono::{DateTime, Utc};

use super::{Refusal, State};
use crate::model::wire::CheckAnswer;
use crate::model::{Change, Event, Grant, Request, text};
use crate::policy::Policy;

pub fn request_visible(policy: &Policy, user: &str, r: &Request) -> bool {
    policy.sees_everything(user) || r.requester == user || policy.approves_task(user, &r.task)
}

pub fn grant_visible(policy: &Policy, user: &str, g: &Grant) -> bool {
    policy.sees_everything(user) || g.holder == user || policy.approves_task(user, &g.task)
}

pub fn run_visible(policy: &Policy, user: &str, r: &crate::model::Run) -> bool {
    policy.sees_everything(user) || r.holder == user || policy.approves_task(user, &r.task)
}

pub fn event_visible(policy: &Policy, user: &str, e: &Event) -> bool {
    if policy.sees_everything(user) || e.actor == user || matches!(e.change, Change::PolicyLoaded { .. }) {
        return true;
    }
    if e.change.subject() == Some(user) {
        return true;
    }
    match &e.change {
        Change::TokenIssued { .. } | Change::TokenRevoked { .. } | Change::UserDisabled { .. } | Change::UserEnabled { .. } => false,
        c => c.task().is_some_and(|t| policy.approves_task(user, t)),
    }
}

/// Does `user` hold an active grant for `task` at `now`? `caller` may ask about themselves; about
/// others only if they see everything or approve that task (a gate's service account is an auditor).
pub fn check_access(
    state: &State,
    policy: &Policy,
    caller: &str,
    user: &str,
    task: &str,
    now: DateTime<Utc>,
) -> Result<CheckAnswer, Refusal> {
    if caller != user && !policy.sees_everything(caller) && !policy.approves_task(caller, task) {
        return Err(Refusal::forbidden(
            "may_not_check",
            format!(
                "you may check only your own access; checking '{}' needs the admin or auditor role, or approving '{}'",
                text::inert(user),
                text::inert(task)
            ),
        ));
    }
    let known_task = policy.tasks.contains_key(task);
    let grant = state.held_by(user, task).filter(|g| g.is_active_at(now)).max_by_key(|g| g.expires_at).cloned();
    let disabled = state.is_disabled(user);
    let (allowed, message) = match &grant {
        _ if disabled => (false, format!("'{}' is disabled", text::inert(user))),
        Some(g) => (
            true,
            format!(
                "{} holds {} for '{}' until {} ({} left)",
                g.holder,
                g.id,
                g.task,
                g.expires_at.to_rfc3339(),
                crate::model::duration::clock((g.expires_at - now).num_seconds())
            ),
        ),
        None if !known_task => (false, format!("there is no task '{}' in the policy", text::inert(task))),
        None if let Some(ahead) = state.held_by(user, task).filter(|g| g.is_scheduled_at(now)).min_by_key(|g| g.granted_at) => (
            false,
            format!(
                "not yet: {} holds {} for '{}' from {} (in {}) until {}",
                text::inert(user),
                ahead.id,
                task,
                ahead.granted_at.to_rfc3339(),
                crate::model::duration::clock((ahead.granted_at - now).num_seconds()),
                ahead.expires_at.to_rfc3339()
            ),
        ),
        None => (
            false,
            format!(
                "'{}' holds no active grant for '{}'; ask for one with: zsa request {} --reason \"...\"",
                text::inert(user),
                task,
                task
            ),
        ),
    };
    Ok(CheckAnswer { allowed, user: user.to_string(), task: task.to_string(), grant: grant.filter(|_| !disabled), message, now })
}
