//! Following an event stream across dropped connections and server restarts: reconnect with
//! backoff, resume after the last event handed out, never hand out an event twice.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::Method;
use sse_stream::{Sse, SseByteStream};
use tokio::time::Instant;

use super::{Client, ClientError, is_retryable, task_path};
use crate::proto::{Event, START_POS_HEADER, types};

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// One task's events by seq; the stream ends after its final event.
    Task(String),
    /// Every task's events by server-wide pos.
    All,
}

type SseFrames = Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>;

/// A live stream of events that survives dropped connections.
pub struct Follow {
    client: Client,
    topic: Topic,
    /// Seq (task) or pos (all) of the last event handed out.
    cursor: Option<u64>,
    types: Option<String>,
    frames: Option<SseFrames>,
    connected_once: bool,
    /// The current connection has delivered something (an event or a heartbeat).
    progressed: bool,
    /// Wait (with backoff) before the next connection attempt.
    pause_before_connect: bool,
    failing_since: Option<Instant>,
    backoff: Duration,
    done: bool,
    /// Silence longer than this (no event, no heartbeat) means the connection is dead.
    idle_timeout: Duration,
    /// How long to keep trying to reconnect before giving up.
    give_up_after: Duration,
    reconnects: u64,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Follow {
    pub(super) fn new(client: Client, topic: Topic, after: Option<u64>) -> Follow {
        Follow {
            client,
            topic,
            cursor: after,
            types: None,
            frames: None,
            connected_once: false,
            progressed: false,
            pause_before_connect: false,
            failing_since: None,
            backoff: FIRST_BACKOFF,
            done: false,
            idle_timeout: Duration::from_secs(15),
            give_up_after: Duration::from_secs(300),
            reconnects: 0,
        }
    }

    /// Only these event types (heartbeats and the final state still arrive).
    pub fn types(mut self, types: &[&str]) -> Follow {
        self.types = Some(types.join(","));
        self
    }

    pub fn idle_timeout(mut self, timeout: Duration) -> Follow {
        self.idle_timeout = timeout;
        self
    }

    pub fn give_up_after(mut self, limit: Duration) -> Follow {
        self.give_up_after = limit;
        self
    }

    /// The seq (or pos) of the last event handed out.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Connects now rather than at the first [`Follow::next`]: whatever the caller reads from
    /// the server afterwards (a task list, say) is then covered by the stream, which starts
    /// before it. The all-tasks stream learns its start pos here.
    pub async fn start(&mut self) -> Result<(), ClientError> {
        if self.frames.is_none() && !self.done {
            self.connect().await?;
        }
        Ok(())
    }

    /// The next event (heartbeats included, `seq` 0), or `None` after a task's final event.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if self.done {
                return None;
            }
            let Some(frames) = self.frames.as_mut() else {
                if self.pause_before_connect
                    && let Err(e) = self.wait_before_retry().await
                {
                    self.done = true;
                    return Some(Err(e));
                }
                if let Err(e) = self.connect().await {
                    if e.is_final() || !self.connected_once {
                        self.done = true;
                        return Some(Err(e));
                    }
                    self.pause_before_connect = true;
                }
                continue;
            };
            let frame = match tokio::time::timeout(self.idle_timeout, frames.next()).await {
                Ok(Some(Ok(frame))) if frame.event.as_deref() != Some("error") => frame,
                // Closed, broken, failing or silent: connect again from the cursor, at once
                // if this connection got somewhere, after a pause if it did not.
                _ => {
                    self.frames = None;
                    self.pause_before_connect = !self.progressed;
                    continue;
                }
            };
            let Some(data) = frame.data else { continue };
            let Ok(event) = serde_json::from_str::<Event>(&data) else {
                continue;
            };
            self.progressed = true;
            self.failing_since = None;
            self.backoff = FIRST_BACKOFF;
            if event.seq == 0 {
                if event.kind == types::SERVER_SHUTDOWN {
                    self.frames = None;
                    self.pause_before_connect = true;
                }
                return Some(Ok(event));
            }
            let position = match self.topic {
                Topic::Task(_) => event.seq,
                Topic::All => event.pos,
            };
            if self.cursor.is_some_and(|cursor| position <= cursor) {
                continue;
            }
            self.cursor = Some(position);
            if matches!(self.topic, Topic::Task(_)) && event.final_state().is_some() {
                self.done = true;
            }
            return Some(Ok(event));
        }
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        let path = match &self.topic {
            Topic::Task(id) => task_path(id, "/events"),
            Topic::All => "/api/v1/events".to_string(),
        };
        let mut query = Vec::new();
        if let Some(cursor) = self.cursor {
            query.push(("after", cursor.to_string()));
        }
        if let Some(types) = &self.types {
            query.push(("types", types.clone()));
        }
        let request = self
            .client
            .request(Method::GET, &path)
            .query(&query)
            .header("accept", "text/event-stream");
        let response = match self.client.send(request).await {
            Ok(response) => response,
            Err(ClientError::Api { status, .. })
                if is_retryable(reqwest::StatusCode::from_u16(status).unwrap_or_default())
                    && self.connected_once =>
            {
                return Err(ClientError::Transport(format!("server answered {status}")));
            }
            Err(e) => return Err(e),
        };
        if self.cursor.is_none() {
            // The all-tasks stream from "now": remember where now was, to resume from it.
            self.cursor = response
                .headers()
                .get(START_POS_HEADER)
                .and_then(|value| value.to_str().ok()?.parse().ok());
        }
        if self.connected_once {
            self.reconnects += 1;
        }
        self.connected_once = true;
        self.progressed = false;
        self.frames = Some(Box::pin(SseByteStream::new(response.bytes_stream())));
        Ok(())
    }

    async fn wait_before_retry(&mut self) -> Result<(), ClientError> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() > self.give_up_after {
            return Err(ClientError::Lost {
                url: self.client.server().to_string(),
                secs: self.give_up_after.as_secs(),
            });
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(())
    }
}
