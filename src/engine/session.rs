//! The `session` kind: a Jupyter kernel kept running for the code clients send it. Executions
//! wait in the session's queue and run one at a time; what the kernel publishes for each
//! (streams, displays, results, errors, requests for input) becomes events of the task's log,
//! stored before anyone sees them. The kernel is a task process like any other
//! (`engine::process`); the Jupyter messages and their ZeroMQ transport come from
//! `jupyter-protocol` and `jupyter-zmq-client`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest as KernelExecute, ExecutionState, InputReply, JupyterMessage,
    JupyterMessageContent, KernelInfoRequest, ReplyStatus, ShutdownRequest, Stdio, Transport,
};
use jupyter_zmq_client as kernel_client;
use jupyter_zmq_client::KernelspecDir;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use super::checkpoints::{self, Checkpoints, RestoreReport, SaveReport};
use super::exec::OutputEvents;
use super::process::{Processes, Pumps, SpawnError, until};
use super::runner::{Context, Control, Incoming, Log, Runner, Slot, Stop, encode};
use super::{Engine, EngineError, error_result};
use crate::proto::{
    CheckpointRequest, CheckpointSaved, ExecuteRequest, Execution, ExecutionCleared,
    ExecutionDisplay, ExecutionError, ExecutionFinished, ExecutionOutput, ExecutionQueued,
    ExecutionResult, ExecutionStarted, ExecutionStatus, InputAnswer, InputAnswered, InputRequested,
    Interrupted, KernelReady, KernelSpecInfo, MimeBundle, OutputStream, RestartReason, Restored,
    SessionCheckpoint, SessionRestarting, SessionSpec, SessionState, SessionStatus, Task,
    TaskResult, TaskSpec, TaskState, TransactionPolicy, TruncatedData,
};

/// The command that installs the kernel most people want, for the error that finds none.
pub const INSTALL_HINT: &str = "python3 -m pip install ipykernel";
/// Python run silently before an execution whose policy may roll it back: keeps the session's
/// variables (pickled with `dill` when the kernel has it, else `pickle`; modules and what
/// cannot be pickled by reference) in `__victor_saved`.
const SNAPSHOT: &str = r#"
def __victor_snapshot():
    try:
        import dill as pickler
    except ImportError:
        import pickle as pickler
    import types
    saved = {}
    for name, value in list(globals().items()):
        if name.startswith('_') or name in ('In', 'Out', 'get_ipython', 'exit', 'quit'):
            continue
        if isinstance(value, types.ModuleType):
            saved[name] = (None, value)
            continue
        try:
            saved[name] = (pickler, pickler.dumps(value))
        except Exception:
            saved[name] = (None, value)
    return saved
__victor_saved = __victor_snapshot()
del __victor_snapshot
"#;
/// Python that puts back the variables [`SNAPSHOT`] kept: those made since are removed.
const ROLLBACK: &str = r#"
def __victor_rollback():
    space = globals()
    saved = space.pop('__victor_saved', None)
    if saved is None:
        return
    for name in list(space):
        if name.startswith('_') or name in ('In', 'Out', 'get_ipython', 'exit', 'quit'):
            continue
        if name not in saved:
            del space[name]
    for name, (pickler, value) in saved.items():
        space[name] = pickler.loads(value) if pickler is not None else value
__victor_rollback()
del __victor_rollback
"#;
/// Python that lets go of what [`SNAPSHOT`] kept, once the execution's changes stand.
const COMMIT: &str = "globals().pop('__victor_saved', None)";
/// How long a kernel gets to answer its first request.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How long a kernel asked to shut down gets before it is terminated.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);
/// Output bytes the kernel process itself may print (outside any execution) per kernel.
const KERNEL_LOG_BYTES: u64 = 1024 * 1024;
/// Messages from the kernel taken into one write to the log, at most.
const BATCH: usize = 256;
/// Printed text in one `execution.output` event, at most (as an exec task's output chunks).
const EVENT_TEXT: usize = 16 * 1024;

/// How the server runs sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The kernel a session runs when it names none.
    pub default_kernel: String,
    /// A session nobody uses for this long is closed, unless its spec says otherwise;
    /// `None` keeps sessions for ever.
    pub idle_timeout: Option<Duration>,
    /// Sessions open at once on this server; more are refused with 503.
    pub max_sessions: usize,
    /// Sessions open at once for one client; more are refused with 429.
    pub max_per_client: usize,
    /// How long an interrupted execution may go on before its kernel is restarted.
    pub interrupt_grace: Duration,
    /// Where checkpoints are kept: `checkpoints` in the data dir.
    pub checkpoint_dir: PathBuf,
    /// Kernels of the default kernel kept started ahead, for sessions in the default
    /// directory with no environment of their own.
    pub warm_pool: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            default_kernel: crate::proto::DEFAULT_KERNEL.to_string(),
            idle_timeout: Some(Duration::from_secs(3600)),
            max_sessions: 32,
            max_per_client: 8,
            interrupt_grace: Duration::from_secs(5),
            checkpoint_dir: std::env::temp_dir().join("victor-checkpoints"),
            warm_pool: 0,
        }
    }
}

/// What a client asks of a running session, with where the answer goes.
enum Command {
    Execute(
        ExecuteRequest,
        oneshot::Sender<Result<Execution, EngineError>>,
    ),
    Input(
        InputAnswer,
        oneshot::Sender<Result<InputAnswered, EngineError>>,
    ),
    Interrupt(oneshot::Sender<Result<Interrupted, EngineError>>),
    Restart(oneshot::Sender<Result<(), EngineError>>),
    Close(oneshot::Sender<Result<(), EngineError>>),
    Chore(Chore),
}

/// Work of the session's own, run silently in the kernel in its turn among the executions.
enum Chore {
    Checkpoint(
        CheckpointRequest,
        oneshot::Sender<Result<SessionCheckpoint, EngineError>>,
    ),
    Restore(
        SessionCheckpoint,
        oneshot::Sender<Result<Restored, EngineError>>,
    ),
}

