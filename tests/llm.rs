//! The three provider implementations against the fake provider, over real HTTP on loopback:
//! streaming, tool calls, characters split across chunks, errors, timeouts, retries,
//! cancellation, model lists and the request bodies each wire format expects.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_llm::{FakeLlm, Format, Reply, eventually, refused_port};
use futures_util::StreamExt;
use serde_json::json;
use victor::llm::{
    ChatRequest, Chunk, LlmError, Provider, ProviderConfig, ProviderSettings, Providers,
};
use victor::proto::{ChatMessage, ProviderKind, Role, ToolCall, ToolSpec, Usage};

const FORMATS: [Format; 3] = [Format::Ollama, Format::OpenAi, Format::Anthropic];

/// Short timeouts so failures show quickly.
fn settings() -> ProviderSettings {
    ProviderSettings {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(3),
        retries: 3,
        backoff: Duration::from_millis(50),
    }
}

fn kind(format: Format) -> ProviderKind {
    match format {
        Format::Ollama => ProviderKind::Ollama,
        Format::OpenAi => ProviderKind::Openai,
        Format::Anthropic => ProviderKind::Anthropic,
    }
}

fn name(format: Format) -> &'static str {
    match format {
        Format::Ollama => "local",
        Format::OpenAi => "gpt",
        Format::Anthropic => "claude",
    }
}

fn registry(format: Format, url: &str, settings: ProviderSettings) -> Providers {
    let config = ProviderConfig {
        kind: kind(format),
        base_url: url.to_string(),
        api_key_env: None,
        default_model: None,
    };
    let configs = BTreeMap::from([(name(format).to_string(), config)]);
    Providers::with_keys(configs, None, settings, |var| {
        Some(format!("key-from-{var}"))
    })
    .unwrap()
}

fn provider_at(format: Format, url: &str, settings: ProviderSettings) -> Arc<dyn Provider> {
    registry(format, url, settings).get(None).unwrap()
}

fn provider(fake: &FakeLlm, format: Format) -> Arc<dyn Provider> {
    provider_at(format, &fake.url(format), settings())
}

fn hello() -> ChatRequest {
    ChatRequest::new("fake-small", vec![ChatMessage::new(Role::User, "hello")])
}

/// Everything a stream yielded, up to its end or its first error.
#[derive(Debug, Default)]
struct Collected {
    texts: Vec<String>,
    calls: Vec<ToolCall>,
    done: Option<(Option<String>, Option<Usage>)>,
    error: Option<LlmError>,
    after_end: usize,
}

impl Collected {
    fn text(&self) -> String {
        self.texts.concat()
    }
}

async fn collect(provider: &Arc<dyn Provider>, request: ChatRequest) -> Collected {
    let mut stream = match provider.chat(request).await {
        Ok(stream) => stream,
        Err(error) => {
            return Collected {
                error: Some(error),
                ..Collected::default()
            };
        }
    };
    let mut collected = Collected::default();
    while let Some(item) = stream.next().await {
        if collected.done.is_some() || collected.error.is_some() {
            collected.after_end += 1;
            continue;
        }
        match item {
            Ok(Chunk::Text(text)) => collected.texts.push(text),
            Ok(Chunk::ToolCall(call)) => collected.calls.push(call),
            Ok(Chunk::Done {
                finish_reason,
                usage,
            }) => collected.done = Some((finish_reason, usage)),
            Err(error) => collected.error = Some(error),
        }
    }
    collected
}

#[tokio::test]
async fn streamed_text_arrives_in_order_and_ends_with_done() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        let pieces = ["Hel", "lo, ", "wor", "ld", "!"];
        fake.push(
            Reply::text(&pieces)
                .pieces_every(Duration::from_millis(5))
                .usage(7, 5),
        );
        let got = collect(&provider(&fake, format), hello()).await;
        assert!(got.error.is_none(), "{format:?}: {:?}", got.error);
        assert_eq!(got.texts, pieces, "{format:?}");
        assert_eq!(got.after_end, 0, "{format:?}: nothing after Done");
        let (reason, usage) = got.done.expect("done");
        assert!(reason.is_some(), "{format:?}");
        assert_eq!(
            usage,
            Some(Usage {
                input_tokens: 7,
                output_tokens: 5
            }),
            "{format:?}"
        );
    }
}

