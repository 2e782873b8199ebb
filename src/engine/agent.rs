//! The `agent` runner: a model working in a workspace with tools, step by step, every step an
//! event. A step sends the conversation and the tools' schemas to the provider and streams the
//! reply; the tool calls it asks for run (after a person's approval where the policy says
//! `ask`), their results join the conversation, and the next step begins, until the model
//! answers without tool calls or a budget runs out. People steer it meanwhile: pause before the
//! next step, guidance that joins the next request, cancel, approvals, rollback to a
//! checkpoint.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::runner::{Context, Control, DeltaWriter, Incoming, Request, Runner, Stop, encode};
use super::workspace::{Tool, ToolError, ToolOutput, Workspace, call_timeout, string_argument};
use super::{Engine, EngineError, error_result};
use crate::llm::{ChatRequest, Chunk, Provider};
use crate::mcp::McpTool;
use crate::proto::{
    AgentMessageData, AgentMode, AgentSpec, Approval, ApprovalAnswer, ApprovalRequested,
    ApprovalResolved, ApprovalStatus, BudgetExhausted, ChatMessage, Checkpoint, CheckpointCreated,
    CreateTask, Decision, ExecuteRequest, Execution, ExecutionStatus, FileChange, Guidance,
    MessageDeltaData, Permission, Role, RolledBack, SessionSpec, SpecVariant, Task, TaskResult,
    TaskSpec, TaskState, ToolCall, ToolCallEvent, ToolResultEvent, Unanswered,
};

/// A tool call waiting for a person: where the answer goes, with the channel on which the
/// runner answers back the resolved approval.
struct PendingApproval {
    task_id: String,
    answer: oneshot::Sender<(ApprovalAnswer, oneshot::Sender<Approval>)>,
}

/// The runner of `agent` tasks, with their tool calls waiting for a person.
#[derive(Default)]
pub(super) struct Agent {
    /// By approval id.
    pending: Mutex<HashMap<String, PendingApproval>>,
}

impl Agent {
    fn pending(&self) -> MutexGuard<'_, HashMap<String, PendingApproval>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Runner for Agent {
    type Spec = AgentSpec;

    fn accepts(&self, control: &Control) -> bool {
        matches!(
            control,
            Control::Pause | Control::Resume | Control::Guidance(_)
        )
    }

    /// Checks the spec and its workspace, and fills in what it left to the server (provider,
    /// model).
    async fn prepare(&self, engine: &Engine, spec: &mut AgentSpec) -> Result<(), EngineError> {
        validate(spec)?;
        Workspace::open(&spec.workspace, &engine.config.workspace_roots)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        engine
            .choose_model(&mut spec.provider, &mut spec.model)
            .await
    }

    async fn run(&self, ctx: &mut Context, spec: &AgentSpec) -> Result<(), EngineError> {
        run(self, ctx, spec).await
    }
}

fn validate(spec: &AgentSpec) -> Result<(), EngineError> {
    let invalid = |message: String| Err(EngineError::Invalid(message));
    if spec.prompt.trim().is_empty() {
        return invalid("spec.prompt must say what the agent is to do".into());
    }
    if spec.workspace.is_empty() {
        return invalid("spec.workspace must name a directory on the server".into());
    }
    if spec.max_steps == Some(0) {
        return invalid("spec.max_steps must be at least 1".into());
    }
    for (name, secs) in [
        ("timeout_secs", spec.timeout_secs),
        ("approval_timeout_secs", spec.approval_timeout_secs),
    ] {
        if let Some(secs) = secs
            && !(secs.is_finite() && secs > 0.0 && secs < 1e9)
        {
            return invalid(format!("spec.{name} must be a positive number of seconds"));
        }
    }
    // An MCP server's tools (`server.tool`, `server.*`) are known once it is connected.
    if let Some(unknown) = spec
        .approvals
        .keys()
        .find(|name| Tool::named(name).is_none() && !name.contains('.'))
    {
        let known: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
        return invalid(format!(
            "spec.approvals names `{unknown}`, which is not a tool (tools: {}, or an MCP \
             server's as SERVER.tool or SERVER.*)",
            known.join(", ")
        ));
    }
    Ok(())
}

/// How an agent's run ended.
enum Ending {
    Done,
    Failed(String),
    Cancelled,
    Shutdown,
}

impl Engine {
    /// Where an agent works when its client names no directory: the server's directory
    /// (`default_cwd`) when it is inside a workspace root, else the first root.
    pub fn default_workspace(&self) -> Option<String> {
        let roots = &self.config.workspace_roots;
        let here = &self.config.default_cwd;
        Some(here)
            .filter(|dir| Workspace::open(&dir.to_string_lossy(), roots).is_ok())
            .or_else(|| roots.first())
            .map(|dir| dir.display().to_string())
    }

