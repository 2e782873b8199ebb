//! `victor mcp`: an MCP server on stdio for assistants that only launch local ones
//! (`"command": "victor", "args": ["mcp", "--server", "lab"]`). It forwards every message to the
//! `/mcp` of a victor server (this machine's, or a remote's, TLS-pinned) and prints the answers:
//! the tools are the server's, under the key given here.

use std::path::Path;

use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::output::Exit;
use super::task::{Connection, with_client};
use crate::client::{Client, McpLink};

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    connection: Connection,
}

pub async fn run(args: McpArgs, config_file: Option<&Path>) -> anyhow::Result<Exit> {
    with_client(&args.connection, config_file, async |client| {
        serve_stdio(client).await
    })
    .await
}

/// Reads messages from stdin, one JSON object a line, until it closes; each goes to the server
/// on its own, so that a long call does not hold up the next (or its cancellation). Answers are
/// printed a line each, as they come.
async fn serve_stdio(client: Client) -> anyhow::Result<Exit> {
    let (out, mut answers) = mpsc::channel::<String>(256);
    let printer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = answers.recv().await {
            stdout.write_all(line.as_bytes()).await?;
            stdout.write_all(b"\n").await?;
            stdout.flush().await?;
        }
        Ok::<(), std::io::Error>(())
    });
    let link = McpLink::new(client, out.clone());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut calls = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(message) => message,
            Err(e) => {
                let error = json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": {"code": -32700, "message": format!("not JSON: {e}")},
                });
                let _ = out.send(error.to_string()).await;
                continue;
            }
        };
        // The session must exist before anything else is sent in it.
        if message.get("method").and_then(Value::as_str) == Some("initialize") {
            link.send(message).await;
        } else {
            let link = link.clone();
            calls.spawn(async move { link.send(message).await });
        }
    }
    // The client closed stdin: it waits for no more answers. Its calls stop being followed
    // (the tasks they started go on), and the session ends.
    calls.shutdown().await;
    link.close().await;
    drop(link);
    drop(out);
    printer.await??;
    Ok(Exit::Success)
}
