//! What the three wire formats share, written once: sending a request with retries of
//! connection failures, turning error statuses into the provider's own words, reading the body
//! under the first-byte and idle timeouts, cutting it into NDJSON lines or SSE events (never
//! inside a character, however the bytes were split), and driving a format's decoder into a
//! [`ChunkStream`].

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use reqwest::header::HeaderMap;
use serde_json::Value;
use sse_stream::SseByteStream;
use tokio::time::Instant;

use super::{Chunk, ChunkStream, LlmError, ProviderSettings};
use crate::proto::ProviderInfo;

/// The most of an error body kept for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The most of a JSON answer (a model list) read.
const MAX_JSON_BODY: usize = 16 * 1024 * 1024;
/// The longest NDJSON line accepted: a line this long is not a chat chunk.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// The longest wait between two retries, however many there are.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One provider as the wire sees it: where it is, how to authenticate, how patient to be.
pub(crate) struct Endpoint {
    pub(crate) info: ProviderInfo,
    base: String,
    headers: HeaderMap,
    http: reqwest::Client,
    settings: ProviderSettings,
}

/// A response whose status said success, and when its first byte is due.
pub(crate) struct Started {
    response: reqwest::Response,
    first_byte_by: Instant,
}

/// How a format frames its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One JSON document per line (Ollama).
    Lines,
    /// Server-Sent Events (OpenAI, Anthropic).
    Sse,
}

/// One NDJSON line or one SSE event's data, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The SSE `event:` field; `None` for lines and unnamed events.
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// A wire format's reading of its own frames.
pub(crate) trait Decoder: Send + 'static {
    /// Reads one frame and returns the chunks it completes; `Err` carries the provider's own
    /// message when it reports a failure mid-reply.
    fn frame(&mut self, frame: Frame) -> Result<Vec<Chunk>, String>;

    /// The body ended. Returns the last chunks (ending with `Done` unless one was already
    /// returned), or why the reply is incomplete.
    fn end(&mut self) -> Result<Vec<Chunk>, String>;
}

/// Why reading a response body failed.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("no data within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("{}", root_cause(.0))]
    Broken(#[source] reqwest::Error),
}

impl Endpoint {
    pub(crate) fn new(
        info: ProviderInfo,
        headers: HeaderMap,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Endpoint {
        let base = info.base_url.trim_end_matches('/').to_string();
        Endpoint {
            info,
            base,
            headers,
            http,
            settings,
        }
    }

    fn name(&self) -> &str {
        &self.info.name
    }

    /// Posts a chat request; `model` names the model in a "not found" answer.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: &Value,
        model: &str,
    ) -> Result<Started, LlmError> {
        let url = format!("{}{path}", self.base);
        tracing::debug!(provider = self.name(), %url, model, "chat request");
        self.send(|| self.http.post(&url).json(body), Some(model))
            .await
    }

    /// Gets a JSON document (a model list).
    pub(crate) async fn get_json(&self, path: &str) -> Result<Value, LlmError> {
        let url = format!("{}{path}", self.base);
        let started = self.send(|| self.http.get(&url), None).await?;
        let bytes = self
            .read_to_end(started, MAX_JSON_BODY)
            .await
            .map_err(|e| self.body_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| LlmError::Protocol {
            provider: self.name().to_string(),
            message: format!("GET {path} did not answer JSON: {e}"),
        })
    }

