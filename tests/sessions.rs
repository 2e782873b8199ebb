//! Interpreter sessions against a real server running real Jupyter kernels (`ipykernel`, which
//! `.ci/run` installs): state kept between executions, outputs read back through the REST API
//! and the log, input, interrupt, restart, a dying kernel, close and the idle timeout.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Server, finished, wait_for};
use victor::client::{Client, ClientError};
use victor::proto::{
    CreateSession, Event, ExecuteRequest, Execution, ExecutionStatus, InputAnswer, KernelReady,
    SessionRestarting, SessionSpec, TaskState, TransactionPolicy,
};

/// Whether the Python kernel is installed; when `.ci/run` said it must be, a missing one
/// fails instead of skipping.
async fn python_kernel(client: &Client) -> bool {
    let kernels = client.kernels().await.expect("list kernels");
    let found = kernels.iter().any(|k| k.name == "python3");
    if !found {
        assert!(
            std::env::var_os("VICTOR_KERNELS_REQUIRED").is_none(),
            "no python3 kernel installed: python3 -m pip install ipykernel"
        );
        eprintln!("skipped: no python3 Jupyter kernel (python3 -m pip install ipykernel)");
    }
    found
}

/// A running session of the Python kernel.
async fn session(client: &Client, spec: SessionSpec) -> String {
    let task = client
        .create_session(&CreateSession { name: None, spec })
        .await
        .expect("create session");
    wait_for(client, &task.id, Duration::from_secs(60), |t| {
        t.state != TaskState::Queued
    })
    .await;
    task.id
}

/// Runs `code` in the session and waits for it to end.
async fn run(client: &Client, session: &str, code: &str) -> Execution {
    let queued = client
        .execute(session, &ExecuteRequest::new(code))
        .await
        .expect("execute");
    assert_eq!(queued.status, ExecutionStatus::Queued);
    let done = client
        .execution(session, &queued.id, 60.0)
        .await
        .expect("execution");
    assert!(done.status.is_final(), "never ended: {done:?}");
    done
}

async fn log(client: &Client, session: &str) -> Vec<Event> {
    client.events(session, 0, 10_000).await.expect("events")
}

fn text_plain(execution: &Execution) -> Option<&str> {
    execution.result.as_ref()?.get("text/plain")?.as_str()
}

