//! The audit log: query it, and verify its hash chain and projections.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{Query, blocking};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::evidence::Checkpoint;
use crate::model::Event;
use crate::model::wire::{AuditKey, AuditQuery, VerifyReport};
use crate::rules;
use crate::store::{EventFilter, Scope};

pub const DEFAULT_PAGE: u32 = 1000;
pub const MAX_PAGE: u32 = 10_000;

/// Events, oldest first, one page at a time (`after` the last seq seen). Admins and auditors
/// see everything; others see what concerns them and what they approve for.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(crate::model::wire::AuditQuery), responses((status = 200, body = Vec<crate::model::Event>), crate::daemon::error::Refused))]
pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller, Query(q): Query<AuditQuery>) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request("bad_query", format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let policy = engine.policy();
    let user = caller.user.clone();
    // The store reads only what may concern the caller; the rule below decides.
    let visible_to = Some(Scope::of(&policy, &user));
    let filter = EventFilter {
        after_seq: q.after,
        since: q.since,
        until: q.until,
        user: q.user,
        task: q.task,
        limit: Some(limit),
        tail: q.tail,
        visible_to,
    };
    let e = engine.clone();
    // A page holds `limit` events the caller may see: for callers who see only some events,
    // read on until the page is full or the log ends, so paging by `after` never stops early.
    let events = blocking(move || {
        let mut page = Vec::new();
        let mut filter = filter;
        loop {
            let batch = e.events(&filter)?;
            // A tail is one read: it goes backwards, so there is nothing to read on into.
            let full = batch.len() as u32 == limit && filter.tail.is_none();
            filter.after_seq = batch.last().map(|ev| ev.seq).or(filter.after_seq);
            page.extend(batch.into_iter().filter(|ev| rules::event_visible(&policy, &user, ev)));
            if !full || page.len() as u32 >= limit {
                page.truncate(limit as usize);
                return Ok::<_, crate::store::StoreError>(page);
            }
        }
    })
    .await?;
    Ok(Json(events))
}

/// `GET /v1/audit/key`: the key that signs checkpoints, for an auditor to keep and verify with.
#[utoipa::path(get, path = "/v1/audit/key", tag = "audit", responses((status = 200, body = crate::model::wire::AuditKey), crate::daemon::error::Refused))]
pub async fn key(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Json<AuditKey>, ApiError> {
    auditors_only(&engine, &caller)?;
    let c = checkpoints(&engine)?;
    Ok(Json(AuditKey { key: c.public_key().to_string(), checkpoint_file: c.file().display().to_string() }))
}

/// `POST /v1/audit/checkpoint`: sign the log's head now (before a backup, say).
#[utoipa::path(post, path = "/v1/audit/checkpoint", tag = "audit", responses((status = 200, body = crate::evidence::Checkpoint), crate::daemon::error::Refused))]
pub async fn checkpoint(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Json<Checkpoint>, ApiError> {
    auditors_only(&engine, &caller)?;
    let c = checkpoints(&engine)?.clone();
    let e = engine.clone();
    let signed = blocking(move || c.sign_now(&e).map_err(|err| crate::store::StoreError::Unavailable(format!("{err:#}")))).await?;
    signed.map(Json).ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "empty_log", "the log is empty: there is nothing to sign yet"))
}

/// A page of the log exactly as stored: only where it starts and how long it is (a filter would
/// cut the chain the export is checked by).
#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Events with a sequence number above this.
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// `GET /v1/audit/export?after=SEQ&limit=N`: events exactly as stored, for a signed export
/// (`zsa audit export --signed`).
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery), responses((status = 200, body = Vec<crate::store::RawEvent>), crate::daemon::error::Refused))]
pub async fn export(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Json<Vec<crate::store::RawEvent>>, ApiError> {
    auditors_only(&engine, &caller)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request("bad_query", format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let after = q.after.unwrap_or(0);
    let e = engine.clone();
    Ok(Json(blocking(move || e.raw_events(after, limit)).await?))
}

fn auditors_only(engine: &Engine, caller: &Caller) -> Result<(), ApiError> {
    match engine.policy().sees_everything(&caller.user) {
        true => Ok(()),
        false => Err(ApiError::forbidden("auditors_only", "only auditors and admins may sign or see the audit log's checkpoints")),
    }
}

fn checkpoints(engine: &Engine) -> Result<&Arc<crate::daemon::checkpoints::Checkpoints>, ApiError> {
    engine.checkpoints().ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "no_checkpoints", "this daemon signs no checkpoints"))
}

#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", responses((status = 200, body = crate::model::wire::VerifyReport), crate::daemon::error::Refused))]
pub async fn verify(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Json<VerifyReport>, ApiError> {
    if !engine.policy().sees_everything(&caller.user) {
        return Err(ApiError::forbidden("auditors_only", "only auditors and admins may verify the whole log"));
    }
    let e = engine.clone();
    Ok(Json(blocking(move || e.verify()).await?))
}
