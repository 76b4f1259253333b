//! Extractors that answer in the API's error format: JSON bodies, query strings, ids in paths.
//! Route handlers and the event stream share them.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::model::wire::MAX_BODY_BYTES;

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
