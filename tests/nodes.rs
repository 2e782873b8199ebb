//! Several `victor serve` nodes on one Redis: one queue, one log, any node serving any task.
//!
//! Runs against the Redis that `VICTOR_TEST_REDIS` names (`redis://127.0.0.1:PORT/DB`; `.ci/run`
//! starts one); each test keeps its data under a key prefix of its own. Without it the tests
//! say so and pass, unless `VICTOR_REDIS_REQUIRED` is set, as CI sets it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Server, finished, shell, victor_serve, wait_for};
use victor::client::{Client, ClientError, Topic};
use victor::proto::{CreateTask, Input, Task, TaskState};

/// The Redis to test against, or `None` (and a note) when there is none here.
fn redis() -> Option<String> {
    match std::env::var("VICTOR_TEST_REDIS") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("VICTOR_REDIS_REQUIRED").is_none(),
                "VICTOR_REDIS_REQUIRED is set but VICTOR_TEST_REDIS names no Redis"
            );
            eprintln!("skipped: VICTOR_TEST_REDIS names no Redis");
            None
        }
    }
}

/// A store setting of its own on the Redis at `url`.
fn fresh_store(url: &str) -> String {
    format!("{url}?prefix=nodes-{}", uuid::Uuid::now_v7().simple())
}

/// A node on `store` with extra flags.
fn node(store: &str, args: &[&str]) -> Server {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    Server::launch(victor_serve().args(all))
}

fn requiring(mut request: CreateTask, labels: &[&str]) -> CreateTask {
    request.requires = labels.iter().map(|l| l.to_string()).collect();
    request
}

async fn state_changes(client: &Client, id: &str) -> Vec<TaskState> {
    client
        .events(id, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.state().map(|s| s.state))
        .collect()
}

