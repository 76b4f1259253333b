//! `GET /v1/health` and `GET /v1/ready`, for service managers, load balancers and monitors:
//! answered to anyone, with no authentication, saying only whether and what is wrong.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::Engine;
use crate::model::wire::{Health, Readiness};

/// Liveness: the daemon answers HTTP.
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: 200 when every check passes, 503 naming those that do not.
pub async fn ready(State(engine): State<Arc<Engine>>) -> (StatusCode, Json<Readiness>) {
    let r = crate::daemon::readiness::check(&engine).await;
    (if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(r))
}