impl Chore {
    /// Tells whoever asked that it will not be done, and why.
    fn refuse(self, error: EngineError) {
        match self {
            Chore::Checkpoint(_, reply) => drop(reply.send(Err(error))),
            Chore::Restore(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

/// A chore the kernel is doing: its request's id, and where the kernel reports.
struct RunningChore {
    msg_id: String,
    /// The checkpoint saved or restored.
    checkpoint_id: String,
    report: PathBuf,
    chore: Chore,
}

/// A session the server holds a place for: from its `prepare` until its runner ends.
struct Open {
    client: String,
    commands: mpsc::Sender<Command>,
    /// Taken by the runner when it starts.
    inbox: Option<mpsc::Receiver<Command>>,
    /// The seq of each execution's `execution.queued` event: where reading it starts.
    executions: HashMap<String, u64>,
}

#[derive(Default)]
struct Places {
    /// Places taken by sessions being created, per client.
    reserved: HashMap<String, usize>,
    /// Sessions stored, by task id.
    open: HashMap<String, Open>,
}

impl Places {
    fn of_client(&self, client: &str) -> usize {
        self.reserved.get(client).copied().unwrap_or(0)
            + self.open.values().filter(|o| o.client == client).count()
    }

    fn total(&self) -> usize {
        self.reserved.values().sum::<usize>() + self.open.len()
    }

    fn release(&mut self, client: &str) {
        if let Some(count) = self.reserved.get_mut(client) {
            *count -= 1;
            if *count == 0 {
                self.reserved.remove(client);
            }
        }
    }
}

/// The runner of `session` tasks.
#[derive(Default)]
pub(super) struct Session {
    places: Mutex<Places>,
    /// Held while a client's session is looked up or started, so that two first requests of
    /// one client start one session.
    starting: tokio::sync::Mutex<()>,
    /// Where kernelspecs are looked for: asked of `jupyter --paths` once.
    data_dirs: OnceCell<Vec<PathBuf>>,
    pool: Mutex<WarmPool>,
}

/// Kernels started ahead, ready for the next sessions.
#[derive(Default)]
struct WarmPool {
    ready: Vec<(Kernel, KernelReady)>,
    /// A task is starting kernels for it.
    filling: bool,
    /// The server is shutting down: no more kernels.
    closed: bool,
}

/// A place reserved for a session being created, given back when dropped unless kept.
struct Reservation<'a> {
    session: &'a Session,
    client: String,
    kept: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.session.places().release(&self.client);
        }
    }
}

fn client_of(spec: &SessionSpec) -> String {
    spec.client.clone().unwrap_or_default()
}

/// `jupyter --paths --json`'s answer, within 30 s.
async fn ask_jupyter_paths() -> Result<serde_json::Value, String> {
    let mut command = tokio::process::Command::new("jupyter");
    command
        .args(["--paths", "--json"])
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .map_err(|_| "`jupyter --paths --json` did not answer within 30 s".to_string())?
        .map_err(|e| format!("cannot run `jupyter --paths --json`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`jupyter --paths --json` failed: {}",
            output.status
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`jupyter --paths --json` answered no JSON: {e}"))
}

impl Session {
    fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> MutexGuard<'_, WarmPool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kernel of the warm pool for a session of `spec`, if the pool has one that fits.
    fn take_warm(&self, engine: &Engine, spec: &SessionSpec) -> Option<(Kernel, KernelReady)> {
        let config = engine.config();
        let fits = spec.kernel_name() == config.sessions.default_kernel
            && spec.env.is_empty()
            && spec.cwd.as_deref().map(Path::new) == Some(config.default_cwd.as_path());
        if !fits {
            return None;
        }
        self.pool().ready.pop()
    }

    /// The directories kernelspecs are looked for in: the standard ones and what `jupyter
    /// --paths` adds (a virtualenv's or pyenv's prefix). Kept once `jupyter` has answered; a
    /// failed ask is logged and asked again next time, rather than hiding the kernels for the
    /// server's whole life. `jupyter` runs in a process group of its own, as every process
    /// victor starts does: the reaper of tasks' orphans takes a child of the server in the
    /// server's own group for an orphan, and would reap it before its exit is read.
    async fn data_dirs(&self) -> Vec<PathBuf> {
        let asked = self
            .data_dirs
            .get_or_try_init(|| async {
                let answer = ask_jupyter_paths().await?;
                let mut dirs = kernel_client::data_dirs();
                let listed = answer.get("data").and_then(|data| data.as_array());
                for dir in listed.into_iter().flatten().filter_map(|dir| dir.as_str()) {
                    let dir = PathBuf::from(dir);
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                }
                Ok::<_, String>(dirs)
            })
            .await;
        match asked {
            Ok(dirs) => dirs.clone(),
            Err(error) => {
                tracing::warn!(%error, "`jupyter --paths` failed; looking for kernels in the standard places only");
                kernel_client::data_dirs()
            }
        }
    }

    /// The kernels installed, as `jupyter kernelspec list` finds them (the first of a name
    /// wins).
    async fn kernelspecs(&self) -> Vec<KernelspecDir> {
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for dir in self.data_dirs().await {
            for spec in kernel_client::read_kernelspec_jsons(&dir).await {
                if seen.insert(spec.kernel_name.clone()) {
                    found.push(spec);
                }
            }
        }
        found.sort_by(|a, b| a.kernel_name.cmp(&b.kernel_name));
        found
    }

    /// The kernel named `name`, or an error that says what is installed and how to install
    /// one.
    async fn kernelspec(&self, name: &str) -> Result<KernelspecDir, EngineError> {
        let specs = self.kernelspecs().await;
        let names: Vec<&str> = specs.iter().map(|s| s.kernel_name.as_str()).collect();
        let message = if names.is_empty() {
            format!(
                "no Jupyter kernel is installed on the server; install one for Python with \
                 `{INSTALL_HINT}`"
            )
        } else {
            format!(
                "no Jupyter kernel `{name}` on the server (installed: {}); for Python: `{INSTALL_HINT}`",
                names.join(", ")
            )
        };
        specs
            .into_iter()
            .find(|s| s.kernel_name == name)
            .ok_or(EngineError::Invalid(message))
    }

    /// Takes a place for a new session of `client`, or says which limit refuses it.
    fn reserve(&self, engine: &Engine, client: &str) -> Result<Reservation<'_>, EngineError> {
        let config = &engine.config().sessions;
        let mut places = self.places();
        if places.total() >= config.max_sessions {
            return Err(EngineError::SessionsFull(config.max_sessions));
        }
        if places.of_client(client) >= config.max_per_client {
            return Err(EngineError::TooManySessions {
                client: client.to_string(),
                limit: config.max_per_client,
            });
        }
        *places.reserved.entry(client.to_string()).or_default() += 1;
        Ok(Reservation {
            session: self,
            client: client.to_string(),
            kept: false,
        })
    }

    /// The open session of `client`, if it has one.
    fn of_client(&self, client: &str) -> Option<String> {
        self.places()
            .open
            .iter()
            .find(|(_, open)| open.client == client)
            .map(|(id, _)| id.clone())
    }

    /// The command channel of a running session.
    fn commands(&self, id: &str) -> Option<mpsc::Sender<Command>> {
        self.places().open.get(id).map(|o| o.commands.clone())
    }

    /// The runner's end of a session's command channel (made now when the session was stored
    /// by an earlier run of the server).
    fn inbox(&self, id: &str, client: String) -> mpsc::Receiver<Command> {
        let mut places = self.places();
        let open = places.open.entry(id.to_string()).or_insert_with(|| {
            let (commands, inbox) = mpsc::channel(64);
            Open {
                client,
                commands,
                inbox: Some(inbox),
                executions: HashMap::new(),
            }
        });
        match open.inbox.take() {
            Some(inbox) => inbox,
            None => {
                // Taken already: a second run of the same task, which the engine never
                // starts; a fresh channel keeps this one apart.
                let (commands, inbox) = mpsc::channel(64);
                open.commands = commands;
                inbox
            }
        }
    }
}

#[async_trait]
impl Runner for Session {
    type Spec = SessionSpec;

    /// A session waits for its code, not for the machine: it holds none of the slots of
    /// `--max-concurrent`, and has limits of its own.
    const SLOT: Slot = Slot::Immediate;

    fn accepts(&self, _control: &Control) -> bool {
        false
    }

    async fn prepare(&self, engine: &Engine, spec: &mut SessionSpec) -> Result<(), EngineError> {
        let config = engine.config();
        spec.kernel
            .get_or_insert_with(|| config.sessions.default_kernel.clone());
        spec.cwd
            .get_or_insert_with(|| config.default_cwd.display().to_string());
        validate(spec, config.max_output_bytes)?;
        let reservation = self.reserve(engine, &client_of(spec))?;
        self.kernelspec(spec.kernel_name()).await?;
        let mut reservation = reservation;
        reservation.kept = true;
        Ok(())
    }

    fn stored(&self, spec: &SessionSpec, task: Option<&Task>) {
        let client = client_of(spec);
        let mut places = self.places();
        places.release(&client);
        if let Some(task) = task {
            let (commands, inbox) = mpsc::channel(64);
            places.open.insert(
                task.id.clone(),
                Open {
                    client,
                    commands,
                    inbox: Some(inbox),
                    executions: HashMap::new(),
                },
            );
        }
    }

    async fn run(&self, ctx: &mut Context, spec: &SessionSpec) -> Result<(), EngineError> {
        let inbox = self.inbox(ctx.id(), client_of(spec));
        let kernelspec = match self.kernelspec(spec.kernel_name()).await {
            Ok(found) => found,
            Err(e) => {
                let reason = e.to_string();
                return ctx
                    .finish(TaskState::Failed, error_result(&reason), &reason)
                    .await;
            }
        };
        run(self, ctx, spec, kernelspec, inbox).await
    }

    fn ended(&self, task_id: &str) {
        self.places().open.remove(task_id);
    }
}

impl Engine {
    /// The Jupyter kernels installed on the server.
    pub async fn kernels(&self) -> Vec<KernelSpecInfo> {
        let session = &self.kinds.session;
        let warm = session.pool().ready.len();
        let default = &self.config().sessions.default_kernel;
        session
            .kernelspecs()
            .await
            .into_iter()
            .map(|dir| KernelSpecInfo {
                warm: if dir.kernel_name == *default { warm } else { 0 },
                name: dir.kernel_name,
                display_name: dir.kernelspec.display_name,
                language: dir.kernelspec.language,
            })
            .collect()
    }

    /// Starts kernels in the background until the warm pool holds `warm_pool` of them.
    pub(super) fn fill_warm_pool(self: &Arc<Self>) {
        let wanted = self.config().sessions.warm_pool;
        {
            let mut pool = self.kinds.session.pool();
            if wanted == 0 || pool.filling || pool.closed || pool.ready.len() >= wanted {
                return;
            }
            pool.filling = true;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let session = &engine.kinds.session;
            loop {
                let started = match engine.start_warm_kernel().await {
                    Ok(started) => started,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a kernel for the warm pool");
                        session.pool().filling = false;
                        return;
                    }
                };
                // Kept, or handed back when the server closed the pool meanwhile.
                let (refused, full) = {
                    let mut pool = session.pool();
                    if pool.closed {
                        pool.filling = false;
                        (Some(started), true)
                    } else {
                        pool.ready.push(started);
                        let full = pool.ready.len() >= wanted;
                        if full {
                            pool.filling = false;
                        }
                        (None, full)
                    }
                };
                if let Some((kernel, _)) = refused {
                    kernel.stop(Duration::ZERO).await;
                }
                if full {
                    return;
                }
            }
        });
    }

