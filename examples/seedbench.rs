//! The seed dialects' targets, measured against a release `victor serve` whose model is the
//! fake provider (tests/common/fake_llm.rs):
//!
//! - Seed 004 (Socket.IO): C socket.io-client 4 connections (examples/support/
//!   socketio_clients.cjs, Node.js) in one session's room: set-up time for all of them, `ping`
//!   acknowledgements, HALT / RESUME acknowledgements and the delay from a command sent to its
//!   event reaching each client, and the server's memory per connection (the clients come
//!   from 127.0.0.2, 127.0.0.3..., 100 from each, under the server's default limit of
//!   connections from one address that have not authenticated yet); the same clients
//!   against python-socketio under uvicorn (examples/support/socketio_peer.py) serving the same
//!   rooms and events, in the same run.
//! - Seed 001 (task API): T tasks started at once with `POST /tasks` (time to the answer), each
//!   followed on `/ws/{task_id}` (delay from an event's timestamp to its arrival); with
//!   `--soak-secs S` one more task whose command runs S seconds while a client stays
//!   connected to its socket, which must see it to the end without a disconnect.
//!
//! ```text
//! cargo build --release --bin victor
//! cargo run --release --example seedbench -- --clients 100,1000 --cycles 20 --tasks 5
//! cargo run --release --example seedbench -- --clients 100 --soak-secs 300
//! ```
//!
//! Needs node with socket.io-client, python3 with python-socketio and uvicorn (see
//! BENCHMARKS.md). Only loopback; every wait has a deadline; servers are stopped at the end.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};

#[path = "../tests/common/fake_llm.rs"]
mod fake_llm;
#[path = "../tests/common/launch.rs"]
mod launch;

use fake_llm::{FakeLlm, Reply};
use launch::{Launch, Launched, server_binary};

const KEY: &str = "seedbench-key-0123456789";
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
#[command(about = "Seed 004's Socket.IO and seed 001's task API against their targets")]
struct Args {
    /// Socket.IO clients in the room, one measurement per value.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    clients: Vec<usize>,
    /// HALT / RESUME cycles per measurement.
    #[arg(long, default_value_t = 20)]
    cycles: usize,
    /// Seed 001 tasks started at once.
    #[arg(long, default_value_t = 5)]
    tasks: usize,
    /// Also keep one seed 001 socket open this long on a task that runs as long.
    #[arg(long, default_value_t = 0)]
    soak_secs: u64,
    /// The victor binary (default: the one this build produced).
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.clients.iter().all(|&c| (1..=5000).contains(&c)),
        "--clients values must be 1 to 5000"
    );
    let binary = server_binary(args.server.as_deref())?;
    let fake = FakeLlm::start();
    let workspaces = tempfile::tempdir()?;
    let server = Launch::new(&binary)
        .unlimited()
        .api_key(KEY)
        .args([
            "--provider".into(),
            format!("fake=openai:{}#fake-small", fake.openai_url()),
            "--task-workspaces".into(),
            workspaces.path().display().to_string(),
        ])
        .start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let clients = clients_script();

    println!(
        "seed 004, Socket.IO: {} HALT/RESUME cycles per row",
        args.cycles
    );
    println!(
        "{:<18} {:>7} {:>11} {:>15} {:>19} {:>22} {:>13}",
        "server",
        "clients",
        "set-up ms",
        "ping p50/p99",
        "command ack p50/p99",
        "command→event p50/p99",
        "KiB per conn"
    );
    for &count in &args.clients {
        // A session held at a decision point: it stays running, and HALT / RESUME work on it.
        fake.push(Reply::stream().then_tool_call(
            "w1",
            "write_file",
            &[&json!({"path": "held.txt", "content": "x"}).to_string()],
        ));
        let session = runtime.block_on(create_session(&server))?;
        runtime.block_on(wait_for_decision(&server, &session))?;
        let before = rss_kib(server.pid())?;
        let measured = run_clients(&clients, &server.url, KEY, &session, count, args.cycles)?;
        let after = rss_kib(server.pid())?;
        print_row("victor", &measured, before, after);

        let port = free_port()?;
        let mut peer = Peer::start(port)?;
        let peer_url = format!("http://127.0.0.1:{port}");
        let before = rss_kib(peer.pid())?;
        let measured = run_clients(&clients, &peer_url, "", "s1", count, args.cycles)?;
        let after = rss_kib(peer.pid())?;
        print_row("python-socketio", &measured, before, after);
        peer.stop();
    }

    println!();
    println!("seed 001, task API: {} tasks started at once", args.tasks);
    runtime.block_on(seed001(&server, &fake, args.tasks))?;
    if args.soak_secs > 0 {
        runtime.block_on(soak(&server, &fake, args.soak_secs))?;
    }
    Ok(())
}

