//! `victor watch`: wires the command line to the live view in `tui`.

use std::path::Path;

use clap::Args;
use jiff::tz::TimeZone;

use super::output::{Exit, colour_wanted};
use super::task::{Connection, with_target};
use crate::tui::{self, Options, WatchError};

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    connection: Connection,
    /// Open this task's log at once (piped: print only its events, then exit when it ends).
    id: Option<String>,
    /// Lines of the open log kept in memory; older ones are read from the server again when
    /// you scroll to them.
    #[arg(long, default_value_t = 10_000, value_name = "LINES",
          value_parser = clap::value_parser!(u32).range(1..))]
    scrollback: u32,
}

/// On a terminal, the interactive view; piped, the event stream as NDJSON. Keys, the screen
/// and the NDJSON format are described in the README.
pub async fn run(args: WatchArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    with_target(&args.connection, config_file, async |client, server| {
        let options = Options {
            server,
            scrollback: args.scrollback as usize,
            colour: colour_wanted(),
            time_zone: TimeZone::system(),
        };
        match tui::run(client, args.id, options).await {
            Ok(()) => Ok(Exit::Success),
            // The client's own error, so that it is reported with its hint and exit code.
            Err(WatchError::Client(error)) => Err(error.into()),
            Err(other) => Err(other.into()),
        }
    })
    .await
}
