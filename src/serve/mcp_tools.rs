//! What victor offers an MCP client (see [`super::mcp`]): tools to start, follow and steer
//! tasks, agents and chats, render diagrams; task logs as resources. A tool needs the scope its
//! REST route needs: a `read` key lists and calls only the read-only ones. Failures are tool
//! results with `isError` and a sentence a model can act on: the state a refused control found,
//! the id of a task that is not there, the scope a key lacks.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AppState;
use super::mcp::{Caller, Follow, FollowKind, Reply, codes};
use crate::engine::EngineError;
use crate::proto::{
    AgentMessageData, AgentMode, AgentSpec, ApprovalAnswer, ApprovalRequested, ApprovalStatus,
    ChatMessage, ChatSpec, Command, CreateTask, Decision, DiagramType, Event, ExecSpec,
    ExecuteRequest, Execution, ExecutionStatus, Input, MessageData, RenderOptions, RenderRequest,
    Role, Scope, SessionSpec, Task, TaskSpec, ToolCallEvent,
};
use crate::store::EventRange;

/// Told to the client at `initialize`, for its model.
pub(super) const INSTRUCTIONS: &str = "victor runs commands, agents and chats as tasks on the \
    machine it serves, and keeps every task's output in a durable log. Start a command with \
    start_task (wait=true to wait for it, with progress), follow one with wait_task or read_log \
    (from a cursor, as much as you need), and steer it with cancel_task, pause_task, \
    resume_task and send_input. run_code runs code in an interpreter session that keeps its \
    variables between calls. Task logs are also resources: victor://tasks/{id}/log.";

/// Most a `read_log` call returns; its default.
const MAX_LOG_BYTES: usize = 256 * 1024;
const DEFAULT_LOG_BYTES: usize = 16 * 1024;
/// Most a log resource holds (the rest through `read_log`).
const RESOURCE_BYTES: usize = 1024 * 1024;
/// The output a finished task's answer ends with.
const TAIL_BYTES: usize = 4096;
/// How long a call waits for a task unless it says, and at most: clients give up on calls
/// that take longer than about a minute unless progress keeps them alive.
const DEFAULT_WAIT_SECS: f64 = 50.0;
const MAX_WAIT_SECS: f64 = 3600.0;
/// How long `run_code` waits at most: an execution's wait (`GET .../executions/{id}`).
const MAX_RUN_WAIT_SECS: f64 = 300.0;
/// Longest progress message about something other than output.
const MAX_LINE: usize = 2000;

