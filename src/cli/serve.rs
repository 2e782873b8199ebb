//! `victor serve`: settings, logging and signals around [`crate::serve::run`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::config;
use super::output::Exit;
use crate::engine::{EngineConfig, SessionConfig};
use crate::llm::ProviderSettings;
use crate::render::RenderConfig;
use crate::serve::{
    AllowedOrigins, Listening, RateLimit, ServeConfig, SessionPolicy, TlsCertificate,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `victor serve`; each also comes from its `VICTOR_*` variable, and every unset one
/// from config.toml, then the built-in default.
#[derive(Debug, Args, Serialize)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1]. Anything but loopback needs an API key.
    #[arg(long, env = "VICTOR_HOST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one [default: 8765].
    #[arg(long, env = "VICTOR_PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// Where the database lives [default: the platform's data dir, e.g. ~/.local/share/victor].
    #[arg(long, env = "VICTOR_DATA_DIR", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Where tasks and their logs are kept: sqlite://PATH, PATH the database file [default:
    /// victor.db in the data dir].
    #[arg(long, env = "VICTOR_STORE", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// Once listening, write where to FILE as JSON (`url`, `socket`, `fingerprint`, `pid`), for
    /// a program that starts the server with --port 0; removed when the server stops.
    #[arg(long, env = "VICTOR_READY_FILE", value_name = "FILE")]
    #[serde(skip)]
    ready_file: Option<PathBuf>,
    /// Tasks running at once; the rest wait in a queue [default: 4].
    #[arg(long, env = "VICTOR_MAX_CONCURRENT", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent: Option<usize>,
    /// A label this node advertises to the nodes sharing its store (repeatable): tasks
    /// started with `--require LABEL` run only on nodes that have it.
    #[arg(
        long = "label",
        env = "VICTOR_LABELS",
        value_delimiter = ',',
        value_name = "LABEL"
    )]
    #[serde(rename = "labels", skip_serializing_if = "Vec::is_empty")]
    label: Vec<String>,
    /// Seconds this node's lease lasts in a shared store: a node silent that long counts as
    /// gone, and the others mark its running tasks interrupted [default: 15].
    #[arg(long, env = "VICTOR_LEASE_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_secs: Option<f64>,
    /// Require this key from every client (`Authorization: Bearer KEY`). Also read from
    /// VICTOR_SERVER_API_KEY (seed 000's name).
    #[arg(
        long,
        env = "VICTOR_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    /// Log as text for people or JSON lines for machines [default: text].
    #[arg(long, env = "VICTOR_LOG_FORMAT", value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    /// Seconds between heartbeat events on every open stream [default: 5].
    #[arg(long, env = "VICTOR_HEARTBEAT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_secs: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when a task is cancelled or times out [default: 5].
    #[arg(long, env = "VICTOR_KILL_GRACE_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    kill_grace_secs: Option<f64>,
    /// Seconds running tasks get to stop when the server shuts down [default: 5].
    #[arg(long, env = "VICTOR_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace_secs: Option<f64>,
    /// Output bytes kept per task before a `truncated` event [default: 67108864].
    #[arg(long, env = "VICTOR_MAX_OUTPUT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_bytes: Option<u64>,
    /// Tasks waiting in the queue before new ones are refused with 503 [default: 100000].
    #[arg(long, env = "VICTOR_MAX_QUEUED", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_queued: Option<usize>,
    /// A web origin allowed to call the API from a browser (repeatable; CORS is off without
    /// one): --cors-origin http://localhost:5173.
    #[arg(
        long = "cors-origin",
        env = "VICTOR_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    #[serde(rename = "cors_origins", skip_serializing_if = "Vec::is_empty")]
    cors_origin: Vec<String>,
    /// Web origins allowed to call the API, as a regular expression over the whole origin:
    /// 'http://localhost:\d+'.
    #[arg(long, env = "VICTOR_CORS_ORIGIN_REGEX", value_name = "REGEX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cors_origin_regex: Option<String>,
    /// Largest request body accepted [default: 1048576].
    #[arg(long, env = "VICTOR_MAX_BODY_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<usize>,
    /// Largest WebSocket message a client may send [default: 32768].
    #[arg(long, env = "VICTOR_MAX_WS_MESSAGE_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_ws_message_bytes: Option<usize>,
    /// Open connections before new ones are refused with 503 [default: 4096].
    #[arg(long, env = "VICTOR_MAX_CONNECTIONS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    /// Connections from one client address that have not yet completed an authenticated
    /// request; more get 503, so one address cannot take every connection. At most half of
    /// --max-connections [default: 128].
    #[arg(long, env = "VICTOR_MAX_PENDING_PER_ADDRESS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_pending_per_address: Option<usize>,
    /// Seconds a client has to send a whole request head, from when its connection opens or
    /// its previous response ends; then the connection is closed. So also how long a
    /// kept-alive connection may sit idle [default: 10].
    #[arg(long, env = "VICTOR_HEADER_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    header_timeout_secs: Option<f64>,
    /// Seconds a request body may stop arriving before the request gets 408 [default: 10].
    #[arg(long, env = "VICTOR_BODY_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    body_timeout_secs: Option<f64>,
    /// Where a task runs when its request names no directory. `victor task` on the server's
    /// own machine sends its current directory [default: the directory victor serve was
    /// started in].
    #[arg(long, env = "VICTOR_DEFAULT_CWD", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    default_cwd: Option<PathBuf>,
    /// Requests per second per client address and per key over TCP; 0 turns limits off
    /// [default: 200]. The Unix socket is not limited.
    #[arg(long, env = "VICTOR_RATE_LIMIT", value_name = "PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<u32>,
    /// Requests allowed in a burst above the rate before 429 [default: 400].
    #[arg(long, env = "VICTOR_RATE_BURST", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_burst: Option<u32>,
    /// Seconds a session token stays valid [default: 86400]. Also read from
    /// VICTOR_SERVER_SESSION_TTL_SECONDS (seed 000's name).
    #[arg(long, env = "VICTOR_SESSION_TTL_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    session_ttl_secs: Option<u64>,
    /// Seconds a session may sit unused before it ends [default: 3600].
    #[arg(long, env = "VICTOR_SESSION_IDLE_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    session_idle_secs: Option<u64>,
    /// Sessions at once before new ones are refused with 429 [default: 100]. Also read from
    /// VICTOR_SERVER_MAX_SESSIONS (seed 000's name).
    #[arg(long, env = "VICTOR_MAX_SESSIONS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sessions: Option<usize>,
    /// Serve HTTPS and WSS with a self-signed certificate, made on first use and kept in
    /// DATA_DIR/tls; clients pin its fingerprint, which the server prints.
    #[arg(long, env = "VICTOR_TLS", value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tls: bool,
    /// Serve HTTPS with this PEM certificate chain instead (needs --tls-key).
    #[arg(long, env = "VICTOR_TLS_CERT", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "VICTOR_TLS_KEY", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Largest diagram source a render accepts; more is refused with 413 [default: 20000].
    #[arg(long, env = "VICTOR_RENDER_MAX_PAYLOAD_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_max_payload_bytes: Option<usize>,
    /// Seconds a render may take; then its tool's whole process group is killed and the
    /// answer is 504 [default: 10].
    #[arg(long, env = "VICTOR_RENDER_TIMEOUT_SECONDS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_timeout_secs: Option<f64>,
    /// Renders running at once, and warm PlantUML processes kept [default: 2].
    #[arg(long, env = "VICTOR_RENDER_MAX_CONCURRENCY", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_max_concurrency: Option<usize>,
    /// Renders waiting for a free slot before more are refused with 503 [default: 32].
    #[arg(long, env = "VICTOR_RENDER_MAX_QUEUE", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_max_queue: Option<usize>,
    /// Largest SVG a render may produce [default: 10485760].
    #[arg(long, env = "VICTOR_RENDER_MAX_OUTPUT_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_max_output_bytes: Option<usize>,
    /// Let diagrams include files and reach URLs (PlantUML !include, Graphviz image=, d2
    /// icons). Only for a server whose every user may read its files.
    #[arg(long, env = "VICTOR_RENDER_UNSAFE", value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    render_unsafe: bool,
    /// Start the warm PlantUML processes with the server (false: at the first PlantUML
    /// render) [default: true].
    #[arg(long, env = "VICTOR_RENDER_PREWARM", value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new())]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_prewarm: Option<bool>,
    /// SVG bytes of rendered diagrams kept in DATA_DIR/render-cache; past it the least
    /// recently used are deleted, and 0 keeps none on disk [default: 268435456].
    #[arg(long, env = "VICTOR_RENDER_CACHE_MAX_BYTES", value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    render_cache_max_bytes: Option<u64>,
    /// An LLM provider as NAME=KIND:URL[#MODEL], KIND one of ollama, openai, anthropic
    /// (repeatable; added to config.toml's [providers.NAME] tables):
    /// --provider gpt=openai:https://api.openai.com/v1#gpt-4o-mini. Keys come from
    /// OPENAI_API_KEY and ANTHROPIC_API_KEY. Without any provider: Ollama on this machine.
    #[arg(
        long = "provider",
        env = "VICTOR_PROVIDERS",
        value_delimiter = ',',
        value_name = "SPEC"
    )]
    #[serde(skip)]
    provider: Vec<String>,
    /// The provider chats use when they name none [default: the first by name].
    #[arg(long, env = "VICTOR_DEFAULT_PROVIDER", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    default_provider: Option<String>,
    /// Seconds to wait for a provider's first byte; local models load slowly [default: 300].
    #[arg(long, env = "VICTOR_LLM_FIRST_BYTE_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    llm_first_byte_timeout_secs: Option<f64>,
    /// Seconds a streaming reply may go silent before it fails [default: 120].
    #[arg(long, env = "VICTOR_LLM_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    llm_idle_timeout_secs: Option<f64>,
    /// Times a connection to a provider is retried before it counts as unreachable
    /// [default: 3].
    #[arg(long, env = "VICTOR_LLM_RETRIES", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    llm_retries: Option<u32>,
    /// A directory agents may work in, with everything below it (repeatable)
    /// [default: the home directory].
    #[arg(
        long = "workspace-root",
        env = "VICTOR_WORKSPACE_ROOTS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    #[serde(rename = "workspace_roots", skip_serializing_if = "Vec::is_empty")]
    workspace_root: Vec<PathBuf>,
    /// Seconds an agent's tool call waits for a person's approval [default: 600].
    #[arg(long, env = "VICTOR_APPROVAL_TIMEOUT_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_timeout_secs: Option<f64>,
    /// What an approval nobody answers in time comes to: deny (the agent is told and goes
    /// on), wait (for ever) or fail (the task) [default: deny].
    #[arg(long, env = "VICTOR_ON_UNANSWERED", value_name = "WHAT",
        value_parser = parse_unanswered)]
    #[serde(skip_serializing_if = "Option::is_none")]
    on_unanswered: Option<crate::proto::Unanswered>,
    /// The Jupyter kernel an interpreter session runs when it names none [default: python3].
    #[arg(long, env = "VICTOR_DEFAULT_KERNEL", value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    default_kernel: Option<String>,
    /// Seconds an interpreter session may go unused before it is closed; 0 keeps sessions
    /// until they are closed [default: 3600].
    #[arg(long, env = "VICTOR_KERNEL_IDLE_SECS", value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_idle_secs: Option<f64>,
    /// Interpreter sessions open at once; more are refused with 503 [default: 32].
    #[arg(long, env = "VICTOR_MAX_KERNELS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_kernels: Option<usize>,
    /// Interpreter sessions open at once for one client; more are refused with 429
    /// [default: 8].
    #[arg(long, env = "VICTOR_MAX_KERNELS_PER_CLIENT", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_kernels_per_client: Option<usize>,
    /// Kernels of the default kernel kept started ahead (a warm pool), so that a new session
    /// in the server's directory is ready at once; refilled in the background [default: 0].
    #[arg(long, env = "VICTOR_SESSION_WARM_POOL", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    session_warm_pool: Option<usize>,
    /// Where a task started through seed 001's `POST /tasks` gets a new directory of its own
    /// [default: workspaces in the data dir].
    #[arg(long, env = "VICTOR_TASK_WORKSPACES", value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    task_workspaces: Option<PathBuf>,
}

