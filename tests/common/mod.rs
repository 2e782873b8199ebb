//! A real `victor serve` on 127.0.0.1 with a temporary data dir, and helpers to drive it with the
//! real client library and the real binary.

#![allow(dead_code)]

pub mod fake_llm;
pub mod launch;
pub mod tmux;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_llm::FakeLlm;
use launch::{Launch, Launched};
use serde_json::Value;
use victor::client::Client;
use victor::proto::{
    Approval, ApprovalAnswer, Command as TaskCommand, CreateTask, Decision, Event, ExecSpec,
    Fingerprint, Task, TaskSpec, TaskState,
};

pub const VICTOR: &str = env!("CARGO_BIN_EXE_victor");

/// A running server: [`Launched`] with the real client and binary pointed at it. Killed when
/// dropped.
pub struct Server {
    launched: Launched,
}

impl std::ops::Deref for Server {
    type Target = Launched;

    fn deref(&self) -> &Launched {
        &self.launched
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Launched {
        &mut self.launched
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `victor serve` flags.
    pub fn start_with(args: &[&str]) -> Server {
        Server::launch(victor_serve().args(args))
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let launch = env
            .iter()
            .fold(victor_serve().args(args), |launch, (key, value)| {
                launch.env(key, value)
            });
        Server::launch(launch)
    }

    /// Starts a server that requires `key`, with extra flags.
    pub fn start_keyed(key: &str, args: &[&str]) -> Server {
        Server::launch(victor_serve().api_key(key).args(args))
    }

    pub fn launch(launch: Launch) -> Server {
        Server {
            launched: launch
                .start()
                .unwrap_or_else(|e| panic!("server did not start: {e}")),
        }
    }

    pub fn log(&self) -> String {
        self.launched.log().text
    }

    /// A client of this server, pinned to its certificate when it serves TLS.
    pub fn client(&self) -> Client {
        match self.fingerprint {
            Some(fingerprint) => Client::pinned(&self.url, self.api_key.clone(), fingerprint),
            None => Client::new(&self.url, self.api_key.clone()),
        }
        .expect("client")
    }

    /// The real binary, pointed at this server and isolated from the developer's settings.
    pub fn victor(&self) -> Command {
        let mut command = Command::new(VICTOR);
        command
            .env("VICTOR_SERVER", &self.url)
            .env("VICTOR_CONFIG", self.home.join("config.toml"))
            .env("NO_COLOR", "1");
        command.env_remove("VICTOR_API_KEY");
        if let Some(key) = &self.api_key {
            command.env("VICTOR_API_KEY", key);
        }
        command
    }

    /// Runs the binary to its end with the given arguments.
    pub fn run(&self, args: &[&str]) -> Output {
        self.victor()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run victor")
    }

    /// `victor task start -- COMMAND...` with the binary; the id it prints.
    pub fn start_task(&self, command: &[&str]) -> String {
        let mut args = vec!["task", "start", "--"];
        args.extend_from_slice(command);
        let out = self.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    /// A client that asks for a task's event stream and then never reads a byte of it.
    pub fn stalled_reader(&self, task_id: &str) -> std::net::TcpStream {
        use std::io::Write;
        let address = self.url.trim_start_matches("http://").to_string();
        let mut stalled = std::net::TcpStream::connect(&address).expect("connect");
        write!(
            stalled,
            "GET /api/v1/tasks/{task_id}/events HTTP/1.1\r\nHost: {address}\r\n\r\n"
        )
        .expect("send the request");
        stalled
    }

    /// SIGTERM and wait for the process to end; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.launched
            .terminate(Duration::from_secs(30))
            .expect("server did not stop after SIGTERM")
    }

    /// Starts the server again on the same port and data dir.
    pub fn restart(&mut self) {
        let restarted = self.launched.restart();
        restarted.unwrap_or_else(|e| panic!("server did not restart: {e}"));
    }

    pub fn data_path(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the clients' config.toml, where `victor remote` keeps remotes.toml.
    pub fn config_dir(&self) -> &Path {
        &self.home
    }
}

/// `victor serve` of this build.
pub fn victor_serve() -> Launch {
    Launch::new(VICTOR)
}

/// A task request for a shell command.
pub fn shell(script: &str) -> CreateTask {
    CreateTask {
        name: None,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Exec(exec(TaskCommand::Shell(script.to_string()))),
    }
}

pub fn exec(command: TaskCommand) -> ExecSpec {
    ExecSpec::new(command)
}

/// The exec spec of a request made by [`shell`], to adjust.
pub fn exec_of(request: &mut CreateTask) -> &mut ExecSpec {
    match &mut request.spec {
        TaskSpec::Exec(spec) => spec,
        other => panic!("not an exec task: {other:?}"),
    }
}

/// Polls until `check` holds for the task, or panics after `limit`.
pub async fn wait_for(
    client: &Client,
    id: &str,
    limit: Duration,
    check: impl Fn(&Task) -> bool,
) -> Task {
    let deadline = Instant::now() + limit;
    loop {
        let task = client.get_task(id).await.expect("get task");
        if check(&task) {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached the expected condition: {task:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task that runs `sleep 60`, once it runs, and its process id.
pub async fn sleeping_task(client: &Client) -> (String, u32) {
    let task = client
        .create_task(&shell("exec sleep 60"), None)
        .await
        .unwrap();
    wait_for(client, &task.id, Duration::from_secs(10), |t| {
        t.state == TaskState::Running
    })
    .await;
    let events = client.events(&task.id, 0, 10).await.unwrap();
    let pid = events
        .iter()
        .find_map(|e| e.state()?.pid)
        .expect("running event has the pid");
    (task.id, pid)
}

/// Waits for the task to finish.
pub async fn finished(client: &Client, id: &str) -> Task {
    wait_for(client, id, Duration::from_secs(30), |t| t.state.is_final()).await
}

/// The fields of `/proc/PID/stat` from the state on (field 3 of proc(5) first, then the
/// parent's pid...), or `None` when the process is gone.
pub fn proc_stat(pid: impl std::fmt::Display) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command's name, in parentheses, may hold spaces and parentheses: it ends at the last.
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// Whether the process runs: it exists and is not a zombie (ended, not yet reaped).
pub fn is_running(pid: impl std::fmt::Display) -> bool {
    proc_stat(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// All output text of a task's stored events, by stream.
pub async fn output_of(client: &Client, id: &str) -> (String, String) {
    let events = client.events(id, 0, 100_000).await.expect("events");
    let mut stdout = String::new();
    let mut stderr = String::new();
    for event in events {
        if let Some(output) = event.output() {
            match output.stream {
                victor::proto::OutputStream::Stdout => stdout.push_str(&output.text),
                victor::proto::OutputStream::Stderr => stderr.push_str(&output.text),
            }
        }
    }
    (stdout, stderr)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Raw HTTP for checking statuses and bodies exactly as a non-victor client sees them.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends a request and returns the status and the JSON body (Null when empty).
pub async fn call(request: reqwest::RequestBuilder) -> (reqwest::StatusCode, serde_json::Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

pub fn assert_error(
    status: reqwest::StatusCode,
    body: &serde_json::Value,
    expected: reqwest::StatusCode,
    code: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// TLS client settings that trust exactly the certificate with `fingerprint` (handshake
/// signatures still checked), for raw requests and WebSockets with headers of the test's
/// choosing, which the library client would not send.
pub fn pinned_tls(fingerprint: Fingerprint) -> rustls::ClientConfig {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct Pinned(Fingerprint, Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if Fingerprint::of_certificate(end_entity) == self.0 {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General("not the pinned certificate".into()))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.1.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.1.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(fingerprint, provider)))
        .with_no_client_auth()
}

/// Raw HTTP over TLS to a server with this certificate, from `source` (one of the loopback
/// addresses, for a rate-limit bucket of its own) when given.
pub fn pinned_http(fingerprint: Fingerprint, source: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().tls_backend_preconfigured(pinned_tls(fingerprint));
    if let Some(source) = source {
        builder = builder.local_address(source.parse::<std::net::IpAddr>().expect("an address"));
    }
    builder.build().expect("client")
}

/// The file's permission bits.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A task's whole log.
pub async fn events(client: &Client, task: &str) -> Vec<Event> {
    client.events(task, 0, 100_000).await.unwrap()
}

/// The events of one kind.
pub fn of_kind<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind).collect()
}

/// Waits until the task's log holds `count` events of `kind`; the last of them.
pub async fn wait_event(client: &Client, task: &str, kind: &str, count: usize) -> Event {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = events(client, task).await;
        let found = of_kind(&all, kind);
        if found.len() >= count {
            return found[count - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {count} {kind} events; the log: {:#?}",
            all.iter().map(|e| (&e.kind, &e.data)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The requests the fake got for chats (not model lists).
pub fn chats(fake: &FakeLlm) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect()
}

/// Answers an approval with `decision` and no reason.
pub async fn answer(client: &Client, approval: &str, decision: Decision) -> Approval {
    let answer = ApprovalAnswer {
        decision,
        reason: None,
    };
    client.answer_approval(approval, &answer).await.unwrap()
}

/// Starts an agent task; its id.
pub async fn start_agent(client: &Client, spec: victor::proto::AgentSpec) -> String {
    let request = CreateTask {
        name: None,
        priority: 0,
        requires: Vec::new(),
        spec: TaskSpec::Agent(spec),
    };
    client.create_task(&request, None).await.unwrap().id
}
