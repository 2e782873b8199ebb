//! Process plumbing for every runner that starts processes: a process started in a group of
//! its own and tagged with its task's id, the pumps that turn its output into pieces within a
//! byte budget, its stdin, the signals that pause, resume and end all of a task's processes,
//! the rule for what a task leaves behind, and the reaping of the orphans handed to the
//! server.
//!
//! A task's processes are its process group, every process whose environment carries the
//! task's id in [`TASK_ID_VAR`] (those that left the group with `setsid` keep it), and their
//! descendants. When the main process has exited, the task goes on while its output does;
//! once the pipes are closed, or quiet for [`QUIET_AFTER_EXIT`], whatever remains of it is
//! terminated: SIGTERM, then SIGKILL after the grace period.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::ops::RangeInclusive;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::proto::OutputStream;

/// The variable that tells a task's processes, and victor, which task they belong to.
pub(super) const TASK_ID_VAR: &str = "VICTOR_TASK_ID";
/// After the main process has exited, how long the output may stay quiet while something the
/// task left holds its pipes open, before what remains of the task is terminated.
pub(super) const QUIET_AFTER_EXIT: Duration = Duration::from_secs(3);
/// Once every process of the task is gone, how long its pipes get to close (held by a process
/// victor could not tell was the task's) before victor stops reading them.
const FINAL_DRAIN: Duration = Duration::from_millis(500);
/// How often the processes being terminated are looked at.
const POLL: Duration = Duration::from_millis(20);
/// Bytes read from a pipe at a time, and the most text one piece of output carries.
const CHUNK: usize = 16 * 1024;
/// How long a line without its newline (a prompt) waits for more before it is sent as is.
const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(10);
/// Writes waiting for a process's stdin before a write is refused as too fast.
const STDIN_QUEUE: usize = 64;

/// Variables of the server's environment that hold its secrets, kept from tasks: its keys,
/// and the settings whose URLs may carry a password (`redis://:password@host`).
const SERVER_SECRETS: [&str; 5] = [
    "VICTOR_API_KEY",
    "VICTOR_SERVER_API_KEY",
    "VICTOR_SERVER_SESSION_SECRET",
    "VICTOR_STORE",
    "VICTOR_PROVIDERS",
];

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub(super) enum SpawnError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("the process exited before victor could track it")]
    Untracked,
}

/// The pipes of a started process.
pub(super) struct Pipes {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

/// A task's processes: the main one victor started, leading a process group of its own, and
/// everything it started.
pub(super) struct Processes {
    child: Child,
    pid: u32,
    task_id: String,
    /// The pid wraps counted when the main process started: see [`PidClock`].
    wraps: u64,
    /// When the processes still there get SIGKILL, once they have been sent SIGTERM.
    kill_at: Option<Instant>,
}

impl Processes {
    /// Starts `command` as a process of task `task_id`: in a process group of its own, with the
    /// task's id in its environment and the server's secrets out of it, its output piped, and
    /// its stdin piped when `stdin` is set (else `/dev/null`).
    pub fn spawn(
        mut command: tokio::process::Command,
        task_id: &str,
        stdin: bool,
    ) -> Result<(Processes, Pipes), SpawnError> {
        for secret in SERVER_SECRETS {
            command.env_remove(secret);
        }
        command
            .env(TASK_ID_VAR, task_id)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let wraps = PID_CLOCK.counted();
        let mut child = command.spawn()?;
        // A pid of 0 would make every signal below hit victor's own process group.
        let Some(pid) = child.id().filter(|&pid| pid > 0) else {
            return Err(SpawnError::Untracked);
        };
        let pipes = Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        let processes = Processes {
            child,
            pid,
            task_id: task_id.to_string(),
            wraps,
            kill_at: None,
        };
        Ok((processes, pipes))
    }

    /// The main process's id, which is also its group's.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }

    /// Where the task's processes can be.
    fn scope(&self) -> Scope {
        if !ADOPTING.load(Ordering::Relaxed) {
            return Scope::Everywhere;
        }
        // Pids handed out since the main process's, unless they wrapped around meanwhile.
        let pids = PID_CLOCK
            .look()
            .filter(|&(wraps, _)| wraps == self.wraps)
            .map(|(_, last)| self.pid as i32..=last);
        Scope::Adopted { pids }
    }

