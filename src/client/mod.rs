//! A typed client for the native API: REST calls, event streams that reconnect and resume by
//! themselves, and the WebSocket.

mod follow;
mod mcp;
mod sessions;
mod tls;
mod ws;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::proto::{
    Approval, ApprovalAnswer, Checkpoint, Conversation, ConversationPage, ConversationSummary,
    CreateConversation, CreateKey, CreateTask, CreatedKey, ErrorBody, Event, Fingerprint, Guidance,
    Health, Input, KeyInfo, ModelList, PostMessage, ProviderInfo, RENDER_BACKEND_HEADER,
    RENDER_CACHE_HEADER, RenderRequest, Rollback, RolledBack, Scope, SessionRequest, SessionToken,
    Status, Task, TaskPage, TaskState,
};

pub use follow::{Follow, Topic};
pub use mcp::McpLink;
pub use tls::presented_fingerprint;
pub use ws::{WsConnection, WsMessage};

/// An SVG the server rendered.
#[derive(Debug, Clone)]
pub struct RenderedSvg {
    pub svg: String,
    /// `external` or `builtin`, as the server said.
    pub backend: Option<String>,
    /// The server answered from its cache.
    pub cached: bool,
    pub etag: Option<String>,
}

/// The default server address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8765";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the victor server at {url} — start one with `victor serve`")]
    Unreachable { url: String },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        state: Option<TaskState>,
    },
    #[error(
        "lost the connection to the victor server at {url} and could not reconnect for {secs}s"
    )]
    Lost { url: String, secs: u64 },
    #[error("`{0}` is not a server URL (expected e.g. http://127.0.0.1:8765)")]
    BadUrl(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server's certificate is not the pinned one. Nothing was sent to it: the connection
    /// stopped at the certificate, before any request (or key) went out.
    #[error(
        "the victor server at {url} presented a different TLS certificate than the one trusted \
         for it. Either its certificate changed, or someone is intercepting the connection; \
         nothing was sent to it.\n  \
         trusted:   {expected}\n  \
         presented: {presented}\n\
         If the server's owner confirms the new fingerprint (`victor serve --tls` prints it), \
         trust it with:\n  \
         victor remote add NAME {url} --fingerprint {presented}"
    )]
    FingerprintMismatch {
        url: String,
        expected: Fingerprint,
        presented: Fingerprint,
    },
    /// The TLS handshake failed for another reason, such as a certificate nobody vouches for.
    #[error("TLS with the victor server at {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The server's answer says the request cannot succeed however often it is retried.
    pub fn is_final(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => *status < 500 && *status != 429,
            ClientError::FingerprintMismatch { .. } | ClientError::Tls { .. } => true,
            _ => false,
        }
    }
}

/// A connection to one victor server.
#[derive(Clone)]
pub struct Client {
    /// The server's URL as given, for messages.
    base: String,
    /// Where requests go: `base`, or `base` as plain `http` when they go through the Unix
    /// socket, which serves no TLS.
    endpoint: String,
    api_key: Option<String>,
    /// The only certificate an `https` server may present, when it is pinned.
    pin: Option<Fingerprint>,
    /// The server's Unix socket, used instead of TCP when it is on this machine.
    socket: Option<PathBuf>,
    http: reqwest::Client,
}

impl Client {
    /// A client that trusts the certificates the system trusts (for an `https` server).
    pub fn new(server: &str, api_key: Option<String>) -> Result<Client, ClientError> {
        Client::connect(server, api_key, None, None)
    }

    /// A client of an `https` server that trusts exactly the certificate with this
    /// fingerprint, whatever names it carries and whoever signed it: the way to reach a
    /// self-signed `victor serve --tls`. Any other certificate is refused with
    /// [`ClientError::FingerprintMismatch`].
    pub fn pinned(
        server: &str,
        api_key: Option<String>,
        fingerprint: Fingerprint,
    ) -> Result<Client, ClientError> {
        Client::connect(server, api_key, None, Some(fingerprint))
    }

