//! Seed 000's chat surface, for the editor extensions, scripts and example clients written
//! for it: `/chat`, `/chat/stream`, `/completions`, `/models`, `/providers`, `/status`, the
//! current conversation (`/conversation/reset`, `/conversation/export`), the JSON WebSocket
//! `/ws` and the legacy plain-text chat WebSocket. Each maps its wire format onto chat turns
//! ([`Turn`]) and conversations; shapes are the ones in COMPAT.md.
//!
//! Conversations: each client (its key, or the machine's user) has a current conversation
//! that `/chat`, `/chat/stream` and `/ws` continue, so a client that sends only its newest
//! message is answered in context. A client that sends a history of its own (any assistant
//! message in `messages`) gets a turn on exactly that history instead. Each legacy session
//! has a conversation of its own.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::AppState;
use super::auth::{Principal, forbidden};
use super::chat::{Turn, TurnEvent, export};
use super::error::{ApiError, ApiJson, ApiQuery};
use super::stream::{
    AUTH_WAIT, CLOSE_UNAUTHORIZED, Connected, close_unauthorized, closing, heartbeat_timer,
    not_a_websocket,
};
use crate::proto::{ChatMessage, ChatSpec, CreateConversation, Role, Scope, ToolCall, ToolSpec};

/// What a legacy chat socket may stay silent for before it is closed.
const LEGACY_RECEIVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Legacy sends `__reset_session__` to start its conversation over.
const LEGACY_RESET: &str = "__reset_session__";
/// WebSocket close code "try again later", for a legacy socket past the session cap.
const CLOSE_TRY_LATER: u16 = 1013;

/// Body of `/chat` and `/chat/stream`.
#[derive(Debug, Deserialize)]
pub struct ChatBody {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    tools: Vec<ToolSpec>,
}

/// The conversation channel of a client: its key (or the machine's user).
fn channel_of(principal: &Principal) -> String {
    format!("seed000:{}", principal.holder)
}

/// The turn `messages` asks for: continuing the client's current conversation, or on a
/// history of the client's own. Leading system messages become the turn's system prompt.
async fn turn_spec(
    state: &AppState,
    principal: &Principal,
    body: ChatBody,
) -> Result<ChatSpec, ApiError> {
    if body.messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must hold at least one message",
        ));
    }
    let own_history = body
        .messages
        .iter()
        .any(|m| matches!(m.role, Role::Assistant | Role::Tool));
    let mut messages = body.messages;
    let system_count = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let system: Vec<String> = messages
        .drain(..system_count)
        .map(|message| message.content)
        .collect();
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages holds only system messages: add the user's",
        ));
    }
    let conversation_id = if own_history {
        None
    } else {
        let channel = channel_of(principal);
        Some(state.engine.current_conversation(&channel).await?.id)
    };
    Ok(ChatSpec {
        conversation_id,
        messages,
        provider: body.provider,
        model: body.model,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        tools: body.tools,
        temperature: body.temperature,
        max_tokens: body.max_tokens,
        stop: Vec::new(),
    })
}

/// A failed reply as the seed 000 clients expect an error: 502, the provider's words.
fn provider_failed(reason: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", reason)
}

#[derive(Debug, Serialize)]
pub struct ChatAnswer {
    role: Role,
    content: String,
    /// Always a list, empty when the model asked for no tool.
    tool_calls: Vec<ToolCall>,
}

