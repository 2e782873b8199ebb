//! Seed 000's event bridge: the WebSocket `/ws/events` and `GET /events/recent`. Its clients
//! (the editor extension's timeline, dashboards) see what every task does as seed 000's
//! `{"id", "type", "data", "timestamp"}` events (`tool.start`, `file.modified`,
//! `session.end`...), mapped from the durable log: the socket follows every task from the
//! moment it opens, and `/events/recent` reads the newest of the log back.
//!
//! A client narrows what it gets with `{"type": "subscribe", "categories": [...],
//! "correlation_id"?}`: a category is an event type (`tool.start`), the part of one before its
//! dot (`tool`), or `all`; the correlation id is a task's id (every event carries its task's
//! as `correlation_id`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::seed_events::{Lifecycle, lifecycle};
use super::seed000::too_large;
use super::socket::{
    AUTH_FIRST, Connection, Dialect, Flow, Following, Outbox, Parsed, Silence, Upgrade,
    json_message,
};
use super::stream::store_error;
use crate::bus::Topic;
use crate::proto::{
    ApprovalRequested, BudgetExhausted, ChangeKind, Event, FileChange, Guidance, ToolCallEvent,
    ToolResultEvent,
};
use crate::store::EventRange;

/// `/events/recent` answers this many events unless asked for another number (1 to
/// [`MAX_RECENT`]), as seed 000 does.
const DEFAULT_RECENT: usize = 12;
const MAX_RECENT: usize = 100;
/// How far back in the log `/events/recent` looks: seed 000 kept its last 500 events in
/// memory; most log events (output, streamed text) map to none of its types.
const RECENT_WINDOW: u64 = 5_000;
/// Log events read per store query while looking back.
const RECENT_PAGE: usize = 1_000;

/// Seed 000's event for a log event, if it has one: `{"id", "type", "data", "timestamp"}`,
/// with the position in the log as `id` and the task as `correlation_id`.
pub(super) fn bridge_event(event: &Event) -> Option<Value> {
    let (kind, mut data) = bridged(event)?;
    if let Some(data) = data.as_object_mut() {
        data.insert("task_id".into(), json!(event.task_id));
        data.insert("correlation_id".into(), json!(event.task_id));
    }
    Some(json!({
        "id": event.pos.to_string(),
        "type": kind,
        "data": data,
        "timestamp": event.ts.as_millisecond() as f64 / 1000.0,
    }))
}

/// The type and data of the seed event for a log event.
fn bridged(event: &Event) -> Option<(&'static str, Value)> {
    if let Some(phase) = lifecycle(event) {
        return Some(match phase {
            Lifecycle::Started => ("session.start", json!({})),
            Lifecycle::Halted => (
                "notification",
                json!({"message": format!("task {} paused", event.task_id), "level": "info"}),
            ),
            Lifecycle::Resumed => (
                "notification",
                json!({"message": format!("task {} resumed", event.task_id), "level": "info"}),
            ),
            Lifecycle::Ended { state, error: None } => ("session.end", json!({"state": state})),
            Lifecycle::Ended {
                state,
                error: Some(error),
            } => ("session.error", json!({"state": state, "error": error})),
        });
    }
    if let Some(call) = event.decode::<ToolCallEvent>() {
        return Some((
            "tool.start",
            json!({"tool_id": call.id, "name": call.name, "arguments": call.arguments}),
        ));
    }
    if let Some(result) = event.decode::<ToolResultEvent>() {
        return Some(if result.error {
            (
                "tool.error",
                json!({"tool_id": result.id, "name": result.name, "error": result.output}),
            )
        } else {
            (
                "tool.complete",
                json!({"tool_id": result.id, "name": result.name, "result": result.output,
                       "duration_ms": result.duration_ms}),
            )
        });
    }
    if let Some(change) = event.decode::<FileChange>() {
        let kind = match change.kind {
            ChangeKind::Created => "file.created",
            ChangeKind::Modified => "file.modified",
            ChangeKind::Deleted => "file.deleted",
        };
        return Some((kind, json!({"path": change.path, "diff": change.diff})));
    }
    if let Some(budget) = event.decode::<BudgetExhausted>() {
        return Some((
            "budget.exhausted",
            json!({"budget": budget.budget, "limit": budget.limit}),
        ));
    }
    if let Some(requested) = event.decode::<ApprovalRequested>() {
        let approval = requested.approval;
        return Some((
            "notification",
            json!({"message": format!("{} waits for approval {}", approval.tool, approval.id),
                   "level": "warning", "approval_id": approval.id}),
        ));
    }
    if let Some(guidance) = event.decode::<Guidance>() {
        return Some((
            "notification",
            json!({"message": format!("guidance received: {}", guidance.text), "level": "info"}),
        ));
    }
    None
}

