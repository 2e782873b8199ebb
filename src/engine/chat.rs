//! Chat turns and conversations. A turn is a task of kind `chat`: it streams one model reply
//! into its log (`chat.delta`, `chat.tool_call`, then `chat.message`), so every client can
//! follow, resume and watch it like any task. A conversation is the stored history its turns
//! read and add to; the reply joins it in the same transaction as the turn's final state.

use std::sync::Arc;

use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::mpsc;

use super::{Control, ControlMsg, Engine, EngineError, error_result, to_value};
use crate::llm::{ChatRequest, Chunk, LlmError};
use crate::proto::{
    ChatMessage, ChatSpec, Conversation, ConversationPage, ConversationSummary, CreateConversation,
    DeltaData, MessageData, PostMessage, Role, StoredMessage, Task, TaskResult, TaskState,
    ToolCall, ToolCallData, Usage, chat_types, task::shortened,
};
use crate::store::{ConversationAppend, ConversationQuery, SharedStore, StoreError};

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
        let running_task = self.lock().turns.get(id).cloned().flatten();
        Ok(Conversation {
            summary,
            messages,
            running_task,
        })
    }

    /// Deletes a conversation (its turns' tasks stay); refused while a turn runs in it.
    pub async fn delete_conversation(&self, id: &str) -> Result<(), EngineError> {
        if let Some(task) = self.lock().turns.get(id) {
            return Err(EngineError::TurnRunning {
                conversation: id.to_string(),
                task: task.clone(),
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
            spec: crate::proto::TaskSpec::Chat(spec),
        };
        Ok(self.create(request, None).await?.0)
    }

    /// Cancels the turn running in a conversation.
    pub async fn cancel_turn(&self, conversation_id: &str) -> Result<Task, EngineError> {
        let running = self.lock().turns.get(conversation_id).cloned();
        match running {
            Some(Some(task)) => self.cancel(&task).await,
            Some(None) | None => {
                // Exists, but nothing to cancel: say which, for the 404 or 409.
                self.conversation(conversation_id).await?;
                Err(EngineError::NoTurnRunning(conversation_id.to_string()))
            }
        }
    }

    /// Fills in what a chat turn left to the server (provider, model, and with a conversation
    /// its settings) and claims the conversation for it: one turn at a time per conversation.
    /// The claim is given back by [`Engine::release_turn`].
    pub(super) async fn prepare_chat(&self, spec: &mut ChatSpec) -> Result<(), EngineError> {
        let Some(id) = spec.conversation_id.clone() else {
            let (provider, model) = self
                .providers
                .resolve(spec.provider.as_deref(), spec.model.as_deref())
                .await?;
            spec.provider = Some(provider.info().name);
            spec.model = Some(model);
            return Ok(());
        };
        self.claim(&id).await?;
        let prepared = self.prepare_turn(&id, spec).await;
        if prepared.is_err() {
            self.release_turn(&id);
        }
        prepared
    }

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

    /// Claims a conversation for a turn about to be made, unless one is running in it.
    async fn claim(&self, id: &str) -> Result<(), EngineError> {
        let holder = {
            let mut scheduler = self.lock();
            match scheduler.turns.get(id) {
                None => {
                    scheduler.turns.insert(id.to_string(), None);
                    return Ok(());
                }
                Some(holder) => holder.clone(),
            }
        };
        // A turn's final event reaches its clients a moment before its runner lets go of the
        // conversation: a client that asks again at once finds the claim of a finished task.
        if let Some(task) = &holder
            && self
                .store
                .get_task(task)
                .await?
                .is_none_or(|task| task.state.is_final())
        {
            let mut scheduler = self.lock();
            // Still that finished task's claim, or let go of meanwhile: ours now.
            if scheduler.turns.get(id).is_none_or(|now| *now == holder) {
                scheduler.turns.insert(id.to_string(), None);
                return Ok(());
            }
        }
        Err(EngineError::TurnRunning {
            conversation: id.to_string(),
            task: holder,
        })
    }

    /// Records which task answers a claimed conversation.
    pub(super) fn claim_turn(&self, conversation_id: &str, task_id: &str) {
        self.lock()
            .turns
            .insert(conversation_id.to_string(), Some(task_id.to_string()));
    }

    pub(super) fn release_turn(&self, conversation_id: &str) {
        self.lock().turns.remove(conversation_id);
    }
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
pub(super) async fn run(
    engine: &Arc<Engine>,
    task: &Task,
    spec: &ChatSpec,
    mut inbox: mpsc::Receiver<ControlMsg>,
) -> Result<(), EngineError> {
    engine
        .change_state(&task.id, TaskState::Running, &[TaskState::Queued], None)
        .await?;
    let provider_name = spec.provider.clone().unwrap_or_default();
    let model = spec.model.clone().unwrap_or_default();
    let deltas = DeltaWriter::start(engine.store.clone(), task.id.clone(), chat_types::DELTA);
    let mut reply = Reply::default();
    let ending = match context(engine, spec).await {
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
            stream_reply(
                engine,
                &provider_name,
                request,
                &mut inbox,
                &deltas,
                &mut reply,
            )
            .await
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
            append(
                engine,
                &task.id,
                chat_types::MESSAGE,
                &record(finish_reason, usage),
            )
            .await?;
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
                let data = record(Some("cancelled".into()), None);
                append(engine, &task.id, chat_types::MESSAGE, &data).await?;
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
    engine
        .finish_with(&task.id, state, result, &reason, messages)
        .await?;
    Ok(())
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

/// Streams the provider's reply into the log until it ends, fails, or a control ends it.
async fn stream_reply(
    engine: &Engine,
    provider_name: &str,
    request: ChatRequest,
    inbox: &mut mpsc::Receiver<ControlMsg>,
    deltas: &DeltaWriter,
    reply: &mut Reply,
) -> Ending {
    let provider = match engine.providers.get(Some(provider_name)) {
        Ok(provider) => provider,
        Err(e) => return Ending::Failed(e.to_string()),
    };
    let connecting = provider.chat(request);
    tokio::pin!(connecting);
    let mut stream = loop {
        tokio::select! {
            connected = &mut connecting => match connected {
                Ok(stream) => break stream,
                Err(e) => return Ending::Failed(e.to_string()),
            },
            Some(control) = inbox.recv() => {
                if let Some(ending) = answer(control) {
                    return ending;
                }
            }
        }
    };
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(Chunk::Text(text))) => {
                    reply.text.push_str(&text);
                    deltas.send(chat_types::DELTA, to_value(&DeltaData { text }));
                }
                Some(Ok(Chunk::ToolCall(tool_call))) => {
                    reply.tool_calls.push(tool_call.clone());
                    deltas.send(chat_types::TOOL_CALL, to_value(&ToolCallData { tool_call }));
                }
                Some(Ok(Chunk::Done { finish_reason, usage })) => {
                    return Ending::Done { finish_reason, usage };
                }
                Some(Err(e)) => return Ending::Failed(e.to_string()),
                None => {
                    return Ending::Failed(
                        LlmError::Protocol {
                            provider: provider_name.to_string(),
                            message: "the reply ended before it was complete".into(),
                        }
                        .to_string(),
                    );
                }
            },
            Some(control) = inbox.recv() => {
                if let Some(ending) = answer(control) {
                    return ending;
                }
            }
        }
    }
}

