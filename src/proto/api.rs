//! Request and response bodies of the native API (`/api/v1`), and its WebSocket messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::task::{Task, TaskSpec, TaskState};

/// Version of the native protocol; raised only when a change is not backwards compatible.
pub const PROTOCOL_VERSION: u32 = 1;

/// Response header of the all-tasks stream: the `pos` it starts after, so that a client that
/// has seen no event yet can still resume without a gap.
pub const START_POS_HEADER: &str = "victor-start-pos";

/// Body of `POST /api/v1/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateTask {
    /// For people: at most 200 characters, no NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 200, pattern = "^[^\\u0000]*$")]
    pub name: Option<String>,
    #[serde(default)]
    pub priority: i32,
    pub spec: TaskSpec,
    /// Labels a node must have (`victor serve --label`) to run the task: 1 to 64 letters,
    /// digits, `-`, `_`, `.` or `:` each, at most 16. Nodes without them leave it queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub requires: Vec<String>,
}

/// A page of `GET /api/v1/tasks`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Body of `POST /api/v1/tasks/{id}/input`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Input {
    /// Written to the process's stdin as is (add the newline yourself).
    #[serde(default)]
    pub text: String,
    /// Close stdin after writing `text`, so the process sees end of file.
    #[serde(default)]
    pub eof: bool,
}

/// `GET /health`: answered without auth, for load balancers and "is it up?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `healthy`, or `degraded` (with status 503) while the server cannot reach its store
    /// (a Redis it shares with other nodes): it retries, and streams resume once it can.
    pub status: String,
    pub version: String,
    pub protocol: u32,
    /// Why the server is degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub version: String,
    pub protocol: u32,
    pub uptime_secs: u64,
    /// Open event streams (SSE and WebSocket).
    pub connected_clients: u64,
    /// Number of tasks in each state; every state is present.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub tasks: BTreeMap<TaskState, u64>,
    pub max_concurrent: usize,
    /// The node that answered: the server's id in the store it shares with other nodes.
    #[serde(default)]
    pub node: String,
    /// The nodes that keep a lease in the store, this one included, live ones first.
    #[serde(default)]
    pub nodes: Vec<NodeInfo>,
}

/// A server sharing the store, as `/api/v1/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub id: String,
    /// What it advertises (`victor serve --label`): tasks that require them run only there.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Its `--max-concurrent`.
    pub max_concurrent: usize,
    /// Its tasks running or paused now.
    pub running: u64,
    /// Its lease is current; a node whose lease ran out counts as gone and its tasks were
    /// (or are about to be) marked `interrupted`.
    pub alive: bool,
}

/// The one error shape of the native API: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// Stable and machine-readable: `bad_request`, `unauthorized`, `not_found`, `conflict`,
    /// `payload_too_large`, `invalid`, `overloaded`, `internal`...
    pub code: String,
    /// For people: what went wrong and how to fix it.
    pub message: String,
    /// The task's current state, on a `conflict` about a task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
}

/// A message from a client on `/api/v1/ws`. Its `id`, any JSON value (a string, a number...),
/// is echoed as it came in the reply, errors included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsRequest {
    /// Stream the events of one task (`task_id`) or of all tasks (no `task_id`) after a position:
    /// a seq for one task (default 0: its whole log), a `pos` for all tasks (default: from now).
    Subscribe {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        task_id: Option<String>,
        #[serde(default)]
        after: Option<u64>,
        /// Only these event types (all when absent).
        #[serde(default)]
        types: Option<Vec<String>>,
    },
    Unsubscribe {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        task_id: Option<String>,
    },
    Cancel {
        #[serde(default)]
        id: Option<serde_json::Value>,
        task_id: String,
    },
    Pause {
        #[serde(default)]
        id: Option<serde_json::Value>,
        task_id: String,
    },
    Resume {
        #[serde(default)]
        id: Option<serde_json::Value>,
        task_id: String,
    },
    Input {
        #[serde(default)]
        id: Option<serde_json::Value>,
        task_id: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        eof: bool,
    },
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    /// The first message on a socket opened without credentials (for clients that cannot set
    /// headers): an API key or a session token. Anything else first closes the socket (4401).
    Auth {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        session_token: Option<String>,
    },
}

/// The server's answer to a [`WsRequest`]: `{"type":"reply","id","ok",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WsReply {
    /// Always `reply`, so a reply is told apart from the events on the same socket.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's `id`, as it came; absent when the request had none, or was not a JSON
    /// object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<serde_json::Value>,
    pub ok: bool,
    /// The task after a control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// On a subscription: the seq (one task) or pos (all tasks) it starts after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
}

impl WsReply {
    pub const KIND: &'static str = "reply";

    pub fn ok(id: Option<serde_json::Value>, task: Option<Task>) -> WsReply {
        WsReply {
            kind: Self::KIND.to_string(),
            id,
            ok: true,
            task,
            error: None,
            cursor: None,
        }
    }

    pub fn error(id: Option<serde_json::Value>, error: ErrorInfo) -> WsReply {
        WsReply {
            kind: Self::KIND.to_string(),
            id,
            ok: false,
            task: None,
            error: Some(error),
            cursor: None,
        }
    }
}
