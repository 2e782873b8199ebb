//! The SQLite schema and its migrations.

use rusqlite::Connection;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // Nodes: which one runs a task, and until when each is known to be alive. Tasks from
    // before have no node: recovery treats them as the one node's, as it always did.
    r#"
    ALTER TABLE tasks ADD COLUMN node TEXT;
    CREATE TABLE nodes (
        id          TEXT PRIMARY KEY,
        lease_until INTEGER NOT NULL
    );
"#,
    // Labels: what a task requires of the node that runs it, and what each node advertises.
    r#"
    ALTER TABLE tasks ADD COLUMN requires TEXT;
    ALTER TABLE nodes ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE nodes ADD COLUMN max_concurrent INTEGER NOT NULL DEFAULT 0;
"#,
];

/// Brings the database to the current schema, in one transaction.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let tx = conn.transaction()?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    tx.commit()
}
