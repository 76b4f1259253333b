//! Grants: list, show, revoke, relinquish, review.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Body, Query, execute, parse_id};
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

fn grant(engine: &Engine, caller: &Caller, id: GrantId) -> Result<Grant, ApiError> {
    engine.read(|s, p| {
        s.grants
            .get(&id)
            .filter(|g| rules::grant_visible(p, &caller.user, g))
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_grant", format!("there is no grant {id} that you may see")))
    })
}

/// Active grants (those whose deadline has not passed), or every grant with `all=true`.
pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller, Query(q): Query<ListQuery>) -> Json<Vec<Grant>> {
    let now = engine.now();
    Json(engine.read(|s, p| {
        let visible = |g: &&Grant| rules::grant_visible(p, &caller.user, g);
        if q.all {
            s.grants.values().filter(visible).cloned().collect()
        } else {
            s.active.iter().filter_map(|id| s.grants.get(id)).filter(|g| g.is_active_at(now)).filter(visible).cloned().collect()
        }
    }))
}

pub async fn show(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Grant>, ApiError> {
    Ok(Json(grant(&engine, &caller, parse_id(&id)?)?))
}

pub async fn revoke(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(r): Body<Reason>,
) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    execute(&engine, &caller, Command::Revoke { grant: id, reason: r.reason }).await?;
    Ok(Json(grant(&engine, &caller, id)?))
}

pub async fn relinquish(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    execute(&engine, &caller, Command::Relinquish { grant: id }).await?;
    Ok(Json(grant(&engine, &caller, id)?))
}

pub async fn review(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(c): Body<Comment>,
) -> Result<Json<Grant>, ApiError> {
    let id = parse_id(&id)?;
    execute(&engine, &caller, Command::Review { grant: id, comment: c.comment }).await?;
    Ok(Json(grant(&engine, &caller, id)?))
}
