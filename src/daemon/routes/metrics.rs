//! `GET /metrics`: the Prometheus exposition, for those the policy lets read it (`[roles]
//! metrics`, else admins and auditors); `--metrics-listen` serves the same on loopback alone.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Caller, Engine};

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String), crate::daemon::error::Refused))]
pub async fn metrics(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Response, ApiError> {
    if !engine.policy().may_read_metrics(&caller.user) {
        return Err(ApiError::forbidden(
            "not_metrics_reader",
            "the metrics are for the groups in [roles] metrics (by default admins and auditors); ask an admin to add yours, or scrape the daemon's --metrics-listen on loopback",
        ));
    }
    Ok(exposition(&engine))
}

/// The text exposition format Prometheus scrapes.
pub fn exposition(engine: &Engine) -> Response {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::daemon::metrics::render(engine)).into_response()
}

/// What `--metrics-listen` serves: `/metrics` and nothing else, to anyone who reaches loopback.
pub fn loopback_router(engine: Arc<Engine>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(|State(e): State<Arc<Engine>>| async move { exposition(&e) }))
        .with_state(engine)
}
