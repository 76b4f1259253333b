//! Requests: ask, list, show, approve, deny, cancel.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Body, Query, blocking, execute_and_read, grant_views, parse_id, request_views, stored_list};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::engine::Written;
use crate::daemon::error::ApiError;
use crate::model::wire::{ApproveBody, Comment, NewRequest, Outcome, RequestView};
use crate::model::{Grant, Request, RequestId, RequestState};
use crate::rules::{self, Command};
use crate::store::StoreError;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending` (default): waiting for a decision; `live`: pending, or given an active grant;
    /// `mine`: the caller's own, newest first, a page at a time; `all`: every one, oldest first.
    #[serde(default)]
    state: Option<String>,
    /// With `state=mine`: only requests older than this one (the oldest of the page before).
    before: Option<String>,
    /// With `state=mine`: how many at most (default 100, at most 1000).
    limit: Option<u32>,
}

/// A page of a person's own requests when the query does not say how many.
pub const MINE_PAGE: u32 = 100;
/// The most a page of a person's own requests may ask for.
pub const MINE_MOST: u32 = 1000;

/// A request and its grant as stored now (ended ones live only in the store). Blocking.
fn stored(engine: &Engine, id: RequestId) -> Result<(Option<Request>, Option<Grant>), StoreError> {
    engine.stored(|s| {
        let request = s.request(id)?;
        let grant = match request.as_ref().and_then(|r| r.grant) {
            Some(g) => s.grant(g)?,
            None => None,
        };
        Ok((request, grant))
    })
}

/// A request and its grant as a command just wrote them, or else as stored. Blocking.
fn written_or_stored(engine: &Engine, written: &Written, id: RequestId) -> Result<(Option<Request>, Option<Grant>), StoreError> {
    let Some(request) = written.rows.requests.get(&id) else { return stored(engine, id) };
    match request.grant.map(|g| written.rows.grants.get(&g)) {
        Some(None) => stored(engine, id),
        grant => Ok((Some(request.clone()), grant.flatten().cloned())),
    }
}

/// The outcome as the caller sees it (with the actions they may take), if they may see the request.
fn visible(engine: &Engine, caller: &Caller, id: RequestId, found: (Option<Request>, Option<Grant>)) -> Result<Outcome, ApiError> {
    let policy = engine.policy();
    let (request, grant) = found;
    let request = request
        .filter(|r| rules::request_visible(&policy, &caller.user, r))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_request", format!("there is no request {id} that you may see")))?;
    let request = request_views(engine, caller, vec![request]).remove(0);
    let grant = grant_views(engine, caller, grant.into_iter().collect()).pop();
    Ok(Outcome { request, grant })
}

#[utoipa::path(post, path = "/v1/requests", tag = "requests", request_body = crate::model::wire::NewRequest, responses((status = 201, body = crate::model::wire::Outcome), crate::daemon::error::Refused))]
pub async fn create(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Body(new): Body<NewRequest>,
) -> Result<(StatusCode, Json<Outcome>), ApiError> {
    let (id, found) = execute_and_read(&engine, &caller, Command::Request(new), |e, written| {
        let id = written
            .events
            .iter()
            .find_map(|e| match &e.change {
                crate::model::Change::RequestCreated { request, .. } => Some(*request),
                _ => None,
            })
            .ok_or_else(|| StoreError::Corrupt("the request was not recorded".into()))?;
        Ok((id, written_or_stored(e, &written, id)?))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(visible(&engine, &caller, id, found)?)))
}

#[utoipa::path(get, path = "/v1/requests", tag = "requests", params(ListQuery), responses((status = 200, body = Vec<crate::model::wire::RequestView>), crate::daemon::error::Refused))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    let state = q.state.as_deref().unwrap_or("pending");
    if state != "mine" && (q.before.is_some() || q.limit.is_some()) {
        return Err(ApiError::bad_request("bad_query", "before and limit page only state=mine (the caller's own requests, newest first)"));
    }
    let now = engine.now();
    let who = caller.actor();
    match state {
        "all" => {
            let rows = stored_list(&engine, &caller, |s, scope| s.requests(scope), rules::request_visible).await?;
            Ok(Json(request_views(&engine, &caller, rows)))
        }
        "mine" => {
            let before = q.before.as_deref().map(parse_id::<RequestId>).transpose()?;
            let limit = match q.limit.unwrap_or(MINE_PAGE) {
                n @ 1..=MINE_MOST => n,
                n => return Err(ApiError::bad_request("bad_query", format!("limit must be from 1 to {MINE_MOST}, not {n}"))),
            };
            let (e, me) = (engine.clone(), caller.user.clone());
            let rows = blocking(move || e.stored(|s| s.requests_of(&me, before, limit))).await?;
            Ok(Json(request_views(&engine, &caller, rows)))
        }
        "pending" | "live" => Ok(Json(engine.read(|s, p| {
            // Pending, or the request an active grant was given for (not an extension of one,
            // which a command may have brought back into memory for a moment).
            let live = |r: &&Request| match r.state {
                RequestState::Pending => r.pending_until > now,
                _ => {
                    state == "live" && r.grant.is_some_and(|g| s.active.contains(&g) && s.grants.get(&g).is_some_and(|g| g.request == r.id))
                }
            };
            // Memory holds only what is live, so this reads no history.
            s.requests
                .values()
                .filter(live)
                .filter(|r| rules::request_visible(p, &caller.user, r))
                .map(|r| rules::request_view(s, p, &who, r.clone(), now))
                .collect()
        }))),
        other => Err(ApiError::bad_request(
            "bad_query",
            format!("state must be 'pending', 'live', 'mine' or 'all', not '{}'", crate::model::text::inert(other)),
        )),
    }
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests", params(("id" = crate::model::RequestId, Path, description = "A request")), responses((status = 200, body = crate::model::wire::Outcome), crate::daemon::error::Refused))]
pub async fn show(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Outcome>, ApiError> {
    let id = parse_id(&id)?;
    let e = engine.clone();
    let found = blocking(move || stored(&e, id)).await?;
    Ok(Json(visible(&engine, &caller, id, found)?))
}

/// Runs a decision on request `id` and answers with the request as it is now.
async fn act(engine: &Arc<Engine>, caller: &Caller, id: RequestId, command: Command) -> Result<Json<Outcome>, ApiError> {
    let found = execute_and_read(engine, caller, command, move |e, written| Ok(written_or_stored(e, &written, id)?)).await?;
    Ok(Json(visible(engine, caller, id, found)?))
}

#[utoipa::path(post, path = "/v1/requests/{id}/approve", tag = "requests", params(("id" = crate::model::RequestId, Path, description = "A request")), request_body = crate::model::wire::ApproveBody, responses((status = 200, body = crate::model::wire::Outcome), crate::daemon::error::Refused))]
pub async fn approve(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(c): Body<ApproveBody>,
) -> Result<Json<Outcome>, ApiError> {
    let id = parse_id(&id)?;
    let signed = c.signature.is_some();
    let answer = act(&engine, &caller, id, Command::Approve { request: id, comment: c.comment, signature: c.signature }).await;
    // A signature that does not hold is what a stolen token looks like: said in the daemon's log
    // (the log of events records only what was decided).
    if let Err(e) = &answer
        && signed
        && e.code.starts_with("signature_")
    {
        tracing::warn!(user = %caller.user, via = caller.via(), request = %id, code = %e.code, "a signed approval was refused");
    }
    answer
}

#[utoipa::path(post, path = "/v1/requests/{id}/deny", tag = "requests", params(("id" = crate::model::RequestId, Path, description = "A request")), request_body = crate::model::wire::Comment, responses((status = 200, body = crate::model::wire::Outcome), crate::daemon::error::Refused))]
pub async fn deny(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(c): Body<Comment>,
) -> Result<Json<Outcome>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Deny { request: id, comment: c.comment }).await
}

#[utoipa::path(post, path = "/v1/requests/{id}/cancel", tag = "requests", params(("id" = crate::model::RequestId, Path, description = "A request")), responses((status = 200, body = crate::model::wire::Outcome), crate::daemon::error::Refused))]
pub async fn cancel(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Outcome>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Cancel { request: id }).await
}
