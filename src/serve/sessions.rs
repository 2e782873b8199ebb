//! Routes of interpreter sessions: the kernels installed, a session's creation, its
//! executions and their input, interrupt, restart, checkpoints and restore, and close. A session is a task of kind
//! `session`: its log, its stream and its cancel are the task routes'.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson, ApiQuery};
use crate::proto::{
    CheckpointRequest, CreateSession, CreateTask, ErrorBody, ExecuteRequest, Execution,
    InputAnswer, InputAnswered, Interrupted, KernelSpecInfo, RestoreRequest, Restored,
    SessionCheckpoint, Task, TaskSpec,
};

/// The longest an execution's answer may wait for it to end.
const MAX_WAIT_SECS: f64 = 300.0;

/// The Jupyter kernels installed on the server, as `jupyter kernelspec list` shows them.
#[utoipa::path(get, path = "/api/v1/kernels", tag = "sessions",
    responses((status = 200, body = Vec<KernelSpecInfo>)))]
pub async fn kernels(State(state): State<AppState>) -> Json<Vec<KernelSpecInfo>> {
    Json(state.engine.kernels().await)
}

/// Starts a session: a kernel that keeps its variables between executions. The task is
/// `running` once the kernel is ready (its `session.ready` event).
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    request_body = CreateSession,
    responses((status = 201, description = "Created", body = Task),
        (status = 422, description = "Invalid fields, or no such kernel installed (the message \
            says how to install one)", body = ErrorBody),
        (status = 429, description = "The client has its most sessions open", body = ErrorBody),
        (status = 503, description = "The server has its most sessions open", body = ErrorBody)))]
pub async fn create_session(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    ApiJson(mut request): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    // A session is for a client; by default the holder of the key that asked.
    if request.spec.client.is_none() {
        request.spec.client = principal.map(|p| p.0.holder);
    }
    let request = CreateTask {
        name: request.name,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Session(request.spec),
    };
    let (task, _) = state.engine.create(request, None).await?;
    let mut response = (StatusCode::CREATED, Json(&task)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/tasks/{}", task.id)) {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

/// Queues code in a session. It runs after the executions before it; its events
/// (`execution.*`) follow in the session's log.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/executions", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    request_body = ExecuteRequest,
    responses((status = 202, description = "Queued", body = Execution),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session has ended, or the task is no session",
            body = ErrorBody),
        (status = 422, description = "Invalid fields, or an id the session has already",
            body = ErrorBody)))]
pub async fn execute(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<(StatusCode, Json<Execution>), ApiError> {
    let execution = state.engine.execute(&id, request).await?;
    Ok((StatusCode::ACCEPTED, Json(execution)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionParams {
    /// Seconds to wait for the execution to end before answering, at most 300 (default 0:
    /// answer at once).
    #[param(minimum = 0, maximum = 300)]
    wait: Option<f64>,
}

/// An execution as the session's log tells it: its status, output, displays, result, error
/// and the input it waits for.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/executions/{execution_id}", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id"),
        ("execution_id" = String, Path, description = "Execution id"), ExecutionParams),
    responses((status = 200, body = Execution), (status = 404, body = ErrorBody),
        (status = 422, description = "A wait out of range", body = ErrorBody)))]
pub async fn execution(
    State(state): State<AppState>,
    Path((id, execution_id)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<ExecutionParams>,
) -> Result<Json<Execution>, ApiError> {
    let wait = params.wait.unwrap_or(0.0);
    if !(0.0..=MAX_WAIT_SECS).contains(&wait) {
        return Err(ApiError::invalid(format!(
            "wait must be 0 to {MAX_WAIT_SECS} seconds"
        )));
    }
    let wait = Duration::from_secs_f64(wait);
    Ok(Json(
        state.engine.execution(&id, &execution_id, wait).await?,
    ))
}

/// Answers the request for input (`input()`) the running execution waits on.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/input", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    request_body = InputAnswer,
    responses((status = 200, body = InputAnswered), (status = 404, body = ErrorBody),
        (status = 409, description = "No execution waits for input, or the session has ended",
            body = ErrorBody),
        (status = 422, description = "An input_id that is not the one waiting", body = ErrorBody)))]
pub async fn input(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(answer): ApiJson<InputAnswer>,
) -> Result<Json<InputAnswered>, ApiError> {
    Ok(Json(state.engine.answer_input(&id, answer).await?))
}

/// Interrupts the running execution (the session and its variables stay) and drops the
/// queued ones. Code that ignores the interrupt gets its kernel restarted after a grace period.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/interrupt", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    responses((status = 200, body = Interrupted), (status = 404, body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody)))]
pub async fn interrupt(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Interrupted>, ApiError> {
    Ok(Json(state.engine.interrupt_session(&id).await?))
}

/// Replaces the session's kernel with a fresh one: its variables are gone, and what was
/// queued is dropped.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/restart", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.restart_session(&id).await?))
}

/// Closes the session: its kernel shuts down and the task succeeds.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/close", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody)))]
pub async fn close(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(state.engine.close_session(&id).await?))
}

/// Saves the session's variables in the server's data dir, after the executions queued
/// before it (with `dill` when the kernel has it, else `pickle`); the answer names the
/// variables that could not be saved. Python kernels only.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/checkpoints", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    request_body = CheckpointRequest,
    responses((status = 201, description = "Saved", body = SessionCheckpoint),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The session has ended, or the kernel could not save",
            body = ErrorBody),
        (status = 422, description = "Not a Python kernel, or an invalid name", body = ErrorBody)))]
pub async fn checkpoint(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CheckpointRequest>,
) -> Result<(StatusCode, Json<SessionCheckpoint>), ApiError> {
    let checkpoint = state.engine.checkpoint_session(&id, request).await?;
    Ok((StatusCode::CREATED, Json(checkpoint)))
}

/// The session's checkpoints, oldest first, also after it ended or the server restarted.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/checkpoints", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    responses((status = 200, body = Vec<SessionCheckpoint>), (status = 404, body = ErrorBody)))]
pub async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<SessionCheckpoint>>, ApiError> {
    Ok(Json(state.engine.session_checkpoints(&id).await?))
}

/// Replaces the session's variables with a checkpoint's: of this session or another, also one
/// saved before the server restarted. Runs after the executions queued before it.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/restore", tag = "sessions",
    params(("id" = String, Path, description = "Session (task) id")),
    request_body = RestoreRequest,
    responses((status = 200, body = Restored),
        (status = 404, description = "No such session or checkpoint", body = ErrorBody),
        (status = 409, description = "The session has ended, or the kernel could not restore",
            body = ErrorBody),
        (status = 422, description = "Not a Python kernel", body = ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<RestoreRequest>,
) -> Result<Json<Restored>, ApiError> {
    Ok(Json(
        state
            .engine
            .restore_session(&id, &request.checkpoint_id)
            .await?,
    ))
}