    /// The task's live processes.
    async fn members(&self) -> Vec<ProcessInfo> {
        let (group, task_id, scope) = (self.pid as i32, self.task_id.clone(), self.scope());
        off_the_workers(move || task_processes(group, &task_id, scope)).await
    }

    /// Waits for the main process to exit. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends each of `signals`, in order, to every process of the task.
    async fn signal(&self, signals: &[Signal]) {
        for &signal in signals {
            send_to_group(self.group(), signal);
        }
        for process in self.members().await {
            if process.group != self.pid as i32 {
                for &signal in signals {
                    send(process.pid, signal);
                }
            }
        }
    }

    /// SIGSTOP to every process of the task.
    pub async fn pause(&self) {
        self.signal(&[Signal::SIGSTOP]).await;
    }

    /// SIGCONT to every process of the task.
    pub async fn resume(&self) {
        self.signal(&[Signal::SIGCONT]).await;
    }

    /// SIGTERM to every process of the task (and SIGCONT, so that a paused one hears it);
    /// SIGKILL is due at [`Processes::kill_at`]. Asking again does not move the SIGKILL later.
    pub async fn terminate(&mut self, grace: Duration) {
        self.kill_at.get_or_insert(Instant::now() + grace);
        self.signal(&[Signal::SIGTERM, Signal::SIGCONT]).await;
    }

    /// When the grace period of [`Processes::terminate`] is over: [`Processes::kill`] then.
    pub fn kill_at(&self) -> Option<Instant> {
        self.kill_at
    }

    /// SIGKILL to every process of the task.
    pub async fn kill(&mut self) {
        self.kill_at = None;
        self.signal(&[Signal::SIGKILL]).await;
    }

    /// After the main process has exited: terminates whatever remains of the task (SIGTERM,
    /// then SIGKILL when the grace period, or the one already running, is over) and waits
    /// until it is gone. Returns how many processes there were.
    pub async fn end_leftovers(&mut self, grace: Duration) -> u32 {
        let mut left = self.members().await;
        if left.is_empty() {
            return 0;
        }
        let mut seen: HashSet<(i32, u64)> = HashSet::new();
        let kill_at = *self.kill_at.get_or_insert(Instant::now() + grace);
        let mut killed = false;
        // Bounded, in case something keeps starting processes faster than they can be killed.
        let give_up = kill_at + Duration::from_secs(5);
        while !left.is_empty() && Instant::now() < give_up {
            let fresh: Vec<&ProcessInfo> = left
                .iter()
                .filter(|p| !seen.contains(&(p.pid, p.start)))
                .collect();
            adopt(&fresh);
            for process in &fresh {
                send(process.pid, Signal::SIGTERM);
                send(process.pid, Signal::SIGCONT);
                if killed {
                    send(process.pid, Signal::SIGKILL);
                }
            }
            seen.extend(fresh.iter().map(|p| (p.pid, p.start)));
            // Cheap looks at the ones known until they are gone or the grace period is over;
            // then a full look, for any they started meanwhile.
            loop {
                tokio::time::sleep(POLL).await;
                left = off_the_workers(move || {
                    left.retain(ProcessInfo::alive);
                    left
                })
                .await;
                // Even SIGKILL waits for a process stuck in the kernel (a hung mount).
                if left.is_empty() || Instant::now() >= give_up {
                    break;
                }
                if !killed && Instant::now() >= kill_at {
                    killed = true;
                    for process in &left {
                        send(process.pid, Signal::SIGKILL);
                    }
                }
            }
            left = self.members().await;
            if killed {
                for process in &left {
                    send(process.pid, Signal::SIGKILL);
                }
            }
        }
        self.kill_at = None;
        if !left.is_empty() {
            tracing::warn!(task = %self.task_id, left = left.len(), "processes of a task would not go away");
        }
        off_the_workers(|| adopted().prune()).await;
        u32::try_from(seen.len()).unwrap_or(u32::MAX)
    }
}

/// Runs a look at `/proc`, which takes a while when there are many processes, on a thread
/// for blocking work rather than on the server's async workers.
async fn off_the_workers<T: Default + Send + 'static>(
    look: impl FnOnce() -> T + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(look).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a look at the processes failed");
        T::default()
    })
}

