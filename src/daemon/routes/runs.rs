//! Runs: start one (the output streams back), list them, and read a transcript.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Body, parse_id};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::daemon::runner;
use crate::model::wire::RunRequest;
use crate::model::{Run, RunId};
use crate::rules;

pub async fn start(State(engine): State<Arc<Engine>>, caller: Caller, Body(req): Body<RunRequest>) -> Result<Response, ApiError> {
    runner::start(engine, caller, req).await
}

fn visible_run(engine: &Engine, caller: &Caller, id: RunId) -> Result<Run, ApiError> {
    engine.read(|s, p| {
        s.runs
            .get(&id)
            .filter(|r| rules::run_visible(p, &caller.user, r))
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no_such_run", format!("there is no run {id} that you may see")))
    })
}

pub async fn list(State(engine): State<Arc<Engine>>, caller: Caller) -> Json<Vec<Run>> {
    Json(engine.read(|s, p| s.runs.values().filter(|r| rules::run_visible(p, &caller.user, r)).cloned().collect()))
}

pub async fn show(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Json<Run>, ApiError> {
    Ok(Json(visible_run(&engine, &caller, parse_id(&id)?)?))
}

/// The transcript's bytes as kept. The client checks them against the digest in the audit log.
pub async fn transcript(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = visible_run(&engine, &caller, parse_id(&id)?)?;
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
