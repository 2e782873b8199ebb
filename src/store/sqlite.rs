//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one thread that owns the write connection. It takes whatever writes are
//! waiting, applies them in one transaction (each in its own savepoint, so one failure spoils no
//! other), commits, hands the committed events to the sink in order, and only then answers the
//! callers. Batching is what makes thousands of durable task creations a second possible; the single
//! writer is what makes `seq` and `pos` gap-free and publication ordered. Reads use a small pool of
//! read-only connections on tokio's blocking threads, so they never wait behind the writer.
//!
//! Checkpoints (copying the WAL back into the database, the only step that waits for the disk)
//! run on a thread of their own shortly after commits, so a commit, and the live stream behind
//! it, never waits for an fsync. The writer checkpoints by itself only when the WAL has grown
//! past [`WRITER_CHECKPOINT_PAGES`], which a background checkpoint that keeps up never lets happen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::oneshot;

use super::{
    ConversationAppend, ConversationQuery, EventRange, EventSink, NewTask, READ_BYTES, Store,
    StoreError, StoredKey, StoredSession, TaskQuery, Transition,
};
use crate::proto::{
    Approval, ApprovalStatus, Checkpoint, ConversationSummary, Event, Scope, StateData,
    StoredMessage, Task, TaskState, types,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE tasks (
        num             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        name            TEXT,
        kind            TEXT NOT NULL,
        spec            TEXT NOT NULL,
        state           TEXT NOT NULL,
        priority        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER,
        result          TEXT,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT UNIQUE,
        fingerprint     TEXT
    );
    CREATE INDEX tasks_by_state ON tasks (state, num);
    CREATE TABLE events (
        pos     INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        ts      INTEGER NOT NULL,
        type    TEXT NOT NULL,
        data    TEXT NOT NULL,
        UNIQUE (task_id, seq)
    );
"#,
    r#"
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT,
        scope        TEXT NOT NULL,
        hash         TEXT NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE sessions (
        id           TEXT PRIMARY KEY,
        holder       TEXT NOT NULL,
        scope        TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_holder ON sessions (holder);
"#,
    r#"
    CREATE TABLE conversations (
        num           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT NOT NULL UNIQUE,
        channel       TEXT,
        title         TEXT NOT NULL,
        provider      TEXT,
        model         TEXT,
        system        TEXT,
        message_count INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE INDEX conversations_by_update ON conversations (updated_at, num);
    CREATE INDEX conversations_by_channel ON conversations (channel, updated_at, num);
    CREATE TABLE messages (
        conversation_id TEXT NOT NULL,
        idx             INTEGER NOT NULL,
        message         TEXT NOT NULL,
        task_id         TEXT,
        created_at      INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, idx)
    );
"#,
    r#"
    CREATE TABLE approvals (
        id         TEXT PRIMARY KEY,
        task_id    TEXT NOT NULL,
        status     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        data       TEXT NOT NULL
    );
    CREATE INDEX approvals_by_task ON approvals (task_id, created_at);
    CREATE INDEX approvals_by_status ON approvals (status, created_at);
    CREATE TABLE checkpoints (
        task_id TEXT NOT NULL,
        id      INTEGER NOT NULL,
        data    TEXT NOT NULL,
        PRIMARY KEY (task_id, id)
    );
    CREATE TABLE checkpoint_files (
        task_id    TEXT NOT NULL,
        checkpoint INTEGER NOT NULL,
        path       TEXT NOT NULL,
        content    BLOB,
        PRIMARY KEY (task_id, checkpoint, path)
    );
"#,
];

/// Writes waiting longer than this many in one transaction wait for the next.
const MAX_BATCH: usize = 1024;
/// WAL pages (4 KiB each) past which the writer checkpoints by itself: a bound on the WAL
/// under writes so steady that the background checkpoint never finds it caught up.
const WRITER_CHECKPOINT_PAGES: u32 = 16_384;
/// The pause after a background checkpoint: commits in the meantime share the next one. A
/// checkpoint's disk traffic slows the commits beside it, so fewer, larger ones keep streams
/// smoother (chatbench: per-piece p99 1.3 ms with 100 ms pauses, 0.6-0.7 ms with 1-2 s).
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(1000);
/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 8;

const TASK_COLUMNS: &str =
    "num, id, name, spec, state, priority, created_at, started_at, finished_at, result, last_seq";

const CONVERSATION_COLUMNS: &str =
    "num, id, title, provider, model, system, message_count, created_at, updated_at";

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    /// Held (locked) for as long as the store is open.
    _lock: std::fs::File,
}

