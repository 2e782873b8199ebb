//! `victor watch`, the live terminal view of streamed task events (issue 4): a state reducer over
//! [`crate::client::Follow`] streams, key handling and drawing with ratatui. Nothing lives here yet;
//! the folder holds the layer's place so that its boundaries are fixed from the start.
