//! `victor`'s client calls side by side with pueue's, in one run; BENCHMARKS.md holds the
//! results and how to read them.
//!
//! ```text
//! cargo install pueue --locked
//! cargo build --release --bin victor --example clibench
//! cargo run --release --example clibench
//! ```
//!
//! Both servers run on this machine, started here and stopped at the end: the release
//! `victor serve` through tests/common/launch.rs (127.0.0.1, port 0, a fresh data dir), and
//! `pueued` with its own config, state and runtime directories in a temporary directory, over its
//! Unix socket. Every call is a real process of the real client, started the way a script
//! starts it, with the same small environment for both (`PATH`, `HOME` and the runtime dirs):
//!
//! - `create`: consecutive `victor task start -- true` and `pueue add -- true`, one of each in
//!   turn, each timed from spawn to exit (and its CPU, from `getrusage`).
//! - `show`: `victor task show ID` and `pueue status --json` (pueue's only way to read a task)
//!   on servers holding `--held` finished tasks each. victor's are run through its API; pueue's
//!   state file is written with that many copies of a finished task while `pueued` is stopped,
//!   since `pueue add` rewrites the whole state file every time, which makes building 10,000
//!   tasks take hours.
//! - `wait`: a task that prints the time and ends 100 ms after it starts, and `victor task wait`
//!   / `pueue wait` started beside it: from the time it printed to the wait's exit.
//! - `follow`: a task printing the time 20 times a second, followed by `victor task logs -f` /
//!   `pueue follow`: from the time in a line to the line on the follower's stdout.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use victor::client::Client;
use victor::proto::{Command as TaskCommand, CreateTask, ExecSpec, TaskSpec, TaskState};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/common/launch.rs"]
mod launch;
use cpu::{MachineCpu, cpu_secs};
use launch::{Launch, Launched, server_binary};

#[derive(Debug, Parser)]
#[command(
    about = "victor's client calls side by side with pueue's (loopback and Unix sockets only)"
)]
struct Cli {
    /// The victor binary [default: the one built beside this example, else
    /// target/release/victor].
    #[arg(long, env = "VICTOR_BIN")]
    server: Option<PathBuf>,
    /// The directory holding `pueue` and `pueued` [default: PATH, then ~/.cargo/bin].
    #[arg(long)]
    pueue_dir: Option<PathBuf>,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "create,show,wait,follow")]
    only: Vec<Scenario>,
    /// Calls measured per client in `create` and `show`.
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// Finished tasks each server holds in `show`.
    #[arg(long, default_value_t = 10_000)]
    held: usize,
    /// Tasks waited for per client in `wait`.
    #[arg(long, default_value_t = 10)]
    waits: usize,
    /// Lines the followed task prints (20 a second).
    #[arg(long, default_value_t = 100)]
    lines: usize,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Create,
    Show,
    Wait,
    Follow,
}

