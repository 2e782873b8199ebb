//! Crashes and restarts: `kill -9` loses nothing a client was sent, running tasks become
//! `interrupted`, queued tasks run again, graceful shutdown tells open streams, and followers
//! resume across it all.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, finished, http, is_running, shell, sleeping_task, wait_for};
use victor::client::Topic;
use victor::proto::{Event, TaskState, types};

#[tokio::test]
async fn kill_9_mid_task_loses_no_event_a_client_was_sent() {
    let mut server = Server::start_with(&["--max-concurrent", "1"]);
    let client = server.client();
    let task = client
        .create_task(
            &shell("i=0; while true; do i=$((i+1)); echo line $i; sleep 0.01; done"),
            None,
        )
        .await
        .unwrap();
    let queued = client
        .create_task(&shell("echo queued ran"), None)
        .await
        .unwrap();

    // Everything a follower is sent before the kill.
    let mut follow = client.follow(Topic::Task(task.id.clone()), Some(0));
    let mut seen: Vec<Event> = Vec::new();
    while seen.len() < 40 {
        let event = follow.next().await.unwrap().unwrap();
        if event.seq > 0 {
            seen.push(event);
        }
    }
    server.kill9();
    drop(follow);

    server.restart();
    let client = server.client();
    let after = finished(&client, &task.id).await;
    assert_eq!(after.state, TaskState::Interrupted);

    let events = client.events(&task.id, 0, 100_000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "seq contiguous"
    );
    assert_eq!(
        &events[..seen.len()],
        &seen[..],
        "every event sent before the kill is stored as sent"
    );
    let last = events.last().unwrap();
    assert_eq!(last.final_state(), Some(TaskState::Interrupted));
    assert!(
        last.data["reason"]
            .as_str()
            .unwrap()
            .contains("server stopped")
    );

    // The task that was queued runs now.
    let ran = finished(&client, &queued.id).await;
    assert_eq!(ran.state, TaskState::Succeeded);
    assert_eq!(
        common::output_of(&client, &queued.id).await.0,
        "queued ran\n"
    );
}

#[tokio::test]
async fn graceful_shutdown_tells_streams_and_interrupts_running_tasks() {
    let mut server = Server::start_with(&["--shutdown-grace-secs", "1"]);
    let client = server.client();
    let task = client
        .create_task(&shell("echo up; sleep 60"), None)
        .await
        .unwrap();
    wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.last_seq >= 3
    })
    .await;
    let response = http()
        .get(format!("{}/api/v1/tasks/{}/events", server.url, task.id))
        .send()
        .await
        .unwrap();

    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (server, status)
    });
    let body = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream ends on shutdown")
        .unwrap();
    assert!(body.contains(types::SERVER_SHUTDOWN), "{body}");
    let (mut server, status) = status.await.unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(server.log().contains("stopped"));

    server.restart();
    let client = server.client();
    let task = client.get_task(&task.id).await.unwrap();
    assert_eq!(task.state, TaskState::Interrupted);
    assert!(task.result.unwrap().error.unwrap().contains("shut down"));
}

