//! Seed 004's control channel (Shannon's dashboard): Socket.IO (engine.io v4, Socket.IO v5
//! protocol, served by `socketioxide` on victor's port under `/socket.io/`) over agent tasks,
//! and its REST routes `/api/skills` and `/api/sessions`.
//!
//! A session is an agent task. A socket joins its room with `?session_id=` (or `subscribe`),
//! gets `connected`, then the session's log as seed 004's events (`skill:started`,
//! `file:modified`, `decision:point`...; see docs/seed-dialects.md), each carrying the log's
//! `seq`. Its `command`s steer the agent (HALT → pause, RESUME → resume, ROLLBACK → roll back
//! checkpoints, REDIRECT and INJECT → guidance, DECISION → the answer to a pending approval),
//! each acknowledged with `{"success": true, ...}` or `{"success": false, "error"}`.
//!
//! Every socket follows the durable log from its own cursor, so a client that reconnects with
//! the last `seq` it saw (`auth: {after: SEQ}` or `?after=SEQ`) gets every event it missed,
//! exactly once; a slow client is held back rather than dropped, its place kept in the log.
//! A client that asks for it (`recovery: true` in `auth` or the query) gets Socket.IO v4's own
//! connection state recovery instead: a `pid` in the CONNECT packet and each event's offset in
//! the log as its last argument, which socket.io-client hands back when it reconnects; the
//! events it missed then come from the log, and `socket.recovered` is true.
//!
//! Credentials are victor's: a key or session token in the `auth` payload (`token`,
//! `api_key` or `session_token`), the `Authorization` header or the query. Origins are checked
//! before routing, as for every request.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::{DisconnectReason, PrivateSessionId, Sid};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::AppState;
use super::auth::{Caller, Principal, forbidden};
use super::connections::Unauthenticated;
use super::error::ApiError;
use super::seed_events::{Calls, Lifecycle, exit_code, lifecycle, subscribe_after, test_command};
use super::seed001::{agent_task, detail, engine_detail, new_workspace, unprocessable};
use crate::engine::{EngineError, Tool};
use crate::proto::{
    AgentMessageData, AgentMode, AgentSpec, ApprovalAnswer, ApprovalRequested, ApprovalResolved,
    ApprovalStatus, ChangeKind, CheckpointCreated, CreateTask, Decision, Event, FileChange,
    Guidance, RolledBack, Scope, Task, TaskSpec, ToolCallEvent, ToolResultEvent,
};

/// The Socket.IO server, made once the rest of the state exists (its handlers hold it).
pub type SocketIoSlot = Arc<OnceLock<BoxCloneSyncService<Request, Response, String>>>;

/// How long a follower waits before it tries again to hand an event to a socket whose
/// buffer is full.
const FULL_BUFFER_RETRY: Duration = Duration::from_millis(10);

/// Builds the Socket.IO server over `state` and puts it where `/socket.io/` finds it; the
/// handle closes every socket when the server stops.
pub fn start(state: &AppState) -> SocketIo {
    let (service, io) = SocketIo::builder().with_state(state.clone()).build_svc();
    io.ns("/", connected.with(authenticate));
    let service = tower::service_fn(move |request: Request| {
        let service = service.clone();
        async move {
            match ServiceExt::<Request>::oneshot(service, request).await {
                Ok(response) => Ok(response.map(Body::new)),
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let _ = state.socket_io.set(BoxCloneSyncService::new(service));
    io
}

/// `/socket.io/`: engine.io's polling requests and WebSocket upgrades.
pub async fn socket_io(AxumState(state): AxumState<AppState>, request: Request) -> Response {
    let Some(service) = state.socket_io.get().cloned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the Socket.IO server is not started",
        )
        .into_response();
    };
    match service.oneshot(request).await {
        Ok(response) => response,
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("Socket.IO: {e}"),
        )
        .into_response(),
    }
}

/// Who a socket is and how it follows a session's log.
#[derive(Clone)]
struct Client {
    principal: Principal,
    /// Whether its events carry their offsets (it asked for Socket.IO's recovery).
    offsets: bool,
    /// Where its client's last connection left off, when this one recovered it.
    recovered: Option<Recovered>,
}

/// A connection that took up where a dropped one left off.
#[derive(Clone, Debug)]
enum Recovered {
    /// Its client had received nothing from the log yet.
    Nothing,
    After(Offset),
}

/// An event's place in a session's log, as Socket.IO's recovery hands it to the client: the
/// `index`th (from 0) of the events made of log event `seq`, written `SESSION:SEQ:INDEX`.
#[derive(Clone, Debug, PartialEq)]
struct Offset {
    session: String,
    seq: u64,
    index: usize,
}

impl Offset {
    fn parse(text: &str) -> Option<Offset> {
        let mut parts = text.rsplitn(3, ':');
        let index = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let session = parts.next().filter(|s| !s.is_empty())?;
        Some(Offset {
            session: session.to_string(),
            seq,
            index,
        })
    }
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.session, self.seq, self.index)
    }
}

