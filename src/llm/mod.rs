//! LLM providers behind one trait: Ollama's native API, the OpenAI-compatible API and
//! Anthropic's Messages API, all streaming, all with tool calls. The engine runs chat turns
//! and agents through [`Provider`]; nothing here knows about tasks, storage or HTTP serving.

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use crate::proto::{ChatMessage, ProviderInfo, ProviderKind, ToolCall, ToolSpec, Usage};

mod anthropic;
mod http;
mod ollama;
mod openai;
mod registry;

pub use registry::{DEFAULT_OLLAMA_URL, ProviderConfigError, Providers, parse_provider_spec};

/// What one model call sends.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// A system message first when there is one; then the conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages,
            tools: Vec::new(),
            temperature: None,
            max_tokens: None,
            stop: Vec::new(),
        }
    }
}

/// A piece of a streamed reply, in the order the provider sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    /// Text of the reply; concatenated, the chunks are the reply's content. Never splits a
    /// character.
    Text(String),
    /// A complete tool call (arguments assembled from however many deltas carried them).
    ToolCall(ToolCall),
    /// The reply is complete; always the last chunk of a stream that did not fail.
    Done {
        finish_reason: Option<String>,
        usage: Option<Usage>,
    },
}

/// A reply as it streams. Dropping it stops the request.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, LlmError>> + Send>>;

/// Why a model call failed, in words a person can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("provider {provider} at {url} is not reachable: {reason}")]
    Unreachable {
        provider: String,
        url: String,
        reason: String,
    },
    #[error("model {model} not found at provider {provider}")]
    ModelNotFound { provider: String, model: String },
    /// The provider answered with an error status; `message` is its own words.
    #[error("provider {provider} answered {status}: {message}")]
    Provider {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("provider {provider} did not answer within {}s", .after.as_secs())]
    Timeout { provider: String, after: Duration },
    /// The provider sent something that is not its protocol, or broke off mid-reply.
    #[error("provider {provider}: {message}")]
    Protocol { provider: String, message: String },
    #[error("no provider named {0} (see GET /api/v1/providers)")]
    UnknownProvider(String),
    #[error("provider {0} has no default model: name one with --model")]
    NoModel(String),
}

/// One configured LLM endpoint.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn info(&self) -> ProviderInfo;

    /// Starts a streamed reply. Connection failures are retried with backoff until the
    /// response starts; once anything was streamed, a failure ends the stream with an error.
    async fn chat(&self, request: ChatRequest) -> Result<ChunkStream, LlmError>;

    /// The models the provider offers (`/api/tags`, `/v1/models`).
    async fn models(&self) -> Result<Vec<String>, LlmError>;
}

/// How to reach one provider: a `[providers.NAME]` table of `config.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    pub base_url: String,
    /// The environment variable holding the API key (the key itself is never in the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
}

/// How patiently victor talks to providers. Local models can take minutes to load before their
/// first token, so the wait for the first byte is long; once a reply streams, a long silence
/// means the provider is stuck. Connection failures are retried because a local server that
/// is starting (or restarting) refuses connections for a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to the first byte of its response body.
    pub first_byte_timeout: Duration,
    /// Longest silence between two pieces of a streamed response.
    pub idle_timeout: Duration,
    /// How many times a connection failure is retried before the provider counts as
    /// unreachable (a failure after the response started is never retried).
    pub retries: u32,
    /// The wait before the first retry; it doubles for each further one.
    pub backoff: Duration,
}

impl Default for ProviderSettings {
    fn default() -> ProviderSettings {
        ProviderSettings {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_millis(250),
        }
    }
}
