//! Keys and the mouse: [`handle_key`] says what a key means in the current mode, without
//! changing anything; [`Watch::act`] carries the action out.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use jiff::Timestamp;
use ratatui::layout::{Position, Rect};

use super::state::{Control, Focus, Mode, Purpose, Request, Watch};
use crate::proto::{ApprovalAnswer, Decision, Input, TaskSpec};

/// Lines the mouse wheel scrolls the log by.
const WHEEL_LINES: isize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Quit,
    /// Moves the selection by rows (negative: up).
    Move(isize),
    MoveToFirst,
    MoveToLast,
    /// Scrolls the log by lines (negative: up, to older lines).
    Scroll(isize),
    ScrollToStart,
    ScrollToEnd,
    /// Opens the selected task's log.
    Open,
    /// Leaves the log for the table (the log stays open).
    Back,
    /// Switches between the table and the open log.
    SwitchFocus,
    Pause,
    Resume,
    /// Asks whether to cancel.
    AskCancel,
    /// Asks whether to remove a finished task.
    AskRemove,
    StartInput,
    /// Answers the task's waiting approval (allow once or always).
    Answer(Decision),
    /// Asks why before denying the task's waiting approval.
    StartDeny,
    /// Starts typing guidance for an agent.
    StartGuidance,
    StartFilter,
    StartSearch,
    /// Finds the search again: towards newer lines, or older.
    SearchAgain {
        forwards: bool,
    },
    ClearFilter,
    Help,
    CloseHelp,
    Confirm,
    Decline,
    /// Typing into the line being edited.
    Type(char),
    Erase,
    Submit,
    /// Sends the input typed so far and closes the task's stdin.
    SubmitEof,
    Abandon,
}

/// What `key` means now.
pub fn handle_key(watch: &Watch, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Nothing;
    }
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    if control && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    match &watch.mode {
        Mode::Help => Action::CloseHelp,
        Mode::Confirm { .. } => match key.code {
            KeyCode::Char('y' | 'Y') => Action::Confirm,
            _ => Action::Decline,
        },
        Mode::Prompt { purpose, .. } => match key.code {
            KeyCode::Enter => Action::Submit,
            KeyCode::Esc => Action::Abandon,
            KeyCode::Backspace => Action::Erase,
            KeyCode::Char('d') if control && matches!(purpose, Purpose::Input { .. }) => {
                Action::SubmitEof
            }
            KeyCode::Char(c) if !control => Action::Type(c),
            _ => Action::Nothing,
        },
        Mode::Browse => browse_key(watch, key.code),
    }
}

fn browse_key(watch: &Watch, code: KeyCode) -> Action {
    let log = watch.focus == Focus::Log && watch.opened.is_some();
    let page = if log {
        watch.viewport.log_lines
    } else {
        watch.viewport.table_rows
    }
    .max(1) as isize;
    let step = |lines: isize| {
        if log {
            Action::Scroll(lines)
        } else {
            Action::Move(lines)
        }
    };
    match code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Up | KeyCode::Char('k') => step(-1),
        KeyCode::Down | KeyCode::Char('j') => step(1),
        KeyCode::PageUp => step(-page),
        KeyCode::PageDown | KeyCode::Char(' ') => step(page),
        KeyCode::Home | KeyCode::Char('g') if log => Action::ScrollToStart,
        KeyCode::End | KeyCode::Char('G') if log => Action::ScrollToEnd,
        KeyCode::Home | KeyCode::Char('g') => Action::MoveToFirst,
        KeyCode::End | KeyCode::Char('G') => Action::MoveToLast,
        KeyCode::Enter if !log => Action::Open,
        KeyCode::Esc if log => Action::Back,
        KeyCode::Esc if !watch.filter.is_empty() => Action::ClearFilter,
        KeyCode::Tab if watch.opened.is_some() => Action::SwitchFocus,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('r') => Action::Resume,
        KeyCode::Char('c') => Action::AskCancel,
        KeyCode::Char('x') => Action::AskRemove,
        KeyCode::Char('i') => Action::StartInput,
        KeyCode::Char('a') => Action::Answer(Decision::AllowOnce),
        KeyCode::Char('A') => Action::Answer(Decision::AllowAlways),
        KeyCode::Char('d') => Action::StartDeny,
        KeyCode::Char('m') => Action::StartGuidance,
        KeyCode::Char('/') if log => Action::StartSearch,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('n') if log => Action::SearchAgain { forwards: false },
        KeyCode::Char('N') if log => Action::SearchAgain { forwards: true },
        _ => Action::Nothing,
    }
}

