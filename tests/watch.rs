//! `victor watch` as a person and a script use it: the real binary against a real server, on a
//! terminal (tmux, read back with `capture-pane`) and piped (NDJSON).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_llm::{FakeLlm, Format, Reply};
use common::tmux::{Tmux, quoted, victor_command};
use common::{Server, VICTOR, stderr};
use victor::proto::{AgentSpec, CreateTask, Event, TaskSpec, TaskState, types};

/// `victor watch ARGS` as tmux runs it: pointed at `server`, without colour.
fn watch_command(server: &Server, args: &[&str]) -> String {
    let mut words = vec!["watch"];
    words.extend_from_slice(args);
    victor_command(server, &words)
}

/// The numbers of the `word N` lines on screen, in screen order.
fn numbered(screen: &str, word: &str) -> Vec<u32> {
    screen
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix(word)?.trim().parse().ok())
        .collect()
}

/// Each number once, with none missing between the first and the last.
fn assert_consecutive(numbers: &[u32], screen: &str) {
    assert!(!numbers.is_empty(), "no numbered lines on:\n{screen}");
    let expected: Vec<u32> = (numbers[0]..numbers[0] + numbers.len() as u32).collect();
    assert_eq!(numbers, expected, "a line twice or skipped on:\n{screen}");
}

#[test]
fn a_person_watches_pauses_and_survives_a_server_restart() {
    let mut server = Server::start();
    let id = server.start_task(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo \"alpha $i\"; sleep 0.1; done",
    ]);
    // Tall enough to hold the whole log of the test on screen.
    let tmux = Tmux::start(&watch_command(&server, &[&id]), 100, 150);
    let limit = Duration::from_secs(20);
    let screen = tmux.wait_for("the task's output", limit, |s| s.contains("alpha 3"));
    assert!(screen.contains("● connected"), "{screen}");
    let first_lines = numbered(&screen, "alpha");
    assert_eq!(
        first_lines.first(),
        Some(&1),
        "the first line is there:\n{screen}"
    );
    assert_consecutive(&first_lines, &screen);

    tmux.keys(&["p"]);
    tmux.wait_for("the task paused", limit, |s| {
        s.contains("── paused") && s.contains("‖ paused")
    });
    let client = server.client();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let task = runtime.block_on(client.get_task(&id)).unwrap();
    assert_eq!(task.state, TaskState::Paused);
    // A control the server refuses shows why.
    tmux.keys(&["p"]);
    tmux.wait_for("the refusal", limit, |s| {
        s.contains("pause") && s.contains("refused")
    });
    tmux.keys(&["r"]);
    let before = tmux.wait_for("the task resumed", limit, |s| s.contains("── running"));
    let seen = numbered(&before, "alpha").last().copied().unwrap_or(0);
    tmux.wait_for("more output", limit, |s| {
        numbered(s, "alpha").last().is_some_and(|&n| n > seen + 2)
    });

    server.terminate();
    tmux.wait_for("the lost connection", limit, |s| s.contains("reconnecting"));
    server.restart();
    let recovered = tmux.wait_for("the view recovered", Duration::from_secs(30), |s| {
        s.contains("● connected") && s.contains("── interrupted")
    });
    assert_consecutive(&numbered(&recovered, "alpha"), &recovered);
    assert_eq!(
        recovered.matches("── interrupted").count(),
        1,
        "{recovered}"
    );

    // New tasks appear after the restart too.
    server.start_task(&["sh", "-c", "echo bravo"]);
    tmux.keys(&["Escape"]);
    tmux.wait_for("the new task", limit, |s| s.contains("sh -c 'echo bravo'"));
    assert!(tmux.holds_terminal());
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(Duration::from_secs(10)), Some(0));
    assert!(!tmux.holds_terminal(), "the terminal was not given back");
}

