//! Grants: list, show, revoke, relinquish, review.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Body, Query, blocking, execute_and_read, parse_id, stored_list};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::model::wire::{Comment, Reason};
use crate::model::{Grant, GrantId};
use crate::rules::{self, Command};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include ended grants.
    #[serde(default)]
    all: bool,
}

/// The grant, if the caller may see it.
fn visible(engine: &Engine, caller: &Caller, id: GrantId, grant: Option<Grant>) -> Result<Grant, ApiError> {
    let policy = engine.policy();
    grant
        .filter(|g| rules::grant_visible(&policy, &caller.user, g))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_grant", format!("there is no grant {id} that you may see")))
}

/// Runs a decision on grant `id` and answers with the grant as written (or else as stored: an
/// ended grant is no longer in memory).
async fn act(engine: &Arc<Engine>, caller: &Caller, id: GrantId, command: Command) -> Result<Json<Grant>, ApiError> {
    let grant = execute_and_read(engine, caller, command, move |e, written| match written.rows.grants.get(&id) {
        Some(g) => Ok(Some(g.clone())),
        None => Ok(e.stored(|s| s.grant(id))?),
    })
    .await?;
    Ok(Json(visible(engine, caller, id, grant)?))
}

/// Active grants (those whose deadline has not passed) from memory, or every grant with
/// `all=true` from the store.
pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Json<Vec<Grant>>, ApiError> {
    if q.all {
        return Ok(Json(stored_list(&engine, &caller, |s, scope| s.grants(scope), rules::grant_visible).await?));
    }
    let now = engine.now();
    Ok(Json(engine.read(|s, p| {
        s.active
            .iter()
            .filter_map(|id| s.grants.get(id))
            .filter(|g| g.is_active_at(now) && rules::grant_visible(p, &caller.user, g))
            .cloned()
            .collect()
    })))
}

pub async fn show(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    let e = engine.clone();
    let grant = blocking(move || e.stored(|s| s.grant(id))).await?;
    Ok(Json(visible(&engine, &caller, id, grant)?))
}

pub async fn revoke(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(r): Body<Reason>,
) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Revoke { grant: id, reason: r.reason }).await
}

pub async fn relinquish(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Relinquish { grant: id }).await
}

pub async fn review(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(c): Body<Comment>,
) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    act(&engine, &caller, id, Command::Review { grant: id, comment: c.comment }).await
}
