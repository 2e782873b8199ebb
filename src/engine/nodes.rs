//! What the engine does when it shares its store with other nodes: it takes queued tasks that
//! any node created (those its labels allow), marks interrupted the tasks of nodes whose lease
//! ran out, answers the controls other nodes forward for tasks it runs, and forwards those for
//! tasks that another node runs.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::runner::{Control, Request, Stop};
use super::{Engine, EngineError};
use crate::bus::Topic;
use crate::proto::{Input, Task, TaskSpec, TaskState, types};
use crate::store::{Cluster, StoreError};

/// How long a node waits for the node that runs a task to answer a control.
const PATIENCE: Duration = Duration::from_secs(10);
/// Bounds of how often a node looks for nodes whose lease ran out.
const LEASE_CHECK_MIN: Duration = Duration::from_millis(100);
const LEASE_CHECK_MAX: Duration = Duration::from_secs(1);

/// A control as one node forwards it to another.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Forwarded {
    Cancel { id: String },
    Pause { id: String },
    Resume { id: String },
    Input { id: String, input: Input },
    Guidance { id: String, text: String },
}

/// The answer of the node that runs the task: done, or the error it would have answered its
/// own clients.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Answer {
    Done,
    NotFound,
    WrongState { state: TaskState },
    Unsupported { kind: String },
    StdinClosed,
    StdinFull,
    Failed { message: String },
}

impl Forwarded {
    fn of(id: &str, request: &Request) -> Option<Forwarded> {
        let id = id.to_string();
        Some(match request {
            Request::Stop(Stop::Cancel) => Forwarded::Cancel { id },
            Request::Stop(Stop::Shutdown) => return None,
            Request::Control(Control::Pause) => Forwarded::Pause { id },
            Request::Control(Control::Resume) => Forwarded::Resume { id },
            Request::Control(Control::Input(input)) => Forwarded::Input {
                id,
                input: input.clone(),
            },
            Request::Control(Control::Guidance(text)) => Forwarded::Guidance {
                id,
                text: text.clone(),
            },
        })
    }

    fn into_request(self) -> (String, Request) {
        match self {
            Forwarded::Cancel { id } => (id, Request::Stop(Stop::Cancel)),
            Forwarded::Pause { id } => (id, Request::Control(Control::Pause)),
            Forwarded::Resume { id } => (id, Request::Control(Control::Resume)),
            Forwarded::Input { id, input } => (id, Request::Control(Control::Input(input))),
            Forwarded::Guidance { id, text } => (id, Request::Control(Control::Guidance(text))),
        }
    }
}

impl Engine {
    /// Starts what a node sharing its store runs beside its own tasks.
    pub(super) fn join_cluster(self: &Arc<Self>) {
        if self.store.cluster().is_none() {
            return;
        }
        tokio::spawn(take_queued(Arc::downgrade(self)));
        tokio::spawn(watch_leases(Arc::downgrade(self)));
        tokio::spawn(answer_controls(Arc::downgrade(self)));
    }

    /// Whether this node may run a task: it has every label the task requires.
    pub(super) fn can_run(&self, task: &Task) -> bool {
        task.requires
            .iter()
            .all(|label| self.config.labels.contains(label))
    }

    /// Sends a control to the node that runs the task, and answers what it answered.
    pub(super) async fn forward(
        &self,
        cluster: &dyn Cluster,
        node: &str,
        id: &str,
        request: &Request,
    ) -> Result<Task, EngineError> {
        let action = request.action();
        let Some(forwarded) = Forwarded::of(id, request) else {
            return Err(EngineError::ShuttingDown);
        };
        let question =
            serde_json::to_string(&forwarded).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let reply = cluster.ask(node, question, PATIENCE).await?;
        let answer: Answer = serde_json::from_str(&reply)
            .map_err(|e| StoreError::Corrupt(format!("node {node} answered {reply}: {e}")))?;
        match answer {
            Answer::Done => self.get(id).await,
            Answer::NotFound => Err(EngineError::NotFound(id.to_string())),
            Answer::WrongState { state } => Err(EngineError::WrongState {
                id: id.to_string(),
                state,
                action,
            }),
            Answer::Unsupported { kind } => Err(EngineError::Unsupported {
                action,
                kind: TaskSpec::KINDS
                    .iter()
                    .find(|known| **known == kind)
                    .copied()
                    .unwrap_or("other"),
            }),
            Answer::StdinClosed => Err(EngineError::StdinClosed(id.to_string())),
            Answer::StdinFull => Err(EngineError::StdinFull(id.to_string())),
            Answer::Failed { message } => Err(EngineError::Store(StoreError::NodeUnreachable {
                node: node.to_string(),
                message,
            })),
        }
    }

