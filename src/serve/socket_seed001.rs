//! Seed 001's progress socket, `/ws/{task_id}`: the task's events as Code Intern's
//! (`{"type": "TASK_STARTED"|..., "task_id", "timestamp", "seq", "data"}`, read from the
//! agent's log by [`Build`]), and `{"type": "INTERVENTION", "guidance"}` from the client,
//! which reaches the agent as guidance. A client that connects late gets the task's events
//! from the start; one that reconnects with `?after=SEQ` (the `seq` of the last event it saw)
//! gets the rest. Errors are `{"type": "ERROR", ..., "data": {"message"}}`.

use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::forbidden;
use super::error::ApiError;
use super::seed_events::subscribe_after;
use super::seed001::Build;
use super::socket::{
    Connection, Dialect, End, Flow, Following, Outbox, Parsed, Silence, Upgrade, json_message,
};
use crate::engine::EngineError;
use crate::proto::{Scope, TaskSpec};

/// Close code for a task that does not exist (or is not an agent's).
const CLOSE_NOT_FOUND: u16 = 4404;
/// Close code for a resume point the task's log has not reached.
const CLOSE_BAD_CURSOR: u16 = 4422;

/// `/ws/{task_id}?after=SEQ`.
pub async fn socket(
    upgrade: Upgrade,
    Path(task_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let after = serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(name, _)| name == "after")
        .map(|(_, value)| value.trim().parse::<u64>().map_err(|_| value));
    upgrade.serve(TaskSocket {
        task_id,
        after,
        following: None,
    })
}

/// One client of one task.
pub struct TaskSocket {
    task_id: String,
    /// Where the client resumes; `Err` holds what it sent that is not a seq.
    after: Option<Result<u64, String>>,
    following: Option<Following>,
}

/// A client message of seed 001's socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum Incoming {
    #[serde(rename = "INTERVENTION")]
    Intervention { guidance: String },
    #[serde(rename = "auth")]
    Auth {
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        session_token: Option<String>,
    },
}

impl TaskSocket {
    /// An `ERROR` message in the socket's envelope.
    fn error(&self, message: impl Into<String>) -> Value {
        json!({
            "type": "ERROR",
            "task_id": self.task_id,
            "timestamp": jiff::Timestamp::now().to_string(),
            "data": {"message": message.into()},
        })
    }

    /// Says why the socket ends, then ends it with `code`.
    async fn refuse(&self, connection: &Connection, code: u16, message: String) -> Flow {
        connection.send_json(&self.error(message.clone())).await?;
        Err(End::Close(code, message))
    }
}

impl Dialect for TaskSocket {
    type Request = String;

    const SILENCE: Silence = Silence::Heartbeats(3);

    fn parse(&mut self, text: &str) -> Parsed<String> {
        match serde_json::from_str::<Incoming>(text) {
            Ok(Incoming::Intervention { guidance }) => Parsed::Request(guidance),
            Ok(Incoming::Auth {
                api_key,
                session_token,
            }) => Parsed::Auth {
                credential: api_key.or(session_token),
                granted: json_message(&json!({"type": "auth_success"})),
                refused: Some(json_message(&self.error("wrong or expired credentials"))),
            },
            Err(e) => Parsed::Invalid(json_message(&self.error(format!(
                "not a message this socket understands ({e}): send \
                 {{\"type\": \"INTERVENTION\", \"guidance\": \"...\"}}"
            )))),
        }
    }

    /// An intervention: guidance for the agent before its next step.
    async fn handle(&mut self, guidance: String, connection: &Connection) -> Flow {
        let principal = connection.authenticated()?;
        let refusal = if principal.scope < Scope::Control {
            Some(forbidden(principal.scope, Scope::Control).message)
        } else if guidance.trim().is_empty() {
            Some("the guidance is empty".to_string())
        } else {
            let engine = &connection.state.engine;
            engine
                .guide(&self.task_id, guidance)
                .await
                .err()
                .map(|e| ApiError::from(e).message)
        };
        match refusal {
            Some(message) => connection.send_json(&self.error(message)).await,
            None => Ok(()),
        }
    }

    /// Follows the task from where the client is.
    async fn opened(&mut self, connection: &Connection) -> Flow {
        if self.following.is_some() {
            return Ok(());
        }
        let engine = connection.state.engine.clone();
        let task = match engine.get(&self.task_id).await {
            Ok(task) => task,
            Err(EngineError::NotFound(_)) => {
                let message = format!("task {} not found", self.task_id);
                return self.refuse(connection, CLOSE_NOT_FOUND, message).await;
            }
            Err(e) => {
                let message = ApiError::from(e).message;
                return self.refuse(connection, 1011, message).await;
            }
        };
        let TaskSpec::Agent(spec) = &task.spec else {
            let message = format!("task {} is not a Code Intern task", self.task_id);
            return self.refuse(connection, CLOSE_NOT_FOUND, message).await;
        };
        let after = match self.after.clone() {
            None => 0,
            Some(Ok(after)) if after <= task.last_seq => after,
            Some(Ok(after)) => {
                let message = format!(
                    "after {after} is past the task's last event ({})",
                    task.last_seq
                );
                return self.refuse(connection, CLOSE_BAD_CURSOR, message).await;
            }
            Some(Err(sent)) => {
                let message = format!("after must be the seq of an event, not `{sent}`");
                return self.refuse(connection, CLOSE_BAD_CURSOR, message).await;
            }
        };
        let mut build = Build::new(&task.id, spec);
        let subscription = subscribe_after(&engine, &task.id, after, |event| {
            build.feed(event);
        })
        .await;
        let subscription = match subscription {
            Ok(subscription) => subscription,
            Err(e) => {
                let message = ApiError::from(EngineError::from(e)).message;
                return self.refuse(connection, 1011, message).await;
            }
        };
        self.following = Some(connection.forward(|outbox| follow(subscription, build, outbox)));
        Ok(())
    }
}

/// Sends the task's events as the seed's until its log ends.
async fn follow(mut subscription: crate::bus::Subscription, mut build: Build, outbox: Outbox) {
    loop {
        let published = match subscription.next().await {
            Ok(Some(published)) => published,
            Ok(None) => return,
            Err(e) => {
                let event = crate::proto::Event::stream_level("", "error", json!({}));
                let error = build.envelope(
                    "ERROR",
                    &event,
                    json!({"message": format!("the log cannot be read: {e}")}),
                );
                let _ = outbox.send(json_message(&error)).await;
                return;
            }
        };
        for message in build.feed(&published.event) {
            if outbox.send(json_message(&message)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::Message;

    use super::*;

    #[test]
    fn interventions_and_auth_read_and_the_rest_is_an_error() {
        let mut socket = TaskSocket {
            task_id: "t1".into(),
            after: None,
            following: None,
        };
        assert!(matches!(
            socket.parse(r#"{"type":"INTERVENTION","guidance":"use RFC 5322"}"#),
            Parsed::Request(guidance) if guidance == "use RFC 5322"
        ));
        assert!(matches!(
            socket.parse(r#"{"type":"auth","api_key":"k"}"#),
            Parsed::Auth { credential: Some(key), .. } if key == "k"
        ));
        let Parsed::Invalid(Message::Text(answer)) = socket.parse(r#"{"type":"PAUSE"}"#) else {
            panic!("not an error");
        };
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["type"], "ERROR");
        assert_eq!(answer["task_id"], "t1");
    }
}
