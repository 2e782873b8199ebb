//! What every store backend must do, written once against the traits. A backend runs the whole
//! suite with one line in its tests, naming a [`Backend`] that opens fresh stores:
//!
//! ```ignore
//! store_conformance_tests!(MyBackend);
//! ```
//!
//! Stores are built from their JSON wire form, which only ever gains fields, so that the suite
//! does not change when a task kind does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::{
    ConversationAppend, ConversationQuery, EventRange, EventSink, NewTask, READ_BYTES, SharedStore,
    StoreError, StoredKey, StoredSession, TaskQuery, Transition,
};
use crate::proto::{
    Approval, ApprovalStatus, Checkpoint, ConversationSummary, Event, Scope, StoredMessage, Task,
    TaskState,
};

/// A backend under test.
pub(super) trait Backend {
    /// What keeps the fresh store's data alive until the test ends (a temporary directory).
    type Keep;

    /// Whether the backend can be tested here (a server it needs may be missing); when not,
    /// each case says so and passes.
    fn available() -> bool {
        true
    }

    /// A fresh, empty store, as seen by each of `nodes` (one handle each, in that order, all on
    /// the same data). `sink` is the first node's feed: it hears every event committed through
    /// any of the handles.
    async fn open(nodes: &[&str], sink: Arc<dyn EventSink>) -> (Vec<SharedStore>, Self::Keep);
}

/// One test per case of the suite, for `$backend`.
macro_rules! store_conformance_tests {
    ($backend:ty) => {
        store_conformance_tests!(
            @cases $backend:
            seq_and_pos_have_no_gaps_under_concurrent_appends,
            an_idempotency_key_returns_the_first_task,
            writes_from_a_wrong_state_change_nothing,
            pages_of_tasks_and_conversations_follow_their_cursors,
            a_read_stops_after_its_byte_budget,
            deleting_a_task_takes_its_log_approvals_and_checkpoints,
            deleting_the_newest_task_keeps_the_last_pos,
            keys_and_sessions_are_kept_and_revoked_together,
            a_turn_adds_its_messages_with_its_final_state,
            pending_approvals_expire_unless_a_live_node_runs_their_task,
            checkpoints_keep_their_files,
            recovery_takes_only_the_tasks_of_nodes_that_are_gone,
            a_queued_task_is_taken_by_one_node,
            the_feed_hears_each_committed_event_once_in_commit_order,
            a_closed_store_refuses_calls
        );
    };
    (@cases $backend:ty: $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                use crate::store::conformance::Backend as _;
                if !<$backend>::available() {
                    eprintln!("skipped: {} is not available here", stringify!($backend));
                    return;
                }
                crate::store::conformance::$case::<$backend>().await;
            }
        )+
    };
}

/// A feed that hears nothing.
pub(super) struct Nowhere;

impl EventSink for Nowhere {
    fn committed(&self, _events: &[Event]) {}
}

/// A feed that keeps what it hears.
#[derive(Default)]
struct Recorded(Mutex<Vec<Event>>);

impl EventSink for Recorded {
    fn committed(&self, events: &[Event]) {
        self.0.lock().unwrap().extend_from_slice(events);
    }
}

async fn one_store<B: Backend>() -> (SharedStore, B::Keep) {
    let (mut stores, keep) = B::open(&["node-a"], Arc::new(Nowhere)).await;
    (stores.remove(0), keep)
}

/// A time as stores keep it: to the microsecond.
fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + second).unwrap()
}

fn new_task(id: &str) -> NewTask {
    let task: Task = serde_json::from_value(json!({
        "id": id,
        "spec": {"kind": "exec", "command": ["true"]},
        "state": "queued",
        "created_at": at(0),
        "last_seq": 0,
    }))
    .unwrap();
    NewTask {
        task,
        idempotency_key: None,
        request_fingerprint: String::new(),
    }
}

async fn create(store: &SharedStore, id: &str) -> Task {
    let (task, created) = store.create_task(new_task(id)).await.unwrap();
    assert!(created);
    task
}

fn change(state: TaskState, from: &'static [TaskState]) -> Transition {
    Transition {
        state,
        from,
        started_at: (state == TaskState::Running).then(|| at(1)),
        finished_at: state.is_final().then(|| at(2)),
        result: None,
        data: json!({"state": state}),
        messages: None,
    }
}

