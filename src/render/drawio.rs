//! draw.io (diagrams.net) files without draw.io. The XML stores absolute geometry for every
//! cell, so drawing needs no layout: vertices become shapes with their text, edges polylines
//! through their waypoints, clipped at the shapes they join. Compressed pages (base64 of raw
//! deflate of the URL-encoded XML, draw.io's default for years) are unpacked first. Images are
//! drawn as labelled frames and never fetched: a diagram cannot make the server, or whoever
//! views the SVG, reach anything.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::read::DeflateDecoder;

use super::dot::strip_html;
use super::svg::escape;
use crate::proto::DiagramType;
use crate::render::RenderError;

/// Most bytes a compressed page may inflate to.
const MAX_INFLATED: u64 = 16 * 1024 * 1024;
/// Room around the drawing.
const MARGIN: f64 = 10.0;

fn syntax(line: Option<u32>, message: impl Into<String>) -> RenderError {
    RenderError::syntax(DiagramType::Drawio, line, message)
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Debug, Default)]
struct Geometry {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    relative: bool,
    points: Vec<Point>,
    source_point: Option<Point>,
    target_point: Option<Point>,
    offset: Option<Point>,
}

#[derive(Debug, Default)]
struct Cell {
    id: String,
    parent: Option<String>,
    value: String,
    style: HashMap<String, String>,
    /// The style's leading name without `=` (`ellipse`, `text`, `swimlane`...).
    shape: Option<String>,
    vertex: bool,
    edge: bool,
    source: Option<String>,
    target: Option<String>,
    geometry: Geometry,
}

impl Cell {
    fn style(&self, key: &str) -> Option<&str> {
        self.style.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        self.style(key) == Some("1")
    }

    fn number(&self, key: &str, default: f64) -> f64 {
        self.style(key)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .unwrap_or(default)
    }

    fn shape_name(&self) -> &str {
        self.style("shape")
            .or(self.shape.as_deref())
            .unwrap_or("rect")
    }

    fn label(&self) -> String {
        if self.style("html") == Some("1") || self.value.contains('<') {
            strip_html(&self.value.replace('\n', "<br>"))
        } else {
            self.value.clone()
        }
    }
}

/// Draws the first page of a draw.io file (or a bare `<mxGraphModel>`).
pub fn render(source: &str) -> Result<String, RenderError> {
    let model = graph_model_xml(source)?;
    let document = parse_xml(&model)?;
    let cells = cells(&document)?;
    Ok(draw(&cells))
}

fn parse_xml(text: &str) -> Result<roxmltree::Document<'_>, RenderError> {
    roxmltree::Document::parse(text).map_err(|e| syntax(Some(e.pos().row), e.to_string()))
}

/// The `<mxGraphModel>` XML of the first page, unpacked when it is compressed.
fn graph_model_xml(source: &str) -> Result<String, RenderError> {
    let document = parse_xml(source)?;
    let root = document.root_element();
    let diagram = match root.tag_name().name() {
        "mxGraphModel" => return Ok(source.to_string()),
        "mxfile" => root
            .children()
            .find(|n| n.has_tag_name("diagram"))
            .ok_or_else(|| syntax(None, "the <mxfile> holds no <diagram> page"))?,
        "diagram" => root,
        other => {
            return Err(syntax(
                Some(document.text_pos_at(root.range().start).row),
                format!("a draw.io file starts with <mxfile> or <mxGraphModel>, not <{other}>"),
            ));
        }
    };
    if let Some(model) = diagram.children().find(|n| n.has_tag_name("mxGraphModel")) {
        return Ok(source[model.range()].to_string());
    }
    let packed: String = diagram
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if packed.is_empty() {
        return Err(syntax(None, "the <diagram> page is empty"));
    }
    inflate_page(&packed)
}

