//! Drawing the watch: a function of its state, the time and the frame's size, nothing else.
//! Only what is on screen is built (the visible rows of the table, the visible lines of the
//! log), so a frame costs the same with ten tasks or ten thousand.

use jiff::Timestamp;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState};

use super::agent::{call_summary, diff_lines};
use super::log::{DiffLine, LineKind};
use super::state::{Control, Focus, Link, Mode, Opened, Progress, Purpose, Watch};
use crate::proto::human::{Tone, ago, elapsed, ellipsize, exit_label, title};
use crate::proto::{Approval, TaskSpec, TaskState};

/// Lines of the detail pane of a task whose log is not open (its border included).
const DETAIL_LINES: u16 = 6;
/// Lines of the approval panel besides the diff: its border, the call, the keys.
const APPROVAL_FRAME: u16 = 3;

/// Where each part of the screen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub tasks: Rect,
    /// The open log (its border included), or the selected task's details.
    pub detail: Rect,
    /// The approval the target task waits for, when it waits for one.
    pub approval: Option<Rect>,
    pub status: Rect,
    pub footer: Rect,
}

impl Areas {
    /// Rows of the table below its header row.
    pub fn table_rows(&self) -> usize {
        self.tasks.height.saturating_sub(1) as usize
    }

    /// Log lines inside the detail pane's border.
    pub fn log_lines(&self) -> usize {
        self.detail.height.saturating_sub(1) as usize
    }
}

pub fn layout(area: Rect, watch: &Watch) -> Areas {
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    // The approval panel is cut off the bottom of the body, next to the keys that answer it;
    // its diff may take up to half the body.
    let approval_height = waiting(watch).map(|approval| {
        let diff = approval
            .diff
            .as_deref()
            .map_or(0, |diff| diff.lines().count());
        let wanted = APPROVAL_FRAME.saturating_add(u16::try_from(diff).unwrap_or(u16::MAX));
        wanted.min((body.height / 2).max(APPROVAL_FRAME))
    });
    let [body, approval] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(approval_height.unwrap_or(0)),
    ])
    .areas(body);
    let detail_height = if watch.opened.is_some() {
        // The log gets most of the room; the table keeps a few rows, more when it has them.
        let table = (watch.shown.len() as u16 + 1).clamp(4, (body.height * 2 / 5).max(4));
        body.height.saturating_sub(table)
    } else {
        DETAIL_LINES.min(body.height / 2)
    };
    let [tasks, detail] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(detail_height)]).areas(body);
    Areas {
        header,
        tasks,
        detail,
        approval: approval_height.map(|_| approval),
        status,
        footer,
    }
}

/// The approval the target task waits for, if any.
fn waiting(watch: &Watch) -> Option<&Approval> {
    watch
        .target()
        .and_then(|task| watch.pending_approval(&task.id))
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, watch: &Watch, now: Timestamp) {
    let areas = layout(frame.area(), watch);
    let paint = Paint {
        colour: watch.options.colour,
    };
    draw_header(frame, areas.header, watch, now, paint);
    draw_tasks(frame, areas.tasks, watch, now, paint);
    match &watch.opened {
        Some(opened) => draw_log(frame, areas.detail, watch, opened, paint),
        None => draw_detail(frame, areas.detail, watch, now, paint),
    }
    if let (Some(area), Some(approval)) = (areas.approval, waiting(watch)) {
        draw_approval(frame, area, approval, paint);
    }
    draw_status(frame, areas.status, watch, paint);
    draw_footer(frame, areas.footer, watch, paint);
    if watch.mode == Mode::Help {
        // The footer stays in sight: it says how the help closes.
        let above_footer = Rect {
            height: areas.footer.y,
            ..frame.area()
        };
        draw_help(frame, above_footer, paint);
    }
}

/// Styles with colour, or (NO_COLOR, or not wanted) with emphasis alone.
#[derive(Debug, Clone, Copy)]
struct Paint {
    colour: bool,
}

impl Paint {
    fn tone(self, tone: Tone) -> Style {
        let colour = |color: Color| {
            if self.colour {
                Style::new().fg(color)
            } else {
                Style::new()
            }
        };
        match tone {
            Tone::Dim => Style::new().add_modifier(Modifier::DIM),
            Tone::Cyan => colour(Color::Cyan),
            Tone::Yellow => colour(Color::Yellow),
            Tone::Green => colour(Color::Green),
            Tone::Red => colour(Color::Red),
            Tone::Magenta => colour(Color::Magenta),
            Tone::Alert => colour(Color::Yellow).add_modifier(Modifier::BOLD),
        }
    }

