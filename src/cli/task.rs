//! `victor task ...`: the client for shell scripts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use owo_colors::OwoColorize;
use serde::Serialize;

use super::config;
use super::output::{
    Exit, Table, ago, cell, elapsed, ellipsize, exit_label, one_line, state_cell, state_label,
    styled, title,
};
use super::remote::Target;
use crate::client::{Client, ClientError, Follow, Topic};
use crate::proto::{
    AgentMessageData, AgentMode, AgentSpec, ApprovalAnswer, ApprovalRequested, ApprovalResolved,
    BudgetExhausted, Command, CreateTask, Decision, Event, ExecSpec, FileChange, Guidance, Input,
    MessageDeltaData, OutputStream, Permission, Task, TaskSpec, TaskState, ToolCallEvent,
    ToolResultEvent, TruncatedData, agent_types, types,
};

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TaskCommand,
}

/// Which server to talk to; each flag also comes from its variable, then config.toml.
#[derive(Debug, Args, Serialize)]
pub(super) struct Connection {
    /// Server URL, or the name of a server kept with `victor remote add`
    /// [default: http://127.0.0.1:8765].
    #[arg(long, global = true, env = "VICTOR_SERVER", value_name = "URL|NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    /// API key, when the server requires one (overrides a remote's). For a server given by
    /// URL, VICTOR_API_KEY and `api_key` in config.toml are used too; a remote gets only its own
    /// key or this flag, never the key this machine's server may be using.
    #[arg(long, global = true, value_name = "KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    /// Data dir of a server on this machine: its Unix socket there needs no key
    /// [default: the platform's data dir].
    #[arg(long, global = true, env = "VICTOR_DATA_DIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<std::path::PathBuf>,
}

