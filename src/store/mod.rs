//! Durable storage of tasks and their event logs, behind traits that any backend implements:
//! the embedded SQLite store ([`sqlite`]) and Redis ([`redis`]), which several nodes share.
//!
//! The store is the single place that assigns `seq` (per task, from 1, without gaps) and `pos`
//! (store-wide). It hands every committed event, whichever node committed it, to an
//! [`EventSink`] in commit order, after the commit, so that nothing reaches a subscriber that a
//! restart could lose.
//!
//! Each handle acts for one [`Node`]: the tasks it starts running are recorded as that node's,
//! and the node keeps a lease while it lives. Recovery after a crash takes over only the tasks of
//! nodes that are gone ([`TaskStore::orphaned_tasks`]), never those another live node runs.
//!
//! A store that several nodes share also carries what they tell each other ([`Cluster`]):
//! controls for the node that runs a task.
//!
//! A backend is a folder here with an `open` function, registered in `BACKENDS`, and passes the
//! conformance suite (`conformance.rs`) written once against these traits.

#[cfg(test)]
#[macro_use]
mod conformance;
mod node;
pub mod redis;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use crate::proto::{
    Approval, ApprovalStatus, Checkpoint, ConversationSummary, Event, NodeInfo, Scope,
    StoredMessage, Task, TaskResult, TaskState,
};

pub use node::{Advert, Node};

/// Errors of every backend alike: a backend converts its own errors at its edge, keeping their
/// message, so that nothing above the store depends on which backend runs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task {0} not found")]
    NotFound(String),
    #[error("conversation {0} not found")]
    ConversationNotFound(String),
    #[error("`{0}` is not a cursor this server gave out")]
    BadCursor(String),
    #[error("task {id} is {state}")]
    WrongState { id: String, state: TaskState },
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    /// Key names are unique across every node that shares the store.
    #[error("a key named `{name}` exists already (id {id})")]
    KeyNameTaken { name: String, id: String },
    /// Another node was asked and did not answer (it is gone, or the store is unreachable).
    #[error("node {node} did not answer: {message}")]
    NodeUnreachable { node: String, message: String },
    /// The backend failed (I/O, a lost connection, a constraint): its own message.
    #[error("database error: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
    #[error("cannot open the store at {path}: {message}")]
    Open { path: String, message: String },
    /// The `store` setting names no backend this victor has.
    #[error("{0}")]
    Setting(String),
}

/// The most event data one read returns (one event more can pass it), so that a reader far
/// behind catches up in steps of bounded memory.
pub const READ_BYTES: usize = 256 * 1024;

/// Where a store delivers its committed events: the bus. It receives every event committed
/// to the store, by this node or any other, once each, in commit order (rising `pos`), and only
/// once the event is durable. A backend that commits in-process calls it right after each
/// commit; one whose events are committed elsewhere follows the shared log and calls it as
/// they arrive.
pub trait EventSink: Send + Sync + 'static {
    fn committed(&self, events: &[Event]);
}

/// A task to insert, with the request fingerprint that makes `Idempotency-Key` safe to reuse.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task: Task,
    pub idempotency_key: Option<String>,
    /// Compared when the key is seen again: the same key with a different request is refused.
    pub request_fingerprint: String,
}

/// A state change, written together with the `state` event that announces it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub state: TaskState,
    /// Only allowed from these states; anything else is [`StoreError::WrongState`].
    pub from: &'static [TaskState],
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub result: Option<TaskResult>,
    /// The `state` event's data.
    pub data: serde_json::Value,
    /// Messages a finished chat turn adds to its conversation, in the same transaction as its
    /// final state: a reply is in the conversation exactly when its turn succeeded.
    pub messages: Option<ConversationAppend>,
}

/// Messages to add at the end of a conversation.
#[derive(Debug, Clone)]
pub struct ConversationAppend {
    pub conversation_id: String,
    pub messages: Vec<StoredMessage>,
}

