//! The built-in renderers in processes of their own, kept warm. A renderer running on a
//! thread of the server cannot be stopped (Rust has no way to kill a thread), so a
//! pathological diagram would keep burning a core after its timeout; a `victor render-worker`
//! process runs in its own process group, which the timeout kills like any external tool's.
//! Starting one per diagram costs a few milliseconds (and Mermaid's set-up again each time),
//! so a [`WorkerPool`] keeps workers between diagrams, as the PlantUML pool keeps JVMs.
//!
//! The protocol, on the worker's stdin and stdout, one diagram at a time:
//! - request: a 4-byte big-endian length, then that many bytes: the diagram type's name, a
//!   newline, and the source;
//! - answer: one byte, [`SVG`] (an SVG follows) or [`FAILED`] (a JSON [`Failure`] follows),
//!   a 4-byte big-endian length, then that many bytes.
//!
//! Each request is drawn from its source alone: the renderers keep nothing between diagrams
//! but their parsers and themes, and read and write no files. A worker whose renderer
//! panicked may hold a crate's state half-changed, so it answers and ends. Anything else (an
//! early end, an unknown tag, a length past the output limit, an SVG that is not UTF-8) is a
//! crash, and the server kills that worker.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pool::{Pool, Resident};
use super::{RenderError, draw_builtin, first_lines, install_hint};
use crate::proto::DiagramType;

/// The first argument that makes `victor` a worker.
pub const SUBCOMMAND: &str = "render-worker";

/// The worker's exit code when its stdin is not the protocol.
const USAGE: i32 = 2;

/// The answer's first byte when an SVG follows.
const SVG: u8 = b'S';
/// The answer's first byte when a JSON [`Failure`] follows.
const FAILED: u8 = b'F';

/// The largest request a worker reads: far above any payload limit, and small enough that a
/// corrupted length cannot make it allocate without bound.
const MAX_REQUEST: usize = 64 << 20;

/// How long a worker whose pipe broke gets to exit, so that its exit status can be told.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// Why a worker drew nothing, as it crosses the pipe. Only what a built-in renderer can say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    Syntax {
        line: Option<u32>,
        message: String,
    },
    Limit {
        message: String,
    },
    Invalid {
        message: String,
    },
    /// The renderer gave up on a valid diagram (its crate panicked).
    Unsupported,
}

impl Failure {
    fn of(error: RenderError) -> Failure {
        match error {
            RenderError::Syntax { line, message, .. } => Failure::Syntax { line, message },
            RenderError::LimitExceeded { message, .. } => Failure::Limit { message },
            RenderError::Unsupported { .. } => Failure::Unsupported,
            other => Failure::Invalid {
                message: other.to_string(),
            },
        }
    }

    /// The error the worker's failure stands for, in the server.
    pub fn into_error(self, diagram_type: DiagramType) -> RenderError {
        match self {
            Failure::Syntax { line, message } => RenderError::syntax(diagram_type, line, message),
            Failure::Limit { message } => RenderError::LimitExceeded {
                diagram_type,
                message,
            },
            Failure::Invalid { message } => RenderError::Invalid(message),
            Failure::Unsupported => RenderError::Unsupported {
                diagram_type,
                install: install_hint(diagram_type).1,
            },
        }
    }
}

/// `victor render-worker`: draws the diagrams that arrive on stdin, one after another, until
/// stdin ends, and gives the process exit code. It runs in the worker process only, so
/// blocking and the renderers' panics stay there.
pub fn main() -> i32 {
    // The server gone, its workers go too, even one in the middle of a long render (stdin's
    // end would only be seen after it). The signal comes when the thread that started this
    // process ends: one of the server's runtime threads, which live as long as it does.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // A crate's panic is an answer (Unsupported), not something to print.
    std::panic::set_hook(Box::new(|_| {}));
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    loop {
        let request = match read_request(&mut input) {
            Ok(Some(request)) => request,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("victor {SUBCOMMAND}: {e}");
                return USAGE;
            }
        };
        let (answer, panicked) = draw(&request);
        let (tag, body) = match answer {
            Ok(svg) => (SVG, svg.into_bytes()),
            Err(failure) => (
                FAILED,
                serde_json::to_vec(&failure)
                    .unwrap_or_else(|_| b"{\"kind\":\"unsupported\"}".to_vec()),
            ),
        };
        // The server gone is nothing to report to anybody.
        if write_answer(&mut output, tag, &body).is_err() || panicked {
            return 0;
        }
    }
}

/// The next request's bytes; `None` at the end of the input.
fn read_request(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_REQUEST {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a request of {length} bytes is past the {MAX_REQUEST} a worker reads"),
        ));
    }
    let mut request = vec![0u8; length];
    input.read_exact(&mut request)?;
    Ok(Some(request))
}

