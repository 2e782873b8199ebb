//! The `victor` command: clap definitions and dispatch. Each subcommand parses, calls the client
//! (or the server), and prints for people or, with `--json`, for scripts.

mod chat;
pub mod config;
mod keys;
mod mcp;
mod output;
mod remote;
mod render;
mod repl;
mod serve;
mod task;
mod watch;

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

pub use output::Exit;

/// victor: a networked task server for AI coding work.
///
/// `victor serve` runs tasks in the background on this machine and keeps every event they
/// produce in a durable, ordered log; the other commands are its clients.
#[derive(Debug, Parser)]
#[command(
    name = "victor",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Settings file (default: config.toml in the platform's config dir, e.g. ~/.config/victor).
    #[arg(long, global = true, env = "VICTOR_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the task server on this machine.
    Serve(Box<serve::ServeArgs>),
    /// Start, follow and steer tasks on a victor server (built for scripts: --json, exit codes).
    Task(Box<task::TaskArgs>),
    /// Watch tasks live: a table of them, their logs, and keys to steer them (NDJSON when piped).
    ///
    /// On a terminal: the server and the connection, the tasks by state, a table of tasks, the
    /// open task's log, and the keys that apply. ↑↓ (j k) move and scroll, Enter opens a log,
    /// Esc goes back, p pauses, r resumes, c cancels, x removes, i sends a line of input, /
    /// filters the table (searches the log), ? lists every key, q quits. It reconnects by itself
    /// for as long as it runs. When stdout is not a terminal it prints the events as NDJSON
    /// instead: every task's from now on, or with ID that task's whole log, ending with it.
    Watch(watch::WatchArgs),
    /// Chat with the server's models: interactively on a terminal, or one question for scripts.
    ///
    /// `victor chat "question"` (or `echo question | victor chat`) prints only the reply as it
    /// streams and exits 0; --json prints the whole reply as one object. Without a question on
    /// a terminal: an interactive session with line editing, history, and slash commands
    /// (/help lists them). Conversations are kept on the server: --continue picks up the last
    /// one, --session ID a given one.
    Chat(chat::ChatArgs),
    /// Run code in an interpreter session (a Jupyter kernel on the server that keeps its state).
    ///
    /// On a terminal: an interactive console with line editing and history; a line ending in
    /// `:` or `\` starts a multi-line cell, which an empty line ends; Ctrl-C interrupts the
    /// running code (the session and its variables stay); Ctrl-D leaves. For scripts:
    /// `victor repl --exec CODE` (or code on stdin) prints the output and exits 1 with the
    /// traceback on stderr when the code raises; --json prints the events as NDJSON. A session
    /// the command starts is closed when it exits, unless --keep; --session ID uses an open one.
    Repl(repl::ReplArgs),
    /// Create, list and revoke scoped API keys (read, control, admin).
    Keys(keys::KeysArgs),
    /// Keep servers on other machines under a name, pinned to their TLS certificate.
    Remote(remote::RemoteArgs),
    /// Render diagrams (Graphviz, PlantUML, Mermaid, D2, draw.io) to SVG, here or on a server.
    Render(render::RenderArgs),
    /// Serve MCP on stdio for an assistant, forwarded to a victor server (--server URL or a
    /// remote's name).
    ///
    /// For assistants that launch MCP servers as commands: `"command": "victor", "args":
    /// ["mcp", "--server", "lab"]`. The tools (start, follow and steer tasks, agents, chat,
    /// diagrams) are the server's, under this key's scope; a stream cut by the network is
    /// resumed from the task's log.
    Mcp(mcp::McpArgs),
    /// Print shell completions (or write every shell's with --dir).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(required_unless_present = "dir")]
        shell: Option<Shell>,
        /// Write the completions of every shell into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the manual page (or write all of them with --dir).
    Man {
        /// Write a page per command into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Whether the command writes to a terminal user who may close the pipe early.
pub fn is_client_command(cli: &Cli) -> bool {
    !matches!(cli.command, Command::Serve(_))
}

/// Whether the command needs the async runtime's worker threads: the server, and the terminal
/// views that draw or read a line while the network goes on (`watch`, an interactive `chat`,
/// `repl`'s console, which reads its lines in `block_in_place`). Every other command is a
/// client that makes a request or follows a stream, which one thread serves without starting
/// any other.
pub fn needs_worker_threads(cli: &Cli) -> bool {
    matches!(
        cli.command,
        Command::Serve(_) | Command::Watch(_) | Command::Chat(_) | Command::Repl(_)
    )
}

/// Runs the command and gives the process exit code.
pub async fn run(cli: Cli) -> Result<Exit, anyhow::Error> {
    match cli.command {
        Command::Serve(args) => serve::run(*args, cli.config.as_deref()).await,
        Command::Task(args) => task::run(*args, cli.config.as_deref()).await,
        Command::Watch(args) => watch::run(args, cli.config.as_deref()).await,
        Command::Chat(args) => chat::run(args, cli.config.as_deref()).await,
        Command::Repl(args) => repl::run(args, cli.config.as_deref()).await,
        Command::Keys(args) => keys::run(args, cli.config.as_deref()).await,
        Command::Remote(args) => remote::run(args, cli.config.as_deref()).await,
        Command::Render(args) => render::run(args, cli.config.as_deref()).await,
        Command::Mcp(args) => mcp::run(args, cli.config.as_deref()).await,
        Command::Completions { shell, dir } => {
            write_completions(shell, dir)?;
            Ok(Exit::Success)
        }
        Command::Man { dir } => {
            write_man(dir)?;
            Ok(Exit::Success)
        }
    }
}

/// Every shell completions are generated for, with its file name.
pub const COMPLETION_FILES: [(Shell, &str); 5] = [
    (Shell::Bash, "victor.bash"),
    (Shell::Zsh, "_victor"),
    (Shell::Fish, "victor.fish"),
    (Shell::Elvish, "victor.elv"),
    (Shell::PowerShell, "_victor.ps1"),
];

fn write_completions(shell: Option<Shell>, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (shell, file) in COMPLETION_FILES {
                let mut out = Vec::new();
                clap_complete::generate(shell, &mut command, "victor", &mut out);
                std::fs::write(dir.join(file), out)?;
            }
        }
        None => {
            let shell = shell.unwrap_or(Shell::Bash);
            clap_complete::generate(shell, &mut command, "victor", &mut std::io::stdout());
        }
    }
    Ok(())
}

fn write_man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(command, &dir)?;
        }
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
    }
    Ok(())
}
