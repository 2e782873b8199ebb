//! How the CLI talks to people and scripts: exit codes, tables, colours (on a terminal only,
//! never with `NO_COLOR`). What a task's state, times and exit look like is `proto::human`'s.

use owo_colors::OwoColorize;

use crate::client::ClientError;
use crate::proto::human::Tone;
pub use crate::proto::human::{ago, elapsed, ellipsize, exit_label, one_line, title};
use crate::proto::{Task, TaskState};

/// The process exit code, as documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The server refused the request (not found, wrong state, invalid, unauthorized).
    Refused,
    /// The server could not be reached.
    Unreachable,
    /// `wait --timeout` ran out while the task was still going.
    StillRunning,
    /// A task's own outcome (`run`, `wait`).
    Task(i32),
    /// The person stopped the command with Ctrl-C (`logs -f`): 130, as shells report it.
    Stopped,
}

impl Exit {
    pub const REFUSED: i32 = 1;
    pub const UNREACHABLE: i32 = 69;
    pub const STILL_RUNNING: i32 = 75;
    pub const TIMED_OUT: i32 = 124;
    pub const INTERRUPTED: i32 = 125;
    pub const CANNOT_START: i32 = 127;
    pub const CANCELLED: i32 = 130;

    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Refused => Self::REFUSED,
            Exit::Unreachable => Self::UNREACHABLE,
            Exit::StillRunning => Self::STILL_RUNNING,
            Exit::Task(code) => code,
            Exit::Stopped => Self::CANCELLED,
        }
    }

    /// The exit code that stands for how a finished task ended.
    pub fn of_task(task: &Task) -> Exit {
        let result = task.result.clone().unwrap_or_default();
        Exit::Task(match task.state {
            TaskState::Queued | TaskState::Running | TaskState::Paused => {
                return Exit::StillRunning;
            }
            TaskState::Succeeded => 0,
            TaskState::Cancelled => Self::CANCELLED,
            TaskState::Interrupted => Self::INTERRUPTED,
            _ if result.timed_out => Self::TIMED_OUT,
            _ => match (result.exit_code, result.signal) {
                (Some(code), _) => code,
                (None, Some(signal)) => 128 + signal,
                (None, None) => Self::CANNOT_START,
            },
        })
    }

    /// The exit code for a client error.
    pub fn of_error(error: &ClientError) -> Exit {
        match error {
            ClientError::Unreachable { .. } | ClientError::Lost { .. } => Exit::Unreachable,
            _ => Exit::Refused,
        }
    }
}

/// Whether what goes to stdout may be coloured: a terminal, and neither `NO_COLOR` nor
/// `TERM=dumb` (the same rules as every other table and message).
pub fn colour_wanted() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// The state with its symbol, coloured.
pub fn state_label(state: TaskState) -> String {
    let text = state.label();
    match state.tone() {
        Tone::Dim => text.dimmed().to_string(),
        Tone::Cyan => text.cyan().to_string(),
        Tone::Yellow => text.yellow().to_string(),
        Tone::Green => text.green().to_string(),
        Tone::Red => text.red().to_string(),
        Tone::Magenta => text.magenta().to_string(),
        Tone::Alert => text.yellow().bold().to_string(),
    }
}

/// Columns padded to their widest cell (measured without colour codes).
pub struct Table {
    rows: Vec<Vec<(String, String)>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        let header = header
            .iter()
            .map(|h| (h.to_string(), h.bold().to_string()))
            .collect();
        Table { rows: vec![header] }
    }

    /// A row of (plain, styled) cells: the plain text sets the width, the styled one is shown.
    pub fn row(&mut self, cells: Vec<(String, String)>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|(plain, _)| plain.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let last = row.len().saturating_sub(1);
            for (c, (plain, styled)) in row.iter().enumerate() {
                out.push_str(styled);
                if c < last {
                    let pad = widths[c] - plain.chars().count() + 2;
                    out.push_str(&" ".repeat(pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A cell whose plain and shown text are the same.
pub fn cell(text: impl Into<String>) -> (String, String) {
    let text = text.into();
    (text.clone(), text)
}

/// A cell shown with a style.
pub fn styled(plain: impl Into<String>, styled: impl Into<String>) -> (String, String) {
    (plain.into(), styled.into())
}

/// The state cell of a task.
pub fn state_cell(state: TaskState) -> (String, String) {
    styled(state.label(), state_label(state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Command, ExecSpec, TaskResult, TaskSpec};
    use jiff::Timestamp;

    fn task(state: TaskState, result: Option<TaskResult>) -> Task {
        Task {
            id: "t".into(),
            name: None,
            spec: TaskSpec::Exec(ExecSpec::new(Command::Shell("true".into()))),
            state,
            priority: 0,
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            result,
            last_seq: 1,
            requires: Vec::new(),
            node: None,
            waiting: None,
        }
    }

    #[test]
    fn exit_codes_follow_the_task_outcome() {
        let code = |state, result| Exit::of_task(&task(state, Some(result))).code();
        assert_eq!(code(TaskState::Succeeded, TaskResult::default()), 0);
        let exited = |c| TaskResult {
            exit_code: Some(c),
            ..TaskResult::default()
        };
        assert_eq!(code(TaskState::Failed, exited(3)), 3);
        let signalled = TaskResult {
            signal: Some(9),
            ..TaskResult::default()
        };
        assert_eq!(code(TaskState::Failed, signalled), 137);
        let timed_out = TaskResult {
            signal: Some(15),
            timed_out: true,
            ..TaskResult::default()
        };
        assert_eq!(code(TaskState::Failed, timed_out), 124);
        let not_started = TaskResult {
            error: Some("no such file".into()),
            ..TaskResult::default()
        };
        assert_eq!(code(TaskState::Failed, not_started), 127);
        assert_eq!(code(TaskState::Cancelled, TaskResult::default()), 130);
        assert_eq!(code(TaskState::Interrupted, TaskResult::default()), 125);
    }

    #[test]
    fn tables_align_on_plain_text() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec![styled("xx", "\u{1b}[31mxx\u{1b}[0m"), cell("y")]);
        let rendered = table.render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert!(
            lines[1].starts_with("\u{1b}[31mxx\u{1b}[0m  y"),
            "{rendered:?}"
        );
    }
}
