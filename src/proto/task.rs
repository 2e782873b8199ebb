//! Tasks: what a client asks victor to run, and the record victor keeps of it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::agent::AgentSpec;
use super::chat::{ChatMessage, Role, ToolSpec};
use super::session::SessionSpec;

/// Where a task is in its life. `succeeded`, `failed`, `cancelled` and `interrupted` are final:
/// a task in one of them never changes again and its event log is complete.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Paused,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Interrupted,
    ];

    /// A final state: the task will produce no more events.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::Cancelled
                | TaskState::Interrupted
        )
    }

    /// The state occupies one of the server's concurrency slots.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Running | TaskState::Paused)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a state name that victor does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown task state `{0}` (expected one of queued, running, paused, succeeded, failed, cancelled, interrupted)"
)]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// What to run: an argument vector run directly, or a string run by `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// `["cargo", "test"]`: the program and its arguments, no shell involved.
    Argv(Vec<String>),
    /// `"cargo test 2>&1 | tail"`: run by `/bin/sh -c`.
    Shell(String),
}

impl utoipa::PartialSchema for Command {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::schema::command().into()
    }
}

impl ToSchema for Command {}

impl Command {
    /// The command as a person would type it, for tables and logs.
    pub fn display(&self) -> String {
        match self {
            Command::Shell(script) => script.clone(),
            Command::Argv(argv) => argv
                .iter()
                .map(|arg| {
                    if !arg.is_empty()
                        && arg
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                    {
                        arg.clone()
                    } else {
                        format!("'{}'", arg.replace('\'', r"'\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// A shell command task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecSpec {
    pub command: Command,
    /// Working directory on the server; the server's default (`--default-cwd`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Added to (and overriding) the server's environment: names without `=` or NUL, values
    /// without NUL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = super::schema::environment)]
    pub env: BTreeMap<String, String>,
    /// Seconds of running (paused time does not count) before the task is stopped and fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1e9)]
    pub timeout_secs: Option<f64>,
    /// Written to the process's standard input when it starts; stdin is then closed unless
    /// `keep_stdin_open` is set. Without it stdin stays open for `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_stdin_open: bool,
    /// Output bytes kept for this task: at most the server's `--max-output-bytes` (more is
    /// refused with 422), which is also the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 18_446_744_073_709_551_615_u64)]
    pub max_output_bytes: Option<u64>,
}

impl ExecSpec {
    /// `command` with every setting at the server's default.
    pub fn new(command: Command) -> ExecSpec {
        ExecSpec {
            command,
            cwd: None,
            env: BTreeMap::new(),
            timeout_secs: None,
            stdin: None,
            keep_stdin_open: false,
            max_output_bytes: None,
        }
    }
}

/// A chat turn: one model reply, streamed into the task's log. With a conversation, the model
/// sees its messages first, and the turn's messages and the reply are added to it when the
/// turn ends; without one, `messages` is the whole context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// The turn's messages: usually one user message.
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// The provider's name; the server's default when absent (filled in when the task is made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider's default model when absent (filled in when the task is made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sent before everything else; the conversation's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Tools the model may ask for; their calls come back as `chat.tool_call` events for the
    /// client to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u32)]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// What a kind's spec says about itself to people: every client that shows a task asks it
/// rather than matching on the kind.
pub trait KindSpec {
    /// A one-line summary: the command line of `exec`, the question of `chat`, the prompt of
    /// `agent`.
    fn summary(&self) -> String;

    /// The spec's fields as `task show` lists them, a label and a value a line, as written:
    /// whoever shows them shows each through [`one_line`](super::human::one_line).
    fn details(&self) -> Vec<(&'static str, String)>;
}

/// A kind's spec as one variant of [`TaskSpec`]; `task_kinds!` implements it.
pub trait SpecVariant: KindSpec + Into<TaskSpec> + Clone + Send + Sync + 'static {
    /// The kind's name: the `kind` of the spec's JSON.
    const KIND: &'static str;

    fn of(spec: &TaskSpec) -> Option<&Self>;

    fn of_mut(spec: &mut TaskSpec) -> Option<&mut Self>;
}

/// Declares [`TaskSpec`] from the kinds, one line each (`"name" => Variant(SpecType)`, the name
/// being the variant's in lower case, as its JSON says), with what ties each spec type to its
/// variant.
macro_rules! task_kinds {
    ($($name:literal => $variant:ident($spec:ty)),+ $(,)?) => {
        /// The kind of a task and what it needs to run. New kinds are new variants.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        pub enum TaskSpec {
            $($variant($spec),)+
        }

        impl TaskSpec {
            /// The name of every kind.
            pub const KINDS: &[&str] = &[$($name,)+];

            pub fn kind(&self) -> &'static str {
                match self {
                    $(TaskSpec::$variant(_) => $name,)+
                }
            }

            /// The spec of whichever kind this is.
            pub fn of_kind(&self) -> &dyn KindSpec {
                match self {
                    $(TaskSpec::$variant(spec) => spec,)+
                }
            }
        }

        $(
            impl SpecVariant for $spec {
                const KIND: &'static str = $name;

                #[allow(unreachable_patterns)]
                fn of(spec: &TaskSpec) -> Option<&Self> {
                    match spec {
                        TaskSpec::$variant(spec) => Some(spec),
                        _ => None,
                    }
                }

                #[allow(unreachable_patterns)]
                fn of_mut(spec: &mut TaskSpec) -> Option<&mut Self> {
                    match spec {
                        TaskSpec::$variant(spec) => Some(spec),
                        _ => None,
                    }
                }
            }

            impl From<$spec> for TaskSpec {
                fn from(spec: $spec) -> TaskSpec {
                    TaskSpec::$variant(spec)
                }
            }
        )+
    };
}

task_kinds! {
    "exec" => Exec(ExecSpec),
    "chat" => Chat(ChatSpec),
    "agent" => Agent(AgentSpec),
    "session" => Session(SessionSpec),
}

impl TaskSpec {
    /// A one-line summary for people: see [`KindSpec::summary`].
    pub fn summary(&self) -> String {
        self.of_kind().summary()
    }
}

impl KindSpec for ExecSpec {
    fn summary(&self) -> String {
        self.command.display()
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![("command", self.summary())];
        if let Some(cwd) = &self.cwd {
            lines.push(("cwd", cwd.clone()));
        }
        for (key, value) in &self.env {
            lines.push(("env", format!("{key}={value}")));
        }
        if let Some(timeout) = self.timeout_secs {
            lines.push(("timeout", format!("{timeout}s")));
        }
        lines
    }
}

impl KindSpec for ChatSpec {
    fn summary(&self) -> String {
        let asked = self
            .messages
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .map(|message| message.content.as_str())
            .unwrap_or_default();
        let line = asked.lines().find(|line| !line.trim().is_empty());
        format!("chat: {}", shortened(line.unwrap_or_default().trim(), 80))
    }

    fn details(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![("question", self.summary())];
        if let Some(conversation) = &self.conversation_id {
            lines.push(("conversation", conversation.clone()));
        }
        lines.push(("model", model_label(&self.provider, &self.model)));
        lines
    }
}

/// `provider/model`, each `default` when the server chooses.
pub(super) fn model_label(provider: &Option<String>, model: &Option<String>) -> String {
    let provider = provider.as_deref().unwrap_or("default");
    let model = model.as_deref().unwrap_or("default");
    format!("{provider}/{model}")
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
pub fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// How a finished task ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskResult {
    /// The process's exit code, when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The task ran past its `timeout_secs` and was stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Why the task could not run or was ended by victor (spawn failure, interruption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Processes the task left running after its main process had exited and its output
    /// had closed or gone quiet, which victor then terminated (SIGTERM, then SIGKILL after the
    /// grace period).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub leftover_processes: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A task as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub spec: TaskSpec,
    pub state: TaskState,
    /// Higher runs first among queued tasks; equal priorities run in the order they arrived.
    #[serde(default)]
    pub priority: i32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// The seq of the task's newest event: a client that has seen it is up to date.
    pub last_seq: u64,
    /// Labels a node must have to run the task (see `CreateTask`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// The node that took the task from the queue: the one that runs it, or ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why a queued task is still waiting (on `GET /api/v1/tasks/{id}`, for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_as_its_json_says() {
        let specs: Vec<TaskSpec> = vec![
            ExecSpec::new(Command::Shell("true".into())).into(),
            ChatSpec::default().into(),
            AgentSpec::default().into(),
            SessionSpec::default().into(),
        ];
        let names: Vec<&str> = specs.iter().map(TaskSpec::kind).collect();
        assert_eq!(names, TaskSpec::KINDS);
        for spec in &specs {
            let json = serde_json::to_value(spec).unwrap();
            assert_eq!(json["kind"], spec.kind());
        }
    }
}
