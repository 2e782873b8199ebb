//! The task engine: the queue and its concurrency limit, each task's state machine, the controls
//! that steer a running task, and recovery after a restart. It knows nothing about HTTP: the
//! transports call [`Engine`] and follow the [`Bus`]. It knows nothing about any one kind of
//! task either: each kind is a [`runner::Runner`] in a file of its own, registered in `kinds!`
//! below.

mod agent;
mod chat;
mod checkpoints;
mod exec;
mod nodes;
mod process;
mod runner;
mod session;
mod workspace;

pub use session::SessionConfig;
pub use workspace::Tool;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, oneshot};

use self::runner::{Context, Control, Kind, Message, Request, Slot, Stop, encode};
use crate::bus::Bus;
use crate::llm::{LlmError, Providers};
use crate::mcp::McpServers;
use crate::proto::{
    ApprovalStatus, CreateTask, Input, NodeInfo, StateData, Task, TaskPage, TaskResult, TaskState,
    Unanswered,
};
use crate::store::{ConversationAppend, NewTask, SharedStore, StoreError, TaskQuery, Transition};

/// Declares the registry of task kinds, one line each: the field that holds the kind's runner,
/// and the runner's type.
macro_rules! kinds {
    ($($field:ident: $runner:ty),+ $(,)?) => {
        /// The runner of every task kind this server runs.
        #[derive(Default)]
        struct Kinds {
            $($field: $runner,)+
        }

        impl Kinds {
            /// The runner of the kind named `kind`.
            fn of(&self, kind: &str) -> Option<&dyn Kind> {
                [$(&self.$field as &dyn Kind,)+]
                    .into_iter()
                    .find(|runner| runner.name() == kind)
            }
        }
    };
}

kinds! {
    exec: exec::Exec,
    chat: chat::Chat,
    agent: agent::Agent,
    session: session::Session,
}

/// How the engine runs tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tasks running (or paused) at once; the rest wait in the queue.
    pub max_concurrent: usize,
    /// What this node advertises: it takes only the tasks whose `requires` are all here.
    pub labels: Vec<String>,
    /// How long this node's lease lasts; a node silent that long counts as gone.
    pub lease: Duration,
    /// Between SIGTERM and SIGKILL when a task is cancelled or times out.
    pub kill_grace: Duration,
    /// Between SIGTERM and SIGKILL for tasks still running when the server stops.
    pub shutdown_grace: Duration,
    /// Output bytes kept per task: the default, and the most a task's spec may ask for.
    pub max_output_bytes: u64,
    /// The server's directory: where a task runs when its spec names none (an exec's `cwd`,
    /// a seed 000 agent's workspace when it is inside a workspace root).
    pub default_cwd: PathBuf,
    /// Tasks waiting in the queue before new ones are refused (503).
    pub max_queued: usize,
    /// Directories agents may work in (and below).
    pub workspace_roots: Vec<PathBuf>,
    /// How long an agent's tool call waits for a person's approval unless its task says.
    pub approval_timeout: Duration,
    /// What an approval nobody answers comes to unless its task says.
    pub on_unanswered: Unanswered,
    /// Interpreter sessions: their default kernel, idle timeout and limits.
    pub sessions: SessionConfig,
    /// The MCP servers whose tools agents use (`[mcp.NAME]`).
    pub mcp_servers: BTreeMap<String, crate::mcp::McpServerConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent: 4,
            labels: Vec::new(),
            lease: crate::store::LEASE,
            kill_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
            max_output_bytes: 64 * 1024 * 1024,
            default_cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            max_queued: 100_000,
            workspace_roots: Vec::new(),
            approval_timeout: Duration::from_secs(600),
            on_unanswered: Unanswered::Deny,
            sessions: SessionConfig::default(),
            mcp_servers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("task {0} not found")]
    NotFound(String),
    #[error("cannot {action} task {id}: it is {state}")]
    WrongState {
        id: String,
        state: TaskState,
        action: &'static str,
    },
    #[error("task {0} has closed its standard input")]
    StdinClosed(String),
    #[error("task {0} is not reading its input fast enough; try again later")]
    StdinFull(String),
    #[error("{0}")]
    Invalid(String),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyMismatch,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0} tasks are already waiting in the queue; try again when some have run")]
    QueueFull(usize),
    #[error("cannot {action} {} {kind} task", article(kind))]
    Unsupported {
        action: &'static str,
        kind: &'static str,
    },
    #[error("conversation {0} not found")]
    ConversationNotFound(String),
    #[error("approval {0} not found")]
    ApprovalNotFound(String),
    #[error("approval {id} is already {status:?}", status = status)]
    ApprovalResolved { id: String, status: ApprovalStatus },
    #[error("task {task} has no checkpoint {checkpoint}")]
    CheckpointNotFound { task: String, checkpoint: u32 },
    #[error("conversation {conversation} is still answering{}; wait for it or cancel it",
            task.as_ref().map(|t| format!(" (task {t})")).unwrap_or_default())]
    TurnRunning {
        conversation: String,
        task: Option<String>,
    },
    #[error("conversation {0} has no reply streaming")]
    NoTurnRunning(String),
    #[error("{0} interpreter sessions are open on this server, its limit; close one or try later")]
    SessionsFull(usize),
    #[error("client `{client}` has {limit} interpreter sessions open, its limit; close one first")]
    TooManySessions { client: String, limit: usize },
    #[error("session {session} has no execution {execution}")]
    ExecutionNotFound { session: String, execution: String },
    #[error("no execution in session {0} is waiting for input")]
    NoInputWanted(String),
    #[error("no session checkpoint {0}")]
    SessionCheckpointNotFound(String),
    #[error("{0}")]
    CheckpointFailed(String),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(StoreError),
    #[error("cannot encode the data of a `{kind}` event: {message}")]
    Encode { kind: &'static str, message: String },
}