    /// Sends a request, retrying connection failures with doubling waits, and returns the
    /// response once its status says success.
    async fn send(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
        model: Option<&str>,
    ) -> Result<Started, LlmError> {
        let mut attempt: u32 = 0;
        loop {
            let first_byte_by = Instant::now() + self.settings.first_byte_timeout;
            let sent = request().headers(self.headers.clone()).send();
            let error = match tokio::time::timeout_at(first_byte_by, sent).await {
                Err(_) => return Err(self.timeout(self.settings.first_byte_timeout)),
                Ok(Ok(response)) if response.status().is_success() => {
                    return Ok(Started {
                        response,
                        first_byte_by,
                    });
                }
                Ok(Ok(response)) => {
                    return Err(self
                        .status_error(
                            Started {
                                response,
                                first_byte_by,
                            },
                            model,
                        )
                        .await);
                }
                Ok(Err(error)) => error,
            };
            let reason = root_cause(&error);
            if !is_connection_failure(&error) || attempt >= self.settings.retries {
                let tries = attempt + 1;
                return Err(LlmError::Unreachable {
                    provider: self.name().to_string(),
                    url: self.info.base_url.clone(),
                    reason: if tries > 1 {
                        format!("{reason} (tried {tries} times)")
                    } else {
                        reason
                    },
                });
            }
            let wait = backoff(self.settings.backoff, attempt);
            tracing::warn!(
                provider = self.name(),
                url = %self.info.base_url,
                %reason,
                retry_in_ms = wait.as_millis() as u64,
                "provider not reachable; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The error an unsuccessful status stands for, in the provider's own words.
    async fn status_error(&self, started: Started, model: Option<&str>) -> LlmError {
        let status = started.response.status();
        let body = self
            .read_to_end(started, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let message = error_message(&body).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        });
        tracing::debug!(provider = self.name(), status = status.as_u16(), %message, "provider error");
        match model {
            Some(model)
                if status == reqwest::StatusCode::NOT_FOUND
                    && message.to_lowercase().contains("model") =>
            {
                LlmError::ModelNotFound {
                    provider: self.name().to_string(),
                    model: model.to_string(),
                }
            }
            _ => LlmError::Provider {
                provider: self.name().to_string(),
                status: status.as_u16(),
                message,
            },
        }
    }

    /// The reply as chunks: the body cut into frames, each read by `decoder`.
    pub(crate) fn stream(
        &self,
        started: Started,
        framing: Framing,
        decoder: impl Decoder,
    ) -> ChunkStream {
        let body = self.body(started);
        let name = self.name().to_string();
        let frames = match framing {
            Framing::Lines => line_frames(body, name.clone()),
            Framing::Sse => sse_frames(body, name.clone()),
        };
        decode(frames, decoder, name)
    }

    /// The body's bytes, each read under its timeout: the first byte by the request's
    /// deadline, every later one within the idle timeout of the one before.
    fn body(&self, started: Started) -> BoxStream<'static, Result<Bytes, BodyError>> {
        let idle = self.settings.idle_timeout;
        let first_byte_timeout = self.settings.first_byte_timeout;
        let state = (started.response, Some(started.first_byte_by), false);
        stream::unfold(state, move |(mut response, first, ended)| async move {
            if ended {
                return None;
            }
            let (deadline, allowed) = match first {
                Some(deadline) => (deadline, first_byte_timeout),
                None => (Instant::now() + idle, idle),
            };
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => Some((Err(BodyError::Timeout(allowed)), (response, first, true))),
                Ok(Ok(None)) => None,
                Ok(Ok(Some(bytes))) => Some((Ok(bytes), (response, None, false))),
                Ok(Err(error)) => Some((Err(BodyError::Broken(error)), (response, first, true))),
            }
        })
        .boxed()
    }

    /// The whole body, or as much of it as `limit` allows.
    async fn read_to_end(&self, started: Started, limit: usize) -> Result<Vec<u8>, BodyError> {
        let mut body = self.body(started);
        let mut bytes = Vec::new();
        while let Some(piece) = body.next().await {
            bytes.extend_from_slice(&piece?);
            if bytes.len() >= limit {
                bytes.truncate(limit);
                break;
            }
        }
        Ok(bytes)
    }

    fn timeout(&self, after: Duration) -> LlmError {
        LlmError::Timeout {
            provider: self.name().to_string(),
            after,
        }
    }

    fn body_error(&self, error: BodyError) -> LlmError {
        body_error(self.name(), error)
    }
}

fn body_error(provider: &str, error: BodyError) -> LlmError {
    match error {
        BodyError::Timeout(after) => LlmError::Timeout {
            provider: provider.to_string(),
            after,
        },
        BodyError::Broken(error) => LlmError::Protocol {
            provider: provider.to_string(),
            message: format!("the reply broke off: {}", root_cause(&error)),
        },
    }
}