fn parse_unanswered(text: &str) -> Result<crate::proto::Unanswered, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("`{text}` is not one of deny, wait, fail"))
}

impl ServeArgs {
    /// Fills settings still unset from the seed 000 server's variables, so that its users'
    /// environments keep working. clap binds one variable per flag, hence this lookup; the
    /// seed's name ranks below victor's own variable and the flag, above config.toml.
    fn with_seed_aliases(mut self) -> anyhow::Result<ServeArgs> {
        if self.api_key.is_none() {
            self.api_key = seed_alias("VICTOR_SERVER_API_KEY")?;
        }
        if self.max_sessions.is_none() {
            self.max_sessions = seed_alias("VICTOR_SERVER_MAX_SESSIONS")?;
        }
        if self.session_ttl_secs.is_none() {
            self.session_ttl_secs = seed_alias("VICTOR_SERVER_SESSION_TTL_SECONDS")?;
        }
        Ok(self)
    }
}

/// A seed 000 variable's value, if it is set and not empty. The value is never echoed: one of
/// them is a key.
fn seed_alias<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name} must be a whole number")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name} is not valid UTF-8"),
    }
}

/// TLS from the settings: a certificate of the user's (either file implies TLS, and one
/// needs the other), else the self-signed one when `tls` is on.
fn tls_certificate(settings: &config::Settings) -> anyhow::Result<Option<TlsCertificate>> {
    match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(TlsCertificate::Files {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (None, None) => Ok(settings.tls.then_some(TlsCertificate::SelfSigned)),
        (Some(_), None) => {
            anyhow::bail!("a TLS certificate needs its key: give --tls-key (or tls_key) too")
        }
        (None, Some(_)) => {
            anyhow::bail!("a TLS key needs its certificate: give --tls-cert (or tls_cert) too")
        }
    }
}

fn seconds(value: f64, key: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() || key.ends_with("grace_secs"))
        .with_context(|| format!("{key} must be a positive number of seconds, not {value}"))
}

