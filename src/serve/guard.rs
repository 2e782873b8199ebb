//! Protection against web pages. A page on any site can make the browser send requests to
//! `http://127.0.0.1:8765`, and on loopback victor may need no key: without these checks, any
//! site a developer visits could start tasks on their machine.
//!
//! - A request that carries an `Origin` (browsers add it to cross-site requests and WebSocket
//!   handshakes) must come from victor's own origin.
//! - On a loopback bind the `Host` must name this machine (a loopback address, `localhost` or
//!   its hostname): a DNS name rebound to 127.0.0.1 does not get through.
//! - JSON bodies must say `Content-Type: application/json`, which a page cannot send across
//!   sites without a CORS preflight that victor does not grant.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use regex::Regex;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;

/// Web origins that may call victor from a browser besides its own: a list, a pattern, or
/// both. Empty by default, and then CORS is off.
#[derive(Clone, Debug, Default)]
pub struct AllowedOrigins {
    exact: Vec<String>,
    pattern: Option<Regex>,
}

impl AllowedOrigins {
    /// `pattern` must match the whole origin (`http://localhost:\d+`).
    pub fn new(exact: Vec<String>, pattern: Option<&str>) -> Result<AllowedOrigins, regex::Error> {
        let pattern = pattern
            .filter(|p| !p.is_empty())
            .map(|p| Regex::new(&format!("^(?:{p})$")))
            .transpose()?;
        let exact = exact
            .into_iter()
            .map(|origin| origin.trim().trim_end_matches('/').to_string())
            .filter(|origin| !origin.is_empty())
            .collect();
        Ok(AllowedOrigins { exact, pattern })
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.pattern.is_none()
    }

    fn allows(&self, origin: &str) -> bool {
        self.exact.iter().any(|allowed| allowed == origin)
            || self.pattern.as_ref().is_some_and(|p| p.is_match(origin))
    }
}

/// What the guard knows about the server it protects.
#[derive(Clone, Debug)]
pub struct BrowserGuard {
    /// Listening on loopback only: the `Host` header is checked.
    pub loopback: bool,
    /// This machine's hostname, accepted in `Host` besides loopback names.
    pub hostname: Option<String>,
    pub allowed: Arc<AllowedOrigins>,
}

impl BrowserGuard {
    pub fn new(loopback: bool, allowed: AllowedOrigins) -> BrowserGuard {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .map(|name| name.to_ascii_lowercase());
        BrowserGuard {
            loopback,
            hostname,
            allowed: Arc::new(allowed),
        }
    }

    /// The CORS layer for the allowed origins, or none when there are none.
    pub fn cors_layer(&self) -> Option<CorsLayer> {
        if self.allowed.is_empty() {
            return None;
        }
        let allowed = self.allowed.clone();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                    origin.to_str().is_ok_and(|origin| allowed.allows(origin))
                }))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    header::LOCATION,
                    HeaderName::from_static(crate::proto::START_POS_HEADER),
                ]),
        )
    }

    fn host_is_ours(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost"
            || name.ends_with(".localhost")
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.hostname.as_deref() == Some(name.as_str())
    }
}

/// `host[:port]` or `[v6]:port` without the port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.split(':').next().unwrap_or(host)
}

pub async fn guard_browser(
    State(guard): State<BrowserGuard>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .map(str::to_string);
    if guard.loopback
        && let Some(host) = &host
        && !guard.host_is_ours(host)
    {
        return forbidden(format!(
            "`Host: {host}` does not name this machine; victor on a loopback address answers only \
             to localhost, loopback addresses and its hostname"
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = host.as_deref().is_some_and(|host| {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
        if !own && !guard.allowed.allows(origin) {
            return forbidden(format!(
                "requests from web pages of another origin (`{origin}`) are refused"
            ));
        }
    }
    next.run(request).await
}

fn forbidden(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_origins_match_exactly_or_by_the_whole_pattern() {
        let allowed = AllowedOrigins::new(
            vec!["http://localhost:5173/".into()],
            Some(r"vscode-webview://[a-z0-9-]+"),
        )
        .unwrap();
        assert!(allowed.allows("http://localhost:5173"));
        assert!(allowed.allows("vscode-webview://abc-123"));
        assert!(!allowed.allows("http://localhost:5174"));
        assert!(!allowed.allows("https://evil.example/vscode-webview://abc"));
        assert!(AllowedOrigins::new(vec![], Some("(")).is_err());
    }

    #[test]
    fn loopback_names_and_the_hostname_are_ours() {
        let guard = BrowserGuard {
            loopback: true,
            hostname: Some("desk".into()),
            allowed: Default::default(),
        };
        for host in [
            "localhost:8765",
            "127.0.0.1:8765",
            "127.9.9.9",
            "[::1]:8765",
            "desk:8765",
            "app.localhost",
        ] {
            assert!(guard.host_is_ours(host), "{host}");
        }
        for host in [
            "evil.example:8765",
            "192.168.1.5:8765",
            "desk.evil.example",
            "[2001:db8::1]:80",
        ] {
            assert!(!guard.host_is_ours(host), "{host}");
        }
    }
}
