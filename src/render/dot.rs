//! Graphviz DOT without Graphviz: victor's own parser (for line numbers in errors, clusters, and
//! the safe-mode checks the real `dot` also gets), layout and drawing by the pure-Rust
//! `layout-rs`, and cluster boxes drawn around their nodes afterwards, since `layout-rs` knows
//! nothing of clusters.

use std::collections::HashMap;

use layout::adt::dag::NodeHandle;
use layout::backends::svg::SVGWriter;
use layout::gv::GraphBuilder;
use layout::gv::parser::ast;

use super::svg::escape;
use crate::proto::DiagramType;
use crate::render::RenderError;

/// A lexical token and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A name, number or quoted string, unquoted and unescaped.
    Id(String),
    /// An HTML-like label `<...>`, without the outer brackets.
    Html(String),
    OpenBrace,
    CloseBrace,
    OpenBracket,
    CloseBracket,
    Equals,
    Semicolon,
    Comma,
    Colon,
    Plus,
    /// `->` (true) or `--` (false).
    EdgeOp(bool),
}

fn syntax(line: u32, message: impl Into<String>) -> RenderError {
    RenderError::syntax(DiagramType::Graphviz, Some(line), message)
}

/// Splits DOT source into tokens: comments, `#` lines and whitespace dropped, quoted strings
/// unescaped, HTML labels kept whole.
pub fn tokenize(source: &str) -> Result<Vec<Token>, RenderError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1u32;
    let mut at = 0;
    let mut line_start = true;
    while at < chars.len() {
        let c = chars[at];
        let here = line;
        let push = |tokens: &mut Vec<Token>, kind| tokens.push(Token { kind, line: here });
        match c {
            '\n' => {
                line += 1;
                line_start = true;
                at += 1;
                continue;
            }
            c if c.is_whitespace() => {
                at += 1;
                continue;
            }
            '#' if line_start => {
                while at < chars.len() && chars[at] != '\n' {
                    at += 1;
                }
                continue;
            }
            '/' if chars.get(at + 1) == Some(&'/') => {
                while at < chars.len() && chars[at] != '\n' {
                    at += 1;
                }
                continue;
            }
            '/' if chars.get(at + 1) == Some(&'*') => {
                at += 2;
                loop {
                    match chars.get(at) {
                        None => return Err(syntax(here, "a /* comment is never closed")),
                        Some('*') if chars.get(at + 1) == Some(&'/') => {
                            at += 2;
                            break;
                        }
                        Some('\n') => line += 1,
                        Some(_) => {}
                    }
                    at += 1;
                }
                continue;
            }
            '{' => push(&mut tokens, TokenKind::OpenBrace),
            '}' => push(&mut tokens, TokenKind::CloseBrace),
            '[' => push(&mut tokens, TokenKind::OpenBracket),
            ']' => push(&mut tokens, TokenKind::CloseBracket),
            '=' => push(&mut tokens, TokenKind::Equals),
            ';' => push(&mut tokens, TokenKind::Semicolon),
            ',' => push(&mut tokens, TokenKind::Comma),
            ':' => push(&mut tokens, TokenKind::Colon),
            '+' => push(&mut tokens, TokenKind::Plus),
            '-' if chars.get(at + 1) == Some(&'>') => {
                push(&mut tokens, TokenKind::EdgeOp(true));
                at += 1;
            }
            '-' if chars.get(at + 1) == Some(&'-') => {
                push(&mut tokens, TokenKind::EdgeOp(false));
                at += 1;
            }
            '"' => {
                let mut text = String::new();
                at += 1;
                loop {
                    match chars.get(at) {
                        None => return Err(syntax(here, "a quoted string is never closed")),
                        Some('"') => break,
                        Some('\\') if chars.get(at + 1) == Some(&'"') => {
                            text.push('"');
                            at += 1;
                        }
                        Some('\\') if chars.get(at + 1) == Some(&'\n') => {
                            line += 1;
                            at += 1;
                        }
                        Some(&other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            text.push(other);
                        }
                    }
                    at += 1;
                }
                push(&mut tokens, TokenKind::Id(text));
            }
            '<' => {
                let mut depth = 1;
                let mut text = String::new();
                at += 1;
                loop {
                    match chars.get(at) {
                        None => return Err(syntax(here, "an HTML label <...> is never closed")),
                        Some('<') => depth += 1,
                        Some('>') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        Some('\n') => line += 1,
                        Some(_) => {}
                    }
                    text.push(chars[at]);
                    at += 1;
                }
                push(&mut tokens, TokenKind::Html(text));
            }
            c if is_id_char(c) || c == '-' || c == '.' => {
                let start = at;
                at += 1;
                while at < chars.len() && (is_id_char(chars[at]) || chars[at] == '.') {
                    at += 1;
                }
                push(
                    &mut tokens,
                    TokenKind::Id(chars[start..at].iter().collect()),
                );
                line_start = false;
                continue;
            }
            other => return Err(syntax(here, format!("unexpected character `{other}`"))),
        }
        line_start = false;
        at += 1;
    }
    Ok(tokens)
}

fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || !c.is_ascii()
}

type Attrs = Vec<(String, String)>;

fn set(attrs: &mut Attrs, key: &str, value: &str) {
    match attrs.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => attrs.push((key.to_string(), value.to_string())),
    }
}

fn get<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A parsed graph, flattened: every node once, every edge, and the clusters with their nodes.
#[derive(Debug, Default)]
pub struct Graph {
    pub directed: bool,
    pub attrs: Attrs,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub clusters: Vec<Cluster>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct Node {
    pub id: String,
    pub attrs: Attrs,
}

#[derive(Debug)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub attrs: Attrs,
}

/// A subgraph whose name starts with `cluster`: drawn as a box around its nodes.
#[derive(Debug)]
pub struct Cluster {
    pub attrs: Attrs,
    pub parent: Option<usize>,
    pub nodes: Vec<usize>,
}

#[derive(Clone, Default)]
struct Scope {
    node_defaults: Attrs,
    edge_defaults: Attrs,
    cluster: Option<usize>,
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    graph: Graph,
}

/// Parses a whole DOT document.
pub fn parse(source: &str) -> Result<Graph, RenderError> {
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        graph: Graph::default(),
    };
    parser.document()?;
    Ok(parser.graph)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&TokenKind> {
        self.tokens.get(self.at).map(|t| &t.kind)
    }

    fn line(&self) -> u32 {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(1, |t| t.line)
    }

    fn error<T>(&self, expected: &str) -> Result<T, RenderError> {
        let found = match self.peek() {
            None => "the end of the input".to_string(),
            Some(TokenKind::Id(id)) => format!("`{id}`"),
            Some(TokenKind::Html(_)) => "an HTML label".to_string(),
            Some(other) => format!("`{}`", punctuation(other)),
        };
        Err(syntax(
            self.line(),
            format!("expected {expected}, found {found}"),
        ))
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.peek() == Some(kind) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(TokenKind::Id(id)) if id.eq_ignore_ascii_case(word))
    }

    /// An ID: a name, number, quoted strings joined with `+`, or an HTML label (kept as text).
    fn id(&mut self) -> Option<String> {
        let value = match self.peek()? {
            TokenKind::Id(id) => id.clone(),
            TokenKind::Html(html) => strip_html(html),
            _ => return None,
        };
        self.at += 1;
        let mut value = value;
        while self.peek() == Some(&TokenKind::Plus) {
            if let Some(TokenKind::Id(next)) = self.tokens.get(self.at + 1).map(|t| &t.kind) {
                value.push_str(next);
                self.at += 2;
            } else {
                break;
            }
        }
        Some(value)
    }

    fn document(&mut self) -> Result<(), RenderError> {
        if self.keyword("strict") {
            self.at += 1;
        }
        if self.keyword("digraph") {
            self.graph.directed = true;
        } else if !self.keyword("graph") {
            return self.error("`graph` or `digraph`");
        }
        self.at += 1;
        if !matches!(self.peek(), Some(TokenKind::OpenBrace)) {
            let _name = self.id();
        }
        if !self.eat(&TokenKind::OpenBrace) {
            return self.error("`{`");
        }
        let mut scope = Scope::default();
        self.statements(&mut scope, None)?;
        if !self.eat(&TokenKind::CloseBrace) {
            return self.error("`}`");
        }
        if self.peek().is_some() {
            return self.error("nothing after the graph's closing `}`");
        }
        Ok(())
    }

    /// Statements up to a `}` (not consumed). `subgraph_attrs` collects `key=value` statements
    /// of a subgraph; the top level's go to the graph.
    fn statements(
        &mut self,
        scope: &mut Scope,
        mut subgraph_attrs: Option<&mut Attrs>,
    ) -> Result<Vec<usize>, RenderError> {
        let mut mentioned = Vec::new();
        loop {
            match self.peek() {
                None | Some(TokenKind::CloseBrace) => return Ok(mentioned),
                Some(TokenKind::Semicolon) => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            if self.keyword("graph") || self.keyword("node") || self.keyword("edge") {
                let target = match self.peek() {
                    Some(TokenKind::Id(id)) => id.to_ascii_lowercase(),
                    _ => String::new(),
                };
                self.at += 1;
                let attrs = self.attr_lists()?;
                for (key, value) in attrs {
                    match target.as_str() {
                        "node" => set(&mut scope.node_defaults, &key, &value),
                        "edge" => set(&mut scope.edge_defaults, &key, &value),
                        _ => match subgraph_attrs.as_deref_mut() {
                            Some(sub) => set(sub, &key, &value),
                            None => set(&mut self.graph.attrs, &key, &value),
                        },
                    }
                }
                continue;
            }
            // `key = value` at statement level.
            if matches!(self.peek(), Some(TokenKind::Id(_)))
                && self.tokens.get(self.at + 1).map(|t| &t.kind) == Some(&TokenKind::Equals)
            {
                let key = self.id().unwrap_or_default();
                self.at += 1;
                let Some(value) = self.id() else {
                    return self.error("a value after `=`");
                };
                match subgraph_attrs.as_deref_mut() {
                    Some(sub) => set(sub, &key, &value),
                    None => set(&mut self.graph.attrs, &key, &value),
                }
                continue;
            }
            let first = self.operand(scope)?;
            mentioned.extend(first.iter().copied());
            if matches!(self.peek(), Some(TokenKind::EdgeOp(_))) {
                let mut ends = vec![first];
                while let Some(TokenKind::EdgeOp(directed)) = self.peek().cloned() {
                    if directed != self.graph.directed {
                        let (op, kind) = if self.graph.directed {
                            ("--", "digraph")
                        } else {
                            ("->", "graph")
                        };
                        return Err(syntax(
                            self.line(),
                            format!("`{op}` cannot be used in a {kind}"),
                        ));
                    }
                    self.at += 1;
                    let next = self.operand(scope)?;
                    mentioned.extend(next.iter().copied());
                    ends.push(next);
                }
                let stated = self.attr_lists()?;
                let mut attrs = scope.edge_defaults.clone();
                for (key, value) in &stated {
                    set(&mut attrs, key, value);
                }
                for pair in ends.windows(2) {
                    for &from in &pair[0] {
                        for &to in &pair[1] {
                            self.graph.edges.push(Edge {
                                from,
                                to,
                                attrs: attrs.clone(),
                            });
                        }
                    }
                }
            } else if let [node] = first.as_slice() {
                let stated = self.attr_lists()?;
                for (key, value) in stated {
                    set(&mut self.graph.nodes[*node].attrs, &key, &value);
                }
            }
        }
    }

    /// A node (with an optional port, ignored) or a subgraph: the nodes it stands for.
    fn operand(&mut self, scope: &mut Scope) -> Result<Vec<usize>, RenderError> {
        if self.keyword("subgraph") || self.peek() == Some(&TokenKind::OpenBrace) {
            return self.subgraph(scope);
        }
        let Some(id) = self.id() else {
            return self.error("a node, an edge, an attribute or a subgraph");
        };
        // Ports (`node:port:compass`) say where edges attach; the built-in layout ignores them.
        while self.eat(&TokenKind::Colon) {
            if self.id().is_none() {
                return self.error("a port name after `:`");
            }
        }
        Ok(vec![self.node(&id, scope)])
    }

    fn node(&mut self, id: &str, scope: &Scope) -> usize {
        let index = match self.graph.index.get(id) {
            Some(&index) => index,
            None => {
                let index = self.graph.nodes.len();
                self.graph.nodes.push(Node {
                    id: id.to_string(),
                    attrs: scope.node_defaults.clone(),
                });
                self.graph.index.insert(id.to_string(), index);
                index
            }
        };
        if let Some(cluster) = scope.cluster
            && !self.graph.clusters[cluster].nodes.contains(&index)
        {
            self.graph.clusters[cluster].nodes.push(index);
        }
        index
    }

    fn subgraph(&mut self, outer: &Scope) -> Result<Vec<usize>, RenderError> {
        let mut name = String::new();
        if self.keyword("subgraph") {
            self.at += 1;
            if self.peek() != Some(&TokenKind::OpenBrace) {
                name = self.id().unwrap_or_default();
            }
        }
        if !self.eat(&TokenKind::OpenBrace) {
            return self.error("`{` to open the subgraph");
        }
        let mut scope = outer.clone();
        let cluster = name.to_ascii_lowercase().starts_with("cluster").then(|| {
            self.graph.clusters.push(Cluster {
                attrs: Vec::new(),
                parent: outer.cluster,
                nodes: Vec::new(),
            });
            self.graph.clusters.len() - 1
        });
        if cluster.is_some() {
            scope.cluster = cluster;
        }
        let mut attrs = Vec::new();
        let nodes = self.statements(&mut scope, Some(&mut attrs))?;
        if !self.eat(&TokenKind::CloseBrace) {
            return self.error("`}` to close the subgraph");
        }
        if let Some(cluster) = cluster {
            self.graph.clusters[cluster].attrs = attrs;
        }
        Ok(nodes)
    }

    /// `[a=b, c=d][e=f]`, possibly none.
    fn attr_lists(&mut self) -> Result<Attrs, RenderError> {
        let mut attrs = Vec::new();
        while self.eat(&TokenKind::OpenBracket) {
            loop {
                if self.eat(&TokenKind::CloseBracket) {
                    break;
                }
                let Some(key) = self.id() else {
                    return self.error("an attribute name or `]`");
                };
                let value = if self.eat(&TokenKind::Equals) {
                    match self.id() {
                        Some(value) => value,
                        None => return self.error("a value after `=`"),
                    }
                } else {
                    "true".to_string()
                };
                set(&mut attrs, &key, &value);
                let _ = self.eat(&TokenKind::Comma) || self.eat(&TokenKind::Semicolon);
            }
        }
        Ok(attrs)
    }
}

