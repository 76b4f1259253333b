//! `GET /v1/events`: live changes as Server-Sent Events. A client that reconnects with
//! `Last-Event-ID` (or `?after=N`) first gets everything it missed from the store, then the live
//! feed, with no gap and no duplicate: it subscribes before it reads the store, and skips any
//! event whose sequence number it has already passed.
//!
//! A catch-up reads from the store only the events the caller may see (the store narrows by
//! the indexed actor, subject and task columns; `rules::event_visible` still decides each one),
//! so a user who may see nothing reads nothing. Each token, and each Unix account on the socket,
//! may hold only a few streams, so one client cannot take them all from the others; all callers
//! whose uid has no account on this machine (each is its own `uid-N` user, and one user may hold
//! thousands of such uids in a user namespace) share the streams of one account. A stream ends
//! when its token is revoked or expires, or its account is disabled.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Engine;
use super::auth::{Caller, Peer};
use super::error::ApiError;
use super::extract::Query;
use crate::model::{Event, TokenId, text};
use crate::rules;
use crate::store::{EventFilter, Scope};

const CATCH_UP_PAGE: u32 = 1000;

/// How many event streams one Unix account may hold at once on the socket without a token. A
/// console holds one; a few more allow a script or two beside it. All uids with no account
/// together hold as many.
pub const MAX_STREAMS_PER_ACCOUNT: usize = 16;
/// How many event streams one token may hold at once: a token is one client (a console, a
/// gate, a script), so fewer than an account, whose person may run several.
pub const MAX_STREAMS_PER_TOKEN: usize = 8;

/// How often a stream whose token expires looks at the daemon's clock.
const EXPIRY_LOOK: std::time::Duration = std::time::Duration::from_secs(1);

/// Whose streams a stream counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Holder {
    Token(TokenId),
    /// A Unix account on the socket, by name.
    Account(String),
    /// Every caller on the socket whose uid has no account on this machine.
    NoAccount,
}

impl Holder {
    fn cap(&self) -> usize {
        match self {
            Holder::Token(_) => MAX_STREAMS_PER_TOKEN,
            Holder::Account(_) | Holder::NoAccount => MAX_STREAMS_PER_ACCOUNT,
        }
    }
}

/// Open event streams by holder. A `StreamSlot` is one of them and gives itself back when its
/// stream ends.
#[derive(Clone, Default)]
pub struct StreamSlots(Arc<Mutex<HashMap<Holder, usize>>>);

pub struct StreamSlot {
    slots: StreamSlots,
    holder: Holder,
    /// Whom the stream is for: what they may see.
    user: String,
    /// The token the stream was opened with, if any: revoking it, or its expiry, ends the stream.
    token: Option<TokenId>,
}

impl StreamSlots {
    fn take(&self, caller: &Caller, peer: Option<&Peer>) -> Result<StreamSlot, ApiError> {
        let token = match &caller.auth {
            crate::model::Auth::Token { token, .. } => Some(*token),
            _ => None,
        };
        // A token names a user an admin made; only the socket's own login may be a uid with no account.
        let holder = match token {
            Some(id) => Holder::Token(id),
            None if peer.is_some_and(|p| p.has_account) => Holder::Account(caller.user.clone()),
            None => Holder::NoAccount,
        };
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.entry(holder.clone()).or_default();
        let cap = holder.cap();
        if *mine >= cap {
            let (whose, one) = match &holder {
                Holder::Token(id) => (format!("token {id} already has"), "one token"),
                Holder::Account(user) => (format!("your account '{}' already has", text::inert(user)), "one account"),
                Holder::NoAccount => {
                    ("your uid has no account on this machine, and such uids (a user namespace's, say) together have".into(), "they")
                }
            };
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "{whose} {cap} event streams open, the most {one} may; close a console (`zsa`, `zsa tui`), a `zsa gate` or a script following /v1/events first"
                ),
            )
            .retry_after(1));
        }
        *mine += 1;
        super::metrics::stream_opened();
        Ok(StreamSlot { slots: self.clone(), holder, user: caller.user.clone(), token })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        super::metrics::stream_closed();
        let mut open = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    #[serde(default)]
    after: Option<u64>,
}

#[utoipa::path(get, path = "/v1/events", tag = "audit", params(FeedQuery, ("last-event-id" = Option<String>, Header, description = "Resume after this event")), responses((status = 200, description = "Server-Sent Events, each an event of the log the caller may see", content_type = "text/event-stream", body = crate::model::Event), crate::daemon::error::Refused))]
pub async fn stream(
    State(engine): State<Arc<Engine>>,
    Extension(slots): Extension<StreamSlots>,
    caller: Caller,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let from_header = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("bad_last_event_id", "Last-Event-ID must be an event sequence number"))?,
        ),
        None => None,
    };
    // With neither, the stream starts at the present: only new events.
    let after = match from_header.or(q.after) {
        Some(n) => n,
        None => engine.read(|s, _| s.last_seq),
    };
    let slot = slots.take(&caller, peer.as_ref().map(|p| &p.0.0))?;
    let (tx, rx) = mpsc::channel(256);
    let live = engine.subscribe();
    tokio::spawn(follow(engine, slot, after, live, tx));
    Ok(Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default()))
}

