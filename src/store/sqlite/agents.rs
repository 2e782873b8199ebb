//! Approvals of agents' tool calls, and workspace checkpoints.

use std::collections::HashSet;

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, from_json, to_json};
use crate::proto::{Approval, ApprovalStatus, Checkpoint};
use crate::store::{AgentStore, StoreError, expired};

#[async_trait]
impl AgentStore for SqliteStore {
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
        let node = self.node.clone();
        let now = Timestamp::now().as_microsecond();
        let live_elsewhere: HashSet<String> = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM tasks
                     WHERE state IN ('running', 'paused') AND node != ?1
                       AND node IN (SELECT id FROM nodes WHERE lease_until > ?2)",
                )?;
                let rows = stmt.query_map(params![node, now], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let pending: Vec<Approval> = self
            .approvals(None, Some(ApprovalStatus::Pending))
            .await?
            .into_iter()
            .filter(|approval| !live_elsewhere.contains(&approval.task_id))
            .collect();
        let count = pending.len();
        for approval in pending {
            self.put_approval(expired(approval)).await?;
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
}