enum WriteOp {
    Create(NewTask, oneshot::Sender<Result<(Task, bool), StoreError>>),
    Append(
        String,
        Vec<(&'static str, serde_json::Value)>,
        oneshot::Sender<Result<Vec<Event>, StoreError>>,
    ),
    Transition(
        String,
        Transition,
        oneshot::Sender<Result<Task, StoreError>>,
    ),
    Delete(String, oneshot::Sender<Result<(), StoreError>>),
    /// A write without events (keys, sessions); answers the number of rows it changed.
    Record(RecordWrite, oneshot::Sender<Result<usize, StoreError>>),
}

type RecordWrite = Box<dyn FnOnce(&Connection) -> Result<usize, StoreError> + Send>;

/// A write applied inside the open transaction, waiting for the commit to be answered.
enum Applied {
    Create(
        oneshot::Sender<Result<(Task, bool), StoreError>>,
        Result<(Task, bool), StoreError>,
    ),
    Append(
        oneshot::Sender<Result<Vec<Event>, StoreError>>,
        Result<Vec<Event>, StoreError>,
    ),
    Transition(
        oneshot::Sender<Result<Task, StoreError>>,
        Result<Task, StoreError>,
    ),
    Delete(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Record(
        oneshot::Sender<Result<usize, StoreError>>,
        Result<usize, StoreError>,
    ),
}

/// Creates the data dir readable by its user alone (0700): it holds every task's command,
/// environment and output. Its parents are made as usual, and a data dir that exists already
/// keeps the mode its owner gave it.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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

impl SqliteStore {
    /// Opens (creating if needed) `victor.db` in `data_dir` and migrates it to the current schema.
    pub fn open(data_dir: &Path, sink: Arc<dyn EventSink>) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join("victor.db");
        let open_error = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        create_private_dir(data_dir).map_err(|e| open_error(&e))?;
        // One server per data dir: a second would take the first one's running tasks for
        // leftovers of a crash.
        let lock =
            std::fs::File::create(data_dir.join("victor.lock")).map_err(|e| open_error(&e))?;
        if let Err(e) = lock.try_lock() {
            return Err(StoreError::Open {
                path: data_dir.display().to_string(),
                message: match e {
                    std::fs::TryLockError::WouldBlock => {
                        "another victor server is using this data dir; stop it or pass a different --data-dir"
                            .to_string()
                    }
                    std::fs::TryLockError::Error(e) => e.to_string(),
                },
            });
        }
        let mut conn = Connection::open(&path).map_err(|e| open_error(&e))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
        ))
        .map_err(|e| open_error(&e))?;
        migrate(&mut conn).map_err(|e| open_error(&e))?;

        let checkpoint_conn = Connection::open(&path).map_err(|e| open_error(&e))?;
        checkpoint_conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| open_error(&e))?;
        let (dirty, commits) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("victor-store-checkpointer".into())
            .spawn(move || checkpoint_loop(&checkpoint_conn, &commits))
            .map_err(|e| open_error(&e))?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("victor-store-writer".into())
            .spawn(move || write_loop(conn, rx, sink, dirty, checkpointer))
            .map_err(|e| open_error(&e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
                _lock: lock,
            }),
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
        self.write(|reply| WriteOp::Record(Box::new(write), reply))
            .await
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

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let tx = conn.transaction()?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    tx.commit()
}

/// Checkpoints after commits (each `()` says there were some), pausing in between, until the
/// writer goes away (which it may do mid-pause: closing the store never waits for one).
fn checkpoint_loop(conn: &Connection, commits: &mpsc::Receiver<()>) {
    let mut due = commits.recv().is_ok();
    while due {
        // PASSIVE never blocks the writer; what a reader still needs is copied next time.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "store checkpoint failed");
        }
        let pause_ends = std::time::Instant::now() + CHECKPOINT_PAUSE;
        due = false;
        loop {
            let left = pause_ends.saturating_duration_since(std::time::Instant::now());
            match commits.recv_timeout(left) {
                Ok(()) => due = true,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if !due {
            due = commits.recv().is_ok();
        }
    }
}

fn write_loop(
    mut conn: Connection,
    ops: mpsc::Receiver<WriteOp>,
    sink: Arc<dyn EventSink>,
    dirty: mpsc::SyncSender<()>,
    checkpointer: JoinHandle<()>,
) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut committed_events = Vec::new();
        let mut applied = Vec::with_capacity(batch.len());
        let outcome = conn.transaction().and_then(|mut tx| {
            for op in batch {
                if tx.is_autocommit() {
                    // SQLite rolled the whole transaction back by itself (disk full, I/O
                    // error): applying more would start a new one that commits behind our
                    // back. Stop; the commit below fails and every caller hears so.
                    applied.push(Applied::rejected(op));
                    continue;
                }
                applied.push(apply_in_savepoint(&mut tx, op, &mut committed_events));
            }
            tx.commit()
        });
        match outcome {
            Ok(()) => {
                if !committed_events.is_empty() {
                    sink.committed(&committed_events);
                }
                // Full means a checkpoint is already due, which will include this commit.
                let _ = dirty.try_send(());
                for done in applied {
                    done.answer();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                for done in applied {
                    done.fail(&e);
                }
            }
        }
    }
    drop(dirty);
    let _ = checkpointer.join();
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "store checkpoint on close failed");
    }
}

