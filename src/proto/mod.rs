//! Wire types shared by the server and its clients. Serde (and the OpenAPI schema derive that
//! describes the same wire format) only: nothing here knows about HTTP, storage or processes.
//! The one exception is the certificate fingerprint, whose format is a SHA-256. `human` holds
//! how tasks read to people, shared by every client that shows them.

pub mod agent;
pub mod api;
pub mod auth;
pub mod chat;
pub mod event;
pub mod fingerprint;
pub mod human;
pub mod render;
pub mod schema;
pub mod session;
pub mod task;

pub use agent::{
    AgentMessageData, AgentMode, AgentSpec, Approval, ApprovalAnswer, ApprovalRequested,
    ApprovalResolved, ApprovalStatus, BudgetExhausted, ChangeKind, Checkpoint, CheckpointCreated,
    Decision, FileChange, Guidance, MessageDeltaData, Permission, Rollback, RolledBack,
    ToolCallEvent, ToolResultEvent, Unanswered, agent_types,
};
pub use api::{
    CreateTask, ErrorBody, ErrorInfo, Health, Input, NodeInfo, PROTOCOL_VERSION, START_POS_HEADER,
    Status, TaskPage, WsReply, WsRequest,
};
pub use auth::{CreateKey, CreatedKey, KeyInfo, Scope, SessionRequest, SessionToken};
pub use chat::{
    ChatMessage, Conversation, ConversationPage, ConversationSummary, CreateConversation,
    DeltaData, MessageData, ModelInfo, ModelList, PostMessage, ProviderFailure, ProviderInfo,
    ProviderKind, Role, StoredMessage, ToolCall, ToolCallData, ToolResult, ToolSpec, Usage,
    chat_types,
};
pub use event::{
    Event, EventData, EventFrame, InputData, OutputData, OutputStream, StateData, TruncatedData,
    types,
};
pub use fingerprint::{BadFingerprint, Fingerprint};
pub use render::{
    BackendChoice, BackendKind, DiagramType, RENDER_BACKEND_HEADER, RENDER_CACHE_HEADER,
    RenderBackends, RenderOptions, RenderRequest, TypeBackends, UnknownDiagramType,
};
pub use session::{
    CheckpointRequest, CheckpointSaved, CreateSession, DEFAULT_KERNEL, ExecuteRequest, Execution,
    ExecutionCleared, ExecutionDisplay, ExecutionError, ExecutionFinished, ExecutionOutput,
    ExecutionQueued, ExecutionResult, ExecutionStarted, ExecutionStatus, InputAnswer,
    InputAnswered, InputRequested, Interrupted, KernelReady, KernelSpecInfo, MimeBundle,
    RaisedError, RestartReason, RestoreRequest, Restored, SessionCheckpoint, SessionRestarting,
    SessionSpec, SessionState, SessionStatus, SkippedVariable, TransactionPolicy, plain_traceback,
    session_types,
};
pub use task::{
    ChatSpec, Command, ExecSpec, KindSpec, SpecVariant, Task, TaskResult, TaskSpec, TaskState,
};
