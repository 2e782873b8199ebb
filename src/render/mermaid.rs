//! Mermaid without a browser, by the pure-Rust `mermaid-rs-renderer`.

use std::sync::LazyLock;

use mermaid_rs_renderer::RenderOptions;
use regex::Regex;

use crate::proto::DiagramType;
use crate::render::RenderError;

/// Draws the diagram. Text is measured with calibrated widths rather than system fonts: the
/// result does not depend on the fonts installed, and nothing is read from or written to disk.
pub fn render(source: &str) -> Result<String, RenderError> {
    let mut options = RenderOptions::mermaid_default();
    options.layout.fast_text_metrics = true;
    mermaid_rs_renderer::render_strict(source, options).map_err(|error| {
        let message = error.to_string();
        RenderError::syntax(DiagramType::Mermaid, line_of(&message), message)
    })
}

/// The line a message names: `line 3`, `at 3:7`.
fn line_of(message: &str) -> Option<u32> {
    static LINE: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"(?:line (\d+)|at (\d+):\d+)").ok());
    let captures = LINE.as_ref()?.captures(message)?;
    captures
        .get(1)
        .or(captures.get(2))
        .and_then(|m| m.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_flowcharts_with_subgraphs_and_labels() {
        let svg = render(
            "flowchart LR\n  subgraph Cloud\n    api[API server] -->|queries| db[(Database)]\n  end\n  user((User)) --> api\n",
        )
        .unwrap();
        for label in ["Cloud", "API server", "Database", "queries", "User"] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn syntax_errors_are_errors_with_lines() {
        let error = render("flowchart TD\n  A --> B\n  subgraph X\n  C --> D\n").unwrap_err();
        assert!(matches!(error, RenderError::Syntax { .. }), "{error}");
        assert_eq!(line_of("unclosed subgraph opened at line 3"), Some(3));
        assert_eq!(line_of("unexpected token 'x' at 4:2; expected y"), Some(4));
    }
}
