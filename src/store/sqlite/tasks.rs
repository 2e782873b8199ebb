//! Tasks and their event logs.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::conversations::append_messages;
use super::writer::WriteOp;
use super::{SqliteStore, clamp, from_json, state_list, time_column, to_json, to_value};
use crate::proto::{Event, NodeInfo, StateData, Task, TaskState, types};
use crate::store::{
    EventRange, NewTask, OrphanedTask, READ_BYTES, StoreError, TaskQuery, TaskStore, Transition,
};

const TASK_COLUMNS: &str = "num, id, name, spec, state, priority, created_at, started_at, \
     finished_at, result, last_seq, requires, node";

#[async_trait]
impl TaskStore for SqliteStore {
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
        let node = self.node.clone();
        self.write(|reply| WriteOp::Transition(task_id, change, node, reply))
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
        // `pos` is AUTOINCREMENT: SQLite records the highest one it ever assigned, which a
        // delete does not take back (`MAX(pos)` would).
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                [],
                |row| row.get(0),
            )?)
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

    async fn claim(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let task_id = id.to_string();
        let node = self.node.clone();
        self.write(|reply| WriteOp::Claim(task_id, node, reply))
            .await
    }

    async fn renew_lease(&self, ttl: Duration) -> Result<(), StoreError> {
        let node = self.node.clone();
        let until = Timestamp::now()
            .checked_add(ttl)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let labels = to_json(&self.advert.labels)?;
        let max_concurrent = clamp(self.advert.max_concurrent as u64);
        self.record(move |conn| {
            Ok(conn.execute(
                "INSERT INTO nodes (id, lease_until, labels, max_concurrent) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until,
                     labels = excluded.labels, max_concurrent = excluded.max_concurrent",
                params![node, until.as_microsecond(), labels, max_concurrent],
            )?)
        })
        .await
        .map(drop)
    }

    async fn orphaned_tasks(&self) -> Result<Vec<OrphanedTask>, StoreError> {
        let node = self.node.clone();
        let now = Timestamp::now().as_microsecond();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE (state IN ('running', 'paused')
                        OR (state = 'queued' AND node IS NOT NULL))
                   AND (node IS NULL OR node = ?1
                        OR node NOT IN (SELECT id FROM nodes WHERE lease_until > ?2))
                 ORDER BY num"
            ))?;
            let rows = stmt.query_map(params![node, now], task_from_row)?;
            let mut orphans = Vec::new();
            for row in rows {
                let task = row?.1?;
                orphans.push(OrphanedTask {
                    node: task.node.clone(),
                    task,
                });
            }
            Ok(orphans)
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let now = Timestamp::now().as_microsecond();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, labels, max_concurrent, lease_until > ?1,
                     (SELECT COUNT(*) FROM tasks
                      WHERE tasks.node = nodes.id AND state IN ('running', 'paused'))
                 FROM nodes ORDER BY lease_until > ?1 DESC, id",
            )?;
            let rows = stmt.query_map([now], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u64>(2)?,
                    row.get::<_, bool>(3)?,
                    row.get::<_, u64>(4)?,
                ))
            })?;
            let mut nodes = Vec::new();
            for row in rows {
                let (id, labels, max_concurrent, alive, running) = row?;
                nodes.push(NodeInfo {
                    id,
                    labels: from_json(&labels)?,
                    max_concurrent: usize::try_from(max_concurrent).unwrap_or(usize::MAX),
                    running,
                    alive,
                });
            }
            Ok(nodes)
        })
        .await
    }
}

pub(super) fn insert_task(
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
    let requires = (!task.requires.is_empty())
        .then(|| to_json(&task.requires))
        .transpose()?;
    conn.execute(
        "INSERT INTO tasks (id, name, kind, spec, state, priority, created_at, idempotency_key,
                            fingerprint, requires)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
            requires,
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

pub(super) fn append_event(
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

pub(super) fn apply_transition(
    conn: &Connection,
    task_id: &str,
    change: &Transition,
    node: &str,
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
             result = COALESCE(?5, result),
             node = COALESCE(?6, node)
         WHERE id = ?1",
        params![
            task_id,
            change.state.as_str(),
            change.started_at.map(|t| t.as_microsecond()),
            change.finished_at.map(|t| t.as_microsecond()),
            result,
            // The node that runs the task is the one that sets it running (or pauses it).
            matches!(change.state, TaskState::Running | TaskState::Paused).then_some(node),
        ],
    )?;
    select_task(conn, task_id)?.ok_or_else(|| StoreError::NotFound(task_id.into()))
}

/// Takes a queued task that no node has taken yet for `node`.
pub(super) fn claim(
    conn: &Connection,
    task_id: &str,
    node: &str,
) -> Result<Option<Task>, StoreError> {
    let taken = conn
        .prepare_cached(
            "UPDATE tasks SET node = ?2 WHERE id = ?1 AND state = 'queued' AND node IS NULL",
        )?
        .execute(params![task_id, node])?;
    if taken == 0 {
        return Ok(None);
    }
    select_task(conn, task_id)
}

pub(super) fn delete(conn: &Connection, task_id: &str) -> Result<(), StoreError> {
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
    let requires: Option<String> = row.get(11)?;
    let node: Option<String> = row.get(12)?;
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
            requires: requires
                .as_deref()
                .map(from_json)
                .transpose()?
                .unwrap_or_default(),
            node,
            waiting: None,
        })
    })();
    Ok((num, task))
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
