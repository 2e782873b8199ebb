//! The seed clients' dialects over agent tasks the fake provider drives: seed 001's task API
//! (REST, its log stream and `/ws/{task_id}`) spoken by a Python client as that seed's, and seed
//! 000's event bridge (`/ws/events`, `/events/recent`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake_llm::{FakeLlm, Reply};
use common::{Server, victor_serve};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const KEY: &str = "seed-key-0123456789";

/// A keyed server whose only provider is the fake, giving seed 001's tasks their workspaces
/// under `workspaces`.
fn server_with(fake: &FakeLlm, workspaces: &Path) -> Server {
    let provider = format!(
        "fake=openai:{}#fake-small",
        fake.url(common::fake_llm::Format::OpenAi)
    );
    Server::launch(victor_serve().api_key(KEY).args([
        "--provider",
        provider.as_str(),
        "--llm-retries",
        "1",
        "--task-workspaces",
        &workspaces.to_string_lossy(),
    ]))
}

/// A tool call's arguments as the model streams them.
fn arguments(value: Value) -> String {
    value.to_string()
}

const VALIDATOR: &str = "import re\n\ndef is_valid(email):\n    return \"@\" in email\n";
const TESTS: &str = "from validator import is_valid\n\nassert is_valid(\"a@b.co\")\nassert not is_valid(\"a@b\")\nprint(\"tests pass\")\n";

/// Code Intern's work as the model's steps: plan and write a module, write its tests (slowly:
/// an intervention arrives meanwhile), see them fail, fix the module, see them pass.
fn script_a_build(fake: &FakeLlm) {
    fake.push(
        Reply::stream()
            .then_text("Plan: validator.py, tested by test_validator.py.")
            .then_tool_call(
                "w1",
                "write_file",
                &[&arguments(
                    json!({"path": "validator.py", "content": VALIDATOR}),
                )],
            ),
    );
    fake.push(
        Reply::stream()
            .then_tool_call(
                "w2",
                "write_file",
                &[&arguments(
                    json!({"path": "test_validator.py", "content": TESTS}),
                )],
            )
            .first_byte_after(Duration::from_millis(1500)),
    );
    fake.push(Reply::stream().then_tool_call(
        "r1",
        "run_command",
        &[&arguments(json!({"command": "python3 test_validator.py"}))],
    ));
    fake.push(Reply::stream().then_tool_call(
        "e1",
        "edit_file",
        &[&arguments(json!({
            "path": "validator.py",
            "old": "\"@\" in email",
            "new": "re.fullmatch(r\"[^@\\s]+@[^@\\s]+\\.[a-z]+\", email) is not None",
        }))],
    ));
    fake.push(Reply::stream().then_tool_call(
        "r2",
        "run_command",
        &[&arguments(json!({"command": "python3 test_validator.py"}))],
    ));
    fake.push(Reply::text(&["Built validator.py; its tests pass."]));
}

/// Runs one of the seed clients in tests/clients; the JSON report it prints last.
fn run_client(program: &str, script: &str, args: &[&str]) -> Value {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = std::process::Command::new(program);
    if program == "node" {
        // socket.io-client is installed globally by .ci/run.
        let root = std::process::Command::new("npm")
            .args(["root", "-g"])
            .output()
            .expect("npm: .ci/run installs it");
        command.env("NODE_PATH", String::from_utf8_lossy(&root.stdout).trim());
    }
    let out = command
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): .ci/run installs it"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {stdout}: {e}"))
}

fn types(messages: &Value) -> Vec<&str> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?"))
        .collect()
}