    /// Tells a running agent something before its next model call.
    pub async fn guide(&self, id: &str, text: String) -> Result<Task, EngineError> {
        self.control(id, Request::Control(Control::Guidance(text)))
            .await
    }

    /// Approvals, oldest first: of one task, in one status, or all.
    pub async fn approvals(
        &self,
        task: Option<String>,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<Approval>, EngineError> {
        Ok(self.store.approvals(task, status).await?)
    }

    /// Answers a pending approval; the agent resolves it and says so in its log.
    pub async fn answer_approval(
        &self,
        id: &str,
        answer: ApprovalAnswer,
    ) -> Result<Approval, EngineError> {
        let pending = self.kinds.agent.pending().remove(id);
        let already = |approval: Option<Approval>| match approval {
            Some(approval) => EngineError::ApprovalResolved {
                id: id.to_string(),
                status: approval.status,
            },
            None => EngineError::ApprovalNotFound(id.to_string()),
        };
        let Some(pending) = pending else {
            return Err(already(self.store.get_approval(id).await?));
        };
        let (reply, resolved) = oneshot::channel();
        if pending.answer.send((answer, reply)).is_err() {
            return Err(already(self.store.get_approval(id).await?));
        }
        match resolved.await {
            Ok(approval) => Ok(approval),
            Err(_) => Err(already(self.store.get_approval(id).await?)),
        }
    }

    /// A task's checkpoints, oldest first.
    pub async fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, EngineError> {
        self.get(id).await?;
        Ok(self.store.checkpoints(id).await?)
    }

    /// Puts an agent's workspace back as it was just before checkpoint `to`'s change: the
    /// files of that checkpoint and of every later one are restored, newest first. Refused
    /// while the agent runs a step: pause it first.
    pub async fn rollback(&self, id: &str, to: u32) -> Result<Vec<String>, EngineError> {
        let task = self.get(id).await?;
        let Some(spec) = AgentSpec::of(&task.spec) else {
            return Err(EngineError::Unsupported {
                action: "roll back",
                kind: task.spec.kind(),
            });
        };
        if matches!(task.state, TaskState::Running | TaskState::Queued) {
            return Err(EngineError::WrongState {
                id: id.to_string(),
                state: task.state,
                action: "roll back (pause it first)",
            });
        }
        let checkpoints = self.store.checkpoints(id).await?;
        if !checkpoints.iter().any(|c| c.id == to) {
            return Err(EngineError::CheckpointNotFound {
                task: id.to_string(),
                checkpoint: to,
            });
        }
        let workspace = Workspace::open(&spec.workspace, &self.config.workspace_roots)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut restored = Vec::new();
        for checkpoint in checkpoints.iter().rev().filter(|c| c.id >= to) {
            for (path, content) in self.store.checkpoint_files(id, checkpoint.id).await? {
                workspace
                    .restore(&path, content.as_deref())
                    .map_err(|e| EngineError::Invalid(e.0))?;
                restored.push(path);
            }
        }
        restored.sort();
        restored.dedup();
        // A paused agent hears of it before its next step (a finished one's log is closed).
        if task.state == TaskState::Paused {
            let note = format!(
                "A person rolled the workspace back to how it was before checkpoint {to}; \
                 these files were restored: {}.",
                restored.join(", ")
            );
            let data = RolledBack {
                checkpoint: to,
                files: restored.clone(),
            };
            self.store.append(id, vec![encode(&data)?]).await?;
            self.control(id, Request::Control(Control::Guidance(note)))
                .await?;
        }
        Ok(restored)
    }
}

/// Runs an agent to its end. Errors are the store's: the agent's own failures are results.
async fn run(runner: &Agent, ctx: &mut Context, spec: &AgentSpec) -> Result<(), EngineError> {
    ctx.start(None).await?;
    let engine = ctx.engine().clone();
    let setup = Workspace::open(&spec.workspace, &engine.config.workspace_roots)
        .map_err(|e| e.to_string())
        .and_then(|workspace| {
            let provider = engine
                .providers
                .get(spec.provider.as_deref())
                .map_err(|e| e.to_string())?;
            Ok((workspace, provider))
        });
    let (workspace, provider) = match setup {
        Ok(setup) => setup,
        Err(reason) => {
            return ctx
                .finish(TaskState::Failed, error_result(&reason), &reason)
                .await;
        }
    };
    let cancel = ctx.stopped().child_token();
    // Connecting may take a while (a server starting); a stop does not wait for it.
    let (mcp_tools, unavailable) = tokio::select! {
        listed = engine.mcp.tools() => listed,
        () = cancel.cancelled() => (Vec::new(), Vec::new()),
    };
    let mcp_tools = mcp_tools
        .into_iter()
        .filter(|tool| spec.mode == AgentMode::Build || tool.read_only)
        .map(Arc::new)
        .collect();
    let mut prompt = system_prompt(spec, &workspace);
    for (server, error) in unavailable {
        prompt.push_str(&format!(
            " The MCP server {server} is unavailable, so its tools are missing: {error}."
        ));
    }
    let mut agent = AgentRun {
        runner,
        ctx,
        spec: spec.clone(),
        tools: Tool::of_mode(spec.mode),
        mcp_tools,
        messages: vec![
            ChatMessage::new(Role::System, prompt),
            ChatMessage::new(Role::User, spec.prompt.clone()),
        ],
        workspace,
        provider,
        guidance: VecDeque::new(),
        allowed: HashSet::new(),
        cancel,
        spent: Duration::ZERO,
        steps: 0,
        python: None,
    };
    let ending = agent.work().await;
    agent.close_python().await;
    let ending = ending?;
    let (state, result, reason) = match ending {
        Ending::Done => (TaskState::Succeeded, TaskResult::default(), String::new()),
        Ending::Failed(reason) => (TaskState::Failed, error_result(&reason), reason),
        Ending::Cancelled => (
            TaskState::Cancelled,
            TaskResult::default(),
            "cancelled".to_string(),
        ),
        Ending::Shutdown => {
            let reason = "the server shut down while the agent was working".to_string();
            (TaskState::Interrupted, error_result(&reason), reason)
        }
    };
    agent.forget_approvals();
    agent.ctx.finish(state, result, &reason).await
}

fn system_prompt(spec: &AgentSpec, workspace: &Workspace) -> String {
    let mode = match spec.mode {
        AgentMode::Build => {
            "You may read, change files and run commands to do the task. Make the change, \
             check it (run the tests when there are some), then answer with a short summary \
             of what you did."
        }
        AgentMode::Plan => {
            "You may only read. Study the code and answer with a concrete, step-by-step plan \
             for the task; change nothing."
        }
        AgentMode::Explore => {
            "You may only read. Find what the task asks about and answer with your findings; \
             change nothing."
        }
    };
    format!(
        "You are a coding agent working in the directory {} (the workspace). Paths you give \
         to tools are relative to it and must stay inside it. {mode} A person may deny a tool \
         call; then find another way or explain what you need.",
        workspace.root().display()
    )
}

/// An agent at work.
struct AgentRun<'a> {
    runner: &'a Agent,
    ctx: &'a mut Context,
    spec: AgentSpec,
    workspace: Workspace,
    provider: Arc<dyn Provider>,
    tools: Vec<Tool>,
    /// The MCP servers' tools this run offers.
    mcp_tools: Vec<Arc<McpTool>>,
    messages: Vec<ChatMessage>,
    /// People's messages not yet sent to the model.
    guidance: VecDeque<String>,
    /// Tools allowed for the rest of the task by an `allow_always`, by name.
    allowed: HashSet<String>,
    /// Fired on cancel and shutdown, and by a person's `cancel` answer to an approval: stops
    /// the model stream and any running command.
    cancel: CancellationToken,
    /// Running time so far: model calls and tools, not pauses or waits for approval.
    spent: Duration,
    steps: u32,
    /// The interpreter session of the `python` tool, once the agent has used it.
    python: Option<String>,
}