impl Connection {
    /// A connection from a command that spells these flags its own way (`victor render`).
    pub(super) fn new(
        server: Option<String>,
        api_key: Option<String>,
        data_dir: Option<std::path::PathBuf>,
    ) -> Connection {
        Connection {
            server,
            api_key,
            data_dir,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Start a task and print its id.
    Start(StartArgs),
    /// Start a task, stream its output here, and exit with its exit code. Ctrl-C cancels it.
    Run {
        #[command(flatten)]
        start: StartArgs,
        /// Ctrl-C leaves the task running instead of cancelling it.
        #[arg(long)]
        detach: bool,
    },
    /// List tasks, newest first.
    List {
        /// Only tasks in these states (comma-separated: running,queued).
        #[arg(long, value_delimiter = ',')]
        state: Vec<TaskState>,
        /// At most this many tasks.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one task.
    Show { id: String },
    /// Print a task's output (with --json, its events as NDJSON).
    Logs {
        id: String,
        /// Keep following until the task ends.
        #[arg(short, long)]
        follow: bool,
        /// Only events after this seq (Ctrl-C on -f prints the one to go on from).
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Wait for a task to end and exit with its exit code.
    Wait {
        id: String,
        /// Give up after this long (exit 75): 90, 90s, 5m, 1h.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Cancel a task: SIGTERM, then SIGKILL after the server's grace period.
    Cancel { id: String },
    /// Pause a running task (SIGSTOP to its process group).
    Pause { id: String },
    /// Resume a paused task (SIGCONT).
    Resume { id: String },
    /// Write to a task's stdin: TEXT and a newline, or `-` for this command's own stdin.
    Input {
        id: String,
        /// The text, or `-` to send everything on stdin as is.
        text: Option<String>,
        /// Do not add a newline after TEXT.
        #[arg(short = 'n', long)]
        no_newline: bool,
        /// Close the task's stdin afterwards (it sees end of file).
        #[arg(long)]
        eof: bool,
    },
    /// Delete a finished task and its events.
    Rm { id: String },
    /// Tell a running agent something; it reads it before its next model call.
    Guide {
        id: String,
        /// The message (the words are joined with spaces).
        #[arg(required = true)]
        text: Vec<String>,
    },
    /// List the agents' tool calls waiting for approval (with --all, answered ones too).
    Approvals {
        /// Only this task's.
        task: Option<String>,
        /// Answered and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// Answer an approval: allow this call (default), --always (this tool for the rest of the
    /// task), --deny (with --reason for the agent), or --cancel the task.
    Approve {
        /// The approval's id (`victor task approvals` lists them).
        id: String,
        #[arg(long, conflicts_with_all = ["deny", "cancel"])]
        always: bool,
        #[arg(long, conflicts_with = "cancel")]
        deny: bool,
        #[arg(long)]
        cancel: bool,
        /// Why, for the agent (with --deny).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List an agent's checkpoints: the files each change touched, saved before it.
    Checkpoints { id: String },
    /// Put an agent's workspace back as it was before a checkpoint's change (pause it first
    /// while it runs).
    Rollback { id: String, checkpoint: u32 },
}

#[derive(Debug, Args)]
struct StartArgs {
    /// A name to recognise the task by.
    #[arg(long)]
    name: Option<String>,
    /// Working directory on the server [default: this directory when the server runs on
    /// this machine, else the server's --default-cwd].
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,
    /// Environment variable for the task (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Stop the task after this long running: 90, 90s, 5m, 1h.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Higher runs first when tasks queue.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Run only on a node that has this label (`victor serve --label`; repeatable):
    /// --require gpu.
    #[arg(long = "require", value_name = "LABEL")]
    requires: Vec<String>,
    /// Feed this file to the task's stdin (`-`: this command's stdin), then close it.
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Run the command with /bin/sh -c (automatic for a single argument with spaces).
    #[arg(long)]
    shell: bool,
    /// Retry-safe start: the same key returns the task the first call started.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Start an agent with this prompt instead of a command: a model that works in
    /// --workspace with tools (read, search, edit, run commands), asking before it changes
    /// files or runs commands.
    #[arg(long, value_name = "PROMPT", conflicts_with_all = ["command", "stdin", "shell", "env", "cwd"])]
    agent: Option<String>,
    /// The agent's workspace on the server [default: this directory].
    #[arg(long, value_name = "DIR", requires = "agent")]
    workspace: Option<String>,
    /// build (changes files, runs commands), plan or explore (only read) [default: build].
    #[arg(long, requires = "agent")]
    mode: Option<AgentMode>,
    /// The agent's provider, by the server's name for it.
    #[arg(long, value_name = "NAME", requires = "agent")]
    provider: Option<String>,
    /// The agent's model [default: the provider's].
    #[arg(long, value_name = "MODEL", requires = "agent")]
    model: Option<String>,
    /// Model calls the agent may make [default: 50].
    #[arg(long, value_name = "N", requires = "agent")]
    max_steps: Option<u32>,
    /// What a tool call does: TOOL=allow|ask|deny (repeatable): --approve run_command=allow.
    #[arg(long = "approve", value_name = "TOOL=RULE", requires = "agent")]
    approvals: Vec<String>,
    /// The command and its arguments.
    #[arg(last = true, required_unless_present = "agent", value_name = "CMD")]
    command: Vec<String>,
}

/// Parses "90", "90s", "1.5m", "2h".
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 90, 90s, 5m, 1h)"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` (use ms, s, m or h: 90s, 5m, 1h)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` must be a positive duration"))
}

pub async fn run(args: TaskArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    with_client(&args.connection, config_file, async |client| {
        dispatch(&client, args.command, args.json).await
    })
    .await
}

/// Connects to the server the flags, environment and config name, runs `command` with that
/// client, and turns a client error into its one-line message and exit code.
pub(super) async fn with_client(
    connection: &Connection,
    config_file: Option<&Path>,
    command: impl AsyncFnOnce(Client) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    with_client_hinting(connection, config_file, TASKS_HINT, command).await
}

/// [`with_client`] for a command about something other than tasks: a "not found" gets
/// `not_found_hint`, which says how to list those.
pub(super) async fn with_client_hinting(
    connection: &Connection,
    config_file: Option<&Path>,
    not_found_hint: &'static str,
    command: impl AsyncFnOnce(Client) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    connect(
        connection,
        config_file,
        not_found_hint,
        async |client, _| command(client).await,
    )
    .await
}

/// What a task that is not found suggests.
const TASKS_HINT: &str = "list tasks with `victor task list`";

/// [`with_client`] for a command that also shows which server it talks to: `command` gets the
/// server as the person named it (a remote's name and URL, or the URL).
pub(super) async fn with_target(
    connection: &Connection,
    config_file: Option<&Path>,
    command: impl AsyncFnOnce(Client, String) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    connect(connection, config_file, TASKS_HINT, command).await
}

async fn connect(
    connection: &Connection,
    config_file: Option<&Path>,
    not_found_hint: &'static str,
    command: impl AsyncFnOnce(Client, String) -> anyhow::Result<Exit>,
) -> anyhow::Result<Exit> {
    let settings = config::load(config_file, connection)?;
    let data_dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    let from_env = std::env::var("VICTOR_API_KEY")
        .ok()
        .filter(|key| !key.is_empty());
    let target = Target::resolve(
        &settings.server,
        connection.api_key.clone(),
        connection
            .api_key
            .clone()
            .or(from_env)
            .or(settings.api_key.clone()),
        config_file,
    )?;
    let client = target.client(&data_dir)?;
    command(client, target.label())
        .await
        .or_else(|e| match e.downcast::<ClientError>() {
            Ok(client_error) => {
                report(&client_error, Some(&target), not_found_hint);
                Ok(Exit::of_error(&client_error))
            }
            Err(other) => Err(other),
        })
}

async fn dispatch(client: &Client, command: TaskCommand, json: bool) -> anyhow::Result<Exit> {
    match command {
        TaskCommand::Start(start) => {
            let task = start_task(client, start).await?;
            if json {
                print_json(&task)?;
            } else {
                println!("{}", task.id);
            }
            Ok(Exit::Success)
        }
        TaskCommand::Run { start, detach } => {
            // Listening before the task exists: no Ctrl-C can fall between start and follow.
            let interrupts =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                    .context("cannot listen for Ctrl-C")?;
            let task = start_task(client, start).await?;
            run_attached(client, &task, interrupts, detach, json).await
        }
        TaskCommand::List { state, limit } => list(client, &state, limit, json).await,
        TaskCommand::Show { id } => {
            let task = client.get_task(&id).await?;
            if json {
                print_json(&task)?;
            } else {
                anstream::print!("{}", describe(&task));
            }
            Ok(Exit::Success)
        }
        TaskCommand::Logs { id, follow, after } => logs(client, &id, follow, after, json).await,
        TaskCommand::Wait { id, timeout } => wait(client, &id, timeout, json).await,
        TaskCommand::Cancel { id } => control(client.cancel(&id).await?, "cancel", json),
        TaskCommand::Pause { id } => control(client.pause(&id).await?, "pause", json),
        TaskCommand::Resume { id } => control(client.resume(&id).await?, "resume", json),
        TaskCommand::Input {
            id,
            text,
            no_newline,
            eof,
        } => {
            let text = match text.as_deref() {
                None if !eof => {
                    bail!("give the TEXT to send, `-` for stdin, or --eof to close stdin")
                }
                None => String::new(),
                Some("-") => {
                    let mut all = String::new();
                    std::io::stdin()
                        .read_to_string(&mut all)
                        .context("cannot read stdin")?;
                    all
                }
                Some(text) if no_newline => text.to_string(),
                Some(text) => format!("{text}\n"),
            };
            let task = client.input(&id, &Input { text, eof }).await?;
            if json {
                print_json(&task)?;
            }
            Ok(Exit::Success)
        }
        TaskCommand::Guide { id, text } => {
            let task = client.guide(&id, &text.join(" ")).await?;
            if json {
                print_json(&task)?;
            }
            Ok(Exit::Success)
        }
        TaskCommand::Approvals { task, all } => {
            let status = all.then_some("all");
            let approvals = client.approvals(task.as_deref(), status).await?;
            if json {
                print_json(&approvals)?;
            } else if approvals.is_empty() {
                anstream::eprintln!("nothing waits for approval");
            } else {
                let mut table = Table::new(&["APPROVAL", "TASK", "TOOL", "ARGUMENTS", "STATUS"]);
                for approval in &approvals {
                    table.row(vec![
                        cell(approval.id.clone()),
                        cell(approval.task_id.clone()),
                        cell(approval.tool.clone()),
                        cell(ellipsize(&approval.arguments.to_string(), 60)),
                        cell(format!("{:?}", approval.status).to_lowercase()),
                    ]);
                }
                anstream::print!("{}", table.render());
            }
            Ok(Exit::Success)
        }
        TaskCommand::Approve {
            id,
            always,
            deny,
            cancel,
            reason,
        } => {
            let decision = match (always, deny, cancel) {
                (true, _, _) => Decision::AllowAlways,
                (_, true, _) => Decision::Deny,
                (_, _, true) => Decision::Cancel,
                _ => Decision::AllowOnce,
            };
            let approval = client
                .answer_approval(&id, &ApprovalAnswer { decision, reason })
                .await?;
            if json {
                print_json(&approval)?;
            } else {
                println!("{} {}: {:?}", approval.tool, approval.id, approval.status);
            }
            Ok(Exit::Success)
        }
        TaskCommand::Checkpoints { id } => {
            let checkpoints = client.checkpoints(&id).await?;
            if json {
                print_json(&checkpoints)?;
            } else {
                let mut table = Table::new(&["CHECKPOINT", "FILES", "CREATED"]);
                for checkpoint in &checkpoints {
                    table.row(vec![
                        cell(checkpoint.id.to_string()),
                        cell(checkpoint.files.join(", ")),
                        cell(ago(checkpoint.created_at, Timestamp::now())),
                    ]);
                }
                anstream::print!("{}", table.render());
            }
            Ok(Exit::Success)
        }
        TaskCommand::Rollback { id, checkpoint } => {
            let rolled = client.rollback(&id, checkpoint).await?;
            if json {
                print_json(&rolled)?;
            } else {
                println!("restored {}", rolled.files.join(", "));
            }
            Ok(Exit::Success)
        }
        TaskCommand::Rm { id } => {
            client.delete_task(&id).await?;
            if json {
                print_json(&serde_json::json!({ "id": id, "deleted": true }))?;
            } else {
                println!("removed {id}");
            }
            Ok(Exit::Success)
        }
    }
}

/// Prints a client error with a hint (for a "not found", `not_found_hint`); with the target, in
/// its terms (a remote's name).
fn report(error: &ClientError, target: Option<&Target>, not_found_hint: &str) {
    let hint = match error {
        ClientError::Api { status: 401, .. } => {
            " (set the key with --api-key or VICTOR_API_KEY)".to_string()
        }
        ClientError::Api { status: 404, .. } => format!(" ({not_found_hint})"),
        _ => String::new(),
    };
    let message = target.map_or_else(|| error.to_string(), |target| target.explain(error));
    anstream::eprintln!("{} {message}{hint}", "victor:".red().bold());
}

pub(super) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The request for an agent task.
fn agent_request(start: StartArgs, prompt: String) -> anyhow::Result<CreateTask> {
    let workspace = match start.workspace {
        Some(dir) => dir,
        None => std::env::current_dir()
            .context("cannot tell this directory: give --workspace")?
            .display()
            .to_string(),
    };
    let mut approvals = std::collections::BTreeMap::new();
    for rule in &start.approvals {
        let Some((tool, permission)) = rule.split_once('=') else {
            bail!("--approve takes TOOL=allow|ask|deny, not `{rule}`");
        };
        let permission: Permission =
            serde_json::from_value(serde_json::Value::String(permission.to_string()))
                .map_err(|_| anyhow::anyhow!("`{permission}` is not one of allow, ask, deny"))?;
        approvals.insert(tool.to_string(), permission);
    }
    Ok(CreateTask {
        name: start.name,
        priority: start.priority,
        requires: start.requires,
        spec: TaskSpec::Agent(AgentSpec {
            prompt,
            workspace,
            mode: start.mode.unwrap_or_default(),
            provider: start.provider,
            model: start.model,
            max_steps: start.max_steps,
            timeout_secs: start.timeout.map(|d| d.as_secs_f64()),
            approvals,
            on_unanswered: None,
            approval_timeout_secs: None,
        }),
    })
}

async fn start_task(client: &Client, mut start: StartArgs) -> anyhow::Result<Task> {
    if let Some(prompt) = start.agent.take() {
        let key = start.idempotency_key.clone();
        let request = agent_request(start, prompt)?;
        return Ok(client.create_task(&request, key.as_deref()).await?);
    }
    let mut env = BTreeMap::new();
    for pair in &start.env {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--env takes KEY=VALUE, not `{pair}`");
        };
        env.insert(key.to_string(), value.to_string());
    }
    let one_line = start.command.len() == 1 && start.command[0].contains(char::is_whitespace);
    let command = if start.shell || one_line {
        Command::Shell(start.command.join(" "))
    } else {
        Command::Argv(start.command)
    };
    let stdin = match &start.stdin {
        None => None,
        Some(path) if path.as_os_str() == "-" => {
            let mut all = String::new();
            std::io::stdin()
                .read_to_string(&mut all)
                .context("cannot read stdin")?;
            Some(all)
        }
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
    };
    // As a shell would: `./nightly.sh` means the one here. A server elsewhere cannot see this
    // directory, so it uses its own default.
    let cwd = match start.cwd {
        Some(cwd) => Some(cwd),
        None if client.is_on_this_machine() => Some(
            std::env::current_dir()
                .context("cannot tell this directory: give --cwd")?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let request = CreateTask {
        name: start.name,
        priority: start.priority,
        requires: start.requires,
        spec: TaskSpec::Exec(ExecSpec {
            command,
            cwd,
            env,
            timeout_secs: start.timeout.map(|d| d.as_secs_f64()),
            stdin,
            keep_stdin_open: false,
            max_output_bytes: None,
        }),
    };
    Ok(client
        .create_task(&request, start.idempotency_key.as_deref())
        .await?)
}

/// Streams a task's output here until it ends; Ctrl-C cancels it (or detaches).
async fn run_attached(
    client: &Client,
    task: &Task,
    mut interrupts: tokio::signal::unix::Signal,
    detach: bool,
    json: bool,
) -> anyhow::Result<Exit> {
    let mut follow = client.follow(Topic::Task(task.id.clone()), None);
    let mut cancelling = false;
    loop {
        let event = tokio::select! {
            event = follow.next() => event,
            _ = interrupts.recv() => {
                if detach {
                    anstream::eprintln!(
                        "detached: task {} keeps running (follow it with `victor task logs -f {}`)",
                        task.id, task.id
                    );
                    return Ok(Exit::Success);
                }
                if cancelling {
                    anstream::eprintln!("leaving task {} to finish cancelling", task.id);
                    return Ok(Exit::Task(Exit::CANCELLED));
                }
                cancelling = true;
                anstream::eprintln!("cancelling task {} (Ctrl-C again to stop waiting)", task.id);
                if let Err(e) = client.cancel(&task.id).await {
                    report(&e, None, TASKS_HINT);
                }
                continue;
            }
        };
        match event {
            None => break,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(event)) => print_event(&event, json)?,
        }
    }
    let task = client.get_task(&task.id).await?;
    if !json {
        explain_ending(&task);
    }
    Ok(Exit::of_task(&task))
}

/// One line on stderr when a task ended for a reason its own output does not show.
fn explain_ending(task: &Task) {
    let result = task.result.clone().unwrap_or_default();
    let why = match task.state {
        TaskState::Cancelled => Some("cancelled".to_string()),
        TaskState::Interrupted => Some(format!(
            "interrupted: {}",
            result.error.as_deref().unwrap_or("the server stopped")
        )),
        TaskState::Failed if result.timed_out => Some("timed out".to_string()),
        TaskState::Failed if result.exit_code.is_none() && result.signal.is_none() => {
            result.error.clone()
        }
        TaskState::Failed if result.exit_code.is_none() => {
            result.signal.map(|s| format!("killed by signal {s}"))
        }
        _ => None,
    };
    if let Some(why) = why {
        anstream::eprintln!("{} task {}: {why}", "victor:".yellow().bold(), task.id);
    }
}

/// Writes an event: output text to stdout or stderr, or with `json` the envelope as a line.
fn print_event(event: &Event, json: bool) -> anyhow::Result<()> {
    if event.seq == 0 {
        return Ok(());
    }
    if json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, event)?;
        stdout.write_all(b"\n")?;
        return Ok(());
    }
    if let Some(output) = event.output() {
        match output.stream {
            OutputStream::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(output.text.as_bytes())?;
                stdout.flush()?;
            }
            OutputStream::Stderr => {
                let mut stderr = std::io::stderr().lock();
                stderr.write_all(output.text.as_bytes())?;
                stderr.flush()?;
            }
        }
    } else if let Some(line) = agent_line(event) {
        if matches!(
            event.kind.as_str(),
            agent_types::MESSAGE_DELTA | agent_types::MESSAGE
        ) {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(line.as_bytes())?;
            stdout.flush()?;
        } else {
            anstream::eprintln!("{line}");
        }
    } else if let Some(TruncatedData { limit_bytes: limit }) = event.decode() {
        anstream::eprintln!(
            "{}",
            format!("[victor: output truncated at {limit} bytes; the rest was dropped]").dimmed()
        );
    }
    Ok(())
}

