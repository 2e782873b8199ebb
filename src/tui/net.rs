//! The network side of the watch, in its own task: the all-tasks stream, the opened task's
//! stream, pings, pages of the log and controls. It turns [`Request`]s into calls and what
//! comes back into [`Update`]s; it decides nothing about what is shown.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::log::Fetch;
use super::state::{Control, Request, STREAM_SILENCE, Update};
use crate::client::{Client, ClientError, Follow, Topic};
use crate::proto::{Event, Task, types};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the round trip to the server is measured.
const PING_EVERY: Duration = Duration::from_secs(2);
/// A ping unanswered for this long counts as failed.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Events per page when the log fetches stored events: a few screens of lines at most, and
/// one output event holds up to 16 KiB.
const FETCH_EVENTS: u64 = 200;
/// Tasks per page of the task list.
const LIST_PAGE: usize = 1000;

/// What an [`Endless`] stream gives next.
pub enum Next {
    Event(Event),
    /// The stream is over: a task's log ended with its final event.
    End,
    /// The stream failed; it is retried (after a pause) on the next call.
    Trouble(ClientError),
    /// The server refuses this stream for good (the task was removed, the key revoked).
    Refused(ClientError),
}

/// A [`Follow`] that never gives up: `Follow` reconnects by itself, but stops on a failure
/// before its first connection or on an answer that retrying cannot change. The watch keeps
/// trying until the person quits; a new `Follow` resumes from where the last one stopped.
pub struct Endless {
    client: Client,
    topic: Topic,
    /// Only these event types (all when empty).
    types: &'static [&'static str],
    follow: Follow,
    /// The wait before the next attempt, after a failure.
    backoff: Backoff,
    refused: bool,
}

impl Endless {
    pub fn new(
        client: &Client,
        topic: Topic,
        after: Option<u64>,
        types: &'static [&'static str],
    ) -> Endless {
        Endless {
            follow: follow(client, topic.clone(), after, types),
            client: client.clone(),
            topic,
            types,
            backoff: Backoff::default(),
            refused: false,
        }
    }

    /// Connects now (see [`Follow::start`]): a failure here is the caller's to report.
    pub async fn start(&mut self) -> Result<(), ClientError> {
        self.follow.start().await
    }

    pub async fn next(&mut self) -> Next {
        if self.refused {
            return Next::End;
        }
        self.backoff.wait().await;
        match self.follow.next().await {
            Some(Ok(event)) => {
                self.backoff.reset();
                Next::Event(event)
            }
            None => Next::End,
            Some(Err(error)) => {
                let refused = error.is_final() && matches!(self.topic, Topic::Task(_));
                self.follow = follow(
                    &self.client,
                    self.topic.clone(),
                    self.follow.cursor(),
                    self.types,
                );
                self.backoff.fail();
                if refused {
                    self.refused = true;
                    Next::Refused(error)
                } else {
                    Next::Trouble(error)
                }
            }
        }
    }
}

/// Waits that double after each failure, from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
struct Backoff {
    /// `None` until something fails.
    next: Option<Duration>,
}

impl Backoff {
    async fn wait(&self) {
        if let Some(wait) = self.next {
            tokio::time::sleep(wait).await;
        }
    }

    fn fail(&mut self) {
        self.next = Some(
            self.next
                .map_or(FIRST_BACKOFF, |wait| (wait * 2).min(MAX_BACKOFF)),
        );
    }

    fn reset(&mut self) {
        self.next = None;
    }
}

/// Calls `call` until it succeeds or fails for good (see [`ClientError::is_final`]), backing
/// off between attempts: the watch outlasts any outage.
async fn retried<T, F: Future<Output = Result<T, ClientError>>>(
    mut call: impl FnMut() -> F,
) -> Result<T, ClientError> {
    let mut backoff = Backoff::default();
    loop {
        backoff.wait().await;
        match call().await {
            Err(error) if !error.is_final() => backoff.fail(),
            done => return done,
        }
    }
}

