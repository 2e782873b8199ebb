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

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// What the guard knows about the server it protects.
#[derive(Clone, Debug)]
pub struct BrowserGuard {
    /// Listening on loopback only: the `Host` header is checked.
    pub loopback: bool,
    /// This machine's hostname, accepted in `Host` besides loopback names.
    pub hostname: Option<String>,
}

impl BrowserGuard {
    pub fn new(loopback: bool) -> BrowserGuard {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .map(|name| name.to_ascii_lowercase());
        BrowserGuard { loopback, hostname }
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
        if !own {
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
    fn loopback_names_and_the_hostname_are_ours() {
        let guard = BrowserGuard {
            loopback: true,
            hostname: Some("desk".into()),
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