/// What the mouse wheel means where it is: the log scrolls, the table moves its selection.
pub fn handle_mouse(watch: &Watch, mouse: MouseEvent, tasks: Rect, log: Option<Rect>) -> Action {
    let lines = match mouse.kind {
        MouseEventKind::ScrollUp => -1,
        MouseEventKind::ScrollDown => 1,
        _ => return Action::Nothing,
    };
    if watch.mode != Mode::Browse {
        return Action::Nothing;
    }
    let at = Position::new(mouse.column, mouse.row);
    if log.is_some_and(|log| log.contains(at)) {
        Action::Scroll(lines * WHEEL_LINES)
    } else if tasks.contains(at) {
        Action::Move(lines)
    } else {
        Action::Nothing
    }
}

impl Watch {
    /// Carries out an action; what needs the network comes back as requests.
    pub fn act(&mut self, action: Action, now: Timestamp) -> Vec<Request> {
        // A key that means nothing (or the mouse moving) draws nothing.
        if action != Action::Nothing {
            self.touch();
        }
        match action {
            Action::Nothing => {}
            Action::Quit => self.quit = true,
            Action::Move(rows) => self.move_selection(rows),
            Action::MoveToFirst => self.selected = self.shown.first().cloned(),
            Action::MoveToLast => self.selected = self.shown.last().cloned(),
            Action::Scroll(lines) => return self.scroll(lines),
            Action::ScrollToStart => return self.with_log(|log, _| log.to_beginning()),
            Action::ScrollToEnd => return self.with_log(|log, _| log.to_end()),
            Action::Open => {
                if let Some(id) = self.selected.clone() {
                    return self.open(&id);
                }
            }
            Action::Back => self.focus = Focus::Tasks,
            Action::SwitchFocus => {
                self.focus = match self.focus {
                    Focus::Tasks => Focus::Log,
                    Focus::Log => Focus::Tasks,
                }
            }
            Action::Pause => return self.control(Control::Pause),
            Action::Resume => return self.control(Control::Resume),
            Action::AskCancel => self.confirm(Control::Cancel),
            Action::AskRemove => self.confirm(Control::Remove),
            Action::StartInput => {
                if let Some(task) = self.target() {
                    let task_id = task.id.clone();
                    self.prompt(Purpose::Input { task_id });
                }
            }
            Action::Answer(decision) => return self.answer(decision, now),
            Action::StartDeny => {
                if let Some((task_id, approval_id)) = self.waiting(now) {
                    self.prompt(Purpose::DenyReason {
                        task_id,
                        approval_id,
                    });
                }
            }
            Action::StartGuidance => self.start_guidance(now),
            Action::StartFilter => {
                self.focus = Focus::Tasks;
                self.mode = Mode::Prompt {
                    purpose: Purpose::Filter,
                    text: self.filter.clone(),
                };
            }
            Action::StartSearch => self.prompt(Purpose::Search),
            Action::SearchAgain { forwards } => self.search_again(forwards, now),
            Action::ClearFilter => self.set_filter(String::new()),
            Action::Help => self.mode = Mode::Help,
            Action::CloseHelp | Action::Decline => self.mode = Mode::Browse,
            Action::Confirm => {
                if let Mode::Confirm { task_id, control } =
                    std::mem::replace(&mut self.mode, Mode::Browse)
                {
                    return vec![Request::Control { task_id, control }];
                }
            }
            Action::Type(c) => self.edit(|text| text.push(c)),
            Action::Erase => self.edit(|text| {
                text.pop();
            }),
            Action::Submit => return self.submit(false, now),
            Action::SubmitEof => return self.submit(true, now),
            Action::Abandon => {
                if let Mode::Prompt {
                    purpose: Purpose::Filter,
                    ..
                } = self.mode
                {
                    self.set_filter(String::new());
                }
                self.mode = Mode::Browse;
            }
        }
        Vec::new()
    }

