//! Several nodes on one Redis: what sharing the store costs and buys.
//!
//! It starts release `victor serve` processes on 127.0.0.1 (port 0, fresh data dirs; the Redis
//! ones on a fresh key prefix), measures, prints a table and stops them. BENCHMARKS.md holds the
//! results; `loadgen --store redis://...` measures creations and fan-out against Redis.
//!
//! ```text
//! cargo build --release --bin victor
//! cargo run --release --example nodebench -- --redis redis://127.0.0.1:6379/0
//! ```
//!
//! - latency: a task on node B prints timestamped lines; a subscriber follows the all-tasks
//!   stream on node A. Per line, the time from the task's write to the event at the subscriber
//!   (same machine, same clock), p50 and p99. The same with SQLite and one node, for scale.
//! - takeover: node B runs a task and is killed with SIGKILL; the time until node A has marked
//!   the task `interrupted`, with the lease given (default 15 s).
//! - memory: resident memory of each node at the end.
//!
//! Only loopback traffic; every wait is bounded; the servers are killed when dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use victor::client::{Client, Topic};
use victor::proto::{Command, CreateTask, ExecSpec, TaskSpec, TaskState};

#[path = "../tests/common/launch.rs"]
mod launch;
use launch::{Launch, Launched, server_binary};

#[derive(Debug, Parser)]
struct Cli {
    /// The Redis the nodes share.
    #[arg(
        long,
        env = "VICTOR_BENCH_REDIS",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    redis: String,
    /// The victor binary [default: target/release/victor].
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// Lines the latency task prints (10 a second).
    #[arg(long, default_value_t = 300)]
    lines: u64,
    /// The nodes' lease, in seconds.
    #[arg(long, default_value_t = 15.0)]
    lease_secs: f64,
}

/// Microseconds since the epoch, as the task's shell prints them.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn start(bin: &PathBuf, args: &[String]) -> Result<Launched> {
    Ok(Launch::new(bin).unlimited().args(args).start()?)
}

fn client(node: &Launched) -> Result<Client> {
    Ok(Client::new(&node.url, node.api_key.clone())?)
}

fn shell(script: &str, requires: &[&str]) -> CreateTask {
    CreateTask {
        name: None,
        priority: 0,
        requires: requires.iter().map(|l| l.to_string()).collect(),
        spec: TaskSpec::Exec(ExecSpec::new(Command::Shell(script.to_string()))),
    }
}

/// Per line, microseconds from the task's write (the number it printed) to its arrival at a
/// subscriber of the all-tasks stream on `watcher`.
async fn latencies(
    watcher: &Client,
    runner: &Client,
    lines: u64,
    requires: &[&str],
) -> Result<Vec<u64>> {
    let mut follow = watcher.follow(Topic::All, None);
    follow.start().await?;
    let script =
        format!("i=0; while [ $i -lt {lines} ]; do date +%s%6N; i=$((i+1)); sleep 0.1; done");
    let task = runner.create_task(&shell(&script, requires), None).await?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(lines / 10 + 60);
    while (out.len() as u64) < lines {
        if Instant::now() > deadline {
            bail!("only {} of {lines} lines arrived", out.len());
        }
        let Some(event) = tokio::time::timeout(Duration::from_secs(30), follow.next()).await?
        else {
            bail!("the stream ended");
        };
        let event = event?;
        let arrived = now_us();
        if event.task_id != task.id {
            continue;
        }
        if let Some(output) = event.output() {
            for line in output.text.lines() {
                if let Ok(written) = line.trim().parse::<u64>() {
                    out.push(arrived.saturating_sub(written));
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let bin = server_binary(cli.server.as_deref())?;
    let store = format!(
        "{}?prefix=nodebench-{}",
        cli.redis,
        uuid::Uuid::now_v7().simple()
    );
    let lease = cli.lease_secs.to_string();
    let node_args = |label: &str| -> Vec<String> {
        ["--store", &store, "--label", label, "--lease-secs", &lease]
            .map(String::from)
            .to_vec()
    };

    let single = start(&bin, &[])?;
    let sqlite = latencies(&client(&single)?, &client(&single)?, cli.lines, &[])
        .await
        .context("SQLite latency")?;
    let single_rss = rss_mib(single.pid());
    drop(single);

    let a = start(&bin, &node_args("a"))?;
    let mut b = start(&bin, &node_args("b"))?;
    let ca = client(&a)?;
    let redis = latencies(&ca, &ca, cli.lines, &["b"])
        .await
        .context("Redis latency")?;
    let rss = (rss_mib(a.pid()), rss_mib(b.pid()));

    let task = ca.create_task(&shell("sleep 600", &["b"]), None).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ca.get_task(&task.id).await?.state != TaskState::Running {
        if Instant::now() > deadline {
            bail!("the takeover task never started on b");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Instant::now();
    b.kill9();
    let limit = Duration::from_secs_f64(cli.lease_secs * 2.0 + 30.0);
    loop {
        if ca.get_task(&task.id).await?.state == TaskState::Interrupted {
            break;
        }
        if killed.elapsed() > limit {
            bail!("no node took over within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let takeover = killed.elapsed();
    // The killed node's task is still a process on this machine: end it.
    let events = ca.events(&task.id, 0, 100).await?;
    if let Some(pid) = events.iter().find_map(|e| e.state()?.pid) {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }

    println!("| measure | SQLite, one node | Redis, task on B, subscriber on A |");
    println!("| --- | --- | --- |");
    println!(
        "| event latency p50 / p99 ({} lines) | {:.2} / {:.2} ms | {:.2} / {:.2} ms |",
        cli.lines,
        percentile(&sqlite, 0.5),
        percentile(&sqlite, 0.99),
        percentile(&redis, 0.5),
        percentile(&redis, 0.99)
    );
    println!(
        "| takeover of a killed node's task (lease {} s) | - | {:.1} s |",
        cli.lease_secs,
        takeover.as_secs_f64()
    );
    println!(
        "| node memory (RSS) | {single_rss:.1} MiB | A {:.1} MiB, B {:.1} MiB |",
        rss.0, rss.1
    );
    Ok(())
}
