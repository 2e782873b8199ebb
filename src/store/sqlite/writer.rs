//! The single writer: one thread that owns the write connection, commits waiting writes in
//! batches and hands their events to the sink after each commit; and the checkpointer beside it.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::tasks::{append_event, apply_transition, claim, delete, insert_task};
use crate::proto::{Event, Task};
use crate::store::{EventSink, NewTask, StoreError, Transition};

/// Writes waiting longer than this many in one transaction wait for the next.
const MAX_BATCH: usize = 1024;
/// WAL pages (4 KiB each) past which the writer checkpoints by itself: a bound on the WAL
/// under writes so steady that the background checkpoint never finds it caught up.
pub(super) const WRITER_CHECKPOINT_PAGES: u32 = 16_384;
/// The pause after a background checkpoint: commits in the meantime share the next one. A
/// checkpoint's disk traffic slows the commits beside it, so fewer, larger ones keep streams
/// smoother (chatbench: per-piece p99 1.3 ms with 100 ms pauses, 0.6-0.7 ms with 1-2 s).
pub(super) const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(1000);

pub(super) enum WriteOp {
    Create(NewTask, oneshot::Sender<Result<(Task, bool), StoreError>>),
    Append(
        String,
        Vec<(&'static str, serde_json::Value)>,
        oneshot::Sender<Result<Vec<Event>, StoreError>>,
    ),
    /// A state change, made by the node named second.
    Transition(
        String,
        Transition,
        String,
        oneshot::Sender<Result<Task, StoreError>>,
    ),
    Delete(String, oneshot::Sender<Result<(), StoreError>>),
    /// A queued task taken by the node named second.
    Claim(
        String,
        String,
        oneshot::Sender<Result<Option<Task>, StoreError>>,
    ),
    /// A write without events (keys, sessions); answers the number of rows it changed.
    Record(RecordWrite, oneshot::Sender<Result<usize, StoreError>>),
}

pub(super) type RecordWrite = Box<dyn FnOnce(&Connection) -> Result<usize, StoreError> + Send>;

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
    Claim(
        oneshot::Sender<Result<Option<Task>, StoreError>>,
        Result<Option<Task>, StoreError>,
    ),
    Record(
        oneshot::Sender<Result<usize, StoreError>>,
        Result<usize, StoreError>,
    ),
}

/// Checkpoints after commits (each `()` says there were some), pausing in between, until the
/// writer goes away (which it may do mid-pause: closing the store never waits for one).
pub(super) fn checkpoint_loop(conn: &Connection, commits: &mpsc::Receiver<()>) {
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

pub(super) fn write_loop(
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
        WriteOp::Transition(task_id, change, node, reply) => Applied::Transition(
            reply,
            in_savepoint(tx, committed, |conn, events| {
                apply_transition(conn, &task_id, &change, &node, events)
            }),
        ),
        WriteOp::Delete(task_id, reply) => Applied::Delete(
            reply,
            in_savepoint(tx, committed, |conn, _| delete(conn, &task_id)),
        ),
        WriteOp::Claim(task_id, node, reply) => Applied::Claim(
            reply,
            in_savepoint(tx, committed, |conn, _| claim(conn, &task_id, &node)),
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
            WriteOp::Transition(_, _, _, reply) => Applied::Transition(reply, Err(lost())),
            WriteOp::Delete(_, reply) => Applied::Delete(reply, Err(lost())),
            WriteOp::Claim(_, _, reply) => Applied::Claim(reply, Err(lost())),
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
            Applied::Claim(reply, r) => drop(reply.send(r)),
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
            Applied::Claim(reply, _) => drop(reply.send(Err(failed()))),
            Applied::Record(reply, _) => drop(reply.send(Err(failed()))),
        }
    }
}
