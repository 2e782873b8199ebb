//! Load generator for the victor server.
//!
//! It starts the release `victor` binary itself (127.0.0.1, port 0, a fresh temporary data
//! directory, a fresh process per measurement so that peak memory belongs to that measurement
//! alone), drives it with real clients over loopback, prints the figures and stops the server.
//! BENCHMARKS.md holds the results and how to read them.
//!
//! ```text
//! cargo build --release --bin victor
//! cargo run --release --example loadgen -- all
//! cargo run --release --example loadgen -- throughput --transport ws --subscribers 1000 --lines 10000
//! cargo run --release --example loadgen -- latency --json
//! ```
//!
//! Scenarios:
//! - `throughput`: a task prints N lines as fast as it can while K subscribers follow it live;
//!   lines delivered per second summed over all subscribers, each checked to get exactly N.
//! - `latency`: a task prints R timestamped lines a second; per line and subscriber, the time
//!   from the write in the task to the frame arriving at the subscriber.
//! - `create`: durable task creations per second (HTTP 201 = committed to SQLite).
//! - `memory`: resident memory of an idle server, and per idle subscriber.
//!
//! Safety rails: only loopback traffic, every loop bounded in count and time, an overall
//! timeout, and the server is killed when this program drops it (even on an error).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use victor::proto::{Status, Task, TaskState};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/common/launch.rs"]
mod launch;
use cpu::{MachineCpu, cpu_secs, cpu_times};
use launch::{Launch, Launched, server_binary};

/// Subscribers connecting at the same time: enough to open 1,000 in about a second, few enough
/// not to overflow the server's accept backlog.
const CONNECT_CONCURRENCY: usize = 64;
/// Errors kept per subscriber and per run; the rest are only counted.
const MAX_ERRORS: usize = 5;
/// How long the server gets to stop after SIGTERM.
const SERVER_STOP_LIMIT: Duration = Duration::from_secs(15);

/// Below this share of busy cores the machine counts as quiet enough to measure.
const QUIET_BUSY_PCT: f64 = 15.0;

const MIB: f64 = 1024.0 * 1024.0;
/// The targets of the issue; "MB" and "KB" read as MiB and KiB.
const TARGET_LINES_PER_SEC: f64 = 1_000_000.0;
const TARGET_P99_MS: f64 = 20.0;
const TARGET_CREATES_PER_SEC: f64 = 1_000.0;
const TARGET_IDLE_RSS_BYTES: f64 = 20.0 * MIB;
const TARGET_BYTES_PER_SUBSCRIBER: f64 = 64.0 * 1024.0;

#[derive(Debug, Parser)]
#[command(about = "Load generator for the victor server (loopback only)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// The victor binary to start [default: `victor` next to this example's directory, else
    /// target/release/victor].
    #[arg(long, env = "VICTOR_BIN", global = true, value_name = "PATH")]
    server: Option<PathBuf>,
    /// Stream transports to measure.
    #[arg(long, value_enum, default_value_t = Transports::Both, global = true)]
    transport: Transports,
    /// Run every measurement this many times, each on a fresh server.
    #[arg(long, default_value_t = 1, global = true,
          value_parser = clap::value_parser!(u64).range(1..=10))]
    repeat: u64,
    /// Print one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Also write the JSON document to this file (the tables still go to stdout).
    #[arg(long, global = true, value_name = "PATH")]
    save: Option<PathBuf>,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 3600, global = true,
          value_parser = clap::value_parser!(u64).range(10..=7200))]
    timeout_secs: u64,
    /// Before each measurement, wait up to this many seconds for the machine to be nearly
    /// idle (0: do not wait). Other work on the same cores skews every figure.
    #[arg(long, default_value_t = 60, global = true,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    wait_idle_secs: u64,
    /// Worker threads of this program's own runtime [default: one per core]. The server
    /// always runs with its defaults.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=64))]
    client_threads: Option<u64>,
    /// Pin the server to CPU 0 and this program to CPU 1 (with `taskset`), so that neither
    /// takes the other's core: shows what the server does with one core of its own.
    #[arg(long, global = true)]
    pin: bool,
    /// Measure again, up to this many attempts in all, when other processes used more than
    /// 10% of the cores during a measurement; the least disturbed attempt is reported.
    #[arg(long, default_value_t = 3, global = true,
          value_parser = clap::value_parser!(u64).range(1..=10))]
    attempts: u64,
    /// The servers' store (`redis://127.0.0.1:6379/0`) [default: SQLite in each server's
    /// fresh data dir]. A Redis store gets a fresh key prefix per server.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Lines per second fanned out to live subscribers [default matrix: K=1 and K=100 with
    /// N=100000, K=1000 with N=10000].
    Throughput {
        /// K: subscribers. Any of --subscribers, --lines and --printer runs one case (the others
        /// default to K=1000, N=10000, seq) instead of the matrix.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        subscribers: Option<u64>,
        /// N: lines the task prints.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        lines: Option<u64>,
        /// How the task prints.
        #[arg(long, value_enum)]
        printer: Option<Printer>,
    },
    /// Delivery latency while a task prints timestamped lines at a steady rate.
    Latency {
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        subscribers: u64,
        /// Lines per second.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        rate: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
        secs: u64,
    },
    /// Durable task creations per second.
    Create {
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        tasks: u64,
        /// HTTP requests in flight at once.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
        concurrency: u64,
        /// The server's --max-concurrent: the created `true` tasks run meanwhile and compete
        /// for the same cores.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
        max_concurrent: u64,
    },
    /// Resident memory of an idle server and per idle subscriber.
    Memory {
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        subscribers: u64,
    },
    /// Every scenario with its defaults.
    All,
    /// A task's command (for `latency` and `--printer flush`): waits for a line on stdin, then
    /// prints COUNT lines `tick INDEX UNIX_NANOS`, RATE a second (0: as fast as it can), each
    /// with its own write.
    #[command(hide = true)]
    EmitStamps {
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=10_000))]
        rate: u64,
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        count: u64,
    },
}

/// How a throughput task prints its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Printer {
    /// `seq 1 N`: block-buffered, so the server reads full pipe chunks of many lines.
    Seq,
    /// One write per line as fast as it can (an unbuffered printer). The server reads what
    /// the pipe holds, so lines still share events; how many depends on how fast it drains.
    Flush,
}

impl Printer {
    fn name(self) -> &'static str {
        match self {
            Printer::Seq => "seq",
            Printer::Flush => "flush",
        }
    }
}

