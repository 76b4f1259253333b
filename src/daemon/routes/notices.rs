//! The outbox, for those who keep the notices flowing: list deliveries (admins and auditors),
//! and put a failed one back to be tried again (admins).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Query, blocking};
use crate::daemon::Engine;
use crate::daemon::auth::Caller;
use crate::daemon::error::ApiError;
use crate::model::wire::NoticeView;
use crate::notify::outbox::DeliveryState;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only the deliveries that failed.
    #[serde(default)]
    failed: bool,
}

/// Every delivery in the outbox, oldest first, or only the failed ones.
#[utoipa::path(get, path = "/v1/notices", tag = "notices", params(ListQuery), responses((status = 200, body = Vec<crate::model::wire::NoticeView>), crate::daemon::error::Refused))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<NoticeView>>, ApiError> {
    if !engine.policy().sees_everything(&caller.user) {
        return Err(ApiError::forbidden(
            "auditors_only",
            "only auditors and admins may list the notices (they name who was told what); see [roles] in the policy",
        ));
    }
    let state = q.failed.then_some(DeliveryState::Failed);
    let e = engine.clone();
    let rows = blocking(move || e.stored(|s| s.deliveries(state))).await?;
    Ok(Json(rows.iter().map(NoticeView::of).collect()))
}

/// A failed delivery goes back to pending, due now, on the record (`notice_retried`); the sender
/// tries it again at once.
#[utoipa::path(post, path = "/v1/admin/notices/{id}/retry", tag = "notices", params(("id" = String, Path, description = "A notice id, as zsa notices shows it")), responses((status = 204, description = "Put back to be delivered now"), crate::daemon::error::Refused))]
pub async fn retry(State(engine): State<Arc<Engine>>, caller: Caller, Path(raw): Path<String>) -> Result<StatusCode, ApiError> {
    let id: u64 = raw.parse().map_err(|_| {
        ApiError::bad_request("bad_id", format!("{:?} is not a notice id: give the number `zsa notices` shows in its ID column", raw))
    })?;
    let e = engine.clone();
    blocking(move || e.retry_notice(caller.actor(), id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
