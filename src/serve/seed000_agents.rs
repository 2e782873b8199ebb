//! Seed 000's background agents: `/agents/start`, `/agents`, `/agents/{id}`,
//! `/agents/{id}/cancel`, `/agents/clear`, and the `agent_event` messages its `/ws` clients
//! receive. Each seed agent is a victor task of kind `agent` (`agent_id` is `agent-` and the
//! task's id), shown in the seed's shape, built from the task and its log.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiJson};
use super::stream::store_error;
use crate::bus::Topic;
use crate::engine::Engine;
use crate::proto::{
    AgentMessageData, AgentMode, AgentSpec, CreateTask, Event, Task, TaskSpec, TaskState,
    ToolCallEvent, ToolResultEvent, agent_types, types,
};
use crate::store::EventRange;

/// Agents seed 000 runs at once; one more is refused.
const MAX_AGENTS: usize = 4;
const ACTIVE: [TaskState; 3] = [TaskState::Queued, TaskState::Running, TaskState::Paused];

fn agent_id(task_id: &str) -> String {
    format!("agent-{task_id}")
}

fn task_id(agent_id: &str) -> &str {
    agent_id.strip_prefix("agent-").unwrap_or(agent_id)
}

/// Seed 000's name for a task's state.
fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "pending",
        TaskState::Running => "running",
        TaskState::Paused => "paused",
        TaskState::Succeeded => "completed",
        TaskState::Failed | TaskState::Interrupted => "error",
        TaskState::Cancelled => "cancelled",
    }
}

fn states_of(status: &str) -> Option<Vec<TaskState>> {
    Some(match status {
        "pending" => vec![TaskState::Queued],
        "running" => vec![TaskState::Running],
        "paused" => vec![TaskState::Paused],
        "completed" => vec![TaskState::Succeeded],
        "error" => vec![TaskState::Failed, TaskState::Interrupted],
        "cancelled" => vec![TaskState::Cancelled],
        _ => return None,
    })
}

/// An error in seed 000's own shape: `{"error": "..."}`.
fn seed_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct StartBody {
    task: String,
    #[serde(default)]
    mode: Option<AgentMode>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /agents/start`: an agent in the server's directory (or its first workspace root),
/// with the server's approval
/// defaults (writes and commands wait for a person: answer them in `victor watch` or at
/// `/api/v1/approvals`).
pub async fn start(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<Response, ApiError> {
    if body.task.trim().is_empty() {
        return Err(ApiError::bad_request(
            "task must say what the agent is to do",
        ));
    }
    let active = state
        .engine
        .list(ACTIVE.to_vec(), Some("agent"), MAX_AGENTS, None)
        .await?;
    if active.tasks.len() >= MAX_AGENTS {
        return Ok(seed_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Maximum concurrent agents ({MAX_AGENTS}) reached. Wait for one to finish or cancel one."
            ),
        ));
    }
    let Some(workspace) = state.engine.default_workspace() else {
        return Err(ApiError::invalid(
            "the server has no workspace root: start it with --workspace-root",
        ));
    };
    let request = CreateTask {
        name: body.name,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Agent(AgentSpec {
            prompt: body.task,
            workspace,
            mode: body.mode.unwrap_or_default(),
            ..AgentSpec::default()
        }),
    };
    let (task, _) = state.engine.create(request, None).await?;
    Ok(Json(json!({
        "success": true,
        "agent_id": agent_id(&task.id),
        "message": "Agent started",
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /agents?status&limit`.
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let states = match params.status.as_deref() {
        None => Vec::new(),
        Some(name) => states_of(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "status `{name}` is not one of pending, running, paused, completed, error, cancelled"
            ))
        })?,
    };
    let limit = params.limit.unwrap_or(50).clamp(1, 1000);
    let page = state
        .engine
        .list(states, Some("agent"), limit, None)
        .await?;
    let mut agents = Vec::new();
    for task in &page.tasks {
        agents.push(agent(&state.engine, task).await?);
    }
    let active = state
        .engine
        .list(ACTIVE.to_vec(), Some("agent"), 1000, None)
        .await?
        .tasks
        .len();
    Ok(Json(json!({ "agents": agents, "active_count": active })))
}

/// `GET /agents/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match agent_task(&state.engine, &id).await? {
        Some(task) => Ok(Json(agent(&state.engine, &task).await?).into_response()),
        None => Ok(seed_error(
            StatusCode::NOT_FOUND,
            format!("Agent {id} not found"),
        )),
    }
}

/// `POST /agents/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if agent_task(&state.engine, &id).await?.is_none() {
        return Ok(seed_error(
            StatusCode::NOT_FOUND,
            format!("Agent {id} not found"),
        ));
    }
    state.engine.cancel(task_id(&id)).await?;
    Ok(
        Json(json!({"success": true, "agent_id": id, "message": "Agent cancelled"}))
            .into_response(),
    )
}

/// `POST /agents/clear`: removes the agents that have ended, with their logs.
pub async fn clear(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let ended = [
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Interrupted,
    ];
    let mut cleared = 0;
    loop {
        let page = state
            .engine
            .list(ended.to_vec(), Some("agent"), 100, None)
            .await?;
        if page.tasks.is_empty() {
            break;
        }
        for task in page.tasks {
            state.engine.delete(&task.id).await?;
            cleared += 1;
        }
    }
    Ok(Json(json!({
        "success": true,
        "cleared": cleared,
        "message": format!("Cleared {cleared} finished agents"),
    })))
}

