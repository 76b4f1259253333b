//! The one way into the engine for everything that serves people: route handlers, the runner,
//! the event stream and SIGHUP. Commands run on the writer's thread, reads on the blocking pool,
//! and errors become the API's. Nothing here imports a route, so nothing imports from routes.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;

use super::Engine;
use super::auth::Caller;
use super::engine::{EngineError, Written};
use super::error::ApiError;
use crate::model::wire::PolicyLoad;
use crate::model::{Actor, Event};
use crate::policy::{Policy, PolicyError};
use crate::rules::Command;

/// Runs a command on the writer's thread (the engine waits for the disk) and maps its errors.
pub async fn execute(engine: &Arc<Engine>, caller: &Caller, command: Command) -> Result<Vec<Arc<Event>>, ApiError> {
    execute_and_read(engine, caller, command, |_, written| Ok(written.events)).await
}

/// Runs a command (committed with whatever others are queued with it), then `read` (the
/// answer, from what was written or else the store) on the writer's own thread once it is
/// durable (never the shared blocking pool, where reads may queue): one hand-off per write,
/// not two.
pub async fn execute_and_read<R: Send + 'static>(
    engine: &Arc<Engine>,
    caller: &Caller,
    command: Command,
    read: impl FnOnce(&Engine, Written) -> Result<R, EngineError> + Send + 'static,
) -> Result<R, ApiError> {
    let answered = super::writer::execute(engine.clone(), caller.actor(), command, move |engine, outcome| read(engine, outcome?)).await;
    answered.map_err(|e| failed("a write", e))?.map_err(Into::into)
}

/// Runs blocking work (commands, store reads, policy loads) off the async threads; its error, or
/// a failure of the task itself, becomes the API's error.
pub async fn blocking<R: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| failed("a blocking task", e))?.map_err(Into::into)
}

/// The thread running `what` failed (it panicked, or could not start): logged, and answered
/// without the details.
fn failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what} failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the daemon failed while handling this; its log says why")
}

/// Loads the policy file again as `actor` (an admin, or the daemon on SIGHUP). A file that does
/// not load, or that the daemon may not trust, is refused and the old policy stays in force.
pub async fn reload_policy(engine: Arc<Engine>, actor: Actor) -> Result<PolicyLoad, ApiError> {
    reload(engine, actor).await.map_err(ApiError::from)
}

/// SIGHUP: the daemon reloads its own policy file. A file that does not load comes back whole,
/// so the daemon can show each problem in place on its stderr.
pub async fn reload_policy_as_daemon(engine: Arc<Engine>) -> Result<PolicyLoad, ReloadError> {
    reload(engine, Actor::daemon()).await
}

/// Why a reload was refused: the file's problems, or anything else.
#[derive(Debug)]
pub enum ReloadError {
    Invalid(PolicyError),
    Refused(ApiError),
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> ApiError {
        match e {
            // One line per problem, `file:line: message`, as logs and scripts read them.
            ReloadError::Invalid(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "policy_invalid", e.to_string()),
            ReloadError::Refused(e) => e,
        }
    }
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(e) => write!(f, "{e}"),
            ReloadError::Refused(e) => write!(f, "{}", e.message),
        }
    }
}

async fn reload(engine: Arc<Engine>, actor: Actor) -> Result<PolicyLoad, ReloadError> {
    let path = PathBuf::from(&engine.policy().path);
    let loaded = super::writer::run(move || {
        let policy = Policy::load_trusted(&path).map_err(ReloadError::Invalid)?;
        let load = PolicyLoad { sha256: policy.sha256.clone(), path: policy.path.clone(), tasks: policy.tasks.len() as u32 };
        engine.reload(actor, policy).map_err(|e| ReloadError::Refused(e.into()))?;
        Ok::<_, ReloadError>(load)
    })
    .await;
    loaded.map_err(|e| ReloadError::Refused(failed("a write", e)))?
}
