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

/// The refusals an endpoint may answer, for the OpenAPI description: each is
/// `{"error": {"code", "message"}}`, the message saying why and what to do.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Refused {
    #[response(status = 400, description = "Bad input; nothing changed")]
    BadRequest(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 401, description = "Who is asking is not known: connect over the socket, or present a valid token")]
    Unauthorized(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 403, description = "Not allowed to the caller")]
    Forbidden(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 404, description = "No such thing the caller may see")]
    NotFound(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 409, description = "Not in a state that allows it")]
    Conflict(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 413, description = "The body is larger than any the API takes")]
    TooLarge(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 415, description = "The body is not JSON")]
    NotJson(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 422, description = "The body is JSON but not what the endpoint takes")]
    BadBody(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 429, description = "Too many: try again after Retry-After")]
    TooMany(#[to_schema] crate::model::wire::ErrorBody),
    #[response(status = 503, description = "The daemon cannot answer now (its store, or its peers)")]
    Unavailable(#[to_schema] crate::model::wire::ErrorBody),
}
