//! Interpreter session benchmark: what victor adds to a Jupyter kernel's round trip.
//!
//! In one run, side by side: `jupyter_client` talking to a Python kernel directly
//! (examples/support/jupyter_rtt.py), and a client of a release `victor serve` running the same
//! kind of kernel as a session. For each, the cold start of a kernel (to its first answer) and
//! the round trip of a trivial execution (`1+1`): for jupyter_client from the execute request
//! to the kernel's idle status; for victor from `POST /api/v1/sessions/{id}/executions` to the
//! answer of `GET .../executions/{id}?wait=30`, which comes once the execution's end is in the
//! log. What victor adds is the difference. Then, on a second server with a warm pool of one
//! kernel (`--session-warm-pool 1`), how long a new session takes to be ready as its client
//! sees it: from `POST /api/v1/sessions` to its `session.ready` event in the log. Then output
//! throughput: a loop printing `--lines` lines, timed from its request until every one of 1,
//! then 100, SSE subscribers of the session's log has read the execution's end (and, beside
//! it, jupyter_client reading the same loop's stream messages until the kernel is idle); and the
//! server's memory per idle session: its resident set before and after `--idle` sessions are
//! open and ready, divided by their number (the kernels are processes of their own, not
//! counted).
//!
//! ```text
//! python3 -m pip install ipykernel
//! cargo build --release --bin victor
//! cargo run --release --example sessionbench -- --runs 200
//! ```
//!
//! Only loopback traffic; every request has a deadline; the server is killed when this ends.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Value, json};

#[path = "../tests/common/launch.rs"]
mod launch;

use launch::{Launch, server_binary};

#[derive(Debug, Parser)]
#[command(about = "What victor adds to a Jupyter kernel: cold start and round trip of `1+1`")]
struct Args {
    /// Executions measured each way (after 10 to warm up).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Lines printed by the throughput loop.
    #[arg(long, default_value_t = 200_000)]
    lines: usize,
    /// Idle sessions opened to measure the server's memory per session.
    #[arg(long, default_value_t = 10)]
    idle: usize,
    /// The victor binary [default: the release build's].
    #[arg(long)]
    server: Option<PathBuf>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.runs >= 1, "--runs must be at least 1");
    let peer = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/support/jupyter_rtt.py"
        ))
        .arg(args.runs.to_string())
        .arg(args.lines.to_string())
        .output()
        .context("cannot run python3 (with jupyter_client: pip install ipykernel)")?;
    ensure!(
        peer.status.success(),
        "jupyter_client's run failed: {}",
        String::from_utf8_lossy(&peer.stderr)
    );
    let peer: Value = serde_json::from_slice(&peer.stdout)?;
    let peer_rtt: Vec<f64> = peer["rtt_ms"]
        .as_array()
        .context("no rtt_ms")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();

    let binary = server_binary(args.server.as_deref())?;
    // Room for the idle sessions and the throughput runs' beside the benchmark's own.
    let server = Launch::new(&binary)
        .unlimited()
        .args(["--max-kernels", "64", "--max-kernels-per-client", "64"])
        .start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (start_ms, rtt) = runtime.block_on(measure(&server.url, args.runs))?;
    let mut flood_ms = Vec::new();
    for subscribers in [1, 100] {
        let took = runtime.block_on(throughput(&server.url, args.lines, subscribers))?;
        flood_ms.push((subscribers, took));
    }
    let per_session_kib = runtime.block_on(idle_memory(&server.url, server.pid(), args.idle))?;
    drop(server);
    let warm_server = Launch::new(&binary)
        .unlimited()
        .args(["--session-warm-pool", "1"])
        .start()?;
    let warm_ms = runtime.block_on(warm_start(&warm_server.url))?;

    let (peer_p50, peer_p99) = summary(peer_rtt);
    let (p50, p99) = summary(rtt);
    println!(
        "sessionbench: {} runs of `1+1` each way; victor {}",
        args.runs,
        binary.display()
    );
    println!();
    println!("| | jupyter_client direct | victor session | victor adds |");
    println!("| --- | ---: | ---: | ---: |");
    let peer_start = peer["start_ms"].as_f64().unwrap_or_default();
    println!(
        "| cold kernel start (ms) | {peer_start:.0} | {start_ms:.0} | {:.0} |",
        start_ms - peer_start
    );
    println!("| new session ready from the warm pool (ms) | - | {warm_ms:.1} | - |");
    println!(
        "| round trip p50 (ms) | {peer_p50:.2} | {p50:.2} | {:.2} |",
        p50 - peer_p50
    );
    println!(
        "| round trip p99 (ms) | {peer_p99:.2} | {p99:.2} | {:.2} |",
        p99 - peer_p99
    );
    let peer_flood_ms = peer["flood_ms"].as_f64().unwrap_or_default();
    let rate = |ms: f64| args.lines as f64 / (ms / 1000.0);
    println!(
        "| `for i in range({}): print(i)`, one reader (ms, lines/s) | {peer_flood_ms:.0}, {:.0} | {:.0}, {:.0} | - |",
        args.lines,
        rate(peer_flood_ms),
        flood_ms[0].1,
        rate(flood_ms[0].1)
    );
    println!(
        "| the same loop, 100 SSE readers (ms, lines/s each) | - | {:.0}, {:.0} | - |",
        flood_ms[1].1,
        rate(flood_ms[1].1)
    );
    println!(
        "| server memory per idle session ({} open; KiB) | - | {per_session_kib:.0} | - |",
        args.idle
    );
    Ok(())
}