/// A whole run can never take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Calls of each client before the measured ones (the binaries into the page cache).
const WARM_UP: usize = 5;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let deadline = Instant::now() + RUN_LIMIT;
    let victor_bin = server_binary(cli.server.as_deref())?;
    let pueue = PueueBins::find(cli.pueue_dir.as_deref())?;
    let mut report = Report {
        victor: version_of(&victor_bin)?,
        pueue: version_of(&pueue.client)?,
        binary: Binary::of(&victor_bin)?,
        rows: Vec::new(),
        follow_p50_target_ms: 2.0,
    };
    for scenario in &cli.only {
        if Instant::now() > deadline {
            bail!("the run took longer than {}s", RUN_LIMIT.as_secs());
        }
        eprintln!("{scenario:?}...");
        let rows = match scenario {
            Scenario::Create => create(&cli, &victor_bin, &pueue)?,
            Scenario::Show => show(&cli, &victor_bin, &pueue)?,
            Scenario::Wait => wait(&cli, &victor_bin, &pueue)?,
            Scenario::Follow => follow(&cli, &victor_bin, &pueue)?,
        };
        report.rows.extend(rows);
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// `--version`'s line.
fn version_of(binary: &Path) -> Result<String> {
    let out = Command::new(binary).arg("--version").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The release binary, as built and stripped.
#[derive(Debug, Serialize)]
struct Binary {
    path: String,
    bytes: u64,
    stripped_bytes: Option<u64>,
}

impl Binary {
    fn of(path: &Path) -> Result<Binary> {
        let stripped = tempfile::NamedTempFile::new()?;
        let stripped_bytes = Command::new("strip")
            .arg("-o")
            .arg(stripped.path())
            .arg(path)
            .status()
            .ok()
            .filter(|status| status.success())
            .and_then(|_| std::fs::metadata(stripped.path()).ok())
            .map(|meta| meta.len());
        Ok(Binary {
            path: path.display().to_string(),
            bytes: std::fs::metadata(path)?.len(),
            stripped_bytes,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The two servers and their clients

/// What a script's shell would pass on: no more, so that neither client carries (and pueue
/// stores with every task) the benchmark's own environment.
fn small_environment(command: &mut Command) {
    command.env_clear();
    for key in ["PATH", "HOME", "TMPDIR", "XDG_RUNTIME_DIR", "LANG"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.stdin(Stdio::null());
}

struct Victor {
    binary: PathBuf,
    launched: Launched,
}

impl Victor {
    fn start(binary: &Path, args: &[&str]) -> Result<Victor> {
        let launched = Launch::new(binary).unlimited().args(args).start()?;
        Ok(Victor {
            binary: binary.to_path_buf(),
            launched,
        })
    }

    /// `victor` pointed at this server by its URL alone, as a script on this machine would be.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        small_environment(&mut command);
        command
            .env("VICTOR_SERVER", &self.launched.url)
            .env("VICTOR_CONFIG", self.launched.home.join("config.toml"))
            .env("NO_COLOR", "1");
        command
    }

    /// How its client reaches it: the Unix socket it announced, or TCP.
    fn way(&self) -> &'static str {
        let address = self.launched.url.trim_start_matches("http://").parse();
        match address.ok().and_then(victor::serve::announced_socket) {
            Some(_) => "Unix socket",
            None => "TCP",
        }
    }

    fn client(&self) -> Result<Client> {
        Ok(Client::new(&self.launched.url, None)?)
    }

    fn cpu(&self) -> f64 {
        cpu_secs(&self.launched.pid().to_string()).unwrap_or(f64::NAN)
    }

    /// Stops it the way its tasks get stopped too (SIGTERM, then their grace period).
    fn stop(mut self) {
        self.launched.terminate(Duration::from_secs(20));
    }
}

/// Where `pueue` and `pueued` are.
struct PueueBins {
    client: PathBuf,
    daemon: PathBuf,
}

impl PueueBins {
    fn find(given: Option<&Path>) -> Result<PueueBins> {
        let cargo_bin = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
            .map(|home| home.join("bin"));
        let dirs: Vec<PathBuf> = match given {
            Some(dir) => vec![dir.to_path_buf()],
            None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .chain(cargo_bin)
                .collect(),
        };
        let find = |name: &str| {
            dirs.iter()
                .map(|dir| dir.join(name))
                .find(|path| path.is_file())
                .with_context(|| {
                    format!("no `{name}`: install it with `cargo install pueue --locked`")
                })
        };
        Ok(PueueBins {
            client: find("pueue")?,
            daemon: find("pueued")?,
        })
    }
}

/// A `pueued` of its own: config, state, logs and socket in a temporary directory.
struct Pueue {
    home: tempfile::TempDir,
    client: PathBuf,
    daemon_bin: PathBuf,
    daemon: Option<Child>,
}

impl Pueue {
    fn start(bins: &PueueBins) -> Result<Pueue> {
        // Short: a Unix socket's path has to fit in 108 bytes.
        let home = tempfile::Builder::new().prefix("pq").tempdir()?;
        let root = home.path();
        let config = format!(
            "shared:\n  pueue_directory: {state}\n  runtime_directory: {run}\n  \
             use_unix_socket: true\n  unix_socket_path: {run}/pueue.sock\n",
            state = root.join("state").display(),
            run = root.join("run").display(),
        );
        std::fs::write(root.join("pueue.yml"), config)?;
        // pueued makes its state directory but not its runtime one.
        std::fs::create_dir(root.join("run"))?;
        let mut pueue = Pueue {
            home,
            client: bins.client.clone(),
            daemon_bin: bins.daemon.clone(),
            daemon: None,
        };
        pueue.start_daemon()?;
        Ok(pueue)
    }

    fn config(&self) -> PathBuf {
        self.home.path().join("pueue.yml")
    }

    fn start_daemon(&mut self) -> Result<()> {
        let child = Command::new(&self.daemon_bin)
            .arg("-c")
            .arg(self.config())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start pueued")?;
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.command().arg("status").output()?.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("pueued did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.client);
        small_environment(&mut command);
        command.arg("-c").arg(self.config());
        command
    }

    fn cpu(&self) -> f64 {
        self.daemon
            .as_ref()
            .and_then(|child| cpu_secs(&child.id().to_string()).ok())
            .unwrap_or(f64::NAN)
    }

    /// Ends its tasks and the daemon.
    fn stop_daemon(&mut self) {
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let _ = self.command().args(["kill", "--all"]).output();
        let _ = self.command().arg("shutdown").output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Pueue {
    fn drop(&mut self) {
        self.stop_daemon();
    }
}

// ---------------------------------------------------------------------------------------------
// Timing calls

/// One client call: its wall time and its CPU time (user + system).
#[derive(Debug, Clone, Copy)]
struct Call {
    wall: Duration,
    cpu: Duration,
}

/// CPU time of the children waited for so far.
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return Duration::ZERO;
    };
    let of = |time: nix::sys::time::TimeVal| {
        Duration::from_secs(time.tv_sec().max(0) as u64)
            + Duration::from_micros(time.tv_usec().max(0) as u64)
    };
    of(usage.user_time()) + of(usage.system_time())
}

/// Runs a client to its end; it must succeed.
fn timed(command: &mut Command) -> Result<(Output, Call)> {
    let cpu_before = children_cpu();
    let start = Instant::now();
    let output = command.output().context("cannot run the client")?;
    let wall = start.elapsed();
    let cpu = children_cpu().saturating_sub(cpu_before);
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            command,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((output, Call { wall, cpu }))
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i128)
}

/// A shell loop printing the time in nanoseconds, `lines` times, `every` apart, after `head`.
fn stamps(head: &str, lines: usize, every: &str) -> String {
    format!("sleep {head}; for i in $(seq {lines}); do date +%s%N; sleep {every}; done")
}

/// The time stamp (nanoseconds since the epoch) a line holds, if it is one.
fn stamp_of(line: &str) -> Option<i128> {
    line.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// One measured thing for both clients.
#[derive(Debug, Serialize)]
struct Row {
    scenario: Scenario,
    what: String,
    victor: Summary,
    pueue: Summary,
    /// How the victor client reached its server.
    victor_way: String,
    /// Server CPU per call, ms (victor, pueue), where it means something.
    server_cpu_ms: Option<(f64, f64)>,
    /// CPU other processes used meanwhile, % of the machine.
    other_pct: Option<f64>,
}

impl Row {
    /// A row of latencies (ms) measured apart from the clients' CPU: (victor's, pueue's).
    fn latency(
        scenario: Scenario,
        what: String,
        (ours, theirs): (Vec<f64>, Vec<f64>),
        victor: &Victor,
        machine: MachineCpu,
    ) -> Row {
        Row {
            scenario,
            what,
            victor: Summary::of(ours, None),
            pueue: Summary::of(theirs, None),
            victor_way: victor.way().to_string(),
            server_cpu_ms: None,
            other_pct: machine.others_pct_since(0.0),
        }
    }
}

/// Milliseconds.
#[derive(Debug, Serialize)]
struct Summary {
    samples: usize,
    p50: f64,
    p90: f64,
    mean: f64,
    max: f64,
    /// Client CPU per call (user + system), p50.
    cpu_p50: Option<f64>,
}

impl Summary {
    fn of(mut ms: Vec<f64>, cpu_ms: Option<Vec<f64>>) -> Summary {
        ms.sort_by(f64::total_cmp);
        let at = |values: &[f64], q: f64| {
            if values.is_empty() {
                f64::NAN
            } else {
                values[((values.len() - 1) as f64 * q).round() as usize]
            }
        };
        let cpu_p50 = cpu_ms.map(|mut cpu| {
            cpu.sort_by(f64::total_cmp);
            at(&cpu, 0.5)
        });
        Summary {
            samples: ms.len(),
            p50: at(&ms, 0.5),
            p90: at(&ms, 0.9),
            mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
            max: ms.last().copied().unwrap_or(f64::NAN),
            cpu_p50,
        }
    }

    fn of_calls(calls: &[Call]) -> Summary {
        Summary::of(
            calls.iter().map(|call| ms(call.wall)).collect(),
            Some(calls.iter().map(|call| ms(call.cpu)).collect()),
        )
    }
}

/// CPU seconds both clients' calls used together.
fn clients_cpu_secs(ours: &[Call], theirs: &[Call]) -> f64 {
    ours.iter()
        .chain(theirs)
        .map(|call| call.cpu.as_secs_f64())
        .sum()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Calls `victor` and `pueue` in turn, `calls` times each after the warm-up.
fn side_by_side(
    calls: usize,
    mut victor: impl FnMut() -> Result<Call>,
    mut pueue: impl FnMut() -> Result<Call>,
) -> Result<(Vec<Call>, Vec<Call>)> {
    for _ in 0..WARM_UP {
        victor()?;
        pueue()?;
    }
    let mut ours = Vec::with_capacity(calls);
    let mut theirs = Vec::with_capacity(calls);
    for _ in 0..calls {
        ours.push(victor()?);
        theirs.push(pueue()?);
    }
    Ok((ours, theirs))
}

fn create(cli: &Cli, victor_bin: &Path, bins: &PueueBins) -> Result<Vec<Row>> {
    let victor = Victor::start(victor_bin, &[])?;
    let pueue = Pueue::start(bins)?;
    let machine = MachineCpu::now();
    let (victor_cpu, pueue_cpu) = (victor.cpu(), pueue.cpu());
    let (ours, theirs) = side_by_side(
        cli.calls,
        || Ok(timed(victor.command().args(["task", "start", "--", "true"]))?.1),
        || Ok(timed(pueue.command().args(["add", "--", "true"]))?.1),
    )?;
    let per_call = |now: f64, before: f64| (now - before) * 1000.0 / (cli.calls + WARM_UP) as f64;
    let server_cpu_ms = (
        per_call(victor.cpu(), victor_cpu),
        per_call(pueue.cpu(), pueue_cpu),
    );
    let row = Row {
        scenario: Scenario::Create,
        what: format!(
            "{} consecutive task creations: `victor task start -- true` / `pueue add -- true`",
            cli.calls
        ),
        victor: Summary::of_calls(&ours),
        pueue: Summary::of_calls(&theirs),
        victor_way: victor.way().to_string(),
        server_cpu_ms: Some(server_cpu_ms),
        other_pct: machine.others_pct_since(clients_cpu_secs(&ours, &theirs)),
    };
    victor.stop();
    Ok(vec![row])
}

fn show(cli: &Cli, victor_bin: &Path, bins: &PueueBins) -> Result<Vec<Row>> {
    let victor = Victor::start(victor_bin, &["--max-concurrent", "8"])?;
    let ids = hold_victor_tasks(&victor, cli.held)?;
    let pueue = Pueue::start(bins)?;
    let pueue = hold_pueue_tasks(pueue, cli.held)?;
    let machine = MachineCpu::now();
    let mut next = 0;
    let (ours, theirs) = side_by_side(
        cli.calls,
        || {
            // A different task each time, spread over the whole range.
            next = (next + 7919) % ids.len();
            Ok(timed(victor.command().args(["task", "show", &ids[next]]))?.1)
        },
        || {
            let (output, call) = timed(pueue.command().args(["status", "--json"]))?;
            let state: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            let held = state["tasks"].as_object().map_or(0, |tasks| tasks.len());
            if held != cli.held {
                bail!("pueue status listed {held} tasks, not {}", cli.held);
            }
            Ok(call)
        },
    )?;
    let row = Row {
        scenario: Scenario::Show,
        what: format!(
            "`victor task show ID` / `pueue status --json`, {} calls, {} finished tasks held",
            cli.calls, cli.held
        ),
        victor: Summary::of_calls(&ours),
        pueue: Summary::of_calls(&theirs),
        victor_way: victor.way().to_string(),
        server_cpu_ms: None,
        other_pct: machine.others_pct_since(clients_cpu_secs(&ours, &theirs)),
    };
    victor.stop();
    Ok(vec![row])
}

/// Runs `held` tasks of `true` to their end on the server; their ids.
fn hold_victor_tasks(victor: &Victor, held: usize) -> Result<Vec<String>> {
    let client = victor.client()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let request = CreateTask {
            name: None,
            priority: 0,
            requires: Vec::new(),
            spec: TaskSpec::Exec(ExecSpec {
                command: TaskCommand::Argv(vec!["true".into()]),
                cwd: None,
                env: Default::default(),
                timeout_secs: None,
                stdin: None,
                keep_stdin_open: false,
                max_output_bytes: None,
            }),
        };
        let created: Vec<Result<String>> = stream::iter(0..held)
            .map(|_| async {
                Ok(client
                    .create_task(&request, None)
                    .await
                    .context("create a task")?
                    .id)
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let ids = created.into_iter().collect::<Result<Vec<String>>>()?;
        let deadline = Instant::now() + Duration::from_secs(20 * 60);
        loop {
            let status = client.status().await?;
            let count = |state| status.tasks.get(&state).copied().unwrap_or(0);
            if count(TaskState::Succeeded) as usize == held {
                return Ok(ids);
            }
            if Instant::now() > deadline {
                bail!(
                    "victor did not finish {held} tasks in 20 minutes: {:?}",
                    status.tasks
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Makes `pueue` hold `held` finished tasks: one task run for real, then, with the daemon
/// stopped, its state file holding that many copies of it.
fn hold_pueue_tasks(mut pueue: Pueue, held: usize) -> Result<Pueue> {
    timed(pueue.command().args(["add", "--", "true"]))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let (output, _) = timed(pueue.command().args(["status", "--json"]))?;
        let state: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        if state["tasks"]["0"]["status"]["Done"].is_object() {
            break state;
        }
        if Instant::now() > deadline {
            bail!("pueue's task did not finish: {state}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    pueue.stop_daemon();
    let path = pueue.home.path().join("state/state.json");
    let mut saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let done = state["tasks"]["0"].clone();
    let mut tasks = serde_json::Map::new();
    for id in 0..held {
        let mut task = done.clone();
        task["id"] = id.into();
        tasks.insert(id.to_string(), task);
    }
    saved["tasks"] = tasks.into();
    std::fs::write(&path, serde_json::to_string(&saved)?)?;
    pueue.start_daemon()?;
    Ok(pueue)
}

fn wait(cli: &Cli, victor_bin: &Path, bins: &PueueBins) -> Result<Vec<Row>> {
    let victor = Victor::start(victor_bin, &[])?;
    let pueue = Pueue::start(bins)?;
    let script = "sleep 0.1; date +%s%N";
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let machine = MachineCpu::now();
    for _ in 0..cli.waits {
        let (out, _) = timed(
            victor
                .command()
                .args(["task", "start", "--", "sh", "-c", script]),
        )?;
        let id = stdout_of(&out);
        timed(victor.command().args(["task", "wait", &id]))?;
        let returned = unix_nanos();
        let (log, _) = timed(victor.command().args(["task", "logs", &id]))?;
        ours.push(end_to_return(&stdout_of(&log), returned)?);

        let (out, _) = timed(
            pueue
                .command()
                .args(["add", "--print-task-id", "--", script]),
        )?;
        let id = stdout_of(&out);
        timed(pueue.command().args(["wait", "--quiet", &id]))?;
        let returned = unix_nanos();
        let (log, _) = timed(pueue.command().args(["log", "--json", &id]))?;
        let log: serde_json::Value = serde_json::from_slice(&log.stdout)?;
        let output = log[&id]["output"].as_str().unwrap_or_default();
        theirs.push(end_to_return(output, returned)?);
    }
    let row = Row::latency(
        Scenario::Wait,
        "`task wait` / `pueue wait` on a task that ends 100 ms after it starts: from its end to the wait's exit".into(),
        (ours, theirs),
        &victor,
        machine,
    );
    victor.stop();
    Ok(vec![row])
}

/// Milliseconds from the time stamped in a task's last line to `returned`.
fn end_to_return(output: &str, returned: i128) -> Result<f64> {
    let stamp = output
        .lines()
        .filter_map(stamp_of)
        .next_back()
        .with_context(|| format!("no time stamp in {output:?}"))?;
    Ok((returned - stamp) as f64 / 1e6)
}

fn follow(cli: &Cli, victor_bin: &Path, bins: &PueueBins) -> Result<Vec<Row>> {
    let victor = Victor::start(victor_bin, &[])?;
    let pueue = Pueue::start(bins)?;
    // 1.5 s for the follower to be there before the first line.
    let script = stamps("1.5", cli.lines, "0.05");
    let machine = MachineCpu::now();
    let (out, _) = timed(
        victor
            .command()
            .args(["task", "start", "--", "sh", "-c", &script]),
    )?;
    let id = stdout_of(&out);
    let ours = delays(
        victor.command().args(["task", "logs", "-f", &id]),
        cli.lines,
    )?;
    let (out, _) = timed(
        pueue
            .command()
            .args(["add", "--print-task-id", "--", &script]),
    )?;
    let id = stdout_of(&out);
    let theirs = delays(pueue.command().args(["follow", &id]), cli.lines)?;
    let row = Row::latency(
        Scenario::Follow,
        format!(
            "follow latency, a task printing 20 lines a second ({} lines): `victor task logs -f` / `pueue follow`",
            cli.lines
        ),
        (ours, theirs),
        &victor,
        machine,
    );
    victor.stop();
    Ok(vec![row])
}

/// Runs a follower until it has printed `lines` time stamps (or it ends); each line's delay
/// from its stamp to its arrival on the follower's stdout, ms.
fn delays(command: &mut Command, lines: usize) -> Result<Vec<f64>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the follower")?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let reader = std::thread::spawn(move || {
        let mut delays = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let arrived = unix_nanos();
            if let Some(stamp) = stamp_of(&line) {
                delays.push((arrived - stamp) as f64 / 1e6);
                if delays.len() == lines {
                    break;
                }
            }
        }
        delays
    });
    // The task takes 1.5 s and 50 ms a line; the follower gets as long again to end.
    let deadline = Instant::now() + Duration::from_millis(3_000 + 100 * lines as u64);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let delays = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))?;
    if delays.len() != lines {
        bail!("the follower printed {} of {lines} lines", delays.len());
    }
    Ok(delays)
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Debug, Serialize)]
struct Report {
    victor: String,
    pueue: String,
    binary: Binary,
    rows: Vec<Row>,
    follow_p50_target_ms: f64,
}

fn print_report(report: &Report) {
    println!("{} vs {}", report.victor, report.pueue);
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    println!(
        "binary {}: {} ({} stripped)\n",
        report.binary.path,
        mib(report.binary.bytes),
        report.binary.stripped_bytes.map_or("-".into(), mib)
    );
    println!(
        "| scenario | client | p50 ms | p90 ms | mean ms | max ms | client CPU p50 ms | victor / pueue (p50, mean) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for row in &report.rows {
        let cpu = |summary: &Summary| {
            summary
                .cpu_p50
                .map_or("-".into(), |cpu| format!("{cpu:.2}"))
        };
        for (name, summary) in [("victor", &row.victor), ("pueue", &row.pueue)] {
            let ratio = if name == "victor" {
                format!(
                    "{:.2} / {:.2}",
                    row.victor.p50 / row.pueue.p50,
                    row.victor.mean / row.pueue.mean
                )
            } else {
                String::new()
            };
            println!(
                "| {:?} | {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {ratio} |",
                row.scenario,
                summary.p50,
                summary.p90,
                summary.mean,
                summary.max,
                cpu(summary)
            );
        }
    }
    println!();
    for row in &report.rows {
        println!(
            "{:?}: {}; victor over {}{}{}",
            row.scenario,
            row.what,
            row.victor_way,
            row.server_cpu_ms
                .map_or(String::new(), |(ours, theirs)| format!(
                    "; server CPU per call {ours:.2} ms (victor) / {theirs:.2} ms (pueued)"
                )),
            row.other_pct.map_or(String::new(), |pct| format!(
                "; other processes {pct:.0} % of the machine"
            )),
        );
    }
    println!();
    for row in &report.rows {
        let met = row.victor.p50 <= row.pueue.p50 && row.victor.mean <= row.pueue.mean;
        let follow_met =
            row.scenario != Scenario::Follow || row.victor.p50 < report.follow_p50_target_ms;
        println!(
            "target {:?}: at most pueue's time{}: {}",
            row.scenario,
            if row.scenario == Scenario::Follow {
                ", and under 2 ms p50"
            } else {
                ""
            },
            if met && follow_met { "met" } else { "NOT met" }
        );
    }
}
