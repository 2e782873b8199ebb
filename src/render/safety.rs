//! Safe mode: what a diagram may not ask a renderer to do, checked before any renderer sees
//! it. Each diagram language has its own ways to read a file or fetch a URL; every one of them
//! found here is refused with a message that says exactly what, where, and how to allow it.

use crate::proto::DiagramType;
use crate::render::RenderError;
use crate::render::dot::{TokenKind, tokenize};

/// Refuses what safe mode forbids in this diagram.
pub fn check(diagram_type: DiagramType, source: &str) -> Result<(), RenderError> {
    match diagram_type {
        DiagramType::Plantuml => check_plantuml(source),
        DiagramType::Graphviz => check_graphviz(source),
        DiagramType::D2 => check_d2(source),
        DiagramType::Drawio => check_drawio(source),
        // Mermaid has no file or include syntax; mmdc's browser runs with the network closed.
        DiagramType::Mermaid => Ok(()),
    }
}

/// PlantUML's preprocessor reads files and URLs: `!include` and its kin, `!import`,
/// `%load_json`, `<img:…>` and `!theme … from`. Only the standard library (`!include <…>`) is
/// allowed, since it ships inside PlantUML.
fn check_plantuml(source: &str) -> Result<(), RenderError> {
    for (index, line) in source.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let lower = trimmed.to_ascii_lowercase();
        if let Some(rest) = lower
            .strip_prefix("!include")
            .or(lower.strip_prefix("!import"))
        {
            let directive = lower
                .split_whitespace()
                .next()
                .unwrap_or("!include")
                .to_string();
            let argument = rest
                .trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_')
                .trim();
            let standard_library = directive.starts_with("!include")
                && directive != "!includeurl"
                && argument.starts_with('<')
                && argument.ends_with('>')
                && !argument.contains("..");
            if !standard_library {
                return Err(RenderError::refused(format!(
                    "line {number}: `{}` reads a file or URL (only PlantUML's standard library, \
                     `!include <name/file>`, is allowed)",
                    trimmed.trim_end()
                )));
            }
        }
        if lower.starts_with("!theme") && lower.contains(" from ") {
            return Err(RenderError::refused(format!(
                "line {number}: `{}` loads a theme from a file or URL (built-in themes are \
                 allowed)",
                trimmed.trim_end()
            )));
        }
        for (needle, what) in [
            ("%load_json", "reads a file or URL"),
            ("<img:", "embeds a file or URL"),
            ("<img ", "embeds a file or URL"),
            ("%getenv", "reads the server's environment"),
        ] {
            if lower.contains(needle) {
                return Err(RenderError::refused(format!(
                    "line {number}: `{}` {what}",
                    needle.trim()
                )));
            }
        }
    }
    Ok(())
}