fn api_status(result: Result<Task, ClientError>) -> u16 {
    match result {
        Err(ClientError::Api { status, .. }) => status,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_task_created_on_one_node_runs_on_another_and_streams_from_a_third() {
    let Some(redis) = redis() else { return };
    let store = fresh_store(&redis);
    let a = node(&store, &[]);
    let b = node(&store, &["--label", "gpu"]);
    let c = node(&store, &[]);
    let (ca, cb, cc) = (a.client(), b.client(), c.client());

    let script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done";
    let task = ca
        .create_task(&requiring(shell(script), &["gpu"]), None)
        .await
        .unwrap();
    // Followed live from a node that neither created nor runs it.
    let mut follow = cc.follow(Topic::Task(task.id.clone()), Some(0));
    let mut seen = Vec::new();
    while let Some(event) = follow.next().await {
        let event = event.unwrap();
        if event.seq > 0 {
            seen.push(event);
        }
    }
    let done = finished(&cb, &task.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
    let status = cb.status().await.unwrap();
    assert_eq!(done.node.as_deref(), Some(status.node.as_str()), "run by b");
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=done.last_seq).collect::<Vec<_>>(), "no gap");
    let lines: String = seen
        .iter()
        .filter_map(|e| e.output().map(|o| o.text.clone()))
        .collect();
    assert_eq!(lines, "line 1\nline 2\nline 3\nline 4\nline 5\n");

    // Resumed by seq on another node: the same events, in the same order.
    let from_a = ca.events(&task.id, 3, 1000).await.unwrap();
    assert_eq!(from_a, seen[3..].to_vec());
    // And the all-tasks stream by pos, from any node.
    let first_pos = seen[0].pos;
    let mut all = cc.follow(Topic::All, Some(first_pos));
    let next = loop {
        let event = all.next().await.unwrap().unwrap();
        if event.seq > 0 {
            break event;
        }
    };
    assert_eq!(next, seen[1]);

    // Every node says which node runs what.
    let status = ca.status().await.unwrap();
    let alive: BTreeSet<bool> = status.nodes.iter().map(|n| n.alive).collect();
    assert_eq!((status.nodes.len(), alive), (3, BTreeSet::from([true])));
    assert!(
        status
            .nodes
            .iter()
            .any(|n| n.labels == ["gpu"] && Some(&n.id) == done.node.as_ref())
    );
}

#[tokio::test]
async fn the_shared_queue_runs_each_task_once_within_each_nodes_limit() {
    let Some(redis) = redis() else { return };
    let store = fresh_store(&redis);
    let nodes = [
        node(&store, &["--max-concurrent", "1"]),
        node(&store, &["--max-concurrent", "2"]),
        node(&store, &["--max-concurrent", "1"]),
    ];
    let clients: Vec<Client> = nodes.iter().map(Server::client).collect();
    let mut limits = BTreeMap::new();
    for client in &clients {
        let status = client.status().await.unwrap();
        limits.insert(status.node, status.max_concurrent as u64);
    }
    let mut ids = Vec::new();
    for n in 0..12 {
        let client = &clients[n % 3];
        ids.push(
            client
                .create_task(&shell("sleep 0.4; echo done"), None)
                .await
                .unwrap()
                .id,
        );
    }
    // While they run, no node runs more than its limit.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = clients[0].status().await.unwrap();
        for node in &status.nodes {
            assert!(
                node.running <= limits[&node.id],
                "node {} runs {} tasks, its limit is {}",
                node.id,
                node.running,
                limits[&node.id]
            );
        }
        let counts = clients[0].status().await.unwrap().tasks;
        if counts.get(&TaskState::Succeeded).copied().unwrap_or(0) == 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks did not all finish: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ran_on = BTreeMap::<String, usize>::new();
    for id in &ids {
        let task = clients[1].get_task(id).await.unwrap();
        assert_eq!(task.state, TaskState::Succeeded);
        *ran_on.entry(task.node.clone().unwrap()).or_default() += 1;
        assert_eq!(
            state_changes(&clients[2], id).await,
            [TaskState::Queued, TaskState::Running, TaskState::Succeeded],
            "run once"
        );
    }
    assert!(ran_on.len() >= 2, "the work spread over nodes: {ran_on:?}");
    let listed = common::stdout(&nodes[0].run(&["task", "list"]));
    assert!(listed.lines().next().unwrap().contains("NODE"), "{listed}");
    for node in ran_on.keys() {
        assert!(listed.contains(node.as_str()), "{listed}");
    }
}

#[tokio::test]
async fn higher_priorities_start_first_across_nodes() {
    let Some(redis) = redis() else { return };
    let store = fresh_store(&redis);
    let a = node(&store, &["--max-concurrent", "1"]);
    let b = node(&store, &["--max-concurrent", "1"]);
    let (ca, cb) = (a.client(), b.client());
    // Both nodes busy.
    let blockers = [
        ca.create_task(&shell("sleep 60"), None).await.unwrap(),
        ca.create_task(&shell("sleep 60"), None).await.unwrap(),
    ];
    for blocker in &blockers {
        wait_for(&ca, &blocker.id, Duration::from_secs(20), |t| {
            t.state == TaskState::Running
        })
        .await;
    }
    let mut low = Vec::new();
    let mut high = Vec::new();
    for _ in 0..2 {
        low.push(ca.create_task(&shell("sleep 5"), None).await.unwrap().id);
    }
    for _ in 0..2 {
        let mut request = shell("sleep 5");
        request.priority = 5;
        high.push(cb.create_task(&request, None).await.unwrap().id);
    }
    for blocker in &blockers {
        cb.cancel(&blocker.id).await.unwrap();
    }
    for id in &high {
        wait_for(&ca, id, Duration::from_secs(20), |t| {
            t.state == TaskState::Running
        })
        .await;
    }
    for id in &low {
        assert_eq!(ca.get_task(id).await.unwrap().state, TaskState::Queued);
        ca.cancel(id).await.unwrap();
    }
    for id in &high {
        cb.cancel(id).await.unwrap();
    }
}

#[tokio::test]
async fn controls_reach_the_node_that_runs_the_task() {
    let Some(redis) = redis() else { return };
    let store = fresh_store(&redis);
    let a = node(&store, &[]);
    let b = node(&store, &["--label", "gpu"]);
    let (ca, cb) = (a.client(), b.client());

    let reader = ca
        .create_task(&requiring(shell("head -n 1; sleep 60"), &["gpu"]), None)
        .await
        .unwrap();
    wait_for(&ca, &reader.id, Duration::from_secs(20), |t| {
        t.state == TaskState::Running
    })
    .await;
    let input = Input {
        text: "hello from a\n".into(),
        eof: false,
    };
    ca.input(&reader.id, &input).await.unwrap();
    let echoed = wait_for(&ca, &reader.id, Duration::from_secs(20), |t| {
        t.last_seq >= 3
    })
    .await;
    assert_eq!(echoed.state, TaskState::Running);
    let paused = ca.pause(&reader.id).await.unwrap();
    assert_eq!(paused.state, TaskState::Paused);
    assert_eq!(
        api_status(ca.pause(&reader.id).await),
        api_status(cb.pause(&reader.id).await),
        "a second pause answers on a as on b"
    );
    assert_eq!(
        ca.resume(&reader.id).await.unwrap().state,
        TaskState::Running
    );
    ca.cancel(&reader.id).await.unwrap();
    let done = finished(&cb, &reader.id).await;
    assert_eq!(done.state, TaskState::Cancelled);
    assert_eq!(api_status(ca.cancel(&reader.id).await), 409);
    assert_eq!(api_status(ca.cancel("no-such-task").await), 404);
    let (out, _) = common::output_of(&ca, &reader.id).await;
    assert_eq!(out, "hello from a\n");
}

#[tokio::test]
async fn a_task_nobody_can_take_waits_and_says_why() {
    let Some(redis) = redis() else { return };
    let store = fresh_store(&redis);
    let a = node(&store, &["--label", "gpu"]);
    let ca = a.client();
    let task = ca
        .create_task(&requiring(shell("echo ran"), &["tpu"]), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = ca.get_task(&task.id).await.unwrap();
    assert_eq!(waiting.state, TaskState::Queued);
    assert!(
        waiting
            .waiting
            .as_deref()
            .is_some_and(|w| w.contains("tpu")),
        "{waiting:?}"
    );
    let shown = a.run(&["task", "show", &task.id]);
    assert!(common::stdout(&shown).contains("tpu"), "{shown:?}");
    // A node with the label joins, and takes it.
    let b = node(&store, &["--label", "tpu"]);
    let done = finished(&b.client(), &task.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.node, Some(b.client().status().await.unwrap().node));

    let bad = ca
        .create_task(&requiring(shell("true"), &["no spaces"]), None)
        .await;
    assert_eq!(api_status(bad), 422);
}

#[tokio::test]
async fn a_survivor_interrupts_the_tasks_of_a_node_killed_mid_run() {
    let Some(redis) = redis() else { return };
    let store = fresh_store(&redis);
    let lease = ["--lease-secs", "2"];
    let a = node(&store, &lease);
    let mut b = node(
        &store,
        &[&lease[..], &["--label", "gpu", "--max-concurrent", "1"]].concat(),
    );
    let ca = a.client();
    let task = ca
        .create_task(&requiring(shell("echo started; sleep 20"), &["gpu"]), None)
        .await
        .unwrap();
    wait_for(&ca, &task.id, Duration::from_secs(20), |t| t.last_seq >= 3).await;
    let queued = ca
        .create_task(&requiring(shell("echo later"), &["gpu"]), None)
        .await
        .unwrap();
    let killed = Instant::now();
    b.kill9();
    let ended = wait_for(&ca, &task.id, Duration::from_secs(20), |t| {
        t.state.is_final()
    })
    .await;
    let took = killed.elapsed();
    assert_eq!(ended.state, TaskState::Interrupted);
    assert!(
        took < Duration::from_secs(2) + Duration::from_secs(2),
        "taken over after {took:?}, the lease is 2 s"
    );
    let events = ca.events(&task.id, 0, 1000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=ended.last_seq).collect::<Vec<_>>());
    // Its queued work (b had no free slot for it) stays for whoever can take it: b,
    // restarted, rejoins and runs it.
    assert_eq!(
        ca.get_task(&queued.id).await.unwrap().state,
        TaskState::Queued
    );
    b.restart();
    let done = finished(&b.client(), &queued.id).await;
    assert_eq!(done.state, TaskState::Succeeded);
}

/// A Redis of the test's own, on a free loopback port, keeping its data in `dir`.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    process: std::process::Child,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let process = OwnRedis::spawn(port, dir.path());
        OwnRedis { port, dir, process }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--dir", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    fn restart(&mut self) {
        self.process = OwnRedis::spawn(self.port, self.dir.path());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn health(server: &Server) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{}/api/v1/health", server.url))
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_node_rides_out_a_redis_restart_degraded_and_keeps_what_redis_acknowledged() {
    if redis().is_none() {
        return;
    }
    let mut redis = OwnRedis::start();
    let a = node(&fresh_store(&redis.url()), &[]);
    let ca = a.client();
    let before = ca.create_task(&shell("echo kept"), None).await.unwrap();
    assert_eq!(finished(&ca, &before.id).await.state, TaskState::Succeeded);
    assert_eq!(health(&a).await.0, 200);

    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = health(&a).await;
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((status, body["status"].as_str()), (503, Some("degraded")));
    assert!(body["reason"].as_str().unwrap().contains("Redis"), "{body}");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while health(&a).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "still degraded after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(common::output_of(&ca, &before.id).await.0, "kept\n");
    let after = ca.create_task(&shell("echo again"), None).await.unwrap();
    let mut follow = ca.follow(Topic::Task(after.id.clone()), Some(0));
    let mut last = None;
    while let Some(event) = follow.next().await {
        last = Some(event.unwrap());
    }
    assert_eq!(
        last.and_then(|e| e.final_state()),
        Some(TaskState::Succeeded),
        "streams work again"
    );
}

#[tokio::test]
async fn a_task_is_admitted_once_though_the_shared_log_announces_it_too() {
    let Some(redis) = redis() else { return };
    let a = node(&fresh_store(&redis), &[]);
    let ca = a.client();
    for _ in 0..5 {
        let task = ca
            .create_task(&shell("read line; echo got $line"), None)
            .await
            .unwrap();
        wait_for(&ca, &task.id, Duration::from_secs(20), |t| {
            t.state == TaskState::Running
        })
        .await;
        let input = Input {
            text: "it\n".into(),
            eof: false,
        };
        ca.input(&task.id, &input).await.unwrap();
        assert_eq!(finished(&ca, &task.id).await.state, TaskState::Succeeded);
        assert_eq!(common::output_of(&ca, &task.id).await.0, "got it\n");
    }
    let status = ca.status().await.unwrap();
    assert_eq!(status.nodes[0].running, 0);
}