#[test]
fn seed_001s_client_starts_follows_intervenes_and_reads_the_results() {
    let fake = FakeLlm::start();
    let workspaces = tempfile::tempdir().unwrap();
    let server = server_with(&fake, workspaces.path());
    script_a_build(&fake);
    let guidance = "Use an RFC 5322 pattern";
    let report = run_client(
        "python3",
        "seed001_client.py",
        &[&server.url, KEY, guidance],
    );

    // Started, with a socket URL on the host and port the client used.
    assert_eq!(report["start_status"], 200);
    let started = &report["started"];
    assert_eq!(started["status"], "started");
    let task_id = started["task_id"].as_str().unwrap();
    let host = server.url.trim_start_matches("http://");
    assert_eq!(
        started["websocket_url"],
        format!("ws://{host}/ws/{task_id}")
    );

    // The live socket told the whole build in the seed's types, in order.
    let live = &report["live"];
    assert_eq!(
        types(live),
        [
            "TASK_STARTED",
            "PLANNING_COMPLETE",
            "MODULE_STARTED",
            "INTERVENTION_RECEIVED",
            "MODULE_STARTED",
            "TEST_FAILED",
            "MODULE_ITERATION",
            "TEST_PASSED",
            "TASK_COMPLETE",
        ],
        "{live:#}"
    );
    for message in live.as_array().unwrap() {
        assert_eq!(message["task_id"], task_id);
        assert!(
            message["timestamp"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok()
        );
    }
    assert_eq!(live[0]["data"]["goal"], "Build an email validator");
    assert_eq!(live[1]["data"]["modules"], json!(["validator.py"]));
    assert_eq!(live[2]["data"]["module"], "validator.py");
    assert_eq!(live[3]["data"]["guidance"], guidance);
    assert_eq!(live[4]["data"]["tests"], true);
    assert_eq!(live[5]["data"]["exit_code"], 1);
    assert_eq!(live[6]["data"]["iteration"], 2);
    assert_eq!(live[7]["data"]["command"], "python3 test_validator.py");
    assert_eq!(live[8]["data"]["modules"], json!(["validator.py"]));
    assert_eq!(live[8]["data"]["modules_generated"], 1);

    // The intervention reached the model as guidance; the answers reached it with the prompt.
    let asked: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body.to_string())
        .collect();
    assert!(
        asked[0].contains("Use regex pattern matching"),
        "{}",
        asked[0]
    );
    assert!(asked.iter().skip(1).any(|body| body.contains(guidance)));

    // Status and results.
    assert_eq!(
        report["status"],
        json!({"task_id": task_id, "status": "completed", "current_module": "validator.py",
               "iteration": 2, "modules_complete": 1, "total_modules": 1, "progress": 1.0})
    );
    let results = &report["results"];
    assert_eq!(results["status"], "completed");
    let module = &results["modules"][0];
    assert_eq!(module["name"], "validator.py");
    assert!(module["code"].as_str().unwrap().contains("re.fullmatch"));
    assert_eq!(module["tests"], TESTS);
    assert_eq!(results["modules"].as_array().unwrap().len(), 1);
    // The task worked in a directory of its own under the configured root.
    let workspace: Vec<_> = std::fs::read_dir(workspaces.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(workspace.len(), 1);
    assert!(workspace[0].join("test_validator.py").is_file());

    // Late join: everything from the start, the same messages; resume: exactly the rest.
    assert_eq!(report["late"], report["live"]);
    let after = report["resume_after"].as_u64().unwrap();
    let rest: Vec<&Value> = live
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["seq"].as_u64().unwrap() > after)
        .collect();
    assert_eq!(
        report["resumed"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        rest
    );

    // The log stream: `[LEVEL] line` with the seq as the SSE id, resumable.
    assert_eq!(report["log_content_type"], "text/event-stream");
    let log: Vec<&str> = report["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(log.first(), Some(&"#id 2"));
    assert_eq!(log.get(1), Some(&"[INFO] Task started"));
    assert!(log.contains(&"[INFO] Created validator.py"), "{log:#?}");
    assert!(log.contains(&"[INFO] tests pass"), "{log:#?}");
    assert!(log.contains(&format!("[INFO] Intervention: {guidance}").as_str()));
    assert_eq!(log.last(), Some(&"[INFO] Task completed"));
    let resumed = report["log_resumed"].as_array().unwrap();
    assert!(resumed.len() < log.len());
    assert_eq!(
        resumed[..],
        report["log"].as_array().unwrap()[log.len() - resumed.len()..]
    );
    assert!(
        resumed[0]
            .as_str()
            .unwrap()
            .strip_prefix("#id ")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 3
    );

    // Bad input, in the seed's shapes.
    assert_eq!(report["bad_start"][0], 422);
    assert_eq!(
        report["bad_start"][1]["detail"][0]["loc"],
        json!(["body", "prompt"])
    );
    assert_eq!(
        report["missing"],
        json!([404, {"detail": "Task not found"}])
    );
    assert_eq!(report["unauthorised"], 401);
    let missing_socket = &report["missing_socket"];
    assert_eq!(missing_socket[0]["type"], "ERROR");
    assert_eq!(missing_socket[1]["closed"], 4404);
    let bad = &report["bad_messages"];
    assert!(
        bad[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("INTERVENTION")
    );
    assert!(
        bad[1]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("INTERVENTION")
    );
    let late = report["late_intervention"]["data"]["message"]
        .as_str()
        .unwrap();
    assert!(
        late.contains("succeeded") || late.contains("finished"),
        "{late}"
    );
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `path` with the key in the header.
async fn open(server: &Server, path: &str) -> Socket {
    let url = format!("{}{path}", server.url.replacen("http", "ws", 1));
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message (pings and pongs skipped).
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("no message within 20 s")
            .expect("the socket closed")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn get_json(server: &Server, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `POST /tasks` as seed 001's client sends it; the task's id.
async fn start_build(server: &Server, prompt: &str) -> String {
    let started: Value = reqwest::Client::new()
        .post(format!("{}/tasks", server.url))
        .bearer_auth(KEY)
        .json(&json!({"prompt": prompt}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    started["task_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn seed_000s_event_bridge_filters_by_category_and_task() {
    let fake = FakeLlm::start();
    let workspaces = tempfile::tempdir().unwrap();
    let server = server_with(&fake, workspaces.path());
    let mut tools = open(&server, "/ws/events").await;
    send(
        &mut tools,
        json!({"type": "subscribe", "categories": ["tool", "session.end"]}),
    )
    .await;
    assert_eq!(
        next_json(&mut tools).await,
        json!({"type": "subscribed", "categories": ["tool", "session.end"], "correlation_id": null})
    );
    // Bad input is answered in the bridge's shape and the socket stays.
    send(&mut tools, json!({"type": "launch"})).await;
    let error = next_json(&mut tools).await;
    assert_eq!(error["type"], "error");
    assert!(error["message"].as_str().unwrap().contains("subscribe"));

    fake.push(Reply::stream().then_tool_call(
        "w1",
        "write_file",
        &[&arguments(json!({"path": "a.txt", "content": "a\n"}))],
    ));
    fake.push(Reply::stream().then_tool_call(
        "r1",
        "run_command",
        &[&arguments(json!({"command": "cat a.txt"}))],
    ));
    fake.push(Reply::text(&["Done."]));
    let task = start_build(&server, "Write a.txt").await;
    let mut seen = Vec::new();
    loop {
        let event = next_json(&mut tools).await;
        let end = event["type"] == "session.end";
        seen.push(event);
        if end {
            break;
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "tool.start",
            "tool.complete",
            "tool.start",
            "tool.complete",
            "session.end"
        ]
    );
    assert_eq!(seen[0]["data"]["name"], "write_file");
    assert_eq!(seen[3]["data"]["result"], "a\n[exit code 0]");
    let mut last_id = 0;
    for event in &seen {
        assert_eq!(event["data"]["correlation_id"], task);
        let id: u64 = event["id"].as_str().unwrap().parse().unwrap();
        assert!(id > last_id);
        last_id = id;
        assert!(event["timestamp"].as_f64().unwrap() > 1.7e9);
    }

    // One task's files only: another task's events do not come.
    let mut files = open(&server, "/ws/events").await;
    send(
        &mut files,
        json!({"type": "subscribe", "categories": ["file"], "correlation_id": task}),
    )
    .await;
    assert_eq!(next_json(&mut files).await["type"], "subscribed");
    fake.push(Reply::stream().then_tool_call(
        "w2",
        "write_file",
        &[&arguments(json!({"path": "b.txt", "content": "b\n"}))],
    ));
    fake.push(Reply::text(&["Done."]));
    let other = start_build(&server, "Write b.txt").await;
    send(&mut files, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut files).await["type"], "pong");

    // The newest bridged events, newest first, once the other task has written.
    let mut recent = json!(null);
    for _ in 0..100 {
        recent = get_json(&server, "/events/recent?categories=file&limit=5").await;
        if recent["count"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recent["count"], 2, "{recent:#}");
    assert_eq!(recent["events"][0]["data"]["path"], "b.txt");
    assert_eq!(recent["events"][0]["data"]["correlation_id"], other);
    assert_eq!(recent["events"][1]["data"]["path"], "a.txt");
    assert_eq!(recent["events"][1]["type"], "file.created");
    let bad = reqwest::Client::new()
        .get(format!("{}/events/recent?limit=0", server.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
    // Nothing of the other task reached the filtered socket.
    send(&mut files, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut files).await["type"], "pong");
}

/// A session's work as the model's steps: a note written (a decision point), rewritten, then
/// slowly another file (a HALT lands meanwhile), then the last word after RESUME.
fn script_a_session(fake: &FakeLlm) {
    let write = |id: &str, path: &str, content: &str| {
        Reply::stream().then_tool_call(
            id,
            "write_file",
            &[&arguments(json!({"path": path, "content": content}))],
        )
    };
    fake.push(write("n1", "notes.txt", "v1\n"));
    fake.push(write("n2", "notes.txt", "v2\n"));
    fake.push(write("o1", "other.txt", "o\n").first_byte_after(Duration::from_millis(3000)));
    fake.push(Reply::text(&["Done."]));
}

#[test]
fn seed_004s_python_socketio_client_steers_a_session_and_recovers_what_it_missed() {
    let fake = FakeLlm::start();
    let workspaces = tempfile::tempdir().unwrap();
    let server = server_with(&fake, workspaces.path());
    script_a_session(&fake);
    let report = run_client("python3", "seed004_client.py", &[&server.url, KEY]);

    assert_eq!(
        report["skills"],
        json!([
            "read_file",
            "list_dir",
            "search",
            "write_file",
            "edit_file",
            "run_command",
            "python"
        ])
    );
    assert_eq!(report["created_status"], 201);
    let session = report["session"]["session_id"].as_str().unwrap();
    assert_eq!(report["listed"][0], session);
    assert_eq!(report["connected"]["session_id"], session);

    let point = &report["decision_point"];
    assert_eq!(point["type"], "decision:point");
    assert_eq!(point["session_id"], session);
    assert_eq!(point["data"]["skill_name"], "write_file");
    assert_eq!(point["data"]["parameters"]["path"], "notes.txt");
    assert_eq!(report["decision_ack"]["success"], true, "{report:#}");
    assert_eq!(report["decision_ack"]["status"], "allowed");
    assert_eq!(report["ping_ack"]["pong"], true);
    assert_eq!(
        report["halt_ack"],
        json!({"success": true, "command": "HALT", "session_id": session, "status": "paused"})
    );
    assert_eq!(report["rollback_ack"]["success"], true, "{report:#}");
    assert_eq!(report["rollback_ack"]["checkpoint_id"], 2);
    assert_eq!(report["redirect_ack"]["success"], true);
    assert_eq!(report["resume_ack"]["status"], "running");

    // The rollback put the workspace back as it was before the last two changes.
    let workspace = Path::new(report["session"]["workspace"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(workspace.join("notes.txt")).unwrap(),
        "v1\n"
    );
    assert!(!workspace.join("other.txt").exists());
    // The redirect reached the model as guidance.
    let last = fake.requests().last().unwrap().body.to_string();
    assert!(last.contains("Stop after this"), "{last}");

    // Two connections with a gap between saw exactly what one late joiner sees, each event
    // once.
    assert_eq!(report["joined"], report["full"]);
    let full = report["full"].as_array().unwrap();
    assert!(full.len() > 10, "{full:?}");
    for kind in [
        "agent:spawned",
        "agent:progress",
        "skill:started",
        "skill:completed",
        "decision:point",
        "decision:made",
        "checkpoint:created",
        "file:created",
        "file:modified",
        "execution:halted",
        "checkpoint:restored",
        "execution:resumed",
        "agent:completed",
    ] {
        assert!(
            report["event_types"]
                .as_array()
                .unwrap()
                .contains(&json!(kind)),
            "no {kind}: {:#}",
            report["event_types"]
        );
    }

    // Bad input, in the dialect's shapes; the socket stayed.
    let unknown = report["unknown_command"]["error"].as_str().unwrap();
    assert!(unknown.contains("HALT, RESUME"), "{unknown}");
    assert_eq!(report["malformed_command"]["success"], false);
    assert!(
        report["unknown_event"]["error"]
            .as_str()
            .unwrap()
            .contains("unknown event `launch`")
    );
    let finished = report["finished_halt"]["error"].as_str().unwrap();
    assert!(finished.contains("succeeded"), "{finished}");
    assert_eq!(report["still_connected"], true);
    assert_eq!(
        report["unknown_session"],
        json!([{"message": "session no-such-session not found"}])
    );
    let no_key = report["no_key"][0]["message"].as_str().unwrap();
    assert!(no_key.starts_with("unauthorized"), "{no_key}");
    assert_eq!(
        report["deleted"],
        json!([200, {"success": true, "session_id": session}])
    );
    assert_eq!(
        report["missing"],
        json!([404, {"detail": "Session not found"}])
    );
}

/// Field `i` of each event the node client reported (`[name, seq, offset]`).
fn column(events: &Value, i: usize) -> Vec<&str> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[i].as_str().unwrap())
        .collect()
}

/// The node client's run in `mode` (`cursor` or `recovery`) over a session that writes a.txt
/// once its decision is answered, then ends a moment later; its report and the workspace root.
fn node_client_reconnects(mode: &str) -> (Value, tempfile::TempDir) {
    let fake = FakeLlm::start();
    let workspaces = tempfile::tempdir().unwrap();
    let server = server_with(&fake, workspaces.path());
    fake.push(Reply::stream().then_tool_call(
        "a1",
        "write_file",
        &[&arguments(json!({"path": "a.txt", "content": "a\n"}))],
    ));
    fake.push(Reply::text(&["Done."]).first_byte_after(Duration::from_millis(300)));
    let report = run_client("node", "seed004_client.cjs", &[&server.url, KEY, mode]);

    assert_eq!(report["decision_ack"]["success"], true, "{report:#}");
    assert_eq!(report["connects"], 2, "the client did not reconnect");
    // What the dropped and reconnected client saw is what a client that watched it all
    // afterwards sees: every event once, in order.
    assert_eq!(report["live"], report["full"]);
    let kinds = column(&report["full"], 0);
    assert_eq!(kinds.first(), Some(&"agent:spawned"));
    assert!(kinds.contains(&"decision:made") && kinds.contains(&"file:created"));
    assert_eq!(kinds.last(), Some(&"agent:completed"));
    assert_eq!(report["ping"]["pong"], true);
    assert_eq!(report["halt"]["success"], false);
    assert_eq!(
        report["unknown_session"],
        "session no-such-session not found"
    );
    assert_eq!(
        std::fs::read_to_string(
            std::fs::read_dir(workspaces.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join("a.txt")
        )
        .unwrap(),
        "a\n"
    );
    (report, workspaces)
}

#[test]
fn seed_004s_socket_io_client_reconnects_by_itself_without_losing_or_repeating_an_event() {
    let (report, _workspaces) = node_client_reconnects("cursor");
    // Victor's cursor: no Socket.IO recovery, no offsets.
    assert_eq!(report["recovered"], json!([false, false]));
    assert!(report["live"][0][2].is_null(), "{:#}", report["live"]);
}

#[test]
fn seed_004s_socket_io_client_recovers_its_connection_state_from_the_log() {
    let (report, _workspaces) = node_client_reconnects("recovery");
    // socket.io-client's own recovery handshake took place: the second connection recovered.
    assert_eq!(report["recovered"], json!([false, true]), "{report:#}");
    assert_eq!(report["greeted"], json!([false, true]));
    // Events happened while it was away, and reached it once, after it came back.
    let away = report["while_away"].as_array().unwrap();
    assert!(
        away.contains(&json!("agent:completed")),
        "nothing happened while the client was away: {report:#}"
    );
    // Each event carried its own offset in the log.
    let offsets = column(&report["full"], 2);
    let distinct: std::collections::HashSet<&&str> = offsets.iter().collect();
    assert_eq!(distinct.len(), offsets.len(), "{offsets:?}");
    // A pid that is no socket id recovers nothing: that connection starts from the start.
    assert_eq!(report["forged"]["greeted"], json!([false]));
    assert_eq!(report["forged"]["first"], "agent:spawned");
    assert_eq!(
        report["forged"]["count"],
        report["full"].as_array().unwrap().len()
    );
    // A client that had received nothing yet recovers too, and is sent nothing again.
    assert_eq!(
        report["quiet"],
        json!({"recovered": [false, true], "events": []})
    );
}