pub async fn run(args: ServeArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    let args = args.with_seed_aliases()?;
    let mut settings = config::load(config_file, &args)?;
    init_logging(&settings.log_format)?;
    for spec in &args.provider {
        let (name, provider) = crate::llm::parse_provider_spec(spec)?;
        settings.providers.insert(name, provider);
    }
    for (key, value) in [
        ("max_concurrent", settings.max_concurrent),
        ("max_connections", settings.max_connections),
        ("max_pending_per_address", settings.max_pending_per_address),
        ("max_sessions", settings.max_sessions),
        ("max_ws_message_bytes", settings.max_ws_message_bytes),
        ("session_ttl_secs", settings.session_ttl_secs as usize),
        ("session_idle_secs", settings.session_idle_secs as usize),
        ("render_max_concurrency", settings.render_max_concurrency),
        (
            "render_max_payload_bytes",
            settings.render_max_payload_bytes,
        ),
        ("render_max_output_bytes", settings.render_max_output_bytes),
        ("max_kernels", settings.max_kernels),
        ("max_kernels_per_client", settings.max_kernels_per_client),
    ] {
        if value == 0 {
            anyhow::bail!("{key} must be at least 1");
        }
    }
    let data_dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    let task_workspaces = settings
        .task_workspaces
        .clone()
        .unwrap_or_else(|| data_dir.join("workspaces"));
    let checkpoint_dir = data_dir.join("checkpoints");
    let config = ServeConfig {
        task_workspaces,
        host: settings.host.clone(),
        port: settings.port,
        render: RenderConfig {
            max_payload_bytes: settings.render_max_payload_bytes,
            timeout: seconds(settings.render_timeout_secs, "render_timeout_secs")?,
            max_concurrency: settings.render_max_concurrency,
            max_queue: settings.render_max_queue,
            max_output_bytes: settings.render_max_output_bytes,
            safe: !settings.render_unsafe,
            cache_dir: (settings.render_cache_max_bytes > 0).then(|| data_dir.join("render-cache")),
            cache_disk_bytes: settings.render_cache_max_bytes,
            prewarm: settings.render_prewarm,
            worker: crate::render::this_program(),
            ..RenderConfig::default()
        },
        data_dir,
        store: settings.store.clone(),
        api_key: settings.api_key.clone().filter(|k| !k.is_empty()),
        engine: EngineConfig {
            max_concurrent: settings.max_concurrent,
            labels: {
                crate::engine::validate_labels(&settings.labels)?;
                settings.labels.clone()
            },
            lease: seconds(settings.lease_secs, "lease_secs")?,
            kill_grace: seconds(settings.kill_grace_secs, "kill_grace_secs")?,
            shutdown_grace: seconds(settings.shutdown_grace_secs, "shutdown_grace_secs")?,
            max_output_bytes: settings.max_output_bytes,
            default_cwd: match &settings.default_cwd {
                Some(dir) => dir.clone(),
                None => std::env::current_dir()
                    .context("cannot tell the current directory; set --default-cwd")?,
            },
            max_queued: settings.max_queued,
            workspace_roots: if settings.workspace_roots.is_empty() {
                directories::BaseDirs::new()
                    .map(|dirs| vec![dirs.home_dir().to_path_buf()])
                    .unwrap_or_default()
            } else {
                settings.workspace_roots.clone()
            },
            approval_timeout: seconds(settings.approval_timeout_secs, "approval_timeout_secs")?,
            on_unanswered: settings.on_unanswered,
            sessions: SessionConfig {
                default_kernel: settings.default_kernel.clone(),
                idle_timeout: match settings.kernel_idle_secs {
                    0.0 => None,
                    secs => Some(seconds(secs, "kernel_idle_secs")?),
                },
                max_sessions: settings.max_kernels,
                max_per_client: settings.max_kernels_per_client,
                checkpoint_dir,
                warm_pool: settings.session_warm_pool,
                ..SessionConfig::default()
            },
            mcp_servers: {
                for (name, server) in &settings.mcp {
                    server.check(name)?;
                }
                settings.mcp.clone()
            },
        },
        heartbeat: seconds(settings.heartbeat_secs, "heartbeat_secs")?,
        allowed_origins: AllowedOrigins::new(
            settings.cors_origins.clone(),
            settings.cors_origin_regex.as_deref(),
        )
        .context("invalid cors_origin_regex")?,
        max_body_bytes: settings.max_body_bytes,
        body_timeout: seconds(settings.body_timeout_secs, "body_timeout_secs")?,
        header_timeout: seconds(settings.header_timeout_secs, "header_timeout_secs")?,
        max_pending_per_address: settings.max_pending_per_address,
        max_ws_message_bytes: settings.max_ws_message_bytes,
        max_connections: settings.max_connections,
        rate_limit: RateLimit {
            per_sec: settings.rate_limit,
            burst: settings.rate_burst,
        },
        sessions: SessionPolicy {
            ttl: Duration::from_secs(settings.session_ttl_secs),
            idle: Duration::from_secs(settings.session_idle_secs),
            max_sessions: settings.max_sessions,
        },
        admin_key_file: config::config_dir(config_file).join(ADMIN_KEY_FILE),
        providers: settings.providers.clone(),
        default_provider: settings.default_provider.clone(),
        provider_settings: ProviderSettings {
            connect_timeout: seconds(
                settings.llm_connect_timeout_secs,
                "llm_connect_timeout_secs",
            )?,
            first_byte_timeout: seconds(
                settings.llm_first_byte_timeout_secs,
                "llm_first_byte_timeout_secs",
            )?,
            idle_timeout: seconds(settings.llm_idle_timeout_secs, "llm_idle_timeout_secs")?,
            retries: settings.llm_retries,
            ..ProviderSettings::default()
        },
        tls: tls_certificate(&settings)?,
    };
    let ready_file = args.ready_file.clone();
    let served = crate::serve::run(config, shutdown_signal(), |listening| {
        announce(listening);
        if let Some(path) = &ready_file
            && let Err(e) = write_ready_file(path, listening)
        {
            tracing::error!(file = %path.display(), error = %e, "cannot write the ready file");
        }
    })
    .await;
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    served?;
    Ok(Exit::Success)
}

