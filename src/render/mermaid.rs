//! Mermaid without a browser, by the pure-Rust `merman` (the renderer Zed uses), which follows
//! Mermaid's own parser, layout and SVG structure.

use std::sync::LazyLock;

use merman::{OperationControl, RenderOutput, RenderRequest, Renderer, SvgRequest};

use crate::proto::DiagramType;
use crate::render::RenderError;

/// One renderer for the process: it holds parsers and themes that need building only once.
static RENDERER: LazyLock<Renderer> = LazyLock::new(Renderer::new);

/// Draws the diagram.
pub fn render(source: &str) -> Result<String, RenderError> {
    let request = RenderRequest::svg(source, OperationControl::new(), SvgRequest::default());
    match RENDERER.render(request) {
        Ok(RenderOutput::Svg(Some(svg))) => Ok(svg.svg().to_string()),
        Ok(_) | Err(merman::RenderError::NoDiagram) => Err(RenderError::syntax(
            DiagramType::Mermaid,
            None,
            "no Mermaid diagram found: the first line names its type (flowchart TD, \
             sequenceDiagram, classDiagram, ...)",
        )),
        Err(merman::RenderError::ResourceLimitExceeded(limit)) => Err(RenderError::LimitExceeded {
            diagram_type: DiagramType::Mermaid,
            message: limit.to_string(),
        }),
        // merman reports its `maxEdges` budget as a parse error of the flowchart grammar; the
        // diagram is valid, only too big, so it is told apart by its message.
        Err(merman::RenderError::Parse(diagnostic))
            if diagnostic.is_resource_limit()
                || diagnostic.to_string().contains("edge limit exceeded") =>
        {
            Err(RenderError::LimitExceeded {
                diagram_type: DiagramType::Mermaid,
                message: diagnostic.to_string(),
            })
        }
        Err(merman::RenderError::Parse(diagnostic)) => {
            let line = diagnostic
                .terminal_diagnostic_details()
                .span
                .map(|span| line_at(source, span.start));
            Err(RenderError::syntax(
                DiagramType::Mermaid,
                line,
                diagnostic.to_string(),
            ))
        }
        Err(other) => Err(RenderError::syntax(
            DiagramType::Mermaid,
            None,
            other.to_string(),
        )),
    }
}

/// The 1-based line holding byte `offset` of `source`.
fn line_at(source: &str, offset: usize) -> u32 {
    let end = offset.min(source.len());
    let newlines = source.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
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
    fn draws_sequence_diagrams() {
        let svg =
            render("sequenceDiagram\n  Alice->>Bob: Hello\n  Bob-->>Alice: Hi back\n").unwrap();
        for label in ["Alice", "Bob", "Hello", "Hi back"] {
            assert!(svg.contains(label), "{label} missing");
        }
    }

    #[test]
    fn syntax_errors_are_errors_with_lines() {
        let error = render("flowchart TD\n  A --> B\n  C -->\n").unwrap_err();
        assert!(matches!(error, RenderError::Syntax { .. }), "{error}");
        let error = render("this is not mermaid").unwrap_err();
        assert!(matches!(error, RenderError::Syntax { .. }), "{error}");
        assert_eq!(line_at("a\nb\nc", 2), 2);
        // merman's edge budget (500): a size limit, not a mistake in the diagram.
        let group: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        let group = group.join(" & ");
        let error = render(&format!("flowchart TD\n  {group} --> {group}\n")).unwrap_err();
        assert!(
            matches!(error, RenderError::LimitExceeded { .. }),
            "{error}"
        );
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }
}
