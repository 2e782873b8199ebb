//! PlantUML kept warm: a JVM takes seconds to start and to load PlantUML, so victor keeps
//! `plantuml -pipe` processes running and hands each one diagram at a time. In pipe mode
//! PlantUML renders every `@startuml … @enduml` block it reads and then prints the
//! `-pipedelimitor` text, which is how a reader knows where one SVG ends. Its syntax errors
//! arrive on stderr as `ERROR`, the 0-based line, and the message.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

use super::process::{CLOSED_PROXY, GroupGuard, WorkDir, minimal_env};
use crate::proto::DiagramType;
use crate::render::RenderError;

/// Printed by PlantUML after each diagram.
const DELIMITER: &str = "@@victor-end-of-diagram@@";
/// Kept of a renderer's stderr between two diagrams.
const STDERR_KEPT: usize = 64 * 1024;
/// How long to wait for the error report on stderr once an error SVG has arrived on stdout.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// A diagram ready for the pipe: one `@start… @end…` block, and how many lines were dropped
/// or added before it, to give error lines in the user's numbering.
pub struct Prepared {
    text: String,
    /// Subtract from PlantUML's 1-based line to get the user's (may be negative: a header
    /// line was added).
    line_shift: i64,
}

/// Keeps exactly one diagram block, adding `@startuml`/`@enduml` when there are none (as
/// Kroki does). Several blocks would desynchronise the pipe, so they are refused.
pub fn prepare(source: &str) -> Result<Prepared, RenderError> {
    let source = source.replace("\r\n", "\n");
    let lines: Vec<&str> = source.lines().collect();
    let is = |line: &str, prefix: &str| line.trim_start().to_ascii_lowercase().starts_with(prefix);
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| is(lines[i], "@start"))
        .collect();
    let ends: Vec<usize> = (0..lines.len()).filter(|&i| is(lines[i], "@end")).collect();
    match (starts.as_slice(), ends.as_slice()) {
        ([], []) => Ok(Prepared {
            text: format!("@startuml\n{}\n@enduml\n", lines.join("\n")),
            line_shift: 1,
        }),
        ([start], [end]) if start < end => Ok(Prepared {
            text: format!("{}\n", lines[*start..=*end].join("\n")),
            line_shift: -(*start as i64),
        }),
        ([_], []) => Err(RenderError::syntax(
            DiagramType::Plantuml,
            None,
            "the diagram has a @startuml but no @enduml",
        )),
        _ => Err(RenderError::Invalid(
            "send one diagram per request: this source has several @start…@end blocks".into(),
        )),
    }
}

/// A pool of warm renderers, at most as many as renders may run at once.
pub struct PlantumlPool {
    program: PathBuf,
    safe: bool,
    idle: Mutex<Vec<PipeRenderer>>,
}

impl PlantumlPool {
    pub fn new(program: PathBuf, safe: bool) -> PlantumlPool {
        PlantumlPool {
            program,
            safe,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Starts `count` renderers and has each draw a small diagram, so the first real requests
    /// find a warm JVM.
    pub async fn warm(&self, count: usize, timeout: Duration) {
        let mut started = Vec::new();
        for _ in 0..count {
            match self.spawn() {
                Ok(mut renderer) => {
                    let warmup = prepare("Bob -> Alice : hello").map(|p| p.text);
                    if let Ok(text) = warmup
                        && renderer.render(&text, timeout, usize::MAX).await.is_ok()
                    {
                        started.push(renderer);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start PlantUML");
                    return;
                }
            }
        }
        tracing::info!(renderers = started.len(), "PlantUML warm");
        if let Ok(mut idle) = self.idle.lock() {
            idle.extend(started);
        }
    }

    /// Renders one prepared diagram on an idle renderer, or a new one.
    pub async fn render(
        &self,
        prepared: &Prepared,
        timeout: Duration,
        max_output: usize,
    ) -> Result<String, RenderError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut renderer = match idle {
            Some(renderer) => renderer,
            None => self.spawn().map_err(|e| RenderError::Failed {
                diagram_type: DiagramType::Plantuml,
                message: format!("cannot start {}: {e}", self.program.display()),
            })?,
        };
        match renderer.render(&prepared.text, timeout, max_output).await {
            Ok(Outcome::Svg(svg)) => {
                self.put_back(renderer);
                Ok(svg)
            }
            Ok(Outcome::SyntaxError { line, message }) => {
                self.put_back(renderer);
                let line = line.map(|l| (l as i64 - prepared.line_shift).max(1) as u32);
                Err(RenderError::syntax(DiagramType::Plantuml, line, message))
            }
            // A renderer in an unknown state is dropped, which kills its process group.
            Err(error) => Err(error),
        }
    }

    fn put_back(&self, renderer: PipeRenderer) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(renderer);
        }
    }

