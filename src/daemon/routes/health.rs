//! `GET /v1/health` and `GET /v1/ready`, for service managers, load balancers and monitors:
//! answered to anyone, with no authentication, saying only whether and what is wrong.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::Engine;
use crate::model::wire::{Health, Readiness};

/// Liveness: the daemon answers HTTP.
#[utoipa::path(get, path = "/v1/health", tag = "service", security(()), responses((status = 200, body = crate::model::wire::Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: 200 when every check passes, 503 naming those that do not.
#[utoipa::path(get, path = "/v1/ready", tag = "service", security(()), responses((status = 200, body = crate::model::wire::Readiness), (status = 503, description = "Not ready; the failing checks say why", body = crate::model::wire::Readiness)))]
pub async fn ready(State(engine): State<Arc<Engine>>) -> (StatusCode, Json<Readiness>) {
    let r = crate::daemon::readiness::check(&engine).await;
    (if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(r))
}