/// `a` or `an`, as the word after it is said.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => EngineError::NotFound(id),
            StoreError::WrongState { id, state } => EngineError::WrongState {
                id,
                state,
                action: "change",
            },
            StoreError::IdempotencyMismatch => EngineError::IdempotencyMismatch,
            StoreError::ConversationNotFound(id) => EngineError::ConversationNotFound(id),
            StoreError::BadCursor(_) => EngineError::Invalid(error.to_string()),
            other => EngineError::Store(other),
        }
    }
}

#[derive(Default)]
struct Scheduler {
    /// Waiting tasks, with their kind: highest priority first, then first come.
    queue: BTreeMap<(Reverse<i32>, u64), (String, &'static str)>,
    queued: HashMap<String, (Reverse<i32>, u64)>,
    /// Tasks running, with the channel to their runner.
    running: HashMap<String, Running>,
    /// How many of `running` hold a concurrency slot.
    slotted: usize,
    next_ticket: u64,
    stopping: bool,
}

/// A task whose runner is running.
struct Running {
    controls: mpsc::Sender<Message>,
    kind: &'static str,
    slot: Slot,
}

/// Runs tasks and answers the controls that steer them.
pub struct Engine {
    store: SharedStore,
    bus: Bus,
    config: EngineConfig,
    providers: Arc<Providers>,
    scheduler: Mutex<Scheduler>,
    kinds: Kinds,
    /// Connected when an agent first needs them.
    mcp: Arc<McpServers>,
    all_stopped: Notify,
    started: Instant,
}

impl Engine {
    /// Recovers from the last run (tasks that were running on this node, or on a node that is
    /// gone, become `interrupted`; queued tasks queue again) and starts scheduling.
    pub async fn start(
        store: SharedStore,
        bus: Bus,
        config: EngineConfig,
        providers: Arc<Providers>,
    ) -> Result<Arc<Engine>, EngineError> {
        let engine = Arc::new(Engine {
            store,
            bus,
            mcp: Arc::new(McpServers::new(&config.mcp_servers)),
            config,
            providers,
            scheduler: Mutex::new(Scheduler::default()),
            kinds: Kinds::default(),
            all_stopped: Notify::new(),
            started: Instant::now(),
        });
        process::adopt_orphans();
        engine.recover().await?;
        engine.schedule();
        engine.join_cluster();
        engine.fill_warm_pool();
        Ok(engine)
    }