#[tokio::test]
async fn with_nothing_scripted_the_fake_echoes() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        let got = collect(&provider(&fake, format), hello()).await;
        assert_eq!(got.text(), "echo: hello", "{format:?}");
        assert!(got.texts.len() > 1, "{format:?}: streamed in pieces");
    }
}

#[tokio::test]
async fn tool_calls_split_across_deltas_are_assembled() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        fake.push(
            Reply::text(&["Let me read it."])
                .then_tool_call(
                    "call_a",
                    "read_file",
                    &["{\"pa", "th\": \"src/", "main.rs\"}"],
                )
                .then_tool_call(
                    "call_b",
                    "run",
                    &["{\"argv\": [\"cargo\",", " \"test\"], \"n\": 3", "}"],
                )
                .pieces_every(Duration::from_millis(2)),
        );
        let got = collect(&provider(&fake, format), hello()).await;
        assert!(got.error.is_none(), "{format:?}: {:?}", got.error);
        assert_eq!(got.text(), "Let me read it.");
        let calls: Vec<(&str, &serde_json::Value)> = got
            .calls
            .iter()
            .map(|c| (c.name.as_str(), &c.arguments))
            .collect();
        assert_eq!(
            calls,
            [
                ("read_file", &json!({"path": "src/main.rs"})),
                ("run", &json!({"argv": ["cargo", "test"], "n": 3})),
            ],
            "{format:?}"
        );
        match format {
            // Ollama gives no ids: the provider makes unique ones.
            Format::Ollama => {
                assert!(got.calls.iter().all(|c| c.id.starts_with("call_")));
                assert_ne!(got.calls[0].id, got.calls[1].id);
            }
            _ => assert_eq!(got.calls[0].id, "call_a", "{format:?}"),
        }
        let (reason, _) = got.done.expect("done");
        let expected = match format {
            Format::Ollama => "stop",
            Format::OpenAi => "tool_calls",
            Format::Anthropic => "tool_use",
        };
        assert_eq!(reason.as_deref(), Some(expected));
    }
}

#[tokio::test]
async fn characters_split_across_http_chunks_come_out_whole() {
    let fake = FakeLlm::start();
    let pieces = ["héllo ", "wörld ", "🦀 ", "日本語", "—ok"];
    for format in FORMATS {
        for size in [1, 2, 3, 5] {
            // Each slice is its own HTTP chunk, so the client reads it separately.
            fake.push(Reply::text(&pieces).in_slices_of(size));
            let got = collect(&provider(&fake, format), hello()).await;
            assert!(got.error.is_none(), "{format:?}/{size}: {:?}", got.error);
            assert_eq!(got.texts, pieces, "{format:?}/{size}");
        }
    }
}

#[tokio::test]
async fn a_mid_stream_error_ends_the_stream_and_is_not_retried() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        let before = fake.requests().len();
        fake.push(
            Reply::text(&["partial ", "answer"])
                .then_error("the model crashed")
                .pieces_every(Duration::from_millis(2)),
        );
        let got = collect(&provider(&fake, format), hello()).await;
        assert_eq!(got.text(), "partial answer", "{format:?}");
        assert!(got.done.is_none());
        match got.error {
            Some(LlmError::Protocol { provider, message }) => {
                assert_eq!(provider, name(format));
                assert!(
                    message.contains("the model crashed"),
                    "{format:?}: {message}"
                );
            }
            other => panic!("{format:?}: {other:?}"),
        }
        assert_eq!(got.after_end, 0);
        assert_eq!(fake.requests().len(), before + 1, "{format:?}: not retried");
    }
}

#[tokio::test]
async fn a_connection_broken_mid_reply_is_an_error_and_is_not_retried() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        let before = fake.requests().len();
        // The pause lets the partial reply reach the client before the connection breaks
        // (without it the response never started, which is a failure worth a retry).
        fake.push(
            Reply::text(&["partial"])
                .then_hang_up()
                .pieces_every(Duration::from_millis(50)),
        );
        let got = collect(&provider(&fake, format), hello()).await;
        assert_eq!(got.text(), "partial", "{format:?}");
        assert!(
            matches!(got.error, Some(LlmError::Protocol { .. })),
            "{format:?}: {:?}",
            got.error
        );
        assert_eq!(fake.requests().len(), before + 1, "{format:?}: not retried");
    }
}

