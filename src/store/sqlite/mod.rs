//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one thread that owns the write connection (`writer.rs`). It takes
//! whatever writes are waiting, applies them in one transaction (each in its own savepoint, so one
//! failure spoils no other), commits, hands the committed events to the sink in order, and only
//! then answers the callers. Batching is what makes thousands of durable task creations a second
//! possible; the single writer is what makes `seq` and `pos` gap-free and publication ordered.
//! Reads use a small pool of read-only connections on tokio's blocking threads, so they never
//! wait behind the writer.
//!
//! Checkpoints (copying the WAL back into the database, the only step that waits for the disk)
//! run on a thread of their own shortly after commits, so a commit, and the live stream behind
//! it, never waits for an fsync. The writer checkpoints by itself only when the WAL has grown
//! past [`writer::WRITER_CHECKPOINT_PAGES`], which a background checkpoint that keeps up never
//! lets happen.
//!
//! One server at a time uses a database file (a lock file beside it), so the one writer sees
//! every commit and the sink hears of all of them.

mod access;
mod agents;
mod conversations;
mod schema;
mod tasks;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, Row};
use tokio::sync::oneshot;

use super::node::{create_private_dir, hold_lock};
use super::{
    Advert, EventSink, Node, SharedStore, Store, StoreError, from_json, to_json, to_value,
};
use crate::proto::{Scope, TaskState};
use writer::{RecordWrite, WriteOp};

/// The database file in the data dir when the `store` setting names none.
const DEFAULT_FILE: &str = "victor.db";
/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 8;

/// A handle on the database, acting for one node.
pub struct SqliteStore {
    inner: Arc<Inner>,
    node: String,
    /// What the node advertises with its lease.
    advert: Advert,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// Held (locked) for as long as the store is open.
    _lock: std::fs::File,
}

/// Opens the store of a `sqlite://PATH` setting.
pub(super) fn open<'a>(
    setting: &'a str,
    node: &'a Node,
    sink: Arc<dyn EventSink>,
) -> BoxFuture<'a, Result<SharedStore, StoreError>> {
    Box::pin(async move {
        let path = database_path(setting)?;
        let mut store = SqliteStore::open(&path, node.id(), sink)?;
        store.advert = node.advert().clone();
        Ok(Arc::new(store) as SharedStore)
    })
}

/// Opens `victor.db` in the node's data dir: the store when the setting names none.
pub(super) fn open_default(
    node: &Node,
    sink: Arc<dyn EventSink>,
) -> Result<SharedStore, StoreError> {
    let mut store = SqliteStore::open(&node.dir().join(DEFAULT_FILE), node.id(), sink)?;
    store.advert = node.advert().clone();
    Ok(Arc::new(store))
}

/// The database file a `sqlite://PATH` setting names.
fn database_path(setting: &str) -> Result<PathBuf, StoreError> {
    let path = setting.strip_prefix("sqlite://").unwrap_or_default();
    let refuse = |why: &str| {
        StoreError::Setting(format!(
            "store `{setting}`: {why}; write sqlite://PATH with PATH the database file, \
             e.g. sqlite:///var/lib/victor/victor.db"
        ))
    };
    if path.is_empty() {
        return Err(refuse("it names no file"));
    }
    let path = PathBuf::from(path);
    if path.is_dir() {
        return Err(refuse("that is a directory"));
    }
    Ok(path)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for `node` and migrates it to the
    /// current schema.
    pub fn open(
        path: &Path,
        node: &str,
        sink: Arc<dyn EventSink>,
    ) -> Result<SqliteStore, StoreError> {
        let open_error = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| open_error(&e))?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = hold_lock(
            Path::new(&lock_path),
            "another victor server is using this database; stop it or choose another --store",
        )
        .map_err(|e| open_error(&e))?;
        let mut conn = Connection::open(path).map_err(|e| open_error(&e))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA wal_autocheckpoint = {};",
            writer::WRITER_CHECKPOINT_PAGES
        ))
        .map_err(|e| open_error(&e))?;
        schema::migrate(&mut conn).map_err(|e| open_error(&e))?;

        let checkpoint_conn = Connection::open(path).map_err(|e| open_error(&e))?;
        checkpoint_conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| open_error(&e))?;
        let (dirty, commits) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("victor-store-checkpointer".into())
            .spawn(move || writer::checkpoint_loop(&checkpoint_conn, &commits))
            .map_err(|e| open_error(&e))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("victor-store-writer".into())
            .spawn(move || writer::write_loop(conn, rx, sink, dirty, checkpointer))
            .map_err(|e| open_error(&e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
                _lock: lock,
            }),
            node: node.to_string(),
            advert: Advert::default(),
        })
    }

    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let writer = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
            let writer = writer.as_ref().ok_or(StoreError::Closed)?;
            writer.send(op(reply)).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn record(
        &self,
        write: impl FnOnce(&Connection) -> Result<usize, StoreError> + Send + 'static,
    ) -> Result<usize, StoreError> {
        let write: RecordWrite = Box::new(write);
        self.write(|reply| WriteOp::Record(write, reply)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = query(&conn);
            inner.return_reader(conn);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection, StoreError> {
        if self.writer.lock().map(|w| w.is_none()).unwrap_or(true) {
            return Err(StoreError::Closed);
        }
        if let Some(conn) = self.readers.lock().ok().and_then(|mut pool| pool.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    fn return_reader(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < MAX_IDLE_READERS
        {
            pool.push(conn);
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn node(&self) -> &str {
        &self.node
    }

    async fn close(&self) {
        let sender = self.inner.writer.lock().ok().and_then(|mut w| w.take());
        drop(sender);
        if let Ok(mut pool) = self.inner.readers.lock() {
            pool.clear();
        }
        let thread = self
            .inner
            .writer_thread
            .lock()
            .ok()
            .and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// SQLite's errors, as every backend's, reach callers as [`StoreError::Backend`] with their
/// message.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

fn time_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row
        .get::<_, Option<i64>>(index)?
        .and_then(|us| Timestamp::from_microsecond(us).ok()))
}

fn scope_column(row: &Row<'_>, index: usize) -> rusqlite::Result<Scope> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

/// A number from the API as SQLite's signed integer; past `i64::MAX` means "the end".
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn state_list(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}