    /// Puts right what the last run left: approvals nobody can answer now expire, tasks that
    /// were running are interrupted (and what their processes left is ended), queued tasks
    /// queue again.
    async fn recover(self: &Arc<Self>) -> Result<(), EngineError> {
        let expired = self.store.expire_pending_approvals().await?;
        if expired > 0 {
            tracing::info!(expired, "approvals left pending by the last run expired");
        }
        process::kill_leftovers_tagged(&session::warm_pool_tag(self.store.node())).await;
        let reason = "the server stopped while the task was running";
        // Only the tasks of nodes that are gone: this one before its restart, or another whose
        // lease ran out. A pid means something only on the node that started it.
        for orphan in self.store.orphaned_tasks().await? {
            let (task, node) = (orphan.task, orphan.node);
            let ours = node.as_deref().is_none_or(|node| node == self.store.node());
            tracing::warn!(task = %task.id, node, "marking task interrupted after a restart");
            if ours {
                process::kill_leftover(&task.id, self.pid_of(&task.id).await, task.started_at)
                    .await;
            }
            let ended = self.interrupt(&task.id, reason).await;
            // Another survivor may have ended it first.
            if !matches!(ended, Ok(_) | Err(EngineError::WrongState { .. })) {
                ended?;
            }
        }
        // All queued before any starts, so that they start by priority.
        for task in self.store.tasks_in_states(&[TaskState::Queued]).await? {
            self.admit(&task, false)?;
        }
        Ok(())
    }

    /// The process id a task was started with, from its `running` event.
    async fn pid_of(&self, id: &str) -> Option<u32> {
        let range = crate::store::EventRange::Task {
            id: id.to_string(),
            after: 0,
        };
        let events = self.store.events_after(range, 16).await.ok()?;
        events.iter().find_map(|event| event.state()?.pid)
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The MCP servers agents use; `/mcp/servers` shows and connects them.
    pub fn mcp(&self) -> &Arc<McpServers> {
        &self.mcp
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The LLM providers chat turns use.
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Fills in the provider and model a task left to the server: its default provider, and
    /// that provider's default model.
    async fn choose_model(
        &self,
        provider: &mut Option<String>,
        model: &mut Option<String>,
    ) -> Result<(), EngineError> {
        let (chosen, chosen_model) = self
            .providers
            .resolve(provider.as_deref(), model.as_deref())
            .await?;
        *provider = Some(chosen.info().name);
        *model = Some(chosen_model);
        Ok(())
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Creates a task and queues it. With an idempotency key seen before, returns that task and
    /// `false` instead of creating another.
    pub async fn create(
        self: &Arc<Self>,
        mut request: CreateTask,
        idempotency_key: Option<String>,
    ) -> Result<(Task, bool), EngineError> {
        validate_name(request.name.as_deref())?;
        validate_labels(&request.requires)?;
        let kind = self.kind_of(request.spec.kind())?;
        kind.prepare(self, &mut request.spec).await?;
        // Carried through on its own, even when whoever asked goes away meanwhile: what
        // `prepare` reserved is kept or given back, and a task once stored is admitted.
        let engine = self.clone();
        tokio::spawn(async move { engine.store_prepared(request, idempotency_key).await })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "creating a task failed");
                Err(EngineError::Store(StoreError::Closed))
            })
    }

    /// Stores a task whose kind has prepared it, tells the kind, and admits the task.
    async fn store_prepared(
        self: &Arc<Self>,
        request: CreateTask,
        idempotency_key: Option<String>,
    ) -> Result<(Task, bool), EngineError> {
        let kind = self.kind_of(request.spec.kind())?;
        let created = self.insert(&request, idempotency_key).await;
        let task = match &created {
            Ok((task, true)) => Some(task),
            _ => None,
        };
        kind.stored(&request.spec, task);
        let (task, created) = created?;
        if created && let Err(refused) = self.admit(&task, true) {
            // Stored as the shutdown began: it never runs.
            let reason = "the server shut down before the task started";
            if let Err(e) = self.interrupt(&task.id, reason).await {
                tracing::warn!(task = %task.id, error = %e, "cannot mark a refused task interrupted");
            }
            kind.ended(&task.id);
            return Err(refused);
        }
        Ok((task, created))
    }