/// Where a socket starts in a session's log: after seq `after`, and, of the events made of
/// log event `skip.0`, after the first `skip.1` (those its client already has).
#[derive(Clone, Copy, Debug)]
struct Start {
    after: u64,
    skip: Option<(u64, usize)>,
}

/// The following of one session's log for one socket; cancelled when it follows another or
/// goes.
#[derive(Clone)]
struct Following(CancellationToken);

/// Why a connection is refused: the client's `connect_error` carries it as its message.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error(
        "unauthorized: send a victor key as auth {{\"token\": KEY}}, a Bearer header or ?api_key="
    )]
    Unauthorized,
    #[error("session {0} not found")]
    UnknownSession(String),
    #[error("{0}")]
    Other(String),
}

/// A string field of the handshake: the `auth` payload first, then the query.
fn handshake_field(socket: &SocketRef, auth: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| match &auth[name] {
            Value::String(text) => Some(text.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .or_else(|| {
            let query = socket.req_parts().uri.query()?;
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find(|(name, _)| names.contains(&name.as_str()))
                .map(|(_, value)| value)
        })
}

/// Connect middleware: the caller's credentials (checked by victor's `identify` for the
/// header and query; here for the `auth` payload) and the session it names.
async fn authenticate(
    socket: SocketRef,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refusal> {
    let auth = auth.unwrap_or(Value::Null);
    let from_request = socket
        .req_parts()
        .extensions
        .get::<Caller>()
        .and_then(|caller| caller.principal().cloned());
    let principal = match from_request {
        Some(principal) => principal,
        None => handshake_field(&socket, &auth, &["token", "api_key", "session_token"])
            .and_then(|credential| state.access.check(&credential))
            .ok_or(Refusal::Unauthorized)?,
    };
    if let Some(session) = handshake_field(&socket, &auth, &["session_id"]) {
        session_task(&state, &session).await?;
    }
    // Its connection no longer counts against its address's unauthenticated ones.
    if let Some(connection) = socket.req_parts().extensions.get::<Unauthenticated>() {
        connection.authenticated();
    }
    let offsets = matches!(
        handshake_field(&socket, &auth, &["recovery"]).as_deref(),
        Some("true" | "1")
    );
    let recovered = match offsets {
        true => recover(&state, &auth).await,
        false => None,
    };
    if offsets {
        // The pid it came back with when it recovered, else a new one.
        let pid = match (&recovered, &auth["pid"]) {
            (Some(_), Value::String(pid)) => pid.clone(),
            _ => socket.id.to_string(),
        };
        socket.extensions.insert(PrivateSessionId(pid));
    }
    socket.extensions.insert(Client {
        principal,
        offsets,
        recovered,
    });
    Ok(())
}

/// Socket.IO's recovery handshake: a `pid` this server gave (a socket id) and the offset of the
/// last event received, if any, in a session that is still there.
async fn recover(state: &AppState, auth: &Value) -> Option<Recovered> {
    auth["pid"].as_str()?.parse::<Sid>().ok()?;
    match &auth["offset"] {
        Value::String(offset) => {
            let offset = Offset::parse(offset)?;
            session_task(state, &offset.session).await.ok()?;
            Some(Recovered::After(offset))
        }
        _ => Some(Recovered::Nothing),
    }
}

/// The agent task a session id names.
async fn session_task(state: &AppState, session: &str) -> Result<Task, Refusal> {
    match state.engine.get(session).await {
        Ok(task) if matches!(task.spec, TaskSpec::Agent(_)) => Ok(task),
        Ok(_) | Err(EngineError::NotFound(_)) => Err(Refusal::UnknownSession(session.into())),
        Err(e) => Err(Refusal::Other(ApiError::from(e).message)),
    }
}

/// A connected socket: `connected`, its session's room and log, and its handlers.
async fn connected(
    socket: SocketRef,
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    TryData(auth): TryData<Value>,
) {
    let auth = auth.unwrap_or(Value::Null);
    let mut session = handshake_field(&socket, &auth, &["session_id"]);
    let after = handshake_field(&socket, &auth, &["after", "offset"])
        .and_then(|after| after.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut start = Start { after, skip: None };
    if let Some(Recovered::After(offset)) = &client.recovered {
        session = Some(offset.session.clone());
        start = Start {
            after: offset.seq.saturating_sub(1),
            skip: Some((offset.seq, offset.index + 1)),
        };
    }
    socket.on("command", command);
    socket.on("ping", ping);
    socket.on("subscribe", subscribe);
    socket.on_fallback(unknown_event);
    socket.on_disconnect(|socket: SocketRef, _: DisconnectReason| async move {
        if let Some(Following(token)) = socket.extensions.get::<Following>() {
            token.cancel();
        }
    });
    let greeting = json!({
        "sid": socket.id.to_string(),
        "session_id": session,
        "recovered": client.recovered.is_some(),
        "timestamp": jiff::Timestamp::now().to_string(),
    });
    if socket.emit("connected", &greeting).is_err() {
        return;
    }
    if let Some(session) = session {
        follow(&socket, &state, &client, session, start).await;
    }
}

/// Joins `session`'s room and follows its log from `start` (instead of any other session).
async fn follow(
    socket: &SocketRef,
    state: &AppState,
    client: &Client,
    session: String,
    start: Start,
) {
    if let Some(Following(previous)) = socket.extensions.get::<Following>() {
        previous.cancel();
    }
    socket.leave_all();
    socket.join(session.clone());
    let token = CancellationToken::new();
    socket.extensions.insert(Following(token.clone()));
    let socket = socket.clone();
    let state = state.clone();
    let offsets = client.offsets;
    tokio::spawn(async move {
        tokio::select! {
            () = token.cancelled() => {}
            () = forward(&socket, &state, &session, start, offsets) => {}
        }
    });
}

/// Sends the session's events from `start` to the socket until its log ends, each with its
/// offset as its last argument when `offsets`.
async fn forward(socket: &SocketRef, state: &AppState, session: &str, start: Start, offsets: bool) {
    let engine = &state.engine;
    let mut events = Events::default();
    let subscription = subscribe_after(engine, session, start.after, |event| {
        events.feed(event);
    })
    .await;
    let mut subscription = match subscription {
        Ok(subscription) => subscription,
        Err(e) => {
            let _ = socket.emit(
                "error",
                &json!({"message": format!("cannot follow the log: {e}")}),
            );
            return;
        }
    };
    loop {
        let published = match subscription.next().await {
            Ok(Some(published)) => published,
            Ok(None) => return,
            Err(e) => {
                let message = format!("the log cannot be read: {e}");
                let _ = socket.emit("error", &json!({"message": message}));
                return;
            }
        };
        let event = &published.event;
        let had = match start.skip {
            Some((seq, count)) if seq == event.seq => count,
            _ => 0,
        };
        for (index, (name, data)) in events.feed(event).into_iter().enumerate().skip(had) {
            let envelope = json!({
                "type": name,
                "session_id": session,
                "timestamp": event.ts.to_string(),
                "seq": event.seq,
                "data": data,
            });
            let sent = if offsets {
                let offset = Offset {
                    session: session.to_string(),
                    seq: event.seq,
                    index,
                };
                emit_held_back(socket, name, &(envelope, offset.to_string())).await
            } else {
                emit_held_back(socket, name, &envelope).await
            };
            if !sent {
                return;
            }
        }
    }
}

/// Emits, waiting while the socket's buffer is full; false once the socket is gone.
async fn emit_held_back(
    socket: &SocketRef,
    name: &'static str,
    payload: &impl serde::Serialize,
) -> bool {
    use socketioxide::{SendError, SocketError};
    loop {
        match socket.emit(name, payload) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                tokio::time::sleep(FULL_BUFFER_RETRY).await;
            }
            Err(_) => return false,
        }
    }
}

/// A session's log read as seed 004's events, one log event at a time.
#[derive(Default)]
struct Events {
    calls: Calls,
}

impl Events {
    fn feed(&mut self, event: &Event) -> Vec<(&'static str, Value)> {
        if let Some(phase) = lifecycle(event) {
            return vec![match phase {
                Lifecycle::Started => ("agent:spawned", json!({"agent_id": event.task_id})),
                Lifecycle::Halted => ("execution:halted", json!({})),
                Lifecycle::Resumed => ("execution:resumed", json!({})),
                Lifecycle::Ended { state, error } => (
                    "agent:completed",
                    json!({"agent_id": event.task_id, "status": state, "error": error}),
                ),
            }];
        }
        if let Some(message) = event.decode::<AgentMessageData>() {
            return vec![(
                "agent:progress",
                json!({"step": message.step, "message": message.message.content}),
            )];
        }
        if let Some(guidance) = event.decode::<Guidance>() {
            return vec![("agent:progress", json!({"guidance": guidance.text}))];
        }
        if let Some(call) = event.decode::<ToolCallEvent>() {
            self.calls.started(&call);
            let mut out = vec![(
                "skill:started",
                json!({"skill_name": call.name, "call_id": call.id, "parameters": call.arguments}),
            )];
            if let Some(command) = test_command(&call) {
                out.push(("validation:started", json!({"command": command})));
            }
            return out;
        }
        if let Some(result) = event.decode::<ToolResultEvent>() {
            let call = self.calls.finished(&result);
            let mut out = vec![if result.error {
                (
                    "skill:failed",
                    json!({"skill_name": result.name, "call_id": result.id, "error": result.output}),
                )
            } else {
                (
                    "skill:completed",
                    json!({"skill_name": result.name, "call_id": result.id,
                           "result": result.output, "duration_ms": result.duration_ms}),
                )
            }];
            if let Some(command) = call.as_ref().and_then(test_command) {
                let code = exit_code(&result.output);
                out.push((
                    "validation:result",
                    json!({"command": command, "passed": !result.error && code == Some(0),
                           "exit_code": code, "output": result.output}),
                ));
            }
            return out;
        }
        if let Some(change) = event.decode::<FileChange>() {
            let name = match change.kind {
                ChangeKind::Created => "file:created",
                ChangeKind::Modified => "file:modified",
                ChangeKind::Deleted => "file:deleted",
            };
            return vec![(name, json!({"path": change.path, "diff": change.diff}))];
        }
        if let Some(requested) = event.decode::<ApprovalRequested>() {
            let approval = requested.approval;
            return vec![(
                "decision:point",
                json!({"decision_id": approval.id, "skill_name": approval.tool,
                       "parameters": approval.arguments, "diff": approval.diff,
                       "options": ["approve", "approve_always", "deny", "cancel"]}),
            )];
        }
        if let Some(resolved) = event.decode::<ApprovalResolved>() {
            let approval = resolved.approval;
            return vec![(
                "decision:made",
                json!({"decision_id": approval.id, "status": approval.status,
                       "decision": approval.decision, "reason": approval.reason}),
            )];
        }
        if let Some(created) = event.decode::<CheckpointCreated>() {
            let checkpoint = created.checkpoint;
            return vec![(
                "checkpoint:created",
                json!({"checkpoint_id": checkpoint.id, "files": checkpoint.files}),
            )];
        }
        if let Some(restored) = event.decode::<RolledBack>() {
            return vec![(
                "checkpoint:restored",
                json!({"checkpoint_id": restored.checkpoint, "files": restored.files}),
            )];
        }
        Vec::new()
    }
}

/// A client's `command`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "UPPERCASE")]
enum Command {
    Halt,
    Resume,
    Rollback {
        #[serde(default = "one")]
        steps: usize,
    },
    Redirect(Steering),
    Inject(Steering),
    Decision(Choice),
}

fn one() -> usize {
    1
}

/// What REDIRECT and INJECT say, under any of the names the dashboards used.
#[derive(Debug, Deserialize)]
struct Steering {
    #[serde(
        alias = "instruction",
        alias = "guidance",
        alias = "content",
        alias = "text"
    )]
    #[serde(alias = "new_goal", alias = "skill", alias = "command")]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default, alias = "approval_id")]
    decision_id: Option<String>,
    #[serde(default, alias = "choice")]
    decision: Option<String>,
    #[serde(default)]
    approved: Option<bool>,
    #[serde(default)]
    reason: Option<String>,
}