const LIVE: &[TaskState] = &[TaskState::Queued, TaskState::Running, TaskState::Paused];

async fn start(store: &SharedStore, id: &str) -> Task {
    store
        .transition(id, change(TaskState::Running, &[TaskState::Queued]))
        .await
        .unwrap()
}

async fn finish(store: &SharedStore, id: &str) -> Task {
    store
        .transition(id, change(TaskState::Succeeded, LIVE))
        .await
        .unwrap()
}

fn line(text: &str) -> (&'static str, serde_json::Value) {
    ("output", json!({"stream": "stdout", "text": text}))
}

/// Every event of `range`, read page by page as a subscriber catches up.
async fn read_all(store: &SharedStore, task: Option<&str>) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    loop {
        let range = match task {
            Some(id) => EventRange::Task {
                id: id.to_string(),
                after: events.last().map_or(0, |e| e.seq),
            },
            None => EventRange::All {
                after: events.last().map_or(0, |e| e.pos),
            },
        };
        let page = store.events_after(range, 100).await.unwrap();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

pub(super) async fn seq_and_pos_have_no_gaps_under_concurrent_appends<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    assert_eq!(store.last_pos().await.unwrap(), 0, "an empty store");
    let tasks = ["t1", "t2", "t3", "t4"];
    for id in tasks {
        create(&store, id).await;
    }
    let mut writers = Vec::new();
    for id in tasks {
        for writer in 0..8 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for batch in 0..10 {
                    let size = 1 + (writer + batch) % 3;
                    let events = (0..size).map(|_| line("x")).collect();
                    let appended = store.append(id, events).await.unwrap();
                    assert_eq!(appended.len(), size);
                    for pair in appended.windows(2) {
                        assert_eq!(pair[1].seq, pair[0].seq + 1, "a batch is contiguous");
                        assert!(pair[1].pos > pair[0].pos);
                    }
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let appended_per_task: usize = (0..8)
        .map(|writer| (0..10).map(|batch| 1 + (writer + batch) % 3).sum::<usize>())
        .sum();
    for id in tasks {
        let events = read_all(&store, Some(id)).await;
        let expected: Vec<u64> = (1..=appended_per_task as u64 + 1).collect();
        assert_eq!(seqs(&events), expected, "task {id}: seq from 1, no gap");
        let task = store.get_task(id).await.unwrap().unwrap();
        assert_eq!(task.last_seq, appended_per_task as u64 + 1);
    }
    let all = read_all(&store, None).await;
    assert_eq!(all.len(), tasks.len() * (appended_per_task + 1));
    let first = all[0].pos;
    let positions: Vec<u64> = all.iter().map(|e| e.pos).collect();
    let expected: Vec<u64> = (first..first + all.len() as u64).collect();
    assert_eq!(positions, expected, "pos rises without a gap");
    assert_eq!(store.last_pos().await.unwrap(), *positions.last().unwrap());
}

pub(super) async fn an_idempotency_key_returns_the_first_task<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    let keyed = |id: &str, fingerprint: &str| NewTask {
        idempotency_key: Some("key-1".into()),
        request_fingerprint: fingerprint.into(),
        ..new_task(id)
    };
    let (first, created) = store.create_task(keyed("t1", "same")).await.unwrap();
    assert!(created);
    let (again, created) = store.create_task(keyed("t2", "same")).await.unwrap();
    assert!(!created, "the same key and request make no second task");
    assert_eq!(again, first);
    assert!(store.get_task("t2").await.unwrap().is_none());
    assert_eq!(read_all(&store, Some("t1")).await.len(), 1, "and no event");
    match store.create_task(keyed("t3", "other")).await {
        Err(StoreError::IdempotencyMismatch) => {}
        other => panic!("a key reused for another request: {other:?}"),
    }
    create(&store, "t4").await;
    create(&store, "t5").await;
    let counts = store.count_by_state().await.unwrap();
    assert_eq!(counts[&TaskState::Queued], 3);
    assert_eq!(counts[&TaskState::Running], 0);
}

pub(super) async fn writes_from_a_wrong_state_change_nothing<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    create(&store, "t1").await;
    match store
        .transition("t1", change(TaskState::Running, &[TaskState::Paused]))
        .await
    {
        Err(StoreError::WrongState { id, state }) => {
            assert_eq!((id.as_str(), state), ("t1", TaskState::Queued));
        }
        other => panic!("running from paused, while queued: {other:?}"),
    }
    assert_eq!(store.get_task("t1").await.unwrap().unwrap().last_seq, 1);
    let running = start(&store, "t1").await;
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.started_at, Some(at(1)));
    assert_eq!(running.last_seq, 2);
    let done = finish(&store, "t1").await;
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.finished_at, Some(at(2)));
    match store.append("t1", vec![line("late")]).await {
        Err(StoreError::WrongState { state, .. }) => assert_eq!(state, TaskState::Succeeded),
        other => panic!("an event after the final one: {other:?}"),
    }
    match store
        .transition("t1", change(TaskState::Failed, LIVE))
        .await
    {
        Err(StoreError::WrongState { state, .. }) => assert_eq!(state, TaskState::Succeeded),
        other => panic!("a second final state: {other:?}"),
    }
    let events = read_all(&store, Some("t1")).await;
    assert_eq!(seqs(&events), [1, 2, 3]);
    assert!(events.iter().all(|e| e.kind == "state"));
    assert_eq!(events[2].final_state(), Some(TaskState::Succeeded));

    assert!(store.get_task("missing").await.unwrap().is_none());
    assert!(matches!(
        store.append("missing", vec![line("x")]).await,
        Err(StoreError::NotFound(id)) if id == "missing"
    ));
    assert!(matches!(
        store
            .transition("missing", change(TaskState::Running, LIVE))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub(super) async fn pages_of_tasks_and_conversations_follow_their_cursors<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    for n in 1..=7 {
        create(&store, &format!("t{n}")).await;
    }
    start(&store, "t2").await;
    start(&store, "t5").await;
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let (tasks, next) = store
            .list_tasks(TaskQuery {
                before,
                limit: 3,
                ..TaskQuery::default()
            })
            .await
            .unwrap();
        pages.push(tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
        match next {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [vec!["t7", "t6", "t5"], vec!["t4", "t3", "t2"], vec!["t1"]],
        "newest first, each task once"
    );
    let (running, next) = store
        .list_tasks(TaskQuery {
            states: vec![TaskState::Running, TaskState::Paused],
            limit: 10,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    let running: Vec<&str> = running.iter().map(|t| t.id.as_str()).collect();
    assert_eq!((running, next), (vec!["t5", "t2"], None));
    let (chats, _) = store
        .list_tasks(TaskQuery {
            kind: Some("chat"),
            limit: 10,
            ..TaskQuery::default()
        })
        .await
        .unwrap();
    assert!(chats.is_empty());
    let queued = store.tasks_in_states(&[TaskState::Queued]).await.unwrap();
    let queued: Vec<&str> = queued.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(queued, ["t1", "t3", "t4", "t6", "t7"], "oldest first");

    for n in 1..=5 {
        store
            .create_conversation(
                conversation(&format!("c{n}"), n),
                (n % 2 == 1).then(|| "a".into()),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store
            .list_conversations(ConversationQuery {
                channel: None,
                after: after.clone(),
                limit: 2,
            })
            .await
            .unwrap();
        seen.extend(page.into_iter().map(|c| c.id));
        match next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["c5", "c4", "c3", "c2", "c1"],
        "most recently updated first"
    );
    let (channel, _) = store
        .list_conversations(ConversationQuery {
            channel: Some("a".into()),
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    let channel: Vec<String> = channel.into_iter().map(|c| c.id).collect();
    assert_eq!(channel, ["c5", "c3", "c1"]);
    assert!(matches!(
        store
            .list_conversations(ConversationQuery {
                channel: None,
                after: Some("not-a-cursor".into()),
                limit: 2,
            })
            .await,
        Err(StoreError::BadCursor(_))
    ));
}

fn conversation(id: &str, updated: i64) -> ConversationSummary {
    ConversationSummary {
        id: id.into(),
        title: format!("about {id}"),
        provider: None,
        model: None,
        system: None,
        message_count: 0,
        created_at: at(0),
        updated_at: at(updated),
    }
}

pub(super) async fn a_read_stops_after_its_byte_budget<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    create(&store, "t1").await;
    let big = "y".repeat(20 * 1024);
    for _ in 0..40 {
        store.append("t1", vec![line(&big)]).await.unwrap();
    }
    let size = |event: &Event| serde_json::to_string(&event.data).unwrap().len();
    let largest = size(
        &store
            .events_after(
                EventRange::Task {
                    id: "t1".into(),
                    after: 1,
                },
                1,
            )
            .await
            .unwrap()[0],
    );
    for range in [
        EventRange::Task {
            id: "t1".into(),
            after: 0,
        },
        EventRange::All { after: 0 },
    ] {
        let page = store.events_after(range.clone(), 1000).await.unwrap();
        assert!(
            !page.is_empty() && page.len() < 41,
            "{range:?}: {} events in one read",
            page.len()
        );
        let bytes: usize = page.iter().map(size).sum();
        assert!(
            bytes <= READ_BYTES + largest,
            "{range:?}: {bytes} bytes in one read"
        );
    }
    let events = read_all(&store, Some("t1")).await;
    assert_eq!(seqs(&events), (1..=41).collect::<Vec<_>>());
    assert_eq!(read_all(&store, None).await, events);
    assert_eq!(
        store
            .events_after(
                EventRange::Task {
                    id: "t1".into(),
                    after: 41
                },
                10
            )
            .await
            .unwrap(),
        [],
        "nothing after the last"
    );
}

fn approval(id: &str, task: &str, second: i64, status: ApprovalStatus) -> Approval {
    serde_json::from_value(json!({
        "id": id,
        "task_id": task,
        "tool": "write_file",
        "arguments": {"path": "a.txt"},
        "status": status,
        "created_at": at(second),
    }))
    .unwrap()
}

fn checkpoint(task: &str, id: u32) -> Checkpoint {
    Checkpoint {
        id,
        task_id: task.into(),
        files: vec!["a.txt".into(), "gone.txt".into()],
        tool_call_id: Some(format!("call-{id}")),
        created_at: at(i64::from(id)),
    }
}

pub(super) async fn deleting_a_task_takes_its_log_approvals_and_checkpoints<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    create(&store, "t1").await;
    create(&store, "t2").await;
    start(&store, "t1").await;
    store.append("t1", vec![line("a")]).await.unwrap();
    store.append("t2", vec![line("b")]).await.unwrap();
    store
        .put_approval(approval("p1", "t1", 1, ApprovalStatus::Allowed))
        .await
        .unwrap();
    store
        .put_checkpoint(
            checkpoint("t1", 1),
            vec![("a.txt".into(), Some(b"a".to_vec()))],
        )
        .await
        .unwrap();
    match store.delete_task("t1").await {
        Err(StoreError::WrongState { state, .. }) => assert_eq!(state, TaskState::Running),
        other => panic!("deleting a running task: {other:?}"),
    }
    finish(&store, "t1").await;
    store.delete_task("t1").await.unwrap();
    assert!(store.get_task("t1").await.unwrap().is_none());
    assert!(read_all(&store, Some("t1")).await.is_empty());
    assert!(
        read_all(&store, None)
            .await
            .iter()
            .all(|e| e.task_id == "t2")
    );
    assert!(
        store
            .approvals(Some("t1".into()), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.get_approval("p1").await.unwrap().is_none());
    assert!(store.checkpoints("t1").await.unwrap().is_empty());
    assert!(store.checkpoint_files("t1", 1).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_task("t1").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(seqs(&read_all(&store, Some("t2")).await), [1, 2]);
    let counts = store.count_by_state().await.unwrap();
    assert_eq!(counts[&TaskState::Succeeded], 0);
    assert_eq!(counts[&TaskState::Queued], 1);
}

/// A client resumes the all-tasks stream from the last `pos` it saw: deleting the task that
/// holds the newest events must not put that position past `last_pos`, nor give it to a new
/// event that the client would then skip.
pub(super) async fn deleting_the_newest_task_keeps_the_last_pos<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    create(&store, "old").await;
    create(&store, "newest").await;
    store
        .append("newest", vec![line("a"), line("b")])
        .await
        .unwrap();
    let held = store.last_pos().await.unwrap();
    assert_eq!(read_all(&store, None).await.last().unwrap().pos, held);
    finish(&store, "newest").await;
    let held = store.last_pos().await.unwrap();
    store.delete_task("newest").await.unwrap();
    assert_eq!(
        store.last_pos().await.unwrap(),
        held,
        "a delete takes no pos back"
    );
    let next = store.append("old", vec![line("c")]).await.unwrap();
    assert!(
        next[0].pos > held,
        "a new event comes after every pos handed out"
    );
    assert_eq!(store.last_pos().await.unwrap(), next[0].pos);
}

pub(super) async fn keys_and_sessions_are_kept_and_revoked_together<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    let key = |id: &str, second: i64, scope: Scope| StoredKey {
        id: id.into(),
        name: Some(format!("{id}'s name")),
        scope,
        hash: format!("hash-of-{id}"),
        created_at: at(second),
        last_used_at: None,
    };
    let session = |id: &str, holder: &str, seen: i64| StoredSession {
        id: id.into(),
        holder: holder.into(),
        scope: Scope::Read,
        created_at: at(0),
        last_seen_at: at(seen),
    };
    let k2 = key("k2", 2, Scope::Control);
    let mut k1 = key("k1", 1, Scope::Read);
    store.put_key(k2.clone()).await.unwrap();
    store.put_key(k1.clone()).await.unwrap();
    let namesake = StoredKey {
        name: k1.name.clone(),
        ..key("k3", 3, Scope::Read)
    };
    match store.put_key(namesake.clone()).await {
        Err(StoreError::KeyNameTaken { name, id }) => {
            assert_eq!((name.as_str(), id.as_str()), ("k1's name", "k1"));
        }
        other => panic!("a second key with a name taken: {other:?}"),
    }
    assert_eq!(store.list_keys().await.unwrap(), [k1.clone(), k2.clone()]);
    for s in [
        session("s1", "k1", 1),
        session("s2", "k2", 1),
        session("s3", "admin", 1),
    ] {
        store.put_session(s).await.unwrap();
    }
    let s1 = session("s1", "k1", 5);
    store.put_session(s1.clone()).await.unwrap();
    store
        .record_use(vec![("k1".into(), at(9))], vec![("s2".into(), at(9))])
        .await
        .unwrap();
    k1.last_used_at = Some(at(9));
    assert_eq!(store.list_keys().await.unwrap(), [k1, k2]);
    let sessions = |store: SharedStore| async move {
        let mut sessions = store.list_sessions().await.unwrap();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        sessions
    };
    assert_eq!(
        sessions(store.clone()).await,
        [s1, session("s2", "k2", 9), session("s3", "admin", 1)],
        "replaced, and marked used"
    );
    assert!(store.delete_key("k1").await.unwrap());
    assert!(!store.delete_key("k1").await.unwrap());
    let left: Vec<String> = sessions(store.clone())
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["s2", "s3"], "a key's sessions go with it");
    store.put_key(namesake).await.unwrap();
    store
        .delete_sessions(vec!["s2".into(), "none".into()])
        .await
        .unwrap();
    let left: Vec<String> = sessions(store.clone())
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["s3"]);
}

fn message(role: &str, content: &str, task: &str) -> StoredMessage {
    StoredMessage {
        message: serde_json::from_value(json!({"role": role, "content": content})).unwrap(),
        task_id: Some(task.into()),
        created_at: at(3),
    }
}

pub(super) async fn a_turn_adds_its_messages_with_its_final_state<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    store
        .create_conversation(conversation("c1", 1), None)
        .await
        .unwrap();
    let (summary, messages) = store.get_conversation("c1").await.unwrap().unwrap();
    assert_eq!((summary, messages), (conversation("c1", 1), vec![]));
    let renamed = ConversationSummary {
        title: "renamed".into(),
        model: Some("m".into()),
        updated_at: at(2),
        ..conversation("c1", 1)
    };
    store.update_conversation(renamed.clone()).await.unwrap();
    assert!(matches!(
        store.update_conversation(conversation("c9", 1)).await,
        Err(StoreError::ConversationNotFound(id)) if id == "c9"
    ));

    create(&store, "t1").await;
    start(&store, "t1").await;
    let turn = vec![
        message("user", "hi", "t1"),
        message("assistant", "hello", "t1"),
    ];
    store
        .transition(
            "t1",
            Transition {
                messages: Some(ConversationAppend {
                    conversation_id: "c1".into(),
                    messages: turn.clone(),
                }),
                ..change(TaskState::Succeeded, LIVE)
            },
        )
        .await
        .unwrap();
    let (summary, messages) = store.get_conversation("c1").await.unwrap().unwrap();
    assert_eq!(messages, turn);
    assert_eq!(summary.message_count, 2);
    assert_eq!(summary.title, "renamed");
    assert!(summary.updated_at >= at(3));

    create(&store, "t2").await;
    start(&store, "t2").await;
    let lost = store
        .transition(
            "t2",
            Transition {
                messages: Some(ConversationAppend {
                    conversation_id: "gone".into(),
                    messages: vec![message("user", "?", "t2")],
                }),
                ..change(TaskState::Succeeded, LIVE)
            },
        )
        .await;
    assert!(
        matches!(lost, Err(StoreError::ConversationNotFound(_))),
        "{lost:?}"
    );
    let t2 = store.get_task("t2").await.unwrap().unwrap();
    assert_eq!(
        (t2.state, t2.last_seq),
        (TaskState::Running, 2),
        "all or nothing"
    );

    assert!(store.delete_conversation("c1").await.unwrap());
    assert!(store.get_conversation("c1").await.unwrap().is_none());
    assert!(!store.delete_conversation("c1").await.unwrap());
    assert!(
        store.get_task("t1").await.unwrap().is_some(),
        "its turns stay"
    );
}

pub(super) async fn pending_approvals_expire_unless_a_live_node_runs_their_task<B: Backend>() {
    let (stores, _keep) = B::open(&["node-a", "node-b"], Arc::new(Nowhere)).await;
    let (a, b) = (&stores[0], &stores[1]);
    for store in [a, b] {
        store.renew_lease(Duration::from_secs(60)).await.unwrap();
    }
    for id in ["ta", "tb", "tf"] {
        create(a, id).await;
    }
    start(a, "ta").await;
    start(b, "tb").await;
    finish(a, "tf").await;
    let p1 = approval("p1", "ta", 1, ApprovalStatus::Pending);
    let p2 = approval("p2", "tb", 2, ApprovalStatus::Pending);
    let p3 = approval("p3", "ta", 3, ApprovalStatus::Allowed);
    let p4 = approval("p4", "tf", 4, ApprovalStatus::Pending);
    for approval in [&p4, &p2, &p3, &p1] {
        a.put_approval(approval.clone()).await.unwrap();
    }
    let ids = |approvals: Vec<Approval>| approvals.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(a.approvals(None, None).await.unwrap()),
        ["p1", "p2", "p3", "p4"]
    );
    assert_eq!(
        ids(a.approvals(Some("ta".into()), None).await.unwrap()),
        ["p1", "p3"]
    );
    assert_eq!(
        ids(a
            .approvals(None, Some(ApprovalStatus::Pending))
            .await
            .unwrap()),
        ["p1", "p2", "p4"]
    );
    assert_eq!(a.get_approval("p1").await.unwrap(), Some(p1.clone()));
    assert_eq!(a.get_approval("none").await.unwrap(), None);

    // Node a restarts: its own agent and the finished task's are gone; b's agent still waits.
    assert_eq!(a.expire_pending_approvals().await.unwrap(), 2);
    let expired = a.get_approval("p1").await.unwrap().unwrap();
    assert_eq!(expired.status, ApprovalStatus::Expired);
    assert!(expired.resolved_at.is_some() && expired.reason.is_some());
    assert_eq!(
        a.get_approval("p4").await.unwrap().unwrap().status,
        ApprovalStatus::Expired
    );
    assert_eq!(a.get_approval("p2").await.unwrap(), Some(p2.clone()));
    assert_eq!(a.get_approval("p3").await.unwrap(), Some(p3));

    let answered = Approval {
        status: ApprovalStatus::Denied,
        resolved_at: Some(at(9)),
        ..p2
    };
    b.put_approval(answered.clone()).await.unwrap();
    assert_eq!(
        a.get_approval("p2").await.unwrap(),
        Some(answered),
        "replaced"
    );
}

pub(super) async fn checkpoints_keep_their_files<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    create(&store, "t1").await;
    let files = vec![
        ("gone.txt".to_string(), None),
        ("a.txt".to_string(), Some(b"before\n".to_vec())),
    ];
    store
        .put_checkpoint(checkpoint("t1", 1), files)
        .await
        .unwrap();
    store
        .put_checkpoint(
            checkpoint("t1", 2),
            vec![("a.txt".into(), Some(Vec::new()))],
        )
        .await
        .unwrap();
    assert_eq!(
        store.checkpoints("t1").await.unwrap(),
        [checkpoint("t1", 1), checkpoint("t1", 2)]
    );
    assert_eq!(
        store.checkpoint_files("t1", 1).await.unwrap(),
        [
            ("a.txt".to_string(), Some(b"before\n".to_vec())),
            ("gone.txt".to_string(), None)
        ],
        "by path, a missing file kept as none"
    );
    assert_eq!(
        store.checkpoint_files("t1", 2).await.unwrap(),
        [("a.txt".to_string(), Some(Vec::new()))],
        "an empty file is not a missing one"
    );
    assert!(store.checkpoint_files("t1", 3).await.unwrap().is_empty());
    assert!(store.checkpoints("t2").await.unwrap().is_empty());
}

