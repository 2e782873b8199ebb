//! Seed 003's REST surface for its clients: `POST /api/v1/execute` with a `client-id` header
//! runs code in that client's own session (started on its first request, reused across its
//! connections), answering `{execution_id, status}`; its output is read from the session's
//! log or over `/ws/v1/session`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiJson};
use crate::proto::{ExecuteRequest, TransactionPolicy};

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
