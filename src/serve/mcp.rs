//! The Model Context Protocol over Streamable HTTP at `/mcp`: any MCP client (a coding
//! assistant) drives victor with the tools of [`super::mcp_tools`], under the caller's key and
//! scope, behind the same Origin and Host checks as every route (`guard.rs`).
//!
//! Own transport rather than the `rmcp` SDK's `StreamableHttpService`: that service keeps each
//! session's streams in memory (or copies every message into an `EventStore` of its own), so a
//! stream can be resumed only on the process that made it, while it lives. Here a tool call
//! that follows a task (`wait_task`, `start_task` with `wait`, `chat`, `start_agent` with
//! `wait`) streams its progress straight from the task's durable log, and each SSE event's id
//! says where in that log it stands (a [`Follow`], encoded). A client that comes back with
//! `Last-Event-ID` (a dropped WiFi, a restarted server) gets the rest of the log from the store
//! and then the call's answer: nothing missed, nothing twice, nothing kept per stream.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson};
use super::mcp_tools;
use super::stream::Connected;
use crate::bus::Topic;
use crate::mcp::{PROTOCOL_VERSIONS, SESSION_HEADER, VERSION_HEADER};
use crate::proto::Scope;

/// Sessions kept at most; past it the one unused longest makes room.
const MAX_SESSIONS: usize = 10_000;
/// How soon a client that lost its stream should try again.
const RETRY: Duration = Duration::from_millis(500);

/// JSON-RPC error codes.
pub(super) mod codes {
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// A session this server does not know (any more).
    pub const NO_SESSION: i64 = -32001;
}

/// The MCP sessions of one server, and the tool calls under way that a client may cancel.
#[derive(Default)]
pub(super) struct McpState {
    sessions: Mutex<HashMap<String, Session>>,
    calls: Mutex<HashMap<CallKey, CancellationToken>>,
}

/// What victor keeps of a session: whose it is, and the task logs it subscribed to.
struct Session {
    holder: String,
    subscriptions: HashSet<String>,
    seen: Instant,
}

/// A call under way: its session (or, without one, its caller) and its JSON-RPC id.
type CallKey = (String, String);

impl McpState {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn calls(&self) -> MutexGuard<'_, HashMap<CallKey, CancellationToken>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open_session(&self, holder: &str) -> String {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut sessions = self.sessions();
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.seen)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                holder: holder.to_string(),
                subscriptions: HashSet::new(),
                seen: Instant::now(),
            },
        );
        id
    }

    /// Whether `id` is a session of `holder` (and notes its use).
    fn session_of(&self, id: &str, holder: &str) -> bool {
        match self.sessions().get_mut(id) {
            Some(session) if session.holder == holder => {
                session.seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Whose session `id` is, while it lives.
    fn holder_of(&self, id: &str) -> Option<String> {
        self.sessions()
            .get(id)
            .map(|session| session.holder.clone())
    }

    pub(super) fn subscribe(&self, session: &str, task: &str, on: bool) {
        if let Some(session) = self.sessions().get_mut(session) {
            if on {
                session.subscriptions.insert(task.to_string());
            } else {
                session.subscriptions.remove(task);
            }
        }
    }

    fn subscribed(&self, session: &str, task: &str) -> Option<bool> {
        self.sessions()
            .get(session)
            .map(|session| session.subscriptions.contains(task))
    }

    /// Registers a call that can be cancelled until the returned guard is dropped.
    fn register(self: &Arc<Self>, key: CallKey, cancel: CancellationToken) -> InFlight {
        self.calls().insert(key.clone(), cancel);
        InFlight {
            state: self.clone(),
            key,
        }
    }

    fn cancel(&self, key: &CallKey) {
        if let Some(cancel) = self.calls().remove(key) {
            cancel.cancel();
        }
    }
}

/// A call under way; it stops being cancellable when dropped.
struct InFlight {
    state: Arc<McpState>,
    key: CallKey,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.calls().remove(&self.key);
    }
}

/// Who is calling, as a tool sees it.
pub(super) struct Caller {
    pub principal: Principal,
    pub session: Option<String>,
}

impl Caller {
    /// The key under which this caller's calls can be cancelled.
    fn call_key(&self, request: &Value) -> CallKey {
        let scope = match &self.session {
            Some(session) => session.clone(),
            None => format!("holder:{}", self.principal.holder),
        };
        (scope, request.to_string())
    }
}

/// A tool call that follows a task's log to its answer. Encoded, it is the id of each event
/// of the call's stream, with `seq` at the last log event that event stands for: everything a
/// server needs to go on with the stream from there, whichever server and however much later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Follow {
    /// What the answer is made of.
    #[serde(rename = "k")]
    pub kind: FollowKind,
    #[serde(rename = "t")]
    pub task: String,
    /// The JSON-RPC id of the call.
    #[serde(rename = "r")]
    pub request: Value,
    /// The client's progress token: one `notifications/progress` per log event when set.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// When the call stops waiting and answers that the task is still going (Unix ms).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Cancelling the call cancels the task too (the call started it).
    #[serde(rename = "c", default, skip_serializing_if = "std::ops::Not::not")]
    pub cancels_task: bool,
    /// The last log event delivered.
    #[serde(rename = "n")]
    pub seq: u64,
}