    /// A client that reaches the server `server` names (a loopback URL, `http` or `https`)
    /// through its Unix socket when it has one: the socket the server announced for its
    /// address (a server without keys does, whatever its data dir), else the one in `data_dir`.
    /// No key is needed there, and no TLS either, since the socket never leaves the machine.
    pub fn local(
        server: &str,
        api_key: Option<String>,
        data_dir: &Path,
    ) -> Result<Client, ClientError> {
        let socket = reqwest::Url::parse(server)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .and_then(|url| {
                let port = url.port_or_known_default()?;
                let loopback = loopback_addresses(&url);
                if loopback.is_empty() {
                    return None;
                }
                loopback
                    .into_iter()
                    .find_map(|ip| crate::serve::announced_socket(SocketAddr::new(ip, port)))
                    .or_else(|| {
                        Some(crate::serve::socket_path(data_dir, port)).filter(|path| path.exists())
                    })
            });
        Client::connect(server, api_key, socket, None)
    }

    fn connect(
        server: &str,
        api_key: Option<String>,
        socket: Option<PathBuf>,
        pin: Option<Fingerprint>,
    ) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|_| ClientError::BadUrl(server.into()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ClientError::BadUrl(server.into()));
        }
        // A pin on plain HTTP would protect nothing while looking as if it did.
        if pin.is_some() && parsed.scheme() != "https" {
            return Err(ClientError::Tls {
                url: base,
                reason: "a pinned certificate fingerprint needs an https:// URL".into(),
            });
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls::config(tls::Trust::of(pin), &[b"h2", b"http/1.1"])?);
        if let Some(socket) = &socket {
            builder = builder.unix_socket(socket.clone());
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let endpoint = match &socket {
            Some(_) if parsed.scheme() == "https" => {
                let mut plain = parsed.clone();
                plain
                    .set_scheme("http")
                    .map_err(|()| ClientError::BadUrl(server.into()))?;
                plain.as_str().trim_end_matches('/').to_string()
            }
            _ => base.clone(),
        };
        Ok(Client {
            base,
            endpoint,
            api_key: api_key.filter(|k| !k.is_empty()),
            pin,
            socket,
            http,
        })
    }

    /// The server's base URL, as given.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// The server runs on this machine (its Unix socket, or a loopback URL): paths here are
    /// paths there.
    pub fn is_on_this_machine(&self) -> bool {
        self.socket.is_some() || reqwest::Url::parse(&self.base).is_ok_and(|url| is_loopback(&url))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.endpoint, path));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        request
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                message: error.message,
                state: error.state,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: "http".into(),
                message: format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
                state: None,
            },
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> ClientError {
        if let Some(tls_error) = tls::tls_error(&self.base, self.pin, &error) {
            tls_error
        } else if error.is_connect() {
            ClientError::Unreachable {
                url: self.base.clone(),
            }
        } else {
            ClientError::Transport(format!("request to {} failed: {error}", self.base))
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/health")).await
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/status")).await
    }

    /// Creates a task; with `idempotency_key`, a retry returns the task the first call made.
    pub async fn create_task(
        &self,
        request: &CreateTask,
        idempotency_key: Option<&str>,
    ) -> Result<Task, ClientError> {
        let mut http = self.request(Method::POST, "/api/v1/tasks").json(request);
        if let Some(key) = idempotency_key {
            http = http.header("Idempotency-Key", key);
        }
        self.json(http).await
    }

    pub async fn list_tasks(
        &self,
        states: &[TaskState],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<TaskPage, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if !states.is_empty() {
            let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            query.push(("state", states.join(",")));
        }
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.json(self.request(Method::GET, "/api/v1/tasks").query(&query))
            .await
    }

    pub async fn get_task(&self, id: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::GET, &task_path(id, "")))
            .await
    }

    pub async fn cancel(&self, id: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, &task_path(id, "/cancel")))
            .await
    }

    pub async fn pause(&self, id: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, &task_path(id, "/pause")))
            .await
    }

    pub async fn resume(&self, id: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, &task_path(id, "/resume")))
            .await
    }

    pub async fn input(&self, id: &str, input: &Input) -> Result<Task, ClientError> {
        self.json(
            self.request(Method::POST, &task_path(id, "/input"))
                .json(input),
        )
        .await
    }

    pub async fn delete_task(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &task_path(id, "")))
            .await
            .map(drop)
    }

    /// Stored events of a task after `after`, at most `limit` of them.
    pub async fn events(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, ClientError> {
        let query = [
            ("follow", "false".to_string()),
            ("after", after.to_string()),
            ("limit", limit.to_string()),
        ];
        self.json(
            self.request(Method::GET, &task_path(id, "/events"))
                .query(&query),
        )
        .await
    }

    /// Follows a stream live from `after`, reconnecting and resuming by itself.
    pub fn follow(&self, topic: Topic, after: Option<u64>) -> Follow {
        Follow::new(self.clone(), topic, after)
    }

    /// Creates a key with `scope` (needs an admin key); the answer holds the plain key.
    pub async fn create_key(
        &self,
        scope: Scope,
        name: Option<String>,
    ) -> Result<CreatedKey, ClientError> {
        let body = CreateKey { scope, name };
        self.json(self.request(Method::POST, "/api/v1/keys").json(&body))
            .await
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/keys")).await
    }

    /// Revokes a key by id or name; its sessions end with it.
    pub async fn revoke_key(&self, id_or_name: &str) -> Result<KeyInfo, ClientError> {
        let path = format!("/api/v1/keys/{}", url_escape(id_or_name));
        self.json(self.request(Method::DELETE, &path)).await
    }

    /// A session token standing in for this client's key (for `session_id`, or a new session).
    pub async fn session_token(
        &self,
        session_id: Option<String>,
    ) -> Result<SessionToken, ClientError> {
        let body = SessionRequest { session_id };
        self.json(self.request(Method::POST, "/session/token").json(&body))
            .await
    }

    /// Renders a diagram on the server to SVG.
    pub async fn render(&self, request: &RenderRequest) -> Result<RenderedSvg, ClientError> {
        let response = self
            .send(self.request(Method::POST, "/api/v1/render").json(request))
            .await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let backend = header(RENDER_BACKEND_HEADER);
        let cached = header(RENDER_CACHE_HEADER).as_deref() == Some("hit");
        let etag = header("etag");
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        let svg = String::from_utf8(bytes.to_vec())
            .map_err(|_| ClientError::Protocol("the SVG is not UTF-8 text".into()))?;
        Ok(RenderedSvg {
            svg,
            backend,
            cached,
            etag,
        })
    }

    /// Tells a running agent something before its next model call.
    pub async fn guide(&self, id: &str, text: &str) -> Result<Task, ClientError> {
        let body = Guidance {
            text: text.to_string(),
        };
        self.json(
            self.request(Method::POST, &task_path(id, "/guidance"))
                .json(&body),
        )
        .await
    }

    /// Approvals: pending ones unless `status` says (`all` for every one), of one task or all.
    pub async fn approvals(
        &self,
        task: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<Approval>, ClientError> {
        let mut query = Vec::new();
        if let Some(task) = task {
            query.push(("task", task));
        }
        if let Some(status) = status {
            query.push(("status", status));
        }
        self.json(self.request(Method::GET, "/api/v1/approvals").query(&query))
            .await
    }

    pub async fn answer_approval(
        &self,
        id: &str,
        answer: &ApprovalAnswer,
    ) -> Result<Approval, ClientError> {
        let path = format!("/api/v1/approvals/{}", url_escape(id));
        self.json(self.request(Method::POST, &path).json(answer))
            .await
    }

    pub async fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, ClientError> {
        self.json(self.request(Method::GET, &task_path(id, "/checkpoints")))
            .await
    }

    /// Puts an agent's workspace back as it was before `checkpoint`'s change.
    pub async fn rollback(&self, id: &str, checkpoint: u32) -> Result<RolledBack, ClientError> {
        self.json(
            self.request(Method::POST, &task_path(id, "/rollback"))
                .json(&Rollback { checkpoint }),
        )
        .await
    }

    /// The server's LLM providers.
    pub async fn providers(&self) -> Result<Vec<ProviderInfo>, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/providers"))
            .await
    }

    /// The models the server's providers offer.
    pub async fn models(&self) -> Result<ModelList, ClientError> {
        self.json(self.request(Method::GET, "/api/v1/models")).await
    }

    pub async fn create_conversation(
        &self,
        request: &CreateConversation,
    ) -> Result<ConversationSummary, ClientError> {
        self.json(
            self.request(Method::POST, "/api/v1/conversations")
                .json(request),
        )
        .await
    }

    /// Conversations, most recently updated first.
    pub async fn list_conversations(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ConversationPage, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.json(
            self.request(Method::GET, "/api/v1/conversations")
                .query(&query),
        )
        .await
    }

    pub async fn get_conversation(&self, id: &str) -> Result<Conversation, ClientError> {
        self.json(self.request(Method::GET, &conversation_path(id, "")))
            .await
    }

    pub async fn delete_conversation(&self, id: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &conversation_path(id, "")))
            .await
            .map(drop)
    }

    /// Posts a message; the answer is the task of the turn that replies (follow its events).
    pub async fn post_message(
        &self,
        conversation_id: &str,
        message: &PostMessage,
    ) -> Result<Task, ClientError> {
        self.json(
            self.request(
                Method::POST,
                &conversation_path(conversation_id, "/messages"),
            )
            .json(message),
        )
        .await
    }

    /// Cancels the turn replying in a conversation.
    pub async fn cancel_turn(&self, conversation_id: &str) -> Result<Task, ClientError> {
        self.json(self.request(Method::POST, &conversation_path(conversation_id, "/cancel")))
            .await
    }

    /// A conversation exported as `json` or `markdown`.
    pub async fn export_conversation(
        &self,
        conversation_id: &str,
        format: &str,
    ) -> Result<String, ClientError> {
        let response = self
            .send(
                self.request(Method::GET, &conversation_path(conversation_id, "/export"))
                    .query(&[("format", format)]),
            )
            .await?;
        response.text().await.map_err(|e| self.transport_error(e))
    }

    /// Opens the WebSocket.
    pub async fn websocket(&self) -> Result<WsConnection, ClientError> {
        WsConnection::connect(
            &self.endpoint,
            self.api_key.as_deref(),
            self.pin,
            self.socket.as_deref(),
        )
        .await
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    !loopback_addresses(url).is_empty()
}

