//! Interpreter sessions: a Jupyter kernel kept running as a task of kind `session`, the code
//! clients run in it (executions, queued and run in order), what a client asks of a session,
//! and the events its log holds. The output of an execution, its rich displays, its result,
//! its error and its requests for input are events like any other: stored first, then handed
//! out, so a client that comes back later reads them from the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::event::{Event, EventData, OutputStream};
use super::task::KindSpec;

/// Event types a session writes to its task's log, besides its `state` changes (and `output`
/// for what the kernel process itself prints outside any execution).
pub mod session_types {
    /// An execution joined the session's queue; data is [`super::ExecutionQueued`].
    pub const EXECUTION_QUEUED: &str = "execution.queued";
    /// The kernel began to run it; data is [`super::ExecutionStarted`].
    pub const EXECUTION_STARTED: &str = "execution.started";
    /// Text it printed; data is [`super::ExecutionOutput`].
    pub const EXECUTION_OUTPUT: &str = "execution.output";
    /// A rich display (an image, HTML, ...); data is [`super::ExecutionDisplay`].
    pub const EXECUTION_DISPLAY: &str = "execution.display";
    /// The code asked to clear its output; data is [`super::ExecutionCleared`].
    pub const EXECUTION_CLEARED: &str = "execution.cleared";
    /// The value of its last expression; data is [`super::ExecutionResult`].
    pub const EXECUTION_RESULT: &str = "execution.result";
    /// It raised; data is [`super::ExecutionError`].
    pub const EXECUTION_ERROR: &str = "execution.error";
    /// It waits for a line of input (`input()`); data is [`super::InputRequested`].
    pub const INPUT_REQUESTED: &str = "execution.input_requested";
    /// Someone answered; data is [`super::InputAnswered`].
    pub const INPUT_ANSWERED: &str = "execution.input_answered";
    /// It ended; data is [`super::ExecutionFinished`]. Its last event.
    pub const EXECUTION_FINISHED: &str = "execution.finished";
    /// The session went busy or idle; data is [`super::SessionStatus`].
    pub const SESSION_STATUS: &str = "session.status";
    /// A kernel is ready (at the start, and after each restart); data is [`super::KernelReady`].
    pub const SESSION_READY: &str = "session.ready";
    /// The kernel is being replaced, and its variables are gone; data is
    /// [`super::SessionRestarting`].
    pub const SESSION_RESTARTING: &str = "session.restarting";
    /// The variables were saved; data is [`super::CheckpointSaved`].
    pub const CHECKPOINT_SAVED: &str = "session.checkpoint";
    /// The variables were put back from a checkpoint; data is [`super::Restored`].
    pub const RESTORED: &str = "session.restored";
}

/// The kernel a session runs when it names none.
pub const DEFAULT_KERNEL: &str = "python3";

/// A task of kind `session`: a kernel of `kernel`, kept running for the executions clients
/// send it, until it is closed, cancelled, or unused for its idle timeout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionSpec {
    /// The Jupyter kernel, by the name `jupyter kernelspec list` shows (`python3`, `ir`,
    /// `rust`, `deno`...); the server's default (`--default-kernel`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, pattern = "^[^\\u0000/]+$")]
    pub kernel: Option<String>,
    /// Who the session is for: seed 003's `client-id`, or the caller's key when it says
    /// nothing. A client's sessions count against `--max-kernels-per-client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255, pattern = "^[^\\u0000]*$")]
    pub client: Option<String>,
    /// The kernel's working directory on the server; the server's default (`--default-cwd`)
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Added to (and overriding) the kernel's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = super::schema::environment)]
    pub env: BTreeMap<String, String>,
    /// Seconds without an execution or a request before the session is closed; 0 keeps it
    /// for ever. The server's default (`--kernel-idle-secs`, an hour) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, exclusive_maximum = 1e9)]
    pub idle_timeout_secs: Option<f64>,
    /// Output bytes kept for the whole session: at most the server's `--max-output-bytes`,
    /// which is also the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 18_446_744_073_709_551_615_u64)]
    pub max_output_bytes: Option<u64>,
}

impl SessionSpec {
    /// The kernel it asks for, or the default one.
    pub fn kernel_name(&self) -> &str {
        self.kernel.as_deref().unwrap_or(DEFAULT_KERNEL)
    }
}

