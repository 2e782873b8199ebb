//! The `exec` runner: a command in its own process group, its output turned into `output`
//! events, and the controls (cancel, pause, resume, input) applied to the whole group.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::{Control, ControlMsg, Engine, EngineError, error_result, to_value};
use crate::proto::{
    Command, ExecSpec, InputData, OutputData, OutputStream, Task, TaskResult, TaskState,
    TruncatedData, types,
};
use crate::store::SharedStore;

/// Bytes read from a pipe at a time, and the most text one `output` event carries.
const CHUNK: usize = 16 * 1024;
/// How long a line without its newline (a prompt) waits for more before it is sent as is.
const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(10);
/// After the process exits, how long its pipes may stay open (held by something it started)
/// before the rest of its process group is killed.
const PIPE_DRAIN: Duration = Duration::from_millis(500);
/// Writes waiting for a task's stdin before `input` answers "busy".
const STDIN_QUEUE: usize = 64;

/// Variables of the server's environment that hold its secrets, kept from tasks.
const SERVER_SECRETS: [&str; 3] = [
    "VICTOR_API_KEY",
    "VICTOR_SERVER_API_KEY",
    "VICTOR_SERVER_SESSION_SECRET",
];

/// Why victor, not the process, is ending the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Cancel,
    Timeout,
    Shutdown,
}