/// Which conversations `list_conversations` returns: most recently updated first.
#[derive(Debug, Clone, Default)]
pub struct ConversationQuery {
    /// Only those of this channel (a compatibility surface's per-client conversation).
    pub channel: Option<String>,
    /// Conversations after this cursor (from a previous page).
    pub after: Option<String>,
    pub limit: usize,
}

/// An API key as kept: its SHA-256 (hex), never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub name: Option<String>,
    pub scope: Scope,
    pub hash: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A session, made by a `holder` (a key's id, or a tag for the server's admin key or its Unix
/// socket), kept so that its tokens survive a restart and die with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub id: String,
    pub holder: String,
    pub scope: Scope,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// Which tasks `list_tasks` returns.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Any of these states (all when empty).
    pub states: Vec<TaskState>,
    /// Only tasks of this kind (`exec`, `chat`, `agent`; all when absent).
    pub kind: Option<&'static str>,
    /// Tasks older than this cursor (from a previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

/// Which events `events_after` returns.
#[derive(Debug, Clone)]
pub enum EventRange {
    /// One task's events with `seq > after`, in seq order.
    Task { id: String, after: u64 },
    /// All events with `pos > after`, in pos order.
    All { after: u64 },
}

/// A running or paused task whose node is gone, for recovery to end.
#[derive(Debug, Clone)]
pub struct OrphanedTask {
    pub task: Task,
    /// The node that ran it; `None` for a task recorded before nodes were (only a store that
    /// one node used alone has those).
    pub node: Option<String>,
}

/// Tasks and their event logs, and which node runs what.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Inserts a task with its first event (`state: queued`). With an idempotency key already
    /// seen, returns the existing task and `false` instead.
    async fn create_task(&self, new: NewTask) -> Result<(Task, bool), StoreError>;

    /// Appends events to a task's log, in order; returns them with their seq and pos.
    async fn append(
        &self,
        task_id: &str,
        events: Vec<(&'static str, serde_json::Value)>,
    ) -> Result<Vec<Event>, StoreError>;

    /// Changes a task's state and appends the `state` event, atomically. A change to `running`
    /// or `paused` records this handle's node as the one running the task.
    async fn transition(&self, task_id: &str, change: Transition) -> Result<Task, StoreError>;

    async fn get_task(&self, id: &str) -> Result<Option<Task>, StoreError>;

    /// Newest first; the second value is the cursor of the next page.
    async fn list_tasks(&self, query: TaskQuery) -> Result<(Vec<Task>, Option<u64>), StoreError>;

    /// Tasks in these states, oldest first (for recovery after a restart).
    async fn tasks_in_states(&self, states: &[TaskState]) -> Result<Vec<Task>, StoreError>;

    /// At most `limit` events, and no more than about [`READ_BYTES`] of them: fewer than
    /// `limit` does not mean the end of the log; an empty answer does.
    async fn events_after(&self, range: EventRange, limit: usize)
    -> Result<Vec<Event>, StoreError>;

    /// The highest `pos` ever assigned (0 before the first event), even when the task that held
    /// it has been deleted: clients resume from positions they were given, which must never
    /// look as if they lay past the end of the log.
    async fn last_pos(&self) -> Result<u64, StoreError>;

    /// Deletes a finished task and its events.
    async fn delete_task(&self, id: &str) -> Result<(), StoreError>;

    async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, StoreError>;

    /// Takes a queued task for this handle's node to start, so that no other node starts it:
    /// the task, recorded as this node's; `None` when it is no longer queued or another node
    /// took it first.
    async fn claim(&self, id: &str) -> Result<Option<Task>, StoreError>;

    /// Says this handle's node is alive for `ttl` from now, with what it advertises.
    async fn renew_lease(&self, ttl: Duration) -> Result<(), StoreError>;

    /// Running and paused tasks whose node is gone, and queued ones such a node had taken,
    /// oldest first: this node's own (it has just started, so whatever it ran before died
    /// with it), those of nodes whose lease expired, and those recorded without a node.
    async fn orphaned_tasks(&self) -> Result<Vec<OrphanedTask>, StoreError>;

    /// Every node with a lease on record, with its tasks running or paused now.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError>;
}

/// API keys and the sessions made with them.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn put_key(&self, key: StoredKey) -> Result<(), StoreError>;

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;

    /// Deletes a key and every session made with it; false when there was no such key.
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;

    /// Inserts or replaces a session.
    async fn put_session(&self, session: StoredSession) -> Result<(), StoreError>;

    async fn list_sessions(&self) -> Result<Vec<StoredSession>, StoreError>;

    async fn delete_sessions(&self, ids: Vec<String>) -> Result<(), StoreError>;

    /// Records when keys and sessions were last used (written in batches, not per request).
    async fn record_use(
        &self,
        keys: Vec<(String, Timestamp)>,
        sessions: Vec<(String, Timestamp)>,
    ) -> Result<(), StoreError>;

    /// The secret that signs session tokens, the same for every node of the store, so that a
    /// token one node issued holds on the others: the first node's `own` becomes everyone's.
    /// A store that one node has alone keeps none and answers `own`.
    async fn session_secret(&self, own: [u8; 32]) -> Result<[u8; 32], StoreError> {
        Ok(own)
    }
}