/// base64, then raw deflate, then URL-encoding: draw.io's compressed page.
fn inflate_page(packed: &str) -> Result<String, RenderError> {
    let compressed = STANDARD
        .decode(packed)
        .map_err(|e| syntax(None, format!("the compressed page is not base64: {e}")))?;
    let mut inflated = Vec::new();
    DeflateDecoder::new(compressed.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| syntax(None, format!("the compressed page does not inflate: {e}")))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(RenderError::Invalid(format!(
            "the compressed page inflates past {MAX_INFLATED} bytes"
        )));
    }
    let decoded = percent_encoding::percent_decode(&inflated)
        .decode_utf8()
        .map_err(|_| syntax(None, "the compressed page is not UTF-8 text"))?;
    Ok(decoded.into_owned())
}

fn cells(document: &roxmltree::Document<'_>) -> Result<Vec<Cell>, RenderError> {
    let model = document
        .descendants()
        .find(|n| n.has_tag_name("mxGraphModel"))
        .ok_or_else(|| syntax(None, "no <mxGraphModel> in the page"))?;
    let root = model
        .children()
        .find(|n| n.has_tag_name("root"))
        .ok_or_else(|| syntax(None, "the <mxGraphModel> has no <root>"))?;
    let mut cells = Vec::new();
    for node in root.children().filter(roxmltree::Node::is_element) {
        // `<UserObject label=… id=…><mxCell …/></UserObject>`: the wrapper holds id and label.
        let (wrapper, cell) = match node.tag_name().name() {
            "mxCell" => (None, node),
            _ => match node.children().find(|n| n.has_tag_name("mxCell")) {
                Some(cell) => (Some(node), cell),
                None => continue,
            },
        };
        let attribute = |name: &str| {
            cell.attribute(name)
                .or_else(|| wrapper.and_then(|w| w.attribute(name)))
                .map(str::to_string)
        };
        let value = wrapper
            .and_then(|w| w.attribute("label"))
            .or_else(|| cell.attribute("value"))
            .unwrap_or_default()
            .to_string();
        let (style, shape) = parse_style(cell.attribute("style").unwrap_or_default());
        let geometry = cell
            .children()
            .find(|n| n.has_tag_name("mxGeometry"))
            .map(geometry)
            .unwrap_or_default();
        cells.push(Cell {
            id: attribute("id").unwrap_or_default(),
            parent: attribute("parent"),
            value,
            style,
            shape,
            vertex: cell.attribute("vertex") == Some("1"),
            edge: cell.attribute("edge") == Some("1"),
            source: attribute("source"),
            target: attribute("target"),
            geometry,
        });
    }
    Ok(cells)
}

/// `rounded=1;whiteSpace=wrap;ellipse;` into keys and values, and the bare name if any.
fn parse_style(style: &str) -> (HashMap<String, String>, Option<String>) {
    let mut values = HashMap::new();
    let mut shape = None;
    for part in style.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((key, value)) => {
                values.insert(key.to_string(), value.to_string());
            }
            None if shape.is_none() => shape = Some(part.to_string()),
            None => {}
        }
    }
    (values, shape)
}

fn number(node: roxmltree::Node<'_, '_>, name: &str) -> f64 {
    node.attribute(name)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

fn point(node: roxmltree::Node<'_, '_>) -> Point {
    Point {
        x: number(node, "x"),
        y: number(node, "y"),
    }
}

fn geometry(node: roxmltree::Node<'_, '_>) -> Geometry {
    let mut geometry = Geometry {
        x: number(node, "x"),
        y: number(node, "y"),
        width: number(node, "width"),
        height: number(node, "height"),
        relative: node.attribute("relative") == Some("1"),
        ..Geometry::default()
    };
    for child in node.children().filter(roxmltree::Node::is_element) {
        match (child.tag_name().name(), child.attribute("as")) {
            ("mxPoint", Some("sourcePoint")) => geometry.source_point = Some(point(child)),
            ("mxPoint", Some("targetPoint")) => geometry.target_point = Some(point(child)),
            ("mxPoint", Some("offset")) => geometry.offset = Some(point(child)),
            ("Array", Some("points")) => {
                geometry.points = child
                    .children()
                    .filter(|n| n.has_tag_name("mxPoint"))
                    .map(point)
                    .collect();
            }
            _ => {}
        }
    }
    geometry
}

/// An axis-aligned box in page coordinates.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
}

