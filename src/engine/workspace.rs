//! An agent's workspace: the directory it may touch, and the tools it works with. Every path
//! a tool is given is confined to the workspace: absolute paths, `..` and symlinks that lead
//! outside are refused with an error the model sees. Changes are planned (with their diff)
//! before they are made, so that a person can approve them and a checkpoint can save what
//! they replace.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::process::{OutputSink, Processes, Pumps, until};
use crate::proto::{AgentMode, ChangeKind, OutputStream, Permission, ToolSpec};

/// Most bytes of a tool's output the model is shown; the rest is cut and said so.
pub const TOOL_OUTPUT_BYTES: usize = 32 * 1024;
/// Largest file `read_file` returns whole.
const READ_BYTES: usize = 256 * 1024;
/// Matches `search` returns at most.
const SEARCH_MATCHES: usize = 200;
/// Entries `list_dir` returns at most.
const LIST_ENTRIES: usize = 1000;
/// How long `run_command` and `python` run when the model names no timeout, and at most.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(1800);

/// The timeout a call asks for in `timeout_secs`, within the limits.
pub fn call_timeout(arguments: &Value) -> Duration {
    arguments["timeout_secs"]
        .as_f64()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|timeout| !timeout.is_zero())
        .unwrap_or(COMMAND_TIMEOUT)
        .min(MAX_COMMAND_TIMEOUT)
}
/// Between SIGTERM and SIGKILL for a command that is stopped.
const COMMAND_GRACE: Duration = Duration::from_secs(2);

/// Why a workspace cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("workspace {0} is not a directory on the server")]
    NotADirectory(String),
    #[error(
        "workspace {path} is outside the server's workspace roots ({roots}); start the server \
         with --workspace-root to allow it"
    )]
    OutsideRoots { path: String, roots: String },
}

/// A tool's failure, as the model is told it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

fn tool_error(message: impl Into<String>) -> ToolError {
    ToolError(message.into())
}

/// The tools an agent has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    ReadFile,
    ListDir,
    Search,
    WriteFile,
    EditFile,
    RunCommand,
    /// Code in an interpreter session of the agent's own (`engine::session`).
    Python,
}

impl Tool {
    pub const ALL: [Tool; 7] = [
        Tool::ReadFile,
        Tool::ListDir,
        Tool::Search,
        Tool::WriteFile,
        Tool::EditFile,
        Tool::RunCommand,
        Tool::Python,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::ListDir => "list_dir",
            Tool::Search => "search",
            Tool::WriteFile => "write_file",
            Tool::EditFile => "edit_file",
            Tool::RunCommand => "run_command",
            Tool::Python => "python",
        }
    }

    pub fn named(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// Reads only: allowed without asking by default, and all that `plan` and `explore` get.
    pub fn reads_only(self) -> bool {
        matches!(self, Tool::ReadFile | Tool::ListDir | Tool::Search)
    }

    /// The tools of a mode.
    pub fn of_mode(mode: AgentMode) -> Vec<Tool> {
        Tool::ALL
            .into_iter()
            .filter(|tool| mode == AgentMode::Build || tool.reads_only())
            .collect()
    }

    /// What happens to a call when the task's policy does not say.
    pub fn default_permission(self) -> Permission {
        if self.reads_only() {
            Permission::Allow
        } else {
            Permission::Ask
        }
    }

    /// The schema the model is given.
    pub fn spec(self) -> ToolSpec {
        let (description, parameters) = match self {
            Tool::ReadFile => (
                "Read a text file of the workspace. Paths are relative to the workspace.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string", "description": "File path relative to the workspace"}
                }, "required": ["path"]}),
            ),
            Tool::ListDir => (
                "List a directory of the workspace (default: its top). Directories end with /.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string", "description": "Directory relative to the workspace; empty for the top"}
                }}),
            ),
            Tool::Search => (
                "Search the workspace's files for a regular expression (files ignored by .gitignore are skipped). Answers path:line: text for each match.",
                json!({"type": "object", "properties": {
                    "pattern": {"type": "string", "description": "A regular expression (Rust syntax)"},
                    "path": {"type": "string", "description": "Limit the search to this directory or file"}
                }, "required": ["pattern"]}),
            ),
            Tool::WriteFile => (
                "Create a file, or replace a file's whole content.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string"},
                    "content": {"type": "string"}
                }, "required": ["path", "content"]}),
            ),
            Tool::EditFile => (
                "Edit a file by replacing one exact snippet of its text with another. The old snippet must occur exactly once.",
                json!({"type": "object", "properties": {
                    "path": {"type": "string"},
                    "old": {"type": "string", "description": "The exact text to replace"},
                    "new": {"type": "string", "description": "The text to put in its place"}
                }, "required": ["path", "old", "new"]}),
            ),
            Tool::RunCommand => (
                "Run a shell command in the workspace and get its exit code and output.",
                json!({"type": "object", "properties": {
                    "command": {"type": "string", "description": "Run by /bin/sh -c in the workspace"},
                    "timeout_secs": {"type": "number", "description": "Stop it after this many seconds (default 120)"}
                }, "required": ["command"]}),
            ),
            Tool::Python => (
                "Run Python code in an interpreter of your own, started in the workspace: variables, imports and functions stay from one call to the next. Answers what the code printed, the value of its last expression, or its error.",
                json!({"type": "object", "properties": {
                    "code": {"type": "string", "description": "Python code; the value of a last expression is shown"},
                    "timeout_secs": {"type": "number", "description": "Interrupt it after this many seconds (default 120); the variables stay"}
                }, "required": ["code"]}),
            ),
        };
        ToolSpec {
            name: self.name().to_string(),
            description: description.to_string(),
            parameters,
        }
    }
}

