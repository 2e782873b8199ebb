//! `victor repl`: code run in an interpreter session on a victor server. On a terminal, an
//! interactive console (line editing, history, multi-line input, output as it comes, `input()`
//! answered inline, Ctrl-C interrupting the code and never the session); for scripts, `--exec`
//! runs code and exits 1 with the traceback on stderr when it raises.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use clap::Args;
use owo_colors::OwoColorize;
use rustyline::error::ReadlineError;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::config;
use super::output::Exit;
use super::task::{Connection, with_client_hinting};
use crate::client::{Client, Topic};
use crate::proto::{
    CreateSession, Event, ExecuteRequest, ExecutionDisplay, ExecutionError, ExecutionFinished,
    ExecutionOutput, ExecutionResult, ExecutionStatus, InputAnswer, InputRequested, KernelReady,
    MimeBundle, OutputStream, SessionSpec, TaskState,
};

#[derive(Debug, Args)]
pub struct ReplArgs {
    #[command(flatten)]
    connection: Connection,
    /// The Jupyter kernel of a new session (`victor repl --kernels` lists them)
    /// [default: the server's, python3].
    #[arg(long, value_name = "NAME", conflicts_with = "session")]
    kernel: Option<String>,
    /// Use this open session (its variables are there) instead of starting one.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// Run this code and exit (`-`: read it from stdin): 0 when it ran, 1 when it raised.
    #[arg(long, value_name = "CODE")]
    exec: Option<String>,
    /// Keep the session this command started open when it exits, and print its id.
    #[arg(long)]
    keep: bool,
    /// Print the execution's events as NDJSON instead of its output.
    #[arg(long)]
    json: bool,
    /// List the kernels installed on the server.
    #[arg(long, conflicts_with_all = ["exec", "session", "kernel"])]
    kernels: bool,
}

/// The history of interactive consoles, in the data dir.
const HISTORY_FILE: &str = "repl_history";
const SESSIONS_HINT: &str = "list sessions with `victor task list`";

pub async fn run(args: ReplArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    let settings = config::load(config_file, &args.connection)?;
    let history = settings
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir)
        .join(HISTORY_FILE);
    // Listening before anything runs: a Ctrl-C from now on interrupts the code.
    let interrupts = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    with_client_hinting(
        &args.connection,
        config_file,
        SESSIONS_HINT,
        async |client| {
            if args.kernels {
                return list_kernels(&client, args.json).await;
            }
            let code = match args.exec.as_deref() {
                Some("-") => Some(read_stdin()?),
                Some(code) => Some(code.to_string()),
                None if !std::io::stdin().is_terminal() => Some(read_stdin()?),
                None => None,
            };
            let (session, started) = open(&client, &args).await?;
            let mut repl = Repl {
                client: &client,
                session: session.clone(),
                interrupts,
                json: args.json,
            };
            let exit = match code {
                Some(code) => repl.run_code(&code).await,
                None => repl.interactive(&history).await,
            };
            if started {
                if args.keep {
                    anstream::eprintln!("session {session} stays open (--session {session})");
                } else if let Err(e) = client.close_session(&session).await {
                    tracing::debug!(error = %e, "the session could not be closed");
                }
            }
            exit
        },
    )
    .await
}

fn read_stdin() -> anyhow::Result<String> {
    let mut code = String::new();
    std::io::stdin()
        .read_to_string(&mut code)
        .context("cannot read the code from stdin")?;
    Ok(code)
}

async fn list_kernels(client: &Client, json: bool) -> anyhow::Result<Exit> {
    let kernels = client.kernels().await?;
    if json {
        super::task::print_json(&kernels)?;
    } else if kernels.is_empty() {
        anstream::eprintln!(
            "no Jupyter kernel is installed on the server; for Python: python3 -m pip install ipykernel"
        );
    } else {
        for kernel in kernels {
            println!(
                "{:<16} {} ({})",
                kernel.name, kernel.display_name, kernel.language
            );
        }
    }
    Ok(Exit::Success)
}

