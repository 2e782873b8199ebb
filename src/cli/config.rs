//! Settings from built-in defaults < `config.toml` < `VICTOR_*` environment < flags. clap reads
//! the environment for each flag (so `--help` names the variable), which puts env and flags in
//! one layer where a flag wins; figment lays that layer over the file and the defaults.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every key `config.toml` may hold. Server and clients read the same file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address `victor serve` listens on.
    pub host: String,
    pub port: u16,
    /// Where the database lives.
    pub data_dir: Option<PathBuf>,
    /// Where tasks and their logs are kept: `sqlite://PATH`; none: SQLite in the data dir.
    pub store: Option<String>,
    pub max_concurrent: usize,
    /// What this node advertises to the others sharing its store: tasks that `--require`
    /// labels run only on nodes that have them all.
    pub labels: Vec<String>,
    /// Seconds a node's lease lasts: silent that long, the others take over its tasks.
    pub lease_secs: f64,
    /// The key the server requires and clients send.
    pub api_key: Option<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// Seconds between heartbeat events on open streams.
    pub heartbeat_secs: f64,
    /// Seconds between SIGTERM and SIGKILL when a task is cancelled or times out.
    pub kill_grace_secs: f64,
    /// Seconds running tasks get to stop when the server shuts down.
    pub shutdown_grace_secs: f64,
    /// Output bytes kept per task.
    pub max_output_bytes: u64,
    /// Tasks waiting in the queue before new ones are refused.
    pub max_queued: usize,
    /// Largest request body the server accepts.
    pub max_body_bytes: usize,
    /// Web origins allowed to call the API from a browser (CORS), exactly as written.
    pub cors_origins: Vec<String>,
    /// Web origins allowed to call the API, as a regular expression matching the whole origin.
    pub cors_origin_regex: Option<String>,
    /// Open connections before new ones get a 503.
    pub max_connections: usize,
    /// Connections from one address that have not authenticated yet, before 503.
    pub max_pending_per_address: usize,
    /// Seconds to send a request head (also the idle time of a kept-alive connection).
    pub header_timeout_secs: f64,
    /// Seconds a request body may stop arriving before 408.
    pub body_timeout_secs: f64,
    /// Where a task runs when its request names no directory (the server's own when unset).
    pub default_cwd: Option<PathBuf>,
    /// Largest WebSocket message a client may send.
    pub max_ws_message_bytes: usize,
    /// Requests per second allowed per client address and per key (0: no limit).
    pub rate_limit: u32,
    /// Requests allowed at once above the rate before 429.
    pub rate_burst: u32,
    /// Seconds a session token stays valid.
    pub session_ttl_secs: u64,
    /// Seconds a session may sit unused before it ends.
    pub session_idle_secs: u64,
    /// Sessions open at once before `POST /session/token` answers 429.
    pub max_sessions: usize,
    /// The server clients talk to.
    pub server: String,
    /// Serve HTTPS with a self-signed certificate kept in the data dir.
    pub tls: bool,
    /// PEM certificate chain to serve HTTPS with, instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest diagram source a render accepts.
    pub render_max_payload_bytes: usize,
    /// Seconds a render may take before its tool's process group is killed.
    pub render_timeout_secs: f64,
    /// Renders running at once (and warm PlantUML processes).
    pub render_max_concurrency: usize,
    /// Renders waiting for a free slot before more get a 503.
    pub render_max_queue: usize,
    /// Largest SVG a render may produce.
    pub render_max_output_bytes: usize,
    /// Turn safe mode off: diagrams may include files and reach URLs.
    pub render_unsafe: bool,
    /// Start the warm PlantUML processes with the server.
    pub render_prewarm: bool,
    /// SVG bytes the render cache keeps on disk (least recently used go first); 0: none.
    pub render_cache_max_bytes: u64,
    /// LLM providers by name: `[providers.NAME]` tables with `kind`, `base_url`, and
    /// optionally `api_key_env` and `default_model`.
    pub providers: std::collections::BTreeMap<String, crate::llm::ProviderConfig>,
    /// The provider chats use when they name none.
    pub default_provider: Option<String>,
    /// MCP servers whose tools agents use: `[mcp.NAME]` tables with a `command` (and `args`,
    /// `env`) or a `url` (and `headers`), optionally `timeout_secs` and `approval`.
    pub mcp: std::collections::BTreeMap<String, crate::mcp::McpServerConfig>,
    /// Seconds to wait for a connection to a provider.
    pub llm_connect_timeout_secs: f64,
    /// Seconds to wait for a provider's first byte.
    pub llm_first_byte_timeout_secs: f64,
    /// Seconds a streaming reply may go silent.
    pub llm_idle_timeout_secs: f64,
    /// Connection retries before a provider counts as unreachable.
    pub llm_retries: u32,
    /// Directories agents may work in (and below); none: the home directory.
    pub workspace_roots: Vec<PathBuf>,
    /// Seconds an agent's tool call waits for a person's approval.
    pub approval_timeout_secs: f64,
    /// What an unanswered approval comes to: `deny`, `wait` or `fail`.
    pub on_unanswered: crate::proto::Unanswered,
    /// The Jupyter kernel an interpreter session runs when it names none.
    pub default_kernel: String,
    /// Seconds an interpreter session may go unused before it is closed; 0: never.
    pub kernel_idle_secs: f64,
    /// Interpreter sessions open at once on the server (more: 503).
    pub max_kernels: usize,
    /// Interpreter sessions open at once for one client (more: 429).
    pub max_kernels_per_client: usize,
    /// Kernels of the default kind started ahead, so that a new session is ready at once.
    pub session_warm_pool: usize,
    /// Where seed 001's tasks get a directory each; none: `workspaces` in the data dir.
    pub task_workspaces: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        let llm = crate::llm::ProviderSettings::default();
        Settings {
            host: "127.0.0.1".into(),
            port: 8765,
            data_dir: None,
            store: None,
            max_concurrent: 4,
            labels: Vec::new(),
            lease_secs: 15.0,
            api_key: None,
            log_format: "text".into(),
            heartbeat_secs: 5.0,
            kill_grace_secs: 5.0,
            shutdown_grace_secs: 5.0,
            max_output_bytes: 64 * 1024 * 1024,
            max_queued: 100_000,
            max_body_bytes: 1024 * 1024,
            cors_origins: Vec::new(),
            cors_origin_regex: None,
            max_connections: 4096,
            max_pending_per_address: 128,
            header_timeout_secs: 10.0,
            body_timeout_secs: 10.0,
            default_cwd: None,
            max_ws_message_bytes: 32 * 1024,
            rate_limit: 200,
            rate_burst: 400,
            session_ttl_secs: 24 * 60 * 60,
            session_idle_secs: 60 * 60,
            max_sessions: 100,
            server: crate::client::DEFAULT_SERVER.into(),
            tls: false,
            tls_cert: None,
            tls_key: None,
            render_max_payload_bytes: 20_000,
            render_timeout_secs: 10.0,
            render_max_concurrency: 2,
            render_max_queue: 32,
            render_max_output_bytes: 10 * 1024 * 1024,
            render_unsafe: false,
            render_prewarm: true,
            render_cache_max_bytes: 256 * 1024 * 1024,
            providers: std::collections::BTreeMap::new(),
            default_provider: None,
            mcp: std::collections::BTreeMap::new(),
            llm_connect_timeout_secs: llm.connect_timeout.as_secs_f64(),
            llm_first_byte_timeout_secs: llm.first_byte_timeout.as_secs_f64(),
            llm_idle_timeout_secs: llm.idle_timeout.as_secs_f64(),
            llm_retries: llm.retries,
            workspace_roots: Vec::new(),
            approval_timeout_secs: 600.0,
            on_unanswered: crate::proto::Unanswered::Deny,
            default_kernel: crate::proto::DEFAULT_KERNEL.to_string(),
            kernel_idle_secs: 3600.0,
            max_kernels: 32,
            max_kernels_per_client: 8,
            session_warm_pool: 0,
            task_workspaces: None,
        }
    }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "victor")
}

