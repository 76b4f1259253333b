//! Grants: list, show, revoke, relinquish, review, extend.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Body, Query, blocking, execute_and_read, grant_views, parse_id, stored_list};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::model::wire::{Comment, ExtendBody, ExtendOutcome, GrantView, Reason};
use crate::model::{Grant, GrantId};
use crate::rules::{self, Command};

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include ended grants.
    #[serde(default)]
    all: bool,
    /// `needed`: only break-glass grants, live or ended, that nobody has reviewed yet.
    review: Option<String>,
}

/// The grant as the caller sees it (with the actions they may take), if they may see it.
fn visible(engine: &Engine, caller: &Caller, id: GrantId, grant: Option<Grant>) -> Result<GrantView, ApiError> {
    let policy = engine.policy();
    let grant = grant
        .filter(|g| rules::grant_visible(&policy, &caller.user, g))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_grant", format!("there is no grant {id} that you may see")))?;
    Ok(grant_views(engine, caller, vec![grant]).remove(0))
}

/// Runs a decision on grant `id` and answers with the grant as written (or else as stored: an
/// ended grant is no longer in memory).
async fn act(engine: &Arc<Engine>, caller: &Caller, id: GrantId, command: Command) -> Result<Json<GrantView>, ApiError> {
    let grant = execute_and_read(engine, caller, command, move |e, written| match written.rows.grants.get(&id) {
        Some(g) => Ok(Some(g.clone())),
        None => Ok(e.stored(|s| s.grant(id))?),
    })
    .await?;
    Ok(Json(visible(engine, caller, id, grant)?))
}

/// Active grants (those whose deadline has not passed) from memory, or every grant with
/// `all=true` from the store.
#[utoipa::path(get, path = "/v1/grants", tag = "grants", params(ListQuery), responses((status = 200, body = Vec<crate::model::wire::GrantView>), crate::daemon::error::Refused))]
pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Json<Vec<GrantView>>, ApiError> {
    match q.review.as_deref() {
        None => {}
        Some("needed") if !q.all => {
            let mut rows = stored_list(&engine, &caller, |s, scope| s.grants(scope), rules::grant_visible).await?;
            rows.retain(|g| g.break_glass && g.review.is_none());
            return Ok(Json(grant_views(&engine, &caller, rows)));
        }
        Some("needed") => return Err(ApiError::bad_request("bad_query", "review=needed already includes ended grants; leave out all")),
        Some(other) => {
            return Err(ApiError::bad_request("bad_query", format!("review must be 'needed', not '{}'", crate::model::text::inert(other))));
        }
    }
    if q.all {
        let rows = stored_list(&engine, &caller, |s, scope| s.grants(scope), rules::grant_visible).await?;
        return Ok(Json(grant_views(&engine, &caller, rows)));
    }
    let now = engine.now();
    let who = caller.actor();
    Ok(Json(engine.read(|s, p| {
        s.active
            .iter()
            .filter_map(|id| s.grants.get(id))
            .filter(|g| g.is_live_at(now) && rules::grant_visible(p, &caller.user, g))
            .map(|g| GrantView { grant: g.clone(), actions: rules::grant_actions(s, p, &who, g, now) })
            .collect()
    })))
}

#[utoipa::path(get, path = "/v1/grants/{id}", tag = "grants", params(("id" = crate::model::GrantId, Path, description = "A grant")), responses((status = 200, body = crate::model::wire::GrantView), crate::daemon::error::Refused))]
pub async fn show(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<GrantView>, ApiError> {
    let id = parse_id(&id)?;
    let e = engine.clone();
    let grant = blocking(move || e.stored(|s| s.grant(id))).await?;
    Ok(Json(visible(&engine, &caller, id, grant)?))
}

#[utoipa::path(post, path = "/v1/grants/{id}/revoke", tag = "grants", params(("id" = crate::model::GrantId, Path, description = "A grant")), request_body = crate::model::wire::Reason, responses((status = 200, body = crate::model::wire::GrantView), crate::daemon::error::Refused))]
pub async fn revoke(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(r): Body<Reason>,
) -> Result<Json<GrantView>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Revoke { grant: id, reason: r.reason }).await
}

#[utoipa::path(post, path = "/v1/grants/{id}/relinquish", tag = "grants", params(("id" = crate::model::GrantId, Path, description = "A grant")), responses((status = 200, body = crate::model::wire::GrantView), crate::daemon::error::Refused))]
pub async fn relinquish(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<GrantView>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Relinquish { grant: id }).await
}

/// The holder asks for more time: the grant as it is now, and the extension request if one must
/// be approved first.
#[utoipa::path(post, path = "/v1/grants/{id}/extend", tag = "grants", params(("id" = crate::model::GrantId, Path, description = "A grant")), request_body = crate::model::wire::ExtendBody, responses((status = 200, body = crate::model::wire::ExtendOutcome), crate::daemon::error::Refused))]
pub async fn extend(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<ExtendBody>,
) -> Result<Json<ExtendOutcome>, ApiError> {
    let id = parse_id(&id)?;
    let command = Command::Extend { grant: id, by_secs: b.by_secs, reason: b.reason };
    let (grant, request) = execute_and_read(&engine, &caller, command, move |e, written| {
        let grant = match written.rows.grants.get(&id) {
            Some(g) => Some(g.clone()),
            None => e.read(|s, _| s.grants.get(&id).cloned()),
        };
        Ok((grant, written.rows.requests.into_values().find(|r| r.extends == Some(id))))
    })
    .await?;
    let grant = visible(&engine, &caller, id, grant)?;
    let request = request.map(|r| {
        let now = engine.now();
        let who = caller.actor();
        engine.read(|s, p| rules::request_view(s, p, &who, r, now))
    });
    Ok(Json(ExtendOutcome { grant, request }))
}

#[utoipa::path(post, path = "/v1/grants/{id}/review", tag = "grants", params(("id" = crate::model::GrantId, Path, description = "A grant")), request_body = crate::model::wire::Comment, responses((status = 200, body = crate::model::wire::GrantView), crate::daemon::error::Refused))]
pub async fn review(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(c): Body<Comment>,
) -> Result<Json<GrantView>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Review { grant: id, comment: c.comment }).await
}