/// How a followed call's answer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum FollowKind {
    /// A task's state and the tail of its output.
    #[serde(rename = "t")]
    Task,
    /// A chat turn's reply.
    #[serde(rename = "c")]
    Chat,
    /// An agent's last message.
    #[serde(rename = "a")]
    Agent,
}

/// Event ids: a followed call's (`f.`) or the notification stream's (`g.`).
const FOLLOW_ID: &str = "f.";
const NOTICES_ID: &str = "g.";

impl Follow {
    fn event_id(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{FOLLOW_ID}{}", URL_SAFE_NO_PAD.encode(json))
    }

    fn from_event_id(id: &str) -> Option<Follow> {
        let encoded = id.strip_prefix(FOLLOW_ID)?;
        let json = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        serde_json::from_slice(&json).ok()
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        let until = self.until_ms?;
        let left = until - jiff::Timestamp::now().as_millisecond();
        let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
        Some(tokio::time::Instant::now() + left)
    }
}

/// What a request comes to.
pub(super) enum Reply {
    /// The JSON-RPC result.
    Result(Value),
    /// A JSON-RPC error: code and message.
    Error(i64, String),
    /// A tool call that follows a task.
    Follow(Follow),
}

fn response(id: &Value, reply: Result<Value, (i64, String)>) -> Value {
    match reply {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
}

/// A JSON-RPC error that answers no request in particular, with its HTTP status.
fn refusal(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    let body = response(&Value::Null, Err((code, message.into())));
    (status, axum::Json(body)).into_response()
}

/// 404 for a session this server does not know, which tells the client to initialize again.
fn no_session(id: &str) -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        codes::NO_SESSION,
        format!("no session {id} here (it ended, or the server restarted): initialize again"),
    )
}

/// One message from the client.
#[derive(Debug, Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Value,
}

