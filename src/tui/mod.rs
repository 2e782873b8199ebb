//! `victor watch`: the live terminal view of a server's tasks and their logs (issue 4).
//!
//! - [`state`]: what the view knows, and the reducer that applies updates and actions to it;
//! - [`log`]: the opened task's log as a bounded window of lines over its events;
//! - `agent`: how an agent's events (steps, tool calls, diffs, approvals) read in that log;
//! - `session`: how an interpreter session's executions (code, output, values, tracebacks)
//!   read in it;
//! - [`keys`]: what keys and the mouse mean;
//! - [`draw`]: the screen as a function of the state and the time;
//! - `net`: the streams, pings and calls, in a task of their own, feeding the reducer through
//!   a channel;
//! - `terminal`: the terminal and the loop that batches updates into frames;
//! - `ndjson`: the event stream as lines when stdout is not a terminal.

mod agent;
pub mod draw;
#[cfg(test)]
mod fixtures;
pub mod keys;
pub mod log;
mod ndjson;
mod net;
mod session;
pub mod state;
mod terminal;

use std::io::IsTerminal;

pub use draw::{Areas, draw, layout};
pub use keys::{Action, handle_key, handle_mouse};
pub use state::{Options, Request, Update, Viewport, Watch};
pub use terminal::Session;

use crate::client::{Client, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the terminal failed: {0}")]
    Terminal(#[from] std::io::Error),
    /// The network side of the view failed (one of its tasks panicked). The view cannot
    /// follow the server any more, so it ends rather than show a connection that is gone.
    #[error("the watch's connection to the server broke down ({0}); the view has stopped")]
    NetworkStopped(String),
}

/// Watches the server `client` talks to until the person quits: the interactive view on a
/// terminal, NDJSON otherwise. With `task`, that task's log is open from the start.
pub async fn run(client: Client, task: Option<String>, options: Options) -> Result<(), WatchError> {
    if std::io::stdout().is_terminal() {
        terminal::interactive(client, task, options).await
    } else {
        ndjson::print(&client, task).await
    }
}