/// One tool: its name, the scope it needs, what it is for and what it takes.
struct Tool {
    name: &'static str,
    scope: Scope,
    description: &'static str,
    input: Value,
    /// Changes nothing; calling it twice does what calling it once does.
    read_only: bool,
    /// May end or undo something (cancel).
    destructive: bool,
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

fn task_id() -> Value {
    json!({"type": "string", "description": "The task's id, as start_task or list_tasks gave it."})
}

fn wait_secs(what: &str) -> Value {
    json!({"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_SECS,
        "description": format!("Seconds to wait for {what} (default {DEFAULT_WAIT_SECS}); the \
            answer then says it is still running, and you can wait again.")})
}

static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    vec![
        Tool {
            name: "start_task",
            scope: Scope::Control,
            description: "Run a shell command on the server as a background task. Returns the \
                task (its id and state); with wait=true waits for it to finish (progress: one \
                notification per line of output) and returns its exit code and the end of its \
                output. A dropped connection does not stop the task.",
            input: object(
                json!({
                    "command": {"description": "A string run by /bin/sh -c, or an array: the \
                        program and its arguments.",
                        "anyOf": [{"type": "string", "minLength": 1},
                                  {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "cwd": {"type": "string", "description": "Working directory on the server \
                        (default: the server's)."},
                    "env": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Environment variables to set."},
                    "timeout_secs": {"type": "number", "exclusiveMinimum": 0,
                        "description": "Stop the task after this many seconds of running."},
                    "name": {"type": "string", "description": "A name for people."},
                    "stdin": {"type": "string", "description": "Written to its standard input, \
                        which is then closed. Without it, send_input writes to it later."},
                    "wait": {"type": "boolean", "description": "Wait for the task to finish."},
                    "wait_secs": wait_secs("the task"),
                }),
                &["command"],
            ),
            read_only: false,
            destructive: false,
        },
        Tool {
            name: "show_task",
            scope: Scope::Read,
            description: "A task: its command, state, exit code and times, and last_seq (the \
                position of its newest log event).",
            input: object(json!({"task_id": task_id()}), &["task_id"]),
            read_only: true,
            destructive: false,
        },
        Tool {
            name: "list_tasks",
            scope: Scope::Read,
            description: "Tasks, newest first.",
            input: object(
                json!({
                    "state": {"type": "string", "description": "Only tasks in these states, \
                        comma-separated: queued, running, paused, succeeded, failed, cancelled, \
                        interrupted."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100,
                        "description": "How many (default 20)."},
                }),
                &[],
            ),
            read_only: true,
            destructive: false,
        },
        Tool {
            name: "read_log",
            scope: Scope::Read,
            description: "A task's output from a cursor, at most max_bytes of it (whole lines \
                where they fit). The answer says the cursor to continue from (next_after, \
                next_offset) and whether more is already there; call again with \
                after=next_after and offset=next_offset to go on.",
            input: object(
                json!({
                    "task_id": task_id(),
                    "after": {"type": "integer", "minimum": 0, "description": "Read the log \
                        after this position (default 0: from the start)."},
                    "offset": {"type": "integer", "minimum": 0, "description": "Bytes of the \
                        next event's output already read (next_offset of the previous read; \
                        default 0)."},
                    "max_bytes": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_BYTES,
                        "description": format!("Most output to return (default \
                        {DEFAULT_LOG_BYTES}).")},
                }),
                &["task_id"],
            ),
            read_only: true,
            destructive: false,
        },
        Tool {
            name: "wait_task",
            scope: Scope::Read,
            description: "Wait for a task to finish, with progress (one notification per log \
                event after `after`). Returns its state, exit code and the end of its output, or \
                that it is still running when the wait is over.",
            input: object(
                json!({
                    "task_id": task_id(),
                    "timeout_secs": wait_secs("the task"),
                    "after": {"type": "integer", "minimum": 0, "description": "Report progress \
                        for log events after this position (default: from now)."},
                }),
                &["task_id"],
            ),
            read_only: true,
            destructive: false,
        },
        control_tool(
            "cancel_task",
            "Cancel a task: a queued one at once, a running one with SIGTERM (then SIGKILL).",
            true,
        ),
        control_tool(
            "pause_task",
            "Pause a running task (SIGSTOP to its processes).",
            false,
        ),
        control_tool("resume_task", "Resume a paused task (SIGCONT).", false),
        Tool {
            name: "send_input",
            scope: Scope::Control,
            description: "Write to a running task's standard input.",
            input: object(
                json!({
                    "task_id": task_id(),
                    "text": {"type": "string", "description": "Written as is: add the newline \
                        yourself."},
                    "eof": {"type": "boolean", "description": "Close its input afterwards."},
                }),
                &["task_id", "text"],
            ),
            read_only: false,
            destructive: false,
        },
        Tool {
            name: "list_approvals",
            scope: Scope::Read,
            description: "Tool calls of agents waiting for a person's approval (or, with \
                status, answered ones).",
            input: object(
                json!({
                    "task_id": {"type": "string", "description": "Only this agent task's."},
                    "status": {"type": "string",
                        "enum": ["pending", "allowed", "denied", "cancelled", "expired", "all"],
                        "description": "Default pending."},
                }),
                &[],
            ),
            read_only: true,
            destructive: false,
        },
        Tool {
            name: "answer_approval",
            scope: Scope::Control,
            description: "Answer an agent's request to run a tool: allow_once, allow_always \
                (this tool for the rest of the task), deny (the agent is told, with the reason) \
                or cancel (ends the agent's task).",
            input: object(
                json!({
                    "approval_id": {"type": "string"},
                    "decision": {"type": "string",
                        "enum": ["allow_once", "allow_always", "deny", "cancel"]},
                    "reason": {"type": "string"},
                }),
                &["approval_id", "decision"],
            ),
            read_only: false,
            destructive: false,
        },
        Tool {
            name: "start_agent",
            scope: Scope::Control,
            description: "Start a coding agent on the server: a model that reads, changes files \
                and runs commands in a workspace, step by step. Its risky tool calls wait for \
                approval (list_approvals, answer_approval). With wait=true waits for it (progress \
                per event) and returns its final message.",
            input: object(
                json!({
                    "prompt": {"type": "string", "minLength": 1, "description": "What to do."},
                    "workspace": {"type": "string", "description": "Directory on the server to \
                        work in (default: the server's)."},
                    "mode": {"type": "string", "enum": ["build", "plan", "explore"],
                        "description": "build changes files; plan and explore only read."},
                    "provider": {"type": "string"},
                    "model": {"type": "string"},
                    "max_steps": {"type": "integer", "minimum": 1},
                    "wait": {"type": "boolean"},
                    "wait_secs": wait_secs("the agent"),
                }),
                &["prompt"],
            ),
            read_only: false,
            destructive: false,
        },
        Tool {
            name: "chat",
            scope: Scope::Control,
            description: "Ask one of the server's language models and get its reply (progress: \
                the reply as it streams). list_models names the models.",
            input: object(
                json!({
                    "message": {"type": "string", "minLength": 1},
                    "conversation_id": {"type": "string", "description": "Continue this \
                        conversation (the model sees its earlier messages)."},
                    "provider": {"type": "string"},
                    "model": {"type": "string"},
                    "system": {"type": "string", "description": "A system prompt."},
                }),
                &["message"],
            ),
            read_only: false,
            destructive: false,
        },
        Tool {
            name: "run_code",
            scope: Scope::Control,
            description: "Run code in an interpreter session on the server (a Jupyter kernel, \
                Python by default) and get what it printed, its result and any error. A \
                session keeps its variables: pass the session_id an earlier answer gave to go \
                on in it; without one a new session starts.",
            input: object(
                json!({
                    "code": {"type": "string", "minLength": 1},
                    "session_id": {"type": "string", "description": "The session to run in \
                        (default: a new one)."},
                    "kernel": {"type": "string", "description": "The kernel of a new session \
                        (default: the server's, usually python3)."},
                    "timeout_secs": {"type": "number", "exclusiveMinimum": 0,
                        "description": "Interrupt the code after this many seconds."},
                    "wait_secs": {"type": "number", "exclusiveMinimum": 0,
                        "maximum": MAX_RUN_WAIT_SECS, "description": format!("Seconds to wait \
                        for it (default {DEFAULT_WAIT_SECS}); the answer then says it is \
                        still running.")},
                }),
                &["code"],
            ),
            read_only: false,
            destructive: false,
        },
        Tool {
            name: "list_models",
            scope: Scope::Read,
            description: "The language models the server's providers offer, for chat and \
                start_agent.",
            input: object(json!({}), &[]),
            read_only: true,
            destructive: false,
        },
        Tool {
            name: "render_diagram",
            scope: Scope::Read,
            description: "Render a diagram (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG; \
                the SVG comes back as an embedded resource.",
            input: object(
                json!({
                    "type": {"type": "string",
                        "enum": DiagramType::ALL.map(DiagramType::as_str)},
                    "source": {"type": "string", "minLength": 1},
                }),
                &["type", "source"],
            ),
            read_only: true,
            destructive: false,
        },
    ]
});

fn control_tool(name: &'static str, description: &'static str, destructive: bool) -> Tool {
    Tool {
        name,
        scope: Scope::Control,
        description,
        input: object(json!({"task_id": task_id()}), &["task_id"]),
        read_only: false,
        destructive,
    }
}

/// `tools/list`: the tools this scope may call.
pub(super) fn list(scope: Scope) -> Value {
    let tools: Vec<Value> = TOOLS
        .iter()
        .filter(|tool| tool.scope <= scope)
        .map(|tool| {
            json!({
                "name": tool.name,
                "description": tool.description,
                "inputSchema": tool.input,
                "annotations": {
                    "readOnlyHint": tool.read_only,
                    "destructiveHint": tool.destructive,
                    "idempotentHint": tool.read_only,
                    "openWorldHint": false,
                },
            })
        })
        .collect();
    json!({ "tools": tools })
}

/// A tool's answer.
fn success(structured: Value, text: String) -> Value {
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": false,
    })
}