/// What a client asked to see: seed 000's categories and correlation id.
#[derive(Debug, Clone, Default)]
struct Interest {
    /// `None`: everything; an empty list: nothing (after `unsubscribe`).
    categories: Option<Vec<String>>,
    correlation_id: Option<String>,
}

impl Interest {
    fn new(categories: Vec<String>, correlation_id: Option<String>) -> Interest {
        let all = categories.is_empty() || categories.iter().any(|c| c == "all" || c == "*");
        Interest {
            categories: (!all).then_some(categories),
            correlation_id,
        }
    }

    fn wants(&self, bridged: &Value) -> bool {
        let kind = bridged["type"].as_str().unwrap_or_default();
        let family = kind.split('.').next().unwrap_or_default();
        let of_category = self
            .categories
            .as_ref()
            .is_none_or(|categories| categories.iter().any(|c| c == kind || c == family));
        let data = &bridged["data"];
        let correlated = self.correlation_id.as_ref().is_none_or(|id| {
            data["correlation_id"].as_str() == Some(id) || data["request_id"].as_str() == Some(id)
        });
        of_category && correlated
    }
}

/// `/ws/events`.
pub async fn socket(upgrade: Upgrade) -> Response {
    upgrade.serve(EventSocket::default())
}

/// One `/ws/events` client: what it wants, and the log following for it.
#[derive(Default)]
pub struct EventSocket {
    interest: Arc<Mutex<Interest>>,
    following: Option<Following>,
}

/// A client message, as seed 000's bridge reads it.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Incoming {
    Auth {
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        session_token: Option<String>,
    },
    Subscribe {
        #[serde(default)]
        categories: Option<Vec<String>>,
        /// Seed 000's clients also name them `events`.
        #[serde(default)]
        events: Option<Vec<String>>,
        #[serde(default)]
        correlation_id: Option<String>,
    },
    Unsubscribe,
    Ping,
}

/// A request but `auth`, which the driver answers.
pub enum EventRequest {
    Subscribe(Vec<String>, Option<String>),
    Unsubscribe,
    Ping,
}

fn error(message: impl Into<String>) -> Value {
    let message = message.into();
    json!({"type": "error", "message": message, "data": {"message": message}})
}

impl Dialect for EventSocket {
    type Request = EventRequest;

    /// A bridge client may only listen: its answers to pings keep it.
    const SILENCE: Silence = Silence::Heartbeats(3);

    /// As seed 000's other sockets: a message over the limit gets an error, up to four times it.
    const READ_LIMIT_FACTOR: usize = 4;

    fn parse(&mut self, text: &str) -> Parsed<EventRequest> {
        match serde_json::from_str::<Incoming>(text) {
            Ok(Incoming::Auth {
                api_key,
                session_token,
            }) => Parsed::Auth {
                credential: api_key.or(session_token),
                granted: json_message(&json!({"type": "auth_success"})),
                refused: Some(json_message(
                    &json!({"type": "auth_failed", "message": "wrong or expired credentials"}),
                )),
            },
            Ok(Incoming::Subscribe {
                categories,
                events,
                correlation_id,
            }) => Parsed::Request(EventRequest::Subscribe(
                categories.or(events).unwrap_or_default(),
                correlation_id,
            )),
            Ok(Incoming::Unsubscribe) => Parsed::Request(EventRequest::Unsubscribe),
            Ok(Incoming::Ping) => Parsed::Request(EventRequest::Ping),
            Err(e) => Parsed::Invalid(json_message(&error(format!(
                "not a message this socket understands: {e} (it takes subscribe, unsubscribe \
                 and ping)"
            )))),
        }
    }

    async fn handle(&mut self, request: EventRequest, connection: &Connection) -> Flow {
        match request {
            EventRequest::Subscribe(categories, correlation_id) => {
                let answer = json!({
                    "type": "subscribed",
                    "categories": if categories.is_empty() { vec!["all".to_string()] } else { categories.clone() },
                    "correlation_id": correlation_id,
                });
                self.set(Interest::new(categories, correlation_id));
                connection.send_json(&answer).await
            }
            EventRequest::Unsubscribe => {
                self.set(Interest {
                    categories: Some(Vec::new()),
                    correlation_id: None,
                });
                connection.send_json(&json!({"type": "unsubscribed"})).await
            }
            EventRequest::Ping => {
                let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
                connection
                    .send_json(&json!({"type": "pong", "timestamp": now}))
                    .await
            }
        }
    }

