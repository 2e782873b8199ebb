//! The opened task's log: a window of at most `capacity` lines (the scrollback) over the task's
//! events. Memory stays bounded however long the log is; lines outside the window are fetched
//! from the server again when the person scrolls to them.
//!
//! Output arrives in chunks that need not end at a newline, so a line can span several events.
//! Every line therefore knows where it starts (an event's seq and a byte in that event's text),
//! and the window knows where its first line starts and where the text after its last one
//! begins. Fetching before the start or after the end then yields exactly the missing lines:
//! none twice, none skipped.

use std::collections::VecDeque;

use super::agent;
use crate::proto::{
    DeltaData, Event, InputData, MessageData, MessageDeltaData, OutputData, OutputStream,
    StateData, TaskState, ToolCallData, TruncatedData, chat_types, types,
};

/// Longest line kept, in bytes: a terminal shows a few hundred columns, and a task printing
/// megabytes without a newline must not grow the window without bound.
const MAX_LINE_BYTES: usize = 16 * 1024;
const TAB_WIDTH: usize = 8;

/// A place in a task's log: an event (by seq) and a byte of that event's output text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub seq: u64,
    pub offset: usize,
}

impl Position {
    /// The start of every log (seqs count from 1).
    pub const BEGINNING: Position = Position { seq: 1, offset: 0 };

    fn event_start(seq: u64) -> Position {
        Position { seq, offset: 0 }
    }
}

/// A page of stored events the window needs, to be asked of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// The lines before `before` (the window's first line), up to and including its event.
    Older { before: Position },
    /// The lines from `from` (the window's end) on.
    Newer { from: Position },
}

/// What a line shows, which decides how it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Stdout,
    Stderr,
    /// The task changed to this state.
    State(TaskState),
    /// Something else victor recorded: input sent, output truncated, an agent's tool call, an
    /// unknown event type.
    Note,
    /// Something that waits for a person, or that a person should not miss: an agent's call
    /// waiting for approval, a budget run out.
    Alert,
    /// A line of a diff (a file an agent changed, or would change).
    Diff(DiffLine),
    /// A line of what a tool gave an agent's model, under the note of its result.
    Quote,
}

/// What a line of a unified diff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffLine {
    /// `--- a/x`, `+++ b/x`, `@@ -1,3 +1,4 @@`.
    Header,
    Added,
    Removed,
    /// Unchanged, shown around the change.
    Same,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: LineKind,
    /// Printable text: no control characters or escape sequences, tabs expanded.
    pub text: String,
    start: Position,
    /// No newline yet: the next output of the same stream continues this line.
    open: bool,
}

/// The lines of one task's log that are in memory, and which part of it they are.
#[derive(Debug, Clone)]
pub struct LogWindow {
    lines: VecDeque<Line>,
    capacity: usize,
    /// Where the text after the last line begins; the next live event is `end.seq`.
    end: Position,
    /// The window ends at the live tail, so live events are appended.
    live: bool,
    /// Index of the first line shown when the person has scrolled; `None` follows the tail.
    top: Option<usize>,
    /// A search match being shown.
    marked: Option<usize>,
    /// The page asked for and not yet arrived: never ask twice.
    fetching: Option<Fetch>,
    /// The highest seq known to exist, also of events not kept.
    newest_seq: u64,
}

