//! Chat turns and conversations. A turn is a task of kind `chat`: it streams one model reply
//! into its log (`chat.delta`, `chat.tool_call`, then `chat.message`), so every client can
//! follow, resume and watch it like any task. A conversation is the stored history its turns
//! read and add to; the reply joins it in the same transaction as the turn's final state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::StreamExt;
use jiff::Timestamp;

use super::runner::{Context, Control, DeltaWriter, Incoming, Runner, Slot, Stop};
use super::{Engine, EngineError, error_result};
use crate::llm::{ChatRequest, Chunk, LlmError};
use crate::proto::{
    ChatMessage, ChatSpec, Conversation, ConversationPage, ConversationSummary, CreateConversation,
    DeltaData, MessageData, PostMessage, Role, StoredMessage, Task, TaskResult, TaskState,
    ToolCall, ToolCallData, Usage, task::shortened,
};
use crate::store::{ConversationAppend, ConversationQuery};

/// Longest title made from a conversation's first message.
const TITLE_CHARS: usize = 60;

impl Engine {
    /// Starts a conversation. A provider named in it must exist.
    pub async fn create_conversation(
        &self,
        request: CreateConversation,
        channel: Option<String>,
    ) -> Result<ConversationSummary, EngineError> {
        // Named now, so that the conversation says what it talks to; a model left unnamed is
        // found when the first turn needs it (that may ask the provider).
        let provider = self.providers.get(request.provider.as_deref())?.info();
        let model = request.model.or(provider.default_model);
        let now = Timestamp::now();
        let conversation = ConversationSummary {
            id: uuid::Uuid::now_v7().to_string(),
            title: request.title.unwrap_or_default(),
            provider: Some(provider.name),
            model,
            system: request.system,
            message_count: 0,
            created_at: now,
            updated_at: now,
        };
        self.store
            .create_conversation(conversation.clone(), channel)
            .await?;
        Ok(conversation)
    }

