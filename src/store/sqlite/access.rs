//! API keys and sessions.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, scope_column, time_column};
use crate::store::{AccessStore, StoreError, StoredKey, StoredSession};

#[async_trait]
impl AccessStore for SqliteStore {
    async fn put_key(&self, key: StoredKey) -> Result<(), StoreError> {
        self.record(move |conn| {
            if let Some(name) = &key.name {
                let holder: Option<String> = conn
                    .query_row(
                        "SELECT id FROM api_keys WHERE name = ?1 AND id != ?2",
                        params![name, key.id],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(id) = holder {
                    return Err(StoreError::KeyNameTaken {
                        name: name.clone(),
                        id,
                    });
                }
            }
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
}