/// Resolves at `deadline`; never without one.
pub(super) async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// After a crash of the server, ends what a task it was running left behind: the process
/// group it ran in (the pid is trusted only if its process leads its own group and started
/// when the task did, so a recycled pid is left alone) and every process carrying its id.
pub(super) async fn kill_leftover(task_id: &str, pid: Option<u32>, started_at: Option<Timestamp>) {
    let task_id = task_id.to_string();
    off_the_workers(move || kill_leftover_now(&task_id, pid, started_at)).await;
}

fn kill_leftover_now(task_id: &str, pid: Option<u32>, started_at: Option<Timestamp>) {
    if let (Some(pid), Some(started_at)) = (pid, started_at)
        && let Some(start) = group_leader_start(pid)
        && start.duration_since(started_at).abs() < SignedDuration::from_secs(2)
    {
        tracing::warn!(
            pid,
            "ending the process group a crashed server left running"
        );
        send_to_group(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    for process in task_processes(0, task_id, Scope::Everywhere) {
        tracing::warn!(
            pid = process.pid,
            task = task_id,
            "ending a process a crashed server's task left running"
        );
        send(process.pid, Signal::SIGKILL);
    }
}

/// Whether the server adopts the orphans of the processes it starts (see [`adopt_orphans`]).
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// Makes the server the reaper of the orphans of the processes it starts, so that a process a
/// task leaves behind (even one in a session of its own) stays in reach, and reaps them when
/// they end. Once per process; where Linux does not allow it, a warning, and tasks' processes
/// are looked for among all processes.
pub(super) fn adopt_orphans() {
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_err() {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become the reaper of tasks' orphans");
        return;
    }
    let mut ended = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hear SIGCHLD; orphans will not be reaped");
            return;
        }
    };
    PID_CLOCK.look();
    ADOPTING.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PID_CLOCK_TICK);
        let mut in_the_way = None;
        loop {
            let ticked = tokio::select! {
                signal = ended.recv() => match signal {
                    Some(()) => false,
                    None => return,
                },
                _ = tick.tick() => true,
            };
            let first = off_the_workers(reap_orphans).await;
            if ticked {
                PID_CLOCK.look();
                // The oldest ended child is one the server waits for itself, and it has hidden
                // those after it since the last tick: look past it.
                if first.is_some() && first == in_the_way {
                    let _ = tokio::task::spawn_blocking(reap_every_orphan).await;
                }
                in_the_way = first;
            }
        }
    });
}

/// Processes victor saw as a task's and sent signals to, by pid with their start: reaped when
/// they end as the server's children. (Processes in another's group, or leading a session of
/// their own, are reaped without being known: victor starts neither.)
#[derive(Debug, Default)]
struct Adopted(HashMap<i32, u64>);

impl Adopted {
    fn add(&mut self, processes: &[&ProcessInfo]) {
        self.0.extend(processes.iter().map(|p| (p.pid, p.start)));
    }

    fn knows(&self, process: &ProcessInfo) -> bool {
        self.0.get(&process.pid) == Some(&process.start)
    }

    /// Forgets a process once reaped.
    fn forget(&mut self, pid: i32) {
        self.0.remove(&pid);
    }

    /// Forgets the processes that are gone (reaped, their pid free or another's); a zombie
    /// is kept until it is reaped.
    fn prune(&mut self) {
        self.0
            .retain(|&pid, &mut start| process_info(pid).is_some_and(|p| p.start == start));
    }

    /// Whether an ended child of the server is an orphan handed to it rather than a process
    /// it started itself (each of those leads its own group, in the server's session, and is
    /// waited for by whoever started it).
    fn is_orphan(&self, process: &ProcessInfo) -> bool {
        process.group != process.pid || process.session == process.pid || self.knows(process)
    }
}