/// `POST /mcp`: one JSON-RPC message. A request is answered as JSON, or, for a call that
/// follows a task, as an SSE stream of its progress and then its answer; a notification or a
/// response gets 202.
pub(super) async fn post(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(message): ApiJson<Value>,
) -> Response {
    if let Some(refused) = check_version(&headers) {
        return refused;
    }
    if message.is_array() {
        return refusal(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            "send one JSON-RPC message per request (batches are not part of MCP since 2025-06-18)",
        );
    }
    let incoming: Incoming = match serde_json::from_value(message) {
        Ok(incoming) => incoming,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                format!("not a JSON-RPC message: {e}"),
            );
        }
    };
    let Some(method) = incoming.method else {
        // A response to a request of ours: victor sends none, so there is nothing to match.
        return StatusCode::ACCEPTED.into_response();
    };
    let mcp = state.mcp.clone();
    let session = session_header(&headers);
    if method == "initialize" {
        let Some(id) = incoming.id else {
            return StatusCode::ACCEPTED.into_response();
        };
        let session = mcp.open_session(&principal.holder);
        let result = initialize(&incoming.params);
        let mut reply = axum::Json(response(&id, Ok(result))).into_response();
        if let Ok(value) = HeaderValue::from_str(&session) {
            reply.headers_mut().insert(SESSION_HEADER, value);
        }
        return reply;
    }
    if let Some(session) = &session
        && !mcp.session_of(session, &principal.holder)
    {
        return no_session(session);
    }
    let caller = Caller { principal, session };
    let Some(id) = incoming.id else {
        notification(&mcp, &caller, &method, &incoming.params);
        return StatusCode::ACCEPTED.into_response();
    };
    let reply = match method.as_str() {
        "ping" => Reply::Result(json!({})),
        "tools/list" => Reply::Result(mcp_tools::list(caller.principal.scope)),
        "tools/call" => mcp_tools::call(&state, &caller, &id, &incoming.params).await,
        "resources/list" => mcp_tools::list_resources(&state).await,
        "resources/templates/list" => Reply::Result(mcp_tools::resource_templates()),
        "resources/read" => mcp_tools::read_resource(&state, &incoming.params).await,
        "resources/subscribe" | "resources/unsubscribe" => {
            subscribe(
                &state,
                &caller,
                &incoming.params,
                method == "resources/subscribe",
            )
            .await
        }
        _ => Reply::Error(
            codes::METHOD_NOT_FOUND,
            format!("victor does not answer `{method}`"),
        ),
    };
    match reply {
        Reply::Result(result) => axum::Json(response(&id, Ok(result))).into_response(),
        Reply::Error(code, message) => {
            axum::Json(response(&id, Err((code, message)))).into_response()
        }
        Reply::Follow(follow) => {
            let streams = accepts_sse(&headers);
            let frames = start_follow(&state, &caller, follow, true);
            if streams {
                sse(frames)
            } else {
                answer_only(frames).await
            }
        }
    }
}

/// The `initialize` result: the client's protocol revision when victor speaks it, else the
/// newest victor speaks (the client then decides whether it can go on).
fn initialize(params: &Value) -> Value {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == asked)
        .unwrap_or(&PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": false},
            "resources": {"subscribe": true, "listChanged": false},
        },
        "serverInfo": {"name": "victor", "title": "victor", "version": env!("CARGO_PKG_VERSION")},
        "instructions": mcp_tools::INSTRUCTIONS,
    })
}

fn notification(mcp: &McpState, caller: &Caller, method: &str, params: &Value) {
    if method == "notifications/cancelled"
        && let Some(request) = params.get("requestId")
    {
        mcp.cancel(&caller.call_key(request));
    }
}

async fn subscribe(state: &AppState, caller: &Caller, params: &Value, on: bool) -> Reply {
    let Some(session) = &caller.session else {
        return Reply::Error(
            codes::INVALID_REQUEST,
            "subscriptions need a session: send the Mcp-Session-Id that initialize gave".into(),
        );
    };
    let task = match mcp_tools::log_uri_task(params) {
        Ok(task) => task,
        Err(message) => return Reply::Error(codes::INVALID_PARAMS, message),
    };
    if on && let Err(e) = state.engine.get(&task).await {
        return Reply::Error(codes::INVALID_PARAMS, e.to_string());
    }
    state.mcp.subscribe(session, &task, on);
    Reply::Result(json!({}))
}