#[test]
fn the_table_opens_logs_filters_and_sends_input() {
    let server = Server::start();
    let first = server.start_task(&["sh", "-c", "echo first done"]);
    let reader = server.start_task(&["sh", "-c", "read line; echo \"got $line\""]);
    let tmux = Tmux::start(&watch_command(&server, &[]), 80, 24);
    let limit = Duration::from_secs(20);
    tmux.wait_for("both tasks", limit, |s| {
        s.contains("2 tasks") && s.contains("echo first done")
    });
    // The newest task is selected first: the reader.
    tmux.keys(&["Enter"]);
    tmux.wait_for("its log", limit, |s| {
        s.contains("── running") && s.contains(&reader[..8])
    });
    tmux.keys(&["i"]);
    tmux.wait_for("the input line", limit, |s| s.contains("input to"));
    tmux.keys(&["-l", "hello watch"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the answer", limit, |s| {
        s.contains("got hello watch") && s.contains("── succeeded")
    });
    // Keys one at a time: Esc and the next key at once would read as Alt and that key.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table", limit, |s| s.contains("Enter open"));
    tmux.keys(&["/"]);
    tmux.wait_for("the filter line", limit, |s| s.contains("filter:"));
    tmux.keys(&["-l", "first"]);
    tmux.wait_for("the filtered table", limit, |s| {
        let table_rows = s.lines().filter(|line| line.starts_with("✓ succeeded"));
        s.contains("filter “first”: 1 shown") && table_rows.count() == 1
    });
    tmux.keys(&["Enter"]);
    tmux.keys(&["?"]);
    tmux.wait_for("the help", limit, |s| s.contains(" keys "));
    tmux.keys(&["Escape"]);
    tmux.wait_for("the help closed", limit, |s| !s.contains(" keys "));
    // Another client removes a task: no event says so, the server's count does.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(server.client().delete_task(&first))
        .unwrap();
    tmux.wait_for("the removed task gone", limit, |s| {
        s.contains("1 task ") && !s.contains("echo first done")
    });
    tmux.keys(&["C-c"]);
    assert_eq!(tmux.exit_status(Duration::from_secs(10)), Some(0));
    assert!(!tmux.holds_terminal(), "the terminal was not given back");
}

#[test]
fn a_signal_ends_the_view_and_gives_the_terminal_back() {
    let server = Server::start();
    let signals = [
        nix::sys::signal::SIGTERM,
        nix::sys::signal::SIGHUP,
        nix::sys::signal::SIGINT,
    ];
    for signal in signals {
        let tmux = Tmux::start(&watch_command(&server, &[]), 80, 24);
        tmux.wait_for("the view", Duration::from_secs(20), |s| {
            s.contains("0 tasks")
        });
        assert!(tmux.holds_terminal());
        let pid = tmux.command_pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal");
        assert_eq!(
            tmux.exit_status(Duration::from_secs(10)),
            Some(0),
            "{signal}"
        );
        assert!(
            !tmux.holds_terminal(),
            "{signal}: the terminal was not given back"
        );
    }
}

#[test]
fn with_a_small_scrollback_older_lines_are_read_again_when_scrolled_to() {
    let server = Server::start();
    let id = server.start_task(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"line $i\"; done",
    ]);
    // 40 lines in memory, 15 on screen: most of the log is only on the server.
    let tmux = Tmux::start(
        &watch_command(&server, &["--scrollback", "40", &id]),
        80,
        24,
    );
    let limit = Duration::from_secs(20);
    let tail = tmux.wait_for("the tail", limit, |s| {
        s.contains("line 300") && s.contains("── succeeded")
    });
    assert!(numbered(&tail, "line").first() > Some(&250), "{tail}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = tail;
    while numbered(&screen, "line").first() != Some(&1) {
        assert!(
            Instant::now() < deadline,
            "never scrolled up to the first line; the screen:\n{screen}"
        );
        tmux.keys(&["PPage"]);
        std::thread::sleep(Duration::from_millis(150));
        screen = tmux.screen();
        let lines = numbered(&screen, "line");
        if !lines.is_empty() {
            assert_consecutive(&lines, &screen);
        }
    }
    assert!(screen.contains("── running"), "{screen}");
    tmux.keys(&["End"]);
    let back = tmux.wait_for("the tail again", limit, |s| {
        s.contains("line 300") && s.contains("following")
    });
    assert_consecutive(&numbered(&back, "line"), &back);
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(Duration::from_secs(10)), Some(0));
}