impl KindSpec for SessionSpec {
    fn summary(&self) -> String {
        match &self.client {
            Some(client) => format!("session {} for {client}", self.kernel_name()),
            None => format!("session {}", self.kernel_name()),
        }
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![("kernel", self.kernel_name().to_string())];
        if let Some(client) = &self.client {
            lines.push(("client", client.clone()));
        }
        if let Some(cwd) = &self.cwd {
            lines.push(("cwd", cwd.clone()));
        }
        if let Some(secs) = self.idle_timeout_secs {
            let idle = if secs == 0.0 {
                "never closed".to_string()
            } else {
                format!("closed after {secs}s unused")
            };
            lines.push(("idle", idle));
        }
        lines
    }
}

/// What happens to the variables when an execution fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionPolicy {
    /// Whatever the code changed stays, as in any REPL.
    #[default]
    CommitAlways,
    /// When the code raises (or is interrupted), the variables are put back as they were
    /// before it ran. Python kernels only.
    RollbackOnFailure,
    /// The variables are put back after the code ran, whatever happened: a dry run. Python
    /// kernels only.
    RollbackAlways,
}

impl TransactionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionPolicy::CommitAlways => "commit_always",
            TransactionPolicy::RollbackOnFailure => "rollback_on_failure",
            TransactionPolicy::RollbackAlways => "rollback_always",
        }
    }
}

/// Body of `POST /api/v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSession {
    /// For people: at most 200 characters, no NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub spec: SessionSpec,
}

/// Body of `POST /api/v1/sessions/{id}/executions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecuteRequest {
    /// The code, in the kernel's language.
    pub code: String,
    /// The execution's id, unique in the session; one is made when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    pub id: Option<String>,
    #[serde(default)]
    pub transaction_policy: TransactionPolicy,
    /// Seconds the code may run before it is interrupted (`timed_out`); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1e9)]
    pub timeout_secs: Option<f64>,
    /// Whether the code may ask for input (`input()`); without it, asking raises at once.
    #[serde(default = "yes")]
    pub allow_stdin: bool,
}

fn yes() -> bool {
    true
}

impl ExecuteRequest {
    /// `code` with every setting at its default.
    pub fn new(code: impl Into<String>) -> ExecuteRequest {
        ExecuteRequest {
            code: code.into(),
            id: None,
            transaction_policy: TransactionPolicy::CommitAlways,
            timeout_secs: None,
            allow_stdin: true,
        }
    }
}

/// Body of `POST /api/v1/sessions/{id}/input`: the line an execution waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InputAnswer {
    /// The line, without its newline.
    pub value: String,
    /// The request answered (its `input_id`); the one pending when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_id: Option<String>,
}

/// Body of `POST /api/v1/sessions/{id}/checkpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointRequest {
    /// For people: at most 200 characters, no NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: Option<String>,
}

/// Body of `POST /api/v1/sessions/{id}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestoreRequest {
    /// A checkpoint of this session or of any other, also one saved before the server
    /// restarted.
    pub checkpoint_id: String,
}

/// The answer of `POST /api/v1/sessions/{id}/interrupt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Interrupted {
    /// The execution that was running and is being stopped; absent when none was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Executions that were waiting in the queue, dropped (`aborted`).
    #[serde(default)]
    pub aborted: Vec<String>,
}

/// A kernel installed on the server, as `GET /api/v1/kernels` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KernelSpecInfo {
    pub name: String,
    pub display_name: String,
    pub language: String,
    /// Kernels of it started ahead and waiting in the warm pool (`--session-warm-pool`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warm: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

/// Where an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Waiting for the executions before it.
    Queued,
    Running,
    /// It ran to its end.
    Ok,
    /// It raised.
    Error,
    /// Someone interrupted it.
    Interrupted,
    /// It ran past its `timeout_secs` and was interrupted.
    TimedOut,
    /// It never ran: interrupted while queued, the kernel restarted, or the session ended.
    Aborted,
    /// The kernel died while it ran.
    KernelDied,
}

impl ExecutionStatus {
    /// The execution will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Ok => "ok",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Interrupted => "interrupted",
            ExecutionStatus::TimedOut => "timed_out",
            ExecutionStatus::Aborted => "aborted",
            ExecutionStatus::KernelDied => "kernel_died",
        }
    }
}