#[tokio::test]
async fn a_slow_first_token_within_the_timeout_is_waited_for() {
    let fake = FakeLlm::start();
    let patient = ProviderSettings {
        first_byte_timeout: Duration::from_millis(1500),
        ..settings()
    };
    for format in FORMATS {
        fake.push(Reply::text(&["late ", "but here"]).first_byte_after(Duration::from_millis(400)));
        let provider = provider_at(format, &fake.url(format), patient);
        let got = collect(&provider, hello()).await;
        assert!(got.error.is_none(), "{format:?}: {:?}", got.error);
        assert_eq!(got.text(), "late but here");
    }
}

#[tokio::test]
async fn a_first_token_later_than_the_timeout_is_a_timeout() {
    let fake = FakeLlm::start();
    let impatient = ProviderSettings {
        first_byte_timeout: Duration::from_millis(300),
        ..settings()
    };
    for format in FORMATS {
        let before = fake.requests().len();
        fake.push(Reply::text(&["too late"]).first_byte_after(Duration::from_millis(1500)));
        let provider = provider_at(format, &fake.url(format), impatient);
        let started = Instant::now();
        let got = collect(&provider, hello()).await;
        match got.error {
            Some(LlmError::Timeout { provider, after }) => {
                assert_eq!(provider, name(format));
                assert_eq!(after, Duration::from_millis(300));
            }
            other => panic!("{format:?}: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{format:?}"
        );
        assert_eq!(fake.requests().len(), before + 1, "{format:?}: not retried");
    }
}

#[tokio::test]
async fn a_silence_mid_reply_longer_than_the_idle_timeout_is_a_timeout() {
    let fake = FakeLlm::start();
    let impatient = ProviderSettings {
        idle_timeout: Duration::from_millis(200),
        ..settings()
    };
    for format in FORMATS {
        fake.push(Reply::text(&["one ", "two"]).pieces_every(Duration::from_millis(1000)));
        let provider = provider_at(format, &fake.url(format), impatient);
        let got = collect(&provider, hello()).await;
        assert!(
            matches!(got.error, Some(LlmError::Timeout { after, .. }) if after == Duration::from_millis(200)),
            "{format:?}: {:?}",
            got.error
        );
    }
}

#[tokio::test]
async fn connection_refused_is_unreachable_after_the_retries() {
    let port = refused_port();
    for format in FORMATS {
        let url = match format {
            Format::OpenAi => format!("http://127.0.0.1:{port}/v1"),
            _ => format!("http://127.0.0.1:{port}"),
        };
        let provider = provider_at(format, &url, settings());
        let started = Instant::now();
        let error = match provider.chat(hello()).await {
            Err(error) => error,
            Ok(_) => panic!("{format:?}: a stream from a closed port"),
        };
        // Three retries after 50, 100 and 200 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "{format:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "provider {} at {url} is not reachable: ",
                name(format)
            )),
            "{message}"
        );
        assert!(message.contains("tried 4 times"), "{message}");
        assert!(matches!(error, LlmError::Unreachable { .. }));
        let error = provider.models().await.unwrap_err();
        assert!(matches!(error, LlmError::Unreachable { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn a_provider_that_starts_listening_late_is_reached_by_a_retry() {
    for format in FORMATS {
        let port = refused_port();
        let fake = FakeLlm::start_later(port, Duration::from_millis(150));
        let patient = ProviderSettings {
            retries: 5,
            backoff: Duration::from_millis(100),
            ..settings()
        };
        let got = collect(&provider_at(format, &fake.url(format), patient), hello()).await;
        assert!(got.error.is_none(), "{format:?}: {:?}", got.error);
        assert_eq!(got.text(), "echo: hello");
        assert_eq!(fake.requests().len(), 1);
    }
}

#[tokio::test]
async fn a_connection_reset_before_the_response_is_retried() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        let before = fake.requests().len();
        fake.drop_next_connections(2);
        let got = collect(&provider(&fake, format), hello()).await;
        assert!(got.error.is_none(), "{format:?}: {:?}", got.error);
        assert_eq!(got.text(), "echo: hello");
        assert_eq!(fake.requests().len(), before + 1);
    }
}

#[tokio::test]
async fn error_statuses_carry_the_providers_own_message() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        for (status, message) in [
            (401, "invalid x-api-key"),
            (429, "rate limit reached for requests"),
            (500, "the server had an error while processing your request"),
        ] {
            let before = fake.requests().len();
            fake.push(Reply::status(status, message));
            let got = collect(&provider(&fake, format), hello()).await;
            match &got.error {
                Some(LlmError::Provider {
                    provider,
                    status: got_status,
                    message: got_message,
                }) => {
                    assert_eq!(provider, name(format));
                    assert_eq!(*got_status, status);
                    assert_eq!(got_message, message);
                }
                other => panic!("{format:?}: {other:?}"),
            }
            let shown = got.error.unwrap().to_string();
            assert_eq!(
                shown,
                format!("provider {} answered {status}: {message}", name(format))
            );
            assert_eq!(fake.requests().len(), before + 1, "not retried");
        }
    }
}

