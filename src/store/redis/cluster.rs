//! Messages between the nodes that share a Redis: a question goes on the asked node's inbox
//! (a list), and its answer on a list of its own that the asker waits on.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_BACKOFF, RedisStore, Shared, blocking_connection};
use crate::store::{Cluster, Question, StoreError};

/// How long an answer (or a question nobody took) stays in Redis.
const KEEP: Duration = Duration::from_secs(60);
/// Questions waiting for this node's engine to take them.
const WAITING: usize = 64;

/// A question as it waits in an inbox.
#[derive(Serialize, Deserialize)]
struct Letter {
    text: String,
    /// The list the answer goes to.
    reply_to: String,
}

#[async_trait]
impl Cluster for RedisStore {
    async fn ask(
        &self,
        node: &str,
        question: String,
        patience: Duration,
    ) -> Result<String, StoreError> {
        let mut conn = self.conn()?;
        let unreachable = |message: String| StoreError::NodeUnreachable {
            node: node.to_string(),
            message,
        };
        let reply_to = self.key(&format!("reply:{}", uuid::Uuid::now_v7().simple()));
        let inbox = self.key(&format!("inbox:{node}"));
        let letter = serde_json::to_string(&Letter {
            text: question,
            reply_to: reply_to.clone(),
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: () = redis::pipe()
            .rpush(&inbox, letter)
            .expire(&inbox, KEEP.as_secs() as i64)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let mut waiting = blocking_connection(&self.shared.client)
            .await
            .map_err(|e| self.failed(e))?;
        let answer: Option<(String, String)> = waiting
            .blpop(&reply_to, patience.as_secs_f64())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        answer
            .map(|(_, answer)| answer)
            .ok_or_else(|| unreachable(format!("no answer within {}s", patience.as_secs())))
    }

    fn questions(&self) -> Option<mpsc::Receiver<Question>> {
        let mut taken = self
            .shared
            .questions_taken
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *taken {
            return None;
        }
        *taken = true;
        let (sender, receiver) = mpsc::channel(WAITING);
        tokio::spawn(read_inbox(
            self.shared.clone(),
            self.key(&format!("inbox:{}", self.node)),
            sender,
        ));
        Some(receiver)
    }
}

/// Hands the questions in `inbox` to `questions` and sends back their answers, until the store
/// closes or nobody takes questions any more.
async fn read_inbox(
    shared: std::sync::Arc<Shared>,
    inbox: String,
    questions: mpsc::Sender<Question>,
) {
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
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        loop {
            let popped = tokio::select! {
                () = shared.stop.cancelled() => return,
                popped = conn.blpop::<_, Option<(String, String)>>(&inbox, 1.0) => popped,
            };
            let letter = match popped {
                Ok(Some((_, letter))) => letter,
                Ok(None) => continue,
                Err(e) => {
                    shared.note(&e);
                    break;
                }
            };
            let Ok(letter) = serde_json::from_str::<Letter>(&letter) else {
                tracing::warn!("a question this node cannot read; dropped");
                continue;
            };
            let (answer, answered) = oneshot::channel();
            let question = Question {
                text: letter.text,
                answer,
            };
            if questions.send(question).await.is_err() {
                return;
            }
            let mut reply = shared.conn.clone();
            tokio::spawn(async move {
                let Ok(answer) = answered.await else {
                    return;
                };
                let sent: Result<(), _> = redis::pipe()
                    .rpush(&letter.reply_to, answer)
                    .expire(&letter.reply_to, KEEP.as_secs() as i64)
                    .query_async(&mut reply)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "cannot send an answer to another node");
                }
            });
        }
    }
}
