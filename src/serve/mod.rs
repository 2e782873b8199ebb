//! `victor serve`: the HTTP server. Routes, auth and limits live here; tasks run in the engine
//! and streams come from the bus. Each transport is a thin adapter over those two.

mod agents;
mod announce;
mod auth;
mod chat;
mod connections;
mod error;
mod guard;
mod limits;
mod mcp;
mod mcp_tools;
mod openai;
mod openapi;
mod render;
mod seed000;
mod seed000_agents;
mod seed000_mcp;
mod seed001;
mod seed003;
mod seed004;
mod seed_events;
mod sessions;
mod socket;
mod socket_native;
mod socket_seed000;
mod socket_seed000_events;
mod socket_seed000_text;
mod socket_seed001;
mod socket_seed003;
mod stream;
mod tasks;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Extension, Router};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::bus::{Bus, Hub};
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::llm::{ProviderConfig, ProviderConfigError, ProviderSettings, Providers};
use crate::proto::Scope;
use crate::render::{RenderConfig, Renderer, Tools};
use crate::store::{self, Advert, Node, StoreError};

pub use announce::announced_socket;
pub use auth::SessionPolicy;
pub use error::ApiError;
pub use guard::AllowedOrigins;
pub use limits::RateLimit;

use auth::{Access, Caller, Needs};
use connections::{ConnectionLimits, Connections, Peer, Refusal};
use limits::{BodyLimits, RateLimits};
pub use tls::{ServerTls, TlsCertificate, TlsError};

/// Everything `victor serve` needs, resolved from defaults, config file, environment and flags.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// The `store` setting: where tasks and their logs live (`sqlite://PATH`); none: SQLite
    /// in the data dir.
    pub store: Option<String>,
    pub api_key: Option<String>,
    pub engine: EngineConfig,
    /// Interval of the heartbeat event on every open stream.
    pub heartbeat: Duration,
    /// Web origins besides victor's own that may call it from a browser (CORS).
    pub allowed_origins: AllowedOrigins,
    pub max_body_bytes: usize,
    /// The longest a request body may stop arriving before the request gets 408.
    pub body_timeout: Duration,
    /// Time to send a whole request head, from when the connection opens or its previous
    /// response ends (so also how long a kept-alive connection may sit idle).
    pub header_timeout: Duration,
    /// Connections from one client address that have not yet completed an authenticated
    /// request (at most half of `max_connections`).
    pub max_pending_per_address: usize,
    /// Largest WebSocket message a client may send.
    pub max_ws_message_bytes: usize,
    /// Open connections before new ones get a 503, counted on TCP and on the Unix socket
    /// each (the network cannot fill the owner's slots).
    pub max_connections: usize,
    pub rate_limit: RateLimit,
    pub sessions: SessionPolicy,
    /// Where the admin key generated for a network bind without one is kept (mode 0600).
    pub admin_key_file: PathBuf,
    /// Serve HTTPS and WSS on TCP (the Unix socket stays plain: it is local).
    pub tls: Option<TlsCertificate>,
    /// Diagram rendering: limits, safe mode, cache.
    pub render: RenderConfig,
    /// LLM providers by name (none: Ollama on this machine).
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
    /// The provider chats use when they name none (the first by name when not set).
    pub default_provider: Option<String>,
    pub provider_settings: ProviderSettings,
    /// Where a task started through seed 001's `POST /tasks` gets a directory of its own
    /// (agents may work there: it joins the workspace roots).
    pub task_workspaces: PathBuf,
}