    fn move_selection(&mut self, rows: isize) {
        if self.shown.is_empty() {
            return;
        }
        let current = self.selected_index().unwrap_or(0) as isize;
        let last = self.shown.len() as isize - 1;
        let next = (current + rows).clamp(0, last) as usize;
        self.selected = self.shown.get(next).cloned();
    }

    fn scroll(&mut self, lines: isize) -> Vec<Request> {
        self.with_log(|log, height| {
            if lines < 0 {
                log.scroll_up(lines.unsigned_abs(), height)
            } else {
                log.scroll_down(lines.unsigned_abs(), height)
            }
        })
    }

    /// Runs `change` on the open log with the log's height; a page it needs is requested.
    fn with_log(
        &mut self,
        change: impl FnOnce(&mut super::log::LogWindow, usize) -> Option<super::log::Fetch>,
    ) -> Vec<Request> {
        let height = self.viewport.log_lines.max(1);
        let Some(opened) = self.opened.as_mut() else {
            return Vec::new();
        };
        change(&mut opened.log, height)
            .map(|fetch| Request::Fetch {
                task_id: opened.task_id.clone(),
                fetch,
            })
            .into_iter()
            .collect()
    }

    fn control(&mut self, control: Control) -> Vec<Request> {
        match self.target() {
            Some(task) => vec![Request::Control {
                task_id: task.id.clone(),
                control,
            }],
            None => Vec::new(),
        }
    }

    /// The target task and its oldest waiting approval; says so when there is none.
    fn waiting(&mut self, now: Timestamp) -> Option<(String, String)> {
        let task_id = self.target()?.id.clone();
        match self.pending_approval(&task_id) {
            Some(approval) => Some((task_id, approval.id.clone())),
            None => {
                self.say("nothing of this task waits for approval", false, now);
                None
            }
        }
    }

    /// Allows the target task's oldest waiting call at once (allowing needs no reason).
    fn answer(&mut self, decision: Decision, now: Timestamp) -> Vec<Request> {
        let Some((task_id, approval_id)) = self.waiting(now) else {
            return Vec::new();
        };
        let answer = ApprovalAnswer {
            decision,
            reason: None,
        };
        self.send_answer(task_id, approval_id, answer)
    }

    /// Sends an answer; the approval leaves the panel until it comes back refused.
    fn send_answer(
        &mut self,
        task_id: String,
        approval_id: String,
        answer: ApprovalAnswer,
    ) -> Vec<Request> {
        self.answering.insert(approval_id.clone());
        vec![Request::Control {
            task_id,
            control: Control::Answer {
                approval_id,
                answer,
            },
        }]
    }

    /// Guidance goes to agents only; other tasks take input (`i`).
    fn start_guidance(&mut self, now: Timestamp) {
        let Some(task) = self.target() else {
            return;
        };
        if !matches!(task.spec, TaskSpec::Agent(_)) {
            return self.say(
                "guidance is for agents; `i` sends input to a task",
                false,
                now,
            );
        }
        let task_id = task.id.clone();
        self.prompt(Purpose::Guidance { task_id });
    }

    fn confirm(&mut self, control: Control) {
        if let Some(task) = self.target() {
            self.mode = Mode::Confirm {
                task_id: task.id.clone(),
                control,
            };
        }
    }

    fn prompt(&mut self, purpose: Purpose) {
        self.mode = Mode::Prompt {
            purpose,
            text: String::new(),
        };
    }

    fn edit(&mut self, change: impl FnOnce(&mut String)) {
        let Mode::Prompt { purpose, text } = &mut self.mode else {
            return;
        };
        change(text);
        if *purpose == Purpose::Filter {
            let filter = text.clone();
            self.set_filter(filter);
        }
    }

    fn set_filter(&mut self, filter: String) {
        self.filter = filter;
        self.refresh_shown();
    }