/// How an agent's event reads in `task run` and `task logs`: the model's words on stdout, its
/// tools, changes and approvals on stderr.
fn agent_line(event: &Event) -> Option<String> {
    Some(match event.kind.as_str() {
        agent_types::MESSAGE_DELTA => event.decode::<MessageDeltaData>()?.text,
        agent_types::MESSAGE => {
            let content = event.decode::<AgentMessageData>()?.message.content;
            if content.is_empty() || content.ends_with('\n') {
                return None;
            }
            // The streamed words end without a newline; what follows starts on its own line.
            "\n".to_string()
        }
        agent_types::TOOL_CALL => {
            let call: ToolCallEvent = event.decode()?;
            format!("→ {} {}", call.name, call.arguments)
                .dimmed()
                .to_string()
        }
        agent_types::TOOL_RESULT => {
            let result: ToolResultEvent = event.decode()?;
            let first = result.output.lines().next().unwrap_or_default();
            let more = result.output.lines().count().saturating_sub(1);
            let tail = if more > 0 {
                format!(" (+{more} lines)")
            } else {
                String::new()
            };
            let line = format!("← {}: {first}{tail}", result.name);
            if result.error {
                line.red().to_string()
            } else {
                line.dimmed().to_string()
            }
        }
        agent_types::FILE_CHANGED => event.decode::<FileChange>()?.diff,
        agent_types::APPROVAL_REQUESTED => {
            let ApprovalRequested { approval } = event.decode()?;
            format!(
                "approval needed for {} {}: `victor task approve {}` (or --always, --deny)",
                approval.tool, approval.arguments, approval.id
            )
            .yellow()
            .to_string()
        }
        agent_types::APPROVAL_RESOLVED => {
            let ApprovalResolved { approval } = event.decode()?;
            format!("approval {}: {}", approval.tool, approval.status.as_str())
                .dimmed()
                .to_string()
        }
        agent_types::GUIDANCE_RECEIVED => {
            let Guidance { text } = event.decode()?;
            format!("guidance: {text}").dimmed().to_string()
        }
        agent_types::BUDGET_EXHAUSTED => {
            let BudgetExhausted { budget, .. } = event.decode()?;
            format!("the {budget} budget ran out").yellow().to_string()
        }
        _ => return None,
    })
}