    fn spawn(&self) -> std::io::Result<PipeRenderer> {
        let dir = WorkDir::new()?;
        let mut env = minimal_env(dir.path());
        let proxy = CLOSED_PROXY.trim_start_matches("http://");
        let (host, port) = proxy.split_once(':').unwrap_or((proxy, "9"));
        // The JVM ignores proxy variables; these properties send its HTTP to the closed port.
        env.push((
            "JAVA_TOOL_OPTIONS".into(),
            format!(
                "-Djava.awt.headless=true -Dhttp.proxyHost={host} -Dhttp.proxyPort={port} \
                 -Dhttps.proxyHost={host} -Dhttps.proxyPort={port} -Dhttp.nonProxyHosts=localhost"
            )
            .into(),
        ));
        if self.safe {
            // PlantUML releases since 2022 enforce this themselves: defence in depth.
            env.push(("PLANTUML_SECURITY_PROFILE".into(), "SANDBOX".into()));
        }
        let args: Vec<OsString> = [
            "-tsvg",
            "-pipe",
            "-charset",
            "UTF-8",
            "-pipedelimitor",
            DELIMITER,
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let mut child = tokio::process::Command::new(&self.program)
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let group = GroupGuard::new(child.id());
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the renderer's pipes are missing"));
        };
        let errors = Arc::new(Mutex::new(String::new()));
        let collected = errors.clone();
        tokio::spawn(async move {
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
        Ok(PipeRenderer {
            _child: child,
            _group: group,
            stdin,
            stdout,
            pending: Vec::new(),
            errors,
            _dir: dir,
        })
    }
}

enum Outcome {
    Svg(String),
    SyntaxError { line: Option<u32>, message: String },
}

/// One running `plantuml -pipe`. Dropping it kills its process group.
struct PipeRenderer {
    _child: tokio::process::Child,
    _group: GroupGuard,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Bytes read past the last delimiter.
    pending: Vec<u8>,
    errors: Arc<Mutex<String>>,
    _dir: WorkDir,
}

impl PipeRenderer {
    async fn render(
        &mut self,
        text: &str,
        timeout: Duration,
        max_output: usize,
    ) -> Result<Outcome, RenderError> {
        if let Ok(mut errors) = self.errors.lock() {
            errors.clear();
        }
        let exchange = async {
            self.stdin.write_all(text.as_bytes()).await?;
            self.stdin.flush().await?;
            let mut output = std::mem::take(&mut self.pending);
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                if let Some(at) = find(&output, DELIMITER.as_bytes()) {
                    let rest = &output[at + DELIMITER.len()..];
                    self.pending = rest.strip_prefix(b"\n").unwrap_or(rest).to_vec();
                    output.truncate(at);
                    return Ok(Some(output));
                }
                if output.len() > max_output.saturating_add(DELIMITER.len()) {
                    return Ok(None);
                }
                let read = self.stdout.read(&mut chunk).await?;
                if read == 0 {
                    return Err(std::io::Error::other("PlantUML exited"));
                }
                output.extend_from_slice(&chunk[..read]);
            }
        };
        let output = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                return Err(RenderError::Timeout {
                    diagram_type: DiagramType::Plantuml,
                    limit: timeout,
                });
            }
            Ok(Err(e)) => {
                let stderr = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
                return Err(RenderError::Failed {
                    diagram_type: DiagramType::Plantuml,
                    message: format!("{e}: {}", stderr.trim()),
                });
            }
            Ok(Ok(None)) => return Err(RenderError::OutputTooLarge { limit: max_output }),
            Ok(Ok(Some(output))) => output,
        };
        let svg = String::from_utf8_lossy(&output).trim().to_string();
        let drawn_error = error_image(&svg);
        let mut report = self.error_report();
        if report.is_none() && drawn_error.is_some() {
            let deadline = tokio::time::Instant::now() + STDERR_GRACE;
            while report.is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
                report = self.error_report();
            }
        }
        Ok(match (report, drawn_error) {
            (Some((line, message)), _) | (None, Some((line, message))) => {
                Outcome::SyntaxError { line, message }
            }
            (None, None) if !svg.contains("<svg") => Outcome::SyntaxError {
                line: None,
                message: "PlantUML drew no SVG for this diagram".into(),
            },
            (None, None) => Outcome::Svg(svg),
        })
    }

    /// `ERROR`, the 0-based line, then the message lines, as PlantUML writes them to stderr.
    fn error_report(&self) -> Option<(Option<u32>, String)> {
        let errors = self.errors.lock().ok()?;
        let mut lines = errors.lines().skip_while(|l| l.trim() != "ERROR");
        lines.next()?;
        let line = lines
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .map(|l| l + 1);
        let message: Vec<&str> = lines
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "Some diagram description contains errors")
            .collect();
        let message = if message.is_empty() {
            "Syntax Error?".to_string()
        } else {
            message.join(" ")
        };
        Some((line, message))
    }
}

