//! Seed 001's task API (Code Intern): `POST /tasks` starts an agent task in build mode in a
//! workspace of its own; `GET /tasks/{id}` tells its progress in modules; `GET
//! /tasks/{id}/results` hands back the modules it wrote with their tests; `GET
//! /tasks/{id}/logs/stream` streams its log as `data: [LEVEL] line`. Its WebSocket,
//! `/ws/{task_id}`, is [`super::socket_seed001`]; both read the agent's log through [`Build`].
//!
//! Errors come in FastAPI's shape, as the seed's clients expect: `{"detail": "..."}`, and for
//! a malformed body 422 with `{"detail": [{"loc", "msg", "type"}]}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::seed_events::{Calls, Lifecycle, exit_code, lifecycle, test_command};
use super::stream::{Closing, Connected, closing, heartbeat_timer};
use crate::bus::{Subscription, Topic};
use crate::engine::{EngineError, Tool};
use crate::proto::{
    AgentMessageData, AgentMode, AgentSpec, ApprovalRequested, BudgetExhausted, ChangeKind,
    CreateTask, Event, FileChange, Guidance, OutputStream, Permission, Task, TaskSpec, TaskState,
    ToolCallEvent, ToolResultEvent,
};

/// A module's file is read back into `/results` up to this size.
const MAX_MODULE_BYTES: u64 = 1024 * 1024;

/// An error in FastAPI's shape, `{"detail": message}`: seed 001's and seed 004's servers were
/// FastAPI applications.
pub(super) fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

/// FastAPI's answer to a body it cannot validate: 422 with where and what.
pub(super) fn unprocessable(field: &str, message: impl Into<String>) -> Response {
    let loc: Vec<&str> = ["body"]
        .into_iter()
        .chain((!field.is_empty()).then_some(field))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": [{"loc": loc, "msg": message.into(), "type": "value_error"}]})),
    )
        .into_response()
}

/// An engine error in FastAPI's shape, with the status victor's API gives it.
pub(super) fn engine_detail(error: EngineError) -> Response {
    let error = ApiError::from(error);
    detail(error.status, error.message)
}

#[derive(Debug, Deserialize)]
struct StartBody {
    prompt: String,
    /// The answers to Code Intern's clarifying questions, in their order.
    #[serde(default)]
    answers: Vec<String>,
}

