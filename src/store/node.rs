//! The node a server is: its data dir, held by one server at a time, and the id that the tasks it
//! runs are recorded under.
//!
//! The id is kept in the data dir (`node-id`) rather than made anew at each start: a node that
//! restarts after a crash then knows its own tasks at once and ends them, instead of leaving them
//! `running` until its old lease runs out. Two servers never share an id, since a data dir has
//! one server at a time.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LEASE, StoreError};

/// The file in the data dir that holds the node's id.
const ID_FILE: &str = "node-id";
/// The file in the data dir that a running server holds locked.
const LOCK_FILE: &str = "victor.lock";

/// This server as a node: the data dir it holds locked, its id, and what it tells the other
/// nodes about itself with its lease.
#[derive(Debug)]
pub struct Node {
    id: String,
    dir: PathBuf,
    advert: Advert,
    lease: Duration,
    /// Held (locked) for as long as the node lives.
    _lock: File,
}

/// What a node advertises with its lease: which tasks it takes, and how many at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advert {
    /// Its labels (`--label`): it takes the tasks whose `requires` are all among them.
    pub labels: Vec<String>,
    pub max_concurrent: usize,
}

impl Advert {
    /// Whether a node with this advert may run a task that requires `requires`.
    pub fn can_run(&self, requires: &[String]) -> bool {
        requires.iter().all(|label| self.labels.contains(label))
    }
}

impl Node {
    /// Takes the data dir (creating it, readable by its user alone), refusing one that another
    /// server holds, and reads the node's id from it or makes one.
    pub fn claim(data_dir: &Path) -> Result<Node, StoreError> {
        let open_error = |e: &dyn std::fmt::Display| StoreError::Open {
            path: data_dir.display().to_string(),
            message: e.to_string(),
        };
        create_private_dir(data_dir).map_err(|e| open_error(&e))?;
        // One server per data dir: a second would take the first one's running tasks for
        // leftovers of a crash.
        let lock = hold_lock(
            &data_dir.join(LOCK_FILE),
            "another victor server is using this data dir; stop it or pass a different --data-dir",
        )
        .map_err(|e| open_error(&e))?;
        let id = read_or_make_id(&data_dir.join(ID_FILE)).map_err(|e| open_error(&e))?;
        Ok(Node {
            id,
            dir: data_dir.to_path_buf(),
            advert: Advert::default(),
            lease: LEASE,
            _lock: lock,
        })
    }

    /// The node advertising `advert` and holding leases of `lease`.
    pub fn advertising(mut self, advert: Advert, lease: Duration) -> Node {
        self.advert = advert;
        self.lease = lease;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn advert(&self) -> &Advert {
        &self.advert
    }

    /// How long its lease lasts: silent that long, it counts as gone.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The data dir: what belongs to this node alone (the embedded database by default).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The id in `path`, or a new one written there: the host name, for people reading which node
/// runs what, and a random part, for two data dirs on one host.
fn read_or_make_id(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let host: String = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let random = uuid::Uuid::now_v7().simple().to_string();
    // The last characters of a v7 UUID are its random ones.
    let id = format!(
        "{}-{}",
        if host.is_empty() { "node" } else { &host },
        &random[random.len() - 8..]
    );
    // Written whole or not at all: a crash mid-write leaves no half id behind.
    let partial = path.with_extension("partial");
    let mut file = File::create(&partial)?;
    writeln!(file, "{id}")?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(id)
}

/// Creates `path` and locks it for as long as the file returned lives; `held` is the error's
/// message when another process holds it.
pub(super) fn hold_lock(path: &Path, held: &str) -> std::io::Result<File> {
    let lock = File::create(path)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            held.to_string(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Creates a directory readable by its user alone (0700): the data dir holds every task's
/// command, environment and output. Its parents are made as usual, and a directory that exists
/// already keeps the mode its owner gave it.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        // Made by someone else in the meantime: theirs to set.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_keeps_its_node_id_and_has_one_server_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = Node::claim(&data).unwrap();
        let refused = Node::claim(&data).unwrap_err().to_string();
        assert!(
            refused.contains("another victor server is using this data dir"),
            "{refused}"
        );
        let id = first.id().to_string();
        drop(first);
        let again = Node::claim(&data).unwrap();
        assert_eq!(again.id(), id, "the id survives a restart");
        let other = Node::claim(&dir.path().join("other")).unwrap();
        assert_ne!(other.id(), id, "another data dir is another node");
    }
}
