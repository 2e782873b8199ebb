//! `victor watch`: the live terminal view of a server's tasks and their logs (issue 4).
//!
//! - [`state`]: what the view knows, and the reducer that applies updates and actions to it;
//! - [`log`]: the opened task's log as a bounded window of lines over its events;
//! - [`keys`]: what keys and the mouse mean;
//! - [`draw`]: the screen as a function of the state and the time;
//! - `net`: the streams, pings and calls, in a task of their own, feeding the reducer through
//!   a channel;
//! - `terminal`: the terminal and the loop that batches updates into frames;
//! - `ndjson`: the event stream as lines when stdout is not a terminal.

pub mod draw;
#[cfg(test)]
mod fixtures;
pub mod keys;
pub mod log;
mod ndjson;
mod net;
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
    /// The task doing the watch's network I/O ended (it panicked).
    #[error("the watch's connection to the server stopped unexpectedly")]
    NetworkStopped,
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
