//! The task engine through the API: controls, the concurrency limit, idempotency, output.

mod common;

use std::time::Duration;

use common::{Server, exec, exec_of, finished, output_of, proc_stat, shell, wait_for};
use victor::client::Client;
use victor::proto::{Command, CreateTask, Input, TaskSpec, TaskState, types};

/// The seq of the newest event, read from the server.
async fn last_seq(client: &Client, id: &str) -> u64 {
    client.get_task(id).await.unwrap().last_seq
}

#[tokio::test]
async fn pause_really_stops_output_and_resume_continues_it() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(
            &shell("i=0; while true; do echo $i; i=$((i+1)); sleep 0.02; done"),
            None,
        )
        .await
        .unwrap();
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.last_seq >= 5
    })
    .await;

    let paused = client.pause(&task.id).await.unwrap();
    assert_eq!(paused.state, TaskState::Paused);
    // Lines written just before the stop may still be in the pipe; once they are read, the
    // log stays still however long we wait.
    let mut frozen = last_seq(&client, &task.id).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = last_seq(&client, &task.id).await;
        if now == frozen {
            break;
        }
        frozen = now;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        last_seq(&client, &task.id).await,
        frozen,
        "no output while paused"
    );

    let resumed = client.resume(&task.id).await.unwrap();
    assert_eq!(resumed.state, TaskState::Running);
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.last_seq > frozen + 3
    })
    .await;

    let cancelled = client.cancel(&task.id).await.unwrap();
    assert!(!cancelled.state.is_final() || cancelled.state == TaskState::Cancelled);
    let done = finished(&client, &task.id).await;
    assert_eq!(done.state, TaskState::Cancelled);
    assert_eq!(done.result.unwrap().signal, Some(15));

    // The numbers printed before and after the pause follow on without a gap.
    let (stdout, _) = output_of(&client, &task.id).await;
    let numbers: Vec<u64> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_after_the_grace_period() {
    let server = Server::start_with(&["--kill-grace-secs", "0.3"]);
    let client = server.client();
    let task = client
        .create_task(
            &shell("trap '' TERM; echo ready; while true; do sleep 0.05; done"),
            None,
        )
        .await
        .unwrap();
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.last_seq >= 3
    })
    .await;
    client.cancel(&task.id).await.unwrap();
    let done = finished(&client, &task.id).await;
    assert_eq!(done.state, TaskState::Cancelled);
    assert_eq!(done.result.unwrap().signal, Some(9));
}

#[tokio::test]
async fn a_paused_task_can_be_cancelled() {
    let server = Server::start();
    let client = server.client();
    let task = client.create_task(&shell("sleep 30"), None).await.unwrap();
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    client.pause(&task.id).await.unwrap();
    client.cancel(&task.id).await.unwrap();
    assert_eq!(
        finished(&client, &task.id).await.state,
        TaskState::Cancelled
    );
}