async fn list(
    client: &Client,
    states: &[TaskState],
    limit: usize,
    json: bool,
) -> anyhow::Result<Exit> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    while tasks.len() < limit {
        let page = client
            .list_tasks(states, (limit - tasks.len()).min(1000), cursor.as_deref())
            .await?;
        tasks.extend(page.tasks);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if json {
        print_json(&tasks)?;
        return Ok(Exit::Success);
    }
    if tasks.is_empty() {
        anstream::eprintln!("no tasks (start one with `victor task start -- CMD`)");
        return Ok(Exit::Success);
    }
    let now = Timestamp::now();
    // Which node ran each task matters once there are several (servers sharing a store).
    let nodes: std::collections::BTreeSet<&str> =
        tasks.iter().filter_map(|t| t.node.as_deref()).collect();
    let with_node = nodes.len() > 1;
    let mut headers = vec!["ID", "STATE", "EXIT", "CREATED", "ELAPSED"];
    if with_node {
        headers.push("NODE");
    }
    headers.push("COMMAND");
    let mut table = Table::new(&headers);
    for task in &tasks {
        let mut row = vec![
            cell(task.id.clone()),
            state_cell(task.state),
            cell(exit_label(task)),
            styled(
                ago(task.created_at, now),
                ago(task.created_at, now).dimmed().to_string(),
            ),
            cell(elapsed(task, now)),
        ];
        if with_node {
            row.push(cell(task.node.clone().unwrap_or_default()));
        }
        row.push(cell(ellipsize(&title(task), 60)));
        table.row(row);
    }
    anstream::print!("{}", table.render());
    Ok(Exit::Success)
}

