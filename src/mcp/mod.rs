//! victor as an MCP client: the Model Context Protocol servers of `config.toml` (`[mcp.NAME]`)
//! whose tools victor's agents use beside their own. A server is connected when it is first
//! needed (an agent run starts, or `POST /mcp/connect`), and its connection kept; one that has
//! died is started again the next time. A call waits at most the server's timeout, so a server
//! that hangs or dies is an error the model reads, never a stuck agent.
//!
//! Own client rather than the `rmcp` SDK: victor needs three requests (`initialize`,
//! `tools/list`, `tools/call`) and a cancellation, and the server side (`serve/mcp.rs`) is
//! hand-written JSON-RPC already; see [`transport`] for the two transports.
//!
//! Names: an MCP tool is `NAME.tool` in events, approvals and task policies, and reaches the
//! model as [`wire_name`] (`NAME__tool`), because OpenAI and Anthropic accept only
//! `[A-Za-z0-9_-]{1,64}` as a function's name.

mod transport;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::proto::{Permission, ToolSpec};
use transport::Transport;

/// The protocol revisions of the `initialize` handshake victor speaks, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// The Streamable HTTP transport's session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The Streamable HTTP transport's header naming the negotiated revision.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// Whether a response is an SSE stream (rather than one JSON body).
pub fn is_event_stream(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"))
}

/// How long connecting (starting the process, `initialize`, `tools/list`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after a failed connection agents are told the same failure without a new try.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// How long a tool call may take when its server's table does not say.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest function name the providers accept.
const MAX_WIRE_NAME: usize = 64;
/// Longest server name: room is left for the tool's.
const MAX_SERVER_NAME: usize = 32;

/// One `[mcp.NAME]` table: a command to run (stdio) or a URL (Streamable HTTP).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program that serves MCP on its stdin and stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Set for the program, over the server's own environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A Streamable HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent with every request to `url` (an `Authorization`, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Seconds a tool call may take (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// What its tools' calls need when the agent's task does not say (default `ask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Permission>,
}

impl McpServerConfig {
    /// Checks the table named `name`: a usable name, a command or a URL (not both), a timeout.
    pub fn check(&self, name: &str) -> Result<(), McpError> {
        let valid_name = !name.is_empty()
            && name.len() <= MAX_SERVER_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !name.contains("__");
        if !valid_name {
            return Err(McpError::Config(format!(
                "mcp.{name}: a server's name is 1 to {MAX_SERVER_NAME} letters, digits, - and \
                 _ (no __), as it prefixes its tools' names"
            )));
        }
        match (&self.command, &self.url) {
            (Some(command), None) if !command.is_empty() => {}
            (None, Some(url)) if !url.is_empty() => {}
            _ => {
                return Err(McpError::Config(format!(
                    "mcp.{name} needs either a command or a url"
                )));
            }
        }
        if let Some(secs) = self.timeout_secs
            && !(secs.is_finite() && secs > 0.0 && secs < 1e9)
        {
            return Err(McpError::Config(format!(
                "mcp.{name}.timeout_secs must be a positive number of seconds"
            )));
        }
        Ok(())
    }

    fn call_timeout(&self) -> Duration {
        self.timeout_secs
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .unwrap_or(DEFAULT_CALL_TIMEOUT)
    }
}

/// Why an MCP server or one of its calls failed, as a model or a person reads it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum McpError {
    #[error("{0}")]
    Config(String),
    #[error("there is no MCP server named {0}")]
    Unknown(String),
    #[error("there is an MCP server named {0} already, at another endpoint")]
    Taken(String),
    #[error("it could not start: {0}")]
    Start(String),
    #[error("it cannot be reached: {0}")]
    Unreachable(String),
    #[error("it refused the request ({0})")]
    Refused(String),
    #[error("it exited (or closed its session) before answering")]
    Gone,
    #[error("it did not answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the call was cancelled")]
    Cancelled,
    #[error("it answered with an error: {0}")]
    Remote(String),
    #[error("it broke the protocol: {0}")]
    Protocol(String),
}

/// One tool of an MCP server, as an agent offers it.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub server: String,
    /// Its name on its server.
    pub name: String,
    /// `server.name`: in events, approvals and policies.
    pub qualified: String,
    /// What the model is shown: its wire name, description and input schema.
    pub spec: ToolSpec,
    /// The server says it changes nothing (`readOnlyHint`): `plan` and `explore` get it too.
    pub read_only: bool,
    /// What a call needs when the task's policy does not say.
    pub permission: Permission,
}