/// Applies one write in its own savepoint, so that its failure leaves the others in the
/// batch intact; its events join `committed` only when it succeeded.
fn apply_in_savepoint(
    tx: &mut rusqlite::Transaction<'_>,
    op: WriteOp,
    committed: &mut Vec<Event>,
) -> Applied {
    match op {
        WriteOp::Create(new, reply) => Applied::Create(
            reply,
            in_savepoint(tx, committed, |conn, events| {
                insert_task(conn, &new, events)
            }),
        ),
        WriteOp::Append(task_id, new_events, reply) => Applied::Append(
            reply,
            in_savepoint(tx, committed, |conn, events| {
                for (kind, data) in &new_events {
                    events.push(append_event(conn, &task_id, kind, data)?);
                }
                Ok(events.clone())
            }),
        ),
        WriteOp::Transition(task_id, change, reply) => Applied::Transition(
            reply,
            in_savepoint(tx, committed, |conn, events| {
                apply_transition(conn, &task_id, &change, events)
            }),
        ),
        WriteOp::Delete(task_id, reply) => Applied::Delete(
            reply,
            in_savepoint(tx, committed, |conn, _| delete(conn, &task_id)),
        ),
        WriteOp::Record(write, reply) => {
            Applied::Record(reply, in_savepoint(tx, committed, |conn, _| write(conn)))
        }
    }
}