    async fn start_warm_kernel(&self) -> Result<(Kernel, KernelReady), String> {
        let config = self.config();
        let spec = SessionSpec {
            kernel: Some(config.sessions.default_kernel.clone()),
            cwd: Some(config.default_cwd.display().to_string()),
            ..SessionSpec::default()
        };
        let session = &self.kinds.session;
        let kernelspec = session
            .kernelspec(spec.kernel_name())
            .await
            .map_err(|e| e.to_string())?;
        let tag = format!(
            "{}{}",
            warm_pool_tag(self.store.node()),
            uuid::Uuid::new_v4().simple()
        );
        Kernel::start(&kernelspec, &spec, KernelOutput::default(), &tag)
            .await
            .map_err(|e| e.to_string())
    }

    /// Ends the kernels of the warm pool, and starts no more: the server is shutting down.
    pub(super) async fn close_warm_pool(&self) {
        let kernels = {
            let mut pool = self.kinds.session.pool();
            pool.closed = true;
            std::mem::take(&mut pool.ready)
        };
        for (kernel, _) in kernels {
            kernel.stop(Duration::ZERO).await;
        }
    }

    /// The session of `client` (seed 003's `client-id`): its open one, or a new one of the
    /// default kernel.
    pub async fn client_session(self: &Arc<Self>, client: &str) -> Result<String, EngineError> {
        let sessions = &self.kinds.session;
        let _one_at_a_time = sessions.starting.lock().await;
        if let Some(id) = sessions.of_client(client) {
            return Ok(id);
        }
        let request = crate::proto::CreateTask {
            name: None,
            priority: 0,
            requires: Vec::new(),
            spec: TaskSpec::Session(SessionSpec {
                client: Some(client.to_string()),
                ..SessionSpec::default()
            }),
        };
        Ok(self.create(request, None).await?.0.id)
    }

    /// Queues code in a session; it runs after the executions before it.
    pub async fn execute(
        &self,
        id: &str,
        request: ExecuteRequest,
    ) -> Result<Execution, EngineError> {
        validate_execute(&request)?;
        self.ask_session(id, "execute code in", |reply| {
            Command::Execute(request, reply)
        })
        .await
    }

    /// Answers the request for input an execution waits on.
    pub async fn answer_input(
        &self,
        id: &str,
        answer: InputAnswer,
    ) -> Result<InputAnswered, EngineError> {
        self.ask_session(id, "answer input in", |reply| Command::Input(answer, reply))
            .await
    }

    /// Stops the running execution (the session and its variables stay) and drops the
    /// queued ones.
    pub async fn interrupt_session(&self, id: &str) -> Result<Interrupted, EngineError> {
        self.ask_session(id, "interrupt", Command::Interrupt).await
    }

    /// Replaces the session's kernel with a new one: its variables are gone.
    pub async fn restart_session(&self, id: &str) -> Result<Task, EngineError> {
        self.ask_session(id, "restart", Command::Restart).await?;
        self.get(id).await
    }

    /// Ends the session: its kernel shuts down and the task succeeds.
    pub async fn close_session(&self, id: &str) -> Result<Task, EngineError> {
        self.ask_session(id, "close", Command::Close).await?;
        self.get(id).await
    }

    /// Saves the session's variables in the data dir, in its turn after the executions
    /// queued before; names those that could not be saved.
    pub async fn checkpoint_session(
        &self,
        id: &str,
        request: CheckpointRequest,
    ) -> Result<SessionCheckpoint, EngineError> {
        if let Some(name) = &request.name
            && (name.chars().count() > 200 || name.contains('\0'))
        {
            return Err(EngineError::Invalid(
                "name must be at most 200 characters with no NUL".into(),
            ));
        }
        self.ask_session(id, "checkpoint", |reply| {
            Command::Chore(Chore::Checkpoint(request, reply))
        })
        .await
    }

    /// Replaces the session's variables with a checkpoint's (of this session or another,
    /// also one saved before the server restarted), in its turn after the queued executions.
    pub async fn restore_session(
        &self,
        id: &str,
        checkpoint_id: &str,
    ) -> Result<Restored, EngineError> {
        let checkpoint = self.session_checkpoint(checkpoint_id)?;
        self.ask_session(id, "restore", |reply| {
            Command::Chore(Chore::Restore(checkpoint, reply))
        })
        .await
    }

    /// The checkpoint `id`.
    pub fn session_checkpoint(&self, id: &str) -> Result<SessionCheckpoint, EngineError> {
        self.checkpoint_dir().get(id)
    }

    /// The checkpoints of session `id`, oldest first (it may have ended).
    pub async fn session_checkpoints(
        &self,
        id: &str,
    ) -> Result<Vec<SessionCheckpoint>, EngineError> {
        let task = self.get(id).await?;
        let TaskSpec::Session(_) = task.spec else {
            return Err(EngineError::NotFound(format!("{id} (no session)")));
        };
        Ok(self.checkpoint_dir().list(Some(id)))
    }

    fn checkpoint_dir(&self) -> Checkpoints {
        Checkpoints::new(self.config().sessions.checkpoint_dir.clone())
    }

    /// An execution as the session's log tells it. With `wait`, waits up to that long for it
    /// to end.
    pub async fn execution(
        &self,
        id: &str,
        execution_id: &str,
        wait: Duration,
    ) -> Result<Execution, EngineError> {
        let task = self.get(id).await?;
        let TaskSpec::Session(_) = task.spec else {
            return Err(EngineError::NotFound(format!("{id} (no session)")));
        };
        let missing = || EngineError::ExecutionNotFound {
            session: id.to_string(),
            execution: execution_id.to_string(),
        };
        let mut execution: Option<Execution> = None;
        // From its `execution.queued` when the session is open; else from the start.
        let mut after = self
            .kinds
            .session
            .places()
            .open
            .get(id)
            .and_then(|open| open.executions.get(execution_id))
            .map_or(0, |seq| seq - 1);
        loop {
            let range = crate::store::EventRange::Task {
                id: id.to_string(),
                after,
            };
            let page = self.store.events_after(range, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for event in &page {
                if fold(&mut execution, execution_id, id, event) {
                    return execution.ok_or_else(missing);
                }
            }
        }
        if wait.is_zero() || task.state.is_final() {
            return execution.ok_or_else(missing);
        }
        let deadline = Instant::now() + wait;
        let mut events = self
            .bus
            .subscribe(crate::bus::Topic::Task(id.to_string()), Some(after))
            .await?;
        while let Ok(Ok(Some(published))) = tokio::time::timeout_at(deadline, events.next()).await {
            if fold(&mut execution, execution_id, id, &published.event) {
                break;
            }
        }
        execution.ok_or_else(missing)
    }

    /// Sends a running session a command and waits for its answer.
    async fn ask_session<T>(
        &self,
        id: &str,
        action: &'static str,
        command: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Command,
    ) -> Result<T, EngineError> {
        let refused = async || {
            let task = self.get(id).await?;
            Err(match task.spec {
                TaskSpec::Session(_) => EngineError::WrongState {
                    id: id.to_string(),
                    state: task.state,
                    action,
                },
                other => EngineError::Unsupported {
                    action,
                    kind: other.kind(),
                },
            })
        };
        let Some(commands) = self.kinds.session.commands(id) else {
            return refused().await;
        };
        let (reply, answer) = oneshot::channel();
        if commands.send(command(reply)).await.is_err() {
            return refused().await;
        }
        match answer.await {
            Ok(answer) => answer,
            Err(_) => refused().await,
        }
    }
}

/// How the task ids of this node's warm pool kernels start (each has its own, so that ending
/// one session's leftovers leaves the others alone): a restart after a crash ends those the
/// last run left.
pub(super) fn warm_pool_tag(node: &str) -> String {
    format!("warm-pool@{node}/")
}

fn validate(spec: &SessionSpec, max_output_bytes: u64) -> Result<(), EngineError> {
    let invalid = |message: String| Err(EngineError::Invalid(message));
    let kernel = spec.kernel_name();
    if kernel.is_empty() || kernel.contains(['/', '\0']) {
        return invalid(format!("spec.kernel `{kernel}` is not a kernel name"));
    }
    if let Some(cwd) = &spec.cwd
        && !Path::new(cwd).is_dir()
    {
        return invalid(format!("spec.cwd `{cwd}` is not a directory on the server"));
    }
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return invalid(format!("spec.env `{key}` is not a valid variable"));
        }
    }
    if let Some(secs) = spec.idle_timeout_secs
        && !(secs.is_finite() && (0.0..1e9).contains(&secs))
    {
        return invalid("spec.idle_timeout_secs must be 0 (never) or a number of seconds".into());
    }
    match spec.max_output_bytes {
        Some(0) => invalid("spec.max_output_bytes must be at least 1".into()),
        Some(asked) if asked > max_output_bytes => invalid(format!(
            "spec.max_output_bytes {asked} is above this server's limit of {max_output_bytes} bytes"
        )),
        _ => Ok(()),
    }
}

