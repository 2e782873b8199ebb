//! MCP benchmark: what victor's `/mcp` adds over its native API for the same work, in one run
//! against one release `victor serve`.
//!
//! - **Round trip**: start a no-op task (`true`) and wait for it to finish. Native: `POST
//!   /api/v1/tasks`, then its event stream (`GET /api/v1/tasks/{id}/events`) read until it
//!   ends after the final event. MCP: one `tools/call` of `start_task` with `wait: true` in a
//!   session, its SSE stream read until the answer.
//! - **Log streaming**: the same with a task that prints `--lines` lines at once, read whole:
//!   native event frames, or MCP progress notifications (one per log event) and the answer.
//!
//! Each sample is from the request sent to the last byte read, over one HTTP/1.1 connection
//! reused (as an MCP client's is), the two ways taking turns.
//!
//! ```text
//! cargo build --release --bin victor --example mcpbench
//! cargo run --release --example mcpbench -- --samples 300 --lines 2000
//! ```
//!
//! Only loopback traffic; every call has a deadline; the server is killed when this ends.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sse_stream::SseByteStream;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/common/launch.rs"]
mod launch;

use cpu::MachineCpu;
use launch::{Launch, server_binary};

/// The longest one sample may take before the run counts as failed.
const CALL_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(about = "What MCP adds over victor's native API: task round trip and log streaming")]
struct Args {
    /// Samples per way and scenario (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Lines the log-streaming task prints.
    #[arg(long, default_value_t = 2000)]
    lines: usize,
    /// The victor binary (default: the one this build produced).
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Native,
    Mcp,
}

struct Bench {
    http: reqwest::Client,
    url: String,
    session: String,
    next_id: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.samples >= 10, "--samples must be at least 10");
    let binary = server_binary(args.server.as_deref())?;
    let server = Launch::new(&binary).unlimited().start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "mcpbench: {} samples per row, log of {} lines; victor {}",
        args.samples,
        args.lines,
        binary.display()
    );
    println!();
    println!("| scenario | way | p50 ms | p99 ms | max ms | machine busy |");
    println!("|---|---|---|---|---|---|");
    runtime.block_on(async {
        let mut bench = Bench::open(&server.url).await?;
        let log_command = format!("seq 1 {}", args.lines);
        let scenarios = [
            ("round trip (no-op task)", "true".to_string(), 1),
            ("log streaming", log_command, args.lines),
        ];
        let mut added = Vec::new();
        for (name, command, lines) in scenarios {
            let mut p50 = [0.0; 2];
            for (i, way) in [Way::Native, Way::Mcp].into_iter().enumerate() {
                for _ in 0..args.samples / 10 {
                    bench.sample(way, &command, lines).await?;
                }
                let before = MachineCpu::now();
                let mut samples = Vec::with_capacity(args.samples);
                for _ in 0..args.samples {
                    samples.push(bench.sample(way, &command, lines).await?);
                }
                let busy = before.busy_pct_since();
                p50[i] = percentile(&samples, 0.5);
                println!(
                    "| {name} | {} | {:.3} | {:.3} | {:.3} | {busy:.0}% |",
                    match way {
                        Way::Native => "native (REST + SSE)",
                        Way::Mcp => "MCP (/mcp)",
                    },
                    p50[i],
                    percentile(&samples, 0.99),
                    percentile(&samples, 1.0),
                );
            }
            added.push((name, p50[1] - p50[0]));
        }
        println!();
        for (name, added) in added {
            println!("MCP adds {added:.3} ms at p50 to {name}");
        }
        Ok::<_, anyhow::Error>(())
    })
}

impl Bench {
    async fn open(url: &str) -> Result<Bench> {
        let http = reqwest::Client::builder()
            .http1_only()
            .timeout(CALL_LIMIT)
            .build()?;
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "mcpbench", "version": "0"}}});
        let response = http
            .post(format!("{url}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "initialize: {}",
            response.status()
        );
        let session = response
            .headers()
            .get("mcp-session-id")
            .context("no Mcp-Session-Id")?
            .to_str()?
            .to_string();
        let bench = Bench {
            http,
            url: url.to_string(),
            session,
            next_id: 1,
        };
        bench
            .mcp_post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await?
            .error_for_status()?;
        Ok(bench)
    }

    fn mcp_post(&self, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/mcp", self.url))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
    }

    /// One call from request to last byte; checks that every line arrived.
    async fn sample(&mut self, way: Way, command: &str, lines: usize) -> Result<Duration> {
        let started = Instant::now();
        let seen = match way {
            Way::Native => self.native(command).await?,
            Way::Mcp => self.mcp(command).await?,
        };
        let took = started.elapsed();
        let counted = seen.matches('\n').count();
        if lines > 1 && counted != lines {
            bail!("{way:?}: {counted} lines arrived, not {lines}");
        }
        Ok(took)
    }

    /// The native way; the output it streamed.
    async fn native(&self, command: &str) -> Result<String> {
        let body = json!({"spec": {"kind": "exec", "command": command}});
        let created: Value = self
            .http
            .post(format!("{}/api/v1/tasks", self.url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["id"].as_str().context("no task id")?;
        let response = self
            .http
            .get(format!("{}/api/v1/tasks/{id}/events", self.url))
            .send()
            .await?
            .error_for_status()?;
        let mut events = SseByteStream::new(response.bytes_stream());
        let mut output = String::new();
        let mut state = String::new();
        while let Some(event) = events.next().await {
            let event = event?;
            let Some(data) = event.data else { continue };
            let event: Value = serde_json::from_str(&data)?;
            match event["type"].as_str() {
                Some("output") => output.push_str(event["data"]["text"].as_str().unwrap_or("")),
                Some("state") => state = event["data"]["state"].as_str().unwrap_or("").into(),
                _ => {}
            }
        }
        ensure!(state == "succeeded", "native: the task ended {state}");
        Ok(output)
    }

    /// The MCP way; the output its progress notifications carried.
    async fn mcp(&mut self, command: &str) -> Result<String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "start_task", "arguments": {"command": command, "wait": true},
            "_meta": {"progressToken": id}}});
        let response = self.mcp_post(body).send().await?.error_for_status()?;
        let mut events = SseByteStream::new(response.bytes_stream());
        let mut output = String::new();
        while let Some(event) = events.next().await {
            let event = event?;
            let Some(data) = event.data.filter(|d| !d.is_empty()) else {
                continue;
            };
            let message: Value = serde_json::from_str(&data)?;
            if message["method"] == "notifications/progress" {
                let line = message["params"]["message"].as_str().unwrap_or("");
                if !line.starts_with('[') {
                    output.push_str(line);
                    output.push('\n');
                }
                continue;
            }
            let state = &message["result"]["structuredContent"]["task"]["state"];
            ensure!(state == "succeeded", "mcp: {message}");
            return Ok(output);
        }
        bail!("mcp: the stream ended without an answer")
    }
}

/// The `q` quantile in milliseconds.
fn percentile(samples: &[Duration], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}