fn punctuation(kind: &TokenKind) -> &'static str {
    match kind {
        TokenKind::OpenBrace => "{",
        TokenKind::CloseBrace => "}",
        TokenKind::OpenBracket => "[",
        TokenKind::CloseBracket => "]",
        TokenKind::Equals => "=",
        TokenKind::Semicolon => ";",
        TokenKind::Comma => ",",
        TokenKind::Colon => ":",
        TokenKind::Plus => "+",
        TokenKind::EdgeOp(true) => "->",
        TokenKind::EdgeOp(false) => "--",
        TokenKind::Id(_) | TokenKind::Html(_) => "",
    }
}

/// The text of an HTML-like label: tags dropped, `<br/>` as a line break, entities decoded.
pub fn strip_html(html: &str) -> String {
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        if tag.starts_with("br") || tag == "/tr" {
            text.push('\n');
        } else if tag == "/td" {
            text.push(' ');
        }
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    let decoded = super::svg::decode_entities(&text);
    decoded
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Graphviz label escapes: `\n`, `\l`, `\r` end lines, `\N` is the node's name, `\G` the
/// graph's.
fn label_text(label: &str, node: &str, graph: &str) -> String {
    let mut text = String::new();
    let mut chars = label.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'l' | 'r') => text.push('\n'),
            Some('N') => text.push_str(node),
            Some('G') => text.push_str(graph),
            Some('E' | 'T' | 'H') => {}
            Some(other) => text.push(other),
            None => text.push('\\'),
        }
    }
    text.trim_end_matches('\n').to_string()
}

