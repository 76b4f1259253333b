//! The HTTP API, one file per resource. Handlers authenticate the caller, hand commands to the
//! engine, and shape answers; they decide nothing themselves.

mod admin;
mod audit;
mod grants;
mod me;
mod requests;
mod runs;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::Engine;
use super::auth::Caller;
use super::engine::{EngineError, Written};
use super::error::ApiError;
use crate::model::Event;
use crate::model::wire::MAX_BODY_BYTES;
use crate::policy::Policy;
use crate::rules::Command;
use crate::store::{Scope, Store, StoreError};

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v1/whoami", get(me::whoami))
        .route("/v1/tasks", get(me::tasks))
        .route("/v1/check", get(me::check))
        .route("/v1/requests", get(requests::list).post(requests::create))
        .route("/v1/requests/{id}", get(requests::show))
        .route("/v1/requests/{id}/approve", post(requests::approve))
        .route("/v1/requests/{id}/deny", post(requests::deny))
        .route("/v1/requests/{id}/cancel", post(requests::cancel))
        .route("/v1/grants", get(grants::list))
        .route("/v1/grants/{id}", get(grants::show))
        .route("/v1/grants/{id}/revoke", post(grants::revoke))
        .route("/v1/grants/{id}/relinquish", post(grants::relinquish))
        .route("/v1/grants/{id}/review", post(grants::review))
        .route("/v1/runs", get(runs::list).post(runs::start))
        .route("/v1/runs/{id}", get(runs::show))
        .route("/v1/runs/{id}/transcript", get(runs::transcript))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/events", get(super::feed::stream))
        .route("/v1/admin/tokens", get(admin::tokens).post(admin::issue_token))
        .route("/v1/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/v1/admin/users/{user}/disable", post(admin::disable))
        .route("/v1/admin/users/{user}/enable", post(admin::enable))
        .route("/v1/admin/reload", post(admin::reload))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_endpoint", "there is no such endpoint; see the API list in README.md")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::Extension(super::feed::StreamSlots::default()))
        .with_state(engine)
}

/// A JSON body whose rejections answer in our error format.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(body_error(rejection)),
        }
    }
}

fn body_error(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "send the body as JSON with Content-Type: application/json".to_string(),
        _ => format!("the request body is not valid: {}", rejection.body_text()),
    };
    ApiError::new(status, "bad_body", message)
}

/// Query parameters whose rejections answer in our error format.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => Err(query_error(rejection)),
        }
    }
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("bad_query", format!("the query string is not valid: {}", rejection.body_text()))
}

/// Parses an id from the path, such as `R12` or `12`.
pub fn parse_id<T: std::str::FromStr<Err = String>>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|m: String| ApiError::bad_request("bad_id", m))
}

/// Runs a command on a blocking thread (the engine waits for the disk) and maps its errors.
pub async fn execute(engine: &Arc<Engine>, caller: &Caller, command: Command) -> Result<Vec<Arc<Event>>, ApiError> {
    execute_and_read(engine, caller, command, |_, written| Ok(written.events)).await
}

/// Runs a command, then `read` (the answer, from what was written or else the store) on the
/// writer's own thread (never the shared blocking pool, where reads may queue): one hand-off
/// per write, not two.
pub async fn execute_and_read<R: Send + 'static>(
    engine: &Arc<Engine>,
    caller: &Caller,
    command: Command,
    read: impl FnOnce(&Engine, Written) -> Result<R, EngineError> + Send + 'static,
) -> Result<R, ApiError> {
    let engine = engine.clone();
    let actor = caller.actor();
    write(move || {
        let written = engine.execute_written(actor, command)?;
        read(&engine, written)
    })
    .await
}

/// Runs a write on the writer's thread; its error, or a failure of the thread, becomes the API's error.
pub async fn write<R: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, ApiError> {
    match super::writer::run(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => {
            tracing::error!(error = %e, "a write failed");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the daemon failed while handling this; its log says why"))
        }
    }
}

/// Runs blocking work (commands, store reads, policy loads) off the async threads; its error, or
/// a failure of the task itself, becomes the API's error.
pub async fn blocking<R: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => {
            tracing::error!(error = %e, "a blocking task failed");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the daemon failed while handling this; its log says why"))
        }
    }
}

/// Every row of one kind the caller may see, from the store (history is not in memory). The store
/// skips rows outside the caller's scope; `visible`, the rule itself, has the last word.
pub async fn stored_list<T: Send + 'static>(
    engine: &Arc<Engine>,
    caller: &Caller,
    read: fn(&mut dyn Store, &Scope) -> Result<Vec<T>, StoreError>,
    visible: fn(&Policy, &str, &T) -> bool,
) -> Result<Vec<T>, ApiError> {
    let policy = engine.policy();
    let scope = Scope::of(&policy, &caller.user);
    let e = engine.clone();
    let mut rows = blocking(move || e.stored(|s| read(s, &scope))).await?;
    rows.retain(|row| visible(&policy, &caller.user, row));
    Ok(rows)
}

/// SIGHUP: the daemon reloads its own policy file.
pub async fn reload_policy_as_daemon(engine: Arc<Engine>) -> Result<crate::model::wire::PolicyLoad, ApiError> {
    admin::reload_policy(engine, crate::model::Actor::daemon()).await
}