/// A MIME bundle: one representation of the same thing per MIME type (`text/plain`,
/// `image/png` as base64, `image/svg+xml`, `text/html`, `application/json`...).
pub type MimeBundle = BTreeMap<String, serde_json::Value>;

/// An execution as its events tell it, folded by [`Execution::apply`]: what the native API
/// answers, and what clients show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    pub id: String,
    pub session_id: String,
    pub status: ExecutionStatus,
    /// The seq of its `execution.queued` event: its events follow it in the session's log.
    pub seq: u64,
    pub code: String,
    /// The kernel's count of it (`In [3]`), once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    /// What it printed to stdout and stderr.
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    /// Its rich displays, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<BTreeMap<String, Object>>)]
    pub displays: Vec<MimeBundle>,
    /// The value of its last expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    pub result: Option<MimeBundle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RaisedError>,
    /// The request for input it waits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_request: Option<InputRequested>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The variables were put back after it (its transaction policy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
}

/// An error an execution raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RaisedError {
    /// The exception's type: `ZeroDivisionError`, `KeyboardInterrupt`...
    pub name: String,
    pub value: String,
    /// As the kernel formats it (Python's has terminal colours).
    #[serde(default)]
    pub traceback: Vec<String>,
}

impl Execution {
    /// An execution as its `execution.queued` event starts it.
    pub fn queued(session_id: &str, seq: u64, queued: ExecutionQueued) -> Execution {
        Execution {
            id: queued.execution_id,
            session_id: session_id.to_string(),
            status: ExecutionStatus::Queued,
            seq,
            code: queued.code,
            execution_count: None,
            stdout: String::new(),
            stderr: String::new(),
            displays: Vec::new(),
            result: None,
            error: None,
            input_request: None,
            duration_ms: None,
            rolled_back: false,
        }
    }

    /// Takes in one event of the session's log: those of this execution change it, others
    /// pass. Returns whether the execution has ended with it.
    pub fn apply(&mut self, event: &Event) -> bool {
        let ours = |id: &str| id == self.id;
        if let Some(output) = event.decode::<ExecutionOutput>() {
            if ours(&output.execution_id) {
                match output.stream {
                    OutputStream::Stdout => self.stdout.push_str(&output.text),
                    OutputStream::Stderr => self.stderr.push_str(&output.text),
                }
            }
        } else if let Some(started) = event.decode::<ExecutionStarted>() {
            if ours(&started.execution_id) {
                self.status = ExecutionStatus::Running;
            }
        } else if let Some(display) = event.decode::<ExecutionDisplay>() {
            if ours(&display.execution_id) {
                self.displays.push(display.data);
            }
        } else if let Some(cleared) = event.decode::<ExecutionCleared>() {
            if ours(&cleared.execution_id) {
                self.stdout.clear();
                self.stderr.clear();
                self.displays.clear();
            }
        } else if let Some(result) = event.decode::<ExecutionResult>() {
            if ours(&result.execution_id) {
                self.execution_count = result.execution_count.or(self.execution_count);
                self.result = Some(result.data);
            }
        } else if let Some(error) = event.decode::<ExecutionError>() {
            if ours(&error.execution_id) {
                self.error = Some(RaisedError {
                    name: error.name,
                    value: error.value,
                    traceback: error.traceback,
                });
            }
        } else if let Some(request) = event.decode::<InputRequested>() {
            if ours(&request.execution_id) {
                self.input_request = Some(request);
            }
        } else if let Some(answered) = event.decode::<InputAnswered>() {
            if ours(&answered.execution_id) {
                self.input_request = None;
            }
        } else if let Some(finished) = event.decode::<ExecutionFinished>()
            && ours(&finished.execution_id)
        {
            self.status = finished.status;
            self.execution_count = finished.execution_count.or(self.execution_count);
            self.duration_ms = Some(finished.duration_ms);
            self.rolled_back = finished.rolled_back;
            self.input_request = None;
            return true;
        }
        false
    }
}

/// Data of an `execution.queued` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionQueued {
    pub execution_id: String,
    pub code: String,
    #[serde(default)]
    pub transaction_policy: TransactionPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
}