pub(super) async fn recovery_takes_only_the_tasks_of_nodes_that_are_gone<B: Backend>() {
    let (stores, _keep) = B::open(&["node-a", "node-b", "node-c"], Arc::new(Nowhere)).await;
    let (a, b, c) = (&stores[0], &stores[1], &stores[2]);
    assert_eq!(
        [a.node(), b.node(), c.node()],
        ["node-a", "node-b", "node-c"]
    );
    for store in [a, b, c] {
        store.renew_lease(Duration::from_secs(60)).await.unwrap();
    }
    for id in ["ta", "tb", "tc", "tq", "tf"] {
        create(a, id).await;
    }
    start(a, "ta").await;
    start(b, "tb").await;
    start(c, "tc").await;
    // Paused by its own node: still that node's.
    c.transition("tc", change(TaskState::Paused, &[TaskState::Running]))
        .await
        .unwrap();
    start(a, "tf").await;
    finish(a, "tf").await;
    let orphans = |store: SharedStore| async move {
        let mut orphans: Vec<(String, Option<String>)> = store
            .orphaned_tasks()
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.task.id, o.node))
            .collect();
        orphans.sort();
        orphans
    };
    let owned = |task: &str, node: &str| (task.to_string(), Some(node.to_string()));
    assert_eq!(
        orphans(a.clone()).await,
        [owned("ta", "node-a")],
        "a restarted node takes its own running tasks, not those of live nodes"
    );
    assert_eq!(orphans(b.clone()).await, [owned("tb", "node-b")]);

    // Node c stops renewing: once its lease runs out, its tasks are anyone's to end.
    c.renew_lease(Duration::from_millis(300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        orphans(b.clone()).await,
        [owned("tb", "node-b"), owned("tc", "node-c")]
    );
    let taken = a
        .transition("tc", change(TaskState::Interrupted, LIVE))
        .await
        .unwrap();
    assert_eq!(taken.state, TaskState::Interrupted);
    assert_eq!(
        orphans(b.clone()).await,
        [owned("tb", "node-b")],
        "ended once"
    );
    // A survivor that comes second finds it ended.
    assert!(matches!(
        b.transition("tc", change(TaskState::Interrupted, LIVE))
            .await,
        Err(StoreError::WrongState {
            state: TaskState::Interrupted,
            ..
        })
    ));
    // Renewing brings a node back.
    c.renew_lease(Duration::from_secs(60)).await.unwrap();
    start(c, "tq").await;
    assert_eq!(orphans(a.clone()).await, [owned("ta", "node-a")]);
}

