//! victor: a networked task server for AI coding work, and its clients.
//!
//! The layers, each in its own folder (see ARCHITECTURE.md): `proto` (wire types), `store`
//! (durable tasks and event logs), `bus` (live fan-out and replay), `engine` (running tasks), `mcp` (the MCP servers agents use),
//! `serve` (HTTP, SSE and WebSocket), `client` (typed API client), `cli` (the `victor` command).

pub mod bus;
pub mod cli;
pub mod client;
pub mod engine;
pub mod llm;
pub mod mcp;
pub mod proto;
pub mod render;
pub mod serve;
pub mod store;
pub mod tui;
