//! Chat conversations and their messages.

use async_trait::async_trait;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, clamp, from_json, time_column, to_json};
use crate::proto::{ConversationSummary, StoredMessage};
use crate::store::{ConversationAppend, ConversationQuery, ConversationStore, StoreError};
use crate::store::{conversation_cursor, parse_conversation_cursor};

const CONVERSATION_COLUMNS: &str =
    "num, id, title, provider, model, system, message_count, created_at, updated_at";

#[async_trait]
impl ConversationStore for SqliteStore {
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
}

pub(super) fn append_messages(
    conn: &Connection,
    append: &ConversationAppend,
) -> Result<(), StoreError> {
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
