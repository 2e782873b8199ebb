//! PlantUML kept warm: a JVM takes seconds to start and to load PlantUML, so victor keeps
//! `plantuml -pipe` processes running and hands each one diagram at a time. In pipe mode
//! PlantUML renders every `@startuml … @enduml` block it reads and then prints the
//! `-pipedelimitor` text, which is how a reader knows where one SVG ends. Its syntax errors
//! arrive on stderr as `ERROR`, the 0-based line, and the message.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pool::{Pool, Resident};
use super::process::CLOSED_PROXY;
use crate::proto::DiagramType;
use crate::render::RenderError;

/// Printed by PlantUML after each diagram.
const DELIMITER: &str = "@@victor-end-of-diagram@@";
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

/// Warm `plantuml -pipe` processes, at most `size` of them (each JVM costs hundreds of
/// megabytes; [`Pool`] keeps the bound).
pub struct PlantumlPool {
    program: PathBuf,
    safe: bool,
    pool: Pool<PipeRenderer>,
}

impl PlantumlPool {
    pub fn new(program: PathBuf, safe: bool, size: usize) -> PlantumlPool {
        PlantumlPool {
            program,
            safe,
            pool: Pool::new(size),
        }
    }

    /// Fills the pool: starts renderers up to its size and has each new one draw a small
    /// diagram, so the first real requests find a warm JVM. Renders wait meanwhile (they
    /// would otherwise start JVMs of their own, past the bound).
    pub async fn warm(&self, timeout: Duration) {
        let Ok(text) = prepare("Bob -> Alice : hello").map(|p| p.text) else {
            return;
        };
        let Some(permits) = self.pool.checkout_all().await else {
            return;
        };
        // With every permit held, all living renderers are idle.
        let ready = self.pool.live();
        let mut starting = Vec::new();
        for _ in ready..self.pool.size() {
            match self.spawn() {
                Ok(renderer) => starting.push(renderer),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start PlantUML");
                    break;
                }
            }
        }
        let warmed = futures_util::future::join_all(starting.into_iter().map(|mut renderer| {
            let text = &text;
            async move {
                // One that cannot draw is dropped, which kills it.
                let drawn = renderer.render(text, timeout, usize::MAX).await;
                drawn.is_ok().then_some(renderer)
            }
        }))
        .await;
        let warmed: Vec<PipeRenderer> = warmed.into_iter().flatten().collect();
        tracing::info!(renderers = ready + warmed.len(), "PlantUML warm");
        for renderer in warmed {
            self.pool.put_back(renderer);
        }
        drop(permits);
    }

    /// Renders one prepared diagram on an idle renderer, or a new one when none is idle and
    /// the pool is not full. `timeout` bounds the wait for a renderer and the render, each.
    pub async fn render(
        &self,
        prepared: &Prepared,
        timeout: Duration,
        max_output: usize,
    ) -> Result<String, RenderError> {
        let held = self
            .pool
            .checkout(timeout)
            .await
            .map_err(|unavailable| unavailable.into_error(DiagramType::Plantuml, timeout))?;
        let mut renderer = match held.idle() {
            Some(renderer) => renderer,
            None => self.spawn().map_err(|e| RenderError::Failed {
                diagram_type: DiagramType::Plantuml,
                message: format!("cannot start {}: {e}", self.program.display()),
            })?,
        };
        let outcome = renderer.render(&prepared.text, timeout, max_output).await;
        // A renderer in an unknown state is dropped, which kills its process group.
        if outcome.is_ok() {
            held.put_back(renderer);
        }
        match outcome? {
            Outcome::Svg(svg) => Ok(svg),
            Outcome::SyntaxError { line, message } => {
                let line = line.map(|l| (l as i64 - prepared.line_shift).max(1) as u32);
                Err(RenderError::syntax(DiagramType::Plantuml, line, message))
            }
        }
    }

    /// Stops every renderer (the server is stopping).
    pub fn close(&self) {
        self.pool.close();
    }

    fn spawn(&self) -> std::io::Result<PipeRenderer> {
        let proxy = CLOSED_PROXY.trim_start_matches("http://");
        let (host, port) = proxy.split_once(':').unwrap_or((proxy, "9"));
        // The JVM ignores proxy variables; these properties send its HTTP to the closed port.
        let mut env: Vec<(OsString, OsString)> = vec![(
            "JAVA_TOOL_OPTIONS".into(),
            format!(
                "-Djava.awt.headless=true -Dhttp.proxyHost={host} -Dhttp.proxyPort={port} \
                 -Dhttps.proxyHost={host} -Dhttps.proxyPort={port} -Dhttp.nonProxyHosts=localhost"
            )
            .into(),
        )];
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
        let process = self
            .pool
            .start("PlantUML renderers", &self.program, &args, env)?;
        Ok(PipeRenderer {
            process,
            pending: Vec::new(),
        })
    }
}

enum Outcome {
    Svg(String),
    SyntaxError { line: Option<u32>, message: String },
}

/// One running `plantuml -pipe`. Dropping it kills its process group.
struct PipeRenderer {
    process: Resident,
    /// Bytes read past the last delimiter.
    pending: Vec<u8>,
}

impl PipeRenderer {
    async fn render(
        &mut self,
        text: &str,
        timeout: Duration,
        max_output: usize,
    ) -> Result<Outcome, RenderError> {
        self.process.errors.clear();
        let exchange = async {
            self.process.stdin.write_all(text.as_bytes()).await?;
            self.process.stdin.flush().await?;
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
                let read = self.process.stdout.read(&mut chunk).await?;
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
                let stderr = self.process.errors.text();
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
        let errors = self.process.errors.text();
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

    /// A stand-in `plantuml -pipe`: notes its pid, then answers each diagram after a while,
    /// with the delimiter it was given (its 6th argument).
    fn fake_plantuml(dir: &std::path::Path) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let pids = dir.join("pids");
        let program = dir.join("plantuml");
        let script = format!(
            "#!/bin/sh\necho $$ >> {}\nwhile IFS= read -r line; do\n  case \"$line\" in\n    \
             @end*) sleep 0.05; printf '<svg xmlns=\"http://www.w3.org/2000/svg\"><text>ok</text></svg>\\n%s\\n' \"$6\" ;;\n  \
             esac\ndone\n",
            pids.display()
        );
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        (program, pids)
    }

    #[tokio::test]
    async fn the_pool_never_runs_more_renderers_than_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (program, pids) = fake_plantuml(dir.path());
        let pool = PlantumlPool::new(program, true, 2);
        let prepared = prepare("A -> B").unwrap();
        let timeout = Duration::from_secs(30);
        // Warming and eight renders at once, with nothing else limiting them.
        let renders = (0..8).map(|_| pool.render(&prepared, timeout, 1 << 20));
        let ((), answers) =
            tokio::join!(pool.warm(timeout), futures_util::future::join_all(renders));
        for answer in answers {
            assert!(answer.unwrap().contains("ok"));
        }
        let started = std::fs::read_to_string(&pids).unwrap().lines().count();
        assert!(
            (1..=2).contains(&started),
            "{started} renderers were started for a pool of 2"
        );
        assert_eq!(pool.pool.live(), started);
        // Warm again: the pool is full, so nothing more starts.
        pool.warm(timeout).await;
        assert_eq!(std::fs::read_to_string(&pids).unwrap().lines().count(), 2);
        assert_eq!(pool.pool.live(), 2);
    }
}