impl Bounds {
    fn center(&self) -> Point {
        Point {
            x: self.x + self.width / 2.0,
            y: self.y + self.height / 2.0,
        }
    }
}

/// Grows to hold everything drawn.
struct Extent {
    min: Point,
    max: Point,
}

impl Extent {
    fn new() -> Extent {
        Extent {
            min: Point {
                x: f64::MAX,
                y: f64::MAX,
            },
            max: Point {
                x: f64::MIN,
                y: f64::MIN,
            },
        }
    }

    fn add(&mut self, p: Point) {
        self.min.x = self.min.x.min(p.x);
        self.min.y = self.min.y.min(p.y);
        self.max.x = self.max.x.max(p.x);
        self.max.y = self.max.y.max(p.y);
    }

    fn add_bounds(&mut self, b: Bounds) {
        self.add(Point { x: b.x, y: b.y });
        self.add(Point {
            x: b.x + b.width,
            y: b.y + b.height,
        });
    }
}

fn draw(cells: &[Cell]) -> String {
    let by_id: HashMap<&str, &Cell> = cells.iter().map(|c| (c.id.as_str(), c)).collect();
    // A vertex inside a vertex (a group, a container, a swimlane) is placed relative to it.
    let origin = |cell: &Cell| {
        let mut origin = Point::default();
        let mut parent = cell.parent.as_deref();
        let mut hops = 0;
        while let Some(id) = parent
            && hops < 64
        {
            match by_id.get(id) {
                Some(p) if p.vertex => {
                    origin.x += p.geometry.x;
                    origin.y += p.geometry.y;
                    parent = p.parent.as_deref();
                }
                _ => break,
            }
            hops += 1;
        }
        origin
    };
    let bounds: HashMap<&str, Bounds> = cells
        .iter()
        .filter(|c| c.vertex && !c.geometry.relative)
        .map(|c| {
            let o = origin(c);
            (
                c.id.as_str(),
                Bounds {
                    x: o.x + c.geometry.x,
                    y: o.y + c.geometry.y,
                    width: c.geometry.width,
                    height: c.geometry.height,
                },
            )
        })
        .collect();

    let mut body = String::new();
    let mut extent = Extent::new();
    let mut markers: Vec<String> = Vec::new();
    let mut edge_paths: HashMap<&str, Vec<Point>> = HashMap::new();
    for cell in cells {
        if cell.edge {
            let path = edge_path(cell, &bounds, origin(cell));
            if path.len() >= 2 {
                draw_edge(&mut body, &mut markers, cell, &path);
                path.iter().for_each(|p| extent.add(*p));
                let label = cell.label();
                if !label.trim().is_empty() {
                    let at = along(&path, 0.0);
                    draw_text_at(&mut body, &mut extent, cell, &label, at, true);
                }
                edge_paths.insert(cell.id.as_str(), path);
            }
        } else if cell.vertex {
            if cell.geometry.relative {
                // A label riding on an edge: x from -1 (source) to 1 (target), then an offset.
                let Some(path) = cell.parent.as_deref().and_then(|p| edge_paths.get(p)) else {
                    continue;
                };
                let mut at = along(path, cell.geometry.x);
                if let Some(offset) = cell.geometry.offset {
                    at.x += offset.x;
                    at.y += offset.y;
                }
                let label = cell.label();
                draw_text_at(&mut body, &mut extent, cell, &label, at, true);
                continue;
            }
            if let Some(b) = bounds.get(cell.id.as_str()) {
                draw_vertex(&mut body, cell, *b);
                extent.add_bounds(*b);
            }
        }
    }
    if extent.min.x > extent.max.x {
        extent.add(Point::default());
    }
    let x = extent.min.x - MARGIN;
    let y = extent.min.y - MARGIN;
    let width = extent.max.x - extent.min.x + 2.0 * MARGIN;
    let height = extent.max.y - extent.min.y + 2.0 * MARGIN;
    let mut svg = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"{x:.1} {y:.1} {width:.1} \
         {height:.1}\">\n<defs>\n"
    );
    for (index, color) in markers.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<marker id=\"arrow{index}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
             markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            escape(color)
        );
    }
    svg.push_str("</defs>\n");
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height:.1}\" \
         fill=\"#ffffff\"/>"
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