fn validate_execute(request: &ExecuteRequest) -> Result<(), EngineError> {
    if let Some(id) = &request.id
        && (id.is_empty() || id.len() > 255 || id.contains('\0'))
    {
        return Err(EngineError::Invalid(
            "id must be 1 to 255 characters with no NUL".into(),
        ));
    }
    if let Some(secs) = request.timeout_secs
        && !(secs.is_finite() && secs > 0.0 && secs < 1e9)
    {
        return Err(EngineError::Invalid(
            "timeout_secs must be a positive number of seconds".into(),
        ));
    }
    Ok(())
}

/// A kernel process and the connections to it.
struct Kernel {
    processes: Processes,
    pumps: Pumps,
    shell: kernel_client::DealerSendConnection,
    stdin: kernel_client::DealerSendConnection,
    control: kernel_client::ClientControlConnection,
    /// Messages the kernel published, and its replies on the shell and stdin channels.
    incoming: mpsc::Receiver<(Channel, JupyterMessage)>,
    readers: Vec<JoinHandle<()>>,
    connection_file: PathBuf,
    interrupt_by_message: bool,
    output: KernelOutput,
}

/// Where what a kernel's process prints goes: its session's log, once it has one (a kernel of
/// the warm pool has none yet, and what it prints meanwhile is dropped).
#[derive(Clone, Default)]
struct KernelOutput(Arc<Mutex<Option<Log>>>);

impl KernelOutput {
    fn to(log: &Log) -> KernelOutput {
        KernelOutput(Arc::new(Mutex::new(Some(log.clone()))))
    }

    fn attach(&self, log: &Log) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(log.clone());
    }
}

#[async_trait]
impl super::process::OutputSink for KernelOutput {
    async fn deliver(&self, stream: crate::proto::OutputStream, kept: &[u8], cut_at: Option<u64>) {
        let log = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(log) = log {
            OutputEvents(log).deliver(stream, kept, cut_at).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    IoPub,
    Shell,
    Stdin,
}

/// Why a kernel could not be started.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot start the kernel `{program}`: {source}")]
    Spawn { program: String, source: SpawnError },
    #[error("cannot connect to the kernel: {0}")]
    Connect(String),
    #[error("the kernel exited while starting ({0}); what it printed is in the session's log")]
    Exited(String),
    #[error("the kernel did not answer within {}s", STARTUP_LIMIT.as_secs())]
    Silent,
}

impl Kernel {
    /// Starts a kernel of `spec` for task `task_id` (or the warm pool's tag), and waits until
    /// it answers. What its process prints goes to `output`.
    async fn start(
        kernelspec: &KernelspecDir,
        spec: &SessionSpec,
        output: KernelOutput,
        task_id: &str,
    ) -> Result<(Kernel, KernelReady), StartError> {
        let begun = Instant::now();
        let connect = |e: &dyn std::fmt::Display| StartError::Connect(e.to_string());
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let (ports, listeners) = kernel_client::peek_ports_with_listeners(ip, 5)
            .await
            .map_err(|e| connect(&e))?;
        let info = ConnectionInfo {
            ip: ip.to_string(),
            transport: Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: uuid::Uuid::new_v4().simple().to_string(),
            signature_scheme: "hmac-sha256".to_string(),
            kernel_name: Some(kernelspec.kernel_name.clone()),
        };
        let name: String = task_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let connection_file = std::env::temp_dir().join(format!(
            "victor-kernel-{name}-{}.json",
            uuid::Uuid::new_v4().simple()
        ));
        write_private(&connection_file, &info).map_err(|e| connect(&e))?;

        let argv = &kernelspec.kernelspec.argv;
        let program = argv.first().cloned().unwrap_or_default();
        let mut command = tokio::process::Command::new(&program);
        for arg in argv.iter().skip(1) {
            if arg == "{connection_file}" {
                command.arg(&connection_file);
            } else {
                command.arg(arg);
            }
        }
        if let Some(env) = &kernelspec.kernelspec.env {
            command.envs(env);
        }
        command.envs(&spec.env);
        // As jupyter_client does: a kernel that polls its parent (ipykernel) exits when the
        // server is gone, even after a kill -9.
        command.env("JPY_PARENT_PID", std::process::id().to_string());
        if let Some(cwd) = &spec.cwd {
            command.current_dir(cwd);
        }
        drop(listeners);
        let (processes, pipes) = Processes::spawn(command, task_id, false).map_err(|source| {
            let _ = std::fs::remove_file(&connection_file);
            StartError::Spawn { program, source }
        })?;
        let pumps = Pumps::start(pipes.stdout, pipes.stderr, output.clone(), KERNEL_LOG_BYTES);
        let mut kernel = Kernel::connect(processes, pumps, &info, connection_file).await?;
        kernel.output = output;
        kernel.interrupt_by_message =
            kernelspec.kernelspec.interrupt_mode.as_deref() == Some("message");
        let reply = match kernel.handshake().await {
            Ok(reply) => reply,
            Err(e) => {
                kernel.stop(Duration::ZERO).await;
                return Err(e);
            }
        };
        let ready = KernelReady {
            kernel: kernelspec.kernel_name.clone(),
            language: reply.language_info.name.clone(),
            language_version: reply.language_info.version.clone(),
            implementation: reply.implementation.clone(),
            pid: kernel.processes.pid(),
            warm: false,
            startup_ms: begun.elapsed().as_millis() as u64,
        };
        Ok((kernel, ready))
    }

    async fn connect(
        processes: Processes,
        pumps: Pumps,
        info: &ConnectionInfo,
        connection_file: PathBuf,
    ) -> Result<Kernel, StartError> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let connected = async {
            let identity = kernel_client::peer_identity_for_session(&session_id)?;
            let iopub =
                kernel_client::create_client_iopub_connection(info, "", &session_id).await?;
            let shell = kernel_client::create_client_shell_connection_with_identity(
                info,
                &session_id,
                identity.clone(),
            )
            .await?;
            let stdin = kernel_client::create_client_stdin_connection_with_identity(
                info,
                &session_id,
                identity,
            )
            .await?;
            let control =
                kernel_client::create_client_control_connection(info, &session_id).await?;
            Ok::<_, kernel_client::RuntimeError>((iopub, shell, stdin, control))
        };
        let (messages, incoming) = mpsc::channel(BATCH * 4);
        match timeout(STARTUP_LIMIT, connected).await {
            Ok(Ok((iopub, shell, stdin, control))) => {
                let (shell, shell_in) = shell.split();
                let (stdin, stdin_in) = stdin.split();
                let readers = vec![
                    tokio::spawn(read(iopub, Channel::IoPub, messages.clone())),
                    tokio::spawn(read(shell_in, Channel::Shell, messages.clone())),
                    tokio::spawn(read(stdin_in, Channel::Stdin, messages)),
                ];
                Ok(Kernel {
                    processes,
                    pumps,
                    shell,
                    stdin,
                    control,
                    incoming,
                    readers,
                    connection_file,
                    interrupt_by_message: false,
                    output: KernelOutput::default(),
                })
            }
            failed => {
                let message = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                discard(processes, pumps, &connection_file, Duration::ZERO).await;
                Err(StartError::Connect(message))
            }
        }
    }

