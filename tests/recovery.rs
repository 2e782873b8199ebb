//! Crashes and restarts: `kill -9` loses nothing a client was sent, running tasks become
//! `interrupted`, queued tasks run again, graceful shutdown tells open streams, and followers
//! resume across it all.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, finished, http, shell, wait_for};
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
    let task = client
        .create_task(&shell("exec sleep 60"), None)
        .await
        .unwrap();
    let running = wait_for(&client, &task.id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    let events = client.events(&running.id, 0, 10).await.unwrap();
    let pid = events
        .iter()
        .find_map(|e| e.state()?.pid)
        .expect("running event has the pid");
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };

    server.kill9();
    assert!(
        alive(pid),
        "a crash of the server does not stop the process by itself"
    );
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the leftover process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.client().get_task(&task.id).await.unwrap().state,
        TaskState::Interrupted
    );
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