fn protocol(provider: &str, message: impl Into<String>) -> LlmError {
    LlmError::Protocol {
        provider: provider.to_string(),
        message: message.into(),
    }
}

/// The wait before retry number `attempt + 1`: `first`, doubled per earlier retry, capped.
fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF)
}

/// Whether a request failed before any response came: no connection could be made, or the
/// connection was closed or reset before the response started. Those are worth retrying.
fn is_connection_failure(error: &reqwest::Error) -> bool {
    if error.is_connect() {
        return true;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | UnexpectedEof
            ) {
                return true;
            }
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than "error
/// sending request for url".
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The message of an error body: `{"error": "..."}` (Ollama), `{"error": {"message": "..."}}`
/// (OpenAI, Anthropic), `{"message": ...}` or `{"detail": ...}` (other servers), else the text.
/// A header carrying an API key: marked sensitive, so that it is never printed in debug
/// output or logs.
pub(crate) fn secret_header(
    value: &str,
) -> Result<reqwest::header::HeaderValue, reqwest::header::InvalidHeaderValue> {
    let mut value = reqwest::header::HeaderValue::from_str(value)?;
    value.set_sensitive(true);
    Ok(value)
}

pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let found = [
            value.pointer("/error/message"),
            value.get("error"),
            value.get("message"),
            value.get("detail"),
        ]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str());
        if let Some(message) = found {
            return Some(message.trim().to_string());
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(500).collect())
}

/// A tool call's arguments from the JSON text a provider sent: the parsed value, `{}` for no
/// text, the text itself (as a JSON string) when it is not JSON.
pub(crate) fn parse_arguments(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A fresh id for a tool call whose provider gave none (Ollama), so that its result can name it.
pub(crate) fn new_call_id() -> String {
    format!("call_{}", uuid::Uuid::now_v7().simple())
}

/// Cuts bytes into lines, however the bytes were split: a line is only handed out whole, so a
/// character split across two pieces is whole again.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Adds bytes; returns the lines they complete, without line endings, blank ones skipped.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        while let Some(at) = bytes.iter().position(|b| *b == b'\n') {
            self.partial.extend_from_slice(&bytes[..at]);
            let line = std::mem::take(&mut self.partial);
            lines.extend(Lines::keep(line));
            bytes = &bytes[at + 1..];
        }
        self.partial.extend_from_slice(bytes);
        lines
    }

    /// The last line, when the body did not end with a line ending.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        Lines::keep(std::mem::take(&mut self.partial))
    }

    /// Bytes of a line not yet ended.
    fn pending(&self) -> usize {
        self.partial.len()
    }

    fn keep(mut line: Vec<u8>) -> Option<Vec<u8>> {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
    }
}

type Frames = BoxStream<'static, Result<Frame, LlmError>>;

/// NDJSON: one frame per line.
fn line_frames(body: BoxStream<'static, Result<Bytes, BodyError>>, provider: String) -> Frames {
    let state = (body, Lines::default(), VecDeque::<Vec<u8>>::new(), false);
    stream::unfold(state, move |(mut body, mut lines, mut ready, mut ended)| {
        let provider = provider.clone();
        async move {
            loop {
                if let Some(line) = ready.pop_front() {
                    let frame = String::from_utf8(line)
                        .map(|data| Frame { event: None, data })
                        .map_err(|_| protocol(&provider, "a line of the reply is not UTF-8"));
                    return Some((frame, (body, lines, ready, ended)));
                }
                if ended {
                    return None;
                }
                match body.next().await {
                    Some(Ok(bytes)) => {
                        ready.extend(lines.push(&bytes));
                        if lines.pending() > MAX_LINE {
                            let error = protocol(&provider, "a line of the reply is too long");
                            return Some((Err(error), (body, lines, VecDeque::new(), true)));
                        }
                    }
                    Some(Err(error)) => {
                        let error = body_error(&provider, error);
                        return Some((Err(error), (body, lines, VecDeque::new(), true)));
                    }
                    None => {
                        ended = true;
                        ready.extend(lines.finish());
                    }
                }
            }
        }
    })
    .boxed()
}