fn color(value: Option<&str>, default: &str) -> String {
    match value {
        None | Some("default") => default.to_string(),
        Some("none") | Some("") => "none".to_string(),
        Some(other) => other.to_string(),
    }
}

fn stroke_attributes(cell: &Cell, default_stroke: &str) -> String {
    let stroke = color(cell.style("strokeColor"), default_stroke);
    let width = cell.number("strokeWidth", 1.0);
    let mut attributes = format!(" stroke=\"{}\" stroke-width=\"{width}\"", escape(&stroke));
    if cell.flag("dashed") {
        attributes.push_str(" stroke-dasharray=\"6 4\"");
    }
    let opacity = cell.number("opacity", 100.0);
    if opacity < 100.0 {
        let _ = write!(attributes, " opacity=\"{:.2}\"", opacity / 100.0);
    }
    attributes
}

fn draw_vertex(out: &mut String, cell: &Cell, b: Bounds) {
    let shape = cell.shape_name();
    let text_only = matches!(shape, "text" | "label" | "edgeLabel");
    let fill = color(
        cell.style("fillColor"),
        if text_only { "none" } else { "#ffffff" },
    );
    let stroke_default = if text_only { "none" } else { "#000000" };
    let paint = format!(
        " fill=\"{}\"{}",
        escape(&fill),
        stroke_attributes(cell, stroke_default)
    );
    let (x, y, w, h) = (b.x, b.y, b.width, b.height);
    let _ = writeln!(
        out,
        "<g class=\"vertex\" data-cell-id=\"{}\">",
        escape(&cell.id)
    );
    match shape {
        "ellipse" | "doubleEllipse" => {
            let _ = writeln!(
                out,
                "<ellipse cx=\"{:.1}\" cy=\"{:.1}\" rx=\"{:.1}\" ry=\"{:.1}\"{paint}/>",
                x + w / 2.0,
                y + h / 2.0,
                w / 2.0,
                h / 2.0
            );
        }
        "rhombus" => polygon(
            out,
            &[
                (x + w / 2.0, y),
                (x + w, y + h / 2.0),
                (x + w / 2.0, y + h),
                (x, y + h / 2.0),
            ],
            &paint,
        ),
        "triangle" => polygon(out, &[(x, y), (x + w, y + h / 2.0), (x, y + h)], &paint),
        "hexagon" => {
            let s = w * 0.25;
            polygon(
                out,
                &[
                    (x + s, y),
                    (x + w - s, y),
                    (x + w, y + h / 2.0),
                    (x + w - s, y + h),
                    (x + s, y + h),
                    (x, y + h / 2.0),
                ],
                &paint,
            );
        }
        "parallelogram" => {
            let s = w * 0.2;
            polygon(
                out,
                &[(x + s, y), (x + w, y), (x + w - s, y + h), (x, y + h)],
                &paint,
            );
        }
        "cylinder" | "cylinder3" | "datastore" => {
            let ry = (h * 0.1).min(15.0);
            let _ = writeln!(
                out,
                "<path d=\"M{x:.1},{:.1} A{:.1},{ry:.1} 0 0 1 {:.1},{:.1} L{:.1},{:.1} \
                 A{:.1},{ry:.1} 0 0 1 {x:.1},{:.1} Z\"{paint}/>\n\
                 <path d=\"M{x:.1},{:.1} A{:.1},{ry:.1} 0 0 0 {:.1},{:.1}\" fill=\"none\"{}/>",
                y + ry,
                w / 2.0,
                x + w,
                y + ry,
                x + w,
                y + h - ry,
                w / 2.0,
                y + h - ry,
                y + ry,
                w / 2.0,
                x + w,
                y + ry,
                stroke_attributes(cell, stroke_default)
            );
        }
        "actor" | "umlActor" => {
            let cx = x + w / 2.0;
            let head = h / 6.0;
            let stroke = stroke_attributes(cell, stroke_default);
            let _ = writeln!(
                out,
                "<circle cx=\"{cx:.1}\" cy=\"{:.1}\" r=\"{head:.1}\" fill=\"{}\"{stroke}/>\n\
                 <path d=\"M{cx:.1},{:.1} L{cx:.1},{:.1} M{x:.1},{:.1} L{:.1},{:.1} \
                 M{x:.1},{:.1} L{cx:.1},{:.1} L{:.1},{:.1}\" fill=\"none\"{stroke}/>",
                y + head,
                escape(&fill),
                y + 2.0 * head,
                y + h * 0.7,
                y + h * 0.4,
                x + w,
                y + h * 0.4,
                y + h,
                y + h * 0.7,
                x + w,
                y + h
            );
        }
        "image" => {
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"none\" \
                 stroke=\"#999999\" stroke-dasharray=\"4 3\"/>"
            );
        }
        _ if text_only => {}
        _ => {
            let rounded = if cell.flag("rounded") {
                let r = (w.min(h) * 0.15).min(10.0);
                format!(" rx=\"{r:.1}\" ry=\"{r:.1}\"")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"{rounded}{paint}/>"
            );
            if shape == "swimlane" {
                let header = cell.number("startSize", 23.0).min(h);
                let _ = writeln!(
                    out,
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"{}/>",
                    y + header,
                    x + w,
                    y + header,
                    stroke_attributes(cell, stroke_default)
                );
            }
        }
    }
    let label = cell.label();
    if !label.trim().is_empty() {
        let area = if shape == "swimlane" {
            Bounds {
                height: cell.number("startSize", 23.0).min(h),
                ..b
            }
        } else if shape == "image" || shape == "actor" || shape == "umlActor" {
            // These carry their label below the picture.
            Bounds {
                y: y + h + 2.0,
                height: cell.number("fontSize", 12.0) * 1.4,
                ..b
            }
        } else {
            b
        };
        draw_label(out, cell, &label, area);
    }
    out.push_str("</g>\n");
}

