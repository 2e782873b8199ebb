//! Benchmarks of `victor watch`; BENCHMARKS.md holds the results and how to read them.
//!
//! ```text
//! cargo run --release --example watchbench -- frame
//! cargo build --release --bin victor && cargo run --release --example watchbench -- latency
//! ```
//!
//! - `frame`: the time to build and draw one frame with 1,000 tasks in the table (one in ten an
//!   agent that has taken steps, so the progress column is drawn too) and a 100,000-line log
//!   open, in this process: on ratatui's `TestBackend` (building the frame and
//!   diffing it) and through the crossterm backend into a sink (also encoding the escape
//!   sequences a terminal would get). Something changes before every frame (a new log line or
//!   a move of the selection), so no frame is free.
//! - `latency`: from an event leaving a real server (its `ts`, stamped when the server stores
//!   it) to its line being on screen in the view (a `victor::tui::Session` drawing on a test
//!   backend that notes when each line first appears), and to its line on the stdout of a
//!   piped `victor watch ID`. The server is the release binary on 127.0.0.1, port 0, with a
//!   fresh temporary data dir, killed at the end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use ratatui::Terminal;
use ratatui::backend::{Backend, ClearType, CrosstermBackend, TestBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Rect, Size};
use ratatui::{TerminalOptions, Viewport};
use victor::client::Client;
use victor::proto::{
    AgentSpec, Command as TaskCommand, CreateTask, Event, ExecSpec, Task, TaskSpec, TaskState,
    agent_types,
};
use victor::tui::{Action, Options, Session, Update, Watch, draw, layout};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/common/launch.rs"]
mod launch;
use cpu::{MachineCpu, cpu_secs};
use launch::{Launch, server_binary};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of victor watch (loopback only)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Frame build and draw time, in process.
    Frame {
        #[arg(long, default_value_t = 1_000)]
        tasks: usize,
        /// Lines of the open log, all kept in memory (the scrollback is set to it).
        #[arg(long, default_value_t = 100_000)]
        lines: usize,
        /// Frames measured per case (after 100 to warm up).
        #[arg(long, default_value_t = 2_000)]
        frames: usize,
    },
    /// From an event leaving a real server to its line on screen.
    Latency {
        /// Finished tasks in the table besides the one watched.
        #[arg(long, default_value_t = 1_000)]
        tasks: usize,
        /// Lines the watched task prints, one event each.
        #[arg(long, default_value_t = 500)]
        ticks: u32,
        /// Milliseconds between two lines.
        #[arg(long, default_value_t = 20)]
        every_ms: u64,
        /// The victor binary [default: `victor` beside this example's directory].
        #[arg(long, env = "VICTOR_BIN", value_name = "PATH")]
        server: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Frame {
            tasks,
            lines,
            frames,
        } => frame(tasks, lines, frames),
        Scenario::Latency {
            tasks,
            ticks,
            every_ms,
            server,
        } => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let binary = server_binary(server.as_deref())?;
            tokio::runtime::Runtime::new()?.block_on(latency(&binary, tasks, ticks, every_ms))
        }
    }
}

