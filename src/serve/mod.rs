//! `victor serve`: the HTTP server. Routes, auth and limits live here; tasks run in the engine
//! and streams come from the bus. Each transport is a thin adapter over those two.

mod error;
mod guard;
mod stream;
mod tasks;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::bus::{Bus, Hub};
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::store::{SharedStore, SqliteStore, StoreError};

pub use error::ApiError;
pub use guard::AllowedOrigins;
pub use tls::{ServerTls, TlsCertificate, TlsError, TlsListener};

/// Everything `victor serve` needs, resolved from defaults, config file, environment and flags.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub api_key: Option<String>,
    pub engine: EngineConfig,
    /// Interval of the heartbeat event on every open stream.
    pub heartbeat: Duration,
    /// Web origins besides victor's own that may call it from a browser (CORS).
    pub allowed_origins: AllowedOrigins,
    pub max_body_bytes: usize,
    /// Serve HTTPS and WSS on TCP (the Unix socket stays plain: it is local).
    pub tls: Option<TlsCertificate>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {host} without an API key: anyone on the network could run \
         commands on this machine. Set one with --api-key, VICTOR_API_KEY or `api_key` in \
         config.toml, or listen on 127.0.0.1"
    )]
    NoKeyOnNetwork { host: String },
    #[error("cannot listen on {addr}: {reason}{}", bind_hint(reason))]
    Bind {
        addr: String,
        reason: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (is another victor already running? pick another port with --port)"
        }
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    api_key: Option<Arc<str>>,
    heartbeat: Duration,
    /// Cancelled when the server starts shutting down: open streams say so and end.
    closing: CancellationToken,
    /// Open SSE and WebSocket streams.
    clients: Arc<AtomicU64>,
}

/// Runs the server until `stop` completes, then shuts down in order: stop accepting, tell open
/// streams (`server.shutdown`), stop running tasks within the grace period (they become
/// `interrupted`), close the store.
pub async fn run(
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let bind_error = |reason| ServeError::Bind {
        addr: format!("{}:{}", config.host, config.port),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(bind_error)?
        .collect();
    // Checked before binding: not even a moment listening on the network without a key.
    if config.api_key.is_none() && addrs.iter().any(|addr| !addr.ip().is_loopback()) {
        return Err(ServeError::NoKeyOnNetwork {
            host: config.host.clone(),
        });
    }
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr()?;

    let hub = Hub::new();
    let store: SharedStore = Arc::new(SqliteStore::open(&config.data_dir, hub.clone())?);
    // After the store took the data dir's lock: one server at a time makes the certificate.
    let tls = config
        .tls
        .as_ref()
        .map(|certificate| ServerTls::load(certificate, &config.data_dir))
        .transpose()?;
    let bus = Bus::new(hub, store.clone());
    let engine = Engine::start(store.clone(), bus, config.engine.clone()).await?;
    let closing = CancellationToken::new();
    let state = AppState {
        engine: engine.clone(),
        api_key: config.api_key.as_deref().map(Arc::from),
        heartbeat: config.heartbeat,
        closing: closing.clone(),
        clients: Arc::new(AtomicU64::new(0)),
    };

    // Bound before the "listening" line, so that both ways in work once it is printed.
    let socket_path = socket_path(&config.data_dir, local.port());
    // Without it (a path too long for a socket, say) the TCP side still serves.
    let unix_listener = bind_socket(&socket_path)
        .inspect_err(|e| tracing::warn!(error = %e, "no Unix socket; serving TCP only"))
        .ok();
    let fingerprint = tls.as_ref().map(ServerTls::fingerprint);
    tracing::info!(
        address = %url_of(local, tls.is_some()),
        data_dir = %config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        socket = %socket_path.display(),
        fingerprint = fingerprint.map(tracing::field::display),
        "victor {} listening on {} and {} (data in {}){}",
        env!("CARGO_PKG_VERSION"),
        url_of(local, tls.is_some()),
        socket_path.display(),
        config.data_dir.display(),
        fingerprint
            .map(|f| format!("; TLS certificate {f}"))
            .unwrap_or_default(),
    );

    let loopback = addrs.iter().all(|addr| addr.ip().is_loopback());
    let guard = guard::BrowserGuard::new(loopback, config.allowed_origins.clone());
    // The same API on a Unix socket beside the database, for clients on this machine: its
    // file mode (0600) is the authentication, so it asks for no key.
    let local_only = AppState {
        api_key: None,
        ..state.clone()
    };
    let unix_app = router(local_only, config.max_body_bytes, guard.clone());
    let closing_unix = closing.clone();
    let mut unix_http = tokio::spawn(async move {
        match unix_listener {
            Some(listener) => {
                axum::serve(listener, unix_app)
                    .with_graceful_shutdown(closing_unix.cancelled_owned())
                    .await
            }
            None => Ok(()),
        }
    });
    let app = router(state, config.max_body_bytes, guard);
    let mut http = match &tls {
        Some(tls) => tokio::spawn(
            axum::serve(TlsListener::new(listener, tls), app)
                .with_graceful_shutdown(closing.clone().cancelled_owned())
                .into_future(),
        ),
        None => tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(closing.clone().cancelled_owned())
                .into_future(),
        ),
    };
    tokio::select! {
        _ = stop => {}
        served = &mut http => {
            // The listener failed on its own: still stop the tasks and close the store.
            tracing::error!(outcome = ?served, "the HTTP server stopped unexpectedly");
        }
    }
    tracing::info!("shutting down: closing streams, stopping tasks");
    closing.cancel();
    // Tasks stop while connections drain; a client that stopped reading is not waited for
    // beyond the grace period.
    engine.shutdown().await;
    for server in [&mut http, &mut unix_http] {
        if tokio::time::timeout(SHUTDOWN_DRAIN, &mut *server)
            .await
            .is_err()
        {
            tracing::warn!("closing connections that did not finish in time");
            server.abort();
        }
    }
    let _ = std::fs::remove_file(&socket_path);
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The Unix socket of the server listening on `port` with this data dir. The port is in the
/// name so that a client finds the socket of the very server its URL names.
pub fn socket_path(data_dir: &Path, port: u16) -> PathBuf {
    data_dir.join(format!("victor-{port}.sock"))
}

/// Binds the socket, readable and writable by this user only. A file left by a crash is
/// removed first: the data dir's lock says no other server uses it.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let bind_error = |reason| ServeError::Bind {
        addr: path.display().to_string(),
        reason,
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind_error(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// How long open connections get to finish after the tasks have stopped.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// The URL a client uses to reach a listening address, `https` when it serves TLS.
pub fn url_of(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match addr.ip() {
        IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{scheme}://{ip}:{}", addr.port()),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "victor",
        description = "Native API of victor: background tasks, their durable ordered event logs, \
                       and live streams over Server-Sent Events and WebSocket. Every route but \
                       /health needs the API key when the server has one."
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::proto::WsRequest, crate::proto::WsReply)),
    security(("bearer" = []), ("api_key" = [])),
    tags((name = "tasks", description = "Create, inspect and steer tasks"),
         (name = "events", description = "Event logs and live streams"),
         (name = "server", description = "Health and status"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("api_key"))),
        );
    }
}