impl Choice {
    fn decision(&self) -> Result<Decision, String> {
        if let Some(approved) = self.approved {
            return Ok(if approved {
                Decision::AllowOnce
            } else {
                Decision::Deny
            });
        }
        match self
            .decision
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("approve" | "allow" | "allow_once" | "yes" | "accept") => Ok(Decision::AllowOnce),
            Some("approve_always" | "allow_always" | "always") => Ok(Decision::AllowAlways),
            Some("deny" | "reject" | "no") => Ok(Decision::Deny),
            Some("cancel" | "abort") => Ok(Decision::Cancel),
            Some(other) => Err(format!(
                "unknown decision `{other}` (approve, approve_always, deny or cancel)"
            )),
            None => Err(
                "a DECISION needs `decision` (approve, approve_always, deny or cancel) \
                         or `approved`"
                    .into(),
            ),
        }
    }
}

/// `command`: the acknowledgement says whether it took effect, or why not.
async fn command(
    socket: SocketRef,
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    let answer = match run(&socket, &state, &client, data).await {
        Ok(done) => done,
        Err(error) => json!({"success": false, "error": error}),
    };
    let _ = ack.send(&answer);
}

async fn run(
    socket: &SocketRef,
    state: &AppState,
    client: &Client,
    data: Result<Value, socketioxide::ParserError>,
) -> Result<Value, String> {
    let data = data.map_err(|e| format!("a command is an object with a type: {e}"))?;
    let kind = data["type"].as_str().unwrap_or_default().to_string();
    let command: Command = serde_json::from_value(data.clone()).map_err(|e| {
        format!(
            "not a command ({e}): its type is HALT, RESUME, ROLLBACK, REDIRECT, DECISION or INJECT"
        )
    })?;
    if client.principal.scope < Scope::Control {
        return Err(forbidden(client.principal.scope, Scope::Control).message);
    }
    let session = match data["session_id"].as_str() {
        Some(session) => session.to_string(),
        None => socket
            .rooms()
            .into_iter()
            .next()
            .map(|room| room.to_string())
            .ok_or("this socket follows no session: connect with ?session_id= or subscribe")?,
    };
    let engine = &state.engine;
    let refused = |e: EngineError| ApiError::from(e).message;
    let done = match command {
        Command::Halt => {
            let task = engine.pause(&session).await.map_err(refused)?;
            json!({"status": task.state})
        }
        Command::Resume => {
            let task = engine.resume(&session).await.map_err(refused)?;
            json!({"status": task.state})
        }
        Command::Rollback { steps } => {
            let checkpoints = engine.checkpoints(&session).await.map_err(refused)?;
            if steps == 0 || steps > checkpoints.len() {
                return Err(format!(
                    "cannot roll back {steps} steps: session {session} has {} checkpoints",
                    checkpoints.len()
                ));
            }
            let to = checkpoints[checkpoints.len() - steps].id;
            let files = engine.rollback(&session, to).await.map_err(refused)?;
            json!({"checkpoint_id": to, "files": files})
        }
        Command::Redirect(Steering { message }) | Command::Inject(Steering { message }) => {
            let text = message
                .filter(|m| !m.trim().is_empty())
                .ok_or("say what to do: `message` (or `instruction`, `content`)")?;
            engine.guide(&session, text).await.map_err(refused)?;
            json!({})
        }
        Command::Decision(choice) => {
            let decision = choice.decision()?;
            let id = match &choice.decision_id {
                Some(id) => id.clone(),
                None => {
                    let pending = engine
                        .approvals(Some(session.clone()), Some(ApprovalStatus::Pending))
                        .await
                        .map_err(refused)?;
                    match pending.as_slice() {
                        [only] => only.id.clone(),
                        [] => return Err(format!("session {session} has no decision pending")),
                        _ => {
                            return Err(
                                "several decisions are pending: name one with decision_id".into()
                            );
                        }
                    }
                }
            };
            let answer = ApprovalAnswer {
                decision,
                reason: choice.reason.clone(),
            };
            let approval = engine.answer_approval(&id, answer).await.map_err(refused)?;
            json!({"decision_id": approval.id, "status": approval.status})
        }
    };
    let mut done = done;
    if let Some(object) = done.as_object_mut() {
        object.insert("success".into(), json!(true));
        object.insert("command".into(), json!(kind));
        object.insert("session_id".into(), json!(session));
    }
    Ok(done)
}