fn write_answer(output: &mut impl Write, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    output.write_all(&[tag])?;
    output.write_all(&length.to_be_bytes())?;
    output.write_all(body)?;
    output.flush()
}

/// Draws one request (`TYPE\nsource`); says too whether the renderer panicked.
fn draw(request: &[u8]) -> (Result<String, Failure>, bool) {
    let invalid = |message: &str| {
        Err(Failure::Invalid {
            message: message.into(),
        })
    };
    let (name, source) = match request.iter().position(|&b| b == b'\n') {
        Some(at) => (&request[..at], &request[at + 1..]),
        None => return (invalid("the request names no diagram type"), false),
    };
    let Some(diagram_type) = std::str::from_utf8(name)
        .ok()
        .and_then(|name| name.parse::<DiagramType>().ok())
    else {
        return (invalid("the request names an unknown diagram type"), false);
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return (invalid("the diagram source must be UTF-8 text"), false);
    };
    match std::panic::catch_unwind(|| draw_builtin(diagram_type, source)) {
        Ok(Ok(svg)) => (Ok(svg), false),
        Ok(Err(error)) => (Err(Failure::of(error)), false),
        Err(_) => (Err(Failure::Unsupported), true),
    }
}

/// Warm render workers, at most `size` of them ([`Pool`] keeps the bound), started when a
/// render finds none idle. One whose render times out is killed with its process group; one
/// that crashes or answers garbage is killed too; the next render starts a new one.
pub struct WorkerPool {
    program: PathBuf,
    pool: Pool<Worker>,
}

impl WorkerPool {
    /// Workers running `program render-worker`; `program` is this very binary.
    pub fn new(program: PathBuf, size: usize) -> WorkerPool {
        WorkerPool {
            program,
            pool: Pool::new(size),
        }
    }

    /// Draws one diagram in a worker. `timeout` bounds the whole: the wait for a worker, its
    /// start, and the render; past it the worker is dropped, which kills its process group.
    pub async fn render(
        &self,
        diagram_type: DiagramType,
        source: &str,
        timeout: Duration,
        max_output: usize,
    ) -> Result<String, RenderError> {
        let work = async {
            let held = self
                .pool
                .checkout(timeout)
                .await
                .map_err(|unavailable| unavailable.into_error(diagram_type, timeout))?;
            // One that died while idle (killed from outside) is dropped, not handed a diagram.
            let idle = std::iter::from_fn(|| held.idle())
                .find_map(|mut worker| worker.is_running().then_some(worker));
            let mut worker = match idle {
                Some(worker) => worker,
                None => self.spawn().map_err(|e| RenderError::Failed {
                    diagram_type,
                    message: format!("cannot run {}: {e}", self.program.display()),
                })?,
            };
            match worker.exchange(diagram_type, source, max_output).await {
                // The worker of a panicked renderer ends after its answer: not put back.
                Ok(Err(Failure::Unsupported)) => Err(Failure::Unsupported.into_error(diagram_type)),
                Ok(answer) => {
                    held.put_back(worker);
                    answer.map_err(|failure| failure.into_error(diagram_type))
                }
                Err(broken) => Err(worker.crash_error(diagram_type, broken, max_output).await),
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(RenderError::Timeout {
                diagram_type,
                limit: timeout,
            }))
    }

    /// Stops every worker (the server is stopping).
    pub fn close(&self) {
        self.pool.close();
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let process = self.pool.start(
            "render workers",
            &self.program,
            &[SUBCOMMAND.into()],
            Vec::new(),
        )?;
        Ok(Worker { process })
    }
}

/// Why a worker's answer could not be had.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error("the render worker's pipe broke: {0}")]
    Ended(std::io::Error),
    #[error("the render worker's answer is past the output limit")]
    TooLarge,
    #[error("{0}")]
    Unreadable(String),
}

/// One running `victor render-worker`. Dropping it kills its process group.
struct Worker {
    process: Resident,
}

impl Worker {
    fn is_running(&mut self) -> bool {
        matches!(self.process.child.try_wait(), Ok(None))
    }