/// `show`: one field a line, each value on one line as written (see [`one_line`]): names,
/// commands, environments, prompts and errors hold what a client chose.
fn describe(task: &Task) -> String {
    let now = Timestamp::now();
    let mut lines = vec![("id", task.id.clone()), ("state", state_label(task.state))];
    if let Some(name) = &task.name {
        lines.push(("name", name.clone()));
    }
    lines.push(("kind", task.spec.kind().to_string()));
    lines.extend(task.spec.of_kind().details());
    if task.priority != 0 {
        lines.push(("priority", task.priority.to_string()));
    }
    if !task.requires.is_empty() {
        lines.push(("requires", task.requires.join(", ")));
    }
    if let Some(node) = &task.node {
        lines.push(("node", node.clone()));
    }
    if let Some(waiting) = &task.waiting {
        lines.push(("waiting", waiting.clone()));
    }
    lines.push((
        "created",
        format!("{} ({})", task.created_at, ago(task.created_at, now)),
    ));
    if let Some(started) = task.started_at {
        lines.push(("started", started.to_string()));
    }
    if let Some(finished) = task.finished_at {
        lines.push(("finished", finished.to_string()));
    }
    lines.push(("elapsed", elapsed(task, now)));
    if let Some(result) = &task.result {
        lines.push(("exit", exit_label(task)));
        if let Some(error) = &result.error {
            lines.push(("error", error.clone()));
        }
        if result.leftover_processes > 0 {
            lines.push((
                "leftovers",
                format!(
                    "{} process(es) still running after the command exited were ended",
                    result.leftover_processes
                ),
            ));
        }
    }
    lines.push(("events", task.last_seq.to_string()));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in lines {
        out.push_str(&format!("{:width$}  {}\n", key.bold(), one_line(&value)));
    }
    out
}

