//! victor as an MCP client: agents use the tools of MCP servers configured in `config.toml`
//! (`[mcp.NAME]`), here a small server written with the official Python SDK
//! (tests/clients/mcp_tool_server.py) over stdio and over Streamable HTTP, under the approval
//! policy; a server that dies or hangs is a tool error the model reads; and seed 000's
//! `/mcp/servers`, `/mcp/connect`, `/mcp/disconnect` show and steer them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_llm::{FakeLlm, Format, Reply};
use common::{
    Server, answer, call, chats, events, finished, http, of_kind, start_agent, victor_serve,
    wait_event,
};
use serde_json::{Value, json};
use victor::client::Client;
use victor::proto::{AgentSpec, Decision, Permission, TaskState, agent_types};

const KEY: &str = "mcp-servers-key";

fn fixture() -> String {
    format!(
        "{}/tests/clients/mcp_tool_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The `[mcp.fixture]` table of the Python server on stdio, with `extra` lines.
fn stdio_table(extra: &str) -> String {
    format!(
        "[mcp.fixture]\ncommand = \"python3\"\nargs = [{:?}, \"stdio\"]\n\
         env = {{ FIXTURE_GREETING = \"hello from the environment\" }}\n{extra}\n",
        fixture()
    )
}

/// The Python server on Streamable HTTP, killed when dropped.
struct HttpFixture {
    child: Child,
    url: String,
}

impl HttpFixture {
    fn start() -> HttpFixture {
        let mut child = Command::new("python3")
            .args([fixture().as_str(), "http"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with the mcp SDK (.ci/run installs it)");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let url = format!("http://127.0.0.1:{}/mcp", port.trim());
        HttpFixture { child, url }
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server whose only provider is the fake, with `config` as its config.toml.
fn server_with(fake: &FakeLlm, root: &Path, config: &str) -> Server {
    let provider = format!("openai=openai:{}#fake-small", fake.url(Format::OpenAi));
    let root = root.to_string_lossy().to_string();
    Server::launch(
        victor_serve()
            .api_key(KEY)
            .args([
                "--llm-retries",
                "1",
                "--provider",
                &provider,
                "--workspace-root",
                &root,
            ])
            .config_toml(config),
    )
}

async fn start_fixture_agent(
    client: &Client,
    root: &Path,
    approvals: &[(&str, Permission)],
) -> String {
    let spec = AgentSpec {
        prompt: "Use the fixture's tools".into(),
        workspace: root.to_string_lossy().into(),
        approvals: approvals
            .iter()
            .map(|(name, permission)| (name.to_string(), *permission))
            .collect(),
        ..AgentSpec::default()
    };
    start_agent(client, spec).await
}

/// The tool results of a finished task's log: (name, output, error).
async fn results(client: &Client, task: &str) -> Vec<(String, String, bool)> {
    let log = events(client, task).await;
    of_kind(&log, agent_types::TOOL_RESULT)
        .iter()
        .map(|e| {
            (
                e.data["name"].as_str().unwrap().to_string(),
                e.data["output"].as_str().unwrap().to_string(),
                e.data["error"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// An agent calls `fixture.add` (asked, and allowed once by a person) and `fixture.greet`
/// (allowed by the task's policy) of a server configured as `config`; returns what the
/// second tool answered.
async fn add_with_approval(config: &str, second: &str) -> String {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), config);
    let client = server.client();
    fake.push(Reply::stream().then_tool_call(
        "c1",
        "fixture__add",
        &[r#"{"a": 2, "#, r#""b": 3}"#],
    ));
    fake.push(Reply::stream().then_tool_call("c2", &format!("fixture__{second}"), &["{}"]));
    fake.push(Reply::text(&["2 + 3 is 5."]));
    let second_name = format!("fixture.{second}");
    let id = start_fixture_agent(&client, root.path(), &[(&second_name, Permission::Allow)]).await;

    let requested = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 1).await;
    let approval = &requested.data["approval"];
    assert_eq!(approval["tool"], "fixture.add");
    assert_eq!(approval["arguments"], json!({"a": 2, "b": 3}));
    let call = wait_event(&client, &id, agent_types::TOOL_CALL, 1).await;
    assert_eq!(call.data["name"], "fixture.add");
    // Nothing ran before the answer.
    assert!(results(&client, &id).await.is_empty());
    answer(
        &client,
        approval["id"].as_str().unwrap(),
        Decision::AllowOnce,
    )
    .await;
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);

    let results = results(&client, &id).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(
        results[0],
        ("fixture.add".into(), "2 + 3 = 5".into(), false)
    );
    assert_eq!(results[1].0, second_name);
    assert!(!results[1].2, "{results:?}");
    // Only the person's approval: the policy allowed the second call.
    let log = events(&client, &id).await;
    assert_eq!(of_kind(&log, agent_types::APPROVAL_REQUESTED).len(), 1);

    let sent = chats(&fake);
    let offered: Vec<&str> = sent[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap())
        .collect();
    for name in [
        "fixture__add",
        "fixture__greet",
        "fixture__die",
        "read_file",
    ] {
        assert!(offered.contains(&name), "{name} not in {offered:?}");
    }
    let add = sent[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["function"]["name"] == "fixture__add")
        .unwrap();
    assert_eq!(add["function"]["parameters"]["required"], json!(["a", "b"]));
    // The model read the answer.
    assert!(sent[1].to_string().contains("2 + 3 = 5"), "{}", sent[1]);
    results[1].1.clone()
}

#[tokio::test]
async fn an_agent_uses_a_stdio_servers_tool_after_approval() {
    let greeting = add_with_approval(&stdio_table(""), "greet").await;
    assert_eq!(greeting, "hello from the environment");
}

#[tokio::test]
async fn an_agent_uses_an_http_servers_tool_after_approval() {
    let fixture = HttpFixture::start();
    let config = format!(
        "[mcp.fixture]\nurl = {:?}\nheaders = {{ Authorization = \"Bearer fixture-secret\" }}\n",
        fixture.url
    );
    let seen = add_with_approval(&config, "whoami").await;
    assert_eq!(seen, "Bearer fixture-secret");
}

#[tokio::test]
async fn a_server_that_dies_hangs_or_never_starts_is_an_error_the_model_reads() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    // And one that never starts: the run goes without it, and the model is told.
    let config = format!(
        "{}[mcp.broken]\ncommand = \"/nonexistent/mcp-server\"\n",
        stdio_table("timeout_secs = 2")
    );
    let server = server_with(&fake, root.path(), &config);
    let client = server.client();
    fake.push(Reply::stream().then_tool_call("c1", "fixture__die", &["{}"]));
    fake.push(Reply::stream().then_tool_call("c2", "fixture__hang", &["{}"]));
    // The server is started again for the next call.
    fake.push(Reply::stream().then_tool_call("c3", "fixture__add", &[r#"{"a": 1, "b": 1}"#]));
    fake.push(Reply::text(&["The fixture is flaky."]));
    let started = Instant::now();
    let id = start_fixture_agent(&client, root.path(), &[("fixture.*", Permission::Allow)]).await;
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    assert!(started.elapsed() < Duration::from_secs(20));

    let results = results(&client, &id).await;
    assert_eq!(results.len(), 3, "{results:?}");
    let (name, output, error) = &results[0];
    assert_eq!(name, "fixture.die");
    assert!(*error);
    assert!(output.contains("exited"), "{output}");
    let (name, output, error) = &results[1];
    assert_eq!(name, "fixture.hang");
    assert!(*error);
    assert!(output.contains("did not answer within 2s"), "{output}");
    assert_eq!(
        results[2],
        ("fixture.add".into(), "1 + 1 = 2".into(), false)
    );
    let sent = chats(&fake);
    let system = sent[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("The MCP server broken is unavailable")
            && system.contains("cannot run /nonexistent/mcp-server"),
        "{system}"
    );
    assert!(sent[1].to_string().contains("exited"), "{}", sent[1]);
    assert!(
        sent[2].to_string().contains("did not answer"),
        "{}",
        sent[2]
    );
}

#[tokio::test]
async fn seed_000_lists_connects_and_disconnects_mcp_servers() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let fixture = HttpFixture::start();
    let server = server_with(&fake, root.path(), &stdio_table(""));
    let http = http();
    let url = |path: &str| format!("{}{path}", server.url);
    let bearer = format!("Bearer {KEY}");
    let get = || {
        http.get(url("/mcp/servers"))
            .header("authorization", &bearer)
    };
    let post = |path: &str, body: Value| {
        http.post(url(path))
            .header("authorization", &bearer)
            .json(&body)
    };

    let (status, listed) = call(get()).await;
    assert_eq!(status, 200);
    assert_eq!(listed["servers"][0]["name"], "fixture");
    assert_eq!(listed["servers"][0]["connected"], false);
    assert!(
        listed["servers"][0]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("python3 ")
    );

    let (status, connected) = call(post("/mcp/connect", json!({"server": "fixture"}))).await;
    assert_eq!(status, 200, "{connected}");
    assert_eq!(connected["success"], true);
    assert_eq!(connected["server"], "fixture");
    let (_, listed) = call(get()).await;
    assert_eq!(listed["servers"][0]["connected"], true);
    let tools = listed["servers"][0]["tools"].as_array().unwrap();
    assert!(tools.contains(&json!("add")), "{listed}");

    // One that config.toml does not name, by its URL.
    let (status, added) = call(post(
        "/mcp/connect",
        json!({"server": "web", "endpoint": fixture.url}),
    ))
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["success"], true);
    let (_, listed) = call(get()).await;
    let web = &listed["servers"][1];
    assert_eq!(web["name"], "web");
    assert_eq!(web["endpoint"], fixture.url.as_str());
    assert_eq!(web["connected"], true);

    let (status, closed) = call(post("/mcp/disconnect", json!({"server": "fixture"}))).await;
    assert_eq!(status, 200);
    assert_eq!(closed, json!({"success": true, "server": "fixture"}));
    let (_, listed) = call(get()).await;
    assert_eq!(listed["servers"][0]["connected"], false);
    // The HTTP one ends its session, and opens a new one when connected again.
    for path in ["/mcp/disconnect", "/mcp/connect"] {
        let (status, answer) = call(post(path, json!({"server": "web"}))).await;
        assert_eq!(status, 200);
        assert_eq!(answer["success"], true, "{path}: {answer}");
    }

    // A server that cannot be reached: success false, and why.
    let (status, failed) = call(post(
        "/mcp/connect",
        json!({"server": "nowhere", "endpoint": "http://127.0.0.1:9/mcp"}),
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(failed["success"], false);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached")
    );
    let (_, listed) = call(get()).await;
    let nowhere = &listed["servers"][1];
    assert_eq!(nowhere["name"], "nowhere", "{listed}");
    assert_eq!(nowhere["connected"], false);
    let error = nowhere["error"].as_str().unwrap();
    assert!(error.contains("cannot be reached"), "{error}");

    // Bad input.
    for (path, body, expected) in [
        ("/mcp/connect", json!({"server": "missing"}), 404),
        ("/mcp/disconnect", json!({"server": "missing"}), 404),
        ("/mcp/connect", json!({"name": "fixture"}), 422),
        (
            "/mcp/connect",
            json!({"server": "bad.name", "endpoint": fixture.url}),
            422,
        ),
        (
            "/mcp/connect",
            json!({"server": "fixture", "endpoint": fixture.url}),
            409,
        ),
    ] {
        let (status, answer) = call(post(path, body.clone())).await;
        assert_eq!(status, expected, "{path} {body}: {answer}");
    }

    // Under victor's keys and scopes.
    let (status, _) = call(http.get(url("/mcp/servers"))).await;
    assert_eq!(status, 401);
    let out = server.run(&["keys", "create", "--scope", "read", "--json"]);
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    let read = format!("Bearer {}", read["key"].as_str().unwrap());
    let (status, _) = call(http.get(url("/mcp/servers")).header("authorization", &read)).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        http.post(url("/mcp/connect"))
            .header("authorization", &read)
            .json(&json!({"server": "fixture"})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn cancelling_the_agent_stops_a_call_under_way() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    // The call would wait two minutes for the server.
    let server = server_with(&fake, root.path(), &stdio_table(""));
    let client = server.client();
    fake.push(Reply::stream().then_tool_call("c1", "fixture__hang", &["{}"]));
    let id =
        start_fixture_agent(&client, root.path(), &[("fixture.hang", Permission::Allow)]).await;
    wait_event(&client, &id, agent_types::TOOL_CALL, 1).await;
    let started = Instant::now();
    client.cancel(&id).await.unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));
    let results = results(&client, &id).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(results[0].2);
    assert!(results[0].1.contains("cancelled"), "{results:?}");
}