#[tokio::test]
async fn an_unknown_model_is_model_not_found() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        fake.push(Reply::model_not_found());
        let request = ChatRequest::new("no-such-model", vec![ChatMessage::new(Role::User, "hi")]);
        let got = collect(&provider(&fake, format), request).await;
        let error = got.error.expect("an error");
        assert!(
            matches!(&error, LlmError::ModelNotFound { provider, model }
                if provider == name(format) && model == "no-such-model"),
            "{format:?}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("model no-such-model not found at provider {}", name(format))
        );
    }
}

#[tokio::test]
async fn models_come_from_the_provider() {
    let fake = FakeLlm::start();
    fake.set_models(&["llama3.2:3b", "qwen2.5-coder:7b"]);
    for format in FORMATS {
        let models = provider(&fake, format).models().await.unwrap();
        assert_eq!(models, ["llama3.2:3b", "qwen2.5-coder:7b"], "{format:?}");
        let asked = fake.last_request().unwrap();
        let path = match format {
            Format::Ollama => "/api/tags",
            Format::OpenAi => "/v1/models",
            Format::Anthropic => "/v1/models?limit=1000",
        };
        assert_eq!((asked.method.as_str(), asked.path.as_str()), ("GET", path));
    }
}

#[tokio::test]
async fn resolve_takes_the_first_listed_model_when_none_is_named() {
    let fake = FakeLlm::start();
    fake.set_models(&["first-model", "second-model"]);
    for format in FORMATS {
        let providers = registry(format, &fake.url(format), settings());
        let (provider, model) = providers.resolve(None, None).await.unwrap();
        assert_eq!(provider.info().name, name(format));
        assert_eq!(model, "first-model");
        let (_, model) = providers.resolve(None, Some("named")).await.unwrap();
        assert_eq!(model, "named");
        assert!(matches!(
            providers.resolve(Some("other"), None).await,
            Err(LlmError::UnknownProvider(_))
        ));
    }
    fake.set_models(&[]);
    let providers = registry(Format::Ollama, &fake.ollama_url(), settings());
    assert!(matches!(
        providers.resolve(None, None).await,
        Err(LlmError::NoModel(name)) if name == "local"
    ));
    let unreachable = registry(
        Format::Ollama,
        &format!("http://127.0.0.1:{}", refused_port()),
        ProviderSettings {
            retries: 0,
            ..settings()
        },
    );
    assert!(matches!(
        unreachable.resolve(None, None).await,
        Err(LlmError::Unreachable { .. })
    ));
    let list = providers.models().await;
    assert!(list.models.is_empty() && list.errors.is_empty());
    let list = unreachable.models().await;
    assert_eq!(list.errors.len(), 1);
    assert!(list.errors[0].message.contains("is not reachable"));
}