pub(super) async fn the_feed_hears_each_committed_event_once_in_commit_order<B: Backend>() {
    let feed = Arc::new(Recorded::default());
    let (mut stores, _keep) = B::open(&["node-a"], feed.clone()).await;
    let store = stores.remove(0);
    for id in ["t1", "t2", "t3"] {
        create(&store, id).await;
        start(&store, id).await;
    }
    finish(&store, "t3").await;
    let mut writers = Vec::new();
    for id in ["t1", "t2"] {
        for _ in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for n in 0..25 {
                    store
                        .append(id, vec![line(&n.to_string()), line("b")])
                        .await
                        .unwrap();
                }
            }));
        }
    }
    // Writes that fail commit nothing, so the feed hears nothing of them.
    assert!(store.append("t3", vec![line("late")]).await.is_err());
    assert!(store.append("missing", vec![line("x")]).await.is_err());
    assert!(
        store
            .transition("t1", change(TaskState::Running, &[TaskState::Queued]))
            .await
            .is_err()
    );
    for writer in writers {
        writer.await.unwrap();
    }
    finish(&store, "t1").await;
    let stored = read_all(&store, None).await;
    assert_eq!(stored.len(), 3 * 2 + 1 + 8 * 50 + 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let heard = feed.0.lock().unwrap().len();
        if heard >= stored.len() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heard = feed.0.lock().unwrap().clone();
    assert_eq!(heard.len(), stored.len(), "every committed event, once");
    assert!(heard == stored, "as stored, in commit order");
    let tasks: BTreeSet<&str> = heard.iter().map(|e| e.task_id.as_str()).collect();
    assert_eq!(tasks, BTreeSet::from(["t1", "t2", "t3"]));
}

