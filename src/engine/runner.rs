//! The task-kind seam. A kind is a [`Runner`]: it says how its spec is checked and filled in,
//! whether its tasks wait for a concurrency slot, which controls it takes, and how a task
//! runs, through a [`Context`] that records its events and state changes and hands it its
//! controls. A new kind is its spec type in `proto` (one line in `task_kinds!`), its runner's
//! file here, and one line in the `kinds!` registry of `mod.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError};
use crate::proto::{EventData, Input, SpecVariant, Task, TaskResult, TaskSpec, TaskState};
use crate::store::{ConversationAppend, SharedStore, StoreError};

/// Whether a kind's tasks wait for one of the server's concurrency slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Queued by priority, started when a slot is free.
    Queued,
    /// Started at once, holding no slot: a person is waiting and the work is done elsewhere
    /// (a chat turn's provider).
    Immediate,
}

/// A request that steers a running task. A kind takes those its [`Runner::accepts`]; the others
/// are refused with "cannot {action} a {kind} task".
#[derive(Debug)]
pub(super) enum Control {
    Pause,
    Resume,
    Input(Input),
    /// A person's message for an agent, before its next model call.
    Guidance(String),
}

impl Control {
    pub(super) fn action(&self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Input(_) => "send input to",
            Control::Guidance(_) => "guide",
        }
    }
}

/// Why victor ends a running task. Every kind takes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Cancel,
    /// The server is stopping: end the task and mark it interrupted.
    Shutdown,
}

/// What the engine sends a running task.
#[derive(Debug)]
pub(super) enum Request {
    Stop(Stop),
    Control(Control),
}

impl Request {
    pub(super) fn action(&self) -> &'static str {
        match self {
            Request::Stop(Stop::Cancel) => "cancel",
            Request::Stop(Stop::Shutdown) => "shut down",
            Request::Control(control) => control.action(),
        }
    }
}

/// A request with the channel its answer goes back on.
pub(super) type Message = (Request, oneshot::Sender<Result<(), EngineError>>);

/// One task kind: what the engine asks of it.
#[async_trait]
pub(super) trait Runner: Send + Sync + 'static {
    /// The kind's spec: one variant of [`TaskSpec`].
    type Spec: SpecVariant;

    /// Whether its tasks wait for a concurrency slot.
    const SLOT: Slot = Slot::Queued;

    /// Whether a running task of this kind takes `control`.
    fn accepts(&self, control: &Control) -> bool;

    /// Checks a new task's spec and fills in what it leaves to the server, before the task is
    /// stored. It may reserve something for the task, which [`Runner::stored`] keeps or gives
    /// back. It gives back what it reserved when it fails, and when it is dropped before it
    /// ends (the request that asked was given up).
    async fn prepare(&self, engine: &Engine, spec: &mut Self::Spec) -> Result<(), EngineError>;

    /// After the create, once for every `prepare` that succeeded, even when whoever asked has
    /// gone away: `task` is the task made from `spec`, or `None` when none was (an error, or
    /// an earlier task with the same idempotency key).
    fn stored(&self, _spec: &Self::Spec, _task: Option<&Task>) {}

    /// Runs a task from `queued` to a final state, recording each step through `ctx`. Errors
    /// are victor's (the store's): the task's own failures are its result.
    async fn run(&self, ctx: &mut Context, spec: &Self::Spec) -> Result<(), EngineError>;

    /// The task has stopped running, however it ended.
    fn ended(&self, _task_id: &str) {}
}

/// A [`Runner`] of any spec type, as the engine holds it.
#[async_trait]
pub(super) trait Kind: Send + Sync {
    fn name(&self) -> &'static str;
    fn slot(&self) -> Slot;
    fn accepts(&self, control: &Control) -> bool;
    async fn prepare(&self, engine: &Engine, spec: &mut TaskSpec) -> Result<(), EngineError>;
    fn stored(&self, spec: &TaskSpec, task: Option<&Task>);
    async fn run(&self, ctx: &mut Context) -> Result<(), EngineError>;
    fn ended(&self, task_id: &str);
}

#[async_trait]
impl<R: Runner> Kind for R {
    fn name(&self) -> &'static str {
        R::Spec::KIND
    }

    fn slot(&self) -> Slot {
        R::SLOT
    }

    fn accepts(&self, control: &Control) -> bool {
        Runner::accepts(self, control)
    }

    async fn prepare(&self, engine: &Engine, spec: &mut TaskSpec) -> Result<(), EngineError> {
        let kind = spec.kind();
        match R::Spec::of_mut(spec) {
            Some(spec) => Runner::prepare(self, engine, spec).await,
            None => Err(mismatch::<R>(kind)),
        }
    }

    fn stored(&self, spec: &TaskSpec, task: Option<&Task>) {
        if let Some(spec) = R::Spec::of(spec) {
            Runner::stored(self, spec, task);
        }
    }

    async fn run(&self, ctx: &mut Context) -> Result<(), EngineError> {
        let spec = R::Spec::of(&ctx.task.spec)
            .cloned()
            .ok_or_else(|| mismatch::<R>(ctx.task.spec.kind()))?;
        Runner::run(self, ctx, &spec).await
    }

    fn ended(&self, task_id: &str) {
        Runner::ended(self, task_id);
    }
}

