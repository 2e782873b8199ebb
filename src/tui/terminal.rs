//! The interactive view: the terminal taken over (raw mode, alternate screen, mouse) and
//! given back on every way out, and the loop that feeds keys and network updates to the
//! reducer and draws at most [`FRAME`] apart, only when something changed. The loop runs on
//! any ratatui backend, so that a benchmark can watch a real server on a test backend.

use std::io::Stdout;
use std::sync::Once;
use std::time::Duration;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::layout::Rect;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::net::{self, Endless};
use super::state::{Options, Request, Update, Viewport, Watch};
use super::{WatchError, draw, handle_key, handle_mouse, layout};
use crate::client::{Client, Topic};
use crate::proto::{agent_types, types};

/// The shortest time between two frames: 60 frames a second at most.
const FRAME: Duration = Duration::from_micros(16_667);
/// Updates waiting for the view; a full queue holds the network back, and the server's
/// stream then catches up from its store, so nothing grows without bound.
const UPDATE_QUEUE: usize = 4096;
/// What the table needs of every task's log: state changes, an agent's steps (its
/// progress) and the approvals it waits for. The opened log takes all of its task's events.
const ALL_TASKS_TYPES: &[&str] = &[
    types::STATE,
    agent_types::MESSAGE,
    agent_types::APPROVAL_REQUESTED,
    agent_types::APPROVAL_RESOLVED,
];
/// Updates applied at most before a frame is drawn, so a flood still shows progress and keys
/// still get through.
const BATCH: usize = 20_000;

/// The view on this process's terminal, until the person quits.
pub async fn interactive(
    client: Client,
    task: Option<String>,
    options: Options,
) -> Result<(), WatchError> {
    // Everything that can fail for good fails before the screen is taken over, so that its
    // message is printed like any other command's.
    let session = Session::connect(client, task, options).await?;
    let mut screen = Screen::enter()?;
    session.run(&mut screen.terminal, EventStream::new()).await
}

/// A watch connected to its server and not yet on screen: the all-tasks stream is open, the
/// task list read, the task to open found.
pub struct Session {
    client: Client,
    all: Endless,
    watch: Watch,
    /// What the watch asked for while it was set up.
    first: Vec<Request>,
}

impl Session {
    /// Connects to the server: fails when it cannot be reached, refuses, or has no `task`.
    pub async fn connect(
        client: Client,
        task: Option<String>,
        options: Options,
    ) -> Result<Session, WatchError> {
        let mut all = Endless::new(&client, Topic::All, None, ALL_TASKS_TYPES);
        all.start().await?;
        let tasks = net::list_all(&client).await?;
        // Read after the tasks: every approval their `last_seq` covers is in it.
        let approvals = client.approvals(None, None).await?;
        let opened = match &task {
            Some(id) => Some(client.get_task(id).await?),
            None => None,
        };
        let now = Timestamp::now();
        let mut watch = Watch::new(options, now);
        let mut first = watch.apply(Update::Tasks(tasks), now);
        first.extend(watch.apply(Update::Approvals(approvals), now));
        if let Some(task) = opened {
            let id = task.id.clone();
            watch.apply(Update::Task(task), now);
            first.extend(watch.open(&id));
        }
        Ok(Session {
            client,
            all,
            watch,
            first,
        })
    }

    /// Shows the watch on `terminal`, reading keys and the mouse from `input`, until the
    /// person quits, `input` ends, or a signal (SIGTERM, SIGHUP, SIGINT) says so.
    pub async fn run<B: Backend>(
        mut self,
        terminal: &mut Terminal<B>,
        input: impl Stream<Item = std::io::Result<TermEvent>> + Unpin,
    ) -> Result<(), WatchError> {
        let (requests, requests_out) = mpsc::unbounded_channel();
        let (updates_in, updates) = mpsc::channel(UPDATE_QUEUE);
        let stop = stop_signal()?;
        let network = tokio::spawn(net::run(self.client, self.all, requests_out, updates_in));
        let first = std::mem::take(&mut self.first);
        let channels = Channels {
            requests,
            updates,
            network,
        };
        run_loop(terminal, &mut self.watch, first, channels, input, stop).await
    }
}

/// The view's ends of the network side.
struct Channels {
    requests: mpsc::UnboundedSender<Request>,
    updates: mpsc::Receiver<Update>,
    /// The network side itself: it ends only when it fails (a panic in one of its tasks).
    network: JoinHandle<Result<(), String>>,
}

impl Drop for Channels {
    fn drop(&mut self) {
        self.network.abort();
    }
}