/// What a started server tells whoever started it, to print for people.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The URL on the address it is bound to.
    pub url: String,
    /// URLs on this machine's network addresses, for a bind on all of them.
    pub network_urls: Vec<String>,
    pub socket: Option<PathBuf>,
    /// The admin key, when it was generated just now: the only time it is shown.
    pub new_admin_key: Option<String>,
    /// The file holding the generated admin key, when the server uses one.
    pub admin_key_file: Option<PathBuf>,
    /// The TLS certificate's fingerprint, when serving HTTPS.
    pub fingerprint: Option<crate::proto::Fingerprint>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {reason}{}", bind_hint(reason))]
    Bind {
        addr: String,
        reason: std::io::Error,
    },
    #[error(
        "cannot read or create the admin key file {path}: {reason} (it holds the key on one \
         line; delete it to make a new one, or set --api-key)"
    )]
    AdminKey {
        path: String,
        reason: std::io::Error,
    },
    #[error(
        "cannot make the task workspaces directory {path}: {reason} (set another with \
         --task-workspaces)"
    )]
    TaskWorkspaces {
        path: String,
        reason: std::io::Error,
    },
    #[error(transparent)]
    Access(#[from] auth::AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Providers(#[from] ProviderConfigError),
    #[error(
        "the default working directory {} is not a directory here (--default-cwd, \
         VICTOR_DEFAULT_CWD)",
        .0.display()
    )]
    DefaultCwd(PathBuf),
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
    access: Arc<Access>,
    /// Served on the Unix socket: the machine's own user, no key needed, no rate limits.
    local: bool,
    limits: Arc<RateLimits>,
    max_ws_message_bytes: usize,
    heartbeat: Duration,
    /// Cancelled when the server starts shutting down: open streams say so and end.
    closing: CancellationToken,
    /// Open SSE and WebSocket streams.
    clients: Arc<AtomicU64>,
    renderer: Arc<Renderer>,
    /// Serving HTTPS: the URLs the server hands out say `https`/`wss`.
    tls: bool,
    /// See [`ServeConfig::task_workspaces`].
    task_workspaces: PathBuf,
    /// Seed 004's Socket.IO server, behind `/socket.io/`.
    socket_io: seed004::SocketIoSlot,
    /// MCP sessions and the MCP tool calls under way.
    mcp: Arc<mcp::McpState>,
}

