//! The SQLite store: the conformance suite, and what is SQLite's own (the WAL, migrations of
//! old data dirs, the `sqlite://` setting).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;

use super::{SqliteStore, schema, writer};
use crate::proto::{Task, TaskState};
use crate::store::conformance::{Backend, Nowhere};
use crate::store::{EventSink, NewTask, Node, SharedStore, Store, TaskStore};

struct Sqlite;

impl Backend for Sqlite {
    type Keep = tempfile::TempDir;

    async fn open(nodes: &[&str], sink: Arc<dyn EventSink>) -> (Vec<SharedStore>, Self::Keep) {
        let dir = tempfile::tempdir().unwrap();
        // One database has one writer: the nodes share it, as several servers share one
        // backend that accepts them.
        let first = SqliteStore::open(&dir.path().join("victor.db"), nodes[0], sink).unwrap();
        let stores = nodes
            .iter()
            .map(|node| {
                Arc::new(SqliteStore {
                    inner: first.inner.clone(),
                    node: node.to_string(),
                    advert: first.advert.clone(),
                }) as SharedStore
            })
            .collect();
        (stores, dir)
    }
}

store_conformance_tests!(Sqlite);

#[tokio::test]
async fn a_data_dir_of_the_last_schema_opens_and_its_tasks_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("victor.db");
    {
        // The database as the release before nodes left it, with a task running at the crash.
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &schema::MIGRATIONS[..4] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 4).unwrap();
        tx.execute_batch(
            r#"INSERT INTO tasks (id, kind, spec, state, created_at, started_at, last_seq)
               VALUES ('old', 'exec', '{"kind":"exec","command":["sleep","60"]}', 'running',
                       1767225600000000, 1767225601000000, 2);
               INSERT INTO tasks (id, kind, spec, state, created_at, last_seq)
               VALUES ('waiting', 'exec', '{"kind":"exec","command":["true"]}', 'queued',
                       1767225600000000, 1);
               INSERT INTO events (task_id, seq, ts, type, data) VALUES
                   ('old', 1, 1767225600000000, 'state', '{"state":"queued"}'),
                   ('old', 2, 1767225601000000, 'state', '{"state":"running","pid":4242}'),
                   ('waiting', 1, 1767225600000000, 'state', '{"state":"queued"}');"#,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path, "node-a", Arc::new(Nowhere)).unwrap();
    let orphans = store.orphaned_tasks().await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].task.id, "old");
    assert_eq!(orphans[0].node, None, "recorded before nodes were");
    let queued = store.tasks_in_states(&[TaskState::Queued]).await.unwrap();
    assert_eq!(queued[0].id, "waiting");
    let appended = store
        .append(
            "old",
            vec![("output", json!({"stream": "stdout", "text": "x"}))],
        )
        .await
        .unwrap();
    assert_eq!(
        (appended[0].seq, appended[0].pos),
        (3, 4),
        "seq and pos go on"
    );
    store.close().await;
    let version: u32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version as usize, schema::MIGRATIONS.len());
}

#[tokio::test]
async fn the_setting_names_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::claim(&dir.path().join("data")).unwrap();
    let file = dir.path().join("elsewhere").join("tasks.db");
    let setting = format!("sqlite://{}", file.display());
    let store = crate::store::open(Some(&setting), &node, Arc::new(Nowhere))
        .await
        .unwrap();
    assert_eq!(store.node(), node.id());
    assert!(file.is_file());
    assert!(!node.dir().join("victor.db").exists());
    let refused = crate::store::open(Some(&setting), &node, Arc::new(Nowhere))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("another victor server is using this database"),
        "{refused}"
    );
    store.close().await;

    for (setting, says) in [
        ("sqlite://", "names no file"),
        (
            &format!("sqlite://{}", dir.path().display()) as &str,
            "is a directory",
        ),
        ("postgres://db/victor", "sqlite://PATH"),
        ("victor.db", "sqlite://PATH"),
    ] {
        let error = crate::store::open(Some(setting), &node, Arc::new(Nowhere))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(says), "{setting}: {error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }
}

#[tokio::test]
async fn a_store_opened_for_a_node_holds_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::claim(dir.path()).unwrap();
    let store = crate::store::open(None, &node, Arc::new(Nowhere))
        .await
        .unwrap();
    assert!(
        dir.path().join("victor.db").is_file(),
        "SQLite in the data dir by default"
    );
    let lease: i64 = Connection::open(dir.path().join("victor.db"))
        .unwrap()
        .query_row(
            "SELECT lease_until FROM nodes WHERE id = ?1",
            [node.id()],
            |row| row.get(0),
        )
        .unwrap();
    let left = lease - jiff::Timestamp::now().as_microsecond();
    assert!(
        left > Duration::from_secs(10).as_micros() as i64,
        "{left} µs of lease left"
    );
    store.close().await;
}

fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("victor.db-wal")).map_or(0, |m| m.len())
}

#[tokio::test]
async fn the_wal_is_checkpointed_behind_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open(&dir.path().join("victor.db"), "node-a", Arc::new(Nowhere)).unwrap();
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
        tokio::time::sleep(writer::CHECKPOINT_PAUSE * 2).await;
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