/// The agent task `id` names, if it is one.
async fn agent_task(engine: &Engine, id: &str) -> Result<Option<Task>, ApiError> {
    match engine.get(task_id(id)).await {
        Ok(task) if matches!(task.spec, TaskSpec::Agent(_)) => Ok(Some(task)),
        Ok(_) | Err(crate::engine::EngineError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An agent in seed 000's shape, from its task and its log.
async fn agent(engine: &Engine, task: &Task) -> Result<Value, ApiError> {
    let TaskSpec::Agent(spec) = &task.spec else {
        return Err(ApiError::not_found("not an agent"));
    };
    let mut calls: Vec<Value> = Vec::new();
    let mut call_index: HashMap<String, usize> = HashMap::new();
    let mut output = String::new();
    let mut steps = 0u32;
    let mut after = 0;
    loop {
        let page = engine
            .bus()
            .store()
            .events_after(
                EventRange::Task {
                    id: task.id.clone(),
                    after,
                },
                1000,
            )
            .await
            .map_err(store_error)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            if let Some(call) = event.decode::<ToolCallEvent>() {
                call_index.insert(call.id.clone(), calls.len());
                calls.push(json!({
                    "id": call.id,
                    "name": call.name,
                    "status": "running",
                    "start_time": event.ts.to_string(),
                    "end_time": null,
                    "result": null,
                    "error": null,
                }));
            } else if let Some(result) = event.decode::<ToolResultEvent>() {
                if let Some(call) = call_index.get(&result.id).and_then(|&i| calls.get_mut(i)) {
                    let failed = result.error;
                    call["status"] = json!(if failed { "error" } else { "completed" });
                    call["end_time"] = json!(event.ts.to_string());
                    call[if failed { "error" } else { "result" }] = json!(result.output);
                }
            } else if let Some(step) = event.decode::<AgentMessageData>() {
                steps += 1;
                if !step.message.content.is_empty() {
                    output = step.message.content;
                }
            }
        }
    }
    let max_steps = spec.max_steps().max(1);
    let progress = if task.state.is_final() {
        100
    } else {
        (steps * 100 / max_steps).min(99)
    };
    let description = spec.prompt.lines().next().unwrap_or_default();
    Ok(json!({
        "id": agent_id(&task.id),
        "name": task.name.clone().unwrap_or_else(|| format!("{} agent", spec.mode)),
        "description": description,
        "task": spec.prompt,
        "mode": spec.mode,
        "status": status(task.state),
        "progress": progress,
        "start_time": task.started_at.map(|t| t.to_string()),
        "end_time": task.finished_at.map(|t| t.to_string()),
        "tool_calls": calls,
        "output": output,
        "error": task.result.as_ref().and_then(|r| r.error.clone()),
    }))
}

/// Seed 000's `agent_event` message for an event of an agent's log, if it has one.
fn agent_event(event: &Event) -> Option<Value> {
    let name = match event.kind.as_str() {
        types::STATE => match event.state()?.state {
            // Leaving the queue (seq 1 is `queued`); later ones are resumes.
            TaskState::Running if event.seq <= 2 => "agent_started",
            TaskState::Running => "agent_running",
            TaskState::Succeeded => "agent_completed",
            TaskState::Failed | TaskState::Interrupted => "agent_error",
            TaskState::Cancelled => "agent_cancelled",
            TaskState::Queued | TaskState::Paused => return None,
        },
        agent_types::TOOL_CALL => "agent_tool_call",
        agent_types::TOOL_RESULT => "agent_tool_result",
        _ => return None,
    };
    let mut data = event.data.clone();
    if let Some(object) = data.as_object_mut() {
        object.insert("agent_id".into(), json!(agent_id(&event.task_id)));
    }
    Some(json!({
        "type": "agent_event",
        "event": name,
        "data": data,
        "timestamp": event.ts.to_string(),
    }))
}

/// Sends every agent's events, from now on, to a `/ws` client as `agent_event` messages.
pub(super) async fn forward_agent_events(
    engine: std::sync::Arc<Engine>,
    outgoing: super::socket::Outbox,
) {
    let mut subscription = match engine.bus().subscribe(Topic::All, None).await {
        Ok(subscription) => subscription,
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow agents for a /ws client");
            return;
        }
    };
    let mut kinds: HashMap<String, bool> = HashMap::new();
    loop {
        let published = match subscription.next().await {
            Ok(Some(published)) => published,
            Ok(None) | Err(_) => return,
        };
        let event = &published.event;
        let Some(message) = agent_event(event) else {
            continue;
        };
        let is_agent = match kinds.get(&event.task_id) {
            Some(&is_agent) => is_agent,
            None => {
                let is_agent = engine
                    .get(&event.task_id)
                    .await
                    .is_ok_and(|task| matches!(task.spec, TaskSpec::Agent(_)));
                kinds.insert(event.task_id.clone(), is_agent);
                is_agent
            }
        };
        if is_agent
            && outgoing
                .send(tokio_tungstenite::tungstenite::Message::text(
                    message.to_string(),
                ))
                .await
                .is_err()
        {
            return;
        }
    }
}