/// Runs the server until `stop` completes, then shuts down in order: stop accepting, tell open
/// streams (`server.shutdown`), stop running tasks within the grace period (they become
/// `interrupted`), close the store. `ready` hears where it listens once both ways in work.
pub async fn run(
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Listening),
) -> Result<(), ServeError> {
    let bind_error = |reason| ServeError::Bind {
        addr: format!("{}:{}", config.host, config.port),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(bind_error)?
        .collect();
    let loopback = addrs.iter().all(|addr| addr.ip().is_loopback());
    if !config.engine.default_cwd.is_dir() {
        return Err(ServeError::DefaultCwd(config.engine.default_cwd.clone()));
    }
    // Decided before binding: not even a moment listening on the network without a key.
    let (admin_key, new_admin_key) = match &config.api_key {
        Some(key) => (Some(key.clone()), None),
        None if loopback => (None, None),
        None => {
            let (key, new) = admin_key(&config.admin_key_file)?;
            (Some(key.clone()), new.then_some(key))
        }
    };
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr()?;
    raise_open_files_limit();

    // Held until the server ends: one server per data dir.
    let node = Node::claim(&config.data_dir)?.advertising(
        Advert {
            labels: config.engine.labels.clone(),
            max_concurrent: config.engine.max_concurrent,
        },
        config.engine.lease,
    );
    let hub = Hub::new();
    let store = store::open(config.store.as_deref(), &node, hub.clone()).await?;
    let access = Arc::new(
        Access::load(
            &config.data_dir,
            admin_key,
            config.sessions.clone(),
            store.clone(),
        )
        .await?,
    );
    // After the store took the data dir's lock: one server at a time makes the certificate.
    let tls = config
        .tls
        .as_ref()
        .map(|certificate| ServerTls::load(certificate, &config.data_dir))
        .transpose()?;
    let providers = Arc::new(Providers::new(
        config.providers.clone(),
        config.default_provider.as_deref(),
        config.provider_settings,
    )?);
    let bus = Bus::new(hub, store.clone());
    let task_workspaces = task_workspaces(&config.task_workspaces)?;
    let mut engine_config = config.engine.clone();
    engine_config.workspace_roots.push(task_workspaces.clone());
    let engine = Engine::start(store.clone(), bus, engine_config, providers).await?;
    let closing = CancellationToken::new();
    let limits = Arc::new(RateLimits::new(config.rate_limit));
    let renderer = Arc::new(Renderer::new(config.render.clone(), Tools::discover()));
    // Debug only: the first line at info is the one that says where the server listens.
    for backend in renderer.backends().types {
        tracing::debug!(
            diagram_type = %backend.diagram_type,
            backend = %backend.default,
            tool = backend.tool.as_deref().unwrap_or("-"),
            "render backend"
        );
    }
    // The first PlantUML requests should not wait for a JVM to start.
    if config.render.prewarm {
        let warming = renderer.clone();
        tokio::spawn(async move { warming.warm().await });
    }
    let state = AppState {
        engine: engine.clone(),
        access: access.clone(),
        local: false,
        limits: limits.clone(),
        max_ws_message_bytes: config.max_ws_message_bytes,
        heartbeat: config.heartbeat,
        closing: closing.clone(),
        clients: Arc::new(AtomicU64::new(0)),
        renderer: renderer.clone(),
        tls: tls.is_some(),
        task_workspaces,
        socket_io: Default::default(),
        mcp: Arc::default(),
    };
    let socket_io = seed004::start(&state);
    let sweeper = tokio::spawn(sweep(access.clone(), limits, closing.clone()));

    // Bound before `ready`, so that both ways in work once it is told.
    let socket_path = socket_path(&config.data_dir, local.port());
    // Without it (a path too long for a socket, say) the TCP side still serves.
    let unix_listener = bind_socket(&socket_path)
        .inspect_err(|e| tracing::warn!(error = %e, "no Unix socket; serving TCP only"))
        .ok();
    // For clients that know only the URL; a server with keys announces none (see announce.rs).
    let announcement = announce::Announcement::publish(
        local,
        unix_listener
            .as_ref()
            .filter(|_| !access.required())
            .map(|_| socket_path.as_path()),
    );
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
    ready(&Listening {
        url: url_of(local, tls.is_some()),
        network_urls: network_urls(local, tls.is_some()),
        fingerprint,
        socket: unix_listener.as_ref().map(|_| socket_path.clone()),
        new_admin_key,
        admin_key_file: (config.api_key.is_none() && !loopback)
            .then(|| config.admin_key_file.clone()),
    });

    let guard = guard::BrowserGuard::new(loopback, config.allowed_origins.clone());
    let body_limits = BodyLimits {
        max_bytes: config.max_body_bytes,
        idle: config.body_timeout,
    };
    let connection_limits = ConnectionLimits {
        max_connections: config.max_connections,
        max_pending_per_address: config.max_pending_per_address,
        header_timeout: config.header_timeout,
    };
    // The same API on a Unix socket beside the database, for clients on this machine: its
    // file mode (0600) is the authentication, so it asks for no key. Its connections are
    // counted on their own: connections from the network never lock the owner out.
    let local_only = AppState {
        local: true,
        tls: false,
        ..state.clone()
    };
    let unix = Connections::new(
        router(local_only, body_limits, guard.clone()),
        connection_limits,
        false,
        closing.clone(),
    );
    let mut unix_http = tokio::spawn(async move {
        if let Some(listener) = unix_listener {
            unix.serve_unix(listener).await;
        }
    });
    let tcp = Connections::new(
        router(state, body_limits, guard),
        connection_limits,
        true,
        closing.clone(),
    );
    let mut http = tokio::spawn(tcp.serve_tcp(listener, tls));
    tokio::select! {
        _ = stop => {}
        served = &mut http => {
            // The accept loop ended on its own (it panicked): still stop the tasks and
            // close the store.
            tracing::error!(outcome = ?served, "the HTTP server stopped unexpectedly");
        }
    }
    tracing::info!("shutting down: closing streams, stopping tasks");
    closing.cancel();
    // Socket.IO clients are told the server goes (their sockets closed, not left to time out).
    socket_io.close().await;
    // Tasks stop while connections drain; a client that stopped reading is not waited for
    // beyond the grace period.
    engine.shutdown().await;
    // No render worker or PlantUML JVM outlives the server; a render still running fails.
    renderer.shutdown();
    for server in [&mut http, &mut unix_http] {
        if tokio::time::timeout(SHUTDOWN_DRAIN, &mut *server)
            .await
            .is_err()
        {
            tracing::warn!("closing connections that did not finish in time");
            server.abort();
        }
    }
    drop(announcement);
    let _ = std::fs::remove_file(&socket_path);
    let _ = sweeper.await;
    access.sweep().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Makes the directory seed 001's tasks get their workspaces under, as an absolute path (a
/// workspace root must be one).
fn task_workspaces(dir: &Path) -> Result<PathBuf, ServeError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| dir.canonicalize())
        .map_err(|reason| ServeError::TaskWorkspaces {
            path: dir.display().to_string(),
            reason,
        })
}