/// A tool's answer that says what went wrong, for the model to act on.
pub(super) fn failure(text: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": text.into()}], "isError": true})
}

fn task_answer(task: &Task, text: String) -> Value {
    success(json!({ "task": task }), text)
}

/// An engine error as a model should read it.
fn engine_failure(error: EngineError) -> Value {
    failure(match &error {
        EngineError::NotFound(id) => {
            format!("task {id} not found; list_tasks shows the tasks there are")
        }
        _ => error.to_string(),
    })
}

/// `tools/call`.
pub(super) async fn call(
    state: &AppState,
    caller: &Caller,
    request: &Value,
    params: &Value,
) -> Reply {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Reply::Error(
            codes::INVALID_PARAMS,
            "tools/call needs the tool's `name`".into(),
        );
    };
    let Some(tool) = TOOLS.iter().find(|tool| tool.name == name) else {
        return Reply::Error(
            codes::INVALID_PARAMS,
            format!("there is no tool `{name}`; tools/list lists them"),
        );
    };
    let has = caller.principal.scope;
    if tool.scope > has {
        return Reply::Result(failure(format!(
            "{name} needs a key with scope {}; this key has scope {has} (make one with `victor \
             keys create --scope {}`)",
            tool.scope, tool.scope
        )));
    }
    let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
    let follow = |kind, task: &Task, until_ms, cancels_task| Follow {
        kind,
        task: task.id.clone(),
        request: request.clone(),
        progress: params.pointer("/_meta/progressToken").cloned(),
        until_ms,
        session: caller.session.clone(),
        cancels_task,
        seq: 0,
    };
    let outcome = match name {
        "start_task" => start_task(state, arguments, &follow).await,
        "show_task" => show_task(state, arguments).await,
        "list_tasks" => list_tasks(state, arguments).await,
        "read_log" => read_log(state, arguments).await,
        "wait_task" => wait_task(state, arguments, &follow).await,
        "cancel_task" | "pause_task" | "resume_task" => control(state, name, arguments).await,
        "send_input" => send_input(state, arguments).await,
        "list_approvals" => list_approvals(state, arguments).await,
        "answer_approval" => answer_approval(state, arguments).await,
        "start_agent" => start_agent(state, arguments, &follow).await,
        "chat" => chat(state, arguments, &follow).await,
        "list_models" => Ok(Called::Done(list_models(state).await)),
        "render_diagram" => render_diagram(state, arguments).await,
        "run_code" => run_code(state, caller, arguments).await,
        _ => Err(failure(format!("{name} is not implemented"))),
    };
    match outcome {
        Ok(Called::Done(result)) => Reply::Result(result),
        Ok(Called::Follow(follow)) => Reply::Follow(follow),
        Err(failed) => Reply::Result(failed),
    }
}

