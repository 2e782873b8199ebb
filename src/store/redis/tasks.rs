//! Tasks, their logs, and the nodes that run them, in Redis.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, RedisError, Value};

use super::{RedisStore, event_of_log, micros, now, scripts};
use crate::proto::{Event, NodeInfo, StateData, Task, TaskState};
use crate::store::{
    EventRange, NewTask, OrphanedTask, READ_BYTES, StoreError, TaskQuery, TaskStore, Transition,
    from_json, to_json, to_value,
};

/// How many tasks one step of a filtered page reads.
const PAGE_STEP: usize = 200;

/// A task's hash, field by field.
type Fields = HashMap<String, String>;

#[async_trait]
impl TaskStore for RedisStore {
    async fn create_task(&self, new: NewTask) -> Result<(Task, bool), StoreError> {
        let mut conn = self.conn()?;
        let task = &new.task;
        let ts = now();
        let data = to_json(&to_value(&StateData {
            state: TaskState::Queued,
            pid: None,
            result: None,
            reason: None,
        })?)?;
        let requires = if task.requires.is_empty() {
            String::new()
        } else {
            to_json(&task.requires)?
        };
        let reply: Vec<Value> = scripts::CREATE
            .arg(self.prefix())
            .arg(&task.id)
            .arg(new.idempotency_key.as_deref().unwrap_or(""))
            .arg(&new.request_fingerprint)
            .arg(to_json(task)?)
            .arg(task.spec.kind())
            .arg(requires)
            .arg(ts.as_microsecond())
            .arg(data)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.script_error(e, &task.id))?;
        match reply.first().map(integer) {
            Some(Some(1)) => {
                let mut task = task.clone();
                task.state = TaskState::Queued;
                task.last_seq = 1;
                task.node = None;
                task.waiting = None;
                Ok((task, true))
            }
            _ => {
                let held = reply.get(1).and_then(string).ok_or_else(|| {
                    StoreError::Corrupt("an idempotency key without its task".into())
                })?;
                let task = self
                    .get_task(&held)
                    .await?
                    .ok_or(StoreError::NotFound(held))?;
                Ok((task, false))
            }
        }
    }

    async fn append(
        &self,
        task_id: &str,
        events: Vec<(&'static str, serde_json::Value)>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.conn()?;
        let ts = now();
        let mut invocation = scripts::APPEND.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(task_id)
            .arg(ts.as_microsecond());
        for (kind, data) in &events {
            invocation.arg(*kind).arg(to_json(data)?);
        }
        let at: Vec<u64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.script_error(e, task_id))?;
        Ok(events
            .into_iter()
            .zip(at.chunks(2))
            .map(|((kind, data), at)| Event {
                task_id: task_id.to_string(),
                seq: at[0],
                pos: at[1],
                ts,
                kind: kind.to_string(),
                data,
            })
            .collect())
    }

    async fn transition(&self, task_id: &str, change: Transition) -> Result<Task, StoreError> {
        let mut conn = self.conn()?;
        let allowed: String = change
            .from
            .iter()
            .map(|s| format!(",{}", s.as_str()))
            .collect::<String>()
            + ",";
        let time = |t: Option<jiff::Timestamp>| {
            t.map(|t| t.as_microsecond().to_string())
                .unwrap_or_default()
        };
        let result = change.result.as_ref().map(to_json).transpose()?;
        // The node that runs the task is the one that sets it running (or pauses it).
        let node = matches!(change.state, TaskState::Running | TaskState::Paused)
            .then_some(self.node.as_str());
        let mut invocation = scripts::TRANSITION.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(task_id)
            .arg(change.state.as_str())
            .arg(allowed)
            .arg(time(change.started_at))
            .arg(time(change.finished_at))
            .arg(result.unwrap_or_default())
            .arg(to_json(&change.data)?)
            .arg(now().as_microsecond())
            .arg(node.unwrap_or(""));
        match &change.messages {
            Some(append) => {
                let updated = append
                    .messages
                    .iter()
                    .map(|m| m.created_at)
                    .fold(now(), jiff::Timestamp::max);
                invocation
                    .arg(&append.conversation_id)
                    .arg(updated.as_microsecond());
                for message in &append.messages {
                    invocation.arg(to_json(message)?);
                }
            }
            None => {
                invocation.arg("").arg(0);
            }
        }
        let fields: Fields = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.script_error(e, task_id))?;
        task_of(&fields).map(|(_, task)| task)
    }

    async fn get_task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let mut conn = self.conn()?;
        let fields: Fields = conn
            .hgetall(self.key(&format!("task:{id}")))
            .await
            .map_err(|e| self.failed(e))?;
        if fields.is_empty() {
            return Ok(None);
        }
        task_of(&fields).map(|(_, task)| Some(task))
    }

    async fn list_tasks(&self, query: TaskQuery) -> Result<(Vec<Task>, Option<u64>), StoreError> {
        let mut conn = self.conn()?;
        let mut tasks = Vec::with_capacity(query.limit);
        let mut last_num = None;
        let mut before = query.before.unwrap_or(u64::MAX);
        loop {
            let step = (query.limit + 1).clamp(1, PAGE_STEP);
            let ids: Vec<(String, u64)> = conn
                .zrevrangebyscore_limit_withscores(
                    self.key("tasks"),
                    format!("({before}"),
                    "-inf",
                    0,
                    step as isize,
                )
                .await
                .map_err(|e| self.failed(e))?;
            let Some((_, oldest)) = ids.last() else {
                return Ok((tasks, None));
            };
            before = *oldest;
            let ids: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
            for (num, task) in self.load(&ids).await? {
                let state_fits = query.states.is_empty() || query.states.contains(&task.state);
                let kind_fits = query.kind.is_none_or(|kind| task.spec.kind() == kind);
                if !(state_fits && kind_fits) {
                    continue;
                }
                if tasks.len() == query.limit {
                    return Ok((tasks, last_num));
                }
                last_num = Some(num);
                tasks.push(task);
            }
        }
    }

    async fn tasks_in_states(&self, states: &[TaskState]) -> Result<Vec<Task>, StoreError> {
        let mut conn = self.conn()?;
        let mut ids: Vec<(String, u64)> = Vec::new();
        for state in states {
            let of_state: Vec<(String, u64)> = conn
                .zrange_withscores(self.key(&format!("state:{}", state.as_str())), 0, -1)
                .await
                .map_err(|e| self.failed(e))?;
            ids.extend(of_state);
        }
        ids.sort_by_key(|(_, num)| *num);
        let ids: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
        Ok(self
            .load(&ids)
            .await?
            .into_iter()
            .map(|(_, task)| task)
            .collect())
    }

    async fn events_after(
        &self,
        range: EventRange,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut conn = self.conn()?;
        let (key, after) = match &range {
            EventRange::Task { id, after } => (self.key(&format!("log:{id}")), *after),
            EventRange::All { after } => (self.key("all"), *after),
        };
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let reply: StreamRangeReply = conn
            .xrange_count(key, format!("{first}-0"), "+", limit.max(1))
            .await
            .map_err(|e| self.failed(e))?;
        let mut events = Vec::with_capacity(reply.ids.len());
        let mut bytes = 0;
        for entry in &reply.ids {
            let event = match &range {
                EventRange::Task { id, .. } => event_of_log(id, entry)?,
                EventRange::All { .. } => super::event_of_all(entry)?,
            };
            bytes += entry.get::<Vec<u8>>("data").map_or(0, |data| data.len());
            events.push(event);
            if bytes >= READ_BYTES {
                break;
            }
        }
        Ok(events)
    }

    async fn last_pos(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let pos: Option<u64> = conn
            .get(self.key("pos"))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(pos.unwrap_or(0))
    }

    async fn delete_task(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: i64 = scripts::DELETE
            .arg(self.prefix())
            .arg(id)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.script_error(e, id))?;
        Ok(())
    }

    async fn count_by_state(&self) -> Result<BTreeMap<TaskState, u64>, StoreError> {
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        for state in TaskState::ALL {
            pipe.zcard(self.key(&format!("state:{}", state.as_str())));
        }
        let counts: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(TaskState::ALL.into_iter().zip(counts).collect())
    }

    async fn claim(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let mut conn = self.conn()?;
        let fields: Option<Fields> = scripts::CLAIM
            .arg(self.prefix())
            .arg(id)
            .arg(&self.node)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.script_error(e, id))?;
        match fields {
            Some(fields) if !fields.is_empty() => task_of(&fields).map(|(_, task)| Some(task)),
            _ => Ok(None),
        }
    }

    async fn renew_lease(&self, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: i64 = scripts::RENEW_LEASE
            .arg(self.prefix())
            .arg(&self.node)
            .arg(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX))
            .arg(to_json(&self.advert.labels)?)
            .arg(self.advert.max_concurrent)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn orphaned_tasks(&self) -> Result<Vec<OrphanedTask>, StoreError> {
        let live = self.live_nodes().await?;
        let mut orphans: Vec<(u64, OrphanedTask)> = self
            .taken_tasks()
            .await?
            .into_iter()
            .filter(|(_, task)| {
                task.node
                    .as_deref()
                    .is_none_or(|node| node == self.node || !live.contains(node))
            })
            .map(|(num, task)| {
                let node = task.node.clone();
                (num, OrphanedTask { task, node })
            })
            .collect();
        orphans.sort_by_key(|(num, _)| *num);
        Ok(orphans.into_iter().map(|(_, orphan)| orphan).collect())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut conn = self.conn()?;
        let clock = self.clock().await?;
        let leases: Vec<(String, i64)> = conn
            .zrange_withscores(self.key("leases"), 0, -1)
            .await
            .map_err(|e| self.failed(e))?;
        let mut running: HashMap<String, u64> = HashMap::new();
        for (_, task) in self.taken_tasks().await? {
            if matches!(task.state, TaskState::Running | TaskState::Paused)
                && let Some(node) = task.node
            {
                *running.entry(node).or_default() += 1;
            }
        }
        let mut nodes = Vec::with_capacity(leases.len());
        for (id, until) in leases {
            let advert: Fields = conn
                .hgetall(self.key(&format!("node:{id}")))
                .await
                .map_err(|e| self.failed(e))?;
            nodes.push(NodeInfo {
                labels: advert
                    .get("labels")
                    .map(|labels| from_json(labels))
                    .transpose()?
                    .unwrap_or_default(),
                max_concurrent: advert
                    .get("max_concurrent")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                running: running.get(&id).copied().unwrap_or(0),
                alive: until > clock,
                id,
            });
        }
        nodes.sort_by(|a, b| b.alive.cmp(&a.alive).then_with(|| a.id.cmp(&b.id)));
        Ok(nodes)
    }
}