/// Ends idle sessions and forgets idle rate-limit buckets, until the server closes.
async fn sweep(access: Arc<Access>, limits: Arc<RateLimits>, closing: CancellationToken) {
    let every = access.sweep_interval();
    loop {
        tokio::select! {
            _ = closing.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        access.sweep().await;
        limits.forget_idle();
    }
}

/// The admin key for a network bind without a configured one: read from `path`, or made and
/// written there (mode 0600) on first use. The flag says it was made just now.
fn admin_key(path: &Path) -> Result<(String, bool), ServeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |reason| ServeError::AdminKey {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_string(), false)),
        Ok(_) => {
            return Err(error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is empty",
            )));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let key = format!(
        "vk_{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            auth::random_bytes::<32>()
        )
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    writeln!(file, "{key}")
        .and_then(|()| file.sync_all())
        .map_err(error)?;
    Ok((key, true))
}

/// The URLs a machine on the network reaches the server at: one per address of this machine
/// for a bind on all of them (`0.0.0.0`, `::`), else none beyond the bound one.
fn network_urls(bound: SocketAddr, tls: bool) -> Vec<String> {
    if !bound.ip().is_unspecified() {
        return Vec::new();
    }
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut urls: Vec<String> = interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            let ip: IpAddr = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            let usable = !ip.is_loopback()
                && match ip {
                    IpAddr::V4(_) => bound.is_ipv4(),
                    // Link-local v6 addresses need a zone to be of use; skip them.
                    IpAddr::V6(v6) => bound.is_ipv6() && !v6.is_unicast_link_local(),
                };
            usable.then(|| url_of(SocketAddr::new(ip, bound.port()), tls))
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// A server holds a descriptor per connection and per running task's pipes: lift the soft
/// limit on open files to the hard one, as servers do, so the connection limit is what binds.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!(error = %e, "could not raise the open files limit");
    }
}

/// The Unix socket of the server listening on `port` with this data dir. The port is in the
/// name so that a client finds the socket of the very server its URL names.
pub fn socket_path(data_dir: &Path, port: u16) -> PathBuf {
    data_dir.join(format!("victor-{port}.sock"))
}