    fn kind_of(&self, kind: &str) -> Result<&dyn Kind, EngineError> {
        self.kinds
            .of(kind)
            .ok_or_else(|| EngineError::Invalid(format!("this server does not run {kind} tasks")))
    }

    /// Queues a task (and with `schedule`, starts what fits), or starts it at once when its
    /// kind holds no slot. Once the server is stopping, a queued task waits for the next start
    /// and one that would start at once is refused: the shutdown would not reach it.
    fn admit(self: &Arc<Self>, task: &Task, schedule: bool) -> Result<(), EngineError> {
        if !self.can_run(task) {
            // Another node that has the labels takes it; until then it waits, and says why.
            return Ok(());
        }
        let kind = task.spec.kind();
        let slot = self.kinds.of(kind).map_or(Slot::Queued, |k| k.slot());
        match slot {
            Slot::Immediate => {
                let mut scheduler = self.lock();
                if scheduler.stopping {
                    return Err(EngineError::ShuttingDown);
                }
                if !scheduler.running.contains_key(&task.id) {
                    self.spawn_runner(&mut scheduler, task.id.clone(), kind, slot);
                }
            }
            Slot::Queued => {
                self.enqueue(task);
                if schedule {
                    self.schedule();
                }
            }
        }
        Ok(())
    }

    async fn insert(
        &self,
        request: &CreateTask,
        idempotency_key: Option<String>,
    ) -> Result<(Task, bool), EngineError> {
        {
            let scheduler = self.lock();
            if scheduler.stopping {
                return Err(EngineError::ShuttingDown);
            }
            if scheduler.queue.len() >= self.config.max_queued {
                return Err(EngineError::QueueFull(scheduler.queue.len()));
            }
        }
        let fingerprint =
            serde_json::to_string(request).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let task = Task {
            id: uuid::Uuid::now_v7().to_string(),
            name: request.name.clone(),
            spec: request.spec.clone(),
            state: TaskState::Queued,
            priority: request.priority,
            created_at: Timestamp::now(),
            started_at: None,
            finished_at: None,
            result: None,
            last_seq: 0,
            requires: request.requires.clone(),
            node: None,
            waiting: None,
        };
        Ok(self
            .store
            .create_task(NewTask {
                task,
                idempotency_key,
                request_fingerprint: fingerprint,
            })
            .await?)
    }

    /// A task as people look at it: a queued one says why it still waits.
    pub async fn describe(&self, id: &str) -> Result<Task, EngineError> {
        let mut task = self.get(id).await?;
        task.waiting = self.why_waiting(&task).await;
        Ok(task)
    }