/// PlantUML draws its errors as an image headed `[From string (line N) ]` with the message in
/// red; some (an empty diagram) are reported nowhere else.
fn error_image(svg: &str) -> Option<(Option<u32>, String)> {
    static MARKER: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"\[From string \(line (\d+)\) \]").ok());
    static RED: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r##"fill="#FF0000"[^>]*>([^<]+)</text>"##).ok());
    let line = MARKER
        .as_ref()?
        .captures(svg)?
        .get(1)?
        .as_str()
        .parse()
        .ok();
    let message: Vec<&str> = RED
        .as_ref()
        .map(|red| {
            red.captures_iter(svg)
                .filter_map(|c| c.get(1).map(|m| m.as_str().trim()))
                .collect()
        })
        .unwrap_or_default();
    let message = if message.is_empty() {
        "PlantUML could not draw this diagram".to_string()
    } else {
        super::svg::decode_entities(&message.join(" "))
    };
    Some((line, message))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_block_and_counts_lines() {
        let wrapped = prepare("A -> B").unwrap();
        assert_eq!(wrapped.text, "@startuml\nA -> B\n@enduml\n");
        assert_eq!(wrapped.line_shift, 1);
        let kept = prepare("title\n\n@startuml\nA -> B\n@enduml\ntrailing").unwrap();
        assert_eq!(kept.text, "@startuml\nA -> B\n@enduml\n");
        assert_eq!(kept.line_shift, -2);
        assert!(prepare("@startuml\nA -> B\n").is_err());
        assert!(prepare("@startuml\nA\n@enduml\n@startuml\nB\n@enduml").is_err());
    }

    #[test]
    fn error_images_give_their_line_and_red_message() {
        let svg = r##"<svg><text x="6">[From string (line 2) ]</text><text fill="#FF0000" x="1">Empty description</text></svg>"##;
        assert_eq!(
            error_image(svg),
            Some((Some(2), "Empty description".to_string()))
        );
        assert_eq!(error_image("<svg><text>Alice</text></svg>"), None);
    }
}