/// SSE: one frame per event that carries data (comments and bare metadata are skipped).
fn sse_frames(body: BoxStream<'static, Result<Bytes, BodyError>>, provider: String) -> Frames {
    SseByteStream::new(body)
        .filter_map(move |event| {
            let frame = match event {
                Ok(sse) => sse.data.map(|data| {
                    Ok(Frame {
                        event: sse.event,
                        data,
                    })
                }),
                Err(sse_stream::Error::Body(error)) => {
                    Some(Err(match error.downcast::<BodyError>() {
                        Ok(error) => body_error(&provider, *error),
                        Err(error) => protocol(&provider, error.to_string()),
                    }))
                }
                Err(error) => Some(Err(protocol(
                    &provider,
                    format!("bad event stream: {error}"),
                ))),
            };
            std::future::ready(frame)
        })
        .boxed()
}

/// Feeds frames to the decoder and hands out its chunks; ends after `Done` or the first error.
fn decode(frames: Frames, decoder: impl Decoder, provider: String) -> ChunkStream {
    struct State<D> {
        frames: Frames,
        decoder: D,
        ready: VecDeque<Chunk>,
        ended: bool,
        provider: String,
    }
    let state = State {
        frames,
        decoder,
        ready: VecDeque::new(),
        ended: false,
        provider,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        loop {
            if let Some(chunk) = state.ready.pop_front() {
                if matches!(chunk, Chunk::Done { .. }) {
                    state.ready.clear();
                    state.ended = true;
                }
                return Some((Ok(chunk), state));
            }
            if state.ended {
                return None;
            }
            let chunks = match state.frames.next().await {
                Some(Ok(frame)) => state
                    .decoder
                    .frame(frame)
                    .map_err(|m| protocol(&state.provider, m)),
                Some(Err(error)) => Err(error),
                None => {
                    state.ended = true;
                    state
                        .decoder
                        .end()
                        .map_err(|m| protocol(&state.provider, m))
                }
            };
            match chunks {
                Ok(chunks) => state.ready.extend(chunks),
                Err(error) => {
                    tracing::debug!(provider = %state.provider, %error, "reply failed");
                    state.ended = true;
                    state.ready.clear();
                    return Some((Err(error), state));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_however_the_bytes_are_split() {
        let text = "{\"a\":\"é🦀\"}\r\n\n{\"b\":1}\n{\"c\":2}";
        let bytes = text.as_bytes();
        for size in 1..bytes.len() {
            let mut lines = Lines::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(size) {
                got.extend(lines.push(piece));
            }
            got.extend(lines.finish());
            let got: Vec<String> = got
                .into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect();
            assert_eq!(
                got,
                ["{\"a\":\"é🦀\"}", "{\"b\":1}", "{\"c\":2}"],
                "size {size}"
            );
        }
    }

    #[test]
    fn error_messages_in_each_providers_shape() {
        assert_eq!(
            error_message(br#"{"error":"model 'x' not found"}"#).as_deref(),
            Some("model 'x' not found")
        );
        assert_eq!(
            error_message(
                br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}"#
            )
            .as_deref(),
            Some("Incorrect API key")
        );
        assert_eq!(
            error_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            )
            .as_deref(),
            Some("Overloaded")
        );
        assert_eq!(
            error_message(br#"{"detail":"Not Found"}"#).as_deref(),
            Some("Not Found")
        );
        assert_eq!(
            error_message(b"  Bad Gateway\n").as_deref(),
            Some("Bad Gateway")
        );
        assert_eq!(error_message(b""), None);
    }

    #[test]
    fn arguments_are_parsed_when_they_are_json() {
        assert_eq!(parse_arguments(""), serde_json::json!({}));
        assert_eq!(
            parse_arguments(r#"{"path":"a.rs"}"#),
            serde_json::json!({"path": "a.rs"})
        );
        assert_eq!(parse_arguments("not json"), serde_json::json!("not json"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let first = Duration::from_millis(250);
        assert_eq!(backoff(first, 0), Duration::from_millis(250));
        assert_eq!(backoff(first, 2), Duration::from_millis(1000));
        assert_eq!(backoff(first, 40), MAX_BACKOFF);
    }
}