    fn submit(&mut self, eof: bool, now: Timestamp) -> Vec<Request> {
        let Mode::Prompt { purpose, text } = std::mem::replace(&mut self.mode, Mode::Browse) else {
            return Vec::new();
        };
        match purpose {
            Purpose::Filter => Vec::new(),
            Purpose::Search => {
                if let Some(opened) = self.opened.as_mut() {
                    opened.search = Some(text).filter(|text| !text.is_empty());
                    opened.log.unmark();
                }
                let from = self.bottom_line();
                self.find(from, false, now);
                Vec::new()
            }
            Purpose::Input { task_id } => {
                let text = if eof { text } else { format!("{text}\n") };
                vec![Request::Control {
                    task_id,
                    control: Control::Input(Input { text, eof }),
                }]
            }
            Purpose::Guidance { .. } if text.trim().is_empty() => Vec::new(),
            Purpose::Guidance { task_id } => vec![Request::Control {
                task_id,
                control: Control::Guide(text),
            }],
            Purpose::DenyReason {
                task_id,
                approval_id,
            } => {
                let reason = Some(text).filter(|text| !text.trim().is_empty());
                let answer = ApprovalAnswer {
                    decision: Decision::Deny,
                    reason,
                };
                self.send_answer(task_id, approval_id, answer)
            }
        }
    }

    /// The index of the last log line on screen.
    fn bottom_line(&self) -> usize {
        let height = self.viewport.log_lines.max(1);
        self.opened.as_ref().map_or(0, |opened| {
            (opened.log.top(height) + height)
                .min(opened.log.len())
                .saturating_sub(1)
        })
    }

    fn search_again(&mut self, forwards: bool, now: Timestamp) {
        let Some(marked) = self.opened.as_ref().and_then(|o| o.log.marked()) else {
            let from = self.bottom_line();
            return self.find(from, forwards, now);
        };
        let from = if forwards {
            marked + 1
        } else {
            match marked.checked_sub(1) {
                Some(from) => from,
                None => return self.say("no older match in the lines loaded", false, now),
            }
        };
        self.find(from, forwards, now);
    }

