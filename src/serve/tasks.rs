//! REST routes of the native API: tasks, their controls, health and status.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::proto::{
    CreateTask, ErrorBody, Health, Input, PROTOCOL_VERSION, Status, Task, TaskPage, TaskState,
};

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Liveness; never needs a key. A node that cannot reach the store it shares with other
/// nodes answers 503 `degraded` (it retries meanwhile), so that a load balancer sends clients
/// to another node.
#[utoipa::path(get, path = "/api/v1/health", tag = "server", security(()),
    responses((status = 200, body = Health),
        (status = 503, description = "The shared store is out of reach", body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let reason = state.engine.bus().store().degraded();
    let status = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let health = Health {
        status: if reason.is_some() {
            "degraded"
        } else {
            "healthy"
        }
        .to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        reason,
    };
    (status, Json(health))
}

/// Tasks by state, uptime and connected clients.
#[utoipa::path(get, path = "/api/v1/status", tag = "server",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let (node, nodes) = state.engine.nodes().await?;
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        uptime_secs: state.engine.uptime().as_secs(),
        connected_clients: state.clients.load(Ordering::Relaxed),
        tasks: state.engine.count_by_state().await?,
        max_concurrent: state.engine.config().max_concurrent,
        node,
        nodes,
    }))
}

/// Creates a task and queues it. With an `Idempotency-Key` header already used, answers the
/// task it created then (200 instead of 201) rather than starting a second.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks",
    request_body = CreateTask,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false,
        max_length = 255, pattern = "^[\\x21-\\x7e]([\\t\\x20-\\x7e]*[\\x21-\\x7e])?$",
        description = "Retry-safe creation: the same key returns the same task. 1 to 255 \
            visible ASCII characters")),
    responses(
        (status = 201, description = "Created", body = Task),
        (status = 200, description = "Already created with this Idempotency-Key", body = Task),
        (status = 404, description = "The conversation a chat turn names does not exist", body = ErrorBody),
        (status = 422, description = "Invalid fields, or a value this server does not have (a \
            `cwd` or workspace, a provider or model), or an Idempotency-Key that is not 1 to \
            255 visible ASCII characters or was used for another request", body = ErrorBody),
        (status = 502, description = "A chat or agent's provider failed or cannot be reached",
            body = ErrorBody),
        (status = 504, description = "A chat or agent's provider did not answer in time",
            body = ErrorBody)))]
pub async fn create_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateTask>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key must be visible ASCII"))?;
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                return Err(ApiError::invalid(format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
                )));
            }
            Some(key.to_string())
        }
    };
    let (task, created) = state.engine.create(request, key).await?;
    let location = format!("/api/v1/tasks/{}", task.id);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(task)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only tasks in these states, comma-separated (`running,queued`).
    #[param(value_type = Option<Vec<TaskState>>, style = Form, explode = false)]
    state: Option<String>,
    /// Tasks per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// Tasks, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListParams),
    responses((status = 200, body = TaskPage),
        (status = 422, description = "A limit out of range, an unknown state, or a cursor this \
            server did not give out", body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<TaskPage>, ApiError> {
    let states = parse_states(params.state.as_deref())?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let cursor = params
        .cursor
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| ApiError::invalid("cursor must be a next_cursor from a previous page"))
        })
        .transpose()?;
    Ok(Json(state.engine.list(states, None, limit, cursor).await?))
}

/// Parses a comma-separated list of states.
pub fn parse_states(list: Option<&str>) -> Result<Vec<TaskState>, ApiError> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e: crate::proto::task::UnknownState| ApiError::invalid(e.to_string()))
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody)))]
pub async fn get_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.describe(&id).await?))
}

/// Deletes a finished task and its events.
#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 409, description = "The task has not finished", body = ErrorBody)))]
pub async fn delete_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a task: at once when queued; SIGTERM to a running one's process group, then
/// SIGKILL after the grace period. It ends `cancelled`.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
        (status = 409, description = "The task has finished", body = ErrorBody)))]
pub async fn cancel_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.cancel(&id).await?))
}

/// Pauses a running task (SIGSTOP to its process group).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/pause", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
        (status = 409, description = "The task is not running", body = ErrorBody)))]
pub async fn pause_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.pause(&id).await?))
}

/// Resumes a paused task (SIGCONT to its process group).
#[utoipa::path(post, path = "/api/v1/tasks/{id}/resume", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
        (status = 409, description = "The task is not paused", body = ErrorBody)))]
pub async fn resume_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.resume(&id).await?))
}

/// Writes to a running task's stdin; `eof` closes it.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/input", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body = Input,
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
        (status = 409, description = "The task is not running or its stdin is closed", body = ErrorBody),
        (status = 503, description = "The task is not reading its input", body = ErrorBody)))]
pub async fn input_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<Input>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.input(&id, input).await?))
}
