//! The two ways victor reaches an MCP server: a child process speaking newline-delimited
//! JSON-RPC on its stdin and stdout, or a Streamable HTTP endpoint. Both answer one request at
//! a time with [`Transport::request`], which never waits longer than it is told: a server that
//! hangs is a timeout, one that dies is [`McpError::Gone`], and either way the caller goes on.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio as Piped;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sse_stream::SseByteStream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{McpError, McpServerConfig, SESSION_HEADER, VERSION_HEADER, is_event_stream};

/// Longest line a stdio server may send (a tool's whole answer is one line).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// A connection to one MCP server.
pub(super) enum Transport {
    Stdio(Stdio),
    Http(Http),
}

impl Transport {
    /// Starts the server's process, or readies its URL; nothing is exchanged yet.
    pub(super) fn open(name: &str, config: &McpServerConfig) -> Result<Transport, McpError> {
        match (&config.command, &config.url) {
            (Some(command), None) => Stdio::spawn(name, command, config).map(Transport::Stdio),
            (None, Some(url)) => Http::new(name, url, &config.headers).map(Transport::Http),
            _ => Err(McpError::Config(format!(
                "mcp.{name} needs either a command or a url"
            ))),
        }
    }

    /// Sends a request and waits for its answer at most `timeout`, or until `cancel` fires;
    /// a request given up on is cancelled on the server (`notifications/cancelled`).
    pub(super) async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Value, McpError> {
        let id = self.next_id();
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answered = async {
            match self {
                Transport::Stdio(stdio) => stdio.request(id, &message).await,
                Transport::Http(http) => http.request(id, &message).await,
            }
        };
        let outcome = tokio::select! {
            answer = answered => return answer.and_then(result_of),
            () = tokio::time::sleep(timeout) => McpError::Timeout(timeout),
            () = cancel.cancelled() => McpError::Cancelled,
        };
        if let Transport::Stdio(stdio) = self {
            stdio.forget(id);
        }
        let reason = outcome.to_string();
        let cancelled = json!({"requestId": id, "reason": reason});
        // Best effort: the server may be the reason the call was given up on.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.notify("notifications/cancelled", cancelled),
        )
        .await;
        Err(outcome)
    }

    /// Sends a notification.
    pub(super) async fn notify(&self, method: &str, params: Value) -> Result<(), McpError> {
        let message = json!({"jsonrpc": "2.0", "method": method, "params": params});
        match self {
            Transport::Stdio(stdio) => stdio.write(&message).await,
            Transport::Http(http) => http.post(&message).await.map(drop),
        }
    }

    /// Ends the session on an HTTP server (`DELETE`); a stdio server ends with its process
    /// when the transport is dropped.
    pub(super) async fn close(&self) {
        let Transport::Http(http) = self else {
            return;
        };
        let session = lock(&http.session).take();
        if let Some(session) = session {
            let request = http
                .client
                .delete(&http.url)
                .headers(http.headers.clone())
                .header(SESSION_HEADER, session)
                .timeout(Duration::from_secs(5));
            // The server forgets idle sessions anyway; this only tells it sooner.
            let _ = request.send().await;
        }
    }

    /// Whether the server is known to be gone (its process exited, its session ended).
    pub(super) fn is_gone(&self) -> bool {
        match self {
            Transport::Stdio(stdio) => stdio.gone.is_cancelled(),
            Transport::Http(http) => http.gone.is_cancelled(),
        }
    }

    /// Keeps what `initialize` negotiated, for the requests after it.
    pub(super) fn negotiated(&self, version: Option<&str>) {
        if let Transport::Http(http) = self {
            *lock(&http.version) = version.map(str::to_string);
        }
    }

    fn next_id(&self) -> u64 {
        let counter = match self {
            Transport::Stdio(stdio) => &stdio.next_id,
            Transport::Http(http) => &http.next_id,
        };
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The result of a JSON-RPC answer, or its error.
fn result_of(answer: Value) -> Result<Value, McpError> {
    if let Some(error) = answer.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_string();
        return Err(McpError::Remote(message));
    }
    match answer.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(McpError::Protocol(
            "an answer with neither result nor error".into(),
        )),
    }
}

/// Where the answers of a stdio server's requests go, by request id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// An MCP server run as a child process, in a process group of its own, killed with it when
/// the connection is dropped.
pub(super) struct Stdio {
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    waiting: Waiting,
    next_id: AtomicU64,
    /// Fired when its stdout closes: it exited (or will not talk any more).
    gone: CancellationToken,
    child: Child,
}