    pub async fn get(&self, id: &str) -> Result<Task, EngineError> {
        self.store
            .get_task(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    /// Tasks newest first, of some states (all when empty) and one kind (all when `None`).
    pub async fn list(
        &self,
        states: Vec<TaskState>,
        kind: Option<&'static str>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<TaskPage, EngineError> {
        let (tasks, next) = self
            .store
            .list_tasks(TaskQuery {
                states,
                kind,
                before: cursor,
                limit,
            })
            .await?;
        Ok(TaskPage {
            tasks,
            next_cursor: next.map(|n| n.to_string()),
        })
    }

    pub async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, EngineError> {
        Ok(self.store.count_by_state().await?)
    }

    /// This node's id, and every node sharing the store with it.
    pub async fn nodes(&self) -> Result<(String, Vec<NodeInfo>), EngineError> {
        Ok((self.store.node().to_string(), self.store.nodes().await?))
    }

    /// Cancels a queued task at once, or sends SIGTERM (then SIGKILL after the grace period) to a
    /// running one; it ends `cancelled` when the process is gone.
    pub async fn cancel(&self, id: &str) -> Result<Task, EngineError> {
        self.control(id, Request::Stop(Stop::Cancel)).await
    }

    /// SIGSTOP to the task's processes.
    pub async fn pause(&self, id: &str) -> Result<Task, EngineError> {
        self.control(id, Request::Control(Control::Pause)).await
    }

    /// SIGCONT to the task's processes.
    pub async fn resume(&self, id: &str) -> Result<Task, EngineError> {
        self.control(id, Request::Control(Control::Resume)).await
    }

    /// Writes to the task's stdin, and closes it when `eof` is set.
    pub async fn input(&self, id: &str, input: Input) -> Result<Task, EngineError> {
        self.control(id, Request::Control(Control::Input(input)))
            .await
    }

    /// Deletes a finished task with its events.
    pub async fn delete(&self, id: &str) -> Result<(), EngineError> {
        self.store.delete_task(id).await.map_err(|e| match e {
            StoreError::WrongState { id, state } => EngineError::WrongState {
                id,
                state,
                action: "delete",
            },
            other => other.into(),
        })
    }

    /// Stops taking tasks, ends the running ones (SIGTERM, then SIGKILL after the shutdown grace
    /// period) and marks them `interrupted`. Queued tasks stay queued for the next start.
    pub async fn shutdown(&self) {
        self.close_warm_pool().await;
        let runners: Vec<_> = {
            let mut scheduler = self.lock();
            scheduler.stopping = true;
            scheduler
                .running
                .values()
                .map(|running| running.controls.clone())
                .collect()
        };
        for runner in runners {
            let (reply, _) = oneshot::channel();
            let _ = runner.send((Request::Stop(Stop::Shutdown), reply)).await;
        }
        let wait = async {
            loop {
                let stopped = self.all_stopped.notified();
                if self.lock().running.is_empty() {
                    return;
                }
                stopped.await;
            }
        };
        let limit = self.config.shutdown_grace + Duration::from_secs(5);
        if tokio::time::timeout(limit, wait).await.is_err() {
            let stuck: Vec<String> = self.lock().running.keys().cloned().collect();
            tracing::error!(tasks = ?stuck, "tasks did not stop in time; marking them interrupted");
            let reason = "the server shut down while the task was running";
            for id in stuck {
                let _ = self.interrupt(&id, reason).await;
            }
        }
    }

    /// Steers a task wherever it runs: here, or on the node sharing the store that took it.
    async fn control(&self, id: &str, request: Request) -> Result<Task, EngineError> {
        if let Some(cluster) = self.store.cluster()
            && !self.lock().running.contains_key(id)
        {
            let task = self.get(id).await?;
            if let Some(node) = task.node.as_deref()
                && node != self.store.node()
                && !task.state.is_final()
            {
                return self.forward(cluster, node, id, &request).await;
            }
        }
        self.control_here(id, request).await
    }

    /// Steers a task that this node runs or has queued.
    async fn control_here(&self, id: &str, request: Request) -> Result<Task, EngineError> {
        enum Found {
            Runner(mpsc::Sender<Message>, &'static str),
            Dequeued,
            Queued,
            Elsewhere,
        }
        let action = request.action();
        let wrong_state = |state| EngineError::WrongState {
            id: id.to_string(),
            state,
            action,
        };
        let mut request = request;
        for _ in 0..50 {
            let found = {
                let mut scheduler = self.lock();
                if let Some(running) = scheduler.running.get(id) {
                    Found::Runner(running.controls.clone(), running.kind)
                } else if !scheduler.queued.contains_key(id) {
                    Found::Elsewhere
                } else if matches!(request, Request::Stop(Stop::Cancel)) {
                    scheduler.dequeue(id);
                    Found::Dequeued
                } else {
                    Found::Queued
                }
            };
            match found {
                Found::Queued => return Err(wrong_state(TaskState::Queued)),
                Found::Dequeued => {
                    let reason = "cancelled before it started";
                    return self
                        .finish(id, TaskState::Cancelled, error_result(reason), reason)
                        .await;
                }
                Found::Elsewhere => {
                    let task = self.get(id).await?;
                    if task.state != TaskState::Queued {
                        return Err(wrong_state(task.state));
                    }
                    // Queued for other nodes only (its labels, or another node's queue): no
                    // runner of this node will look for it.
                    let not_ours = !self.can_run(&task) || self.store.cluster().is_some();
                    if not_ours && task.node.is_none() {
                        if !matches!(request, Request::Stop(Stop::Cancel)) {
                            return Err(wrong_state(TaskState::Queued));
                        }
                        let reason = "cancelled before it started";
                        return self
                            .finish(id, TaskState::Cancelled, error_result(reason), reason)
                            .await;
                    }
                    // Created a moment ago and not in the queue yet: look again.
                }
                Found::Runner(runner, kind) => {
                    if let Request::Control(control) = &request
                        && !self.kinds.of(kind).is_some_and(|k| k.accepts(control))
                    {
                        return Err(EngineError::Unsupported { action, kind });
                    }
                    let (reply, answer) = oneshot::channel();
                    match runner.send((request, reply)).await {
                        Ok(()) => {
                            return match answer.await {
                                Ok(Ok(())) => self.get(id).await,
                                Ok(Err(e)) => Err(e),
                                Err(_) => Err(wrong_state(self.get(id).await?.state)),
                            };
                        }
                        // The runner ended between our look and our send.
                        Err(mpsc::error::SendError((returned, _))) => request = returned,
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(wrong_state(self.get(id).await?.state))
    }

    /// Whether this node has the task queued or running.
    fn knows(&self, id: &str) -> bool {
        let scheduler = self.lock();
        scheduler.queued.contains_key(id) || scheduler.running.contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a task once: a node sharing its store hears of the tasks it creates again from
    /// the shared log, maybe before it queued them itself.
    fn enqueue(&self, task: &Task) {
        let mut scheduler = self.lock();
        if scheduler.queued.contains_key(&task.id) || scheduler.running.contains_key(&task.id) {
            return;
        }
        let key = (Reverse(task.priority), scheduler.next_ticket);
        scheduler.next_ticket += 1;
        scheduler
            .queue
            .insert(key, (task.id.clone(), task.spec.kind()));
        scheduler.queued.insert(task.id.clone(), key);
    }

    /// Starts queued tasks while there are free slots.
    fn schedule(self: &Arc<Self>) {
        let mut scheduler = self.lock();
        while !scheduler.stopping && scheduler.slotted < self.config.max_concurrent {
            let Some((_, (id, kind))) = scheduler.queue.pop_first() else {
                break;
            };
            scheduler.queued.remove(&id);
            self.spawn_runner(&mut scheduler, id, kind, Slot::Queued);
        }
    }

    fn spawn_runner(
        self: &Arc<Self>,
        scheduler: &mut Scheduler,
        id: String,
        kind: &'static str,
        slot: Slot,
    ) {
        let (controls, inbox) = mpsc::channel(16);
        scheduler.running.insert(
            id.clone(),
            Running {
                controls,
                kind,
                slot,
            },
        );
        scheduler.slotted += usize::from(slot == Slot::Queued);
        let engine = self.clone();
        tokio::spawn(async move {
            engine.run(&id, inbox).await;
            if let Some(kind) = engine.kinds.of(kind) {
                kind.ended(&id);
            }
            let now_idle = {
                let mut scheduler = engine.lock();
                if let Some(running) = scheduler.running.remove(&id) {
                    scheduler.slotted -= usize::from(running.slot == Slot::Queued);
                }
                scheduler.running.is_empty()
            };
            if now_idle {
                engine.all_stopped.notify_waiters();
            }
            engine.schedule();
        });
    }

    async fn run(self: &Arc<Self>, id: &str, inbox: mpsc::Receiver<Message>) {
        // Taken for this node first: of the nodes sharing the store, one runs it.
        let task = match self.store.claim(id).await {
            Ok(Some(task)) => task,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(task = %id, error = %e, "cannot take task to run it");
                return;
            }
        };
        let outcome = match self.kind_of(task.spec.kind()) {
            Ok(kind) => kind.run(&mut Context::new(self.clone(), task, inbox)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::error!(task = %id, error = %e, "task runner failed");
            let reason = format!("victor could not record the task: {e}");
            let result = TaskResult {
                error: Some(reason.clone()),
                ..TaskResult::default()
            };
            let _ = self.finish(id, TaskState::Failed, result, &reason).await;
        }
    }

    /// Moves a task to a final state with its result.
    async fn finish(
        &self,
        id: &str,
        state: TaskState,
        result: TaskResult,
        reason: &str,
    ) -> Result<Task, EngineError> {
        self.finish_with(id, state, result, reason, None).await
    }

    /// Ends a task that victor, not the task, stopped (or never started), saying why.
    async fn interrupt(&self, id: &str, reason: &str) -> Result<Task, EngineError> {
        self.finish(id, TaskState::Interrupted, error_result(reason), reason)
            .await
    }

    /// [`Engine::finish`], adding messages to a conversation in the same write.
    async fn finish_with(
        &self,
        id: &str,
        state: TaskState,
        result: TaskResult,
        reason: &str,
        messages: Option<ConversationAppend>,
    ) -> Result<Task, EngineError> {
        let data = StateData {
            state,
            pid: None,
            result: Some(result.clone()),
            reason: (!reason.is_empty()).then(|| reason.to_string()),
        };
        Ok(self
            .store
            .transition(
                id,
                Transition {
                    state,
                    from: &[TaskState::Queued, TaskState::Running, TaskState::Paused],
                    started_at: None,
                    finished_at: Some(Timestamp::now()),
                    result: Some(result),
                    data: encode(&data)?.1,
                    messages,
                },
            )
            .await?)
    }

    /// A state change of a live task (queued → running ⇄ paused), with its event. Leaving the
    /// queue sets `started_at`; the `pid` of a task that runs a process comes with it.
    async fn change_state(
        &self,
        id: &str,
        state: TaskState,
        from: &'static [TaskState],
        pid: Option<u32>,
    ) -> Result<Task, EngineError> {
        let data = StateData {
            state,
            pid,
            result: None,
            reason: None,
        };
        Ok(self
            .store
            .transition(
                id,
                Transition {
                    state,
                    from,
                    started_at: from.contains(&TaskState::Queued).then(Timestamp::now),
                    finished_at: None,
                    result: None,
                    data: encode(&data)?.1,
                    messages: None,
                },
            )
            .await?)
    }
}

impl Scheduler {
    fn dequeue(&mut self, id: &str) {
        if let Some(key) = self.queued.remove(id) {
            self.queue.remove(&key);
        }
    }
}

/// The result of a task that victor ended, or that never ran: no exit code, just why.
fn error_result(reason: &str) -> TaskResult {
    TaskResult {
        error: Some(reason.to_string()),
        ..TaskResult::default()
    }
}

/// Refuses a task name no list could show.
fn validate_name(name: Option<&str>) -> Result<(), EngineError> {
    if let Some(name) = name
        && (name.chars().count() > 200 || name.contains('\0'))
    {
        return Err(EngineError::Invalid(
            "name must be at most 200 characters with no NUL".into(),
        ));
    }
    Ok(())
}

/// Refuses labels a node could not advertise (`victor serve --label`).
pub fn validate_labels(labels: &[String]) -> Result<(), EngineError> {
    const MAX_LABELS: usize = 16;
    if labels.len() > MAX_LABELS {
        return Err(EngineError::Invalid(format!(
            "at most {MAX_LABELS} labels, not {}",
            labels.len()
        )));
    }
    for label in labels {
        let fits = (1..=64).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !fits {
            return Err(EngineError::Invalid(format!(
                "label `{label}` must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::TaskSpec;

    #[test]
    fn every_kind_has_a_runner() {
        let kinds = Kinds::default();
        for kind in TaskSpec::KINDS {
            assert!(kinds.of(kind).is_some(), "no runner for {kind} tasks");
        }
    }

    #[test]
    fn an_unsupported_control_reads_with_the_right_article() {
        let error = |kind| EngineError::Unsupported {
            action: "roll back",
            kind,
        };
        assert_eq!(error("exec").to_string(), "cannot roll back an exec task");
        assert_eq!(error("chat").to_string(), "cannot roll back a chat task");
        assert_eq!(error("agent").to_string(), "cannot roll back an agent task");
    }
}