/// Node and edge attributes the built-in renderer passes on to `layout-rs`.
const PASSED_ATTRIBUTES: [&str; 7] = [
    "label",
    "shape",
    "color",
    "fillcolor",
    "style",
    "fontsize",
    "width",
];

/// Space between a cluster's nodes and its border, and the height of its label.
const CLUSTER_PADDING: f64 = 14.0;
const CLUSTER_LABEL: f64 = 20.0;

/// Draws the graph as SVG.
pub fn render(source: &str) -> Result<String, RenderError> {
    let graph = parse(source)?;
    if graph.nodes.is_empty() {
        return Ok(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"10\" height=\"10\" viewBox=\"0 0 10 10\"></svg>\n"
                .to_string(),
        );
    }
    let graph_name = String::new();
    let mut document = ast::Graph::new("");
    let mut graph_attrs = ast::AttributeList::new();
    if let Some(rankdir) = get(&graph.attrs, "rankdir") {
        // layout-rs knows top-to-bottom and left-to-right; RL and BT are drawn as their mirrors.
        let direction = if matches!(rankdir.to_ascii_uppercase().as_str(), "LR" | "RL") {
            "LR"
        } else {
            "TB"
        };
        graph_attrs.add_attr("rankdir", direction);
    }
    document
        .list
        .list
        .push(ast::Stmt::Attribute(ast::AttrStmt::new(
            ast::AttrStmtTarget::Graph,
            graph_attrs,
        )));
    for node in &graph.nodes {
        let mut list = ast::AttributeList::new();
        let label = get(&node.attrs, "label").unwrap_or("\\N");
        list.add_attr("label", &label_text(label, &node.id, &graph_name));
        // Graphviz draws an ellipse by default; layout-rs calls that shape a circle.
        let shape = match get(&node.attrs, "shape").unwrap_or("ellipse") {
            "box" | "rect" | "rectangle" | "square" | "note" | "tab" | "folder" | "box3d"
            | "component" | "cylinder" | "plaintext" | "plain" | "none" | "underline" => "box",
            "record" => "record",
            "Mrecord" => "Mrecord",
            "doublecircle" => "doublecircle",
            _ => "circle",
        };
        list.add_attr("shape", shape);
        for (key, value) in &node.attrs {
            if PASSED_ATTRIBUTES.contains(&key.as_str()) && key != "label" && key != "shape" {
                list.add_attr(key, value);
            }
        }
        document
            .list
            .list
            .push(ast::Stmt::Node(ast::NodeStmt::new_with_list(
                ast::NodeId::new(&node.id, &None),
                list,
            )));
    }
    for edge in &graph.edges {
        let mut statement = ast::EdgeStmt::new(ast::NodeId::new(&graph.nodes[edge.from].id, &None));
        let arrow = if graph.directed && get(&edge.attrs, "dir") != Some("none") {
            ast::ArrowKind::Arrow
        } else {
            ast::ArrowKind::Line
        };
        statement.insert(ast::NodeId::new(&graph.nodes[edge.to].id, &None), arrow);
        for (key, value) in &edge.attrs {
            if key == "label" {
                statement
                    .list
                    .add_attr(key, &label_text(value, "", &graph_name));
            } else if PASSED_ATTRIBUTES.contains(&key.as_str()) {
                statement.list.add_attr(key, value);
            }
        }
        document.list.list.push(ast::Stmt::Edge(statement));
    }

    let mut builder = GraphBuilder::new();
    builder.visit_graph(&document);
    let mut visual = builder.get();
    let mut writer = SVGWriter::new();
    visual.do_it(false, false, false, &mut writer);
    let svg = writer.finalize();

    // Node handles are numbered in the order the nodes were added: the graph's own order.
    let boxes: Vec<(f64, f64, f64, f64)> = (0..graph.nodes.len())
        .map(|index| {
            let (top_left, bottom_right) = visual.pos(NodeHandle::new(index)).bbox(false);
            (top_left.x, top_left.y, bottom_right.x, bottom_right.y)
        })
        .collect();
    Ok(with_clusters(&svg, &graph, &boxes))
}