    /// The conversations most recently updated first, of one channel when given.
    pub async fn list_conversations(
        &self,
        channel: Option<String>,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<ConversationPage, EngineError> {
        let (conversations, next_cursor) = self
            .store
            .list_conversations(ConversationQuery {
                channel,
                after: cursor,
                limit,
            })
            .await?;
        Ok(ConversationPage {
            conversations,
            next_cursor,
        })
    }

    /// The newest conversation of a channel, or a new one when it has none: the "current
    /// conversation" of a compatibility surface's client.
    pub async fn current_conversation(
        &self,
        channel: &str,
    ) -> Result<ConversationSummary, EngineError> {
        let page = self
            .list_conversations(Some(channel.to_string()), 1, None)
            .await?;
        match page.conversations.into_iter().next() {
            Some(conversation) => Ok(conversation),
            None => {
                self.create_conversation(CreateConversation::default(), Some(channel.into()))
                    .await
            }
        }
    }

    /// A conversation with its messages, and the turn still running in it.
    pub async fn conversation(&self, id: &str) -> Result<Conversation, EngineError> {
        let (summary, messages) = self
            .store
            .get_conversation(id)
            .await?
            .ok_or_else(|| EngineError::ConversationNotFound(id.to_string()))?;
        let running_task = self.kinds.chat.holder(self, id).await?.flatten();
        Ok(Conversation {
            summary,
            messages,
            running_task,
        })
    }

    /// Deletes a conversation (its turns' tasks stay); refused while a turn runs in it.
    pub async fn delete_conversation(&self, id: &str) -> Result<(), EngineError> {
        if let Some(task) = self.kinds.chat.holder(self, id).await? {
            return Err(EngineError::TurnRunning {
                conversation: id.to_string(),
                task,
            });
        }
        if !self.store.delete_conversation(id).await? {
            return Err(EngineError::ConversationNotFound(id.to_string()));
        }
        Ok(())
    }

    /// Posts the user's message to a conversation and starts the turn that answers it.
    pub async fn post_message(
        self: &Arc<Self>,
        conversation_id: &str,
        message: PostMessage,
    ) -> Result<Task, EngineError> {
        let mut messages: Vec<ChatMessage> = message
            .tool_results
            .into_iter()
            .map(|result| ChatMessage {
                tool_call_id: Some(result.tool_call_id),
                ..ChatMessage::new(Role::Tool, result.content)
            })
            .collect();
        if !message.content.trim().is_empty() {
            messages.push(ChatMessage::new(Role::User, message.content));
        }
        let spec = ChatSpec {
            conversation_id: Some(conversation_id.to_string()),
            messages,
            tools: message.tools,
            provider: message.provider,
            model: message.model,
            temperature: message.temperature,
            max_tokens: message.max_tokens,
            ..ChatSpec::default()
        };
        let request = crate::proto::CreateTask {
            name: None,
            priority: 0,
            requires: Vec::new(),
            spec: crate::proto::TaskSpec::Chat(spec),
        };
        Ok(self.create(request, None).await?.0)
    }

    /// Cancels the turn running in a conversation.
    pub async fn cancel_turn(&self, conversation_id: &str) -> Result<Task, EngineError> {
        let running = self.kinds.chat.holder(self, conversation_id).await?;
        match running {
            Some(Some(task)) => self.cancel(&task).await,
            Some(None) | None => {
                // Exists, but nothing to cancel: say which, for the 404 or 409.
                self.conversation(conversation_id).await?;
                Err(EngineError::NoTurnRunning(conversation_id.to_string()))
            }
        }
    }

    /// Fills in a turn's provider and model, and with a conversation its title, from the
    /// conversation's settings, which the turn's own become.
    async fn prepare_turn(&self, id: &str, spec: &mut ChatSpec) -> Result<(), EngineError> {
        let (mut conversation, _) = self
            .store
            .get_conversation(id)
            .await?
            .ok_or_else(|| EngineError::ConversationNotFound(id.to_string()))?;
        let wanted_provider = spec.provider.clone().or(conversation.provider.clone());
        // A model chosen for another provider does not carry over to a newly named one.
        let wanted_model = spec.model.clone().or_else(|| {
            (spec.provider.is_none() || spec.provider == conversation.provider)
                .then(|| conversation.model.clone())
                .flatten()
        });
        let (provider, model) = self
            .providers
            .resolve(wanted_provider.as_deref(), wanted_model.as_deref())
            .await?;
        let provider = provider.info().name;
        let mut changed = false;
        if conversation.provider.as_ref() != Some(&provider) {
            conversation.provider = Some(provider.clone());
            changed = true;
        }
        if conversation.model.as_ref() != Some(&model) {
            conversation.model = Some(model.clone());
            changed = true;
        }
        if conversation.title.is_empty()
            && let Some(first) = spec.messages.iter().find(|m| m.role == Role::User)
        {
            let line = first.content.lines().find(|l| !l.trim().is_empty());
            conversation.title = shortened(line.unwrap_or_default().trim(), TITLE_CHARS);
            changed = true;
        }
        if changed {
            conversation.updated_at = Timestamp::now();
            self.store.update_conversation(conversation).await?;
        }
        spec.provider = Some(provider);
        spec.model = Some(model);
        Ok(())
    }
}

/// The runner of `chat` turns, and the conversations they answer in: one turn at a time per
/// conversation.
#[derive(Default)]
pub(super) struct Chat {
    /// Conversations with a turn running (or being created: no task id yet).
    turns: Mutex<HashMap<String, Option<String>>>,
}

impl Chat {
    fn turns(&self) -> MutexGuard<'_, HashMap<String, Option<String>>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The turn holding a conversation: `None` when none does, `Some(None)` while one is being
    /// made.
    async fn holder(
        &self,
        engine: &Engine,
        id: &str,
    ) -> Result<Option<Option<String>>, EngineError> {
        let holder = self.turns().get(id).cloned();
        if let Some(Some(task)) = &holder
            && has_ended(engine, task).await?
        {
            return Ok(None);
        }
        Ok(holder)
    }

    /// Claims a conversation for a turn about to be made, unless one is running in it.
    async fn claim(&self, engine: &Engine, id: &str) -> Result<Claim<'_>, EngineError> {
        let claimed = || Claim {
            chat: self,
            conversation: id.to_string(),
            kept: false,
        };
        let holder = {
            let mut turns = self.turns();
            match turns.get(id) {
                None => {
                    turns.insert(id.to_string(), None);
                    return Ok(claimed());
                }
                Some(holder) => holder.clone(),
            }
        };
        if let Some(task) = &holder
            && has_ended(engine, task).await?
        {
            let mut turns = self.turns();
            // Still that finished task's claim, or let go of meanwhile: ours now.
            if turns.get(id).is_none_or(|now| *now == holder) {
                turns.insert(id.to_string(), None);
                return Ok(claimed());
            }
        }
        Err(EngineError::TurnRunning {
            conversation: id.to_string(),
            task: holder,
        })
    }
}

/// A conversation claimed for a turn being made. Let go of when dropped, unless kept: the
/// turn was not made, because preparing it failed or the request that asked for it was given
/// up (its client went away) while the provider was asked.
struct Claim<'a> {
    chat: &'a Chat,
    conversation: String,
    kept: bool,
}

impl Claim<'_> {
    /// Keeps the claim for the turn's task: [`Runner::stored`] records it or lets go.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.chat.turns().remove(&self.conversation);
        }
    }
}