/// The name a model calls an MCP tool by: `server__tool`, with any character a provider
/// refuses made `_`, and cut to 64 with a hash of the whole when longer.
pub fn wire_name(server: &str, tool: &str) -> String {
    mapped(server, tool, false)
}

/// `server__tool` made acceptable; with `hashed` (or when too long), cut and ended with a
/// hash of the whole, so that it differs from a name it would otherwise collide with.
fn mapped(server: &str, tool: &str, hashed: bool) -> String {
    let name: String = format!("{server}__{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.len() <= MAX_WIRE_NAME && !hashed {
        return name;
    }
    let hash = sha2::Sha256::digest(format!("{server}.{tool}"));
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    // Every character is ASCII now, so any cut is on a character's boundary.
    let keep = name.len().min(MAX_WIRE_NAME - hex.len() - 1);
    format!("{}_{hex}", &name[..keep])
}

/// A live connection: the transport and the tools the server listed.
struct Connection {
    transport: Transport,
    tools: Vec<McpTool>,
}

/// One configured server, connected or not.
struct Server {
    name: String,
    config: McpServerConfig,
    /// Held while connecting, so that one connection opens for many callers.
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// The last failure to connect, and when: agent runs soon after it fail at once rather
    /// than wait for the server again.
    failed: Mutex<Option<(Instant, McpError)>>,
}

/// A server as `GET /mcp/servers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub connected: bool,
    /// Its tools' names (on the server), when connected.
    pub tools: Vec<String>,
    /// Its URL, or its command line.
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The MCP servers victor knows, by name.
#[derive(Default)]
pub struct McpServers {
    servers: Mutex<BTreeMap<String, Arc<Server>>>,
}

impl McpServers {
    /// The servers of `config.toml`, none connected yet.
    pub fn new(configs: &BTreeMap<String, McpServerConfig>) -> McpServers {
        let servers = configs
            .iter()
            .map(|(name, config)| (name.clone(), Server::new(name, config.clone())))
            .collect();
        McpServers {
            servers: Mutex::new(servers),
        }
    }

    fn servers(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Server>>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn server(&self, name: &str) -> Result<Arc<Server>, McpError> {
        self.servers()
            .get(name)
            .cloned()
            .ok_or_else(|| McpError::Unknown(name.to_string()))
    }

    /// Every server, and whether it is connected.
    pub fn statuses(&self) -> Vec<ServerStatus> {
        let servers: Vec<Arc<Server>> = self.servers().values().cloned().collect();
        servers.iter().map(|server| server.status()).collect()
    }

    /// Adds an HTTP server at `url` under `name`; one of that name already there must be
    /// at that URL.
    pub fn add_url(&self, name: &str, url: &str) -> Result<(), McpError> {
        let config = McpServerConfig {
            url: Some(url.to_string()),
            ..McpServerConfig::default()
        };
        config.check(name)?;
        Transport::open(name, &config)?;
        let mut servers = self.servers();
        match servers.get(name) {
            Some(known) if known.config.url.as_deref() == Some(url) => Ok(()),
            Some(_) => Err(McpError::Taken(name.to_string())),
            None => {
                servers.insert(name.to_string(), Server::new(name, config));
                Ok(())
            }
        }
    }

    /// Connects `name` (when it is not): its status.
    pub async fn connect(&self, name: &str) -> Result<ServerStatus, McpError> {
        let server = self.server(name)?;
        let connection = server.connection(true).await?;
        let mut status = server.status();
        // Another caller may hold the slot a moment longer; the connection is live.
        status.connected = true;
        status.tools = connection.tools.iter().map(|t| t.name.clone()).collect();
        Ok(status)
    }

    /// Closes `name`'s connection (its process ends); it connects again when next needed.
    pub async fn disconnect(&self, name: &str) -> Result<ServerStatus, McpError> {
        let server = self.server(name)?;
        let closed = server.connection.lock().await.take();
        if let Some(connection) = closed {
            connection.transport.close().await;
        }
        Ok(server.status())
    }

    /// The tools of every server, connecting those that are not; the servers that could not
    /// be reached, with why.
    pub async fn tools(&self) -> (Vec<McpTool>, Vec<(String, McpError)>) {
        let servers: Vec<Arc<Server>> = self.servers().values().cloned().collect();
        let connected =
            futures_util::future::join_all(servers.iter().map(|server| server.connection(false)))
                .await;
        let mut tools = Vec::new();
        let mut failed = Vec::new();
        for (server, connection) in servers.iter().zip(connected) {
            match connection {
                Ok(connection) => tools.extend(connection.tools.iter().cloned()),
                Err(error) => failed.push((server.name.clone(), error)),
            }
        }
        (tools, failed)
    }

    /// Calls a tool: its text for the model, or why it failed (a tool's own `isError` answer
    /// too). Stops when `cancel` fires.
    pub async fn call(
        &self,
        tool: &McpTool,
        arguments: Value,
        cancel: &CancellationToken,
    ) -> Result<String, String> {
        let failed = |error: McpError| format!("MCP server {}: {error}", tool.server);
        let server = self.server(&tool.server).map_err(failed)?;
        let connection = server.connection(false).await.map_err(failed)?;
        let arguments = match arguments {
            Value::Null => json!({}),
            other => other,
        };
        let params = json!({"name": tool.name, "arguments": arguments});
        let timeout = server.config.call_timeout();
        let result = connection
            .transport
            .request("tools/call", params, timeout, cancel)
            .await
            .map_err(failed)?;
        let text = content_text(&result);
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err(text);
        }
        Ok(text)
    }
}