/// What a tool did: answered, or started following a task to its answer.
enum Called {
    Done(Value),
    Follow(Follow),
}

type Outcome = Result<Called, Value>;

/// Makes a [`Follow`] of the calling request: kind, task, deadline (Unix ms), cancels the task.
type MakeFollow<'a> = &'a (dyn Fn(FollowKind, &Task, Option<i64>, bool) -> Follow + Sync);

fn arguments<T: DeserializeOwned>(arguments: Value) -> Result<T, Value> {
    serde_json::from_value(arguments).map_err(|e| failure(format!("invalid arguments: {e}")))
}

/// The Unix ms at which a wait of `secs` (or the default) ends.
fn deadline(secs: Option<f64>) -> Result<i64, Value> {
    let secs = secs.unwrap_or(DEFAULT_WAIT_SECS);
    if !(secs > 0.0 && secs <= MAX_WAIT_SECS) {
        return Err(failure(format!(
            "a wait must be more than 0 and at most {MAX_WAIT_SECS} seconds"
        )));
    }
    Ok(jiff::Timestamp::now().as_millisecond() + (secs * 1000.0) as i64)
}

#[derive(Deserialize)]
struct StartTask {
    command: Command,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    timeout_secs: Option<f64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    wait_secs: Option<f64>,
}

async fn create(state: &AppState, name: Option<String>, spec: TaskSpec) -> Result<Task, Value> {
    let request = CreateTask {
        name,
        priority: 0,
        requires: Vec::new(),
        spec,
    };
    let (task, _) = state
        .engine
        .create(request, None)
        .await
        .map_err(engine_failure)?;
    Ok(task)
}

async fn start_task(state: &AppState, arguments_: Value, follow: MakeFollow<'_>) -> Outcome {
    let args: StartTask = arguments(arguments_)?;
    let until = args.wait.then(|| deadline(args.wait_secs)).transpose()?;
    let spec = ExecSpec {
        cwd: args.cwd,
        env: args.env,
        timeout_secs: args.timeout_secs,
        stdin: args.stdin,
        ..ExecSpec::new(args.command)
    };
    let task = create(state, args.name, spec.into()).await?;
    if args.wait {
        return Ok(Called::Follow(follow(FollowKind::Task, &task, until, true)));
    }
    let text = format!(
        "started task {}: {} ({}); follow it with wait_task or read_log",
        task.id,
        task.spec.summary(),
        task.state
    );
    Ok(Called::Done(task_answer(&task, text)))
}

#[derive(Deserialize)]
struct TaskId {
    task_id: String,
}

async fn show_task(state: &AppState, arguments_: Value) -> Outcome {
    let TaskId { task_id } = arguments(arguments_)?;
    let task = state.engine.get(&task_id).await.map_err(engine_failure)?;
    let text = serde_json::to_string(&task).unwrap_or_default();
    Ok(Called::Done(task_answer(&task, text)))
}

#[derive(Deserialize)]
struct ListTasks {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_tasks(state: &AppState, arguments_: Value) -> Outcome {
    let args: ListTasks = arguments(arguments_)?;
    let states =
        super::tasks::parse_states(args.state.as_deref()).map_err(|e| failure(e.message))?;
    let limit = args.limit.unwrap_or(20).clamp(1, 100);
    let page = state
        .engine
        .list(states, None, limit, None)
        .await
        .map_err(engine_failure)?;
    let lines: Vec<String> = page
        .tasks
        .iter()
        .map(|task| format!("{} {} {}", task.id, task.state, task.spec.summary()))
        .collect();
    let text = if lines.is_empty() {
        "no tasks".to_string()
    } else {
        lines.join("\n")
    };
    Ok(Called::Done(success(json!({ "tasks": page.tasks }), text)))
}

#[derive(Deserialize)]
struct ReadLog {
    task_id: String,
    #[serde(flatten)]
    from: LogCursor,
    #[serde(default)]
    max_bytes: Option<usize>,
}

/// Where a read of a task's output starts: after the log event `after`, skipping the first
/// `offset` bytes of the next one's output (a chunk longer than one read is read in pieces).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
struct LogCursor {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    offset: usize,
}

impl std::fmt::Display for LogCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "after={}", self.after)?;
        if self.offset > 0 {
            write!(f, " offset={}", self.offset)?;
        }
        Ok(())
    }
}

