//! Starting a real `victor serve` for a test or a benchmark: the binary on 127.0.0.1, port 0, a
//! fresh temporary home (an empty `config.toml`, the data dir) and none of the caller's
//! `VICTOR_*` settings. The server says where it listens in its ready file (`--ready-file`), and
//! the key is the one given here: nothing is read back from its arguments or its log.
//!
//! Shared by tests/common (through `mod launch`) and the benchmarks in examples/ (through
//! `#[path]`), so that there is one way to start a server.

// Each user takes the part it needs.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use victor::proto::Fingerprint;

/// How long a server may take to listen.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Log bytes kept; past this the oldest half goes.
const LOG_LIMIT: usize = 4 * 1024 * 1024;
/// Warning and error lines kept for a summary.
const NOTABLE_LINES: usize = 20;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    /// A program the server is started through, which then executes it (`taskset -c 0`).
    through: Vec<OsString>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    api_key: Option<String>,
    /// The server's working directory (the caller's own when not set).
    dir: Option<PathBuf>,
    /// What its `config.toml` says (empty when not set).
    config: String,
}

impl Launch {
    pub fn new(program: impl Into<PathBuf>) -> Launch {
        Launch {
            program: program.into(),
            through: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            api_key: None,
            dir: None,
            config: String::new(),
        }
    }

    /// The server's `config.toml`, for settings no flag gives (`[mcp.NAME]` tables).
    pub fn config_toml(mut self, text: &str) -> Launch {
        self.config = text.to_string();
        self
    }

    /// The directory the server starts in: where its tasks run unless they name another.
    pub fn current_dir(mut self, dir: &Path) -> Launch {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Extra `victor serve` flags.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_string()));
        self
    }

    /// An environment variable for the server.
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The key the server requires, given to it as `VICTOR_API_KEY`.
    pub fn api_key(mut self, key: &str) -> Launch {
        self.api_key = Some(key.to_string());
        self
    }

    /// No rate limit: a benchmark's load comes from one address, far faster than any person's.
    pub fn unlimited(self) -> Launch {
        self.args(["--rate-limit", "0"])
    }

    /// Starts the server through `program` and its arguments, which must execute the server in
    /// the same process (as `taskset -c 0` does), so that its pid is the server's.
    pub fn through<S: Into<OsString>>(mut self, program: impl IntoIterator<Item = S>) -> Launch {
        self.through = program.into_iter().map(Into::into).collect();
        self
    }

    /// Starts the server and waits until it listens.
    pub fn start(self) -> std::io::Result<Launched> {
        let home = tempfile::Builder::new()
            .prefix("victor-server-")
            .tempdir()?;
        std::fs::write(home.path().join("config.toml"), &self.config)?;
        let mut launched = Launched {
            child: None,
            url: String::new(),
            fingerprint: None,
            api_key: self.api_key.clone(),
            data_dir: home.path().join("data"),
            home: home.path().to_path_buf(),
            launch: self,
            log: Arc::new(Mutex::new(Log::default())),
            _home: home,
        };
        launched.launch("0")?;
        Ok(launched)
    }
}

/// A running server, killed when dropped.
pub struct Launched {
    child: Option<Child>,
    /// The base URL, `http://127.0.0.1:PORT` (or `https://`).
    pub url: String,
    /// The TLS certificate's fingerprint, when it serves TLS.
    pub fingerprint: Option<Fingerprint>,
    /// The key it requires, when it was given one.
    pub api_key: Option<String>,
    pub data_dir: PathBuf,
    /// The directory of its `config.toml` (where an admin key it makes is kept).
    pub home: PathBuf,
    launch: Launch,
    log: Arc<Mutex<Log>>,
    _home: tempfile::TempDir,
}

/// What the server wrote to stderr.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// The lines, oldest first (the oldest may have gone past [`LOG_LIMIT`]).
    pub text: String,
    pub warnings: u64,
    pub errors: u64,
    /// The first warning and error lines.
    pub notable: Vec<String>,
}