/// `POST /tasks {"prompt", "answers"?}`: an agent task in build mode in a new directory under
/// the server's task workspaces, allowed to write and run commands there without asking
/// (seed 001's clients have no approvals). Answers `{"task_id", "status": "started",
/// "websocket_url"}`, the URL on the host and port the client used.
pub async fn start(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match serde_json::from_slice::<StartBody>(&body) {
        Ok(body) => body,
        Err(e) => {
            let field = if e.to_string().contains("prompt") {
                "prompt"
            } else {
                ""
            };
            return unprocessable(field, format!("the body is not a task: {e}"));
        }
    };
    if body.prompt.trim().is_empty() {
        return unprocessable("prompt", "the prompt must say what to build");
    }
    let workspace = match new_workspace(&state) {
        Ok(dir) => dir,
        Err(why) => return detail(StatusCode::INTERNAL_SERVER_ERROR, why),
    };
    let approvals = Tool::ALL
        .into_iter()
        .filter(|tool| !tool.reads_only())
        .map(|tool| (tool.name().to_string(), Permission::Allow))
        .collect();
    let request = CreateTask {
        name: None,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Agent(AgentSpec {
            prompt: prompt_with_answers(&body.prompt, &body.answers),
            workspace: workspace.display().to_string(),
            mode: AgentMode::Build,
            approvals,
            ..AgentSpec::default()
        }),
    };
    let task = match state.engine.create(request, None).await {
        Ok((task, _)) => task,
        Err(e) => {
            let _ = std::fs::remove_dir(&workspace);
            return engine_detail(e);
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.tls { "wss" } else { "ws" };
    Json(json!({
        "task_id": task.id,
        "status": "started",
        "websocket_url": format!("{scheme}://{host}/ws/{}", task.id),
    }))
    .into_response()
}

/// The agent's prompt: the request, then the answers to the clarifying questions.
fn prompt_with_answers(prompt: &str, answers: &[String]) -> String {
    let answers: Vec<&str> = answers
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .collect();
    if answers.is_empty() {
        return prompt.to_string();
    }
    let mut text = format!("{prompt}\n\nAnswers to the clarifying questions:\n");
    for (i, answer) in answers.iter().enumerate() {
        text.push_str(&format!("{}. {answer}\n", i + 1));
    }
    text
}

/// A new, empty directory for one task under the server's task workspaces; `Err` says why
/// there is none.
pub(super) fn new_workspace(state: &AppState) -> Result<PathBuf, String> {
    let root = &state.task_workspaces;
    let made = std::fs::create_dir_all(root).and_then(|()| {
        let dir = root.join(format!("task-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir(&dir).map(|()| dir)
    });
    made.map_err(|e| format!("cannot make a workspace under {}: {e}", root.display()))
}

/// The agent task `id` names, with its spec; `Err` is the answer to give.
pub(super) async fn agent_task(
    state: &AppState,
    id: &str,
    what: &str,
) -> Result<(Task, AgentSpec), Response> {
    match state.engine.get(id).await {
        Ok(task) => match &task.spec {
            TaskSpec::Agent(spec) => {
                let spec = spec.clone();
                Ok((task, spec))
            }
            _ => Err(detail(StatusCode::NOT_FOUND, format!("{what} not found"))),
        },
        Err(EngineError::NotFound(_)) => {
            Err(detail(StatusCode::NOT_FOUND, format!("{what} not found")))
        }
        Err(e) => Err(engine_detail(e)),
    }
}

/// Seed 001's name for a task's state.
fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued => "pending",
        TaskState::Running => "in_progress",
        TaskState::Paused => "paused",
        TaskState::Succeeded => "completed",
        TaskState::Failed | TaskState::Interrupted => "failed",
        TaskState::Cancelled => "cancelled",
    }
}

/// Whether a file of the workspace holds tests (`test_x.py`, `x_test.go`, `x.test.js`,
/// `tests/...`).
fn is_test_file(path: &str) -> bool {
    let path = FsPath::new(path);
    let in_tests = path.parent().is_some_and(|dir| {
        dir.components().any(|part| {
            matches!(
                part.as_os_str().to_str(),
                Some("tests" | "test" | "__tests__" | "spec")
            )
        })
    });
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    in_tests
        || stem == "test"
        || stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_spec")
        || name.contains(".test.")
        || name.contains(".spec.")
}

/// The module a test file tests: its name without the test markers (`test_x.py` → `x`).
fn tested_stem(path: &str) -> String {
    let name = FsPath::new(path)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    stem.trim_start_matches("test_")
        .trim_end_matches("_test")
        .trim_end_matches("_spec")
        .to_string()
}

fn stem(path: &str) -> &str {
    FsPath::new(path)
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.split('.').next())
        .unwrap_or_default()
}

/// A Code Intern task as its agent's log tells it, one event at a time: the seed's progress
/// events (`TASK_STARTED`, `PLANNING_COMPLETE`, `MODULE_STARTED`, `MODULE_ITERATION`,
/// `TEST_PASSED`, `TASK_COMPLETE`...) and its status.
pub(super) struct Build {
    task_id: String,
    goal: String,
    calls: Calls,
    /// The files written, in the order they were first written, and how often each was.
    files: Vec<String>,
    writes: HashMap<String, u32>,
    deleted: Vec<String>,
    /// The last code file written.
    current: Option<String>,
    planned: bool,
    started: Option<jiff::Timestamp>,
    state: TaskState,
}

impl Build {
    pub fn new(task_id: &str, spec: &AgentSpec) -> Build {
        Build {
            task_id: task_id.to_string(),
            goal: spec.prompt.lines().next().unwrap_or_default().to_string(),
            calls: Calls::default(),
            files: Vec::new(),
            writes: HashMap::new(),
            deleted: Vec::new(),
            current: None,
            planned: false,
            started: None,
            state: TaskState::Queued,
        }
    }

    /// The code files written (not tests, not deleted since).
    fn modules(&self) -> Vec<&String> {
        self.files
            .iter()
            .filter(|f| !is_test_file(f) && !self.deleted.contains(f))
            .collect()
    }

    /// The seed's events for one log event, in its envelope `{"type", "task_id",
    /// "timestamp", "seq", "data"}`.
    pub fn feed(&mut self, event: &Event) -> Vec<Value> {
        self.progress(event)
            .into_iter()
            .map(|(kind, data)| self.envelope(kind, event, data))
            .collect()
    }

    pub fn envelope(&self, kind: &str, event: &Event, data: Value) -> Value {
        json!({
            "type": kind,
            "task_id": self.task_id,
            "timestamp": event.ts.to_string(),
            "seq": event.seq,
            "data": data,
        })
    }

    fn progress(&mut self, event: &Event) -> Vec<(&'static str, Value)> {
        if let Some(phase) = lifecycle(event) {
            return self.phase(phase, event);
        }
        if let Some(message) = event.decode::<AgentMessageData>() {
            if self.planned {
                return Vec::new();
            }
            self.planned = true;
            let modules: Vec<&str> = message
                .message
                .tool_calls
                .iter()
                .filter(|call| call.name == "write_file" || call.name == "edit_file")
                .filter_map(|call| call.arguments["path"].as_str())
                .collect();
            return vec![(
                "PLANNING_COMPLETE",
                json!({"plan": message.message.content, "modules": modules}),
            )];
        }
        if let Some(call) = event.decode::<ToolCallEvent>() {
            self.calls.started(&call);
            return Vec::new();
        }
        if let Some(change) = event.decode::<FileChange>() {
            return self.changed(change);
        }
        if let Some(result) = event.decode::<ToolResultEvent>() {
            let Some(call) = self.calls.finished(&result) else {
                return Vec::new();
            };
            let Some(command) = test_command(&call) else {
                return Vec::new();
            };
            let code = exit_code(&result.output);
            let data = json!({"command": command, "output": result.output,
                              "exit_code": code, "module": self.current});
            return vec![if !result.error && code == Some(0) {
                ("TEST_PASSED", data)
            } else {
                ("TEST_FAILED", data)
            }];
        }
        if let Some(guidance) = event.decode::<Guidance>() {
            return vec![("INTERVENTION_RECEIVED", json!({"guidance": guidance.text}))];
        }
        Vec::new()
    }

    fn phase(&mut self, phase: Lifecycle, event: &Event) -> Vec<(&'static str, Value)> {
        match phase {
            Lifecycle::Started => {
                self.state = TaskState::Running;
                self.started = Some(event.ts);
                vec![("TASK_STARTED", json!({"goal": self.goal}))]
            }
            Lifecycle::Halted => {
                self.state = TaskState::Paused;
                vec![("TASK_PAUSED", json!({}))]
            }
            Lifecycle::Resumed => {
                self.state = TaskState::Running;
                vec![("TASK_RESUMED", json!({}))]
            }
            Lifecycle::Ended { state, error } => {
                self.state = state;
                let seconds = self
                    .started
                    .map(|started| (event.ts.as_second() - started.as_second()).max(0))
                    .unwrap_or(0);
                let modules: Vec<String> = self.modules().into_iter().cloned().collect();
                match error {
                    None if state == TaskState::Succeeded => vec![(
                        "TASK_COMPLETE",
                        json!({
                            "total_time": format!("{}m {}s", seconds / 60, seconds % 60),
                            "total_seconds": seconds,
                            "modules_generated": modules.len(),
                            "modules": modules,
                        }),
                    )],
                    error => vec![(
                        "TASK_FAILED",
                        json!({"status": status(state), "error": error}),
                    )],
                }
            }
        }
    }

    fn changed(&mut self, change: FileChange) -> Vec<(&'static str, Value)> {
        let path = change.path;
        if change.kind == ChangeKind::Deleted {
            self.deleted.push(path.clone());
            return Vec::new();
        }
        self.deleted.retain(|deleted| *deleted != path);
        let writes = self.writes.entry(path.clone()).or_insert(0);
        *writes += 1;
        let iteration = *writes;
        if !self.files.contains(&path) {
            self.files.push(path.clone());
        }
        let tests = is_test_file(&path);
        if !tests {
            self.current = Some(path.clone());
        }
        let data = json!({"module": path, "iteration": iteration, "tests": tests});
        if iteration == 1 {
            vec![("MODULE_STARTED", data)]
        } else {
            vec![("MODULE_ITERATION", data)]
        }
    }

    /// `GET /tasks/{id}`'s answer.
    fn status(&self, task: &Task) -> Value {
        let modules = self.modules();
        let total = modules.len();
        let done = task.state == TaskState::Succeeded;
        let complete = if done { total } else { total.saturating_sub(1) };
        let progress = if done {
            1.0
        } else if total == 0 {
            0.0
        } else {
            complete as f64 / total as f64
        };
        json!({
            "task_id": task.id,
            "status": status(task.state),
            "current_module": self.current,
            "iteration": self.current.as_ref().and_then(|m| self.writes.get(m)).copied().unwrap_or(0),
            "modules_complete": complete,
            "total_modules": total,
            "progress": progress,
        })
    }
}

/// A task's whole log through a [`Build`].
async fn build_of(state: &AppState, task: &Task, spec: &AgentSpec) -> Result<Build, Response> {
    let mut build = Build::new(&task.id, spec);
    super::seed_events::replay_through(&state.engine, &task.id, task.last_seq, |event| {
        build.feed(event);
    })
    .await
    .map_err(|e| engine_detail(e.into()))?;
    Ok(build)
}

/// `GET /tasks/{task_id}`.
pub async fn status_of(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (task, spec) = match agent_task(&state, &id, "Task").await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match build_of(&state, &task, &spec).await {
        Ok(build) => Json(build.status(&task)).into_response(),
        Err(answer) => answer,
    }
}

/// `GET /tasks/{task_id}/results`: every code file the task wrote with its content, and the
/// content of its tests (`test_x.py` for `x.py`) where it has some; test files that test no
/// module of the task come as modules without code.
pub async fn results(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (task, spec) = match agent_task(&state, &id, "Task").await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let build = match build_of(&state, &task, &spec).await {
        Ok(build) => build,
        Err(answer) => return answer,
    };
    let root = PathBuf::from(&spec.workspace);
    let tests: Vec<&String> = build
        .files
        .iter()
        .filter(|f| is_test_file(f) && !build.deleted.contains(f))
        .collect();
    let mut matched = vec![false; tests.len()];
    let mut modules = Vec::new();
    for module in build.modules() {
        let mut found = Vec::new();
        for (i, test) in tests.iter().enumerate() {
            if tested_stem(test) == stem(module) {
                matched[i] = true;
                found.extend(read_module(&root, test));
            }
        }
        modules.push(json!({
            "name": module,
            "code": read_module(&root, module),
            "tests": (!found.is_empty()).then(|| found.join("\n")),
        }));
    }
    for (test, _) in tests.iter().zip(matched).filter(|(_, matched)| !matched) {
        modules.push(json!({"name": test, "code": null, "tests": read_module(&root, test)}));
    }
    Json(json!({
        "task_id": task.id,
        "status": status(task.state),
        "modules": modules,
    }))
    .into_response()
}

/// A file of the workspace as text, if it is still there (and inside the workspace).
fn read_module(root: &FsPath, relative: &str) -> Option<String> {
    let root = root.canonicalize().ok()?;
    let path = root.join(relative).canonicalize().ok()?;
    if !path.starts_with(&root) || !path.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    use std::io::Read;
    std::fs::File::open(&path)
        .ok()?
        .take(MAX_MODULE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The log lines (`[LEVEL] text`) of one event.
pub(super) fn log_lines(event: &Event) -> Vec<String> {
    let line = |level: &str, text: &str| format!("[{level}] {text}");
    if let Some(phase) = lifecycle(event) {
        return vec![match phase {
            Lifecycle::Started => line("INFO", "Task started"),
            Lifecycle::Halted => line("INFO", "Task paused"),
            Lifecycle::Resumed => line("INFO", "Task resumed"),
            Lifecycle::Ended {
                state: TaskState::Succeeded,
                ..
            } => line("INFO", "Task completed"),
            Lifecycle::Ended {
                state,
                error: Some(error),
            } => line("ERROR", &format!("Task {}: {error}", status(state))),
            Lifecycle::Ended { state, error: None } => {
                line("WARNING", &format!("Task {}", status(state)))
            }
        }];
    }
    if let Some(message) = event.decode::<AgentMessageData>() {
        return message
            .message
            .content
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| line("INFO", l))
            .collect();
    }
    if let Some(call) = event.decode::<ToolCallEvent>() {
        let about = call.arguments["path"]
            .as_str()
            .or(call.arguments["command"].as_str())
            .unwrap_or_default();
        return vec![line("INFO", format!("{} {about}", call.name).trim_end())];
    }
    if let Some(result) = event.decode::<ToolResultEvent>() {
        let first = result.output.lines().next().unwrap_or_default();
        if result.error {
            return vec![line("ERROR", &format!("{} failed: {first}", result.name))];
        }
        let done = line(
            "INFO",
            &format!("{} done in {} ms", result.name, result.duration_ms),
        );
        // A command's output is what a person follows the log for.
        if result.name != Tool::RunCommand.name() {
            return vec![done];
        }
        return result
            .output
            .lines()
            .map(|l| line("INFO", l))
            .chain([done])
            .collect();
    }
    if let Some(change) = event.decode::<FileChange>() {
        let verb = match change.kind {
            ChangeKind::Created => "Created",
            ChangeKind::Modified => "Modified",
            ChangeKind::Deleted => "Deleted",
        };
        return vec![line("INFO", &format!("{verb} {}", change.path))];
    }
    if let Some(output) = event.output() {
        let level = match output.stream {
            OutputStream::Stdout => "INFO",
            OutputStream::Stderr => "WARNING",
        };
        return output.text.lines().map(|l| line(level, l)).collect();
    }
    if let Some(guidance) = event.decode::<Guidance>() {
        return vec![line("INFO", &format!("Intervention: {}", guidance.text))];
    }
    if let Some(requested) = event.decode::<ApprovalRequested>() {
        let tool = requested.approval.tool;
        return vec![line("WARNING", &format!("Waiting for approval of {tool}"))];
    }
    if let Some(budget) = event.decode::<BudgetExhausted>() {
        return vec![line(
            "ERROR",
            &format!("The {} budget ({}) ran out", budget.budget, budget.limit),
        )];
    }
    Vec::new()
}

/// `GET /tasks/{task_id}/logs/stream`: the task's log as `text/event-stream`, one SSE event
/// per log event with one `data: [LEVEL] line` per line and the event's seq as its id. It
/// resumes after `Last-Event-ID` (or `?after=`), and ends after the task's last event.
pub async fn logs(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (task, _) = match agent_task(&state, &id, "Task").await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let from_header = headers
        .get("last-event-id")
        .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()));
    let from_query =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .find(|(name, _)| name == "after")
            .map(|(_, value)| value.trim().parse::<u64>().ok());
    let after = match from_header.or(from_query) {
        None => 0,
        Some(Some(after)) if after <= task.last_seq => after,
        Some(Some(after)) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{after} is past the task's last event ({})", task.last_seq),
            );
        }
        Some(None) => {
            return detail(
                StatusCode::BAD_REQUEST,
                "Last-Event-ID and after must be whole numbers",
            );
        }
    };
    let subscription = match state
        .engine
        .bus()
        .subscribe(Topic::Task(id.clone()), Some(after))
        .await
    {
        Ok(subscription) => subscription,
        Err(e) => return engine_detail(e.into()),
    };
    let principal = principal.map(|axum::Extension(p)| p);
    Sse::new(log_stream(state, principal, subscription)).into_response()
}