#[tokio::test]
async fn a_follower_resumes_across_a_server_restart_printing_nothing_twice() {
    let mut server = Server::start();
    let client = server.client();
    let task = client
        .create_task(
            &shell("i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done"),
            None,
        )
        .await
        .unwrap();
    let mut logs = server
        .victor()
        .args(["task", "logs", "-f", "--json", &task.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(logs.stdout.take().unwrap()).lines();
    let mut received: Vec<Event> = Vec::new();
    while received.len() < 20 {
        received.push(serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap());
    }

    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();

    let reader = tokio::task::spawn_blocking(move || {
        for line in lines {
            received.push(serde_json::from_str(&line.unwrap()).unwrap());
        }
        received
    });
    let received = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the follower reconnects and ends with the task")
        .unwrap();
    let status = logs.wait().unwrap();
    assert!(status.success());

    let stored = server.client().events(&task.id, 0, 100_000).await.unwrap();
    assert_eq!(received, stored, "each event exactly once, none missing");
    assert_eq!(
        received.last().unwrap().final_state(),
        Some(TaskState::Interrupted)
    );
}

#[tokio::test]
async fn processes_of_interrupted_tasks_do_not_outlive_a_crash() {
    let mut server = Server::start();
    let client = server.client();
    let (task, pid) = sleeping_task(&client).await;
    server.kill9();
    assert!(
        is_running(pid),
        "a crash of the server does not stop the process by itself"
    );
    server.restart();
    wait_until_gone(pid).await;
    assert_eq!(
        server.client().get_task(&task).await.unwrap().state,
        TaskState::Interrupted
    );
}

/// Waits until the process `pid` is gone, or panics after 10 s.
async fn wait_until_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(
            Instant::now() < deadline,
            "the leftover process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_data_dir_from_before_nodes_opens_and_its_tasks_recover() {
    let mut server = Server::start_with(&["--max-concurrent", "1"]);
    let client = server.client();
    let (running, pid) = sleeping_task(&client).await;
    let queued = client
        .create_task(&shell("echo queued ran"), None)
        .await
        .unwrap();
    server.kill9();
    // Make it the data dir that the release before nodes leaves behind: schema 4, no node id.
    let db = rusqlite::Connection::open(server.data_dir.join("victor.db")).unwrap();
    db.execute_batch(
        "ALTER TABLE tasks DROP COLUMN node; ALTER TABLE tasks DROP COLUMN requires;
         DROP TABLE nodes; PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(db);
    std::fs::remove_file(server.data_dir.join("node-id")).unwrap();

    server.restart();
    let client = server.client();
    let task = finished(&client, &running).await;
    assert_eq!(task.state, TaskState::Interrupted);
    assert!(
        task.result
            .unwrap()
            .error
            .unwrap()
            .contains("server stopped")
    );
    wait_until_gone(pid).await;
    assert_eq!(
        finished(&client, &queued.id).await.state,
        TaskState::Succeeded
    );
    assert_eq!(
        common::output_of(&client, &queued.id).await.0,
        "queued ran\n"
    );
    assert!(server.data_dir.join("node-id").is_file());
}

#[tokio::test]
async fn a_store_elsewhere_keeps_the_tasks_and_recovers_them_from_there() {
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("tasks").join("victor-tasks.db");
    let setting = format!("sqlite://{}", file.display());
    let mut server = Server::start_with(&["--store", &setting]);
    let client = server.client();
    let done = client.create_task(&shell("echo kept"), None).await.unwrap();
    finished(&client, &done.id).await;
    let (running, pid) = sleeping_task(&client).await;
    server.kill9();
    server.restart();
    let client = server.client();
    assert_eq!(
        finished(&client, &running).await.state,
        TaskState::Interrupted
    );
    wait_until_gone(pid).await;
    assert_eq!(common::output_of(&client, &done.id).await.0, "kept\n");
    assert!(file.is_file());
    assert!(!server.data_dir.join("victor.db").exists());
}

#[test]
fn a_store_victor_does_not_know_is_refused_in_one_line_naming_the_forms() {
    let dir = tempfile::tempdir().unwrap();
    for setting in ["redis+cluster://x", "victor.db", "sqlite://"] {
        let out = std::process::Command::new(common::VICTOR)
            .args(["serve", "--port", "0", "--store", setting, "--data-dir"])
            .arg(dir.path().join("data"))
            .env("VICTOR_CONFIG", "/dev/null")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{setting}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(text.trim().lines().count(), 1, "{setting}: {text}");
        assert!(text.contains("sqlite://PATH"), "{setting}: {text}");
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let server = Server::start();
    let out = std::process::Command::new(common::VICTOR)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&server.data_dir)
        .env("VICTOR_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("another victor server is using this data dir"),
        "{text}"
    );
}

#[test]
fn the_ready_file_says_where_the_server_listens_until_it_stops() {
    let mut server = Server::start();
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server.ready_file()).unwrap()).unwrap();
    assert_eq!(ready["url"], server.url.as_str());
    assert_eq!(ready["pid"], server.pid());
    let socket = ready["socket"].as_str().expect("a socket");
    assert!(std::path::Path::new(socket).starts_with(&server.data_dir));
    assert!(server.terminate().success());
    assert!(!server.ready_file().exists());
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    let mut server = Server::start_with(&["--shutdown-grace-secs", "1"]);
    let client = server.client();
    let task = client
        .create_task(&shell("seq 1 200000; sleep 60"), None)
        .await
        .unwrap();
    // A client that asks for the stream and then never reads a byte.
    let stalled = server.stalled_reader(&task.id);
    wait_for(&client, &task.id, Duration::from_secs(20), |t| {
        t.last_seq > 20
    })
    .await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
}