/// The longest prefix of `text` within `budget` bytes: up to its last whole line when it has
/// one, else (`whole_lines` false) as much as fits on a character boundary, and at least one
/// character, so that a read always gets on.
fn prefix_within(text: &str, budget: usize, whole_lines: bool) -> &str {
    if text.len() <= budget {
        return text;
    }
    let mut end = budget;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind('\n') {
        Some(newline) => &text[..=newline],
        None if whole_lines => "",
        None => {
            let first = text.chars().next().map_or(0, char::len_utf8);
            &text[..end.max(first)]
        }
    }
}

/// Output of a task from `from`, up to `max_bytes` (whole lines where they fit): the text,
/// the cursor it reaches, and whether more is stored already.
async fn log_text(
    state: &AppState,
    task: &str,
    from: LogCursor,
    max_bytes: usize,
) -> Result<(String, LogCursor, bool), Value> {
    let store = state.engine.bus().store();
    let mut text = String::new();
    let mut cursor = from;
    loop {
        let range = EventRange::Task {
            id: task.to_string(),
            after: cursor.after,
        };
        let events = store
            .events_after(range, 500)
            .await
            .map_err(|e| engine_failure(e.into()))?;
        if events.is_empty() {
            return Ok((text, cursor, false));
        }
        for event in &events {
            if let Some(output) = event.output() {
                let rest = output.text.get(cursor.offset..).unwrap_or_default();
                let budget = max_bytes - text.len();
                let taken = prefix_within(rest, budget, !text.is_empty());
                text.push_str(taken);
                if taken.len() < rest.len() {
                    cursor.offset += taken.len();
                    return Ok((text, cursor, true));
                }
            }
            cursor = LogCursor {
                after: event.seq,
                offset: 0,
            };
        }
    }
}

async fn read_log(state: &AppState, arguments_: Value) -> Outcome {
    let args: ReadLog = arguments(arguments_)?;
    let max_bytes = args.max_bytes.unwrap_or(DEFAULT_LOG_BYTES);
    if !(1..=MAX_LOG_BYTES).contains(&max_bytes) {
        return Err(failure(format!(
            "max_bytes must be between 1 and {MAX_LOG_BYTES}"
        )));
    }
    let task = state
        .engine
        .get(&args.task_id)
        .await
        .map_err(engine_failure)?;
    if args.from.after > task.last_seq {
        return Err(failure(format!(
            "after={} is past the end of task {}'s log, which has reached {}",
            args.from.after, task.id, task.last_seq
        )));
    }
    let (text, next, more) = log_text(state, &task.id, args.from, max_bytes).await?;
    let status = if more {
        format!("more is there: call read_log with {next}")
    } else if task.state.is_final() {
        format!("the task is {}; this is the end of its log", task.state)
    } else {
        format!(
            "the task is {}; call again with {next} for what it prints next",
            task.state
        )
    };
    let structured = json!({
        "text": text,
        "next_after": next.after,
        "next_offset": next.offset,
        "more": more,
        "state": task.state,
    });
    Ok(Called::Done(success(
        structured,
        format!("{text}\n[{status}]"),
    )))
}

#[derive(Deserialize)]
struct WaitTask {
    task_id: String,
    #[serde(default)]
    timeout_secs: Option<f64>,
    #[serde(default)]
    after: Option<u64>,
}

async fn wait_task(state: &AppState, arguments_: Value, follow: MakeFollow<'_>) -> Outcome {
    let args: WaitTask = arguments(arguments_)?;
    let until = deadline(args.timeout_secs)?;
    let task = state
        .engine
        .get(&args.task_id)
        .await
        .map_err(engine_failure)?;
    // An agent's answer is its last message, a chat's its reply; other tasks' their output.
    let kind = match task.spec {
        TaskSpec::Agent(_) => FollowKind::Agent,
        TaskSpec::Chat(_) => FollowKind::Chat,
        _ => FollowKind::Task,
    };
    let mut follow = follow(kind, &task, Some(until), false);
    follow.seq = args.after.unwrap_or(task.last_seq).min(task.last_seq);
    Ok(Called::Follow(follow))
}

async fn control(state: &AppState, name: &str, arguments_: Value) -> Outcome {
    let TaskId { task_id } = arguments(arguments_)?;
    let engine = &state.engine;
    let task = match name {
        "cancel_task" => engine.cancel(&task_id).await,
        "pause_task" => engine.pause(&task_id).await,
        _ => engine.resume(&task_id).await,
    }
    .map_err(engine_failure)?;
    let text = format!("task {} is {}", task.id, task.state);
    Ok(Called::Done(task_answer(&task, text)))
}

#[derive(Deserialize)]
struct SendInput {
    task_id: String,
    text: String,
    #[serde(default)]
    eof: bool,
}

