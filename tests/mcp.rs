//! victor as an MCP server: `/mcp` (Streamable HTTP) and `victor mcp` (stdio), driven by the
//! official MCP SDKs (Python's `mcp` and TypeScript's `@modelcontextprotocol/sdk`, which
//! .ci/run installs) and by raw HTTP where the wire itself is the point.

mod common;

use std::io::BufRead;
use std::process::Command;

use common::fake_llm::{FakeLlm, Format, Reply};
use common::{Server, VICTOR, call, http, stderr};
use futures_util::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "mcp-test-key";

fn keyed() -> Server {
    Server::start_keyed(KEY, &[])
}

/// A key of `scope` made with the binary.
fn key_with(server: &Server, scope: &str) -> String {
    let out = server.run(&["keys", "create", "--scope", scope, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    created["key"].as_str().unwrap().to_string()
}

/// Runs one of tests/clients' MCP scripts against `server`; the JSON object it printed. The
/// `victor mcp` it may start reads this server's client settings, not the developer's.
fn run_client(server: &Server, program: &str, script: &str, args: &[&str]) -> Value {
    run_client_with(server, program, script, args, &[])
}

/// [`run_client`] with more variables for the script.
fn run_client_with(
    server: &Server,
    program: &str,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Value {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(program)
        .arg(&path)
        .args(args)
        .env("VICTOR_CONFIG", server.config_dir().join("config.toml"))
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): .ci/run installs it"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed (.ci/run installs the MCP SDKs):\n{}",
        stderr(&out)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let last = printed.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {printed:?}: {e}"))
}

fn names(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

const CONTROL_TOOLS: [&str; 9] = [
    "answer_approval",
    "cancel_task",
    "chat",
    "pause_task",
    "resume_task",
    "run_code",
    "send_input",
    "start_agent",
    "start_task",
];

fn check_basics(seen: &Value) {
    let tools = names(&seen["tools"]);
    for tool in CONTROL_TOOLS
        .iter()
        .chain(&["read_log", "wait_task", "show_task"])
    {
        assert!(tools.contains(tool), "{tool} missing from {tools:?}");
    }
    let waited = seen["waited"].as_str().unwrap();
    assert!(waited.contains("succeeded (exit code 0)"), "{waited}");
    assert!(waited.contains("alpha\nbeta\ngamma\n"), "{waited}");
    // Six bytes: the first line whole, then the rest from where it stopped.
    assert_eq!(seen["log_pieces"], json!(["alpha\n", "beta\ngamma\n"]));
    assert_eq!(seen["log_more"], json!([true, false]));
    assert_eq!(seen["resource"], "alpha\nbeta\ngamma\n");
    let long = seen["long"].as_str().unwrap();
    assert!(long.contains("step 5"), "{long}");
    let progress = seen["progress"].as_array().unwrap();
    let lines: Vec<&str> = progress
        .iter()
        .filter_map(|p| p[1].as_str())
        .filter(|m| m.starts_with("step"))
        .collect();
    assert_eq!(lines, ["step 1", "step 2", "step 3", "step 4", "step 5"]);
    assert_eq!(seen["missing"][0], true);
    let missing = seen["missing"][1].as_str().unwrap();
    assert!(missing.contains("no-such-task not found"), "{missing}");
    // A refused control says the state it found.
    assert_eq!(seen["refused"][0], true);
    let refused = seen["refused"][1].as_str().unwrap();
    assert!(refused.contains("it is succeeded"), "{refused}");
}

#[test]
fn the_python_sdk_drives_tasks_over_streamable_http() {
    let server = keyed();
    let seen = run_client(
        &server,
        "python3",
        "mcp_client.py",
        &["basics", "http", &server.url, KEY],
    );
    check_basics(&seen);
}

#[test]
fn the_python_sdk_drives_tasks_through_victor_mcp_on_stdio() {
    let server = keyed();
    let seen = run_client(
        &server,
        "python3",
        "mcp_client.py",
        &["basics", "stdio", VICTOR, &server.url, KEY],
    );
    check_basics(&seen);
}

#[test]
fn victor_mcp_reaches_a_remote_by_its_name_over_pinned_tls() {
    let server = Server::start_keyed(KEY, &["--tls"]);
    let fingerprint = server.fingerprint.expect("a TLS server's fingerprint");
    let out = server.run(&[
        "remote",
        "add",
        "lab",
        &server.url,
        "--key",
        KEY,
        "--fingerprint",
        &fingerprint.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = run_client(
        &server,
        "python3",
        "mcp_client.py",
        &["basics", "remote", VICTOR, "lab"],
    );
    check_basics(&seen);
}

#[test]
fn an_agent_asks_and_is_approved_through_mcp_then_chat_and_a_diagram() {
    let fake = FakeLlm::start();
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path().to_string_lossy().to_string();
    let provider = format!("openai=openai:{}#fake-small", fake.url(Format::OpenAi));
    let server = Server::start_keyed(
        KEY,
        &[
            "--llm-retries",
            "1",
            "--default-provider",
            "openai",
            "--workspace-root",
            &root,
            "--provider",
            &provider,
        ],
    );
    fake.push(Reply::stream().then_tool_call(
        "c1",
        "run_command",
        &[r#"{"command": "echo made > made.txt"}"#],
    ));
    fake.push(Reply::text(&["Wrote ", "made.txt."]));
    let seen = run_client_with(
        &server,
        "python3",
        "mcp_client.py",
        &["agent", "http", &server.url, KEY],
        &[("MCP_TEST_WORKSPACE", &root)],
    );
    assert_eq!(seen["approval_tool"], "run_command", "{seen}");
    let answered = seen["answered"].as_str().unwrap();
    assert!(answered.ends_with("is allowed"), "{answered}");
    assert_eq!(seen["agent_state"], "succeeded", "{seen}");
    let agent = seen["agent"].as_str().unwrap();
    assert!(agent.contains("Wrote made.txt."), "{agent}");
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("made.txt")).unwrap(),
        "made\n"
    );
    // The subscribed log told of its updates, and only that log.
    let updated = seen["updated"].as_array().unwrap();
    assert_eq!(updated.len(), 1, "{seen}");
    let uri = updated[0].as_str().unwrap();
    assert!(
        uri.starts_with("victor://tasks/") && uri.ends_with("/log"),
        "{uri}"
    );
    // With nothing scripted, the fake model says back what it was told.
    assert!(
        seen["chat"].as_str().unwrap().contains("say hello back"),
        "{seen}"
    );
    assert_eq!(seen["diagram"][0], "image/svg+xml");
    let svg = seen["diagram"][1].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("alpha"), "{svg}");
}

#[test]
fn victor_mcp_carries_a_call_and_its_session_across_a_server_restart() {
    let mut server = keyed();
    let path = format!("{}/tests/clients/mcp_client.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&path)
        .args(["restart", "stdio", VICTOR, &server.url, KEY])
        .env("VICTOR_CONFIG", server.config_dir().join("config.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (.ci/run installs the MCP SDK)");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("the script ended early").unwrap();
    assert_eq!(ready, "ready");
    server.terminate();
    server.restart();
    let last = lines.map(Result::unwrap).last().expect("what it saw");
    assert!(child.wait().unwrap().success());
    let seen: Value = serde_json::from_str(&last).unwrap();
    let last_seq = seen["task"]["last_seq"].as_u64().unwrap();
    let numbers: Vec<u64> = seen["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(numbers, (1..=last_seq).collect::<Vec<_>>(), "{seen}");
    assert_eq!(seen["task"]["state"], "interrupted", "{seen}");
    let listed = seen["listed"].as_str().unwrap();
    assert!(listed.contains("interrupted"), "{seen}");
}

#[test]
fn a_read_key_sees_and_calls_only_read_only_tools() {
    let server = keyed();
    let read = key_with(&server, "read");
    let seen = run_client(
        &server,
        "python3",
        "mcp_client.py",
        &["read_only", "http", &server.url, &read],
    );
    let tools = names(&seen["tools"]);
    for tool in CONTROL_TOOLS {
        assert!(!tools.contains(&tool), "a read key sees {tool}: {tools:?}");
    }
    assert!(
        tools.contains(&"read_log") && tools.contains(&"wait_task"),
        "{tools:?}"
    );
    assert_eq!(seen["start"][0], true, "{seen}");
    let refused = seen["start"][1].as_str().unwrap();
    assert!(
        refused.contains("start_task needs a key with scope control; this key has scope read"),
        "{refused}"
    );
    assert_eq!(seen["list"][0], false, "{seen}");
    assert_eq!(seen["list"][1], "no tasks", "nothing was started: {seen}");
}

#[test]
fn a_cut_stream_resumes_from_the_log_missing_nothing_and_repeating_nothing() {
    let server = keyed();
    let seen = run_client(
        &server,
        "python3",
        "mcp_client.py",
        &["resumed", "http", &server.url, KEY],
    );
    assert_eq!(seen["cuts"], 1, "the connection was cut once: {seen}");
    // One progress notification per log event, numbered by its seq: 1, 2, ... last_seq.
    let last_seq = seen["task"]["last_seq"].as_u64().unwrap();
    let numbers: Vec<u64> = seen["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(numbers, (1..=last_seq).collect::<Vec<_>>(), "{seen}");
    let lines: Vec<String> = seen["progress"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[1].as_str())
        .filter(|m| !m.starts_with('['))
        .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let expected: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    assert!(
        seen["result"].as_str().unwrap().contains("line 30"),
        "{seen}"
    );
}

#[test]
fn the_typescript_sdk_follows_and_cancels_over_http_and_stdio() {
    let server = keyed();
    for args in [
        vec!["http", server.url.as_str(), KEY],
        vec!["stdio", VICTOR, server.url.as_str(), KEY],
    ] {
        let seen = run_client(&server, "node", "mcp_client.mjs", &args);
        let tools = names(&seen["tools"]);
        assert!(tools.contains(&"start_task"), "{args:?}: {tools:?}");
        let done = seen["done"].as_str().unwrap();
        assert!(done.contains("succeeded (exit code 0)"), "{args:?}: {done}");
        assert_eq!(seen["log"], "one\ntwo\n", "{args:?}");
        let ticks = seen["progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.as_str().is_some_and(|m| m.starts_with("tick")))
            .count();
        assert!(ticks >= 1, "{args:?}: {seen}");
        assert!(
            seen["cancelled"].as_str().unwrap().contains("enough"),
            "{args:?}: {seen}"
        );
        assert_eq!(seen["ticker"], "cancelled", "{args:?}: {seen}");
    }
}

/// A JSON-RPC request to `/mcp` as a raw client sends it.
fn rpc(server: &Server, key: &str, session: Option<&str>, body: Value) -> reqwest::RequestBuilder {
    let mut request = http()
        .post(format!("{}/mcp", server.url))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    request
}

async fn initialize(server: &Server, key: &str) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let response = rpc(server, key, None, body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(answer["result"]["serverInfo"]["name"], "victor");
    session
}

/// The `id:` and `data:` of each SSE event in `text`, data parsed (None when empty).
fn sse_events(text: &str) -> Vec<(Option<String>, Option<Value>)> {
    // Only whole events: the last may still be arriving.
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
    complete
        .split("\n\n")
        .filter(|block| block.lines().any(|l| !l.starts_with(':') && !l.is_empty()))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let data = field("data:").filter(|d| !d.is_empty());
            (
                field("id:"),
                data.map(|d| serde_json::from_str(&d).unwrap()),
            )
        })
        .collect()
}

/// Calls start_task with `command` and wait, reads its stream until the third progress
/// notification and hangs up: the events read, and the id to resume after.
async fn follow_then_hang_up(
    server: &Server,
    session: &str,
    command: &str,
) -> (Vec<(Option<String>, Option<Value>)>, String) {
    let call_body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "start_task",
        "arguments": {"command": command, "wait": true},
        "_meta": {"progressToken": "p"}}});
    let response = rpc(server, KEY, Some(session), call_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while sse_events(&text)
        .iter()
        .filter(|(_, d)| d.is_some())
        .count()
        < 3
    {
        let chunk = body.next().await.expect("stream ended early").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(body);
    let first = sse_events(&text);
    let (primer_id, primer_data) = &first[0];
    assert!(primer_id.is_some() && primer_data.is_none(), "{text}");
    let last_id = first
        .iter()
        .rev()
        .find(|(_, data)| data.is_some())
        .and_then(|(id, _)| id.clone())
        .unwrap();
    (first, last_id)
}

/// The rest of a stream after `last_id`, read to its end.
async fn resume(
    server: &Server,
    session: &str,
    last_id: &str,
) -> Vec<(Option<String>, Option<Value>)> {
    let resumed = http()
        .get(format!("{}/mcp", server.url))
        .bearer_auth(KEY)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("last-event-id", last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    sse_events(&resumed.text().await.unwrap())
}

/// Checks that the two parts are one progress notification per log event, in order, then
/// the answer; the task it answers with.
fn progress_once_then_answer(
    first: &[(Option<String>, Option<Value>)],
    rest: &[(Option<String>, Option<Value>)],
) -> Value {
    let messages: Vec<&Value> = first
        .iter()
        .chain(rest)
        .filter_map(|(_, data)| data.as_ref())
        .collect();
    let (answer, progress) = messages.split_last().unwrap();
    let seqs: Vec<u64> = progress
        .iter()
        .map(|m| {
            assert_eq!(m["method"], "notifications/progress");
            assert_eq!(m["params"]["progressToken"], "p");
            m["params"]["progress"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(answer["id"], 7, "{answer}");
    let task = answer["result"]["structuredContent"]["task"].clone();
    let last_seq = task["last_seq"].as_u64().unwrap();
    assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
    task
}

#[tokio::test]
async fn a_stream_read_in_two_connections_is_the_log_once_then_the_answer() {
    let server = keyed();
    let session = initialize(&server, KEY).await;
    let command = "for i in 1 2 3 4 5 6; do echo n$i; sleep 0.1; done";
    let (first, last_id) = follow_then_hang_up(&server, &session, command).await;
    let rest = resume(&server, &session, &last_id).await;
    let task = progress_once_then_answer(&first, &rest);
    assert_eq!(task["state"], "succeeded");
}

#[tokio::test]
async fn progress_carries_the_whole_output_however_large_its_chunks() {
    let server = keyed();
    let session = initialize(&server, KEY).await;
    let call_body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "start_task",
        "arguments": {"command": "seq 1 5000", "wait": true},
        "_meta": {"progressToken": "p"}}});
    let response = rpc(&server, KEY, Some(&session), call_body)
        .send()
        .await
        .unwrap();
    let events = sse_events(&response.text().await.unwrap());
    let output: Vec<String> = events
        .iter()
        .filter_map(|(_, data)| data.as_ref())
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["message"].as_str().unwrap().to_string())
        .filter(|m| !m.starts_with('['))
        .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let expected: Vec<String> = (1..=5000).map(|i| i.to_string()).collect();
    assert_eq!(output, expected);
}

#[tokio::test]
async fn a_stream_resumes_after_a_server_restart_from_the_log() {
    let mut server = keyed();
    let session = initialize(&server, KEY).await;
    let command = "for i in $(seq 1 100); do echo n$i; sleep 0.1; done";
    let (first, last_id) = follow_then_hang_up(&server, &session, command).await;
    server.terminate();
    server.restart();
    // The session died with the server; the stream lives in the task's log.
    let rest = resume(&server, &session, &last_id).await;
    let task = progress_once_then_answer(&first, &rest);
    assert_eq!(task["state"], "interrupted", "{task}");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_so_is_a_page_on_a_rebound_name() {
    let server = keyed();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, refused) =
        call(rpc(&server, KEY, None, body.clone()).header("origin", "https://evil.example")).await;
    assert_eq!(status, 403, "{refused}");
    let (status, refused) =
        call(rpc(&server, KEY, None, body.clone()).header("host", "evil.example")).await;
    assert_eq!(status, 403, "{refused}");
    let (status, answer) = call(rpc(&server, KEY, None, body)).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
}

#[tokio::test]
async fn mcp_needs_a_key_and_a_live_session() {
    let server = keyed();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let response = http()
        .post(format!("{}/mcp", server.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let (status, answer) = call(rpc(&server, KEY, Some("not-a-session"), body.clone())).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    // A session is its key's: another key cannot use it.
    let session = initialize(&server, KEY).await;
    let other = key_with(&server, "control");
    let (status, _) = call(rpc(&server, &other, Some(&session), body.clone())).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        rpc(&server, KEY, Some(&session), body.clone())
            .header("mcp-protocol-version", "1999-01-01"),
    )
    .await;
    assert_eq!(status, 400);
    let ended = http()
        .delete(format!("{}/mcp", server.url))
        .bearer_auth(KEY)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    let (status, _) = call(rpc(&server, KEY, Some(&session), body)).await;
    assert_eq!(status, 404);
}

#[test]
fn run_code_runs_in_a_session_it_starts_and_keeps() {
    let server = keyed();
    let seen = run_client(
        &server,
        "python3",
        "mcp_client.py",
        &["code", "http", &server.url, KEY],
    );
    let session = seen["session"].as_str().unwrap();
    let first = seen["first"].as_str().unwrap();
    assert!(first.contains(&format!("session {session}")), "{first}");
    assert!(first.contains("stdout:\n42"), "{first}");
    assert_eq!(seen["result"]["text/plain"], "43", "{seen}");
    let failed = seen["failed"].as_str().unwrap();
    assert!(failed.contains("ZeroDivisionError"), "{failed}");
    assert_eq!(seen["failed_is_error"], true);
    // The session is a task of the server's, still open for the next call.
    let task: Value = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(server.client().get_task(session))
        .map(|task| serde_json::to_value(task).unwrap())
        .unwrap();
    assert_eq!(task["state"], "running", "{task}");
}