/// The default throughput matrix: the issue's three cases with `seq`, and the 1,000-subscriber
/// case again with a line-by-line printer.
const THROUGHPUT_MATRIX: [(u64, u64, Printer); 4] = [
    (1, 100_000, Printer::Seq),
    (100, 100_000, Printer::Seq),
    (1000, 10_000, Printer::Seq),
    (1000, 10_000, Printer::Flush),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transports {
    Ws,
    Sse,
    Both,
}

impl Transports {
    fn list(self) -> Vec<Transport> {
        match self {
            Transports::Ws => vec![Transport::Ws],
            Transports::Sse => vec![Transport::Sse],
            Transports::Both => vec![Transport::Ws, Transport::Sse],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Transport {
    Ws,
    Sse,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Scenario::EmitStamps { rate, count } = cli.scenario {
        // Runs inside a task on the server: no runtime, no network, just stdout.
        return emit_stamps(rate, count);
    }
    if cli.pin {
        // Before the runtime exists, so that every thread it starts inherits the CPU.
        pin_self()?;
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.client_threads {
        runtime.worker_threads(threads as usize);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let limit = Duration::from_secs(cli.timeout_secs);
        // Ending `run` early drops the running server, which kills it: a signal must not
        // leave a server behind.
        tokio::select! {
            result = timeout(limit, run(&cli)) => match result {
                Ok(result) => result,
                Err(_) => bail!(
                    "gave up after {}s (--timeout-secs); the server was stopped",
                    cli.timeout_secs
                ),
            },
            signal = interrupted() => bail!("{signal}; the server was stopped"),
        }
    })
}

/// Completes on Ctrl-C or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = terminate.recv() => "terminated",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

/// Where `--pin` puts the server and this program.
const SERVER_CPU: &str = "0";
const CLIENT_CPU: &str = "1";

/// Moves this (still single-threaded) process to [`CLIENT_CPU`].
fn pin_self() -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            CLIENT_CPU,
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .context("--pin needs `taskset` (util-linux)")?;
    ensure!(
        status.success(),
        "taskset could not pin this process: {status}"
    );
    Ok(())
}

/// Prints `tick INDEX UNIX_NANOS` lines on an absolute schedule (or back to back with rate 0),
/// flushing each, so that a subscriber can compute the delivery latency of every line. Waits
/// for one line on stdin first: the load generator sends it once every subscriber is in.
fn emit_stamps(rate: u64, count: u64) -> Result<()> {
    let mut go = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut go)
        .context("waiting for the start line on stdin")?;
    let mut out = std::io::stdout().lock();
    let start = std::time::Instant::now();
    let interval = match rate {
        0 => 0.0,
        rate => Duration::from_secs(1).as_nanos() as f64 / rate as f64,
    };
    for index in 0..count {
        let due = start + Duration::from_nanos((index as f64 * interval) as u64);
        let now = std::time::Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        writeln!(out, "tick {index} {}", unix_nanos())?;
        out.flush()?;
    }
    Ok(())
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// What every measurement needs: the binaries and how to run them.
struct Ctx {
    bin: PathBuf,
    loadgen: PathBuf,
    wait_idle: Duration,
    pin: bool,
    attempts: u64,
    store: Option<String>,
}

impl Ctx {
    /// Progress goes to stderr, so that stdout holds only the report (or its JSON).
    fn note(&self, message: impl AsRef<str>) {
        eprintln!("loadgen: {}", message.as_ref());
    }

    /// Announces a measurement and waits for a quiet machine first; a note for the report
    /// says when the wait ran out.
    async fn begin(&self, label: String, notes: &mut Vec<String>) {
        if let Some(busy) = wait_for_quiet(self, self.wait_idle).await {
            self.note(format!("{busy}; measuring anyway"));
            notes.push(format!("{label}: {busy}"));
        }
        self.note(label);
    }
}

async fn run(cli: &Cli) -> Result<()> {
    let loadgen = std::env::current_exe().context("cannot find this program's own path")?;
    let bin = server_binary(cli.server.as_deref())?;
    let ctx = Ctx {
        bin,
        loadgen,
        wait_idle: Duration::from_secs(cli.wait_idle_secs),
        pin: cli.pin,
        attempts: cli.attempts,
        store: cli.store.clone(),
    };
    let transports = cli.transport.list();
    let mut report = Report {
        machine: Machine::probe(),
        server_binary: ctx.bin.display().to_string(),
        pinned: cli.pin,
        client_threads: cli.client_threads,
        ..Report::default()
    };
    ctx.note(format!("server binary: {}", report.server_binary));

    let (throughput, latency, create, memory) = match cli.scenario.clone() {
        Scenario::Throughput {
            subscribers,
            lines,
            printer,
        } => {
            let cases = match (subscribers, lines, printer) {
                (None, None, None) => THROUGHPUT_MATRIX.to_vec(),
                (k, n, p) => vec![(
                    k.unwrap_or(1000),
                    n.unwrap_or(10_000),
                    p.unwrap_or(Printer::Seq),
                )],
            };
            (Some(cases), None, None, None)
        }
        Scenario::Latency {
            subscribers,
            rate,
            secs,
        } => (None, Some((subscribers, rate, secs)), None, None),
        Scenario::Create {
            tasks,
            concurrency,
            max_concurrent,
        } => (None, None, Some((tasks, concurrency, max_concurrent)), None),
        Scenario::Memory { subscribers } => (None, None, None, Some(subscribers)),
        Scenario::All => (
            Some(THROUGHPUT_MATRIX.to_vec()),
            Some((1000, 100, 10)),
            Some((5000, 32, 4)),
            Some(1000),
        ),
        Scenario::EmitStamps { .. } => bail!("emit-stamps is a task's command, not a scenario"),
    };

    let most_subscribers = [
        throughput
            .as_ref()
            .and_then(|cases| cases.iter().map(|c| c.0).max()),
        latency.map(|l| l.0),
        memory,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    check_open_files(most_subscribers, &ctx);

    for round in 1..=cli.repeat {
        if let Some(cases) = &throughput {
            for &(subscribers, lines, printer) in cases {
                for &transport in &transports {
                    let label = format!(
                        "[run {round}] throughput {} K={subscribers} N={lines} printer={}",
                        transport.name(),
                        printer.name()
                    );
                    let run = measure(
                        &ctx,
                        label,
                        &mut report.notes,
                        |r: &FanOutRun| r.other_pct.unwrap_or(0.0),
                        || throughput_run(&ctx, transport, subscribers, lines, printer),
                    )
                    .await?;
                    report.throughput.push(run);
                }
            }
        }
        if let Some((subscribers, rate, secs)) = latency {
            for &transport in &transports {
                let label = format!(
                    "[run {round}] latency {} K={subscribers} rate={rate}/s for {secs}s",
                    transport.name()
                );
                let run = measure(
                    &ctx,
                    label,
                    &mut report.notes,
                    |r: &FanOutRun| r.other_pct.unwrap_or(0.0),
                    || latency_run(&ctx, transport, subscribers, rate, secs),
                )
                .await?;
                report.latency.push(run);
            }
        }
        if let Some((tasks, concurrency, max_concurrent)) = create {
            let label = format!(
                "[run {round}] create M={tasks} clients={concurrency} --max-concurrent {max_concurrent}"
            );
            let run = measure(
                &ctx,
                label,
                &mut report.notes,
                |r: &CreateRun| r.other_pct.unwrap_or(0.0),
                || create_run(&ctx, tasks, concurrency, max_concurrent),
            )
            .await?;
            report.create.push(run);
        }
        if let Some(subscribers) = memory {
            for &transport in &transports {
                let label = format!("[run {round}] memory {} S={subscribers}", transport.name());
                // Memory does not depend on who else uses the CPU: one attempt.
                let run = measure(
                    &ctx,
                    label,
                    &mut report.notes,
                    |_: &MemoryRun| 0.0,
                    || memory_run(&ctx, transport, subscribers),
                )
                .await?;
                report.memory.push(run);
            }
        }
    }
    report.targets = judge(&report);

    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &cli.save {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if cli.json {
        println!("{json}");
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Other processes' CPU use beyond this share of all cores makes a run's figures suspect.
const CONTENTION_PCT: f64 = 10.0;

/// Runs a measurement, and again (up to `--attempts` in all) while other processes took more
/// than [`CONTENTION_PCT`] of the cores during it; keeps the least disturbed attempt.
async fn measure<T, F, Fut>(
    ctx: &Ctx,
    label: String,
    notes: &mut Vec<String>,
    contention: fn(&T) -> f64,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut best: Option<T> = None;
    for round in 1..=ctx.attempts {
        ctx.begin(label.clone(), notes).await;
        let run = attempt().await?;
        let other = contention(&run);
        if best.as_ref().is_none_or(|best| other < contention(best)) {
            best = Some(run);
        }
        if other <= CONTENTION_PCT {
            break;
        }
        if round < ctx.attempts {
            ctx.note(format!(
                "other processes used {other:.0}% of the cores meanwhile; measuring again"
            ));
        }
    }
    let best = best.context("no attempt was made (--attempts must be at least 1)")?;
    let other = contention(&best);
    if other > CONTENTION_PCT {
        notes.push(format!(
            "{label}: other processes used {other:.0}% of the cores even in the best of {} \
             attempts; its figures are worse than the server's own",
            ctx.attempts
        ));
    }
    Ok(best)
}

/// Every subscriber is a socket here and one in the server (which inherits our limit).
fn check_open_files(subscribers: u64, ctx: &Ctx) {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<u64>().ok())
        });
    if let Some(limit) = limit
        && limit < subscribers + 256
    {
        ctx.note(format!(
            "warning: the open-file limit is {limit}, below the {} this run needs; raise it \
             with `ulimit -n`",
            subscribers + 256
        ));
    }
}

// ----------------------------------------------------------------------------------------------
// The server process

/// A victor server this program started, with a client of its API; killed if dropped without
/// [`Server::stop`].
struct Server {
    launched: Launched,
    pid: u32,
    api: Api,
}

impl Server {
    async fn start(ctx: &Ctx, extra: &[String]) -> Result<Server> {
        let mut launch = Launch::new(&ctx.bin).unlimited().args(extra);
        if let Some(store) = &ctx.store {
            let fresh = match store.strip_prefix("redis://") {
                Some(_) => format!("{store}?prefix=bench-{}", uuid::Uuid::now_v7().simple()),
                None => store.clone(),
            };
            launch = launch.args(["--store".to_string(), fresh]);
        }
        // With --pin, taskset sets the CPU and then execs the server: the pid stays the same.
        if ctx.pin {
            launch = launch.through(["taskset", "-c", SERVER_CPU]);
        }
        let launched = tokio::task::spawn_blocking(move || launch.start()).await??;
        ensure!(
            launched.url.starts_with("http://127.0.0.1:"),
            "the server listens on {}, not on loopback",
            launched.url
        );
        Ok(Server {
            pid: launched.pid(),
            api: Api::new(&launched.url)?,
            launched,
        })
    }

    fn memory(&self) -> Result<Memory> {
        Memory::of(self.pid)
    }

    fn cpu_secs(&self) -> f64 {
        cpu_secs(&self.pid.to_string()).unwrap_or_default()
    }

    /// CPU seconds of the server's finished task processes.
    fn tasks_cpu_secs(&self) -> f64 {
        cpu_times(&self.pid.to_string()).map_or(0.0, |(_, children)| children)
    }

    /// SIGTERM, then SIGKILL after [`SERVER_STOP_LIMIT`]; returns the log's warning and error
    /// lines.
    async fn stop(self) -> Result<Vec<String>> {
        let mut launched = self.launched;
        let (exited, log) = tokio::task::spawn_blocking(move || {
            let exited = launched.terminate(SERVER_STOP_LIMIT);
            // The log reader has the last lines in a moment.
            std::thread::sleep(Duration::from_millis(100));
            (exited, launched.log())
        })
        .await?;
        let mut notes = Vec::new();
        if log.warnings + log.errors > 0 {
            notes.push(format!(
                "server logged {} warnings and {} errors",
                log.warnings, log.errors
            ));
            notes.extend(log.notable);
        }
        match exited {
            Some(status) if status.success() => {}
            Some(status) => notes.push(format!("server exited with {status}")),
            None => notes.push(format!(
                "server did not stop within {}s of SIGTERM and was killed",
                SERVER_STOP_LIMIT.as_secs()
            )),
        }
        Ok(notes)
    }
}

/// Resident memory of a process, from /proc/PID/status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Memory {
    /// VmRSS: resident now.
    rss_kib: u64,
    /// VmHWM: the most ever resident (the process is fresh per measurement).
    hwm_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }
}

/// Waits (at most `limit`) until the machine is nearly idle, so that a measurement does not
/// share the cores with someone else's compiler. Returns a note when it gave up waiting.
async fn wait_for_quiet(ctx: &Ctx, limit: Duration) -> Option<String> {
    if limit.is_zero() {
        return None;
    }
    let deadline = Instant::now() + limit;
    let mut told = false;
    loop {
        let before = MachineCpu::now();
        sleep(Duration::from_millis(500)).await;
        let pct = before.busy_pct_since();
        if pct < QUIET_BUSY_PCT {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(format!(
                "the machine was still {pct:.0}% busy with other work after waiting {}s",
                limit.as_secs()
            ));
        }
        if !told {
            ctx.note(format!(
                "machine {pct:.0}% busy with other work; waiting up to {}s for it to calm down",
                limit.as_secs()
            ));
            told = true;
        }
    }
}

/// Samples a process's VmRSS until stopped, keeping the largest.
struct RssSampler {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            let mut peak = 0;
            // Bounded by the token and by the process: once it is gone, reading fails.
            while !token.is_cancelled() {
                match Memory::of(pid) {
                    Ok(memory) => peak = peak.max(memory.rss_kib),
                    Err(_) => break,
                }
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = sleep(Duration::from_millis(20)) => {}
                }
            }
            peak
        });
        RssSampler { stop, handle }
    }

    async fn peak_kib(self) -> u64 {
        self.stop.cancel();
        self.handle.await.unwrap_or_default()
    }
}