fn polygon(out: &mut String, points: &[(f64, f64)], paint: &str) {
    let points: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(out, "<polygon points=\"{}\"{paint}/>", points.join(" "));
}

/// Lines of a label, wrapped to the box when the style asks for it.
fn label_lines(cell: &Cell, label: &str, width: f64) -> Vec<String> {
    let font_size = cell.number("fontSize", 12.0);
    let wrap = cell.style("whiteSpace") == Some("wrap") && width > font_size;
    let per_line = ((width - 4.0) / (font_size * 0.55)).max(1.0) as usize;
    let mut lines = Vec::new();
    for line in label.lines() {
        if !wrap || line.chars().count() <= per_line {
            lines.push(line.to_string());
            continue;
        }
        let mut current = String::new();
        for word in line.split_whitespace() {
            if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > per_line
            {
                lines.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        lines.push(current);
    }
    lines
}

fn text_style(cell: &Cell) -> String {
    let font_size = cell.number("fontSize", 12.0);
    let family = cell.style("fontFamily").unwrap_or("Helvetica");
    let fill = color(cell.style("fontColor"), "#000000");
    let style_bits = cell.number("fontStyle", 0.0) as u32;
    let mut attributes = format!(
        " font-family=\"{}, Arial, sans-serif\" font-size=\"{font_size}\" fill=\"{}\"",
        escape(family),
        escape(&fill)
    );
    if style_bits & 1 != 0 {
        attributes.push_str(" font-weight=\"bold\"");
    }
    if style_bits & 2 != 0 {
        attributes.push_str(" font-style=\"italic\"");
    }
    if style_bits & 4 != 0 {
        attributes.push_str(" text-decoration=\"underline\"");
    }
    attributes
}

fn draw_label(out: &mut String, cell: &Cell, label: &str, area: Bounds) {
    let font_size = cell.number("fontSize", 12.0);
    let line_height = font_size * 1.2;
    let lines = label_lines(cell, label, area.width);
    let (anchor, x) = match cell.style("align") {
        Some("left") => ("start", area.x + 4.0),
        Some("right") => ("end", area.x + area.width - 4.0),
        _ => ("middle", area.x + area.width / 2.0),
    };
    let block = line_height * lines.len() as f64;
    let top = match cell.style("verticalAlign") {
        Some("top") => area.y + 4.0,
        Some("bottom") => area.y + area.height - block - 4.0,
        _ => area.y + (area.height - block) / 2.0,
    };
    write_text(out, cell, &lines, anchor, x, top + font_size, line_height);
}

fn write_text(
    out: &mut String,
    cell: &Cell,
    lines: &[String],
    anchor: &str,
    x: f64,
    first_baseline: f64,
    line_height: f64,
) {
    let _ = write!(
        out,
        "<text x=\"{x:.1}\" y=\"{first_baseline:.1}\" text-anchor=\"{anchor}\"{}>",
        text_style(cell)
    );
    for (index, line) in lines.iter().enumerate() {
        let dy = if index == 0 { 0.0 } else { line_height };
        let _ = write!(
            out,
            "<tspan x=\"{x:.1}\" dy=\"{dy:.1}\">{}</tspan>",
            escape(line)
        );
    }
    out.push_str("</text>\n");
}

/// A label centred on a point (edge labels), with a white backdrop so the line does not
/// cross the text.
fn draw_text_at(
    out: &mut String,
    extent: &mut Extent,
    cell: &Cell,
    label: &str,
    at: Point,
    backdrop: bool,
) {
    let font_size = cell.number("fontSize", 11.0);
    let line_height = font_size * 1.2;
    let lines = label_lines(cell, label, f64::MAX);
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
    let width = widest * font_size * 0.6 + 4.0;
    let height = line_height * lines.len() as f64;
    let area = Bounds {
        x: at.x - width / 2.0,
        y: at.y - height / 2.0,
        width,
        height,
    };
    if backdrop {
        let _ = writeln!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            area.x,
            area.y,
            area.width,
            area.height,
            escape(&color(cell.style("labelBackgroundColor"), "#ffffff"))
        );
    }
    extent.add_bounds(area);
    write_text(
        out,
        cell,
        &lines,
        "middle",
        at.x,
        area.y + font_size * 0.95,
        line_height,
    );
}

/// The edge's route in page coordinates: from its source (a cell's border, or a loose
/// point) through its waypoints to its target.
fn edge_path(cell: &Cell, bounds: &HashMap<&str, Bounds>, origin: Point) -> Vec<Point> {
    let shift = |p: Point| Point {
        x: p.x + origin.x,
        y: p.y + origin.y,
    };
    let source = cell.source.as_deref().and_then(|id| bounds.get(id));
    let target = cell.target.as_deref().and_then(|id| bounds.get(id));
    let waypoints: Vec<Point> = cell.geometry.points.iter().copied().map(shift).collect();
    let start = match (source, cell.geometry.source_point) {
        (Some(b), _) => b.center(),
        (None, Some(p)) => shift(p),
        (None, None) => return Vec::new(),
    };
    let end = match (target, cell.geometry.target_point) {
        (Some(b), _) => b.center(),
        (None, Some(p)) => shift(p),
        (None, None) => return Vec::new(),
    };
    let mut path = vec![start];
    path.extend(waypoints);
    path.push(end);
    let orthogonal = matches!(
        cell.style("edgeStyle"),
        Some("orthogonalEdgeStyle" | "elbowEdgeStyle" | "entityRelationEdgeStyle")
    );
    if orthogonal {
        path = orthogonalize(&path, cell.style("elbow") == Some("vertical"));
    }
    if let (Some(b), Some(&next)) = (source, path.get(1)) {
        path[0] = border_point(*b, next);
    }
    let last = path.len() - 1;
    if let Some(b) = target {
        let previous = path[last - 1];
        path[last] = border_point(*b, previous);
    }
    path
}

/// Turns every diagonal step into two straight ones.
fn orthogonalize(path: &[Point], vertical_first: bool) -> Vec<Point> {
    let mut routed = vec![path[0]];
    for pair in path.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if (a.x - b.x).abs() > 0.5 && (a.y - b.y).abs() > 0.5 {
            let horizontal_first = !vertical_first && (b.x - a.x).abs() >= (b.y - a.y).abs();
            if horizontal_first {
                let mid = (a.x + b.x) / 2.0;
                routed.push(Point { x: mid, y: a.y });
                routed.push(Point { x: mid, y: b.y });
            } else {
                let mid = (a.y + b.y) / 2.0;
                routed.push(Point { x: a.x, y: mid });
                routed.push(Point { x: b.x, y: mid });
            }
        }
        routed.push(b);
    }
    routed
}