/// Binds the socket, readable and writable by this user only. A file left by a crash is
/// removed first: the data dir's lock says no other server uses it.
fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    use nix::sys::stat::{Mode, umask};
    use std::os::unix::fs::PermissionsExt;
    let bind_error = |reason| ServeError::Bind {
        addr: path.display().to_string(),
        reason,
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind_error(e)),
        _ => {}
    }
    // Created 0600 from the start (the umask applies to the socket file): no moment in which
    // another user could connect before the chmod below.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(bind_error)?;
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
                       and live streams over Server-Sent Events and WebSocket. When the server has \
                       keys, every route but /health needs a key or session token of the \
                       route's scope: read to watch, control to steer, admin for keys."
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::proto::WsRequest, crate::proto::WsReply)),
    security(("bearer" = []), ("api_key" = [])),
    tags((name = "tasks", description = "Create, inspect and steer tasks"),
         (name = "events", description = "Event logs and live streams"),
         (name = "access", description = "Scoped API keys and session tokens"),
         (name = "render", description = "Diagrams to SVG"),
         (name = "chat", description = "LLM providers, conversations and their streamed turns"),
         (name = "agents", description = "Agent tasks: guidance, approvals, checkpoints, rollback"),
         (name = "sessions", description = "Interpreter sessions: Jupyter kernels that keep their state"),
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

/// Routes, each added with what it asks of its caller ([`Needs`]): the only way a route is
/// added, so that none is reachable without saying it.
struct Routes(OpenApiRouter<AppState>);

impl Routes {
    /// A route of the native API, described in the OpenAPI document.
    fn api(self, needs: Needs, (schemas, paths, methods): UtoipaMethodRouter<AppState>) -> Routes {
        Routes(self.0.routes((schemas, paths, needs.guard(methods))))
    }

    /// A compatibility route (seed 000's chat surface, the OpenAI-compatible one, Kroki's):
    /// not in the OpenAPI document, which describes the native API.
    fn compat(self, needs: Needs, path: &str, methods: MethodRouter<AppState>) -> Routes {
        Routes(self.0.route(path, needs.guard(methods)))
    }
}

/// Every route, with what it needs. Watching needs `read`, steering `control`, keys `admin`
/// from a key itself; a render runs none of the caller's code and changes nothing, so it needs
/// only `read`.
fn routes() -> Routes {
    use Needs::{Key, Nothing, Socket};
    use axum::routing::{any, delete, get, post};
    let read = Needs::Scope(Scope::Read);
    let control = Needs::Scope(Scope::Control);
    Routes(OpenApiRouter::with_openapi(ApiDoc::openapi()))
        .api(Nothing, routes!(tasks::health))
        .api(read, routes!(tasks::status))
        .api(control, routes!(tasks::create_task))
        .api(read, routes!(tasks::list_tasks))
        .api(read, routes!(tasks::get_task))
        .api(control, routes!(tasks::delete_task))
        .api(control, routes!(tasks::cancel_task))
        .api(control, routes!(tasks::pause_task))
        .api(control, routes!(tasks::resume_task))
        .api(control, routes!(tasks::input_task))
        .api(read, routes!(stream::task_events))
        .api(read, routes!(stream::all_events))
        .api(Socket(Scope::Read), routes!(socket_native::websocket))
        .api(
            Key(Scope::Admin),
            routes!(auth::create_key, auth::list_keys),
        )
        .api(Key(Scope::Admin), routes!(auth::revoke_key))
        .api(read, routes!(auth::session_token))
        .api(read, routes!(render::render))
        .api(read, routes!(render::backends))
        .api(read, routes!(chat::providers))
        .api(read, routes!(chat::models))
        .api(control, routes!(chat::create_conversation))
        .api(read, routes!(chat::list_conversations))
        .api(read, routes!(chat::get_conversation))
        .api(control, routes!(chat::delete_conversation))
        .api(control, routes!(chat::post_message))
        .api(control, routes!(chat::cancel_turn))
        .api(read, routes!(chat::export_conversation))
        .api(control, routes!(agents::guide))
        .api(read, routes!(agents::checkpoints))
        .api(control, routes!(agents::rollback))
        .api(read, routes!(agents::approvals))
        .api(control, routes!(agents::answer))
        .api(read, routes!(sessions::kernels))
        .api(control, routes!(sessions::create_session))
        .api(control, routes!(sessions::execute))
        .api(read, routes!(sessions::execution))
        .api(control, routes!(sessions::input))
        .api(control, routes!(sessions::interrupt))
        .api(control, routes!(sessions::restart))
        .api(control, routes!(sessions::close))
        .api(control, routes!(sessions::checkpoint))
        .api(read, routes!(sessions::checkpoints))
        .api(control, routes!(sessions::restore))
        .compat(Nothing, "/health", get(tasks::health))
        .compat(read, "/status", get(seed000::status))
        .compat(control, "/chat", post(seed000::chat))
        .compat(control, "/chat/stream", post(seed000::chat_stream))
        .compat(control, "/completions", post(seed000::completions))
        .compat(read, "/models", get(seed000::models))
        .compat(read, "/providers", get(seed000::providers))
        .compat(
            control,
            "/conversation/reset",
            post(seed000::reset_conversation),
        )
        .compat(
            read,
            "/conversation/export",
            get(seed000::export_conversation),
        )
        .compat(control, "/agents/start", post(seed000_agents::start))
        .compat(read, "/agents", get(seed000_agents::list))
        .compat(control, "/agents/clear", post(seed000_agents::clear))
        .compat(read, "/agents/{id}", get(seed000_agents::get))
        .compat(control, "/agents/{id}/cancel", post(seed000_agents::cancel))
        .compat(read, "/mcp/servers", get(seed000_mcp::servers))
        .compat(control, "/mcp/connect", post(seed000_mcp::connect))
        .compat(control, "/mcp/disconnect", post(seed000_mcp::disconnect))
        .compat(control, "/api/v1/execute", post(seed003::execute))
        .compat(control, "/api/v1/checkpoint", post(seed003::checkpoint))
        .compat(
            control,
            "/api/v1/restore/{checkpoint_id}",
            post(seed003::restore),
        )
        .compat(
            Socket(Scope::Control),
            "/ws/v1/session",
            get(socket_seed003::socket),
        )
        .compat(Socket(Scope::Read), "/ws", get(socket_seed000::socket))
        .compat(
            Socket(Scope::Read),
            "/ws/session",
            get(socket_seed000_text::socket),
        )
        .compat(
            Socket(Scope::Read),
            "/ws/events",
            get(socket_seed000_events::socket),
        )
        .compat(read, "/events/recent", get(socket_seed000_events::recent))
        .compat(control, "/tasks", post(seed001::start))
        .compat(read, "/tasks/{task_id}", get(seed001::status_of))
        .compat(read, "/tasks/{task_id}/results", get(seed001::results))
        .compat(read, "/tasks/{task_id}/logs/stream", get(seed001::logs))
        .compat(
            Socket(Scope::Read),
            "/ws/{task_id}",
            get(socket_seed001::socket),
        )
        .compat(Nothing, "/socket.io/", any(seed004::socket_io))
        .compat(read, "/api/skills", get(seed004::skills))
        .compat(read, "/api/sessions", get(seed004::sessions))
        .compat(control, "/api/sessions", post(seed004::create_session))
        .compat(read, "/api/sessions/{id}", get(seed004::session))
        .compat(
            control,
            "/api/sessions/{id}",
            delete(seed004::delete_session),
        )
        .compat(
            control,
            "/v1/chat/completions",
            post(openai::chat_completions),
        )
        .compat(read, "/v1/models", get(openai::models))
        .compat(read, "/render/{kind}", post(render::text_body))
        .compat(read, "/{kind}/svg", post(render::text_body))
        .compat(read, "/{kind}/svg/{encoded}", get(render::kroki_get))
        // MCP's Streamable HTTP: each tool asks for the scope its REST route needs.
        .compat(
            read,
            "/mcp",
            get(mcp::get).post(mcp::post).delete(mcp::delete),
        )
}

/// The native API's routes and its OpenAPI document, completed with what every operation
/// shares.
fn documented_api() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = routes().0.split_for_parts();
    openapi::CommonResponses.modify(&mut document);
    openapi::Constraints.modify(&mut document);
    (router, document)
}

