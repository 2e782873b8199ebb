//! Running a diagram tool: its arguments only (never a shell), a private temporary working
//! directory, a minimal environment, its own process group, and that whole group killed when
//! the render times out, its output grows past the limit, or the request goes away.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

/// A directory of its own for one tool run (mode 0700), removed when dropped.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn new() -> std::io::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!("victor-render-{}", uuid::Uuid::now_v7()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Kills a process group when dropped, unless told it already ended. A render whose request
/// is dropped halfway (the client hung up, the timeout fired) leaves nothing running.
pub struct GroupGuard {
    group: Option<Pid>,
}

impl GroupGuard {
    /// Guards the group led by `pid`; a pid of 0 (no process) guards nothing, since signalling
    /// group 0 would hit victor's own group.
    pub fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard {
            group: pid
                .filter(|&pid| pid > 0)
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        }
    }

    pub fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The environment a tool gets: only what finding programs, fonts and a home needs, and proxy
/// settings that send any web request to a closed port on loopback. Tools that honour them
/// (Go's HTTP client in d2, the JVM, Chromium) then reach nothing beyond this machine.
pub fn minimal_env(home: &Path) -> Vec<(OsString, OsString)> {
    env_from(home, |name| std::env::var_os(name))
}

/// Names a tool may get from the server's environment: nothing else of it reaches a tool
/// (no keys, no proxy of the server's, no `LD_PRELOAD`).
const PASSED_THROUGH: [&str; 4] = ["PATH", "JAVA_HOME", "FONTCONFIG_PATH", "FONTCONFIG_FILE"];

/// The proxy variables tools read, each set to [`CLOSED_PROXY`].
const PROXIES: [&str; 5] = [
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];
/// Where the proxy is not used: loopback, which tools may reach.
const NO_PROXIES: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// [`minimal_env`] over any environment, `server_var` reading the server's.
fn env_from(
    home: &Path,
    server_var: impl Fn(&str) -> Option<OsString>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("HOME".into(), home.into()),
        ("TMPDIR".into(), home.into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
    ];
    for name in PASSED_THROUGH {
        if let Some(value) = server_var(name) {
            env.push((name.into(), value));
        }
    }
    for name in PROXIES {
        env.push((name.into(), CLOSED_PROXY.into()));
    }
    for name in NO_PROXIES {
        env.push((name.into(), "localhost,127.0.0.1,::1".into()));
    }
    env
}

/// A proxy address nothing listens on: requests through it fail at once.
pub const CLOSED_PROXY: &str = "http://127.0.0.1:9";

/// What a finished tool run gave.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The first bytes of its stderr, for error messages.
    pub stderr: String,
}

/// Why a tool run gave no result.
#[derive(Debug)]
pub enum RunError {
    Spawn(std::io::Error),
    Timeout,
    OutputTooLarge,
    Io(std::io::Error),
}

/// Most of a tool's stderr kept for its error message.
const STDERR_KEPT: usize = 64 * 1024;

/// One run of a tool to its end.
pub struct ToolRun<'a> {
    pub program: &'a Path,
    pub args: Vec<OsString>,
    pub stdin: &'a [u8],
    pub dir: &'a WorkDir,
    pub env: Vec<(OsString, OsString)>,
    pub timeout: Duration,
    pub max_output: usize,
}

impl ToolRun<'_> {
    pub async fn run(self) -> Result<Finished, RunError> {
        let Piped {
            mut child,
            mut group,
            mut stdin,
            stdout,
            stderr,
        } = spawn_piped(self.program, &self.args, self.env, self.dir).map_err(RunError::Spawn)?;
        let input = self.stdin.to_vec();
        let max_output = self.max_output;
        let work = async move {
            let feed = async move {
                // A tool that exits without reading all of it is not an error here.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
                Ok::<(), RunError>(())
            };
            let read_out = read_limited(stdout, max_output);
            let read_err = async move {
                let (bytes, _) = read_up_to(stderr, STDERR_KEPT).await;
                Ok::<Vec<u8>, RunError>(bytes)
            };
            let ((), stdout, stderr) = tokio::try_join!(feed, read_out, read_err)?;
            let status = child.wait().await.map_err(RunError::Io)?;
            Ok(Finished {
                status,
                stdout,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        let outcome = match tokio::time::timeout(self.timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RunError::Timeout),
        };
        // Whatever the tool left behind in its group (a browser, a JVM's helpers) goes too.
        group.kill();
        outcome
    }
}

/// A tool started with its three pipes, in its own process group, which `group` kills.
pub struct Piped {
    pub child: tokio::process::Child,
    pub group: GroupGuard,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Starts `program` with its arguments only (no shell), `env` as its whole environment, in
/// `dir`, in a process group of its own, killed when its handle is dropped.
pub fn spawn_piped(
    program: &Path,
    args: &[OsString],
    env: Vec<(OsString, OsString)>,
    dir: &WorkDir,
) -> std::io::Result<Piped> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = GroupGuard::new(child.id());
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("the tool's pipes are missing"));
    };
    Ok(Piped {
        child,
        group,
        stdin,
        stdout,
        stderr,
    })
}

