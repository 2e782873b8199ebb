//! Seed 000's MCP server management: `GET /mcp/servers`, `POST /mcp/connect`,
//! `POST /mcp/disconnect`, in its shapes, over the MCP servers whose tools victor's agents use
//! ([`crate::mcp`]). Connecting is what an agent run does by itself when it first needs a
//! server; these routes let a person see the servers, connect one ahead (to see its tools and
//! any error), add one by URL, and close one (its process ends; it starts again when needed).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiJson};
use crate::mcp::McpError;

/// Body of `/mcp/connect` and `/mcp/disconnect`.
#[derive(Debug, Deserialize)]
pub struct ServerBody {
    /// The server's name (`[mcp.NAME]`).
    server: String,
    /// A Streamable HTTP URL: connects a server that `config.toml` does not name.
    #[serde(default)]
    endpoint: Option<String>,
}

fn refused(error: McpError) -> ApiError {
    match error {
        McpError::Unknown(_) => ApiError::not_found(format!(
            "{error}; GET /mcp/servers lists them, and an endpoint adds one"
        )),
        McpError::Config(_) => ApiError::invalid(error.to_string()),
        other => ApiError::new(StatusCode::CONFLICT, "conflict", other.to_string()),
    }
}

/// `GET /mcp/servers`: `{"servers": [{name, connected, tools, endpoint}]}`.
pub async fn servers(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"servers": state.engine.mcp().statuses()}))
}

/// `POST /mcp/connect`: `{"success", "server"}`; a server that cannot be reached is
/// `success: false` with the reason in `error`.
pub async fn connect(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ServerBody>,
) -> Result<Json<Value>, ApiError> {
    let servers = state.engine.mcp();
    if let Some(endpoint) = &body.endpoint {
        servers.add_url(&body.server, endpoint).map_err(refused)?;
    }
    match servers.connect(&body.server).await {
        Ok(status) => Ok(Json(json!({
            "success": true, "server": body.server, "tools": status.tools,
        }))),
        Err(error @ McpError::Unknown(_)) => Err(refused(error)),
        Err(error) => Ok(Json(json!({
            "success": false, "server": body.server, "error": error.to_string(),
        }))),
    }
}

/// `POST /mcp/disconnect`: `{"success": true, "server"}`.
pub async fn disconnect(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ServerBody>,
) -> Result<Json<Value>, ApiError> {
    state
        .engine
        .mcp()
        .disconnect(&body.server)
        .await
        .map_err(refused)?;
    Ok(Json(json!({"success": true, "server": body.server})))
}