/// A new session of the default kernel, once it is ready.
struct Ready {
    id: String,
    /// Its log's last seq then.
    last: u64,
    /// Its `session.ready` event.
    event: Value,
}

/// Starts a session and polls its log, `pause` apart, until it is ready.
async fn ready_session(http: &reqwest::Client, url: &str, pause: Duration) -> Result<Ready> {
    let task: Value = http
        .post(format!("{url}/api/v1/sessions"))
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = task["id"].as_str().context("no session id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events: Vec<Value> = http
            .get(format!("{url}/api/v1/tasks/{id}/events?follow=false"))
            .send()
            .await?
            .json()
            .await?;
        if let Some(event) = events.iter().find(|e| e["type"] == "session.ready") {
            let last = events.iter().filter_map(|e| e["seq"].as_u64()).max();
            return Ok(Ready {
                id,
                last: last.unwrap_or_default(),
                event: event.clone(),
            });
        }
        ensure!(Instant::now() < deadline, "the session never became ready");
        tokio::time::sleep(pause).await;
    }
}

/// Runs the print loop in a new session with `subscribers` SSE readers of its log: the time
/// from the request until the last reader has read the execution's end.
async fn throughput(url: &str, lines: usize, subscribers: usize) -> Result<f64> {
    use futures_util::StreamExt;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let Ready { id, last, .. } = ready_session(&http, url, Duration::from_millis(20)).await?;
    let mut readers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let response = http
            .get(format!("{url}/api/v1/tasks/{id}/events?after={last}"))
            .send()
            .await?
            .error_for_status()?;
        readers.push(tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            // The end's frame may straddle two chunks: keep the tail of the last one.
            let mut tail: Vec<u8> = Vec::new();
            let needle = b"execution.finished";
            while let Some(chunk) = stream.next().await {
                tail.extend_from_slice(&chunk?);
                if tail.windows(needle.len()).any(|w| w == needle) {
                    return Ok(Instant::now());
                }
                let keep = tail.len().saturating_sub(needle.len());
                tail.drain(..keep);
            }
            anyhow::bail!("the stream ended before the execution did")
        }));
    }
    let begun = Instant::now();
    http.post(format!("{url}/api/v1/sessions/{id}/executions"))
        .json(&json!({"code": format!("for i in range({lines}): print(i)")}))
        .send()
        .await?
        .error_for_status()?;
    let mut last_read = begun;
    for reader in readers {
        last_read = last_read.max(reader.await??);
    }
    http.post(format!("{url}/api/v1/sessions/{id}/close"))
        .send()
        .await?;
    Ok((last_read - begun).as_secs_f64() * 1000.0)
}

/// The server's resident set grown per session, with `count` idle sessions open and ready.
async fn idle_memory(url: &str, pid: u32, count: usize) -> Result<f64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let rss_kib = || -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("no VmRSS")?;
        let kib = line.split_whitespace().nth(1).context("no VmRSS value")?;
        Ok(kib.parse()?)
    };
    ensure!(count >= 1, "--idle must be at least 1");
    let before = rss_kib()?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(
            ready_session(&http, url, Duration::from_millis(20))
                .await?
                .id,
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib()?;
    for id in ids {
        http.post(format!("{url}/api/v1/sessions/{id}/close"))
            .send()
            .await?;
    }
    Ok((after - before) / count as f64)
}

/// Starts a session (its cold start, as the server measured it) and times `runs` executions.
async fn measure(url: &str, runs: usize) -> Result<(f64, Vec<f64>)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let ready = ready_session(&http, url, Duration::from_millis(20)).await?;
    let id = ready.id;
    let start_ms = ready.event["data"]["startup_ms"]
        .as_f64()
        .unwrap_or_default();
    let mut rtt = Vec::with_capacity(runs);
    for i in 0..runs + 10 {
        let begun = Instant::now();
        let queued: Value = http
            .post(format!("{url}/api/v1/sessions/{id}/executions"))
            .json(&json!({"code": "1+1"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let execution = queued["id"].as_str().context("no execution id")?;
        let done: Value = http
            .get(format!(
                "{url}/api/v1/sessions/{id}/executions/{execution}?wait=30"
            ))
            .send()
            .await?
            .json()
            .await?;
        ensure!(done["status"] == "ok", "the execution did not run: {done}");
        if i >= 10 {
            rtt.push(begun.elapsed().as_secs_f64() * 1000.0);
        }
    }
    http.post(format!("{url}/api/v1/sessions/{id}/close"))
        .send()
        .await?;
    Ok((start_ms, rtt))
}

/// Waits until the warm pool has a kernel, then times a new session from its request to its
/// `session.ready` in the log.
async fn warm_start(url: &str) -> Result<f64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let kernels: Vec<Value> = http
            .get(format!("{url}/api/v1/kernels"))
            .send()
            .await?
            .json()
            .await?;
        if kernels.iter().any(|k| k["warm"].as_u64() >= Some(1)) {
            break;
        }
        ensure!(Instant::now() < deadline, "the warm pool never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let begun = Instant::now();
    let ready = ready_session(&http, url, Duration::ZERO).await?;
    ensure!(
        ready.event["data"]["warm"] == true,
        "not from the pool: {}",
        ready.event
    );
    Ok(begun.elapsed().as_secs_f64() * 1000.0)
}