async fn logs(
    client: &Client,
    id: &str,
    follow: bool,
    after: u64,
    json: bool,
) -> anyhow::Result<Exit> {
    if follow {
        // Run again, the command prints the log from the start again, as a script expects;
        // stopped with Ctrl-C, it says how to pick up where it stopped.
        let mut interrupts =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("cannot listen for Ctrl-C")?;
        let mut stream: Follow = client.follow(Topic::Task(id.to_string()), Some(after));
        let mut last = after;
        loop {
            let event = tokio::select! {
                event = stream.next() => event,
                _ = interrupts.recv() => {
                    anstream::eprintln!(
                        "stopped after event {last}; go on from there with \
                         `victor task logs -f {id} --after {last}`"
                    );
                    return Ok(Exit::Stopped);
                }
            };
            let Some(event) = event else {
                return Ok(Exit::Success);
            };
            let event = event?;
            print_event(&event, json)?;
            last = last.max(event.seq);
        }
    }
    // Pages are capped by count and by size: only an empty page is the end.
    let mut cursor = after;
    loop {
        let events = client.events(id, cursor, 10_000).await?;
        let Some(last) = events.last() else {
            return Ok(Exit::Success);
        };
        cursor = last.seq;
        for event in &events {
            print_event(event, json)?;
        }
    }
}