fn in_savepoint<T>(
    tx: &mut rusqlite::Transaction<'_>,
    committed: &mut Vec<Event>,
    write: impl FnOnce(&Connection, &mut Vec<Event>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let savepoint = tx.savepoint()?;
    let mut events = Vec::new();
    let value = write(&savepoint, &mut events)?;
    savepoint.commit()?;
    committed.append(&mut events);
    Ok(value)
}

impl Applied {
    /// A write not attempted because its transaction is already lost.
    fn rejected(op: WriteOp) -> Applied {
        let lost = || StoreError::Corrupt("the transaction was rolled back".into());
        match op {
            WriteOp::Create(_, reply) => Applied::Create(reply, Err(lost())),
            WriteOp::Append(_, _, reply) => Applied::Append(reply, Err(lost())),
            WriteOp::Transition(_, _, reply) => Applied::Transition(reply, Err(lost())),
            WriteOp::Delete(_, reply) => Applied::Delete(reply, Err(lost())),
            WriteOp::Record(_, reply) => Applied::Record(reply, Err(lost())),
        }
    }

    fn answer(self) {
        // A caller that went away no longer needs the answer; the write itself stands.
        match self {
            Applied::Create(reply, r) => drop(reply.send(r)),
            Applied::Append(reply, r) => drop(reply.send(r)),
            Applied::Transition(reply, r) => drop(reply.send(r)),
            Applied::Delete(reply, r) => drop(reply.send(r)),
            Applied::Record(reply, r) => drop(reply.send(r)),
        }
    }

    fn fail(self, error: &rusqlite::Error) {
        let failed = || StoreError::Corrupt(format!("commit failed: {error}"));
        match self {
            Applied::Create(reply, _) => drop(reply.send(Err(failed()))),
            Applied::Append(reply, _) => drop(reply.send(Err(failed()))),
            Applied::Transition(reply, _) => drop(reply.send(Err(failed()))),
            Applied::Delete(reply, _) => drop(reply.send(Err(failed()))),
            Applied::Record(reply, _) => drop(reply.send(Err(failed()))),
        }
    }
}

fn insert_task(
    conn: &Connection,
    new: &NewTask,
    events: &mut Vec<Event>,
) -> Result<(Task, bool), StoreError> {
    if let Some(key) = &new.idempotency_key {
        let existing: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT id, fingerprint FROM tasks WHERE idempotency_key = ?1",
                [key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((id, fingerprint)) = existing {
            if fingerprint.as_deref() != Some(new.request_fingerprint.as_str()) {
                return Err(StoreError::IdempotencyMismatch);
            }
            let task = select_task(conn, &id)?.ok_or(StoreError::NotFound(id))?;
            return Ok((task, false));
        }
    }
    let task = &new.task;
    conn.execute(
        "INSERT INTO tasks (id, name, kind, spec, state, priority, created_at, idempotency_key, fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            task.id,
            task.name,
            task.spec.kind(),
            to_json(&task.spec)?,
            task.state.as_str(),
            task.priority,
            task.created_at.as_microsecond(),
            new.idempotency_key,
            new.request_fingerprint,
        ],
    )?;
    let data = to_value(&StateData {
        state: task.state,
        pid: None,
        result: None,
        reason: None,
    })?;
    events.push(append_event(conn, &task.id, types::STATE, &data)?);
    let task = select_task(conn, &task.id)?.ok_or_else(|| StoreError::NotFound(task.id.clone()))?;
    Ok((task, true))
}

fn append_event(
    conn: &Connection,
    task_id: &str,
    kind: &str,
    data: &serde_json::Value,
) -> Result<Event, StoreError> {
    // A final event is the last: nothing is appended to the log of a finished task.
    let seq: Option<u64> = conn
        .prepare_cached(
            "UPDATE tasks SET last_seq = last_seq + 1
             WHERE id = ?1 AND state NOT IN ('succeeded', 'failed', 'cancelled', 'interrupted')
             RETURNING last_seq",
        )?
        .query_row([task_id], |row| row.get(0))
        .optional()?;
    let Some(seq) = seq else {
        return Err(match select_task(conn, task_id)? {
            Some(task) => StoreError::WrongState {
                id: task_id.to_string(),
                state: task.state,
            },
            None => StoreError::NotFound(task_id.to_string()),
        });
    };
    // Microseconds are what the store keeps: the live copy must equal the stored one.
    let ts = Timestamp::from_microsecond(Timestamp::now().as_microsecond())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    conn.prepare_cached(
        "INSERT INTO events (task_id, seq, ts, type, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        task_id,
        seq,
        ts.as_microsecond(),
        kind,
        to_json(data)?
    ])?;
    Ok(Event {
        task_id: task_id.to_string(),
        seq,
        pos: conn.last_insert_rowid() as u64,
        ts,
        kind: kind.to_string(),
        data: data.clone(),
    })
}

fn apply_transition(
    conn: &Connection,
    task_id: &str,
    change: &Transition,
    events: &mut Vec<Event>,
) -> Result<Task, StoreError> {
    let current =
        select_task(conn, task_id)?.ok_or_else(|| StoreError::NotFound(task_id.into()))?;
    if !change.from.contains(&current.state) {
        return Err(StoreError::WrongState {
            id: task_id.to_string(),
            state: current.state,
        });
    }
    let result = change.result.as_ref().map(to_json).transpose()?;
    if let Some(append) = &change.messages {
        append_messages(conn, append)?;
    }
    // The event first, while the task still takes events; then the state it announces.
    events.push(append_event(conn, task_id, types::STATE, &change.data)?);
    conn.execute(
        "UPDATE tasks SET state = ?2,
             started_at = COALESCE(?3, started_at),
             finished_at = COALESCE(?4, finished_at),
             result = COALESCE(?5, result)
         WHERE id = ?1",
        params![
            task_id,
            change.state.as_str(),
            change.started_at.map(|t| t.as_microsecond()),
            change.finished_at.map(|t| t.as_microsecond()),
            result,
        ],
    )?;
    select_task(conn, task_id)?.ok_or_else(|| StoreError::NotFound(task_id.into()))
}

fn append_messages(conn: &Connection, append: &ConversationAppend) -> Result<(), StoreError> {
    let id = &append.conversation_id;
    let count: Option<u64> = conn
        .query_row(
            "SELECT message_count FROM conversations WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(mut count) = count else {
        return Err(StoreError::ConversationNotFound(id.clone()));
    };
    let mut updated_at = Timestamp::now();
    for stored in &append.messages {
        conn.prepare_cached(
            "INSERT INTO messages (conversation_id, idx, message, task_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id,
            count,
            to_json(&stored.message)?,
            stored.task_id,
            stored.created_at.as_microsecond()
        ])?;
        count += 1;
        updated_at = updated_at.max(stored.created_at);
    }
    conn.execute(
        "UPDATE conversations SET message_count = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, count, updated_at.as_microsecond()],
    )?;
    Ok(())
}

fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<(u64, ConversationSummary)> {
    Ok((
        row.get(0)?,
        ConversationSummary {
            id: row.get(1)?,
            title: row.get(2)?,
            provider: row.get(3)?,
            model: row.get(4)?,
            system: row.get(5)?,
            message_count: row.get(6)?,
            created_at: time_column(row, 7)?.unwrap_or(Timestamp::UNIX_EPOCH),
            updated_at: time_column(row, 8)?.unwrap_or(Timestamp::UNIX_EPOCH),
        },
    ))
}

/// The cursor of a page of conversations: where the last one shown sits in the order.
fn conversation_cursor(conversation: &ConversationSummary, num: u64) -> String {
    format!("{}.{num}", conversation.updated_at.as_microsecond())
}

fn parse_conversation_cursor(cursor: &str) -> Result<(i64, i64), StoreError> {
    let bad = || StoreError::BadCursor(cursor.to_string());
    let (updated, num) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((
        updated.parse().map_err(|_| bad())?,
        num.parse().map_err(|_| bad())?,
    ))
}

fn delete(conn: &Connection, task_id: &str) -> Result<(), StoreError> {
    let task = select_task(conn, task_id)?.ok_or_else(|| StoreError::NotFound(task_id.into()))?;
    if !task.state.is_final() {
        return Err(StoreError::WrongState {
            id: task_id.to_string(),
            state: task.state,
        });
    }
    conn.execute("DELETE FROM events WHERE task_id = ?1", [task_id])?;
    conn.execute("DELETE FROM approvals WHERE task_id = ?1", [task_id])?;
    conn.execute("DELETE FROM checkpoints WHERE task_id = ?1", [task_id])?;
    conn.execute("DELETE FROM checkpoint_files WHERE task_id = ?1", [task_id])?;
    conn.execute("DELETE FROM tasks WHERE id = ?1", [task_id])?;
    Ok(())
}

fn select_task(conn: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
        .query_row([id], task_from_row)
        .optional()?
        .map(|(_, task)| task)
        .transpose()
}