/// The loopback addresses a URL's host stands for: `localhost` both, a loopback address
/// itself, any other host none.
fn loopback_addresses(url: &reqwest::Url) -> Vec<IpAddr> {
    let host = url.host_str().unwrap_or_default();
    if host.eq_ignore_ascii_case("localhost") {
        return vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .into_iter()
        .filter(IpAddr::is_loopback)
        .collect()
}

fn conversation_path(id: &str, suffix: &str) -> String {
    format!("/api/v1/conversations/{}{suffix}", url_escape(id))
}

fn task_path(id: &str, suffix: &str) -> String {
    let id: String = url_escape(id);
    format!("/api/v1/tasks/{id}{suffix}")
}

/// Percent-encodes everything but unreserved characters, for a path segment.
fn url_escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether a status means "try again later" rather than "this will never work".
fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_url_is_this_machine_and_a_network_one_is_not() {
        for here in [
            "http://127.0.0.1:8765",
            "https://localhost:8765",
            "http://[::1]:8765",
        ] {
            assert!(
                Client::new(here, None).unwrap().is_on_this_machine(),
                "{here}"
            );
        }
        for elsewhere in ["http://192.168.1.20:8765", "https://lab.example:8765"] {
            assert!(
                !Client::new(elsewhere, None).unwrap().is_on_this_machine(),
                "{elsewhere}"
            );
        }
    }
}
