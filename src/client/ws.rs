//! The native WebSocket (`/api/v1/ws`) from the client side.

use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::ClientError;
use super::tls::{self, Trust};
use crate::proto::{Event, Fingerprint, WsReply, WsRequest};

/// A message from the server: an event, or the reply to a request.
#[derive(Debug, Clone)]
pub enum WsMessage {
    Event(Event),
    Reply(Box<WsReply>),
}

/// A TCP connection or the server's Unix socket.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

pub struct WsConnection {
    socket: WebSocketStream<MaybeTlsStream<Box<dyn Transport>>>,
}

impl WsConnection {
    /// Connects over the same way as the client's requests: the Unix socket when there is
    /// one, else TCP with the same TLS (with a pin, only the pinned certificate is accepted).
    pub(super) async fn connect(
        base: &str,
        api_key: Option<&str>,
        pin: Option<Fingerprint>,
        unix_socket: Option<&Path>,
    ) -> Result<WsConnection, ClientError> {
        let url = format!(
            "{}/api/v1/ws",
            base.replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|_| ClientError::BadUrl(base.to_string()))?;
        if let Some(key) = api_key {
            let value = format!("Bearer {key}")
                .parse()
                .map_err(|_| ClientError::Transport("the API key is not a valid header".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        // A small read buffer: the default 128 KiB is zero-filled on every read.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        // HTTP/1.1 alone: the upgrade to a WebSocket is an HTTP/1.1 request. The same trust as
        // the client's requests (and the system's roots read once for both, if at all).
        let connector = if url.starts_with("wss://") {
            Some(Connector::Rustls(Arc::new(tls::config(
                Trust::of(pin),
                &[b"http/1.1"],
            )?)))
        } else {
            None
        };
        let unreachable = |_| ClientError::Unreachable {
            url: base.to_string(),
        };
        let transport: Box<dyn Transport> = match unix_socket {
            Some(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unreachable)?,
            ),
            None => {
                let uri = request.uri();
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
                let port =
                    uri.port_u16()
                        .unwrap_or(if url.starts_with("wss://") { 443 } else { 80 });
                let stream = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(unreachable)?;
                // Small messages (requests, short events) go out at once.
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
        };
        let (socket, _) = tokio_tungstenite::client_async_tls_with_config(
            request,
            transport,
            Some(config),
            connector,
        )
        .await
        .map_err(|e| {
            if let Some(tls_error) = tls::tls_error(base, pin, &e) {
                return tls_error;
            }
            match e {
                tokio_tungstenite::tungstenite::Error::Io(_) => ClientError::Unreachable {
                    url: base.to_string(),
                },
                tokio_tungstenite::tungstenite::Error::Http(response) => ClientError::Api {
                    status: response.status().as_u16(),
                    code: "http".into(),
                    message: format!("the server refused the WebSocket: {}", response.status()),
                    state: None,
                },
                other => ClientError::Transport(other.to_string()),
            }
        })?;
        Ok(WsConnection { socket })
    }

    pub async fn send(&mut self, request: &WsRequest) -> Result<(), ClientError> {
        let text =
            serde_json::to_string(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// The next event or reply; `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Result<WsMessage, ClientError>> {
        loop {
            let message = match self.socket.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(ClientError::Transport(e.to_string()))),
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => return None,
                _ => continue,
            };
            let value: serde_json::Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(e) => return Some(Err(ClientError::Protocol(e.to_string()))),
            };
            let parsed = if value.get("type").and_then(|t| t.as_str()) == Some(WsReply::KIND) {
                serde_json::from_value(value).map(|reply| WsMessage::Reply(Box::new(reply)))
            } else {
                serde_json::from_value(value).map(WsMessage::Event)
            };
            return Some(parsed.map_err(|e| ClientError::Protocol(e.to_string())));
        }
    }
}