/// `ping`: acknowledged at once, with the server's time, for latency.
async fn ping(ack: AckSender) {
    let _ = ack.send(&json!({"pong": true, "timestamp": jiff::Timestamp::now().to_string()}));
}

/// `subscribe {session_id, after?}`: follow that session instead.
async fn subscribe(
    socket: SocketRef,
    State(state): State<AppState>,
    Extension(client): Extension<Client>,
    TryData(data): TryData<Value>,
    ack: AckSender,
) {
    let data = data.unwrap_or(Value::Null);
    let answer = match data["session_id"].as_str() {
        None => json!({"success": false, "error": "subscribe needs a session_id"}),
        Some(session) => match session_task(&state, session).await {
            Ok(task) => {
                let start = Start {
                    after: data["after"].as_u64().unwrap_or(0),
                    skip: None,
                };
                follow(&socket, &state, &client, task.id.clone(), start).await;
                json!({"success": true, "session_id": task.id})
            }
            Err(refusal) => json!({"success": false, "error": refusal.to_string()}),
        },
    };
    let _ = ack.send(&answer);
}

/// Any other event: an `error` event (and a refusal if it asked for an acknowledgement).
async fn unknown_event(socket: SocketRef, ack: AckSender, event: socketioxide::extract::Event) {
    let message = format!(
        "unknown event `{}`: this server takes command, ping and subscribe",
        event.0
    );
    let _ = socket.emit("error", &json!({"message": message}));
    let _ = ack.send(&json!({"success": false, "error": message}));
}