fn adopted() -> MutexGuard<'static, Adopted> {
    static ADOPTED: OnceLock<Mutex<Adopted>> = OnceLock::new();
    ADOPTED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Remembers processes to reap when they end; only while the server adopts orphans (else
/// they are never handed to it).
fn adopt(processes: &[&ProcessInfo]) {
    if ADOPTING.load(Ordering::Relaxed) {
        adopted().add(processes);
    }
}

/// Reaps the server's ended children, oldest first, while they are orphans. Returns the first
/// one that is not, if one is in the way (whoever started it reaps it, usually at once).
fn reap_orphans() -> Option<i32> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        let pid = waitid(Id::All, flags).ok()?.pid()?;
        let mut adopted = adopted();
        match process_info(pid.as_raw()) {
            Some(process) if adopted.is_orphan(&process) => {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                adopted.forget(process.pid);
            }
            _ => return Some(pid.as_raw()),
        }
    }
}

/// Reaps every ended orphan among the server's children, wherever they are in its list.
fn reap_every_orphan() {
    let me = std::process::id() as i32;
    let mut adopted = adopted();
    for process in all_processes(None) {
        if process.parent == me && process.state == 'Z' && adopted.is_orphan(&process) {
            let _ = waitpid(Pid::from_raw(process.pid), Some(WaitPidFlag::WNOHANG));
            adopted.forget(process.pid);
        }
    }
    adopted.prune();
}

/// How often the last pid handed out is looked at: often enough that pids cannot wrap around
/// twice unseen (that takes `pid_max` new processes, 32,768 at the least).
const PID_CLOCK_TICK: Duration = Duration::from_secs(1);

/// Counts how often pids wrapped around, by watching the last one handed out go down. While
/// they have not wrapped since a task started, its processes all have pids from its main
/// process's to the last one, and a look for them need not read the others. (A wrap that
/// happens between two looks is counted at the second: a task that started meanwhile has a
/// count that no longer matches, and is looked for everywhere.)
struct PidClock {
    last: AtomicI32,
    wraps: AtomicU64,
}

static PID_CLOCK: PidClock = PidClock {
    last: AtomicI32::new(0),
    wraps: AtomicU64::new(0),
};

impl PidClock {
    /// The wraps counted so far, without a look.
    fn counted(&self) -> u64 {
        self.wraps.load(Ordering::SeqCst)
    }

    /// Looks at the last pid handed out: the wraps counted then, and that pid. `None` when
    /// Linux does not say.
    fn look(&self) -> Option<(u64, i32)> {
        let text = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").ok()?;
        let last: i32 = text.trim().parse().ok()?;
        if self.last.swap(last, Ordering::SeqCst) > last {
            self.wraps.fetch_add(1, Ordering::SeqCst);
        }
        Some((self.counted(), last))
    }
}

/// Up to how many pids a look tries one by one rather than reading the list of all processes
/// (which costs the kernel a walk over every process).
const PIDS_TRIED: i32 = 1024;

/// A process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessInfo {
    pid: i32,
    state: char,
    parent: i32,
    group: i32,
    session: i32,
    /// The kernel's flags for it (`PF_*`).
    flags: u64,
    /// Clock ticks after boot: with the pid, names the process even after its pid is reused.
    start: u64,
}

/// The flag of a process that has begun to exit: its files (the task's pipes among them) are
/// closed before it is a zombie.
const PF_EXITING: u64 = 0x4;

impl ProcessInfo {
    /// Still there and not a zombie (the same process, not a new one with its pid).
    fn alive(&self) -> bool {
        process_info(self.pid).is_some_and(|now| now.start == self.start && !now.is_dead())
    }

    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x') || self.flags & PF_EXITING != 0
    }
}

