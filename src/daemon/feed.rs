//! `GET /v1/events`: live changes as Server-Sent Events. A client that reconnects with
//! `Last-Event-ID` (or `?after=N`) first gets everything it missed from the store, then the live
//! feed, with no gap and no duplicate: it subscribes before it reads the store, and skips any
//! event whose sequence number it has already passed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Engine;
use super::auth::Caller;
use super::error::ApiError;
use super::routes::Query;
use crate::model::Event;
use crate::rules;
use crate::store::EventFilter;

const CATCH_UP_PAGE: u32 = 1000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    #[serde(default)]
    after: Option<u64>,
}

pub async fn stream(
    State(engine): State<Arc<Engine>>,
    caller: Caller,
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
    let (tx, rx) = mpsc::channel(256);
    let live = engine.subscribe();
    tokio::spawn(follow(engine, caller.user, after, live, tx));
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
        let filter = EventFilter { after_seq: Some(last), limit: Some(CATCH_UP_PAGE), ..Default::default() };
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

async fn follow(engine: Arc<Engine>, user: String, after: u64, mut live: broadcast::Receiver<Arc<Event>>, tx: Sink) {
    let mut closing = engine.closing();
    let Ok(mut last) = catch_up(&engine, &user, after, &tx).await else { return };
    loop {
        let received = tokio::select! {
            r = live.recv() => r,
            _ = tx.closed() => return, // the client went away while nothing happened
            _ = closing.wait_for(|c| *c) => return, // the daemon is stopping: end the stream
        };
        match received {
            Ok(event) if event.seq <= last => {}
            Ok(event) => {
                if send(&engine, &user, &event, &tx).await.is_err() {
                    return;
                }
                last = event.seq;
            }
            Err(broadcast::error::RecvError::Lagged(_)) => match catch_up(&engine, &user, last, &tx).await {
                Ok(l) => last = l,
                Err(()) => return,
            },
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