/// `POST /chat`: the whole reply at once.
pub async fn chat(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Json<ChatAnswer>, ApiError> {
    let spec = turn_spec(&state, &principal, body).await?;
    let turn = Turn::start(&state.engine, spec).await?;
    let reply = turn.reply().await.map_err(provider_failed)?;
    Ok(Json(ChatAnswer {
        role: Role::Assistant,
        content: reply.message.content,
        tool_calls: reply.message.tool_calls,
    }))
}

/// The frames of `/chat/stream` and of `/ws`'s chat, before the end marker.
fn frame_of(event: TurnEvent) -> serde_json::Value {
    match event {
        TurnEvent::Text(content) => json!({"type": "content", "content": content}),
        TurnEvent::ToolCall(call) => json!({"type": "tool_call", "tool_call": [call]}),
        TurnEvent::Done(_) => json!({"type": "done"}),
        TurnEvent::Failed(message) => json!({"type": "error", "message": message}),
    }
}

/// `POST /chat/stream`: SSE, one `data: <json>` per frame and no `event:` lines; every
/// payload is JSON, the end marker `"[DONE]"` too, and it always comes, after an error as
/// well. A client that goes away cancels the reply.
pub async fn chat_stream(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let spec = turn_spec(&state, &principal, body).await?;
    let turn = Turn::start(&state.engine, spec).await?;
    let connected = Connected::new(&state.clients);
    let frames =
        futures_util::stream::unfold((Some(turn), connected), |(turn, connected)| async move {
            let mut turn = turn?;
            let frame = match turn.next().await {
                // The end marker, which the seed clients stop at, ends every stream.
                None | Some(TurnEvent::Done(_)) => {
                    return Some((SseEvent::default().data("\"[DONE]\""), (None, connected)));
                }
                Some(event) => SseEvent::default().data(frame_of(event).to_string()),
            };
            Some((frame, (Some(turn), connected)))
        });
    Ok(Sse::new(frames.map(Ok)))
}

/// Body of `/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionBody {
    prompt: String,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default = "default_completion_tokens")]
    max_tokens: u32,
    #[serde(default)]
    temperature: f64,
    #[serde(default)]
    stop_sequences: Vec<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

fn default_completion_tokens() -> u32 {
    128
}

#[derive(Debug, Serialize)]
pub struct CompletionAnswer {
    completions: Vec<String>,
    error: Option<String>,
    latency_ms: f64,
}

/// What the model is told to do for a completion: fill in the gap at the cursor.
const COMPLETION_SYSTEM: &str = "You complete code. The user sends the code around the \
    cursor, marked <CURSOR>. Answer with only the text to insert at the cursor: no \
    explanation, no repetition of the code around it, no Markdown fences.";

/// `POST /completions`: code completion with fill-in-the-middle (`suffix`). The shape is
/// seed 000's; a provider failure answers 502 with `error` set.
pub async fn completions(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CompletionBody>,
) -> Result<Response, ApiError> {
    if !(1..=512).contains(&body.max_tokens) {
        return Err(ApiError::invalid("max_tokens must be between 1 and 512"));
    }
    if !(0.0..=1.0).contains(&body.temperature) {
        return Err(ApiError::invalid("temperature must be between 0 and 1"));
    }
    let started = Instant::now();
    let language = body
        .language
        .map(|language| format!("Language: {language}\n"))
        .unwrap_or_default();
    let code = format!(
        "{language}{}<CURSOR>{}",
        body.prompt,
        body.suffix.unwrap_or_default()
    );
    let spec = ChatSpec {
        messages: vec![ChatMessage::new(Role::User, code)],
        system: Some(COMPLETION_SYSTEM.into()),
        provider: body.provider,
        model: body.model,
        temperature: Some(body.temperature),
        max_tokens: Some(body.max_tokens),
        stop: body.stop_sequences.clone(),
        ..ChatSpec::default()
    };
    let turn = Turn::start(&state.engine, spec).await?;
    let (status, answer) = match turn.reply().await {
        Ok(reply) => {
            let text = completion_text(&reply.message.content, &body.stop_sequences);
            (
                StatusCode::OK,
                CompletionAnswer {
                    completions: vec![text],
                    error: None,
                    latency_ms: 0.0,
                },
            )
        }
        Err(reason) => (
            StatusCode::BAD_GATEWAY,
            CompletionAnswer {
                completions: Vec::new(),
                error: Some(reason),
                latency_ms: 0.0,
            },
        ),
    };
    let answer = CompletionAnswer {
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        ..answer
    };
    Ok((status, Json(answer)).into_response())
}

/// The insertion a model answered: without the Markdown fence it may wrap code in despite
/// being told not to, and cut at the first stop sequence.
fn completion_text(reply: &str, stop_sequences: &[String]) -> String {
    let mut text = reply;
    if let Some(fenced) = text.trim().strip_prefix("```") {
        // Skip the info string (`rust`), keep what is between the fences.
        let body = fenced.split_once('\n').map_or("", |(_, body)| body);
        let inner = body.trim_end().strip_suffix("```").unwrap_or(body);
        text = inner.strip_suffix('\n').unwrap_or(inner);
    }
    let end = stop_sequences
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop.as_str()))
        .min()
        .unwrap_or(text.len());
    text[..end].to_string()
}