/// What a tool returned for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub text: String,
    pub truncated: bool,
}

impl ToolOutput {
    /// `text`, cut to what the model is shown.
    pub fn new(text: String) -> ToolOutput {
        let (text, truncated) = cut(text, TOOL_OUTPUT_BYTES);
        ToolOutput { text, truncated }
    }
}

/// A change a tool is about to make to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    /// Relative to the workspace, as the model named it.
    pub path: String,
    pub kind: ChangeKind,
    /// The file's content before: `None` when it does not exist yet.
    pub before: Option<Vec<u8>>,
    pub after: Vec<u8>,
    pub diff: String,
}

/// A directory an agent works in.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace at `dir`, which must be inside one of `roots`.
    pub fn open(dir: &str, roots: &[PathBuf]) -> Result<Workspace, WorkspaceError> {
        let root = std::fs::canonicalize(dir)
            .ok()
            .filter(|path| path.is_dir())
            .ok_or_else(|| WorkspaceError::NotADirectory(dir.to_string()))?;
        let inside = roots.iter().any(|allowed| {
            std::fs::canonicalize(allowed).is_ok_and(|allowed| root.starts_with(allowed))
        });
        if !inside {
            let roots = roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(WorkspaceError::OutsideRoots {
                path: root.display().to_string(),
                roots,
            });
        }
        Ok(Workspace { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `relative` inside the workspace: refused when it is absolute, climbs
    /// out with `..`, or leads out through a symlink. The file itself need not exist.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, ToolError> {
        let path = Path::new(relative);
        if path.is_absolute() {
            return Err(tool_error(format!(
                "`{relative}` is an absolute path: use a path relative to the workspace"
            )));
        }
        let mut clean = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(tool_error(format!(
                        "`{relative}` uses `..`: paths must stay inside the workspace"
                    )));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(tool_error(format!("`{relative}` is not a relative path")));
                }
            }
        }
        // The longest part that exists, with its symlinks followed, must still be inside.
        let full = self.root.join(&clean);
        let mut existing = full.as_path();
        let mut rest = Vec::new();
        while !existing.exists() && existing.symlink_metadata().is_err() {
            let Some(parent) = existing.parent() else {
                break;
            };
            if let Some(name) = existing.file_name() {
                rest.push(name.to_owned());
            }
            existing = parent;
        }
        let real = std::fs::canonicalize(existing).map_err(|_| {
            tool_error(format!(
                "`{relative}` leads through a link that goes nowhere; paths must stay inside the workspace"
            ))
        })?;
        if !real.starts_with(&self.root) {
            return Err(tool_error(format!(
                "`{relative}` leads outside the workspace through a symlink"
            )));
        }
        Ok(rest
            .into_iter()
            .rev()
            .fold(real, |path, part| path.join(part)))
    }

    /// Runs a reading tool.
    pub async fn read(&self, tool: Tool, arguments: &Value) -> Result<ToolOutput, ToolError> {
        let workspace = self.clone();
        let arguments = arguments.clone();
        tokio::task::spawn_blocking(move || match tool {
            Tool::ReadFile => workspace.read_file(&arguments),
            Tool::ListDir => workspace.list_dir(&arguments),
            Tool::Search => workspace.search(&arguments),
            other => Err(tool_error(format!(
                "{} is not a reading tool",
                other.name()
            ))),
        })
        .await
        .map_err(|e| tool_error(format!("the tool failed: {e}")))?
    }

    fn read_file(&self, arguments: &Value) -> Result<ToolOutput, ToolError> {
        let path = string_argument(arguments, "path")?;
        let full = self.resolve(path)?;
        let bytes =
            std::fs::read(&full).map_err(|e| tool_error(format!("cannot read {path}: {e}")))?;
        if bytes.len() > READ_BYTES {
            return Err(tool_error(format!(
                "{path} is {} bytes, more than {READ_BYTES}: search it instead",
                bytes.len()
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| tool_error(format!("{path} is not UTF-8 text")))?;
        Ok(ToolOutput::new(text))
    }

    fn list_dir(&self, arguments: &Value) -> Result<ToolOutput, ToolError> {
        let path = arguments["path"].as_str().unwrap_or("");
        let full = self.resolve(path)?;
        let entries = std::fs::read_dir(&full)
            .map_err(|e| tool_error(format!("cannot list `{path}`: {e}")))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    format!("{name}/")
                } else {
                    name
                }
            })
            .collect();
        names.sort();
        let total = names.len();
        names.truncate(LIST_ENTRIES);
        let mut text = names.join("\n");
        if total > LIST_ENTRIES {
            text.push_str(&format!("\n… and {} more", total - LIST_ENTRIES));
        }
        Ok(ToolOutput::new(text))
    }

    fn search(&self, arguments: &Value) -> Result<ToolOutput, ToolError> {
        let pattern = string_argument(arguments, "pattern")?;
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| tool_error(format!("not a valid regular expression: {e}")))?;
        let start = self.resolve(arguments["path"].as_str().unwrap_or(""))?;
        let mut matches = Vec::new();
        let mut more = false;
        // Hidden files are searched (a .github workflow matters); what git ignores is not.
        let walk = ignore::WalkBuilder::new(&start)
            .hidden(false)
            .require_git(false)
            .filter_entry(|entry| entry.file_name() != ".git")
            .build();
        'files: for entry in walk.filter_map(Result::ok) {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let shown = entry
                .path()
                .strip_prefix(&self.root)
                .unwrap_or(entry.path())
                .display()
                .to_string();
            for (number, line) in text.lines().enumerate() {
                if regex.is_match(line) {
                    if matches.len() == SEARCH_MATCHES {
                        more = true;
                        break 'files;
                    }
                    matches.push(format!("{shown}:{}: {}", number + 1, line.trim_end()));
                }
            }
        }
        let mut text = if matches.is_empty() {
            "no matches".to_string()
        } else {
            matches.join("\n")
        };
        if more {
            text.push_str(&format!(
                "\n… more than {SEARCH_MATCHES} matches: narrow the search"
            ));
        }
        Ok(ToolOutput::new(text))
    }

    /// The change a writing tool would make, with its diff, without making it.
    pub fn plan(&self, tool: Tool, arguments: &Value) -> Result<PlannedChange, ToolError> {
        let path = string_argument(arguments, "path")?;
        let full = self.resolve(path)?;
        if full.is_dir() {
            return Err(tool_error(format!("{path} is a directory")));
        }
        let before = match std::fs::read(&full) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(tool_error(format!("cannot read {path}: {e}"))),
        };
        let after = match tool {
            Tool::WriteFile => string_argument(arguments, "content")?.as_bytes().to_vec(),
            Tool::EditFile => {
                let old = string_argument(arguments, "old")?;
                let new = string_argument(arguments, "new")?;
                let Some(current) = &before else {
                    return Err(tool_error(format!(
                        "{path} does not exist: create it with write_file"
                    )));
                };
                let text = std::str::from_utf8(current)
                    .map_err(|_| tool_error(format!("{path} is not UTF-8 text")))?;
                if old.is_empty() {
                    return Err(tool_error("`old` must not be empty"));
                }
                match text.matches(old).count() {
                    1 => text.replacen(old, new, 1).into_bytes(),
                    0 => {
                        return Err(tool_error(format!(
                            "the snippet to replace is not in {path}: read it again and copy the text exactly"
                        )));
                    }
                    n => {
                        return Err(tool_error(format!(
                            "the snippet to replace occurs {n} times in {path}: include more context so it occurs once"
                        )));
                    }
                }
            }
            other => return Err(tool_error(format!("{} changes no file", other.name()))),
        };
        let kind = if before.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Created
        };
        let diff = unified_diff(path, before.as_deref(), &after);
        Ok(PlannedChange {
            path: path.to_string(),
            kind,
            before,
            after,
            diff,
        })
    }

    /// Makes a planned change.
    pub fn apply(&self, change: &PlannedChange) -> Result<(), ToolError> {
        let full = self.resolve(&change.path)?;
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                tool_error(format!(
                    "cannot create the directory of {}: {e}",
                    change.path
                ))
            })?;
        }
        std::fs::write(&full, &change.after)
            .map_err(|e| tool_error(format!("cannot write {}: {e}", change.path)))
    }

    /// Puts a file back as it was: its content, or no file when it did not exist.
    pub fn restore(&self, path: &str, content: Option<&[u8]>) -> Result<(), ToolError> {
        let full = self.resolve(path)?;
        match content {
            Some(bytes) => {
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| tool_error(format!("cannot restore {path}: {e}")))?;
                }
                std::fs::write(&full, bytes)
                    .map_err(|e| tool_error(format!("cannot restore {path}: {e}")))
            }
            None => match std::fs::remove_file(&full) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(tool_error(format!("cannot remove {path}: {e}"))),
            },
        }
    }

    /// Runs `command` with `/bin/sh -c` in the workspace as a process of task `task_id`,
    /// until it ends, its timeout passes or `cancel` fires (then all its processes are
    /// stopped); what it leaves running is stopped when it ends.
    pub async fn run_command(
        &self,
        arguments: &Value,
        task_id: &str,
        cancel: &CancellationToken,
    ) -> Result<ToolOutput, ToolError> {
        let command = string_argument(arguments, "command")?;
        let timeout = call_timeout(arguments);
        let mut shell = tokio::process::Command::new("/bin/sh");
        shell.arg("-c").arg(command).current_dir(&self.root);
        let (mut processes, pipes) = Processes::spawn(shell, task_id, false)
            .map_err(|e| tool_error(format!("cannot start /bin/sh: {e}")))?;
        // One buffer for both streams, so the model reads them interleaved roughly as
        // printed, within a budget.
        let output = Collected::default();
        let pumps = Pumps::start(
            pipes.stdout,
            pipes.stderr,
            output.clone(),
            COMMAND_OUTPUT_BYTES as u64,
        );
        let mut stopped = None;
        let status = tokio::select! {
            status = processes.wait() => status.ok(),
            () = tokio::time::sleep(timeout) => {
                stopped = Some(format!("stopped after {}s (its timeout)", timeout.as_secs_f64()));
                None
            }
            () = cancel.cancelled() => {
                stopped = Some("stopped: the task was cancelled".to_string());
                None
            }
        };
        let status = match status {
            Some(status) => Some(status),
            None => {
                processes.terminate(COMMAND_GRACE).await;
                loop {
                    let kill_at = processes.kill_at();
                    tokio::select! {
                        status = processes.wait() => break status.ok(),
                        () = until(kill_at) => processes.kill().await,
                    }
                }
            }
        };
        processes.end_leftovers(COMMAND_GRACE).await;
        pumps.drain().await;
        let (bytes, budget_cut) = output.taken();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        let ending = match (&stopped, status.and_then(|s| s.code())) {
            (Some(why), _) => why.clone(),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => "ended by a signal".to_string(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let (body, truncated) = cut(text, TOOL_OUTPUT_BYTES - 100);
        Ok(ToolOutput {
            text: format!("{body}[{ending}]"),
            truncated: truncated || budget_cut,
        })
    }
}

/// Output a command may write before the rest is dropped (the model sees less still).
const COMMAND_OUTPUT_BYTES: usize = 1024 * 1024;

/// A command's output, both streams in one buffer, and whether the budget cut it.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<(Vec<u8>, bool)>>);

impl Collected {
    fn taken(&self) -> (Vec<u8>, bool) {
        self.0
            .lock()
            .map(|mut collected| std::mem::take(&mut *collected))
            .unwrap_or_default()
    }
}

#[async_trait]
impl OutputSink for Collected {
    async fn deliver(&self, _stream: OutputStream, kept: &[u8], cut_at: Option<u64>) {
        if let Ok(mut collected) = self.0.lock() {
            collected.0.extend_from_slice(kept);
            collected.1 |= cut_at.is_some();
        }
    }
}

pub fn string_argument<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    arguments[name]
        .as_str()
        .ok_or_else(|| tool_error(format!("the `{name}` argument (a string) is missing")))
}