    /// Asks for the kernel's info until it answers and its published messages arrive (the
    /// subscription to them takes a moment to be in place).
    async fn handshake(&mut self) -> Result<Box<jupyter_protocol::KernelInfoReply>, StartError> {
        let deadline = Instant::now() + STARTUP_LIMIT;
        let mut reply = None;
        let mut published = false;
        let mut next_ask = Instant::now();
        while reply.is_none() || !published {
            if Instant::now() >= next_ask {
                let request = JupyterMessage::new(KernelInfoRequest {}, None);
                self.shell
                    .send(request)
                    .await
                    .map_err(|e| StartError::Connect(e.to_string()))?;
                next_ask = Instant::now() + Duration::from_millis(250);
            }
            tokio::select! {
                status = self.processes.wait() => {
                    let how = match status {
                        Ok(status) => describe_exit(status),
                        Err(e) => e.to_string(),
                    };
                    return Err(StartError::Exited(how));
                }
                message = self.incoming.recv() => match message {
                    Some((Channel::Shell, message)) => {
                        if let JupyterMessageContent::KernelInfoReply(info) = message.content {
                            reply = Some(info);
                        }
                    }
                    Some((Channel::IoPub, _)) => published = true,
                    Some(_) => {}
                    None => return Err(StartError::Connect("the connections closed".into())),
                },
                () = tokio::time::sleep_until(next_ask) => {}
                () = tokio::time::sleep_until(deadline) => return Err(StartError::Silent),
            }
        }
        // Replies to the extra requests may still come; they are dropped as unknown.
        reply.ok_or(StartError::Silent)
    }

    /// Interrupts the code the kernel runs, as its kernelspec says to.
    async fn interrupt(&mut self) {
        if self.interrupt_by_message {
            let request = JupyterMessage::new(jupyter_protocol::InterruptRequest {}, None);
            if let Err(e) = self.control.send(request).await {
                tracing::warn!(error = %e, "cannot send an interrupt request to a kernel");
            }
        } else if let Err(e) = killpg(Pid::from_raw(self.processes.pid() as i32), Signal::SIGINT) {
            tracing::debug!(error = %e, "SIGINT to a kernel failed");
        }
    }

    /// Ends the kernel: asks it to shut down, then terminates what is left after `patience`.
    async fn stop(mut self, patience: Duration) {
        if !patience.is_zero() {
            let request = JupyterMessage::new(ShutdownRequest { restart: false }, None);
            if self.control.send(request).await.is_ok() {
                let _ = timeout(patience, self.processes.wait()).await;
            }
        }
        for reader in &self.readers {
            reader.abort();
        }
        discard(
            self.processes,
            self.pumps,
            &self.connection_file,
            SHUTDOWN_LIMIT,
        )
        .await;
    }
}

/// Ends a kernel's processes (SIGTERM, then SIGKILL after `grace`), reads the rest of their
/// output and removes their connection file.
async fn discard(mut processes: Processes, pumps: Pumps, connection_file: &Path, grace: Duration) {
    processes.terminate(grace).await;
    let kill_at = processes.kill_at();
    tokio::select! {
        _ = processes.wait() => {}
        () = until(kill_at) => processes.kill().await,
    }
    let _ = processes.wait().await;
    processes.end_leftovers(grace).await;
    pumps.drain().await;
    let _ = std::fs::remove_file(connection_file);
}

/// Reads one channel of a kernel into `messages` until it closes.
async fn read<S: zeromq::SocketRecv>(
    mut connection: kernel_client::Connection<S>,
    channel: Channel,
    messages: mpsc::Sender<(Channel, JupyterMessage)>,
) {
    loop {
        match connection.read().await {
            Ok(message) => {
                if messages.send((channel, message)).await.is_err() {
                    return;
                }
            }
            Err(kernel_client::RuntimeError::ZmqError(e)) => {
                tracing::debug!(error = %e, ?channel, "a kernel connection closed");
                return;
            }
            Err(e) => tracing::warn!(error = %e, ?channel, "a message from a kernel was dropped"),
        }
    }
}

/// Writes the connection file, readable by its owner only: it holds the key that signs
/// messages.
fn write_private(path: &Path, info: &ConnectionInfo) -> std::io::Result<()> {
    use std::io::Write;
    let json = serde_json::to_vec(info)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&json)
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (_, Some(signal)) => format!("signal {signal}"),
        _ => "unknown status".to_string(),
    }
}

/// An execution waiting in the queue.
struct Queued {
    id: String,
    request: ExecuteRequest,
}

/// What waits in a session's queue.
enum Waiting {
    Execution(Queued),
    Chore(Chore),
}

/// The execution the kernel is running.
struct Current {
    id: String,
    msg_id: String,
    started: Instant,
    deadline: Option<Instant>,
    /// Why victor is stopping it, once it is.
    stopping: Option<ExecutionStatus>,
    /// When an interrupt that has not worked gives way to a restart.
    restart_at: Option<Instant>,
    reply: Option<(ReplyStatus, Option<u64>)>,
    idle: bool,
    policy: TransactionPolicy,
    input: Option<PendingInput>,
}

/// A request for input the current execution waits on.
struct PendingInput {
    input_id: String,
    password: bool,
    request: JupyterMessage,
}

/// Why a session's loop ends.
enum Ending {
    Stopped(Stop),
    Closed(oneshot::Sender<Result<(), EngineError>>),
    IdleTimeout(Duration),
}

/// A running session.
struct Run<'a> {
    session: &'a Session,
    spec: &'a SessionSpec,
    kernelspec: KernelspecDir,
    log: Log,
    task_id: String,
    queue: VecDeque<Waiting>,
    current: Option<Current>,
    chore: Option<RunningChore>,
    checkpoints: Checkpoints,
    ids: HashSet<String>,
    busy: bool,
    output_limit: u64,
    output_used: u64,
    truncated: bool,
    idle_timeout: Option<Duration>,
    idle_since: Instant,
    interrupt_grace: Duration,
    /// The kernel's language (`python`): transaction policies need Python.
    language: String,
    /// Code to run silently before anything else: the end of a transaction.
    follow_up: Option<&'static str>,
}

async fn run(
    session: &Session,
    ctx: &mut Context,
    spec: &SessionSpec,
    kernelspec: KernelspecDir,
    mut inbox: mpsc::Receiver<Command>,
) -> Result<(), EngineError> {
    let config = ctx.engine().config().clone();
    let mut run = Run {
        session,
        spec,
        kernelspec,
        log: ctx.log().clone(),
        task_id: ctx.id().to_string(),
        queue: VecDeque::new(),
        current: None,
        chore: None,
        checkpoints: ctx.engine().checkpoint_dir(),
        ids: HashSet::new(),
        busy: false,
        output_limit: spec
            .max_output_bytes
            .map_or(config.max_output_bytes, |asked| {
                asked.min(config.max_output_bytes)
            }),
        output_used: 0,
        truncated: false,
        idle_timeout: match spec.idle_timeout_secs {
            Some(0.0) => None,
            Some(secs) => Some(Duration::from_secs_f64(secs)),
            None => config.sessions.idle_timeout,
        },
        idle_since: Instant::now(),
        interrupt_grace: config.sessions.interrupt_grace,
        language: String::new(),
        follow_up: None,
    };
    let (mut kernel, ready) = match run.first_kernel(ctx.engine()).await {
        Ok(started) => started,
        Err(e) => {
            let reason = e.to_string();
            return ctx
                .finish(TaskState::Failed, error_result(&reason), &reason)
                .await;
        }
    };
    run.language = ready.language.clone();
    if let Err(e) = ctx.start(Some(kernel.processes.pid())).await {
        kernel.stop(Duration::ZERO).await;
        return Err(e);
    }
    ctx.append(&ready).await?;

    let ending = loop {
        if let Some(code) = run.follow_up.take() {
            run.send_silent(&mut kernel, code).await;
        }
        if run.current.is_none()
            && run.chore.is_none()
            && let Some(next) = run.queue.pop_front()
        {
            match next {
                Waiting::Execution(next) => run.begin(&mut kernel, next).await?,
                Waiting::Chore(chore) => run.start_chore(&mut kernel, chore).await,
            }
        }
        if run.current.is_none() && run.queue.is_empty() && run.busy {
            run.busy = false;
            run.idle_since = Instant::now();
            run.log
                .append(&SessionStatus {
                    state: SessionState::Idle,
                })
                .await?;
        }
        let idle_at = run
            .idle_timeout
            .filter(|_| !run.busy)
            .map(|limit| run.idle_since + limit);
        let deadline = run
            .current
            .as_ref()
            .and_then(|c| c.deadline.filter(|_| c.stopping.is_none()));
        let restart_at = run.current.as_ref().and_then(|c| c.restart_at);
        tokio::select! {
            Some(incoming) = ctx.next() => {
                if let Incoming::Stop(stop) = incoming {
                    break Ending::Stopped(stop);
                }
                if let Incoming::Control(steer) = incoming {
                    let refused = steer.unsupported();
                    steer.answer(Err(refused));
                }
            }
            Some(command) = inbox.recv() => {
                run.idle_since = Instant::now();
                match command {
                    Command::Close(reply) => break Ending::Closed(reply),
                    Command::Restart(reply) => {
                        match run.restart(kernel, RestartReason::Requested, None).await? {
                            Ok(fresh) => {
                                kernel = fresh;
                                let _ = reply.send(Ok(()));
                            }
                            Err(reason) => {
                                let _ = reply.send(Err(EngineError::Invalid(reason.clone())));
                                return fail(ctx, &reason).await;
                            }
                        }
                    }
                    command => run.command(&mut kernel, command).await?,
                }
            }
            first = kernel.incoming.recv() => match first {
                Some(first) => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match kernel.incoming.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    run.take_in(batch).await?;
                }
                None => {
                    // The connections are gone: the kernel is too, or soon will be.
                    let status = kernel.processes.wait().await.ok();
                    match run.kernel_died(kernel, status).await? {
                        Ok(fresh) => kernel = fresh,
                        Err(reason) => return fail(ctx, &reason).await,
                    }
                }
            },
            status = kernel.processes.wait() => {
                match run.kernel_died(kernel, status.ok()).await? {
                    Ok(fresh) => kernel = fresh,
                    Err(reason) => return fail(ctx, &reason).await,
                }
            }
            () = until(deadline) => {
                if let Some(current) = run.current.as_mut() {
                    current.stopping = Some(ExecutionStatus::TimedOut);
                    current.restart_at = Some(Instant::now() + run.interrupt_grace);
                    kernel.interrupt().await;
                }
            }
            () = until(restart_at) => {
                match run.restart(kernel, RestartReason::InterruptFailed, None).await? {
                    Ok(fresh) => kernel = fresh,
                    Err(reason) => return fail(ctx, &reason).await,
                }
            }
            () = until(idle_at) => {
                if let Some(limit) = run.idle_timeout {
                    break Ending::IdleTimeout(limit);
                }
            }
        }
    };

    let patience = match ending {
        Ending::Stopped(_) => Duration::ZERO,
        _ => SHUTDOWN_LIMIT,
    };
    run.abort_all().await?;
    kernel.stop(patience).await;
    let (state, reason) = match &ending {
        Ending::Stopped(Stop::Cancel) => (TaskState::Cancelled, "cancelled".to_string()),
        Ending::Stopped(Stop::Shutdown) => (
            TaskState::Interrupted,
            "the server shut down while the session was open".to_string(),
        ),
        Ending::Closed(_) => (TaskState::Succeeded, "closed".to_string()),
        Ending::IdleTimeout(limit) => (
            TaskState::Succeeded,
            format!("closed after {}s unused", limit.as_secs_f64()),
        ),
    };
    let result = match state {
        TaskState::Succeeded => TaskResult::default(),
        _ => error_result(&reason),
    };
    let finished = ctx.finish(state, result, &reason).await;
    // Its place is free once it has ended, before whoever closed it hears so.
    session.places().open.remove(ctx.id());
    if let Ending::Closed(reply) = ending {
        let _ = reply.send(
            finished
                .as_ref()
                .map(drop)
                .map_err(|e| EngineError::Invalid(format!("the session closed, but {e}"))),
        );
    }
    finished
}