impl EventData for ExecutionQueued {
    const TYPE: &'static str = session_types::EXECUTION_QUEUED;
}

/// Data of an `execution.started` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionStarted {
    pub execution_id: String,
}

impl EventData for ExecutionStarted {
    const TYPE: &'static str = session_types::EXECUTION_STARTED;
}

/// Data of an `execution.output` event: printed text, in order (concatenating `text` of one
/// stream restores it; a long stretch is split across events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionOutput {
    pub execution_id: String,
    pub stream: OutputStream,
    pub text: String,
}

impl EventData for ExecutionOutput {
    const TYPE: &'static str = session_types::EXECUTION_OUTPUT;
}

/// Data of an `execution.display` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionDisplay {
    pub execution_id: String,
    /// The representations, by MIME type (binary ones, such as `image/png`, in base64).
    #[schema(value_type = BTreeMap<String, Object>)]
    pub data: MimeBundle,
    /// What the kernel says of them (an image's `width` and `height`...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
    /// A display that later ones may replace (`update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_id: Option<String>,
    /// It replaces the earlier display with the same `display_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub update: bool,
}

impl EventData for ExecutionDisplay {
    const TYPE: &'static str = session_types::EXECUTION_DISPLAY;
}

/// Data of an `execution.cleared` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionCleared {
    pub execution_id: String,
    /// Clear only when the next output comes (for smooth animation).
    #[serde(default)]
    pub wait: bool,
}

impl EventData for ExecutionCleared {
    const TYPE: &'static str = session_types::EXECUTION_CLEARED;
}

/// Data of an `execution.result` event: the value of the code's last expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionResult {
    pub execution_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    #[schema(value_type = BTreeMap<String, Object>)]
    pub data: MimeBundle,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

impl EventData for ExecutionResult {
    const TYPE: &'static str = session_types::EXECUTION_RESULT;
}

/// Data of an `execution.error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionError {
    pub execution_id: String,
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub traceback: Vec<String>,
}

impl EventData for ExecutionError {
    const TYPE: &'static str = session_types::EXECUTION_ERROR;
}

/// Data of an `execution.input_requested` event: the code waits for a line, which any client
/// may send (`POST /api/v1/sessions/{id}/input`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InputRequested {
    pub execution_id: String,
    pub input_id: String,
    pub prompt: String,
    /// Typing should not be shown (`getpass`); the answer is not logged.
    #[serde(default)]
    pub password: bool,
}

impl EventData for InputRequested {
    const TYPE: &'static str = session_types::INPUT_REQUESTED;
}

/// Data of an `execution.input_answered` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InputAnswered {
    pub execution_id: String,
    pub input_id: String,
    /// The line sent; absent for a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl EventData for InputAnswered {
    const TYPE: &'static str = session_types::INPUT_ANSWERED;
}

/// Data of an `execution.finished` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionFinished {
    pub execution_id: String,
    pub status: ExecutionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<u64>,
    /// From when the kernel began to run it (0 for one that never ran).
    pub duration_ms: u64,
    /// The variables were put back as they were before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
}

impl EventData for ExecutionFinished {
    const TYPE: &'static str = session_types::EXECUTION_FINISHED;
}

/// Whether a session is running code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Idle,
    Busy,
}

/// Data of a `session.status` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionStatus {
    pub state: SessionState,
}

impl EventData for SessionStatus {
    const TYPE: &'static str = session_types::SESSION_STATUS;
}

/// Data of a `session.ready` event: the kernel that now runs the session's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KernelReady {
    /// The kernelspec's name.
    pub kernel: String,
    /// `python`, `R`, `rust`...
    pub language: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language_version: String,
    /// The kernel's own name (`ipython`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub implementation: String,
    pub pid: u32,
    /// Taken from the warm pool, started before the session was asked for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
    /// Milliseconds from the request to a kernel ready for code.
    pub startup_ms: u64,
}

impl EventData for KernelReady {
    const TYPE: &'static str = session_types::SESSION_READY;
}

/// Why a session's kernel is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// Someone asked (`restart`).
    Requested,
    /// The kernel exited by itself.
    KernelDied,
    /// An interrupt did not stop the running code within the grace period.
    InterruptFailed,
}