/// `text` cut to at most `max` bytes on a character boundary, and whether it was cut.
fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("\n… (cut)\n");
    (text, true)
}

/// A unified diff of a file's change (text files; binary ones are said to differ).
pub fn unified_diff(path: &str, before: Option<&[u8]>, after: &[u8]) -> String {
    let old = before.map(String::from_utf8_lossy).unwrap_or_default();
    let new = String::from_utf8_lossy(after);
    let (old_name, new_name) = match before {
        Some(_) => (format!("a/{path}"), format!("b/{path}")),
        None => ("/dev/null".to_string(), format!("b/{path}")),
    };
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let workspace =
            Workspace::open(&dir.path().to_string_lossy(), &[dir.path().to_path_buf()]).unwrap();
        (dir, workspace)
    }

    #[test]
    fn paths_stay_inside_the_workspace() {
        let (dir, workspace) = workspace();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("src", dir.path().join("inside")).unwrap();
        assert!(workspace.resolve("src/main.rs").is_ok());
        assert!(workspace.resolve("inside/new.rs").is_ok());
        assert!(workspace.resolve("./a/b/c.txt").is_ok());
        for escape in [
            "/etc/passwd",
            "../x",
            "src/../../x",
            "escape/passwd",
            "escape",
        ] {
            let error = workspace.resolve(escape).unwrap_err();
            assert!(!error.0.is_empty(), "{escape}");
        }
    }

    #[test]
    fn a_workspace_outside_the_roots_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let error =
            Workspace::open(&other.path().to_string_lossy(), &[root.path().into()]).unwrap_err();
        assert!(error.to_string().contains("--workspace-root"), "{error}");
        assert!(Workspace::open("/no/such/dir", &[root.path().into()]).is_err());
    }

    #[test]
    fn edits_replace_one_exact_snippet_and_show_their_diff() {
        let (dir, workspace) = workspace();
        std::fs::write(dir.path().join("a.txt"), "one\ntwo\nthree\ntwo\n").unwrap();
        let twice = workspace
            .plan(
                Tool::EditFile,
                &json!({"path": "a.txt", "old": "two", "new": "2"}),
            )
            .unwrap_err();
        assert!(twice.0.contains("occurs 2 times"), "{twice}");
        let change = workspace
            .plan(
                Tool::EditFile,
                &json!({"path": "a.txt", "old": "three\n", "new": "3\n"}),
            )
            .unwrap();
        assert_eq!(change.kind, ChangeKind::Modified);
        assert!(change.diff.contains("-three\n+3\n"), "{}", change.diff);
        workspace.apply(&change).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "one\ntwo\n3\ntwo\n"
        );
        let created = workspace
            .plan(
                Tool::WriteFile,
                &json!({"path": "new/b.txt", "content": "hi\n"}),
            )
            .unwrap();
        assert_eq!(created.kind, ChangeKind::Created);
        assert!(
            created.diff.starts_with("--- /dev/null"),
            "{}",
            created.diff
        );
        workspace.apply(&created).unwrap();
        workspace.restore("new/b.txt", None).unwrap();
        assert!(!dir.path().join("new/b.txt").exists());
    }

    #[tokio::test]
    async fn search_skips_what_git_ignores() {
        let (dir, workspace) = workspace();
        std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/out.rs"), "fn needle() {}\n").unwrap();
        std::fs::write(dir.path().join("lib.rs"), "// x\nfn needle() {}\n").unwrap();
        let found = workspace
            .read(Tool::Search, &json!({"pattern": "fn needle"}))
            .await
            .unwrap();
        assert_eq!(found.text, "lib.rs:2: fn needle() {}");
    }

    #[tokio::test]
    async fn commands_report_their_exit_and_stop_at_their_timeout() {
        let (_dir, workspace) = workspace();
        let cancel = CancellationToken::new();
        let out = workspace
            .run_command(
                &json!({"command": "echo hi; echo oops >&2; exit 3"}),
                "test-task",
                &cancel,
            )
            .await
            .unwrap();
        assert!(
            out.text.contains("hi\n") && out.text.contains("oops\n"),
            "{}",
            out.text
        );
        assert!(out.text.ends_with("[exit code 3]"), "{}", out.text);
        let started = std::time::Instant::now();
        let out = workspace
            .run_command(
                &json!({"command": "sleep 30 & sleep 30", "timeout_secs": 0.3}),
                "test-task",
                &cancel,
            )
            .await
            .unwrap();
        assert!(out.text.contains("its timeout"), "{}", out.text);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
