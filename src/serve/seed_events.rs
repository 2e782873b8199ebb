//! What a task's log means to the seed clients, read once for all their dialects: where the
//! task is in its life, which tool call a result answers, and which commands ran tests.

use std::collections::HashMap;

use crate::bus::{Subscription, Topic};
use crate::engine::Engine;
use crate::proto::{Event, TaskState, ToolCallEvent, ToolResultEvent};
use crate::store::{EventRange, StoreError};

/// Where a `state` event puts its task.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lifecycle {
    /// It began to run.
    Started,
    Halted,
    Resumed,
    /// Its final state; the error of a failed or interrupted one.
    Ended {
        state: TaskState,
        error: Option<String>,
    },
}

/// The phase a `state` event announces, if it is one the seed clients know.
pub(super) fn lifecycle(event: &Event) -> Option<Lifecycle> {
    let data = event.state()?;
    Some(match data.state {
        TaskState::Queued => return None,
        // Leaving the queue (seq 1 is `queued`); a later `running` is a resume.
        TaskState::Running if event.seq <= 2 => Lifecycle::Started,
        TaskState::Running => Lifecycle::Resumed,
        TaskState::Paused => Lifecycle::Halted,
        TaskState::Succeeded | TaskState::Cancelled => Lifecycle::Ended {
            state: data.state,
            error: None,
        },
        TaskState::Failed | TaskState::Interrupted => Lifecycle::Ended {
            state: data.state,
            error: Some(
                data.result
                    .and_then(|result| result.error)
                    .or(data.reason)
                    .unwrap_or_else(|| format!("the task {}", data.state)),
            ),
        },
    })
}

/// The tool calls of one task whose results have not come yet, to tell what a result answers.
#[derive(Debug, Default)]
pub(super) struct Calls(HashMap<String, ToolCallEvent>);

impl Calls {
    pub fn started(&mut self, call: &ToolCallEvent) {
        self.0.insert(call.id.clone(), call.clone());
    }

    /// The call a result answers, which is then no longer waiting.
    pub fn finished(&mut self, result: &ToolResultEvent) -> Option<ToolCallEvent> {
        self.0.remove(&result.id)
    }
}

/// The command of a `run_command` call that runs tests (`pytest`, `cargo test`, `npm test`,
/// `./test.sh`...), as the seed clients' validation and test events report them.
pub(super) fn test_command(call: &ToolCallEvent) -> Option<&str> {
    if call.name != "run_command" {
        return None;
    }
    let command = call.arguments["command"].as_str()?;
    let lower = command.to_ascii_lowercase();
    ["test", "spec", "jest", "mocha", "tox"]
        .iter()
        .any(|word| lower.contains(word))
        .then_some(command)
}

/// The exit code `run_command` reports at the end of its output (`[exit code N]`).
pub(super) fn exit_code(output: &str) -> Option<i32> {
    output
        .trim_end()
        .strip_suffix(']')?
        .rsplit_once("[exit code ")?
        .1
        .parse()
        .ok()
}

/// Hands the task's stored events up to seq `through` to `each`, oldest first: a dialect that
/// resumes after them learns what they said (which calls are open, which files were written).
pub(super) async fn replay_through(
    engine: &Engine,
    task_id: &str,
    through: u64,
    mut each: impl FnMut(&Event),
) -> Result<(), StoreError> {
    let mut after = 0;
    while after < through {
        let page = engine
            .bus()
            .store()
            .events_after(
                EventRange::Task {
                    id: task_id.to_string(),
                    after,
                },
                1_000,
            )
            .await?;
        let Some(last) = page.last().map(|event| event.seq) else {
            break;
        };
        for event in page.iter().filter(|event| event.seq <= through) {
            each(event);
        }
        after = last;
    }
    Ok(())
}

/// Follows a task's log after seq `after`, having handed `each` the events up to it: what came
/// before a resume point tells a dialect what the events after it mean (open calls, files
/// written).
pub(super) async fn subscribe_after(
    engine: &Engine,
    task_id: &str,
    after: u64,
    each: impl FnMut(&Event),
) -> Result<Subscription, StoreError> {
    replay_through(engine, task_id, after, each).await?;
    engine
        .bus()
        .subscribe(Topic::Task(task_id.to_string()), Some(after))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, command: &str) -> ToolCallEvent {
        ToolCallEvent {
            id: "c1".into(),
            name: name.into(),
            arguments: serde_json::json!({"command": command}),
        }
    }

    #[test]
    fn test_commands_are_told_from_other_commands() {
        assert_eq!(
            test_command(&call("run_command", "python -m pytest -q")),
            Some("python -m pytest -q")
        );
        assert_eq!(
            test_command(&call("run_command", "sh test.sh")),
            Some("sh test.sh")
        );
        assert_eq!(test_command(&call("run_command", "ls -la")), None);
        assert_eq!(test_command(&call("read_file", "test")), None);
    }

    #[test]
    fn the_exit_code_is_read_from_the_end_of_the_output() {
        assert_eq!(exit_code("ok\n[exit code 0]"), Some(0));
        assert_eq!(exit_code("2 failed\n[exit code 1]\n"), Some(1));
        assert_eq!(exit_code("[stopped after 5s (its timeout)]"), None);
    }
}