/// `GET /mcp`: with `Last-Event-ID`, the rest of a stream that was cut; without, the session's
/// stream of notifications (`notifications/resources/updated` for the logs it subscribed to).
pub(super) async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = check_version(&headers) {
        return refused;
    }
    let session = session_header(&headers);
    let last = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::trim);
    // A followed call's stream lives in the task's log, not in the session: it resumes after
    // the session is gone (a restarted server), unless the session is another key's.
    let resumes_follow = last.is_some_and(|last| last.starts_with(FOLLOW_ID));
    if let Some(id) = &session {
        let refused = match state.mcp.holder_of(id) {
            Some(holder) => holder != principal.holder,
            None => !resumes_follow,
        };
        if refused {
            return no_session(id);
        }
    }
    let caller = Caller { principal, session };
    match last {
        Some(last) if last.starts_with(FOLLOW_ID) => {
            let Some(follow) = Follow::from_event_id(last) else {
                return ApiError::bad_request("Last-Event-ID is not an id this server gave out")
                    .into_response();
            };
            if follow.session != caller.session {
                return ApiError::bad_request("Last-Event-ID is of another session's stream")
                    .into_response();
            }
            sse(start_follow(&state, &caller, follow, false))
        }
        Some(last) => match last.strip_prefix(NOTICES_ID).map(str::parse::<u64>) {
            Some(Ok(pos)) => notices(state, caller, Some(pos)).await,
            _ => ApiError::bad_request("Last-Event-ID is not an id this server gave out")
                .into_response(),
        },
        None => notices(state, caller, None).await,
    }
}

/// `DELETE /mcp`: ends the session.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = session_header(&headers) else {
        return ApiError::bad_request("send the Mcp-Session-Id of the session to end")
            .into_response();
    };
    if !state.mcp.session_of(&session, &principal.holder) {
        return no_session(&session);
    }
    state.mcp.sessions().remove(&session);
    StatusCode::NO_CONTENT.into_response()
}

fn session_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/event-stream"))
}

/// A protocol revision header naming one victor does not speak gets 400, as the
/// specification asks.
fn check_version(headers: &HeaderMap) -> Option<Response> {
    let asked = headers.get(VERSION_HEADER)?.to_str().unwrap_or_default();
    if PROTOCOL_VERSIONS.contains(&asked) {
        return None;
    }
    Some(refusal(
        StatusCode::BAD_REQUEST,
        codes::INVALID_REQUEST,
        format!(
            "MCP-Protocol-Version `{asked}` is not one victor speaks ({})",
            PROTOCOL_VERSIONS.join(", ")
        ),
    ))
}

/// What a followed call sends.
enum Frame {
    /// Nothing yet, but where to resume from.
    Prime(String),
    /// A notification on the way.
    Progress(String, Value),
    /// The call's response: the stream ends with it.
    Answer(String, Value),
}

/// Starts following `follow` beside the request: its frames, until the answer. The call can
/// be cancelled meanwhile (`notifications/cancelled`); a client that goes away stops the
/// following, never the task.
fn start_follow(
    state: &AppState,
    caller: &Caller,
    follow: Follow,
    prime: bool,
) -> mpsc::Receiver<Frame> {
    let (frames, receiver) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let in_flight = state
        .mcp
        .register(caller.call_key(&follow.request), cancel.clone());
    let state = state.clone();
    let may_cancel_task = caller.principal.scope >= Scope::Control;
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let _connected = Connected::new(&state.clients);
        let task = follow.task.clone();
        let cancels_task = follow.cancels_task && may_cancel_task;
        tokio::select! {
            () = cancel.cancelled() => {
                if cancels_task && let Err(e) = state.engine.cancel(&task).await {
                    tracing::debug!(task = %task, error = %e, "the cancelled call's task had ended");
                }
            }
            () = run_follow(&state, follow, &frames, prime) => {}
        }
    });
    receiver
}