/// Waits for SIGTERM, SIGHUP or SIGINT, each of which ends the view as `q` does. The handlers
/// are installed at once, so that a signal that comes before the wait is not lost.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// The terminal in the watch's hands; dropping it gives the terminal back.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        restore_on_panic();
        let entered = enable_raw_mode()
            .and_then(|()| {
                execute!(
                    std::io::stdout(),
                    EnterAlternateScreen,
                    EnableMouseCapture,
                    crossterm::cursor::Hide
                )
            })
            .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(error) => {
                restore();
                Err(error)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back as it was: cooked mode, the main screen, no mouse reports, a
/// cursor. Safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// A panic anywhere (the network task included) gives the terminal back before the message
/// is printed, so that the message is readable and the shell usable. The view then stops: the
/// network task's channel closes, or the panic was its own.
fn restore_on_panic() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

async fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    watch: &mut Watch,
    first: Vec<Request>,
    mut channels: Channels,
    mut input: impl Stream<Item = std::io::Result<TermEvent>> + Unpin,
    stop: impl Future<Output = ()>,
) -> Result<(), WatchError> {
    let send = |sent: Vec<Request>| {
        for request in sent {
            let _ = channels.requests.send(request);
        }
    };
    send(first);
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    let mut next_frame = Instant::now();
    let mut dirty = true;
    tokio::pin!(stop);
    loop {
        dirty |= watch.take_changed();
        let now = Instant::now();
        if dirty && now >= next_frame {
            draw_frame(terminal, watch)?;
            dirty = false;
            // Frames start FRAME apart: the time a frame takes to draw is not added to the
            // wait of whatever arrives during it.
            next_frame = now + FRAME;
        }
        tokio::select! {
            update = channels.updates.recv() => {
                let Some(update) = update else {
                    // Every sender is gone: the network side has stopped, and says why.
                    let why = match (&mut channels.network).await {
                        Ok(Err(why)) => why,
                        Ok(Ok(())) => "it ended".to_string(),
                        Err(error) if error.is_panic() => net::panic_message(error.into_panic()),
                        Err(error) => error.to_string(),
                    };
                    return Err(WatchError::NetworkStopped(why));
                };
                let now = Timestamp::now();
                send(watch.apply(update, now));
                // Everything already waiting goes into the same frame.
                for _ in 1..BATCH {
                    let Ok(update) = channels.updates.try_recv() else { break };
                    send(watch.apply(update, now));
                }
            }
            event = input.next() => match event {
                Some(Ok(event)) => {
                    let now = Timestamp::now();
                    let action = match event {
                        TermEvent::Key(key) => handle_key(watch, key),
                        TermEvent::Mouse(mouse) => {
                            let areas = layout(screen_area(terminal)?, watch);
                            handle_mouse(watch, mouse, areas.tasks, watch.opened.as_ref().map(|_| areas.detail))
                        }
                        TermEvent::Resize(..) => {
                            watch.touch();
                            super::Action::Nothing
                        }
                        _ => super::Action::Nothing,
                    };
                    send(watch.act(action, now));
                    if watch.should_quit() {
                        return Ok(());
                    }
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(()),
            },
            _ = clock.tick() => {
                watch.tick(Timestamp::now());
                if watch.shows_clock() {
                    watch.touch();
                }
            }
            () = tokio::time::sleep_until(next_frame), if dirty => {}
            () = &mut stop => return Ok(()),
        }
    }
}

fn screen_area<B: Backend>(terminal: &Terminal<B>) -> Result<Rect, WatchError> {
    let size = terminal.size().map_err(terminal_error)?;
    Ok(Rect::new(0, 0, size.width, size.height))
}

fn draw_frame<B: Backend>(terminal: &mut Terminal<B>, watch: &mut Watch) -> Result<(), WatchError> {
    let areas = layout(screen_area(terminal)?, watch);
    watch.set_viewport(Viewport {
        table_rows: areas.table_rows(),
        log_lines: areas.log_lines(),
    });
    terminal
        .draw(|frame| draw(frame, watch, Timestamp::now()))
        .map_err(terminal_error)?;
    Ok(())
}

fn terminal_error(error: impl std::error::Error) -> WatchError {
    WatchError::Terminal(std::io::Error::other(error.to_string()))
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tui::fixtures::{at, options};

    /// A network side whose task panicked, as a bug in it would.
    async fn broken(updates: mpsc::Sender<Update>) -> Result<(), String> {
        drop(updates);
        panic!("a bug in the network task")
    }

    #[tokio::test]
    async fn a_network_side_that_panicked_ends_the_view_with_its_message() {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let mut watch = Watch::new(options(), at(0));
        let (requests, _requests_out) = mpsc::unbounded_channel();
        let (updates_in, updates) = mpsc::channel(1);
        let channels = Channels {
            requests,
            updates,
            network: tokio::spawn(broken(updates_in)),
        };
        let keys = futures_util::stream::pending();
        let view = run_loop(
            &mut terminal,
            &mut watch,
            Vec::new(),
            channels,
            keys,
            std::future::pending(),
        );
        let ended = tokio::time::timeout(Duration::from_secs(10), view).await;
        match ended {
            Ok(Err(error @ WatchError::NetworkStopped(_))) => assert_eq!(
                error.to_string(),
                "the watch's connection to the server broke down (a bug in the network task); \
                 the view has stopped"
            ),
            other => panic!("the view went on or ended otherwise: {other:?}"),
        }
    }
}