/// Where the line from the box's centre towards `toward` leaves the box.
fn border_point(b: Bounds, toward: Point) -> Point {
    let c = b.center();
    let (dx, dy) = (toward.x - c.x, toward.y - c.y);
    if dx.abs() < f64::EPSILON && dy.abs() < f64::EPSILON {
        return c;
    }
    let scale_x = if dx.abs() > f64::EPSILON {
        (b.width / 2.0) / dx.abs()
    } else {
        f64::MAX
    };
    let scale_y = if dy.abs() > f64::EPSILON {
        (b.height / 2.0) / dy.abs()
    } else {
        f64::MAX
    };
    let scale = scale_x.min(scale_y).min(1.0);
    Point {
        x: c.x + dx * scale,
        y: c.y + dy * scale,
    }
}

/// The point at `position` along the path: -1 its start, 0 its middle, 1 its end.
fn along(path: &[Point], position: f64) -> Point {
    let lengths: Vec<f64> = path
        .windows(2)
        .map(|p| ((p[1].x - p[0].x).powi(2) + (p[1].y - p[0].y).powi(2)).sqrt())
        .collect();
    let total: f64 = lengths.iter().sum();
    let mut remaining = total * ((position.clamp(-1.0, 1.0) + 1.0) / 2.0);
    for (segment, length) in path.windows(2).zip(&lengths) {
        if remaining <= *length && *length > 0.0 {
            let t = remaining / length;
            return Point {
                x: segment[0].x + (segment[1].x - segment[0].x) * t,
                y: segment[0].y + (segment[1].y - segment[0].y) * t,
            };
        }
        remaining -= length;
    }
    path.last().copied().unwrap_or_default()
}