/// Adds the clusters' boxes behind the drawing and widens the view to hold them.
fn with_clusters(svg: &str, graph: &Graph, boxes: &[(f64, f64, f64, f64)]) -> String {
    let graph_label = get(&graph.attrs, "label").map(|label| label_text(label, "", ""));
    if graph.clusters.is_empty() && graph_label.is_none() {
        return svg.to_string();
    }
    // Innermost clusters first, so each parent's box holds its children's.
    let depth = |mut cluster: usize| {
        let mut depth = 0;
        while let Some(parent) = graph.clusters[cluster].parent {
            depth += 1;
            cluster = parent;
        }
        depth
    };
    let mut order: Vec<usize> = (0..graph.clusters.len()).collect();
    order.sort_by_key(|&cluster| std::cmp::Reverse(depth(cluster)));
    let mut bounds: Vec<Option<(f64, f64, f64, f64)>> = vec![None; graph.clusters.len()];
    for &cluster in &order {
        let mut area: Option<(f64, f64, f64, f64)> = None;
        let mut grow = |b: (f64, f64, f64, f64)| {
            area = Some(match area {
                None => b,
                Some(a) => (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)),
            });
        };
        for &node in &graph.clusters[cluster].nodes {
            if let Some(&b) = boxes.get(node) {
                grow(b);
            }
        }
        for (child, child_bounds) in bounds.iter().enumerate() {
            if graph.clusters[child].parent == Some(cluster)
                && let Some(b) = child_bounds
            {
                grow(*b);
            }
        }
        // Wide enough for its label (Times at 14px: about 7px a character).
        let label_width = get(&graph.clusters[cluster].attrs, "label").map_or(0.0, |label| {
            label_text(label, "", "").chars().count() as f64 * 7.5
        });
        bounds[cluster] = area.map(|(x0, y0, x1, y1)| {
            let widen = ((label_width - (x1 - x0) - 2.0 * CLUSTER_PADDING) / 2.0).max(0.0);
            let (x0, x1) = (x0 - widen, x1 + widen);
            (
                x0 - CLUSTER_PADDING,
                y0 - CLUSTER_PADDING - CLUSTER_LABEL,
                x1 + CLUSTER_PADDING,
                y1 + CLUSTER_PADDING,
            )
        });
    }
    let mut drawn = String::from("<g class=\"clusters\">\n");
    let mut view = boxes
        .iter()
        .fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |v, b| {
            (v.0.min(b.0), v.1.min(b.1), v.2.max(b.2), v.3.max(b.3))
        });
    // Outermost first: a child is drawn over its parent.
    for &cluster in order.iter().rev() {
        let Some((x0, y0, x1, y1)) = bounds[cluster] else {
            continue;
        };
        view = (
            view.0.min(x0),
            view.1.min(y0),
            view.2.max(x1),
            view.3.max(y1),
        );
        let attrs = &graph.clusters[cluster].attrs;
        let stroke = get(attrs, "color")
            .or(get(attrs, "pencolor"))
            .unwrap_or("black");
        let filled = get(attrs, "style").is_some_and(|style| style.contains("filled"));
        let fill = match (get(attrs, "fillcolor").or(get(attrs, "bgcolor")), filled) {
            (Some(color), _) => color,
            (None, true) => get(attrs, "color").unwrap_or("lightgrey"),
            (None, false) => "none",
        };
        drawn.push_str(&format!(
            "<rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\" \
             stroke=\"{}\"/>\n",
            x1 - x0,
            y1 - y0,
            escape(fill),
            escape(stroke),
        ));
        if let Some(label) = get(attrs, "label") {
            drawn.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"Times,serif\" \
                 font-size=\"14\">{}</text>\n",
                (x0 + x1) / 2.0,
                y0 + CLUSTER_LABEL - 4.0,
                escape(&label_text(label, "", "")),
            ));
        }
    }
    if let Some(label) = &graph_label {
        drawn.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-family=\"Times,serif\" \
             font-size=\"16\">{}</text>\n",
            (view.0 + view.2) / 2.0,
            view.3 + 20.0,
            escape(label),
        ));
        view.3 += 28.0;
    }
    drawn.push_str("</g>\n");
    let (x, y) = (view.0.min(0.0) - 5.0, view.1.min(0.0) - 5.0);
    let (width, height) = (view.2 + 10.0 - x, view.3 + 10.0 - y);
    let svg = replace_svg_header(svg, x, y, width, height);
    match svg.find("</style>") {
        Some(at) => {
            let at = at + "</style>".len();
            format!("{}\n{}{}", &svg[..at], drawn, &svg[at..])
        }
        None => svg,
    }
}

