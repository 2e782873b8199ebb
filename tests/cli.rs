//! `victor task` as a script uses it: the real binary against a real server.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::{Server, VICTOR, stderr, stdout};
use victor::proto::{Event, Task, TaskState};

#[test]
fn run_streams_output_and_exits_with_the_task_exit_code() {
    let server = Server::start();
    let out = server.run(&[
        "task",
        "run",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err\n"));

    let out = server.run(&["task", "run", "--", "echo", "hello world"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "hello world\n");

    // One argument with spaces runs in a shell.
    let out = server.run(&["task", "run", "--", "echo a | tr a b"]);
    assert_eq!(stdout(&out), "b\n");
}

#[test]
fn run_reports_why_a_task_did_not_finish_normally() {
    let server = Server::start();
    let out = server.run(&["task", "run", "--", "no-such-program-victor"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot start `no-such-program-victor`"),
        "{}",
        stderr(&out)
    );

    let out = server.run(&["task", "run", "--timeout", "300ms", "--", "sleep", "10"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));

    let out = server.run(&["task", "run", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(128 + 9));
}

#[test]
fn start_feeds_stdin_from_a_file_and_sets_env_and_cwd() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.txt"), "from a file\n").unwrap();
    let input = dir.path().join("input.txt");
    let out = server.run(&[
        "task",
        "run",
        "--cwd",
        dir.path().to_str().unwrap(),
        "--env",
        "GREETING=hi there",
        "--stdin",
        input.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\"; pwd; cat",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        stdout(&out),
        format!("hi there\n{}\nfrom a file\n", canonical.display())
    );
}

#[test]
fn ctrl_c_cancels_the_task_and_detach_leaves_it_running() {
    let server = Server::start();
    let mut run = server
        .victor()
        .args(["task", "run", "--", "sh", "-c", "echo started; sleep 30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    run.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"started\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let list = server.run(&["task", "list", "--json"]);
    let tasks: Vec<Task> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tasks[0].state, TaskState::Cancelled);

    let mut run = server
        .victor()
        .args([
            "task",
            "run",
            "--detach",
            "--",
            "sh",
            "-c",
            "echo started; sleep 30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    run.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("keeps running"));
    let list = server.run(&["task", "list", "--json", "--state", "running"]);
    let tasks: Vec<Task> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(tasks.len(), 1);
}

#[test]
fn a_task_runs_where_it_was_started_on_this_machine_else_in_the_servers_default() {
    use std::os::unix::fs::PermissionsExt;
    let here = tempfile::tempdir().unwrap();
    let here_path = std::fs::canonicalize(here.path()).unwrap();
    let script = here.path().join("nightly.sh");
    std::fs::write(&script, "#!/bin/sh\npwd -P\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    // The README's `-- ./nightly.sh`, from a directory that is not the server's.
    let server = Server::start();
    let out = server
        .victor()
        .current_dir(here.path())
        .args(["task", "start", "--", "./nightly.sh"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(server.run(&["task", "wait", &id]).status.code(), Some(0));
    let out = server.run(&["task", "logs", &id]);
    assert_eq!(stdout(&out), format!("{}\n", here_path.display()));
    let out = server.run(&["task", "show", &id]);
    let cwd_line = stdout(&out)
        .lines()
        .find(|line| line.starts_with("cwd"))
        .map(str::to_string);
    assert_eq!(
        cwd_line
            .as_deref()
            .map(|line| line.split_whitespace().nth(1)),
        Some(Some(here_path.to_str().unwrap())),
        "{}",
        stdout(&out)
    );

    // A request that names no directory runs in the server's configured default, and says so.
    let default = tempfile::tempdir().unwrap();
    let default_path = std::fs::canonicalize(default.path()).unwrap();
    let server = Server::start_with(&["--default-cwd", default_path.to_str().unwrap()]);
    let (status, body) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::call(
            common::http()
                .post(format!("{}/api/v1/tasks", server.url))
                .json(&serde_json::json!({"spec": {"kind": "exec", "command": ["pwd", "-P"]}})),
        ));
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["spec"]["cwd"],
        default_path.to_str().unwrap(),
        "{body}"
    );
    let id = body["id"].as_str().unwrap();
    server.run(&["task", "wait", id]);
    let out = server.run(&["task", "logs", id]);
    assert_eq!(stdout(&out), format!("{}\n", default_path.display()));

    // A default that is not a directory stops the server at once, saying which setting.
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("config.toml"), "").unwrap();
    let out = std::process::Command::new(VICTOR)
        .args([
            "serve",
            "--port",
            "0",
            "--default-cwd",
            "/no/such/dir",
            "--data-dir",
        ])
        .arg(data.path())
        .env("VICTOR_CONFIG", data.path().join("config.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--default-cwd"), "{}", stderr(&out));
}

#[test]
fn logs_follow_stopped_with_ctrl_c_says_where_to_go_on() {
    let server = Server::start();
    let id = server.start_task(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.3; done",
    ]);
    let mut follow = server
        .victor()
        .args(["task", "logs", "-f", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 7];
    follow
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"line 1\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(follow.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = follow.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let message = stderr(&out);
    let after = message
        .split("--after ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or_else(|| panic!("no --after in {message:?}"))
        .to_string();
    let printed = format!("line 1\n{}", stdout(&out));

    // The command it names prints the rest, and nothing twice.
    assert_eq!(server.run(&["task", "wait", &id]).status.code(), Some(0));
    let rest = server.run(&["task", "logs", "-f", &id, "--after", &after]);
    assert_eq!(
        format!("{printed}{}", stdout(&rest)),
        "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n"
    );
    // Run again plainly, it prints the whole log, as a script expects.
    let again = server.run(&["task", "logs", "-f", &id]);
    assert_eq!(stdout(&again).lines().count(), 6);
}

#[test]
fn list_shows_names_and_commands_as_written_on_one_line() {
    let server = Server::start();
    let out = server.run(&[
        "task",
        "start",
        "--name",
        "invoice\u{202e}fdp.exe",
        "--",
        "echo one\necho two",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    for args in [vec!["task", "list"], vec!["task", "show", &id]] {
        let text = stdout(&server.run(&args));
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(text.contains("invoice\\u{202e}fdp.exe"), "{text}");
        assert!(text.contains("echo one ⏎ echo two"), "{text}");
    }
}

#[test]
fn start_list_show_logs_wait_and_rm() {
    let server = Server::start();
    let out = server.run(&[
        "task",
        "start",
        "--name",
        "greet",
        "--",
        "sh",
        "-c",
        "echo one; echo two >&2; exit 3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 36, "prints just the id: {id:?}");

    let out = server.run(&["task", "wait", &id]);
    assert_eq!(out.status.code(), Some(3));

    let out = server.run(&["task", "show", "--json", &id]);
    let task: Task = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task.name.as_deref(), Some("greet"));
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.result.unwrap().exit_code, Some(3));

    let out = server.run(&["task", "show", &id]);
    let text = stdout(&out);
    assert!(
        text.contains("failed") && text.contains("greet") && text.contains("exit"),
        "{text}"
    );

    let out = server.run(&["task", "logs", &id]);
    assert_eq!(stdout(&out), "one\n");
    assert_eq!(stderr(&out), "two\n");

    let out = server.run(&["task", "logs", "--json", &id]);
    let events: Vec<Event> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON envelope"))
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        events.last().unwrap().final_state(),
        Some(TaskState::Failed)
    );

    let out = server.run(&["task", "list"]);
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATE") && header.contains("COMMAND"));
    assert!(text.contains(&id) && text.contains("greet"));
    assert!(!text.contains('\u{1b}'), "no colour when piped");

    let out = server.run(&["task", "rm", &id]);
    assert!(out.status.success());
    let out = server.run(&["task", "show", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn logs_follow_prints_live_output_until_the_end() {
    let server = Server::start();
    let id = server.start_task(&[
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.2; done",
    ]);
    let out = server.run(&["task", "logs", "-f", &id]);
    assert_eq!(stdout(&out), "line 1\nline 2\nline 3\n");
}

#[test]
fn wait_times_out_with_its_own_exit_code() {
    let server = Server::start();
    let id = server.start_task(&["sleep", "30"]);
    let out = server.run(&["task", "wait", "--timeout", "300ms", &id]);
    assert_eq!(out.status.code(), Some(75));
}

#[test]
fn input_command_reaches_the_process() {
    let server = Server::start();
    let id = server.start_task(&["sh", "-c", "read a; read b; echo \"$b $a\""]);
    assert!(
        server
            .run(&["task", "input", &id, "world"])
            .status
            .success()
    );
    let mut piped = server
        .victor()
        .args(["task", "input", &id, "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    piped.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    assert!(piped.wait().unwrap().success());
    let out = server.run(&["task", "wait", &id]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&server.run(&["task", "logs", &id])), "hello world\n");
}

#[test]
fn cancel_pause_resume_commands_print_the_new_state() {
    let server = Server::start();
    let id = server.start_task(&["sleep", "30"]);
    let out = server.run(&["task", "pause", &id]);
    assert!(stdout(&out).contains("paused"), "{}", stdout(&out));
    let out = server.run(&["task", "pause", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));
    let out = server.run(&["task", "resume", "--json", &id]);
    let task: Task = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert!(server.run(&["task", "cancel", &id]).status.success());
    assert_eq!(server.run(&["task", "wait", &id]).status.code(), Some(130));
}

#[test]
fn unreachable_server_gets_a_clear_message_and_exit_code() {
    let out = std::process::Command::new(VICTOR)
        .args(["task", "list", "--server", "http://127.0.0.1:9"])
        .env("VICTOR_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert_eq!(
        stderr(&out).trim(),
        "victor: cannot reach the victor server at http://127.0.0.1:9 — start one with `victor serve`"
    );
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let server = Server::start();
    for _ in 0..3 {
        server.run(&["task", "start", "--", "true"]);
    }
    let mut list = server
        .victor()
        .args(["task", "list", "--json", "--limit", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(list.stdout.take());
    let out = list.wait_with_output().unwrap();
    assert_eq!(stderr(&out), "", "no panic or error text on a closed pipe");
}

#[test]
fn usage_errors_get_a_one_line_message() {
    let out = std::process::Command::new(VICTOR)
        .args(["task", "start", "--timeout", "soon", "--", "true"])
        .env("VICTOR_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a duration"), "{}", stderr(&out));

    let server = Server::start();
    let out = server.run(&["task", "start", "--env", "NOEQUALS", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("KEY=VALUE"), "{}", stderr(&out));

    let out = server.run(&["task", "start", "--cwd", "/no/such/dir", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn settings_precedence_is_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "max_concurrent = 3\nport = 0\n").unwrap();
    let status_with = |env: Option<&str>, flag: Option<&str>| -> usize {
        let mut command = std::process::Command::new(VICTOR);
        command
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("VICTOR_CONFIG", &config)
            .env("RUST_LOG", "info")
            .env_remove("VICTOR_MAX_CONCURRENT")
            .env_remove("VICTOR_PORT")
            .stderr(Stdio::piped());
        if let Some(env) = env {
            command.env("VICTOR_MAX_CONCURRENT", env);
        }
        if let Some(flag) = flag {
            command.args(["--max-concurrent", flag]);
        }
        let mut child = command.spawn().unwrap();
        let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let url = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let status = runtime
            .block_on(victor::client::Client::new(&url, None).unwrap().status())
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        status.max_concurrent
    };
    assert_eq!(status_with(None, None), 3, "file over defaults");
    assert_eq!(status_with(Some("2"), None), 2, "env over file");
    assert_eq!(status_with(Some("2"), Some("1")), 1, "flag over env");
}

#[test]
fn a_network_bind_that_cannot_have_its_admin_key_refuses_to_start() {
    // Never unauthenticated: an unusable key file stops the server before it binds.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "").unwrap();
    std::fs::write(dir.path().join("admin.key"), "\n").unwrap();
    let out = std::process::Command::new(VICTOR)
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("VICTOR_CONFIG", dir.path().join("config.toml"))
        .env_remove("VICTOR_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(text.contains("admin.key"), "{text}");
    assert!(text.contains("delete it"), "{text}");
    assert!(!text.contains("listening"), "{text}");
}

#[test]
fn generated_completions_and_man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let completions = dir.path().join("completions");
    let man = dir.path().join("man");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(VICTOR)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    run(&["completions", "--dir", completions.to_str().unwrap()]);
    run(&["man", "--dir", man.to_str().unwrap()]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (generated, kept) in [
        (&completions, root.join("completions")),
        (&man, root.join("man")),
    ] {
        let mut names: Vec<_> = std::fs::read_dir(generated)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let mut kept_names: Vec<_> = std::fs::read_dir(&kept)
            .unwrap_or_else(|_| panic!("{} is missing", kept.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        kept_names.sort();
        assert_eq!(names, kept_names, "files in {}", kept.display());
        for name in names {
            let fresh = std::fs::read(generated.join(&name)).unwrap();
            let old = std::fs::read(kept.join(&name)).unwrap();
            assert!(
                fresh == old,
                "{}/{} is stale: regenerate with `cargo run -- completions --dir completions && \
                 cargo run -- man --dir man`",
                kept.display(),
                name.to_string_lossy()
            );
        }
    }
}

#[test]
fn completions_print_for_one_shell() {
    let out = std::process::Command::new(VICTOR)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("_victor()"));
}

#[test]
fn the_server_logs_one_json_line_with_its_address_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new(VICTOR)
        .args(["serve", "--port", "0", "--log-format", "json", "--data-dir"])
        .arg(dir.path())
        .env("VICTOR_CONFIG", "/dev/null")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(server.stderr.take().unwrap());
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let record: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let fields = &record["fields"];
    assert!(
        fields["address"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(fields["data_dir"], dir.path().to_str().unwrap());
    assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_client_on_this_machine_uses_the_unix_socket_and_needs_no_key() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start_keyed("s0cket-key", &[]);
    let socket = server
        .data_dir
        .join(format!("victor-{}.sock", server.port()));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only this user may connect");

    let out = server
        .victor()
        .env_remove("VICTOR_API_KEY")
        .env("VICTOR_DATA_DIR", &server.data_dir)
        .args(["task", "run", "--", "echo", "via the socket"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "via the socket\n");

    // Over TCP (no socket in that data dir) the key is still required.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = server
        .victor()
        .env_remove("VICTOR_API_KEY")
        .env("VICTOR_DATA_DIR", elsewhere.path())
        .args(["task", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // The library's WebSocket takes the socket too: without a key, a subscription is answered
    // (over TCP, a socket without credentials would be closed with 4401 instead).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let local = victor::client::Client::local(&server.url, None, &server.data_dir).unwrap();
        let mut ws = local.websocket().await.unwrap();
        ws.send(&victor::proto::WsRequest::Ping {
            id: Some("p".into()),
        })
        .await
        .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(victor::client::WsMessage::Reply(reply))) => {
                    assert!(reply.ok, "{reply:?}");
                    break;
                }
                Some(Ok(victor::client::WsMessage::Event(_))) => {}
                other => panic!("no reply over the Unix socket: {other:?}"),
            }
        }
    });

    assert!(server.terminate().success());
    assert!(!socket.exists(), "a clean shutdown removes the socket");
}

#[test]
fn a_local_https_url_goes_through_the_unix_socket_in_plain() {
    let server = Server::start_keyed("s0cket-key", &["--tls"]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    // No key and no fingerprint: only the socket can answer this.
    let local = |args: &[&str]| {
        server
            .victor()
            .env_remove("VICTOR_API_KEY")
            .env("VICTOR_DATA_DIR", &server.data_dir)
            .args(args)
            .arg("--server")
            .arg(&server.url)
            .output()
            .unwrap()
    };
    let out = local(&["task", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = server
        .victor()
        .env_remove("VICTOR_API_KEY")
        .env("VICTOR_DATA_DIR", &server.data_dir)
        .args([
            "task",
            "run",
            "--server",
            &server.url,
            "--",
            "echo",
            "plain inside",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "plain inside\n");

    // Without the socket, the same URL means TLS to a certificate nobody vouches for.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = server
        .victor()
        .env_remove("VICTOR_API_KEY")
        .env("VICTOR_DATA_DIR", elsewhere.path())
        .args(["task", "list", "--server", &server.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("fingerprint"), "{}", stderr(&out));

    // The library's WebSocket goes the same way.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let local = victor::client::Client::local(&server.url, None, &server.data_dir).unwrap();
        assert_eq!(local.server(), server.url);
        let mut ws = local.websocket().await.unwrap();
        ws.send(&victor::proto::WsRequest::Ping {
            id: Some("p".into()),
        })
        .await
        .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(victor::client::WsMessage::Reply(reply))) => {
                    assert!(reply.ok, "{reply:?}");
                    break;
                }
                Some(Ok(victor::client::WsMessage::Event(_))) => {}
                other => panic!("no reply over the Unix socket: {other:?}"),
            }
        }
    });
}

#[test]
fn task_show_escapes_what_a_client_chose() {
    // A bidirectional override turns the text round on a terminal, ESC starts a colour.
    let sneaky = "evil\u{202e}txt.exe\u{1b}[31m";
    let root = tempfile::tempdir().unwrap();
    let workspace = root.path().join(sneaky);
    std::fs::create_dir(&workspace).unwrap();
    let provider = format!(
        "down=ollama:http://127.0.0.1:{}#m",
        common::fake_llm::refused_port()
    );
    let server = Server::start_with(&[
        "--provider",
        &provider,
        "--llm-retries",
        "1",
        "--workspace-root",
        root.path().to_str().unwrap(),
    ]);
    let requests = [
        serde_json::json!({"name": sneaky, "spec": {
            "kind": "exec", "command": ["true"], "env": {"SNEAKY": sneaky}}}),
        serde_json::json!({"spec": {"kind": "agent", "provider": "down",
            "prompt": format!("first line\n{sneaky}"), "workspace": workspace}}),
        serde_json::json!({"spec": {"kind": "chat", "provider": "down",
            "messages": [{"role": "user", "content": sneaky}]}}),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for request in requests {
        let (status, body) = runtime.block_on(common::call(
            common::http()
                .post(format!("{}/api/v1/tasks", server.url))
                .json(&request),
        ));
        assert_eq!(status, 201, "{body}");
        let out = server.run(&["task", "show", body["id"].as_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = stdout(&out);
        assert!(
            !shown.contains(['\u{202e}', '\u{1b}']),
            "a terminal control reached the terminal: {shown:?}"
        );
        assert!(shown.contains("evil\\u{202e}txt.exe\\u{1b}[31m"), "{shown}");
    }
}

/// Where a server run with `XDG_RUNTIME_DIR=runtime` links its socket for `url`'s address.
fn announcement(runtime: &std::path::Path, url: &str) -> std::path::PathBuf {
    let address = url.split("://").nth(1).unwrap();
    runtime.join("victor").join(address)
}

/// `victor ARGS` against `server` with `XDG_RUNTIME_DIR=runtime`; it must succeed. Its stdout.
fn run_in_runtime(server: &Server, runtime: &std::path::Path, args: &[&str]) -> String {
    let out = server
        .victor()
        .env("XDG_RUNTIME_DIR", runtime)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_script_takes_the_socket_of_a_server_without_a_key_whatever_its_data_dir() {
    let runtime = tempfile::tempdir().unwrap();
    let runtime_dir = runtime.path().to_str().unwrap();
    // Over TCP the second call in a second would get 429; the socket is not rate limited.
    let mut server = Server::start_with_env(
        &["--rate-limit", "1", "--rate-burst", "1"],
        &[("XDG_RUNTIME_DIR", runtime_dir)],
    );
    let link = announcement(runtime.path(), &server.url);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        server
            .data_dir
            .join(format!("victor-{}.sock", server.port()))
    );
    assert_eq!(common::mode_of(&runtime.path().join("victor")), 0o700);
    for _ in 0..5 {
        run_in_runtime(&server, runtime.path(), &["task", "start", "--", "true"]);
    }
    // `localhost` is the same server.
    let localhost = server.url.replace("127.0.0.1", "localhost");
    for _ in 0..3 {
        run_in_runtime(
            &server,
            runtime.path(),
            &["task", "list", "--server", &localhost],
        );
    }
    assert!(server.terminate().success());
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "a clean shutdown removes the link"
    );

    // A server with a key leaves no link (its socket would skip the key), and takes away the
    // one a server killed on the same address left.
    let mut keyed = Server::launch(
        common::victor_serve()
            .api_key("s0cket-key")
            .env("XDG_RUNTIME_DIR", runtime_dir),
    );
    let link = announcement(runtime.path(), &keyed.url);
    assert!(std::fs::symlink_metadata(&link).is_err());
    let out = keyed
        .victor()
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env_remove("VICTOR_API_KEY")
        .args(["task", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let old = std::os::unix::net::UnixListener::bind(runtime.path().join("old.sock")).unwrap();
    std::os::unix::fs::symlink(old.local_addr().unwrap().as_pathname().unwrap(), &link).unwrap();
    keyed.kill9();
    keyed.restart();
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the old link is gone"
    );
}

#[test]
fn a_link_that_is_not_the_users_own_is_not_followed() {
    use std::os::unix::fs::{PermissionsExt, lchown, symlink};
    let server = Server::start();
    // Another server, standing for a socket someone else would like our tasks sent to.
    let rogue = Server::start();
    let rogue_socket = rogue.data_dir.join(format!("victor-{}.sock", rogue.port()));
    let runtime = tempfile::tempdir().unwrap();
    let directory = runtime.path().join("victor");
    std::fs::create_dir(&directory).unwrap();
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = announcement(runtime.path(), &server.url);
    symlink(&rogue_socket, &link).unwrap();
    // Whether a task started for `server` ended up on the rogue one.
    let goes_astray = |runtime: &std::path::Path| {
        let id = run_in_runtime(&server, runtime, &["task", "start", "--", "true"])
            .trim()
            .to_string();
        let on_rogue = rogue.run(&["task", "show", &id]).status.success();
        assert_ne!(
            on_rogue,
            server.run(&["task", "show", &id]).status.success()
        );
        on_rogue
    };
    // The user's own directory, link and socket: followed (to whichever socket it names).
    assert!(goes_astray(runtime.path()));

    // A directory others may enter.
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(!goes_astray(runtime.path()));
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700)).unwrap();

    // The directory is a link to a private one.
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(&directory, elsewhere.path().join("victor")).unwrap();
    assert!(!goes_astray(elsewhere.path()));

    // Only root can give a file away; CI runs the tests as root.
    if nix::unistd::geteuid().is_root() {
        let nobody = Some(65534);
        lchown(&link, nobody, nobody).unwrap();
        assert!(!goes_astray(runtime.path()), "a link of another user's");
        lchown(&link, Some(0), Some(0)).unwrap();
        assert!(goes_astray(runtime.path()));

        std::os::unix::fs::chown(&rogue_socket, nobody, nobody).unwrap();
        assert!(!goes_astray(runtime.path()), "a socket of another user's");
        std::os::unix::fs::chown(&rogue_socket, Some(0), Some(0)).unwrap();

        std::os::unix::fs::chown(&directory, nobody, nobody).unwrap();
        assert!(
            !goes_astray(runtime.path()),
            "a directory of another user's"
        );
    }
}

#[test]
fn a_link_a_killed_server_left_sends_the_call_over_tcp() {
    let runtime = tempfile::tempdir().unwrap();
    let runtime_dir = runtime.path().to_str().unwrap();
    let mut server = Server::start_with_env(&[], &[("XDG_RUNTIME_DIR", runtime_dir)]);
    let link = announcement(runtime.path(), &server.url);
    // As a server killed before it could remove its link leaves it: the link, and a socket
    // file nobody accepts on.
    let dead = runtime.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&dead, &link).unwrap();
    run_in_runtime(&server, runtime.path(), &["task", "start", "--", "true"]);
    assert!(server.terminate().success());
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "a server removes only its own link"
    );
}
