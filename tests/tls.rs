//! `victor serve --tls` and clients that pin its certificate: the real binary and the library
//! client against real servers.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, VICTOR, shell, stderr, stdout};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use victor::client::{Client, ClientError, Topic, WsMessage};
use victor::proto::{Fingerprint, WsRequest};

const KEY: &str = "tls-test-key";

fn tls_server() -> Server {
    Server::start_keyed(KEY, &["--tls"])
}

/// The fingerprint of the certificate in a PEM file, computed independently of the server.
fn fingerprint_of(cert_pem: &Path) -> Fingerprint {
    let der = CertificateDer::from_pem_file(cert_pem).expect("a PEM certificate");
    Fingerprint::of_certificate(&der)
}

/// A fingerprint that no server presents.
fn another_fingerprint() -> Fingerprint {
    Fingerprint::of_certificate(b"some other certificate")
}

fn remotes(server: &Server) -> serde_json::Value {
    let out = server.run(&["remote", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn a_tls_server_prints_its_fingerprint_and_keeps_it_across_restarts() {
    let mut server = tls_server();
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let printed = server
        .fingerprint
        .expect("the listening line shows the fingerprint");
    let cert = server.data_dir.join("tls/cert.pem");
    assert_eq!(printed, fingerprint_of(&cert));
    // The private key is the user's alone; the certificate is public anyway.
    assert_eq!(common::mode_of(&server.data_dir.join("tls/key.pem")), 0o600);
    assert_eq!(common::mode_of(&server.data_dir.join("tls")), 0o700);
    assert_eq!(common::mode_of(&server.data_dir), 0o700);
    assert!(
        printed.to_string().starts_with("SHA256:") && printed.to_string().len() == 7 + 95,
        "{printed}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(server.client().status()).unwrap();
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));

    assert!(server.terminate().success());
    server.restart();
    assert_eq!(
        server.fingerprint,
        Some(printed),
        "same certificate after a restart"
    );
    runtime.block_on(server.client().status()).unwrap();
}

#[test]
fn a_pinned_remote_runs_tasks_over_https_and_streams_their_output() {
    let server = tls_server();
    let fingerprint = server.fingerprint.unwrap().to_string();
    // Pasted as people do: lowercase, without colons or prefix.
    let pasted: String = fingerprint[7..]
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_lowercase();
    let out = server.run(&[
        "remote",
        "add",
        "gpu",
        &server.url,
        "--key",
        KEY,
        "--fingerprint",
        &pasted,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("answers at"), "{}", stderr(&out));

    let out = server
        .victor()
        .env_remove("VICTOR_API_KEY")
        .args(["task", "run", "--server", "gpu", "--"])
        .args(["sh", "-c", "echo hi; sleep 0.3; echo there; echo oops >&2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\nthere\n");
    assert!(stderr(&out).contains("oops"));

    // VICTOR_SERVER names it as well, and --api-key overrides the stored key.
    let out = server
        .victor()
        .env_remove("VICTOR_API_KEY")
        .env("VICTOR_SERVER", "gpu")
        .args(["task", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server
        .victor()
        .env("VICTOR_SERVER", "gpu")
        .args(["task", "list", "--api-key", "wrong"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // The key is kept for the user alone and never listed.
    use std::os::unix::fs::PermissionsExt;
    let file = server.config_dir().join("remotes.toml");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let listed = remotes(&server);
    assert_eq!(listed[0]["name"], "gpu");
    assert_eq!(listed[0]["api_key_set"], true);
    assert_eq!(listed[0]["fingerprint"], fingerprint.as_str());
    let out = server.run(&["remote", "list"]);
    assert!(!stdout(&out).contains(KEY), "{}", stdout(&out));
    assert!(stdout(&out).contains("gpu"), "{}", stdout(&out));

    let out = server.run(&["task", "list", "--server", "gpo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("known remotes: gpu"),
        "{}",
        stderr(&out)
    );

    assert!(server.run(&["remote", "remove", "gpu"]).status.success());
    assert_eq!(remotes(&server), serde_json::json!([]));
    let out = server.run(&["remote", "remove", "gpu"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_remote_whose_certificate_changed_is_refused_until_trusted_again() {
    let mut server = tls_server();
    let old = server.fingerprint.unwrap();
    let out = server.run(&[
        "remote",
        "add",
        "gpu",
        &server.url,
        "--key",
        KEY,
        "--fingerprint",
        &old.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A new certificate: the server lost its tls dir (or someone else answers there).
    assert!(server.terminate().success());
    std::fs::remove_dir_all(server.data_dir.join("tls")).unwrap();
    server.restart();
    let new = server.fingerprint.unwrap();
    assert_ne!(new, old);

    let out = server.run(&["task", "run", "--server", "gpu", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("presented a different TLS certificate"),
        "{message}"
    );
    assert!(message.contains(&old.to_string()), "{message}");
    assert!(message.contains(&new.to_string()), "{message}");
    assert!(
        message.contains(&format!(
            "victor remote add gpu {} --fingerprint {new}",
            server.url
        )),
        "{message}"
    );
    assert_eq!(stdout(&out), "");
    // Nothing reached the server: no task was started.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let page = runtime
        .block_on(server.client().list_tasks(&[], 10, None))
        .unwrap();
    assert!(page.tasks.is_empty(), "{:?}", page.tasks);

    // Following a stream stops at once with the same error instead of retrying.
    let stale = Client::pinned(&server.url, Some(KEY.into()), old).unwrap();
    let started = Instant::now();
    let followed = runtime.block_on(async { stale.follow(Topic::All, None).next().await });
    assert!(
        matches!(followed, Some(Err(ClientError::FingerprintMismatch { .. }))),
        "{followed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A wrong --fingerprint is refused and not saved.
    let out = server.run(&[
        "remote",
        "add",
        "other",
        &server.url,
        "--key",
        KEY,
        "--fingerprint",
        &old.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not saved"), "{}", stderr(&out));
    assert_eq!(remotes(&server).as_array().unwrap().len(), 1);

    // Trusted again as the message says (the stored key stays with the same URL).
    let out = server.run(&[
        "remote",
        "add",
        "gpu",
        &server.url,
        "--fingerprint",
        &new.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.run(&["task", "run", "--server", "gpu", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
}

#[test]
fn a_pinned_client_never_talks_plain_http() {
    let server = Server::start_keyed(KEY, &[]);
    let pin = another_fingerprint();
    // The library: a pin on an http URL is refused outright.
    let refused = Client::pinned(&server.url, Some(KEY.into()), pin).err();
    assert!(
        matches!(refused, Some(ClientError::Tls { .. })),
        "{refused:?}"
    );
    // The command: no fingerprint for an http URL.
    let out = server.run(&[
        "remote",
        "add",
        "plain",
        &server.url,
        "--fingerprint",
        &pin.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));

    // A pinned https remote whose address now answers in plain HTTP is refused, and its key
    // never goes out in clear.
    let https_url = server.url.replacen("http://", "https://", 1);
    std::fs::write(
        server.config_dir().join("remotes.toml"),
        format!(
            "[remotes.gpu]\nurl = \"{https_url}\"\napi_key = \"{KEY}\"\nfingerprint = \"{pin}\"\n"
        ),
    )
    .unwrap();
    let out = server.run(&["task", "start", "--server", "gpu", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("plain HTTP"), "{}", stderr(&out));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let page = runtime
        .block_on(server.client().list_tasks(&[], 10, None))
        .unwrap();
    assert!(page.tasks.is_empty());
}

#[test]
fn trust_on_first_use_stores_the_presented_fingerprint_only_when_told_to() {
    let server = tls_server();
    let presented = server.fingerprint.unwrap().to_string();

    // No terminal to ask on and neither --yes nor --fingerprint: refused, with the way out.
    let out = server.run(&["remote", "add", "tofu", &server.url, "--key", KEY]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains(&presented), "{message}");
    assert!(message.contains("--fingerprint"), "{message}");
    assert!(message.contains("--yes"), "{message}");
    assert_eq!(remotes(&server), serde_json::json!([]));

    let out = server.run(&["remote", "add", "tofu", &server.url, "--key", KEY, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&presented), "{}", stderr(&out));
    assert_eq!(remotes(&server)[0]["fingerprint"], presented.as_str());
    let out = server.run(&["task", "run", "--server", "tofu", "--", "echo", "ok"]);
    assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));

    // Without a pin, a self-signed server is refused with a hint, not called unreachable.
    let out = server.run(&["task", "list", "--server", &server.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("victor remote add"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_server_is_saved_only_with_an_explicit_fingerprint() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let victor = |args: &[&str]| {
        std::process::Command::new(VICTOR)
            .args(args)
            .env("VICTOR_CONFIG", &config)
            .env_remove("VICTOR_SERVER")
            .env_remove("VICTOR_API_KEY")
            .output()
            .unwrap()
    };
    let pin = another_fingerprint().to_string();
    let out = victor(&[
        "remote",
        "add",
        "away",
        "https://127.0.0.1:9",
        "--fingerprint",
        &pin,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let out = victor(&["remote", "add", "gone", "https://127.0.0.1:9", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = victor(&["remote", "add", "bad name", "https://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = victor(&["remote", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "away");
    assert_eq!(listed[0]["api_key_set"], false);
}

#[test]
fn a_certificate_of_ones_own_is_served_from_files() {
    let first = tls_server();
    let files = tempfile::tempdir().unwrap();
    let cert = files.path().join("cert.pem");
    let key = files.path().join("key.pem");
    std::fs::copy(first.data_dir.join("tls/cert.pem"), &cert).unwrap();
    std::fs::copy(first.data_dir.join("tls/key.pem"), &key).unwrap();
    drop(first);

    let server = Server::start_keyed(
        KEY,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"));
    assert_eq!(server.fingerprint, Some(fingerprint_of(&cert)));
    assert!(
        !server.data_dir.join("tls").exists(),
        "no self-signed one made"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(server.client().status()).unwrap();

    let serve = |args: &[&str]| {
        let data = tempfile::tempdir().unwrap();
        std::process::Command::new(VICTOR)
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .env("VICTOR_CONFIG", "/dev/null")
            .env_remove("VICTOR_TLS")
            .env_remove("VICTOR_TLS_CERT")
            .env_remove("VICTOR_TLS_KEY")
            .output()
            .unwrap()
    };
    let out = serve(&["--tls-cert", cert.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
    let missing = files.path().join("missing.pem");
    let out = serve(&[
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("TLS certificate {}", missing.display())),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_runs_over_wss_with_the_pin() {
    let server = tls_server();
    let client = server.client();
    let task = client
        .create_task(&shell("echo over wss"), None)
        .await
        .unwrap();
    let mut ws = client.websocket().await.unwrap();
    ws.send(&WsRequest::Subscribe {
        id: None,
        task_id: Some(task.id.clone()),
        after: Some(0),
        types: None,
    })
    .await
    .unwrap();
    let mut output = String::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("an event in time")
            .expect("open")
            .unwrap();
        if let WsMessage::Event(event) = message {
            if let Some(data) = event.output() {
                output.push_str(&data.text);
            }
            if event.final_state().is_some() {
                break;
            }
        }
    }
    assert_eq!(output, "over wss\n");

    let stale = Client::pinned(&server.url, Some(KEY.into()), another_fingerprint()).unwrap();
    match stale.websocket().await {
        Err(ClientError::FingerprintMismatch {
            expected,
            presented,
            ..
        }) => {
            assert_eq!(expected, another_fingerprint());
            assert_eq!(Some(presented), server.fingerprint);
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a WebSocket past a wrong pin"),
    }
}

/// Runs `command` with the system's root certificates in a named pipe (and an empty
/// certificate directory): its output, and whether it opened the pipe to read them. Nothing is
/// guessed from timing: a reader blocks until the writer here opens the other end, so the
/// writer knows of every read, and the reader sees no certificate at all.
fn run_reading_roots(command: &mut std::process::Command) -> (std::process::Output, bool) {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    nix::unistd::mkfifo(&roots, nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    let opened = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (roots, opened) = (roots.clone(), opened.clone());
        // Set before the pipe closes, which is what lets the reader go on.
        move || {
            let pipe = std::fs::OpenOptions::new().write(true).open(roots);
            opened.store(pipe.is_ok(), Ordering::SeqCst);
        }
    });
    let out = command
        .env("SSL_CERT_FILE", &roots)
        .env("SSL_CERT_DIR", dir.path().join("certs"))
        .output()
        .unwrap();
    let read = opened.load(Ordering::SeqCst);
    // Lets the writer go when nobody read.
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&roots);
    writer.join().unwrap();
    (out, read)
}

#[test]
fn the_systems_root_certificates_are_read_only_for_a_server_that_needs_them() {
    // Plain HTTP over TCP (a server with a key announces no socket).
    let plain = Server::start_keyed(KEY, &[]);
    let (out, read) = run_reading_roots(plain.victor().args(["task", "list"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!read, "an http:// call read the root certificates");

    // A pinned server.
    let server = tls_server();
    let fingerprint = server.fingerprint.unwrap().to_string();
    let out = server.run(&[
        "remote",
        "add",
        "pinned",
        &server.url,
        "--key",
        KEY,
        "--fingerprint",
        &fingerprint,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, read) =
        run_reading_roots(server.victor().args(["task", "list", "--server", "pinned"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!read, "a pinned call read the root certificates");

    // A server trusted as the system trusts it needs the roots: read, there are none.
    let (out, read) = run_reading_roots(server.victor().args(["task", "list"]));
    assert!(read, "the roots were not read: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("TLS"), "{}", stderr(&out));
    // ...and found where the system keeps them (here: the server's own certificate, as the
    // only root).
    let out = server
        .victor()
        .env("SSL_CERT_FILE", server.data_dir.join("tls/cert.pem"))
        .env("SSL_CERT_DIR", "/nonexistent")
        .args(["task", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