type TaskRow = (u64, Result<Task, StoreError>);

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRow> {
    let num: u64 = row.get(0)?;
    let spec: String = row.get(3)?;
    let state: String = row.get(4)?;
    let result: Option<String> = row.get(9)?;
    let micros = |index: usize| time_column(row, index);
    let id: String = row.get(1)?;
    let created_at = micros(6)?.unwrap_or(Timestamp::UNIX_EPOCH);
    let started_at = micros(7)?;
    let finished_at = micros(8)?;
    let name: Option<String> = row.get(2)?;
    let priority: i32 = row.get(5)?;
    let last_seq: u64 = row.get(10)?;
    let task = (|| {
        Ok(Task {
            spec: from_json(&spec)?,
            state: state
                .parse()
                .map_err(|e: crate::proto::task::UnknownState| {
                    StoreError::Corrupt(e.to_string())
                })?,
            result: result.as_deref().map(from_json).transpose()?,
            id,
            name,
            priority,
            created_at,
            started_at,
            finished_at,
            last_seq,
        })
    })();
    Ok((num, task))
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

/// An event and the size of its data.
fn event_from_row(row: &Row<'_>) -> rusqlite::Result<(Result<Event, StoreError>, usize)> {
    let data: String = row.get(5)?;
    let size = data.len();
    let ts: i64 = row.get(3)?;
    let pos: u64 = row.get(0)?;
    let task_id: String = row.get(1)?;
    let seq: u64 = row.get(2)?;
    let kind: String = row.get(4)?;
    let event = from_json(&data).map(|data| Event {
        task_id,
        seq,
        pos,
        ts: Timestamp::from_microsecond(ts).unwrap_or(Timestamp::UNIX_EPOCH),
        kind,
        data,
    });
    Ok((event, size))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn state_list(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_task(&self, new: NewTask) -> Result<(Task, bool), StoreError> {
        self.write(|reply| WriteOp::Create(new, reply)).await
    }

    async fn append(
        &self,
        task_id: &str,
        events: Vec<(&'static str, serde_json::Value)>,
    ) -> Result<Vec<Event>, StoreError> {
        let task_id = task_id.to_string();
        self.write(|reply| WriteOp::Append(task_id, events, reply))
            .await
    }

    async fn transition(&self, task_id: &str, change: Transition) -> Result<Task, StoreError> {
        let task_id = task_id.to_string();
        self.write(|reply| WriteOp::Transition(task_id, change, reply))
            .await
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| select_task(conn, &id)).await
    }

    async fn list_tasks(&self, query: TaskQuery) -> Result<(Vec<Task>, Option<u64>), StoreError> {
        self.read(move |conn| {
            let mut sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE num < ?1 AND (?3 IS NULL OR kind = ?3)"
            );
            if !query.states.is_empty() {
                sql.push_str(&format!(" AND state IN ({})", state_list(&query.states)));
            }
            sql.push_str(" ORDER BY num DESC LIMIT ?2");
            let before = clamp(query.before.unwrap_or(u64::MAX));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![before, clamp(query.limit as u64 + 1), query.kind],
                task_from_row,
            )?;
            let mut tasks = Vec::with_capacity(query.limit);
            let mut next = None;
            let mut last_num = None;
            for row in rows {
                let (num, task) = row?;
                if tasks.len() == query.limit {
                    next = last_num;
                    break;
                }
                tasks.push(task?);
                last_num = Some(num);
            }
            Ok((tasks, next))
        })
        .await
    }

    async fn tasks_in_states(&self, states: &[TaskState]) -> Result<Vec<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ({}) ORDER BY num",
            state_list(states)
        );
        self.read(move |conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map([], task_from_row)?;
            rows.map(|row| row?.1).collect()
        })
        .await
    }

    async fn events_after(
        &self,
        range: EventRange,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            const COLUMNS: &str = "pos, task_id, seq, ts, type, data";
            let limit = clamp(limit as u64);
            let (mut stmt, args) = match &range {
                EventRange::Task { id, after } => (
                    conn.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM events WHERE task_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                    ))?,
                    vec![rusqlite::types::Value::from(id.clone()), clamp(*after).into(), limit.into()],
                ),
                EventRange::All { after } => (
                    conn.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM events WHERE pos > ?1 ORDER BY pos LIMIT ?2"
                    ))?,
                    vec![clamp(*after).into(), limit.into()],
                ),
            };
            let mut out = Vec::new();
            let mut bytes = 0;
            for row in stmt.query_map(rusqlite::params_from_iter(args), event_from_row)? {
                let (event, size) = row?;
                out.push(event?);
                bytes += size;
                if bytes >= READ_BYTES {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn last_pos(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            Ok(
                conn.query_row("SELECT COALESCE(MAX(pos), 0) FROM events", [], |row| {
                    row.get(0)
                })?,
            )
        })
        .await
    }

    async fn delete_task(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(|reply| WriteOp::Delete(id, reply)).await
    }

    async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        self.read(|conn| {
            let mut counts: BTreeMap<TaskState, u64> =
                TaskState::ALL.into_iter().map(|s| (s, 0)).collect();
            let mut stmt =
                conn.prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })?;
            for row in rows {
                let (state, count) = row?;
                if let Ok(state) = state.parse::<TaskState>() {
                    counts.insert(state, count);
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn put_key(&self, key: StoredKey) -> Result<(), StoreError> {
        self.record(move |conn| {
            Ok(conn.execute(
                "INSERT INTO api_keys (id, name, scope, hash, created_at, last_used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.id,
                    key.name,
                    key.scope.as_str(),
                    key.hash,
                    key.created_at.as_microsecond(),
                    key.last_used_at.map(|t| t.as_microsecond()),
                ],
            )?)
        })
        .await
        .map(drop)
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, scope, hash, created_at, last_used_at FROM api_keys
                 ORDER BY created_at",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(StoredKey {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    scope: scope_column(row, 2)?,
                    hash: row.get(3)?,
                    created_at: time_column(row, 4)?.unwrap_or(Timestamp::UNIX_EPOCH),
                    last_used_at: time_column(row, 5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.record(move |conn| {
            conn.execute("DELETE FROM sessions WHERE holder = ?1", [&id])?;
            Ok(conn.execute("DELETE FROM api_keys WHERE id = ?1", [&id])?)
        })
        .await
        .map(|deleted| deleted > 0)
    }

    async fn put_session(&self, session: StoredSession) -> Result<(), StoreError> {
        self.record(move |conn| {
            Ok(conn.execute(
                "INSERT OR REPLACE INTO sessions (id, holder, scope, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.id,
                    session.holder,
                    session.scope.as_str(),
                    session.created_at.as_microsecond(),
                    session.last_seen_at.as_microsecond(),
                ],
            )?)
        })
        .await
        .map(drop)
    }

    async fn list_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, holder, scope, created_at, last_seen_at FROM sessions",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(StoredSession {
                    id: row.get(0)?,
                    holder: row.get(1)?,
                    scope: scope_column(row, 2)?,
                    created_at: time_column(row, 3)?.unwrap_or(Timestamp::UNIX_EPOCH),
                    last_seen_at: time_column(row, 4)?.unwrap_or(Timestamp::UNIX_EPOCH),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_sessions(&self, ids: Vec<String>) -> Result<(), StoreError> {
        self.record(move |conn| {
            let mut stmt = conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?;
            let mut deleted = 0;
            for id in &ids {
                deleted += stmt.execute([id])?;
            }
            Ok(deleted)
        })
        .await
        .map(drop)
    }

    async fn record_use(
        &self,
        keys: Vec<(String, Timestamp)>,
        sessions: Vec<(String, Timestamp)>,
    ) -> Result<(), StoreError> {
        self.record(move |conn| {
            let mut changed = 0;
            let mut stmt =
                conn.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?;
            for (id, at) in &keys {
                changed += stmt.execute(params![id, at.as_microsecond()])?;
            }
            let mut stmt =
                conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1")?;
            for (id, at) in &sessions {
                changed += stmt.execute(params![id, at.as_microsecond()])?;
            }
            Ok(changed)
        })
        .await
        .map(drop)
    }

    async fn create_conversation(
        &self,
        conversation: ConversationSummary,
        channel: Option<String>,
    ) -> Result<(), StoreError> {
        self.record(move |conn| {
            Ok(conn.execute(
                "INSERT INTO conversations
                     (id, channel, title, provider, model, system, message_count, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
                params![
                    conversation.id,
                    channel,
                    conversation.title,
                    conversation.provider,
                    conversation.model,
                    conversation.system,
                    conversation.created_at.as_microsecond(),
                    conversation.updated_at.as_microsecond(),
                ],
            )?)
        })
        .await
        .map(drop)
    }

    async fn update_conversation(
        &self,
        conversation: ConversationSummary,
    ) -> Result<(), StoreError> {
        let changed = self
            .record({
                let conversation = conversation.clone();
                move |conn| {
                    Ok(conn.execute(
                        "UPDATE conversations
                         SET title = ?2, provider = ?3, model = ?4, system = ?5, updated_at = ?6
                         WHERE id = ?1",
                        params![
                            conversation.id,
                            conversation.title,
                            conversation.provider,
                            conversation.model,
                            conversation.system,
                            conversation.updated_at.as_microsecond(),
                        ],
                    )?)
                }
            })
            .await?;
        if changed == 0 {
            return Err(StoreError::ConversationNotFound(conversation.id));
        }
        Ok(())
    }

    async fn list_conversations(
        &self,
        query: ConversationQuery,
    ) -> Result<(Vec<ConversationSummary>, Option<String>), StoreError> {
        let after = query
            .after
            .as_deref()
            .map(parse_conversation_cursor)
            .transpose()?
            .unwrap_or((i64::MAX, i64::MAX));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations
                 WHERE (updated_at, num) < (?1, ?2) AND (?3 IS NULL OR channel = ?3)
                 ORDER BY updated_at DESC, num DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![
                    after.0,
                    after.1,
                    query.channel,
                    clamp(query.limit as u64 + 1)
                ],
                conversation_from_row,
            )?;
            let mut page = Vec::with_capacity(query.limit);
            let mut next = None;
            for row in rows {
                let (num, conversation) = row?;
                if page.len() == query.limit {
                    next = page
                        .last()
                        .map(|(num, last)| conversation_cursor(last, *num));
                    break;
                }
                page.push((num, conversation));
            }
            Ok((page.into_iter().map(|(_, c)| c).collect(), next))
        })
        .await
    }

    async fn get_conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationSummary, Vec<StoredMessage>)>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let Some((_, summary)) = conn
                .prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"
                ))?
                .query_row([&id], conversation_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT message, task_id, created_at FROM messages
                 WHERE conversation_id = ?1 ORDER BY idx",
            )?;
            let rows = stmt.query_map([&id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    time_column(row, 2)?.unwrap_or(Timestamp::UNIX_EPOCH),
                ))
            })?;
            let mut messages = Vec::new();
            for row in rows {
                let (message, task_id, created_at) = row?;
                messages.push(StoredMessage {
                    message: from_json(&message)?,
                    task_id,
                    created_at,
                });
            }
            Ok(Some((summary, messages)))
        })
        .await
    }

    async fn delete_conversation(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.record(move |conn| {
            conn.execute("DELETE FROM messages WHERE conversation_id = ?1", [&id])?;
            Ok(conn.execute("DELETE FROM conversations WHERE id = ?1", [&id])?)
        })
        .await
        .map(|deleted| deleted > 0)
    }

    async fn put_approval(&self, approval: Approval) -> Result<(), StoreError> {
        let data = to_json(&approval)?;
        let status = to_json(&approval.status)?;
        self.record(move |conn| {
            Ok(conn.execute(
                "INSERT OR REPLACE INTO approvals (id, task_id, status, created_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    approval.id,
                    approval.task_id,
                    status,
                    approval.created_at.as_microsecond(),
                    data
                ],
            )?)
        })
        .await
        .map(drop)
    }

    async fn approvals(
        &self,
        task: Option<String>,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<Approval>, StoreError> {
        let status = status.as_ref().map(to_json).transpose()?;
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT data FROM approvals
                 WHERE (?1 IS NULL OR task_id = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY created_at",
            )?;
            let rows = stmt.query_map(params![task, status], |row| row.get::<_, String>(0))?;
            rows.map(|data| from_json(&data?)).collect()
        })
        .await
    }

    async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT data FROM approvals WHERE id = ?1", [&id], |row| {
                row.get::<_, String>(0)
            })
            .optional()?
            .map(|data| from_json(&data))
            .transpose()
        })
        .await
    }

    async fn expire_pending_approvals(&self) -> Result<usize, StoreError> {
        let pending = self.approvals(None, Some(ApprovalStatus::Pending)).await?;
        let count = pending.len();
        for mut approval in pending {
            approval.status = ApprovalStatus::Expired;
            approval.resolved_at = Some(Timestamp::now());
            approval.reason = Some("the server restarted while it waited".into());
            self.put_approval(approval).await?;
        }
        Ok(count)
    }

    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        files: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let data = to_json(&checkpoint)?;
        self.record(move |conn| {
            conn.execute(
                "INSERT INTO checkpoints (task_id, id, data) VALUES (?1, ?2, ?3)",
                params![checkpoint.task_id, checkpoint.id, data],
            )?;
            for (path, content) in &files {
                conn.execute(
                    "INSERT INTO checkpoint_files (task_id, checkpoint, path, content)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![checkpoint.task_id, checkpoint.id, path, content],
                )?;
            }
            Ok(files.len())
        })
        .await
        .map(drop)
    }

    async fn checkpoints(&self, task: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let task = task.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT data FROM checkpoints WHERE task_id = ?1 ORDER BY id")?;
            let rows = stmt.query_map([&task], |row| row.get::<_, String>(0))?;
            rows.map(|data| from_json(&data?)).collect()
        })
        .await
    }

    async fn checkpoint_files(
        &self,
        task: &str,
        checkpoint: u32,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        let task = task.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT path, content FROM checkpoint_files
                 WHERE task_id = ?1 AND checkpoint = ?2 ORDER BY path",
            )?;
            let rows = stmt.query_map(params![task, checkpoint], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Nobody;

    impl EventSink for Nobody {
        fn committed(&self, _events: &[Event]) {}
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("victor.db-wal")).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_behind_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Arc::new(Nobody)).unwrap();
        let task: Task = serde_json::from_value(json!({
            "id": "t1",
            "spec": {"kind": "exec", "command": ["true"]},
            "state": "queued",
            "created_at": "2026-01-01T00:00:00Z",
            "last_seq": 0,
        }))
        .unwrap();
        store
            .create_task(NewTask {
                task,
                idempotency_key: None,
                request_fingerprint: String::new(),
            })
            .await
            .unwrap();
        let line = "x".repeat(1000);
        let mut sizes = Vec::new();
        // Three bursts of writes with pauses: each pause lets a checkpoint finish, so the next
        // burst reuses the WAL from its start. Left to the writer (whose own threshold is
        // 64 MB), the WAL would hold all three bursts.
        for _burst in 0..3 {
            for _ in 0..40 {
                let events = (0..50)
                    .map(|_| ("output", json!({"stream": "stdout", "line": line})))
                    .collect();
                store.append("t1", events).await.unwrap();
            }
            sizes.push(wal_bytes(dir.path()));
            tokio::time::sleep(CHECKPOINT_PAUSE * 2).await;
        }
        assert!(
            sizes[0] > 1_000_000,
            "a burst wrote only {sizes:?} bytes of WAL"
        );
        assert!(
            sizes[2] < sizes[0] * 3 / 2,
            "the WAL grew burst after burst ({sizes:?} bytes): nothing checkpointed it"
        );
        store.close().await;
    }
}