// ----------------------------------------------------------------------------------------------
// HTTP API

/// The few REST calls the scenarios make. Request bodies are written as JSON (so that new
/// optional fields in `victor::proto` do not break this example); answers are read into the
/// crate's own types. Proxies are off: every request goes straight to 127.0.0.1.
#[derive(Clone)]
struct Api {
    base: String,
    rest: reqwest::Client,
    /// Without an overall timeout, for streams that stay open.
    streams: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Result<Api> {
        let rest = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        let streams = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            rest,
            streams,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T> {
        let response = request
            .send()
            .await
            .with_context(|| format!("{what}: request failed"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        ensure!(
            status.is_success(),
            "{what}: the server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).with_context(|| format!("{what}: unexpected answer"))
    }

    async fn create_task(&self, body: &serde_json::Value) -> Result<Task> {
        let request = self
            .rest
            .post(format!("{}/api/v1/tasks", self.base))
            .json(body);
        self.call(request, "creating a task").await
    }

    async fn get_task(&self, id: &str) -> Result<Task> {
        let request = self.rest.get(format!("{}/api/v1/tasks/{id}", self.base));
        self.call(request, "reading a task").await
    }

    /// Writes to the task's stdin; the tasks here start working on their first line.
    async fn input(&self, id: &str, text: &str) -> Result<Task> {
        let request = self
            .rest
            .post(format!("{}/api/v1/tasks/{id}/input", self.base))
            .json(&json!({ "text": text, "eof": true }));
        self.call(request, "writing to a task's stdin").await
    }

    async fn cancel(&self, id: &str) -> Result<Task> {
        let request = self
            .rest
            .post(format!("{}/api/v1/tasks/{id}/cancel", self.base));
        self.call(request, "cancelling a task").await
    }

    async fn status(&self) -> Result<Status> {
        let request = self.rest.get(format!("{}/api/v1/status", self.base));
        self.call(request, "reading the server status").await
    }

    /// Polls until the task runs (its process has started), within `limit`.
    async fn wait_running(&self, id: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let task = self.get_task(id).await?;
            match task.state {
                TaskState::Running => return Ok(()),
                state if state.is_final() => bail!("task {id} ended ({state}) before it was used"),
                _ => {}
            }
            ensure!(
                Instant::now() < deadline,
                "task {id} did not start within {}s",
                limit.as_secs()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
}

fn exec_task(command: serde_json::Value, timeout_secs: u64) -> serde_json::Value {
    json!({
        "name": "loadgen",
        "spec": { "kind": "exec", "command": command, "timeout_secs": timeout_secs },
    })
}

// ----------------------------------------------------------------------------------------------
// Subscribers

type SseFrames = Pin<Box<dyn Stream<Item = Result<sse_stream::Sse, sse_stream::Error>> + Send>>;

/// One subscriber's open stream of one task's events.
enum Conn {
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    Sse(SseFrames),
}

/// One frame's JSON text, borrowed from the transport's own buffer where possible.
enum Payload {
    Ws(tokio_tungstenite::tungstenite::Utf8Bytes),
    Sse(String),
}

impl Payload {
    fn as_str(&self) -> &str {
        match self {
            Payload::Ws(text) => text.as_str(),
            Payload::Sse(text) => text,
        }
    }
}

/// The envelope fields a subscriber needs; the rest of the event is skipped, not parsed.
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: EnvelopeData,
}

#[derive(Deserialize, Default)]
struct EnvelopeData {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    state: Option<TaskState>,
}

/// tungstenite zero-fills up to `read_buffer_size` bytes (128 KiB by default) before every
/// socket read; with 1,000 sockets that memset alone took a third of this program's CPU, so
/// the client reads in small steps (larger frames still get their full length reserved).
/// Writes go out at once: a subscriber sends one message.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

impl Conn {
    /// Connects and subscribes to `task_id` from its first event. Returns once the server has
    /// registered the subscription: the WebSocket's `reply`, or the SSE response headers (the
    /// server subscribes before it answers).
    async fn open(api: &Api, transport: Transport, task_id: &str) -> Result<Conn> {
        match transport {
            Transport::Ws => {
                let url = format!("{}/api/v1/ws", api.base.replacen("http://", "ws://", 1));
                let (mut socket, _) = tokio_tungstenite::connect_async_with_config(
                    url.as_str(),
                    Some(ws_config()),
                    true,
                )
                .await
                .with_context(|| format!("cannot open the WebSocket {url}"))?;
                let subscribe = json!({ "type": "subscribe", "task_id": task_id, "after": 0 });
                socket
                    .send(Message::text(subscribe.to_string()))
                    .await
                    .context("cannot send subscribe")?;
                loop {
                    let message = socket
                        .next()
                        .await
                        .context("the WebSocket closed before the subscribe reply")?
                        .context("WebSocket error before the subscribe reply")?;
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let value: serde_json::Value = serde_json::from_str(text.as_str())
                        .context("a WebSocket frame is not JSON")?;
                    if value["type"] == "reply" {
                        ensure!(value["ok"] == true, "subscribe refused: {value}");
                        return Ok(Conn::Ws(Box::new(socket)));
                    }
                    ensure!(
                        value["seq"] == 0,
                        "an event arrived before the subscribe reply: {value}"
                    );
                }
            }
            Transport::Sse => {
                let response = api
                    .streams
                    .get(format!("{}/api/v1/tasks/{task_id}/events", api.base))
                    .query(&[("after", "0")])
                    .header("accept", "text/event-stream")
                    .send()
                    .await
                    .context("cannot open the SSE stream")?;
                ensure!(
                    response.status().is_success(),
                    "the SSE stream was refused: {}",
                    response.status()
                );
                Ok(Conn::Sse(Box::pin(sse_stream::SseByteStream::new(
                    response.bytes_stream(),
                ))))
            }
        }
    }

    /// The next frame's JSON, or `None` when the server ended the stream.
    async fn next(&mut self) -> Result<Option<Payload>> {
        match self {
            Conn::Ws(socket) => loop {
                match socket.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Ok(Message::Text(text))) => return Ok(Some(Payload::Ws(text))),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e).context("WebSocket error"),
                }
            },
            Conn::Sse(frames) => loop {
                match frames.next().await {
                    None => return Ok(None),
                    Some(Ok(frame)) => {
                        if frame.event.as_deref() == Some("error") {
                            bail!(
                                "the server ended the stream with an error: {:?}",
                                frame.data
                            );
                        }
                        if let Some(data) = frame.data {
                            return Ok(Some(Payload::Sse(data)));
                        }
                    }
                    Some(Err(e)) => return Err(e).context("SSE error"),
                }
            },
        }
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Tally {
    lines: u64,
    events: u64,
    finished: Option<Instant>,
    final_state: Option<TaskState>,
    /// Per stamped line: arrival minus write time, in microseconds.
    latencies_us: Vec<u32>,
    stamp_errors: u64,
    errors: Vec<String>,
}

impl Tally {
    fn failed(error: String) -> Tally {
        Tally {
            errors: vec![error],
            ..Tally::default()
        }
    }

    fn error(&mut self, error: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(error);
        }
    }
}

/// Reads a task's events until its final state, `stop`, or `deadline`. Checks that seqs come
/// one by one from 1 (no gap, no duplicate) and counts stdout lines; with `stamps`, also the
/// latency of every `tick INDEX NANOS` line.
async fn consume(
    mut conn: Conn,
    stamps: bool,
    deadline: Instant,
    stop: CancellationToken,
) -> Tally {
    let mut tally = Tally::default();
    let mut last_seq = 0;
    // A line cut across two events (the server never should) is joined before parsing.
    let mut partial = String::new();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return tally,
            next = timeout_at(deadline, conn.next()) => next,
        };
        let payload = match next {
            Ok(Ok(Some(payload))) => payload,
            Ok(Ok(None)) => {
                tally.error(format!(
                    "stream ended after seq {last_seq} without a final state"
                ));
                return tally;
            }
            Ok(Err(e)) => {
                tally.error(format!("{e:#}"));
                return tally;
            }
            Err(_) => {
                tally.error(format!("timed out after seq {last_seq}"));
                return tally;
            }
        };
        let arrived = unix_nanos();
        let envelope: Envelope = match serde_json::from_str(payload.as_str()) {
            Ok(envelope) => envelope,
            Err(e) => {
                tally.error(format!("unreadable event: {e}"));
                continue;
            }
        };
        if envelope.seq == 0 {
            if envelope.kind == "server.shutdown" {
                tally.error("the server shut down mid-stream".into());
                return tally;
            }
            continue; // heartbeat
        }
        if envelope.seq != last_seq + 1 {
            tally.error(format!("seq {} followed seq {last_seq}", envelope.seq));
        }
        last_seq = last_seq.max(envelope.seq);
        tally.events += 1;
        match envelope.kind.as_str() {
            "output" if envelope.data.stream.as_deref() == Some("stdout") => {
                let text = envelope.data.text.unwrap_or_default();
                tally.lines += memchr_count(text.as_bytes());
                if stamps {
                    partial.push_str(&text);
                    let complete = partial.rfind('\n').map_or(0, |i| i + 1);
                    for line in partial[..complete].lines() {
                        match stamp_of(line) {
                            Some(written) => {
                                let micros = arrived.saturating_sub(written) / 1000;
                                tally.latencies_us.push(micros.min(u32::MAX as u128) as u32);
                            }
                            None => tally.stamp_errors += 1,
                        }
                    }
                    partial.drain(..complete);
                }
            }
            "truncated" => tally.error("the server truncated the output".into()),
            "state" => {
                if let Some(state) = envelope.data.state.filter(|s| s.is_final()) {
                    tally.finished = Some(Instant::now());
                    tally.final_state = Some(state);
                    return tally;
                }
            }
            _ => {}
        }
    }
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn stamp_of(line: &str) -> Option<u128> {
    let mut parts = line.split(' ');
    (parts.next()? == "tick").then_some(())?;
    parts.next()?;
    parts.next()?.parse().ok()
}

/// `count` subscribers of one task, all subscribed when this returns.
struct Crowd {
    handles: Vec<tokio::task::JoinHandle<Tally>>,
    connect_failures: u64,
    connect_secs: f64,
}

impl Crowd {
    async fn gather(
        api: &Api,
        transport: Transport,
        task_id: &str,
        count: u64,
        stamps: bool,
        deadline: Instant,
        stop: &CancellationToken,
    ) -> Result<Crowd> {
        let started = Instant::now();
        let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let (ready_tx, mut ready_rx) = mpsc::channel::<bool>(count as usize);
        let mut handles = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (api, gate, ready, stop) =
                (api.clone(), gate.clone(), ready_tx.clone(), stop.clone());
            let task_id = task_id.to_string();
            handles.push(tokio::spawn(async move {
                let opened = {
                    let _permit = gate.acquire_owned().await;
                    timeout_at(deadline, Conn::open(&api, transport, &task_id)).await
                };
                match opened {
                    Ok(Ok(conn)) => {
                        let _ = ready.send(true).await;
                        drop(ready);
                        consume(conn, stamps, deadline, stop).await
                    }
                    Ok(Err(e)) => {
                        let _ = ready.send(false).await;
                        Tally::failed(format!("cannot subscribe: {e:#}"))
                    }
                    Err(_) => {
                        let _ = ready.send(false).await;
                        Tally::failed("timed out subscribing".into())
                    }
                }
            }));
        }
        drop(ready_tx);
        let mut answered = 0;
        let mut connect_failures = 0;
        while answered < count {
            match timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(ok)) => {
                    answered += 1;
                    connect_failures += u64::from(!ok);
                }
                Ok(None) => break,
                Err(_) => bail!("only {answered} of {count} subscribers connected in time"),
            }
        }
        Ok(Crowd {
            handles,
            connect_failures,
            connect_secs: started.elapsed().as_secs_f64(),
        })
    }

    async fn finish(self) -> Vec<Tally> {
        let mut tallies = Vec::with_capacity(self.handles.len());
        for handle in self.handles {
            tallies.push(
                handle
                    .await
                    .unwrap_or_else(|e| Tally::failed(format!("subscriber panicked: {e}"))),
            );
        }
        tallies
    }
}