impl LogWindow {
    /// An empty window at the beginning of a log, taking live events.
    pub fn new(capacity: usize) -> LogWindow {
        LogWindow {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            end: Position::BEGINNING,
            live: true,
            top: None,
            marked: None,
            fetching: None,
            newest_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn line(&self, index: usize) -> Option<&Line> {
        self.lines.get(index)
    }

    /// Where the first line starts.
    fn start(&self) -> Position {
        self.lines.front().map_or(self.end, |line| line.start)
    }

    /// The window holds the log from its first line.
    pub fn from_beginning(&self) -> bool {
        self.start() == Position::BEGINNING
    }

    /// The window ends at the tail and shows new lines as they come.
    pub fn following(&self) -> bool {
        self.top.is_none()
    }

    /// The window's end is the live tail.
    pub fn live(&self) -> bool {
        self.live
    }

    pub fn marked(&self) -> Option<usize> {
        self.marked
    }

    /// The highest seq known, for "where the tail is" when the window jumps there.
    pub fn saw(&mut self, seq: u64) {
        self.newest_seq = self.newest_seq.max(seq);
    }

    /// The index of the first line shown in a view `height` lines high.
    pub fn top(&self, height: usize) -> usize {
        let last_page = self.lines.len().saturating_sub(height);
        self.top.map_or(last_page, |top| top.min(last_page))
    }

    /// A live event of the task's stream. Events already in the window are ignored; a gap
    /// (an event after one the window never got) asks for the missing page.
    pub fn push(&mut self, event: &Event) -> Option<Fetch> {
        self.saw(event.seq);
        if !self.live || event.seq < self.end.seq {
            return None;
        }
        if event.seq > self.end.seq || self.end.offset > 0 {
            self.live = false;
            return self.fetch_newer();
        }
        if self.top.is_some() && self.lines.len() >= self.capacity {
            // The person reads older lines: keep them, and fetch the rest when they come
            // back down rather than push what they read out of the window.
            self.live = false;
            return None;
        }
        push_event(&mut self.lines, event, 0);
        self.end = Position::event_start(event.seq + 1);
        self.trim_front();
        None
    }

    /// A page asked for with `fetch` arrived. `at_end`: nothing is stored after it. A page
    /// for a window that has moved on since is dropped; the answer may be the next page.
    pub fn fetched(&mut self, fetch: Fetch, events: &[Event], at_end: bool) -> Option<Fetch> {
        if self.fetching != Some(fetch) {
            return None;
        }
        self.fetching = None;
        if let Some(last) = events.last() {
            self.saw(last.seq);
        }
        match fetch {
            Fetch::Older { before } if before == self.start() => {
                self.prepend(before, events);
                None
            }
            Fetch::Newer { from } if from == self.end => {
                for event in events.iter().filter(|event| event.seq >= from.seq) {
                    let offset = if event.seq == from.seq {
                        from.offset
                    } else {
                        0
                    };
                    push_event(&mut self.lines, event, offset);
                    self.end = Position::event_start(event.seq + 1);
                }
                self.trim_front();
                // The page was read before some live events were stored, and those were
                // dropped while it was on its way: the log is not caught up yet, whatever the
                // page says, and going live would skip them until a later event shows the gap.
                let caught_up = at_end && self.newest_seq < self.end.seq;
                if caught_up {
                    self.live = true;
                    None
                } else if self.top.is_none() {
                    self.fetch_newer()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Puts the lines of `events` that come before `before` in front of the window.
    fn prepend(&mut self, before: Position, events: &[Event]) {
        let mut chunk = VecDeque::new();
        for event in events.iter().filter(|event| event.seq <= before.seq) {
            push_event(&mut chunk, event, 0);
        }
        while chunk.back().is_some_and(|line: &Line| line.start >= before) {
            chunk.pop_back();
        }
        // The page's first line may continue a line of an older event, which the page does
        // not hold: leave it to the next page, unless it is all this page has.
        let from_first_event = events.first().is_some_and(|event| event.seq <= 1);
        if !from_first_event && chunk.len() > 1 {
            chunk.pop_front();
        }
        let added = chunk.len();
        for line in chunk.into_iter().rev() {
            self.lines.push_front(line);
        }
        self.top = self.top.map(|top| top + added);
        self.marked = self.marked.map(|marked| marked + added);
        if self.top.is_some() {
            self.trim_back();
        } else {
            self.trim_front();
        }
    }

    fn trim_front(&mut self) {
        let excess = self.lines.len().saturating_sub(self.capacity);
        if excess == 0 {
            return;
        }
        self.lines.drain(..excess);
        self.top = self.top.map(|top| top.saturating_sub(excess));
        self.marked = self.marked.and_then(|marked| marked.checked_sub(excess));
    }

    fn trim_back(&mut self) {
        while self.lines.len() > self.capacity {
            if let Some(line) = self.lines.pop_back() {
                self.end = line.start;
                self.live = false;
            }
        }
        if self.marked.is_some_and(|marked| marked >= self.lines.len()) {
            self.marked = None;
        }
    }

    fn fetch_newer(&mut self) -> Option<Fetch> {
        self.ask(Fetch::Newer { from: self.end })
    }

    fn fetch_older(&mut self) -> Option<Fetch> {
        if self.from_beginning() {
            return None;
        }
        self.ask(Fetch::Older {
            before: self.start(),
        })
    }

    fn ask(&mut self, fetch: Fetch) -> Option<Fetch> {
        if self.fetching.is_some() {
            return None;
        }
        self.fetching = Some(fetch);
        Some(fetch)
    }

    /// Scrolls `lines` up in a view `height` lines high; at the window's top, asks for the
    /// lines before it.
    pub fn scroll_up(&mut self, lines: usize, height: usize) -> Option<Fetch> {
        let top = self.top(height).saturating_sub(lines);
        if self.lines.len() > height || !self.from_beginning() {
            self.top = Some(top);
        }
        if top == 0 { self.fetch_older() } else { None }
    }

    /// Scrolls `lines` down; at the bottom of a live window it follows the tail again, at the
    /// bottom of an older one it asks for the lines after it.
    pub fn scroll_down(&mut self, lines: usize, height: usize) -> Option<Fetch> {
        let top = self.top?;
        let last_page = self.lines.len().saturating_sub(height);
        if top + lines < last_page {
            self.top = Some(top + lines);
            return None;
        }
        if self.live {
            self.top = None;
            None
        } else {
            self.top = Some(last_page);
            self.fetch_newer()
        }
    }

    /// Jumps to the first line of the log, fetching it when it is not in the window.
    pub fn to_beginning(&mut self) -> Option<Fetch> {
        if !self.from_beginning() {
            self.reset(Position::BEGINNING, false);
            self.top = Some(0);
            return self.fetch_newer();
        }
        self.top = Some(0);
        None
    }

    /// Follows the tail again, fetching its last lines when the window is elsewhere.
    pub fn to_end(&mut self) -> Option<Fetch> {
        self.top = None;
        if self.live {
            return None;
        }
        self.reset(Position::event_start(self.newest_seq + 1), true);
        self.fetch_older()
    }

    fn reset(&mut self, at: Position, live: bool) {
        self.lines.clear();
        self.end = at;
        self.live = live;
        self.marked = None;
        self.fetching = None;
    }

    /// The last line at or before `from` (forwards: at or after) containing `query`, ignoring
    /// case; it becomes the marked line and is scrolled into view.
    pub fn find(&mut self, query: &str, from: usize, forwards: bool, height: usize) -> bool {
        let query = query.to_lowercase();
        let matches = |line: &Line| line.text.to_lowercase().contains(&query);
        let found = if forwards {
            (from..self.lines.len()).find(|&i| matches(&self.lines[i]))
        } else {
            (0..=from.min(self.lines.len().saturating_sub(1)))
                .rev()
                .find(|&i| matches(&self.lines[i]))
        };
        let Some(index) = found else {
            return false;
        };
        self.marked = Some(index);
        let top = self.top(height);
        if index < top || index >= top + height {
            self.top = Some(index.saturating_sub(height / 2));
        } else if self.top.is_none() {
            self.top = Some(top);
        }
        true
    }

    pub fn unmark(&mut self) {
        self.marked = None;
    }
}

/// Appends the lines of `event` (its text from byte `from` on, or for a note of several lines
/// from its line `from` on) after `lines`. Output continues the last line when that is an
/// unfinished line of the same stream; anything else starts a line, so that where lines start
/// depends only on the events, never on where reading began.
fn push_event(lines: &mut VecDeque<Line>, event: &Event, from: usize) {
    let Some(output) = streamed_text(event) else {
        if let Some(last) = lines.back_mut() {
            last.open = false;
        }
        // Each line of a note is a place of its own: the offset counts lines, not bytes.
        let note = agent::lines(event)
            .or_else(|| super::session::lines(event))
            .unwrap_or_else(|| vec![(note_kind(event), note_text(event))]);
        for (offset, (kind, text)) in note.into_iter().enumerate().skip(from) {
            lines.push_back(Line {
                kind,
                text,
                start: Position {
                    seq: event.seq,
                    offset,
                },
                open: false,
            });
        }
        return;
    };
    let kind = match output.stream {
        OutputStream::Stdout => LineKind::Stdout,
        OutputStream::Stderr => LineKind::Stderr,
    };
    let text = output.text.get(from..).unwrap_or_default();
    let mut offset = from;
    for piece in text.split_inclusive('\n') {
        let ends = piece.ends_with('\n');
        let body = piece.strip_suffix('\n').unwrap_or(piece);
        match lines.back_mut() {
            Some(last) if offset == 0 && last.open && last.kind == kind => {
                append_printable(&mut last.text, body);
                last.open = !ends;
            }
            _ => {
                lines.push_back(Line {
                    kind,
                    text: printable(body),
                    start: Position {
                        seq: event.seq,
                        offset,
                    },
                    open: !ends,
                });
            }
        }
        offset += piece.len();
    }
}

/// The text an event adds to the flow of the log: a process's output, what a session's code
/// printed, or a piece of a chat or agent reply (shown as the task's stdout).
fn streamed_text(event: &Event) -> Option<OutputData> {
    let reply = event
        .decode::<DeltaData>()
        .map(|delta| delta.text)
        .or_else(|| event.decode::<MessageDeltaData>().map(|delta| delta.text));
    match reply {
        Some(text) => Some(OutputData {
            stream: OutputStream::Stdout,
            text,
        }),
        None => event.output().or_else(|| {
            event
                .decode::<crate::proto::ExecutionOutput>()
                .map(|printed| OutputData {
                    stream: printed.stream,
                    text: printed.text,
                })
        }),
    }
}

fn note_kind(event: &Event) -> LineKind {
    match event.state() {
        Some(state) => LineKind::State(state.state),
        None => LineKind::Note,
    }
}

/// How a non-output event reads in the log.
fn note_text(event: &Event) -> String {
    match event.kind.as_str() {
        types::STATE => match event.state() {
            Some(data) => state_text(&data),
            None => "state changed".to_string(),
        },
        types::INPUT => match event.decode::<InputData>() {
            Some(input) if input.eof && input.bytes == 0 => "stdin closed".to_string(),
            Some(input) if input.eof => format!("input: {} bytes, then stdin closed", input.bytes),
            Some(input) => format!("input: {} bytes", input.bytes),
            None => "input".to_string(),
        },
        types::TRUNCATED => match event.decode::<TruncatedData>() {
            Some(data) => format!(
                "output truncated at {} bytes; the rest was dropped",
                data.limit_bytes
            ),
            None => "output truncated".to_string(),
        },
        chat_types::TOOL_CALL => match event.decode::<ToolCallData>() {
            Some(ToolCallData { tool_call }) => {
                tool_call_text(&tool_call.name, &tool_call.arguments)
            }
            None => tool_call_text("?", &serde_json::Value::Null),
        },
        chat_types::MESSAGE => match event.decode::<MessageData>() {
            Some(reply) => {
                let mut text = format!("reply from {}/{}", reply.provider, reply.model);
                if let Some(reason) = reply.finish_reason {
                    text.push_str(&format!(", {reason}"));
                }
                if let Some(usage) = reply.usage {
                    text.push_str(&format!(
                        ", {} → {} tokens",
                        usage.input_tokens, usage.output_tokens
                    ));
                }
                text
            }
            None => "reply complete".to_string(),
        },
        other => printable(&format!("{other}: {}", event.data)),
    }
}

/// `tool call read_file {"path":"a.rs"}`: a model's call of a tool, in a chat or an agent.
pub(super) fn tool_call_text(name: &str, arguments: &serde_json::Value) -> String {
    printable(&format!("tool call {name} {arguments}"))
}

/// `text` as lines a terminal can show: see [`append_printable`].
pub(super) fn printable(text: &str) -> String {
    let mut line = String::new();
    append_printable(&mut line, text);
    line
}

/// `running (pid 4242)`, `failed: exit 3`, `interrupted: the server stopped`.
fn state_text(data: &StateData) -> String {
    let mut text = data.state.to_string();
    if let Some(pid) = data.pid {
        text.push_str(&format!(" (pid {pid})"));
    }
    let result = data.result.as_ref();
    let detail = result
        .and_then(|r| r.error.clone())
        .or_else(|| data.reason.clone())
        .or_else(|| {
            result
                .filter(|r| r.timed_out)
                .map(|_| "timed out".to_string())
        })
        .or_else(|| {
            result
                .and_then(|r| r.exit_code)
                .map(|c| format!("exit {c}"))
        })
        .or_else(|| result.and_then(|r| r.signal).map(|s| format!("signal {s}")));
    if let Some(detail) = detail {
        text.push_str(": ");
        append_printable(&mut text, &detail);
    }
    text
}

/// Appends what a terminal would show of `raw`: a carriage return starts the line over (as
/// progress bars use it), tabs go to the next stop, escape sequences (colours), other control
/// characters and bidirectional overrides go. Stops at [`MAX_LINE_BYTES`].
fn append_printable(line: &mut String, raw: &str) {
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let raw = match raw.rfind('\r') {
        Some(at) => {
            line.clear();
            &raw[at + 1..]
        }
        None => raw,
    };
    let mut chars = raw.chars();
    let mut column = line.chars().count();
    while let Some(c) = chars.next() {
        if line.len() >= MAX_LINE_BYTES {
            return;
        }
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\t' => {
                let spaces = TAB_WIDTH - column % TAB_WIDTH;
                line.extend(std::iter::repeat_n(' ', spaces));
                column += spaces;
            }
            c if crate::proto::human::is_terminal_control(c) => {}
            c => {
                line.push(c);
                column += 1;
            }
        }
    }
}

/// Skips the rest of an escape sequence: CSI (`ESC [ … final`), OSC (`ESC ] … BEL or ST`), or
/// a two-character one.
fn skip_escape(chars: &mut std::str::Chars<'_>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    return;
                }
            }
        }
        Some(']') => {
            let mut escaped = false;
            for c in chars.by_ref() {
                if c == '\u{7}' || (escaped && c == '\\') {
                    return;
                }
                escaped = c == '\u{1b}';
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures::{output, state_event};

    fn texts(window: &LogWindow) -> Vec<String> {
        window.lines.iter().map(|line| line.text.clone()).collect()
    }

    /// A window of `capacity` lines that was live for all of `events`.
    fn window_over(events: &[Event], capacity: usize) -> LogWindow {
        let mut window = LogWindow::new(capacity);
        for event in events {
            window.push(event);
        }
        window
    }

    /// The lines of a whole log, read in one go: what every window must agree with.
    fn all_lines(events: &[Event]) -> Vec<String> {
        texts(&window_over(events, usize::MAX))
    }

    /// Where the lines on screen are in the whole log; they must be there, in one piece.
    fn place_of_screen(
        window: &LogWindow,
        height: usize,
        all: &[String],
    ) -> std::ops::Range<usize> {
        let top = window.top(height);
        let shown: Vec<String> = window
            .lines
            .range(top..(top + height).min(window.len()))
            .map(|line| line.text.clone())
            .collect();
        let at = (0..=all.len() - shown.len())
            .find(|&at| all[at..at + shown.len()] == shown[..])
            .unwrap_or_else(|| panic!("{shown:?} is not a piece of the log"));
        at..at + shown.len()
    }

    /// A log whose lines are split across events at awkward places, with both streams.
    fn chatty_log(lines: usize) -> Vec<Event> {
        let text: String = (1..=lines).map(|i| format!("line {i}\n")).collect();
        let mut events = vec![state_event(1, TaskState::Running)];
        let mut rest = text.as_str();
        let mut seq = 2;
        while !rest.is_empty() {
            let cut = (7 + seq as usize % 13).min(rest.len());
            events.push(output(seq, OutputStream::Stdout, &rest[..cut]));
            rest = &rest[cut..];
            seq += 1;
            if seq % 17 == 0 {
                events.push(output(seq, OutputStream::Stderr, "warning\n"));
                seq += 1;
            }
        }
        events
    }

    /// Answers a fetch from the full log as the server would.
    fn serve(events: &[Event], fetch: Fetch, page: u64) -> (Vec<Event>, bool) {
        match fetch {
            Fetch::Older { before } => {
                let first = before.seq.saturating_sub(page).max(1);
                let chunk = events
                    .iter()
                    .filter(|e| e.seq >= first && e.seq <= before.seq)
                    .cloned()
                    .collect();
                (chunk, false)
            }
            Fetch::Newer { from } => {
                let chunk: Vec<Event> = events
                    .iter()
                    .filter(|e| e.seq >= from.seq)
                    .take(page as usize)
                    .cloned()
                    .collect();
                let at_end = chunk.last().is_none_or(|e| e.seq == events.len() as u64);
                (chunk, at_end)
            }
        }
    }

    #[test]
    fn output_split_across_events_makes_whole_lines() {
        let mut window = LogWindow::new(100);
        window.push(&output(1, OutputStream::Stdout, "hel"));
        window.push(&output(2, OutputStream::Stdout, "lo\nwor"));
        window.push(&output(3, OutputStream::Stderr, "oops\n"));
        window.push(&output(4, OutputStream::Stdout, "ld\n"));
        window.push(&state_event(5, TaskState::Succeeded));
        assert_eq!(texts(&window), ["hello", "wor", "oops", "ld", "succeeded"]);
        assert_eq!(window.lines[2].kind, LineKind::Stderr);
    }

    #[test]
    fn a_chat_reply_reads_as_text_with_its_tool_calls_and_summary() {
        let event = |seq: u64, kind: &str, data: serde_json::Value| Event {
            kind: kind.into(),
            data,
            ..state_event(seq, TaskState::Running)
        };
        let mut window = LogWindow::new(100);
        window.push(&state_event(1, TaskState::Running));
        window.push(&event(
            2,
            chat_types::DELTA,
            serde_json::json!({"text": "First li"}),
        ));
        window.push(&event(
            3,
            chat_types::DELTA,
            serde_json::json!({"text": "ne\nsecond"}),
        ));
        window.push(&event(
            4,
            chat_types::TOOL_CALL,
            serde_json::json!({"tool_call": {"id": "c", "name": "read_file", "arguments": {"path": "a.rs"}}}),
        ));
        window.push(&event(
            5,
            chat_types::MESSAGE,
            serde_json::json!({"message": {"role": "assistant", "content": "First line\nsecond"},
                "provider": "local", "model": "qwen", "finish_reason": "stop",
                "usage": {"input_tokens": 12, "output_tokens": 5}}),
        ));
        assert_eq!(
            texts(&window),
            [
                "running",
                "First line",
                "second",
                r#"tool call read_file {"path":"a.rs"}"#,
                "reply from local/qwen, stop, 12 → 5 tokens"
            ]
        );
        assert_eq!(window.lines[1].kind, LineKind::Stdout);
    }

    #[test]
    fn escapes_and_control_characters_do_not_reach_the_screen() {
        let mut window = LogWindow::new(100);
        window.push(&output(
            1,
            OutputStream::Stdout,
            "\u{1b}[1;31mred\u{1b}[0m\ta\u{7}\r\n10%\r50%\r100%\n\u{1b}]0;title\u{7}done\n",
        ));
        assert_eq!(texts(&window), ["red     a", "100%", "done"]);
    }

    #[test]
    fn bidirectional_overrides_do_not_reach_the_screen() {
        let mut window = LogWindow::new(100);
        window.push(&output(
            1,
            OutputStream::Stdout,
            "report\u{202e}fdp.exe\u{2066}x\u{2069}\n",
        ));
        assert_eq!(texts(&window), ["reportfdp.exex"]);
    }

    #[test]
    fn events_seen_twice_are_dropped_and_a_gap_asks_for_the_missing_page() {
        let mut window = LogWindow::new(100);
        window.push(&output(1, OutputStream::Stdout, "a\n"));
        window.push(&output(1, OutputStream::Stdout, "a\n"));
        assert_eq!(texts(&window), ["a"]);
        let fetch = window.push(&output(3, OutputStream::Stdout, "c\n"));
        assert_eq!(
            fetch,
            Some(Fetch::Newer {
                from: Position::event_start(2)
            })
        );
        // Asked once only, however many events arrive meanwhile.
        assert_eq!(window.push(&output(4, OutputStream::Stdout, "d\n")), None);
        let page = [
            output(2, OutputStream::Stdout, "b\n"),
            output(3, OutputStream::Stdout, "c\n"),
            output(4, OutputStream::Stdout, "d\n"),
        ];
        assert_eq!(window.fetched(fetch.unwrap(), &page, true), None);
        window.push(&output(4, OutputStream::Stdout, "d\n"));
        window.push(&output(5, OutputStream::Stdout, "e\n"));
        assert_eq!(texts(&window), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn a_live_event_dropped_while_a_page_was_on_its_way_is_fetched_after_it() {
        let mut window = LogWindow::new(100);
        window.push(&output(1, OutputStream::Stdout, "a\n"));
        let gap = window.push(&output(3, OutputStream::Stdout, "c\n"));
        let gap = gap.expect("the gap asks for seq 2 on");
        // The server read the page (2 and 3) just before it stored 4, which arrives live
        // first and is dropped, the window not being live.
        assert_eq!(window.push(&output(4, OutputStream::Stdout, "d\n")), None);
        let page = [
            output(2, OutputStream::Stdout, "b\n"),
            output(3, OutputStream::Stdout, "c\n"),
        ];
        let next = window.fetched(gap, &page, true);
        assert_eq!(
            next,
            Some(Fetch::Newer {
                from: Position::event_start(4)
            }),
            "the end of the page is not the end of the log"
        );
        assert!(!window.live());
        let rest = [output(4, OutputStream::Stdout, "d\n")];
        assert_eq!(window.fetched(next.unwrap(), &rest, true), None);
        assert!(window.live());
        window.push(&output(5, OutputStream::Stdout, "e\n"));
        assert_eq!(texts(&window), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn the_window_keeps_at_most_its_capacity_while_following() {
        let events = chatty_log(500);
        let window = window_over(&events, 50);
        let all = all_lines(&events);
        assert_eq!(texts(&window), all[all.len() - 50..]);
        assert!(!window.from_beginning());
    }

    #[test]
    fn scrolling_through_the_log_shows_every_line_once_in_order() {
        let events = chatty_log(400);
        let all = all_lines(&events);
        let mut window = window_over(&events, 60);
        let height = 10;
        let mut shown = vec![false; all.len()];
        let mut scroll = |window: &mut LogWindow, up: bool| {
            let fetch = if up {
                window.scroll_up(height, height)
            } else {
                window.scroll_down(height, height)
            };
            if let Some(fetch) = fetch {
                let (page, at_end) = serve(&events, fetch, 9);
                window.fetched(fetch, &page, at_end);
            }
            assert!(window.len() <= 60, "{}", window.len());
            for index in place_of_screen(window, height, &all) {
                shown[index] = true;
            }
        };
        for _ in 0..all.len() {
            if window.from_beginning() && window.top(height) == 0 {
                break;
            }
            scroll(&mut window, true);
        }
        assert_eq!(place_of_screen(&window, height, &all), 0..height);
        assert!(!window.live(), "the tail was let go to keep the capacity");
        for _ in 0..all.len() {
            if window.following() {
                break;
            }
            scroll(&mut window, false);
        }
        assert!(window.following() && window.live());
        assert_eq!(
            place_of_screen(&window, height, &all),
            all.len() - height..all.len()
        );
        assert!(
            shown.iter().all(|&seen| seen),
            "some lines were never on screen"
        );
    }

    #[test]
    fn jumping_to_either_end_refetches_around_it() {
        let events = chatty_log(300);
        let all = all_lines(&events);
        let mut window = window_over(&events, 40);
        let fetch = window
            .to_beginning()
            .expect("the beginning is not in the window");
        let (page, at_end) = serve(&events, fetch, 20);
        window.fetched(fetch, &page, at_end);
        let head = texts(&window);
        assert!(head.len() > 1);
        // The last line may be unfinished: the rest of it is in the next page.
        let complete = head.len() - 1;
        assert_eq!(head[..complete], all[..complete]);
        assert!(all[complete].starts_with(&head[complete]));

        let fetch = window.to_end().expect("the tail is not in the window");
        let (page, at_end) = serve(&events, fetch, 20);
        window.fetched(fetch, &page, at_end);
        let tail = texts(&window);
        assert!(!tail.is_empty() && window.following() && window.live());
        assert_eq!(tail[..], all[all.len() - tail.len()..]);
        // Live events continue after the refetched tail.
        let next = events.len() as u64 + 1;
        window.push(&output(next, OutputStream::Stdout, "after\n"));
        assert_eq!(texts(&window).last().map(String::as_str), Some("after"));
    }

    #[test]
    fn a_reader_scrolled_up_keeps_their_lines_while_output_continues() {
        let mut window = LogWindow::new(10);
        for seq in 1..=10 {
            window.push(&output(seq, OutputStream::Stdout, &format!("{seq}\n")));
        }
        window.scroll_up(3, 5);
        let before = texts(&window);
        for seq in 11..=20 {
            window.push(&output(seq, OutputStream::Stdout, &format!("{seq}\n")));
        }
        assert_eq!(texts(&window), before);
        let fetch = window
            .scroll_down(100, 5)
            .expect("asks for what it skipped");
        assert_eq!(
            fetch,
            Fetch::Newer {
                from: Position::event_start(11)
            }
        );
    }

    #[test]
    fn search_marks_the_nearest_match_above_and_scrolls_to_it() {
        let mut window = LogWindow::new(100);
        for seq in 1..=50 {
            let text = if seq % 10 == 0 {
                format!("Needle {seq}\n")
            } else {
                format!("hay {seq}\n")
            };
            window.push(&output(seq, OutputStream::Stdout, &text));
        }
        assert!(window.find("needle", 49, false, 10));
        assert_eq!(window.marked(), Some(49));
        assert!(window.find("needle", 48, false, 10));
        assert_eq!(window.marked(), Some(39));
        assert!(!window.following());
        assert!(window.top(10) <= 39 && 39 < window.top(10) + 10);
        assert!(!window.find("absent", 49, false, 10));
    }
}