    /// Why a queued task still waits, for people: `None` while some live node can take it.
    pub(super) async fn why_waiting(&self, task: &Task) -> Option<String> {
        if task.state != TaskState::Queued {
            return None;
        }
        if let Some(node) = &task.node {
            return Some(format!("taken by node {node}, starting"));
        }
        let nodes = self.store.nodes().await.ok()?;
        let able = nodes
            .iter()
            .filter(|n| n.alive && task.requires.iter().all(|l| n.labels.contains(l)))
            .count();
        if able == 0 {
            return Some(format!(
                "no live node has the labels it requires ({})",
                task.requires.join(", ")
            ));
        }
        let free = nodes.iter().any(|n| {
            n.alive
                && task.requires.iter().all(|l| n.labels.contains(l))
                && (n.running as usize) < n.max_concurrent
        });
        (!free).then(|| format!("all {able} nodes that can run it are busy"))
    }
}

/// Admits the queued tasks other nodes create, as soon as the shared log says so.
async fn take_queued(engine: Weak<Engine>) {
    let subscription = match engine.upgrade() {
        Some(engine) => engine.bus.subscribe(Topic::All, None).await,
        None => return,
    };
    let mut subscription = match subscription {
        Ok(subscription) => subscription,
        Err(e) => {
            tracing::error!(error = %e, "cannot follow the shared log; tasks other nodes create wait for the lease check");
            return;
        }
    };
    loop {
        let published = match subscription.next().await {
            Ok(Some(published)) => published,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "lost the shared log for a moment");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let event = &published.event;
        if event.kind != types::STATE || event.seq != 1 {
            continue;
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if engine.lock().stopping {
            return;
        }
        if engine.knows(&event.task_id) {
            continue;
        }
        if let Ok(task) = engine.get(&event.task_id).await
            && task.state == TaskState::Queued
            && task.node.is_none()
            && let Err(e) = engine.admit(&task, true)
        {
            tracing::debug!(task = %task.id, error = %e, "not taking a task");
        }
    }
}

/// Often (a tenth of a lease, at most a second): marks interrupted the tasks of nodes whose
/// lease ran out, so that they end within about a lease of their node's death, and takes queued
/// tasks this node missed (while the store was out of reach).
async fn watch_leases(engine: Weak<Engine>) {
    let every = match engine.upgrade() {
        Some(engine) => (engine.config.lease / 10).clamp(LEASE_CHECK_MIN, LEASE_CHECK_MAX),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        if engine.lock().stopping {
            return;
        }
        if let Err(e) = engine.take_over().await {
            tracing::warn!(error = %e, "cannot check the other nodes' leases");
        }
    }
}

impl Engine {
    async fn take_over(self: &Arc<Self>) -> Result<(), EngineError> {
        let me = self.store.node().to_string();
        for orphan in self.store.orphaned_tasks().await? {
            // This node's own tasks are its runners' to end.
            let Some(node) = orphan.node.filter(|node| *node != me) else {
                continue;
            };
            let task = orphan.task;
            tracing::warn!(task = %task.id, node, "its node is gone; marking it interrupted");
            let reason = format!("node {node} stopped answering while the task was running");
            let ended = self.interrupt(&task.id, &reason).await;
            if !matches!(ended, Ok(_) | Err(EngineError::WrongState { .. })) {
                ended?;
            }
        }
        for task in self.store.tasks_in_states(&[TaskState::Queued]).await? {
            if task.node.is_none() && !self.knows(&task.id) {
                self.admit(&task, true)?;
            }
        }
        Ok(())
    }
}

/// Answers the controls other nodes forward for the tasks this node runs.
async fn answer_controls(engine: Weak<Engine>) {
    let questions = match engine.upgrade() {
        Some(engine) => engine.store.cluster().and_then(|c| c.questions()),
        None => return,
    };
    let Some(mut questions) = questions else {
        return;
    };
    while let Some(question) = questions.recv().await {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let answer = match serde_json::from_str::<Forwarded>(&question.text) {
                Ok(forwarded) => {
                    let (id, request) = forwarded.into_request();
                    answer_of(engine.control_here(&id, request).await)
                }
                Err(e) => Answer::Failed {
                    message: format!("a control this node does not know: {e}"),
                },
            };
            let text = serde_json::to_string(&answer).unwrap_or_default();
            let _ = question.answer.send(text);
        });
    }
}

fn answer_of(outcome: Result<Task, EngineError>) -> Answer {
    match outcome {
        Ok(_) => Answer::Done,
        Err(EngineError::NotFound(_)) => Answer::NotFound,
        Err(EngineError::WrongState { state, .. }) => Answer::WrongState { state },
        Err(EngineError::Unsupported { kind, .. }) => Answer::Unsupported {
            kind: kind.to_string(),
        },
        Err(EngineError::StdinClosed(_)) => Answer::StdinClosed,
        Err(EngineError::StdinFull(_)) => Answer::StdinFull,
        Err(e) => Answer::Failed {
            message: e.to_string(),
        },
    }
}
