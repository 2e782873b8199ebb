//! What Redis keeps beside tasks: keys and sessions, conversations, approvals and checkpoints.

use std::collections::HashMap;

use async_trait::async_trait;
use jiff::Timestamp;
use redis::AsyncCommands;

use super::{RedisStore, micros, scripts};
use crate::proto::{Approval, ApprovalStatus, Checkpoint, ConversationSummary, StoredMessage};
use crate::store::{
    AccessStore, AgentStore, ConversationQuery, ConversationStore, StoreError, StoredKey,
    StoredSession, TaskStore, conversation_cursor, expired, from_json, parse_conversation_cursor,
    to_json,
};

type Fields = HashMap<String, String>;

/// How a checkpoint keeps a file that did not exist, beside the content of one that did.
const MISSING: &[u8] = b"-";
const PRESENT: u8 = b'+';

fn field<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, StoreError> {
    fields
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("a record without its {name}")))
}

fn time_field(fields: &Fields, name: &str) -> Option<Timestamp> {
    fields.get(name).and_then(|t| t.parse().ok()).map(micros)
}

fn scope_field(fields: &Fields) -> Result<crate::proto::Scope, StoreError> {
    field(fields, "scope")?
        .parse()
        .map_err(|e: String| StoreError::Corrupt(e))
}