async fn send_input(state: &AppState, arguments_: Value) -> Outcome {
    let args: SendInput = arguments(arguments_)?;
    let bytes = args.text.len();
    let input = Input {
        text: args.text,
        eof: args.eof,
    };
    let task = state
        .engine
        .input(&args.task_id, input)
        .await
        .map_err(engine_failure)?;
    let text = format!("wrote {bytes} bytes to task {}", task.id);
    Ok(Called::Done(task_answer(&task, text)))
}

#[derive(Deserialize)]
struct ListApprovals {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

async fn list_approvals(state: &AppState, arguments_: Value) -> Outcome {
    let args: ListApprovals = arguments(arguments_)?;
    let status = match args.status.as_deref().unwrap_or("pending") {
        "all" => None,
        other => Some(
            serde_json::from_value::<ApprovalStatus>(json!(other))
                .map_err(|_| failure(format!("`{other}` is not an approval status")))?,
        ),
    };
    let approvals = state
        .engine
        .approvals(args.task_id, status)
        .await
        .map_err(engine_failure)?;
    let text = serde_json::to_string(&approvals).unwrap_or_default();
    Ok(Called::Done(success(
        json!({ "approvals": approvals }),
        text,
    )))
}

#[derive(Deserialize)]
struct AnswerApproval {
    approval_id: String,
    decision: Decision,
    #[serde(default)]
    reason: Option<String>,
}

async fn answer_approval(state: &AppState, arguments_: Value) -> Outcome {
    let args: AnswerApproval = arguments(arguments_)?;
    let answer = ApprovalAnswer {
        decision: args.decision,
        reason: args.reason,
    };
    let approval = state
        .engine
        .answer_approval(&args.approval_id, answer)
        .await
        .map_err(engine_failure)?;
    let text = format!("approval {} is {}", approval.id, approval.status.as_str());
    Ok(Called::Done(success(json!({ "approval": approval }), text)))
}

#[derive(Deserialize)]
struct StartAgent {
    prompt: String,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    mode: AgentMode,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_steps: Option<u32>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    wait_secs: Option<f64>,
}

async fn start_agent(state: &AppState, arguments_: Value, follow: MakeFollow<'_>) -> Outcome {
    let args: StartAgent = arguments(arguments_)?;
    let until = args.wait.then(|| deadline(args.wait_secs)).transpose()?;
    let Some(workspace) = args.workspace.or_else(|| state.engine.default_workspace()) else {
        return Err(failure(
            "name a workspace: the server has no default one (it runs agents only under its \
             --workspace-root directories)",
        ));
    };
    let spec = AgentSpec {
        prompt: args.prompt,
        workspace,
        mode: args.mode,
        provider: args.provider,
        model: args.model,
        max_steps: args.max_steps,
        ..AgentSpec::default()
    };
    let task = create(state, None, spec.into()).await?;
    if args.wait {
        return Ok(Called::Follow(follow(
            FollowKind::Agent,
            &task,
            until,
            true,
        )));
    }
    let text = format!(
        "started agent task {}; follow it with wait_task, answer its approvals with \
         list_approvals and answer_approval",
        task.id
    );
    Ok(Called::Done(task_answer(&task, text)))
}

#[derive(Deserialize)]
struct Chat {
    message: String,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system: Option<String>,
}

async fn chat(state: &AppState, arguments_: Value, follow: MakeFollow<'_>) -> Outcome {
    let args: Chat = arguments(arguments_)?;
    let spec = ChatSpec {
        conversation_id: args.conversation_id,
        messages: vec![ChatMessage::new(Role::User, args.message)],
        provider: args.provider,
        model: args.model,
        system: args.system,
        ..ChatSpec::default()
    };
    let task = create(state, None, spec.into()).await?;
    Ok(Called::Follow(follow(FollowKind::Chat, &task, None, true)))
}

async fn list_models(state: &AppState) -> Value {
    let models = state.engine.providers().models().await;
    let structured = serde_json::to_value(&models).unwrap_or_default();
    success(structured.clone(), structured.to_string())
}

#[derive(Deserialize)]
struct RenderDiagram {
    #[serde(rename = "type")]
    diagram_type: DiagramType,
    source: String,
}

async fn render_diagram(state: &AppState, arguments_: Value) -> Outcome {
    let args: RenderDiagram = arguments(arguments_)?;
    let request = RenderRequest {
        diagram_type: args.diagram_type,
        source: args.source,
        options: RenderOptions::default(),
    };
    let rendered = state
        .renderer
        .render(&request)
        .await
        .map_err(|e| failure(e.to_string()))?;
    let name = rendered.etag.trim_matches('"').to_string();
    Ok(Called::Done(json!({
        "content": [
            {"type": "text", "text": format!("rendered the {} diagram: {} bytes of SVG",
                request.diagram_type.as_str(), rendered.svg.len())},
            {"type": "resource", "resource": {
                "uri": format!("victor://render/{name}.svg"),
                "mimeType": "image/svg+xml",
                "text": rendered.svg.to_string(),
            }},
        ],
        "isError": false,
    })))
}

/// The progress message of one log event: its output whole (a chunk is at most 16 KiB), so
/// that following a task's progress is following its output; or what happened, in a line.
pub(super) fn event_line(event: &Event) -> String {
    if let Some(output) = event.output() {
        return output.text.trim_end_matches('\n').to_string();
    }
    let line = if let Some(state) = event.state() {
        match state.reason {
            Some(reason) => format!("[{}: {reason}]", state.state),
            None => format!("[{}]", state.state),
        }
    } else if let Some(ApprovalRequested { approval }) = event.decode() {
        format!(
            "[approval {} asked to run {}: answer_approval answers it]",
            approval.id, approval.tool
        )
    } else if let Some(call) = event.decode::<ToolCallEvent>() {
        format!("[calls {}]", call.name)
    } else if let Some(text) = event.data.get("text").and_then(Value::as_str) {
        text.to_string()
    } else {
        format!("[{}]", event.kind)
    };
    crate::proto::task::shortened(&line, MAX_LINE)
}

/// The answer of a followed call, from the task as it is now.
pub(super) async fn answer(state: &AppState, follow: &Follow) -> Value {
    let task = match state.engine.get(&follow.task).await {
        Ok(task) => task,
        Err(e) => return engine_failure(e),
    };
    if !task.state.is_final() {
        let text = format!(
            "task {} is still {} after the wait; wait_task (after={}) waits on, read_log reads \
             what it printed",
            task.id, task.state, follow.seq
        );
        return task_answer(&task, text);
    }
    let events = match last_events(state, &task).await {
        Ok(events) => events,
        Err(failed) => return failed,
    };
    let ended = ending(&task);
    match follow.kind {
        FollowKind::Task => {
            let tail = tail(&events);
            task_answer(&task, format!("{ended}\n--- end of its output ---\n{tail}"))
        }
        FollowKind::Chat => {
            let reply = events.iter().rev().find_map(|e| e.decode::<MessageData>());
            match reply {
                Some(reply) => success(
                    json!({"task": task, "reply": reply.message.content, "model": reply.model}),
                    reply.message.content,
                ),
                None => failure(format!("no reply: {ended}")),
            }
        }
        FollowKind::Agent => {
            let last = events
                .iter()
                .rev()
                .find_map(|e| e.decode::<AgentMessageData>())
                .map(|data| data.message.content)
                .unwrap_or_default();
            task_answer(&task, format!("{ended}\n{last}"))
        }
    }
}

/// How a finished task ended, in a sentence.
fn ending(task: &Task) -> String {
    let result = task.result.clone().unwrap_or_default();
    let mut text = format!("task {} {}", task.id, task.state);
    if let Some(code) = result.exit_code {
        text.push_str(&format!(" (exit code {code})"));
    }
    if let Some(signal) = result.signal {
        text.push_str(&format!(" (signal {signal})"));
    }
    if result.timed_out {
        text.push_str(" (timed out)");
    }
    if let Some(error) = result.error {
        text.push_str(&format!(": {error}"));
    }
    text
}

/// The task's newest events (enough for its answer).
async fn last_events(state: &AppState, task: &Task) -> Result<Vec<Event>, Value> {
    let range = EventRange::Task {
        id: task.id.clone(),
        after: task.last_seq.saturating_sub(200),
    };
    state
        .engine
        .bus()
        .store()
        .events_after(range, 200)
        .await
        .map_err(|e| engine_failure(e.into()))
}

/// The last [`TAIL_BYTES`] of output among `events`.
fn tail(events: &[Event]) -> String {
    let text: String = events
        .iter()
        .filter_map(Event::output)
        .map(|output| output.text)
        .collect();
    let mut start = text.len().saturating_sub(TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// A task log's resource URI.
pub(super) fn log_uri(task: &str) -> String {
    format!("victor://tasks/{task}/log")
}

/// The task a log resource URI (`params.uri`) names.
pub(super) fn log_uri_task(params: &Value) -> Result<String, String> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    uri.strip_prefix("victor://tasks/")
        .and_then(|rest| rest.strip_suffix("/log"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_string)
        .ok_or_else(|| format!("`{uri}` is not a task log (victor://tasks/{{id}}/log)"))
}

/// `resources/templates/list`.
pub(super) fn resource_templates() -> Value {
    json!({"resourceTemplates": [{
        "uriTemplate": "victor://tasks/{id}/log",
        "name": "task-log",
        "title": "A task's log",
        "description": "Everything the task printed so far (the first MiB; read_log reads on).",
        "mimeType": "text/plain",
    }]})
}

/// `resources/list`: the logs of the newest tasks.
pub(super) async fn list_resources(state: &AppState) -> Reply {
    let page = match state.engine.list(Vec::new(), None, 50, None).await {
        Ok(page) => page,
        Err(e) => return Reply::Error(codes::INTERNAL, e.to_string()),
    };
    let resources: Vec<Value> = page
        .tasks
        .iter()
        .map(|task| {
            json!({
                "uri": log_uri(&task.id),
                "name": format!("task {} log", task.id),
                "title": task.spec.summary(),
                "description": format!("{} task, {}", task.spec.kind(), task.state),
                "mimeType": "text/plain",
            })
        })
        .collect();
    Reply::Result(json!({ "resources": resources }))
}

/// `resources/read` of a task's log.
pub(super) async fn read_resource(state: &AppState, params: &Value) -> Reply {
    /// The resource does not exist (the specification's code).
    const NOT_FOUND: i64 = -32002;
    let task = match log_uri_task(params) {
        Ok(task) => task,
        Err(message) => return Reply::Error(NOT_FOUND, message),
    };
    if let Err(e) = state.engine.get(&task).await {
        return Reply::Error(NOT_FOUND, e.to_string());
    }
    match log_text(state, &task, LogCursor::default(), RESOURCE_BYTES).await {
        Ok((mut text, next, more)) => {
            if more {
                text.push_str(&format!(
                    "\n[the log goes on: read_log with {next} reads the rest]"
                ));
            }
            Reply::Result(json!({"contents": [{
                "uri": log_uri(&task),
                "mimeType": "text/plain",
                "text": text,
            }]}))
        }
        Err(failed) => Reply::Error(codes::INTERNAL, failed.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_read_ends_at_a_line_and_always_gets_on() {
        assert_eq!(prefix_within("alpha\nbeta\n", 8, false), "alpha\n");
        assert_eq!(prefix_within("alpha\nbeta\n", 8, true), "alpha\n");
        assert_eq!(prefix_within("alphabet", 3, false), "alp");
        assert_eq!(prefix_within("alphabet", 3, true), "");
        assert_eq!(prefix_within("été", 1, false), "é");
        assert_eq!(prefix_within("short", 99, true), "short");
    }
}

#[derive(Deserialize)]
struct RunCode {
    code: String,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    kernel: Option<String>,
    #[serde(default)]
    timeout_secs: Option<f64>,
    #[serde(default)]
    wait_secs: Option<f64>,
}

/// Runs code in a session (a new one, for the caller, unless it names one) and answers with
/// the execution as far as it got within the wait.
async fn run_code(state: &AppState, caller: &Caller, arguments_: Value) -> Outcome {
    let args: RunCode = arguments(arguments_)?;
    let wait = args.wait_secs.unwrap_or(DEFAULT_WAIT_SECS);
    if !(wait > 0.0 && wait <= MAX_RUN_WAIT_SECS) {
        return Err(failure(format!(
            "wait_secs must be more than 0 and at most {MAX_RUN_WAIT_SECS}"
        )));
    }
    let session = match args.session_id {
        Some(id) => id,
        None => {
            let spec = SessionSpec {
                kernel: args.kernel,
                client: Some(caller.principal.holder.clone()),
                ..SessionSpec::default()
            };
            create(state, None, TaskSpec::Session(spec)).await?.id
        }
    };
    let request = ExecuteRequest {
        timeout_secs: args.timeout_secs,
        // Nobody could answer its input() through this tool.
        allow_stdin: false,
        ..ExecuteRequest::new(args.code)
    };
    let queued = state
        .engine
        .execute(&session, request)
        .await
        .map_err(engine_failure)?;
    let execution = state
        .engine
        .execution(&session, &queued.id, Duration::from_secs_f64(wait))
        .await
        .map_err(engine_failure)?;
    let text = execution_text(&execution);
    let structured = json!({"session_id": session, "execution": execution});
    let answer = if execution.status == ExecutionStatus::Error {
        json!({"content": [{"type": "text", "text": text}], "structuredContent": structured,
            "isError": true})
    } else {
        success(structured, text)
    };
    Ok(Called::Done(answer))
}

/// An execution as a model reads it: status, output, result, error, and where to go on.
fn execution_text(execution: &Execution) -> String {
    let status = serde_json::to_value(execution.status).unwrap_or_default();
    let mut text = format!(
        "session {}, execution {}: {}\n",
        execution.session_id,
        execution.id,
        status.as_str().unwrap_or_default()
    );
    let plain = |bundle: &crate::proto::MimeBundle| {
        bundle
            .get("text/plain")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut section = |name: &str, body: &str| {
        if !body.is_empty() {
            text.push_str(&format!("{name}:\n{}\n", body.trim_end()));
        }
    };
    section("stdout", &execution.stdout);
    section("stderr", &execution.stderr);
    for display in &execution.displays {
        section(
            "display",
            &plain(display).unwrap_or_else(|| "(not text)".into()),
        );
    }
    if let Some(result) = &execution.result {
        section(
            "result",
            &plain(result).unwrap_or_else(|| "(not text)".into()),
        );
    }
    if let Some(error) = &execution.error {
        section("error", &format!("{}: {}", error.name, error.value));
    }
    text
}