    /// Sends one diagram and reads its answer: the SVG, or why there is none.
    async fn exchange(
        &mut self,
        diagram_type: DiagramType,
        source: &str,
        max_output: usize,
    ) -> Result<Result<String, Failure>, Broken> {
        let name = diagram_type.as_str().as_bytes();
        let length = u32::try_from(name.len() + 1 + source.len())
            .map_err(|_| Broken::Unreadable("the diagram is too large for a worker".into()))?;
        let mut request = Vec::with_capacity(4 + length as usize);
        request.extend_from_slice(&length.to_be_bytes());
        request.extend_from_slice(name);
        request.push(b'\n');
        request.extend_from_slice(source.as_bytes());
        self.process
            .stdin
            .write_all(&request)
            .await
            .map_err(Broken::Ended)?;
        self.process.stdin.flush().await.map_err(Broken::Ended)?;
        let tag = self.process.stdout.read_u8().await.map_err(Broken::Ended)?;
        let length = self
            .process
            .stdout
            .read_u32()
            .await
            .map_err(Broken::Ended)? as usize;
        if length > max_output {
            return Err(Broken::TooLarge);
        }
        let mut body = vec![0u8; length];
        self.process
            .stdout
            .read_exact(&mut body)
            .await
            .map_err(Broken::Ended)?;
        match tag {
            SVG => String::from_utf8(body).map(Ok).map_err(|_| {
                Broken::Unreadable("the render worker's output is not UTF-8 text".into())
            }),
            FAILED => serde_json::from_slice(&body).map(Err).map_err(|e| {
                Broken::Unreadable(format!("the render worker's answer is unreadable: {e}"))
            }),
            other => Err(Broken::Unreadable(format!(
                "the render worker's answer is unreadable: it starts with byte {other}"
            ))),
        }
    }

    /// The error of a render whose worker broke; the worker is dropped (killed) after.
    async fn crash_error(
        mut self,
        diagram_type: DiagramType,
        broken: Broken,
        max_output: usize,
    ) -> RenderError {
        let message = match broken {
            Broken::TooLarge => return RenderError::OutputTooLarge { limit: max_output },
            Broken::Unreadable(message) => message,
            Broken::Ended(e) => {
                let ended = match tokio::time::timeout(EXIT_GRACE, self.process.child.wait()).await
                {
                    Ok(Ok(status)) => format!("the render worker ended with {status}"),
                    _ => Broken::Ended(e).to_string(),
                };
                let stderr = self.process.errors.at_end(EXIT_GRACE).await;
                format!("{ended}: {}", first_lines(&stderr))
            }
        };
        RenderError::Failed {
            diagram_type,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_cross_the_pipe_and_come_back_as_the_same_errors() {
        let syntax = RenderError::syntax(DiagramType::Mermaid, Some(3), "unexpected end");
        let json = serde_json::to_string(&Failure::of(syntax.clone())).unwrap();
        let back: Failure = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_error(DiagramType::Mermaid), syntax);
        let limit = RenderError::LimitExceeded {
            diagram_type: DiagramType::Mermaid,
            message: "too many edges".into(),
        };
        assert_eq!(
            Failure::of(limit.clone()).into_error(DiagramType::Mermaid),
            limit
        );
        assert!(matches!(
            Failure::Unsupported.into_error(DiagramType::Graphviz),
            RenderError::Unsupported { .. }
        ));
    }

    /// A stand-in worker program: a shell script that notes its pid, then runs `body`.
    fn fake_worker(dir: &std::path::Path, body: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let pids = dir.join("pids");
        let program = dir.join("victor");
        let script = format!("#!/bin/sh\necho $$ >> {}\n{body}\n", pids.display());
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        (program, pids)
    }

    fn started(pids: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(pids)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn is_running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
    }

    async fn render_with(pool: &WorkerPool) -> Result<String, RenderError> {
        pool.render(
            DiagramType::Graphviz,
            "digraph { a -> b }",
            Duration::from_secs(10),
            1 << 20,
        )
        .await
    }

    #[tokio::test]
    async fn a_worker_answering_garbage_is_killed_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // Reads a little of the request, answers with an unknown tag, then lingers.
        let (program, pids) = fake_worker(
            dir.path(),
            r"head -c 1 > /dev/null; printf 'Z\000\000\000\002hi'; sleep 30",
        );
        let pool = WorkerPool::new(program, 1);
        for round in 1..=2 {
            let error = render_with(&pool).await.unwrap_err();
            assert!(
                matches!(&error, RenderError::Failed { message, .. } if message.contains("unreadable")),
                "{error:?}"
            );
            assert_eq!(
                started(&pids).len(),
                round,
                "a garbled worker was used again"
            );
        }
        for pid in started(&pids) {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while is_running(&pid) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "worker {pid} lives on"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test]
    async fn a_crashed_worker_gives_its_exit_and_stderr_and_the_next_render_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (program, pids) = fake_worker(dir.path(), "echo 'worker: out of luck' >&2; exit 7");
        let pool = WorkerPool::new(program, 1);
        for round in 1..=2 {
            let error = render_with(&pool).await.unwrap_err();
            let RenderError::Failed { message, .. } = &error else {
                panic!("{error:?}");
            };
            assert!(
                message.contains("render worker ended with exit status: 7: worker: out of luck"),
                "{message}"
            );
            assert_eq!(started(&pids).len(), round);
        }
        // A closed pool starts nothing more.
        pool.close();
        assert!(matches!(
            render_with(&pool).await,
            Err(RenderError::Invalid(_))
        ));
        assert_eq!(started(&pids).len(), 2);
    }
}