#[tokio::test]
async fn input_reaches_the_process_and_eof_closes_stdin() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(
            &shell("while read line; do echo got:$line; done; echo bye"),
            None,
        )
        .await
        .unwrap();
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    client
        .input(
            &task.id,
            &Input {
                text: "one\ntwo\n".into(),
                eof: false,
            },
        )
        .await
        .unwrap();
    client
        .input(
            &task.id,
            &Input {
                text: "three\n".into(),
                eof: true,
            },
        )
        .await
        .unwrap();
    let done = finished(&client, &task.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
    let (stdout, _) = output_of(&client, &task.id).await;
    assert_eq!(stdout, "got:one\ngot:two\ngot:three\nbye\n");

    let late = client
        .input(
            &task.id,
            &Input {
                text: "x".into(),
                eof: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(late, victor::client::ClientError::Api { status: 409, .. }),
        "{late:?}"
    );
}

#[tokio::test]
async fn initial_stdin_is_written_then_closed() {
    let server = Server::start();
    let client = server.client();
    let mut request = shell("tr a-z A-Z");
    let spec = exec_of(&mut request);
    spec.stdin = Some("shout\n".into());
    let task = client.create_task(&request, None).await.unwrap();
    assert_eq!(
        finished(&client, &task.id).await.state,
        TaskState::Succeeded
    );
    assert_eq!(output_of(&client, &task.id).await.0, "SHOUT\n");
}

#[tokio::test]
async fn the_concurrency_limit_holds_and_the_queue_is_fifo_with_priorities() {
    let server = Server::start_with(&["--max-concurrent", "2"]);
    let client = server.client();
    // Every task waits for a line on stdin, so the test decides when each slot frees up.
    let hold = || shell("read go");
    let state = |id: String| {
        let client = client.clone();
        async move { client.get_task(&id).await.unwrap().state }
    };
    let release = |id: String| {
        let client = client.clone();
        async move {
            client
                .input(
                    &id,
                    &Input {
                        text: "go\n".into(),
                        eof: true,
                    },
                )
                .await
                .unwrap();
            assert_eq!(finished(&client, &id).await.state, TaskState::Succeeded);
        }
    };
    let running_count = || {
        let client = client.clone();
        async move { client.status().await.unwrap().tasks[&TaskState::Running] }
    };

    let first = client.create_task(&hold(), None).await.unwrap().id;
    let second = client.create_task(&hold(), None).await.unwrap().id;
    for id in [&first, &second] {
        wait_for(&client, id, Duration::from_secs(10), |t| {
            t.state == TaskState::Running
        })
        .await;
    }
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(client.create_task(&hold(), None).await.unwrap().id);
    }
    let mut urgent = hold();
    urgent.priority = 10;
    let urgent = client.create_task(&urgent, None).await.unwrap().id;
    for id in queued.iter().chain([&urgent]) {
        assert_eq!(state(id.clone()).await, TaskState::Queued);
    }
    assert_eq!(running_count().await, 2);

    // A slot frees up: the urgent task, though it came last, takes it.
    release(first).await;
    wait_for(&client, &urgent, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    for id in &queued {
        assert_eq!(state(id.clone()).await, TaskState::Queued);
    }
    assert_eq!(running_count().await, 2);

    // Then the others, first come first served, never more than two at once.
    release(second).await;
    wait_for(&client, &queued[0], Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    assert_eq!(state(queued[1].clone()).await, TaskState::Queued);
    assert_eq!(state(queued[2].clone()).await, TaskState::Queued);
    assert_eq!(running_count().await, 2);

    release(urgent).await;
    wait_for(&client, &queued[1], Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    assert_eq!(state(queued[2].clone()).await, TaskState::Queued);
    assert_eq!(running_count().await, 2);

    for id in queued {
        release(id).await;
    }
    let status = client.status().await.unwrap();
    assert_eq!(status.tasks[&TaskState::Succeeded], 6);
}

#[tokio::test]
async fn a_queued_task_is_cancelled_at_once_and_cannot_be_paused() {
    let server = Server::start_with(&["--max-concurrent", "1"]);
    let client = server.client();
    let blocker = client.create_task(&shell("sleep 30"), None).await.unwrap();
    let queued = client
        .create_task(&shell("echo never"), None)
        .await
        .unwrap();
    assert_eq!(
        client.get_task(&queued.id).await.unwrap().state,
        TaskState::Queued
    );
    let refused = client.pause(&queued.id).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            victor::client::ClientError::Api {
                status: 409,
                state: Some(TaskState::Queued),
                ..
            }
        ),
        "{refused:?}"
    );
    let cancelled = client.cancel(&queued.id).await.unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    assert!(cancelled.started_at.is_none());
    client.cancel(&blocker.id).await.unwrap();
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_task() {
    let server = Server::start();
    let client = server.client();
    let first = client
        .create_task(&shell("echo once"), Some("deploy-42"))
        .await
        .unwrap();
    let again = client
        .create_task(&shell("echo once"), Some("deploy-42"))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    let page = client.list_tasks(&[], 10, None).await.unwrap();
    assert_eq!(page.tasks.len(), 1, "no second task");

    let raw = common::http()
        .post(format!("{}/api/v1/tasks", server.url))
        .header("Idempotency-Key", "deploy-42")
        .json(&shell("echo once"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200, "a replay is 200, a creation 201");

    let different = client
        .create_task(&shell("echo something else"), Some("deploy-42"))
        .await
        .unwrap_err();
    assert!(
        matches!(&different, victor::client::ClientError::Api { status: 422, code, .. } if code == "idempotency_mismatch"),
        "{different:?}"
    );

    // Concurrent retries with one key still make one task.
    let mut retries = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        retries.push(tokio::spawn(async move {
            client
                .create_task(&shell("echo race"), Some("race-key"))
                .await
                .unwrap()
                .id
        }));
    }
    let mut ids = Vec::new();
    for retry in retries {
        ids.push(retry.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn long_lines_are_split_invalid_utf8_replaced_and_output_budgeted() {
    let server = Server::start();
    let client = server.client();

    // A 40,000-byte line arrives in pieces that join back into the line.
    let task = client
        .create_task(&shell("head -c 40000 /dev/zero | tr '\\0' x; echo"), None)
        .await
        .unwrap();
    finished(&client, &task.id).await;
    let events = client.events(&task.id, 0, 1000).await.unwrap();
    let pieces: Vec<String> = events
        .iter()
        .filter_map(|e| e.output())
        .map(|o| o.text)
        .collect();
    assert!(pieces.len() >= 3, "split into pieces: {}", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= 16 * 1024));
    assert_eq!(pieces.concat(), format!("{}\n", "x".repeat(40_000)));

    // Bytes that are not UTF-8 become U+FFFD; valid multi-byte text survives.
    let task = client
        .create_task(&shell("printf 'ok \\377\\376 é\\n'"), None)
        .await
        .unwrap();
    finished(&client, &task.id).await;
    assert_eq!(
        output_of(&client, &task.id).await.0,
        "ok \u{FFFD}\u{FFFD} é\n"
    );

    // Past the budget: output is cut, one `truncated` event says so, and the task still ends well.
    let mut request = shell("seq 1 100000");
    let spec = exec_of(&mut request);
    spec.max_output_bytes = Some(1000);
    let task = client.create_task(&request, None).await.unwrap();
    let done = finished(&client, &task.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
    let events = client.events(&task.id, 0, 100_000).await.unwrap();
    let kept: usize = events
        .iter()
        .filter_map(|e| e.output())
        .map(|o| o.text.len())
        .sum();
    assert_eq!(kept, 1000);
    let truncated: Vec<_> = events
        .iter()
        .filter(|e| e.kind == types::TRUNCATED)
        .collect();
    assert_eq!(truncated.len(), 1);
    assert_eq!(truncated[0].data["limit_bytes"], 1000);
}

#[tokio::test]
async fn a_partial_line_such_as_a_prompt_is_sent_without_waiting_for_its_newline() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(&shell("printf 'name? '; read name; echo hi $name"), None)
        .await
        .unwrap();
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.last_seq >= 3
    })
    .await;
    assert_eq!(output_of(&client, &task.id).await.0, "name? ");
    client
        .input(
            &task.id,
            &Input {
                text: "ada\n".into(),
                eof: false,
            },
        )
        .await
        .unwrap();
    finished(&client, &task.id).await;
    assert_eq!(output_of(&client, &task.id).await.0, "name? hi ada\n");
}

#[tokio::test]
async fn argv_runs_without_a_shell_and_a_timeout_fails_the_task() {
    let server = Server::start();
    let client = server.client();
    let request = CreateTask {
        name: Some("literal".into()),
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Exec(exec(Command::Argv(vec!["echo".into(), "$HOME; ls".into()]))),
    };
    let task = client.create_task(&request, None).await.unwrap();
    finished(&client, &task.id).await;
    assert_eq!(output_of(&client, &task.id).await.0, "$HOME; ls\n");

    let mut request = shell("sleep 10");
    let spec = exec_of(&mut request);
    spec.timeout_secs = Some(0.3);
    let task = client.create_task(&request, None).await.unwrap();
    let done = finished(&client, &task.id).await;
    assert_eq!(done.state, TaskState::Failed);
    assert!(done.result.unwrap().timed_out);
}

#[tokio::test]
async fn what_a_task_leaves_behind_holding_its_pipes_goes_with_it() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(&shell("sleep 60 & echo started"), None)
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), finished(&client, &task.id))
        .await
        .expect("the task ends although a background child holds its stdout");
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(output_of(&client, &task.id).await.0, "started\n");
}