impl Log {
    fn add(&mut self, line: &str) {
        let warning = line.contains(" WARN ");
        let error = line.contains(" ERROR ") || line.contains("panicked");
        self.warnings += u64::from(warning);
        self.errors += u64::from(error);
        if (warning || error) && self.notable.len() < NOTABLE_LINES {
            self.notable.push(line.to_string());
        }
        if self.text.len() > LOG_LIMIT {
            let half = self.text.ceil_char_boundary(self.text.len() / 2);
            let cut = self.text[half..]
                .find('\n')
                .map_or(self.text.len(), |at| half + at + 1);
            self.text.drain(..cut);
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// The last `lines` lines.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// What the server writes to its ready file.
#[derive(serde::Deserialize)]
struct Ready {
    url: String,
    fingerprint: Option<Fingerprint>,
}

impl Launched {
    /// Where the server says where it listens.
    pub fn ready_file(&self) -> PathBuf {
        self.home.join("ready.json")
    }

    fn launch(&mut self, port: &str) -> std::io::Result<()> {
        let ready_file = self.ready_file();
        match std::fs::remove_file(&ready_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut command = match self.launch.through.split_first() {
            Some((wrapper, args)) => {
                let mut command = Command::new(wrapper);
                command.args(args).arg(&self.launch.program);
                command
            }
            None => Command::new(&self.launch.program),
        };
        command.arg("serve");
        if !self.launch.args.iter().any(|arg| arg == "--host") {
            command.args(["--host", "127.0.0.1"]);
        }
        command
            .args(["--port", port, "--data-dir"])
            .arg(&self.data_dir)
            .arg("--ready-file")
            .arg(&ready_file)
            .args(&self.launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Settings from the caller's environment would make the run depend on who runs it.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("VICTOR_") || key_text == "TOKIO_WORKER_THREADS" {
                command.env_remove(key);
            }
        }
        command
            .env("VICTOR_CONFIG", self.home.join("config.toml"))
            .env("RUST_LOG", "info")
            // A JVM per warm PlantUML process for every server would slow everything else;
            // whoever wants them warm says so.
            .env("VICTOR_RENDER_PREWARM", "false");
        if let Some(key) = &self.api_key {
            command.env("VICTOR_API_KEY", key);
        }
        command.envs(self.launch.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.launch.dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start {}: {e}", self.launch.program.display()),
            )
        })?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = self.log.clone();
        // Read to the end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap_or_else(|p| p.into_inner()).add(&line);
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        let ready: Ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break serde_json::from_str(&text).map_err(std::io::Error::other)?;
            }
            let ended = child.try_wait()?;
            if ended.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                // The reader has the last lines in a moment.
                std::thread::sleep(Duration::from_millis(100));
                return Err(std::io::Error::other(format!(
                    "the server {}; its log:\n{}",
                    match ended {
                        Some(status) => format!("ended ({status}) before listening"),
                        None => format!("did not listen within {}s", START_LIMIT.as_secs()),
                    },
                    self.log().tail(40)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // A server on every address is reached here over loopback.
        self.url = ready.url.replace("://0.0.0.0:", "://127.0.0.1:");
        self.fingerprint = ready.fingerprint;
        self.child = Some(child);
        Ok(())
    }

    /// What it logged so far.
    pub fn log(&self) -> Log {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn port(&self) -> String {
        self.url.rsplit(':').next().unwrap_or_default().to_string()
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the server to end; `None` when it did not, and was
    /// killed.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts the stopped server again on the same port and data dir, retrying while the old
    /// one's port is still held.
    pub fn restart(&mut self) -> std::io::Result<()> {
        assert!(self.child.is_none(), "stop the server first");
        let port = self.port();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.launch(&port) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The server binary for a benchmark: `given`, else the `victor` the same build produced
/// (examples live in `<target>/release/examples/`), else `target/release/victor`.
pub fn server_binary(given: Option<&Path>) -> std::io::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match given {
        Some(path) => vec![path.to_path_buf()],
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("victor")))
            .into_iter()
            .chain([PathBuf::from("target/release/victor")])
            .collect(),
    };
    match candidates.iter().find(|path| path.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(std::io::Error::other(format!(
            "no victor binary at {}: build it with `cargo build --release --bin victor` or pass \
             --server PATH",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
    }
}