#[tokio::test]
async fn state_persists_between_executions_and_outputs_are_in_the_log() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let task = client.get_task(&id).await.unwrap();
    assert_eq!(task.state, TaskState::Running, "{task:?}");

    let assigned = run(&client, &id, "x = 42").await;
    assert_eq!(assigned.status, ExecutionStatus::Ok);
    let printed = run(&client, &id, "print(x * 2)").await;
    assert_eq!(printed.stdout, "84\n");
    assert_eq!(printed.status, ExecutionStatus::Ok);
    let result = run(&client, &id, "x + 1").await;
    assert_eq!(text_plain(&result), Some("43"));
    assert!(result.execution_count.is_some());

    let failed = run(&client, &id, "1 / 0").await;
    assert_eq!(failed.status, ExecutionStatus::Error);
    let error = failed.error.expect("the error");
    assert_eq!(error.name, "ZeroDivisionError");
    assert!(!error.traceback.is_empty());

    let shown = run(
        &client,
        &id,
        "from IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))",
    )
    .await;
    assert_eq!(shown.displays.len(), 1, "{shown:?}");
    assert_eq!(shown.displays[0]["text/html"], "<b>hi</b>");

    let stderr = run(&client, &id, "import sys; print('oops', file=sys.stderr)").await;
    assert_eq!(stderr.stderr, "oops\n");

    // The same, as events of the session's log, in order.
    let events = log(&client, &id).await;
    let ready: Vec<KernelReady> = events.iter().filter_map(Event::decode).collect();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].language, "python");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|t| t.starts_with("execution.") && *t != "execution.output")
        .take(4)
        .collect();
    assert_eq!(
        types,
        [
            "execution.queued",
            "execution.started",
            "execution.finished",
            "execution.queued"
        ]
    );
    let outputs: String = events
        .iter()
        .filter_map(|e| e.decode::<victor::proto::ExecutionOutput>())
        .filter(|o| o.execution_id == printed.id)
        .map(|o| o.text)
        .collect();
    assert_eq!(outputs, "84\n");

    let closed = client.close_session(&id).await.expect("close");
    assert_eq!(closed.state, TaskState::Succeeded);
    let refused = client.execute(&id, &ExecuteRequest::new("x")).await;
    assert!(
        matches!(refused, Err(ClientError::Api { status: 409, .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn interrupt_keeps_variables_and_restart_clears_them() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    assert_eq!(
        run(&client, &id, "kept = 'still here'").await.status,
        ExecutionStatus::Ok
    );

    let spinning = client
        .execute(&id, &ExecuteRequest::new("while True: pass"))
        .await
        .unwrap();
    let queued_behind = client
        .execute(&id, &ExecuteRequest::new("print('never')"))
        .await
        .unwrap();
    wait_until_running(&client, &id, &spinning.id).await;
    let interrupted = client.interrupt_session(&id).await.expect("interrupt");
    assert_eq!(
        interrupted.execution_id.as_deref(),
        Some(spinning.id.as_str())
    );
    assert_eq!(interrupted.aborted, std::slice::from_ref(&queued_behind.id));
    let stopped = client.execution(&id, &spinning.id, 30.0).await.unwrap();
    assert_eq!(stopped.status, ExecutionStatus::Interrupted);
    assert_eq!(
        stopped.error.map(|e| e.name).as_deref(),
        Some("KeyboardInterrupt")
    );
    let dropped = client.execution(&id, &queued_behind.id, 0.0).await.unwrap();
    assert_eq!(dropped.status, ExecutionStatus::Aborted);
    assert_eq!(
        run(&client, &id, "print(kept)").await.stdout,
        "still here\n"
    );

    client.restart_session(&id).await.expect("restart");
    let gone = run(&client, &id, "print(kept)").await;
    assert_eq!(gone.status, ExecutionStatus::Error);
    assert_eq!(gone.error.map(|e| e.name).as_deref(), Some("NameError"));
    let ready: Vec<KernelReady> = log(&client, &id)
        .await
        .iter()
        .filter_map(Event::decode)
        .collect();
    assert_eq!(ready.len(), 2, "a second kernel after the restart");
    assert_ne!(ready[0].pid, ready[1].pid);
    assert!(
        common::proc_stat(ready[0].pid).is_none(),
        "the first kernel is gone"
    );

    client.cancel(&id).await.expect("cancel");
    let ended = finished(&client, &id).await;
    assert_eq!(ended.state, TaskState::Cancelled);
    assert!(
        common::proc_stat(ready[1].pid).is_none(),
        "the kernel ended with its session"
    );
}

async fn wait_until_running(client: &Client, session: &str, execution: &str) {
    for _ in 0..600 {
        let seen = client.execution(session, execution, 0.0).await.unwrap();
        if seen.status == ExecutionStatus::Running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {execution} never started");
}

#[tokio::test]
async fn input_requests_are_answered_through_the_api() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let nothing = client
        .answer_input(
            &id,
            &InputAnswer {
                value: "early".into(),
                input_id: None,
            },
        )
        .await;
    assert!(
        matches!(&nothing, Err(ClientError::Api { status: 409, code, .. }) if code == "no_input_wanted"),
        "{nothing:?}"
    );
    let asking = client
        .execute(
            &id,
            &ExecuteRequest::new("name = input('who? ')\nprint('hello', name)"),
        )
        .await
        .unwrap();
    let mut waiting = None;
    for _ in 0..600 {
        let seen = client.execution(&id, &asking.id, 0.0).await.unwrap();
        if let Some(request) = seen.input_request {
            waiting = Some(request);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let request = waiting.expect("an input request");
    assert_eq!(request.prompt, "who? ");
    assert!(!request.password);
    let answered = client
        .answer_input(
            &id,
            &InputAnswer {
                value: "Ada".into(),
                input_id: Some(request.input_id.clone()),
            },
        )
        .await
        .expect("answer");
    assert_eq!(answered.value.as_deref(), Some("Ada"));
    let done = client.execution(&id, &asking.id, 30.0).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Ok);
    assert!(done.stdout.ends_with("hello Ada\n"), "{:?}", done.stdout);
    assert!(done.input_request.is_none());
    client.close_session(&id).await.unwrap();
}

#[tokio::test]
async fn a_dying_kernel_is_reported_and_replaced() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let died = run(&client, &id, "import os; os._exit(1)").await;
    assert_eq!(died.status, ExecutionStatus::KernelDied);
    let events = log(&client, &id).await;
    let restarting: Vec<SessionRestarting> = events.iter().filter_map(Event::decode).collect();
    assert_eq!(restarting.len(), 1, "{events:?}");
    assert_eq!(restarting[0].exit_code, Some(1));
    assert_eq!(run(&client, &id, "print(1 + 1)").await.stdout, "2\n");
    client.close_session(&id).await.unwrap();
}

#[tokio::test]
async fn an_unused_session_closes_after_its_idle_timeout() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(
        &client,
        SessionSpec {
            idle_timeout_secs: Some(1.0),
            ..SessionSpec::default()
        },
    )
    .await;
    let ended = finished(&client, &id).await;
    assert_eq!(ended.state, TaskState::Succeeded);
    let reason = log(&client, &id)
        .await
        .iter()
        .rev()
        .find_map(|e| e.state()?.reason.clone());
    assert_eq!(reason.as_deref(), Some("closed after 1s unused"));
}

#[tokio::test]
async fn an_unknown_kernel_is_refused_with_how_to_install_one() {
    let server = Server::start();
    let client = server.client();
    let refused = client
        .create_session(&CreateSession {
            name: None,
            spec: SessionSpec {
                kernel: Some("no-such-kernel".into()),
                ..SessionSpec::default()
            },
        })
        .await;
    match refused {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 422);
            assert!(message.contains("no-such-kernel"), "{message}");
            assert!(
                message.contains("python3 -m pip install ipykernel"),
                "{message}"
            );
        }
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[tokio::test]
async fn sessions_are_limited_per_client_and_per_server() {
    let server = Server::start_with(&["--max-kernels-per-client", "1", "--max-kernels", "2"]);
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let of = |client: &str| SessionSpec {
        client: Some(client.to_string()),
        ..SessionSpec::default()
    };
    let first = session(&client, of("ada")).await;
    let status_of = |created: Result<victor::proto::Task, ClientError>| match created {
        Err(ClientError::Api { status, .. }) => status,
        Ok(task) => panic!("created {task:?}"),
        Err(other) => panic!("{other:?}"),
    };
    let again = client
        .create_session(&CreateSession {
            name: None,
            spec: of("ada"),
        })
        .await;
    assert_eq!(status_of(again), 429);
    let second = session(&client, of("bob")).await;
    let third = client
        .create_session(&CreateSession {
            name: None,
            spec: of("cy"),
        })
        .await;
    assert_eq!(status_of(third), 503);
    client.close_session(&first).await.expect("close");
    let reopened = session(&client, of("ada")).await;
    for id in [second, reopened] {
        client.close_session(&id).await.expect("close");
    }
}

#[tokio::test]
async fn rollback_on_failure_puts_the_variables_back() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let with = |code: &str, policy| ExecuteRequest {
        transaction_policy: policy,
        ..ExecuteRequest::new(code)
    };
    let settle = async |request: ExecuteRequest| {
        let queued = client.execute(&id, &request).await.expect("execute");
        client
            .execution(&id, &queued.id, 60.0)
            .await
            .expect("execution")
    };
    run(&client, &id, "a = 1\nitems = [1]").await;
    let failed = settle(with(
        "a = 2\nitems.append(2)\nb = 3\n1 / 0",
        TransactionPolicy::RollbackOnFailure,
    ))
    .await;
    assert_eq!(failed.status, ExecutionStatus::Error);
    assert!(failed.rolled_back);
    let seen = run(&client, &id, "print(a, items, 'b' in globals())").await;
    assert_eq!(seen.stdout, "1 [1] False\n");

    let kept = settle(with("a = 5", TransactionPolicy::RollbackOnFailure)).await;
    assert_eq!(kept.status, ExecutionStatus::Ok);
    assert!(!kept.rolled_back);
    let dry = settle(with("a = 9", TransactionPolicy::RollbackAlways)).await;
    assert!(dry.rolled_back);
    assert_eq!(run(&client, &id, "print(a)").await.stdout, "5\n");
    client.close_session(&id).await.unwrap();
}

#[tokio::test]
async fn victor_repl_runs_code_for_scripts() {
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let ran = server.run(&["repl", "--exec", "x = 6 * 7\nprint(x)\nx + 1"]);
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "42\n43\n");
    assert_eq!(ran.status.code(), Some(0), "{ran:?}");

    let raised = server.run(&["repl", "--exec", "def f():\n    return 1 / 0\nf()"]);
    assert_eq!(raised.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&raised.stderr);
    assert!(stderr.contains("ZeroDivisionError"), "{stderr}");
    assert!(stderr.contains("return 1 / 0"), "the traceback: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours off a terminal: {stderr}"
    );

    // An open session keeps its variables across commands; code comes on stdin too. (A
    // fresh client: the first one's kept-alive connection may have sat idle past the server's
    // --header-timeout-secs while the commands ran, and be closing as it is reused.)
    let client = server.client();
    let id = session(&client, SessionSpec::default()).await;
    let set = server.run(&["repl", "--session", &id, "--exec", "kept = 'yes'"]);
    assert_eq!(set.status.code(), Some(0), "{set:?}");
    let mut piped = server
        .victor()
        .args(["repl", "--session", &id, "--json", "--exec", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    piped
        .stdin
        .take()
        .unwrap()
        .write_all(b"print(kept)")
        .unwrap();
    let read = piped.wait_with_output().unwrap();
    assert_eq!(read.status.code(), Some(0));
    let events: Vec<Event> = String::from_utf8_lossy(&read.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event per line"))
        .collect();
    let printed: Vec<victor::proto::ExecutionOutput> =
        events.iter().filter_map(Event::decode).collect();
    assert_eq!(printed.len(), 1, "{events:?}");
    assert_eq!(printed[0].text, "yes\n");
    assert_eq!(events.last().unwrap().kind, "execution.finished");
    assert_eq!(
        client.get_task(&id).await.unwrap().state,
        TaskState::Running,
        "a session the command did not start stays open"
    );
    client.close_session(&id).await.unwrap();

    let none = server.run(&["repl", "--kernel", "no-such-kernel", "--exec", "1"]);
    assert_eq!(none.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(
        stderr.contains("python3 -m pip install ipykernel"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

/// Seed 003's socket for `client`, as its clients open it.
async fn seed_socket(
    server: &Server,
    client: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/ws/v1/session",
        server.url.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("client-id", client.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next JSON message of a seed 003 socket.
async fn seed_message(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> serde_json::Value {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a message");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn seed_003_clients_get_their_own_session_over_rest_and_websocket() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    // REST: `x = 42` in the client's session, which the socket of the same client-id reaches.
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{}/api/v1/execute", server.url))
        .header("client-id", "laptop")
        .json(&serde_json::json!({"code": "x = 42"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["execution_id"].is_string(), "{answer}");
    assert!(answer["status"].is_string(), "{answer}");
    let session_id = answer["session_id"].as_str().unwrap();
    let assigned = client
        .execution(session_id, answer["execution_id"].as_str().unwrap(), 60.0)
        .await
        .unwrap();
    assert_eq!(assigned.status, ExecutionStatus::Ok);

    let mut socket = seed_socket(&server, "laptop").await;
    let execute = |code: &str| {
        Message::text(serde_json::json!({"type": "execute", "code": code}).to_string())
    };
    socket.send(execute("print(x * 2)")).await.unwrap();
    let output = seed_message(&mut socket).await;
    assert_eq!(output["type"], "output", "{output}");
    assert_eq!(output["data"]["data"], "84\n");
    let result = seed_message(&mut socket).await;
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["data"]["status"], "ok");

    socket
        .send(execute("answer = input('name? ')\nanswer.upper()"))
        .await
        .unwrap();
    let asked = seed_message(&mut socket).await;
    assert_eq!(asked["type"], "input_request", "{asked}");
    assert_eq!(asked["data"]["prompt"], "name? ");
    let reply = serde_json::json!({
        "type": "input_response",
        "input_id": asked["data"]["input_id"],
        "value": "ada",
    });
    socket.send(Message::text(reply.to_string())).await.unwrap();
    let done = seed_message(&mut socket).await;
    assert_eq!(done["type"], "result", "{done}");
    assert_eq!(done["data"]["value"], "'ADA'");

    socket.send(execute("1 / 0")).await.unwrap();
    let error = seed_message(&mut socket).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["data"]["exception_type"], "ZeroDivisionError");
    assert_eq!(seed_message(&mut socket).await["data"]["status"], "error");

    // Another client has a session of its own.
    let mut other = seed_socket(&server, "desk").await;
    other
        .send(execute("print('x' in globals())"))
        .await
        .unwrap();
    assert_eq!(seed_message(&mut other).await["data"]["data"], "False\n");
    let sessions = client
        .list_tasks(&[], 10, None)
        .await
        .unwrap()
        .tasks
        .into_iter()
        .filter(|t| t.spec.kind() == "session")
        .count();
    assert_eq!(sessions, 2);
}

#[test]
fn victor_repl_on_a_terminal_keeps_state_answers_input_and_interrupts() {
    use common::tmux::{Tmux, quoted, victor_command};
    let server = Server::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if !runtime.block_on(python_kernel(&server.client())) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let command = format!(
        "env XDG_DATA_HOME={} {}",
        quoted(&home.path().to_string_lossy()),
        victor_command(&server, &["repl"])
    );
    let tmux = Tmux::start(&command, 100, 40);
    let limit = Duration::from_secs(60);
    tmux.wait_for("the banner", limit, |s| {
        s.contains("victor repl") && s.contains(">>>")
    });
    let line = |text: &str| {
        tmux.keys(&["-l", text]);
        tmux.keys(&["Enter"]);
    };
    // Types a cell's last line and waits for the next prompt: what is typed before the
    // console reads again is not the console's.
    let until_prompt = |prompt: &str, text: &str, what: &str| {
        let prompts = tmux.screen().matches(prompt).count();
        line(text);
        tmux.wait_for(what, limit, |s| s.matches(prompt).count() > prompts)
    };
    let cell = |text: &str, what: &str| until_prompt(">>>", text, what);
    cell("x = 5", "the next prompt");
    let screen = cell("print(x * 3)", "the output");
    assert!(screen.contains("\n15\n"), "{screen}");

    // A multi-line cell, ended by an empty line.
    until_prompt("...", "for i in range(2):", "the continuation prompt");
    until_prompt("...", "    print('row', i)", "the continuation prompt");
    let screen = cell("", "the cell's output");
    assert!(screen.contains("row 0\nrow 1"), "{screen}");

    line("name = input('who? ')");
    tmux.wait_for("the prompt", limit, |s| s.contains("who? "));
    cell("Ada", "the answer taken");
    let screen = cell("name.upper()", "the value");
    assert!(screen.contains("'ADA'"), "{screen}");

    let prompts = tmux.screen().matches(">>>").count();
    line("while True: pass");
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("the prompt after the interrupt", limit, |s| {
        s.matches(">>>").count() > prompts
    });
    assert!(screen.contains("KeyboardInterrupt"), "{screen}");
    assert!(screen.contains("(interrupted)"), "{screen}");
    let screen = cell("print(x + 100)", "the variable kept");
    assert!(screen.contains("105"), "{screen}");

    tmux.keys(&["C-d"]);
    assert_eq!(tmux.exit_status(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn a_session_running_when_the_server_is_killed_ends_interrupted_with_its_kernel() {
    let mut server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let ready: Vec<KernelReady> = log(&client, &id)
        .await
        .iter()
        .filter_map(Event::decode)
        .collect();
    let kernel = ready[0].pid;
    assert!(common::proc_stat(kernel).is_some());
    server.kill9();
    server.restart();
    let client = server.client();
    let task = finished(&client, &id).await;
    assert_eq!(task.state, TaskState::Interrupted);
    for _ in 0..100 {
        if common::proc_stat(kernel).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        common::proc_stat(kernel).is_none(),
        "the old kernel is ended on restart"
    );
    let refused = client.execute(&id, &ExecuteRequest::new("1")).await;
    assert!(
        matches!(refused, Err(ClientError::Api { status: 409, .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_reader_that_drops_off_mid_execution_resumes_with_every_output_once() {
    use victor::client::Topic;
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let code =
        "import time\nfor i in range(60):\n    print('line', i, flush=True)\n    time.sleep(0.01)";
    let queued = client
        .execute(&id, &ExecuteRequest::new(code))
        .await
        .unwrap();
    let mut text = String::new();
    let mut cursor = queued.seq;
    let mut finished = false;
    // Reads a few events at a time on a fresh connection, each resuming after the last seq.
    while !finished {
        let mut follow = client.follow(Topic::Task(id.clone()), Some(cursor));
        for _ in 0..3 {
            let Some(event) = follow.next().await else {
                break;
            };
            let event = event.unwrap();
            if event.seq == 0 {
                continue;
            }
            assert_eq!(event.seq, cursor + 1, "no gap, no repeat");
            cursor = event.seq;
            if let Some(output) = event.decode::<victor::proto::ExecutionOutput>() {
                text.push_str(&output.text);
            }
            if event.decode::<victor::proto::ExecutionFinished>().is_some() {
                finished = true;
                break;
            }
        }
    }
    let expected: String = (0..60).map(|i| format!("line {i}\n")).collect();
    assert_eq!(text, expected);
    client.close_session(&id).await.unwrap();
}

#[tokio::test]
async fn checkpoints_restore_into_the_same_session_and_a_new_one_after_kill_9() {
    use victor::proto::CheckpointRequest;
    let mut server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    let code =
        "x = 42\ndef double(v):\n    return v * 2\nimport math as m\ngen = (i for i in range(3))";
    assert_eq!(run(&client, &id, code).await.status, ExecutionStatus::Ok);
    let checkpoint = client
        .checkpoint_session(
            &id,
            &CheckpointRequest {
                name: Some("before".into()),
            },
        )
        .await
        .expect("checkpoint");
    assert_eq!(checkpoint.session_id, id);
    assert_eq!(checkpoint.name.as_deref(), Some("before"));
    assert_eq!(
        checkpoint.serializer, "dill",
        "dill is installed by .ci/run"
    );
    assert_eq!(checkpoint.saved, ["double", "m", "x"]);
    assert_eq!(checkpoint.skipped.len(), 1, "{checkpoint:?}");
    assert_eq!(checkpoint.skipped[0].name, "gen");
    assert!(
        checkpoint.skipped[0].reason.contains("generator"),
        "{checkpoint:?}"
    );
    assert!(checkpoint.size_bytes > 0);
    let file = server
        .data_dir
        .join("checkpoints")
        .join(format!("{}.pickle", checkpoint.id));
    assert!(file.is_file(), "kept in the data dir: {}", file.display());

    // Into the same session: later changes are undone, later variables gone.
    run(&client, &id, "x = 0\ny = 1").await;
    let restored = client
        .restore_session(&id, &checkpoint.id)
        .await
        .expect("restore");
    assert_eq!(restored.restored, ["double", "m", "x"]);
    assert!(restored.failed.is_empty(), "{restored:?}");
    let back = run(&client, &id, "print(x, 'y' in globals())").await;
    assert_eq!(back.stdout, "42 False\n");
    let listed = client.session_checkpoints(&id).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&checkpoint));
    let events = log(&client, &id).await;
    assert!(events.iter().any(|e| e.kind == "session.checkpoint"));
    assert!(events.iter().any(|e| e.kind == "session.restored"));

    // Refusals: an unknown checkpoint, a bad name.
    let unknown = client.restore_session(&id, "0000-not-there").await;
    assert!(
        matches!(unknown, Err(ClientError::Api { status: 404, .. })),
        "{unknown:?}"
    );
    let bad = client
        .checkpoint_session(
            &id,
            &CheckpointRequest {
                name: Some("a\0b".into()),
            },
        )
        .await;
    assert!(
        matches!(bad, Err(ClientError::Api { status: 422, .. })),
        "{bad:?}"
    );

    // kill -9, restart: the checkpoint restores into a new session, functions and all.
    server.kill9();
    server.restart();
    let client = server.client();
    assert_eq!(finished(&client, &id).await.state, TaskState::Interrupted);
    assert_eq!(client.session_checkpoints(&id).await.unwrap().len(), 1);
    let fresh = session(&client, SessionSpec::default()).await;
    let restored = client
        .restore_session(&fresh, &checkpoint.id)
        .await
        .expect("restore after restart");
    assert_eq!(restored.restored, ["double", "m", "x"]);
    let used = run(&client, &fresh, "print(double(x), m.pi > 3)").await;
    assert_eq!(used.stdout, "84 True\n", "{used:?}");
    client.close_session(&fresh).await.unwrap();
}

#[tokio::test]
async fn seed_003_checkpoint_and_restore_over_rest_and_websocket() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start();
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let http = reqwest::Client::new();
    let post = |path: &str, client_id: &str| {
        http.post(format!("{}{path}", server.url))
            .header("client-id", client_id)
    };
    let executed: serde_json::Value = post("/api/v1/execute", "laptop")
        .json(&serde_json::json!({"code": "x = 42"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session_id = executed["session_id"].as_str().unwrap().to_string();
    // Saved after `x = 42`, which was queued before it.
    let saved = post("/api/v1/checkpoint", "laptop").send().await.unwrap();
    assert_eq!(saved.status(), 200);
    let saved: serde_json::Value = saved.json().await.unwrap();
    let checkpoint_id = saved["checkpoint_id"]
        .as_str()
        .expect("checkpoint_id")
        .to_string();
    assert_eq!(saved["saved"], serde_json::json!(["x"]));

    run(&client, &session_id, "x = 7").await;
    let restored = post(&format!("/api/v1/restore/{checkpoint_id}"), "laptop")
        .send()
        .await
        .unwrap();
    assert_eq!(restored.status(), 200);
    let restored: serde_json::Value = restored.json().await.unwrap();
    assert_eq!(restored["status"], "restored", "{restored}");
    assert_eq!(run(&client, &session_id, "print(x)").await.stdout, "42\n");

    // Another client cannot reach it; an unknown one is 404 too.
    for (path, who) in [
        (format!("/api/v1/restore/{checkpoint_id}"), "desk"),
        ("/api/v1/restore/nothing-here".to_string(), "laptop"),
    ] {
        let refused = post(&path, who).send().await.unwrap();
        assert_eq!(refused.status(), 404, "{path} for {who}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    // The socket's `checkpoint` message answers `checkpoint_created`.
    let mut socket = seed_socket(&server, "laptop").await;
    socket
        .send(Message::text(
            serde_json::json!({"type": "execute", "code": "y = x + 1"}).to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"type": "checkpoint"}"#))
        .await
        .unwrap();
    let created = loop {
        let message = seed_message(&mut socket).await;
        if message["type"] == "checkpoint_created" {
            break message;
        }
        assert_eq!(message["type"], "result", "{message}");
    };
    assert_eq!(created["data"]["saved"], serde_json::json!(["x", "y"]));
    let id = created["data"]["checkpoint_id"].as_str().unwrap();
    let listed = client.session_checkpoints(&session_id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].id, id);
}

/// The live processes started for the warm pool of the server with data dir `data_dir` (which
/// keep its tag once a session adopts them).
fn warm_pool_pids(data_dir: &std::path::Path) -> Vec<u32> {
    let node = std::fs::read_to_string(data_dir.join("node-id")).unwrap();
    let tag = format!("VICTOR_TASK_ID=warm-pool@{}/", node.trim());
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|entry| entry.starts_with(tag.as_bytes()))
            }) && common::is_running(*pid)
        })
        .collect();
    pids.sort();
    pids
}

/// Waits until the warm pool has `count` kernels ready, as `GET /api/v1/kernels` says.
async fn wait_for_warm(client: &Client, count: usize, what: &str) {
    for _ in 0..1200 {
        let kernels = client.kernels().await.unwrap();
        if kernels
            .iter()
            .any(|k| k.name == "python3" && k.warm == count)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {count} warm kernels expected");
}

async fn wait_for_pool(data_dir: &std::path::Path, count: usize, what: &str) -> Vec<u32> {
    for _ in 0..1200 {
        let pids = warm_pool_pids(data_dir);
        if pids.len() == count {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: {count} warm kernels expected, found {:?}",
        warm_pool_pids(data_dir)
    );
}

#[tokio::test]
async fn a_warm_pool_hands_out_started_kernels_and_refills() {
    let mut server = Server::start_with(&["--session-warm-pool", "2"]);
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    wait_for_warm(&client, 2, "the pool filled").await;
    let pool = wait_for_pool(&server.data_dir, 2, "the pool's processes").await;
    let id = session(&client, SessionSpec::default()).await;
    let ready: Vec<KernelReady> = log(&client, &id)
        .await
        .iter()
        .filter_map(Event::decode)
        .collect();
    assert!(ready[0].warm, "{ready:?}");
    assert!(pool.contains(&ready[0].pid), "{ready:?} not of {pool:?}");
    assert_eq!(run(&client, &id, "print(6 * 7)").await.stdout, "42\n");
    // Refilled in the background: two waiting beside the one taken.
    wait_for_warm(&client, 2, "the pool refilled").await;
    let refilled = wait_for_pool(
        &server.data_dir,
        3,
        "the pool's processes and the one taken",
    )
    .await;
    // A session that asks for its own directory gets a kernel of its own.
    let elsewhere = tempfile::tempdir().unwrap();
    let cold = session(
        &client,
        SessionSpec {
            cwd: Some(elsewhere.path().to_string_lossy().into()),
            ..SessionSpec::default()
        },
    )
    .await;
    let ready: Vec<KernelReady> = log(&client, &cold)
        .await
        .iter()
        .filter_map(Event::decode)
        .collect();
    assert!(!ready[0].warm, "{ready:?}");
    // Closing a session leaves the pool's other kernels alone.
    client.close_session(&id).await.unwrap();
    let left = wait_for_pool(&server.data_dir, 2, "one closed").await;
    assert!(left.iter().all(|pid| refilled.contains(pid)));

    // kill -9: the restarted server ends the kernels the last one started ahead.
    server.kill9();
    server.restart();
    for _ in 0..200 {
        if !left.iter().any(|pid| common::is_running(*pid)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in &left {
        assert!(
            !common::is_running(*pid),
            "kernel {pid} outlived its server"
        );
    }
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn an_output_flood_with_readers_that_never_read_leaves_the_server_memory_bounded() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const LINES: u64 = 1_000_000;
    const PAD: &str = "............................................................";
    let server = Server::start_with(&["--max-output-bytes", "200000000"]);
    let client = server.client();
    if !python_kernel(&client).await {
        return;
    }
    let id = session(&client, SessionSpec::default()).await;
    run(&client, &id, "print('warm')").await;
    // Readers that ask for the session's stream and then never read a byte.
    let _stalled: Vec<_> = (0..3).map(|_| server.stalled_reader(&id)).collect();
    // And a WebSocket subscriber that never reads either.
    let mut socket = client.websocket().await.unwrap();
    socket
        .send(&victor::proto::WsRequest::Subscribe {
            id: None,
            task_id: Some(id.clone()),
            after: None,
            types: None,
        })
        .await
        .unwrap();

    let pid = server.pid();
    let before = rss_kib(pid);
    let peak = std::sync::Arc::new(AtomicU64::new(before));
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let code = format!("for i in range({LINES}):\n    print(i, '{PAD}')");
    let queued = client
        .execute(&id, &ExecuteRequest::new(code))
        .await
        .unwrap();
    // Waits for its end by the tail of the log, so that no reader reads the flood meanwhile.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let last = client.get_task(&id).await.unwrap().last_seq;
        let tail = client
            .events(&id, last.saturating_sub(3), 10)
            .await
            .unwrap();
        let ended = tail.iter().any(|e| {
            e.decode::<victor::proto::ExecutionFinished>()
                .is_some_and(|f| f.execution_id == queued.id)
        });
        if ended {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flood never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grew_mib = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
    let printed_mib = LINES * (PAD.len() as u64 + 8) / (1024 * 1024);
    eprintln!("printed {printed_mib} MiB; the server grew by {grew_mib} MiB at most");
    // Far below what holding the flood for its readers would take (several times its size).
    assert!(
        grew_mib < 64,
        "the server grew by {grew_mib} MiB for {printed_mib} MiB of output"
    );

    // The log kept every line, in order.
    let mut next = 0u64;
    let mut after = queued.seq;
    let mut partial = String::new();
    loop {
        let page = client.events(&id, after, 20).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            let Some(output) = event.decode::<victor::proto::ExecutionOutput>() else {
                continue;
            };
            partial.push_str(&output.text);
            let complete = partial.rfind('\n').map_or(0, |end| end + 1);
            for line in partial[..complete].lines() {
                assert_eq!(line, format!("{next} {PAD}"), "line {next}");
                next += 1;
            }
            partial.drain(..complete);
        }
    }
    assert_eq!(next, LINES);
    assert!(partial.is_empty());
}
