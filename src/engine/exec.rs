//! The `exec` kind: a command and the processes it starts, their output turned into `output`
//! events, and the controls (cancel, pause, resume, input) applied to all of them. The task
//! ends when its main process has exited and its output has closed (or gone quiet); what it
//! left running then is terminated.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{Instant, sleep};

use super::process::{
    OutputSink, Processes, Pumps, QUIET_AFTER_EXIT, SpawnError, Stdin, StdinRefused, until,
};
use super::runner::{Context, Control, Incoming, Log, Runner, Steer, Stop, encode};
use super::{Engine, EngineConfig, EngineError, error_result};
use crate::proto::{
    Command, ExecSpec, InputData, OutputData, OutputStream, TaskResult, TaskState, TruncatedData,
};

/// The runner of `exec` tasks.
#[derive(Default)]
pub(super) struct Exec;

#[async_trait]
impl Runner for Exec {
    type Spec = ExecSpec;

    fn accepts(&self, control: &Control) -> bool {
        matches!(
            control,
            Control::Pause | Control::Resume | Control::Input(_)
        )
    }

    /// Checks the spec, and fills in the server's default directory when it names none: the
    /// task then says where it ran.
    async fn prepare(&self, engine: &Engine, spec: &mut ExecSpec) -> Result<(), EngineError> {
        let config = engine.config();
        spec.cwd
            .get_or_insert_with(|| config.default_cwd.display().to_string());
        validate(spec, config)
    }

    async fn run(&self, ctx: &mut Context, spec: &ExecSpec) -> Result<(), EngineError> {
        run(ctx, spec).await
    }
}

/// Why victor, not the process, is ending the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Stopped(Stop),
    Timeout,
}

/// A running exec task.
struct Run {
    processes: Processes,
    stdin: Stdin,
    /// When the task times out, moved on by the time it spends paused.
    deadline: Option<Instant>,
    paused_since: Option<Instant>,
    ending: Option<Ending>,
    kill_grace: Duration,
    shutdown_grace: Duration,
}