    fn state(self, state: TaskState) -> Style {
        self.tone(state.tone())
    }

    fn key(self) -> Style {
        self.tone(Tone::Cyan).add_modifier(Modifier::BOLD)
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

fn draw_header(frame: &mut Frame, area: Rect, watch: &Watch, now: Timestamp, paint: Paint) {
    let [top, counts] = Layout::vertical([Constraint::Length(1); 2]).areas(area);
    let link = match watch.link {
        Link::Live => {
            let mut spans = vec![Span::styled("● connected", paint.tone(Tone::Green))];
            if let Some(rtt) = watch.latency {
                spans.push(Span::raw(format!(
                    "  rtt {:.1} ms",
                    rtt.as_secs_f64() * 1e3
                )));
            }
            Line::from(spans)
        }
        Link::Reconnecting { since } => {
            let clock = since
                .to_zoned(watch.options.time_zone.clone())
                .strftime("%H:%M:%S");
            Line::styled(
                format!("◌ reconnecting · last contact {clock}, {}", ago(since, now)),
                paint.tone(Tone::Alert),
            )
        }
    };
    let link_width = link.width() as u16;
    let [name, _, status] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Length(link_width),
    ])
    .areas(top);
    let mut name_line = vec![Span::raw(watch.options.server.clone())];
    let title = "victor watch  ";
    if (title.len() + watch.options.server.chars().count()) as u16 <= name.width {
        name_line.insert(0, Span::styled(title, bold()));
    }
    frame.render_widget(Line::from(name_line), name);
    frame.render_widget(link.right_aligned(), status);
    frame.render_widget(tally(watch, counts.width, paint), counts);
}

/// How many tasks in each state: `○ 2 queued  ● 3 running  ✓ 5 succeeded`; where that is too
/// wide, the final states lose their names (`✓5`), then all of them.
fn tally(watch: &Watch, width: u16, paint: Paint) -> Line<'static> {
    let counts = watch.counts();
    let total: usize = counts.values().sum();
    let filter = (!watch.filter.is_empty())
        .then(|| format!("  filter “{}”: {} shown", watch.filter, watch.shown.len()));
    let line = |named: &dyn Fn(TaskState) -> bool| {
        let mut spans = vec![Span::raw(format!(
            "{total} task{}",
            if total == 1 { "" } else { "s" }
        ))];
        for state in TaskState::ALL {
            if let Some(count) = counts.get(&state) {
                let text = if named(state) {
                    format!("  {} {count} {state}", state.symbol())
                } else {
                    format!("  {}{count}", state.symbol())
                };
                spans.push(Span::styled(text, paint.state(state)));
            }
        }
        if let Some(filter) = &filter {
            spans.push(Span::styled(filter.clone(), bold()));
        }
        Line::from(spans)
    };
    let forms: [&dyn Fn(TaskState) -> bool; 2] = [&|_| true, &|state| !state.is_final()];
    forms
        .into_iter()
        .map(line)
        .find(|line| line.width() <= width as usize)
        .unwrap_or_else(|| line(&|_| false))
}

/// The first row shown so that the selected one is on screen.
fn table_offset(selected: usize, rows: usize) -> usize {
    (selected + 1).saturating_sub(rows.max(1))
}

