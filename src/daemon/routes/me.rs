//! Who am I, what may I ask for, and do I (or someone) hold access now.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::Query;
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::model::wire::{CheckAnswer, TaskView, WhoAmI};
use crate::rules;

#[utoipa::path(get, path = "/v1/whoami", tag = "me", responses((status = 200, body = crate::model::wire::WhoAmI), crate::daemon::error::Refused))]
pub async fn whoami(State(engine): State<Arc<Engine>>, caller: Caller) -> Json<WhoAmI> {
    let now = engine.now();
    let tokens = super::admin::token_views(&engine, |t| t.user == caller.user);
    Json(engine.read(|s, p| WhoAmI {
        user: caller.user.clone(),
        roles: p.roles_of(&caller.user),
        groups: p.groups_of(&caller.user),
        disabled: s.is_disabled(&caller.user),
        via: caller.via().to_string(),
        auth: Some(caller.auth.clone()),
        tokens,
        now,
        policy_sha256: p.sha256.clone(),
    }))
}

/// The tasks the caller may ask for or approve; admins and auditors see them all.
#[utoipa::path(get, path = "/v1/tasks", tag = "me", responses((status = 200, body = Vec<crate::model::wire::TaskView>), crate::daemon::error::Refused))]
pub async fn tasks(State(engine): State<Arc<Engine>>, caller: Caller) -> Json<Vec<TaskView>> {
    let user = &caller.user;
    let now = engine.now();
    Json(engine.read(|s, policy| {
        policy
            .tasks
            .values()
            .filter_map(|t| {
                let eligible_from = policy.eligible_from(user, t, now);
                let shown =
                    policy.sees_everything(user) || policy.may_request(user, t) || policy.may_approve(user, t) || eligible_from.is_some();
                shown.then_some((t, eligible_from))
            })
            .map(|(t, eligible_from)| TaskView {
                eligible_from,
                approvers_for_you: rules::approvers_for(s, policy, t, user),
                window_now: t.windows.as_ref().map(|w| match (w.open_at(now), w.next_open(now)) {
                    (Some((_, closes)), _) => format!("open until {}", w.local(closes)),
                    (None, Some(next)) => format!("closed; next opens {}", w.local(next)),
                    (None, None) => "closed".into(),
                }),
                ..policy.task_view(t, user)
            })
            .collect()
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    task: String,
    user: Option<String>,
}

/// Answers from memory: other tools may gate every command on this.
#[utoipa::path(get, path = "/v1/check", tag = "me", params(CheckQuery), responses((status = 200, body = crate::model::wire::CheckAnswer), crate::daemon::error::Refused))]
pub async fn check(State(engine): State<Arc<Engine>>, caller: Caller, Query(q): Query<CheckQuery>) -> Result<Json<CheckAnswer>, ApiError> {
    // Another daemon may have revoked the grant since: memory that stopped following a shared
    // store does not say yes.
    if let Some(behind) = engine.behind() {
        let mut refused = ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "store_behind",
            format!(
                "this daemon has not been able to follow the store it shares with other daemons for {} s, so it cannot vouch that a grant still holds \
                 (another daemon may have ended it); nothing is allowed meanwhile. Ask again shortly, or ask another daemon; this daemon's log says why",
                behind.as_secs()
            ),
        );
        refused.retry_after = Some(1);
        return Err(refused);
    }
    let now = engine.now();
    let user = q.user.unwrap_or_else(|| caller.user.clone());
    let answer = engine.read(|s, p| rules::check_access(s, p, &caller.user, &user, &q.task, now))?;
    Ok(Json(answer))
}
