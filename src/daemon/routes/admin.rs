//! Admin actions: tokens, disabling users, reloading the policy.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{Body, execute, parse_id};
use crate::daemon::Engine;
use crate::daemon::auth::{Caller, new_token, token_hash};
use crate::daemon::error::ApiError;
use crate::model::wire::{IssueToken, IssuedToken, PolicyLoad, Reason, TokenView};
use crate::model::{Change, TokenId};
use crate::rules::{Command, TokenTtl};

fn admins_only(engine: &Engine, caller: &Caller) -> Result<(), ApiError> {
    if engine.policy().is_admin(&caller.user) {
        Ok(())
    } else {
        Err(ApiError::forbidden("admins_only", "only admins may do this; see [roles] admins in the policy"))
    }
}

#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin", request_body = crate::model::wire::IssueToken, responses((status = 201, description = "Issued; the token is shown this once", body = crate::model::wire::IssuedToken), crate::daemon::error::Refused))]
pub async fn issue_token(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Body(body): Body<IssueToken>,
) -> Result<Json<IssuedToken>, ApiError> {
    let ttl = match (body.ttl_secs, body.never_expires) {
        (Some(_), true) => return Err(ApiError::bad_request("bad_ttl", "give ttl_secs or never_expires, not both")),
        (Some(secs), false) => TokenTtl::Secs(secs),
        (None, true) => TokenTtl::Never,
        (None, false) => TokenTtl::PolicyDefault,
    };
    let token = new_token();
    let command = Command::IssueToken { user: body.user.clone(), sha256: token_hash(&token), ttl, scope: body.scope };
    let events = execute(&engine, &caller, command).await?;
    let (id, scope, expires_at) = events
        .iter()
        .find_map(|e| match e.change {
            Change::TokenIssued { token, scope, expires_at, .. } => Some((token, scope, expires_at)),
            _ => None,
        })
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the token was not recorded"))?;
    Ok(Json(IssuedToken { id, user: body.user, token, scope, expires_at }))
}

/// Every token, with when each was last used and whether it has expired by the daemon's clock.
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin", responses((status = 200, body = Vec<crate::model::wire::TokenView>), crate::daemon::error::Refused))]
pub async fn tokens(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Json<Vec<TokenView>>, ApiError> {
    admins_only(&engine, &caller)?;
    Ok(Json(token_views(&engine, |_| true)))
}

/// The tokens `keep` picks, as people are shown them.
pub(super) fn token_views(engine: &Engine, keep: impl Fn(&crate::model::Token) -> bool) -> Vec<TokenView> {
    let (now, used) = (engine.now(), engine.token_use());
    engine.read(|s, _| s.tokens.values().filter(|t| keep(t)).map(|t| t.view(now, used.last_used(t.id))).collect())
}

#[utoipa::path(post, path = "/v1/admin/tokens/{id}/revoke", tag = "admin", params(("id" = crate::model::TokenId, Path, description = "A token")), responses((status = 204, description = "Revoked"), crate::daemon::error::Refused))]
pub async fn revoke_token(State(engine): State<Arc<Engine>>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let token: TokenId = parse_id(&id)?;
    execute(&engine, &caller, Command::RevokeToken { token }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/admin/users/{user}/disable", tag = "admin", params(("user" = String, Path, description = "The user")), request_body = crate::model::wire::Reason, responses((status = 204, description = "Disabled: their grants ended, their requests cancelled"), crate::daemon::error::Refused))]
pub async fn disable(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
    Path(user): Path<String>,
    Body(r): Body<Reason>,
) -> Result<StatusCode, ApiError> {
    execute(&engine, &caller, Command::DisableUser { user, reason: r.reason }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/admin/users/{user}/enable", tag = "admin", params(("user" = String, Path, description = "The user")), responses((status = 204, description = "Enabled"), crate::daemon::error::Refused))]
pub async fn enable(State(engine): State<Arc<Engine>>, caller: Caller, Path(user): Path<String>) -> Result<StatusCode, ApiError> {
    execute(&engine, &caller, Command::EnableUser { user }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-reads the policy file the daemon was started with. A file that does not validate is
/// refused with its file:line messages and the old policy stays in force.
#[utoipa::path(post, path = "/v1/admin/reload", tag = "admin", responses((status = 200, body = crate::model::wire::PolicyLoad), crate::daemon::error::Refused))]
pub async fn reload(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<Json<PolicyLoad>, ApiError> {
    admins_only(&engine, &caller)?;
    let load = crate::daemon::service::reload_policy(engine, caller.actor()).await?;
    Ok(Json(load))
}

/// `GET /v1/admin/backup`: a consistent copy of the whole SQLite store as of one moment, taken
/// while writers go on, streamed as the file (admins only: it holds every reason and token
/// hash). The copy is made in the state directory (private) and unlinked once open, so nothing
/// is left behind however the transfer ends.
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin", responses((status = 200, description = "The SQLite store as of one moment", content_type = "application/vnd.sqlite3", body = String), crate::daemon::error::Refused))]
pub async fn backup(State(engine): State<Arc<Engine>>, caller: Caller) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    admins_only(&engine, &caller)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let path = engine.state_dir().join(format!("{}{}-{nanos}.db", crate::daemon::server::BACKUP_PREFIX, std::process::id()));
    let (e, p) = (engine.clone(), path.clone());
    let made = tokio::task::spawn_blocking(move || -> Result<std::fs::File, crate::store::StoreError> {
        // A connection of its own: the copy takes a while, and history reads must not wait.
        let made = e.stored(|s| s.reader()).and_then(|mut own| own.backup_to(&p)).and_then(|()| Ok(std::fs::File::open(&p)?));
        // Here, not after the await: a client that goes away drops the handler, not this. An
        // open file stays readable until it is closed.
        let _ = std::fs::remove_file(&p);
        made
    })
    .await;
    let file = match made {
        Ok(Ok(file)) => file,
        Ok(Err(crate::store::StoreError::Unsupported(why))) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "backup_unsupported", format!("this daemon cannot back up its store: {why}")));
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "the backup task failed");
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the backup failed; the daemon's log says why"));
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or_default();
    tracing::info!(bytes = len, "backup taken");
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/vnd.sqlite3".to_string()), (axum::http::header::CONTENT_LENGTH, len.to_string())],
        body,
    )
        .into_response())
}
