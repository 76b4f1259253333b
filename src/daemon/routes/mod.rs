//! The HTTP API, one file per resource. Handlers authenticate the caller, hand commands to the
//! engine, and shape answers; they decide nothing themselves.

mod admin;
mod audit;
mod grants;
mod health;
mod me;
mod metrics;
mod notices;
mod requests;
mod runs;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;

use chrono::{DateTime, Utc};

use super::Engine;
use super::auth::Caller;
use super::error::ApiError;
pub(crate) use super::extract::{Body, Query, parse_id};
pub(crate) use super::service::{blocking, execute, execute_and_read};
use crate::model::wire::{GrantView, MAX_BODY_BYTES, RequestView};
use crate::model::{Actor, Grant, Request};
use crate::policy::Policy;
use crate::rules;
use crate::store::{Scope, Store, StoreError};

pub use metrics::loopback_router as metrics_router;

/// The API as a whole, for the OpenAPI description: what it is, and how callers prove who
/// they are.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "zsa",
        description = "Zero standing access: ask for a task, approvers decide, a grant ends by itself, every step in a tamper-evident log. JSON over the daemon's Unix socket, where the caller is the connecting Unix account (SO_PEERCRED), or over HTTPS with a bearer token. Every refusal is {\"error\": {\"code\", \"message\"}}."
    ),
    components(schemas(crate::model::wire::ErrorBody, crate::model::wire::ErrorDetail)),
    modifiers(&BearerToken),
    security(("bearer" = []), ())
)]
struct ApiDoc;

/// A bearer token an admin issued (`zsa admin token issue`).
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// Every endpoint, each registered together with its OpenAPI description (`utoipa-axum`): one
/// list, so no route can go undocumented.
fn endpoints() -> utoipa_axum::router::OpenApiRouter<Arc<Engine>> {
    use utoipa::OpenApi;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics::metrics))
        .routes(routes!(me::whoami))
        .routes(routes!(me::tasks))
        .routes(routes!(me::check))
        .routes(routes!(requests::list, requests::create))
        .routes(routes!(requests::show))
        .routes(routes!(requests::approve))
        .routes(routes!(requests::deny))
        .routes(routes!(requests::cancel))
        .routes(routes!(grants::list))
        .routes(routes!(grants::show))
        .routes(routes!(grants::revoke))
        .routes(routes!(grants::relinquish))
        .routes(routes!(grants::extend))
        .routes(routes!(grants::review))
        .routes(routes!(runs::list, runs::start))
        .routes(routes!(runs::show))
        .routes(routes!(runs::transcript))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::key))
        .routes(routes!(audit::export))
        .routes(routes!(audit::checkpoint))
        .routes(routes!(super::feed::stream))
        .routes(routes!(admin::tokens, admin::issue_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::disable))
        .routes(routes!(admin::enable))
        .routes(routes!(admin::reload))
        .routes(routes!(admin::backup))
        .routes(routes!(notices::list))
        .routes(routes!(notices::retry))
}

/// The OpenAPI 3.1 description of the whole HTTP API, made from the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    endpoints().split_for_parts().1
}

/// The description, as served.
#[derive(Clone)]
struct Described(Arc<String>);

/// The OpenAPI description of this API (also in docs/openapi.json).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "service", security(()), responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)))]
async fn openapi_json(axum::Extension(doc): axum::Extension<Described>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.0.as_str().to_owned())
}

pub fn router(engine: Arc<Engine>) -> Router {
    let (routes, api) = endpoints().split_for_parts();
    let described = Described(Arc::new(api.to_pretty_json().unwrap_or_default()));
    routes
        .layer(axum::Extension(described))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_endpoint", "there is no such endpoint; see the API list in README.md")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::Extension(super::feed::StreamSlots::default()))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(log_answer)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .with_state(engine)
}

/// What monitors and gates ask every few seconds: logged at debug, not info.
const FREQUENT: [&str; 4] = ["/v1/check", "/v1/health", "/v1/ready", "/metrics"];

/// One span per request: what was asked; the caller is recorded once known (`auth`), status and
/// latency once answered. Never the query string or a header: nothing secret rides in a path.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    use tracing::field::Empty;
    let (method, raw) = (req.method(), req.uri().path());
    // Made only if the span is enabled (the frequent calls' debug span mostly is not).
    match FREQUENT.contains(&raw) {
        true => tracing::debug_span!("http", %method, path = %shown_path(raw), caller = Empty, token = Empty, status = Empty, ms = Empty),
        false => tracing::info_span!("http", %method, path = %shown_path(raw), caller = Empty, token = Empty, status = Empty, ms = Empty),
    }
}

/// A request path as logged: inert and short, since it is what anyone sent and a log line is
/// read in a terminal.
fn shown_path(raw: &str) -> String {
    crate::model::text::inert_line(raw).chars().take(200).collect()
}

/// The line that says a request was answered, at its span's level.
fn log_answer(res: &axum::http::Response<axum::body::Body>, latency: std::time::Duration, span: &tracing::Span) {
    let status = res.status().as_u16();
    let ms = latency.as_secs_f64() * 1000.0;
    span.record("status", status);
    span.record("ms", ms);
    match span.metadata().map(|m| *m.level()) {
        Some(tracing::Level::INFO) => tracing::info!(status, ms, "answered"),
        _ => tracing::debug!(status, ms, "answered"),
    }
}

/// A body declared larger than any the API takes is refused at once, before the daemon waits for
/// it (a client that announces a gigabyte and sends a byte now and then would hold a connection).
async fn refuse_declared_oversize(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_body",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes (it says {n})"),
        )
        .into_response(),
        _ => next.run(req).await,
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

/// Rows given their actions per state lock, so a long history listing does not hold writers back.
const VIEWS_PER_LOCK: usize = 1024;

/// Requests as `caller` sees them now: each with the actions they may take on it (the rules'
/// own checks, under the current state and policy).
pub fn request_views(engine: &Engine, caller: &Caller, rows: Vec<Request>) -> Vec<RequestView> {
    with_actions(engine, caller, rows, rules::request_view)
}

/// Grants as `caller` sees them now: each with the actions they may take on it.
pub fn grant_views(engine: &Engine, caller: &Caller, rows: Vec<Grant>) -> Vec<GrantView> {
    with_actions(engine, caller, rows, |s, p, who, g, now| GrantView { actions: rules::grant_actions(s, p, who, &g, now), grant: g })
}

/// Each row made into its view under the state lock, `VIEWS_PER_LOCK` rows a lock.
fn with_actions<T, V>(
    engine: &Engine,
    caller: &Caller,
    rows: Vec<T>,
    view: impl Fn(&rules::State, &Policy, &Actor, T, DateTime<Utc>) -> V,
) -> Vec<V> {
    let (who, now) = (caller.actor(), engine.now());
    let mut views = Vec::with_capacity(rows.len());
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        engine.read(|s, p| views.extend(rows.by_ref().take(VIEWS_PER_LOCK).map(|r| view(s, p, &who, r, now))));
    }
    views
}
