//! How an interpreter session's events read in the log: each execution's code as typed
//! (`>>>`), what it printed (as output, see `log::streamed_text`), its displays as a one-line
//! placeholder with their size, its value (`Out[N]:`), its traceback, the input it asked for,
//! how it ended; the kernel starting, restarting, and checkpoints saved and restored.

use super::log::{LineKind, printable};
use crate::proto::{
    CheckpointSaved, Event, ExecutionDisplay, ExecutionError, ExecutionFinished, ExecutionQueued,
    ExecutionResult, InputAnswered, InputRequested, KernelReady, MimeBundle, Restored,
    SessionRestarting, SkippedVariable, plain_traceback, session_types,
};

/// The lines a session's event reads as (none for the ones that add nothing to read), or
/// `None` for an event that is not a session's.
pub(super) fn lines(event: &Event) -> Option<Vec<(LineKind, String)>> {
    let note = |text: String| vec![(LineKind::Note, printable(&text))];
    Some(match event.kind.as_str() {
        session_types::EXECUTION_QUEUED => {
            let queued: ExecutionQueued = event.decode()?;
            queued
                .code
                .lines()
                .enumerate()
                .map(|(n, line)| {
                    let prompt = if n == 0 { ">>> " } else { "... " };
                    (LineKind::Quote, printable(&format!("{prompt}{line}")))
                })
                .collect()
        }
        session_types::EXECUTION_STARTED | session_types::SESSION_STATUS => Vec::new(),
        session_types::EXECUTION_DISPLAY => {
            let display: ExecutionDisplay = event.decode()?;
            note(placeholder(&display.data))
        }
        session_types::EXECUTION_RESULT => {
            let result: ExecutionResult = event.decode()?;
            let value = result
                .data
                .get("text/plain")
                .and_then(|v| v.as_str())
                .map_or_else(|| placeholder(&result.data), str::to_string);
            let count = result.execution_count.map(|n| n.to_string());
            let mut lines = value
                .lines()
                .map(|line| (LineKind::Stdout, printable(line)));
            let first = lines.next().map(|(kind, line)| {
                (
                    kind,
                    format!("Out[{}]: {line}", count.as_deref().unwrap_or(" ")),
                )
            });
            first.into_iter().chain(lines).collect()
        }
        session_types::EXECUTION_ERROR => {
            let error: ExecutionError = event.decode()?;
            let traceback = plain_traceback(&error.traceback);
            let text = if traceback.trim().is_empty() {
                format!("{}: {}", error.name, error.value)
            } else {
                traceback
            };
            text.lines()
                .map(|line| (LineKind::Stderr, printable(line)))
                .collect()
        }
        session_types::INPUT_REQUESTED => {
            let asked: InputRequested = event.decode()?;
            let what = if asked.password {
                "a password"
            } else {
                "input"
            };
            vec![(
                LineKind::Alert,
                printable(&format!("asks for {what}: {}", asked.prompt)),
            )]
        }
        session_types::INPUT_ANSWERED => {
            let answered: InputAnswered = event.decode()?;
            note(match answered.value {
                Some(value) => format!("input sent: {value}"),
                None => "input sent (not shown)".to_string(),
            })
        }
        session_types::EXECUTION_CLEARED => note("output cleared".to_string()),
        session_types::EXECUTION_FINISHED => {
            let finished: ExecutionFinished = event.decode()?;
            let rolled_back = if finished.rolled_back {
                ", variables rolled back"
            } else {
                ""
            };
            note(format!(
                "{} in {} ms{rolled_back}",
                finished.status.as_str(),
                finished.duration_ms
            ))
        }
        session_types::SESSION_READY => {
            let ready: KernelReady = event.decode()?;
            let warm = if ready.warm {
                ", from the warm pool"
            } else {
                ""
            };
            note(format!(
                "kernel {} ({} {}) ready in {} ms{warm}, pid {}",
                ready.kernel, ready.language, ready.language_version, ready.startup_ms, ready.pid
            ))
        }
        session_types::SESSION_RESTARTING => {
            let restarting: SessionRestarting = event.decode()?;
            let why = serde_json::to_value(restarting.reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            vec![(
                LineKind::Alert,
                printable(&format!(
                    "kernel restarting ({why}): the variables are gone"
                )),
            )]
        }
        session_types::CHECKPOINT_SAVED => {
            let CheckpointSaved { checkpoint } = event.decode()?;
            let saved = checkpoint.saved.join(", ");
            note(format!(
                "checkpoint {}: saved {saved}{}",
                checkpoint.id,
                left_out("not saved", &checkpoint.skipped)
            ))
        }
        session_types::RESTORED => {
            let restored: Restored = event.decode()?;
            let names = restored.restored.join(", ");
            note(format!(
                "restored checkpoint {}: {names}{}",
                restored.checkpoint_id,
                left_out("failed", &restored.failed)
            ))
        }
        _ => return None,
    })
}

/// `; LABEL: a, b` for the variables a checkpoint or a restore left out, or nothing.
fn left_out(label: &str, variables: &[SkippedVariable]) -> String {
    if variables.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
    format!("; {label}: {}", names.join(", "))
}

/// A rich display in one line: its kinds and the size of the largest.
fn placeholder(bundle: &MimeBundle) -> String {
    let kinds: Vec<&str> = bundle.keys().map(String::as_str).collect();
    let size = bundle
        .values()
        .map(|value| value.as_str().map_or(0, str::len))
        .max()
        .unwrap_or(0);
    format!("[display {}, {}]", kinds.join(", "), human_size(size))
}

fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