/// Graphviz reads local files for `image`, `shapefile` and `imagepath`, and for `<IMG>` in
/// HTML labels.
fn check_graphviz(source: &str) -> Result<(), RenderError> {
    let tokens = tokenize(source)?;
    for (index, token) in tokens.iter().enumerate() {
        match &token.kind {
            TokenKind::Id(name)
                if matches!(
                    name.to_ascii_lowercase().as_str(),
                    "image" | "shapefile" | "imagepath" | "fontpath"
                ) && tokens.get(index + 1).map(|t| &t.kind) == Some(&TokenKind::Equals) =>
            {
                return Err(RenderError::refused(format!(
                    "line {}: the `{name}` attribute makes Graphviz read a local file",
                    token.line
                )));
            }
            TokenKind::Html(html) if html.to_ascii_lowercase().contains("<img") => {
                return Err(RenderError::refused(format!(
                    "line {}: an <IMG> in an HTML label makes Graphviz read a local file",
                    token.line
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// D2 fetches or reads icons and images (`icon:`, `shape: image`), imports other files
/// (`@file`, `...@file`), and markdown images.
fn check_d2(source: &str) -> Result<(), RenderError> {
    for (index, line) in source.lines().enumerate() {
        let number = index + 1;
        let code = strip_d2_comment(line);
        let lower = code.to_ascii_lowercase();
        let mentions = |key: &str| {
            lower
                .match_indices(key)
                .any(|(at, _)| is_key_at(&lower, at, key.len()))
        };
        if mentions("icon") {
            return Err(RenderError::refused(format!(
                "line {number}: `icon` makes d2 read a local file or fetch a URL"
            )));
        }
        let image_shape = lower.match_indices("shape").any(|(at, _)| {
            is_key_at(&lower, at, "shape".len())
                && lower[at + "shape".len()..]
                    .trim_start()
                    .trim_start_matches(':')
                    .trim_start()
                    .trim_start_matches(['"', '\''])
                    .starts_with("image")
        });
        if image_shape {
            return Err(RenderError::refused(format!(
                "line {number}: `shape: image` makes d2 read a local file or fetch a URL"
            )));
        }
        if let Some(at) = import_at(code) {
            return Err(RenderError::refused(format!(
                "line {number}: the import `{}` makes d2 read another file",
                code[at..].split_whitespace().next().unwrap_or("@")
            )));
        }
        if lower.contains("![") || lower.contains("<img") {
            return Err(RenderError::refused(format!(
                "line {number}: a markdown or HTML image makes d2 read a local file or fetch a URL"
            )));
        }
    }
    Ok(())
}

/// The line without a `#` comment outside quotes.
fn strip_d2_comment(line: &str) -> &str {
    let mut quote = None;
    for (at, c) in line.char_indices() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            ('#', None) => return &line[..at],
            _ => {}
        }
    }
    line
}

/// `key` at `at` is a whole word used as a key: a key of its own or the last part of a dotted
/// key (`a.icon`), followed by `:`.
fn is_key_at(line: &str, at: usize, length: usize) -> bool {
    let before = line[..at].chars().next_back();
    let after = line[at + length..].trim_start().chars().next();
    let starts_word = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
    starts_word && matches!(after, Some(':') | Some('{'))
}

/// Where an import (`@name` as a value, or a `...@name` spread) starts, outside quotes.
fn import_at(code: &str) -> Option<usize> {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in code.char_indices() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            ('@', None) if previous == ':' || previous == '.' || previous.is_whitespace() => {
                let next = code[at + 1..].chars().next();
                if next.is_some_and(|n| n.is_alphanumeric() || n == '_' || n == '.' || n == '/') {
                    return Some(at);
                }
            }
            _ => {}
        }
        if !c.is_whitespace() || quote.is_some() {
            previous = c;
        } else if previous != ':' {
            previous = ' ';
        }
    }
    None
}

/// draw.io desktop fetches `image=` styles that are not inline `data:` images. The built-in
/// renderer never fetches anything, so this only matters for the desktop app.
fn check_drawio(source: &str) -> Result<(), RenderError> {
    for (index, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("image=") {
            let value = &rest[at + "image=".len()..];
            let inline = value.starts_with("data:") || value.starts_with("data%3A");
            let part_of_key = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            if !inline && !part_of_key {
                return Err(RenderError::refused(format!(
                    "line {}: an `image=` style that is not an inline data: image makes draw.io \
                     read a file or fetch a URL",
                    index + 1
                )));
            }
            rest = &rest[at + "image=".len()..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(diagram_type: DiagramType, source: &str) -> bool {
        matches!(
            check(diagram_type, source),
            Err(RenderError::Refused { .. })
        )
    }

    #[test]
    fn plantuml_includes_only_from_the_standard_library() {
        let p = DiagramType::Plantuml;
        assert!(refused(p, "@startuml\n!include /etc/passwd\n@enduml"));
        assert!(refused(
            p,
            "@startuml\n  !includeurl http://example.com/x\n@enduml"
        ));
        assert!(refused(
            p,
            "@startuml\n!include_many ../secret.puml\n@enduml"
        ));
        assert!(refused(p, "@startuml\n!import lib.zip\n@enduml"));
        assert!(refused(p, "@startuml\nA : <img:/etc/hosts>\n@enduml"));
        assert!(refused(
            p,
            "@startuml\n!include <../../etc/passwd>\n@enduml"
        ));
        assert!(refused(p, "@startuml\n!theme x from /tmp\n@enduml"));
        assert!(!refused(
            p,
            "@startuml\n!include <C4/C4_Container>\nA -> B\n@enduml"
        ));
        assert!(!refused(
            p,
            "@startuml\n!theme cerulean\nA -> B: include me\n@enduml"
        ));
    }

    #[test]
    fn graphviz_files_are_refused() {
        let g = DiagramType::Graphviz;
        assert!(refused(g, "digraph { a [image=\"/etc/passwd\"] }"));
        assert!(refused(g, "digraph { a [shape=box, shapefile=\"x.png\"] }"));
        assert!(refused(g, "digraph { imagepath=\"/\"; a }"));
        assert!(refused(
            g,
            "digraph { a [label=<<IMG SRC=\"/etc/x.png\"/>>] }"
        ));
        assert!(!refused(
            g,
            "digraph { image -> shapefile [label=\"image=x\"] }"
        ));
    }

    #[test]
    fn d2_icons_images_and_imports_are_refused() {
        let d = DiagramType::D2;
        assert!(refused(d, "a: {icon: /etc/passwd}"));
        assert!(refused(d, "a.icon: https://example.com/x.svg"));
        assert!(refused(d, "a: {shape: image}"));
        assert!(refused(d, "x: @other"));
        assert!(refused(d, "...@shared"));
        assert!(refused(d, "a: |md ![x](/etc/passwd) |"));
        assert!(!refused(
            d,
            "a -> b: \"mail me @ home\" # icon: here\niconic -> b"
        ));
        assert!(!refused(d, "email: \"a@b.c\""));
        assert!(!refused(
            d,
            "images -> shapes\nx: {shape: cylinder; label: image}"
        ));
    }

    #[test]
    fn drawio_fetched_images_are_refused() {
        let x = DiagramType::Drawio;
        assert!(refused(
            x,
            "<mxCell style=\"shape=image;image=https://x/y.png;\"/>"
        ));
        assert!(!refused(
            x,
            "<mxCell style=\"shape=image;image=data:image/png,AAAA;\"/>"
        ));
        assert!(!refused(x, "<mxCell style=\"shape=image;noimage=1;\"/>"));
    }
}