/// The SSE frames of a task's log lines; a heartbeat comment keeps a quiet stream open.
fn log_stream(
    state: AppState,
    principal: Option<Principal>,
    subscription: Subscription,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct Open {
        state: AppState,
        principal: Option<Principal>,
        subscription: Subscription,
        heartbeat: tokio::time::Interval,
        closing: Closing,
        done: bool,
        _connected: Connected,
    }
    let open = Open {
        done: false,
        heartbeat: heartbeat_timer(state.heartbeat),
        closing: closing(&state),
        _connected: Connected::new(&state.clients),
        state,
        principal,
        subscription,
    };
    futures_util::stream::unfold(open, |mut open| async move {
        loop {
            if open.done {
                return None;
            }
            let frame = tokio::select! {
                biased;
                _ = &mut open.closing => return None,
                next = open.subscription.next() => match next {
                    Ok(Some(published)) => {
                        let lines = log_lines(&published.event);
                        if lines.is_empty() {
                            continue;
                        }
                        SseEvent::default()
                            .id(published.event.seq.to_string())
                            .data(lines.join("\n"))
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        open.done = true;
                        SseEvent::default().data(format!("[ERROR] the log cannot be read: {e}"))
                    }
                },
                _ = open.heartbeat.tick() => {
                    if let Some(principal) = &open.principal
                        && !open.state.access.still_valid(principal)
                    {
                        return None;
                    }
                    SseEvent::default().comment("heartbeat")
                }
            };
            return Some((Ok(frame), open));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_files_are_told_from_modules_and_matched_to_them() {
        for test in [
            "test_validator.py",
            "validator_test.go",
            "validator.test.js",
            "tests/test_validator.py",
            "test.sh",
        ] {
            assert!(is_test_file(test), "{test}");
        }
        for module in ["validator.py", "src/latest.rs", "contest.py"] {
            assert!(!is_test_file(module), "{module}");
        }
        assert_eq!(tested_stem("tests/test_validator.py"), stem("validator.py"));
        assert_eq!(tested_stem("validator_test.go"), "validator");
    }

    #[test]
    fn answers_follow_the_prompt() {
        assert_eq!(prompt_with_answers("Build it", &[]), "Build it");
        let text = prompt_with_answers("Build it", &["Use regex".into(), " ".into()]);
        assert!(text.starts_with("Build it\n\nAnswers"));
        assert!(text.contains("1. Use regex"));
        assert!(!text.contains("2."));
    }
}
