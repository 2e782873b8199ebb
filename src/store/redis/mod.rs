//! The Redis store (`redis://HOST:PORT/DB`), which several `victor serve` nodes share: one
//! queue, one log, any node serving any task.
//!
//! Everything lives under one key prefix (`victor:` unless the setting says `?prefix=NAME`):
//!
//! - `task:{id}`: a hash with the task as created (`json`) and what changes (`state`,
//!   `last_seq`, `started_at`, `finished_at`, `result`, `node`); `tasks` and `state:{state}` are
//!   sorted sets of task ids by creation number, for pages and counts.
//! - `log:{id}`: the task's events as a Stream whose entry ids are `{seq}-0`; `all`: every event
//!   again as one Stream whose entry ids are `{pos}-0`, so that both cursors a client holds map
//!   onto Redis's own. `pos` is `INCR pos`, never taken back.
//! - `leases` (node → lease end, in Redis's clock) and `node:{id}` (what it advertises).
//! - keys, sessions, conversations, approvals and checkpoints, each under its own name.
//!
//! Every write that must be all-or-nothing (a task and its first event, an append, a state
//! change with its event and a turn's messages, taking a queued task) is one Lua script, which
//! Redis runs atomically. Each node follows the `all` Stream with a blocking `XREAD` on its own
//! connection and hands what it reads to its sink: an event reaches subscribers only once Redis
//! has it, and events committed by any node reach every node in `pos` order.
//!
//! Redis keeps what it acknowledged across its own restart only with persistence on
//! (`appendonly yes`); see docs/several-machines.md.

mod cluster;
mod records;
mod scripts;
mod tasks;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use jiff::Timestamp;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError};
use tokio_util::sync::CancellationToken;

use super::{Advert, Cluster, EventSink, Node, SharedStore, Store, StoreError};
use crate::proto::Event;

/// The key prefix unless the setting names one.
const DEFAULT_PREFIX: &str = "victor";
/// How many events one read of the shared log hands the sink at most.
const FOLLOW_BATCH: usize = 512;
/// How long one blocking read of the shared log waits before it asks again.
const FOLLOW_BLOCK: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to reach a Redis that is gone.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A node's handle on the shared Redis store.
pub struct RedisStore {
    shared: Arc<Shared>,
    node: String,
    advert: Advert,
}

/// What every handle of one store shares.
struct Shared {
    client: Client,
    conn: ConnectionManager,
    /// `{prefix}:`, before every key.
    prefix: String,
    closed: AtomicBool,
    /// Why Redis cannot be reached now, while it cannot.
    degraded: Mutex<Option<String>>,
    /// Stops the follower of the shared log and the reader of this node's inbox.
    stop: CancellationToken,
    /// Whether this node's questions were handed out (to its engine).
    questions_taken: Mutex<bool>,
}

pub(super) fn open<'a>(
    setting: &'a str,
    node: &'a Node,
    sink: Arc<dyn EventSink>,
) -> BoxFuture<'a, Result<SharedStore, StoreError>> {
    Box::pin(async move {
        let mut store = RedisStore::connect(setting, node.id(), sink).await?;
        store.advert = node.advert().clone();
        Ok(Arc::new(store) as SharedStore)
    })
}

impl RedisStore {
    /// Connects to the Redis that `setting` names and starts following its shared log from
    /// its end: `sink` hears every event committed from now on, by any node.
    async fn connect(
        setting: &str,
        node: &str,
        sink: Arc<dyn EventSink>,
    ) -> Result<RedisStore, StoreError> {
        let (url, prefix) = parse_setting(setting)?;
        let unreachable = |e: RedisError| StoreError::Open {
            path: url.clone(),
            message: e.to_string(),
        };
        let client = Client::open(url.as_str()).map_err(unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_max_delay(MAX_BACKOFF);
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unreachable)?;
        let prefix = format!("{prefix}:");
        let start: Option<u64> = conn
            .get(format!("{prefix}pos"))
            .await
            .map_err(unreachable)?;
        let shared = Arc::new(Shared {
            client,
            conn,
            prefix,
            closed: AtomicBool::new(false),
            degraded: Mutex::new(None),
            stop: CancellationToken::new(),
            questions_taken: Mutex::new(false),
        });
        tokio::spawn(follow(shared.clone(), start.unwrap_or(0), sink));
        Ok(RedisStore {
            shared,
            node: node.to_string(),
            advert: Advert::default(),
        })
    }

    /// A connection for one call; [`StoreError::Closed`] once the store is.
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        Ok(self.shared.conn.clone())
    }

    /// The full name of a key.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.shared.prefix)
    }

    fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Turns a Redis error into the store's, noting a lost connection for `/health`.
    fn failed(&self, error: RedisError) -> StoreError {
        self.shared.note(&error);
        StoreError::Backend(error.to_string())
    }
}

