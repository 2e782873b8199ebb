//! The OpenAI-compatible API (OpenAI, vLLM, llama.cpp's server, LM Studio...):
//! `POST {base}/chat/completions` streams SSE `data:` chunks ending with `data: [DONE]`;
//! `GET {base}/models` lists the models.

use std::collections::BTreeMap;

use reqwest::header::{AUTHORIZATION, HeaderMap, InvalidHeaderValue};
use serde_json::{Value, json};

use super::http::{Decoder, Endpoint, Frame, Framing, new_call_id, parse_arguments, secret_header};
use super::{ChatRequest, Chunk, ChunkStream, LlmError, Provider, ProviderSettings};
use crate::proto::{ProviderInfo, Role, ToolCall, Usage};

/// A server speaking `/v1/chat/completions`.
pub(crate) struct OpenAi {
    endpoint: Endpoint,
}

impl OpenAi {
    pub(crate) fn new(
        info: ProviderInfo,
        api_key: Option<&str>,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<OpenAi, InvalidHeaderValue> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {key}"))?);
        }
        Ok(OpenAi {
            endpoint: Endpoint::new(info, headers, http, settings),
        })
    }
}

#[async_trait::async_trait]
impl Provider for OpenAi {
    fn info(&self) -> ProviderInfo {
        self.endpoint.info.clone()
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChunkStream, LlmError> {
        let body = request_body(&request);
        let started = self
            .endpoint
            .post("/chat/completions", &body, &request.model)
            .await?;
        Ok(self
            .endpoint
            .stream(started, Framing::Sse, OpenAiDecoder::default()))
    }

    async fn models(&self) -> Result<Vec<String>, LlmError> {
        let list = self.endpoint.get_json("/models").await?;
        Ok(model_ids(&list))
    }
}

/// The ids of a `{"data": [{"id": ...}]}` model list (OpenAI's and Anthropic's shape).
pub(crate) fn model_ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .map(str::to_string)
        .collect()
}

/// The `/chat/completions` body: tool calls with their arguments as JSON text, tool results
/// naming the call they answer, usage asked for in the stream.
fn request_body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|message| {
            let mut out = json!({"role": message.role.as_str(), "content": message.content});
            if !message.tool_calls.is_empty() {
                if message.content.is_empty() {
                    out["content"] = Value::Null;
                }
                out["tool_calls"] = message
                    .tool_calls
                    .iter()
                    .map(|call| {
                        let arguments = match &call.arguments {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        };
                        json!({"id": call.id, "type": "function",
                               "function": {"name": call.name, "arguments": arguments}})
                    })
                    .collect();
            }
            if message.role == Role::Tool {
                out["tool_call_id"] = json!(message.tool_call_id.as_deref().unwrap_or_default());
            }
            out
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                }})
            })
            .collect();
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(max_tokens) = request.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    body
}

/// A tool call being assembled from its deltas.
#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// Reads `chat.completion.chunk`s: text deltas as they come, tool calls assembled by index and
/// handed out when the choice finishes, `Done` at `[DONE]`.
#[derive(Debug, Default)]
struct OpenAiDecoder {
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl OpenAiDecoder {
    fn take_calls(&mut self) -> Vec<Chunk> {
        std::mem::take(&mut self.calls)
            .into_values()
            .map(|call| {
                Chunk::ToolCall(ToolCall {
                    id: call.id.unwrap_or_else(new_call_id),
                    name: call.name,
                    arguments: parse_arguments(&call.arguments),
                })
            })
            .collect()
    }

    fn finish(&mut self) -> Vec<Chunk> {
        self.done = true;
        let mut chunks = self.take_calls();
        chunks.push(Chunk::Done {
            finish_reason: self.finish_reason.take(),
            usage: self.usage.take(),
        });
        chunks
    }

    /// Adds one `delta.tool_calls` entry. Servers that leave out `index` send each call whole
    /// with its own id.
    fn add_call_delta(&mut self, delta: &Value) {
        let id = delta["id"].as_str().filter(|id| !id.is_empty());
        let index = delta["index"].as_u64().unwrap_or_else(|| {
            let known = id.and_then(|id| {
                self.calls
                    .iter()
                    .find(|(_, call)| call.id.as_deref() == Some(id))
                    .map(|(index, _)| *index)
            });
            match (known, id) {
                (Some(index), _) => index,
                (None, Some(_)) => self.calls.keys().next_back().map_or(0, |last| last + 1),
                (None, None) => self.calls.keys().next_back().copied().unwrap_or(0),
            }
        });
        let call = self.calls.entry(index).or_default();
        if let Some(id) = id {
            call.id = Some(id.to_string());
        }
        let function = &delta["function"];
        if let Some(name) = function["name"].as_str() {
            call.name.push_str(name);
        }
        if let Some(arguments) = function["arguments"].as_str() {
            call.arguments.push_str(arguments);
        }
    }
}

impl Decoder for OpenAiDecoder {
    fn frame(&mut self, frame: Frame) -> Result<Vec<Chunk>, String> {
        let data = frame.data.trim();
        if data == "[DONE]" {
            return Ok(self.finish());
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("an event is not JSON: {e}"))?;
        if let Some(error) = chunk.get("error") {
            return Err(error["message"]
                .as_str()
                .or(error.as_str())
                .map_or_else(|| error.to_string(), str::to_string));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(Usage {
                input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            });
        }
        let mut chunks = Vec::new();
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return Ok(chunks);
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            chunks.push(Chunk::Text(text.to_string()));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.add_call_delta(call);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
            chunks.extend(self.take_calls());
        }
        Ok(chunks)
    }