/// Runs the task to its end and records every step. Errors are the store's: the task's own
/// failures (it cannot start, it exits non-zero) are results, not errors.
pub(super) async fn run(
    engine: &Arc<Engine>,
    task: &Task,
    spec: &ExecSpec,
    mut inbox: mpsc::Receiver<ControlMsg>,
) -> Result<(), EngineError> {
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
    // The server's secrets are not the task's business.
    for secret in SERVER_SECRETS {
        command.env_remove(secret);
    }
    command
        .envs(&spec.env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let program = match &spec.command {
                Command::Argv(argv) => argv[0].clone(),
                Command::Shell(_) => "/bin/sh".to_string(),
            };
            let reason = format!("cannot start `{program}`: {e}");
            engine
                .finish(&task.id, TaskState::Failed, error_result(&reason), &reason)
                .await?;
            return Ok(());
        }
    };
    // A pid of 0 would make every signal below hit victor's own process group.
    let Some(pid) = child.id().filter(|&pid| pid > 0) else {
        let reason = "the process exited before victor could track it".to_string();
        engine
            .finish(&task.id, TaskState::Failed, error_result(&reason), &reason)
            .await?;
        return Ok(());
    };
    let group = Pid::from_raw(pid as i32);
    let signal_group = |signal: Signal| send_signal(group, signal);

    if let Err(e) = engine
        .change_state(
            &task.id,
            TaskState::Running,
            &[TaskState::Queued],
            Some(pid),
        )
        .await
    {
        // Unrecorded, the process must not run on: nobody could see or stop it.
        signal_group(Signal::SIGKILL);
        let _ = child.wait().await;
        return Err(e);
    }

    let stdin = child.stdin.take().map(|pipe| {
        let (writes, queue) = mpsc::channel(STDIN_QUEUE);
        tokio::spawn(feed_stdin(pipe, queue));
        writes
    });
    let mut stdin = stdin;
    if let (Some(text), Some(writes)) = (&spec.stdin, &stdin) {
        let _ = writes.try_send((text.as_bytes().to_vec(), !spec.keep_stdin_open));
        if !spec.keep_stdin_open {
            stdin = None;
        }
    }

    let output = Arc::new(OutputBudget {
        store: engine.store().clone(),
        task_id: task.id.clone(),
        // Capped as well as validated: a task queued before a restart with a lower limit
        // gets the new one.
        limit: spec
            .max_output_bytes
            .map_or(engine.config.max_output_bytes, |asked| {
                asked.min(engine.config.max_output_bytes)
            }),
        used: AtomicU64::new(0),
        truncated: AtomicBool::new(false),
        read: AtomicU64::new(0),
    });
    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            stdout,
            OutputStream::Stdout,
            output.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(
            stderr,
            OutputStream::Stderr,
            output.clone(),
        )));
    }

    let far_future = || Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut deadline = spec
        .timeout_secs
        .map(|secs| Instant::now() + Duration::from_secs_f64(secs));
    let mut paused_since: Option<Instant> = None;
    let mut ending: Option<Ending> = None;
    let mut kill_at: Option<Instant> = None;
    let terminate = |why: Ending,
                     grace: Duration,
                     paused: bool,
                     ending: &mut Option<Ending>,
                     kill_at: &mut Option<Instant>| {
        signal_group(Signal::SIGTERM);
        if paused {
            signal_group(Signal::SIGCONT);
        }
        ending.get_or_insert(why);
        kill_at.get_or_insert(Instant::now() + grace);
    };

    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some((control, reply)) = inbox.recv() => {
                let paused = paused_since.is_some();
                let state = if paused { TaskState::Paused } else { TaskState::Running };
                let wrong_state = || EngineError::WrongState {
                    id: task.id.clone(),
                    state,
                    action: control.action(),
                };
                let answer = match control {
                    Control::Cancel => {
                        terminate(Ending::Cancel, engine.config.kill_grace, paused, &mut ending, &mut kill_at);
                        Ok(())
                    }
                    Control::Shutdown => {
                        terminate(Ending::Shutdown, engine.config.shutdown_grace, paused, &mut ending, &mut kill_at);
                        Ok(())
                    }
                    Control::Pause if paused || ending.is_some() => Err(wrong_state()),
                    Control::Pause => {
                        signal_group(Signal::SIGSTOP);
                        paused_since = Some(Instant::now());
                        engine
                            .change_state(&task.id, TaskState::Paused, &[TaskState::Running], None)
                            .await
                            .map(drop)
                    }
                    Control::Resume if !paused || ending.is_some() => Err(wrong_state()),
                    Control::Resume => {
                        signal_group(Signal::SIGCONT);
                        if let (Some(since), Some(deadline)) = (paused_since.take(), deadline.as_mut()) {
                            *deadline += since.elapsed();
                        }
                        engine
                            .change_state(&task.id, TaskState::Running, &[TaskState::Paused], None)
                            .await
                            .map(drop)
                    }
                    Control::Guidance(_) => Err(EngineError::Unsupported {
                        action: "guide",
                        kind: "exec",
                    }),
                    Control::Input(input) => match &stdin {
                        Some(writes) if !writes.is_closed() => {
                            let bytes = input.text.len() as u64;
                            match writes.try_send((input.text.into_bytes(), input.eof)) {
                                Ok(()) => {
                                    if input.eof {
                                        stdin = None;
                                    }
                                    let data = InputData { bytes, eof: input.eof };
                                    engine
                                        .store()
                                        .append(&task.id, vec![(types::INPUT, to_value(&data))])
                                        .await
                                        .map(drop)
                                        .map_err(EngineError::from)
                                }
                                Err(_) => Err(EngineError::StdinFull(task.id.clone())),
                            }
                        }
                        _ => Err(EngineError::StdinClosed(task.id.clone())),
                    },
                };
                let _ = reply.send(answer);
            }
            _ = sleep_until(deadline.unwrap_or_else(far_future)),
                if deadline.is_some() && paused_since.is_none() && ending.is_none() =>
            {
                terminate(Ending::Timeout, engine.config.kill_grace, false, &mut ending, &mut kill_at);
            }
            _ = sleep_until(kill_at.unwrap_or_else(far_future)), if kill_at.is_some() => {
                signal_group(Signal::SIGKILL);
                kill_at = None;
            }
        }
    };

    // Let the pipes drain for as long as output keeps coming; when they go quiet while held
    // open by something the process left behind, that is part of the task and goes with it.
    let mut killed = false;
    loop {
        // A finished handle is never awaited twice (that would panic).
        pumps.retain(|pump| !pump.is_finished());
        let read_before = output.read.load(Ordering::Relaxed);
        let all_done = async {
            for pump in &mut pumps {
                let _ = pump.await;
            }
        };
        if tokio::time::timeout(PIPE_DRAIN, all_done).await.is_ok() {
            break;
        }
        if output.read.load(Ordering::Relaxed) != read_before {
            continue;
        }
        if killed {
            for pump in &pumps {
                pump.abort();
            }
            break;
        }
        signal_group(Signal::SIGKILL);
        killed = true;
    }

    let (state, result, reason) = match status {
        Err(e) => {
            let reason = format!("lost track of the process: {e}");
            (TaskState::Failed, error_result(&reason), reason)
        }
        Ok(status) => {
            let mut result = TaskResult {
                exit_code: status.code(),
                signal: status.signal(),
                ..TaskResult::default()
            };
            match ending {
                Some(Ending::Shutdown) => {
                    let reason = "the server shut down while the task was running".to_string();
                    result.error = Some(reason.clone());
                    (TaskState::Interrupted, result, reason)
                }
                Some(Ending::Cancel) => (TaskState::Cancelled, result, "cancelled".to_string()),
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
    engine.finish(&task.id, state, result, &reason).await?;
    Ok(())
}

/// After a crash of the server, ends the process group a task was running in, if it still
/// runs. The pid is trusted only if its process leads its own group and started when the task
/// did, so a recycled pid is left alone.
pub(super) fn kill_leftover(pid: u32, started_at: Timestamp) {
    let Some(start) = process_start(pid) else {
        return;
    };
    if start.duration_since(started_at).abs() < SignedDuration::from_secs(2) {
        tracing::warn!(
            pid,
            "ending the process group a crashed server left running"
        );
        send_signal(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// When a process that leads its own process group started, from `/proc` (Linux).
fn process_start(pid: u32) -> Option<Timestamp> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain anything.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let group: u32 = fields.get(2)?.parse().ok()?;
    if group != pid {
        return None;
    }
    let ticks_since_boot: i64 = fields.get(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())?;
    // /proc counts in USER_HZ, which Linux fixes at 100 per second.
    Timestamp::from_second(boot)
        .ok()?
        .checked_add(SignedDuration::from_millis(ticks_since_boot * 10))
        .ok()
}

pub(super) fn send_signal(group: Pid, signal: Signal) {
    if let Err(e) = killpg(group, signal) {
        tracing::debug!(group = group.as_raw(), %signal, error = %e, "signal to process group failed");
    }
}

/// Writes queued input to the process; closing the queue or an `eof` write closes stdin.
async fn feed_stdin(mut pipe: ChildStdin, mut queue: mpsc::Receiver<(Vec<u8>, bool)>) {
    while let Some((bytes, eof)) = queue.recv().await {
        if !bytes.is_empty()
            && (pipe.write_all(&bytes).await.is_err() || pipe.flush().await.is_err())
        {
            return;
        }
        if eof {
            return;
        }
    }
}

/// A task's output allowance, shared by its stdout and stderr.
struct OutputBudget {
    store: SharedStore,
    task_id: String,
    limit: u64,
    used: AtomicU64,
    truncated: AtomicBool,
    /// Bytes read from the pipes, kept or not: shows whether output is still flowing.
    read: AtomicU64,
}

impl OutputBudget {
    /// Records a piece of output as an event, within the budget; the first piece that does
    /// not fit is cut and followed by a `truncated` event, and later pieces are dropped.
    async fn emit(&self, stream: OutputStream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len() as u64;
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        let allowed = self.limit.saturating_sub(before).min(len) as usize;
        let kept = &bytes[..utf8_floor(bytes, allowed)];
        let mut events = Vec::with_capacity(2);
        if !kept.is_empty() {
            let data = OutputData {
                stream,
                text: String::from_utf8_lossy(kept).into_owned(),
            };
            events.push((types::OUTPUT, to_value(&data)));
        }
        if allowed < bytes.len() && !self.truncated.swap(true, Ordering::Relaxed) {
            let data = TruncatedData {
                limit_bytes: self.limit,
            };
            events.push((types::TRUNCATED, to_value(&data)));
        }
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.store.append(&self.task_id, events).await {
            tracing::error!(task = %self.task_id, error = %e, "cannot record output");
        }
    }
}

/// Reads a pipe to its end, sending whole lines as soon as they are read, a line longer than
/// [`CHUNK`] in pieces, and a trailing partial line (a prompt) after a short pause.
async fn pump(mut pipe: impl AsyncRead + Unpin, stream: OutputStream, output: Arc<OutputBudget>) {
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let read = if pending.is_empty() {
            pipe.read(&mut buf).await
        } else {
            match tokio::time::timeout(PARTIAL_LINE_DELAY, pipe.read(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    let cut = pending.len() - incomplete_tail(&pending);
                    output.emit(stream, &pending[..cut]).await;
                    pending.drain(..cut);
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        output.read.fetch_add(n as u64, Ordering::Relaxed);
        pending.extend_from_slice(&buf[..n]);
        while !pending.is_empty() {
            let window = &pending[..pending.len().min(CHUNK)];
            let cut = match window.iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None if pending.len() >= CHUNK => utf8_floor(&pending, CHUNK),
                None => break,
            };
            output.emit(stream, &pending[..cut]).await;
            pending.drain(..cut);
        }
    }
    output.emit(stream, &pending).await;
}

/// The longest prefix of at most `max` bytes that does not end inside a UTF-8 character.
fn utf8_floor(bytes: &[u8], max: usize) -> usize {
    if max >= bytes.len() {
        return bytes.len();
    }
    let cut = max - incomplete_tail(&bytes[..max]);
    if cut == 0 { max } else { cut }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let width = match byte {
            0xF8.. => 1,
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if width > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_floor_never_splits_a_character() {
        let text = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        for max in 0..=text.len() {
            let cut = utf8_floor(text, max);
            if max > 0 {
                assert!(
                    std::str::from_utf8(&text[..cut]).is_ok(),
                    "cut {cut} of {max}"
                );
            }
        }
        assert_eq!(utf8_floor(text, 2), 1);
        assert_eq!(utf8_floor(text, 4), 3);
        assert_eq!(utf8_floor(text, 6), 6);
    }

    #[test]
    fn process_start_matches_a_group_leader_and_nothing_else() {
        let mut leader = std::process::Command::new("sleep");
        std::os::unix::process::CommandExt::process_group(&mut leader, 0);
        let mut leader = leader.arg("5").spawn().unwrap();
        let started = process_start(leader.id()).expect("a group leader has a start time");
        let age = Timestamp::now().duration_since(started);
        assert!(
            age < SignedDuration::from_secs(5) && age > SignedDuration::from_secs(-2),
            "{age:?}"
        );
        leader.kill().unwrap();
        leader.wait().unwrap();
        // The test process itself does not lead its own group under cargo test.
        let mut member = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(process_start(member.id()), None);
        member.kill().unwrap();
        member.wait().unwrap();
    }

    #[test]
    fn incomplete_tail_finds_a_started_character() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_tail(&"😀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_tail("😀".as_bytes()), 0);
        assert_eq!(incomplete_tail(&[0xff]), 0);
    }
}