// ----------------------------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone, Serialize)]
struct Latencies {
    samples: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl Latencies {
    fn of(mut micros: Vec<u32>) -> Option<Latencies> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let at = |q: f64| {
            let index = ((micros.len() as f64 * q) as usize).min(micros.len() - 1);
            micros[index] as f64 / 1000.0
        };
        Some(Latencies {
            samples: micros.len() as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: micros[micros.len() - 1] as f64 / 1000.0,
        })
    }
}

/// One fan-out measurement (throughput or latency).
#[derive(Debug, Clone, Serialize)]
struct FanOutRun {
    scenario: &'static str,
    /// seq, flush (one write per line) or stamped (timestamped lines at a fixed rate).
    printer: &'static str,
    /// Lines per second the task printed, when paced.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<u64>,
    transport: Transport,
    subscribers: u64,
    /// Lines each subscriber must receive.
    lines: u64,
    /// Seconds from the start signal to the last subscriber's final event.
    secs: f64,
    lines_delivered: u64,
    lines_per_sec: f64,
    /// Events per subscriber (the server packs many lines into one output event).
    events_per_subscriber: f64,
    /// Server CPU time per event delivered to one subscriber (a frame on one connection).
    server_us_per_frame: f64,
    /// Subscribers that got fewer or more lines than the task printed, or no final state.
    short_subscribers: u64,
    connect_secs: f64,
    memory: RunMemory,
    server_cpu_secs: f64,
    loadgen_cpu_secs: f64,
    /// Share of all cores busy (any process) during the run.
    machine_busy_pct: f64,
    /// Share of all cores' time that processes other than the server, its tasks and this
    /// program used during the run; a large figure means the run shared the cores with
    /// unrelated work and its figures are worse than the server's own. Absent when the run
    /// was too short to tell.
    other_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latencies>,
    errors: Vec<String>,
}