#[async_trait]
impl Runner for Chat {
    type Spec = ChatSpec;

    /// A person is waiting, and the work is the provider's.
    const SLOT: Slot = Slot::Immediate;

    fn accepts(&self, _control: &Control) -> bool {
        false
    }

    /// Fills in what a chat turn left to the server (provider, model, and with a conversation
    /// its settings) and claims the conversation for it: one turn at a time per conversation.
    async fn prepare(&self, engine: &Engine, spec: &mut ChatSpec) -> Result<(), EngineError> {
        validate(spec)?;
        let Some(id) = spec.conversation_id.clone() else {
            return engine
                .choose_model(&mut spec.provider, &mut spec.model)
                .await;
        };
        let claim = self.claim(engine, &id).await?;
        engine.prepare_turn(&id, spec).await?;
        claim.keep();
        Ok(())
    }

    /// Records which task answers the claimed conversation, or lets go of it.
    fn stored(&self, spec: &ChatSpec, task: Option<&Task>) {
        let Some(conversation) = &spec.conversation_id else {
            return;
        };
        match task {
            Some(task) => {
                self.turns()
                    .insert(conversation.clone(), Some(task.id.clone()));
            }
            None => {
                self.turns().remove(conversation);
            }
        }
    }

    async fn run(&self, ctx: &mut Context, spec: &ChatSpec) -> Result<(), EngineError> {
        run(ctx, spec).await
    }

    fn ended(&self, task_id: &str) {
        self.turns()
            .retain(|_, task| task.as_deref() != Some(task_id));
    }
}

/// Whether a turn has ended. Its final event reaches its clients a moment before its runner
/// lets go of the conversation: a client that asks at once finds the claim of a finished task,
/// which holds nothing any more.
async fn has_ended(engine: &Engine, task: &str) -> Result<bool, EngineError> {
    Ok(engine
        .store
        .get_task(task)
        .await?
        .is_none_or(|task| task.state.is_final()))
}

fn validate(spec: &ChatSpec) -> Result<(), EngineError> {
    let invalid = |message: &str| Err(EngineError::Invalid(message.to_string()));
    if spec.messages.is_empty() {
        return invalid("spec.messages must hold at least one message");
    }
    if let Some(temperature) = spec.temperature
        && !(0.0..=2.0).contains(&temperature)
    {
        return invalid("spec.temperature must be between 0 and 2");
    }
    if spec.max_tokens == Some(0) {
        return invalid("spec.max_tokens must be at least 1");
    }
    if spec.tools.iter().any(|tool| tool.name.is_empty()) {
        return invalid("every tool in spec.tools needs a name");
    }
    Ok(())
}

/// How a turn ended, before it is recorded.
enum Ending {
    Done {
        finish_reason: Option<String>,
        usage: Option<Usage>,
    },
    Failed(String),
    Cancelled,
    Shutdown,
}

/// The reply as it has streamed so far.
#[derive(Default)]
struct Reply {
    text: String,
    tool_calls: Vec<ToolCall>,
}

impl Reply {
    fn message(&self) -> ChatMessage {
        ChatMessage {
            tool_calls: self.tool_calls.clone(),
            ..ChatMessage::new(Role::Assistant, self.text.clone())
        }
    }

    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.tool_calls.is_empty()
    }
}