async fn run(ctx: &mut Context, spec: &ExecSpec) -> Result<(), EngineError> {
    let mut command = match &spec.command {
        Command::Argv(argv) => {
            let mut command = tokio::process::Command::new(&argv[0]);
            command.args(&argv[1..]);
            command
        }
        Command::Shell(script) => {
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg("-c").arg(script);
            command
        }
    };
    command.envs(&spec.env);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let (processes, pipes) = match Processes::spawn(command, ctx.id(), true) {
        Ok(started) => started,
        Err(e) => {
            let reason = match e {
                SpawnError::Io(e) => {
                    let program = match &spec.command {
                        Command::Argv(argv) => argv[0].as_str(),
                        Command::Shell(_) => "/bin/sh",
                    };
                    format!("cannot start `{program}`: {e}")
                }
                untracked @ SpawnError::Untracked => untracked.to_string(),
            };
            return ctx
                .finish(TaskState::Failed, error_result(&reason), &reason)
                .await;
        }
    };
    let config = ctx.engine().config();
    // Capped as well as validated: a task queued before a restart with a lower limit gets the
    // new one.
    let limit = spec
        .max_output_bytes
        .map_or(config.max_output_bytes, |asked| {
            asked.min(config.max_output_bytes)
        });
    let mut run = Run {
        processes,
        stdin: Stdin::start(pipes.stdin),
        deadline: spec
            .timeout_secs
            .map(|secs| Instant::now() + Duration::from_secs_f64(secs)),
        paused_since: None,
        ending: None,
        kill_grace: config.kill_grace,
        shutdown_grace: config.shutdown_grace,
    };
    if let Err(e) = ctx.start(Some(run.processes.pid())).await {
        // Unrecorded, the processes must not run on: nobody could see or stop them.
        run.processes.kill().await;
        let _ = run.processes.wait().await;
        return Err(e);
    }
    if let Some(text) = &spec.stdin {
        let _ = run
            .stdin
            .write(text.as_bytes().to_vec(), !spec.keep_stdin_open);
    }
    let mut pumps = Pumps::start(
        pipes.stdout,
        pipes.stderr,
        OutputEvents(ctx.log().clone()),
        limit,
    );

    let status = loop {
        let kill_at = run.processes.kill_at();
        tokio::select! {
            status = run.processes.wait() => break status,
            Some(incoming) = ctx.next() => run.answer(ctx, incoming).await,
            () = until(run.deadline), if run.times_out(ctx) => run.time_out().await,
            () = until(kill_at) => run.processes.kill().await,
        }
    };

    // The main process has exited; what it started goes on for as long as its output does.
    while run.ending.is_none() {
        let seen = pumps.activity();
        tokio::select! {
            () = pumps.finished() => break,
            () = sleep(QUIET_AFTER_EXIT), if !ctx.is_paused() => {
                if pumps.activity() == seen {
                    break;
                }
            }
            Some(incoming) = ctx.next() => run.answer(ctx, incoming).await,
            () = until(run.deadline), if run.times_out(ctx) => run.time_out().await,
        }
    }
    let leftovers = run.processes.end_leftovers(run.grace(run.ending)).await;
    pumps.drain().await;

    let (state, result, reason) = match status {
        Err(e) => {
            let reason = format!("lost track of the process: {e}");
            (TaskState::Failed, error_result(&reason), reason)
        }
        Ok(status) => {
            let mut result = TaskResult {
                exit_code: status.code(),
                signal: status.signal(),
                leftover_processes: leftovers,
                ..TaskResult::default()
            };
            match run.ending {
                Some(Ending::Stopped(Stop::Shutdown)) => {
                    let reason = "the server shut down while the task was running".to_string();
                    result.error = Some(reason.clone());
                    (TaskState::Interrupted, result, reason)
                }
                Some(Ending::Stopped(Stop::Cancel)) => {
                    (TaskState::Cancelled, result, "cancelled".to_string())
                }
                Some(Ending::Timeout) => {
                    result.timed_out = true;
                    let secs = spec.timeout_secs.unwrap_or_default();
                    (
                        TaskState::Failed,
                        result,
                        format!("timed out after {secs}s"),
                    )
                }
                None if status.success() => (TaskState::Succeeded, result, String::new()),
                None => (TaskState::Failed, result, String::new()),
            }
        }
    };
    ctx.finish(state, result, &reason).await
}

impl Run {
    /// Whether the timeout may fire now: not while paused, and not once the task is ending.
    fn times_out(&self, ctx: &Context) -> bool {
        self.deadline.is_some() && !ctx.is_paused() && self.ending.is_none()
    }

    async fn time_out(&mut self) {
        self.end(Ending::Timeout).await;
    }

    /// Between SIGTERM and SIGKILL, for an ending.
    fn grace(&self, ending: Option<Ending>) -> Duration {
        match ending {
            Some(Ending::Stopped(Stop::Shutdown)) => self.shutdown_grace,
            _ => self.kill_grace,
        }
    }

    /// Starts ending the task: SIGTERM now, SIGKILL after the grace period.
    async fn end(&mut self, why: Ending) {
        self.ending.get_or_insert(why);
        self.processes.terminate(self.grace(Some(why))).await;
    }

    async fn answer(&mut self, ctx: &mut Context, incoming: Incoming) {
        match incoming {
            Incoming::Stop(stop) => self.end(Ending::Stopped(stop)).await,
            Incoming::Control(steer) => {
                let answer = self.steer(ctx, &steer).await;
                steer.answer(answer);
            }
        }
    }