async fn wait(
    client: &Client,
    id: &str,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<Exit> {
    let task = client.get_task(id).await?;
    let after = task.last_seq.saturating_sub(1);
    let mut stream = client
        .follow(Topic::Task(id.to_string()), Some(after))
        .types(&[types::STATE]);
    let until_end = async {
        while let Some(event) = stream.next().await {
            event?;
        }
        Ok::<(), ClientError>(())
    };
    match timeout {
        Some(limit) => match tokio::time::timeout(limit, until_end).await {
            Ok(ended) => ended?,
            Err(_) => {
                if !json {
                    anstream::eprintln!("task {id} is still going after {limit:?}");
                }
                return Ok(Exit::StillRunning);
            }
        },
        None => until_end.await?,
    }
    let task = client.get_task(id).await?;
    if json {
        print_json(&task)?;
    }
    Ok(Exit::of_task(&task))
}

fn control(task: Task, action: &str, json: bool) -> anyhow::Result<Exit> {
    if json {
        print_json(&task)?;
    } else {
        let note = match (action, task.state) {
            ("cancel", state) if !state.is_final() => " (stopping: SIGTERM sent)",
            _ => "",
        };
        anstream::println!("{}  {}{note}", task.id, state_label(task.state));
    }
    Ok(Exit::Success)
}