/// A session as seed 004's REST routes tell it.
fn session_of(task: &Task, spec: &AgentSpec) -> Value {
    json!({
        "session_id": task.id,
        "status": task.state,
        "prompt": spec.prompt,
        "workspace": spec.workspace,
        "mode": spec.mode,
        "created_at": task.created_at.to_string(),
    })
}

/// `GET /api/skills`: the agent's tools.
pub async fn skills() -> Json<Value> {
    let skills: Vec<Value> = Tool::ALL
        .into_iter()
        .map(|tool| {
            let spec = tool.spec();
            json!({"name": spec.name, "description": spec.description,
                   "parameters": spec.parameters, "read_only": tool.reads_only()})
        })
        .collect();
    Json(json!({"count": skills.len(), "skills": skills}))
}

/// `GET /api/sessions`: agent tasks, newest first.
pub async fn sessions(AxumState(state): AxumState<AppState>) -> Response {
    match state
        .engine
        .list(Vec::new(), Some("agent"), 100, None)
        .await
    {
        Ok(page) => {
            let sessions: Vec<Value> = page
                .tasks
                .iter()
                .filter_map(|task| match &task.spec {
                    TaskSpec::Agent(spec) => Some(session_of(task, spec)),
                    _ => None,
                })
                .collect();
            Json(json!({"count": sessions.len(), "sessions": sessions})).into_response()
        }
        Err(e) => engine_detail(e),
    }
}