    fn end(&mut self) -> Result<Vec<Chunk>, String> {
        if self.done {
            Ok(Vec::new())
        } else if self.finish_reason.is_some() {
            // Some servers end the stream without `[DONE]` once the choice has finished.
            Ok(self.finish())
        } else {
            Err("the reply ended before it finished (no finish_reason, no [DONE])".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ChatMessage;

    fn data(data: &str) -> Frame {
        Frame {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn tool_call_arguments_are_assembled_across_deltas() {
        let mut decoder = OpenAiDecoder::default();
        let events = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Let me look."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"read","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"ls","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a.rs\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#,
            "[DONE]",
        ];
        let chunks: Vec<Chunk> = events
            .into_iter()
            .flat_map(|e| decoder.frame(data(e)).unwrap())
            .collect();
        assert_eq!(
            chunks,
            [
                Chunk::Text("Let me look.".into()),
                Chunk::ToolCall(ToolCall {
                    id: "call_1".into(),
                    name: "read".into(),
                    arguments: json!({"path": "a.rs"})
                }),
                Chunk::ToolCall(ToolCall {
                    id: "call_2".into(),
                    name: "ls".into(),
                    arguments: json!({})
                }),
                Chunk::Done {
                    finish_reason: Some("tool_calls".into()),
                    usage: Some(Usage {
                        input_tokens: 9,
                        output_tokens: 4
                    })
                }
            ]
        );
        assert_eq!(decoder.end().unwrap(), []);
    }

    #[test]
    fn calls_without_index_are_told_apart_by_id() {
        let mut decoder = OpenAiDecoder::default();
        for event in [
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"x","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"y","arguments":"{}"}}]}}]}"#,
        ] {
            decoder.frame(data(event)).unwrap();
        }
        let chunks = decoder.end();
        assert!(chunks.is_err(), "no finish_reason yet");
        let names: Vec<String> = decoder
            .take_calls()
            .into_iter()
            .map(|c| match c {
                Chunk::ToolCall(call) => call.name,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["x", "y"]);
    }

    #[test]
    fn an_error_event_carries_its_message() {
        let mut decoder = OpenAiDecoder::default();
        assert_eq!(
            decoder
                .frame(data(
                    r#"{"error":{"message":"overloaded","type":"server_error"}}"#
                ))
                .unwrap_err(),
            "overloaded"
        );
    }

    #[test]
    fn tool_calls_go_back_with_arguments_as_text() {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "read".into(),
            arguments: json!({"path": "a.rs"}),
        });
        let mut result = ChatMessage::new(Role::Tool, "fn main() {}");
        result.tool_call_id = Some("c1".into());
        let body = request_body(&ChatRequest::new("gpt", vec![assistant, result]));
        assert_eq!(body["messages"][0]["content"], Value::Null);
        assert_eq!(
            body["messages"][0]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a.rs"}"#
        );
        assert_eq!(body["messages"][1]["tool_call_id"], "c1");
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