type Sink = mpsc::Sender<Result<SseEvent, Infallible>>;

/// Sends one event if the user may see it. Err when the client has gone.
async fn send(engine: &Engine, user: &str, event: &Event, tx: &Sink) -> Result<(), ()> {
    if !rules::event_visible(&engine.policy(), user, event) {
        return Ok(());
    }
    let data = serde_json::to_string(event).map_err(|_| ())?;
    let sse = SseEvent::default().id(event.seq.to_string()).event(event.change.kind()).data(data);
    tx.send(Ok(sse)).await.map_err(|_| ())
}

/// Sends everything after `last` from the store; returns the new `last`.
async fn catch_up(engine: &Arc<Engine>, user: &str, mut last: u64, tx: &Sink) -> Result<u64, ()> {
    loop {
        let e = engine.clone();
        let visible_to = Some(Scope::of(&engine.policy(), user));
        let filter = EventFilter { after_seq: Some(last), limit: Some(CATCH_UP_PAGE), visible_to, ..Default::default() };
        let page = match tokio::task::spawn_blocking(move || e.events(&filter)).await {
            Ok(Ok(page)) => page,
            _ => {
                tracing::error!("could not read events for a stream client; closing its stream");
                return Err(());
            }
        };
        for event in &page {
            send(engine, user, event, tx).await?;
            last = event.seq;
        }
        if (page.len() as u32) < CATCH_UP_PAGE {
            return Ok(last);
        }
    }
}

/// Whether the stream's caller would still be let in: a stream is authenticated once, when it
/// opens, so it ends when its token is revoked or its account disabled (the client's reconnect
/// is then refused with the reason), rather than feeding the log to someone shut out.
fn still_admitted(engine: &Engine, slot: &StreamSlot) -> bool {
    let now = engine.now();
    engine.read(|s, _| {
        !s.is_disabled(&slot.user) && slot.token.is_none_or(|id| s.tokens.get(&id).is_some_and(|t| !t.revoked && !t.expired_at(now)))
    })
}

/// Resolves at each look at the clock for a stream whose token expires; never for others.
async fn expiry_look(look: &mut Option<tokio::time::Interval>) {
    match look {
        Some(look) => {
            look.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Whether an event can shut a stream's caller out: a token revoked or an account disabled.
fn shuts_out(change: &crate::model::Change) -> bool {
    matches!(change, crate::model::Change::TokenRevoked { .. } | crate::model::Change::UserDisabled { .. })
}

/// Feeds one stream until its client goes, its caller is shut out or the daemon stops; its slot
/// is given back then. Admission is looked at again only where it can have changed: after a
/// catch-up, and on a revoked token or a disabled account, not on every event of every stream.
async fn follow(engine: Arc<Engine>, slot: StreamSlot, after: u64, mut live: broadcast::Receiver<Arc<Event>>, tx: Sink) {
    let user = &slot.user;
    let mut closing = engine.closing();
    let Ok(mut last) = catch_up(&engine, user, after, &tx).await else { return };
    if !still_admitted(&engine, &slot) {
        return;
    }
    // A token that expires is looked at each second, by the daemon's clock: no event marks it.
    let expires = engine.read(|s, _| slot.token.and_then(|id| s.tokens.get(&id)).and_then(|t| t.expires_at)).is_some();
    let mut look = expires.then(|| {
        let mut look = tokio::time::interval(EXPIRY_LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        look
    });
    loop {
        let received = tokio::select! {
            r = live.recv() => r,
            _ = tx.closed() => return, // the client went away while nothing happened
            _ = closing.wait_for(|c| *c) => return, // the daemon is stopping: end the stream
            _ = expiry_look(&mut look) => match still_admitted(&engine, &slot) {
                true => continue,
                false => return,
            },
        };
        match received {
            Ok(event) if event.seq <= last => {}
            Ok(event) if shuts_out(&event.change) && !still_admitted(&engine, &slot) => return,
            Ok(event) => {
                if send(&engine, user, &event, &tx).await.is_err() {
                    return;
                }
                last = event.seq;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => match catch_up(&engine, user, last, &tx).await {
                Ok(l) if still_admitted(&engine, &slot) => last = l,
                _ => return,
            },
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