#[tokio::test]
async fn list_is_newest_first_paginated_and_filtered_and_delete_removes_events() {
    let server = Server::start();
    let client = server.client();
    let mut ids = Vec::new();
    for i in 0..5 {
        let task = client
            .create_task(&shell(&format!("echo {i}")), None)
            .await
            .unwrap();
        ids.push(task.id);
    }
    for id in &ids {
        finished(&client, id).await;
    }
    let running = client.create_task(&shell("sleep 30"), None).await.unwrap();
    wait_for(&client, &running.id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = client.list_tasks(&[], 2, cursor.as_deref()).await.unwrap();
        assert!(page.tasks.len() <= 2);
        seen.extend(page.tasks.into_iter().map(|t| t.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<String> = ids.iter().cloned().chain([running.id.clone()]).collect();
    expected.reverse();
    assert_eq!(seen, expected);

    let page = client
        .list_tasks(&[TaskState::Running], 50, None)
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].id, running.id);

    let refused = client.delete_task(&running.id).await.unwrap_err();
    assert!(matches!(
        refused,
        victor::client::ClientError::Api { status: 409, .. }
    ));
    client.delete_task(&ids[0]).await.unwrap();
    let gone = client.events(&ids[0], 0, 10).await.unwrap_err();
    assert!(matches!(
        gone,
        victor::client::ClientError::Api { status: 404, .. }
    ));
    client.cancel(&running.id).await.unwrap();
}

#[tokio::test]
async fn output_that_fills_the_budget_exactly_is_still_marked_truncated_when_more_comes() {
    let server = Server::start();
    let client = server.client();
    let mut request = shell("head -c 1000 /dev/zero | tr '\\0' a; sleep 0.2; echo more");
    let spec = exec_of(&mut request);
    spec.max_output_bytes = Some(1000);
    let task = client.create_task(&request, None).await.unwrap();
    finished(&client, &task.id).await;
    let events = client.events(&task.id, 0, 1000).await.unwrap();
    let kept: usize = events
        .iter()
        .filter_map(|e| e.output())
        .map(|o| o.text.len())
        .sum();
    assert_eq!(kept, 1000);
    assert_eq!(
        events.iter().filter(|e| e.kind == types::TRUNCATED).count(),
        1
    );
}

/// The environment a task of `server` runs with, one variable a line.
async fn task_environment(server: &Server) -> String {
    let client = server.client();
    let task = client.create_task(&shell("env"), None).await.unwrap();
    finished(&client, &task.id).await;
    let (stdout, _) = output_of(&client, &task.id).await;
    assert!(
        stdout.contains("PATH="),
        "the environment is otherwise inherited"
    );
    stdout
}

#[tokio::test]
async fn the_servers_secrets_are_not_in_the_tasks_environment() {
    let server = Server::start_keyed("do-not-leak-me", &[]);
    let stdout = task_environment(&server).await;
    assert!(!stdout.contains("do-not-leak-me"));
}

#[tokio::test]
async fn settings_that_can_hold_credentials_are_not_in_the_tasks_environment() {
    // A store or provider URL may carry a password (`redis://:password@host`).
    let store = tempfile::tempdir().unwrap();
    let store_url = format!(
        "sqlite://{}",
        store.path().join("store-do-not-leak.db").display()
    );
    let server = Server::launch(common::victor_serve().env("VICTOR_STORE", &store_url).env(
        "VICTOR_PROVIDERS",
        "x=openai:http://user:provider-do-not-leak@127.0.0.1:9#m",
    ));
    assert!(
        store.path().join("store-do-not-leak.db").exists(),
        "the server did not use VICTOR_STORE"
    );
    let stdout = task_environment(&server).await;
    assert!(!stdout.contains("do-not-leak"), "{stdout}");
}

#[tokio::test]
async fn a_full_queue_refuses_new_tasks_with_503() {
    let server = Server::start_with(&["--max-concurrent", "1", "--max-queued", "2"]);
    let client = server.client();
    let running = client.create_task(&shell("sleep 30"), None).await.unwrap();
    wait_for(&client, &running.id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    for _ in 0..2 {
        client.create_task(&shell("true"), None).await.unwrap();
    }
    let response = common::http()
        .post(format!("{}/api/v1/tasks", server.url))
        .json(&shell("true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    client.cancel(&running.id).await.unwrap();
    // Room again once the queue moves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.create_task(&shell("true"), None).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds the write lock of a server's database, as another program writing to it would: the
/// server's writes wait for it, then fail. Released when dropped.
fn lock_the_store(server: &Server) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(server.data_dir.join("victor.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    db
}

/// Whether process `pid` is stopped (SIGSTOP), or `None` when it is gone.
fn stopped(pid: u32) -> Option<bool> {
    proc_stat(pid).map(|fields| fields.first().is_some_and(|state| state == "T"))
}

/// Whether `check` holds within two seconds (a signal takes a moment to act).
async fn settles(check: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !check() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn a_pause_the_store_cannot_record_leaves_the_processes_running() {
    let server = Server::start();
    let client = server.client();
    let (task, pid) = common::sleeping_task(&client).await;

    let lock = lock_the_store(&server);
    let refused = client.pause(&task).await;
    drop(lock);
    assert!(refused.is_err(), "a pause nobody could record: {refused:?}");
    assert_eq!(
        client.get_task(&task).await.unwrap().state,
        TaskState::Running
    );
    assert!(
        settles(|| stopped(pid) == Some(false)).await,
        "the record says running, the process is stopped"
    );

    // Once the store works again, the pause does.
    client.pause(&task).await.unwrap();
    assert!(settles(|| stopped(pid) == Some(true)).await);
    client.resume(&task).await.unwrap();
    client.cancel(&task).await.unwrap();
    finished(&client, &task).await;
}

/// Waits until process `pid` no longer exists (ended and reaped, not a zombie); kills it and
/// fails when it is still there after `limit`.
async fn gone(pid: u32, limit: Duration, what: &str) {
    let deadline = std::time::Instant::now() + limit;
    while let Some(stat) = proc_stat(pid) {
        if std::time::Instant::now() > deadline {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what} (pid {pid}) is still there, in state {}", stat[0]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server's children that are zombies: ended, and nobody reaped them.
fn zombie_children(server_pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|fields| {
                fields.first().is_some_and(|state| state == "Z")
                    && fields.get(1) == Some(&server_pid.to_string())
            })
        })
        .collect()
}

#[tokio::test]
async fn background_output_is_logged_for_as_long_as_the_pipes_stay_open() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(
            &shell("(for i in 1 2 3 4 5; do echo child $i; sleep 1; done) & echo parent exits"),
            None,
        )
        .await
        .unwrap();
    let done = finished(&client, &task.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(
        done.result.unwrap().leftover_processes,
        0,
        "nothing was left to end"
    );
    let (stdout, _) = output_of(&client, &task.id).await;
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "child 1",
            "child 2",
            "child 3",
            "child 4",
            "child 5",
            "parent exits"
        ],
        "{stdout}"
    );
    // The subshell outlived its parent and was handed to the server, which reaped it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !zombie_children(server.pid()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "zombies left: {:?}",
            zombie_children(server.pid())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_background_process_left_running_is_terminated_when_the_task_ends() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(&shell("sleep 60 >/dev/null 2>&1 & echo $!"), None)
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(15), finished(&client, &task.id))
        .await
        .expect("the task ends when its main process has and its pipes are closed");
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.result.unwrap().leftover_processes, 1);
    let (stdout, _) = output_of(&client, &task.id).await;
    let pid: u32 = stdout.trim().parse().expect("the background pid");
    gone(pid, Duration::from_secs(5), "the background sleep").await;
    let shown = server.run(&["task", "show", &task.id]);
    assert!(
        common::stdout(&shown).contains("leftovers  1 process(es) still running"),
        "{}",
        common::stdout(&shown)
    );
}

#[tokio::test]
async fn a_process_that_left_the_process_group_with_setsid_is_terminated_too() {
    let server = Server::start();
    let client = server.client();
    let task = client
        .create_task(
            &shell("setsid sh -c 'echo $$; exec sleep 60 >/dev/null 2>&1' &"),
            None,
        )
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(15), finished(&client, &task.id))
        .await
        .expect("the task ends");
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.result.unwrap().leftover_processes, 1);
    let (stdout, _) = output_of(&client, &task.id).await;
    let pid: u32 = stdout.trim().parse().expect("the escaped pid");
    gone(
        pid,
        Duration::from_secs(5),
        "the sleep in a session of its own",
    )
    .await;
}

/// The status and message of the server's refusal.
fn refusal<T: std::fmt::Debug>(answer: Result<T, victor::client::ClientError>) -> (u16, String) {
    match answer {
        Err(victor::client::ClientError::Api {
            status, message, ..
        }) => (status, message),
        other => panic!("expected a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn a_nul_in_an_env_value_is_reported_as_such() {
    let server = Server::start();
    let client = server.client();
    let mut request = shell("true");
    exec_of(&mut request).env.insert("A".into(), "x\0y".into());
    let (status, message) = refusal(client.create_task(&request, None).await);
    assert_eq!(status, 422);
    assert!(
        message.contains("value of `A`") && message.contains("NUL"),
        "{message}"
    );
    assert!(!message.contains("not a valid variable name"), "{message}");
}

#[tokio::test]
async fn rolling_back_an_exec_task_says_an_exec_task() {
    let server = Server::start();
    let client = server.client();
    let task = client.create_task(&shell("true"), None).await.unwrap();
    finished(&client, &task.id).await;
    let (status, message) = refusal(client.rollback(&task.id, 1).await);
    assert_eq!(status, 409);
    assert!(
        message.contains("cannot roll back an exec task"),
        "{message}"
    );
}