/// Chat conversations and their messages.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Inserts a conversation. `channel` names the compatibility surface and client it serves
    /// (their "current conversation" is the newest of the channel); none for native ones.
    async fn create_conversation(
        &self,
        conversation: ConversationSummary,
        channel: Option<String>,
    ) -> Result<(), StoreError>;

    /// Replaces the title, provider, model and system prompt, and sets `updated_at`.
    async fn update_conversation(
        &self,
        conversation: ConversationSummary,
    ) -> Result<(), StoreError>;

    /// Newest first; the second value is the cursor of the next page.
    async fn list_conversations(
        &self,
        query: ConversationQuery,
    ) -> Result<(Vec<ConversationSummary>, Option<String>), StoreError>;

    /// A conversation with all its messages, oldest first.
    async fn get_conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationSummary, Vec<StoredMessage>)>, StoreError>;

    /// Deletes a conversation and its messages (its turns' tasks stay); false when there was
    /// no such conversation.
    async fn delete_conversation(&self, id: &str) -> Result<bool, StoreError>;
}

/// What agent runs keep beside their log: approvals of tool calls and workspace checkpoints.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Inserts or replaces an approval.
    async fn put_approval(&self, approval: Approval) -> Result<(), StoreError>;

    /// Approvals, oldest first: of one task, in one status, or all.
    async fn approvals(
        &self,
        task: Option<String>,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<Approval>, StoreError>;

    async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError>;

    /// Marks expired every pending approval whose task no other live node runs: after a
    /// restart, no agent of this node waits for them.
    async fn expire_pending_approvals(&self) -> Result<usize, StoreError>;

    /// Saves a checkpoint with the files it keeps: each path with its content, or `None` for a
    /// file that did not exist.
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        files: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError>;

    /// A task's checkpoints, oldest first.
    async fn checkpoints(&self, task: &str) -> Result<Vec<Checkpoint>, StoreError>;

    /// The files a checkpoint kept.
    async fn checkpoint_files(
        &self,
        task: &str,
        checkpoint: u32,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError>;
}

/// A whole store, as one node sees it.
#[async_trait]
pub trait Store: TaskStore + AccessStore + ConversationStore + AgentStore {
    /// The id of the node this handle acts for.
    fn node(&self) -> &str;

    /// What the nodes sharing the store tell each other; `None` for a store that one node
    /// has alone.
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }

    /// Why the store cannot be reached now (it retries meanwhile); `None` while it works.
    fn degraded(&self) -> Option<String> {
        None
    }

    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}