fn mismatch<R: Runner>(kind: &str) -> EngineError {
    EngineError::Invalid(format!(
        "the {} runner was handed a {kind} task",
        R::Spec::KIND
    ))
}

/// What a running task receives.
pub(super) enum Incoming {
    /// Answered already; [`Context::stopped`] has fired.
    Stop(Stop),
    /// For the runner to apply and answer.
    Control(Steer),
}

/// A control for the runner to apply and answer.
pub(super) struct Steer {
    pub control: Control,
    kind: &'static str,
    reply: oneshot::Sender<Result<(), EngineError>>,
}

impl Steer {
    pub fn answer(self, answer: Result<(), EngineError>) {
        let _ = self.reply.send(answer);
    }

    /// The refusal of a control the task's kind does not take (the engine refuses those before
    /// they reach a runner).
    pub fn unsupported(&self) -> EngineError {
        EngineError::Unsupported {
            action: self.control.action(),
            kind: self.kind,
        }
    }
}

/// A running task as its runner sees it: its record, its log, its state, and its controls.
pub(super) struct Context {
    engine: Arc<Engine>,
    task: Task,
    log: Log,
    inbox: mpsc::Receiver<Message>,
    paused: bool,
    stop: Option<Stop>,
    stopped: CancellationToken,
}

