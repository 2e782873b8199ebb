//! Agent tasks against the fake provider scripting real tool-calling sessions in each wire
//! format: the loop, its tools and their confinement, approvals, guidance, pause, resume and
//! cancel, checkpoints and rollback, and a restart mid-run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::fake_llm::{FakeLlm, Format, Reply};
use common::{
    Server, chats, events, finished, of_kind, start_agent as start, wait_event, wait_for,
};
use serde_json::{Value, json};
use victor::client::{Client, ClientError};
use victor::proto::{
    AgentMode, AgentSpec, ApprovalAnswer, ApprovalStatus, CreateTask, Decision, Permission,
    TaskSpec, TaskState, agent_types,
};

const FORMATS: [(Format, &str); 3] = [
    (Format::Ollama, "ollama"),
    (Format::OpenAi, "openai"),
    (Format::Anthropic, "anthropic"),
];

/// A server whose providers are the fake in each format, and whose agents may work in `root`.
fn server_with(fake: &FakeLlm, root: &Path, extra: &[&str]) -> Server {
    let specs: Vec<String> = FORMATS
        .iter()
        .map(|(format, name)| format!("{name}={name}:{}#fake-small", fake.url(*format)))
        .collect();
    let root = root.to_string_lossy().to_string();
    let mut args = vec![
        "--llm-retries",
        "1",
        "--default-provider",
        "openai",
        "--workspace-root",
        &root,
    ];
    for spec in &specs {
        args.extend(["--provider", spec.as_str()]);
    }
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

fn agent(prompt: &str, workspace: &Path, provider: &str) -> AgentSpec {
    AgentSpec {
        prompt: prompt.into(),
        workspace: workspace.to_string_lossy().into(),
        provider: Some(provider.into()),
        ..AgentSpec::default()
    }
}

/// A repository with a failing test: `add` subtracts.
fn buggy_repo(dir: &Path) {
    std::fs::write(dir.join("calc.sh"), "add() { echo $(( $1 - $2 )); }\n").unwrap();
    std::fs::write(
        dir.join("test.sh"),
        ". ./calc.sh\n[ \"$(add 2 3)\" = 5 ] && echo 'tests pass' || { echo 'add is wrong'; exit 1; }\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@t", "add", "."]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "buggy",
    ]);
}

fn script_the_fix(fake: &FakeLlm) {
    fake.push(Reply::stream().then_text("Let me look. ").then_tool_call(
        "c1",
        "read_file",
        &[r#"{"path": "#, r#""calc.sh"}"#],
    ));
    fake.push(Reply::stream().then_tool_call(
        "c2",
        "edit_file",
        &[
            r#"{"path": "calc.sh", "old": "$1 - $2", "#,
            r#""new": "$1 + $2"}"#,
        ],
    ));
    fake.push(Reply::stream().then_tool_call(
        "c3",
        "run_command",
        &[r#"{"command": "sh test.sh"}"#],
    ));
    fake.push(Reply::text(&["Fixed: add ", "now adds."]));
}

#[tokio::test]
async fn an_agent_reads_edits_and_runs_the_tests_in_every_format() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    for (format, name) in FORMATS {
        let repo = root.path().join(name);
        std::fs::create_dir(&repo).unwrap();
        buggy_repo(&repo);
        script_the_fix(&fake);
        let mut spec = agent("Fix the failing test", &repo, name);
        spec.approvals.insert("edit_file".into(), Permission::Allow);
        spec.approvals
            .insert("run_command".into(), Permission::Allow);
        let id = start(&client, spec).await;
        let task = finished(&client, &id).await;
        assert_eq!(task.state, TaskState::Succeeded, "{format:?}: {task:?}");
        assert_eq!(
            std::fs::read_to_string(repo.join("calc.sh")).unwrap(),
            "add() { echo $(( $1 + $2 )); }\n"
        );
        let log = events(&client, &id).await;
        let calls: Vec<&str> = of_kind(&log, agent_types::TOOL_CALL)
            .iter()
            .map(|e| e.data["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            calls,
            ["read_file", "edit_file", "run_command"],
            "{format:?}"
        );
        let results = of_kind(&log, agent_types::TOOL_RESULT);
        assert!(
            results[0].data["output"]
                .as_str()
                .unwrap()
                .contains("$1 - $2")
        );
        let ran = results[2].data["output"].as_str().unwrap();
        assert!(
            ran.contains("tests pass") && ran.ends_with("[exit code 0]"),
            "{ran}"
        );
        let changed = of_kind(&log, agent_types::FILE_CHANGED);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].data["kind"], "modified");
        assert!(
            changed[0].data["diff"]
                .as_str()
                .unwrap()
                .contains("+add() { echo $(( $1 + $2 )); }")
        );
        assert_eq!(of_kind(&log, agent_types::CHECKPOINT_CREATED).len(), 1);
        let words: String = of_kind(&log, agent_types::MESSAGE_DELTA)
            .iter()
            .map(|e| e.data["text"].as_str().unwrap())
            .collect();
        assert_eq!(words, "Let me look. Fixed: add now adds.");
        // Each step sent the tools and the results so far.
        let sent = chats(&fake);
        let last = sent.last().unwrap().to_string();
        assert!(
            last.contains("run_command") && last.contains("tests pass"),
            "{format:?}"
        );
        let diff = std::process::Command::new("git")
            .args(["diff", "--stat"])
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&diff.stdout).contains("calc.sh"));
    }
}