/// Messages between the nodes that share a store.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Sends `question` to `node` and waits up to `patience` for its answer.
    async fn ask(
        &self,
        node: &str,
        question: String,
        patience: Duration,
    ) -> Result<String, StoreError>;

    /// The questions other nodes ask this one, each with where its answer goes. Handed out
    /// once: the first caller answers them all.
    fn questions(&self) -> Option<mpsc::Receiver<Question>>;
}

/// A question from another node, and where its answer goes.
#[derive(Debug)]
pub struct Question {
    pub text: String,
    pub answer: oneshot::Sender<String>,
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The cursor of a page of conversations: where the last one shown sits in the order.
pub(super) fn conversation_cursor(conversation: &ConversationSummary, num: u64) -> String {
    format!("{}.{num}", conversation.updated_at.as_microsecond())
}

pub(super) fn parse_conversation_cursor(cursor: &str) -> Result<(i64, i64), StoreError> {
    let bad = || StoreError::BadCursor(cursor.to_string());
    let (updated, num) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((
        updated.parse().map_err(|_| bad())?,
        num.parse().map_err(|_| bad())?,
    ))
}

/// An approval that nobody waits for any more: its agent died with its node.
fn expired(mut approval: Approval) -> Approval {
    approval.status = ApprovalStatus::Expired;
    approval.resolved_at = Some(Timestamp::now());
    approval.reason = Some("the server restarted while it waited".into());
    approval
}

/// The store as the rest of victor holds it.
pub type SharedStore = Arc<dyn Store>;

/// How long a node's lease lasts unless it says otherwise: a node silent this long counts as
/// dead. It renews it three times a lease, so that a few renewals may fail before it runs out.
pub const LEASE: Duration = Duration::from_secs(15);

/// How a backend opens its store: from the whole `store` setting, for a node, feeding a sink.
type OpenBackend = for<'a> fn(
    &'a str,
    &'a Node,
    Arc<dyn EventSink>,
) -> BoxFuture<'a, Result<SharedStore, StoreError>>;

/// A backend, chosen by the scheme of the `store` setting.
struct Backend {
    scheme: &'static str,
    /// The setting's form, for the message that lists them.
    form: &'static str,
    open: OpenBackend,
}

/// Every backend this victor has.
const BACKENDS: &[Backend] = &[
    Backend {
        scheme: "sqlite",
        form: "sqlite://PATH (PATH: the database file)",
        open: sqlite::open,
    },
    Backend {
        scheme: "redis",
        form: "redis://HOST:PORT/DB[?prefix=NAME] (a Redis that several nodes share)",
        open: redis::open,
    },
];

/// Opens the store that `setting` names (`None`: SQLite in the node's data dir) for `node`,
/// feeding `sink`, and keeps the node's lease renewed until the store is closed.
pub async fn open(
    setting: Option<&str>,
    node: &Node,
    sink: Arc<dyn EventSink>,
) -> Result<SharedStore, StoreError> {
    let store = match setting.map(str::trim).filter(|s| !s.is_empty()) {
        None => sqlite::open_default(node, sink)?,
        Some(setting) => {
            let scheme = setting.split_once("://").map(|(scheme, _)| scheme);
            match BACKENDS.iter().find(|b| Some(b.scheme) == scheme) {
                Some(backend) => (backend.open)(setting, node, sink).await?,
                None => {
                    let forms: Vec<&str> = BACKENDS.iter().map(|b| b.form).collect();
                    return Err(StoreError::Setting(format!(
                        "store `{setting}` is not one victor knows: use {}, or leave it unset \
                         for victor.db in the data dir",
                        forms.join(" or ")
                    )));
                }
            }
        }
    };
    store.renew_lease(node.lease()).await?;
    tokio::spawn(keep_lease(Arc::downgrade(&store), node.lease()));
    Ok(store)
}

/// Renews the node's lease until the store is closed or let go of.
async fn keep_lease(store: Weak<dyn Store>, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        match store.renew_lease(lease).await {
            Ok(()) => {}
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "cannot renew this node's lease"),
        }
    }
}