fn process_info(pid: i32) -> Option<ProcessInfo> {
    // One read: the line is a few hundred bytes (the command name is at most 64).
    let mut buffer = [0u8; 1024];
    let read = std::fs::File::open(format!("/proc/{pid}/stat"))
        .and_then(|mut file| file.read(&mut buffer))
        .ok()?;
    let stat = buffer.get(..read)?;
    // Fields after the command name, which is in parentheses and may contain anything.
    let after_name = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let fields: Vec<&str> = std::str::from_utf8(after_name)
        .ok()?
        .split_whitespace()
        .collect();
    Some(ProcessInfo {
        pid,
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        flags: fields.get(6)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The processes there are, of `pids` when given.
fn all_processes(pids: Option<RangeInclusive<i32>>) -> Vec<ProcessInfo> {
    if let Some(pids) = &pids
        && pids.end() - pids.start() <= PIDS_TRIED
    {
        return pids.clone().filter_map(process_info).collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| pids.as_ref().is_none_or(|pids| pids.contains(pid)))
        .filter_map(process_info)
        .collect()
}

/// Whether a process's environment says it is task `task_id`'s.
fn carries_task_id(pid: i32, task_id: &str) -> bool {
    let wanted = format!("{TASK_ID_VAR}={task_id}");
    environ_has(pid, |entry| entry == wanted.as_bytes())
}

/// Whether an entry of a process's environment passes `test`.
fn environ_has(pid: i32, test: impl Fn(&[u8]) -> bool) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    environ.split(|&byte| byte == 0).any(test)
}

/// After a crash of the server, ends the processes whose task id starts with `prefix`: those
/// started for no task yet (a warm pool's kernels, each with an id of its own).
pub(super) async fn kill_leftovers_tagged(prefix: &str) {
    let wanted = format!("{TASK_ID_VAR}={prefix}");
    off_the_workers(move || {
        let me = std::process::id() as i32;
        for process in all_processes(None) {
            if process.pid != me
                && !process.is_dead()
                && environ_has(process.pid, |entry| entry.starts_with(wanted.as_bytes()))
            {
                tracing::warn!(
                    pid = process.pid,
                    "ending a kernel a crashed server started ahead"
                );
                send(process.pid, Signal::SIGKILL);
            }
        }
    })
    .await;
}

/// Where a task's processes can be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// The server adopts orphans: every process of a task descends from one of the server's
    /// children that is in the task's group or carries its id. With `pids`, their pids are
    /// all among them.
    Adopted { pids: Option<RangeInclusive<i32>> },
    /// Anywhere: after a crash, or where the server cannot adopt orphans.
    Everywhere,
}

/// The live processes of a task: those of process group `group` (none when 0), those that
/// carry its id, and the descendants of both.
fn task_processes(group: i32, task_id: &str, scope: Scope) -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    let (pids, everywhere) = match scope {
        Scope::Adopted { pids } => (pids, false),
        Scope::Everywhere => (None, true),
    };
    let live: Vec<ProcessInfo> = all_processes(pids)
        .into_iter()
        .filter(|p| p.pid != me && !p.is_dead())
        .collect();
    let mut members: HashSet<i32> = live
        .iter()
        .filter(|p| {
            (group > 0 && p.group == group)
                || ((everywhere || p.parent == me) && carries_task_id(p.pid, task_id))
        })
        .map(|p| p.pid)
        .collect();
    loop {
        let before = members.len();
        for process in &live {
            if members.contains(&process.parent) {
                members.insert(process.pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    live.into_iter()
        .filter(|p| members.contains(&p.pid))
        .collect()
}

/// When a process that leads its own process group started.
fn group_leader_start(pid: u32) -> Option<Timestamp> {
    let info = process_info(pid as i32)?;
    if info.group != info.pid {
        return None;
    }
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())?;
    // /proc counts in USER_HZ, which Linux fixes at 100 per second.
    Timestamp::from_second(boot)
        .ok()?
        .checked_add(SignedDuration::from_millis(
            i64::try_from(info.start).ok()? * 10,
        ))
        .ok()
}

fn send_to_group(group: Pid, signal: Signal) {
    if let Err(e) = killpg(group, signal) {
        tracing::debug!(group = group.as_raw(), %signal, error = %e, "signal to process group failed");
    }
}

fn send(pid: i32, signal: Signal) {
    if let Err(e) = kill(Pid::from_raw(pid), signal) {
        tracing::debug!(pid, %signal, error = %e, "signal to process failed");
    }
}

/// Where a process's output goes, piece by piece.
#[async_trait]
pub(super) trait OutputSink: Send + Sync + 'static {
    /// Output that fits the budget: whole lines, or a piece of a long line, or a trailing
    /// partial line (a prompt). `cut_at` is the budget, on the first piece it cut.
    async fn deliver(&self, stream: OutputStream, kept: &[u8], cut_at: Option<u64>);
}

/// A process's output allowance, shared by its stdout and stderr.
struct Budget<S> {
    sink: S,
    limit: u64,
    used: AtomicU64,
    truncated: AtomicBool,
    /// Bytes read from the pipes, kept or not: shows whether output is still flowing.
    read: Arc<AtomicU64>,
}

impl<S: OutputSink> Budget<S> {
    /// Delivers a piece within the budget; the first piece that does not fit is cut, and
    /// later pieces are dropped.
    async fn emit(&self, stream: OutputStream, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len() as u64;
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        let allowed = self.limit.saturating_sub(before).min(len) as usize;
        let kept = &bytes[..utf8_floor(bytes, allowed)];
        let cut_at = (allowed < bytes.len() && !self.truncated.swap(true, Ordering::Relaxed))
            .then_some(self.limit);
        if kept.is_empty() && cut_at.is_none() {
            return;
        }
        self.sink.deliver(stream, kept, cut_at).await;
    }
}

/// The readers of a process's stdout and stderr.
pub(super) struct Pumps {
    readers: Vec<JoinHandle<()>>,
    read: Arc<AtomicU64>,
}

impl Pumps {
    /// Starts reading the pipes into `sink`, keeping at most `limit` bytes of the two.
    pub fn start<S: OutputSink>(
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
        sink: S,
        limit: u64,
    ) -> Pumps {
        let read = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(Budget {
            sink,
            limit,
            used: AtomicU64::new(0),
            truncated: AtomicBool::new(false),
            read: read.clone(),
        });
        let mut readers = Vec::new();
        if let Some(stdout) = stdout {
            readers.push(tokio::spawn(pump(
                stdout,
                OutputStream::Stdout,
                budget.clone(),
            )));
        }
        if let Some(stderr) = stderr {
            readers.push(tokio::spawn(pump(
                stderr,
                OutputStream::Stderr,
                budget.clone(),
            )));
        }
        Pumps { readers, read }
    }

    /// Bytes read so far: when it has not moved, the output is quiet.
    pub fn activity(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Resolves when both pipes are closed and read to their end. Cancel-safe.
    pub async fn finished(&mut self) {
        while let Some(reader) = self.readers.last_mut() {
            let _ = reader.await;
            // A finished handle is never awaited twice (that would panic).
            self.readers.pop();
        }
    }

    /// Gives the pipes [`FINAL_DRAIN`] to close, then stops reading them.
    pub async fn drain(mut self) {
        if tokio::time::timeout(FINAL_DRAIN, self.finished())
            .await
            .is_err()
        {
            for reader in &self.readers {
                reader.abort();
            }
        }
    }
}

/// Reads a pipe to its end, sending whole lines as soon as they are read, a line longer than
/// [`CHUNK`] in pieces, and a trailing partial line (a prompt) after a short pause.
async fn pump<S: OutputSink>(
    mut pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    budget: Arc<Budget<S>>,
) {
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
                    budget.emit(stream, &pending[..cut]).await;
                    pending.drain(..cut);
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        budget.read.fetch_add(n as u64, Ordering::Relaxed);
        pending.extend_from_slice(&buf[..n]);
        while !pending.is_empty() {
            let window = &pending[..pending.len().min(CHUNK)];
            let cut = match window.iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None if pending.len() >= CHUNK => utf8_floor(&pending, CHUNK),
                None => break,
            };
            budget.emit(stream, &pending[..cut]).await;
            pending.drain(..cut);
        }
    }
    budget.emit(stream, &pending).await;
}

/// Why a write to a process's stdin was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StdinRefused {
    /// Closed by an `eof`, or by the process.
    Closed,
    /// The process is not reading fast enough.
    Full,
}