#[test]
fn task_run_agent_streams_the_work_and_exits_with_the_outcome() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    buggy_repo(root.path());
    script_the_fix(&fake);
    let out = server
        .victor()
        .args(["task", "run", "--agent", "Fix the failing test"])
        .args(["--workspace", &root.path().to_string_lossy()])
        .args([
            "--approve",
            "edit_file=allow",
            "--approve",
            "run_command=allow",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Fixed: add now adds."), "{stdout}");
    assert!(
        stderr.contains("→ edit_file") && stderr.contains("+add() { echo $(( $1 + $2 )); }"),
        "{stderr}"
    );

    // The mode and model are recorded; plan mode offers only reading tools.
    fake.push(Reply::text(&["Plan: change - to +."]));
    let out = server
        .victor()
        .args([
            "task",
            "start",
            "--json",
            "--agent",
            "Plan the fix",
            "--mode",
            "plan",
        ])
        .args([
            "--workspace",
            &root.path().to_string_lossy(),
            "--model",
            "fake-large",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["spec"]["mode"], "plan");
    assert_eq!(task["spec"]["model"], "fake-large");
    let id = task["id"].as_str().unwrap();
    let out = server.run(&["task", "wait", id]);
    assert!(out.status.success());
    let tools: Vec<String> = chats(&fake).last().unwrap()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tools, ["read_file", "list_dir", "search"]);

    // A workspace outside the roots is refused before anything runs.
    let out = server.run(&["task", "start", "--agent", "x", "--workspace", "/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the server's workspace roots"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn escapes_from_the_workspace_are_refused_and_the_model_is_told() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    let workspace = root.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::write(root.path().join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(root.path(), workspace.join("up")).unwrap();
    let attempts = [
        ("read_file", json!({"path": "../secret.txt"})),
        ("read_file", json!({"path": "/etc/passwd"})),
        ("read_file", json!({"path": "up/secret.txt"})),
        (
            "write_file",
            json!({"path": "../planted.txt", "content": "x"}),
        ),
        (
            "write_file",
            json!({"path": "up/planted.txt", "content": "x"}),
        ),
        ("list_dir", json!({"path": ".."})),
        ("search", json!({"pattern": "secret", "path": "up"})),
    ];
    for (n, (tool, arguments)) in attempts.iter().enumerate() {
        fake.push(Reply::stream().then_tool_call(
            &format!("e{n}"),
            tool,
            &[&arguments.to_string()],
        ));
    }
    fake.push(Reply::text(&["I could not get out."]));
    let mut spec = agent("Escape", &workspace, "openai");
    spec.approvals
        .insert("write_file".into(), Permission::Allow);
    let id = start(&client, spec).await;
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    let log = events(&client, &id).await;
    let results = of_kind(&log, agent_types::TOOL_RESULT);
    assert_eq!(results.len(), attempts.len());
    for result in results {
        assert_eq!(result.data["error"], true, "{}", result.data);
        assert!(
            !result.data["output"]
                .as_str()
                .unwrap()
                .contains("top secret")
        );
    }
    assert!(!root.path().join("planted.txt").exists());
    let sent = chats(&fake).last().unwrap().to_string();
    assert!(
        sent.contains("outside the workspace") || sent.contains("uses `..`"),
        "{sent}"
    );
}

/// Starts an agent whose model will want to write a file, under the default policy (ask).
async fn asking_agent(
    client: &Client,
    fake: &FakeLlm,
    workspace: &Path,
    extra: impl FnOnce(&mut AgentSpec),
) -> String {
    fake.push(Reply::stream().then_tool_call(
        "w1",
        "write_file",
        &[r#"{"path": "notes.txt", "content": "first\n"}"#],
    ));
    let mut spec = agent("Write notes", workspace, "openai");
    extra(&mut spec);
    start(client, spec).await
}

#[tokio::test]
async fn approvals_allow_once_always_and_deny_with_a_reason() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    let id = asking_agent(&client, &fake, root.path(), |_| {}).await;
    let requested = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 1).await;
    let approval_id = requested.data["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(requested.data["approval"]["tool"], "write_file");
    assert!(
        requested.data["approval"]["diff"]
            .as_str()
            .unwrap()
            .contains("+first")
    );
    assert!(
        !root.path().join("notes.txt").exists(),
        "written before approval"
    );

    // A client that connects later finds what waits.
    let later = server.client();
    let waiting = later.approvals(None, None).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].id, approval_id);
    assert_eq!(waiting[0].status, ApprovalStatus::Pending);

    fake.push(Reply::stream().then_tool_call(
        "w2",
        "write_file",
        &[r#"{"path": "notes.txt", "content": "second\n"}"#],
    ));
    let answered = later
        .answer_approval(
            &approval_id,
            &ApprovalAnswer {
                decision: Decision::AllowOnce,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(answered.status, ApprovalStatus::Allowed);
    // Answering again: 409.
    assert!(matches!(
        later
            .answer_approval(
                &approval_id,
                &ApprovalAnswer {
                    decision: Decision::Deny,
                    reason: None
                }
            )
            .await,
        Err(ClientError::Api { status: 409, .. })
    ));
    // Allow once: the next write asks again.
    let second = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 2).await;
    assert_eq!(
        std::fs::read_to_string(root.path().join("notes.txt")).unwrap(),
        "first\n"
    );
    fake.push(Reply::stream().then_tool_call(
        "w3",
        "write_file",
        &[r#"{"path": "notes.txt", "content": "third\n"}"#],
    ));
    fake.push(Reply::stream().then_tool_call("r1", "run_command", &[r#"{"command": "rm -rf ."}"#]));
    let second_id = second.data["approval"]["id"].as_str().unwrap();
    client
        .answer_approval(
            second_id,
            &ApprovalAnswer {
                decision: Decision::AllowAlways,
                reason: None,
            },
        )
        .await
        .unwrap();
    // Allowed always: the third write runs without asking; the command asks, and is denied.
    let third = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 3).await;
    assert_eq!(third.data["approval"]["tool"], "run_command");
    assert_eq!(
        std::fs::read_to_string(root.path().join("notes.txt")).unwrap(),
        "third\n"
    );
    fake.push(Reply::text(&["Understood, I will not delete anything."]));
    let denied = client
        .answer_approval(
            third.data["approval"]["id"].as_str().unwrap(),
            &ApprovalAnswer {
                decision: Decision::Deny,
                reason: Some("never delete the workspace".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(denied.status, ApprovalStatus::Denied);
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    let sent = chats(&fake).last().unwrap().to_string();
    assert!(sent.contains("never delete the workspace"), "{sent}");
    let log = events(&client, &id).await;
    assert_eq!(of_kind(&log, agent_types::APPROVAL_RESOLVED).len(), 3);
    assert!(client.approvals(None, None).await.unwrap().is_empty());
    assert_eq!(
        client
            .approvals(Some(&id), Some("all"))
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn approvals_cancel_and_the_unanswered_fallbacks() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();

    // Cancel from the approval cancels the task.
    let id = asking_agent(&client, &fake, root.path(), |_| {}).await;
    let requested = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 1).await;
    client
        .answer_approval(
            requested.data["approval"]["id"].as_str().unwrap(),
            &ApprovalAnswer {
                decision: Decision::Cancel,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Cancelled);
    assert!(!root.path().join("notes.txt").exists());

    // Cancelling the task while it waits for approval: the approval expires with it.
    let id = asking_agent(&client, &fake, root.path(), |_| {}).await;
    let requested = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 1).await;
    client.pause(&id).await.unwrap();
    client.cancel(&id).await.unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Cancelled);
    let waited = client.approvals(Some(&id), Some("all")).await.unwrap();
    assert_eq!(waited[0].status, ApprovalStatus::Expired);
    assert!(matches!(
        client
            .answer_approval(
                requested.data["approval"]["id"].as_str().unwrap(),
                &ApprovalAnswer {
                    decision: Decision::AllowOnce,
                    reason: None
                },
            )
            .await,
        Err(ClientError::Api { status: 409, .. })
    ));

    // Nobody answers: deny, and the agent goes on.
    let id = asking_agent(&client, &fake, root.path(), |spec| {
        spec.approval_timeout_secs = Some(0.3);
    })
    .await;
    fake.push(Reply::text(&["Nobody let me."]));
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    let log = events(&client, &id).await;
    let resolved = of_kind(&log, agent_types::APPROVAL_RESOLVED);
    assert_eq!(resolved[0].data["approval"]["status"], "expired");
    let result = of_kind(&log, agent_types::TOOL_RESULT)[0];
    assert!(
        result.data["output"]
            .as_str()
            .unwrap()
            .contains("was not approved")
    );

    // Nobody answers, and the policy says fail.
    let id = asking_agent(&client, &fake, root.path(), |spec| {
        spec.approval_timeout_secs = Some(0.3);
        spec.on_unanswered = Some(victor::proto::Unanswered::Fail);
    })
    .await;
    let task = finished(&client, &id).await;
    assert_eq!(task.state, TaskState::Failed);
    assert!(
        task.result
            .unwrap()
            .error
            .unwrap()
            .contains("waited for approval")
    );

    // A policy of deny never asks.
    let id = asking_agent(&client, &fake, root.path(), |spec| {
        spec.approvals.insert("write_file".into(), Permission::Deny);
    })
    .await;
    fake.push(Reply::text(&["Denied."]));
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    let log = events(&client, &id).await;
    assert!(of_kind(&log, agent_types::APPROVAL_REQUESTED).is_empty());
    assert!(!root.path().join("notes.txt").exists());
}

#[tokio::test]
async fn guidance_joins_the_next_request_and_pause_resume_cancel_steer_the_loop() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    std::fs::write(root.path().join("a.txt"), "alpha\n").unwrap();
    // The first step streams slowly: guidance and a pause arrive during it.
    fake.push(
        Reply::stream()
            .then_text("Reading. ")
            .then_tool_call("g1", "read_file", &[r#"{"path": "a.txt"}"#])
            .first_byte_after(Duration::from_millis(600)),
    );
    let id = start(&client, agent("Summarise a.txt", root.path(), "anthropic")).await;
    wait_for(&client, &id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    client
        .guide(&id, "Answer in French, please.")
        .await
        .unwrap();
    let paused = client.pause(&id).await.unwrap();
    assert_eq!(paused.state, TaskState::Paused);
    // The step in flight finishes; the next one waits for resume.
    wait_event(&client, &id, agent_types::TOOL_RESULT, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chats(&fake).len(), 1, "a step started while paused");
    assert!(matches!(
        client.pause(&id).await,
        Err(ClientError::Api { status: 409, .. })
    ));
    fake.push(Reply::text(&["C'est « alpha »."]));
    client.resume(&id).await.unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    let sent = chats(&fake).last().unwrap().to_string();
    assert!(sent.contains("Answer in French, please."), "{sent}");
    let log = events(&client, &id).await;
    assert_eq!(of_kind(&log, agent_types::GUIDANCE_RECEIVED).len(), 1);

    // Cancel while a command runs: the command's process group goes with it.
    let marker = root.path().join("still-running");
    fake.push(Reply::stream().then_tool_call(
        "s1",
        "run_command",
        &[&json!({"command": format!("sleep 30; touch {}", marker.display())}).to_string()],
    ));
    let mut spec = agent("Wait a long time", root.path(), "ollama");
    spec.approvals
        .insert("run_command".into(), Permission::Allow);
    let id = start(&client, spec).await;
    wait_event(&client, &id, agent_types::TOOL_CALL, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    client.cancel(&id).await.unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));
    let pgrep = std::process::Command::new("pgrep")
        .args(["-f", "sleep 30; touch"])
        .output()
        .unwrap();
    assert!(pgrep.stdout.is_empty(), "the command outlived its cancel");

    // Cancel while the model streams.
    fake.push(Reply::text(&["slow"]).first_byte_after(Duration::from_secs(20)));
    let asked_before = chats(&fake).len();
    let id = start(&client, agent("Think", root.path(), "openai")).await;
    // Once the model has the request: cancelled earlier, the reply would wait for the next.
    assert!(
        common::fake_llm::eventually(Duration::from_secs(10), || chats(&fake).len()
            > asked_before)
        .await,
        "the agent never asked the model"
    );
    client.cancel(&id).await.unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Cancelled);

    // A step budget.
    for n in 0..3 {
        fake.push(Reply::stream().then_tool_call(&format!("b{n}"), "list_dir", &["{}"]));
    }
    let mut spec = agent("Loop", root.path(), "openai");
    spec.max_steps = Some(2);
    let id = start(&client, spec).await;
    let task = finished(&client, &id).await;
    assert_eq!(task.state, TaskState::Failed);
    let log = events(&client, &id).await;
    assert_eq!(
        of_kind(&log, agent_types::BUDGET_EXHAUSTED)[0].data["budget"],
        "steps"
    );
}

#[tokio::test]
async fn rollback_restores_exact_bytes_and_survives_a_restart() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let mut server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    let original = b"line one\r\nline two\n\xe2\x9c\x93 no newline at end";
    std::fs::write(root.path().join("keep.txt"), original).unwrap();
    fake.push(Reply::stream().then_tool_call(
        "k1",
        "edit_file",
        &[r#"{"path": "keep.txt", "old": "line two", "new": "LINE 2"}"#],
    ));
    fake.push(Reply::stream().then_tool_call(
        "k2",
        "write_file",
        &[r#"{"path": "sub/new.txt", "content": "brand new\n"}"#],
    ));
    fake.push(Reply::stream().then_tool_call(
        "k3",
        "write_file",
        &[r#"{"path": "keep.txt", "content": "replaced\n"}"#],
    ));
    // The fourth step waits for an approval that the restart leaves unanswered.
    fake.push(Reply::stream().then_tool_call("k4", "run_command", &[r#"{"command": "true"}"#]));
    let mut spec = agent("Change things", root.path(), "openai");
    spec.approvals.insert("edit_file".into(), Permission::Allow);
    spec.approvals
        .insert("write_file".into(), Permission::Allow);
    let id = start(&client, spec).await;
    wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 1).await;
    assert_eq!(
        std::fs::read_to_string(root.path().join("keep.txt")).unwrap(),
        "replaced\n"
    );
    assert!(root.path().join("sub/new.txt").exists());
    // Rolling back a running agent: pause it first.
    assert!(matches!(
        client.rollback(&id, 1).await,
        Err(ClientError::Api { status: 409, .. })
    ));

    server.terminate();
    server.restart();
    let client = server.client();
    let task = client.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::Interrupted);
    let approvals = client.approvals(Some(&id), Some("all")).await.unwrap();
    assert_eq!(approvals[0].status, ApprovalStatus::Expired);
    let checkpoints = client.checkpoints(&id).await.unwrap();
    let files: Vec<Vec<String>> = checkpoints.iter().map(|c| c.files.clone()).collect();
    assert_eq!(
        files,
        [vec!["keep.txt"], vec!["sub/new.txt"], vec!["keep.txt"]]
    );

    // Back to before the last change, then to before the first: exact bytes each time.
    let rolled = client.rollback(&id, 3).await.unwrap();
    assert_eq!(rolled.files, ["keep.txt"]);
    let edited = std::fs::read(root.path().join("keep.txt")).unwrap();
    assert_eq!(
        edited,
        b"line one\r\nLINE 2\n\xe2\x9c\x93 no newline at end"
    );
    let rolled = client.rollback(&id, 1).await.unwrap();
    assert_eq!(rolled.files, ["keep.txt", "sub/new.txt"]);
    assert_eq!(
        std::fs::read(root.path().join("keep.txt")).unwrap(),
        original
    );
    assert!(!root.path().join("sub/new.txt").exists());
    assert!(matches!(
        client.rollback(&id, 9).await,
        Err(ClientError::Api { status: 404, .. })
    ));
}

#[tokio::test]
async fn bad_agent_requests_get_clear_errors() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    for (spec, needle) in [
        (agent("", root.path(), "openai"), "prompt"),
        (
            agent("x", Path::new("/no/such/dir"), "openai"),
            "not a directory",
        ),
        (agent("x", Path::new("/"), "openai"), "--workspace-root"),
        (agent("x", root.path(), "nope"), "no provider named nope"),
        (
            AgentSpec {
                approvals: [("format_disk".to_string(), Permission::Allow)].into(),
                ..agent("x", root.path(), "openai")
            },
            "not a tool",
        ),
        (
            AgentSpec {
                mode: AgentMode::Plan,
                max_steps: Some(0),
                ..agent("x", root.path(), "openai")
            },
            "max_steps",
        ),
    ] {
        let request = CreateTask {
            name: None,
            priority: 0,
            requires: Vec::new(),
            spec: TaskSpec::Agent(spec),
        };
        match client.create_task(&request, None).await {
            Err(ClientError::Api {
                status: 422,
                message,
                ..
            }) => {
                assert!(message.contains(needle), "{needle}: {message}")
            }
            other => panic!("{needle}: {other:?}"),
        }
    }
    assert!(matches!(
        client
            .answer_approval(
                "nope",
                &ApprovalAnswer {
                    decision: Decision::AllowOnce,
                    reason: None
                }
            )
            .await,
        Err(ClientError::Api { status: 404, .. })
    ));
    let exec = client
        .create_task(&common::shell("sleep 5"), None)
        .await
        .unwrap();
    assert!(matches!(
        client.guide(&exec.id, "hello").await,
        Err(ClientError::Api { status: 409, .. })
    ));
    client.cancel(&exec.id).await.unwrap();
}

#[tokio::test]
async fn seed_agents_work_in_the_servers_default_directory_not_its_process_directory() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    let project = root_path.join("project");
    std::fs::create_dir(&project).unwrap();
    let project = project.to_string_lossy().to_string();
    // The server process runs in the test's directory, outside every workspace root; its
    // configured directory is inside one.
    let server = server_with(&fake, &root_path, &["--default-cwd", &project]);
    fake.push(Reply::text(&["done"]));
    let (status, started) = common::call(
        common::http()
            .post(format!("{}/agents/start", server.url))
            .json(&json!({"task": "look around"})),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["success"], true, "{started}");
    let id = started["agent_id"]
        .as_str()
        .unwrap()
        .strip_prefix("agent-")
        .unwrap();
    let task = finished(&server.client(), id).await;
    match task.spec {
        TaskSpec::Agent(spec) => assert_eq!(spec.workspace, project),
        other => panic!("not an agent: {other:?}"),
    }
}

#[tokio::test]
async fn seed_agents_start_list_cancel_clear_and_stream_agent_events() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("README"), "hello\n").unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let http = reqwest::Client::new();
    let ws_url = format!("{}/ws", server.url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    socket
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let mut next_json = async || loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s");
        if let Some(Ok(Message::Text(text))) = message {
            return serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(next_json().await["type"], "pong");

    fake.push(Reply::stream().then_tool_call("r1", "read_file", &[r#"{"path": "README"}"#]));
    fake.push(Reply::text(&["It says hello."]));
    let started: Value = http
        .post(format!("{}/agents/start", server.url))
        .json(&json!({"task": "What does the README say?", "mode": "explore", "name": "reader"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(started["success"], true);
    let agent_id = started["agent_id"].as_str().unwrap().to_string();
    assert!(agent_id.starts_with("agent-"));
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("agent_completed") {
        let message = next_json().await;
        assert_eq!(message["type"], "agent_event", "{message}");
        assert_eq!(message["data"]["agent_id"], agent_id.as_str());
        seen.push(message["event"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen,
        [
            "agent_started",
            "agent_tool_call",
            "agent_tool_result",
            "agent_completed"
        ]
    );
    let agent: Value = http
        .get(format!("{}/agents/{agent_id}", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agent["status"], "completed");
    assert_eq!(agent["progress"], 100);
    assert_eq!(agent["name"], "reader");
    assert_eq!(agent["mode"], "explore");
    assert_eq!(agent["output"], "It says hello.");
    assert_eq!(agent["tool_calls"][0]["name"], "read_file");
    assert_eq!(agent["tool_calls"][0]["status"], "completed");
    assert_eq!(agent["tool_calls"][0]["result"], "hello\n");

    // Four at once, then 429 in the seed's shape.
    let mut running = Vec::new();
    for n in 0..4 {
        fake.push(Reply::text(&["late"]).first_byte_after(Duration::from_secs(30)));
        let started: Value = http
            .post(format!("{}/agents/start", server.url))
            .json(&json!({"task": format!("slow {n}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        running.push(started["agent_id"].as_str().unwrap().to_string());
    }
    let refused = http
        .post(format!("{}/agents/start", server.url))
        .json(&json!({"task": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Maximum concurrent agents (4) reached.")
    );
    let listed: Value = http
        .get(format!("{}/agents?status=pending", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["active_count"], 4);
    for id in &running {
        let cancelled: Value = http
            .post(format!("{}/agents/{id}/cancel", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(cancelled["success"], true);
    }
    let client = server.client();
    for id in &running {
        finished(&client, id.strip_prefix("agent-").unwrap()).await;
    }
    let cleared: Value = http
        .post(format!("{}/agents/clear", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["cleared"], 5);
    let listed: Value = http
        .get(format!("{}/agents", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["agents"], json!([]));
    let missing = http
        .get(format!("{}/agents/agent-nope", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_python_tool_keeps_state_in_a_session_of_the_agents_own_under_run_commands_policy() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let server = server_with(&fake, root.path(), &[]);
    let client = server.client();
    if !client
        .kernels()
        .await
        .unwrap()
        .iter()
        .any(|k| k.name == "python3")
    {
        assert!(
            std::env::var_os("VICTOR_KERNELS_REQUIRED").is_none(),
            "no python3 kernel: python3 -m pip install ipykernel"
        );
        return;
    }
    let python = |id: &str, code: &str| {
        Reply::stream().then_tool_call(id, "python", &[&json!({ "code": code }).to_string()])
    };
    fake.push(python("p1", "x = 6 * 7\nimport os\nprint(os.getcwd())"));
    fake.push(python("p2", "x + 1"));
    fake.push(python("p3", "1 / 0"));
    fake.push(Reply::text(&["x is 42."]));
    // `python` follows what the policy says of `run_command` unless it names `python`.
    let mut spec = agent("Compute", root.path(), "openai");
    spec.approvals
        .insert("run_command".into(), Permission::Allow);
    let id = start(&client, spec).await;
    let task = finished(&client, &id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
    let log = events(&client, &id).await;
    assert!(of_kind(&log, agent_types::APPROVAL_REQUESTED).is_empty());
    let outputs: Vec<&str> = of_kind(&log, agent_types::TOOL_RESULT)
        .iter()
        .map(|e| e.data["output"].as_str().unwrap())
        .collect();
    let workspace = std::fs::canonicalize(root.path()).unwrap();
    assert_eq!(
        outputs[0],
        format!("{}\n[ok]", workspace.display()),
        "started in the workspace"
    );
    assert_eq!(outputs[1], "43\n[ok]", "the variable stayed");
    assert!(
        outputs[2].contains("ZeroDivisionError")
            && !outputs[2].contains('\u{1b}')
            && outputs[2].ends_with("[raised]"),
        "{}",
        outputs[2]
    );
    // The model saw the results.
    let sent = chats(&fake).last().unwrap().to_string();
    assert!(sent.contains("43\\n[ok]"), "{sent}");
    // The agent's session is a task of its own, closed when the agent ended.
    let sessions: Vec<_> = client
        .list_tasks(&[], 100, None)
        .await
        .unwrap()
        .tasks
        .into_iter()
        .filter(|t| t.spec.kind() == "session")
        .collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].state, TaskState::Succeeded, "{:?}", sessions[0]);

    // With the default policy it asks, as `run_command` does; denied, it never runs.
    fake.push(python("p4", "open('ran.txt', 'w').write('x')"));
    fake.push(Reply::text(&["I was not allowed."]));
    let id = start(&client, agent("Compute", root.path(), "openai")).await;
    let asked = wait_event(&client, &id, agent_types::APPROVAL_REQUESTED, 1).await;
    assert_eq!(asked.data["approval"]["tool"], "python");
    client
        .answer_approval(
            asked.data["approval"]["id"].as_str().unwrap(),
            &ApprovalAnswer {
                decision: Decision::Deny,
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
    assert!(!root.path().join("ran.txt").exists());
}