#[derive(Debug, Deserialize)]
struct NewSession {
    prompt: String,
    #[serde(default)]
    mode: AgentMode,
}

/// `POST /api/sessions {"prompt", "mode"?}`: a new agent in a workspace of its own; its
/// writes and commands wait for a DECISION.
pub async fn create_session(AxumState(state): AxumState<AppState>, body: Bytes) -> Response {
    let body: NewSession = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return unprocessable("prompt", format!("the body is not a session: {e}")),
    };
    if body.prompt.trim().is_empty() {
        return unprocessable("prompt", "the prompt must say what to do");
    }
    let workspace = match new_workspace(&state) {
        Ok(dir) => dir,
        Err(why) => return detail(StatusCode::INTERNAL_SERVER_ERROR, why),
    };
    let spec = AgentSpec {
        prompt: body.prompt,
        workspace: workspace.display().to_string(),
        mode: body.mode,
        ..AgentSpec::default()
    };
    let request = CreateTask {
        name: None,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Agent(spec.clone()),
    };
    match state.engine.create(request, None).await {
        Ok((task, _)) => (StatusCode::CREATED, Json(session_of(&task, &spec))).into_response(),
        Err(e) => {
            let _ = std::fs::remove_dir(&workspace);
            engine_detail(e)
        }
    }
}

