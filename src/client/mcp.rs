//! The client side of MCP's Streamable HTTP transport, for `victor mcp`: forwards JSON-RPC
//! messages to a victor server's `/mcp` and hands back what it answers, one message at a time.
//! A stream cut before its answer (WiFi gone, server restarted) is taken up again with
//! `Last-Event-ID` for as long as [`GIVE_UP_AFTER`]: the server replays it from the task's log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use sse_stream::SseByteStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Client, ClientError};
use crate::mcp::{SESSION_HEADER, VERSION_HEADER, is_event_stream};

/// How long a cut stream is tried again before its call fails.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One MCP client's link to a victor server: its session, and where the server's messages go
/// (each a line of JSON).
#[derive(Clone)]
pub struct McpLink {
    client: Client,
    out: mpsc::Sender<String>,
    session: Arc<Mutex<Option<Negotiated>>>,
    /// The client's `initialize`, sent again for a new session when the server lost the old
    /// one (it restarted).
    hello: Arc<Mutex<Option<String>>>,
    /// Held while a new session opens, so that calls that all found the old one gone open one.
    reopening: Arc<tokio::sync::Mutex<()>>,
    /// Ends the notification stream when the link closes.
    closed: CancellationToken,
}

#[derive(Debug, Clone)]
struct Negotiated {
    id: String,
    version: Option<String>,
}

/// How a stream of the server's ended.
enum Ended {
    /// With the answer to the request it was for (or, for a notification stream, never).
    Answered,
    /// Cut: resume after this event id, when there was one.
    Cut(Option<String>),
}

impl McpLink {
    pub fn new(client: Client, out: mpsc::Sender<String>) -> McpLink {
        McpLink {
            client,
            out,
            session: Arc::default(),
            hello: Arc::default(),
            reopening: Arc::default(),
            closed: CancellationToken::new(),
        }
    }

    fn negotiated(&self) -> Option<Negotiated> {
        self.session.lock().ok().and_then(|session| session.clone())
    }

    fn with_session(&self, mut request: RequestBuilder) -> RequestBuilder {
        if let Some(session) = self.negotiated() {
            request = request.header(SESSION_HEADER, session.id);
            if let Some(version) = session.version {
                request = request.header(VERSION_HEADER, version);
            }
        }
        request
    }

    async fn emit(&self, message: &Value) {
        let _ = self.out.send(message.to_string()).await;
    }