impl Shared {
    fn note(&self, error: &RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
            *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(format!("cannot reach Redis: {error}"));
        }
    }

    fn recovered(&self) {
        *self.degraded.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// `redis://HOST:PORT/DB[?prefix=NAME]` as the client's URL and the key prefix.
fn parse_setting(setting: &str) -> Result<(String, String), StoreError> {
    let (url, query) = match setting.split_once('?') {
        Some((url, query)) => (url, Some(query)),
        None => (setting, None),
    };
    let mut prefix = DEFAULT_PREFIX.to_string();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("prefix", name))
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
            {
                prefix = name.to_string();
            }
            _ => {
                return Err(StoreError::Setting(format!(
                    "store `{setting}`: the only option is prefix=NAME (letters, digits, `-`, `_`, `.`)"
                )));
            }
        }
    }
    Ok((url.to_string(), prefix))
}

/// Follows the shared log from `after` until the store closes, handing each event to `sink`
/// once, in `pos` order; reconnects with backoff when Redis goes away, and resumes where it
/// stopped.
async fn follow(shared: Arc<Shared>, mut after: u64, sink: Arc<dyn EventSink>) {
    let key = format!("{}all", shared.prefix);
    let mut backoff = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            () = shared.stop.cancelled() => return,
            connected = blocking_connection(&shared.client) => connected,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                shared.note(&e);
                tracing::warn!(error = %e, "cannot reach Redis; retrying");
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        // The shared connection finds out that Redis went away at its next call, and
        // reconnects after it: make that call here, not in a client's request.
        let mut shared_conn = shared.conn.clone();
        while let Err(e) = redis::cmd("PING").query_async::<()>(&mut shared_conn).await {
            shared.note(&e);
            tokio::select! {
                () = shared.stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let options = StreamReadOptions::default()
            .count(FOLLOW_BATCH)
            .block(FOLLOW_BLOCK.as_millis() as usize);
        loop {
            let keys = [key.as_str()];
            let from = [format!("{after}-0")];
            let read = tokio::select! {
                () = shared.stop.cancelled() => return,
                read = conn.xread_options::<_, _, Option<StreamReadReply>>(
                    &keys, &from, &options) => read,
            };
            match read {
                Ok(reply) => {
                    shared.recovered();
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    let mut events = Vec::new();
                    for entry in entries {
                        match event_of_all(&entry) {
                            Ok(event) => {
                                after = event.pos;
                                events.push(event);
                            }
                            Err(e) => {
                                tracing::error!(entry = %entry.id, error = %e, "a corrupt event in the shared log");
                                after = pos_of_id(&entry.id).unwrap_or(after);
                            }
                        }
                    }
                    if !events.is_empty() {
                        sink.committed(&events);
                    }
                }
                Err(e) => {
                    shared.note(&e);
                    tracing::warn!(error = %e, "lost the shared log; reconnecting");
                    break;
                }
            }
        }
    }
}

/// A connection of its own for blocking reads, which would hold up every other call on a
/// shared one.
async fn blocking_connection(client: &Client) -> Result<MultiplexedConnection, RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(FOLLOW_BLOCK + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// The number before `-0` in a Stream entry id.
fn pos_of_id(id: &str) -> Option<u64> {
    id.split_once('-')?.0.parse().ok()
}

/// An event of the `all` Stream.
fn event_of_all(entry: &StreamId) -> Result<Event, StoreError> {
    let pos = pos_of_id(&entry.id).ok_or_else(|| corrupt(&entry.id))?;
    let task_id: String = entry.get("task").ok_or_else(|| corrupt(&entry.id))?;
    let seq: u64 = entry.get("seq").ok_or_else(|| corrupt(&entry.id))?;
    event_fields(entry, task_id, seq, pos)
}

/// An event of a task's own Stream.
fn event_of_log(task_id: &str, entry: &StreamId) -> Result<Event, StoreError> {
    let seq = pos_of_id(&entry.id).ok_or_else(|| corrupt(&entry.id))?;
    let pos: u64 = entry.get("pos").ok_or_else(|| corrupt(&entry.id))?;
    event_fields(entry, task_id.to_string(), seq, pos)
}

fn event_fields(
    entry: &StreamId,
    task_id: String,
    seq: u64,
    pos: u64,
) -> Result<Event, StoreError> {
    let ts: i64 = entry.get("ts").ok_or_else(|| corrupt(&entry.id))?;
    let kind: String = entry.get("type").ok_or_else(|| corrupt(&entry.id))?;
    let data: String = entry.get("data").ok_or_else(|| corrupt(&entry.id))?;
    Ok(Event {
        task_id,
        seq,
        pos,
        ts: micros(ts),
        kind,
        data: super::from_json(&data)?,
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("Redis entry {what} lacks a field"))
}

/// A time as the store keeps it: microseconds since the epoch.
fn micros(us: i64) -> Timestamp {
    Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Now, to the microsecond the store keeps.
fn now() -> Timestamp {
    micros(Timestamp::now().as_microsecond())
}

#[async_trait::async_trait]
impl Store for RedisStore {
    fn node(&self) -> &str {
        &self.node
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }

    fn degraded(&self) -> Option<String> {
        self.shared
            .degraded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.stop.cancel();
    }
}