impl Server {
    fn new(name: &str, config: McpServerConfig) -> Arc<Server> {
        Arc::new(Server {
            name: name.to_string(),
            config,
            connection: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
        })
    }

    /// Its status now: one that is connecting shows as not connected (yet), rather than
    /// keeping the caller waiting.
    fn status(&self) -> ServerStatus {
        let connection = match self.connection.try_lock() {
            Ok(slot) => slot.clone(),
            Err(_) => None,
        };
        let live = connection.filter(|c| !c.transport.is_gone());
        let endpoint = match (&self.config.url, &self.config.command) {
            (Some(url), _) => url.clone(),
            (None, Some(command)) => std::iter::once(command)
                .chain(&self.config.args)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            (None, None) => String::new(),
        };
        ServerStatus {
            name: self.name.clone(),
            connected: live.is_some(),
            tools: live
                .map(|c| c.tools.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default(),
            endpoint,
            error: self.failure().map(|(_, error)| error.to_string()),
        }
    }

    fn failure(&self) -> Option<(Instant, McpError)> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The live connection, opened (again) when there is none. Unless `now`, a server that
    /// failed to connect within [`RETRY_AFTER`] fails again at once.
    async fn connection(&self, now: bool) -> Result<Arc<Connection>, McpError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.transport.is_gone()
        {
            return Ok(connection.clone());
        }
        *slot = None;
        if let Some((at, error)) = self.failure()
            && !now
            && at.elapsed() < RETRY_AFTER
        {
            return Err(error);
        }
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .unwrap_or(Err(McpError::Timeout(CONNECT_TIMEOUT)));
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match opened {
            Ok(connection) => {
                *failed = None;
                let connection = Arc::new(connection);
                *slot = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                tracing::warn!(server = %self.name, %error, "cannot connect to an MCP server");
                *failed = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// Starts the transport, says hello, and lists the tools.
    async fn open(&self) -> Result<Connection, McpError> {
        let transport = Transport::open(&self.name, &self.config)?;
        let never = CancellationToken::new();
        let hello = json!({
            "protocolVersion": PROTOCOL_VERSIONS[0],
            "capabilities": {},
            "clientInfo": {"name": "victor", "version": env!("CARGO_PKG_VERSION")},
        });
        let answer = transport
            .request("initialize", hello, CONNECT_TIMEOUT, &never)
            .await?;
        let version = answer.get("protocolVersion").and_then(Value::as_str);
        if !version.is_some_and(|v| PROTOCOL_VERSIONS.contains(&v)) {
            return Err(McpError::Protocol(format!(
                "it speaks MCP {}, victor {}",
                version.unwrap_or("(none)"),
                PROTOCOL_VERSIONS.join(", ")
            )));
        }
        transport.negotiated(version);
        transport
            .notify("notifications/initialized", json!({}))
            .await?;
        let mut tools = Vec::new();
        let mut wire_names: HashMap<String, usize> = HashMap::new();
        let mut cursor: Option<Value> = None;
        loop {
            let params = match &cursor {
                Some(cursor) => json!({"cursor": cursor}),
                None => json!({}),
            };
            let page = transport
                .request("tools/list", params, CONNECT_TIMEOUT, &never)
                .await?;
            for listed in page
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(tool) = self.tool(listed, &mut wire_names) {
                    tools.push(tool);
                }
            }
            cursor = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
        }
        Ok(Connection { transport, tools })
    }

    /// One listed tool, as agents offer it.
    fn tool(&self, listed: &Value, wire_names: &mut HashMap<String, usize>) -> Option<McpTool> {
        let name = listed.get("name")?.as_str()?.to_string();
        let mut wire = wire_name(&self.name, &name);
        // Two names that map alike: the later gets a hash of its own.
        let seen = wire_names.entry(wire.clone()).or_insert(0);
        *seen += 1;
        if *seen > 1 {
            wire = mapped(&self.name, &name, true);
        }
        let description = listed
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parameters = listed
            .get("inputSchema")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        Some(McpTool {
            server: self.name.clone(),
            qualified: format!("{}.{name}", self.name),
            spec: ToolSpec {
                name: wire,
                description: format!("(MCP server {}) {description}", self.name),
                parameters,
            },
            read_only: listed.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true)),
            permission: self.config.approval.unwrap_or(Permission::Ask),
            name,
        })
    }
}