#[test]
fn colour_unless_no_color_is_set() {
    let server = Server::start();
    server.start_task(&["true"]);
    let foreground = |escaped: &str| {
        escaped.split("\u{1b}[").skip(1).any(|sequence| {
            let Some(end) = sequence.find('m') else {
                return false;
            };
            sequence[..end].split(';').any(|code| {
                code.parse::<u8>()
                    .is_ok_and(|code| matches!(code, 30..=38 | 90..=97))
            })
        })
    };
    for (no_color, coloured) in [(true, false), (false, true)] {
        let mut command = watch_command(&server, &[]);
        if !no_color {
            command = command.replace(" NO_COLOR=1 ", " -u NO_COLOR ");
        }
        let tmux = Tmux::start(&command, 80, 24);
        tmux.wait_for("the view", Duration::from_secs(20), |s| {
            s.contains("● connected") && s.contains("1 task")
        });
        let escaped = tmux.run(&["capture-pane", "-p", "-e", "-t", "watch"]);
        assert_eq!(
            foreground(&escaped),
            coloured,
            "NO_COLOR {}: {escaped:?}",
            if no_color { "set" } else { "unset" }
        );
        tmux.keys(&["q"]);
        assert_eq!(tmux.exit_status(Duration::from_secs(10)), Some(0));
    }
}

#[test]
fn an_agents_call_is_approved_and_the_agent_guided_from_the_view() {
    let fake = FakeLlm::start();
    let root = tempfile::tempdir().unwrap();
    let workspace = root.path().to_string_lossy().to_string();
    let provider = format!("openai=openai:{}#fake-small", fake.url(Format::OpenAi));
    let server = Server::start_with(&[
        "--llm-retries",
        "1",
        "--default-provider",
        "openai",
        "--workspace-root",
        &workspace,
        "--provider",
        &provider,
    ]);
    fake.push(
        Reply::stream()
            .then_text("I will run the check.")
            .then_tool_call(
                "r1",
                "run_command",
                &[r#"{"command": "echo ran-$((40+2))"}"#],
            ),
    );
    fake.push(Reply::text(&["All done."]));
    let agent = CreateTask {
        name: None,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Agent(AgentSpec {
            prompt: "Run the check".into(),
            workspace,
            ..AgentSpec::default()
        }),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = runtime
        .block_on(server.client().create_task(&agent, None))
        .unwrap()
        .id;
    let tmux = Tmux::start(&watch_command(&server, &[&id]), 100, 40);
    let limit = Duration::from_secs(20);
    // Commands ask in build mode: the view shows what the agent wants to run.
    tmux.wait_for("the approval prompt", limit, |s| {
        s.contains("asks to run run_command")
            && s.contains("echo ran-$((40+2))")
            && s.contains("a allow once")
    });
    tmux.keys(&["m"]);
    tmux.wait_for("the guidance line", limit, |s| s.contains("guidance for"));
    tmux.keys(&["-l", "print the answer too"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the guidance in the log", limit, |s| {
        s.contains("── guidance: print the answer too")
    });
    tmux.keys(&["a"]);
    let done = tmux.wait_for("the command's output and the end", limit, |s| {
        s.contains("ran-42") && s.contains("── succeeded")
    });
    assert!(
        done.contains("── approval of run_command: allowed once"),
        "{done}"
    );
    assert!(!done.contains("a allow once"), "the prompt stays: {done}");
    // The guidance reached the model with the command's result.
    let last = fake
        .requests()
        .into_iter()
        .rfind(|request| request.method == "POST")
        .expect("the model was asked")
        .body
        .to_string();
    assert!(
        last.contains("print the answer too") && last.contains("ran-42"),
        "{last}"
    );
    tmux.keys(&["q"]);
    assert_eq!(tmux.exit_status(Duration::from_secs(10)), Some(0));
}

/// `victor watch` piped, read line by line in a thread; killed when dropped.
struct Piped {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Piped {
    fn start(server: &Server, args: &[&str]) -> Piped {
        let mut child = server
            .victor()
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start victor watch");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Piped { child, lines }
    }

    /// Starts tasks until the stream shows one: from then on it sees every new task whole.
    fn wait_connected(&self, server: &Server) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            server.start_task(&["true"]);
            if self.lines.recv_timeout(Duration::from_millis(300)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "victor watch never connected");
        }
    }

    /// Events until `done` says so.
    fn read_until(&self, limit: Duration, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        while !done(&events) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the stream stopped short; got {events:#?}"));
            events.push(serde_json::from_str(&line).expect("one JSON event a line"));
        }
        events
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ended(task_id: &str) -> impl Fn(&[Event]) -> bool + '_ {
    move |events| {
        events
            .iter()
            .any(|e| e.task_id == task_id && e.final_state().is_some())
    }
}

#[test]
fn piped_it_prints_every_event_once_across_a_server_restart() {
    let mut server = Server::start();
    let watch = Piped::start(&server, &[]);
    watch.wait_connected(&server);
    let first = server.start_task(&["sh", "-c", "echo one"]);
    let mut events = watch.read_until(Duration::from_secs(20), ended(&first));
    server.terminate();
    server.restart();
    let second = server.start_task(&["sh", "-c", "echo two; echo three >&2"]);
    events.extend(watch.read_until(Duration::from_secs(30), ended(&second)));

    assert!(
        events.iter().all(|e| e.seq > 0),
        "no heartbeats: {events:#?}"
    );
    let positions: Vec<u64> = events.iter().map(|e| e.pos).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(positions, sorted, "in order, each once");
    for id in [&first, &second] {
        let seqs: Vec<u64> = events
            .iter()
            .filter(|e| &e.task_id == id)
            .map(|e| e.seq)
            .collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "task {id}: every event, once");
    }
    let outputs: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.output())
        .map(|o| o.text)
        .collect();
    assert_eq!(
        outputs,
        ["one\n", "two\n", "three\n"].map(String::from).into()
    );
}

