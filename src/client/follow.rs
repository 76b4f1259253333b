//! The client side of `GET /v1/events`: a stream of typed events parsed from Server-Sent Events.

use std::pin::Pin;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};

use super::ClientError;
use crate::model::Event;

type Inner = Pin<Box<dyn Stream<Item = Result<Event, ClientError>> + Send>>;

/// Events in order. Ends (`None`) when the daemon closes the stream; remember the last `seq`
/// and open a new stream after it to resume without a gap.
pub struct EventStream {
    inner: Inner,
}

impl EventStream {
    pub(super) fn new(response: reqwest::Response) -> Self {
        let inner = response.bytes_stream().eventsource().map(|item| match item {
            Ok(sse) => serde_json::from_str::<Event>(&sse.data).map_err(|e| ClientError::Protocol(format!("bad event: {e}"))),
            Err(e) => Err(ClientError::Protocol(format!("the event stream broke: {e}"))),
        });
        EventStream { inner: Box::pin(inner) }
    }

    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        self.inner.next().await
    }
}
