//! Chat on the native API: providers, models, conversations and their turns. Also [`Turn`], a
//! chat turn followed to its end, which every chat surface (seed 000's, the OpenAI-compatible
//! one) maps onto its own wire format.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiQuery};
use super::stream::{follow_task, store_error};
use crate::bus::{Subscription, Topic};
use crate::engine::Engine;
use crate::proto::{
    ChatSpec, Conversation, ConversationPage, ConversationSummary, CreateConversation, CreateTask,
    DeltaData, ErrorBody, MessageData, ModelList, PostMessage, ProviderInfo, StateData, Task,
    TaskSpec, TaskState, ToolCall, ToolCallData, chat_types,
};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

/// The configured LLM providers (never their keys).
#[utoipa::path(get, path = "/api/v1/providers", tag = "chat",
    responses((status = 200, body = Vec<ProviderInfo>)))]
pub async fn providers(State(state): State<AppState>) -> Json<Vec<ProviderInfo>> {
    Json(state.engine.providers().list())
}

/// The models every provider offers, asked of the providers themselves; a provider that does
/// not answer is listed under `errors`.
#[utoipa::path(get, path = "/api/v1/models", tag = "chat",
    responses((status = 200, body = ModelList)))]
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(state.engine.providers().models().await)
}

/// Starts a conversation; its provider and model are the server's defaults unless given.
#[utoipa::path(post, path = "/api/v1/conversations", tag = "chat",
    request_body = CreateConversation,
    responses((status = 201, body = ConversationSummary),
        (status = 422, description = "A provider this server does not have", body = ErrorBody)))]
pub async fn create_conversation(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateConversation>,
) -> Result<Response, ApiError> {
    let conversation = state.engine.create_conversation(request, None).await?;
    Ok((StatusCode::CREATED, Json(conversation)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationListParams {
    /// Conversations per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// Conversations, most recently updated first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "chat",
    params(ConversationListParams),
    responses((status = 200, body = ConversationPage),
        (status = 422, description = "A limit out of range, or a cursor this server did not \
            give out", body = ErrorBody)))]
pub async fn list_conversations(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ConversationListParams>,
) -> Result<Json<ConversationPage>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(Json(
        state
            .engine
            .list_conversations(None, limit, params.cursor)
            .await?,
    ))
}

/// A conversation with every message, and the task of the turn still answering, if any.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "chat",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorBody)))]
pub async fn get_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(state.engine.conversation(&id).await?))
}

/// Deletes a conversation; the tasks of its turns stay until deleted themselves.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "chat",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 409, description = "A turn is still answering", body = ErrorBody)))]
pub async fn delete_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete_conversation(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Posts the user's message and starts the turn that answers it: a task of kind `chat`
/// whose log streams the reply (`chat.delta`, `chat.tool_call`, `chat.message`). Answers the
/// task (202), or with `Accept: text/event-stream` the task's event stream itself; either
/// way the reply can be followed and resumed at `/api/v1/tasks/{task}/events`. A dropped
/// connection does not stop the turn: cancel it.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "chat",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = PostMessage,
    responses(
        (status = 202, description = "The turn's task", body = Task),
        (status = 200, description = "With Accept: text/event-stream, the turn's events, one \
            per frame", body = crate::proto::EventFrame, content_type = "text/event-stream"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A turn is still answering", body = ErrorBody),
        (status = 422, description = "Invalid fields, or a provider or model this server does \
            not have", body = ErrorBody),
        (status = 502, description = "The provider failed or cannot be reached", body = ErrorBody),
        (status = 504, description = "The provider did not answer in time", body = ErrorBody)))]
pub async fn post_message(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(message): ApiJson<PostMessage>,
) -> Result<Response, ApiError> {
    if message.content.trim().is_empty() && message.tool_results.is_empty() {
        return Err(ApiError::invalid(
            "content must not be empty (or send tool_results)",
        ));
    }
    let task = state.engine.post_message(&id, message).await?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if wants_stream {
        let principal = principal.map(|axum::Extension(p)| p);
        return follow_task(state, principal, task.id, 0, None).await;
    }
    Ok((StatusCode::ACCEPTED, Json(task)).into_response())
}

/// Cancels the turn answering in a conversation; what it wrote so far stays.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/cancel", tag = "chat",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, description = "The cancelled turn's task", body = Task),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No turn is answering", body = ErrorBody)))]
pub async fn cancel_turn(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.cancel_turn(&id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `json` (default) or `markdown` (`md` for short).
    #[param(schema_with = export_format)]
    format: Option<String>,
}

fn export_format() -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["json", "markdown", "md"]))
}