/// Data of a `session.restarting` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionRestarting {
    pub reason: RestartReason,
    /// The old kernel's exit code, when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the old kernel, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl EventData for SessionRestarting {
    const TYPE: &'static str = session_types::SESSION_RESTARTING;
}

/// A variable a checkpoint could not save, or a restore could not bring back, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedVariable {
    pub name: String,
    /// The exception that stopped it, as Python names it.
    pub reason: String,
}

/// A session's variables saved in the server's data dir: restorable into the same session or
/// another, also after the server restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionCheckpoint {
    pub id: String,
    /// The session it was taken from.
    pub session_id: String,
    /// The client of that session (seed 003's restore reaches its own client's only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kernel: String,
    /// `dill` when the kernel had it, else `pickle` (which keeps functions and classes
    /// defined in the session by name only, so they do not come back in another kernel).
    pub serializer: String,
    /// The variables saved, modules among them (as the module they name).
    pub saved: Vec<String>,
    /// The variables that could not be saved.
    #[serde(default)]
    pub skipped: Vec<SkippedVariable>,
    pub size_bytes: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: jiff::Timestamp,
}

/// Data of a `session.checkpoint` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointSaved {
    pub checkpoint: SessionCheckpoint,
}

impl EventData for CheckpointSaved {
    const TYPE: &'static str = session_types::CHECKPOINT_SAVED;
}

/// The answer of a restore, and the data of the `session.restored` event: the variables are
/// now the checkpoint's (those the session had before are gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Restored {
    pub checkpoint_id: String,
    pub restored: Vec<String>,
    /// The variables the checkpoint holds that could not be brought back.
    #[serde(default)]
    pub failed: Vec<SkippedVariable>,
}

impl EventData for Restored {
    const TYPE: &'static str = session_types::RESTORED;
}

/// A kernel's traceback as plain text: its lines joined, without the terminal colour codes
/// kernels put in them.
pub fn plain_traceback(traceback: &[String]) -> String {
    let text = traceback.join("\n");
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracebacks_lose_their_colours() {
        let coloured = [
            "\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division".to_string(),
            "by zero".into(),
        ];
        assert_eq!(
            plain_traceback(&coloured),
            "ZeroDivisionError: division\nby zero"
        );
    }

    fn event(seq: u64, data: &impl EventData) -> Event {
        let (kind, data) = data.encode().unwrap();
        Event {
            task_id: "s".into(),
            seq,
            pos: seq,
            ts: jiff::Timestamp::now(),
            kind: kind.into(),
            data,
        }
    }

    #[test]
    fn an_execution_folds_from_its_events_and_ignores_the_others() {
        let queued = ExecutionQueued {
            execution_id: "e1".into(),
            code: "print(1); 2".into(),
            transaction_policy: TransactionPolicy::CommitAlways,
            timeout_secs: None,
        };
        let mut execution = Execution::queued("s", 4, queued);
        let output = |id: &str, text: &str| ExecutionOutput {
            execution_id: id.into(),
            stream: OutputStream::Stdout,
            text: text.into(),
        };
        let events = [
            event(
                5,
                &ExecutionStarted {
                    execution_id: "e1".into(),
                },
            ),
            event(6, &output("e1", "1\n")),
            event(7, &output("other", "not ours\n")),
            event(
                8,
                &ExecutionResult {
                    execution_id: "e1".into(),
                    execution_count: Some(3),
                    data: [("text/plain".to_string(), "2".into())].into(),
                    metadata: serde_json::Value::Null,
                },
            ),
        ];
        for event in &events {
            assert!(!execution.apply(event));
        }
        assert_eq!(execution.status, ExecutionStatus::Running);
        let finished = ExecutionFinished {
            execution_id: "e1".into(),
            status: ExecutionStatus::Ok,
            execution_count: Some(3),
            duration_ms: 2,
            rolled_back: false,
        };
        assert!(execution.apply(&event(9, &finished)));
        assert_eq!(execution.stdout, "1\n");
        assert_eq!(execution.status, ExecutionStatus::Ok);
        assert_eq!(execution.execution_count, Some(3));
        assert_eq!(execution.result.unwrap()["text/plain"], "2");
    }
}
