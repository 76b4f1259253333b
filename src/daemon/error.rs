//! The daemon's answer when something is refused or fails: `{"error": {"code", "message"}}`
//! with the right HTTP status. Internal details go to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::model::wire::{ErrorBody, ErrorDetail};
use crate::rules::{Refusal, RefusalKind};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds for a `Retry-After` header: when asking again can succeed.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.to_string(), message: message.into(), retry_after: None }
    }

    /// The same answer, saying when to ask again.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r.kind {
            RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Conflict => StatusCode::CONFLICT,
        };
        ApiError::new(status, r.code, r.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failed");
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_failed",
            "the daemon could not use its database, so nothing was changed; its log says why",
        );
        // Busy (other daemons kept writing first) or unreachable: asking again soon can work.
        if matches!(e, StoreError::Conflict(_) | StoreError::Unavailable(_)) {
            error.retry_after = Some(1);
        }
        error
    }
}

impl From<crate::daemon::engine::EngineError> for ApiError {
    fn from(e: crate::daemon::engine::EngineError) -> Self {
        match e {
            crate::daemon::engine::EngineError::Refused(r) => r.into(),
            crate::daemon::engine::EngineError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}