/// `config.toml` in the platform's config dir (`~/.config/victor` on Linux).
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.config_dir().join("config.toml"))
}

/// The directory of the config file: where the generated admin key and the remotes live.
pub fn config_dir(config_file: Option<&Path>) -> PathBuf {
    config_file
        .map(Path::to_path_buf)
        .or_else(default_config_path)
        .and_then(|path| path.parent().map(Path::to_path_buf))
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The platform's data dir (`~/.local/share/victor` on Linux), or `./victor-data`.
pub fn default_data_dir() -> PathBuf {
    project_dirs()
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("victor-data"))
}

/// Loads the settings, with `overrides` (flags and their environment variables; `None` fields
/// are left alone) on top.
pub fn load(config_file: Option<&Path>, overrides: impl Serialize) -> anyhow::Result<Settings> {
    let path = config_file
        .map(Path::to_path_buf)
        .or_else(default_config_path);
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(path) = &path {
        if config_file.is_some() && !path.exists() {
            anyhow::bail!(
                "config file {} does not exist (from --config or VICTOR_CONFIG)",
                path.display()
            );
        }
        figment = figment.merge(Toml::file(path));
    }
    figment
        .merge(Serialized::defaults(overrides))
        .extract()
        .with_context(|| match &path {
            Some(path) => format!("invalid settings (config file {})", path.display()),
            None => "invalid settings".to_string(),
        })
}