/// `GET /api/sessions/{id}`.
pub async fn session(AxumState(state): AxumState<AppState>, Path(id): Path<String>) -> Response {
    match agent_task(&state, &id, "Session").await {
        Ok((task, spec)) => Json(session_of(&task, &spec)).into_response(),
        Err(answer) => answer,
    }
}

/// `DELETE /api/sessions/{id}`: cancels the agent if it still runs, then forgets it.
pub async fn delete_session(
    AxumState(state): AxumState<AppState>,
    Path(id): Path<String>,
) -> Response {
    let (task, _) = match agent_task(&state, &id, "Session").await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let engine = &state.engine;
    if !task.state.is_final() {
        if let Err(e) = engine.cancel(&id).await {
            return engine_detail(e);
        }
        let mut ended = false;
        for _ in 0..100 {
            if engine.get(&id).await.is_ok_and(|t| t.state.is_final()) {
                ended = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !ended {
            return detail(
                StatusCode::CONFLICT,
                format!("session {id} is still stopping; delete it again in a moment"),
            );
        }
    }
    match engine.delete(&id).await {
        Ok(()) => Json(json!({"success": true, "session_id": id})).into_response(),
        Err(e) => engine_detail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_back_as_they_were_written() {
        let offset = Offset {
            session: "019af0c2-7e1d-7c3a-9f00-3b1d2f4a5c6e".into(),
            seq: 42,
            index: 1,
        };
        assert_eq!(Offset::parse(&offset.to_string()), Some(offset));
        assert_eq!(Offset::parse("42:1"), None);
        assert_eq!(Offset::parse(":42:1"), None);
        assert_eq!(Offset::parse("s:x:1"), None);
        assert_eq!(Offset::parse("s:42:-1"), None);
    }

    #[test]
    fn commands_read_as_the_dashboards_send_them() {
        let read = |v: Value| serde_json::from_value::<Command>(v);
        assert!(matches!(
            read(json!({"type": "HALT", "reason": "look"})),
            Ok(Command::Halt)
        ));
        assert!(matches!(
            read(json!({"type": "ROLLBACK"})),
            Ok(Command::Rollback { steps: 1 })
        ));
        assert!(matches!(
            read(json!({"type": "REDIRECT", "instruction": "use regex"})),
            Ok(Command::Redirect(Steering { message: Some(m) })) if m == "use regex"
        ));
        assert!(read(json!({"type": "LAUNCH"})).is_err());
        let choice: Choice = serde_json::from_value(json!({"choice": "Approve"})).unwrap();
        assert_eq!(choice.decision(), Ok(Decision::AllowOnce));
        let choice: Choice = serde_json::from_value(json!({"approved": false})).unwrap();
        assert_eq!(choice.decision(), Ok(Decision::Deny));
        let choice: Choice = serde_json::from_value(json!({"decision": "maybe"})).unwrap();
        assert!(choice.decision().is_err());
    }
}