pub(super) async fn a_closed_store_refuses_calls<B: Backend>() {
    let (store, _keep) = one_store::<B>().await;
    create(&store, "t1").await;
    store.close().await;
    assert!(matches!(
        store.get_task("t1").await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.append("t1", vec![line("x")]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.renew_lease(Duration::from_secs(1)).await,
        Err(StoreError::Closed)
    ));
}

pub(super) async fn a_queued_task_is_taken_by_one_node<B: Backend>() {
    let (stores, _keep) = B::open(&["node-a", "node-b"], Arc::new(Nowhere)).await;
    let (a, b) = (&stores[0], &stores[1]);
    for store in [a, b] {
        store.renew_lease(Duration::from_secs(60)).await.unwrap();
    }
    let ids: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
    for id in &ids {
        create(a, id).await;
    }
    // Both nodes try to take every task, at once.
    let mut takers = Vec::new();
    for store in [a.clone(), b.clone()] {
        let ids = ids.clone();
        takers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            for id in ids {
                if let Some(task) = store.claim(&id).await.unwrap() {
                    taken.push(task);
                }
            }
            taken
        }));
    }
    let mut taken = Vec::new();
    for taker in takers {
        taken.extend(taker.await.unwrap());
    }
    let mut taken_ids: Vec<&str> = taken.iter().map(|t| t.id.as_str()).collect();
    taken_ids.sort();
    let mut all: Vec<&str> = ids.iter().map(String::as_str).collect();
    all.sort();
    assert_eq!(taken_ids, all, "each task taken once");
    for task in &taken {
        assert_eq!(task.state, TaskState::Queued, "taken, not started yet");
        assert!(matches!(task.node.as_deref(), Some("node-a" | "node-b")));
    }
    assert!(a.claim("t0").await.unwrap().is_none(), "taken already");
    assert!(a.claim("missing").await.unwrap().is_none());
    let first = taken.iter().find(|t| t.id == "t0").unwrap();
    let (owner, other) = if first.node.as_deref() == Some("node-a") {
        (a, b)
    } else {
        (b, a)
    };
    let running = start(owner, "t0").await;
    assert_eq!(running.node, first.node, "run by the node that took it");
    assert_eq!(
        other.get_task("t0").await.unwrap().unwrap().node,
        first.node
    );

    let mut gpu = new_task("gpu");
    gpu.task.requires = vec!["gpu".into(), "cuda:12".into()];
    let (stored, _) = a.create_task(gpu).await.unwrap();
    assert_eq!(stored.requires, ["gpu", "cuda:12"]);
    assert_eq!(stored.node, None);
    assert_eq!(
        b.get_task("gpu").await.unwrap().unwrap().requires,
        ["gpu", "cuda:12"]
    );

    let nodes = a.nodes().await.unwrap();
    let seen: Vec<(&str, u64, bool)> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.running, n.alive))
        .collect();
    let running_on = |node: &SharedStore| u64::from(node.node() == owner.node());
    assert_eq!(
        seen,
        [
            ("node-a", running_on(a), true),
            ("node-b", running_on(b), true)
        ]
    );

    // Node b goes silent: what it took, started or not, is for the survivors to end.
    b.renew_lease(Duration::from_millis(300)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut orphans: Vec<(String, Option<String>)> = a
        .orphaned_tasks()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.node.as_deref() == Some("node-b"))
        .map(|o| (o.task.id, o.node))
        .collect();
    orphans.sort();
    let mut of_b: Vec<(String, Option<String>)> = taken
        .iter()
        .filter(|t| t.node.as_deref() == Some("node-b"))
        .map(|t| (t.id.clone(), t.node.clone()))
        .collect();
    of_b.sort();
    assert_eq!(orphans, of_b);
    let b_seen = a.nodes().await.unwrap();
    assert!(b_seen.iter().any(|n| n.id == "node-b" && !n.alive));
}