/// The first [`STDERR_KEPT`] bytes of a long-running tool's stderr, collected line by line in
/// the background, for the error message of whichever render goes wrong.
pub struct StderrTail {
    text: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl StderrTail {
    pub fn start(stderr: ChildStderr) -> StderrTail {
        let text = Arc::new(Mutex::new(String::new()));
        let collected = text.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut text) = collected.lock()
                    && text.len() < STDERR_KEPT
                {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        StderrTail { text, reader }
    }

    /// What has arrived so far.
    pub fn text(&self) -> String {
        self.text
            .lock()
            .map(|text| text.clone())
            .unwrap_or_default()
    }

    /// Forgets what has arrived, before the next diagram.
    pub fn clear(&self) {
        if let Ok(mut text) = self.text.lock() {
            text.clear();
        }
    }

    /// All of it, once the tool has ended: waits up to `grace` for the pipe's end, since the
    /// last lines of a tool that just died may not have been read yet.
    pub async fn at_end(&mut self, grace: Duration) -> String {
        let _ = tokio::time::timeout(grace, &mut self.reader).await;
        self.text()
    }
}

/// Reads all of a pipe, failing once it passes `limit` bytes.
async fn read_limited<R: AsyncRead + Unpin>(pipe: R, limit: usize) -> Result<Vec<u8>, RunError> {
    let (bytes, overflowed) = read_up_to(pipe, limit).await;
    if overflowed {
        Err(RunError::OutputTooLarge)
    } else {
        Ok(bytes)
    }
}

/// Reads a pipe to its end, keeping at most `limit` bytes; says whether there was more.
async fn read_up_to<R: AsyncRead + Unpin>(mut pipe: R, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => return (kept, false),
            Ok(n) => {
                if kept.len() + n > limit {
                    let room = limit - kept.len();
                    kept.extend_from_slice(&chunk[..room]);
                    return (kept, true);
                }
                kept.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The absolute path of `program` on the PATH, when it is an executable file there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_get_an_allowlist_and_never_the_servers_proxy_or_secrets() {
        let server: std::collections::HashMap<&str, &str> = [
            ("PATH", "/usr/local/bin:/usr/bin"),
            ("JAVA_HOME", "/usr/lib/jvm/default"),
            ("HTTP_PROXY", "http://proxy.corp.example:3128"),
            ("https_proxy", "http://proxy.corp.example:3128"),
            ("NO_PROXY", "*"),
            ("VICTOR_API_KEY", "secret-key"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("JAVA_TOOL_OPTIONS", "-javaagent:/tmp/evil.jar"),
        ]
        .into_iter()
        .collect();
        let env = env_from(Path::new("/tmp/work"), |name| {
            server.get(name).map(|value| OsString::from(*value))
        });
        let get = |name: &str| {
            let found: Vec<&OsString> = env
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v)
                .collect();
            assert!(found.len() <= 1, "{name} is set twice");
            found.first().map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PATH").as_deref(), Some("/usr/local/bin:/usr/bin"));
        assert_eq!(get("JAVA_HOME").as_deref(), Some("/usr/lib/jvm/default"));
        assert_eq!(get("HOME").as_deref(), Some("/tmp/work"));
        for proxy in PROXIES {
            assert_eq!(get(proxy).as_deref(), Some(CLOSED_PROXY), "{proxy}");
        }
        assert_eq!(get("NO_PROXY").as_deref(), Some("localhost,127.0.0.1,::1"));
        for secret in [
            "VICTOR_API_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "LD_PRELOAD",
            "JAVA_TOOL_OPTIONS",
        ] {
            assert_eq!(get(secret), None, "{secret} reached the tool");
        }
        let own = ["HOME", "TMPDIR", "LANG", "LC_ALL"];
        for (name, _) in &env {
            let name = name.to_string_lossy();
            assert!(
                [&own[..], &PROXIES, &NO_PROXIES, &PASSED_THROUGH]
                    .iter()
                    .any(|names| names.contains(&name.as_ref())),
                "{name} is not on the allowlist"
            );
        }
    }
}