fn draw_tasks(frame: &mut Frame, area: Rect, watch: &Watch, now: Timestamp, paint: Paint) {
    // Progress is known of agents only: without one the column would stay empty, and the
    // commands get its room.
    let progress = watch.knows_progress();
    let mut names = vec!["STATE", "TASK", "ELAPSED", "EXIT", "CREATED"];
    let mut widths = vec![
        Constraint::Length(13),
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
    ];
    if progress {
        names.insert(2, "PROGRESS");
        widths.insert(2, Constraint::Length(11));
    }
    let header = Row::new(names).style(bold());
    if watch.shown.is_empty() {
        let hint = if watch.tasks.is_empty() {
            "no tasks yet: start one with `victor task start -- CMD` and it appears here"
        } else {
            "no task matches the filter (Esc clears it)"
        };
        let [table, message] =
            Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
        frame.render_widget(Table::new(Vec::<Row>::new(), widths).header(header), table);
        frame.render_widget(Paragraph::new(hint).style(dim()), message);
        return;
    }
    let rows_room = area.height.saturating_sub(1) as usize;
    let selected = watch.selected_index().unwrap_or(0);
    let offset = table_offset(selected, rows_room);
    let rows = watch
        .shown
        .iter()
        .skip(offset)
        .take(rows_room)
        .filter_map(|id| watch.task(id))
        .map(|task| {
            let mut cells = vec![
                Span::styled(task.state.label(), paint.state(task.state)),
                Span::raw(title(task)),
                Span::raw(elapsed(task, now)),
                Span::raw(exit_label(task)),
                Span::styled(ago(task.created_at, now), dim()),
            ];
            if progress {
                let cell = match watch.progress(task) {
                    Some(Progress::Approval) => Span::styled("⚠ approval", paint.tone(Tone::Alert)),
                    Some(Progress::Steps { done, budget }) => {
                        Span::raw(format!("step {done}/{budget}"))
                    }
                    None => Span::raw(""),
                };
                cells.insert(2, cell);
            }
            Row::new(cells)
        });
    let highlight = match watch.focus {
        Focus::Tasks => Style::new().add_modifier(Modifier::REVERSED),
        Focus::Log => bold().add_modifier(Modifier::UNDERLINED),
    };
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(highlight);
    let mut state = TableState::default().with_selected(Some(selected - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The selected task's details, before its log is opened.
fn draw_detail(frame: &mut Frame, area: Rect, watch: &Watch, now: Timestamp, paint: Paint) {
    let Some(task) = watch.selected.as_deref().and_then(|id| watch.task(id)) else {
        return;
    };
    let block = Block::new().borders(Borders::TOP).title(" task ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let field = |name: &str| Span::styled(format!("{name:<8}"), bold());
    let lines = vec![
        Line::from(vec![field("id"), Span::raw(task.id.clone())]),
        Line::from(vec![field("command"), Span::raw(title(task))]),
        Line::from(vec![
            field("state"),
            Span::styled(task.state.label(), paint.state(task.state)),
            Span::raw(format!(
                "   exit {}   elapsed {}   created {}",
                exit_label(task),
                elapsed(task, now),
                ago(task.created_at, now)
            )),
        ]),
        Line::styled("Enter opens its log", dim()),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_log(frame: &mut Frame, area: Rect, watch: &Watch, opened: &Opened, paint: Paint) {
    let log = &opened.log;
    let height = area.height.saturating_sub(1) as usize;
    let top = log.top(height);
    let position = if log.is_empty() {
        " no output yet ".to_string()
    } else if log.following() {
        " following ".to_string()
    } else {
        let last = (top + height).min(log.len());
        let older = if log.from_beginning() {
            ""
        } else {
            ", more above"
        };
        let newer = if log.live() { "" } else { ", more below" };
        format!(" lines {}–{last} of {}{older}{newer} ", top + 1, log.len())
    };
    let name = match watch.task(&opened.task_id) {
        Some(task) => format!(
            "{} {}  {}",
            task.state.symbol(),
            title(task),
            opened.task_id
        ),
        None => opened.task_id.clone(),
    };
    // The name gives way to the position, which says whether new lines are being missed.
    let room = (area.width as usize).saturating_sub(position.chars().count() + 5);
    let focused = if watch.focus == Focus::Log {
        bold()
    } else {
        dim()
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(focused)
        .title(Line::styled(
            format!(" {} ", ellipsize(&name, room)),
            focused,
        ))
        .title_top(Line::raw(position).right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let search = opened.search.as_deref().map(str::to_lowercase);
    let lines: Vec<Line> = (top..(top + height).min(log.len()))
        .filter_map(|index| Some((index, log.line(index)?)))
        .map(|(index, line)| {
            let mut style = log_style(line.kind, paint);
            let is_match = search
                .as_deref()
                .is_some_and(|query| line.text.to_lowercase().contains(query));
            if log.marked() == Some(index) {
                style = style.add_modifier(Modifier::REVERSED);
            } else if is_match {
                style = style.add_modifier(Modifier::UNDERLINED);
            }
            let text = match line.kind {
                LineKind::State(_) | LineKind::Note | LineKind::Alert => {
                    format!("── {}", line.text)
                }
                LineKind::Diff(_) | LineKind::Quote => format!("   {}", line.text),
                LineKind::Stdout | LineKind::Stderr => line.text.clone(),
            };
            Line::styled(text, style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The call an agent waits to make, with the diff it would make and the keys that answer it.
fn draw_approval(frame: &mut Frame, area: Rect, approval: &Approval, paint: Paint) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(paint.tone(Tone::Alert))
        .title(Line::styled(
            format!(" ⚠ the agent asks to run {} ", approval.tool),
            paint.tone(Tone::Alert),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [call, diff, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(
        Line::from(vec![
            Span::styled(format!("{} ", approval.tool), bold()),
            Span::raw(call_summary(approval)),
        ]),
        call,
    );
    let all = diff_lines(approval.diff.as_deref().unwrap_or_default());
    let room = diff.height as usize;
    let mut shown: Vec<Line> = all
        .iter()
        .take(room)
        .map(|(kind, text)| Line::styled(text.clone(), log_style(*kind, paint)))
        .collect();
    if all.len() > room && room > 0 {
        shown.pop();
        let more = all.len() - room + 1;
        shown.push(Line::styled(
            format!("… {more} more lines: the log shows the whole diff"),
            dim(),
        ));
    }
    frame.render_widget(Paragraph::new(shown), diff);
    let key = |key: &'static str, what: &'static str| {
        [
            Span::styled(key, paint.key()),
            Span::raw(format!(" {what}   ")),
        ]
    };
    let answers: Vec<Span> = [
        key("a", "allow once"),
        key("A", "allow always"),
        key("d", "deny (with a reason)"),
        key("c", "cancel the task"),
    ]
    .into_iter()
    .flatten()
    .collect();
    frame.render_widget(Line::from(answers), keys);
}

/// How a line of the log (or of a diff) looks.
fn log_style(kind: LineKind, paint: Paint) -> Style {
    match kind {
        LineKind::Stdout | LineKind::Diff(DiffLine::Same) => Style::new(),
        LineKind::Stderr | LineKind::Diff(DiffLine::Removed) => paint.tone(Tone::Red),
        LineKind::State(state) => paint.state(state).add_modifier(Modifier::BOLD),
        LineKind::Note | LineKind::Quote => dim(),
        LineKind::Alert => paint.tone(Tone::Alert),
        LineKind::Diff(DiffLine::Added) => paint.tone(Tone::Green),
        LineKind::Diff(DiffLine::Header) => paint.tone(Tone::Cyan),
    }
}

fn draw_status(frame: &mut Frame, area: Rect, watch: &Watch, paint: Paint) {
    let line = match &watch.mode {
        Mode::Prompt { purpose, text } => {
            let label = match purpose {
                Purpose::Filter => "filter: ".to_string(),
                Purpose::Search => "search: ".to_string(),
                Purpose::Input { task_id } => format!("input to {}: ", task_name(watch, task_id)),
                Purpose::Guidance { task_id } => {
                    format!("guidance for {}: ", task_name(watch, task_id))
                }
                Purpose::DenyReason { .. } => {
                    "deny; the reason, for the model (optional): ".to_string()
                }
            };
            Line::from(vec![
                Span::styled(label, bold()),
                Span::raw(text.clone()),
                Span::styled("█", dim()),
            ])
        }
        Mode::Confirm { task_id, control } => {
            let verb = match control {
                Control::Remove => "Remove (with its log)",
                _ => "Cancel",
            };
            Line::styled(
                format!("{verb} {}? y/n", task_name(watch, task_id)),
                paint.tone(Tone::Alert),
            )
        }
        Mode::Browse | Mode::Help => match &watch.status {
            Some(status) if status.error => Line::styled(
                status.text.clone(),
                paint.tone(Tone::Red).add_modifier(Modifier::BOLD),
            ),
            Some(status) => Line::raw(status.text.clone()),
            None => Line::default(),
        },
    };
    frame.render_widget(line, area);
}

fn task_name(watch: &Watch, task_id: &str) -> String {
    watch
        .task(task_id)
        .map_or_else(|| task_id.to_string(), |task| ellipsize(&title(task), 40))
}

/// The keys that do something now.
fn footer_keys(watch: &Watch) -> Vec<(&'static str, &'static str)> {
    match &watch.mode {
        Mode::Help => return vec![("any key", "close")],
        Mode::Confirm { .. } => return vec![("y", "yes"), ("any other key", "no")],
        Mode::Prompt { purpose, .. } => {
            let mut keys = vec![("Enter", "done"), ("Esc", "cancel")];
            match purpose {
                Purpose::Input { .. } => {
                    keys[0] = ("Enter", "send line");
                    keys.insert(1, ("Ctrl-D", "send and close stdin"));
                }
                Purpose::Guidance { .. } => keys[0] = ("Enter", "send"),
                Purpose::DenyReason { .. } => keys[0] = ("Enter", "deny"),
                Purpose::Filter | Purpose::Search => {}
            }
            return keys;
        }
        Mode::Browse => {}
    }
    let mut keys = Vec::new();
    if waiting(watch).is_some() {
        keys.extend([("a", "allow once"), ("A", "always"), ("d", "deny")]);
    }
    keys.extend(match (watch.focus, &watch.opened) {
        (Focus::Log, Some(_)) => vec![("↑↓", "scroll"), ("End", "follow"), ("Esc", "tasks")],
        _ => {
            let mut keys = vec![("↑↓", "move"), ("Enter", "open"), ("/", "filter")];
            if watch.opened.is_some() {
                keys.push(("Tab", "log"));
            }
            keys
        }
    });
    if let Some(task) = watch.target() {
        match task.state {
            TaskState::Running => keys.push(("p", "pause")),
            TaskState::Paused => keys.push(("r", "resume")),
            _ => {}
        }
        if task.state.is_final() {
            keys.push(("x", "remove"));
        } else {
            keys.push(("c", "cancel"));
            match task.spec {
                TaskSpec::Agent(_) => keys.push(("m", "guide")),
                _ => keys.push(("i", "input")),
            }
        }
    }
    if watch.focus == Focus::Log && watch.opened.is_some() {
        keys.push(("/", "search"));
        keys.push(("n/N", "next match"));
    }
    keys.push(("?", "help"));
    keys.push(("q", "quit"));
    keys
}

/// The keys that fit, the first ones first: `?` and `q` always, being the way to the rest.
fn draw_footer(frame: &mut Frame, area: Rect, watch: &Watch, paint: Paint) {
    let keys = footer_keys(watch);
    let width = |(key, what): &(&str, &str)| key.chars().count() + what.chars().count() + 3;
    let essential = |key: &str| matches!(key, "?" | "q");
    let mut room = area.width as usize + 2;
    room = room.saturating_sub(keys.iter().filter(|k| essential(k.0)).map(width).sum());
    let mut spans = Vec::new();
    for entry in &keys {
        if !essential(entry.0) {
            if width(entry) > room {
                continue;
            }
            room -= width(entry);
        }
        if !spans.is_empty() {
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(entry.0, paint.key()));
        spans.push(Span::raw(format!(" {}", entry.1)));
    }
    frame.render_widget(Line::from(spans), area);
}

const HELP: [(&str, &str); 20] = [
    ("↑ ↓  j k", "move in the table, scroll the log"),
    ("PgUp PgDn", "a page at a time"),
    (
        "Home End  g G",
        "first and last task; start of the log, follow its tail",
    ),
    ("Enter", "open the selected task's log"),
    (
        "Esc",
        "back to the table (the log stays open); clear the filter",
    ),
    ("Tab", "switch between the table and the open log"),
    ("mouse wheel", "scroll what is under the pointer"),
    ("p r", "pause the task, resume it"),
    ("c", "cancel it (asks first)"),
    ("x", "remove a finished task and its log (asks first)"),
    (
        "i",
        "type a line for its stdin (Ctrl-D: send and close stdin)",
    ),
    (
        "a A d",
        "an agent's call waiting: allow once, always, deny (why)",
    ),
    ("m", "type guidance for an agent, read before its next step"),
    ("/", "filter the tasks; in the log, search it"),
    ("n N", "next older, next newer match"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit (the tasks keep running)"),
    ("", ""),
    (
        "",
        "The controls act on the open log's task while reading it,",
    ),
    ("", "else on the selected task."),
];

fn draw_help(frame: &mut Frame, area: Rect, paint: Paint) {
    let width = 76.min(area.width);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = area.centered(Constraint::Length(width), Constraint::Length(height));
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<15}"), paint.key()),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::proto::OutputStream;
    use crate::proto::agent_types;
    use crate::tui::fixtures::{
        agent_task, approval, at, every_state, options, output, session_task, state_event, task,
        typed_event,
    };
    use crate::tui::keys::Action;
    use crate::tui::state::{Update, Viewport};

    const NOW: i64 = 95;

    fn screen(watch: &mut Watch, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let areas = layout(Rect::new(0, 0, width, height), watch);
        watch.set_viewport(Viewport {
            table_rows: areas.table_rows(),
            log_lines: areas.log_lines(),
        });
        terminal.draw(|frame| draw(frame, watch, at(NOW))).unwrap();
        terminal
    }

    fn connected(tasks: Vec<crate::proto::Task>) -> Watch {
        let mut watch = Watch::new(options(), at(0));
        let count = tasks.len() as u64;
        watch.apply(Update::Tasks(tasks), at(0));
        watch.apply(
            Update::Ping {
                rtt: Duration::from_micros(1500),
                uptime_secs: 3600,
                tasks: count,
            },
            at(NOW),
        );
        watch.apply(Update::Heartbeat, at(NOW));
        watch
    }

    /// A running task with a log of `lines` lines, opened.
    fn following(lines: u64) -> Watch {
        let mut watch = connected(every_state());
        let id = watch.shown[1].clone();
        watch.open(&id);
        let mut running = state_event(1, TaskState::Running);
        running.task_id = id.clone();
        running.data["pid"] = 4242.into();
        watch.apply(Update::Log(running), at(NOW));
        for seq in 2..lines + 2 {
            let stream = if seq % 7 == 0 {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            };
            let mut event = output(seq, stream, &format!("compiling crate number {seq}\n"));
            event.task_id = id.clone();
            watch.apply(Update::Log(event), at(NOW));
        }
        watch
    }

    #[test]
    fn empty_server() {
        let mut watch = connected(vec![]);
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    #[test]
    fn every_state_at_80_by_24() {
        let mut watch = connected(every_state());
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    #[test]
    fn many_tasks_on_a_large_terminal() {
        let mut tasks = every_state();
        for n in 0..60 {
            let state = TaskState::ALL[n % TaskState::ALL.len()];
            let mut extra = task(&format!("019a0000-0000-7000-8000-{n:012}"), state);
            extra.name = Some(format!("job-{n}"));
            tasks.push(extra);
        }
        let mut watch = connected(tasks);
        watch.act(Action::Move(3), at(NOW));
        insta::assert_snapshot!(screen(&mut watch, 140, 40).backend());
    }

    #[test]
    fn a_log_following_its_tail() {
        let mut watch = following(40);
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    #[test]
    fn a_log_scrolled_up_with_a_search_match() {
        let mut watch = following(40);
        screen(&mut watch, 100, 30);
        watch.act(Action::Scroll(-12), at(NOW));
        watch.act(Action::StartSearch, at(NOW));
        for c in "number 2".chars() {
            watch.act(Action::Type(c), at(NOW));
        }
        watch.act(Action::Submit, at(NOW));
        insta::assert_snapshot!(screen(&mut watch, 100, 30).backend());
    }

    #[test]
    fn names_and_commands_show_as_written_on_one_line() {
        let mut tasks = every_state();
        tasks[0].name = Some("invoice\u{202e}fdp.exe".into());
        tasks[0].spec = TaskSpec::Exec(crate::proto::ExecSpec::new(crate::proto::Command::Shell(
            "make\nmake install".into(),
        )));
        let mut watch = connected(tasks);
        let text = screen(&mut watch, 100, 24).backend().to_string();
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(
            text.contains("invoice\\u{202e}fdp.exe: make ⏎ make install"),
            "{text}"
        );
    }

    #[test]
    fn reconnecting() {
        let mut watch = Watch::new(options(), at(0));
        watch.apply(Update::Tasks(every_state()), at(0));
        watch.apply(Update::Heartbeat, at(NOW - 42));
        watch.apply(Update::PingFailed, at(NOW - 40));
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    #[test]
    fn help_overlay() {
        let mut watch = connected(every_state());
        watch.act(Action::Help, at(NOW));
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    #[test]
    fn asking_before_cancelling_and_a_refusal() {
        let mut watch = connected(every_state());
        watch.act(Action::Move(1), at(NOW));
        watch.act(Action::AskCancel, at(NOW));
        let asking = screen(&mut watch, 80, 24);
        let text = asking.backend().to_string();
        assert!(
            text.contains("Cancel build: cargo build --release? y/n"),
            "{text}"
        );
        watch.act(Action::Decline, at(NOW));
        let id = watch.selected.clone().unwrap();
        watch.apply(
            Update::Controlled {
                task_id: id,
                control: Control::Resume,
                outcome: Err("task is running, not paused".into()),
            },
            at(NOW),
        );
        let refused = screen(&mut watch, 80, 24).backend().to_string();
        assert!(
            refused.contains("resume build: cargo build --release refused: task is running"),
            "{refused}"
        );
    }

    #[test]
    fn no_colour_means_no_colour_anywhere() {
        let mut watch = following(40);
        watch.apply(Update::PingFailed, at(NOW));
        let terminal = screen(&mut watch, 80, 24);
        let buffer = terminal.backend().buffer();
        assert!(
            buffer
                .content
                .iter()
                .all(|cell| cell.fg == Color::Reset && cell.bg == Color::Reset)
        );
        let mut coloured = following(40);
        coloured.options.colour = true;
        let terminal = screen(&mut coloured, 80, 24);
        assert!(
            terminal
                .backend()
                .buffer()
                .content
                .iter()
                .any(|cell| cell.fg == Color::Cyan)
        );
    }

    #[test]
    fn tiny_terminals_do_not_break_drawing() {
        let mut watch = following(40);
        for (width, height) in [(1, 1), (10, 3), (20, 8), (80, 5)] {
            screen(&mut watch, width, height);
        }
    }

    const AGENT: &str = "019b5e3c-7a10-7000-8000-000000000009";

    /// An agent that read a file, fixed it, and now asks to edit it again, with its log open.
    fn agent_asking() -> Watch {
        let mut tasks = every_state();
        tasks.insert(0, agent_task(AGENT, TaskState::Running));
        let mut watch = connected(tasks);
        watch.open(AGENT);
        let events = [
            (
                agent_types::MESSAGE_DELTA,
                serde_json::json!({"text": "Let me look at calc.sh.\n"}),
            ),
            (
                agent_types::TOOL_CALL,
                serde_json::json!({"id": "c1", "name": "read_file", "arguments": {"path": "calc.sh"}}),
            ),
            (
                agent_types::TOOL_RESULT,
                serde_json::json!({"id": "c1", "name": "read_file", "output": "add() { echo $(( $1 - $2 )); }", "duration_ms": 1}),
            ),
            (
                agent_types::MESSAGE,
                serde_json::json!({"step": 1, "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "read_file", "arguments": {}}]}}),
            ),
            (
                agent_types::FILE_CHANGED,
                serde_json::json!({"path": "calc.sh", "kind": "modified", "diff": "--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-add() { echo $(( $1 - $2 )); }\n+add() { echo $(( $1 + $2 )); }\n"}),
            ),
            (
                agent_types::MESSAGE,
                serde_json::json!({"step": 2, "message": {"role": "assistant", "content": "", "tool_calls": [{"id": "c2", "name": "edit_file", "arguments": {}}]}}),
            ),
        ];
        let mut log = vec![state_event(1, TaskState::Running)];
        for (n, (kind, data)) in events.into_iter().enumerate() {
            log.push(crate::proto::Event {
                kind: kind.into(),
                data,
                ..state_event(n as u64 + 2, TaskState::Running)
            });
        }
        let mut asking = approval(AGENT, "019b5e3c-aaaa-7000-8000-000000000001");
        asking.tool = "edit_file".into();
        asking.arguments = serde_json::json!({"path": "calc.sh", "old": "add", "new": "sum"});
        asking.diff = Some(
            "--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-add() { echo $(( $1 + $2 )); }\n+sum() { echo $(( $1 + $2 )); }\n".into(),
        );
        log.push(crate::proto::Event {
            kind: agent_types::APPROVAL_REQUESTED.into(),
            data: serde_json::json!({ "approval": asking }),
            ..state_event(8, TaskState::Running)
        });
        for mut event in log {
            event.task_id = AGENT.into();
            watch.apply(Update::Log(event), at(NOW));
        }
        watch
    }

    #[test]
    fn an_agent_asking_for_approval_with_its_log_open() {
        let mut watch = agent_asking();
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    /// A session with its log open: two executions done, one that raised, one showing an
    /// image, one waiting for input.
    #[test]
    fn a_session_with_its_executions_open() {
        use crate::proto::{
            ExecutionDisplay, ExecutionError, ExecutionFinished, ExecutionOutput, ExecutionQueued,
            ExecutionResult, ExecutionStatus, InputRequested, KernelReady, TransactionPolicy,
        };
        let id = "019b5e3c-7a10-7000-8000-0000000000aa";
        let mut tasks = every_state();
        tasks.insert(0, session_task(id, TaskState::Running));
        let mut watch = connected(tasks);
        watch.open(id);
        let queued = |n: &str, code: &str| ExecutionQueued {
            execution_id: n.into(),
            code: code.into(),
            transaction_policy: TransactionPolicy::CommitAlways,
            timeout_secs: None,
        };
        let finished = |n: &str, status, count| ExecutionFinished {
            execution_id: n.into(),
            status,
            execution_count: Some(count),
            duration_ms: 3,
            rolled_back: false,
        };
        let mut seq = 0;
        let mut add = |data: &dyn Fn(u64) -> crate::proto::Event| {
            seq += 1;
            watch.apply(Update::Log(data(seq)), at(NOW));
        };
        add(&|s| {
            let mut running = state_event(s, TaskState::Running);
            running.task_id = id.into();
            running
        });
        add(&|s| {
            typed_event(
                id,
                s,
                &KernelReady {
                    kernel: "python3".into(),
                    language: "python".into(),
                    language_version: "3.11.7".into(),
                    implementation: "ipython".into(),
                    pid: 4242,
                    warm: true,
                    startup_ms: 0,
                },
            )
        });
        add(&|s| typed_event(id, s, &queued("e1", "x = 6 * 7\nprint(x)\nx + 1")));
        add(&|s| {
            typed_event(
                id,
                s,
                &ExecutionOutput {
                    execution_id: "e1".into(),
                    stream: OutputStream::Stdout,
                    text: "42\n".into(),
                },
            )
        });
        add(&|s| {
            typed_event(
                id,
                s,
                &ExecutionResult {
                    execution_id: "e1".into(),
                    execution_count: Some(1),
                    data: [("text/plain".to_string(), "43".into())].into(),
                    metadata: serde_json::Value::Null,
                },
            )
        });
        add(&|s| typed_event(id, s, &finished("e1", ExecutionStatus::Ok, 1)));
        add(&|s| typed_event(id, s, &queued("e2", "x / 0")));
        add(&|s| {
            typed_event(
                id,
                s,
                &ExecutionError {
                    execution_id: "e2".into(),
                    name: "ZeroDivisionError".into(),
                    value: "division by zero".into(),
                    traceback: vec![
                        "\u{1b}[0;31mZeroDivisionError\u{1b}[0m Traceback".into(),
                        "\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero".into(),
                    ],
                },
            )
        });
        add(&|s| typed_event(id, s, &finished("e2", ExecutionStatus::Error, 2)));
        add(&|s| typed_event(id, s, &queued("e3", "plot()")));
        add(&|s| {
            typed_event(
                id,
                s,
                &ExecutionDisplay {
                    execution_id: "e3".into(),
                    data: [
                        ("image/png".to_string(), "A".repeat(3000).into()),
                        ("text/plain".to_string(), "<Figure>".into()),
                    ]
                    .into(),
                    metadata: serde_json::Value::Null,
                    display_id: None,
                    update: false,
                },
            )
        });
        add(&|s| typed_event(id, s, &finished("e3", ExecutionStatus::Ok, 3)));
        add(&|s| typed_event(id, s, &queued("e4", "name = input('name? ')")));
        add(&|s| {
            typed_event(
                id,
                s,
                &InputRequested {
                    execution_id: "e4".into(),
                    input_id: "i1".into(),
                    prompt: "name? ".into(),
                    password: false,
                },
            )
        });
        let text = screen(&mut watch, 80, 24).backend().to_string();
        assert!(!text.contains('\u{1b}'));
        insta::assert_snapshot!(screen(&mut watch, 80, 24).backend());
    }

    #[test]
    fn an_agent_asking_for_approval_in_the_table() {
        let mut watch = agent_asking();
        watch.act(Action::Back, at(NOW));
        insta::assert_snapshot!(screen(&mut watch, 100, 30).backend());
    }

    #[test]
    fn a_diff_is_coloured_by_line() {
        let mut watch = agent_asking();
        watch.options.colour = true;
        let terminal = screen(&mut watch, 100, 40);
        let buffer = terminal.backend().buffer();
        let colour_of = |text: &str| {
            let row = (0..buffer.area.height)
                .find(|&y| {
                    let line: String = (0..buffer.area.width)
                        .map(|x| buffer[(x, y)].symbol())
                        .collect();
                    line.trim_start().starts_with(text)
                })
                .unwrap_or_else(|| panic!("no line starts with {text}"));
            let x = (0..buffer.area.width)
                .find(|&x| buffer[(x, row)].symbol() == &text[..1])
                .unwrap_or_default();
            buffer[(x, row)].fg
        };
        assert_eq!(colour_of("+add()"), Color::Green);
        assert_eq!(colour_of("-add() { echo $(( $1 - $2"), Color::Red);
        assert_eq!(colour_of("+sum()"), Color::Green);
    }
}