/// The conversation as a JSON document or as Markdown.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/export", tag = "chat",
    params(("id" = String, Path, description = "Conversation id"), ExportParams),
    responses(
        (status = 200, content(
            (Conversation = "application/json"),
            (String = "text/markdown", example = "# Conversation Export\n\n## USER\n\nHi\n"))),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Unknown format", body = ErrorBody)))]
pub async fn export_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let conversation = state.engine.conversation(&id).await?;
    export(&conversation, params.format.as_deref())
}

/// A conversation in the export format asked for.
pub(super) fn export(
    conversation: &Conversation,
    format: Option<&str>,
) -> Result<Response, ApiError> {
    match format.unwrap_or("json") {
        "json" => Ok(Json(conversation).into_response()),
        "markdown" | "md" => Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            conversation.to_markdown(),
        )
            .into_response()),
        other => Err(ApiError::invalid(format!(
            "format `{other}` is not one of json, markdown"
        ))),
    }
}

/// What a followed turn says, in the order it happened.
#[derive(Debug)]
pub(super) enum TurnEvent {
    Text(String),
    ToolCall(ToolCall),
    /// The turn succeeded; the whole reply.
    Done(MessageData),
    /// The turn failed (or was cancelled, or the server stopped): why.
    Failed(String),
}

/// A chat turn followed from its first event to its last. Dropped before the end, it cancels
/// the turn: the surfaces that use it answer one request, and nobody else will read the
/// reply of a client that went away.
pub(super) struct Turn {
    pub task: Task,
    engine: Arc<Engine>,
    subscription: Subscription,
    message: Option<MessageData>,
    ended: bool,
}

impl Turn {
    /// Starts a chat turn and follows it.
    pub async fn start(engine: &Arc<Engine>, spec: ChatSpec) -> Result<Turn, ApiError> {
        let request = CreateTask {
            name: None,
            priority: 0,
            requires: Vec::new(),
            spec: TaskSpec::Chat(spec),
        };
        let (task, _) = engine.create(request, None).await?;
        let subscription = engine
            .bus()
            .subscribe(Topic::Task(task.id.clone()), Some(0))
            .await
            .map_err(store_error)?;
        Ok(Turn {
            task,
            engine: engine.clone(),
            subscription,
            message: None,
            ended: false,
        })
    }

    /// The next thing the turn says; `None` after [`TurnEvent::Done`] or
    /// [`TurnEvent::Failed`]. Cancel-safe.
    pub async fn next(&mut self) -> Option<TurnEvent> {
        while !self.ended {
            let published = match self.subscription.next().await {
                Ok(Some(published)) => published,
                Ok(None) => {
                    self.ended = true;
                    return Some(TurnEvent::Failed("the reply ended without a result".into()));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(TurnEvent::Failed(format!("cannot read the reply: {e}")));
                }
            };
            let event = &published.event;
            match event.kind.as_str() {
                chat_types::DELTA => {
                    if let Some(DeltaData { text }) = event.decode() {
                        return Some(TurnEvent::Text(text));
                    }
                }
                chat_types::TOOL_CALL => {
                    if let Some(ToolCallData { tool_call }) = event.decode() {
                        return Some(TurnEvent::ToolCall(tool_call));
                    }
                }
                chat_types::MESSAGE => {
                    self.message = event.decode();
                }
                _ => {
                    let Some(state) = event.final_state() else {
                        continue;
                    };
                    self.ended = true;
                    let reason = event
                        .state()
                        .and_then(|StateData { reason, .. }| reason)
                        .unwrap_or_else(|| state.to_string());
                    return Some(match (state, self.message.take()) {
                        (TaskState::Succeeded, Some(message)) => TurnEvent::Done(message),
                        (TaskState::Cancelled, _) => {
                            TurnEvent::Failed("the reply was cancelled".into())
                        }
                        _ => TurnEvent::Failed(reason),
                    });
                }
            }
        }
        None
    }

    /// Waits for the whole reply.
    pub async fn reply(mut self) -> Result<MessageData, String> {
        while let Some(event) = self.next().await {
            match event {
                TurnEvent::Done(message) => return Ok(message),
                TurnEvent::Failed(reason) => return Err(reason),
                TurnEvent::Text(_) | TurnEvent::ToolCall(_) => {}
            }
        }
        Err("the reply ended without a result".into())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let engine = self.engine.clone();
        let id = self.task.id.clone();
        // Dropped outside a runtime only at process exit, when the turn ends anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = engine.cancel(&id).await {
                    tracing::debug!(task = %id, error = %e, "turn ended before its cancel");
                }
            });
        }
    }
}