fn follow(client: &Client, topic: Topic, after: Option<u64>, types: &[&str]) -> Follow {
    let follow = client
        .follow(topic, after)
        .idle_timeout(STREAM_SILENCE)
        .give_up_after(Duration::MAX);
    if types.is_empty() {
        follow
    } else {
        follow.types(types)
    }
}

/// Every task, page by page.
pub async fn list_all(client: &Client) -> Result<Vec<Task>, ClientError> {
    let mut tasks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = client.list_tasks(&[], LIST_PAGE, cursor.as_deref()).await?;
        tasks.extend(page.tasks);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(tasks),
        }
    }
}

/// Runs until the watch drops its end of `requests`, or until one of its tasks panics: then
/// it stops with the panic's message, for the view to end with rather than go on with no
/// connection. The streams and the pings run in tasks of their own: a stream's silence timer
/// and backoff must not restart whenever a request comes in.
pub async fn run(
    client: Client,
    all: Endless,
    mut requests: mpsc::UnboundedReceiver<Request>,
    updates: mpsc::Sender<Update>,
) -> Result<(), String> {
    // Dropping the set (on any way out) aborts what still runs.
    let mut tasks = JoinSet::new();
    tasks.spawn(follow_all(all, updates.clone()));
    tasks.spawn(ping(client.clone(), updates.clone()));
    let mut opened: Option<AbortHandle> = None;
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { return Ok(()) };
                let opens = matches!(request, Request::Open { .. });
                let handle = tasks.spawn(serve(client.clone(), request, updates.clone()));
                if opens && let Some(previous) = opened.replace(handle) {
                    previous.abort();
                }
            }
            panic = first_panic(&mut tasks) => return Err(panic),
        }
    }
}

/// Reaps the tasks that end, until one ends in a panic: its message. Never ends while none
/// does (an empty set waits for the next request to add one).
async fn first_panic(tasks: &mut JoinSet<()>) -> String {
    loop {
        match tasks.join_next().await {
            Some(Err(error)) if error.is_panic() => return panic_message(error.into_panic()),
            Some(_) => {}
            None => std::future::pending::<()>().await,
        }
    }
}

/// What a panic said, when it said it with a string (as `panic!` and `expect` do).
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "a panic".to_string(), |message| message.to_string()),
    }
}