/// A process's standard input, written in the background in order.
pub(super) struct Stdin {
    writes: Option<mpsc::Sender<(Vec<u8>, bool)>>,
}

impl Stdin {
    pub fn start(pipe: Option<ChildStdin>) -> Stdin {
        Stdin {
            writes: pipe.map(|pipe| {
                let (writes, queue) = mpsc::channel(STDIN_QUEUE);
                tokio::spawn(feed_stdin(pipe, queue));
                writes
            }),
        }
    }

    /// Queues `bytes`, then closes stdin when `eof` is set.
    pub fn write(&mut self, bytes: Vec<u8>, eof: bool) -> Result<(), StdinRefused> {
        let Some(writes) = self.writes.as_ref().filter(|w| !w.is_closed()) else {
            return Err(StdinRefused::Closed);
        };
        writes
            .try_send((bytes, eof))
            .map_err(|_| StdinRefused::Full)?;
        if eof {
            self.writes = None;
        }
        Ok(())
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
    use std::os::unix::process::CommandExt as _;

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
    fn group_leader_start_matches_a_group_leader_and_nothing_else() {
        let mut leader = std::process::Command::new("sleep");
        leader.process_group(0);
        let mut leader = leader.arg("5").spawn().unwrap();
        let started = group_leader_start(leader.id()).expect("a group leader has a start time");
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
        assert_eq!(group_leader_start(member.id()), None);
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

    #[test]
    fn adopted_processes_are_forgotten_once_gone_and_zombies_once_reaped() {
        let sleeper = || {
            let child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            let info = process_info(child.id() as i32).unwrap();
            (child, info)
        };
        let (mut live, live_info) = sleeper();
        let (mut reaped, reaped_info) = sleeper();
        let (mut zombie, zombie_info) = sleeper();
        // Its pid now names another process: the test's own, with another start.
        let mine = process_info(std::process::id() as i32).unwrap();
        let recycled = ProcessInfo {
            start: mine.start + 1,
            ..mine
        };
        // A server that does not adopt orphans (as this test process) remembers none.
        adopt(&[&live_info]);
        assert!(!adopted().knows(&live_info));
        let mut adopted = Adopted::default();
        adopted.add(&[&live_info, &reaped_info, &zombie_info, &recycled]);
        reaped.kill().unwrap();
        reaped.wait().unwrap();
        zombie.kill().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while process_info(zombie_info.pid).is_some_and(|p| p.state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }

        adopted.prune();
        assert!(adopted.knows(&live_info));
        assert!(
            adopted.knows(&zombie_info),
            "a zombie is still to be reaped"
        );
        assert!(!adopted.knows(&reaped_info));
        assert!(!adopted.knows(&recycled));
        assert_eq!(adopted.0.len(), 2);

        zombie.wait().unwrap();
        live.kill().unwrap();
        live.wait().unwrap();
        adopted.prune();
        assert!(adopted.0.is_empty(), "{adopted:?}");
    }

    #[test]
    fn a_tasks_processes_are_found_by_group_by_tag_and_by_descent() {
        let tag = format!("test-{}", std::process::id());
        // One in a group of its own, one in a session of its own with the tag, and a child of
        // that one, which has the tag too; a stranger has neither.
        let mut grouped = std::process::Command::new("sleep");
        grouped.arg("5").process_group(0);
        let mut grouped = grouped.spawn().unwrap();
        let mut escaped = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 5 & exec sleep 5"])
            .env(TASK_ID_VAR, &tag)
            .spawn()
            .unwrap();
        let mut stranger = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let find = |scope: &Scope| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let found: HashSet<i32> = task_processes(grouped.id() as i32, &tag, scope.clone())
                    .iter()
                    .map(|p| p.pid)
                    .collect();
                if found.len() >= 3 || std::time::Instant::now() > deadline {
                    break found;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Here the test process plays the server: the escaped one is its child.
        let newest = stranger.id().max(escaped.id()).max(grouped.id()) as i32 + 100;
        for scope in [
            Scope::Everywhere,
            Scope::Adopted { pids: None },
            Scope::Adopted {
                pids: Some(grouped.id() as i32..=newest),
            },
        ] {
            let found = find(&scope);
            assert!(
                found.contains(&(grouped.id() as i32)),
                "{scope:?}: {found:?}"
            );
            assert!(
                found.contains(&(escaped.id() as i32)),
                "{scope:?}: {found:?}"
            );
            assert_eq!(
                found.len(),
                3,
                "{scope:?}: the escaped one's child too: {found:?}"
            );
            assert!(!found.contains(&(stranger.id() as i32)));
        }
        for pid in find(&Scope::Everywhere) {
            send(pid, Signal::SIGKILL);
        }
        for child in [&mut grouped, &mut escaped, &mut stranger] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
