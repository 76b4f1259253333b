//! Grants: list, show, revoke, relinquish, review.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Body, Query, blocking, execute, parse_id};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::model::wire::{Comment, Reason};
use crate::model::{Grant, GrantId};
use crate::rules::{self, Command};
use crate::store::Scope;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include ended grants.
    #[serde(default)]
    all: bool,
}

/// A grant as stored now (ended ones live only in the store).
async fn grant(engine: &Arc<Engine>, caller: &Caller, id: GrantId) -> Result<Grant, ApiError> {
    let e = engine.clone();
    let grant = blocking(move || e.stored(|s| s.grant(id))).await?;
    let policy = engine.policy();
    grant
        .filter(|g| rules::grant_visible(&policy, &caller.user, g))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_grant", format!("there is no grant {id} that you may see")))
}

/// Active grants (those whose deadline has not passed) from memory, or every grant with
/// `all=true` from the store.
pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Json<Vec<Grant>>, ApiError> {
    if q.all {
        let policy = engine.policy();
        let scope = Scope::of(&policy, &caller.user);
        let e = engine.clone();
        let mut grants = blocking(move || e.stored(|s| s.grants(&scope))).await?;
        grants.retain(|g| rules::grant_visible(&policy, &caller.user, g));
        return Ok(Json(grants));
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
    Ok(Json(grant(&engine, &caller, parse_id(&id)?).await?))
}

pub async fn revoke(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(r): Body<Reason>,
) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    execute(&engine, &caller, Command::Revoke { grant: id, reason: r.reason }).await?;
    Ok(Json(grant(&engine, &caller, id).await?))
}

pub async fn relinquish(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    execute(&engine, &caller, Command::Relinquish { grant: id }).await?;
    Ok(Json(grant(&engine, &caller, id).await?))
}

pub async fn review(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(c): Body<Comment>,
) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    execute(&engine, &caller, Command::Review { grant: id, comment: c.comment }).await?;
    Ok(Json(grant(&engine, &caller, id).await?))
}