async fn follow_all(mut all: Endless, updates: mpsc::Sender<Update>) {
    loop {
        let update = match all.next().await {
            Next::Event(event) if event.kind == types::HEARTBEAT => Update::Heartbeat,
            Next::Event(event) if event.kind == types::SERVER_SHUTDOWN => Update::ServerStopping,
            Next::Event(event) => Update::Event(event),
            Next::Trouble(error) | Next::Refused(error) => Update::StreamTrouble(error.to_string()),
            Next::End => return,
        };
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

/// Carries out one request, sending what comes of it.
async fn serve(client: Client, request: Request, updates: mpsc::Sender<Update>) {
    match request {
        Request::Open { task_id, after } => follow_log(client, task_id, after, updates).await,
        Request::Fetch { task_id, fetch } => {
            let update = match retried(|| fetch_page(&client, &task_id, fetch)).await {
                Ok((events, at_end)) => Update::Fetched {
                    task_id,
                    fetch,
                    events,
                    at_end,
                },
                Err(error) => refused(task_id, error),
            };
            let _ = updates.send(update).await;
        }
        Request::Control { task_id, control } => {
            let outcome = match &control {
                Control::Pause => client.pause(&task_id).await.map(Some),
                Control::Resume => client.resume(&task_id).await.map(Some),
                Control::Cancel => client.cancel(&task_id).await.map(Some),
                Control::Input(input) => client.input(&task_id, input).await.map(Some),
                Control::Remove => client.delete_task(&task_id).await.map(|()| None),
                Control::Answer {
                    approval_id,
                    answer,
                } => client
                    .answer_approval(approval_id, answer)
                    .await
                    .map(|_| None),
                Control::Guide(text) => client.guide(&task_id, text).await.map(Some),
            }
            .map_err(|error| error.to_string());
            let _ = updates
                .send(Update::Controlled {
                    task_id,
                    control,
                    outcome,
                })
                .await;
        }
        Request::Describe(task_id) => {
            let update = match retried(|| client.get_task(&task_id)).await {
                Ok(task) => Update::Task(task),
                Err(error) => refused(task_id, error),
            };
            let _ = updates.send(update).await;
        }
        Request::Resync => {
            if let Ok(tasks) = retried(|| list_all(&client)).await {
                let _ = updates.send(Update::Tasks(tasks)).await;
            }
        }
    }
}

/// What a final refusal about a task means for the view: a task the server does not have
/// (any more) is gone; anything else is said.
fn refused(task_id: String, error: ClientError) -> Update {
    match error {
        ClientError::Api { status: 404, .. } => Update::Gone(task_id),
        error => Update::Refused(error.to_string()),
    }
}

/// The opened task's own stream, from `after`, until it ends or another task is opened.
async fn follow_log(client: Client, task_id: String, after: u64, updates: mpsc::Sender<Update>) {
    let mut stream = Endless::new(&client, Topic::Task(task_id.clone()), Some(after), &[]);
    loop {
        let update = match stream.next().await {
            Next::Event(event) if event.seq == 0 => continue,
            Next::Event(event) => Update::Log(event),
            Next::End => return,
            Next::Trouble(_) => continue,
            Next::Refused(error) => refused(task_id.clone(), error),
        };
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

/// The stored events a [`Fetch`] asks for, and whether nothing is stored after them. Pages
/// are capped by count and by size, so it reads on until it has what it needs.
async fn fetch_page(
    client: &Client,
    task_id: &str,
    fetch: Fetch,
) -> Result<(Vec<Event>, bool), ClientError> {
    let (mut cursor, last) = match fetch {
        // One event before the page as well: its lines may begin before it.
        Fetch::Older { before } => (before.seq.saturating_sub(FETCH_EVENTS + 1), before.seq),
        Fetch::Newer { from } => (from.seq.saturating_sub(1), u64::MAX),
    };
    let wanted = match fetch {
        Fetch::Older { .. } => usize::MAX,
        Fetch::Newer { .. } => FETCH_EVENTS as usize,
    };
    let mut events = Vec::new();
    loop {
        let limit = (last - cursor).min(FETCH_EVENTS) as usize;
        let page = client.events(task_id, cursor, limit.max(1)).await?;
        let Some(newest) = page.last().map(|event| event.seq) else {
            return Ok((events, true));
        };
        events.extend(page.into_iter().filter(|event| event.seq <= last));
        cursor = newest;
        if cursor >= last || events.len() >= wanted {
            return Ok((events, false));
        }
    }
}

/// Measures the round trip to the server every [`PING_EVERY`]; its uptime tells a restart
/// apart from a reconnection.
async fn ping(client: Client, updates: mpsc::Sender<Update>) {
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let sent = Instant::now();
        let update = match tokio::time::timeout(PING_TIMEOUT, client.status()).await {
            Ok(Ok(status)) => Update::Ping {
                rtt: sent.elapsed(),
                uptime_secs: status.uptime_secs,
                tasks: status.tasks.values().sum(),
            },
            _ => Update::PingFailed,
        };
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_stops_the_network_side_with_its_message() {
        let mut tasks = JoinSet::new();
        tasks.spawn(async {});
        tasks.spawn(std::future::pending());
        tasks.spawn(async { panic!("the stream broke at seq {}", 42) });
        let limit = Duration::from_secs(10);
        let message = tokio::time::timeout(limit, first_panic(&mut tasks)).await;
        assert_eq!(message.as_deref(), Ok("the stream broke at seq 42"));
        // Tasks that end well, or are aborted, are only reaped.
        let mut calm = JoinSet::new();
        calm.spawn(async {});
        calm.spawn(std::future::pending()).abort();
        let waited = tokio::time::timeout(Duration::from_millis(200), first_panic(&mut calm));
        assert!(waited.await.is_err(), "no panic, no end");
    }
}