/// The native API with its OpenAPI document.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tasks::health))
        .routes(routes!(tasks::status))
        .routes(routes!(tasks::create_task, tasks::list_tasks))
        .routes(routes!(tasks::get_task, tasks::delete_task))
        .routes(routes!(tasks::cancel_task))
        .routes(routes!(tasks::pause_task))
        .routes(routes!(tasks::resume_task))
        .routes(routes!(tasks::input_task))
        .routes(routes!(stream::task_events))
        .routes(routes!(stream::all_events))
        .routes(routes!(stream::websocket))
}

/// The OpenAPI document of the native API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

fn router(state: AppState, max_body_bytes: usize, guard: guard::BrowserGuard) -> Router {
    let (api, openapi) = api().split_for_parts();
    let router = api
        .route("/health", axum::routing::get(tasks::health))
        .fallback(|| async {
            ApiError::not_found("no such route; the API is under /api/v1, its description at /docs")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi));
    // CORS answers the allowed origins' preflights; it is off unless origins are configured.
    let router = match guard.cors_layer() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(middleware::from_fn_with_state(guard, guard::guard_browser))
        .with_state(state)
}

/// Paths anyone may read: liveness, and the API's own description.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/api/v1/health")
}

/// Checks the API key, when the server has one, in constant time. The key comes as
/// `Authorization: Bearer <key>` or `?api_key=<key>` (for WebSockets and EventSource, which
/// cannot set headers); it is checked before any WebSocket upgrade.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.api_key else {
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string);
    let from_query = || {
        request.uri().query().and_then(|query| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find(|(name, _)| name == "api_key")
                .map(|(_, value)| value)
        })
    };
    let offered = from_header.or_else(from_query).unwrap_or_default();
    if bool::from(offered.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}