async fn run_follow(
    state: &AppState,
    mut follow: Follow,
    frames: &mpsc::Sender<Frame>,
    prime: bool,
) {
    if prime && frames.send(Frame::Prime(follow.event_id())).await.is_err() {
        return;
    }
    let mut subscription = match state
        .engine
        .bus()
        .subscribe(Topic::Task(follow.task.clone()), Some(follow.seq))
        .await
    {
        Ok(subscription) => subscription,
        Err(e) => {
            let failed = mcp_tools::failure(format!("cannot read task {}'s log: {e}", follow.task));
            let _ = frames.send(answer_frame(&follow, failed)).await;
            return;
        }
    };
    let deadline = follow.deadline();
    let mut closing = super::stream::closing(state);
    loop {
        let next = tokio::select! {
            biased;
            // The stream ends without an answer: the client resumes it, here after the
            // restart or on another node.
            _ = &mut closing => return,
            () = frames.closed() => return,
            next = subscription.next() => next,
            () = sleep_until(deadline) => break,
        };
        let published = match next {
            Ok(Some(published)) => published,
            Ok(None) => break,
            Err(e) => {
                let failed =
                    mcp_tools::failure(format!("cannot read task {}'s log: {e}", follow.task));
                let _ = frames.send(answer_frame(&follow, failed)).await;
                return;
            }
        };
        let event = &published.event;
        follow.seq = event.seq;
        if let Some(token) = &follow.progress {
            let notification = json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {
                    "progressToken": token,
                    "progress": event.seq,
                    "message": mcp_tools::event_line(event),
                },
            });
            if frames
                .send(Frame::Progress(follow.event_id(), notification))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let answer = mcp_tools::answer(state, &follow).await;
    let _ = frames.send(answer_frame(&follow, answer)).await;
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn answer_frame(follow: &Follow, result: Value) -> Frame {
    Frame::Answer(follow.event_id(), response(&follow.request, Ok(result)))
}

/// The frames as an SSE response, ending after the answer.
fn sse(frames: mpsc::Receiver<Frame>) -> Response {
    let stream = futures_util::stream::unfold((frames, false), |(mut frames, done)| async move {
        if done {
            return None;
        }
        let (event, done) = match frames.recv().await? {
            Frame::Prime(id) => (SseEvent::default().id(id).retry(RETRY).data(""), false),
            Frame::Progress(id, message) => {
                (SseEvent::default().id(id).data(message.to_string()), false)
            }
            Frame::Answer(id, message) => {
                (SseEvent::default().id(id).data(message.to_string()), true)
            }
        };
        Some((Ok::<_, Infallible>(event), (frames, done)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// For a client that takes no SSE: only the answer, as JSON, once there is one.
async fn answer_only(mut frames: mpsc::Receiver<Frame>) -> Response {
    while let Some(frame) = frames.recv().await {
        if let Frame::Answer(_, message) = frame {
            return axum::Json(message).into_response();
        }
    }
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        codes::INTERNAL,
        "the server is shutting down; call again once it is back",
    )
}

/// The session's notifications: one `notifications/resources/updated` per new event of a task
/// log it subscribed to, each with the server-wide position as its id to resume from.
async fn notices(state: AppState, caller: Caller, after: Option<u64>) -> Response {
    let Some(session) = caller.session else {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the notification stream is a session's: initialize first and send its Mcp-Session-Id",
        )
        .into_response();
    };
    let mut subscription = match super::stream::subscribe(&state.engine, Topic::All, after).await {
        Ok(subscription) => subscription,
        Err(e) => return e.into_response(),
    };
    let (frames, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        let _connected = Connected::new(&state.clients);
        let mut closing = super::stream::closing(&state);
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut closing => return,
                () = frames.closed() => return,
                next = subscription.next() => next,
            };
            let Ok(Some(published)) = next else { return };
            let event = &published.event;
            match state.mcp.subscribed(&session, &event.task_id) {
                None => return,
                Some(false) => continue,
                Some(true) => {}
            }
            let notification = json!({
                "jsonrpc": "2.0",
                "method": "notifications/resources/updated",
                "params": {"uri": mcp_tools::log_uri(&event.task_id)},
            });
            let id = format!("{NOTICES_ID}{}", event.pos);
            if frames
                .send(Frame::Progress(id, notification))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    sse(receiver)
}