#[async_trait]
impl AccessStore for RedisStore {
    async fn put_key(&self, key: StoredKey) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut invocation = scripts::PUT_KEY.prepare_invoke();
        invocation
            .arg(self.prefix())
            .arg(&key.id)
            .arg(key.name.as_deref().unwrap_or(""))
            .arg("scope")
            .arg(key.scope.as_str())
            .arg("hash")
            .arg(&key.hash)
            .arg("created_at")
            .arg(key.created_at.as_microsecond());
        if let Some(name) = &key.name {
            invocation.arg("name").arg(name);
        }
        if let Some(used) = key.last_used_at {
            invocation.arg("last_used_at").arg(used.as_microsecond());
        }
        let result: Result<i64, _> = invocation.invoke_async(&mut conn).await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("TAKEN") => Err(StoreError::KeyNameTaken {
                name: key.name.unwrap_or_default(),
                id: e.detail().unwrap_or("").trim().to_string(),
            }),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let mut keys = Vec::new();
        for (id, fields) in self.hashes_of_set("keys", "key").await? {
            keys.push(StoredKey {
                name: fields.get("name").cloned(),
                scope: scope_field(&fields)?,
                hash: field(&fields, "hash")?.to_string(),
                created_at: time_field(&fields, "created_at").unwrap_or(Timestamp::UNIX_EPOCH),
                last_used_at: time_field(&fields, "last_used_at"),
                id,
            });
        }
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let deleted: i64 = scripts::DELETE_KEY
            .arg(self.prefix())
            .arg(id)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(deleted == 1)
    }

    async fn put_session(&self, session: StoredSession) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let key = self.key(&format!("session:{}", session.id));
        let _: () = redis::pipe()
            .atomic()
            .del(&key)
            .hset_multiple(
                &key,
                &[
                    ("holder", session.holder.clone()),
                    ("scope", session.scope.as_str().to_string()),
                    (
                        "created_at",
                        session.created_at.as_microsecond().to_string(),
                    ),
                    (
                        "last_seen_at",
                        session.last_seen_at.as_microsecond().to_string(),
                    ),
                ],
            )
            .sadd(self.key("sessions"), &session.id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn list_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let mut sessions = Vec::new();
        for (id, fields) in self.hashes_of_set("sessions", "session").await? {
            sessions.push(StoredSession {
                holder: field(&fields, "holder")?.to_string(),
                scope: scope_field(&fields)?,
                created_at: time_field(&fields, "created_at").unwrap_or(Timestamp::UNIX_EPOCH),
                last_seen_at: time_field(&fields, "last_seen_at").unwrap_or(Timestamp::UNIX_EPOCH),
                id,
            });
        }
        Ok(sessions)
    }

    async fn delete_sessions(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for id in &ids {
            pipe.del(self.key(&format!("session:{id}")));
        }
        pipe.srem(self.key("sessions"), &ids);
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn record_use(
        &self,
        keys: Vec<(String, Timestamp)>,
        sessions: Vec<(String, Timestamp)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        for (field, kind, uses) in [
            ("last_used_at", "key", keys),
            ("last_seen_at", "session", sessions),
        ] {
            if uses.is_empty() {
                continue;
            }
            let mut invocation = scripts::SET_IF_EXISTS.prepare_invoke();
            invocation.arg(field);
            for (id, at) in uses {
                invocation
                    .arg(self.key(&format!("{kind}:{id}")))
                    .arg(at.as_microsecond());
            }
            let _: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    async fn session_secret(&self, own: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let mut conn = self.conn()?;
        let key = self.key("session_secret");
        let _: bool = conn
            .set_nx(&key, own.as_slice())
            .await
            .map_err(|e| self.failed(e))?;
        let shared: Vec<u8> = conn.get(&key).await.map_err(|e| self.failed(e))?;
        shared
            .try_into()
            .map_err(|_| StoreError::Corrupt("the shared session secret is not 32 bytes".into()))
    }
}

#[async_trait]
impl ConversationStore for RedisStore {
    async fn create_conversation(
        &self,
        conversation: ConversationSummary,
        channel: Option<String>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let num: u64 = conn
            .incr(self.key("convnum"), 1)
            .await
            .map_err(|e| self.failed(e))?;
        let key = self.key(&format!("conv:{}", conversation.id));
        let mut fields = vec![
            ("summary", to_json(&conversation)?),
            ("num", num.to_string()),
            ("message_count", conversation.message_count.to_string()),
            (
                "updated_at",
                conversation.updated_at.as_microsecond().to_string(),
            ),
        ];
        if let Some(channel) = channel {
            fields.push(("channel", channel));
        }
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(&key, &fields)
            .sadd(self.key("convs"), &conversation.id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn update_conversation(
        &self,
        conversation: ConversationSummary,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let updated: i64 = scripts::UPDATE_IF_EXISTS
            .arg(self.key(&format!("conv:{}", conversation.id)))
            .arg("summary")
            .arg(to_json(&conversation)?)
            .arg("updated_at")
            .arg(conversation.updated_at.as_microsecond())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        if updated == 0 {
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
            .transpose()?;
        let mut all = Vec::new();
        for (_, fields) in self.hashes_of_set("convs", "conv").await? {
            if query
                .channel
                .as_deref()
                .is_some_and(|channel| fields.get("channel").map(String::as_str) != Some(channel))
            {
                continue;
            }
            let num: i64 = field(&fields, "num")?.parse().unwrap_or(0);
            all.push((conversation_of(&fields)?, num));
        }
        let order = |c: &ConversationSummary, num: i64| (c.updated_at.as_microsecond(), num);
        all.sort_by_key(|(c, num)| std::cmp::Reverse(order(c, *num)));
        let mut page = Vec::with_capacity(query.limit);
        let mut next = None;
        for (conversation, num) in all {
            if after.is_some_and(|after| order(&conversation, num) >= after) {
                continue;
            }
            if page.len() == query.limit {
                next = page.last().map(|(last, num): &(ConversationSummary, i64)| {
                    conversation_cursor(last, num.unsigned_abs())
                });
                break;
            }
            page.push((conversation, num));
        }
        Ok((page.into_iter().map(|(c, _)| c).collect(), next))
    }

    async fn get_conversation(
        &self,
        id: &str,
    ) -> Result<Option<(ConversationSummary, Vec<StoredMessage>)>, StoreError> {
        let mut conn = self.conn()?;
        let (fields, messages): (Fields, Vec<String>) = redis::pipe()
            .hgetall(self.key(&format!("conv:{id}")))
            .lrange(self.key(&format!("convmsgs:{id}")), 0, -1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let messages = messages
            .iter()
            .map(|m| from_json(m))
            .collect::<Result<_, _>>()?;
        Ok(Some((conversation_of(&fields)?, messages)))
    }

    async fn delete_conversation(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let (deleted, _, _): (i64, i64, i64) = redis::pipe()
            .atomic()
            .del(self.key(&format!("conv:{id}")))
            .del(self.key(&format!("convmsgs:{id}")))
            .srem(self.key("convs"), id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(deleted == 1)
    }
}

fn conversation_of(fields: &Fields) -> Result<ConversationSummary, StoreError> {
    let mut conversation: ConversationSummary = from_json(field(fields, "summary")?)?;
    conversation.message_count = field(fields, "message_count")?.parse().unwrap_or(0);
    if let Some(updated) = time_field(fields, "updated_at") {
        conversation.updated_at = updated;
    }
    Ok(conversation)
}

#[async_trait]
impl AgentStore for RedisStore {
    async fn put_approval(&self, approval: Approval) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _: () = redis::pipe()
            .atomic()
            .set(
                self.key(&format!("approval:{}", approval.id)),
                to_json(&approval)?,
            )
            .zadd(
                self.key("approvals"),
                &approval.id,
                approval.created_at.as_microsecond(),
            )
            .sadd(
                self.key(&format!("task_approvals:{}", approval.task_id)),
                &approval.id,
            )
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn approvals(
        &self,
        task: Option<String>,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<Approval>, StoreError> {
        let mut conn = self.conn()?;
        let ids: Vec<String> = conn
            .zrange(self.key("approvals"), 0, -1)
            .await
            .map_err(|e| self.failed(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("approval:{id}")))
            .collect();
        let all: Vec<Option<String>> = conn.mget(keys).await.map_err(|e| self.failed(e))?;
        let mut approvals = Vec::new();
        for data in all.into_iter().flatten() {
            let approval: Approval = from_json(&data)?;
            if task.as_ref().is_none_or(|t| *t == approval.task_id)
                && status.as_ref().is_none_or(|s| *s == approval.status)
            {
                approvals.push(approval);
            }
        }
        Ok(approvals)
    }

    async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let mut conn = self.conn()?;
        let data: Option<String> = conn
            .get(self.key(&format!("approval:{id}")))
            .await
            .map_err(|e| self.failed(e))?;
        data.map(|data| from_json(&data)).transpose()
    }

    async fn expire_pending_approvals(&self) -> Result<usize, StoreError> {
        let live = self.live_nodes().await?;
        let mut count = 0;
        for approval in self.approvals(None, Some(ApprovalStatus::Pending)).await? {
            let task = self.get_task(&approval.task_id).await?;
            let runs_elsewhere = task.is_some_and(|task| {
                matches!(
                    task.state,
                    crate::proto::TaskState::Running | crate::proto::TaskState::Paused
                ) && task
                    .node
                    .is_some_and(|node| node != self.node && live.contains(&node))
            });
            if runs_elsewhere {
                continue;
            }
            self.put_approval(expired(approval)).await?;
            count += 1;
        }
        Ok(count)
    }

    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        files: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let task = &checkpoint.task_id;
        let files_key = self.key(&format!("cpfiles:{task}:{}", checkpoint.id));
        let mut pipe = redis::pipe();
        pipe.atomic().del(&files_key);
        for (path, content) in &files {
            let kept = match content {
                Some(bytes) => {
                    let mut kept = Vec::with_capacity(bytes.len() + 1);
                    kept.push(PRESENT);
                    kept.extend_from_slice(bytes);
                    kept
                }
                None => MISSING.to_vec(),
            };
            pipe.hset(&files_key, path, kept);
        }
        pipe.hset(
            self.key(&format!("checkpoints:{task}")),
            checkpoint.id,
            to_json(&checkpoint)?,
        );
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn checkpoints(&self, task: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let mut conn = self.conn()?;
        let all: HashMap<u32, String> = conn
            .hgetall(self.key(&format!("checkpoints:{task}")))
            .await
            .map_err(|e| self.failed(e))?;
        let mut checkpoints = all
            .values()
            .map(|data| from_json(data))
            .collect::<Result<Vec<Checkpoint>, _>>()?;
        checkpoints.sort_by_key(|c| c.id);
        Ok(checkpoints)
    }

    async fn checkpoint_files(
        &self,
        task: &str,
        checkpoint: u32,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        let mut conn = self.conn()?;
        let all: HashMap<String, Vec<u8>> = conn
            .hgetall(self.key(&format!("cpfiles:{task}:{checkpoint}")))
            .await
            .map_err(|e| self.failed(e))?;
        let mut files: Vec<(String, Option<Vec<u8>>)> = all
            .into_iter()
            .map(|(path, kept)| match kept.split_first() {
                Some((&PRESENT, content)) => (path, Some(content.to_vec())),
                _ => (path, None),
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }
}

impl RedisStore {
    /// Every hash `{kind}:{id}` whose id is in the set `set`, with its id; those gone
    /// meanwhile left out.
    async fn hashes_of_set(
        &self,
        set: &str,
        kind: &str,
    ) -> Result<Vec<(String, Fields)>, StoreError> {
        let mut conn = self.conn()?;
        let ids: Vec<String> = conn
            .smembers(self.key(set))
            .await
            .map_err(|e| self.failed(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.key(&format!("{kind}:{id}")));
        }
        let all: Vec<Fields> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(ids
            .into_iter()
            .zip(all)
            .filter(|(_, fields)| !fields.is_empty())
            .collect())
    }
}
