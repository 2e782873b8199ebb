//! Ollama's native API: `POST /api/chat` streams one JSON object per line; `GET /api/tags`
//! lists the models pulled on the machine.

use std::collections::HashMap;

use reqwest::header::{AUTHORIZATION, HeaderMap, InvalidHeaderValue};
use serde_json::{Map, Value, json};

use super::http::{Decoder, Endpoint, Frame, Framing, new_call_id, parse_arguments, secret_header};
use super::{ChatRequest, Chunk, ChunkStream, LlmError, Provider, ProviderSettings};
use crate::proto::{ProviderInfo, Role, ToolCall, Usage};

/// An Ollama server (local, or behind a proxy that wants a bearer token).
pub(crate) struct Ollama {
    endpoint: Endpoint,
}

impl Ollama {
    pub(crate) fn new(
        info: ProviderInfo,
        api_key: Option<&str>,
        http: reqwest::Client,
        settings: ProviderSettings,
    ) -> Result<Ollama, InvalidHeaderValue> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            headers.insert(AUTHORIZATION, secret_header(&format!("Bearer {key}"))?);
        }
        Ok(Ollama {
            endpoint: Endpoint::new(info, headers, http, settings),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Ollama {
    fn info(&self) -> ProviderInfo {
        self.endpoint.info.clone()
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChunkStream, LlmError> {
        let body = request_body(&request);
        let started = self
            .endpoint
            .post("/api/chat", &body, &request.model)
            .await?;
        Ok(self
            .endpoint
            .stream(started, Framing::Lines, OllamaDecoder::default()))
    }

    async fn models(&self) -> Result<Vec<String>, LlmError> {
        let tags = self.endpoint.get_json("/api/tags").await?;
        Ok(tags["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().or(m["model"].as_str()))
            .map(str::to_string)
            .collect())
    }
}

/// The `/api/chat` body: messages as Ollama takes them (tool call arguments as objects, tool
/// results naming their tool), tools as functions, sampling settings under `options`.
fn request_body(request: &ChatRequest) -> Value {
    let tool_names: HashMap<&str, &str> = request
        .messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .map(|call| (call.id.as_str(), call.name.as_str()))
        .collect();
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|message| {
            let mut out = json!({"role": message.role.as_str(), "content": message.content});
            if !message.tool_calls.is_empty() {
                out["tool_calls"] = message
                    .tool_calls
                    .iter()
                    .map(|call| json!({"function": {"name": call.name, "arguments": call.arguments}}))
                    .collect();
            }
            if message.role == Role::Tool
                && let Some(name) = message
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| tool_names.get(id))
            {
                out["tool_name"] = json!(name);
            }
            out
        })
        .collect();
    let mut body = json!({"model": request.model, "messages": messages, "stream": true});
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
    let mut options = Map::new();
    if let Some(temperature) = request.temperature {
        options.insert("temperature".into(), json!(temperature));
    }
    if let Some(max_tokens) = request.max_tokens {
        options.insert("num_predict".into(), json!(max_tokens));
    }
    if !request.stop.is_empty() {
        options.insert("stop".into(), json!(request.stop));
    }
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    body
}

/// Reads `/api/chat` lines: each carries a piece of the message, the last one `done: true`.
#[derive(Debug, Default)]
struct OllamaDecoder {
    done: bool,
}

impl Decoder for OllamaDecoder {
    fn frame(&mut self, frame: Frame) -> Result<Vec<Chunk>, String> {
        let line: Value = serde_json::from_str(&frame.data)
            .map_err(|e| format!("a line of the reply is not JSON: {e}"))?;
        if let Some(error) = line.get("error") {
            return Err(error
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string));
        }
        let mut chunks = Vec::new();
        let message = &line["message"];
        if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
            chunks.push(Chunk::Text(text.to_string()));
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            let function = &call["function"];
            let arguments = match &function["arguments"] {
                Value::String(text) => parse_arguments(text),
                Value::Null => json!({}),
                other => other.clone(),
            };
            chunks.push(Chunk::ToolCall(ToolCall {
                id: call["id"].as_str().map_or_else(new_call_id, str::to_string),
                name: function["name"].as_str().unwrap_or_default().to_string(),
                arguments,
            }));
        }
        if line["done"].as_bool() == Some(true) {
            self.done = true;
            let usage = (line.get("prompt_eval_count").is_some()
                || line.get("eval_count").is_some())
            .then(|| Usage {
                input_tokens: line["prompt_eval_count"].as_u64().unwrap_or(0),
                output_tokens: line["eval_count"].as_u64().unwrap_or(0),
            });
            chunks.push(Chunk::Done {
                finish_reason: line["done_reason"].as_str().map(str::to_string),
                usage,
            });
        }
        Ok(chunks)
    }

    fn end(&mut self) -> Result<Vec<Chunk>, String> {
        if self.done {
            Ok(Vec::new())
        } else {
            Err("the reply ended before its last line (done: true)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ChatMessage, ToolSpec};

    fn line(data: &str) -> Frame {
        Frame {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn lines_become_text_tool_calls_and_done() {
        let mut decoder = OllamaDecoder::default();
        assert_eq!(
            decoder
                .frame(line(
                    r#"{"message":{"role":"assistant","content":"Hi"},"done":false}"#
                ))
                .unwrap(),
            [Chunk::Text("Hi".into())]
        );
        let chunks = decoder
            .frame(line(
                r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"read","arguments":{"path":"a.rs"}}}]},"done":false}"#,
            ))
            .unwrap();
        let [Chunk::ToolCall(call)] = chunks.as_slice() else {
            panic!("{chunks:?}")
        };
        assert_eq!(call.name, "read");
        assert_eq!(call.arguments, json!({"path": "a.rs"}));
        assert!(call.id.starts_with("call_"));
        assert_eq!(
            decoder
                .frame(line(
                    r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":12,"eval_count":3}"#
                ))
                .unwrap(),
            [Chunk::Done {
                finish_reason: Some("stop".into()),
                usage: Some(Usage {
                    input_tokens: 12,
                    output_tokens: 3
                })
            }]
        );
        assert_eq!(decoder.end().unwrap(), []);
    }

    #[test]
    fn an_error_line_or_a_missing_done_is_an_error() {
        let mut decoder = OllamaDecoder::default();
        assert_eq!(
            decoder
                .frame(line(r#"{"error":"out of memory"}"#))
                .unwrap_err(),
            "out of memory"
        );
        assert!(decoder.end().is_err());
    }

    #[test]
    fn tool_results_name_their_tool_and_options_hold_settings() {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "read".into(),
            arguments: json!({"path": "a.rs"}),
        });
        let mut result = ChatMessage::new(Role::Tool, "fn main() {}");
        result.tool_call_id = Some("c1".into());
        let mut request = ChatRequest::new(
            "llama3.2",
            vec![ChatMessage::new(Role::User, "read a.rs"), assistant, result],
        );
        request.tools.push(ToolSpec {
            name: "read".into(),
            description: "Reads a file".into(),
            parameters: json!({"type": "object"}),
        });
        request.max_tokens = Some(64);
        let body = request_body(&request);
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["messages"][1]["tool_calls"][0]["function"]["arguments"]["path"],
            "a.rs"
        );
        assert_eq!(body["messages"][2]["tool_name"], "read");
        assert_eq!(body["tools"][0]["function"]["name"], "read");
        assert_eq!(body["options"], json!({"num_predict": 64}));
    }
}