/// Ends a session whose kernel cannot run any more.
async fn fail(ctx: &Context, reason: &str) -> Result<(), EngineError> {
    ctx.finish(TaskState::Failed, error_result(reason), reason)
        .await
}

impl Run<'_> {
    async fn start_kernel(&self) -> Result<(Kernel, KernelReady), StartError> {
        let output = KernelOutput::to(&self.log);
        Kernel::start(&self.kernelspec, self.spec, output, &self.task_id).await
    }

    /// The session's first kernel: one of the warm pool when one fits (which is then
    /// refilled), else a new one.
    async fn first_kernel(
        &self,
        engine: &Arc<Engine>,
    ) -> Result<(Kernel, KernelReady), StartError> {
        let begun = Instant::now();
        let Some((kernel, mut ready)) = self.session.take_warm(engine, self.spec) else {
            return self.start_kernel().await;
        };
        engine.fill_warm_pool();
        kernel.output.attach(&self.log);
        ready.warm = true;
        ready.startup_ms = begun.elapsed().as_millis() as u64;
        Ok((kernel, ready))
    }

    /// Answers a client's command (close and restart are the loop's).
    async fn command(&mut self, kernel: &mut Kernel, command: Command) -> Result<(), EngineError> {
        match command {
            Command::Execute(request, reply) => {
                let answer = self.enqueue(request).await;
                let _ = reply.send(answer);
            }
            Command::Input(answer, reply) => {
                let answered = self.answer_input(kernel, answer).await;
                let _ = reply.send(answered);
            }
            Command::Interrupt(reply) => {
                let aborted = self.abort_queued().await?;
                let execution_id = match self.current.as_mut() {
                    Some(current) => {
                        current.stopping.get_or_insert(ExecutionStatus::Interrupted);
                        current
                            .restart_at
                            .get_or_insert(Instant::now() + self.interrupt_grace);
                        kernel.interrupt().await;
                        Some(current.id.clone())
                    }
                    None => None,
                };
                let _ = reply.send(Ok(Interrupted {
                    execution_id,
                    aborted,
                }));
            }
            Command::Chore(chore) => {
                if self.language == "python" {
                    self.queue.push_back(Waiting::Chore(chore));
                } else {
                    chore.refuse(EngineError::Invalid(format!(
                        "checkpoints need a Python kernel; this session runs {}",
                        self.language
                    )));
                }
            }
            Command::Restart(reply) | Command::Close(reply) => {
                let _ = reply.send(Err(EngineError::Invalid("not handled here".into())));
            }
        }
        Ok(())
    }

    async fn enqueue(&mut self, request: ExecuteRequest) -> Result<Execution, EngineError> {
        if request.transaction_policy != TransactionPolicy::CommitAlways
            && self.language != "python"
        {
            return Err(EngineError::Invalid(format!(
                "transaction_policy {} needs a Python kernel; this session runs {}",
                request.transaction_policy.as_str(),
                self.language
            )));
        }
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        if !self.ids.insert(id.clone()) {
            return Err(EngineError::Invalid(format!(
                "this session already has an execution `{id}`; give each its own id"
            )));
        }
        let queued = ExecutionQueued {
            execution_id: id.clone(),
            code: request.code.clone(),
            transaction_policy: request.transaction_policy,
            timeout_secs: request.timeout_secs,
        };
        let (kind, data) = encode(&queued)?;
        let stored = self.log.append_stored(vec![(kind, data)]).await?;
        let seq = stored.first().map_or(0, |event| event.seq);
        if let Some(open) = self.session.places().open.get_mut(&self.task_id) {
            open.executions.insert(id.clone(), seq);
        }
        self.queue
            .push_back(Waiting::Execution(Queued { id, request }));
        Ok(Execution::queued(&self.task_id, seq, queued))
    }

    /// Sends the next execution to the kernel.
    async fn begin(&mut self, kernel: &mut Kernel, next: Queued) -> Result<(), EngineError> {
        let mut events = Vec::with_capacity(2);
        if !self.busy {
            self.busy = true;
            events.push(encode(&SessionStatus {
                state: SessionState::Busy,
            })?);
        }
        events.push(encode(&ExecutionStarted {
            execution_id: next.id.clone(),
        })?);
        self.log.append_encoded(events).await?;
        let policy = next.request.transaction_policy;
        if policy != TransactionPolicy::CommitAlways {
            self.send_silent(kernel, SNAPSHOT).await;
        }
        let mut request = KernelExecute::new(next.request.code.clone());
        request.allow_stdin = next.request.allow_stdin;
        request.stop_on_error = false;
        let message = JupyterMessage::new(request, None);
        let msg_id = message.header.msg_id.clone();
        let now = Instant::now();
        self.current = Some(Current {
            id: next.id.clone(),
            msg_id,
            started: now,
            deadline: next
                .request
                .timeout_secs
                .map(|secs| now + Duration::from_secs_f64(secs)),
            stopping: None,
            restart_at: None,
            reply: None,
            idle: false,
            policy,
            input: None,
        });
        if let Err(e) = kernel.shell.send(message).await {
            tracing::warn!(task = %self.task_id, error = %e, "cannot send code to a kernel");
            self.finish_current(ExecutionStatus::KernelDied).await?;
        }
        Ok(())
    }

    /// Turns what the kernel sent into events, in one write, and ends the current execution
    /// when its reply and its `idle` have both come.
    async fn take_in(&mut self, batch: Vec<(Channel, JupyterMessage)>) -> Result<(), EngineError> {
        let mut events: Vec<(&'static str, serde_json::Value)> = Vec::new();
        let mut text: Option<(OutputStream, String)> = None;
        let flush = |text: &mut Option<(OutputStream, String)>,
                     events: &mut Vec<(&'static str, serde_json::Value)>,
                     id: &str|
         -> Result<(), EngineError> {
            if let Some((stream, text)) = text.take() {
                events.push(encode(&ExecutionOutput {
                    execution_id: id.to_string(),
                    stream,
                    text,
                })?);
            }
            Ok(())
        };
        let mut chore_reply = None;
        for (channel, message) in batch {
            if let Some(chore) = &self.chore
                && message
                    .parent_header
                    .as_ref()
                    .is_some_and(|parent| parent.msg_id == chore.msg_id)
            {
                if let JupyterMessageContent::ExecuteReply(reply) = message.content
                    && channel == Channel::Shell
                {
                    chore_reply = Some(reply);
                }
                continue;
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            let ours = message
                .parent_header
                .as_ref()
                .is_some_and(|parent| parent.msg_id == current.msg_id);
            if !ours {
                continue;
            }
            let id = current.id.clone();
            let asking = (channel == Channel::Stdin).then(|| message.clone());
            match (channel, message.content) {
                (Channel::IoPub, JupyterMessageContent::StreamContent(stream)) => {
                    let stream_of = match stream.name {
                        Stdio::Stdout => OutputStream::Stdout,
                        Stdio::Stderr => OutputStream::Stderr,
                    };
                    let kept = self.budget(&stream.text, &mut events)?;
                    if text.as_ref().is_some_and(|(open, _)| *open != stream_of) {
                        flush(&mut text, &mut events, &id)?;
                    }
                    // Joined into events of at most EVENT_TEXT bytes: the bus keeps a ring
                    // of events per task, so their size bounds its memory.
                    let mut rest = kept;
                    while !rest.is_empty() {
                        let (_, buffer) = text.get_or_insert_with(|| (stream_of, String::new()));
                        let mut end = EVENT_TEXT.saturating_sub(buffer.len()).min(rest.len());
                        while !rest.is_char_boundary(end) {
                            end -= 1;
                        }
                        buffer.push_str(&rest[..end]);
                        rest = &rest[end..];
                        if !rest.is_empty() {
                            flush(&mut text, &mut events, &id)?;
                        }
                    }
                }
                (Channel::IoPub, content) => {
                    flush(&mut text, &mut events, &id)?;
                    if let Some(event) = self.event_of(&id, content)? {
                        events.push(event);
                    }
                }
                (Channel::Shell, JupyterMessageContent::ExecuteReply(reply)) => {
                    let count = Some(reply.execution_count.0 as u64).filter(|&n| n > 0);
                    current.reply = Some((reply.status, count));
                }
                (Channel::Stdin, JupyterMessageContent::InputRequest(request)) => {
                    flush(&mut text, &mut events, &id)?;
                    let input_id = uuid::Uuid::now_v7().to_string();
                    events.push(encode(&InputRequested {
                        execution_id: id.clone(),
                        input_id: input_id.clone(),
                        prompt: request.prompt.clone(),
                        password: request.password,
                    })?);
                    if let Some(asking) = asking {
                        current.input = Some(PendingInput {
                            input_id,
                            password: request.password,
                            request: asking,
                        });
                    }
                }
                _ => {}
            }
        }
        if let Some(current) = &self.current {
            flush(&mut text, &mut events, &current.id)?;
        }
        if !events.is_empty() {
            self.log.append_encoded(events).await?;
        }
        if let Some(reply) = chore_reply {
            self.end_chore(&reply).await?;
        }
        if let Some(current) = &self.current
            && current.idle
            && let Some((status, _)) = &current.reply
        {
            let status = match (status, current.stopping) {
                (ReplyStatus::Ok, _) => ExecutionStatus::Ok,
                (ReplyStatus::Error, Some(stopping)) => stopping,
                (ReplyStatus::Error, None) => ExecutionStatus::Error,
                (ReplyStatus::Aborted, _) => ExecutionStatus::Aborted,
            };
            self.finish_current(status).await?;
        }
        Ok(())
    }

    /// What of `text` fits the session's output budget; the first time it does not, a
    /// `truncated` event.
    fn budget<'t>(
        &mut self,
        text: &'t str,
        events: &mut Vec<(&'static str, serde_json::Value)>,
    ) -> Result<&'t str, EngineError> {
        let room = self.output_limit.saturating_sub(self.output_used) as usize;
        let mut end = room.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.output_used += end as u64;
        if end < text.len() && !self.truncated {
            self.truncated = true;
            events.push(encode(&TruncatedData {
                limit_bytes: self.output_limit,
            })?);
        }
        Ok(&text[..end])
    }

    /// The event of one published message of the current execution.
    fn event_of(
        &mut self,
        id: &str,
        content: JupyterMessageContent,
    ) -> Result<Option<(&'static str, serde_json::Value)>, EngineError> {
        let execution_id = id.to_string();
        let event = match content {
            JupyterMessageContent::DisplayData(display) => encode(&ExecutionDisplay {
                execution_id,
                data: bundle(&display.data),
                metadata: metadata(display.metadata),
                display_id: display.transient.and_then(|t| t.display_id),
                update: false,
            })?,
            JupyterMessageContent::UpdateDisplayData(display) => encode(&ExecutionDisplay {
                execution_id,
                data: bundle(&display.data),
                metadata: metadata(display.metadata),
                display_id: display.transient.display_id,
                update: true,
            })?,
            JupyterMessageContent::ExecuteResult(result) => encode(&ExecutionResult {
                execution_id,
                execution_count: Some(result.execution_count.0 as u64),
                data: bundle(&result.data),
                metadata: metadata(result.metadata),
            })?,
            JupyterMessageContent::ErrorOutput(error) => encode(&ExecutionError {
                execution_id,
                name: error.ename,
                value: error.evalue,
                traceback: error.traceback,
            })?,
            JupyterMessageContent::ClearOutput(clear) => encode(&ExecutionCleared {
                execution_id,
                wait: clear.wait,
            })?,
            JupyterMessageContent::Status(status) => {
                if status.execution_state == ExecutionState::Idle
                    && let Some(current) = self.current.as_mut()
                {
                    current.idle = true;
                }
                return Ok(None);
            }
            _ => return Ok(None),
        };
        Ok(Some(event))
    }

    async fn answer_input(
        &mut self,
        kernel: &mut Kernel,
        answer: InputAnswer,
    ) -> Result<InputAnswered, EngineError> {
        let waiting = self.current.as_mut().and_then(|current| {
            current
                .input
                .take()
                .map(|input| (current.id.clone(), input))
        });
        let Some((execution_id, input)) = waiting else {
            return Err(EngineError::NoInputWanted(self.task_id.clone()));
        };
        if let Some(asked) = &answer.input_id
            && *asked != input.input_id
        {
            let message = format!(
                "input request {asked} is not the one waiting (that is {})",
                input.input_id
            );
            if let Some(current) = self.current.as_mut() {
                current.input = Some(input);
            }
            return Err(EngineError::Invalid(message));
        }
        let reply = InputReply {
            value: answer.value.clone(),
            ..InputReply::default()
        }
        .as_child_of(&input.request);
        if let Err(e) = kernel.stdin.send(reply).await {
            tracing::warn!(task = %self.task_id, error = %e, "cannot send input to a kernel");
        }
        let answered = InputAnswered {
            execution_id,
            input_id: input.input_id,
            value: (!input.password).then_some(answer.value),
        };
        self.log.append(&answered).await?;
        Ok(answered)
    }

    async fn finish_current(&mut self, status: ExecutionStatus) -> Result<(), EngineError> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        self.idle_since = Instant::now();
        let count = current.reply.and_then(|(_, count)| count);
        let failed = matches!(
            status,
            ExecutionStatus::Error | ExecutionStatus::Interrupted | ExecutionStatus::TimedOut
        );
        let rolled_back = match current.policy {
            TransactionPolicy::CommitAlways => false,
            // A kernel that died has nothing to roll back.
            _ if status == ExecutionStatus::KernelDied || status == ExecutionStatus::Aborted => {
                false
            }
            TransactionPolicy::RollbackOnFailure => failed,
            TransactionPolicy::RollbackAlways => true,
        };
        if current.policy != TransactionPolicy::CommitAlways {
            self.follow_up = Some(if rolled_back { ROLLBACK } else { COMMIT });
        }
        self.log
            .append(&ExecutionFinished {
                execution_id: current.id,
                status,
                execution_count: count,
                duration_ms: current.started.elapsed().as_millis() as u64,
                rolled_back,
            })
            .await
    }

    /// Runs code the session's clients do not see: no output, no history, no input. Returns
    /// the request's id, unless it could not be sent.
    async fn send_silent(&self, kernel: &mut Kernel, code: &str) -> Option<String> {
        let mut request = KernelExecute::new(code.to_string());
        request.silent = true;
        request.store_history = false;
        request.allow_stdin = false;
        request.stop_on_error = false;
        let message = JupyterMessage::new(request, None);
        let msg_id = message.header.msg_id.clone();
        match kernel.shell.send(message).await {
            Ok(()) => Some(msg_id),
            Err(e) => {
                tracing::warn!(task = %self.task_id, error = %e, "cannot send code to a kernel");
                None
            }
        }
    }

    /// Sends the kernel the code of a checkpoint or a restore.
    async fn start_chore(&mut self, kernel: &mut Kernel, chore: Chore) {
        if let Err(e) = self.checkpoints.make_dir() {
            return chore.refuse(e);
        }
        let report = self.checkpoints.report();
        let (checkpoint_id, code) = match &chore {
            Chore::Checkpoint(..) => {
                let id = checkpoints::new_id();
                let code = checkpoints::save_code(&self.checkpoints.data(&id), &report);
                (id, code)
            }
            Chore::Restore(checkpoint, _) => {
                let data = self.checkpoints.data(&checkpoint.id);
                (
                    checkpoint.id.clone(),
                    checkpoints::restore_code(&data, &report),
                )
            }
        };
        match self.send_silent(kernel, &code).await {
            Some(msg_id) => {
                self.chore = Some(RunningChore {
                    msg_id,
                    checkpoint_id,
                    report,
                    chore,
                });
            }
            None => chore.refuse(EngineError::CheckpointFailed(
                "the kernel cannot be reached".into(),
            )),
        }
    }

    /// Ends the running chore with the kernel's reply: says what was saved or restored, in
    /// the log and to whoever asked.
    async fn end_chore(
        &mut self,
        reply: &jupyter_protocol::ExecuteReply,
    ) -> Result<(), EngineError> {
        let Some(running) = self.chore.take() else {
            return Ok(());
        };
        let failed = match (&reply.status, &reply.error) {
            (ReplyStatus::Ok, _) => None,
            (_, Some(error)) => Some(format!("{}: {}", error.ename, error.evalue)),
            (status, None) => Some(format!("the kernel answered {status:?}")),
        };
        let id = running.checkpoint_id;
        match running.chore {
            Chore::Checkpoint(request, answer) => {
                let outcome = match failed {
                    Some(why) => Err(EngineError::CheckpointFailed(format!(
                        "the kernel could not save the checkpoint: {why}"
                    ))),
                    None => self.saved(&id, request, &running.report),
                };
                let _ = std::fs::remove_file(&running.report);
                match outcome {
                    Ok(checkpoint) => {
                        self.log
                            .append(&CheckpointSaved {
                                checkpoint: checkpoint.clone(),
                            })
                            .await?;
                        let _ = answer.send(Ok(checkpoint));
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(self.checkpoints.data(&id));
                        let _ = answer.send(Err(e));
                    }
                }
            }
            Chore::Restore(_, answer) => {
                let outcome = match failed {
                    Some(why) => Err(EngineError::CheckpointFailed(format!(
                        "the kernel could not restore checkpoint {id}: {why}"
                    ))),
                    None => checkpoints::read_report::<RestoreReport>(&running.report),
                };
                let _ = std::fs::remove_file(&running.report);
                match outcome {
                    Ok(report) => {
                        let restored = Restored {
                            checkpoint_id: id,
                            restored: report.restored,
                            failed: report.failed,
                        };
                        self.log.append(&restored).await?;
                        let _ = answer.send(Ok(restored));
                    }
                    Err(e) => drop(answer.send(Err(e))),
                }
            }
        }
        Ok(())
    }

    /// The checkpoint the kernel just saved, described in the checkpoint directory.
    fn saved(
        &self,
        id: &str,
        request: CheckpointRequest,
        report: &Path,
    ) -> Result<SessionCheckpoint, EngineError> {
        let report: SaveReport = checkpoints::read_report(report)?;
        let size_bytes = std::fs::metadata(self.checkpoints.data(id)).map_or(0, |m| m.len());
        let checkpoint = SessionCheckpoint {
            id: id.to_string(),
            session_id: self.task_id.clone(),
            client: self.spec.client.clone(),
            name: request.name,
            kernel: self.kernelspec.kernel_name.clone(),
            serializer: report.serializer,
            saved: report.saved,
            skipped: report.skipped,
            size_bytes,
            created_at: jiff::Timestamp::now(),
        };
        self.checkpoints.describe(&checkpoint)?;
        Ok(checkpoint)
    }

    /// Gives up the running chore: the kernel it ran in is gone.
    fn drop_chore(&mut self, why: &str) {
        if let Some(running) = self.chore.take() {
            let _ = std::fs::remove_file(&running.report);
            if matches!(running.chore, Chore::Checkpoint(..)) {
                let _ = std::fs::remove_file(self.checkpoints.data(&running.checkpoint_id));
            }
            running
                .chore
                .refuse(EngineError::CheckpointFailed(why.to_string()));
        }
    }

    /// Drops the queued executions, each `aborted`, and chores; returns the executions' ids.
    async fn abort_queued(&mut self) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        for waiting in self.queue.drain(..) {
            match waiting {
                Waiting::Execution(queued) => ids.push(queued.id),
                Waiting::Chore(chore) => chore.refuse(EngineError::CheckpointFailed(
                    "the session dropped what was queued before its turn came".into(),
                )),
            }
        }
        let events = ids
            .iter()
            .map(|id| {
                encode(&ExecutionFinished {
                    execution_id: id.clone(),
                    status: ExecutionStatus::Aborted,
                    execution_count: None,
                    duration_ms: 0,
                    rolled_back: false,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !events.is_empty() {
            self.log.append_encoded(events).await?;
        }
        Ok(ids)
    }

    /// Ends every execution: the running one and the queued ones never finish now.
    async fn abort_all(&mut self) -> Result<(), EngineError> {
        self.drop_chore("the session ended before it was done");
        self.finish_current(ExecutionStatus::Aborted).await?;
        self.abort_queued().await.map(drop)
    }

    /// Replaces the kernel; the running execution ends as `interrupted` when its interrupt
    /// failed, else `aborted`. The outer error is victor's; the inner one says why no new
    /// kernel runs.
    async fn restart(
        &mut self,
        old: Kernel,
        reason: RestartReason,
        exit: Option<std::process::ExitStatus>,
    ) -> Result<Result<Kernel, String>, EngineError> {
        let status = match (reason, self.current.as_ref().and_then(|c| c.stopping)) {
            (RestartReason::KernelDied, _) => ExecutionStatus::KernelDied,
            (RestartReason::InterruptFailed, Some(stopping)) => stopping,
            _ => ExecutionStatus::Aborted,
        };
        self.finish_current(status).await?;
        self.drop_chore("the kernel was replaced before it was done");
        if reason == RestartReason::Requested {
            self.abort_queued().await?;
        }
        self.log
            .append(&SessionRestarting {
                reason,
                exit_code: exit.and_then(|s| s.code()),
                signal: exit.and_then(|s| s.signal()),
            })
            .await?;
        let patience = match reason {
            RestartReason::Requested => SHUTDOWN_LIMIT,
            _ => Duration::ZERO,
        };
        old.stop(patience).await;
        match self.start_kernel().await {
            Ok((kernel, ready)) => {
                self.follow_up = None;
                self.log.append(&ready).await?;
                Ok(Ok(kernel))
            }
            Err(e) => {
                self.abort_queued().await?;
                Ok(Err(format!("the kernel could not be restarted: {e}")))
            }
        }
    }

    async fn kernel_died(
        &mut self,
        kernel: Kernel,
        status: Option<std::process::ExitStatus>,
    ) -> Result<Result<Kernel, String>, EngineError> {
        tracing::warn!(task = %self.task_id, ?status, "a session's kernel died");
        self.restart(kernel, RestartReason::KernelDied, status)
            .await
    }
}

/// Takes one event of a session's log into the execution `wanted`, which starts at its
/// `execution.queued`. Returns whether the execution has ended.
fn fold(
    execution: &mut Option<Execution>,
    wanted: &str,
    session_id: &str,
    event: &crate::proto::Event,
) -> bool {
    match execution {
        Some(execution) => execution.apply(event),
        None => {
            if let Some(queued) = event.decode::<ExecutionQueued>()
                && queued.execution_id == wanted
            {
                *execution = Some(Execution::queued(session_id, event.seq, queued));
            }
            false
        }
    }
}

/// A MIME bundle as the kernel sent it.
fn bundle(media: &jupyter_protocol::Media) -> MimeBundle {
    match serde_json::to_value(media) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => MimeBundle::new(),
    }
}

fn metadata(map: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    if map.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Object(map)
    }
}