    fn find(&mut self, from: usize, forwards: bool, now: Timestamp) {
        let height = self.viewport.log_lines.max(1);
        let Some(opened) = self.opened.as_mut() else {
            return;
        };
        let Some(query) = opened.search.clone() else {
            return;
        };
        if !opened.log.find(&query, from, forwards, height) {
            let lines = opened.log.len();
            self.say(
                format!("`{query}` not found in the {lines} lines loaded"),
                false,
                now,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::TaskState;
    use crate::tui::fixtures::{agent_task, approval, at, options, output, task};
    use crate::tui::state::Update;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn watch() -> Watch {
        let mut watch = Watch::new(options(), at(0));
        watch.apply(
            Update::Tasks(vec![
                task("01", TaskState::Succeeded),
                task("02", TaskState::Paused),
                task("03", TaskState::Running),
            ]),
            at(0),
        );
        watch
    }

    /// Presses the keys in order, collecting the requests.
    fn press(watch: &mut Watch, keys: &[KeyEvent]) -> Vec<Request> {
        let mut requests = Vec::new();
        for key in keys {
            let action = handle_key(watch, *key);
            requests.extend(watch.act(action, at(1)));
        }
        requests
    }

    #[test]
    fn keys_mean_what_the_mode_says() {
        let mut watch = watch();
        assert_eq!(handle_key(&watch, key(KeyCode::Char('j'))), Action::Move(1));
        assert_eq!(handle_key(&watch, key(KeyCode::Up)), Action::Move(-1));
        assert_eq!(handle_key(&watch, key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(handle_key(&watch, ctrl('c')), Action::Quit);
        assert_eq!(
            handle_key(&watch, key(KeyCode::Char('/'))),
            Action::StartFilter
        );
        watch.open("03");
        assert_eq!(
            handle_key(&watch, key(KeyCode::Char('k'))),
            Action::Scroll(-1)
        );
        assert_eq!(
            handle_key(&watch, key(KeyCode::Char('/'))),
            Action::StartSearch
        );
        assert_eq!(handle_key(&watch, key(KeyCode::Esc)), Action::Back);
        watch.mode = Mode::Help;
        assert_eq!(
            handle_key(&watch, key(KeyCode::Char('q'))),
            Action::CloseHelp
        );
        assert_eq!(handle_key(&watch, ctrl('c')), Action::Quit);
        // Typing `q` into a prompt types it.
        watch.mode = Mode::Prompt {
            purpose: Purpose::Search,
            text: String::new(),
        };
        assert_eq!(
            handle_key(&watch, key(KeyCode::Char('q'))),
            Action::Type('q')
        );
        assert_eq!(handle_key(&watch, ctrl('d')), Action::Nothing);
    }

    #[test]
    fn moving_stays_within_the_table() {
        let mut watch = watch();
        press(&mut watch, &[key(KeyCode::Down), key(KeyCode::Down)]);
        assert_eq!(watch.selected.as_deref(), Some("01"));
        press(&mut watch, &[key(KeyCode::Down)]);
        assert_eq!(watch.selected.as_deref(), Some("01"));
        press(&mut watch, &[key(KeyCode::Home)]);
        assert_eq!(watch.selected.as_deref(), Some("03"));
    }

    #[test]
    fn controls_go_to_the_selected_task_and_cancel_asks_first() {
        let mut watch = watch();
        let pause = press(&mut watch, &[key(KeyCode::Char('p'))]);
        assert_eq!(
            pause,
            [Request::Control {
                task_id: "03".into(),
                control: Control::Pause
            }]
        );
        assert!(
            press(
                &mut watch,
                &[key(KeyCode::Char('c')), key(KeyCode::Char('n'))]
            )
            .is_empty()
        );
        assert_eq!(watch.mode, Mode::Browse);
        let cancel = press(
            &mut watch,
            &[key(KeyCode::Char('c')), key(KeyCode::Char('y'))],
        );
        assert_eq!(
            cancel,
            [Request::Control {
                task_id: "03".into(),
                control: Control::Cancel
            }]
        );
    }

    #[test]
    fn input_is_typed_then_sent_with_a_newline_or_with_eof() {
        let mut watch = watch();
        let typed = [
            key(KeyCode::Char('i')),
            key(KeyCode::Char('h')),
            key(KeyCode::Char('x')),
            key(KeyCode::Backspace),
            key(KeyCode::Char('i')),
            key(KeyCode::Enter),
        ];
        let sent = press(&mut watch, &typed);
        let line = Input {
            text: "hi\n".into(),
            eof: false,
        };
        assert_eq!(
            sent,
            [Request::Control {
                task_id: "03".into(),
                control: Control::Input(line)
            }]
        );
        let closed = press(&mut watch, &[key(KeyCode::Char('i')), ctrl('d')]);
        let eof = Input {
            text: String::new(),
            eof: true,
        };
        assert_eq!(
            closed,
            [Request::Control {
                task_id: "03".into(),
                control: Control::Input(eof)
            }]
        );
    }

    #[test]
    fn the_filter_narrows_the_table_as_it_is_typed_and_esc_clears_it() {
        let mut watch = watch();
        press(
            &mut watch,
            &[
                key(KeyCode::Char('/')),
                key(KeyCode::Char('p')),
                key(KeyCode::Char('a')),
            ],
        );
        assert_eq!(watch.shown, ["02"]);
        assert_eq!(watch.selected.as_deref(), Some("02"));
        press(&mut watch, &[key(KeyCode::Enter)]);
        assert_eq!(watch.mode, Mode::Browse);
        assert_eq!(watch.shown, ["02"]);
        press(&mut watch, &[key(KeyCode::Esc)]);
        assert_eq!(watch.shown.len(), 3);
    }

    #[test]
    fn enter_opens_the_log_and_the_log_keys_scroll_and_search_it() {
        let mut watch = watch();
        watch.set_viewport(crate::tui::state::Viewport {
            table_rows: 5,
            log_lines: 4,
        });
        let opened = press(&mut watch, &[key(KeyCode::Enter)]);
        assert_eq!(
            opened,
            [Request::Open {
                task_id: "03".into(),
                after: 0
            }]
        );
        for seq in 1..=20 {
            let mut line = output(
                seq,
                crate::proto::OutputStream::Stdout,
                &format!("l{seq}\n"),
            );
            line.task_id = "03".into();
            watch.apply(Update::Log(line), at(1));
        }
        let log = |watch: &Watch| watch.opened.as_ref().unwrap().log.clone();
        assert!(log(&watch).following());
        press(&mut watch, &[key(KeyCode::Up)]);
        assert_eq!(log(&watch).top(4), 15);
        let mut search: Vec<KeyEvent> = vec![key(KeyCode::Char('/'))];
        search.extend("l1".chars().map(|c| key(KeyCode::Char(c))));
        search.push(key(KeyCode::Enter));
        press(&mut watch, &search);
        assert_eq!(log(&watch).marked(), Some(18));
        press(&mut watch, &[key(KeyCode::Char('n'))]);
        assert_eq!(log(&watch).marked(), Some(17));
        press(&mut watch, &[key(KeyCode::End)]);
        assert!(log(&watch).following());
        press(&mut watch, &[key(KeyCode::Esc)]);
        assert_eq!(watch.focus, Focus::Tasks);
    }

    #[test]
    fn the_wheel_scrolls_what_is_under_it() {
        let watch = watch();
        let wheel = |row| MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: 5,
            row,
            modifiers: KeyModifiers::NONE,
        };
        let tasks = Rect::new(0, 2, 80, 8);
        let log = Some(Rect::new(0, 10, 80, 10));
        assert_eq!(handle_mouse(&watch, wheel(4), tasks, log), Action::Move(1));
        assert_eq!(
            handle_mouse(&watch, wheel(12), tasks, log),
            Action::Scroll(3)
        );
        assert_eq!(handle_mouse(&watch, wheel(0), tasks, log), Action::Nothing);
    }

    fn typed(text: &str) -> Vec<KeyEvent> {
        text.chars().map(|c| key(KeyCode::Char(c))).collect()
    }

    fn answer(decision: Decision, reason: Option<&str>) -> Request {
        Request::Control {
            task_id: "04".into(),
            control: Control::Answer {
                approval_id: "a1".into(),
                answer: ApprovalAnswer {
                    decision,
                    reason: reason.map(str::to_string),
                },
            },
        }
    }

    #[test]
    fn an_agents_waiting_call_is_answered_and_guided_from_the_keyboard() {
        let mut watch = watch();
        watch.apply(Update::Task(agent_task("04", TaskState::Running)), at(0));
        watch.selected = Some("04".into());
        // Nothing waits yet: the keys say so rather than do anything.
        assert!(press(&mut watch, &[key(KeyCode::Char('a'))]).is_empty());
        assert!(
            watch
                .status
                .as_ref()
                .is_some_and(|s| s.text.contains("waits"))
        );
        watch.apply(Update::Approvals(vec![approval("04", "a1")]), at(1));
        assert_eq!(
            press(&mut watch, &[key(KeyCode::Char('a'))]),
            [answer(Decision::AllowOnce, None)]
        );
        // Pressed again before the answer is back: not answered twice.
        assert!(press(&mut watch, &[key(KeyCode::Char('a'))]).is_empty());
        let refused = |watch: &mut Watch| {
            let update = Update::Controlled {
                task_id: "04".into(),
                control: match answer(Decision::AllowOnce, None) {
                    Request::Control { control, .. } => control,
                    other => panic!("{other:?}"),
                },
                outcome: Err("the server is busy".into()),
            };
            watch.apply(update, at(2));
        };
        refused(&mut watch);
        assert_eq!(
            press(&mut watch, &[key(KeyCode::Char('A'))]),
            [answer(Decision::AllowAlways, None)]
        );
        refused(&mut watch);
        let mut deny = vec![key(KeyCode::Char('d'))];
        deny.extend(typed("not on main"));
        deny.push(key(KeyCode::Enter));
        assert_eq!(
            press(&mut watch, &deny),
            [answer(Decision::Deny, Some("not on main"))]
        );
        refused(&mut watch);
        assert_eq!(
            press(&mut watch, &[key(KeyCode::Char('d')), key(KeyCode::Enter)]),
            [answer(Decision::Deny, None)],
            "the reason may be left out"
        );
        let mut guide = vec![key(KeyCode::Char('m'))];
        guide.extend(typed("use the helper"));
        guide.push(key(KeyCode::Enter));
        assert_eq!(
            press(&mut watch, &guide),
            [Request::Control {
                task_id: "04".into(),
                control: Control::Guide("use the helper".into())
            }]
        );
        let empty = [
            key(KeyCode::Char('m')),
            key(KeyCode::Char(' ')),
            key(KeyCode::Enter),
        ];
        assert!(
            press(&mut watch, &empty).is_empty(),
            "blank guidance is not sent"
        );
        // Guidance is for agents: another task says so instead of asking for text.
        watch.selected = Some("03".into());
        assert!(press(&mut watch, &[key(KeyCode::Char('m'))]).is_empty());
        assert_eq!(watch.mode, Mode::Browse);
        assert!(
            watch
                .status
                .as_ref()
                .is_some_and(|s| s.text.contains("for agents"))
        );
    }
}
