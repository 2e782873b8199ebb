//! Seed 003's REST surface for its clients: `POST /api/v1/execute` with a `client-id` header
//! runs code in that client's own session (started on its first request, reused across its
//! connections), answering `{execution_id, status}`; its output is read from the session's
//! log or over `/ws/v1/session`. `POST /api/v1/checkpoint` saves that session's variables
//! (`{checkpoint_id}`) and `POST /api/v1/restore/{checkpoint_id}` puts a checkpoint of the
//! same client back, into its session of now (a new one after a restart).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson};
use crate::proto::{CheckpointRequest, ExecuteRequest, TransactionPolicy};

/// The header seed 003's clients name themselves by.
pub const CLIENT_ID_HEADER: &str = "client-id";

/// Body of seed 003's `POST /api/v1/execute`.
#[derive(Debug, Deserialize)]
pub struct Execute {
    code: String,
    #[serde(default)]
    transaction_policy: TransactionPolicy,
    /// Seconds the code may run.
    #[serde(default)]
    timeout: Option<f64>,
}

pub async fn execute(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<Execute>,
) -> Result<Json<Value>, ApiError> {
    let client = client_of(principal.map(|p| p.0), &headers)?;
    let session = state.engine.client_session(&client).await?;
    let execution = state
        .engine
        .execute(
            &session,
            ExecuteRequest {
                transaction_policy: request.transaction_policy,
                timeout_secs: request.timeout,
                ..ExecuteRequest::new(request.code)
            },
        )
        .await?;
    Ok(Json(json!({
        "execution_id": execution.id,
        "status": execution.status.as_str(),
        "session_id": session,
    })))
}

/// Saves the variables of the client's session; the body (`{name?}`) may be left out.
pub async fn checkpoint(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let client = client_of(principal.map(|p| p.0), &headers)?;
    let request: CheckpointRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CheckpointRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not {{\"name\"?}}: {e}")))?
    };
    let session = state.engine.client_session(&client).await?;
    let checkpoint = state.engine.checkpoint_session(&session, request).await?;
    Ok(Json(json!({
        "checkpoint_id": checkpoint.id,
        "session_id": session,
        "saved": checkpoint.saved,
        "skipped": checkpoint.skipped,
    })))
}

/// Restores a checkpoint of the same client into its session.
pub async fn restore(
    State(state): State<AppState>,
    principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    Path(checkpoint_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = client_of(principal.map(|p| p.0), &headers)?;
    let checkpoint = state.engine.session_checkpoint(&checkpoint_id)?;
    if checkpoint.client.as_deref() != Some(client.as_str()) {
        // Another client's checkpoint is not there for this one.
        return Err(crate::engine::EngineError::SessionCheckpointNotFound(checkpoint_id).into());
    }
    let session = state.engine.client_session(&client).await?;
    let restored = state
        .engine
        .restore_session(&session, &checkpoint.id)
        .await?;
    Ok(Json(json!({
        "status": "restored",
        "session_id": session,
        "restored": restored.restored,
        "failed": restored.failed,
    })))
}

/// Whose session a request reaches: the `client-id` it names, within the holder of the key
/// that sent it (one key cannot reach another's sessions), or the holder alone.
pub fn client_of(principal: Option<Principal>, headers: &HeaderMap) -> Result<String, ApiError> {
    let holder = principal.map_or_else(|| "local".to_string(), |p| p.holder);
    match headers.get(CLIENT_ID_HEADER) {
        None => Ok(holder),
        Some(value) => {
            let id = value
                .to_str()
                .ok()
                .filter(|id| !id.is_empty() && id.len() <= 200)
                .ok_or_else(|| {
                    ApiError::invalid("client-id must be 1 to 200 visible ASCII characters")
                })?;
            Ok(format!("{holder}/{id}"))
        }
    }
}