impl AgentRun<'_> {
    async fn work(&mut self) -> Result<Ending, EngineError> {
        loop {
            if let Some(ending) = self.between_steps().await? {
                return Ok(ending);
            }
            let max_steps = self.spec.max_steps();
            if self.steps >= max_steps {
                return self.exhausted("steps", max_steps.into()).await;
            }
            if let Some(limit) = self.time_limit()
                && self.spent >= limit
            {
                let secs = serde_json::Number::from_f64(limit.as_secs_f64())
                    .unwrap_or_else(|| u64::MAX.into());
                return self.exhausted("time", secs).await;
            }
            while let Some(text) = self.guidance.pop_front() {
                self.messages.push(ChatMessage::new(Role::User, text));
            }
            self.steps += 1;
            let reply = match self.model_step().await? {
                Ok(reply) => reply,
                Err(ending) => return Ok(ending),
            };
            let calls = reply.tool_calls.clone();
            self.messages.push(reply);
            if calls.is_empty() {
                return Ok(Ending::Done);
            }
            for call in calls {
                match self.tool_step(&call).await? {
                    Ok(result) => self.messages.push(result),
                    Err(ending) => return Ok(ending),
                }
            }
        }
    }

    /// Why the run stops after its cancel token fired.
    fn stopped(&self) -> Ending {
        if self.ctx.stopping() == Some(Stop::Shutdown) {
            Ending::Shutdown
        } else {
            Ending::Cancelled
        }
    }

    fn time_limit(&self) -> Option<Duration> {
        self.spec
            .timeout_secs
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    }

    async fn exhausted(
        &mut self,
        budget: &str,
        limit: serde_json::Number,
    ) -> Result<Ending, EngineError> {
        let data = BudgetExhausted {
            budget: budget.to_string(),
            limit: limit.clone(),
        };
        self.ctx.append(&data).await?;
        Ok(Ending::Failed(format!(
            "the {budget} budget ({limit}) ran out"
        )))
    }

    /// Waits while paused; takes the controls that arrived. An ending when one ends the run.
    async fn between_steps(&mut self) -> Result<Option<Ending>, EngineError> {
        while let Some(incoming) = self.ctx.try_next() {
            if let Some(ending) = self.control(incoming).await? {
                return Ok(Some(ending));
            }
        }
        while self.ctx.is_paused() {
            let Some(incoming) = self.ctx.next().await else {
                return Ok(Some(Ending::Shutdown));
            };
            if let Some(ending) = self.control(incoming).await? {
                return Ok(Some(ending));
            }
        }
        Ok(None)
    }

    /// Answers a request; the ending it causes, if any.
    async fn control(&mut self, incoming: Incoming) -> Result<Option<Ending>, EngineError> {
        let steer = match incoming {
            Incoming::Stop(Stop::Cancel) => return Ok(Some(Ending::Cancelled)),
            Incoming::Stop(Stop::Shutdown) => return Ok(Some(Ending::Shutdown)),
            Incoming::Control(steer) => steer,
        };
        let answer = match &steer.control {
            Control::Pause => self.ctx.pause().await,
            Control::Resume => self.ctx.resume().await,
            Control::Guidance(text) => {
                let recorded = self.ctx.append(&Guidance { text: text.clone() }).await;
                self.guidance.push_back(text.clone());
                recorded
            }
            Control::Input(_) => Err(steer.unsupported()),
        };
        steer.answer(answer);
        Ok(None)
    }

    /// One model call, streamed into the log: the reply, or the ending that stopped it.
    async fn model_step(&mut self) -> Result<Result<ChatMessage, Ending>, EngineError> {
        let started = Instant::now();
        let request = ChatRequest {
            model: self.spec.model.clone().unwrap_or_default(),
            messages: self.messages.clone(),
            tools: self
                .tools
                .iter()
                .map(|tool| tool.spec())
                .chain(self.mcp_tools.iter().map(|tool| tool.spec.clone()))
                .collect(),
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
        };
        let deltas = DeltaWriter::start(self.ctx.log().clone(), |text| MessageDeltaData { text });
        let mut text = String::new();
        let mut calls = Vec::new();
        let outcome = self
            .stream_reply(request, &deltas, &mut text, &mut calls)
            .await?;
        deltas.finish().await?;
        self.spent += started.elapsed();
        if let Err(ending) = outcome {
            return Ok(Err(ending));
        }
        let message = ChatMessage {
            tool_calls: calls,
            ..ChatMessage::new(Role::Assistant, text)
        };
        let data = AgentMessageData {
            message,
            step: self.steps,
        };
        self.ctx.append(&data).await?;
        Ok(Ok(data.message))
    }

    async fn stream_reply(
        &mut self,
        request: ChatRequest,
        deltas: &DeltaWriter,
        text: &mut String,
        calls: &mut Vec<ToolCall>,
    ) -> Result<Result<(), Ending>, EngineError> {
        let provider = self.provider.clone();
        let connecting = provider.chat(request);
        tokio::pin!(connecting);
        let mut stream = loop {
            tokio::select! {
                connected = &mut connecting => match connected {
                    Ok(stream) => break stream,
                    Err(e) => return Ok(Err(Ending::Failed(e.to_string()))),
                },
                Some(incoming) = self.ctx.next() => {
                    if let Some(ending) = self.control(incoming).await? {
                        return Ok(Err(ending));
                    }
                }
            }
        };
        loop {
            tokio::select! {
                chunk = stream.next() => match chunk {
                    Some(Ok(Chunk::Text(piece))) => {
                        text.push_str(&piece);
                        deltas.text(piece);
                    }
                    Some(Ok(Chunk::ToolCall(call))) => calls.push(call),
                    Some(Ok(Chunk::Done { .. })) => return Ok(Ok(())),
                    Some(Err(e)) => return Ok(Err(Ending::Failed(e.to_string()))),
                    None => {
                        return Ok(Err(Ending::Failed(
                            "the model's reply ended before it was complete".into(),
                        )));
                    }
                },
                Some(incoming) = self.ctx.next() => {
                    if let Some(ending) = self.control(incoming).await? {
                        return Ok(Err(ending));
                    }
                }
            }
        }
    }

    /// Runs one tool call, asking first when the policy says so: the tool message for the
    /// model, or the ending the call led to.
    async fn tool_step(
        &mut self,
        call: &ToolCall,
    ) -> Result<Result<ChatMessage, Ending>, EngineError> {
        let offered = self.offered(&call.name);
        let name = offered
            .as_ref()
            .map_or(call.name.clone(), |tool| tool.name().to_string());
        self.ctx
            .append(&ToolCallEvent {
                id: call.id.clone(),
                name: name.clone(),
                arguments: call.arguments.clone(),
            })
            .await?;
        let outcome = match offered {
            None => Err(ToolError(format!(
                "there is no tool `{}` here (tools: {})",
                call.name,
                self.tools
                    .iter()
                    .map(|t| t.name())
                    .chain(self.mcp_tools.iter().map(|t| t.spec.name.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Some(tool) => match self.permit(&tool, call).await? {
                Permit::Run => self.run_tool(&tool, call).await?,
                Permit::Refused(reason) => Err(ToolError(reason)),
                Permit::End(ending) => return Ok(Err(ending)),
            },
        };
        let (output, error, duration) = match outcome {
            Ok((output, duration)) => (output, false, duration),
            Err(error) => (
                ToolOutput {
                    text: error.0,
                    truncated: false,
                },
                true,
                Duration::ZERO,
            ),
        };
        let result = ToolResultEvent {
            id: call.id.clone(),
            name,
            output: output.text.clone(),
            error,
            truncated: output.truncated,
            duration_ms: duration.as_millis() as u64,
        };
        self.ctx.append(&result).await?;
        if self.cancel.is_cancelled() {
            return Ok(Err(self.stopped()));
        }
        Ok(Ok(ChatMessage {
            tool_call_id: Some(call.id.clone()),
            ..ChatMessage::new(Role::Tool, output.text)
        }))
    }
}

/// A tool a run offers: one of victor's own, or an MCP server's.
#[derive(Clone)]
enum Offered {
    Own(Tool),
    Mcp(Arc<McpTool>),
}

impl Offered {
    /// Its name in events, approvals and policies (`server.tool` for an MCP server's).
    fn name(&self) -> &str {
        match self {
            Offered::Own(tool) => tool.name(),
            Offered::Mcp(tool) => &tool.qualified,
        }
    }

    /// What a call needs when the task's policy does not say.
    fn default_permission(&self) -> Permission {
        match self {
            Offered::Own(tool) => tool.default_permission(),
            Offered::Mcp(tool) => tool.permission,
        }
    }
}

/// Whether a tool call may run.
enum Permit {
    Run,
    /// It may not; the model is told why.
    Refused(String),
    End(Ending),
}

impl AgentRun<'_> {
    /// The tool a model's call names: by the name it was offered under, or an MCP tool's
    /// `server.tool`.
    fn offered(&self, name: &str) -> Option<Offered> {
        if let Some(tool) = Tool::named(name).filter(|tool| self.tools.contains(tool)) {
            return Some(Offered::Own(tool));
        }
        self.mcp_tools
            .iter()
            .find(|tool| tool.spec.name == name || tool.qualified == name)
            .map(|tool| Offered::Mcp(tool.clone()))
    }

    async fn permit(&mut self, tool: &Offered, call: &ToolCall) -> Result<Permit, EngineError> {
        let name = tool.name();
        // An MCP tool without a rule of its own follows its server's (`server.*`); `python`
        // runs code as `run_command` does, so without a rule of its own it follows that one's.
        let fallback = match tool {
            Offered::Mcp(tool) => self.spec.approvals.get(&format!("{}.*", tool.server)),
            Offered::Own(Tool::Python) => self.spec.approvals.get(Tool::RunCommand.name()),
            Offered::Own(_) => None,
        };
        let permission = if self.allowed.contains(name) {
            Permission::Allow
        } else {
            self.spec
                .approvals
                .get(name)
                .or(fallback)
                .copied()
                .unwrap_or_else(|| tool.default_permission())
        };
        match permission {
            Permission::Allow => Ok(Permit::Run),
            Permission::Deny => Ok(Permit::Refused(format!(
                "{name} is denied by this task's policy"
            ))),
            Permission::Ask => self.ask(tool, call).await,
        }
    }

    /// Stores an approval, says so, and waits for a person (or the fallback).
    async fn ask(&mut self, tool: &Offered, call: &ToolCall) -> Result<Permit, EngineError> {
        let diff = match tool {
            Offered::Own(tool @ (Tool::WriteFile | Tool::EditFile)) => {
                match self.workspace.plan(*tool, &call.arguments) {
                    Ok(change) => Some(change.diff),
                    // Nothing to approve: the model hears what is wrong with the call.
                    Err(error) => return Ok(Permit::Refused(error.0)),
                }
            }
            _ => None,
        };
        let name = tool.name();
        let mut approval = Approval {
            id: uuid::Uuid::now_v7().to_string(),
            task_id: self.ctx.id().to_string(),
            tool: name.to_string(),
            arguments: call.arguments.clone(),
            diff,
            status: ApprovalStatus::Pending,
            decision: None,
            reason: None,
            created_at: Timestamp::now(),
            resolved_at: None,
        };
        self.ctx
            .engine()
            .store
            .put_approval(approval.clone())
            .await?;
        let (sender, mut answers) = oneshot::channel();
        self.runner.pending().insert(
            approval.id.clone(),
            PendingApproval {
                task_id: self.ctx.id().to_string(),
                answer: sender,
            },
        );
        self.ctx
            .append(&ApprovalRequested {
                approval: approval.clone(),
            })
            .await?;
        let config = self.ctx.engine().config();
        let unanswered = self.spec.on_unanswered.unwrap_or(config.on_unanswered);
        let wait = self
            .spec
            .approval_timeout_secs
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .unwrap_or(config.approval_timeout);
        let deadline = tokio::time::Instant::now() + wait;
        let waits_forever = unanswered == Unanswered::Wait;
        loop {
            tokio::select! {
                answered = &mut answers => {
                    let Ok((answer, reply)) = answered else {
                        // The engine dropped it: only when the task is ending.
                        return Ok(Permit::End(Ending::Shutdown));
                    };
                    approval.decision = Some(answer.decision);
                    approval.reason = answer.reason.clone();
                    approval.status = match answer.decision {
                        Decision::AllowOnce | Decision::AllowAlways => ApprovalStatus::Allowed,
                        Decision::Deny => ApprovalStatus::Denied,
                        Decision::Cancel => ApprovalStatus::Cancelled,
                    };
                    self.resolve(&approval).await?;
                    let _ = reply.send(approval.clone());
                    return Ok(match answer.decision {
                        Decision::AllowOnce => Permit::Run,
                        Decision::AllowAlways => {
                            self.allowed.insert(name.to_string());
                            Permit::Run
                        }
                        Decision::Deny => Permit::Refused(match &answer.reason {
                            Some(reason) => format!("a person denied this {name}: {reason}"),
                            None => format!("a person denied this {name}"),
                        }),
                        Decision::Cancel => {
                            self.cancel.cancel();
                            Permit::End(Ending::Cancelled)
                        }
                    });
                }
                Some(incoming) = self.ctx.next() => {
                    if let Some(ending) = self.control(incoming).await? {
                        self.expire(&mut approval, "the task ended first").await?;
                        return Ok(Permit::End(ending));
                    }
                }
                () = tokio::time::sleep_until(deadline), if !waits_forever => {
                    let taken = self.runner.pending().remove(&approval.id);
                    if taken.is_none() {
                        // An answer is on its way; take it.
                        continue;
                    }
                    let why = format!("nobody answered within {}s", wait.as_secs_f64());
                    approval.status = ApprovalStatus::Expired;
                    approval.reason = Some(why.clone());
                    self.resolve(&approval).await?;
                    return Ok(match unanswered {
                        Unanswered::Fail => Permit::End(Ending::Failed(format!(
                            "the {name} call waited for approval and {why}"
                        ))),
                        Unanswered::Deny | Unanswered::Wait => Permit::Refused(format!(
                            "this {name} was not approved: {why}"
                        )),
                    });
                }
            }
        }
    }

    async fn resolve(&self, approval: &Approval) -> Result<(), EngineError> {
        let mut approval = approval.clone();
        approval.resolved_at = Some(Timestamp::now());
        self.ctx
            .engine()
            .store
            .put_approval(approval.clone())
            .await?;
        self.ctx.append(&ApprovalResolved { approval }).await
    }

    async fn expire(&self, approval: &mut Approval, why: &str) -> Result<(), EngineError> {
        self.runner.pending().remove(&approval.id);
        approval.status = ApprovalStatus::Expired;
        approval.reason = Some(why.to_string());
        self.resolve(approval).await
    }

    /// Drops this task's waits for approval that nobody can answer any more.
    fn forget_approvals(&self) {
        let id = self.ctx.id();
        self.runner
            .pending()
            .retain(|_, pending| pending.task_id != id);
    }

    /// Runs a permitted tool: its output and how long it took, or its error.
    async fn run_tool(
        &mut self,
        tool: &Offered,
        call: &ToolCall,
    ) -> Result<Result<(ToolOutput, Duration), ToolError>, EngineError> {
        let started = Instant::now();
        let outcome = match tool {
            Offered::Own(tool @ (Tool::ReadFile | Tool::ListDir | Tool::Search)) => {
                self.workspace.read(*tool, &call.arguments).await
            }
            Offered::Own(tool @ (Tool::WriteFile | Tool::EditFile)) => {
                self.change(*tool, call).await?
            }
            Offered::Own(Tool::RunCommand) => self.command(call).await?,
            Offered::Own(Tool::Python) => self.python(call).await?,
            Offered::Mcp(tool) => self.remote(tool.clone(), call).await?,
        };
        let took = started.elapsed().max(Duration::from_micros(1));
        self.spent += took;
        Ok(outcome.map(|output| (output, took)))
    }

    /// Saves a checkpoint of the file, makes the change, and says what changed.
    async fn change(
        &mut self,
        tool: Tool,
        call: &ToolCall,
    ) -> Result<Result<ToolOutput, ToolError>, EngineError> {
        // Planned again: the file may have changed while the approval waited.
        let change = match self.workspace.plan(tool, &call.arguments) {
            Ok(change) => change,
            Err(error) => return Ok(Err(error)),
        };
        let store = &self.ctx.engine().store;
        let checkpoint = Checkpoint {
            id: store.checkpoints(self.ctx.id()).await?.len() as u32 + 1,
            task_id: self.ctx.id().to_string(),
            files: vec![change.path.clone()],
            tool_call_id: Some(call.id.clone()),
            created_at: Timestamp::now(),
        };
        store
            .put_checkpoint(
                checkpoint.clone(),
                vec![(change.path.clone(), change.before.clone())],
            )
            .await?;
        self.ctx.append(&CheckpointCreated { checkpoint }).await?;
        if let Err(error) = self.workspace.apply(&change) {
            return Ok(Err(error));
        }
        self.ctx
            .append(&FileChange {
                path: change.path.clone(),
                kind: change.kind,
                diff: change.diff.clone(),
            })
            .await?;
        let verb = match change.kind {
            crate::proto::ChangeKind::Created => "created",
            _ => "changed",
        };
        Ok(Ok(ToolOutput {
            text: format!("{} {verb}:\n{}", change.path, change.diff),
            truncated: false,
        }))
    }

    /// Runs a command while still answering controls (a cancel stops it).
    async fn command(
        &mut self,
        call: &ToolCall,
    ) -> Result<Result<ToolOutput, ToolError>, EngineError> {
        let workspace = self.workspace.clone();
        let cancel = self.cancel.clone();
        let arguments = call.arguments.clone();
        let task_id = self.ctx.id().to_string();
        let running = async move { workspace.run_command(&arguments, &task_id, &cancel).await };
        self.answering_controls(running).await
    }

    /// Calls an MCP server's tool while still answering controls (a cancel stops the call).
    async fn remote(
        &mut self,
        tool: Arc<McpTool>,
        call: &ToolCall,
    ) -> Result<Result<ToolOutput, ToolError>, EngineError> {
        let servers = self.ctx.engine().mcp.clone();
        let cancel = self.cancel.clone();
        let arguments = call.arguments.clone();
        let running = async move {
            servers
                .call(&tool, arguments, &cancel)
                .await
                .map(ToolOutput::new)
                // A server's error can be as long as its answers: cut alike.
                .map_err(|text| ToolError(ToolOutput::new(text).text))
        };
        self.answering_controls(running).await
    }

    /// Waits for a tool while answering the controls that arrive meanwhile.
    async fn answering_controls(
        &mut self,
        running: impl Future<Output = Result<ToolOutput, ToolError>>,
    ) -> Result<Result<ToolOutput, ToolError>, EngineError> {
        tokio::pin!(running);
        loop {
            tokio::select! {
                output = &mut running => return Ok(output),
                Some(incoming) = self.ctx.next() => {
                    // A stop fires the token, and the command stops with its processes; the
                    // step ends when it has.
                    self.control(incoming).await?;
                }
            }
        }
    }
}

/// Extra time a `python` call waits beyond its timeout: a new interpreter starting.
const PYTHON_STARTUP: Duration = Duration::from_secs(90);

impl AgentRun<'_> {
    /// Runs code in the agent's own interpreter session (started in the workspace on first
    /// use), still answering controls; a cancel interrupts the code.
    async fn python(
        &mut self,
        call: &ToolCall,
    ) -> Result<Result<ToolOutput, ToolError>, EngineError> {
        let code = match string_argument(&call.arguments, "code") {
            Ok(code) => code.to_string(),
            Err(error) => return Ok(Err(error)),
        };
        let timeout = call_timeout(&call.arguments);
        let engine = self.ctx.engine().clone();
        let session = match self.python_session().await {
            Ok(session) => session,
            Err(error) => return Ok(Err(error)),
        };
        let request = ExecuteRequest {
            timeout_secs: Some(timeout.as_secs_f64()),
            allow_stdin: false,
            ..ExecuteRequest::new(code)
        };
        let queued = match engine.execute(&session, request).await {
            Ok(queued) => queued,
            Err(e) => {
                return Ok(Err(ToolError(format!(
                    "the interpreter cannot run it: {e}"
                ))));
            }
        };
        let waiting = {
            let (engine, session) = (engine.clone(), session.clone());
            async move {
                engine
                    .execution(&session, &queued.id, timeout + PYTHON_STARTUP)
                    .await
            }
        };
        tokio::pin!(waiting);
        let mut interrupted = false;
        let execution = loop {
            tokio::select! {
                execution = &mut waiting => break execution,
                () = self.cancel.cancelled(), if !interrupted => {
                    interrupted = true;
                    if let Err(e) = engine.interrupt_session(&session).await {
                        tracing::debug!(error = %e, "cannot interrupt an agent's python");
                    }
                }
                Some(incoming) = self.ctx.next() => {
                    // A stop fires the token, which interrupts the code.
                    self.control(incoming).await?;
                }
            }
        };
        Ok(match execution {
            Ok(execution) => Ok(python_output(&execution)),
            Err(e) => Err(ToolError(format!("the interpreter's answer is lost: {e}"))),
        })
    }

    /// The agent's interpreter session, started now if it has none.
    async fn python_session(&mut self) -> Result<String, ToolError> {
        if let Some(session) = &self.python {
            return Ok(session.clone());
        }
        let request = CreateTask {
            name: Some(format!("python of agent {}", self.ctx.id())),
            priority: 0,
            requires: Vec::new(),
            spec: TaskSpec::Session(SessionSpec {
                client: Some(format!("agent/{}", self.ctx.id())),
                cwd: Some(self.workspace.root().display().to_string()),
                // It ends with the agent.
                idle_timeout_secs: Some(0.0),
                ..SessionSpec::default()
            }),
        };
        let engine = self.ctx.engine().clone();
        let (task, _) = engine
            .create(request, None)
            .await
            .map_err(|e| ToolError(format!("cannot start a Python interpreter: {e}")))?;
        self.python = Some(task.id.clone());
        Ok(task.id)
    }

    /// Closes the agent's interpreter session, if it started one.
    async fn close_python(&mut self) {
        if let Some(session) = self.python.take()
            && let Err(e) = self.ctx.engine().close_session(&session).await
        {
            tracing::debug!(error = %e, session, "an agent's python session was not open");
        }
    }
}

/// What the model is told of a `python` call: its output, its value or its error, and how it
/// ended.
fn python_output(execution: &Execution) -> ToolOutput {
    let mut text = format!("{}{}", execution.stdout, execution.stderr);
    let plain = |bundle: &crate::proto::MimeBundle| {
        bundle
            .get("text/plain")
            .and_then(|value| value.as_str())
            .map(str::to_string)
    };
    for display in &execution.displays {
        let kinds: Vec<&str> = display.keys().map(String::as_str).collect();
        let shown = plain(display).unwrap_or_default();
        text.push_str(&format!("[display {}] {shown}\n", kinds.join(", ")));
    }
    if let Some(value) = execution.result.as_ref().and_then(plain) {
        text.push_str(&value);
        text.push('\n');
    }
    if let Some(error) = &execution.error {
        let traceback = crate::proto::plain_traceback(&error.traceback);
        if traceback.trim().is_empty() {
            text.push_str(&format!("{}: {}\n", error.name, error.value));
        } else {
            text.push_str(&traceback);
            text.push('\n');
        }
    }
    let ending = match execution.status {
        ExecutionStatus::Ok => "[ok]",
        ExecutionStatus::Error => "[raised]",
        ExecutionStatus::TimedOut => "[interrupted at its timeout; the variables stay]",
        ExecutionStatus::Interrupted => "[interrupted; the variables stay]",
        ExecutionStatus::KernelDied => "[the interpreter died; its variables are gone]",
        ExecutionStatus::Aborted => "[not run: the interpreter was restarted or closed]",
        ExecutionStatus::Queued | ExecutionStatus::Running => "[still running: no answer in time]",
    };
    ToolOutput::new(format!("{text}{ending}"))
}