/// A conversation with every kind of message: system, user, an assistant turn with tool calls,
/// the tools' results, and tools on offer.
fn conversation() -> ChatRequest {
    let mut assistant = ChatMessage::new(Role::Assistant, "Reading both.");
    for (id, path) in [("call_1", "a.rs"), ("call_2", "b.rs")] {
        assistant.tool_calls.push(ToolCall {
            id: id.into(),
            name: "read_file".into(),
            arguments: json!({"path": path}),
        });
    }
    let mut first = ChatMessage::new(Role::Tool, "fn a() {}");
    first.tool_call_id = Some("call_1".into());
    let mut second = ChatMessage::new(Role::Tool, "fn b() {}");
    second.tool_call_id = Some("call_2".into());
    let mut request = ChatRequest::new(
        "fake-large",
        vec![
            ChatMessage::new(Role::System, "You are terse."),
            ChatMessage::new(Role::User, "Read a.rs and b.rs"),
            assistant,
            first,
            second,
        ],
    );
    request.tools.push(ToolSpec {
        name: "read_file".into(),
        description: "Reads a file of the workspace".into(),
        parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    });
    request.temperature = Some(0.2);
    request.stop = vec!["END".into()];
    request
}

#[tokio::test]
async fn ollama_gets_its_native_body() {
    let fake = FakeLlm::start();
    let got = collect(&provider(&fake, Format::Ollama), conversation()).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/api/chat");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert!(
        !sent.headers.contains_key("authorization"),
        "no key for Ollama by default"
    );
    assert_eq!(
        sent.body,
        json!({
            "model": "fake-large",
            "stream": true,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Read a.rs and b.rs"},
                {"role": "assistant", "content": "Reading both.", "tool_calls": [
                    {"function": {"name": "read_file", "arguments": {"path": "a.rs"}}},
                    {"function": {"name": "read_file", "arguments": {"path": "b.rs"}}},
                ]},
                {"role": "tool", "content": "fn a() {}", "tool_name": "read_file"},
                {"role": "tool", "content": "fn b() {}", "tool_name": "read_file"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "read_file",
                "description": "Reads a file of the workspace",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            }}],
            "options": {"temperature": 0.2, "stop": ["END"]},
        })
    );
}

#[tokio::test]
async fn openai_gets_its_body_and_the_bearer_key() {
    let fake = FakeLlm::start();
    let got = collect(&provider(&fake, Format::OpenAi), conversation()).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.headers["authorization"],
        "Bearer key-from-OPENAI_API_KEY"
    );
    assert_eq!(
        sent.body,
        json!({
            "model": "fake-large",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Read a.rs and b.rs"},
                {"role": "assistant", "content": "Reading both.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"b.rs\"}"}},
                ]},
                {"role": "tool", "content": "fn a() {}", "tool_call_id": "call_1"},
                {"role": "tool", "content": "fn b() {}", "tool_call_id": "call_2"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "read_file",
                "description": "Reads a file of the workspace",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            }}],
            "temperature": 0.2,
            "stop": ["END"],
        })
    );
}

#[tokio::test]
async fn anthropic_gets_system_on_top_tool_blocks_and_its_headers() {
    let fake = FakeLlm::start();
    let got = collect(&provider(&fake, Format::Anthropic), conversation()).await;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(
        got.text(),
        "echo: fn a() {}fn b() {}",
        "the last user message is the tool results"
    );
    let sent = fake.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], "key-from-ANTHROPIC_API_KEY");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(
        sent.body,
        json!({
            "model": "fake-large",
            "max_tokens": 4096,
            "stream": true,
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Read a.rs and b.rs"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Reading both."},
                    {"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a.rs"}},
                    {"type": "tool_use", "id": "call_2", "name": "read_file", "input": {"path": "b.rs"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "fn a() {}"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "fn b() {}"},
                ]},
            ],
            "tools": [{
                "name": "read_file",
                "description": "Reads a file of the workspace",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            }],
            "temperature": 0.2,
            "stop_sequences": ["END"],
        })
    );
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let fake = FakeLlm::start();
    for format in FORMATS {
        let pieces: Vec<String> = (0..200).map(|i| format!("piece {i} ")).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        fake.push(Reply::text(&pieces).pieces_every(Duration::from_millis(20)));
        let provider = provider(&fake, format);
        let mut stream = provider.chat(hello()).await.unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            Chunk::Text("piece 0 ".into())
        );
        assert!(fake.open_connections() >= 1, "{format:?}");
        drop(stream);
        assert!(
            eventually(Duration::from_secs(3), || fake.open_connections() == 0).await,
            "{format:?}: the connection stayed open ({} open)",
            fake.open_connections()
        );
    }
}