impl FanOutRun {
    fn label(&self) -> String {
        format!(
            "{} {} K={} N={} printer={}",
            self.scenario,
            self.transport.name(),
            self.subscribers,
            self.lines,
            self.printer
        )
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct RunMemory {
    /// Server VmRSS right after it started (before the task and the subscribers).
    idle_kib: u64,
    /// Server VmRSS with every subscriber connected, before the task prints.
    subscribed_kib: u64,
    /// Largest VmRSS sampled (every 20 ms) during the run.
    peak_sampled_kib: u64,
    /// VmHWM at the end: the server's lifetime peak.
    hwm_kib: u64,
}

/// One fan-out measurement to make.
struct Plan {
    scenario: &'static str,
    printer: &'static str,
    transport: Transport,
    subscribers: u64,
    /// Lines the task prints, which every subscriber must receive.
    lines: u64,
    /// The task's command; it must wait for a line on stdin before printing.
    command: serde_json::Value,
    /// Lines carry `tick INDEX UNIX_NANOS`: measure their latency.
    stamps: bool,
    /// Lines per second the task prints (absent: as fast as it can).
    rate: Option<u64>,
    /// Everything (connecting, printing, delivering) must be over within this.
    budget: Duration,
}

async fn throughput_run(
    ctx: &Ctx,
    transport: Transport,
    subscribers: u64,
    lines: u64,
    printer: Printer,
) -> Result<FanOutRun> {
    let command = match printer {
        // `read` holds the task until every subscriber is in; `exec seq` then prints as fast
        // as the pipe takes it.
        Printer::Seq => json!(format!("read -r go; exec seq 1 {lines}")),
        Printer::Flush => emitter(ctx, 0, lines),
    };
    let plan = Plan {
        scenario: "throughput",
        printer: printer.name(),
        transport,
        subscribers,
        lines,
        command,
        stamps: false,
        rate: None,
        budget: Duration::from_secs(60 + lines / 10_000 + subscribers / 10),
    };
    fan_out(ctx, &plan).await
}

/// This program as a task's command: `emit-stamps`.
fn emitter(ctx: &Ctx, rate: u64, count: u64) -> serde_json::Value {
    json!([
        ctx.loadgen.display().to_string(),
        "emit-stamps",
        "--rate",
        rate.to_string(),
        "--count",
        count.to_string()
    ])
}

async fn latency_run(
    ctx: &Ctx,
    transport: Transport,
    subscribers: u64,
    rate: u64,
    secs: u64,
) -> Result<FanOutRun> {
    let plan = Plan {
        scenario: "latency",
        printer: "stamped",
        transport,
        subscribers,
        lines: rate * secs,
        command: emitter(ctx, rate, rate * secs),
        stamps: true,
        rate: Some(rate),
        budget: Duration::from_secs(60 + secs + subscribers / 10),
    };
    fan_out(ctx, &plan).await
}

/// Starts a fresh server, a task that waits for its stdin, the subscribers; then lets the task
/// go and waits for every subscriber to see its end.
async fn fan_out(ctx: &Ctx, plan: &Plan) -> Result<FanOutRun> {
    let server = Server::start(ctx, &[]).await?;
    let result = fan_out_on(&server, plan).await;
    let notes = server.stop().await?;
    let mut run = result?;
    run.errors.extend(notes);
    Ok(run)
}

async fn fan_out_on(server: &Server, plan: &Plan) -> Result<FanOutRun> {
    let &Plan {
        transport,
        subscribers,
        lines,
        stamps,
        budget,
        ..
    } = plan;
    let deadline = Instant::now() + budget;
    let api = &server.api;
    let idle = server.memory()?;
    let task = api
        .create_task(&exec_task(plan.command.clone(), budget.as_secs()))
        .await?;
    api.wait_running(&task.id, Duration::from_secs(10)).await?;

    let sampler = RssSampler::start(server.pid);
    let stop = CancellationToken::new();
    let crowd = Crowd::gather(
        api,
        transport,
        &task.id,
        subscribers,
        stamps,
        deadline,
        &stop,
    )
    .await?;
    let connect_secs = crowd.connect_secs;
    let connect_failures = crowd.connect_failures;
    // Let the replayed `queued`/`running` events drain so the measurement starts quiet.
    sleep(Duration::from_millis(300)).await;
    let subscribed = server.memory()?;

    let server_cpu = server.cpu_secs();
    let tasks_cpu = server.tasks_cpu_secs();
    let own_cpu = cpu_secs("self").unwrap_or_default();
    let machine = MachineCpu::now();
    let go = Instant::now();
    api.input(&task.id, "go\n").await?;
    let tallies = crowd.finish().await;
    let end = tallies.iter().filter_map(|t| t.finished).max();
    let server_cpu = server.cpu_secs() - server_cpu;
    let own_cpu = cpu_secs("self").unwrap_or_default() - own_cpu;
    let tasks_cpu = server.tasks_cpu_secs() - tasks_cpu;
    let machine_busy_pct = machine.busy_pct_since();
    let other_pct = machine.others_pct_since(server_cpu + tasks_cpu + own_cpu);
    let peak = sampler.peak_kib().await;
    let hwm = server.memory()?.hwm_kib;

    let mut errors = Vec::new();
    if connect_failures > 0 {
        errors.push(format!(
            "{connect_failures} subscribers could not subscribe"
        ));
    }
    let mut short = 0;
    let mut stamp_errors = 0;
    let mut latencies = Vec::new();
    let mut delivered = 0;
    let mut events = 0;
    for (index, tally) in tallies.into_iter().enumerate() {
        delivered += tally.lines;
        events += tally.events;
        stamp_errors += tally.stamp_errors;
        latencies.extend(tally.latencies_us);
        let wrong_end = tally.final_state != Some(TaskState::Succeeded);
        if tally.lines != lines || wrong_end {
            short += 1;
            if errors.len() < MAX_ERRORS {
                errors.push(format!(
                    "subscriber {index}: {} of {lines} lines, final state {:?}",
                    tally.lines, tally.final_state
                ));
            }
        }
        for error in tally.errors {
            if errors.len() < MAX_ERRORS * 2 {
                errors.push(format!("subscriber {index}: {error}"));
            }
        }
    }
    if stamp_errors > 0 {
        errors.push(format!("{stamp_errors} lines without a readable timestamp"));
    }
    let secs = end.map_or(f64::NAN, |end| (end - go).as_secs_f64());
    Ok(FanOutRun {
        scenario: plan.scenario,
        printer: plan.printer,
        rate: plan.rate,
        transport,
        subscribers,
        lines,
        secs,
        lines_delivered: delivered,
        lines_per_sec: delivered as f64 / secs,
        events_per_subscriber: events as f64 / subscribers as f64,
        server_us_per_frame: server_cpu * 1e6 / events as f64,
        short_subscribers: short,
        connect_secs,
        memory: RunMemory {
            idle_kib: idle.rss_kib,
            subscribed_kib: subscribed.rss_kib,
            peak_sampled_kib: peak,
            hwm_kib: hwm,
        },
        server_cpu_secs: server_cpu,
        loadgen_cpu_secs: own_cpu,
        machine_busy_pct,
        other_pct,
        latency: Latencies::of(latencies),
        errors,
    })
}

#[derive(Debug, Clone, Serialize)]
struct CreateRun {
    tasks: u64,
    concurrency: u64,
    max_concurrent: u64,
    created: u64,
    failed: u64,
    secs: f64,
    creates_per_sec: f64,
    /// Time of one POST, as its client saw it.
    request: Option<Latencies>,
    server_cpu_secs: f64,
    loadgen_cpu_secs: f64,
    /// As in [`FanOutRun::other_pct`].
    other_pct: Option<f64>,
    memory: RunMemory,
    errors: Vec<String>,
}

async fn create_run(
    ctx: &Ctx,
    tasks: u64,
    concurrency: u64,
    max_concurrent: u64,
) -> Result<CreateRun> {
    let server = Server::start(
        ctx,
        &["--max-concurrent".into(), max_concurrent.to_string()],
    )
    .await?;
    let result = create_on(&server, tasks, concurrency, max_concurrent).await;
    let notes = server.stop().await?;
    let mut run = result?;
    run.errors.extend(notes);
    Ok(run)
}

async fn create_on(
    server: &Server,
    tasks: u64,
    concurrency: u64,
    max_concurrent: u64,
) -> Result<CreateRun> {
    const WARM_UP: u64 = 10;
    let api = &server.api;
    let body = exec_task(json!(["true"]), 60);
    let idle = server.memory()?;
    for _ in 0..WARM_UP {
        api.create_task(&body).await?;
    }
    let sampler = RssSampler::start(server.pid);
    let server_cpu = server.cpu_secs();
    let tasks_cpu = server.tasks_cpu_secs();
    let own_cpu = cpu_secs("self").unwrap_or_default();
    let machine = MachineCpu::now();
    let started = Instant::now();
    let creations = futures_util::stream::iter(0..tasks)
        .map(|_| async {
            let sent = Instant::now();
            api.create_task(&body).await.map(|_| sent.elapsed())
        })
        .buffer_unordered(concurrency as usize)
        .collect::<Vec<_>>();
    let limit = Duration::from_secs(120 + tasks / 100);
    let outcomes = timeout(limit, creations)
        .await
        .map_err(|_| anyhow!("creating {tasks} tasks took over {}s", limit.as_secs()))?;
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu_secs() - server_cpu;
    let tasks_cpu = server.tasks_cpu_secs() - tasks_cpu;
    let own_cpu = cpu_secs("self").unwrap_or_default() - own_cpu;
    let other_pct = machine.others_pct_since(server_cpu + tasks_cpu + own_cpu);
    let peak = sampler.peak_kib().await;

    let mut errors = Vec::new();
    let mut micros = Vec::with_capacity(outcomes.len());
    let mut failed = 0;
    for outcome in outcomes {
        match outcome {
            Ok(took) => micros.push(took.as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                failed += 1;
                if errors.len() < MAX_ERRORS {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    let created = micros.len() as u64;
    // Every 201 must be a stored task.
    let stored: u64 = api.status().await?.tasks.values().sum();
    if stored != created + WARM_UP {
        errors.push(format!(
            "{created} creations answered 201 (+{WARM_UP} warm-up) but the server holds {stored} tasks"
        ));
    }
    let memory = server.memory()?;
    Ok(CreateRun {
        tasks,
        concurrency,
        max_concurrent,
        created,
        failed,
        secs,
        creates_per_sec: created as f64 / secs,
        request: Latencies::of(micros),
        server_cpu_secs: server_cpu,
        loadgen_cpu_secs: own_cpu,
        other_pct,
        memory: RunMemory {
            idle_kib: idle.rss_kib,
            subscribed_kib: 0,
            peak_sampled_kib: peak,
            hwm_kib: memory.hwm_kib,
        },
        errors,
    })
}

#[derive(Debug, Clone, Serialize)]
struct MemoryRun {
    transport: Transport,
    subscribers: u64,
    /// VmRSS one second after the server started, before any request.
    idle_kib: u64,
    /// VmRSS with a running task and no subscriber.
    before_kib: u64,
    /// VmRSS with every subscriber connected and idle.
    after_kib: u64,
    bytes_per_subscriber: f64,
    hwm_kib: u64,
    errors: Vec<String>,
}

async fn memory_run(ctx: &Ctx, transport: Transport, subscribers: u64) -> Result<MemoryRun> {
    let server = Server::start(ctx, &[]).await?;
    let result = memory_on(&server, transport, subscribers).await;
    let notes = server.stop().await?;
    let mut run = result?;
    run.errors.extend(notes);
    Ok(run)
}

async fn memory_on(server: &Server, transport: Transport, subscribers: u64) -> Result<MemoryRun> {
    let api = &server.api;
    sleep(Duration::from_secs(1)).await;
    let idle = server.memory()?;
    let task = api
        .create_task(&exec_task(json!(["sleep", "300"]), 300))
        .await?;
    api.wait_running(&task.id, Duration::from_secs(10)).await?;
    sleep(Duration::from_millis(500)).await;
    let before = server.memory()?;

    let deadline = Instant::now() + Duration::from_secs(120);
    let stop = CancellationToken::new();
    let crowd = Crowd::gather(
        api,
        transport,
        &task.id,
        subscribers,
        false,
        deadline,
        &stop,
    )
    .await?;
    // Let every subscriber read its replay and go idle.
    sleep(Duration::from_secs(1)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(server.memory()?.rss_kib);
        sleep(Duration::from_millis(200)).await;
    }
    samples.sort_unstable();
    let after = samples[samples.len() / 2];
    let hwm = server.memory()?.hwm_kib;

    stop.cancel();
    let tallies = crowd.finish().await;
    api.cancel(&task.id).await?;
    let mut errors = Vec::new();
    if crowd_failures(&tallies) > 0 {
        errors.push(format!("{} subscribers failed", crowd_failures(&tallies)));
        errors.extend(
            tallies
                .iter()
                .flat_map(|t| t.errors.iter().cloned())
                .take(MAX_ERRORS),
        );
    }
    Ok(MemoryRun {
        transport,
        subscribers,
        idle_kib: idle.rss_kib,
        before_kib: before.rss_kib,
        after_kib: after,
        bytes_per_subscriber: (after as f64 - before.rss_kib as f64) * 1024.0 / subscribers as f64,
        hwm_kib: hwm,
        errors,
    })
}

fn crowd_failures(tallies: &[Tally]) -> usize {
    tallies.iter().filter(|t| !t.errors.is_empty()).count()
}

// ----------------------------------------------------------------------------------------------
// Report

#[derive(Debug, Default, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    mem_total_kib: u64,
    kernel: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            // Not available_parallelism(): that counts only the CPUs this process may use,
            // which is one under --pin.
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default(),
            mem_total_kib: meminfo
                .lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Target {
    target: String,
    /// The median of the runs that measure it.
    measured: String,
    met: bool,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    machine: Machine,
    server_binary: String,
    /// `--pin`: server on CPU 0, load generator on CPU 1.
    pinned: bool,
    /// `--client-threads` (absent: one per core).
    client_threads: Option<u64>,
    throughput: Vec<FanOutRun>,
    latency: Vec<FanOutRun>,
    create: Vec<CreateRun>,
    memory: Vec<MemoryRun>,
    targets: Vec<Target>,
    /// Conditions that make figures less trustworthy (a busy machine).
    notes: Vec<String>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Holds the measured medians against the issue's targets. A run with delivery errors never
/// meets a target, however fast it was.
fn judge(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    for transport in [Transport::Ws, Transport::Sse] {
        for printer in [Printer::Seq, Printer::Flush] {
            let runs: Vec<&FanOutRun> = report
                .throughput
                .iter()
                .filter(|r| {
                    r.transport == transport && r.printer == printer.name() && r.subscribers >= 1000
                })
                .collect();
            if let Some(value) = median(runs.iter().map(|r| r.lines_per_sec).collect()) {
                let clean = runs.iter().all(|r| r.short_subscribers == 0);
                targets.push(Target {
                    target: format!(
                        ">= 1,000,000 lines/s delivered to 1,000 subscribers ({}, {})",
                        transport.name(),
                        printer.name()
                    ),
                    measured: format!("{} lines/s", thousands(value)),
                    met: clean && value >= TARGET_LINES_PER_SEC,
                });
            }
        }
        let runs: Vec<&FanOutRun> = report
            .latency
            .iter()
            .filter(|r| r.transport == transport && r.subscribers >= 1000 && r.rate == Some(100))
            .collect();
        let p99s = runs
            .iter()
            .filter_map(|r| r.latency.as_ref().map(|l| l.p99_ms))
            .collect();
        if let Some(value) = median(p99s) {
            let clean = runs.iter().all(|r| r.short_subscribers == 0);
            targets.push(Target {
                target: format!(
                    "p99 < 20 ms, 1,000 subscribers, 100 lines/s ({})",
                    transport.name()
                ),
                measured: format!("p99 {value:.1} ms"),
                met: clean && value < TARGET_P99_MS,
            });
        }
    }
    if let Some(value) = median(report.create.iter().map(|r| r.creates_per_sec).collect()) {
        let clean = report
            .create
            .iter()
            .all(|r| r.failed == 0 && r.errors.is_empty());
        targets.push(Target {
            target: ">= 1,000 durable task creations/s".into(),
            measured: format!("{} /s", thousands(value)),
            met: clean && value >= TARGET_CREATES_PER_SEC,
        });
    }
    let idle = report
        .memory
        .iter()
        .map(|r| r.idle_kib as f64 * 1024.0)
        .collect();
    if let Some(value) = median(idle) {
        targets.push(Target {
            target: "idle server < 20 MiB resident".into(),
            measured: format!("{:.1} MiB", value / MIB),
            met: value < TARGET_IDLE_RSS_BYTES,
        });
    }
    for transport in [Transport::Ws, Transport::Sse] {
        let per: Vec<f64> = report
            .memory
            .iter()
            .filter(|r| r.transport == transport)
            .map(|r| r.bytes_per_subscriber)
            .collect();
        if let Some(value) = median(per) {
            targets.push(Target {
                target: format!("< 64 KiB per idle subscriber ({})", transport.name()),
                measured: format!("{:.1} KiB", value / 1024.0),
                met: value < TARGET_BYTES_PER_SUBSCRIBER,
            });
        }
    }
    targets
}

fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    println!("\n{title}");
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:>width$}"))
            .collect();
        println!("  {}", padded.join("  "));
    };
    line(headers.to_vec());
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(rules.iter().map(String::as_str).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_report(report: &Report) {
    let m = &report.machine;
    println!(
        "machine: {} cpus ({}), {:.1} GiB RAM, Linux {}; server: {}",
        m.cpus,
        m.cpu_model,
        m.mem_total_kib as f64 / MIB,
        m.kernel,
        report.server_binary
    );
    println!(
        "cores: {}; load generator threads: {}",
        if report.pinned {
            "pinned (server on CPU 0, load generator on CPU 1)"
        } else {
            "shared by server and load generator"
        },
        report
            .client_threads
            .map_or("one per core".to_string(), |n| n.to_string())
    );
    let rows: Vec<Vec<String>> = report
        .throughput
        .iter()
        .map(|r| {
            vec![
                r.transport.name().into(),
                r.printer.into(),
                r.subscribers.to_string(),
                r.lines.to_string(),
                format!("{:.3}", r.secs),
                thousands(r.lines_per_sec),
                format!("{:.1}", r.events_per_subscriber),
                r.short_subscribers.to_string(),
                mib(r.memory.idle_kib),
                mib(r.memory.subscribed_kib),
                mib(r.memory.peak_sampled_kib),
                mib(r.memory.hwm_kib),
                format!("{:.2}", r.server_cpu_secs),
                format!("{:.1}", r.server_us_per_frame),
                format!("{:.2}", r.loadgen_cpu_secs),
                format!("{:.0}", r.machine_busy_pct),
                r.other_pct.map_or("-".into(), |pct| format!("{pct:.0}")),
            ]
        })
        .collect();
    table(
        "Throughput fan-out (lines/s summed over subscribers; memory in MiB)",
        &[
            "transport",
            "printer",
            "K",
            "N",
            "secs",
            "lines/s",
            "events/sub",
            "short",
            "start",
            "subscribed",
            "peak",
            "hwm",
            "srv cpu s",
            "srv us/frame",
            "gen cpu s",
            "busy %",
            "other %",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = report
        .latency
        .iter()
        .map(|r| {
            let l = r.latency.clone();
            let ms = |f: fn(&Latencies) -> f64| {
                l.as_ref().map_or("n/a".into(), |l| format!("{:.2}", f(l)))
            };
            vec![
                r.transport.name().into(),
                r.subscribers.to_string(),
                r.rate.map_or("-".into(), |rate| rate.to_string()),
                r.lines.to_string(),
                format!("{:.1}", r.events_per_subscriber),
                l.as_ref().map_or(0, |l| l.samples).to_string(),
                ms(|l| l.p50_ms),
                ms(|l| l.p90_ms),
                ms(|l| l.p99_ms),
                ms(|l| l.p999_ms),
                ms(|l| l.max_ms),
                r.short_subscribers.to_string(),
                mib(r.memory.hwm_kib),
                format!("{:.2}", r.server_cpu_secs),
                format!("{:.1}", r.server_us_per_frame),
                format!("{:.2}", r.loadgen_cpu_secs),
                format!("{:.0}", r.machine_busy_pct),
                r.other_pct.map_or("-".into(), |pct| format!("{pct:.0}")),
            ]
        })
        .collect();
    table(
        "Latency (write in the task -> frame at the subscriber, ms)",
        &[
            "transport",
            "K",
            "lines/s",
            "lines",
            "events/sub",
            "samples",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "short",
            "hwm MiB",
            "srv cpu s",
            "srv us/frame",
            "gen cpu s",
            "busy %",
            "other %",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = report
        .create
        .iter()
        .map(|r| {
            let ms = |f: fn(&Latencies) -> f64| {
                r.request
                    .as_ref()
                    .map_or("n/a".into(), |l| format!("{:.2}", f(l)))
            };
            vec![
                r.tasks.to_string(),
                r.concurrency.to_string(),
                r.max_concurrent.to_string(),
                r.created.to_string(),
                r.failed.to_string(),
                format!("{:.3}", r.secs),
                thousands(r.creates_per_sec),
                ms(|l| l.p50_ms),
                ms(|l| l.p99_ms),
                format!("{:.2}", r.server_cpu_secs),
                format!("{:.2}", r.loadgen_cpu_secs),
                r.other_pct.map_or("-".into(), |pct| format!("{pct:.0}")),
                mib(r.memory.hwm_kib),
            ]
        })
        .collect();
    table(
        "Task creation (HTTP 201 = committed)",
        &[
            "M",
            "clients",
            "max-conc",
            "created",
            "failed",
            "secs",
            "tasks/s",
            "p50 ms",
            "p99 ms",
            "srv cpu s",
            "gen cpu s",
            "other %",
            "hwm MiB",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = report
        .memory
        .iter()
        .map(|r| {
            vec![
                r.transport.name().into(),
                r.subscribers.to_string(),
                mib(r.idle_kib),
                mib(r.before_kib),
                mib(r.after_kib),
                format!("{:.1}", r.bytes_per_subscriber / 1024.0),
                mib(r.hwm_kib),
            ]
        })
        .collect();
    table(
        "Memory (VmRSS, MiB)",
        &[
            "transport",
            "S",
            "idle",
            "1 task",
            "+S idle subs",
            "KiB/sub",
            "hwm",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = report
        .targets
        .iter()
        .map(|t| {
            vec![
                t.target.clone(),
                t.measured.clone(),
                if t.met { "met" } else { "NOT met" }.into(),
            ]
        })
        .collect();
    table(
        "Targets (median of runs)",
        &["target", "measured", "verdict"],
        &rows,
    );

    let mut problems: Vec<(String, &[String])> = Vec::new();
    for r in report.throughput.iter().chain(&report.latency) {
        problems.push((r.label(), &r.errors));
    }
    for r in &report.create {
        problems.push((format!("create M={}", r.tasks), &r.errors));
    }
    for r in &report.memory {
        let run = format!("memory {} S={}", r.transport.name(), r.subscribers);
        problems.push((run, &r.errors));
    }
    problems.retain(|(_, errors)| !errors.is_empty());
    if !report.notes.is_empty() {
        println!("\nNotes");
        for note in &report.notes {
            println!("  {note}");
        }
    }
    if !problems.is_empty() {
        println!("\nProblems seen");
        for (run, errors) in problems {
            for error in errors {
                println!("  {run}: {error}");
            }
        }
    }
}
