//! Streams from the daemon: `GET /v1/events` (typed events parsed from Server-Sent Events) and
//! `POST /v1/runs` (a run's output, one JSON object a line).

use std::pin::Pin;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};

use super::ClientError;
use crate::model::Event;
use crate::model::wire::RunOutput;

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

type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;
type LineReader = tokio::io::Lines<tokio::io::BufReader<tokio_util::io::StreamReader<ByteStream, bytes::Bytes>>>;

/// A run's lines: started, output as it comes, ended.
pub struct RunStream {
    lines: LineReader,
}

impl RunStream {
    pub(super) fn new(response: reqwest::Response) -> Self {
        let bytes: ByteStream = Box::pin(response.bytes_stream().map(|r| r.map_err(std::io::Error::other)));
        let reader = tokio::io::BufReader::new(tokio_util::io::StreamReader::new(bytes));
        RunStream { lines: tokio::io::AsyncBufReadExt::lines(reader) }
    }

    /// The next line, or None when the daemon has said all.
    pub async fn next(&mut self) -> Option<Result<RunOutput, ClientError>> {
        match self.lines.next_line().await {
            Ok(Some(line)) => Some(serde_json::from_str(&line).map_err(|e| ClientError::Protocol(format!("bad run output: {e}")))),
            Ok(None) => None,
            Err(e) => Some(Err(ClientError::Protocol(format!("the run's stream broke: {e}")))),
        }
    }
}