fn clients_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/support/socketio_clients.cjs")
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn create_session(server: &Launched) -> Result<String> {
    let created: Value = http()
        .post(format!("{}/api/sessions", server.url))
        .bearer_auth(KEY)
        .json(&json!({"prompt": "Hold still"}))
        .send()
        .await?
        .json()
        .await?;
    created["session_id"]
        .as_str()
        .map(str::to_string)
        .context("no session_id")
}

async fn wait_for_decision(server: &Launched, session: &str) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        let approvals: Value = http()
            .get(format!(
                "{}/api/v1/approvals?task={session}&status=pending",
                server.url
            ))
            .bearer_auth(KEY)
            .send()
            .await?
            .json()
            .await?;
        if approvals.as_array().is_some_and(|a| !a.is_empty())
            || approvals["approvals"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("session {session} never reached its decision point")
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

fn run_clients(
    script: &PathBuf,
    url: &str,
    token: &str,
    session: &str,
    count: usize,
    cycles: usize,
) -> Result<Value> {
    let root = Command::new("npm").args(["root", "-g"]).output()?;
    let out = Command::new("node")
        .env("NODE_PATH", String::from_utf8_lossy(&root.stdout).trim())
        .arg(script)
        .args([url, token, session, &count.to_string(), &cycles.to_string()])
        .output()
        .context("node (with socket.io-client) is needed")?;
    ensure!(
        out.status.success(),
        "the clients failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn print_row(server: &str, measured: &Value, before: u64, after: u64) {
    let pair = |v: &Value| {
        format!(
            "{:.1}/{:.1}",
            v["p50"].as_f64().unwrap_or(0.0),
            v["p99"].as_f64().unwrap_or(0.0)
        )
    };
    let clients = measured["clients"].as_u64().unwrap_or(1).max(1);
    println!(
        "{:<18} {:>7} {:>11.0} {:>15} {:>19} {:>22} {:>13.1}",
        server,
        clients,
        measured["connect_ms"].as_f64().unwrap_or(0.0),
        pair(&measured["ping_ms"]),
        pair(&measured["command_ack_ms"]),
        pair(&measured["command_to_event_ms"]),
        after.saturating_sub(before) as f64 / clients as f64,
    );
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// python-socketio under uvicorn; killed when dropped.
struct Peer(Option<Child>);

impl Peer {
    fn start(port: u16) -> Result<Peer> {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/support/socketio_peer.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .context("python3 (with python-socketio and uvicorn) is needed")?;
        let peer = Peer(Some(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "the python-socketio peer did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(peer)
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn task_socket(url: &str) -> Result<Socket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {KEY}").parse()?);
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// Follows one task's socket to its end; each message's delay after its event (ms), and
/// whether the socket stayed open to the final message.
async fn follow(url: String) -> Result<(Vec<f64>, bool)> {
    let mut socket = task_socket(&url).await?;
    let mut delays = Vec::new();
    loop {
        let next = tokio::time::timeout(LIMIT * 5, socket.next()).await;
        let Ok(Some(Ok(message))) = next else {
            return Ok((delays, false));
        };
        let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(&text)?;
        let stamped: jiff::Timestamp = message["timestamp"]
            .as_str()
            .context("no timestamp")?
            .parse()?;
        let delay = jiff::Timestamp::now().duration_since(stamped);
        delays.push(delay.as_secs_f64() * 1000.0);
        if matches!(
            message["type"].as_str(),
            Some("TASK_COMPLETE" | "TASK_FAILED")
        ) {
            return Ok((delays, true));
        }
    }
}

async fn start_task(server: &Launched, prompt: String) -> Result<(Value, f64)> {
    let sent = Instant::now();
    let started: Value = http()
        .post(format!("{}/tasks", server.url))
        .bearer_auth(KEY)
        .json(&json!({"prompt": prompt}))
        .send()
        .await?
        .json()
        .await?;
    Ok((started, sent.elapsed().as_secs_f64() * 1000.0))
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(((p / 100.0) * values.len() as f64) as usize)
        .or(values.last())
        .copied()
        .unwrap_or(0.0)
}

async fn seed001(server: &Launched, fake: &FakeLlm, tasks: usize) -> Result<()> {
    for n in 0..tasks {
        let write = |path: &str| {
            Reply::stream().then_tool_call(
                &format!("{path}-{n}"),
                "write_file",
                &[&json!({"path": path, "content": "def f():\n    return 1\n"}).to_string()],
            )
        };
        fake.push(write("module.py"));
        fake.push(write("test_module.py"));
    }
    for _ in 0..tasks {
        fake.push(Reply::text(&["Done."]));
    }
    let started = futures_util::future::join_all(
        (0..tasks).map(|n| start_task(server, format!("Build module {n}"))),
    )
    .await;
    let mut start_ms = Vec::new();
    let mut followers = Vec::new();
    for result in started {
        let (answer, ms) = result?;
        start_ms.push(ms);
        let url = answer["websocket_url"]
            .as_str()
            .context("no websocket_url")?
            .to_string();
        followers.push(tokio::spawn(follow(url)));
    }
    let mut delays = Vec::new();
    let mut ended = 0;
    for follower in followers {
        let (mut seen, complete) = follower.await??;
        delays.append(&mut seen);
        ended += usize::from(complete);
    }
    println!(
        "POST /tasks answered in p50 {:.1} ms, max {:.1} ms (target: a task started in under 2 s)",
        percentile(&mut start_ms.clone(), 50.0),
        percentile(&mut start_ms, 100.0)
    );
    println!(
        "{} events on /ws/{{task_id}}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms after they happened \
         (target: under 500 ms); {ended} of {tasks} sockets saw their task to the end",
        delays.len(),
        percentile(&mut delays.clone(), 50.0),
        percentile(&mut delays.clone(), 99.0),
        percentile(&mut delays, 100.0)
    );
    Ok(())
}

async fn soak(server: &Launched, fake: &FakeLlm, secs: u64) -> Result<()> {
    fake.push(Reply::stream().then_tool_call(
        "soak",
        "run_command",
        &[&json!({"command": format!("sleep {secs}"), "timeout_secs": secs + 60}).to_string()],
    ));
    fake.push(Reply::text(&["Done."]));
    let (answer, _) = start_task(server, "Run for a while".into()).await?;
    let url = answer["websocket_url"]
        .as_str()
        .context("no websocket_url")?
        .to_string();
    let opened = Instant::now();
    let (seen, complete) = follow(url).await?;
    println!(
        "a socket on a {secs} s task: open {:.0} s, {} messages, {}",
        opened.elapsed().as_secs_f64(),
        seen.len(),
        if complete {
            "saw TASK_COMPLETE without a disconnect"
        } else {
            "DISCONNECTED before the end"
        }
    );
    Ok(())
}
