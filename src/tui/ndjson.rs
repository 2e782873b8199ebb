//! `victor watch | …`: with stdout not a terminal, the event stream as NDJSON, one envelope a
//! line as `victor task logs --json` prints them, reconnecting as the view does. Heartbeats
//! and other stream-level events are left out: they belong to no task's log.

use std::io::Write;
use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::WatchError;
use super::net::{Endless, Next};
use crate::client::{Client, Topic};

/// Every task's events from now on; with `task`, that task's whole log, ending with it.
pub async fn print(client: &Client, task: Option<String>) -> Result<(), WatchError> {
    let (topic, after) = match task {
        Some(id) => (Topic::Task(id), Some(0)),
        None => (Topic::All, None),
    };
    let mut stream = Endless::new(client, topic, after, &[]);
    stream.start().await?;
    loop {
        match stream.next().await {
            // A quiet stream writes nothing that would fail once the reader has gone
            // (`victor watch | head` after head has its lines): look at each heartbeat.
            Next::Event(event) if event.seq == 0 => {
                if reader_gone() {
                    return Ok(());
                }
            }
            Next::Event(event) => {
                let mut line = serde_json::to_vec(&event).map_err(std::io::Error::other)?;
                line.push(b'\n');
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(&line).and_then(|()| stdout.flush()) {
                    Ok(()) => {}
                    // The reader left (`victor watch | head`): that is the end, not an error.
                    Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(error) => return Err(error.into()),
                }
            }
            Next::End => return Ok(()),
            Next::Trouble(error) => eprintln!("victor: {error}; reconnecting"),
            Next::Refused(error) => return Err(error.into()),
        }
    }
}

/// Whether stdout is a pipe whose reading end is closed: it polls as an error then.
fn reader_gone() -> bool {
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|ready| ready > 0)
        && fds[0]
            .revents()
            .is_some_and(|events| events.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}