/// Answers a control sent to a running turn; the ending it causes, if any.
fn answer((control, reply): ControlMsg) -> Option<Ending> {
    let (answer, ending) = match control {
        Control::Cancel => (Ok(()), Some(Ending::Cancelled)),
        Control::Shutdown => (Ok(()), Some(Ending::Shutdown)),
        other => (
            Err(EngineError::Unsupported {
                action: other.action(),
                kind: "chat",
            }),
            None,
        ),
    };
    let _ = reply.send(answer);
    ending
}

/// Writes a model's streamed events in order without making the stream wait for each commit:
/// whatever arrives while one write is committing goes into the next, and adjacent text
/// deltas (events of kind `delta`, data `{"text"}`) are joined, so a fast model costs one
/// write per commit rather than per token.
pub(super) struct DeltaWriter {
    events: mpsc::UnboundedSender<(&'static str, serde_json::Value)>,
    writer: tokio::task::JoinHandle<Result<(), StoreError>>,
}

impl DeltaWriter {
    pub(super) fn start(store: SharedStore, task_id: String, delta: &'static str) -> DeltaWriter {
        let (events, mut waiting) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut batch: Vec<(&'static str, serde_json::Value)> = vec![first];
                while let Ok(next) = waiting.try_recv() {
                    match (batch.last_mut(), next) {
                        (Some((kind, last)), (more_kind, more))
                            if *kind == delta && more_kind == delta =>
                        {
                            join_text(last, &more);
                        }
                        (_, next) => batch.push(next),
                    }
                }
                store.append(&task_id, batch).await?;
            }
            Ok(())
        });
        DeltaWriter { events, writer }
    }

    pub(super) fn send(&self, kind: &'static str, data: serde_json::Value) {
        // The writer ends only when this sender is dropped, or on a store error that
        // `finish` reports.
        let _ = self.events.send((kind, data));
    }

    /// Waits until everything sent is stored.
    pub(super) async fn finish(self) -> Result<(), EngineError> {
        drop(self.events);
        match self.writer.await {
            Ok(written) => Ok(written?),
            Err(e) => {
                tracing::error!(error = %e, "a chat turn's event writer failed");
                Err(EngineError::Store(StoreError::Closed))
            }
        }
    }
}

/// Appends the text of one `chat.delta` to another's.
fn join_text(into: &mut serde_json::Value, from: &serde_json::Value) {
    let more = from
        .get("text")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    if let Some(serde_json::Value::String(text)) = into.get_mut("text") {
        text.push_str(more);
    }
}

async fn append<T: serde::Serialize>(
    engine: &Engine,
    task_id: &str,
    kind: &'static str,
    data: &T,
) -> Result<(), EngineError> {
    engine
        .store
        .append(task_id, vec![(kind, to_value(data))])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_deltas_join_into_one() {
        let mut first = to_value(&DeltaData { text: "Hel".into() });
        join_text(
            &mut first,
            &to_value(&DeltaData {
                text: "lo ✓".into(),
            }),
        );
        assert_eq!(first, serde_json::json!({"text": "Hello ✓"}));
    }
}