/// A `tools/call` result as text for the model: its text content, and a line for anything
/// else (an image, a resource); its structured content when there is no text.
fn content_text(result: &Value) -> String {
    let mut parts = Vec::new();
    for item in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let text = match kind {
            "text" => item
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            "resource" => match item.pointer("/resource/text").and_then(Value::as_str) {
                Some(text) => text.to_string(),
                None => format!(
                    "[resource {}]",
                    item.pointer("/resource/uri").unwrap_or(&Value::Null)
                ),
            },
            "resource_link" => format!("[resource {}]", item.get("uri").unwrap_or(&Value::Null)),
            other => format!(
                "[{other} {}, not shown]",
                item.get("mimeType").and_then(Value::as_str).unwrap_or("")
            ),
        };
        parts.push(text);
    }
    if parts.is_empty()
        && let Some(structured) = result.get("structuredContent")
    {
        return structured.to_string();
    }
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_event_stream_is_relayed_as_one() {
        for (value, streamed) in [
            ("text/event-stream", true),
            ("text/event-stream; charset=utf-8", true),
            ("application/json", false),
        ] {
            assert_eq!(
                is_event_stream(Some(&HeaderValue::from_static(value))),
                streamed,
                "{value}"
            );
        }
        assert!(!is_event_stream(None));
    }

    #[test]
    fn wire_names_are_what_providers_accept() {
        assert_eq!(wire_name("files", "read"), "files__read");
        assert_eq!(wire_name("gh", "issues.list/all"), "gh__issues_list_all");
        let long = wire_name("server", &"x".repeat(100));
        assert_eq!(long.len(), MAX_WIRE_NAME);
        assert_ne!(long, wire_name("server", &"x".repeat(101)));
        for name in [long, wire_name("a", "é ü")] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{name}"
            );
        }
    }

    #[test]
    fn server_names_and_tables_are_checked() {
        let stdio = McpServerConfig {
            command: Some("server".into()),
            ..McpServerConfig::default()
        };
        assert!(stdio.check("files").is_ok());
        for bad in ["", "a.b", "a__b", "a b"] {
            assert!(stdio.check(bad).is_err(), "{bad:?}");
        }
        let both = McpServerConfig {
            url: Some("http://127.0.0.1:1/mcp".into()),
            ..stdio.clone()
        };
        assert!(both.check("files").is_err());
        assert!(McpServerConfig::default().check("files").is_err());
    }

    #[test]
    fn results_read_as_text() {
        let result = json!({"content": [
            {"type": "text", "text": "one"},
            {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///a", "text": "two"}},
        ]});
        assert_eq!(
            content_text(&result),
            "one\n[image image/png, not shown]\ntwo"
        );
        let structured = json!({"content": [], "structuredContent": {"sum": 3}});
        assert_eq!(content_text(&structured), r#"{"sum":3}"#);
    }
}