/// Rewrites the `<svg ...>` tag's size and view box.
fn replace_svg_header(svg: &str, x: f64, y: f64, width: f64, height: f64) -> String {
    let Some(start) = svg.find("<svg ") else {
        return svg.to_string();
    };
    let Some(length) = svg[start..].find('>') else {
        return svg.to_string();
    };
    let (old_width, old_height) = svg_size(&svg[start..start + length]).unwrap_or((0.0, 0.0));
    let width = width.max(old_width);
    let height = height.max(old_height);
    format!(
        "{}<svg width=\"{width:.1}\" height=\"{height:.1}\" viewBox=\"{x:.1} {y:.1} {width:.1} \
         {height:.1}\" xmlns=\"http://www.w3.org/2000/svg\">{}",
        &svg[..start],
        &svg[start + length + 1..]
    )
}

fn svg_size(tag: &str) -> Option<(f64, f64)> {
    let number = |name: &str| -> Option<f64> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[at..].find('"')?;
        tag[at..at + end].parse().ok()
    };
    Some((number("width")?, number("height")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nodes_edges_clusters_and_attributes() {
        let graph = parse(
            r#"digraph G {
                 rankdir=LR; node [shape=box]
                 subgraph cluster_api { label="API"; gateway -> auth }
                 gateway -> { db cache } [label="reads"]
                 "quoted " + "name" -> db
               }"#,
        )
        .unwrap();
        let names: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(names, ["gateway", "auth", "db", "cache", "quoted name"]);
        assert_eq!(graph.edges.len(), 4);
        assert_eq!(graph.clusters.len(), 1);
        assert_eq!(graph.clusters[0].nodes, [0, 1]);
        assert_eq!(get(&graph.clusters[0].attrs, "label"), Some("API"));
        assert_eq!(get(&graph.nodes[2].attrs, "shape"), Some("box"));
        assert_eq!(get(&graph.edges[1].attrs, "label"), Some("reads"));
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let error = parse("digraph {\n  a -> b\n  c -> [x=1]\n}").unwrap_err();
        assert!(
            matches!(&error, RenderError::Syntax { line: Some(3), .. }),
            "{error}"
        );
        let error = parse("graph { a -> b }").unwrap_err();
        assert!(error.to_string().contains("`->` cannot be used in a graph"));
        let error = parse("digraph { a [label=\"open }").unwrap_err();
        assert!(error.to_string().contains("never closed"));
    }

    #[test]
    fn renders_labels_and_cluster_boxes() {
        let svg = render(
            "digraph { subgraph cluster_x { label=\"Backend\"; api -> db } web -> api [label=calls] }",
        )
        .unwrap();
        for text in ["Backend", "api", "db", "web", "calls", "<rect"] {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
    }

    #[test]
    fn html_labels_become_text() {
        assert_eq!(
            strip_html("<b>Bold</b><br/>and &amp; more"),
            "Bold\nand & more"
        );
    }
}