fn draw_edge(out: &mut String, markers: &mut Vec<String>, cell: &Cell, path: &[Point]) {
    let stroke = color(cell.style("strokeColor"), "#000000");
    let mut marker = |kind: Option<&str>, default_arrow: bool| -> Option<usize> {
        let arrow = match kind {
            None => default_arrow,
            Some("none") | Some("") => false,
            Some(_) => true,
        };
        if !arrow || stroke == "none" {
            return None;
        }
        Some(match markers.iter().position(|c| *c == stroke) {
            Some(index) => index,
            None => {
                markers.push(stroke.clone());
                markers.len() - 1
            }
        })
    };
    let end = marker(cell.style("endArrow"), true);
    let start = marker(cell.style("startArrow"), false);
    let points: Vec<String> = path
        .iter()
        .map(|p| format!("{:.1},{:.1}", p.x, p.y))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"edge\" data-cell-id=\"{}\" points=\"{}\" fill=\"none\"{}",
        escape(&cell.id),
        points.join(" "),
        stroke_attributes(cell, "#000000")
    );
    if let Some(index) = end {
        let _ = write!(out, " marker-end=\"url(#arrow{index})\"");
    }
    if let Some(index) = start {
        let _ = write!(out, " marker-start=\"url(#arrow{index})\"");
    }
    out.push_str("/>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PLAIN: &str = r#"<mxfile><diagram name="Page-1"><mxGraphModel><root>
        <mxCell id="0"/><mxCell id="1" parent="0"/>
        <mxCell id="a" value="Web &amp;amp; API" style="rounded=1;html=1;fillColor=#dae8fc;" vertex="1" parent="1">
          <mxGeometry x="40" y="40" width="120" height="60" as="geometry"/></mxCell>
        <mxCell id="b" value="&lt;b&gt;Database&lt;/b&gt;" style="shape=cylinder3;html=1;" vertex="1" parent="1">
          <mxGeometry x="240" y="40" width="80" height="80" as="geometry"/></mxCell>
        <mxCell id="e" value="SQL" style="edgeStyle=orthogonalEdgeStyle;" edge="1" parent="1" source="a" target="b">
          <mxGeometry relative="1" as="geometry"/></mxCell>
        <mxCell id="g" value="Group" style="swimlane;" vertex="1" parent="1">
          <mxGeometry x="40" y="160" width="200" height="100" as="geometry"/></mxCell>
        <mxCell id="c" value="Inside" style="ellipse;" vertex="1" parent="g">
          <mxGeometry x="20" y="40" width="80" height="40" as="geometry"/></mxCell>
        </root></mxGraphModel></diagram></mxfile>"#;

    #[test]
    fn draws_shapes_labels_edges_and_nested_cells() {
        let svg = render(PLAIN).unwrap();
        for text in [
            "Web &amp; API",
            "Database",
            "SQL",
            "Group",
            "Inside",
            "<ellipse",
            "marker-end",
        ] {
            assert!(svg.contains(text), "{text} missing from {svg}");
        }
        // The ellipse sits inside its group: 40 + 20 + 80/2 = 100 across.
        assert!(svg.contains("cx=\"100.0\""), "{svg}");
    }

    #[test]
    fn unpacks_compressed_pages() {
        let model = &PLAIN[PLAIN.find("<mxGraphModel>").unwrap()
            ..PLAIN.find("</mxGraphModel>").unwrap() + "</mxGraphModel>".len()];
        let encoded: String =
            percent_encoding::utf8_percent_encode(model, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflater.write_all(encoded.as_bytes()).unwrap();
        let packed = STANDARD.encode(deflater.finish().unwrap());
        let file = format!("<mxfile><diagram id=\"x\" name=\"P\">{packed}</diagram></mxfile>");
        let svg = render(&file).unwrap();
        assert!(svg.contains("Database") && svg.contains("Inside"), "{svg}");
    }

    #[test]
    fn broken_xml_is_a_syntax_error_with_its_line() {
        let error = render("<mxfile>\n<diagram>\n<mxGraphModel><root></mxGraphModel>").unwrap_err();
        assert!(
            matches!(error, RenderError::Syntax { line: Some(3), .. }),
            "{error}"
        );
        let error = render("<html/>").unwrap_err();
        assert!(error.to_string().contains("<mxfile>"), "{error}");
    }
}
