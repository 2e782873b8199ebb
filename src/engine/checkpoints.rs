//! Checkpoints of interpreter sessions: a Python kernel's variables saved to a file in the
//! server's data dir (each variable pickled on its own, with `dill` when the kernel has it,
//! so one that cannot be saved is named and the others are kept), with a JSON description
//! beside it. The files outlive the session and the server, so a checkpoint restores into a
//! new session after a restart. The kernel itself writes and reads them: the code below runs
//! silently in it, and reports what it did in a small JSON file the session reads back.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::EngineError;
use crate::proto::{SessionCheckpoint, SkippedVariable};

/// Python that tells the session's variables from what the kernel put in its namespace
/// (`In`, `open`...: IPython's `user_ns_hidden`, unless the code assigned the name since).
const HIDDEN: &str = r#"
def __victor_hidden(name, value, unset=object()):
    try:
        hidden = get_ipython().user_ns_hidden
    except Exception:
        hidden = {}
    return (name.startswith('_') or name in ('In', 'Out', 'get_ipython', 'exit', 'quit')
            or hidden.get(name, unset) is value)
"#;

/// Python that saves the session's variables to `{data}` and reports to `{report}`.
const SAVE: &str = r#"
def __victor_checkpoint(data, report):
    import json, os, pickle, types
    try:
        import dill as pickler
        serializer = 'dill'
    except ImportError:
        pickler = pickle
        serializer = 'pickle'
    values, modules, skipped = {}, {}, []
    for name, value in list(globals().items()):
        if __victor_hidden(name, value):
            continue
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
            continue
        try:
            values[name] = pickler.dumps(value)
        except Exception as e:
            skipped.append({'name': name, 'reason': f'{type(e).__name__}: {e}'})
    partial = data + '.partial'
    with open(partial, 'wb') as f:
        pickle.dump({'serializer': serializer, 'values': values, 'modules': modules}, f)
    os.replace(partial, data)
    with open(report, 'w') as f:
        json.dump({'serializer': serializer, 'saved': sorted([*values, *modules]),
                   'skipped': skipped}, f)
__victor_checkpoint({data}, {report})
del __victor_checkpoint, __victor_hidden
"#;

/// Python that replaces the session's variables with those saved in `{data}` and reports to
/// `{report}`.
const RESTORE: &str = r#"
def __victor_restore(data, report):
    import importlib, json, pickle
    with open(data, 'rb') as f:
        saved = pickle.load(f)
    loader, missing = pickle, None
    if saved['serializer'] == 'dill':
        try:
            import dill as loader
        except ImportError:
            missing = 'saved with dill, which this kernel does not have'
    space = globals()
    for name, value in list(space.items()):
        if not __victor_hidden(name, value):
            del space[name]
    restored, failed = [], []
    for name, module in saved['modules'].items():
        try:
            space[name] = importlib.import_module(module)
            restored.append(name)
        except Exception as e:
            failed.append({'name': name, 'reason': f'{type(e).__name__}: {e}'})
    for name, value in saved['values'].items():
        if missing:
            failed.append({'name': name, 'reason': missing})
            continue
        try:
            space[name] = loader.loads(value)
            restored.append(name)
        except Exception as e:
            failed.append({'name': name, 'reason': f'{type(e).__name__}: {e}'})
    with open(report, 'w') as f:
        json.dump({'restored': sorted(restored), 'failed': failed}, f)
__victor_restore({data}, {report})
del __victor_restore, __victor_hidden
"#;

/// What the kernel reports after saving.
#[derive(Debug, Deserialize)]
pub(super) struct SaveReport {
    pub serializer: String,
    pub saved: Vec<String>,
    pub skipped: Vec<SkippedVariable>,
}

/// What the kernel reports after restoring.
#[derive(Debug, Deserialize)]
pub(super) struct RestoreReport {
    pub restored: Vec<String>,
    pub failed: Vec<SkippedVariable>,
}

