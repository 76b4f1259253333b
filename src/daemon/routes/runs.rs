//! Runs: start one (the output streams back), list them, and read a transcript.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Body, blocking, parse_id, stored_list};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::daemon::runner;
use crate::model::wire::RunRequest;
use crate::model::{Run, RunId};
use crate::rules;

#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = crate::model::wire::RunRequest, responses((status = 200, description = "The run's output, one JSON object per line as it comes", content_type = "application/x-ndjson", body = crate::model::wire::RunOutput), crate::daemon::error::Refused))]
pub async fn start(State(engine): State<Arc<Engine>>, caller: Caller, Body(req): Body<RunRequest>) -> Result<Response, ApiError> {
    runner::start(engine, caller, req).await
}

/// A run as stored now (ended ones live only in the store).
async fn visible_run(engine: &Arc<Engine>, caller: &Caller, id: RunId) -> Result<Run, ApiError> {
    let e = engine.clone();
    let run = blocking(move || e.stored(|s| s.run(id))).await?;
    let policy = engine.policy();
    run.filter(|r| rules::run_visible(&policy, &caller.user, r))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_run", format!("there is no run {id} that you may see")))
}

/// Every run the caller may see, from the store.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", responses((status = 200, body = Vec<crate::model::Run>), crate::daemon::error::Refused))]
pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Json<Vec<Run>>, ApiError> {
    Ok(Json(stored_list(&engine, &caller, |s, scope| s.runs(scope), rules::run_visible).await?))
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = crate::model::RunId, Path, description = "A run")), responses((status = 200, body = crate::model::Run), crate::daemon::error::Refused))]
pub async fn show(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Run>, ApiError> {
    Ok(Json(visible_run(&engine, &caller, parse_id(&id)?).await?))
}

/// The transcript's bytes as kept. The client checks them against the digest in the audit log.
#[utoipa::path(get, path = "/v1/runs/{id}/transcript", tag = "runs", params(("id" = crate::model::RunId, Path, description = "A run")), responses((status = 200, description = "The transcript, its bytes as the command wrote them", content_type = "application/octet-stream", body = String), crate::daemon::error::Refused))]
pub async fn transcript(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = visible_run(&engine, &caller, parse_id(&id)?).await?;
    if run.ended.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_going",
            format!("{} is still running; its transcript is complete when it ends", run.id),
        ));
    }
    let path = engine.runs_dir().join(format!("{}.log", run.id));
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read a transcript");
        ApiError::new(StatusCode::NOT_FOUND, "no_transcript", format!("the transcript of {} is missing from the daemon's state", run.id))
    })?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}