/// Percentiles of a sample, in microseconds.
struct Summary {
    count: usize,
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(mut micros: Vec<f64>) -> Summary {
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let index = ((micros.len() as f64 - 1.0) * q).round() as usize;
            micros.get(index).copied().unwrap_or(f64::NAN)
        };
        Summary {
            count: micros.len(),
            mean: micros.iter().sum::<f64>() / micros.len().max(1) as f64,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: micros.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// `| mean | p50 | p90 | p99 | max |` in milliseconds.
    fn ms_cells(&self) -> String {
        let ms = |us: f64| format!("{:.3}", us / 1e3);
        format!(
            "{} | {} | {} | {} | {}",
            ms(self.mean),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

fn task_id(n: usize) -> String {
    format!("019b0000-0000-7000-8000-{n:012}")
}

/// One task in this many is an agent, whose progress (its steps) the table shows.
const AGENT_EVERY: usize = 10;

/// A task as the table would show it: every state in turn, names, outcomes, some agents.
fn bench_task(n: usize, now: Timestamp) -> Task {
    let state = TaskState::ALL[n % TaskState::ALL.len()];
    let ago = |secs: i64| now - jiff::SignedDuration::from_secs(secs);
    let spec = if n.is_multiple_of(AGENT_EVERY) {
        TaskSpec::Agent(AgentSpec {
            prompt: format!("make the tests of crate-{n} pass"),
            workspace: format!("/home/dev/src/crate-{n}"),
            ..AgentSpec::default()
        })
    } else {
        TaskSpec::Exec(ExecSpec::new(TaskCommand::Shell(format!(
            "cargo test -p crate-{n} -- --test-threads 4"
        ))))
    };
    Task {
        id: task_id(n),
        name: n.is_multiple_of(3).then(|| format!("job-{n}")),
        spec,
        state,
        priority: 0,
        created_at: ago(10_000 - n as i64),
        started_at: (state != TaskState::Queued).then(|| ago(5_000 - n as i64)),
        finished_at: state.is_final().then(|| ago(100)),
        result: state.is_final().then(|| victor::proto::TaskResult {
            exit_code: Some((n % 4) as i32),
            ..Default::default()
        }),
        last_seq: 3,
        requires: Vec::new(),
        node: None,
        waiting: None,
    }
}

fn output_event(task_id: &str, seq: u64, text: String) -> Event {
    Event {
        task_id: task_id.to_string(),
        seq,
        pos: seq,
        ts: Timestamp::now(),
        kind: "output".into(),
        data: serde_json::json!({ "stream": if seq.is_multiple_of(9) { "stderr" } else { "stdout" }, "text": text }),
    }
}

/// Ten lines of compiler-like output per event.
fn ten_lines(first: usize) -> String {
    (first..first + 10)
        .map(|n| {
            format!(
                "   Compiling crate-{n} v0.1.{} (/home/dev/src/workspace/crate-{n})\n",
                n % 97
            )
        })
        .collect()
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn frame(tasks: usize, lines: usize, frames: usize) -> Result<()> {
    let now = Timestamp::now();
    let options = Options {
        server: "bench (http://127.0.0.1:8765)".into(),
        scrollback: lines,
        colour: true,
        time_zone: TimeZone::UTC,
    };
    let before = resident_mib();
    let mut watch = Watch::new(options, now);
    watch.apply(
        Update::Tasks((0..tasks).map(|n| bench_task(n, now)).collect()),
        now,
    );
    // The agents have taken steps: the table has its progress column.
    for n in (0..tasks).step_by(AGENT_EVERY) {
        let step = Event {
            kind: agent_types::MESSAGE.into(),
            data: serde_json::json!({"step": n % 50, "message": {"role": "assistant", "content": ""}}),
            ..output_event(&task_id(n), 4, String::new())
        };
        watch.apply(Update::Event(step), now);
    }
    let opened = task_id(tasks.saturating_sub(1) / 7 * 7 + 1);
    watch.open(&opened);
    let started = Instant::now();
    let mut seq = 0;
    for first in (0..lines).step_by(10) {
        seq += 1;
        watch.apply(
            Update::Log(output_event(&opened, seq, ten_lines(first))),
            now,
        );
    }
    let ingest = started.elapsed();
    println!(
        "{tasks} tasks, a {lines}-line log in {seq} events: applied in {:.1} ms ({:.2} µs an \
         event, {:.0} lines/s); resident memory {:.1} MiB (+{:.1} MiB)\n",
        ingest.as_secs_f64() * 1e3,
        ingest.as_secs_f64() * 1e6 / seq as f64,
        lines as f64 / ingest.as_secs_f64(),
        resident_mib(),
        resident_mib() - before
    );
    println!("| backend | size | log | frames | mean ms | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    let machine = MachineCpu::now();
    let own = cpu_secs("self")?;
    for (width, height) in [(80, 24), (200, 60)] {
        for scrolled in [false, true] {
            let area = Rect::new(0, 0, width, height);
            let areas = layout(area, &watch);
            watch.set_viewport(victor::tui::Viewport {
                table_rows: areas.table_rows(),
                log_lines: areas.log_lines(),
            });
            if scrolled {
                watch.act(Action::Scroll(-(lines as isize / 2)), now);
            }
            let mode = if scrolled {
                "scrolled to the middle"
            } else {
                "following"
            };
            let mut test = Terminal::new(TestBackend::new(width, height))?;
            let times = frames_of(&mut watch, &opened, &mut seq, frames, |watch| {
                test.draw(|frame| draw(frame, watch, now))
                    .map(drop)
                    .map_err(anyhow::Error::from)
            })?;
            println!(
                "| TestBackend | {width}×{height} | {mode} | {} |",
                row(times)
            );
            let sink = CrosstermBackend::new(std::io::sink());
            let mut crossterm = Terminal::with_options(
                sink,
                TerminalOptions {
                    viewport: Viewport::Fixed(area),
                },
            )?;
            let times = frames_of(&mut watch, &opened, &mut seq, frames, |watch| {
                crossterm
                    .draw(|frame| draw(frame, watch, now))
                    .map(drop)
                    .map_err(anyhow::Error::from)
            })?;
            println!(
                "| crossterm → sink | {width}×{height} | {mode} | {} |",
                row(times)
            );
            if scrolled {
                watch.act(Action::ScrollToEnd, now);
            }
        }
    }
    let others = machine.others_pct_since(cpu_secs("self")? - own);
    println!(
        "\nOther processes kept {} of the machine's cores busy meanwhile.",
        others.map_or(
            "an unknown share (too short to tell)".to_string(),
            |pct| format!("{pct:.0} %")
        )
    );
    Ok(())
}

fn row(summary: Summary) -> String {
    format!("{} | {}", summary.count, summary.ms_cells())
}

/// Times `frames` draws, each after a change: a new log line (which scrolls a following log)
/// and a move of the table's selection.
fn frames_of(
    watch: &mut Watch,
    opened: &str,
    seq: &mut u64,
    frames: usize,
    mut draw_one: impl FnMut(&Watch) -> Result<()>,
) -> Result<Summary> {
    const WARM_UP: usize = 100;
    let now = Timestamp::now();
    let mut micros = Vec::with_capacity(frames);
    for n in 0..WARM_UP + frames {
        *seq += 1;
        watch.apply(
            Update::Log(output_event(opened, *seq, format!("live line {n}\n"))),
            now,
        );
        watch.act(Action::Move(if n % 2 == 0 { 1 } else { -1 }), now);
        let started = Instant::now();
        draw_one(watch)?;
        if n >= WARM_UP {
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(Summary::of(micros))
}

/// A test backend that notes when each `tick N` line is first drawn: at the end of the frame
/// that shows it, which is when a terminal backend would have written it out.
struct Probe {
    screen: TestBackend,
    seen: Arc<Mutex<HashMap<u32, Timestamp>>>,
    frames: Arc<AtomicU64>,
}

impl Backend for Probe {
    type Error = <TestBackend as Backend>::Error;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        self.screen.draw(content)
    }

    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.screen.hide_cursor()
    }

    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.screen.show_cursor()
    }

    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.screen.get_cursor_position()
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.screen.set_cursor_position(position)
    }

    fn clear(&mut self) -> Result<(), Self::Error> {
        self.screen.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.screen.clear_region(clear_type)
    }

    fn size(&self) -> Result<Size, Self::Error> {
        self.screen.size()
    }

    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.screen.window_size()
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.screen.flush()?;
        let now = Timestamp::now();
        self.frames.fetch_add(1, Ordering::Relaxed);
        let buffer = self.screen.buffer();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for y in 0..buffer.area.height {
            let row: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            if let Some(n) = tick_number(&row) {
                seen.entry(n).or_insert(now);
            }
        }
        Ok(())
    }
}

fn tick_number(line: &str) -> Option<u32> {
    line.trim().strip_prefix("tick ")?.trim().parse().ok()
}

fn shell_task(script: &str) -> CreateTask {
    CreateTask {
        name: None,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Exec(ExecSpec::new(TaskCommand::Shell(script.to_string()))),
    }
}

async fn latency(binary: &Path, tasks: usize, ticks: u32, every_ms: u64) -> Result<()> {
    let server = Launch::new(binary).unlimited().start()?;
    let client = Client::new(&server.url, None)?;
    for _ in 0..tasks {
        client.create_task(&shell_task("true"), None).await?;
    }
    // Wait for them to finish: the measurement is of one chatty task among many finished ones.
    loop {
        let status = client.status().await?;
        let busy: u64 = [TaskState::Queued, TaskState::Running]
            .iter()
            .filter_map(|state| status.tasks.get(state))
            .sum();
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pause lets both watchers connect before the first line.
    let script = format!(
        "sleep 2; i=0; while [ $i -lt {ticks} ]; do i=$((i+1)); echo \"tick $i\"; sleep {}; done",
        every_ms as f64 / 1e3
    );
    let task = client.create_task(&shell_task(&script), None).await?;

    // The piped watch, reading its stdout as it comes.
    let mut piped = Command::new(binary)
        .args(["watch", &task.id])
        .env("VICTOR_SERVER", &server.url)
        .env("VICTOR_CONFIG", "/dev/null")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = piped.stdout.take().context("stdout")?;
    let printed = std::thread::spawn(move || {
        let mut arrivals = HashMap::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let now = Timestamp::now();
            if let Ok(event) = serde_json::from_str::<Event>(&line)
                && let Some(output) = event.output()
            {
                for n in output.text.lines().filter_map(tick_number) {
                    arrivals.insert(n, now);
                }
            }
        }
        arrivals
    });

    // The view, drawing on the probe.
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let frames = Arc::new(AtomicU64::new(0));
    let probe = Probe {
        screen: TestBackend::new(120, 40),
        seen: seen.clone(),
        frames: frames.clone(),
    };
    let options = Options {
        server: server.url.clone(),
        scrollback: 10_000,
        colour: true,
        time_zone: TimeZone::UTC,
    };
    let (keys, keys_out) = tokio::sync::mpsc::unbounded_channel::<TermEvent>();
    let input = Box::pin(futures_util::stream::unfold(
        keys_out,
        |mut keys| async move { keys.recv().await.map(|key| (Ok(key), keys)) },
    ));
    let session = Session::connect(client.clone(), Some(task.id.clone()), options).await?;
    let view = tokio::spawn(async move {
        let mut terminal = Terminal::new(probe)?;
        session.run(&mut terminal, input).await?;
        anyhow::Ok(())
    });
    let started = Instant::now();
    loop {
        if client.get_task(&task.id).await?.state.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran = started.elapsed();
    let _ = keys.send(TermEvent::Key(KeyEvent::from(KeyCode::Char('q'))));
    view.await??;
    let arrivals = printed
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let _ = piped.wait();

    let mut sent = HashMap::new();
    for event in client.events(&task.id, 0, 100_000).await? {
        if let Some(output) = event.output() {
            for n in output.text.lines().filter_map(tick_number) {
                sent.insert(n, event.ts);
            }
        }
    }
    let seen = seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let delays = |at: &HashMap<u32, Timestamp>| {
        let micros: Vec<f64> = sent
            .iter()
            .filter_map(|(n, ts)| Some(at.get(n)?.duration_since(*ts).as_secs_f64() * 1e6))
            .collect();
        Summary::of(micros)
    };
    let on_screen = delays(&seen);
    let on_stdout = delays(&arrivals);
    let frames = frames.load(Ordering::Relaxed);
    println!(
        "{ticks} lines, one every {every_ms} ms, among {tasks} finished tasks; {frames} frames drawn \
         in {:.1} s ({:.1} a second)\n",
        ran.as_secs_f64(),
        frames as f64 / ran.as_secs_f64()
    );
    println!(
        "| from the event's ts to | lines | missing | mean ms | p50 ms | p90 ms | p99 ms | max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (what, summary) in [
        ("its line on screen (the view)", on_screen),
        ("its line on stdout (piped `victor watch ID`)", on_stdout),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            summary.count,
            sent.len() - summary.count,
            summary.ms_cells()
        );
    }
    // Both clients read the same stream at the same time: what the view takes beyond the
    // piped watch is its own (waiting for the next frame, and drawing it).
    let own: Vec<f64> = sent
        .keys()
        .filter_map(|n| {
            let shown = seen.get(n)?;
            let printed = arrivals.get(n)?;
            Some(shown.duration_since(*printed).as_secs_f64() * 1e6)
        })
        .collect();
    println!(
        "\nThe view's own share (on screen, less on the piped watch's stdout, line by line): \
         mean | p50 | p90 | p99 | max = {} ms; a frame is {:.1} ms.",
        Summary::of(own).ms_cells(),
        1e3 / 60.0
    );
    Ok(())
}