    /// Sends one message from the MCP client, and hands on the server's answer to it (with
    /// the notifications that come before it). A request that cannot be delivered is
    /// answered with a JSON-RPC error that says why.
    pub async fn send(&self, message: Value) {
        let request_id = message
            .get("method")
            .and(message.get("id"))
            .cloned()
            .filter(|id| !id.is_null());
        let initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
        let body = message.to_string();
        let sent_in = self.negotiated().map(|session| session.id);
        let mut response = match self.post(&body).await {
            Ok(response) => response,
            Err(error) => {
                self.fail(request_id.as_ref(), &error.to_string()).await;
                return;
            }
        };
        if initialize {
            if let Ok(mut hello) = self.hello.lock() {
                *hello = Some(body.clone());
            }
            self.note_session(&response);
        } else if response.status() == StatusCode::NOT_FOUND && self.reopen(sent_in).await {
            response = match self.post(&body).await {
                Ok(response) => response,
                Err(error) => {
                    self.fail(request_id.as_ref(), &error.to_string()).await;
                    return;
                }
            };
        }
        let Some(request_id) = request_id else {
            return;
        };
        let streamed = is_event_stream(response.headers().get(CONTENT_TYPE));
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            self.refused(&request_id, status, &body).await;
            return;
        }
        if !streamed {
            match response.json::<Value>().await {
                Ok(answer) => {
                    if initialize {
                        self.note_version(&answer);
                        self.start_notifications();
                    }
                    self.emit(&answer).await;
                }
                Err(e) => {
                    let message = format!("the server's answer was not JSON: {e}");
                    self.fail(Some(&request_id), &message).await;
                }
            }
            return;
        }
        let mut ended = self.relay(response).await;
        let mut since = None;
        let mut backoff = FIRST_BACKOFF;
        while let Ended::Cut(last) = ended {
            let Some(last) = last else {
                self.fail(
                    Some(&request_id),
                    "the server's stream ended before its answer",
                )
                .await;
                return;
            };
            if !wait(&mut since, &mut backoff).await {
                self.fail(Some(&request_id), "lost the stream and could not resume it")
                    .await;
                return;
            }
            ended = match self.resume(&last).await {
                Ok(Some(response)) => {
                    since = None;
                    backoff = FIRST_BACKOFF;
                    self.relay(response).await
                }
                Ok(None) => Ended::Cut(Some(last)),
                Err(error) => {
                    self.fail(Some(&request_id), &error).await;
                    return;
                }
            };
        }
    }

    /// POSTs one message until the server has it: a connection that never opened surely did
    /// not deliver it and is tried again; any other failure is not, so that a call never runs
    /// twice.
    async fn post(&self, body: &str) -> Result<reqwest::Response, ClientError> {
        let mut since: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let request = self
                .with_session(self.client.request(Method::POST, "/mcp"))
                .header(CONTENT_TYPE, "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body.to_string());
            match request.send().await {
                Ok(response) => return Ok(response),
                Err(error) => {
                    let error = self.client.transport_error(error);
                    let unreachable = matches!(error, ClientError::Unreachable { .. });
                    if !unreachable || !wait(&mut since, &mut backoff).await {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Keeps the session the server opened in answer to `initialize`.
    fn note_session(&self, response: &reqwest::Response) {
        if !response.status().is_success() {
            return;
        }
        let id = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        if let Some(id) = id
            && let Ok(mut session) = self.session.lock()
        {
            *session = Some(Negotiated { id, version: None });
        }
    }

    /// Opens a new session with the client's `initialize` when the server no longer knows
    /// `lost` (it restarted); whether there is one now. The MCP client never sees this: its session goes
    /// on (subscriptions to resources are made again by subscribing again).
    async fn reopen(&self, lost: Option<String>) -> bool {
        let _reopening = self.reopening.lock().await;
        if self.negotiated().map(|session| session.id) != lost {
            // Another call opened the new one meanwhile.
            return true;
        }
        let hello = self.hello.lock().ok().and_then(|hello| hello.clone());
        let Some(hello) = hello else {
            return false;
        };
        if let Ok(mut session) = self.session.lock() {
            *session = None;
        }
        let Ok(response) = self.post(&hello).await else {
            return false;
        };
        self.note_session(&response);
        let Ok(answer) = response.json::<Value>().await else {
            return false;
        };
        self.note_version(&answer);
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        if self.post(&initialized.to_string()).await.is_err() {
            return false;
        }
        self.start_notifications();
        true
    }

    /// The stream after `last`: `None` to try again later, an error when it never will be.
    async fn resume(&self, last: &str) -> Result<Option<reqwest::Response>, String> {
        let request = self
            .with_session(self.client.request(Method::GET, "/mcp"))
            .header("accept", "text/event-stream")
            .header("last-event-id", last);
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(Some(response)),
            Ok(response) if response.status().is_server_error() => Ok(None),
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                Err(format!(
                    "the server refused to resume the stream ({status}): {body}"
                ))
            }
            Err(error) => match self.client.transport_error(error) {
                error if error.is_final() => Err(error.to_string()),
                _ => Ok(None),
            },
        }
    }

    /// Hands on every message of an SSE response; how it ended.
    async fn relay(&self, response: reqwest::Response) -> Ended {
        let mut events = SseByteStream::new(response.bytes_stream());
        let mut last = None;
        while let Some(event) = events.next().await {
            let Ok(event) = event else {
                return Ended::Cut(last);
            };
            if let Some(id) = event.id {
                last = Some(id);
            }
            let Some(data) = event.data.filter(|data| !data.trim().is_empty()) else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            self.emit(&message).await;
            let answers = message.get("method").is_none()
                && (message.get("result").is_some() || message.get("error").is_some());
            if answers {
                return Ended::Answered;
            }
        }
        Ended::Cut(last)
    }

    fn note_version(&self, answer: &Value) {
        let version = answer
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Ok(mut session) = self.session.lock()
            && let Some(session) = session.as_mut()
        {
            session.version = version;
        }
    }

    /// The session's own stream (resource updates), kept open and resumed until the link
    /// closes.
    fn start_notifications(&self) {
        let link = self.clone();
        let session = self.negotiated().map(|session| session.id);
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            // A new session has a stream of its own.
            while link.negotiated().map(|session| session.id) == session {
                let mut request = link
                    .with_session(link.client.request(Method::GET, "/mcp"))
                    .header("accept", "text/event-stream");
                if let Some(last) = &last {
                    request = request.header("last-event-id", last.clone());
                }
                let opened = tokio::select! {
                    () = link.closed.cancelled() => return,
                    opened = request.send() => opened,
                };
                match opened {
                    Ok(response) if response.status().is_success() => {
                        let relayed = tokio::select! {
                            () = link.closed.cancelled() => return,
                            ended = link.relay(response) => ended,
                        };
                        if let Ended::Cut(Some(id)) = relayed {
                            last = Some(id);
                        }
                    }
                    // No such stream for this session (or no session): nothing to follow.
                    Ok(response) if response.status().is_client_error() => return,
                    _ => {}
                }
                tokio::select! {
                    () = link.closed.cancelled() => return,
                    () = tokio::time::sleep(MAX_BACKOFF) => {}
                }
            }
        });
    }

    /// Ends the session on the server.
    pub async fn close(&self) {
        self.closed.cancel();
        if self.negotiated().is_some() {
            let request = self.with_session(self.client.request(Method::DELETE, "/mcp"));
            let _ = request.send().await;
        }
    }

    /// Answers a request the server refused with the reason it gave.
    async fn refused(&self, id: &Value, status: StatusCode, body: &str) {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let reason = parsed
            .as_ref()
            .and_then(|body| {
                body.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| body.trim().to_string());
        let message = format!("the victor server refused this ({status}): {reason}");
        self.fail(Some(id), &message).await;
    }

    async fn fail(&self, id: Option<&Value>, message: &str) {
        let Some(id) = id else {
            tracing::warn!(error = message, "could not deliver a notification");
            return;
        };
        let error = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32603, "message": message},
        });
        self.emit(&error).await;
    }
}

/// Waits before trying again; `false` once [`GIVE_UP_AFTER`] has passed since the first failure.
async fn wait(since: &mut Option<Instant>, backoff: &mut Duration) -> bool {
    let first = *since.get_or_insert_with(Instant::now);
    if first.elapsed() > GIVE_UP_AFTER {
        return false;
    }
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    true
}
