//! Seed 003's WebSocket, `/ws/v1/session`: the client's own session (by its `client-id`
//! header, as on `POST /api/v1/execute`), driven by JSON messages `execute {id?, code}`,
//! `input_response {input_id, value}` and `checkpoint`; the server streams `output`,
//! `input_request`, `result` and `error` messages as the session's log records them, and
//! answers a `checkpoint` with `checkpoint_created`.

use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::seed003::client_of;
use super::socket::{
    Connection, Dialect, End, Flow, Following, Parsed, Silence, Upgrade, json_message,
};
use crate::bus::Topic;
use crate::proto::{
    CheckpointRequest, Event, ExecuteRequest, ExecutionDisplay, ExecutionError, ExecutionFinished,
    ExecutionOutput, ExecutionResult, InputAnswer, InputRequested, MimeBundle, OutputStream,
    TransactionPolicy,
};

/// `/ws/v1/session`.
pub async fn socket(upgrade: Upgrade, headers: HeaderMap) -> Response {
    upgrade.serve(SessionSocket {
        headers,
        session: None,
        following: None,
    })
}

/// A client message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Execute {
        #[serde(default)]
        id: Option<String>,
        code: String,
        #[serde(default)]
        transaction_policy: TransactionPolicy,
    },
    InputResponse {
        input_id: String,
        value: String,
    },
    Checkpoint {
        #[serde(default)]
        name: Option<String>,
    },
}

/// One socket: the headers of its upgrade, then its client's session and the stream of its
/// log.
pub struct SessionSocket {
    headers: HeaderMap,
    session: Option<String>,
    following: Option<Following>,
}

impl SessionSocket {
    /// The client's session, started (and its log followed from now) on first use.
    async fn session(&mut self, connection: &Connection) -> Result<String, ApiError> {
        if let Some(session) = &self.session {
            return Ok(session.clone());
        }
        let client = client_of(connection.principal(), &self.headers)?;
        let engine = &connection.state.engine;
        let session = engine.client_session(&client).await?;
        let after = engine.get(&session).await?.last_seq;
        let mut events = engine
            .bus()
            .subscribe(Topic::Task(session.clone()), Some(after))
            .await
            .map_err(|e| ApiError::from(crate::engine::EngineError::from(e)))?;
        self.following = Some(connection.forward(|outbox| async move {
            let mut results: std::collections::HashMap<String, MimeBundle> = Default::default();
            while let Ok(Some(published)) = events.next().await {
                let Some(message) = message_of(&published.event, &mut results) else {
                    continue;
                };
                if outbox.send(json_message(&message)).await.is_err() {
                    return;
                }
            }
        }));
        self.session = Some(session.clone());
        Ok(session)
    }
}

impl Dialect for SessionSocket {
    type Request = Request;

    const SILENCE: Silence = Silence::Heartbeats(3);

    fn parse(&mut self, text: &str) -> Parsed<Request> {
        match serde_json::from_str::<Request>(text) {
            Ok(request) => Parsed::Request(request),
            Err(e) => Parsed::Invalid(json_message(&failure(&format!(
                "not a message of this socket ({e}); send {{\"type\":\"execute\",\"code\":...}}"
            )))),
        }
    }

    async fn opened(&mut self, connection: &Connection) -> Flow {
        if let Err(e) = self.session(connection).await {
            connection.send_json(&failure(&e.message)).await?;
            return Err(End::Close(1011, "cannot open a session".into()));
        }
        Ok(())
    }

    async fn handle(&mut self, request: Request, connection: &Connection) -> Flow {
        connection.authenticated()?;
        let session = match self.session(connection).await {
            Ok(session) => session,
            Err(e) => return connection.send_json(&failure(&e.message)).await,
        };
        let engine = &connection.state.engine;
        let answer = match request {
            Request::Execute {
                id,
                code,
                transaction_policy,
            } => engine
                .execute(
                    &session,
                    ExecuteRequest {
                        id,
                        transaction_policy,
                        ..ExecuteRequest::new(code)
                    },
                )
                .await
                .map(drop),
            Request::InputResponse { input_id, value } => engine
                .answer_input(
                    &session,
                    InputAnswer {
                        value,
                        input_id: Some(input_id),
                    },
                )
                .await
                .map(drop),
            Request::Checkpoint { name } => {
                match engine
                    .checkpoint_session(&session, CheckpointRequest { name })
                    .await
                {
                    Ok(checkpoint) => {
                        let created = json!({"type": "checkpoint_created", "data": {
                            "checkpoint_id": checkpoint.id, "saved": checkpoint.saved,
                            "skipped": checkpoint.skipped,
                        }});
                        return connection.send_json(&created).await;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match answer {
            Ok(()) => Ok(()),
            Err(e) => connection.send_json(&failure(&e.to_string())).await,
        }
    }
}

/// An error message that belongs to no execution.
fn failure(message: &str) -> Value {
    json!({"type": "error", "data": {"message": message}})
}

/// The seed message of one event of the session's log, if it has one. An execution's value
/// (`execution.result`) waits in `results` for its end, which the `result` message reports.
fn message_of(
    event: &Event,
    results: &mut std::collections::HashMap<String, MimeBundle>,
) -> Option<Value> {
    if let Some(output) = event.decode::<ExecutionOutput>() {
        let stream = match output.stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        return Some(json!({"type": "output", "data": {
            "execution_id": output.execution_id, "stream": stream, "data": output.text,
        }}));
    }
    if let Some(display) = event.decode::<ExecutionDisplay>() {
        return Some(json!({"type": "output", "data": {
            "execution_id": display.execution_id, "stream": "display",
            "data": plain(&display.data), "mime": display.data,
        }}));
    }
    if let Some(result) = event.decode::<ExecutionResult>() {
        results.insert(result.execution_id, result.data);
        return None;
    }
    if let Some(error) = event.decode::<ExecutionError>() {
        return Some(json!({"type": "error", "data": {
            "execution_id": error.execution_id, "exception_type": error.name,
            "exception_message": error.value, "traceback": error.traceback.join("\n"),
        }}));
    }
    if let Some(request) = event.decode::<InputRequested>() {
        return Some(json!({"type": "input_request", "data": {
            "execution_id": request.execution_id, "input_id": request.input_id,
            "prompt": request.prompt, "password": request.password,
        }}));
    }
    if let Some(finished) = event.decode::<ExecutionFinished>() {
        let value = results.remove(&finished.execution_id);
        return Some(json!({"type": "result", "data": {
            "execution_id": finished.execution_id, "status": finished.status.as_str(),
            "value": value.as_ref().map(plain), "mime": value,
            "execution_count": finished.execution_count,
            "execution_time": finished.duration_ms as f64 / 1000.0,
            "rolled_back": finished.rolled_back,
        }}));
    }
    None
}

/// A bundle's `text/plain`, or nothing.
fn plain(bundle: &MimeBundle) -> Value {
    bundle.get("text/plain").cloned().unwrap_or(Value::Null)
}