impl RedisStore {
    /// Tasks by id, with their creation numbers, in the order asked; those gone meanwhile left
    /// out.
    async fn load(&self, ids: &[String]) -> Result<Vec<(u64, Task)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.key(&format!("task:{id}")));
        }
        let all: Vec<Fields> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        all.iter()
            .filter(|fields| !fields.is_empty())
            .map(task_of)
            .collect()
    }

    /// Tasks some node has: running, paused, or queued and taken.
    async fn taken_tasks(&self) -> Result<Vec<(u64, Task)>, StoreError> {
        let states = [TaskState::Running, TaskState::Paused, TaskState::Queued];
        let mut conn = self.conn()?;
        let mut ids = Vec::new();
        for state in states {
            let of_state: Vec<String> = conn
                .zrange(self.key(&format!("state:{}", state.as_str())), 0, -1)
                .await
                .map_err(|e| self.failed(e))?;
            ids.extend(of_state);
        }
        Ok(self
            .load(&ids)
            .await?
            .into_iter()
            .filter(|(_, task)| task.state != TaskState::Queued || task.node.is_some())
            .collect())
    }

    /// The nodes whose lease runs now, by Redis's clock.
    pub(super) async fn live_nodes(&self) -> Result<HashSet<String>, StoreError> {
        let mut conn = self.conn()?;
        let clock = self.clock().await?;
        let live: Vec<String> = conn
            .zrangebyscore(self.key("leases"), format!("({clock}"), "+inf")
            .await
            .map_err(|e| self.failed(e))?;
        Ok(live.into_iter().collect())
    }

    /// Now by Redis's clock, in microseconds.
    async fn clock(&self) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        let now: String = scripts::CLOCK
            .prepare_invoke()
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        now.parse()
            .map_err(|_| StoreError::Corrupt(format!("Redis's clock read {now}")))
    }

    /// The store's error for what a script refused (see `scripts`), or Redis's own.
    pub(super) fn script_error(&self, error: RedisError, id: &str) -> StoreError {
        let detail = error.detail().unwrap_or("").trim().to_string();
        match error.code() {
            Some("NOTFOUND") => StoreError::NotFound(id.to_string()),
            Some("WRONGSTATE") => match detail.parse::<TaskState>() {
                Ok(state) => StoreError::WrongState {
                    id: id.to_string(),
                    state,
                },
                Err(_) => StoreError::Corrupt(format!("task {id} is in state {detail}")),
            },
            Some("MISMATCH") => StoreError::IdempotencyMismatch,
            Some("NOCONV") => StoreError::ConversationNotFound(detail),
            _ => self.failed(error),
        }
    }
}

/// A task from its hash, with its creation number.
fn task_of(fields: &Fields) -> Result<(u64, Task), StoreError> {
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| StoreError::Corrupt(format!("a task without its {name}")))
    };
    let mut task: Task = from_json(field("json")?)?;
    let number = |name: &str| -> Result<u64, StoreError> {
        field(name)?
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("a task's {name} is not a number")))
    };
    let time = |name: &str| fields.get(name).and_then(|t| t.parse().ok()).map(micros);
    task.state = field("state")?
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("task {} has no known state", task.id)))?;
    task.last_seq = number("last_seq")?;
    task.started_at = time("started_at");
    task.finished_at = time("finished_at");
    task.result = fields.get("result").map(|r| from_json(r)).transpose()?;
    task.node = fields.get("node").cloned();
    task.waiting = None;
    Ok((number("num")?, task))
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