/// Writes where the server listens to `path`, whole or not at all: whoever waits for the file
/// never reads half of it.
fn write_ready_file(path: &Path, listening: &Listening) -> std::io::Result<()> {
    let ready = serde_json::json!({
        "url": listening.url,
        "socket": listening.socket,
        "fingerprint": listening.fingerprint,
        "pid": std::process::id(),
    });
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, ready.to_string())?;
    std::fs::rename(&partial, path)
}

/// The generated admin key's file in the config dir.
const ADMIN_KEY_FILE: &str = "admin.key";

/// Tells the person who started the server how to reach it from another machine, when it
/// listens on the network with the key it generated. The key itself is shown only the first
/// time; it is never logged.
fn announce(listening: &Listening) {
    let Some(key_file) = &listening.admin_key_file else {
        return;
    };
    let urls = if listening.network_urls.is_empty() {
        std::slice::from_ref(&listening.url)
    } else {
        listening.network_urls.as_slice()
    };
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .unwrap_or_else(|| "workstation".to_string());
    let key = match &listening.new_admin_key {
        Some(key) => {
            eprintln!(
                "\nvictor made an admin key for this server and saved it in {} (mode 0600).\n\
                 It is shown this once:\n\n    {key}\n",
                key_file.display()
            );
            key.clone()
        }
        None => {
            eprintln!(
                "\nvictor is using the admin key saved in {} (`cat` it on this machine).",
                key_file.display()
            );
            "KEY".to_string()
        }
    };
    let pin = listening
        .fingerprint
        .map(|fingerprint| format!(" --fingerprint {fingerprint}"))
        .unwrap_or_default();
    eprintln!("To use this server from another machine, run there:\n");
    for url in urls {
        eprintln!("    victor remote add {name} {url} --key {key}{pin}");
    }
    if listening.fingerprint.is_none() {
        eprintln!(
            "\nWithout --tls the key and everything else cross the network in the clear; \
             `victor serve --tls` encrypts it."
        );
    }
    eprintln!(
        "\nthen `victor task list --server {name}`. Make keys with less power for other \
         machines: `victor keys create --scope read`.\n"
    );
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        "text" => builder.with_target(false).init(),
        "json" => builder.json().init(),
        other => anyhow::bail!("log_format must be `text` or `json`, not `{other}`"),
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. Both are caught from the moment this is called,
/// before the server starts: a signal sent as soon as it says it listens still stops it cleanly.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let listen = |kind, name: &str| {
        signal(kind)
            .inspect_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
            .ok()
    };
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT");
    async move {
        async fn received(signal: &mut Option<Signal>) {
            match signal {
                Some(signal) => drop(signal.recv().await),
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = received(&mut terminate) => {}
            _ = received(&mut interrupt) => {}
        }
    }
}