/// The session to use, and whether this command started it.
async fn open(client: &Client, args: &ReplArgs) -> anyhow::Result<(String, bool)> {
    if let Some(id) = &args.session {
        return Ok((id.clone(), false));
    }
    let cwd = client
        .is_on_this_machine()
        .then(|| {
            std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string())
        })
        .flatten();
    let task = client
        .create_session(&CreateSession {
            name: None,
            spec: SessionSpec {
                kernel: args.kernel.clone(),
                cwd,
                ..SessionSpec::default()
            },
        })
        .await?;
    // Ready when its kernel is: its first `session.ready` event, or its end.
    let mut follow = client.follow(Topic::Task(task.id.clone()), None);
    while let Some(event) = follow.next().await {
        let event = event?;
        if event.decode::<KernelReady>().is_some() {
            return Ok((task.id, true));
        }
    }
    let task = client.get_task(&task.id).await?;
    let why = task
        .result
        .and_then(|r| r.error)
        .unwrap_or_else(|| format!("it is {}", task.state));
    bail!("the session could not start: {why}")
}

struct Repl<'a> {
    client: &'a Client,
    session: String,
    interrupts: Signal,
    json: bool,
}

/// How an execution ended, for the console.
struct Ran {
    status: ExecutionStatus,
}

impl Repl<'_> {
    /// Runs code once, for scripts.
    async fn run_code(&mut self, code: &str) -> anyhow::Result<Exit> {
        let ran = self.execute(code).await?;
        Ok(match ran.status {
            ExecutionStatus::Ok => Exit::Success,
            _ => Exit::Task(1),
        })
    }

    /// The console: a cell is one line, or several when the first ends with `:` or `\` (an
    /// empty line ends it), until Ctrl-D.
    async fn interactive(&mut self, history: &Path) -> anyhow::Result<Exit> {
        let mut editor = rustyline::DefaultEditor::new().context("cannot set up line editing")?;
        let _ = editor.load_history(history);
        anstream::eprintln!(
            "{} · session {}\n{}",
            "victor repl".bold(),
            self.session,
            "Ctrl-C interrupts the code; Ctrl-D leaves".dimmed(),
        );
        let exit = loop {
            let mut cell = String::new();
            let mut prompt = ">>> ";
            let line = loop {
                match tokio::task::block_in_place(|| editor.readline(prompt)) {
                    Ok(line) => {
                        let more = !cell.is_empty() && !line.trim().is_empty()
                            || line.trim_end().ends_with([':', '\\']);
                        cell.push_str(&line);
                        cell.push('\n');
                        if !more {
                            break Ok(());
                        }
                        prompt = "... ";
                    }
                    Err(e) => break Err(e),
                }
            };
            match line {
                Ok(()) => {}
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break Exit::Success,
                Err(e) => return Err(e).context("cannot read the line"),
            }
            if cell.trim().is_empty() {
                continue;
            }
            let _ = editor.add_history_entry(cell.trim_end());
            match self.execute(&cell).await {
                Ok(_) => {}
                Err(e) => {
                    anstream::eprintln!("{} {e:#}", "error:".red().bold());
                    if self.client.get_task(&self.session).await?.state.is_final() {
                        break Exit::Refused;
                    }
                }
            }
        };
        if let Some(dir) = history.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(history);
        Ok(exit)
    }

    /// Runs code in the session and prints its events as they come, until it ends. Ctrl-C
    /// interrupts it; a request for input is answered from this terminal (or stdin).
    async fn execute(&mut self, code: &str) -> anyhow::Result<Ran> {
        let queued = self
            .client
            .execute(&self.session, &ExecuteRequest::new(code))
            .await?;
        let mut follow = self
            .client
            .follow(Topic::Task(self.session.clone()), Some(queued.seq - 1));
        loop {
            let event = tokio::select! {
                event = follow.next() => event,
                _ = self.interrupts.recv() => {
                    if let Err(e) = self.client.interrupt_session(&self.session).await {
                        anstream::eprintln!("{} {e}", "error:".red().bold());
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                let task = self.client.get_task(&self.session).await?;
                let state = if task.state == TaskState::Running {
                    "gone".to_string()
                } else {
                    task.state.to_string()
                };
                bail!("the session ended ({state}) before the code did");
            };
            let event = event?;
            if let Some(finished) = event.decode::<ExecutionFinished>()
                && finished.execution_id == queued.id
            {
                self.show(&event)?;
                return Ok(Ran {
                    status: finished.status,
                });
            }
            if let Some(request) = event.decode::<InputRequested>()
                && request.execution_id == queued.id
            {
                self.show(&event)?;
                let value = read_answer(&request)?;
                self.client
                    .answer_input(
                        &self.session,
                        &InputAnswer {
                            value,
                            input_id: Some(request.input_id),
                        },
                    )
                    .await?;
                continue;
            }
            if belongs_to(&event, &queued.id) {
                self.show(&event)?;
            }
        }
    }

    /// Prints one event of the execution: its NDJSON line, or what a person reads.
    fn show(&self, event: &Event) -> anyhow::Result<()> {
        if self.json {
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer(&mut stdout, event)?;
            stdout.write_all(b"\n")?;
            return Ok(());
        }
        if let Some(output) = event.decode::<ExecutionOutput>() {
            write_stream(output.stream, &output.text)?;
        } else if let Some(display) = event.decode::<ExecutionDisplay>() {
            println!("{}", describe(&display.data));
        } else if let Some(result) = event.decode::<ExecutionResult>() {
            println!("{}", describe(&result.data));
        } else if let Some(error) = event.decode::<ExecutionError>() {
            let traceback = if error.traceback.is_empty() {
                format!("{}: {}", error.name, error.value)
            } else {
                error.traceback.join("\n")
            };
            // Kernels colour their tracebacks; anstream drops the colours off a terminal.
            let mut err = anstream::stderr().lock();
            writeln!(err, "{traceback}")?;
            err.flush()?;
        } else if let Some(finished) = event.decode::<ExecutionFinished>() {
            let note = match finished.status {
                ExecutionStatus::Ok | ExecutionStatus::Error => None,
                ExecutionStatus::KernelDied => Some("the kernel died; a new one has started"),
                ExecutionStatus::Interrupted => Some("interrupted"),
                ExecutionStatus::TimedOut => Some("timed out"),
                ExecutionStatus::Aborted => Some("aborted"),
                ExecutionStatus::Queued | ExecutionStatus::Running => None,
            };
            if let Some(note) = note {
                anstream::eprintln!("{}", format!("({note})").dimmed());
            }
        }
        Ok(())
    }
}

/// Whether an event is one of the execution's.
fn belongs_to(event: &Event, execution: &str) -> bool {
    event
        .data
        .get("execution_id")
        .and_then(|id| id.as_str())
        .is_some_and(|id| id == execution)
}

fn write_stream(stream: OutputStream, text: &str) -> anyhow::Result<()> {
    match stream {
        OutputStream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        OutputStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes())?;
            err.flush()?;
        }
    }
    Ok(())
}

/// What a terminal shows of a MIME bundle: its text, or a one-line placeholder for what it
/// cannot draw (an image with its size).
fn describe(bundle: &MimeBundle) -> String {
    let binary = bundle
        .iter()
        .find(|(mime, _)| mime.starts_with("image/") || mime.starts_with("video/"));
    if let Some((mime, value)) = binary {
        let size = value.as_str().map_or(0, |data| data.len() * 3 / 4);
        return format!("[{mime}, {size} bytes]");
    }
    match bundle.get("text/plain").and_then(|text| text.as_str()) {
        Some(text) => text.to_string(),
        None => {
            let kinds: Vec<&str> = bundle.keys().map(String::as_str).collect();
            format!("[{}]", kinds.join(", "))
        }
    }
}

/// Reads the answer to an `input()` from the terminal (hidden for a password) or stdin.
fn read_answer(request: &InputRequested) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let mut editor = rustyline::DefaultEditor::new().context("cannot read input")?;
        let line = tokio::task::block_in_place(|| editor.readline(&request.prompt));
        return line.context("no answer to the input request");
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{}", request.prompt);
    let _ = stderr.flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the answer to the input request")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