/// `GET /models`.
pub async fn models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let local: std::collections::HashMap<String, bool> = state
        .engine
        .providers()
        .list()
        .into_iter()
        .map(|info| (info.name, info.is_local))
        .collect();
    let models: Vec<serde_json::Value> = state
        .engine
        .providers()
        .models()
        .await
        .models
        .into_iter()
        .map(|model| {
            json!({
                "provider": model.provider,
                "model_id": model.id,
                "display_name": model.id,
                "is_local": local.get(&model.provider).copied().unwrap_or(false),
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

/// `GET /providers`: `configured` says whether the provider answers now.
pub async fn providers(State(state): State<AppState>) -> Json<serde_json::Value> {
    let listed = state.engine.providers().models().await;
    let providers: Vec<serde_json::Value> = state
        .engine
        .providers()
        .list()
        .into_iter()
        .map(|info| {
            let answers = !listed.errors.iter().any(|e| e.provider == info.name);
            json!({
                "name": info.name,
                "display_name": format!("{} ({})", info.name, info.kind),
                "is_local": info.is_local,
                "configured": answers,
                "supports_tools": true,
                "supports_streaming": true,
            })
        })
        .collect();
    Json(json!({ "providers": providers }))
}

/// `GET /status`: what seed 000's editor clients show about the server.
pub async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let providers = state.engine.providers().list();
    let default = providers.iter().find(|p| p.is_default);
    let workspace = std::env::current_dir()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    Json(json!({
        "connected": true,
        "mode": "chat",
        "provider": default.map(|p| p.name.clone()),
        "model": default.and_then(|p| p.default_model.clone()),
        "workspace": workspace,
        "capabilities": ["chat", "streaming", "completions", "tasks", "render"],
    }))
}

/// `POST /conversation/reset`: the client's next chat starts a new conversation (the old one
/// stays under `/api/v1/conversations`).
pub async fn reset_conversation(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .engine
        .create_conversation(CreateConversation::default(), Some(channel_of(&principal)))
        .await?;
    Ok(Json(
        json!({"success": true, "message": "Conversation reset"}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ExportParams {
    format: Option<String>,
}

/// `GET /conversation/export?format=json|markdown`: the client's current conversation.
pub async fn export_conversation(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<Principal>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let current = state
        .engine
        .current_conversation(&channel_of(&principal))
        .await?;
    let conversation = state.engine.conversation(&current.id).await?;
    export(&conversation, params.format.as_deref())
}

/// `/ws` (the JSON protocol, or the legacy plain-text one: see [`serve_ws`]) and
/// `/ws/session` (always the legacy one).
pub async fn websocket(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    uri: axum::http::Uri,
) -> Response {
    let principal = principal.map(|axum::Extension(principal)| principal);
    let legacy = uri.path() == "/ws/session"
        || query.as_deref().is_some_and(|query| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .unwrap_or_default()
                .iter()
                .any(|(name, _)| name == "session_token")
        });
    match upgrade {
        // Messages over the limit get legacy's `[error]` rather than a close, so the socket
        // itself takes more.
        Ok(upgrade) => upgrade
            .max_message_size(state.max_ws_message_bytes.saturating_mul(4))
            .on_upgrade(move |socket| serve_ws(socket, state, principal, legacy)),
        Err(rejection) => not_a_websocket(rejection),
    }
}

/// What a chat socket says of a message over the limit (seed 000's words).
fn too_large(limit: usize) -> String {
    format!("Message too large (max {limit} bytes)")
}

/// A frame for the client, or a heartbeat to send.
pub(super) type Outgoing = mpsc::Sender<Message>;

/// One seed 000 socket. The protocol is told by the client: the legacy one when it asked for
/// it (`/ws/session`, a `session_token`), or when its first message is not a JSON object;
/// otherwise JSON.
async fn serve_ws(socket: WebSocket, state: AppState, principal: Option<Principal>, legacy: bool) {
    let _connected = Connected::new(&state.clients);
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut queue) = mpsc::channel::<Message>(64);
    let legacy_pings = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(legacy));
    let writer_state = state.clone();
    let pings = legacy_pings.clone();
    let writer = tokio::spawn(async move {
        let mut heartbeat = heartbeat_timer(writer_state.heartbeat);
        let mut closing = closing(&writer_state);
        loop {
            let message = tokio::select! {
                biased;
                _ = &mut closing => Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: "server shutting down".into(),
                })),
                message = queue.recv() => match message {
                    Some(message) => message,
                    None => return,
                },
                _ = heartbeat.tick() => {
                    if pings.load(std::sync::atomic::Ordering::Relaxed) {
                        Message::Text("[ping]".into())
                    } else {
                        Message::Ping(Default::default())
                    }
                }
            };
            let closes = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closes {
                return;
            }
        }
    });

    if legacy {
        serve_legacy(&mut incoming, &state, principal, &outgoing, None).await;
    } else {
        let first_wait = if principal.is_some() {
            LEGACY_RECEIVE_TIMEOUT
        } else {
            AUTH_WAIT
        };
        match tokio::time::timeout(first_wait, next_text(&mut incoming)).await {
            Ok(Some(first)) if first.trim_start().starts_with('{') => {
                serve_json(&mut incoming, &state, principal, &outgoing, first).await;
            }
            Ok(Some(first)) => {
                legacy_pings.store(true, std::sync::atomic::Ordering::Relaxed);
                serve_legacy(&mut incoming, &state, principal, &outgoing, Some(first)).await;
            }
            Ok(None) => {}
            Err(_) if principal.is_none() => {
                let _ = outgoing.try_send(close_unauthorized("no auth message within 5s"));
            }
            Err(_) => {}
        }
    }
    drop(outgoing);
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

type Incoming = futures_util::stream::SplitStream<WebSocket>;

/// The next text (or binary, read as text) message; `None` when the socket closed.
async fn next_text(incoming: &mut Incoming) -> Option<String> {
    loop {
        match incoming.next().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Binary(bytes)) => return Some(String::from_utf8_lossy(&bytes).into()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

async fn send_json(outgoing: &Outgoing, value: serde_json::Value) -> bool {
    outgoing
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn send_text(outgoing: &Outgoing, text: impl Into<String>) -> bool {
    let text: String = text.into();
    outgoing.send(Message::Text(text.into())).await.is_ok()
}

/// A JSON client message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum JsonRequest {
    Auth {
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        session_token: Option<String>,
    },
    Chat {
        messages: Vec<ChatMessage>,
        #[serde(default)]
        provider: Option<String>,
        #[serde(default)]
        model: Option<String>,
    },
    Ping,
    Subscribe {
        #[serde(default)]
        channel: Option<String>,
    },
}

/// The JSON protocol: `auth`, `chat`, `ping`, `subscribe`. Without credentials on the
/// upgrade, the first message must be a good `auth`; anything else closes with 4401.
async fn serve_json(
    incoming: &mut Incoming,
    state: &AppState,
    mut principal: Option<Principal>,
    outgoing: &Outgoing,
    first: String,
) {
    let mut next = Some(first);
    // Agents' events go to every authenticated JSON client, as seed 000's did.
    let mut agent_events = AbortOnDrop(None);
    loop {
        if principal.is_some() && agent_events.0.is_none() {
            agent_events.0 = Some(tokio::spawn(super::seed000_agents::forward_agent_events(
                state.engine.clone(),
                outgoing.clone(),
            )));
        }
        let text = match next.take() {
            Some(text) => text,
            None => match tokio::time::timeout(LEGACY_RECEIVE_TIMEOUT, next_text(incoming)).await {
                Ok(Some(text)) => text,
                Ok(None) | Err(_) => return,
            },
        };
        if let Some(granted) = &principal
            && !state.access.still_valid(granted)
        {
            let _ = outgoing.try_send(close_unauthorized(
                "the key was revoked or the session ended",
            ));
            return;
        }
        if principal.is_some() && text.len() > state.max_ws_message_bytes {
            let message = too_large(state.max_ws_message_bytes);
            if !send_json(outgoing, json!({"type": "error", "message": message})).await {
                return;
            }
            continue;
        }
        let request = match serde_json::from_str::<JsonRequest>(&text) {
            Ok(request) => request,
            Err(e) if principal.is_some() => {
                let message = format!("not a message this socket understands: {e}");
                if !send_json(outgoing, json!({"type": "error", "message": message})).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                let _ = outgoing.try_send(close_unauthorized(
                    "send {\"type\":\"auth\",\"api_key\":...} first",
                ));
                return;
            }
        };
        let sent = match (request, &principal) {
            (
                JsonRequest::Auth {
                    api_key,
                    session_token,
                },
                _,
            ) => {
                let offered = api_key.or(session_token);
                let granted = if state.local || !state.access.required() {
                    Some(state.access.owner())
                } else {
                    offered.and_then(|offered| state.access.check(&offered))
                };
                match granted {
                    Some(granted) => {
                        principal = Some(granted);
                        send_json(outgoing, json!({"type": "auth_success"})).await
                    }
                    None => {
                        let _ = send_json(
                            outgoing,
                            json!({"type": "auth_failed", "message": "wrong or expired credentials"}),
                        )
                        .await;
                        let _ =
                            outgoing.try_send(close_unauthorized("wrong or expired credentials"));
                        return;
                    }
                }
            }
            (_, None) => {
                let _ = outgoing.try_send(close_unauthorized(
                    "send {\"type\":\"auth\",\"api_key\":...} first",
                ));
                return;
            }
            (JsonRequest::Ping, Some(_)) => send_json(outgoing, json!({"type": "pong"})).await,
            (JsonRequest::Subscribe { channel }, Some(_)) => {
                send_json(outgoing, json!({"type": "subscribed", "channel": channel})).await
            }
            (
                JsonRequest::Chat {
                    messages,
                    provider,
                    model,
                },
                Some(principal),
            ) => {
                let body = ChatBody {
                    messages,
                    provider,
                    model,
                    temperature: None,
                    max_tokens: None,
                    tools: Vec::new(),
                };
                let (sent, queued) = json_chat(incoming, state, principal, outgoing, body).await;
                next = queued;
                sent
            }
        };
        if !sent {
            return;
        }
    }
}

/// A task that ends with the connection that started it.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Streams one chat reply as JSON frames. The client may write meanwhile: the first message
/// it sends is kept for after the reply; a closed socket cancels the reply.
async fn json_chat(
    incoming: &mut Incoming,
    state: &AppState,
    principal: &Principal,
    outgoing: &Outgoing,
    body: ChatBody,
) -> (bool, Option<String>) {
    if principal.scope < Scope::Control {
        let message = forbidden(principal.scope, Scope::Control).message;
        return (
            send_json(outgoing, json!({"type": "error", "message": message})).await,
            None,
        );
    }
    let started = match turn_spec(state, principal, body).await {
        Ok(spec) => Turn::start(&state.engine, spec).await,
        Err(e) => Err(e),
    };
    let mut turn = match started {
        Ok(turn) => turn,
        Err(e) => {
            return (
                send_json(outgoing, json!({"type": "error", "message": e.message})).await,
                None,
            );
        }
    };
    let mut queued = None;
    loop {
        tokio::select! {
            event = turn.next() => {
                let Some(event) = event else { return (true, queued) };
                let last = matches!(event, TurnEvent::Done(_) | TurnEvent::Failed(_));
                if !send_json(outgoing, frame_of(event)).await {
                    return (false, queued);
                }
                if last {
                    return (true, queued);
                }
            }
            text = next_text(incoming), if queued.is_none() => match text {
                Some(text) => queued = Some(text),
                None => return (false, None),
            },
        }
    }
}

/// The legacy plain-text protocol: the server says `[session] <token>` first; each text
/// message is a prompt whose reply streams as text messages and ends with an empty one;
/// `__reset_session__` starts the session's conversation over; `[ping]` at every heartbeat;
/// `[error] <message>` for errors. Credentials come with the upgrade (a key, or the
/// session's token); a socket without them is closed with 4401.
async fn serve_legacy(
    incoming: &mut Incoming,
    state: &AppState,
    principal: Option<Principal>,
    outgoing: &Outgoing,
    first: Option<String>,
) {
    let Some(principal) = principal else {
        let _ = outgoing.try_send(close_unauthorized("send the API key with the upgrade"));
        return;
    };
    let session = if principal.via_session {
        principal.session_id.clone().map(|id| (id, None))
    } else {
        match state.access.issue_session(&principal, None).await {
            Ok(token) => Some((token.session_id, Some(token.session_token))),
            Err(super::auth::AccessError::SessionLimit(_)) => {
                let _ = send_text(outgoing, "[error] Session limit reached, try later.").await;
                let _ = outgoing.try_send(Message::Close(Some(CloseFrame {
                    code: CLOSE_TRY_LATER,
                    reason: "session limit reached".into(),
                })));
                return;
            }
            Err(e) => {
                let _ = send_text(outgoing, format!("[error] {}", ApiError::from(e).message)).await;
                return;
            }
        }
    };
    let Some((session_id, token)) = session else {
        let _ = outgoing.try_send(close_unauthorized("the session token names no session"));
        return;
    };
    if let Some(token) = token
        && !send_text(outgoing, format!("[session] {token}")).await
    {
        return;
    }
    let channel = format!("session:{session_id}");
    let mut pending: VecDeque<String> = first.into_iter().collect();
    loop {
        let prompt = match pending.pop_front() {
            Some(prompt) => prompt,
            None => match tokio::time::timeout(LEGACY_RECEIVE_TIMEOUT, next_text(incoming)).await {
                Ok(Some(prompt)) => prompt,
                Ok(None) => return,
                Err(_) => {
                    let _ = outgoing.try_send(Message::Close(Some(CloseFrame {
                        code: 1000,
                        reason: "nothing received for 300s".into(),
                    })));
                    return;
                }
            },
        };
        if !state.access.still_valid(&principal) {
            let _ = outgoing.try_send(Message::Close(Some(CloseFrame {
                code: CLOSE_UNAUTHORIZED,
                reason: "the key was revoked or the session ended".into(),
            })));
            return;
        }
        let sent = if prompt.len() > state.max_ws_message_bytes {
            send_text(
                outgoing,
                format!("[error] {}", too_large(state.max_ws_message_bytes)),
            )
            .await
        } else if prompt.trim() == LEGACY_RESET {
            match state
                .engine
                .create_conversation(CreateConversation::default(), Some(channel.clone()))
                .await
            {
                Ok(_) => send_text(outgoing, "[session] reset").await,
                Err(e) => send_text(outgoing, format!("[error] {e}")).await,
            }
        } else if prompt.trim().is_empty() {
            true
        } else if principal.scope < Scope::Control {
            let message = forbidden(principal.scope, Scope::Control).message;
            send_text(outgoing, format!("[error] {message}")).await && send_text(outgoing, "").await
        } else {
            legacy_reply(incoming, state, &channel, prompt, outgoing, &mut pending).await
        };
        if !sent {
            return;
        }
    }
}

/// Streams one legacy reply: text messages, then the empty one. Prompts sent meanwhile wait
/// in `pending`; a closed socket cancels the reply.
async fn legacy_reply(
    incoming: &mut Incoming,
    state: &AppState,
    channel: &str,
    prompt: String,
    outgoing: &Outgoing,
    pending: &mut VecDeque<String>,
) -> bool {
    let started = match state.engine.current_conversation(channel).await {
        Ok(conversation) => {
            let spec = ChatSpec {
                conversation_id: Some(conversation.id),
                messages: vec![ChatMessage::new(Role::User, prompt)],
                ..ChatSpec::default()
            };
            Turn::start(&state.engine, spec).await
        }
        Err(e) => Err(e.into()),
    };
    let mut turn = match started {
        Ok(turn) => turn,
        Err(e) => {
            return send_text(outgoing, format!("[error] {}", e.message)).await
                && send_text(outgoing, "").await;
        }
    };
    loop {
        tokio::select! {
            event = turn.next() => match event {
                Some(TurnEvent::Text(text)) => {
                    if !send_text(outgoing, text).await {
                        return false;
                    }
                }
                Some(TurnEvent::ToolCall(_)) => {}
                Some(TurnEvent::Failed(reason)) => {
                    return send_text(outgoing, format!("[error] {reason}")).await
                        && send_text(outgoing, "").await;
                }
                Some(TurnEvent::Done(_)) | None => return send_text(outgoing, "").await,
            },
            text = next_text(incoming) => match text {
                Some(text) => pending.push_back(text),
                None => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_text_drops_fences_and_stops_at_a_stop_sequence() {
        assert_eq!(completion_text("a + b", &[]), "a + b");
        assert_eq!(completion_text("```rust\na + b\n```", &[]), "a + b");
        assert_eq!(
            completion_text("return x;\n}\nfn next()", &["\n}".to_string()]),
            "return x;"
        );
        assert_eq!(completion_text("```\n```", &[]), "");
    }
}
