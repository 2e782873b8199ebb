//! Tasks, events and times for the tests: fixed, so that screens drawn from them are the same
//! on every machine and every day.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::state::Options;
use crate::proto::{
    AgentSpec, Approval, ApprovalStatus, Command, Event, ExecSpec, OutputStream, Task, TaskResult,
    TaskSpec, TaskState, types,
};

/// `secs` after a fixed moment (2026-03-01 09:00:00 UTC).
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_772_355_600 + secs).unwrap()
}

pub fn options() -> Options {
    Options {
        server: "lab (http://192.168.1.20:8765)".into(),
        scrollback: 10_000,
        colour: false,
        time_zone: TimeZone::UTC,
    }
}

/// A task running `sh -c true`, created a minute before [`at`]`(0)`, with its log at seq 1
/// when queued and 3 after.
pub fn task(id: &str, state: TaskState) -> Task {
    let started = (state != TaskState::Queued).then(|| at(-50));
    Task {
        id: id.into(),
        name: None,
        spec: spec(Command::Argv(vec!["sh".into(), "-c".into(), "true".into()])),
        state,
        priority: 0,
        created_at: at(-60),
        started_at: started,
        finished_at: state.is_final().then(|| at(-20)),
        result: state.is_final().then(TaskResult::default),
        last_seq: if state == TaskState::Queued { 1 } else { 3 },
        requires: Vec::new(),
        node: None,
        waiting: None,
    }
}

fn spec(command: Command) -> TaskSpec {
    TaskSpec::Exec(ExecSpec::new(command))
}

/// One task in every state, newest first, with names, commands and outcomes as people have.
pub fn every_state() -> Vec<Task> {
    let mut tasks = Vec::new();
    let mut add = |n: u32, state, name: Option<&str>, command: &str, result: TaskResult| {
        let mut task = task(&format!("019b5e3c-7a10-7000-8000-0000000000{n:02}"), state);
        task.name = name.map(str::to_string);
        task.spec = spec(Command::Shell(command.into()));
        task.created_at = at(-600 * i64::from(9 - n));
        if task.result.is_some() {
            task.result = Some(result);
        }
        tasks.push(task);
    };
    let exited = |code| TaskResult {
        exit_code: Some(code),
        ..TaskResult::default()
    };
    add(
        8,
        TaskState::Queued,
        Some("deploy"),
        "./deploy.sh staging",
        exited(0),
    );
    add(
        7,
        TaskState::Running,
        Some("build"),
        "cargo build --release",
        exited(0),
    );
    add(
        6,
        TaskState::Paused,
        None,
        "python train.py --epochs 50",
        exited(0),
    );
    add(
        5,
        TaskState::Succeeded,
        Some("tests"),
        "cargo test --workspace",
        exited(0),
    );
    add(4, TaskState::Failed, None, "npm run lint", exited(2));
    let signalled = TaskResult {
        signal: Some(15),
        ..TaskResult::default()
    };
    add(3, TaskState::Cancelled, None, "sleep 600", signalled);
    let interrupted = TaskResult {
        error: Some("the server stopped".into()),
        ..TaskResult::default()
    };
    add(
        2,
        TaskState::Interrupted,
        Some("model"),
        "ollama pull llama3",
        interrupted,
    );
    let timed_out = TaskResult {
        signal: Some(15),
        timed_out: true,
        ..TaskResult::default()
    };
    add(
        1,
        TaskState::Failed,
        None,
        "curl -sf https://example.com/big.iso",
        timed_out,
    );
    tasks.sort_by(|a, b| b.id.cmp(&a.id));
    tasks
}

pub fn output(seq: u64, stream: OutputStream, text: &str) -> Event {
    let stream = match stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    };
    Event {
        task_id: "t".into(),
        seq,
        pos: seq,
        ts: at(seq as i64),
        kind: types::OUTPUT.into(),
        data: serde_json::json!({ "stream": stream, "text": text }),
    }
}

pub fn state_event(seq: u64, state: TaskState) -> Event {
    Event {
        task_id: "t".into(),
        seq,
        pos: seq,
        ts: at(seq as i64),
        kind: types::STATE.into(),
        data: serde_json::json!({ "state": state }),
    }
}

/// An agent fixing a test, in `state`.
pub fn agent_task(id: &str, state: TaskState) -> Task {
    Task {
        spec: TaskSpec::Agent(AgentSpec {
            prompt: "Fix the failing test".into(),
            workspace: "/home/dev/src/calc".into(),
            max_steps: Some(20),
            ..AgentSpec::default()
        }),
        ..task(id, state)
    }
}

/// Task `task_id`'s agent asking to run `cargo test`, as approval `id`.
pub fn approval(task_id: &str, id: &str) -> Approval {
    Approval {
        id: id.into(),
        task_id: task_id.into(),
        tool: "run_command".into(),
        arguments: serde_json::json!({ "command": "cargo test" }),
        diff: None,
        status: ApprovalStatus::Pending,
        decision: None,
        reason: None,
        created_at: at(-5),
        resolved_at: None,
    }
}

/// An interpreter session of the default kernel, in `state`.
pub fn session_task(id: &str, state: TaskState) -> Task {
    Task {
        spec: TaskSpec::Session(crate::proto::SessionSpec::default()),
        ..task(id, state)
    }
}

/// Event `seq` of task `task_id` with `data`.
pub fn typed_event(task_id: &str, seq: u64, data: &impl crate::proto::EventData) -> Event {
    let (kind, data) = data.encode().expect("encodable");
    Event {
        task_id: task_id.into(),
        seq,
        pos: seq,
        ts: at(seq as i64),
        kind: kind.into(),
        data,
    }
}