/// Runs a chat turn to its end. Errors are the store's: the provider's failures are the
/// turn's result.
async fn run(ctx: &mut Context, spec: &ChatSpec) -> Result<(), EngineError> {
    ctx.start(None).await?;
    let provider_name = spec.provider.clone().unwrap_or_default();
    let model = spec.model.clone().unwrap_or_default();
    let deltas = DeltaWriter::start(ctx.log().clone(), |text| DeltaData { text });
    let mut reply = Reply::default();
    let ending = match context(ctx.engine(), spec).await {
        Err(reason) => Ending::Failed(reason),
        Ok(messages) => {
            let request = ChatRequest {
                model: model.clone(),
                messages,
                tools: spec.tools.clone(),
                temperature: spec.temperature,
                max_tokens: spec.max_tokens,
                stop: spec.stop.clone(),
            };
            stream_reply(ctx, &provider_name, request, &deltas, &mut reply).await?
        }
    };
    deltas.finish().await?;

    let message = reply.message();
    let record = |finish_reason: Option<String>, usage: Option<Usage>| MessageData {
        message: message.clone(),
        provider: provider_name.clone(),
        model: model.clone(),
        finish_reason,
        usage,
    };
    let task = ctx.task();
    let turn_messages = |with_reply: bool| {
        let conversation_id = spec.conversation_id.clone()?;
        let mut messages: Vec<StoredMessage> = spec
            .messages
            .iter()
            .map(|message| StoredMessage {
                message: message.clone(),
                task_id: Some(task.id.clone()),
                created_at: task.created_at,
            })
            .collect();
        if with_reply {
            messages.push(StoredMessage {
                message: message.clone(),
                task_id: Some(task.id.clone()),
                created_at: Timestamp::now(),
            });
        }
        Some(ConversationAppend {
            conversation_id,
            messages,
        })
    };
    let (state, result, reason, messages) = match ending {
        Ending::Done {
            finish_reason,
            usage,
        } => {
            ctx.append(&record(finish_reason, usage)).await?;
            (
                TaskState::Succeeded,
                TaskResult::default(),
                String::new(),
                turn_messages(true),
            )
        }
        Ending::Failed(reason) => (TaskState::Failed, error_result(&reason), reason, None),
        Ending::Cancelled => {
            // What was written before the cancel stays: the person stopped it there.
            let partial = !reply.is_empty();
            if partial {
                ctx.append(&record(Some("cancelled".into()), None)).await?;
            }
            (
                TaskState::Cancelled,
                TaskResult::default(),
                "cancelled".to_string(),
                turn_messages(partial),
            )
        }
        Ending::Shutdown => {
            let reason = "the server shut down while the reply was streaming".to_string();
            (TaskState::Interrupted, error_result(&reason), reason, None)
        }
    };
    ctx.finish_with(state, result, &reason, messages).await
}

/// What the model reads: the system prompt, the conversation so far, the turn's messages.
async fn context(engine: &Engine, spec: &ChatSpec) -> Result<Vec<ChatMessage>, String> {
    let mut messages = Vec::new();
    let mut system = spec.system.clone();
    if let Some(id) = &spec.conversation_id {
        let (conversation, history) = engine
            .store
            .get_conversation(id)
            .await
            .map_err(|e| format!("cannot read conversation {id}: {e}"))?
            .ok_or_else(|| format!("conversation {id} was deleted"))?;
        system = system.or(conversation.system);
        messages.extend(history.into_iter().map(|stored| stored.message));
    }
    if let Some(system) = system.filter(|s| !s.is_empty())
        && spec.messages.first().map(|m| m.role) != Some(Role::System)
    {
        messages.insert(0, ChatMessage::new(Role::System, system));
    }
    messages.extend(spec.messages.iter().cloned());
    Ok(messages)
}

/// Streams the provider's reply into the log until it ends, fails, or a stop ends it.
async fn stream_reply(
    ctx: &mut Context,
    provider_name: &str,
    request: ChatRequest,
    deltas: &DeltaWriter,
    reply: &mut Reply,
) -> Result<Ending, EngineError> {
    let provider = match ctx.engine().providers.get(Some(provider_name)) {
        Ok(provider) => provider,
        Err(e) => return Ok(Ending::Failed(e.to_string())),
    };
    let connecting = provider.chat(request);
    tokio::pin!(connecting);
    let mut stream = loop {
        tokio::select! {
            connected = &mut connecting => match connected {
                Ok(stream) => break stream,
                Err(e) => return Ok(Ending::Failed(e.to_string())),
            },
            Some(incoming) = ctx.next() => {
                if let Some(ending) = answer(incoming) {
                    return Ok(ending);
                }
            }
        }
    };
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(Chunk::Text(text))) => {
                    reply.text.push_str(&text);
                    deltas.text(text);
                }
                Some(Ok(Chunk::ToolCall(tool_call))) => {
                    reply.tool_calls.push(tool_call.clone());
                    deltas.event(&ToolCallData { tool_call })?;
                }
                Some(Ok(Chunk::Done { finish_reason, usage })) => {
                    return Ok(Ending::Done { finish_reason, usage });
                }
                Some(Err(e)) => return Ok(Ending::Failed(e.to_string())),
                None => {
                    return Ok(Ending::Failed(
                        LlmError::Protocol {
                            provider: provider_name.to_string(),
                            message: "the reply ended before it was complete".into(),
                        }
                        .to_string(),
                    ));
                }
            },
            Some(incoming) = ctx.next() => {
                if let Some(ending) = answer(incoming) {
                    return Ok(ending);
                }
            }
        }
    }
}

/// What a request to a running turn comes to: the ending a stop causes.
fn answer(incoming: Incoming) -> Option<Ending> {
    match incoming {
        Incoming::Stop(Stop::Cancel) => Some(Ending::Cancelled),
        Incoming::Stop(Stop::Shutdown) => Some(Ending::Shutdown),
        Incoming::Control(steer) => {
            let refused = steer.unsupported();
            steer.answer(Err(refused));
            None
        }
    }
}
