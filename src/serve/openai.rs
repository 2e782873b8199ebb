//! An OpenAI-compatible endpoint on victor itself (`POST /v1/chat/completions`, streaming or
//! not, and `GET /v1/models`), so that any OpenAI SDK or tool reaches the workstation's
//! models through victor's keys. Each request is one stateless chat turn.
//!
//! Models are named as `/v1/models` lists them: the default provider's by their own id, any
//! other provider's as `PROVIDER/MODEL`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::chat::{Turn, TurnEvent};
use super::error::{ApiError, ApiJson};
use super::stream::Connected;
use crate::proto::{ChatMessage, ChatSpec, MessageData, Role, ToolCall, ToolSpec};

/// The body of `POST /v1/chat/completions`: the fields victor uses; others are ignored.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    model: String,
    messages: Vec<OpenAiMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    tools: Vec<OpenAiTool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct OpenAiMessage {
    role: Role,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Vec<OpenAiToolCall>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// Text, or a list of parts of which the text ones are kept.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Value>),
}

impl Content {
    fn text(self) -> String {
        match self {
            Content::Text(text) => text,
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

#[derive(Debug, Deserialize)]
struct OpenAiToolCall {
    id: String,
    function: OpenAiFunctionCall,
}

#[derive(Debug, Deserialize)]
struct OpenAiFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Deserialize)]
struct OpenAiTool {
    function: ToolSpec,
}

impl From<OpenAiMessage> for ChatMessage {
    fn from(message: OpenAiMessage) -> ChatMessage {
        ChatMessage {
            role: message.role,
            content: message.content.map(Content::text).unwrap_or_default(),
            tool_calls: message
                .tool_calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    arguments: serde_json::from_str(&call.function.arguments)
                        .unwrap_or(Value::String(call.function.arguments)),
                    name: call.function.name,
                })
                .collect(),
            tool_call_id: message.tool_call_id,
        }
    }
}

/// A tool call as OpenAI sends it: arguments as a JSON string.
fn openai_tool_call(call: &ToolCall, index: Option<usize>) -> Value {
    let arguments = match &call.arguments {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut value = json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    });
    if let Some(index) = index {
        value["index"] = json!(index);
    }
    value
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages must hold at least one message"));
    }
    let (provider, model) = split_model(&state, &request.model);
    let stream = request.stream;
    let spec = ChatSpec {
        messages: request
            .messages
            .into_iter()
            .map(ChatMessage::from)
            .collect(),
        provider,
        model: Some(model),
        temperature: request.temperature,
        max_tokens: request.max_completion_tokens.or(request.max_tokens),
        stop: match request.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop],
            Some(Stop::Many(stops)) => stops,
        },
        tools: request
            .tools
            .into_iter()
            .map(|tool| tool.function)
            .collect(),
        ..ChatSpec::default()
    };
    let turn = Turn::start(&state.engine, spec).await?;
    let id = format!("chatcmpl-{}", turn.task.id);
    let created = turn.task.created_at.as_second();
    let model = request.model;
    if stream {
        let connected = Connected::new(&state.clients);
        return Ok(completion_stream(turn, id, created, model, connected).into_response());
    }
    let reply = turn.reply().await.map_err(|reason| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "provider_error",
            reason,
        )
    })?;
    Ok(Json(completion(&reply, &id, created, &model)).into_response())
}

/// The model `requested` names: `PROVIDER/MODEL` for a configured provider's, else the
/// default provider's model of that id.
fn split_model(state: &AppState, requested: &str) -> (Option<String>, String) {
    if let Some((provider, model)) = requested.split_once('/')
        && state
            .engine
            .providers()
            .list()
            .iter()
            .any(|info| info.name == provider)
    {
        return (Some(provider.to_string()), model.to_string());
    }
    (None, requested.to_string())
}

fn finish_reason(reply: &MessageData) -> &str {
    if !reply.message.tool_calls.is_empty() {
        return "tool_calls";
    }
    match reply.finish_reason.as_deref() {
        Some("length" | "max_tokens") => "length",
        _ => "stop",
    }
}

fn usage(reply: &MessageData) -> Value {
    let usage = reply.usage.unwrap_or_default();
    json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

fn completion(reply: &MessageData, id: &str, created: i64, model: &str) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.message.content});
    if !reply.message.tool_calls.is_empty() {
        let calls: Vec<Value> = reply
            .message
            .tool_calls
            .iter()
            .map(|call| openai_tool_call(call, None))
            .collect();
        message["tool_calls"] = json!(calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
        "usage": usage(reply),
    })
}

/// The streamed completion: `chat.completion.chunk` objects, then `data: [DONE]`. A failure
/// mid-way is an `error` object before the end. A client that goes away cancels the reply.
fn completion_stream(
    turn: Turn,
    id: String,
    created: i64,
    model: String,
    connected: Connected,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    struct Streaming {
        turn: Option<Turn>,
        id: String,
        created: i64,
        model: String,
        first: bool,
        tool_calls: usize,
        _connected: Connected,
    }
    let chunk = |streaming: &Streaming, delta: Value, finish: Option<&str>| {
        json!({
            "id": streaming.id,
            "object": "chat.completion.chunk",
            "created": streaming.created,
            "model": streaming.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let streaming = Streaming {
        turn: Some(turn),
        id,
        created,
        model,
        first: true,
        tool_calls: 0,
        _connected: connected,
    };
    let chunks = futures_util::stream::unfold(streaming, move |mut streaming| async move {
        let turn = streaming.turn.as_mut()?;
        let data = match turn.next().await {
            Some(TurnEvent::Text(text)) => {
                let mut delta = json!({"content": text});
                if std::mem::take(&mut streaming.first) {
                    delta["role"] = json!("assistant");
                }
                chunk(&streaming, delta, None).to_string()
            }
            Some(TurnEvent::ToolCall(call)) => {
                let index = streaming.tool_calls;
                streaming.tool_calls += 1;
                let mut delta = json!({"tool_calls": [openai_tool_call(&call, Some(index))]});
                if std::mem::take(&mut streaming.first) {
                    delta["role"] = json!("assistant");
                }
                chunk(&streaming, delta, None).to_string()
            }
            Some(TurnEvent::Done(reply)) => {
                let mut last = chunk(&streaming, json!({}), Some(finish_reason(&reply)));
                last["usage"] = usage(&reply);
                last.to_string()
            }
            Some(TurnEvent::Failed(reason)) => {
                json!({"error": {"message": reason, "type": "provider_error"}}).to_string()
            }
            None => {
                streaming.turn = None;
                "[DONE]".to_string()
            }
        };
        Some((SseEvent::default().data(data), streaming))
    });
    Sse::new(chunks.map(Ok))
}

/// `GET /v1/models`.
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let default = state
        .engine
        .providers()
        .list()
        .into_iter()
        .find(|info| info.is_default)
        .map(|info| info.name);
    let data: Vec<Value> = state
        .engine
        .providers()
        .models()
        .await
        .models
        .into_iter()
        .map(|model| {
            let id = if Some(&model.provider) == default.as_ref() {
                model.id
            } else {
                format!("{}/{}", model.provider, model.id)
            };
            json!({"id": id, "object": "model", "created": 0, "owned_by": model.provider})
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}