#[test]
fn piped_with_an_id_it_prints_that_log_and_ends_with_it() {
    let server = Server::start();
    let id = server.start_task(&["sh", "-c", "for i in 1 2 3; do echo $i; done"]);
    let out = server.run(&["watch", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<Event> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.first().map(|e| e.kind.as_str()), Some(types::STATE));
    assert!(events.last().and_then(Event::final_state).is_some());
    let text: String = events
        .iter()
        .filter_map(|e| e.output())
        .map(|o| o.text)
        .collect();
    assert_eq!(text, "1\n2\n3\n");

    let missing = server.run(&["watch", "no-such-task"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn piped_into_head_it_ends_quietly() {
    // Tasks that stay queued behind a running one: one event each, and nothing after it.
    let server = Server::start_with(&["--heartbeat-secs", "0.2", "--max-concurrent", "1"]);
    server.start_task(&["sleep", "60"]);
    let mut head = ProcessGroup(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{} watch | head -n 1", quoted(VICTOR)))
            .env("VICTOR_SERVER", &server.url)
            .env("VICTOR_CONFIG", server.config_dir().join("config.toml"))
            .env_remove("VICTOR_API_KEY")
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = BufReader::new(head.0.stdout.take().unwrap());
    let (got_line, line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = first.read_line(&mut text);
        let _ = got_line.send(text);
    });
    // Tasks until head has its line; then nothing more is written, and the watch still ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        server.start_task(&["true"]);
        if let Ok(line) = line.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "head never got a line");
    };
    assert!(line.starts_with('{'), "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while head.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "victor watch | head did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut errors = String::new();
    head.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errors)
        .unwrap();
    assert_eq!(errors, "", "nothing on stderr");
}

/// A shell pipeline in a process group of its own, all of it killed when dropped: a watch
/// that did not end must not outlive the test.
struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn an_unreachable_server_is_reported_before_anything_is_drawn() {
    let out = Command::new(VICTOR)
        .args(["watch", "--server", "http://127.0.0.1:9"])
        .env("VICTOR_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}