/// The directory of the server's checkpoints.
#[derive(Debug, Clone)]
pub(super) struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn new(dir: PathBuf) -> Checkpoints {
        Checkpoints { dir }
    }

    /// The file of a checkpoint's variables.
    pub fn data(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.pickle"))
    }

    fn description(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// A fresh file for the kernel's report of one save or restore.
    pub fn report(&self) -> PathBuf {
        self.dir
            .join(format!("report-{}.tmp", uuid::Uuid::new_v4().simple()))
    }

    /// Makes the directory (readable by the server's user only: pickles are code).
    pub fn make_dir(&self) -> Result<(), EngineError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| {
                EngineError::CheckpointFailed(format!(
                    "cannot make the checkpoint directory {}: {e}",
                    self.dir.display()
                ))
            })
    }

    /// The checkpoint `id`.
    pub fn get(&self, id: &str) -> Result<SessionCheckpoint, EngineError> {
        let missing = || EngineError::SessionCheckpointNotFound(id.to_string());
        if !is_id(id) {
            return Err(missing());
        }
        let text = std::fs::read(self.description(id)).map_err(|_| missing())?;
        serde_json::from_slice(&text).map_err(|_| missing())
    }

    /// The checkpoints, oldest first; of one session when `session` says.
    pub fn list(&self, session: Option<&str>) -> Vec<SessionCheckpoint> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<SessionCheckpoint> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let id = name.to_str()?.strip_suffix(".json")?;
                self.get(id).ok()
            })
            .filter(|checkpoint| session.is_none_or(|s| checkpoint.session_id == s))
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        found
    }

    /// Writes a checkpoint's description, which makes it visible.
    pub fn describe(&self, checkpoint: &SessionCheckpoint) -> Result<(), EngineError> {
        let failed = |e: &dyn std::fmt::Display| {
            EngineError::CheckpointFailed(format!("cannot write the checkpoint: {e}"))
        };
        let json = serde_json::to_vec_pretty(checkpoint).map_err(|e| failed(&e))?;
        let partial = self.dir.join(format!("{}.json.partial", checkpoint.id));
        std::fs::write(&partial, json).map_err(|e| failed(&e))?;
        std::fs::rename(&partial, self.description(&checkpoint.id)).map_err(|e| failed(&e))
    }
}

/// Whether `id` can name a checkpoint (and so a file): what [`new_id`] makes.
fn is_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A new checkpoint id, time-sortable.
pub(super) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The Python that saves a session's variables into `data`.
pub(super) fn save_code(data: &Path, report: &Path) -> String {
    fill(SAVE, data, report)
}

/// The Python that restores a session's variables from `data`.
pub(super) fn restore_code(data: &Path, report: &Path) -> String {
    fill(RESTORE, data, report)
}

/// `code` with its paths as Python string literals (a JSON string is one).
fn fill(code: &str, data: &Path, report: &Path) -> String {
    let literal = |path: &Path| {
        serde_json::to_string(&path.to_string_lossy()).unwrap_or_else(|_| "''".to_string())
    };
    let code = code
        .replace("{data}", &literal(data))
        .replace("{report}", &literal(report));
    format!("{HIDDEN}{code}")
}

/// Reads and removes the kernel's report.
pub(super) fn read_report<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EngineError> {
    let text = std::fs::read(path);
    let _ = std::fs::remove_file(path);
    let text = text
        .map_err(|e| EngineError::CheckpointFailed(format!("the kernel wrote no report ({e})")))?;
    serde_json::from_slice(&text).map_err(|e| {
        EngineError::CheckpointFailed(format!("the kernel's report is not readable ({e})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_that_name_a_file_of_the_directory_are_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path().to_path_buf());
        for bad in ["", "../x", "a/b", "..", "x.json", &"a".repeat(65)] {
            assert!(
                matches!(
                    checkpoints.get(bad),
                    Err(EngineError::SessionCheckpointNotFound(_))
                ),
                "{bad}"
            );
        }
        let id = new_id();
        assert!(is_id(&id));
    }

    #[test]
    fn paths_become_python_string_literals() {
        let code = save_code(Path::new("/d/it's \"x\".pickle"), Path::new("/d/r.tmp"));
        assert!(code.contains(r#"__victor_checkpoint("/d/it's \"x\".pickle", "/d/r.tmp")"#));
    }
}