impl Stdio {
    fn spawn(name: &str, command: &str, config: &McpServerConfig) -> Result<Stdio, McpError> {
        let mut child = Command::new(command)
            .args(&config.args)
            .envs(&config.env)
            .stdin(Piped::piped())
            .stdout(Piped::piped())
            .stderr(Piped::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| McpError::Start(format!("cannot run {command}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(McpError::Start(format!("{command} has no pipes")));
        };
        let stdio = Stdio {
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            waiting: Waiting::default(),
            next_id: AtomicU64::new(0),
            gone: CancellationToken::new(),
            child,
        };
        let server = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(server = %server, "{line}");
            }
        });
        tokio::spawn(read_answers(
            name.to_string(),
            BufReader::new(stdout),
            stdio.stdin.clone(),
            stdio.waiting.clone(),
            stdio.gone.clone(),
        ));
        Ok(stdio)
    }

    async fn write(&self, message: &Value) -> Result<(), McpError> {
        let mut line = message.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        written.await.map_err(|_| McpError::Gone)
    }

    async fn request(&self, id: u64, message: &Value) -> Result<Value, McpError> {
        let (sender, answer) = oneshot::channel();
        lock(&self.waiting).insert(id, sender);
        if self.gone.is_cancelled() {
            self.forget(id);
            return Err(McpError::Gone);
        }
        if let Err(error) = self.write(message).await {
            self.forget(id);
            return Err(error);
        }
        // Dropped unanswered: the server's output ended.
        answer.await.map_err(|_| McpError::Gone)
    }

    fn forget(&self, id: u64) {
        lock(&self.waiting).remove(&id);
    }
}

impl Drop for Stdio {
    /// The server's whole group goes with it (a launcher such as `npx` leaves the server
    /// itself as a grandchild).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Reads a stdio server's messages: answers go to their requests, its own requests get an
/// answer (`ping`, or "not supported"), notifications are dropped. When its output ends,
/// every request still waiting fails.
async fn read_answers(
    server: String,
    mut stdout: BufReader<tokio::process::ChildStdout>,
    stdin: Arc<tokio::sync::Mutex<ChildStdin>>,
    waiting: Waiting,
    gone: CancellationToken,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut stdout)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) if line.len() > MAX_LINE => {
                tracing::warn!(server = %server, "an MCP server sent a line over {MAX_LINE} bytes");
                break;
            }
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            tracing::debug!(server = %server, "not JSON-RPC: {}", String::from_utf8_lossy(&line));
            continue;
        };
        if let Some(method) = message.get("method").and_then(Value::as_str) {
            if let Some(id) = message.get("id") {
                let answer = server_request_answer(id, method);
                let mut line = answer.to_string();
                line.push('\n');
                let _ = stdin.lock().await.write_all(line.as_bytes()).await;
            }
            continue;
        }
        let id = message.get("id").and_then(Value::as_u64);
        if let Some(sender) = id.and_then(|id| lock(&waiting).remove(&id)) {
            let _ = sender.send(message);
        }
    }
    gone.cancel();
    lock(&waiting).clear();
}

/// What victor answers a request of the server's: it offers no sampling, roots or
/// elicitation, only `ping`.
fn server_request_answer(id: &Value, method: &str) -> Value {
    if method == "ping" {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": -32601, "message": format!("victor does not offer {method}")}})
    }
}

/// An MCP server at a Streamable HTTP endpoint.
pub(super) struct Http {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    next_id: AtomicU64,
    /// Fired when the server forgot the session (404): a new connection opens a new one.
    gone: CancellationToken,
}

impl Http {
    fn new(name: &str, url: &str, headers: &BTreeMap<String, String>) -> Result<Http, McpError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| McpError::Config(format!("mcp.{name}.url {url}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(McpError::Config(format!(
                "mcp.{name}.url must be http:// or https://"
            )));
        }
        let mut map = HeaderMap::new();
        for (key, value) in headers {
            let header = HeaderName::try_from(key.as_str())
                .map_err(|e| McpError::Config(format!("mcp.{name}.headers {key}: {e}")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| McpError::Config(format!("mcp.{name}.headers {key}: {e}")))?;
            map.insert(header, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| McpError::Start(e.to_string()))?;
        Ok(Http {
            client,
            url: url.to_string(),
            headers: map,
            session: Mutex::default(),
            version: Mutex::default(),
            next_id: AtomicU64::new(0),
            gone: CancellationToken::new(),
        })
    }

    /// POSTs one message; a refusal is an error that says what the server said.
    async fn post(&self, message: &Value) -> Result<reqwest::Response, McpError> {
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(message.to_string());
        let session = lock(&self.session).clone();
        if let Some(session) = &session {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(version) = lock(&self.version).clone() {
            request = request.header(VERSION_HEADER, version);
        }
        let response = request
            .send()
            .await
            .map_err(|e| McpError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && session.is_some() {
            self.gone.cancel();
            return Err(McpError::Gone);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.trim().chars().take(500).collect();
            return Err(McpError::Refused(format!("{status}: {body}")));
        }
        if let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            *lock(&self.session) = Some(id.to_string());
        }
        Ok(response)
    }

    async fn request(&self, id: u64, message: &Value) -> Result<Value, McpError> {
        let response = self.post(message).await?;
        if !is_event_stream(response.headers().get(CONTENT_TYPE)) {
            return response
                .json::<Value>()
                .await
                .map_err(|e| McpError::Protocol(format!("an answer that is not JSON: {e}")));
        }
        let mut events = SseByteStream::new(response.bytes_stream());
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            let Some(data) = event.data else { continue };
            let Ok(message) = serde_json::from_str::<Value>(&data) else {
                continue;
            };
            if message.get("method").is_none()
                && message.get("id").and_then(Value::as_u64) == Some(id)
            {
                return Ok(message);
            }
        }
        Err(McpError::Protocol(
            "the server's stream ended before its answer".into(),
        ))
    }
}