impl Context {
    pub(super) fn new(engine: Arc<Engine>, task: Task, inbox: mpsc::Receiver<Message>) -> Context {
        let log = Log {
            store: engine.store.clone(),
            task_id: task.id.clone(),
        };
        Context {
            engine,
            task,
            log,
            inbox,
            paused: false,
            stop: None,
            stopped: CancellationToken::new(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn task(&self) -> &Task {
        &self.task
    }

    pub fn id(&self) -> &str {
        &self.task.id
    }

    /// The task's log, to append to from anywhere (an output pump, a writer task).
    pub fn log(&self) -> &Log {
        &self.log
    }

    pub async fn append<T: EventData>(&self, data: &T) -> Result<(), EngineError> {
        self.log.append(data).await
    }

    /// The next request: a stop (answered here) or a control to apply and answer. `None`
    /// when the engine has let go of the task. Cancel-safe.
    pub async fn next(&mut self) -> Option<Incoming> {
        let message = self.inbox.recv().await?;
        Some(self.receive(message))
    }

    /// [`Context::next`] without waiting.
    pub fn try_next(&mut self) -> Option<Incoming> {
        let message = self.inbox.try_recv().ok()?;
        Some(self.receive(message))
    }

    fn receive(&mut self, (request, reply): Message) -> Incoming {
        match request {
            Request::Stop(stop) => {
                let _ = reply.send(Ok(()));
                self.stop.get_or_insert(stop);
                self.stopped.cancel();
                Incoming::Stop(stop)
            }
            Request::Control(control) => Incoming::Control(Steer {
                control,
                kind: self.task.spec.kind(),
                reply,
            }),
        }
    }

    /// The first stop received, if one was.
    pub fn stopping(&self) -> Option<Stop> {
        self.stop
    }

    /// Fires with the first stop: hand it to whatever must end with the task.
    pub fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The error for a control that does not fit the task's state now.
    pub fn wrong_state(&self, action: &'static str) -> EngineError {
        EngineError::WrongState {
            id: self.task.id.clone(),
            state: if self.paused {
                TaskState::Paused
            } else {
                TaskState::Running
            },
            action,
        }
    }

    /// Queued → running, with the process id when there is one.
    pub async fn start(&self, pid: Option<u32>) -> Result<(), EngineError> {
        self.engine
            .change_state(&self.task.id, TaskState::Running, &[TaskState::Queued], pid)
            .await
            .map(drop)
    }

    /// Running → paused; refused when paused already. The task is still running when this
    /// fails.
    pub async fn pause(&mut self) -> Result<(), EngineError> {
        self.set_paused(true, "pause").await
    }

    /// Paused → running; refused when not paused. The task is still paused when this fails.
    pub async fn resume(&mut self) -> Result<(), EngineError> {
        self.set_paused(false, "resume").await
    }

    async fn set_paused(&mut self, paused: bool, action: &'static str) -> Result<(), EngineError> {
        if self.paused == paused {
            return Err(self.wrong_state(action));
        }
        let (state, from): (_, &'static [TaskState]) = if paused {
            (TaskState::Paused, &[TaskState::Running])
        } else {
            (TaskState::Running, &[TaskState::Paused])
        };
        // Only once recorded: a task's state is what its record says.
        self.engine
            .change_state(&self.task.id, state, from, None)
            .await?;
        self.paused = paused;
        Ok(())
    }

    /// Moves the task to its final state with its result.
    pub async fn finish(
        &self,
        state: TaskState,
        result: TaskResult,
        reason: &str,
    ) -> Result<(), EngineError> {
        self.finish_with(state, result, reason, None).await
    }

    /// [`Context::finish`], adding messages to a conversation in the same write.
    pub async fn finish_with(
        &self,
        state: TaskState,
        result: TaskResult,
        reason: &str,
        messages: Option<ConversationAppend>,
    ) -> Result<(), EngineError> {
        self.engine
            .finish_with(&self.task.id, state, result, reason, messages)
            .await
            .map(drop)
    }
}

/// A task's event log.
#[derive(Clone)]
pub(super) struct Log {
    store: SharedStore,
    task_id: String,
}

impl Log {
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    pub async fn append<T: EventData>(&self, data: &T) -> Result<(), EngineError> {
        self.append_encoded(vec![encode(data)?]).await
    }

    /// Appends events encoded with [`encode`], in order, in one write.
    pub async fn append_encoded(
        &self,
        events: Vec<(&'static str, serde_json::Value)>,
    ) -> Result<(), EngineError> {
        self.append_stored(events).await.map(drop)
    }

    /// [`Log::append_encoded`], returning the events as stored (with their `seq`).
    pub async fn append_stored(
        &self,
        events: Vec<(&'static str, serde_json::Value)>,
    ) -> Result<Vec<crate::proto::Event>, EngineError> {
        Ok(self.store.append(&self.task_id, events).await?)
    }
}

/// An event's type and data, ready to append.
pub(super) fn encode<T: EventData>(
    data: &T,
) -> Result<(&'static str, serde_json::Value), EngineError> {
    data.encode().map_err(|e| EngineError::Encode {
        kind: T::TYPE,
        message: e.to_string(),
    })
}

/// A piece of a model's streamed reply, before it is written.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Event(&'static str, serde_json::Value),
}

/// Writes a model's streamed events in order without making the stream wait for each commit:
/// whatever arrives while one write is committing goes into the next, and adjacent pieces of
/// text are joined into one delta event, so a fast model costs one write per commit rather
/// than per token.
pub(super) struct DeltaWriter {
    pieces: mpsc::UnboundedSender<Piece>,
    writer: tokio::task::JoinHandle<Result<(), EngineError>>,
}

impl DeltaWriter {
    /// Starts writing to `log`; text becomes the events `delta` makes of it.
    pub fn start<D: EventData + Send + 'static>(log: Log, delta: fn(String) -> D) -> DeltaWriter {
        let (pieces, mut waiting) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                while let Ok(next) = waiting.try_recv() {
                    batch.push(next);
                }
                let events = joined(batch)
                    .into_iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => encode(&delta(text)),
                        Piece::Event(kind, data) => Ok((kind, data)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                log.append_encoded(events).await?;
            }
            Ok(())
        });
        DeltaWriter { pieces, writer }
    }

    pub fn text(&self, text: String) {
        // The writer ends only when this sender is dropped, or on an error that `finish`
        // reports.
        let _ = self.pieces.send(Piece::Text(text));
    }

    pub fn event<T: EventData>(&self, data: &T) -> Result<(), EngineError> {
        let (kind, data) = encode(data)?;
        let _ = self.pieces.send(Piece::Event(kind, data));
        Ok(())
    }

    /// Waits until everything sent is stored.
    pub async fn finish(self) -> Result<(), EngineError> {
        drop(self.pieces);
        match self.writer.await {
            Ok(written) => written,
            Err(e) => {
                tracing::error!(error = %e, "a model stream's event writer failed");
                Err(EngineError::Store(StoreError::Closed))
            }
        }
    }
}

/// The pieces with each run of adjacent text joined into one.
fn joined(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match (out.last_mut(), piece) {
            (Some(Piece::Text(last)), Piece::Text(more)) => last.push_str(&more),
            (_, piece) => out.push(piece),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn adjacent_deltas_join_into_one() {
        let pieces = vec![
            Piece::Text("Hel".into()),
            Piece::Text("lo ✓".into()),
            Piece::Event("chat.tool_call", json!({"n": 1})),
            Piece::Text("a".into()),
            Piece::Text("b".into()),
        ];
        assert_eq!(
            joined(pieces),
            [
                Piece::Text("Hello ✓".into()),
                Piece::Event("chat.tool_call", json!({"n": 1})),
                Piece::Text("ab".into()),
            ]
        );
    }
}
