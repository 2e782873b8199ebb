//! The built-in renderers in a process of their own: `victor render-worker TYPE` reads one
//! diagram on stdin and writes its SVG on stdout. A renderer running on a thread of the server
//! cannot be stopped (Rust has no way to kill a thread), so a pathological diagram would keep
//! burning a core after its timeout; a worker process runs in its own process group, which the
//! timeout kills like any external tool's.
//!
//! The protocol: exit 0 and the SVG on stdout, or exit [`FAILED`] and one JSON [`Failure`] on
//! stdout. Anything else (a signal, another code) is a crash.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::{RenderError, draw_builtin, install_hint};
use crate::proto::DiagramType;

/// The first argument that makes `victor` a worker.
pub const SUBCOMMAND: &str = "render-worker";

/// The worker's exit code when the diagram could not be drawn (the reason is on stdout).
pub const FAILED: i32 = 3;

/// The worker's exit code when it was called wrongly (no type, or an unknown one).
const USAGE: i32 = 2;

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

/// `victor render-worker TYPE`: draws what arrives on stdin and gives the process exit code.
/// It runs in the worker process only, so blocking and the renderers' panics stay there.
pub fn main(diagram_type: Option<std::ffi::OsString>) -> i32 {
    let Some(diagram_type) = diagram_type
        .as_deref()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse::<DiagramType>().ok())
    else {
        eprintln!("usage: victor {SUBCOMMAND} graphviz|mermaid|drawio < diagram > svg");
        return USAGE;
    };
    serve_stdio(diagram_type)
}

fn serve_stdio(diagram_type: DiagramType) -> i32 {
    // A crate's panic is an answer (Unsupported), not something to print.
    std::panic::set_hook(Box::new(|_| {}));
    let mut source = String::new();
    let outcome = match std::io::stdin().read_to_string(&mut source) {
        Err(_) => Err(Failure::Invalid {
            message: "the diagram source must be UTF-8 text".into(),
        }),
        Ok(_) => match std::panic::catch_unwind(|| draw_builtin(diagram_type, &source)) {
            Ok(Ok(svg)) => Ok(svg),
            Ok(Err(error)) => Err(Failure::of(error)),
            Err(_) => Err(Failure::Unsupported),
        },
    };
    let mut stdout = std::io::stdout().lock();
    let (bytes, code) = match outcome {
        Ok(svg) => (svg.into_bytes(), 0),
        Err(failure) => (
            serde_json::to_vec(&failure).unwrap_or_else(|_| b"{\"kind\":\"unsupported\"}".to_vec()),
            FAILED,
        ),
    };
    // The server gone is nothing to report to anybody.
    let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
    code
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
}