    async fn steer(&mut self, ctx: &mut Context, steer: &Steer) -> Result<(), EngineError> {
        let ending = self.ending.is_some();
        match &steer.control {
            Control::Pause if ctx.is_paused() || ending => Err(ctx.wrong_state("pause")),
            Control::Pause => {
                // Stopped before the record says so: nothing runs in a task shown paused.
                self.processes.pause().await;
                let since = Instant::now();
                let recorded = ctx.pause().await;
                match recorded {
                    Ok(()) => self.paused_since = Some(since),
                    // Not recorded: the task goes on running, as its record says.
                    Err(_) => self.processes.resume().await,
                }
                recorded
            }
            Control::Resume if !ctx.is_paused() || ending => Err(ctx.wrong_state("resume")),
            Control::Resume => {
                // Recorded first: when that fails, the processes stay stopped, as the record
                // says.
                ctx.resume().await?;
                self.processes.resume().await;
                if let (Some(since), Some(deadline)) =
                    (self.paused_since.take(), self.deadline.as_mut())
                {
                    *deadline += since.elapsed();
                }
                Ok(())
            }
            Control::Input(input) => {
                match self.stdin.write(input.text.as_bytes().to_vec(), input.eof) {
                    Ok(()) => {
                        let data = InputData {
                            bytes: input.text.len() as u64,
                            eof: input.eof,
                        };
                        ctx.append(&data).await
                    }
                    Err(StdinRefused::Full) => Err(EngineError::StdinFull(ctx.id().to_string())),
                    Err(StdinRefused::Closed) => {
                        Err(EngineError::StdinClosed(ctx.id().to_string()))
                    }
                }
            }
            Control::Guidance(_) => Err(steer.unsupported()),
        }
    }
}

/// Output as `output` events, and the `truncated` event where the budget cut it.
pub(super) struct OutputEvents(pub(super) Log);

#[async_trait]
impl OutputSink for OutputEvents {
    async fn deliver(&self, stream: OutputStream, kept: &[u8], cut_at: Option<u64>) {
        let mut events = Vec::with_capacity(2);
        if !kept.is_empty() {
            let data = OutputData {
                stream,
                text: String::from_utf8_lossy(kept).into_owned(),
            };
            events.push(encode(&data));
        }
        if let Some(limit_bytes) = cut_at {
            events.push(encode(&TruncatedData { limit_bytes }));
        }
        let written = match events.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(events) => self.0.append_encoded(events).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::error!(task = %self.0.task_id(), error = %e, "cannot record output");
        }
    }
}

/// Refuses specs that could never run, or that ask for more than the server allows, with a
/// message that says what to change.
fn validate(spec: &ExecSpec, config: &EngineConfig) -> Result<(), EngineError> {
    let invalid = |message: String| Err(EngineError::Invalid(message));
    match &spec.command {
        Command::Argv(argv) => {
            if argv.first().is_none_or(|program| program.is_empty()) {
                return invalid("spec.command must name a program: [\"cargo\", \"test\"]".into());
            }
            if argv.iter().any(|arg| arg.contains('\0')) {
                return invalid("spec.command arguments must not contain NUL".into());
            }
        }
        Command::Shell(script) => {
            if script.trim().is_empty() {
                return invalid("spec.command must not be empty".into());
            }
            if script.contains('\0') {
                return invalid("spec.command must not contain NUL".into());
            }
        }
    }
    if let Some(cwd) = &spec.cwd
        && !Path::new(cwd).is_dir()
    {
        return invalid(format!("spec.cwd `{cwd}` is not a directory on the server"));
    }
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return invalid(format!(
                "spec.env key `{key}` is not a valid variable name (no `=`, no NUL, not empty)"
            ));
        }
        if value.contains('\0') {
            return invalid(format!(
                "spec.env value of `{key}` contains a NUL byte, which no environment can hold"
            ));
        }
    }
    if let Some(timeout) = spec.timeout_secs
        && !(timeout.is_finite() && timeout > 0.0 && timeout < 1e9)
    {
        return invalid("spec.timeout_secs must be a positive number of seconds".into());
    }
    match spec.max_output_bytes {
        Some(0) => return invalid("spec.max_output_bytes must be at least 1".into()),
        // The budget protects the server's disk: a client may lower it, never raise it.
        Some(asked) if asked > config.max_output_bytes => {
            return invalid(format!(
                "spec.max_output_bytes {asked} is above this server's limit of {} bytes \
                 (--max-output-bytes); ask for at most that, or leave it out",
                config.max_output_bytes
            ));
        }
        _ => {}
    }
    Ok(())
}