    /// Every task's events from now on, as seed 000's bridge registers a client with all
    /// categories until it subscribes.
    async fn opened(&mut self, connection: &Connection) -> Flow {
        if self.following.is_none() {
            let engine = connection.state.engine.clone();
            let interest = self.interest.clone();
            self.following = Some(connection.forward(move |outbox| async move {
                match engine.bus().subscribe(Topic::All, None).await {
                    Ok(subscription) => forward(subscription, interest, outbox).await,
                    Err(e) => {
                        let _ = outbox
                            .send(json_message(&error(format!("cannot follow the log: {e}"))))
                            .await;
                    }
                }
            }));
        }
        Ok(())
    }

    async fn too_large(&mut self, _start: &str, connection: &Connection) -> Flow {
        connection
            .send_json(&error(too_large(connection.message_limit())))
            .await
    }

    fn auth_hint(&self) -> Option<&'static str> {
        Some(AUTH_FIRST)
    }
}

impl EventSocket {
    fn set(&self, interest: Interest) {
        *self.interest.lock().unwrap_or_else(|p| p.into_inner()) = interest;
    }
}

/// Sends the log's events that the client wants, as the bridge's, until the connection ends.
async fn forward(
    mut subscription: crate::bus::Subscription,
    interest: Arc<Mutex<Interest>>,
    outbox: Outbox,
) {
    loop {
        let published = match subscription.next().await {
            Ok(Some(published)) => published,
            Ok(None) => return,
            Err(e) => {
                let _ = outbox
                    .send(json_message(&error(format!("the log cannot be read: {e}"))))
                    .await;
                return;
            }
        };
        let Some(bridged) = bridge_event(&published.event) else {
            continue;
        };
        let wanted = interest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wants(&bridged);
        if wanted && outbox.send(json_message(&bridged)).await.is_err() {
            return;
        }
    }
}

/// `GET /events/recent?limit&categories&correlation_id`: the newest bridged events, newest
/// first, as `{"events", "count"}`. `categories` may be repeated or comma-separated.
pub async fn recent(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("the query cannot be read: {e}")))?;
    let mut limit = DEFAULT_RECENT;
    let mut categories = Vec::new();
    let mut correlation_id = None;
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                limit = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_RECENT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "limit must be a whole number from 1 to {MAX_RECENT}, not `{value}`"
                        ))
                    })?;
            }
            "categories" => categories.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            ),
            "correlation_id" => correlation_id = Some(value),
            _ => {}
        }
    }
    let interest = Interest::new(categories, correlation_id);
    let store = state.engine.bus().store();
    let last = store.last_pos().await.map_err(store_error)?;
    let mut after = last.saturating_sub(RECENT_WINDOW);
    let mut newest: VecDeque<Value> = VecDeque::with_capacity(limit);
    while after < last {
        let page = store
            .events_after(EventRange::All { after }, RECENT_PAGE)
            .await
            .map_err(store_error)?;
        let Some(end) = page.last().map(|event| event.pos) else {
            break;
        };
        after = end;
        for bridged in page.iter().filter_map(bridge_event) {
            if interest.wants(&bridged) {
                if newest.len() == limit {
                    newest.pop_front();
                }
                newest.push_back(bridged);
            }
        }
    }
    let events: Vec<Value> = newest.into_iter().rev().collect();
    Ok(Json(json!({"count": events.len(), "events": events})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridged_as(kind: &str, task: &str) -> Value {
        json!({"type": kind, "data": {"correlation_id": task}})
    }

    #[test]
    fn categories_are_types_or_their_family_and_all_means_everything() {
        let tool = bridged_as("tool.start", "t1");
        let file = bridged_as("file.modified", "t1");
        let everything = Interest::new(vec!["all".into()], None);
        assert!(everything.wants(&tool) && everything.wants(&file));
        let tools = Interest::new(vec!["tool".into()], None);
        assert!(tools.wants(&tool) && !tools.wants(&file));
        let exact = Interest::new(vec!["file.modified".into()], None);
        assert!(exact.wants(&file) && !exact.wants(&tool));
        let nothing = Interest {
            categories: Some(Vec::new()),
            correlation_id: None,
        };
        assert!(!nothing.wants(&tool));
    }

    #[test]
    fn a_correlation_id_keeps_one_tasks_events() {
        let interest = Interest::new(Vec::new(), Some("t1".into()));
        assert!(interest.wants(&bridged_as("tool.start", "t1")));
        assert!(!interest.wants(&bridged_as("tool.start", "t2")));
    }
}