/// The OpenAPI document of the native API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_api().1
}

/// The document as `/openapi.json` sends it, serialized once: the tree it comes from weighs
/// megabytes, and the server would otherwise keep it for its whole life.
fn served_document(
    openapi: &utoipa::openapi::OpenApi,
) -> ([(header::HeaderName, HeaderValue); 1], bytes::Bytes) {
    let json = serde_json::to_vec(openapi).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialize the OpenAPI document");
        b"{}".to_vec()
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes::Bytes::from(json),
    )
}

fn router(state: AppState, body_limits: BodyLimits, guard: guard::BrowserGuard) -> Router {
    let (routes, openapi) = documented_api();
    let document = served_document(&openapi);
    drop(openapi);
    // Which routes there are is for callers with credentials.
    let router = routes
        .fallback(|caller: Option<Extension<Caller>>| async move {
            if !caller.is_some_and(|Extension(caller)| caller.identified()) {
                return ApiError::unauthorized();
            }
            ApiError::not_found("no such route; the API is under /api/v1, its description at /docs")
        })
        .method_not_allowed_fallback(|caller: Option<Extension<Caller>>| async move {
            if !caller.is_some_and(|Extension(caller)| caller.identified()) {
                return ApiError::unauthorized();
            }
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(middleware::from_fn_with_state(
            body_limits,
            limits::read_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        .layer(DefaultBodyLimit::max(body_limits.max_bytes))
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { document }),
        )
        .merge(SwaggerUi::new("/docs").config("/openapi.json".into()));
    // CORS answers the allowed origins' preflights; it is off unless origins are configured.
    let router = match guard.cors_layer() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(middleware::from_fn_with_state(guard, guard::guard_browser))
        // Outermost: a connection past the cap, or an address past its rate, gets nothing else.
        .layer(middleware::from_fn_with_state(state.clone(), limit))
        .with_state(state)
}

/// The connection cap and the per-address rate limit, for every request on every route.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<Peer>>().copied() {
        if let Some(refusal) = peer.refused {
            let message = match refusal {
                Refusal::TooManyConnections => {
                    "the server has as many connections open as it takes (--max-connections)"
                }
                Refusal::TooManyPending => {
                    "this address has as many connections waiting to authenticate as one \
                     address may (--max-pending-per-address); finish or close one"
                }
            };
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                message,
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        if let Some(ip) = peer.ip
            && let Err(limited) = state.limits.check_address(ip)
        {
            return limited.into_response();
        }
    }
    next.run(request).await
}
