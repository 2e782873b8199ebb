//! Anthropic's Messages API: `POST {base}/v1/messages` streams SSE events of content blocks
//! (text, `tool_use` with its input as partial JSON); `GET {base}/v1/models` lists the models.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};
use serde_json::{Value, json};

use super::http::{Decoder, Endpoint, Frame, Framing, parse_arguments, secret_header};
use super::openai::model_ids;
use super::{ChatRequest, Chunk, ChunkStream, LlmError, Provider, ProviderSettings};
use crate::proto::{ChatMessage, ProviderInfo, Role, ToolCall, Usage};

/// The API version victor speaks.
const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; this is used when the request names none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Anthropic's API (or a server speaking it).
pub(crate) struct Anthropic {
    endpoint: Endpoint,
}

impl Anthropic {
    pub(crate) fn new(
        info: ProviderInfo,
        api_key: Option<&str>,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<Anthropic, InvalidHeaderValue> {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        );
        if let Some(key) = api_key {
            headers.insert(HeaderName::from_static("x-api-key"), secret_header(key)?);
        }
        Ok(Anthropic {
            endpoint: Endpoint::new(info, headers, http, settings),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Anthropic {
    fn info(&self) -> ProviderInfo {
        self.endpoint.info.clone()
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChunkStream, LlmError> {
        let body = request_body(&request);
        let started = self
            .endpoint
            .post("/v1/messages", &body, &request.model)
            .await?;
        Ok(self
            .endpoint
            .stream(started, Framing::Sse, AnthropicDecoder::default()))
    }

    async fn models(&self) -> Result<Vec<String>, LlmError> {
        let list = self.endpoint.get_json("/v1/models?limit=1000").await?;
        Ok(model_ids(&list))
    }
}

/// The content blocks of one message: text, the assistant's `tool_use`, a `tool_result`.
fn blocks(message: &ChatMessage) -> Vec<Value> {
    let mut blocks = Vec::new();
    if message.role == Role::Tool {
        blocks.push(json!({
            "type": "tool_result",
            "tool_use_id": message.tool_call_id.as_deref().unwrap_or_default(),
            "content": message.content,
        }));
        return blocks;
    }
    // The API refuses empty text blocks.
    if !message.content.is_empty() {
        blocks.push(json!({"type": "text", "text": message.content}));
    }
    for call in &message.tool_calls {
        let input = match &call.arguments {
            Value::Object(_) => call.arguments.clone(),
            _ => json!({}),
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    blocks
}

/// The `/v1/messages` body: system messages in `system`, tool results as user messages, and
/// neighbouring messages of one role merged, since the API wants user and assistant to alternate
/// (several tool results answering one turn go back in one user message).
fn request_body(request: &ChatRequest) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut messages: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in request.messages.iter().filter(|m| m.role != Role::System) {
        let role = if message.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        let content = blocks(message);
        if content.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last, blocks)) if *last == role => blocks.extend(content),
            _ => messages.push((role, content)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    body
}

/// A content block being streamed.
#[derive(Debug)]
enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        input: String,
    },
    /// Thinking and other blocks victor does not relay.
    Other,
}

/// Reads the Messages event stream: text deltas as they come, a tool call when its block stops,
/// `Done` at `message_stop`.
#[derive(Debug, Default)]
struct AnthropicDecoder {
    blocks: HashMap<u64, Block>,
    usage: Usage,
    stop_reason: Option<String>,
    done: bool,
}

impl Decoder for AnthropicDecoder {
    fn frame(&mut self, frame: Frame) -> Result<Vec<Chunk>, String> {
        let data: Value =
            serde_json::from_str(&frame.data).map_err(|e| format!("an event is not JSON: {e}"))?;
        let kind = frame
            .event
            .as_deref()
            .or(data["type"].as_str())
            .unwrap_or_default();
        let index = data["index"].as_u64().unwrap_or(0);
        let mut chunks = Vec::new();
        match kind {
            "message_start" => {
                let usage = &data["message"]["usage"];
                self.usage.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let block = &data["content_block"];
                let started = match block["type"].as_str() {
                    Some("text") => {
                        if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            chunks.push(Chunk::Text(text.to_string()));
                        }
                        Block::Text
                    }
                    Some("tool_use") => Block::ToolUse {
                        id: block["id"].as_str().unwrap_or_default().to_string(),
                        name: block["name"].as_str().unwrap_or_default().to_string(),
                        input: match &block["input"] {
                            Value::Object(map) if !map.is_empty() => block["input"].to_string(),
                            _ => String::new(),
                        },
                    },
                    _ => Block::Other,
                };
                self.blocks.insert(index, started);
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match (delta["type"].as_str(), self.blocks.get_mut(&index)) {
                    (Some("text_delta"), _) => {
                        if let Some(text) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            chunks.push(Chunk::Text(text.to_string()));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::ToolUse { input, .. })) => {
                        input.push_str(delta["partial_json"].as_str().unwrap_or_default());
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(Block::ToolUse { id, name, input }) = self.blocks.remove(&index) {
                    chunks.push(Chunk::ToolCall(ToolCall {
                        id,
                        name,
                        arguments: parse_arguments(&input),
                    }));
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_string());
                }
                let usage = &data["usage"];
                if let Some(output) = usage["output_tokens"].as_u64() {
                    self.usage.output_tokens = output;
                }
                if let Some(input) = usage["input_tokens"].as_u64() {
                    self.usage.input_tokens = input;
                }
            }
            "message_stop" => {
                self.done = true;
                chunks.push(Chunk::Done {
                    finish_reason: self.stop_reason.take(),
                    usage: Some(self.usage),
                });
            }
            "error" => {
                let error = &data["error"];
                let message = error["message"].as_str().unwrap_or("unknown error");
                return Err(match error["type"].as_str() {
                    Some(kind) => format!("{message} ({kind})"),
                    None => message.to_string(),
                });
            }
            // `ping`, and event types added after this was written.
            _ => {}
        }
        Ok(chunks)
    }

    fn end(&mut self) -> Result<Vec<Chunk>, String> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err("the reply ended before message_stop".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ToolSpec;

    fn event(name: &str, data: &str) -> Frame {
        Frame {
            event: Some(name.into()),
            data: data.into(),
        }
    }

    #[test]
    fn blocks_become_text_and_tool_calls() {
        let mut decoder = AnthropicDecoder::default();
        let events = [
            event(
                "message_start",
                r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            event("ping", r#"{"type":"ping"}"#),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Reading."}}"#,
            ),
            event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"read","input":{}}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"path\": \"a"}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":".rs\"}"}}"#,
            ),
            event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            event(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}}"#,
            ),
            event("message_stop", r#"{"type":"message_stop"}"#),
        ];
        let chunks: Vec<Chunk> = events
            .into_iter()
            .flat_map(|e| decoder.frame(e).unwrap())
            .collect();
        assert_eq!(
            chunks,
            [
                Chunk::Text("Reading.".into()),
                Chunk::ToolCall(ToolCall {
                    id: "toolu_1".into(),
                    name: "read".into(),
                    arguments: json!({"path": "a.rs"})
                }),
                Chunk::Done {
                    finish_reason: Some("tool_use".into()),
                    usage: Some(Usage {
                        input_tokens: 25,
                        output_tokens: 30
                    })
                }
            ]
        );
    }

    #[test]
    fn an_error_event_ends_the_reply_with_its_message() {
        let mut decoder = AnthropicDecoder::default();
        let error = decoder
            .frame(event(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ))
            .unwrap_err();
        assert_eq!(error, "Overloaded (overloaded_error)");
        assert!(decoder.end().is_err());
    }

    #[test]
    fn system_goes_on_top_and_tool_results_into_one_user_message() {
        let mut assistant = ChatMessage::new(Role::Assistant, "Reading both.");
        for (id, path) in [("t1", "a.rs"), ("t2", "b.rs")] {
            assistant.tool_calls.push(ToolCall {
                id: id.into(),
                name: "read".into(),
                arguments: json!({"path": path}),
            });
        }
        let mut first = ChatMessage::new(Role::Tool, "A");
        first.tool_call_id = Some("t1".into());
        let mut second = ChatMessage::new(Role::Tool, "B");
        second.tool_call_id = Some("t2".into());
        let mut request = ChatRequest::new(
            "claude",
            vec![
                ChatMessage::new(Role::System, "Be brief."),
                ChatMessage::new(Role::User, "read a.rs and b.rs"),
                assistant,
                first,
                second,
            ],
        );
        request.tools.push(ToolSpec {
            name: "read".into(),
            description: "Reads a file".into(),
            parameters: json!({"type": "object"}),
        });
        let body = request_body(&request);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["max_tokens"], 4096);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][1]["type"], "tool_use");
        assert_eq!(messages[1]["content"][2]["input"]["path"], "b.rs");
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"][0]["tool_use_id"], "t1");
        assert_eq!(messages[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    }
}
